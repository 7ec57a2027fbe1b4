//! `crsctl sla`: the SLA policies triage applies.

use clap::Subcommand;
use crs_proto::triage::ListSlaPoliciesRequest;
use serde_json::json;

use crate::cli::{App, Run};
use crate::output::{Table, duration_secs, span};

#[derive(Subcommand)]
pub enum SlaCmd {
    /// Lists the SLA policies in force, in the order triage tries them.
    Policies,
}

impl Run for SlaCmd {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let session = app.session()?;
        let SlaCmd::Policies = self;
        let policies =
            crate::cmd::triage(&session)?.list_sla_policies(ListSlaPoliciesRequest {}).await?.into_inner().policies;
        let value = json!({"policies": policies.iter().map(|p| json!({
            "id": p.id, "name": p.name, "legal_reference": p.legal_reference, "budget_secs": duration_secs(&p.budget),
            "pauses_while_awaiting_information": p.pauses_while_awaiting_information,
            "warning_percents": p.warning_percents, "high_risk": p.high_risk,
        })).collect::<Vec<_>>()});
        app.out.emit(&value, || {
            let mut t = Table::new(&["ID", "DEADLINE", "PAUSES", "HIGH RISK", "WARNINGS", "LAW"]);
            for p in &policies {
                t.row(vec![
                    p.id.clone(),
                    span(duration_secs(&p.budget)),
                    if p.pauses_while_awaiting_information { "yes".into() } else { "no".into() },
                    if p.high_risk { "yes".into() } else { "no".into() },
                    p.warning_percents.iter().map(|w| format!("{w}%")).collect::<Vec<_>>().join(" "),
                    p.legal_reference.clone(),
                ]);
            }
            t.print(&app.out);
        })
    }
}
