//! Group commit for hand-off receivers: concurrent units of database work share one transaction
//! and one commit.
//!
//! A receiver of relayed hand-offs does a few statements per call, inside a transaction of its
//! own. With relays keeping many calls in flight, a good part of its database work is beginning
//! and committing (a round trip each, and a flush of the write-ahead log per commit).
//! [`SharedTransactions::run`] queues a unit of work; a writer takes its share of what is queued,
//! up to [`MAX_UNITS`], runs the units one after the other in one transaction and commits once. A lone
//! unit runs at once: nothing waits for company, so an idle receiver answers as fast as before.
//!
//! One unit never fails its neighbours: if a unit fails, or the commit does, the transaction is
//! rolled back and each unit of the batch runs again alone, answered with its own outcome. A unit
//! is therefore database work only, safe to run again after a rollback; what must follow the
//! commit (waking a relay, logging what was stored) its caller does once `run` returns. Units
//! in one transaction run in the order they were queued and see each other's writes, as if they
//! had committed one after the other.
//!
//! A unit runs in its caller's trace, so what it records of the trace (the `traceparent` of the
//! hand-offs it writes, its log lines) is its caller's. Each transaction is a span, `shared
//! transaction` ([`crate::telemetry::batch_span`]): for a unit alone, a child of the unit's
//! span; for several, a trace of its own linked to each unit's span, with each unit's own work
//! in the unit's span.
//!
//! A hand-off's unit ([`handoff`]) names the event it applies: the writer records the events of
//! all the units of a transaction in the inbox in one statement before it runs them, and tells
//! each unit whether its event is new (a unit alone records its own, as
//! [`crate::outbox::inbox_first_time`] does). Of two units of one transaction that carry the same
//! event, the first is told it is new, as if they had committed one after the other.
//!
//! Rows that no unit reads back in its transaction (hand-offs to relay, audit entries, history)
//! may be left in a unit's outcome and written by the receiver's [`DeferredWrites`] once every
//! unit of the transaction has run, just before the commit: one statement per table for the
//! whole transaction instead of one per unit. A unit alone has its own written the same way. If
//! those writes fail, the transaction is rolled back and each unit runs again alone, as for any
//! other failure.

use std::sync::Arc;

use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::Instrument;

/// Units per shared transaction: bounds how long one transaction holds the rows it wrote.
pub const MAX_UNITS: usize = 64;

/// Transactions in progress at once, each on a connection of its own.
pub const WRITERS: usize = 4;

/// Units that may wait for a writer before callers are held back.
const QUEUE_BOUND: usize = 4096;

/// Work run inside the transaction it is given (and whether the unit's event is new), possibly
/// more than once.
type Work<T, E> = Arc<dyn for<'t> Fn(&'t DatabaseTransaction, bool) -> BoxFuture<'t, Result<T, E>> + Send + Sync>;

/// Writes, inside the transaction, the rows the units' outcomes left to be written together
/// (taking them out of the outcomes), just before the commit.
pub type DeferredWrites<T, E> =
    Arc<dyn for<'t> Fn(&'t DatabaseTransaction, &'t mut [T]) -> BoxFuture<'t, Result<(), E>> + Send + Sync>;

/// A unit of work, and the event it applies if it is a hand-off's.
pub struct Unit<T, E> {
    event_id: Option<String>,
    work: Work<T, E>,
}

/// Wraps an async closure over a transaction as a [`Unit`].
pub fn unit<T, E, F>(work: F) -> Unit<T, E>
where
    F: for<'t> Fn(&'t DatabaseTransaction) -> BoxFuture<'t, Result<T, E>> + Send + Sync + 'static,
{
    Unit { event_id: None, work: Arc::new(move |txn, _| work(txn)) }
}

/// Wraps the effect of the hand-off `event_id` as a [`Unit`]: `work` runs once the event is
/// recorded in the inbox, told whether this is the first time (if not, it must change nothing
/// and answer as it did then).
pub fn handoff<T, E, F>(event_id: impl Into<String>, work: F) -> Unit<T, E>
where
    F: for<'t> Fn(&'t DatabaseTransaction, bool) -> BoxFuture<'t, Result<T, E>> + Send + Sync + 'static,
{
    Unit { event_id: Some(event_id.into()), work: Arc::new(work) }
}

struct Queued<T, E> {
    unit: Unit<T, E>,
    span: tracing::Span,
    answer: oneshot::Sender<Result<T, E>>,
}

/// The queue of units waiting for a transaction, and its writers.
pub struct SharedTransactions<T, E> {
    queue: mpsc::Sender<Queued<T, E>>,
}

impl<T, E> Clone for SharedTransactions<T, E> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone() }
    }
}

impl<T, E> SharedTransactions<T, E>
where
    T: Send + 'static,
    E: From<DbErr> + Send + 'static,
{
    /// Starts [`WRITERS`] writers on `db`. They stop once every handle is dropped.
    pub fn start(db: DatabaseConnection) -> Self {
        Self::start_writers(db, None)
    }

    /// Like [`SharedTransactions::start`], with `deferred` writing what the units' outcomes
    /// leave to be written together before each commit.
    pub fn start_deferring<F>(db: DatabaseConnection, deferred: F) -> Self
    where
        F: for<'t> Fn(&'t DatabaseTransaction, &'t mut [T]) -> BoxFuture<'t, Result<(), E>> + Send + Sync + 'static,
    {
        Self::start_writers(db, Some(Arc::new(deferred)))
    }

    fn start_writers(db: DatabaseConnection, deferred: Option<DeferredWrites<T, E>>) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_BOUND);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(Writer { db: db.clone(), receiver: receiver.clone(), deferred: deferred.clone() }.run());
        }
        Self { queue }
    }

    /// Units waiting for a writer.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Runs `unit` in a transaction it may share; returns its outcome once that transaction has
    /// committed (or failed).
    pub async fn run(&self, unit: Unit<T, E>) -> Result<T, E> {
        let (answer, answered) = oneshot::channel();
        let queued = Queued { unit, span: tracing::Span::current(), answer };
        self.queue.send(queued).await.map_err(|_| E::from(stopped()))?;
        answered.await.map_err(|_| E::from(stopped()))?
    }
}

