//! Group commit: concurrent submissions stored together, one transaction and one commit for
//! many, so the rate of accepted submissions is not bounded by one commit (and its disk flush)
//! each.
//!
//! A submission handed to [`GroupCommit::store`] waits in a queue. A writer takes what is
//! queued, up to `group_commit.max_batch`; when submissions are arriving faster than it writes
//! (the batch it took, or its last one, held more than one) it waits up to
//! `group_commit.max_wait_us` for more to join. A lone submission is written at once. It then
//! stores the whole batch with a few multi-row statements: requests, items, the agencies'
//! status events and every hand-off. Each caller is answered after the commit. The batch's
//! statements are traced in the submission's trace when it is alone, and otherwise in a span of
//! their own linked to each submission's (`crs_platform::telemetry::batch_span`).
//!
//! One failing submission never fails its neighbours: if the batch's transaction fails, each
//! of its submissions is written again on its own and answered with its own outcome. A
//! submission whose idempotency key another request took meanwhile (a twin in the same batch,
//! or one committed by another replica) is answered [`Stored::KeyTaken`], so the caller
//! answers as that request was answered.
//!
//! When submissions arrive faster than they are written, so that the oldest waiting has
//! waited longer than [`STANDING_QUEUE`], writers take the newest first: those are written
//! within their callers' deadlines, instead of every submission waiting as long as the queue is
//! deep. One that has waited [`OLDEST_FIRST_AFTER`] goes first again, before the server gives
//! its call up. A submission whose caller has gone by the time a writer takes it (its deadline passed
//! in the queue) is not stored: nobody was told it was accepted. A submission not stored, for
//! whatever reason, gives back what it took from the agency's rate limits.
//!
//! Nothing is locked that another submission waits on: the agencies' status events are ordered
//! by the transaction that wrote them (`crate::events`), not numbered under the agency's row.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crs_platform::db::arrays;
use crs_platform::outbox::OutboxBatch;
use crs_proto::common::RequestStatus;
use crs_ratelimit::Charge;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, Statement,
    TransactionTrait, TryInsertResult,
};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::Instrument;

use crate::admission::WritersIdle;
use crate::config::GroupCommitConfig;
use crate::entities::{request, request_item};
use crate::error::IntakeError;
use crate::service::Result;

/// A submission ready to be stored: the request, its items and its hand-offs.
#[derive(Debug, Clone)]
pub(crate) struct Submission {
    pub row: request::Model,
    pub items: Vec<request_item::Model>,
    pub handoffs: OutboxBatch,
}

/// What became of a submission.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Committed: the request is accepted.
    Committed,
    /// Not stored: another request of the agency holds its idempotency key.
    KeyTaken,
}

struct Pending {
    submission: Submission,
    /// The caller's span: a submission's durable write belongs to its trace.
    span: tracing::Span,
    answer: oneshot::Sender<Result<Stored>>,
    queued_at: tokio::time::Instant,
    /// What the submission took from its rate limits: kept once it is stored, and given back
    /// when it is not (dropped with the submission, whether abandoned, failed or a retry).
    charge: Charge,
}

/// Submissions waiting for a writer: those sent to the queue, and those a writer has taken off
/// it but not yet into a batch.
struct Queue {
    receiver: mpsc::Receiver<Pending>,
    waiting: VecDeque<Pending>,
}

/// The queue of submissions waiting to be stored, and its writers.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

/// Submissions that may wait for a writer before callers are held back.
const QUEUE_BOUND: usize = 16_384;

/// How long the oldest waiting submission may have waited before writers take the newest
/// first. Below it, submissions are written in the order they came. Past it, intake is
/// receiving more than it writes: in order, every submission would wait as long as the queue
/// is deep, past its caller's deadline once the queue is deep enough, and the writers would
/// spend every commit on requests nobody waits for any more. Newest first, those just arrived
/// are written in time, and the queue's oldest wait until it drains or their callers go
/// (then they are dropped, see [`without_abandoned`]).
const STANDING_QUEUE: Duration = Duration::from_millis(100);

/// How long a submission may wait before it is written ahead of newer ones again, standing
/// queue or not: the newest going first must not keep a caller without a deadline of its own
/// waiting until the server's bound on a call (`server.request_timeout_secs`, 30 s by default)
/// gives it up.
const OLDEST_FIRST_AFTER: Duration = Duration::from_secs(10);

