//! The transactional outbox, its relay, and the inbox: how every hand-off between services
//! travels.
//!
//! A producer writes its state change and an outbox row in one transaction ([`Outbox::send`] for a
//! hand-off to another service's internal RPC, whose path is the row's topic; [`Outbox::enqueue`]
//! for the service's own deferred work), then wakes the relay ([`Outbox::wake`]). The relay claims
//! due rows with a lease (on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so replicas never claim the
//! same row), hands each to the handler registered for its topic ([`route`]: a gRPC call whose
//! idempotency key is the row's id), deletes it on success, and on failure schedules a retry with
//! capped exponential backoff and jitter. A hand-off the receiver refuses for good (an invalid or
//! forbidden message, one too large to send) or that keeps failing past `outbox.max_age_secs`
//! becomes a dead letter: never dropped, no longer retried, counted (`crs_outbox_dead_letters`),
//! listed and replayed by admins ([`crate::dead_letters`]). A poison row never holds up the
//! rows behind it.
//!
//! Receivers record each event id in their inbox ([`inbox_first_time`]) in the same transaction
//! as the effect, so at-least-once delivery has exactly-once effect.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use sea_orm::sea_query::{Alias, ColumnDef, Index, Table};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::OutboxConfig;
use crate::db::arrays;
use crate::time::now_millis;

/// One claimed outbox row.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The event id: receivers use it as the idempotency key.
    pub id: String,
    pub topic: String,
    pub payload: Vec<u8>,
    pub trace_context: Option<String>,
    /// Delivery attempts so far, this one included.
    pub attempts: i32,
    pub created_at: i64,
}

impl Envelope {
    pub fn decode<M: prost::Message + Default>(&self) -> anyhow::Result<M> {
        M::decode(self.payload.as_slice()).map_err(|e| anyhow::anyhow!("undecodable {} payload: {e}", self.topic))
    }
}

/// Why a hand-off did not go through.
#[derive(Debug)]
pub enum HandoffError {
    /// Worth trying again later (the receiver is down, overloaded, or answered with an error
    /// that may pass).
    Transient(anyhow::Error),
    /// Trying again cannot help (the receiver refuses the message itself): a dead letter now.
    Permanent(anyhow::Error),
}

impl HandoffError {
    fn error(&self) -> &anyhow::Error {
        match self {
            HandoffError::Transient(e) | HandoffError::Permanent(e) => e,
        }
    }
}

impl From<anyhow::Error> for HandoffError {
    fn from(e: anyhow::Error) -> Self {
        HandoffError::Transient(e)
    }
}

impl From<tonic::Status> for HandoffError {
    /// The receiver's answer decides: a message it finds invalid, forbidden, unknown or too large
    /// will be refused again; unavailability, timeouts and internal errors may pass.
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let too_large = status.message().contains("too large") || status.message().contains("message length");
        let permanent = match status.code() {
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::DataLoss => true,
            Code::ResourceExhausted => too_large,
            _ => false,
        };
        let error = anyhow::anyhow!("{}: {}", status.code(), status.message());
        if permanent { HandoffError::Permanent(error) } else { HandoffError::Transient(error) }
    }
}

/// Delivers one envelope.
pub type Handler = Arc<dyn Fn(Envelope) -> BoxFuture<'static, Result<(), HandoffError>> + Send + Sync>;

/// Wraps an async closure as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Envelope) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandoffError>> + Send + 'static,
{
    Arc::new(move |e| Box::pin(f(e)))
}

/// The relay's route for hand-offs of `M`: decodes the row, stamps the row's id as its
/// `event_id`, and hands it to `call` (the gRPC call to the receiving service's internal RPC).
/// The topic is `M`'s RPC path, the same one [`Outbox::send`] writes.
pub fn route<M, F, Fut>(call: F) -> (&'static str, Handler)
where
    M: crs_proto::InternalCall,
    F: Fn(M) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    let call = Arc::new(call);
    let handler = handler(move |e: Envelope| {
        let call = call.clone();
        async move {
            // A row that does not decode never will.
            let mut message: M = e.decode().map_err(HandoffError::Permanent)?;
            message.set_event_id(e.id);
            call(message).await?;
            Ok(())
        }
    });
    (M::METHOD, handler)
}

/// Hand-offs gathered to be written with one statement ([`OutboxBatch::write`]), for a
/// transaction that stores many changes at once (intake's group commit). Each row keeps the
/// trace context current when it was added.
#[derive(Debug, Default, Clone)]
pub struct OutboxBatch {
    rows: Vec<PendingRow>,
}

#[derive(Debug, Clone)]
struct PendingRow {
    id: String,
    topic: &'static str,
    payload: Vec<u8>,
    traceparent: Option<String>,
}

/// Rows per `INSERT`: 6 values each keeps a statement well inside both backends' bound on
/// parameters (SQLite's is 32,766).
const BATCH_INSERT_ROWS: usize = 1000;

