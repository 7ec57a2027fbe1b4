//! `crsctl dead-letters`: the hand-offs a service gave up on (refused for good by the receiver,
//! or failing past the outbox's maximum age), listed and, once the cause is fixed, replayed.
//! Every service serves `crs.admin.v1.OutboxAdminService` for its own outbox; admins only.

use anyhow::Context as _;
use clap::Subcommand;
use crs_proto::admin::{DeadLetter, ListDeadLettersRequest, ReplayDeadLettersRequest};
use serde_json::json;

use crate::cli::{App, Run};
use crate::client::Session;
use crate::errors::{Exit, describe, exit_code};
use crate::output::{Table, clip, ts_json, ts_local};

/// The services, as `--service` names them.
const SERVICES: [&str; 4] = ["intake", "triage", "legal-review", "notification"];

#[derive(Subcommand)]
pub enum DeadLettersCmd {
    /// Lists dead letters, oldest first: of one service, or of all four. Services that do not
    /// answer are named on standard error, after the others' dead letters.
    List {
        /// Only this service's outbox.
        #[arg(long, value_parser = SERVICES)]
        service: Option<String>,
    },
    /// Puts dead letters back in a service's outbox: each is tried again at once, with a fresh
    /// retry window. Exits 4 when none of the --id given is a dead letter.
    Replay {
        /// The service whose outbox holds them.
        #[arg(long, value_parser = SERVICES)]
        service: String,
        /// A dead letter's id, as `list` shows it (repeatable).
        #[arg(long = "id", value_name = "ID", required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every dead letter of the service.
        #[arg(long)]
        all: bool,
    },
}

/// Every dead letter of `service`, oldest first.
async fn list(session: &Session, service: &str) -> anyhow::Result<Vec<DeadLetter>> {
    let mut outbox = crate::cmd::outbox(session, service)?;
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = outbox
            .list_dead_letters(ListDeadLettersRequest { page_size: 500, page_token })
            .await
            .with_context(|| format!("listing {service}'s dead letters"))?
            .into_inner();
        all.extend(page.dead_letters);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

impl Run for DeadLettersCmd {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let session = app.session()?;
        match self {
            DeadLettersCmd::List { service } => {
                let services: Vec<&str> = match &service {
                    Some(s) => vec![s.as_str()],
                    None => SERVICES.to_vec(),
                };
                let mut rows = Vec::new();
                let mut answered = Vec::new();
                let mut failures = Vec::new();
                for s in &services {
                    match list(&session, s).await {
                        Ok(letters) => {
                            answered.push(*s);
                            rows.extend(letters.into_iter().map(|d| (*s, d)));
                        }
                        Err(e) => failures.push((*s, e)),
                    }
                }
                // Nobody answered (no admin token, nothing reachable): that failure is the answer.
                if answered.is_empty() && !failures.is_empty() {
                    return Err(failures.swap_remove(0).1);
                }
                let value = json!({
                    "dead_letters": rows.iter().map(|(s, d)| json!({
                        "service": s, "id": d.id, "topic": d.topic, "attempts": d.attempts,
                        "created_at": ts_json(&d.created_at), "dead_at": ts_json(&d.dead_at),
                        "last_error": d.last_error, "payload_bytes": d.payload_bytes,
                    })).collect::<Vec<_>>(),
                    "errors": failures.iter().map(|(s, e)| json!({"service": s, "error": describe(e)})).collect::<Vec<_>>(),
                });
                app.out.emit(&value, || {
                    if rows.is_empty() {
                        println!("no dead letters ({})", answered.join(", "));
                        return;
                    }
                    let mut t = Table::new(&[
                        "SERVICE",
                        "ID",
                        "TOPIC",
                        "TRIES",
                        "WRITTEN",
                        "DEAD SINCE",
                        "BYTES",
                        "LAST ERROR",
                    ]);
                    for (s, d) in &rows {
                        t.row(vec![
                            (*s).to_owned(),
                            d.id.clone(),
                            d.topic.clone(),
                            d.attempts.to_string(),
                            ts_local(&d.created_at),
                            ts_local(&d.dead_at),
                            d.payload_bytes.to_string(),
                            clip(&d.last_error, 60),
                        ]);
                    }
                    t.print(&app.out);
                })?;
                // The services that did not answer are named on standard error, and the exit code
                // says why (5 for one that is down).
                match failures.first() {
                    None => Ok(()),
                    Some(_) => {
                        for (_, e) in &failures {
                            eprintln!("crsctl: {}", describe(e));
                        }
                        Err(Exit(exit_code(&failures[0].1)).into())
                    }
                }
            }
            DeadLettersCmd::Replay { service, ids, all } => {
                let asked = ids.len();
                let replayed = crate::cmd::outbox(&session, &service)?
                    .replay_dead_letters(ReplayDeadLettersRequest { ids, all })
                    .await
                    .with_context(|| format!("replaying {service}'s dead letters"))?
                    .into_inner()
                    .replayed;
                if !all && replayed == 0 {
                    return Err(tonic::Status::not_found(format!(
                        "none of the {asked} id(s) given is a dead letter of {service}"
                    ))
                    .into());
                }
                let value = json!({"service": service, "replayed": replayed, "skipped": if all { 0 } else { asked.saturating_sub(replayed as usize) }});
                app.out.emit(&value, || {
                    println!("{service}: {replayed} dead letter(s) put back in the outbox, to be tried again now");
                    if !all && (replayed as usize) < asked {
                        println!("{} of the ids given are not dead letters of {service}", asked - replayed as usize);
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::cli::Cli;

    #[test]
    fn replay_takes_ids_or_all_and_a_known_service() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["crsctl", "dead-letters"], args].concat());
        assert!(parse(&["replay", "--service", "intake", "--all"]).is_ok());
        assert!(parse(&["replay", "--service", "triage", "--id", "a", "--id", "b"]).is_ok());
        assert!(parse(&["replay", "--service", "intake"]).is_err(), "neither --id nor --all");
        assert!(parse(&["replay", "--service", "intake", "--id", "a", "--all"]).is_err(), "both");
        assert!(parse(&["replay", "--all"]).is_err(), "no service");
        assert!(parse(&["list", "--service", "billing"]).is_err(), "an unknown service");
        assert!(parse(&["list"]).is_ok());
    }
}