/// Rows of request items per `INSERT` (9 values each, within SQLite's bound on parameters).
const ITEM_ROWS_PER_INSERT: usize = 1000;

impl GroupCommit {
    /// Starts `cfg.writers` writers on `db`; `committed` runs after each commit (it wakes the
    /// relay and open streams), and `idle` hears when a writer waits for work (intake's
    /// admission measures its pace only while none does). The writers stop when every handle is
    /// dropped.
    pub(crate) fn start(
        db: DatabaseConnection,
        cfg: &GroupCommitConfig,
        committed: Arc<dyn Fn() + Send + Sync>,
        idle: WritersIdle,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_BOUND);
        let waiting = Arc::new(Mutex::new(Queue { receiver, waiting: VecDeque::new() }));
        for _ in 0..cfg.writers.max(1) {
            let writer = Writer {
                db: db.clone(),
                queue: waiting.clone(),
                max_batch: cfg.max_batch.max(1),
                max_wait: Duration::from_micros(cfg.max_wait_us),
                committed: committed.clone(),
                idle: idle.clone(),
            };
            tokio::spawn(writer.run());
        }
        Self { queue }
    }

    /// Stores `submission` with whatever else is being submitted; returns after the commit.
    /// `charge` is kept if the submission is stored, and given back otherwise.
    pub(crate) async fn store(&self, submission: Submission, charge: Charge) -> Result<Stored> {
        let (answer, answered) = oneshot::channel();
        let gone = || IntakeError::Unavailable("intake is shutting down".into());
        let span = tracing::Span::current();
        let queued_at = tokio::time::Instant::now();
        self.queue.send(Pending { submission, span, answer, queued_at, charge }).await.map_err(|_| gone())?;
        answered.await.map_err(|_| gone())?
    }
}

struct Writer {
    db: DatabaseConnection,
    queue: Arc<Mutex<Queue>>,
    max_batch: usize,
    max_wait: Duration,
    committed: Arc<dyn Fn() + Send + Sync>,
    idle: WritersIdle,
}

impl Writer {
    async fn run(self) {
        let mut busy = false;
        while let Some(batch) = self.gather(busy).await {
            busy = batch.len() > 1;
            let batch = without_abandoned(batch);
            if batch.is_empty() {
                continue;
            }
            crate::metrics::GROUP_COMMIT_SIZE.observe(batch.len() as f64);
            for p in &batch {
                crate::metrics::STAGE_QUEUE.observe(p.queued_at.elapsed().as_secs_f64());
            }
            let (started, n) = (tokio::time::Instant::now(), batch.len());
            self.write(batch).await;
            let took = started.elapsed().as_secs_f64();
            // Once per submission, so the histogram counts submissions as the other stages do.
            for _ in 0..n {
                crate::metrics::STAGE_WRITE.observe(took);
            }
        }
    }

    /// The next batch (see [`next_batch`] for which submissions); `None` once every handle is
    /// dropped and nothing waits. One writer gathers at a time, while the others write.
    async fn gather(&self, busy: bool) -> Option<Vec<Pending>> {
        let mut queue = self.queue.lock().await;
        let Queue { receiver, waiting } = &mut *queue;
        loop {
            if waiting.is_empty() {
                let next = match receiver.try_recv() {
                    Ok(p) => p,
                    Err(_) => {
                        let _idle = self.idle.waiting();
                        receiver.recv().await?
                    }
                };
                waiting.push_back(next);
            }
            // Everything sent meanwhile, within the queue's bound (beyond it, callers wait to send).
            while waiting.len() < QUEUE_BOUND {
                match receiver.try_recv() {
                    Ok(p) => waiting.push_back(p),
                    Err(_) => break,
                }
            }
            // Those left waiting while the newest went first may have been given up since.
            let before = waiting.len();
            waiting.retain(|p| !p.answer.is_closed());
            count_abandoned(before - waiting.len());
            if !waiting.is_empty() {
                break;
            }
        }
        let mut batch = next_batch(waiting, self.max_batch, tokio::time::Instant::now(), |p| p.queued_at);
        if (busy || batch.len() > 1) && !self.max_wait.is_zero() {
            let until = tokio::time::Instant::now() + self.max_wait;
            while batch.len() < self.max_batch {
                match tokio::time::timeout_at(until, receiver.recv()).await {
                    Ok(Some(p)) => batch.push(p),
                    _ => break,
                }
            }
        }
        Some(batch)
    }

