//! `WatchRequests`: a server stream of the agency's status changes, resumable from a cursor.
//!
//! The cursor is the agency's event sequence number, which becomes visible in order (see
//! `record_event`), so resuming from the last cursor received neither misses nor repeats one.

use std::pin::Pin;
use std::time::Duration;

use crs_platform::auth::Principal;
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
    pub(crate) async fn watch(&self, principal: Principal, req: WatchRequestsRequest) -> Result<UpdateStream> {
        let agency = self.calling_agency(&principal).await?;
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
            loop {
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
