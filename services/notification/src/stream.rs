//! `Subscribe`: a server stream of one audience's messages for internal consumers, resumable
//! from a cursor with no gap and no repeat.
//!
//! A message published on the stream gets a position ([`next_position`]): the id of the
//! transaction that publishes it and a number from a sequence. The stream is read in that order
//! and only below the horizon of running transactions (`crs_platform::db::commit_order`), so a
//! reader that has seen a position has seen every position before it, and publishing
//! transactions take no lock that others wait on. The cursor names the last position sent.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crs_platform::auth::{Principal, Role};
use crs_platform::db::commit_order::{self, Position};
use crs_platform::outbox::statement;
use crs_platform::paging;
use crs_platform::time::timestamp_from_millis;
use crs_proto::ShortName;
use crs_proto::notification::{Audience, NotificationEvent, SubscribeRequest};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
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

/// The next stream position, taken inside the transaction that publishes (see the module
/// docs). SQLite's one writer numbers with a counter row, in commit order.
pub async fn next_position<C: ConnectionTrait>(conn: &C) -> Result<Position, DbErr> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT nextval('stream_positions') AS last",
        _ => "UPDATE sequences SET last = last + 1 WHERE name = 'stream' RETURNING last",
    };
    let seq = conn
        .query_one_raw(statement(backend, sql, vec![]))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the stream's sequence".into()))?
        .try_get("", "last")?;
    Ok(Position { txid: commit_order::current_txid(conn).await?, seq })
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
        let not_ours =
            || NotificationError::invalid("cursor", "is not a cursor this stream gave out for this audience");
        let mut position = match paging::decode(&req.cursor, "notification-stream", list).map_err(|_| not_ours())? {
            Some(fields) => match fields.as_slice() {
                [txid, seq] => {
                    Position { txid: txid.parse().map_err(|_| not_ours())?, seq: seq.parse().map_err(|_| not_ours())? }
                }
                // A cursor given out before positions carried their transaction: those
                // messages all have transaction 0.
                [seq] => Position { txid: 0, seq: seq.parse().map_err(|_| not_ours())? },
                _ => return Err(not_ours()),
            },
            None if req.from_oldest => Position { txid: 0, seq: 0 },
            None => self.newest(audience).await?,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(BATCH as usize);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                // Register for the wake-up before reading, so a commit in between is not missed.
                let woken = this.published.notified();
                let batch = this.after(audience, position).await;
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
                    let Some(seq) = m.stream_seq else { continue };
                    position = Position { txid: m.stream_txid, seq };
                    let event = NotificationEvent {
                        cursor: paging::encode(
                            "notification-stream",
                            list,
                            &[&m.stream_txid.to_string(), &seq.to_string()],
                        ),
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

    /// The audience's next messages after `position`, in commit order, those of finished
    /// transactions only.
    async fn after(&self, audience: Audience, position: Position) -> Result<Vec<message::Model>, DbErr> {
        let horizon = commit_order::horizon(&self.db).await?;
        message::Entity::find()
            .filter(message::Column::Audience.eq(audience as i32))
            .filter(message::Column::StreamSeq.is_not_null())
            .filter(commit_order::readable_after(
                message::Column::StreamTxid,
                message::Column::StreamSeq,
                position,
                horizon,
            ))
            .order_by_asc(message::Column::StreamTxid)
            .order_by_asc(message::Column::StreamSeq)
            .limit(BATCH)
            .all(&self.db)
            .await
    }

    /// "From now on": after every message already final.
    async fn newest(&self, audience: Audience) -> Result<Position, NotificationError> {
        let row = self
            .db
            .query_one_raw(statement(
                self.db.get_database_backend(),
                "SELECT MAX(stream_seq) AS newest FROM messages WHERE audience = $1",
                vec![(audience as i32).into()],
            ))
            .await?;
        let newest = row.and_then(|r| r.try_get::<Option<i64>>("", "newest").ok().flatten()).unwrap_or(0);
        Ok(Position::after_final(commit_order::horizon(&self.db).await?, newest))
    }
}