    async fn write(&self, batch: Vec<Pending>) {
        // A twin (the same agency and key) waits for the batch: it is then stored alone, which
        // finds the key taken by the first if that one was stored.
        let mut keys = HashSet::new();
        let (together, twins): (Vec<Pending>, Vec<Pending>) = batch.into_iter().partition(|p| {
            let row = &p.submission.row;
            keys.insert((row.agency_id.clone(), row.idempotency_key.clone()))
        });
        let submissions: Vec<&Submission> = together.iter().map(|p| &p.submission).collect();
        let span = {
            let callers: Vec<&tracing::Span> = together.iter().map(|p| &p.span).collect();
            crs_platform::telemetry::batch_span("group commit", &callers)
        };
        let mut alone = twins;
        match store_together(&self.db, &submissions).instrument(span).await {
            Ok(taken) => {
                (self.committed)();
                for p in together {
                    let stored =
                        if taken.contains(&p.submission.row.id) { Stored::KeyTaken } else { Stored::Committed };
                    p.answered(Ok(stored));
                }
            }
            // A batch of one has failed alone already.
            Err(e) if together.len() == 1 => {
                if let Some(p) = together.into_iter().next() {
                    p.answered(Err(e.into()));
                }
            }
            Err(e) if crs_platform::db::is_unavailable(&e) => {
                tracing::warn!(error = %e, submissions = together.len(), "database unavailable; a batch of submissions was not stored");
                for p in together {
                    p.answered(Err(IntakeError::Unavailable(e.to_string())));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, submissions = together.len(), "a batch of submissions failed; storing each alone");
                alone.extend(together);
            }
        }
        for p in alone {
            let result = store_together(&self.db, &[&p.submission]).instrument(p.span.clone()).await;
            if result.is_ok() {
                (self.committed)();
            }
            let answer = result
                .map_err(IntakeError::from)
                .map(|taken| if taken.contains(&p.submission.row.id) { Stored::KeyTaken } else { Stored::Committed });
            p.answered(answer);
        }
    }
}

impl Pending {
    /// Answers the caller (if it still waits) with what became of the submission; its rate-limit
    /// charge is kept only if it was stored.
    fn answered(self, outcome: Result<Stored>) {
        if matches!(outcome, Ok(Stored::Committed)) {
            self.charge.keep();
        }
        let _ = self.answer.send(outcome);
    }
}

/// Takes up to `max` of `waiting` for a batch: the oldest while the oldest has waited less than
/// [`STANDING_QUEUE`], the newest once it has waited longer, and the oldest again once it has
/// waited [`OLDEST_FIRST_AFTER`].
fn next_batch<T>(
    waiting: &mut VecDeque<T>,
    max: usize,
    now: tokio::time::Instant,
    queued_at: impl Fn(&T) -> tokio::time::Instant,
) -> Vec<T> {
    let take = max.min(waiting.len());
    let oldest_waited =
        waiting.front().map_or(Duration::ZERO, |oldest| now.saturating_duration_since(queued_at(oldest)));
    if oldest_waited > STANDING_QUEUE && oldest_waited <= OLDEST_FIRST_AFTER {
        crate::metrics::GROUP_COMMIT_NEWEST_FIRST.inc();
        waiting.split_off(waiting.len() - take).into_iter().collect()
    } else {
        waiting.drain(..take).collect()
    }
}

/// The submissions whose callers still wait for them. A caller that has gone (its deadline
/// passed while it queued, or it hung up) was answered nothing, and a retry with its
/// idempotency key is a new submission: storing it now would spend the commit, and the work it
/// causes in every service, on a request nobody is told was accepted. Under overload this is
/// what keeps the queue from filling with work past its deadline.
fn without_abandoned(batch: Vec<Pending>) -> Vec<Pending> {
    let gathered = batch.len();
    let waiting: Vec<Pending> = batch.into_iter().filter(|p| !p.answer.is_closed()).collect();
    count_abandoned(gathered - waiting.len());
    waiting
}

fn count_abandoned(abandoned: usize) {
    if abandoned > 0 {
        tracing::info!(abandoned, "submissions whose callers had gone were not stored");
        crate::metrics::SUBMISSIONS_ABANDONED.inc_by(abandoned as u64);
    }
}