impl OutboxBatch {
    /// Adds a hand-off of `message` to its internal RPC; returns its event id.
    pub fn send<M: crs_proto::InternalCall>(&mut self, message: &M) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        self.rows.push(PendingRow {
            id: id.clone(),
            topic: M::METHOD,
            payload: message.encode_to_vec(),
            traceparent: crate::telemetry::current_traceparent(),
        });
        id
    }

    /// Moves `other`'s rows into this batch.
    pub fn extend(&mut self, other: OutboxBatch) {
        self.rows.extend(other.rows);
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Inserts every row within the caller's transaction: on PostgreSQL in one statement whose
    /// text never changes ([`crate::db::arrays`]), on SQLite a thousand rows per statement.
    pub async fn write<C: ConnectionTrait>(self, conn: &C) -> Result<(), DbErr> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let backend = conn.get_database_backend();
        let now = now_millis();
        let span = || crate::db::span(conn, "outbox enqueue batch");
        if backend == DbBackend::Postgres {
            let rows = self.rows;
            // No row is without a trace context's place: '' stands for none.
            let values = vec![
                now.into(),
                arrays::texts(rows.iter().map(|r| r.id.clone())),
                arrays::texts(rows.iter().map(|r| r.topic)),
                arrays::texts(rows.iter().map(|r| r.traceparent.clone().unwrap_or_default())),
                arrays::bytes(rows.into_iter().map(|r| r.payload)),
            ];
            conn.execute_raw(Statement::from_sql_and_values(backend, INSERT_OUTBOX_ROWS, values))
                .instrument(span())
                .await?;
            return Ok(());
        }
        let mut rows = self.rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<PendingRow> = rows.by_ref().take(BATCH_INSERT_ROWS).collect();
            let mut values = Vec::with_capacity(chunk.len() * 4 + 1);
            values.push(Value::from(now));
            let tuples: Vec<String> = chunk
                .into_iter()
                .enumerate()
                .map(|(i, row)| {
                    let n = 2 + i * 4;
                    values.push(row.id.into());
                    values.push(row.topic.into());
                    values.push(Value::Bytes(Some(row.payload)));
                    values.push(row.traceparent.into());
                    format!("(${n}, ${}, ${}, ${}, $1, $1, 0)", n + 1, n + 2, n + 3)
                })
                .collect();
            let sql = format!(
                "INSERT INTO outbox (id, topic, payload, trace_context, created_at, available_at, attempts) VALUES {}",
                tuples.join(", ")
            );
            conn.execute_raw(statement(backend, &sql, values)).instrument(span()).await?;
        }
        Ok(())
    }
}

/// A batch of outbox rows on PostgreSQL: `$1` the time, then the rows' ids, topics, trace
/// contexts ('' for none) and payloads as arrays.
const INSERT_OUTBOX_ROWS: &str = "INSERT INTO outbox (id, topic, payload, trace_context, created_at, available_at, attempts) \
     SELECT id, topic, payload, NULLIF(trace_context, ''), $1, $1, 0 \
     FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bytea[]) AS batch (id, topic, trace_context, payload)";

/// The producer's side: enqueue inside a transaction, wake after commit.
#[derive(Clone, Debug)]
pub struct Outbox {
    db: DatabaseConnection,
    /// The relay's connections (the main pool's unless given its own).
    relay_db: DatabaseConnection,
    /// Wakes this process's relay.
    wake: Arc<Notify>,
    /// Asks [`Outbox::announce_commits`] to wake the other replicas' relays.
    announce: Arc<Notify>,
    /// This process's name in wake-ups, so its relay ignores its own.
    replica: Arc<str>,
}

