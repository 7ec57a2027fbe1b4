//! What a firing SLA threshold does to a case: a warning tells on-call; a breach also escalates
//! the case to senior reviewers (ending a junior's claim) and tells intake's projection. All of
//! it, and the audit entry, is written in the firing's transaction, continuing the case's trace.

use crs_proto::notification::{NotificationKind, NotifyRequest};
use crs_timers::Firing;
use crs_timers::sweeper::FiringHandler;
use sea_orm::DatabaseTransaction;
use serde_json::json;
use tracing::Instrument;

use crate::commands::{Effects, Step};
use crate::service::LegalReview;
use crate::store;

/// The actor the audit trail names for what the SLA clock did.
const SLA_ACTOR: &str = "system:sla";

pub struct SlaHandler {
    pub review: LegalReview,
}

#[async_trait::async_trait]
impl FiringHandler for SlaHandler {
    async fn on_firing(&self, txn: &DatabaseTransaction, firing: &Firing) -> anyhow::Result<()> {
        // The firing is a span of the case's trace; what it sends continues from it.
        let span = tracing::info_span!(
            "sla threshold fired",
            otel.name = if firing.is_breach() { "sla.breach" } else { "sla.warning" },
            case_id = %firing.case_id,
            sla.threshold_percent = i64::from(firing.threshold),
            sla.lateness_ms = firing.lateness_ms(),
        );
        crs_platform::telemetry::continue_stored_trace(&span, firing.trace_context.as_deref());
        self.act(txn, firing).instrument(span).await.map_err(|e| anyhow::anyhow!("{e}"))
    }
}

impl SlaHandler {
    async fn act(&self, txn: &DatabaseTransaction, firing: &Firing) -> Result<(), crate::error::ReviewError> {
        let row = store::lock(txn, &firing.case_id).await?;
        let submission = store::submission(&row)?;
        let assessment = store::assessment(&row)?;
        let clock = crs_timers::ClockStore::load(txn, &row.id, false).await?;
        let deadline = crate::views::deadline(&assessment, clock.as_ref(), firing.fired_at);
        let (kind, action, message) = if firing.is_breach() {
            (
                NotificationKind::SlaBreach,
                "sla_breach",
                format!("SLA deadline passed for case {}; escalated to senior reviewers", row.id),
            )
        } else {
            (
                NotificationKind::SlaWarning,
                "sla_warning",
                format!("{} % of the SLA budget used for case {}", firing.threshold, row.id),
            )
        };
        self.review
            .outbox
            .send(
                txn,
                &NotifyRequest {
                    kind: kind as i32,
                    submission: Some(submission),
                    deadline,
                    message: message.clone(),
                    sla_threshold_percent: firing.threshold,
                    ..Default::default()
                },
            )
            .await?;
        let mut fx = Effects::default();
        fx.record(
            &row,
            SLA_ACTOR,
            action,
            json!({ "threshold_percent": firing.threshold, "due_at": firing.due_at, "lateness_ms": firing.lateness_ms() }),
        );
        if firing.is_breach()
            && let Ok(change) = store::to_domain(&row)?.breach()
            && !change.events.is_empty()
        {
            for ended in change.events.iter().filter_map(|e| match e {
                crs_domain::case::Event::ClaimEnded { holder } => Some(holder.clone()),
                _ => None,
            }) {
                fx.record(&row, SLA_ACTOR, "claim_ended", json!({ "holder": ended, "why": "escalated on breach" }));
            }
            self.review
                .apply(txn, Step { row: &row, change: &change, note: &message, now: firing.fired_at }, &mut fx, |_| {})
                .await?;
        }
        fx.write(txn, firing.fired_at).await?;
        Ok(())
    }
}
