//! `Subscribe`: a server stream of one audience's messages for internal consumers, resumable
//! from a cursor with no gap and no repeat.
//!
//! A message published on the stream gets the next position of one counter, taken under that
//! counter's row lock in the transaction that records the message ([`next_position`]): a second
//! transaction waits for the first to commit before taking a number, so positions become visible
//! in the order they are given, and a reader that has seen position n has seen every position
//! before it. The cursor names the position of the last event sent.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crs_platform::auth::{Principal, Role};
use crs_platform::outbox::statement;
use crs_platform::paging;
use crs_platform::time::timestamp_from_millis;
use crs_proto::ShortName;
use crs_proto::notification::{Audience, NotificationEvent, SubscribeRequest};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::entities::message;
use crate::error::NotificationError;

/// Events sent per database read.
const BATCH: u64 = 100;
/// Safety-net poll for events committed by another replica.
const POLL: Duration = Duration::from_millis(500);

pub type EventStream = Pin<Box<dyn futures::Stream<Item = Result<NotificationEvent, Status>> + Send>>;

/// The next stream position, taken inside the transaction that publishes (see the module docs).
pub async fn next_position<C: ConnectionTrait>(conn: &C) -> Result<i64, DbErr> {
    let stmt = statement(
        conn.get_database_backend(),
        "UPDATE sequences SET last = last + 1 WHERE name = 'stream' RETURNING last",
        vec![],
    );
    conn.query_one_raw(stmt)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the stream's sequence row".into()))?
        .try_get("", "last")
}

#[derive(Clone)]
pub struct Stream {
    db: DatabaseConnection,
    published: Arc<Notify>,
    stopping: CancellationToken,
}

impl Stream {
    pub fn new(db: DatabaseConnection, stopping: CancellationToken) -> Stream {
        Stream { db, published: Arc::new(Notify::new()), stopping }
    }

    /// Wakes the readers after a commit that published.
    pub fn published(&self) {
        self.published.notify_waiters();
    }

    pub async fn subscribe(
        &self,
        principal: &Principal,
        req: SubscribeRequest,
    ) -> Result<EventStream, NotificationError> {
        // Machines outside CRS read streams with a `consumer` token that can do nothing else.
        crs_platform::auth::require_role(principal, &[Role::Consumer, Role::Admin])?;
        let audience = Audience::try_from(req.audience).unwrap_or(Audience::Unspecified);
        if audience == Audience::Unspecified {
            return Err(NotificationError::invalid("audience", "must be a known audience"));
        }
        let list = audience.short_name();
        let mut cursor = match paging::decode(&req.cursor, "notification-stream", list).map_err(|_| {
            NotificationError::invalid("cursor", "is not a cursor this stream gave out for this audience")
        })? {
            Some(position) => position
                .first()
                .and_then(|p| p.parse::<i64>().ok())
                .ok_or_else(|| NotificationError::invalid("cursor", "is not a cursor this stream gave out"))?,
            None if req.from_oldest => 0,
            None => self.newest(audience).await?,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(BATCH as usize);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                // Register for the wake-up before reading, so a commit in between is not missed.
                let woken = this.published.notified();
                let batch = message::Entity::find()
                    .filter(message::Column::Audience.eq(audience as i32))
                    .filter(message::Column::StreamSeq.gt(cursor))
                    .order_by_asc(message::Column::StreamSeq)
                    .limit(BATCH)
                    .all(&this.db)
                    .await;
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(error = %e, "the notification stream cannot read its events");
                        let _ =
                            tx.send(Err(Status::unavailable("cannot read events; resume from the last cursor"))).await;
                        return;
                    }
                };
                let full = batch.len() as u64 == BATCH;
                for m in batch {
                    let Some(position) = m.stream_seq else { continue };
                    cursor = position;
                    let event = NotificationEvent {
                        cursor: paging::encode("notification-stream", list, &[&position.to_string()]),
                        notification_id: m.notification_id,
                        kind: m.kind,
                        audience: m.audience,
                        request_id: m.request_id,
                        agency_id: m.agency_id,
                        schema: m.schema,
                        payload_json: m.payload,
                        created_at: Some(timestamp_from_millis(m.created_at)),
                    };
                    if tx.send(Ok(event)).await.is_err() {
                        return; // the consumer went away
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

    /// The position of the audience's newest event (0 for none): "from now on".
    async fn newest(&self, audience: Audience) -> Result<i64, NotificationError> {
        let row = self
            .db
            .query_one_raw(statement(
                self.db.get_database_backend(),
                "SELECT MAX(stream_seq) AS newest FROM messages WHERE audience = $1",
                vec![(audience as i32).into()],
            ))
            .await?;
        Ok(row.and_then(|r| r.try_get::<Option<i64>>("", "newest").ok().flatten()).unwrap_or(0))
    }
}
