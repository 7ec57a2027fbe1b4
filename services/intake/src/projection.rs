//! Intake's projection of each request's status, kept current by legal review, the one owner of
//! a request's status once triaged. Each update carries the case's version; an update no newer
//! than the one applied changes nothing, so hand-offs relayed out of order never move the
//! agency's view back.

use crs_platform::shared_txn;
use crs_platform::time::{millis_from_timestamp, now_millis};
use crs_proto::common::RequestStatus;
use crs_proto::intake::{UpdateStatusRequest, UpdateStatusResponse};
use prost::Message;
use sea_orm::{ActiveModelTrait, DatabaseTransaction, EntityTrait, QuerySelect, Set};

use crate::entities::{request, request_item};
use crate::error::IntakeError;
use crate::events::record_events;
use crate::service::{Intake, Result};

/// What a status update did.
pub(crate) enum Projected {
    /// Its event was applied before.
    Replayed,
    /// The projected status is as new or newer.
    Stale { request_id: String },
    Applied {
        request_id: String,
        version: u64,
        /// The status event for the agency's history, if the status changed: written with
        /// those of the updates sharing its transaction ([`record_deferred_events`]).
        event: Option<Box<(request::Model, RequestStatus, String)>>,
    },
}

/// Writes the status events the updates of one transaction left, in one statement, in the
/// order of the updates. Nothing in that transaction reads the history back.
pub(crate) fn record_deferred_events<'t>(
    txn: &'t DatabaseTransaction,
    updates: &'t mut [Projected],
) -> futures::future::BoxFuture<'t, Result<()>> {
    let events: Vec<(request::Model, RequestStatus, String)> = updates
        .iter_mut()
        .filter_map(|u| match u {
            Projected::Applied { event, .. } => event.take().map(|e| *e),
            _ => None,
        })
        .collect();
    Box::pin(async move {
        let events: Vec<_> = events.iter().map(|(row, status, note)| (row, *status, note.as_str())).collect();
        Ok(record_events(txn, &events).await?)
    })
}

impl Intake {
    pub(crate) async fn update_status(&self, req: UpdateStatusRequest) -> Result<UpdateStatusResponse> {
        if req.event_id.is_empty() {
            return Err(IntakeError::invalid("event_id", "is required"));
        }
        let status = crs_proto::convert::status(req.status)
            .ok_or_else(|| IntakeError::invalid("status", "must be a known status"))?;
        let this = self.clone();
        let projected = self
            .status_updates
            .run(shared_txn::handoff(req.event_id.clone(), move |txn, first_time| {
                let (this, req) = (this.clone(), req.clone());
                Box::pin(async move { this.project_status(txn, first_time, status, &req).await })
            }))
            .await?;
        match projected {
            Projected::Replayed => Ok(UpdateStatusResponse { applied: false }),
            Projected::Stale { request_id } => {
                tracing::info!(request_id = %request_id, status = status.name(), "stale status update ignored");
                Ok(UpdateStatusResponse { applied: false })
            }
            Projected::Applied { request_id, version, .. } => {
                self.events.notify_waiters();
                tracing::info!(request_id = %request_id, status = status.name(), version, "status updated");
                Ok(UpdateStatusResponse { applied: true })
            }
        }
    }

    /// Applies a status update inside `txn` (its status event is left to be written before the
    /// commit), unless it was seen before (not `first_time`) or is
    /// no newer than the status already projected.
    async fn project_status(
        &self,
        txn: &DatabaseTransaction,
        first_time: bool,
        status: crs_domain::Status,
        req: &UpdateStatusRequest,
    ) -> Result<Projected> {
        if !first_time {
            return Ok(Projected::Replayed);
        }
        let row = request::Entity::find_by_id(req.request_id.clone())
            .lock_exclusive()
            .one(txn)
            .await?
            .ok_or_else(|| IntakeError::NotFound { kind: "request", id: req.request_id.clone() })?;
        let occurred_at = req.occurred_at.as_ref().map(millis_from_timestamp).unwrap_or_else(now_millis);
        let current = crs_proto::convert::status(row.status).unwrap_or(crs_domain::Status::Received);
        let newer = match req.case_version {
            // Hand-offs written before case versions existed: a final status is never replaced
            // by an earlier step, and steps apply in the order they happened.
            0 => !current.is_final() && (status.is_final() || occurred_at >= row.status_at),
            v => v as i64 > row.status_version,
        };
        if !newer {
            return Ok(Projected::Stale { request_id: row.id });
        }
        let mut active: request::ActiveModel = row.clone().into();
        active.status = Set(req.status);
        active.status_at = Set(occurred_at);
        active.status_note = Set(req.note.clone());
        active.pending_question = Set(req.pending_question.clone());
        if req.case_version > 0 {
            active.status_version = Set(req.case_version as i64);
        }
        if let Some(deadline) = &req.deadline {
            active.deadline = Set(Some(deadline.encode_to_vec()));
        }
        active.updated_at = Set(now_millis());
        let updated = active.update(txn).await?;
        for decision in &req.item_decisions {
            if let Some(item) =
                request_item::Entity::find_by_id((row.id.clone(), decision.item_index as i32)).one(txn).await?
            {
                let mut item: request_item::ActiveModel = item.into();
                item.outcome = Set(decision.outcome);
                item.no_action_reason = Set(decision.no_action_reason);
                item.explanation = Set(decision.explanation.clone());
                item.update(txn).await?;
            }
        }
        // A step that only moves the deadline (the clock paused or resumed) is no new event.
        let event = (status != current)
            .then(|| Box::new((updated, RequestStatus::try_from(req.status).unwrap_or_default(), req.note.clone())));
        Ok(Projected::Applied { request_id: row.id, version: req.case_version, event })
    }
}
