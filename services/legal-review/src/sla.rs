//! What a firing SLA threshold does to a case: a warning tells on-call; a breach also escalates
//! the case to senior reviewers and tells the agency's projection. Both travel through the
//! outbox in the firing's transaction, continuing the case's trace.

use crs_platform::outbox::Outbox;
use crs_platform::time::timestamp_from_millis;
use crs_proto::common::{RequestStatus, SlaDeadline, Submission};
use crs_proto::intake::UpdateStatusRequest;
use crs_proto::notification::{NotificationKind, NotifyRequest};
use crs_timers::Firing;
use crs_timers::sweeper::FiringHandler;
use prost::Message;
use sea_orm::{ActiveModelTrait, DatabaseTransaction, EntityTrait, Set};
use tracing::Instrument;

use crate::entities::case;
use crate::relay;

/// Queue of cases whose deadline passed: senior reviewers work it.
pub const ESCALATED_QUEUE: &str = "escalated";

pub struct SlaHandler {
    pub outbox: Outbox,
}

#[async_trait::async_trait]
impl FiringHandler for SlaHandler {
    async fn on_firing(&self, txn: &DatabaseTransaction, firing: &Firing) -> anyhow::Result<()> {
        // The firing is a span of the case's trace; what it sends continues from it.
        let span = tracing::info_span!(
            "sla threshold fired",
            otel.name = if firing.is_breach() { "sla.breach" } else { "sla.warning" },
            case_id = %firing.case_id,
            sla.threshold_percent = firing.threshold,
            sla.lateness_ms = firing.lateness_ms(),
        );
        crs_platform::telemetry::continue_stored_trace(&span, firing.trace_context.as_deref());
        self.act(txn, firing).instrument(span).await
    }
}

impl SlaHandler {
    async fn act(&self, txn: &DatabaseTransaction, firing: &Firing) -> anyhow::Result<()> {
        let Some(row) = case::Entity::find_by_id(firing.case_id.clone()).one(txn).await? else {
            anyhow::bail!("no case {} for its clock", firing.case_id);
        };
        let submission = Submission::decode(row.submission.as_slice())?;
        let deadline = SlaDeadline::decode(row.deadline.as_slice()).ok();
        let trace = crs_platform::telemetry::current_traceparent();
        let kind = if firing.is_breach() { NotificationKind::SlaBreach } else { NotificationKind::SlaWarning };
        let message = if firing.is_breach() {
            format!("SLA deadline passed for case {}; escalated to senior reviewers", row.id)
        } else {
            format!("{} % of the SLA budget used for case {}", firing.threshold, row.id)
        };
        self.outbox
            .enqueue_in_trace(
                txn,
                relay::NOTIFY,
                &NotifyRequest {
                    kind: kind as i32,
                    submission: Some(submission),
                    deadline: deadline.clone(),
                    message: message.clone(),
                    sla_threshold_percent: firing.threshold,
                    ..Default::default()
                },
                trace.clone(),
            )
            .await?;
        let status = RequestStatus::try_from(row.status).unwrap_or_default();
        if firing.is_breach() && matches!(status, RequestStatus::Triaged | RequestStatus::InReview) {
            let mut active: case::ActiveModel = row.clone().into();
            active.status = Set(RequestStatus::Escalated as i32);
            active.queue = Set(ESCALATED_QUEUE.into());
            active.updated_at = Set(firing.fired_at);
            active.update(txn).await?;
            self.outbox
                .enqueue_in_trace(
                    txn,
                    relay::STATUS,
                    &UpdateStatusRequest {
                        request_id: row.id.clone(),
                        status: RequestStatus::Escalated as i32,
                        deadline,
                        note: message,
                        occurred_at: Some(timestamp_from_millis(firing.fired_at)),
                        ..Default::default()
                    },
                    trace,
                )
                .await?;
        }
        Ok(())
    }
}
