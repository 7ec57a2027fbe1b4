//! The delivery scheduler: attempts deliveries so that none blocks another and none vanishes.
//!
//! The `deliveries` table is the queue. A delivery is written with its notification, in the same
//! transaction, so nothing accepted is lost; it is due while `next_attempt_at` is set and has
//! passed, and is claimed with a lease (`locked_until`, on PostgreSQL with `FOR UPDATE SKIP
//! LOCKED`, so replicas never attempt the same delivery at once). Its outcome is written before
//! the lease is given back, so a restart never repeats a delivery that succeeded (an attempt cut
//! off mid-flight is repeated with the same `webhook-id`, which receivers use to drop repeats).
//! A claim reads its deliveries' messages and subscription in one statement, and deliveries
//! made at about the same time have their outcomes written in one transaction.
//!
//! Each endpoint (a subscription) has its own lane: at most `delivery.per_endpoint_concurrency`
//! attempts in flight, claimed per endpoint, so a slow or hanging endpoint holds only its own
//! slots while every other endpoint keeps its pace. Each lane has a circuit breaker: after
//! `delivery.breaker_failures` failures in a row that say the endpoint is unwell, its attempts
//! pause for `delivery.breaker_cooldown_ms`, then one probe decides. Failed attempts are retried
//! with exponential backoff and jitter (or the endpoint's `Retry-After`) until
//! `delivery.max_age_secs` after the first attempt; then, or at once when trying again cannot
//! help, the delivery is FAILED: a dead letter, counted and alerted on, until an admin's
//! RetryDelivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crs_platform::db::arrays::{self, one_of};
use crs_platform::db::select_prefixed;
use crs_platform::outbox::statement;
use crs_platform::time::now_millis;
use crs_proto::ShortName;
use crs_proto::notification::{Audience, DeliveryState};
use rand::Rng;
use sea_orm::sea_query::{Alias, Expr, JoinType, Query};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, IdenStatic, Statement, TransactionTrait,
};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::channels::{Attempt, Channels, Failure, Outcome};
use crate::config::DeliveryConfig;
use crate::entities::{delivery, message, subscription};

/// How often the scheduler gives up on deliveries past their age and refreshes its gauges.
const HOUSEKEEPING: Duration = Duration::from_secs(5);
/// Endpoints looked at per round.
const ENDPOINTS_PER_ROUND: i64 = 1000;
/// What a delivery's lease adds to its channel's longest attempt: time to write the outcome.
const LEASE_MARGIN_MS: i64 = 5_000;

/// One endpoint's lane in this replica.
#[derive(Debug, Default)]
struct Lane {
    in_flight: usize,
    /// Failures in a row that said the endpoint is unwell.
    failures: u32,
    /// While set and in the future, the circuit is open; once passed, one probe may go.
    open_until: Option<i64>,
}

impl Lane {
    /// Attempts this lane may start now.
    fn capacity(&self, now: i64, per_endpoint: usize) -> usize {
        match self.open_until {
            Some(until) if now < until => 0,
            // Half open: one probe at a time.
            Some(_) => usize::from(self.in_flight == 0),
            None => per_endpoint.saturating_sub(self.in_flight),
        }
    }

    fn is_open(&self, now: i64) -> bool {
        self.open_until.is_some_and(|until| now < until)
    }
}

#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    channels: Channels,
    cfg: DeliveryConfig,
    /// How long a claim lasts: the longest attempt on the delivery's channel and a margin, as a
    /// `CASE` on the `channel` column from the time of the claim (`$4`). Per channel, so a webhook cut off by a crash
    /// is not kept waiting for as long as an email conversation could take.
    lease_expr: String,
    wake: Notify,
    lanes: Mutex<HashMap<String, Lane>>,
    /// A round left due deliveries unclaimed for want of room (a lane or the replica's attempts
    /// in flight were full, or the round's endpoints ran out): the next attempt to end wakes the
    /// scheduler for them. Otherwise an attempt that ends wakes it only to schedule a retry: a
    /// round after every delivery made found nothing to claim, two statements each time.
    held_back: AtomicBool,
    /// Deliveries made, to [`Inner::write_delivered`].
    delivered: mpsc::Sender<Delivered>,
    /// Its receiving end, until `run` starts the writer.
    to_write: Mutex<Option<mpsc::Receiver<Delivered>>>,
}