impl Outbox {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db: db.clone(),
            relay_db: db,
            wake: Arc::new(Notify::new()),
            announce: Arc::new(Notify::new()),
            replica: uuid::Uuid::new_v4().to_string().into(),
        }
    }

    /// The service's main pool, where hand-offs are written.
    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Has the relay claim, remove and reschedule rows on connections of its own, so it keeps
    /// forwarding while the service's requests hold every connection of the main pool.
    pub fn with_relay_connections(self, relay_db: DatabaseConnection) -> Self {
        Self { relay_db, ..self }
    }

    /// Adds a hand-off of `message` to its internal RPC within the caller's transaction; returns
    /// its event id. The current trace context is stored with it so the delivery continues the trace.
    pub async fn send<C: ConnectionTrait, M: crs_proto::InternalCall>(
        &self,
        conn: &C,
        message: &M,
    ) -> Result<String, DbErr> {
        self.enqueue(conn, M::METHOD, message).await
    }

    /// Like [`Outbox::send`] with the event id chosen by the caller, so that sending the same
    /// event again (a retried command) hands off one event: a row still pending is not
    /// duplicated, and the receiver's inbox drops a repeat of one already delivered.
    pub async fn send_as<C: ConnectionTrait, M: crs_proto::InternalCall>(
        &self,
        conn: &C,
        event_id: &str,
        message: &M,
    ) -> Result<(), DbErr> {
        let now = now_millis();
        let stmt = statement(
            conn.get_database_backend(),
            "INSERT INTO outbox (id, topic, payload, trace_context, created_at, available_at, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, 0) ON CONFLICT (id) DO NOTHING",
            vec![
                event_id.into(),
                M::METHOD.into(),
                Value::Bytes(Some(message.encode_to_vec())),
                crate::telemetry::current_traceparent().into(),
                now.into(),
                now.into(),
            ],
        );
        conn.execute_raw(stmt).instrument(crate::db::span(conn, "outbox enqueue")).await?;
        Ok(())
    }

    /// Like [`Outbox::send`], continuing a stored trace (e.g. a case's, when its SLA timer fires).
    pub async fn send_in_trace<C: ConnectionTrait, M: crs_proto::InternalCall>(
        &self,
        conn: &C,
        message: &M,
        traceparent: Option<String>,
    ) -> Result<String, DbErr> {
        self.enqueue_in_trace(conn, M::METHOD, message, traceparent).await
    }

    /// Adds work for this service's own relay under `topic` (e.g. a webhook delivery) within the
    /// caller's transaction; returns its id.
    pub async fn enqueue<C: ConnectionTrait>(
        &self,
        conn: &C,
        topic: &str,
        message: &impl prost::Message,
    ) -> Result<String, DbErr> {
        self.enqueue_in_trace(conn, topic, message, crate::telemetry::current_traceparent()).await
    }

    /// Like [`Outbox::enqueue`], continuing a stored trace.
    pub async fn enqueue_in_trace<C: ConnectionTrait>(
        &self,
        conn: &C,
        topic: &str,
        message: &impl prost::Message,
        traceparent: Option<String>,
    ) -> Result<String, DbErr> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_millis();
        let stmt = statement(
            conn.get_database_backend(),
            "INSERT INTO outbox (id, topic, payload, trace_context, created_at, available_at, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, 0)",
            vec![
                id.clone().into(),
                topic.into(),
                Value::Bytes(Some(message.encode_to_vec())),
                traceparent.into(),
                now.into(),
                now.into(),
            ],
        );
        conn.execute_raw(stmt).instrument(crate::db::span(conn, "outbox enqueue")).await?;
        Ok(id)
    }

    /// Tells the relay that a commit added work, so it does not wait for its poll; on PostgreSQL
    /// the relays of the other replicas are told too (see [`Outbox::announce_commits`]).
    pub fn wake(&self) {
        self.wake.notify_one();
        self.announce.notify_one();
    }

    /// Tells the other replicas' relays, after [`Outbox::wake`], that this process's commits
    /// added work (PostgreSQL `NOTIFY` on the channel their relays `LISTEN` on), at most once per
    /// [`ANNOUNCE_INTERVAL`]. The relay runs it; a process that only produces may run it alone.
    pub async fn announce_commits(self, shutdown: CancellationToken) {
        let backend = self.relay_db.get_database_backend();
        if backend != DbBackend::Postgres {
            return;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.announce.notified() => {},
            }
            let stmt = statement(
                backend,
                "SELECT pg_notify($1, $2)",
                vec![WAKE_CHANNEL.into(), self.replica.to_string().into()],
            );
            if let Err(e) = self.relay_db.execute_raw(stmt).await {
                tracing::debug!(error = %e, "could not wake the other replicas' relays; they poll");
            }
            tokio::time::sleep(ANNOUNCE_INTERVAL).await;
        }
    }

    /// Rows not yet delivered, and the age in milliseconds of the oldest (outbox lag).
    pub async fn backlog(&self) -> Result<(i64, i64), DbErr> {
        let stmt = statement(
            self.db.get_database_backend(),
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE dead_at IS NULL",
            vec![],
        );
        // On the relay's connections: the gauge keeps reading while requests hold the pool.
        let row = self.relay_db.query_one_raw(stmt).await?;
        let (n, oldest) = match row {
            Some(r) => (r.try_get::<i64>("", "n")?, r.try_get::<Option<i64>>("", "oldest")?),
            None => (0, None),
        };
        Ok((n, oldest.map(|o| now_millis() - o).unwrap_or(0)))
    }

    /// The relay delivering this outbox's rows through `handlers` (topic and handler, as
    /// [`route`] makes them).
    pub fn relay(
        &self,
        service: &str,
        cfg: OutboxConfig,
        handlers: impl IntoIterator<Item = (&'static str, Handler)>,
    ) -> Relay {
        Relay {
            service: service.to_owned(),
            outbox: self.clone(),
            db: self.relay_db.clone(),
            cfg,
            handlers: Arc::new(handlers.into_iter().collect()),
            turned_over: AtomicU64::new(0),
        }
    }
}

/// The PostgreSQL channel on which relays of one service's replicas wake each other.
const WAKE_CHANNEL: &str = "crs_outbox";

/// The shortest time between two announcements of new work to the other replicas: under load
/// one `NOTIFY` (a transaction of its own) stands for every commit of the interval. A replica's
/// own relay is woken at once; the others help within this.
const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(50);

/// How often a relay on PostgreSQL looks whether to vacuum its outbox ([`Relay::vacuum`]).
const VACUUM_INTERVAL: Duration = Duration::from_secs(2);

/// Rows a relay claims or removes before it vacuums its outbox: at a few hundred hand-offs a second,
/// every few seconds; an idle outbox is left alone.
pub const VACUUM_AFTER_ROWS: u64 = 1_000;

