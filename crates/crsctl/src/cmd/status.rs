//! `crsctl status`: is everything up, and is work piling up? Health of every service
//! (grpc.health.v1), the review queues, and each service's dead letters (admin).

use clap::Args;
use crs_proto::admin::ListDeadLettersRequest;
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
            // Dead letters are for admins; anyone else sees why not.
            let dead = match session.token() {
                Err(_) => Err("no token".to_owned()),
                Ok(_) => count_dead_letters(&session, service).await,
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
                "dead_letters": match dead { Ok(n) => json!(n), Err(e) => json!({"error": e}) },
            })).collect::<Vec<_>>(),
            "queues": match &queues {
                Ok(qs) => Value::Array(qs.iter().map(|q| json!({"name": q.name, "depth": q.depth, "claimable": q.claimable,
                    "oldest_age_secs": duration_secs(&q.oldest_age), "nearest_deadline": ts_json(&q.nearest_deadline)})).collect()),
                Err(e) => json!({"error": e}),
            },
        });
        app.out.emit(&value, || {
            let mut t = Table::new(&["SERVICE", "ENDPOINT", "HEALTH", "DEAD LETTERS"]);
            for (s, url, health, dead) in &services {
                t.row(vec![
                    (*s).to_owned(),
                    url.clone(),
                    app.out.status(health),
                    match dead {
                        Ok(0) => "0".into(),
                        Ok(n) => app.out.paint("31", &n.to_string()),
                        Err(e) => format!("- ({e})"),
                    },
                ]);
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

async fn count_dead_letters(session: &crate::client::Session, service: &str) -> Result<usize, String> {
    let mut outbox = crate::cmd::outbox(session, service).map_err(|e| e.to_string())?;
    let mut n = 0;
    let mut page_token = String::new();
    loop {
        let page = outbox
            .list_dead_letters(ListDeadLettersRequest { page_size: 500, page_token })
            .await
            .map_err(|s| code_name(crate::errors::effective_code(&s)).to_owned())?
            .into_inner();
        n += page.dead_letters.len();
        if page.next_page_token.is_empty() {
            return Ok(n);
        }
        page_token = page.next_page_token;
    }
}