/// Stores `submissions` in one transaction; returns the ids of those not stored because their
/// idempotency key was taken. Nothing is stored if it fails.
async fn store_together(
    db: &DatabaseConnection,
    submissions: &[&Submission],
) -> std::result::Result<HashSet<String>, DbErr> {
    let txn = db.begin().await?;
    let stored_ids = insert_requests(&txn, submissions).await?;
    let (stored, taken): (Vec<&Submission>, Vec<&Submission>) =
        submissions.iter().copied().partition(|s| stored_ids.contains(&s.row.id));
    let taken: HashSet<String> = taken.into_iter().map(|s| s.row.id.clone()).collect();
    if stored.is_empty() {
        return Ok(taken);
    }

    insert_items(&txn, stored.iter().flat_map(|s| s.items.iter()).collect()).await?;

    // Every event of the batch is ordered by this transaction (see `crate::events`).
    let events: Vec<_> = stored.iter().map(|s| (&s.row, RequestStatus::Received, "received")).collect();
    crate::events::record_events(&txn, &events).await?;

    let mut handoffs = OutboxBatch::default();
    for s in &stored {
        handoffs.extend(s.handoffs.clone());
    }
    handoffs.write(&txn).await?;
    txn.commit().await?;
    Ok(taken)
}

/// Inserts a batch's requests, but none whose agency and idempotency key another request holds;
/// returns the ids of those inserted. On PostgreSQL in one statement whose text is the same for
/// every batch ([`INSERT_REQUESTS`], see [`crs_platform::db::arrays`]).
async fn insert_requests(
    txn: &DatabaseTransaction,
    submissions: &[&Submission],
) -> std::result::Result<HashSet<String>, DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        let inserted =
            request::Entity::insert_many(submissions.iter().map(|s| request::ActiveModel::from(s.row.clone())))
                .on_conflict_do_nothing_on([request::Column::AgencyId, request::Column::IdempotencyKey])
                .exec_with_returning_keys(txn)
                .await?;
        return Ok(match inserted {
            TryInsertResult::Inserted(ids) => ids.into_iter().collect(),
            TryInsertResult::Conflicted | TryInsertResult::Empty => HashSet::new(),
        });
    }
    let rows: Vec<&request::Model> = submissions.iter().map(|s| &s.row).collect();
    let texts = |column: fn(&request::Model) -> &String| arrays::texts(rows.iter().map(|r| column(r).clone()));
    let ints = |column: fn(&request::Model) -> i32| arrays::ints(rows.iter().map(|r| column(r)));
    let bigints = |column: fn(&request::Model) -> i64| arrays::bigints(rows.iter().map(|r| column(r)));
    let values = vec![
        texts(|r| &r.id),
        texts(|r| &r.agency_id),
        texts(|r| &r.idempotency_key),
        texts(|r| &r.body_hash),
        texts(|r| &r.jurisdiction),
        texts(|r| &r.keywords),
        texts(|r| &r.legal_basis),
        texts(|r| &r.justification),
        texts(|r| &r.reference),
        texts(|r| &r.issuing_authority),
        texts(|r| &r.status_note),
        texts(|r| &r.pending_question),
        ints(|r| r.legal_instrument),
        ints(|r| r.category),
        ints(|r| r.requested_action),
        ints(|r| r.status),
        bigints(|r| r.status_at),
        bigints(|r| r.status_version),
        bigints(|r| r.received_at),
        bigints(|r| r.updated_at),
        arrays::flags(rows.iter().map(|r| r.deadline.is_some())),
        arrays::bytes(rows.iter().map(|r| r.deadline.clone().unwrap_or_default())),
    ];
    let inserted =
        txn.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, INSERT_REQUESTS, values)).await?;
    inserted.iter().map(|row| row.try_get::<String>("", "id")).collect()
}

