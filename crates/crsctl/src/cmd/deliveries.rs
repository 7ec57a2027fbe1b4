//! `crsctl deliveries`: notification deliveries, and retrying those given up.

use clap::Subcommand;
use crs_proto::notification::{
    Audience, Channel, DeliveryState, ListNotificationsRequest, NotificationKind, RetryDeliveryRequest,
};
use serde_json::json;

use crate::cli::{App, Run};
use crate::errors::usage;
use crate::output::{Table, clip, ts_json, ts_local};
use crate::vocab::name;

#[derive(Subcommand)]
pub enum DeliveriesCmd {
    /// Lists notifications and their deliveries (newest last).
    List {
        /// Only those about this request.
        #[arg(long)]
        request: Option<String>,
        /// Only deliveries in this state: pending, delivered, retrying, failed.
        #[arg(long)]
        state: Option<String>,
        /// At most this many notifications (0: all).
        #[arg(long, default_value_t = 200)]
        limit: usize,
    },
    /// Tries a delivery again now, with a fresh retry window (admin).
    Retry { delivery_id: String },
}

impl Run for DeliveriesCmd {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let session = app.session()?;
        let mut notification = crate::cmd::notification(&session)?;
        match self {
            DeliveriesCmd::List { request, state, limit } => {
                let state = state
                    .map(|s| {
                        DeliveryState::from_str_name(&format!("DELIVERY_STATE_{}", s.to_uppercase()))
                            .map(|s| s as i32)
                            .ok_or_else(|| usage(format!("unknown delivery state {s:?}")))
                    })
                    .transpose()?;
                let mut notes = Vec::new();
                let mut page_token = String::new();
                loop {
                    let page = notification
                        .list_notifications(ListNotificationsRequest {
                            request_id: request.clone().unwrap_or_default(),
                            page_size: 500,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    notes.extend(page.notifications);
                    if (limit > 0 && notes.len() >= limit) || page.next_page_token.is_empty() {
                        break;
                    }
                    page_token = page.next_page_token;
                }
                if limit > 0 {
                    notes.truncate(limit);
                }
                let rows: Vec<_> = notes
                    .iter()
                    .flat_map(|n| n.deliveries.iter().map(move |d| (n, d)))
                    .filter(|(_, d)| state.is_none_or(|s| d.state == s))
                    .collect();
                let value = json!({"deliveries": rows.iter().map(|(n, d)| json!({
                    "id": d.id, "notification_id": n.id, "kind": name::<NotificationKind>(n.kind), "request_id": n.request_id,
                    "audience": name::<Audience>(d.audience), "channel": name::<Channel>(d.channel), "endpoint": d.endpoint,
                    "state": name::<DeliveryState>(d.state), "attempts": d.attempts, "delivered_at": ts_json(&d.delivered_at),
                    "next_attempt_at": ts_json(&d.next_attempt_at), "last_error": d.last_error,
                })).collect::<Vec<_>>()});
                app.out.emit(&value, || {
                    let mut t = Table::new(&[
                        "DELIVERY",
                        "KIND",
                        "REQUEST",
                        "AUDIENCE",
                        "CHANNEL",
                        "STATE",
                        "TRIES",
                        "NEXT",
                        "LAST ERROR",
                    ]);
                    for (n, d) in &rows {
                        t.row(vec![
                            d.id.clone(),
                            name::<NotificationKind>(n.kind).to_owned(),
                            n.request_id.clone(),
                            name::<Audience>(d.audience).to_owned(),
                            name::<Channel>(d.channel).to_owned(),
                            app.out.status(name::<DeliveryState>(d.state)),
                            d.attempts.to_string(),
                            ts_local(&d.next_attempt_at),
                            clip(&d.last_error, 40),
                        ]);
                    }
                    t.print(&app.out);
                })
            }
            DeliveriesCmd::Retry { delivery_id } => {
                let d = notification.retry_delivery(RetryDeliveryRequest { delivery_id }).await?.into_inner();
                let value = json!({"id": d.id, "state": name::<DeliveryState>(d.state), "next_attempt_at": ts_json(&d.next_attempt_at)});
                app.out.emit(&value, || {
                    println!(
                        "delivery {} is {}, next attempt {}",
                        d.id,
                        app.out.status(name::<DeliveryState>(d.state)),
                        ts_local(&d.next_attempt_at)
                    )
                })
            }
        }
    }
}