impl Scheduler {
    pub fn new(db: DatabaseConnection, channels: Channels, cfg: DeliveryConfig) -> Self {
        let lease_ms = |c: &dyn crate::channels::Channel| c.longest_attempt().as_millis() as i64 + LEASE_MARGIN_MS;
        let mut by_channel: Vec<(i32, i64)> = channels.all().map(|(kind, c)| (kind, lease_ms(c.as_ref()))).collect();
        by_channel.sort();
        let longest = by_channel.iter().map(|(_, ms)| *ms).max().unwrap_or(LEASE_MARGIN_MS);
        let cases: String = by_channel.iter().map(|(kind, ms)| format!("WHEN {kind} THEN $4 + {ms} ")).collect();
        let lease_expr = format!("CASE channel {cases}ELSE $4 + {longest} END");
        let (delivered, to_write) = mpsc::channel(OUTCOMES_PER_WRITE * 4);
        Scheduler {
            inner: Arc::new(Inner {
                db,
                channels,
                cfg,
                lease_expr,
                wake: Notify::new(),
                lanes: Mutex::new(HashMap::new()),
                held_back: AtomicBool::new(false),
                delivered,
                to_write: Mutex::new(Some(to_write)),
            }),
        }
    }

    /// Tells the scheduler that work was added or a lane freed up.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Attempts due deliveries until `shutdown`; attempts in flight then get a moment to finish
    /// (an attempt cut off is repeated after its lease).
    pub async fn run(self, shutdown: CancellationToken) {
        let to_write = self.inner.to_write.lock().expect("writer").take();
        let writer = to_write.map(|made| tokio::spawn(self.inner.clone().write_delivered(made)));
        let mut attempts = JoinSet::new();
        let mut housekeeping = tokio::time::Instant::now() - HOUSEKEEPING;
        let poll = Duration::from_millis(self.inner.cfg.poll_interval_ms);
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            while attempts.try_join_next().is_some() {}
            if housekeeping.elapsed() >= HOUSEKEEPING {
                housekeeping = tokio::time::Instant::now();
                if let Err(e) = self.inner.housekeeping().await {
                    tracing::warn!(error = %e, "delivery housekeeping failed; will retry");
                }
            }
            let mut wait = poll;
            match self.claim_round(&mut attempts).await {
                Ok(next_due) => {
                    if let Some(at) = next_due {
                        wait = wait.min(Duration::from_millis((at - now_millis()).max(1) as u64));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming deliveries failed; will retry"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.inner.wake.notified() => {},
                _ = tokio::time::sleep(wait) => {},
            }
        }
        let drained =
            tokio::time::timeout(Duration::from_secs(5), async { while attempts.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            attempts.abort_all();
        }
        // Every attempt has ended, so no outcome is waiting to be written.
        if let Some(writer) = writer {
            writer.abort();
        }
    }

    /// Claims, for every endpoint with due deliveries, as many as its lane can take, and starts
    /// them. Returns when the next delivery not yet due will be.
    async fn claim_round(&self, attempts: &mut JoinSet<()>) -> Result<Option<i64>, DbErr> {
        let inner = &self.inner;
        let backend = inner.db.get_database_backend();
        let now = now_millis();
        let due =
            "next_attempt_at IS NOT NULL AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until < $1)";
        // The endpoints with deliveries due, oldest first, and (the row without an endpoint) when
        // the next delivery not yet due will be: one statement. What becomes due during the
        // round (a new message, an attempt to retry) wakes the scheduler for another.
        let rows = inner
            .db
            .query_all_raw(statement(
                backend,
                &format!(
                    "SELECT subscription_id, oldest FROM \
                       (SELECT subscription_id, MIN(next_attempt_at) AS oldest FROM deliveries WHERE {due} \
                        GROUP BY subscription_id ORDER BY oldest LIMIT $2) AS due_endpoints \
                     UNION ALL SELECT NULL, MIN(next_attempt_at) FROM deliveries WHERE next_attempt_at > $1"
                ),
                vec![now.into(), ENDPOINTS_PER_ROUND.into()],
            ))
            .await?;
        let mut endpoints = Vec::with_capacity(rows.len());
        let mut next = None;
        for row in rows {
            let oldest = row.try_get::<Option<i64>>("", "oldest")?;
            match row.try_get::<Option<String>>("", "subscription_id")? {
                Some(endpoint) => endpoints.push((oldest, endpoint)),
                None => next = oldest,
            }
        }
        // A union keeps no order of its own.
        endpoints.sort();
        if endpoints.len() as i64 >= ENDPOINTS_PER_ROUND {
            inner.held_back.store(true, Ordering::SeqCst);
        }
        for (_, endpoint) in endpoints {
            let free = inner.room_for(&endpoint, now);
            if free == 0 {
                continue;
            }
            let lock = if backend == DbBackend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
            let claim = statement(
                backend,
                &format!(
                    "UPDATE deliveries SET locked_until = {lease}, attempts = attempts + 1 WHERE id IN \
                     (SELECT id FROM deliveries WHERE subscription_id = $2 AND {due} \
                      ORDER BY next_attempt_at, id LIMIT $3 {lock}) RETURNING *",
                    lease = inner.lease_expr,
                ),
                // The lease runs from the claim itself, not from the round's start: a round
                // over many endpoints would otherwise cut the later ones' leases short.
                vec![now.into(), endpoint.clone().into(), (free as i64).into(), now_millis().into()],
            );
            let claimed = inner.claim(claim, &endpoint).await?;
            let filled = claimed.len() >= free;
            for claimed in claimed {
                inner.lanes.lock().expect("lanes").entry(endpoint.clone()).or_default().in_flight += 1;
                let this = self.clone();
                let endpoint = endpoint.clone();
                attempts.spawn(async move {
                    let delivered = this.attempt(claimed).await;
                    this.inner.release(&endpoint);
                    // After the release: a round that found no room set the flag before it.
                    if this.inner.held_back.swap(false, Ordering::SeqCst) || !delivered {
                        this.wake();
                    }
                });
            }
            // The lane took all it could, and more may be due behind: flagged for the attempts
            // to come. One that ended while the claim was under way found no flag; if it left
            // room, the next round goes at once.
            if filled && inner.room_for(&endpoint, now_millis()) > 0 {
                self.wake();
            }
        }
        Ok(next)
    }

    /// One attempt at a claimed delivery, in the request's trace, and its outcome recorded;
    /// whether it was delivered and that was written (anything else wants another round).
    async fn attempt(&self, claimed: Claimed) -> bool {
        let inner = &self.inner;
        let Claimed { delivery, message, subscription: sub } = claimed;
        // The claim just set it; its outcome is written only while it still holds.
        let lease = delivery.locked_until.unwrap_or_default();
        let channel = crate::channels::name(delivery.channel);
        let audience = crs_proto::convert::short_name_of::<Audience>(delivery.audience);
        let span = tracing::info_span!(
            "deliver",
            otel.name = %format!("process {channel}.deliver"),
            otel.kind = "consumer",
            messaging.system = "crs-notification",
            messaging.operation.type = "process",
            messaging.destination.name = %format!("{channel}.deliver"),
            messaging.message.id = %delivery.id,
            messaging.delivery.attempt = delivery.attempts,
            crs.delivery.audience = audience,
            crs.delivery.outcome = tracing::field::Empty,
        );
        crs_platform::telemetry::continue_stored_trace(&span, delivery.trace_context.as_deref());
        async {
            let outcome = match (message, sub) {
                (Some(message), Some(subscription)) => match inner.channels.get(delivery.channel) {
                    Some(ch) => {
                        let endpoint = subscription.endpoint.clone();
                        let attempt = Attempt { delivery: delivery.clone(), message, subscription };
                        (ch.deliver(&attempt).await, endpoint)
                    }
                    None => (Outcome::Failed(gone("its channel is not available in this version")), String::new()),
                },
                (None, _) => (Outcome::Failed(gone("its message was not recorded")), String::new()),
                (_, None) => (Outcome::Failed(gone("its subscription no longer exists")), String::new()),
            };
            let (outcome, endpoint) = outcome;
            let delivered = matches!(outcome, Outcome::Delivered);
            match inner.record(&delivery, &endpoint, outcome, lease).await {
                Ok(()) => delivered,
                Err(e) => {
                    tracing::warn!(delivery_id = %delivery.id, error = %e, "cannot record a delivery's outcome; it will be retried");
                    false
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// Marks the deliveries `ids`, made at `endpoint` under `lease`, as DELIVERED in one statement;
/// one whose lease ran out meanwhile is left alone, and said so.
async fn mark_delivered_at<C: ConnectionTrait>(
    conn: &C,
    endpoint: &str,
    lease: i64,
    ids: &[&str],
) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    let mut values: Vec<sea_orm::Value> =
        vec![(DeliveryState::Delivered as i32).into(), now_millis().into(), endpoint.into(), lease.into()];
    // On PostgreSQL the ids as one array: one statement's text whatever their number.
    let ids_sql = arrays::one_of_sql(backend, &mut values, ids.iter().map(|id| id.to_string()));
    let written = conn
        .query_all_raw(statement(
            backend,
            &format!(
                "UPDATE deliveries SET state = $1, delivered_at = $2, next_attempt_at = NULL, \
                 locked_until = NULL, last_error = '', failure = '', endpoint = $3 \
                 WHERE locked_until = $4 AND id {ids_sql} RETURNING id"
            ),
            values,
        ))
        .await?;
    if written.len() < ids.len() {
        let written: Vec<String> = written.iter().filter_map(|r| r.try_get("", "id").ok()).collect();
        for id in ids.iter().filter(|id| !written.iter().any(|w| w == *id)) {
            tracing::warn!(delivery_id = %id, "the delivery's lease ran out before its outcome was written; it may be attempted again");
        }
    }
    Ok(())
}

/// A claimed delivery with what its attempt needs: its message, and its subscription as it is
/// now (so a retry signs with the secrets in force at its attempt).
struct Claimed {
    delivery: delivery::Model,
    message: Option<message::Model>,
    subscription: Option<subscription::Model>,
}

/// Column prefixes of [`messages_and_subscription`]'s rows.
const MESSAGE: &str = "m_";
const SUBSCRIPTION: &str = "s_";

/// The messages of the notifications `notification_ids`, each with the subscription
/// `subscription_id` (or NULLs, if it no longer exists) in the same row, columns prefixed `m_` and
/// `s_`: a claim's deliveries are read in one round trip. Without a message there is nothing to
/// deliver, whatever the subscription.
fn messages_and_subscription(backend: DbBackend, notification_ids: Vec<String>, subscription_id: &str) -> Statement {
    // Here only: its `min` and `max` would shadow the integers' elsewhere in this module.
    use sea_orm::sea_query::ExprTrait;
    let (m, s) = (Alias::new("m"), Alias::new("s"));
    let mut select = Query::select();
    select_prefixed::<message::Entity>(&mut select, &m, MESSAGE);
    select_prefixed::<subscription::Entity>(&mut select, &s, SUBSCRIPTION);
    select
        .from_as(message::Entity, m.clone())
        .join_as(
            JoinType::LeftJoin,
            subscription::Entity,
            s.clone(),
            Expr::col((s, subscription::Column::Id)).eq(subscription_id),
        )
        .and_where(one_of(backend, (m, message::Column::NotificationId), notification_ids));
    backend.build(&select)
}

/// Column prefix of a claimed delivery in [`claimed_with_messages`]'s rows.
const DELIVERY: &str = "d_";

/// `claim` (PostgreSQL's `UPDATE ... RETURNING *`) as a data-modifying `WITH` whose rows are
/// joined to their messages and their subscription (or NULLs, if either no longer exists),
/// columns prefixed `d_`, `m_` and `s_`: a claim and what its attempts need in one round trip.
fn claimed_with_messages(claim: Statement) -> Statement {
    use sea_orm::sea_query::{ExprTrait, PostgresQueryBuilder};
    let (c, m, s) = (Alias::new("c"), Alias::new("m"), Alias::new("s"));
    let mut select = Query::select();
    select_prefixed::<delivery::Entity>(&mut select, &c, DELIVERY);
    select_prefixed::<message::Entity>(&mut select, &m, MESSAGE);
    select_prefixed::<subscription::Entity>(&mut select, &s, SUBSCRIPTION);
    select
        .from_as(Alias::new("claimed"), c.clone())
        .join_as(
            JoinType::LeftJoin,
            message::Entity,
            m.clone(),
            Expr::col((m.clone(), message::Column::NotificationId))
                .equals((c.clone(), delivery::Column::NotificationId))
                .and(Expr::col((m, message::Column::Audience)).equals((c.clone(), delivery::Column::Audience))),
        )
        .join_as(
            JoinType::LeftJoin,
            subscription::Entity,
            s.clone(),
            Expr::col((s, subscription::Column::Id)).equals((c, delivery::Column::SubscriptionId)),
        );
    // The join takes no values of its own, so the claim's numbered parameters stay as they are.
    let sql = format!("WITH claimed AS ({}) {}", claim.sql, select.to_string(PostgresQueryBuilder));
    Statement { sql, ..claim }
}

/// A delivery made, waiting for its outcome to be written.
struct Delivered {
    id: String,
    lease: i64,
    endpoint: String,
    written: oneshot::Sender<Result<(), String>>,
}

/// The most outcomes written in one transaction.
const OUTCOMES_PER_WRITE: usize = 256;

/// A delivery that cannot be made at all.
fn gone(why: &str) -> Failure {
    Failure { permanent: true, summary: why.into(), detail: why.into(), retry_after: None, endpoint_unwell: false }
}

impl Inner {
    /// Runs `claim` (an `UPDATE ... RETURNING *` of one subscription's deliveries) and reads
    /// what their attempts need: on PostgreSQL in the same statement, the claim's rows joined
    /// to their messages and the subscription ([`claimed_with_messages`]); elsewhere the claim,
    /// then [`Inner::load`].
    async fn claim(&self, claim: Statement, subscription_id: &str) -> Result<Vec<Claimed>, DbErr> {
        let backend = self.db.get_database_backend();
        if backend != DbBackend::Postgres {
            let claimed = self
                .db
                .query_all_raw(claim)
                .await?
                .iter()
                .map(|row| delivery::Model::from_query_result(row, ""))
                .collect::<Result<Vec<_>, DbErr>>()?;
            return self.load(claimed, subscription_id).await;
        }
        let rows = self.db.query_all_raw(claimed_with_messages(claim)).await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let present =
                |prefix: &str, column: &str| row.try_get::<Option<String>>(prefix, column).map(|v| v.is_some());
            let message = match present(MESSAGE, message::Column::NotificationId.as_str())? {
                true => Some(message::Model::from_query_result(&row, MESSAGE)?),
                false => None,
            };
            let subscription = match present(SUBSCRIPTION, subscription::Column::Id.as_str())? {
                true => Some(subscription::Model::from_query_result(&row, SUBSCRIPTION)?),
                false => None,
            };
            claimed.push(Claimed {
                delivery: delivery::Model::from_query_result(&row, DELIVERY)?,
                message,
                subscription,
            });
        }
        Ok(claimed)
    }

    /// Reads, for deliveries just claimed for one subscription, their messages and the
    /// subscription: two statements for the whole claim.
    async fn load(&self, claimed: Vec<delivery::Model>, subscription_id: &str) -> Result<Vec<Claimed>, DbErr> {
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let notification_ids: Vec<String> = claimed.iter().map(|d| d.notification_id.clone()).collect();
        let backend = self.db.get_database_backend();
        let rows = self.db.query_all_raw(messages_and_subscription(backend, notification_ids, subscription_id)).await?;
        let mut messages: HashMap<(String, i32), message::Model> = HashMap::new();
        let mut subscription = None;
        for row in rows {
            let m = message::Model::from_query_result(&row, MESSAGE)?;
            if row.try_get::<Option<String>>(SUBSCRIPTION, subscription::Column::Id.as_str())?.is_some() {
                subscription = Some(subscription::Model::from_query_result(&row, SUBSCRIPTION)?);
            }
            messages.insert((m.notification_id.clone(), m.audience), m);
        }
        Ok(claimed
            .into_iter()
            .map(|delivery| Claimed {
                message: messages.get(&(delivery.notification_id.clone(), delivery.audience)).cloned(),
                subscription: subscription.clone(),
                delivery,
            })
            .collect())
    }

    /// Writes the outcomes of deliveries made, as they come, many in one transaction: attempts
    /// finishing together share a commit. Each attempt is told once its outcome is written.
    async fn write_delivered(self: Arc<Self>, mut made: mpsc::Receiver<Delivered>) {
        while let Some(first) = made.recv().await {
            let mut batch = vec![first];
            while batch.len() < OUTCOMES_PER_WRITE {
                match made.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let outcome = self.mark_delivered(&batch).await.map_err(|e| e.to_string());
            for d in batch {
                let _ = d.written.send(outcome.clone());
            }
        }
    }

    /// Marks deliveries made as DELIVERED and gives their leases back, in one transaction; a
    /// delivery whose lease ran out meanwhile (another attempt may have it now) is left alone.
    /// Outcomes of one endpoint and lease (all of them, when deliveries come one at a time) are
    /// one statement, which needs no transaction around it: that would be two more round trips.
    async fn mark_delivered(&self, batch: &[Delivered]) -> Result<(), DbErr> {
        let mut groups: HashMap<(&str, i64), Vec<&str>> = HashMap::new();
        for d in batch {
            groups.entry((d.endpoint.as_str(), d.lease)).or_default().push(d.id.as_str());
        }
        if groups.len() == 1 {
            let ((endpoint, lease), ids) = groups.into_iter().next().expect("one group");
            return mark_delivered_at(&self.db, endpoint, lease, &ids).await;
        }
        let txn = self.db.begin().await?;
        for ((endpoint, lease), ids) in groups {
            mark_delivered_at(&txn, endpoint, lease, &ids).await?;
        }
        txn.commit().await
    }

    /// Attempts `endpoint` may start now: its lane's capacity within the replica's room for
    /// attempts. None flags the round as having held deliveries back, under the lanes' lock, so
    /// an attempt that frees room after this (its release takes the lock) sees the flag.
    fn room_for(&self, endpoint: &str, now: i64) -> usize {
        let lanes = self.lanes.lock().expect("lanes");
        let in_flight: usize = lanes.values().map(|l| l.in_flight).sum();
        let free = lanes
            .get(endpoint)
            .map_or(self.cfg.per_endpoint_concurrency, |l| l.capacity(now, self.cfg.per_endpoint_concurrency))
            .min(self.cfg.max_in_flight.saturating_sub(in_flight));
        if free == 0 {
            self.held_back.store(true, Ordering::SeqCst);
        }
        free
    }

    fn release(&self, endpoint: &str) {
        let mut lanes = self.lanes.lock().expect("lanes");
        if let Some(lane) = lanes.get_mut(endpoint) {
            lane.in_flight = lane.in_flight.saturating_sub(1);
            if lane.in_flight == 0 && lane.failures == 0 && lane.open_until.is_none() {
                lanes.remove(endpoint);
            }
        }
    }

    /// The breaker's view of an attempt.
    fn observe(&self, endpoint: &str, delivered: bool, unwell: bool) {
        let now = now_millis();
        let mut lanes = self.lanes.lock().expect("lanes");
        let lane = lanes.entry(endpoint.to_owned()).or_default();
        if delivered {
            if lane.open_until.is_some() {
                tracing::info!(subscription_id = %endpoint, "endpoint recovered; circuit closed");
            }
            lane.failures = 0;
            lane.open_until = None;
        } else if unwell {
            lane.failures += 1;
            let probe_failed = lane.open_until.is_some_and(|until| now >= until);
            if probe_failed || (lane.open_until.is_none() && lane.failures >= self.cfg.breaker_failures) {
                lane.open_until = Some(now + self.cfg.breaker_cooldown_ms as i64);
                tracing::warn!(
                    subscription_id = %endpoint,
                    failures = lane.failures,
                    cooldown_ms = self.cfg.breaker_cooldown_ms,
                    "endpoint keeps failing; circuit opened"
                );
            }
        }
    }

    /// Writes an attempt's outcome and gives the lease back.
    async fn record(&self, d: &delivery::Model, endpoint: &str, outcome: Outcome, lease: i64) -> Result<(), DbErr> {
        let backend = self.db.get_database_backend();
        let now = now_millis();
        let audience = crs_proto::convert::short_name_of::<Audience>(d.audience);
        let channel = crate::channels::name(d.channel);
        let endpoint = if endpoint.is_empty() { d.endpoint.as_str() } else { endpoint };
        let (sql, values, state) = match outcome {
            Outcome::Delivered => {
                self.observe(&d.subscription_id, true, false);
                tracing::info!(delivery_id = %d.id, attempts = d.attempts, "delivered");
                tracing::Span::current().record("crs.delivery.outcome", "delivered");
                crate::metrics::DELIVERIES.with_label_values(&[audience, &channel, "delivered"]).inc();
                let (written, done) = oneshot::channel();
                let made = Delivered { id: d.id.clone(), lease, endpoint: endpoint.to_owned(), written };
                if self.delivered.send(made).await.is_err() {
                    return Err(DbErr::Custom("the scheduler is stopping".into()));
                }
                return match done.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(DbErr::Custom(e)),
                    Err(_) => Err(DbErr::Custom("the scheduler is stopping".into())),
                };
            }
            Outcome::Failed(f) => {
                self.observe(&d.subscription_id, false, f.endpoint_unwell);
                let too_old = now - d.retry_from > (self.cfg.max_age_secs as i64).saturating_mul(1000);
                if f.permanent || too_old {
                    let why =
                        if f.permanent { "trying again cannot help" } else { "it kept failing past its maximum age" };
                    tracing::error!(delivery_id = %d.id, attempts = d.attempts, error = %f.detail, "delivery given up: {why}; it is a dead letter now");
                    (
                        "UPDATE deliveries SET state = $1, next_attempt_at = NULL, locked_until = NULL, last_error = $2, \
                         failure = $3, endpoint = $4 WHERE id = $5 AND locked_until = $6",
                        vec![
                            (DeliveryState::Failed as i32).into(),
                            truncate(&format!("{} (given up: {why})", f.detail)).into(),
                            f.summary.into(),
                            endpoint.into(),
                            d.id.clone().into(),
                            lease.into(),
                        ],
                        DeliveryState::Failed,
                    )
                } else {
                    let delay =
                        backoff_ms(&self.cfg, d.attempts).max(f.retry_after.map_or(0, |r| r.as_millis() as i64));
                    tracing::warn!(delivery_id = %d.id, attempts = d.attempts, retry_in_ms = delay, error = %f.detail, "delivery failed; will retry");
                    (
                        "UPDATE deliveries SET state = $1, next_attempt_at = $2, locked_until = NULL, last_error = $3, \
                         failure = $4, endpoint = $5 WHERE id = $6 AND locked_until = $7",
                        vec![
                            (DeliveryState::Retrying as i32).into(),
                            (now + delay).into(),
                            truncate(&f.detail).into(),
                            f.summary.into(),
                            endpoint.into(),
                            d.id.clone().into(),
                            lease.into(),
                        ],
                        DeliveryState::Retrying,
                    )
                }
            }
        };
        tracing::Span::current().record("crs.delivery.outcome", state.short_name().to_lowercase());
        crate::metrics::DELIVERIES.with_label_values(&[audience, &channel, &state.short_name().to_lowercase()]).inc();
        let written = self.db.execute_raw(statement(backend, sql, values)).await?;
        if written.rows_affected() == 0 {
            tracing::warn!(delivery_id = %d.id, "the delivery's lease ran out before its outcome was written; it may be attempted again");
        }
        Ok(())
    }

    /// Gives up on deliveries past their age that no attempt reached (their endpoint's circuit
    /// stayed open, or their retry was not yet due), keeping their last attempt's error (once,
    /// when one given up before was retried by an admin and given up again), and refreshes the
    /// gauges.
    async fn housekeeping(&self) -> Result<(), DbErr> {
        let backend = self.db.get_database_backend();
        let now = now_millis();
        let cutoff = now - (self.cfg.max_age_secs as i64).saturating_mul(1000);
        let expired = self
            .db
            .query_all_raw(statement(
                backend,
                "UPDATE deliveries SET state = $1, next_attempt_at = NULL, \
                 last_error = CASE WHEN last_error LIKE 'gave up: past its maximum age%' THEN last_error \
                     ELSE 'gave up: past its maximum age with its endpoint failing' \
                     || COALESCE('; last attempt: ' || NULLIF(last_error, ''), '') END, \
                 failure = 'the endpoint kept failing; given up' \
                 WHERE next_attempt_at IS NOT NULL AND retry_from < $2 AND (locked_until IS NULL OR locked_until < $3) \
                 RETURNING id, audience, channel",
                vec![(DeliveryState::Failed as i32).into(), cutoff.into(), now.into()],
            ))
            .await?;
        for row in expired {
            let (id, audience, channel): (String, i32, i32) =
                (row.try_get("", "id")?, row.try_get("", "audience")?, row.try_get("", "channel")?);
            tracing::error!(delivery_id = %id, "delivery given up: past its maximum age; it is a dead letter now");
            crate::metrics::DELIVERIES
                .with_label_values(&[
                    crs_proto::convert::short_name_of::<Audience>(audience),
                    &crate::channels::name(channel),
                    "failed",
                ])
                .inc();
        }

        let waiting = self
            .db
            .query_all_raw(statement(
                backend,
                "SELECT channel, COUNT(*) AS n, MIN(created_at) AS oldest FROM deliveries \
                 WHERE next_attempt_at IS NOT NULL GROUP BY channel",
                vec![],
            ))
            .await?;
        crate::metrics::BACKLOG.reset();
        let mut oldest: Option<i64> = None;
        for row in waiting {
            let channel: i32 = row.try_get("", "channel")?;
            crate::metrics::BACKLOG.with_label_values(&[&crate::channels::name(channel)]).set(row.try_get("", "n")?);
            let at: Option<i64> = row.try_get("", "oldest")?;
            oldest = match (oldest, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        crate::metrics::OLDEST_WAITING.set(oldest.map_or(0, |o| (now - o) / 1000));
        let dead = self
            .db
            .query_all_raw(statement(
                backend,
                "SELECT audience, COUNT(*) AS n FROM deliveries WHERE state = $1 GROUP BY audience",
                vec![(DeliveryState::Failed as i32).into()],
            ))
            .await?;
        crate::metrics::DEAD_LETTERS.reset();
        for row in dead {
            let audience: i32 = row.try_get("", "audience")?;
            crate::metrics::DEAD_LETTERS
                .with_label_values(&[crs_proto::convert::short_name_of::<Audience>(audience)])
                .set(row.try_get("", "n")?);
        }
        let open = self.lanes.lock().expect("lanes").values().filter(|l| l.is_open(now)).count();
        crate::metrics::CIRCUITS_OPEN.set(open as i64);
        Ok(())
    }
}

/// Exponential backoff with equal jitter: half the step fixed, half random, so retries from
/// many deliveries spread out but none comes back immediately.
fn backoff_ms(cfg: &DeliveryConfig, attempts: i32) -> i64 {
    let exp = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let step = cfg.initial_backoff_ms.saturating_mul(1u64 << exp).min(cfg.max_backoff_ms) as i64;
    let half = step / 2;
    half + rand::rng().random_range(0..=half.max(0))
}

fn truncate(s: &str) -> String {
    s.chars().take(2000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DeliveryConfig {
        DeliveryConfig {
            development_mode: false,
            per_endpoint_concurrency: 4,
            max_in_flight: 64,
            initial_backoff_ms: 1000,
            max_backoff_ms: 60_000,
            max_age_secs: 3600,
            breaker_failures: 3,
            breaker_cooldown_ms: 10_000,
            poll_interval_ms: 1000,
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let c = cfg();
        for _ in 0..100 {
            assert!((500..=1000).contains(&backoff_ms(&c, 1)));
            assert!((2000..=4000).contains(&backoff_ms(&c, 3)));
            assert!((30_000..=60_000).contains(&backoff_ms(&c, 30)));
        }
    }

    #[test]
    fn a_lane_closes_after_failures_in_a_row_and_probes_once_after_the_cooldown() {
        let mut lane = Lane::default();
        assert_eq!(lane.capacity(0, 4), 4);
        lane.in_flight = 4;
        assert_eq!(lane.capacity(0, 4), 0, "a hanging endpoint holds only its own slots");
        lane.in_flight = 0;
        lane.open_until = Some(100);
        assert_eq!(lane.capacity(50, 4), 0, "open: no attempts");
        assert_eq!(lane.capacity(100, 4), 1, "half open: one probe");
        lane.in_flight = 1;
        assert_eq!(lane.capacity(100, 4), 0, "and only one");
    }
}