/// A batch's requests on PostgreSQL: each column's values as one array, `UNNEST`ed into rows.
/// A deadline travels beside a flag saying whether the request has one, since an array holds no
/// NULL and an empty encoding is a deadline.
const INSERT_REQUESTS: &str = "INSERT INTO requests (id, agency_id, idempotency_key, body_hash, jurisdiction, \
     keywords, legal_basis, justification, reference, issuing_authority, status_note, pending_question, \
     legal_instrument, category, requested_action, status, status_at, status_version, received_at, updated_at, \
     deadline) \
     SELECT id, agency_id, idempotency_key, body_hash, jurisdiction, keywords, legal_basis, justification, \
     reference, issuing_authority, status_note, pending_question, legal_instrument, category, requested_action, \
     status, status_at, status_version, received_at, updated_at, CASE WHEN has_deadline THEN deadline END \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
     $9::text[], $10::text[], $11::text[], $12::text[], $13::int4[], $14::int4[], $15::int4[], $16::int4[], \
     $17::int8[], $18::int8[], $19::int8[], $20::int8[], $21::bool[], $22::bytea[]) \
     AS batch (id, agency_id, idempotency_key, body_hash, jurisdiction, keywords, legal_basis, justification, \
     reference, issuing_authority, status_note, pending_question, legal_instrument, category, requested_action, \
     status, status_at, status_version, received_at, updated_at, has_deadline, deadline) \
     ON CONFLICT (agency_id, idempotency_key) DO NOTHING RETURNING id";

/// A batch's items on PostgreSQL: each column's values as one array, `UNNEST`ed into rows.
const INSERT_ITEMS: &str = "INSERT INTO request_items \
     (request_id, item_index, url, content_id, description, content_key, outcome, no_action_reason, explanation) \
     SELECT * FROM UNNEST($1::text[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int4[], \
     $8::int4[], $9::text[])";

