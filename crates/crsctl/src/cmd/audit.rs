//! `crsctl audit`: the append-only, hash-chained audit trail of legal review.

use clap::Subcommand;
use crs_proto::review::{GetAuditTrailRequest, VerifyAuditTrailRequest};
use serde_json::json;

use crate::cli::{App, Run};
use crate::errors::{EXIT_FAILURE, Exit, usage};
use crate::output::{Table, clip, ts_json, ts_local};

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Prints audit entries in order: one case's (senior reviewers, admins) or the whole trail (admins).
    Show {
        /// Only this case's entries.
        #[arg(long = "case")]
        case_id: Option<String>,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 200)]
        limit: usize,
    },
    /// Recomputes the hash chain (admins); exits 1 naming the first entry altered, inserted or missing.
    Verify {
        /// Only entries at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        from: Option<String>,
        /// Only entries before this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
    },
}

fn timestamp(flag: &str, s: &Option<String>) -> anyhow::Result<Option<prost_types::Timestamp>> {
    s.as_ref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 })
                .map_err(|e| usage(format!("--{flag} {s:?}: {e}")))
        })
        .transpose()
}

impl Run for AuditCmd {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let session = app.session()?;
        let mut review = crate::cmd::review(&session)?;
        match self {
            AuditCmd::Show { case_id, limit } => {
                let mut entries = Vec::new();
                let mut page_token = String::new();
                loop {
                    let page = review
                        .get_audit_trail(GetAuditTrailRequest {
                            case_id: case_id.clone().unwrap_or_default(),
                            page_size: 500,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    entries.extend(page.entries);
                    if (limit > 0 && entries.len() >= limit) || page.next_page_token.is_empty() {
                        break;
                    }
                    page_token = page.next_page_token;
                }
                if limit > 0 {
                    entries.truncate(limit);
                }
                let value = json!({"entries": entries.iter().map(|e| json!({
                    "sequence": e.sequence, "case_id": e.case_id, "actor": e.actor, "action": e.action,
                    "details": serde_json::from_str::<serde_json::Value>(&e.details_json).unwrap_or(serde_json::Value::String(e.details_json.clone())),
                    "at": ts_json(&e.at), "previous_hash": e.previous_hash, "hash": e.hash, "trace_id": e.trace_id,
                })).collect::<Vec<_>>()});
                app.out.emit(&value, || {
                    let mut t = Table::new(&["SEQ", "AT", "ACTOR", "ACTION", "CASE", "TRACE", "HASH"]);
                    for e in &entries {
                        t.row(vec![
                            e.sequence.to_string(),
                            ts_local(&e.at),
                            e.actor.clone(),
                            e.action.clone(),
                            e.case_id.clone(),
                            e.trace_id.clone(),
                            clip(&e.hash, 13),
                        ]);
                    }
                    t.print(&app.out);
                })
            }
            AuditCmd::Verify { from, to } => {
                let r = review
                    .verify_audit_trail(VerifyAuditTrailRequest {
                        from: timestamp("from", &from)?,
                        to: timestamp("to", &to)?,
                    })
                    .await?
                    .into_inner();
                let value = json!({"intact": r.intact, "entries_checked": r.entries_checked,
                                   "first_broken_sequence": r.first_broken_sequence, "problem": r.problem});
                app.out.emit(&value, || {
                    if r.intact {
                        println!(
                            "{}: {} entries checked, the chain holds",
                            app.out.status("INTACT"),
                            r.entries_checked
                        );
                    } else {
                        println!(
                            "{}: entry {} {} ({} entries checked)",
                            app.out.status("BROKEN"),
                            r.first_broken_sequence,
                            r.problem,
                            r.entries_checked
                        );
                    }
                })?;
                if r.intact { Ok(()) } else { Err(Exit(EXIT_FAILURE).into()) }
            }
        }
    }
}
