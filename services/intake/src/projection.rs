//! Intake's projection of each request's status, kept current by legal review, the one owner of
//! a request's status once triaged. Each update carries the case's version; an update no newer
//! than the one applied changes nothing, so hand-offs relayed out of order never move the
//! agency's view back.

use crs_platform::outbox::statement;
use crs_platform::shared_txn;
use crs_platform::time::{millis_from_timestamp, now_millis};
use crs_proto::common::RequestStatus;
use crs_proto::intake::{UpdateStatusRequest, UpdateStatusResponse};
use prost::Message;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, FromQueryResult, QuerySelect, Set,
    Value,
};

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
    /// commit), unless it was seen before (not `first_time`) or is no newer than the status
    /// already projected.
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
        let occurred_at = req.occurred_at.as_ref().map(millis_from_timestamp).unwrap_or_else(now_millis);
        let versioned_on_postgres = req.case_version > 0 && txn.get_database_backend() == DbBackend::Postgres;
        let update = match versioned_on_postgres {
            true => update_if_newer(txn, req, occurred_at).await?,
            false => read_then_update(txn, status, req, occurred_at).await?,
        };
        let (updated, previous) = match update {
            Update::Applied { updated, previous } => (*updated, previous),
            Update::Stale => return Ok(Projected::Stale { request_id: req.request_id.clone() }),
            Update::NoSuchRequest => {
                return Err(IntakeError::NotFound { kind: "request", id: req.request_id.clone() });
            }
        };
        for decision in &req.item_decisions {
            if let Some(item) =
                request_item::Entity::find_by_id((updated.id.clone(), decision.item_index as i32)).one(txn).await?
            {
                let mut item: request_item::ActiveModel = item.into();
                item.outcome = Set(decision.outcome);
                item.no_action_reason = Set(decision.no_action_reason);
                item.explanation = Set(decision.explanation.clone());
                item.update(txn).await?;
            }
        }
        // A step that only moves the deadline (the clock paused or resumed) is no new event.
        let event = (status != previous)
            .then(|| Box::new((updated, RequestStatus::try_from(req.status).unwrap_or_default(), req.note.clone())));
        Ok(Projected::Applied { request_id: req.request_id.clone(), version: req.case_version, event })
    }
}

/// What became of an update's row.
enum Update {
    /// Updated; `previous` is the status it replaced.
    Applied {
        updated: Box<request::Model>,
        previous: crs_domain::Status,
    },
    /// The status projected is as new or newer.
    Stale,
    NoSuchRequest,
}

fn status_of(row_status: i32) -> crs_domain::Status {
    crs_proto::convert::status(row_status).unwrap_or(crs_domain::Status::Received)
}

/// A versioned update on PostgreSQL, in one statement: the request's row is locked, compared
/// with the update's version, updated if older, and returned with the status it had (a self-join
/// on the locked row, since `RETURNING` sees only the new one).
async fn update_if_newer(txn: &DatabaseTransaction, req: &UpdateStatusRequest, occurred_at: i64) -> Result<Update> {
    let deadline = Value::Bytes(req.deadline.as_ref().map(|d| d.encode_to_vec()));
    let updated = txn
        .query_one_raw(statement(
            DbBackend::Postgres,
            "UPDATE requests AS r SET status = $1, status_at = $2, status_note = $3, pending_question = $4, \
               status_version = $5, deadline = COALESCE($6, r.deadline), updated_at = $7 \
             FROM (SELECT id, status FROM requests WHERE id = $8 FOR UPDATE) AS previous \
             WHERE r.id = previous.id AND r.status_version < $5 \
             RETURNING r.*, previous.status AS previous_status",
            vec![
                req.status.into(),
                occurred_at.into(),
                req.note.clone().into(),
                req.pending_question.clone().into(),
                (req.case_version as i64).into(),
                deadline,
                now_millis().into(),
                req.request_id.clone().into(),
            ],
        ))
        .await?;
    if let Some(row) = updated {
        let previous = status_of(row.try_get("", "previous_status")?);
        return Ok(Update::Applied { updated: Box::new(request::Model::from_query_result(&row, "")?), previous });
    }
    // Rarely: no row was updated. Stale, or no such request.
    let exists = request::Entity::find_by_id(req.request_id.clone()).select_only().column(request::Column::Id);
    Ok(match exists.into_tuple::<String>().one(txn).await? {
        Some(_) => Update::Stale,
        None => Update::NoSuchRequest,
    })
}

/// Any update on any backend: the row read under its lock, compared, then updated.
async fn read_then_update(
    txn: &DatabaseTransaction,
    status: crs_domain::Status,
    req: &UpdateStatusRequest,
    occurred_at: i64,
) -> Result<Update> {
    let Some(row) = request::Entity::find_by_id(req.request_id.clone()).lock_exclusive().one(txn).await? else {
        return Ok(Update::NoSuchRequest);
    };
    let current = status_of(row.status);
    let newer = match req.case_version {
        // Hand-offs written before case versions existed: a final status is never replaced
        // by an earlier step, and steps apply in the order they happened.
        0 => !current.is_final() && (status.is_final() || occurred_at >= row.status_at),
        v => v as i64 > row.status_version,
    };
    if !newer {
        return Ok(Update::Stale);
    }
    let mut active: request::ActiveModel = row.into();
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
    Ok(Update::Applied { updated: Box::new(active.update(txn).await?), previous: current })
}