/// Inserts a batch's items. On PostgreSQL in one statement whose text is the same for every
/// batch ([`INSERT_ITEMS`]); a `VALUES` list with a row of placeholders per item (about ten a
/// submission, nine columns each) was most of the parsing in PostgreSQL's profile under intake
/// alone.
async fn insert_items(txn: &DatabaseTransaction, items: Vec<&request_item::Model>) -> std::result::Result<(), DbErr> {
    if items.is_empty() {
        return Ok(());
    }
    if txn.get_database_backend() != DbBackend::Postgres {
        let items: Vec<request_item::ActiveModel> =
            items.into_iter().cloned().map(request_item::ActiveModel::from).collect();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<_> = items.by_ref().take(ITEM_ROWS_PER_INSERT).collect();
            request_item::Entity::insert_many(chunk).exec_without_returning(txn).await?;
        }
        return Ok(());
    }
    let texts = |column: fn(&request_item::Model) -> &String| arrays::texts(items.iter().map(|i| column(i).clone()));
    let ints = |column: fn(&request_item::Model) -> i32| arrays::ints(items.iter().map(|i| column(i)));
    let values = vec![
        texts(|i| &i.request_id),
        ints(|i| i.item_index),
        texts(|i| &i.url),
        texts(|i| &i.content_id),
        texts(|i| &i.description),
        texts(|i| &i.content_key),
        ints(|i| i.outcome),
        ints(|i| i.no_action_reason),
        texts(|i| &i.explanation),
    ];
    txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, INSERT_ITEMS, values)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    /// Submissions numbered in the order they came, queued `ages` milliseconds before `now`.
    fn queued(now: Instant, ages: &[u64]) -> VecDeque<(u32, Instant)> {
        ages.iter().enumerate().map(|(i, age)| (i as u32, now - Duration::from_millis(*age))).collect()
    }

    fn numbers(batch: Vec<(u32, Instant)>) -> Vec<u32> {
        batch.into_iter().map(|(n, _)| n).collect()
    }

    /// A request as intake stores it, with a value of its own in every column.
    fn request_row(n: u8, deadline: Option<Vec<u8>>) -> request::Model {
        let text = |field: &str| format!("{field} {n}");
        request::Model {
            id: text("id"),
            agency_id: "agency".into(),
            idempotency_key: text("key"),
            body_hash: text("hash"),
            jurisdiction: "DE".into(),
            legal_instrument: i32::from(n) + 1,
            category: i32::from(n) + 2,
            keywords: format!("[{n}]"),
            requested_action: i32::from(n) + 3,
            legal_basis: text("basis"),
            justification: text("why"),
            reference: text("ref"),
            issuing_authority: text("authority"),
            status: i32::from(n) + 4,
            status_at: 1_000 + i64::from(n),
            status_note: text("note"),
            pending_question: text("question"),
            deadline,
            status_version: 2_000 + i64::from(n),
            received_at: 3_000 + i64::from(n),
            updated_at: 4_000 + i64::from(n),
        }
    }

    fn submission(row: request::Model) -> Submission {
        let items = (0..2)
            .map(|i| request_item::Model {
                request_id: row.id.clone(),
                item_index: i,
                url: format!("https://social.example/{}/{i}", row.id),
                content_id: format!("content {i}"),
                description: format!("description {i}"),
                content_key: format!("key {}/{i}", row.id),
                outcome: i + 1,
                no_action_reason: i + 2,
                explanation: format!("explanation {i}"),
            })
            .collect();
        Submission { row, items, handoffs: OutboxBatch::default() }
    }

    /// Every column of a batch's requests and items is stored as given, a deadline as given too
    /// (none, an empty encoding, or bytes), and a request whose key is taken is left out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_is_stored_column_for_column() {
        use sea_orm::{EntityTrait, QueryOrder};
        use sea_orm_migration::MigratorTrait;
        for backend in crs_testkit::db::Backend::ALL {
            let test_db = crs_testkit::TestDb::fresh(backend, "group_commit_columns").await.unwrap();
            let db = test_db.connect().await.unwrap();
            crate::migration::Migrator::up(&db, None).await.unwrap();
            let batch: Vec<Submission> = [None, Some(vec![]), Some(vec![8, 0, 16, 1])]
                .into_iter()
                .zip(1..)
                .map(|(d, n)| submission(request_row(n, d)))
                .collect();
            let taken = store_together(&db, &batch.iter().collect::<Vec<_>>()).await.unwrap();
            assert!(taken.is_empty(), "{backend:?}");
            // The same key again, in a batch with a new request.
            let again = request::Model { id: "id 9".into(), ..request_row(1, None) };
            let later = [submission(again), submission(request_row(4, None))];
            let taken = store_together(&db, &later.iter().collect::<Vec<_>>()).await.unwrap();
            assert_eq!(taken, HashSet::from(["id 9".to_owned()]), "{backend:?}");

            let stored = request::Entity::find().order_by_asc(request::Column::Id).all(&db).await.unwrap();
            let expected: Vec<_> = batch.iter().chain(&later[1..]).map(|s| s.row.clone()).collect();
            assert_eq!(stored, expected, "{backend:?}");
            let items = request_item::Entity::find()
                .order_by_asc(request_item::Column::RequestId)
                .order_by_asc(request_item::Column::ItemIndex)
                .all(&db)
                .await
                .unwrap();
            let expected: Vec<_> = batch.iter().chain(&later[1..]).flat_map(|s| s.items.clone()).collect();
            assert_eq!(items, expected, "{backend:?}");
            db.close().await.unwrap();
            test_db.drop_now().await.unwrap();
        }
    }

    #[test]
    fn submissions_are_written_in_the_order_they_came_while_the_queue_keeps_up() {
        let now = Instant::now();
        let mut waiting = queued(now, &[60, 40, 20, 5, 1]);
        assert_eq!(numbers(next_batch(&mut waiting, 3, now, |p| p.1)), [0, 1, 2]);
        assert_eq!(numbers(next_batch(&mut waiting, 3, now, |p| p.1)), [3, 4]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn the_newest_go_first_once_the_oldest_has_waited_too_long() {
        let now = Instant::now();
        let mut waiting = queued(now, &[900, 500, 300, 40, 20, 1]);
        assert_eq!(numbers(next_batch(&mut waiting, 2, now, |p| p.1)), [4, 5], "the newest, in the order they came");
        assert_eq!(numbers(next_batch(&mut waiting, 2, now, |p| p.1)), [2, 3]);
        assert_eq!(numbers(next_batch(&mut waiting, 8, now, |p| p.1)), [0, 1], "the oldest once the rest are written");
        assert!(waiting.is_empty());
    }

    #[test]
    fn those_about_to_be_given_up_by_the_server_go_first_again() {
        let now = Instant::now();
        let mut waiting = queued(now, &[12_000, 11_000, 9_000, 300, 1]);
        assert_eq!(numbers(next_batch(&mut waiting, 2, now, |p| p.1)), [0, 1]);
        assert_eq!(numbers(next_batch(&mut waiting, 2, now, |p| p.1)), [3, 4], "then the newest again");
        assert_eq!(numbers(next_batch(&mut waiting, 2, now, |p| p.1)), [2]);
    }
}
