//! `WatchRequests`: a server stream of the agency's status changes, resumable from a cursor.
//!
//! The cursor is the agency's event sequence number, which becomes visible in order (see
//! `record_event`), so resuming from the last cursor received neither misses nor repeats one.
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

use crate::entities::status_event;
use crate::error::IntakeError;
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
        let mut cursor = match req.cursor.as_str() {
            // No cursor: from now on.
            "" => agency.event_seq,
            c => match c.parse::<i64>() {
                Ok(n) if (0..=agency.event_seq).contains(&n) => n,
                _ => return Err(IntakeError::invalid("cursor", "is not a cursor this stream gave out")),
            },
        };
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
                let batch = status_event::Entity::find()
                    .filter(status_event::Column::AgencyId.eq(agency.id.clone()))
                    .filter(status_event::Column::AgencySeq.gt(cursor))
                    .order_by_asc(status_event::Column::AgencySeq)
                    .limit(BATCH)
                    .all(&this.db)
                    .await;
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
                    cursor = event.agency_seq;
                    let update = RequestUpdate {
                        cursor: event.agency_seq.to_string(),
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