/// Claims and delivers outbox rows until shut down.
pub struct Relay {
    /// The service this relay delivers for (a metrics label).
    service: String,
    /// The outbox it delivers (for its backlog and its announcements).
    outbox: Outbox,
    /// The relay's connections (`outbox.relay_db`).
    db: DatabaseConnection,
    cfg: OutboxConfig,
    handlers: Arc<HashMap<&'static str, Handler>>,
    /// Rows claimed or removed since the relay last vacuumed its outbox: each leaves a dead
    /// version behind (see [`Relay::vacuum`]).
    turned_over: AtomicU64,
}

impl Relay {
    /// Claims a batch whenever fewer than `outbox.batches_in_flight` are being delivered, so one
    /// slow receiver does not hold up the rows behind it; wakes on commits of this process and,
    /// on PostgreSQL, on those of the other replicas (`LISTEN`/`NOTIFY`), and polls besides.
    pub async fn run(self, shutdown: CancellationToken) {
        let relay = Arc::new(self);
        let mut helpers = tokio::task::JoinSet::new();
        if relay.db.get_database_backend() == DbBackend::Postgres {
            helpers.spawn(relay.clone().listen(shutdown.clone()));
            helpers.spawn(relay.outbox.clone().announce_commits(shutdown.clone()));
            helpers.spawn(relay.clone().vacuum(shutdown.clone()));
        }
        let poll = Duration::from_millis(relay.cfg.poll_interval_ms);
        let max_in_flight = relay.cfg.batches_in_flight.max(1) as usize;
        let mut in_flight: tokio::task::JoinSet<Option<(i64, i64)>> = tokio::task::JoinSet::new();
        // When failed rows of the batches delivered so far fall due again, earliest first: each
        // batch's earliest and latest retry (the rows between are taken by one or the other).
        // Keeping only the earliest of all would leave a later one, reported before the earliest
        // passed, to the next poll. Times passed are dropped before each claim, which takes
        // every row then due, and when the wait for them ends.
        let mut retries: BinaryHeap<Reverse<i64>> = BinaryHeap::new();
        let drop_passed = |retries: &mut BinaryHeap<Reverse<i64>>| {
            let now = now_millis();
            while retries.peek().is_some_and(|Reverse(at)| *at <= now) {
                retries.pop();
            }
        };
        let mut last_report = tokio::time::Instant::now() - Duration::from_secs(60);
        // Whether a claim may find rows: at start, after a wake-up, a poll or a retry's time,
        // and while claims come back full. A batch that finishes is no reason by itself: the
        // claim that took it found every row then due, and what was committed since woke the
        // relay. Claiming after each batch anyway doubled the claims of a lightly loaded relay,
        // each a write, for nothing.
        let mut due = true;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if last_report.elapsed() >= Duration::from_secs(5) {
                last_report = tokio::time::Instant::now();
                relay.report_lag().await;
            }
            if due && in_flight.len() < max_in_flight {
                due = false;
                drop_passed(&mut retries);
                match relay.claim().await {
                    Ok(batch) if batch.is_empty() => {}
                    Ok(batch) => {
                        due = batch.len() as u32 >= relay.cfg.batch_size;
                        let relay = relay.clone();
                        in_flight.spawn(async move { relay.deliver_all(batch).await });
                    }
                    // The next poll tries again; trying at once would only fail again.
                    Err(e) => tracing::warn!(error = %e, "outbox claim failed; will retry"),
                }
            }
            if due && in_flight.len() < max_in_flight {
                continue;
            }
            let mut wait = poll;
            if let Some(Reverse(at)) = retries.peek() {
                wait = wait.min(Duration::from_millis((at - now_millis()).max(1) as u64));
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = relay.outbox.wake.notified() => due = true,
                _ = tokio::time::sleep(wait) => {
                    // Retries still ahead (a poll may come first) stay.
                    drop_passed(&mut retries);
                    due = true;
                }
                // A batch finished: a claim held back for want of room (`due` still set) goes ahead.
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(Some((earliest, latest))) = done {
                        retries.push(Reverse(earliest));
                        if latest != earliest {
                            retries.push(Reverse(latest));
                        }
                    }
                }
            }
        }
        // Batches under way finish (each call has its deadline); rows not yet claimed wait for
        // the next start or another replica.
        while in_flight.join_next().await.is_some() {}
        helpers.shutdown().await;
    }

    /// Wakes this relay when another replica's commit added work (PostgreSQL `LISTEN`). A lost
    /// connection is re-opened; whatever was announced meanwhile is found by the wake-up that
    /// follows the reconnection, or by the poll.
    async fn listen(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                lost = self.listen_until_lost() => match lost {
                    Ok(never) => match never {},
                    Err(e) => tracing::debug!(error = %e, "outbox wake-up channel lost; reconnecting"),
                },
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            }
        }
    }

    async fn listen_until_lost(&self) -> Result<std::convert::Infallible, sqlx::Error> {
        let mut listener = sqlx::postgres::PgListener::connect_with(self.db.get_postgres_connection_pool()).await?;
        listener.listen(WAKE_CHANNEL).await?;
        // Work may have been announced while no one listened.
        self.outbox.wake.notify_one();
        loop {
            match listener.try_recv().await? {
                Some(n) if n.payload() == &*self.outbox.replica => {}
                // Another replica's work, or a reconnection after which some may have been missed.
                _ => self.outbox.wake.notify_one(),
            }
        }
    }

    /// Vacuums the outbox on PostgreSQL once the relay has claimed or removed [`VACUUM_AFTER_ROWS`] rows,
    /// at most every [`VACUUM_INTERVAL`]. Every hand-off leaves dead row versions and index
    /// entries behind it (its insert, its lease, its removal), and claims walk the index from
    /// its oldest end: until a vacuum takes them away, each claim steps over all of them, so its
    /// cost grows with every row ever relayed. Autovacuum, where it runs, comes by at its own
    /// pace, made for tables that change by a fraction, not one that turns over many times a
    /// minute. `SKIP_LOCKED`: while another replica's relay vacuums it, or the statistics are taken,
    /// this one does not wait.
    async fn vacuum(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(VACUUM_INTERVAL) => {},
            }
            if self.turned_over.load(Ordering::Relaxed) < VACUUM_AFTER_ROWS {
                continue;
            }
            self.turned_over.swap(0, Ordering::Relaxed);
            // TRUNCATE false: giving the empty pages at the end back would take the table's
            // strongest lock, which every claim and every hand-off written stands in the way of
            // (the vacuum tried for seconds), and the pages are soon filled again.
            if let Err(e) = self.db.execute_unprepared("VACUUM (SKIP_LOCKED, TRUNCATE false) outbox").await {
                tracing::debug!(error = %e, "could not vacuum the outbox; autovacuum will, or the next round");
            }
        }
    }

    /// Publishes the backlog and the age of its oldest row (the outbox lag).
    async fn report_lag(&self) {
        let service = self.service.as_str();
        if let Ok((n, oldest_ms)) = self.outbox.backlog().await {
            crate::metrics::OUTBOX_BACKLOG.with_label_values(&[service]).set(n);
            crate::metrics::OUTBOX_LAG.with_label_values(&[service]).set(oldest_ms / 1000);
        }
        if let Ok(dead) = crate::dead_letters::count(&self.db).await {
            crate::metrics::OUTBOX_DEAD_LETTERS.with_label_values(&[service]).set(dead);
        }
    }

    async fn claim(&self) -> Result<Vec<Envelope>, DbErr> {
        let backend = self.db.get_database_backend();
        let now = now_millis();
        let stmt = claim_statement(backend, now, now + self.cfg.lease_ms as i64, self.cfg.batch_size);
        // No span here: this runs on every poll, and would start a trace each time.
        let rows = self.db.query_all_raw(stmt).await?;
        let found = if rows.is_empty() { "empty" } else { "rows" };
        crate::metrics::OUTBOX_CLAIMS.with_label_values(&[self.service.as_str(), found]).inc();
        let mut batch = rows
            .into_iter()
            .map(|r| {
                Ok(Envelope {
                    id: r.try_get("", "id")?,
                    topic: r.try_get("", "topic")?,
                    payload: r.try_get("", "payload")?,
                    trace_context: r.try_get("", "trace_context")?,
                    attempts: r.try_get("", "attempts")?,
                    created_at: r.try_get("", "created_at")?,
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        batch.sort_by(|a, b| a.id.cmp(&b.id));
        // A lease is a new version of the row too: a receiver that keeps failing turns the
        // outbox over without removing anything.
        self.turned_over.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(batch)
    }

    /// Delivers a batch concurrently and removes the rows delivered in one statement (one
    /// commit per batch, not per row); returns when the earliest and the latest retry are due,
    /// if any failed. A row delivered but not yet removed stays leased: should the relay die
    /// first, it is delivered again after the lease and the receiver's inbox absorbs the repeat.
    async fn deliver_all(&self, batch: Vec<Envelope>) -> Option<(i64, i64)> {
        let results = futures::future::join_all(batch.into_iter().map(|e| self.deliver(e))).await;
        let mut delivered = Vec::new();
        let mut retries: Option<(i64, i64)> = None;
        for r in results {
            match r {
                Delivery::Delivered(id) => delivered.push(id),
                Delivery::RetryAt(at) => {
                    retries = Some(retries.map_or((at, at), |(earliest, latest)| (earliest.min(at), latest.max(at))))
                }
                Delivery::Settled => {}
            }
        }
        self.remove(&delivered).await;
        retries
    }

    /// Removes delivered rows, 500 per statement: on PostgreSQL their ids as one array, in a
    /// statement whose text is the same however many there are (see [`arrays::one_of_sql`]).
    async fn remove(&self, ids: &[String]) {
        let backend = self.db.get_database_backend();
        for chunk in ids.chunks(500) {
            let mut params = Vec::with_capacity(1);
            let ids = arrays::one_of_sql(backend, &mut params, chunk.iter().cloned());
            let removal = statement(backend, &format!("DELETE FROM outbox WHERE id {ids}"), params);
            match self.db.execute_raw(removal).await {
                Ok(done) => {
                    self.turned_over.fetch_add(done.rows_affected(), Ordering::Relaxed);
                }
                // The rows will be delivered again after their lease; the receivers' inboxes absorb it.
                Err(e) => tracing::warn!(error = %e, rows = chunk.len(), "delivered but could not remove outbox rows"),
            }
        }
    }

    async fn deliver(&self, envelope: Envelope) -> Delivery {
        let span = tracing::info_span!(
            "outbox deliver",
            otel.name = %format!("process {}", envelope.topic.trim_start_matches('/')),
            otel.kind = "consumer",
            messaging.system = "crs-outbox",
            messaging.operation.type = "process",
            messaging.destination.name = %envelope.topic,
            messaging.message.id = %envelope.id,
            messaging.delivery.attempt = envelope.attempts,
        );
        crate::telemetry::continue_stored_trace(&span, envelope.trace_context.as_deref());
        let backend = self.db.get_database_backend();
        let id = envelope.id.clone();
        let attempts = envelope.attempts;
        let topic = envelope.topic.clone();
        let created_at = envelope.created_at;
        async move {
            let outcome = match self.handlers.get(topic.as_str()) {
                Some(handler) => handler(envelope).await,
                None => Err(HandoffError::Transient(anyhow::anyhow!("no handler for topic {topic}"))),
            };
            let now = now_millis();
            let error = match outcome {
                Ok(()) => return Delivery::Delivered(id),
                Err(e) => e,
            };
            let text = truncate(&crate::error::error_chain(error.error().as_ref()), 2000);
            let too_old = now - created_at > self.cfg.max_age_secs.saturating_mul(1000) as i64;
            if matches!(error, HandoffError::Permanent(_)) || too_old {
                let why = if too_old && matches!(error, HandoffError::Transient(_)) {
                    "kept failing past its maximum age"
                } else {
                    "refused for good"
                };
                tracing::error!(attempts, error = %text, topic = %topic, "hand-off {why}; it is a dead letter now");
                crate::metrics::OUTBOX_DEAD_LETTERED.with_label_values(&[self.service.as_str(), topic.as_str()]).inc();
                let stmt = statement(
                    backend,
                    "UPDATE outbox SET locked_until = NULL, dead_at = $1, last_error = $2 WHERE id = $3",
                    vec![now.into(), text.into(), id.into()],
                );
                if let Err(e) = self.db.execute_raw(stmt).await {
                    tracing::warn!(error = %e, "could not record the dead letter; lease expiry will retry it");
                }
                return Delivery::Settled;
            }
            let retry_at = now + backoff_ms(&self.cfg, attempts);
            tracing::warn!(attempts, error = %text, "hand-off failed; will retry");
            let stmt = statement(
                backend,
                "UPDATE outbox SET locked_until = NULL, available_at = $1, last_error = $2 WHERE id = $3",
                vec![retry_at.into(), text.into(), id.into()],
            );
            if let Err(e) = self.db.execute_raw(stmt).await {
                tracing::warn!(error = %e, "could not schedule retry; lease expiry will");
            }
            Delivery::RetryAt(retry_at)
        }
        .instrument(span)
        .await
    }
}

/// What became of one row of a batch.
enum Delivery {
    /// Handed off: the row is to be removed.
    Delivered(String),
    /// Failed for now: retried at this time.
    RetryAt(i64),
    /// Nothing more to do here (it became a dead letter).
    Settled,
}

/// Capped exponential backoff with ±20 % jitter, so retries from many rows do not line up.
fn backoff_ms(cfg: &OutboxConfig, attempts: i32) -> i64 {
    let exp = attempts.saturating_sub(1).clamp(0, 20) as u32;
    let base = cfg.initial_backoff_ms.saturating_mul(1u64 << exp).min(cfg.max_backoff_ms) as f64;
    let jitter = rand::rng().random_range(0.8..1.2);
    (base * jitter) as i64
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The statement that claims the next `batch` rows due at `now`, leased until `lease_end`, and
/// returns them (`id, topic, payload, trace_context, attempts, created_at`).
///
/// A claimed row's lease is its `available_at`: it leaves the claimable range until the lease
/// ends, so the next claim reads from the first row it can take, through `outbox_claimable`,
/// instead of stepping over the rows other batches are delivering. `locked_until` says the same
/// to an operator looking at the table, and is still honoured: a replica of an earlier version,
/// during a rolling upgrade, leases by it alone. A row whose lease ran out (its relay died) is due
/// again from its lease's end, behind the rows due before then. On PostgreSQL the claim is the
/// function `outbox_claim` ([`OutboxClaimOrder`] says why).
pub fn claim_statement(backend: DbBackend, now: i64, lease_end: i64, batch: u32) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        "SELECT id, topic, payload, trace_context, attempts, created_at FROM outbox_claim($1, $2, $3)"
    } else {
        "UPDATE outbox SET available_at = $1, locked_until = $1, attempts = attempts + 1 WHERE id IN \
         (SELECT id FROM outbox WHERE dead_at IS NULL AND available_at <= $2 \
          AND (locked_until IS NULL OR locked_until <= $2) ORDER BY available_at, id LIMIT $3) \
         RETURNING id, topic, payload, trace_context, attempts, created_at"
    };
    statement(backend, sql, vec![lease_end.into(), now.into(), i64::from(batch).into()])
}

/// Records `event_id` as applied. `true` the first time; `false` if it was applied before, in
/// which case the caller must skip the effect and answer as it did then. Call it inside the
/// transaction that applies the effect.
pub async fn inbox_first_time<C: ConnectionTrait>(conn: &C, event_id: &str) -> Result<bool, DbErr> {
    let stmt = statement(
        conn.get_database_backend(),
        "INSERT INTO inbox (event_id, applied_at) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
        vec![event_id.into(), now_millis().into()],
    );
    Ok(conn.execute_raw(stmt).instrument(crate::db::span(conn, "inbox record")).await?.rows_affected() == 1)
}

/// Records the events `event_ids` as applied, in one statement; returns those recorded now, the
/// others having been applied before. Call it inside the transaction that applies their effects.
pub async fn inbox_record_new<'a, C: ConnectionTrait>(
    conn: &C,
    event_ids: impl Iterator<Item = &'a str>,
) -> Result<HashSet<String>, DbErr> {
    // In one order, so two transactions recording some of the same events do not deadlock.
    let event_ids: std::collections::BTreeSet<&str> = event_ids.collect();
    if event_ids.is_empty() {
        return Ok(HashSet::new());
    }
    let now = now_millis();
    let span = || crate::db::span(conn, "inbox record");
    if conn.get_database_backend() == DbBackend::Postgres {
        // One statement whose text never changes, however many events (`crate::db::arrays`).
        let values = vec![now.into(), crate::db::arrays::texts(event_ids)];
        let stmt = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO inbox (event_id, applied_at) SELECT event_id, $1 FROM UNNEST($2::text[]) AS batch (event_id) \
             ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            values,
        );
        let recorded = conn.query_all_raw(stmt).instrument(span()).await?;
        return recorded.iter().map(|r| r.try_get::<String>("", "event_id")).collect();
    }
    let mut values: Vec<Value> = Vec::new();
    let mut rows = Vec::new();
    for id in event_ids {
        rows.push(format!("(${}, ${})", values.len() + 1, values.len() + 2));
        values.extend([id.into(), now.into()]);
    }
    let stmt = statement(
        conn.get_database_backend(),
        &format!(
            "INSERT INTO inbox (event_id, applied_at) VALUES {} ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            rows.join(", ")
        ),
        values,
    );
    let recorded = conn.query_all_raw(stmt).instrument(span()).await?;
    recorded.iter().map(|r| r.try_get::<String>("", "event_id")).collect()
}

