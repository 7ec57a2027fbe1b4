//! `crsctl status`: is everything up, and is work piling up? Health of every service
//! (grpc.health.v1), the review queues, and each service's outbox: hand-offs waiting, the oldest
//! one's age, and dead letters (admin).

use clap::Args;
use crs_proto::admin::GetOutboxStatusRequest;
use crs_proto::review::ListQueuesRequest;
use serde_json::{Value, json};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cli::{App, Run};
use crate::context::DEFAULT_ENDPOINTS;
use crate::errors::{EXIT_UNAVAILABLE, Exit, code_name};
use crate::output::{Table, due_local, duration_secs, span, ts_json};

/// Exits 5 when a service is not SERVING.
#[derive(Args)]
pub struct Status;

impl Run for Status {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let session = app.session()?;
        let mut services = Vec::new();
        let mut all_serving = true;
        for (service, _) in DEFAULT_ENDPOINTS {
            let health = match HealthClient::new(session.anonymous(service)?)
                .check(HealthCheckRequest { service: String::new() })
                .await
            {
                Ok(r) => ServingStatus::try_from(r.into_inner().status)
                    .map(|s| s.as_str_name().to_owned())
                    .unwrap_or_else(|_| "UNKNOWN".into()),
                Err(_) => "UNREACHABLE".to_owned(),
            };
            all_serving &= health == "SERVING";
            // The outbox is for admins; anyone else sees why not.
            let dead = match session.token() {
                Err(_) => Err("no token".to_owned()),
                Ok(_) => outbox_status(&session, service).await,
            };
            services.push((service, session.endpoint(service), health, dead));
        }
        let queues = match session.token() {
            Ok(_) => crate::cmd::review(&session)?
                .list_queues(ListQueuesRequest {})
                .await
                .map(|r| r.into_inner().queues)
                .map_err(|s| code_name(crate::errors::effective_code(&s)).to_owned()),
            Err(_) => Err("no token".to_owned()),
        };
        let value = json!({
            "services": services.iter().map(|(s, url, health, dead)| json!({
                "service": s, "endpoint": url, "health": health,
                "dead_letters": match dead { Ok(o) => json!(o.dead_letters), Err(e) => json!({"error": e}) },
                "outbox": match dead {
                    Ok(o) => json!({"pending": o.pending, "oldest_pending_secs": o.oldest_pending_secs,
                        "dead_letters": o.dead_letters}),
                    Err(e) => json!({"error": e}),
                },
            })).collect::<Vec<_>>(),
            "queues": match &queues {
                Ok(qs) => Value::Array(qs.iter().map(|q| json!({"name": q.name, "depth": q.depth, "claimable": q.claimable,
                    "oldest_age_secs": duration_secs(&q.oldest_age), "nearest_deadline": ts_json(&q.nearest_deadline)})).collect()),
                Err(e) => json!({"error": e}),
            },
        });
        app.out.emit(&value, || {
            let mut t = Table::new(&["SERVICE", "ENDPOINT", "HEALTH", "OUTBOX", "OLDEST", "DEAD LETTERS"]);
            for (s, url, health, outbox) in &services {
                let (pending, oldest, dead) = match outbox {
                    Ok(o) => (
                        o.pending.to_string(),
                        if o.pending == 0 { "-".into() } else { span(o.oldest_pending_secs) },
                        if o.dead_letters == 0 { "0".into() } else { app.out.paint("31", &o.dead_letters.to_string()) },
                    ),
                    Err(e) => ("-".into(), "-".into(), format!("- ({e})")),
                };
                t.row(vec![(*s).to_owned(), url.clone(), app.out.status(health), pending, oldest, dead]);
            }
            t.print(&app.out);
            println!();
            match &queues {
                Ok(qs) => {
                    let mut t = Table::new(&["QUEUE", "OPEN", "CLAIMABLE", "OLDEST", "NEAREST DEADLINE"]);
                    for q in qs {
                        t.row(vec![
                            q.name.clone(),
                            q.depth.to_string(),
                            q.claimable.to_string(),
                            if q.depth == 0 { "-".into() } else { span(duration_secs(&q.oldest_age)) },
                            due_local(&q.nearest_deadline),
                        ]);
                    }
                    t.print(&app.out);
                }
                Err(e) => println!("queues: - ({e})"),
            }
        })?;
        if all_serving { Ok(()) } else { Err(Exit(EXIT_UNAVAILABLE).into()) }
    }
}

/// One service's outbox, summed over its topics.
struct Outbox {
    pending: u64,
    oldest_pending_secs: u64,
    dead_letters: u64,
}

async fn outbox_status(session: &crate::client::Session, service: &str) -> Result<Outbox, String> {
    let mut outbox = crate::cmd::outbox(session, service).map_err(|e| e.to_string())?;
    let topics = outbox
        .get_outbox_status(GetOutboxStatusRequest {})
        .await
        .map_err(|s| code_name(crate::errors::effective_code(&s)).to_owned())?
        .into_inner()
        .topics;
    Ok(Outbox {
        pending: topics.iter().map(|t| t.pending).sum(),
        oldest_pending_secs: topics.iter().map(|t| duration_secs(&t.oldest_pending_age)).max().unwrap_or(0),
        dead_letters: topics.iter().map(|t| t.dead_letters).sum(),
    })
}
