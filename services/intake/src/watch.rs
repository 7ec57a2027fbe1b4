//! `WatchRequests`: a server stream of the agency's status changes, resumable from a cursor.
//!
//! The cursor is the position of the last event sent, in commit order (see `crate::events`), so
//! resuming from the last cursor received neither misses nor repeats one. Cursors given out
//! before that order existed (the agency's own event numbers) still resume where they were.
//!
//! A stream lives only as long as its caller may: each turn it checks the token's expiry, the
//! revocation list and (every few seconds) the agency's status, and ends with UNAUTHENTICATED or
//! PERMISSION_DENIED when one fails, so a revoked token or a suspended agency stops receiving
//! within about a second. An agency holds at most `limits.max_watch_streams_per_agency` streams
//! on one replica.

use std::pin::Pin;
use std::time::Duration;

use crs_platform::auth::{Principal, Verified};
use crs_platform::time::timestamp_from_millis;
use crs_proto::intake::{RequestUpdate, WatchRequestsRequest};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tonic::Status;

use crate::entities::{agency, status_event};
use crate::error::IntakeError;
use crate::events::{self, Position};
use crate::service::{Intake, Result};

/// Events sent per database read.
const BATCH: u64 = 100;
/// Safety-net poll for events committed by another intake replica.
const POLL: Duration = Duration::from_millis(500);

type UpdateStream = Pin<Box<dyn futures::Stream<Item = std::result::Result<RequestUpdate, Status>> + Send>>;

impl Intake {
    pub(crate) async fn watch(
        &self,
        principal: Principal,
        token: Verified,
        req: WatchRequestsRequest,
    ) -> Result<UpdateStream> {
        let agency = self.calling_agency(&principal).await?;
        let slot = StreamSlot::take(&self.watchers, &agency.id, self.limits.max_watch_streams_per_agency).ok_or_else(
            || IntakeError::TooManyStreams { agency: agency.id.clone(), max: self.limits.max_watch_streams_per_agency },
        )?;
        let mut position = self.start_position(&agency, &req.cursor).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(BATCH as usize);
        let this = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut agency_checked = tokio::time::Instant::now();
            loop {
                if let Err(status) = this.still_authorised(&token, &agency.id, &mut agency_checked).await {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                // Register for the wake-up before reading, so a commit in between is not missed.
                let woken = this.events.notified();
                let batch = this.events_after(&agency.id, position).await;
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(error = %e, "watch stream cannot read events");
                        let _ =
                            tx.send(Err(Status::unavailable("cannot read events; resume from the last cursor"))).await;
                        return;
                    }
                };
                let full = batch.len() as u64 == BATCH;
                for event in batch {
                    position = events::position_of(&event);
                    let update = RequestUpdate {
                        cursor: events::cursor(position),
                        request_id: event.request_id,
                        status: event.status,
                        occurred_at: Some(timestamp_from_millis(event.occurred_at)),
                        note: event.note,
                    };
                    if tx.send(Ok(update)).await.is_err() {
                        return; // the client went away
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    _ = woken => {},
                    _ = tokio::time::sleep(POLL) => {},
                    _ = this.stopping.cancelled() => return,
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

/// How often a stream re-reads its agency's status.
const AGENCY_RECHECK: Duration = Duration::from_secs(3);

impl Intake {
    /// Where a stream starts: after the event its cursor names, or for an empty cursor after
    /// every event already final (so updates from now on, none missed).
    async fn start_position(&self, agency: &agency::Model, cursor: &str) -> Result<Position> {
        let not_ours = || IntakeError::invalid("cursor", "is not a cursor this stream gave out");
        let newest = status_event::Entity::find()
            .select_only()
            .column_as(status_event::Column::Seq.max(), "last")
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await?
            .flatten()
            .unwrap_or(0);
        if cursor.is_empty() {
            return Ok(Position::after_final(events::horizon(&self.db).await?, newest));
        }
        if let Some(position) = events::parse_cursor(cursor) {
            return if position.seq <= newest { Ok(position) } else { Err(not_ours()) };
        }
        // A cursor given out before events were ordered by transaction: the agency's own number.
        let legacy: i64 = cursor.parse().map_err(|_| not_ours())?;
        if legacy == 0 {
            return Ok(Position { txid: 0, seq: 0 });
        }
        let event = status_event::Entity::find()
            .filter(status_event::Column::AgencyId.eq(agency.id.clone()))
            .filter(status_event::Column::AgencySeq.eq(legacy))
            .one(&self.db)
            .await?
            .ok_or_else(not_ours)?;
        Ok(events::position_of(&event))
    }

    /// The agency's next events after `position`, in commit order, those of finished
    /// transactions only (see `crate::events`).
    async fn events_after(
        &self,
        agency_id: &str,
        position: Position,
    ) -> std::result::Result<Vec<status_event::Model>, sea_orm::DbErr> {
        let horizon = events::horizon(&self.db).await?;
        status_event::Entity::find()
            .filter(status_event::Column::AgencyId.eq(agency_id))
            .filter(events::readable_after(status_event::Column::Txid, status_event::Column::Seq, position, horizon))
            .order_by_asc(status_event::Column::Txid)
            .order_by_asc(status_event::Column::Seq)
            .limit(BATCH)
            .all(&self.db)
            .await
    }

    /// Whether the stream's caller may still receive: the token unexpired and unrevoked, the
    /// agency active.
    async fn still_authorised(
        &self,
        token: &Verified,
        agency_id: &str,
        agency_checked: &mut tokio::time::Instant,
    ) -> std::result::Result<(), Status> {
        let now = crs_platform::time::now_millis() / 1000;
        if now > token.expires_at + crs_platform::auth::LEEWAY_SECS as i64 {
            return Err(Status::unauthenticated("the token expired; reconnect with a fresh one from the last cursor"));
        }
        if self.revocations.is_revoked(&token.token_id, &token.principal.subject(), token.issued_at) {
            return Err(Status::unauthenticated("the token was revoked"));
        }
        if agency_checked.elapsed() >= AGENCY_RECHECK {
            *agency_checked = tokio::time::Instant::now();
            let suspended = crate::entities::agency::Entity::find_by_id(agency_id.to_owned())
                .one(&self.db)
                .await
                .ok()
                .flatten()
                .is_none_or(|a| a.status != crs_proto::intake::AgencyStatus::Active as i32);
            if suspended {
                return Err(Status::permission_denied(format!("agency {agency_id} is suspended")));
            }
        }
        Ok(())
    }
}

/// One of an agency's stream slots on this replica, given back when the stream ends.
pub(crate) struct StreamSlot {
    watchers: Watchers,
    agency: String,
}

/// Open streams per agency on this replica.
pub(crate) type Watchers = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>;

impl StreamSlot {
    fn take(watchers: &Watchers, agency: &str, max: usize) -> Option<StreamSlot> {
        let mut open = watchers.lock().expect("watchers lock");
        let n = open.entry(agency.to_owned()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamSlot { watchers: watchers.clone(), agency: agency.to_owned() })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.watchers.lock().expect("watchers lock");
        if let Some(n) = open.get_mut(&self.agency) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.agency);
            }
        }
    }
}