/// A statement written with `$n` placeholders, for either backend (SQLite reads them as `?n`).
pub fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres { sql.to_owned() } else { sql.replace('$', "?") };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Creates the `outbox` and `inbox` tables; every service lists it first among its migrations.
pub struct OutboxMigration;

impl MigrationName for OutboxMigration {
    fn name(&self) -> &str {
        "m20261128_000001_outbox_inbox"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for OutboxMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("outbox"))
                    .if_not_exists()
                    .col(ColumnDef::new(Alias::new("id")).string_len(36).not_null().primary_key())
                    .col(ColumnDef::new(Alias::new("topic")).string_len(64).not_null())
                    .col(ColumnDef::new(Alias::new("payload")).blob().not_null())
                    .col(ColumnDef::new(Alias::new("trace_context")).string_len(256).null())
                    .col(ColumnDef::new(Alias::new("created_at")).big_integer().not_null())
                    .col(ColumnDef::new(Alias::new("available_at")).big_integer().not_null())
                    .col(ColumnDef::new(Alias::new("locked_until")).big_integer().null())
                    .col(ColumnDef::new(Alias::new("attempts")).integer().not_null().default(0))
                    .col(ColumnDef::new(Alias::new("last_error")).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_available_at")
                    .table(Alias::new("outbox"))
                    .col(Alias::new("available_at"))
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("inbox"))
                    .if_not_exists()
                    .col(ColumnDef::new(Alias::new("event_id")).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(Alias::new("applied_at")).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Alias::new("inbox")).to_owned()).await?;
        manager.drop_table(Table::drop().table(Alias::new("outbox")).to_owned()).await
    }
}

