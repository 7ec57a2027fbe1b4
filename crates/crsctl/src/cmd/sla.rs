//! `crsctl sla`: the SLA policies triage applies, and how triage would assess a request.

use clap::{Args, Subcommand};
use crs_proto::common::{Category, Item, Keyword, LegalInstrument, Submission};
use crs_proto::triage::{ExplainAssessmentRequest, ListSlaPoliciesRequest, RuleEvaluation};
use serde_json::json;

use crate::cli::{App, Run};
use crate::output::{Table, duration_secs, span};

#[derive(Subcommand)]
pub enum SlaCmd {
    /// Lists the SLA policies in force, in the order triage tries them.
    Policies,
    /// Says how triage would assess a request now, storing nothing: the deadline, the priority
    /// part by part, the queue, and every rule with the conditions that held and those that did not.
    Explain(Explain),
}

#[derive(Args)]
pub struct Explain {
    /// ISO 3166-1 alpha-2, e.g. KZ.
    #[arg(long)]
    jurisdiction: String,
    /// e.g. government-order, court-order.
    #[arg(long)]
    instrument: String,
    /// A DSA category, e.g. illegal-or-harmful-speech.
    #[arg(long)]
    category: String,
    /// DSA keywords (repeatable).
    #[arg(long = "keyword")]
    keywords: Vec<String>,
    /// The content's language (ISO 639-1).
    #[arg(long, default_value = "")]
    language: String,
    /// The agency, for its record.
    #[arg(long, default_value = "")]
    agency: String,
    /// Content keys as intake writes them (`url:https://host/path`), for content seen before;
    /// repeatable.
    #[arg(long = "content-key")]
    content_keys: Vec<String>,
}

fn evaluations(rules: &[RuleEvaluation]) -> serde_json::Value {
    json!(
        rules
            .iter()
            .map(|r| json!({
                "id": r.id, "matched": r.matched, "applied": r.applied,
                "conditions": r.conditions.iter().map(|c| json!({
                    "name": c.name, "expected": c.expected, "actual": c.actual, "holds": c.holds,
                })).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>()
    )
}

impl Explain {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let session = app.session()?;
        let submission = Submission {
            agency_id: self.agency.clone(),
            jurisdiction: self.jurisdiction.to_uppercase(),
            legal_instrument: crate::vocab::parse::<LegalInstrument>(&self.instrument)? as i32,
            category: crate::vocab::parse::<Category>(&self.category)? as i32,
            keywords: self
                .keywords
                .iter()
                .map(|k| crate::vocab::parse::<Keyword>(k).map(|k| k as i32))
                .collect::<anyhow::Result<_>>()?,
            language: self.language.clone(),
            items: self
                .content_keys
                .iter()
                .enumerate()
                .map(|(i, k)| Item { index: i as u32, content_key: k.clone(), ..Default::default() })
                .collect(),
            ..Default::default()
        };
        let explained = crate::cmd::triage(&session)?
            .explain_assessment(ExplainAssessmentRequest { submission: Some(submission) })
            .await?
            .into_inner();
        let a = explained.assessment.unwrap_or_default();
        let policy = a.policy.clone().unwrap_or_default();
        let value = json!({
            "sla_policy": policy.id, "legal_reference": policy.legal_reference,
            "budget_secs": duration_secs(&policy.budget), "priority": a.priority,
            "priority_components": a.priority_components.iter().map(|c| json!({
                "name": c.name, "detail": c.detail, "points": c.points,
            })).collect::<Vec<_>>(),
            "queue": a.queue, "route": a.route_rule, "human_rights_review": a.human_rights_review,
            "human_rights_rules": a.human_rights_rules, "reasons": a.reasons,
            "evaluated": {
                "sla_policies": evaluations(&explained.sla_policies),
                "routes": evaluations(&explained.routes),
                "human_rights_rules": evaluations(&explained.human_rights_rules),
            },
        });
        app.out.emit(&value, || {
            println!("deadline   {} ({}): {}", span(duration_secs(&policy.budget)), policy.id, policy.legal_reference);
            println!("queue      {} (route {})", a.queue, a.route_rule);
            println!(
                "human rights review: {}",
                if a.human_rights_review { a.human_rights_rules.join(", ") } else { "no".into() }
            );
            println!("priority   {}", a.priority);
            let mut parts = Table::new(&["PART", "POINTS", "COUNTED"]);
            for c in &a.priority_components {
                parts.row(vec![c.name.clone(), format!("+{}", c.points), c.detail.clone()]);
            }
            parts.print(&app.out);
            println!();
            let mut rules = Table::new(&["KIND", "RULE", "MATCHED", "APPLIED", "CONDITIONS"]);
            for (kind, list) in [
                ("sla", &explained.sla_policies),
                ("route", &explained.routes),
                ("human-rights", &explained.human_rights_rules),
            ] {
                for r in list {
                    let conditions: Vec<String> = r
                        .conditions
                        .iter()
                        .map(|c| {
                            format!("{} {} {} ({})", if c.holds { "✓" } else { "✗" }, c.name, c.expected, c.actual)
                        })
                        .collect();
                    rules.row(vec![
                        kind.into(),
                        r.id.clone(),
                        if r.matched { "yes".into() } else { "no".into() },
                        if r.applied { "yes".into() } else { "".into() },
                        if conditions.is_empty() { "(matches every request)".into() } else { conditions.join("; ") },
                    ]);
                }
            }
            rules.print(&app.out);
        })
    }
}

impl Run for SlaCmd {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        match self {
            SlaCmd::Policies => policies(app).await,
            SlaCmd::Explain(explain) => explain.run(app).await,
        }
    }
}

async fn policies(app: &App) -> anyhow::Result<()> {
    let session = app.session()?;
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