fn stopped() -> DbErr {
    DbErr::Custom("the database writers have stopped".into())
}

struct Writer<T, E> {
    db: DatabaseConnection,
    receiver: Arc<Mutex<mpsc::Receiver<Queued<T, E>>>>,
    deferred: Option<DeferredWrites<T, E>>,
}

impl<T, E> Writer<T, E>
where
    T: Send + 'static,
    E: From<DbErr> + Send + 'static,
{
    async fn run(self) {
        while let Some(batch) = self.gather().await {
            if batch.len() == 1 {
                for q in batch {
                    self.alone(q).await;
                }
            } else {
                self.together(batch).await;
            }
        }
    }

    /// This writer's share of what is queued now: an equal part for each writer, at most
    /// [`MAX_UNITS`]; `None` once every handle is dropped. One writer gathers at a time, while
    /// the others write. Taking all that is queued would make the last unit of a long batch wait
    /// for every one before it while other writers stand idle; shared out, a moderate load is
    /// written by all the writers at once, and a heavy one still in batches of [`MAX_UNITS`].
    async fn gather(&self) -> Option<Vec<Queued<T, E>>> {
        let mut receiver = self.receiver.lock().await;
        let first = receiver.recv().await?;
        let share = (receiver.len() + 1).div_ceil(WRITERS).clamp(1, MAX_UNITS);
        let mut batch = vec![first];
        while batch.len() < share {
            match receiver.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Runs `batch` in one transaction; on any failure, each of its units again alone. What the
    /// transaction does for all its units (the inbox, the deferred writes, the commit) is traced
    /// in a span linked to each unit's; each unit's own work stays in its caller's span.
    async fn together(&self, batch: Vec<Queued<T, E>>) {
        let span = {
            let units: Vec<&tracing::Span> = batch.iter().map(|q| &q.span).collect();
            crate::telemetry::batch_span("shared transaction", &units)
        };
        self.together_traced(batch).instrument(span).await
    }

    async fn together_traced(&self, batch: Vec<Queued<T, E>>) {
        let txn = match self.db.begin().await {
            Ok(txn) => txn,
            Err(e) if crate::db::is_unavailable(&e) => return unavailable(batch, &e),
            Err(_) => return self.each_alone(batch).await,
        };
        let events = batch.iter().filter_map(|q| q.unit.event_id.as_deref());
        let mut new_events = match crate::outbox::inbox_record_new(&txn, events).await {
            Ok(new) => new,
            Err(e) if crate::db::is_unavailable(&e) => return unavailable(batch, &e),
            Err(_) => {
                let _ = txn.rollback().await;
                return self.each_alone(batch).await;
            }
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        for q in &batch {
            // Taken, so a second unit of the same event is told it is not new.
            let first_time = q.unit.event_id.as_ref().is_none_or(|id| new_events.remove(id));
            match (q.unit.work)(&txn, first_time).instrument(q.span.clone()).await {
                Ok(t) => outcomes.push(t),
                Err(_) => {
                    let _ = txn.rollback().await;
                    tracing::debug!(units = batch.len(), "a unit failed in a shared transaction; running each alone");
                    return self.each_alone(batch).await;
                }
            }
        }
        if let Some(deferred) = &self.deferred
            && deferred(&txn, &mut outcomes).await.is_err()
        {
            let _ = txn.rollback().await;
            tracing::debug!(
                units = batch.len(),
                "a shared transaction's deferred writes failed; running each unit alone"
            );
            return self.each_alone(batch).await;
        }
        match txn.commit().await {
            Ok(()) => {
                for (q, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = q.answer.send(Ok(outcome));
                }
            }
            Err(e) if crate::db::is_unavailable(&e) => unavailable(batch, &e),
            Err(e) => {
                tracing::warn!(error = %e, units = batch.len(), "a shared transaction did not commit; running each unit alone");
                self.each_alone(batch).await
            }
        }
    }

    async fn each_alone(&self, batch: Vec<Queued<T, E>>) {
        for q in batch {
            self.alone(q).await;
        }
    }

    async fn alone(&self, q: Queued<T, E>) {
        let outcome = async {
            let txn = self.db.begin().await?;
            let first_time = match &q.unit.event_id {
                Some(id) => crate::outbox::inbox_first_time(&txn, id).await?,
                None => true,
            };
            let mut t = (q.unit.work)(&txn, first_time).await?;
            if let Some(deferred) = &self.deferred {
                deferred(&txn, std::slice::from_mut(&mut t)).await?;
            }
            txn.commit().await?;
            Ok(t)
        }
        .instrument(crate::telemetry::batch_span("shared transaction", &[&q.span]))
        .await;
        let _ = q.answer.send(outcome);
    }
}

/// Answers every unit of `batch` that the database is unavailable: running them one by one
/// would only wait for it once per unit.
fn unavailable<T, E: From<DbErr>>(batch: Vec<Queued<T, E>>, cause: &DbErr) {
    tracing::warn!(error = %cause, units = batch.len(), "database unavailable; a shared transaction was not written");
    for q in batch {
        let _ = q.answer.send(Err(E::from(DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::ConnectionClosed))));
    }
}