/// Renames the topics of rows written before topics were derived from the RPC they call, so
/// hand-offs pending across an upgrade are still delivered. Every service lists it after
/// [`OutboxMigration`].
pub struct OutboxTopicsByRpc;

/// The topic names rows carried before, and the RPC each went to.
const FORMER_TOPICS: &[(&str, &str)] = &[
    ("triage.assess", <crs_proto::triage::AssessRequestRequest as crs_proto::InternalCall>::METHOD),
    ("review.enqueue", <crs_proto::review::EnqueueCaseRequest as crs_proto::InternalCall>::METHOD),
    ("review.resume", <crs_proto::review::ResumeCaseRequest as crs_proto::InternalCall>::METHOD),
    ("review.withdraw", <crs_proto::review::WithdrawCaseRequest as crs_proto::InternalCall>::METHOD),
    ("intake.status", <crs_proto::intake::UpdateStatusRequest as crs_proto::InternalCall>::METHOD),
    ("notification.notify", <crs_proto::notification::NotifyRequest as crs_proto::InternalCall>::METHOD),
    ("notification.subscribe", <crs_proto::notification::PutSubscriptionRequest as crs_proto::InternalCall>::METHOD),
];

impl MigrationName for OutboxTopicsByRpc {
    fn name(&self) -> &str {
        "m20261129_000001_outbox_topics_by_rpc"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for OutboxTopicsByRpc {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        // The RPC paths are longer than the 64 characters the first schema allowed, and events
        // named by their sender (`withdrawn:<request id>`) longer than a bare UUID.
        if backend == DbBackend::Postgres {
            db.execute_unprepared("ALTER TABLE outbox ALTER COLUMN topic TYPE varchar(160)").await?;
            db.execute_unprepared("ALTER TABLE outbox ALTER COLUMN id TYPE varchar(80)").await?;
        }
        for (old, new) in FORMER_TOPICS {
            db.execute_raw(statement(
                backend,
                "UPDATE outbox SET topic = $1 WHERE topic = $2",
                vec![(*new).into(), (*old).into()],
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        for (old, new) in FORMER_TOPICS {
            db.execute_raw(statement(
                backend,
                "UPDATE outbox SET topic = $1 WHERE topic = $2",
                vec![(*old).into(), (*new).into()],
            ))
            .await?;
        }
        Ok(())
    }
}

/// Dead letters: hand-offs no longer retried, kept until an admin replays them.
pub struct OutboxDeadLetters;

impl MigrationName for OutboxDeadLetters {
    fn name(&self) -> &str {
        "m20261129_000003_outbox_dead_letters"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for OutboxDeadLetters {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("outbox"))
                    .add_column(ColumnDef::new(Alias::new("dead_at")).big_integer().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Alias::new("outbox")).drop_column(Alias::new("dead_at")).to_owned())
            .await
    }
}

/// Claims read only the rows they claim: an index on `(available_at, id)` over the rows still to
/// deliver, in the order claims take them, and on PostgreSQL a function that claims through it.
///
/// The index it replaces, on `available_at` alone, left PostgreSQL to gather every row due, sort
/// them and keep a batch: a claim cost as much as the backlog was long, the more so as it also
/// read the dead versions of delivered rows (a bitmap scan never marks them in the index), and
/// the relays slowed as they fell behind. An index in claim order is not enough by itself: the
/// planner judges by statistics, and an outbox's swing from empty to tens of thousands of rows
/// and back within a minute, faster than any refresh, so with the statistics of a quieter moment
/// it may still gather and sort. The function `outbox_claim` plans its statement with sorting
/// ruled out, which leaves the ordered walk of the index, whatever the statistics; and it
/// gathers the ids first and updates the rows by key, where a plan made for an empty table
/// would run the claim once per row. Every service lists it last among the migrations it had
/// when it came.
pub struct OutboxClaimOrder;

impl MigrationName for OutboxClaimOrder {
    fn name(&self) -> &str {
        "m20261206_000001_outbox_claim_order"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for OutboxClaimOrder {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // The same statements on PostgreSQL and SQLite: both have partial indexes.
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS outbox_claimable ON outbox (available_at, id) WHERE dead_at IS NULL",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS outbox_available_at").await?;
        // Leases taken before, by `locked_until` alone, become leases of the new kind.
        db.execute_unprepared(
            "UPDATE outbox SET available_at = locked_until \
             WHERE dead_at IS NULL AND locked_until IS NOT NULL AND locked_until > available_at",
        )
        .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            // PL/pgSQL keeps the statement's plan for the session; a plain SQL function would be
            // planned again on every call.
            db.execute_unprepared(
                "CREATE OR REPLACE FUNCTION outbox_claim(lease_end bigint, due bigint, batch bigint) \
                 RETURNS SETOF outbox LANGUAGE plpgsql SET enable_sort = off AS $claim$ \
                 BEGIN \
                   RETURN QUERY \
                   UPDATE outbox SET available_at = lease_end, locked_until = lease_end, \
                     attempts = outbox.attempts + 1 \
                   WHERE outbox.id = ANY(ARRAY( \
                     SELECT o.id FROM outbox AS o WHERE o.dead_at IS NULL AND o.available_at <= due \
                     AND (o.locked_until IS NULL OR o.locked_until <= due) \
                     ORDER BY o.available_at, o.id LIMIT batch FOR UPDATE SKIP LOCKED)) \
                   RETURNING outbox.*; \
                 END $claim$",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("DROP FUNCTION IF EXISTS outbox_claim(bigint, bigint, bigint)").await?;
        }
        db.execute_unprepared("CREATE INDEX IF NOT EXISTS outbox_available_at ON outbox (available_at)").await?;
        db.execute_unprepared("DROP INDEX IF EXISTS outbox_claimable").await?;
        Ok(())
    }
}
