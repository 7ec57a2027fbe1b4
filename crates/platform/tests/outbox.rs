//! The outbox relay and inbox against real databases: every row delivered, none twice while
//! relays are healthy (two relays share one PostgreSQL outbox), failures retried with backoff,
//! refusals and rows too old to retry kept as dead letters that never block the rows behind them
//! and can be replayed, repeated event ids absorbed by the inbox, a slow batch holding up no
//! other, one claim per wake-up, and replicas waking each other's relays on PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crs_platform::config::OutboxConfig;
use crs_platform::outbox::{
    HandoffError, Outbox, OutboxBatch, OutboxClaimOrder, OutboxDeadLetters, OutboxMigration, Relay, VACUUM_AFTER_ROWS,
    claim_statement, handler, inbox_first_time,
};
use crs_proto::InternalCall;
use prost::Message;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio_util::sync::CancellationToken;

mod support;
use support::{drop_postgres, fresh_postgres};

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(OutboxMigration), Box::new(OutboxDeadLetters), Box::new(OutboxClaimOrder)]
    }
}

fn config() -> OutboxConfig {
    OutboxConfig {
        batch_size: 16,
        poll_interval_ms: 50,
        lease_ms: 5_000,
        initial_backoff_ms: 20,
        max_backoff_ms: 100,
        call_timeout_ms: 1_000,
        max_age_secs: 3600,
        relay_connections: 2,
        batches_in_flight: 4,
    }
}

async fn postgres() -> (DatabaseConnection, String) {
    let (db, name) = fresh_postgres("crs_outbox").await;
    Migrator::up(&db, None).await.unwrap();
    (db, name)
}

/// The same test on both backends: a fresh SQLite file and a fresh PostgreSQL database.
async fn both() -> Vec<(DatabaseConnection, Option<String>)> {
    let (pg, name) = postgres().await;
    vec![(sqlite().await, None), (pg, Some(name))]
}

async fn release(db: DatabaseConnection, pg_name: Option<String>) {
    db.close().await.unwrap();
    if let Some(name) = pg_name {
        drop_postgres(&name).await;
    }
}

async fn sqlite() -> DatabaseConnection {
    let path = std::env::temp_dir().join(format!("crs-outbox-{}.db", uuid::Uuid::new_v4()));
    let db = Database::connect(format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    db
}

async fn enqueue(outbox: &Outbox, db: &DatabaseConnection, n: usize) {
    for i in 0..n {
        let txn = db.begin().await.unwrap();
        outbox.enqueue(&txn, "test.topic", &prost_types::Duration { seconds: i as i64, nanos: 0 }).await.unwrap();
        txn.commit().await.unwrap();
    }
    outbox.wake();
}

/// A handler that counts what it is handed, and the count.
fn counting_handler() -> (Arc<Mutex<usize>>, crs_platform::outbox::Handler) {
    let delivered: Arc<Mutex<usize>> = Default::default();
    let count = delivered.clone();
    let h = handler(move |_| {
        let count = count.clone();
        async move {
            *count.lock().unwrap() += 1;
            Ok(())
        }
    });
    (delivered, h)
}

/// A relay running in the background until [`TestRelay::stop`].
struct TestRelay {
    shutdown: CancellationToken,
    running: tokio::task::JoinHandle<()>,
}

impl TestRelay {
    fn start(relay: Relay) -> Self {
        let shutdown = CancellationToken::new();
        Self { running: tokio::spawn(relay.run(shutdown.clone())), shutdown }
    }

    /// Stops the relay and waits until it has.
    async fn stop(self) {
        self.shutdown.cancel();
        self.running.await.unwrap();
    }
}

async fn wait_empty(outbox: &Outbox) {
    for _ in 0..400 {
        if outbox.backlog().await.unwrap().0 == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("outbox not drained: {:?}", outbox.backlog().await.unwrap());
}

/// The payloads a handler recorded, in order, once there are `n` of them (or after 10 s).
async fn delivered_payloads(delivered: &Mutex<Vec<i64>>, n: usize) -> Vec<i64> {
    let mut seen = Vec::new();
    for _ in 0..400 {
        seen = delivered.lock().unwrap().clone();
        if seen.len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    seen.sort();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_postgres_deliver_every_row_exactly_once() {
    let (db, name) = postgres().await;
    let outbox = Outbox::new(db.clone());
    let seen: Arc<Mutex<HashMap<i64, usize>>> = Default::default();
    let shutdown = CancellationToken::new();
    let mut relays = Vec::new();
    for _ in 0..2 {
        let seen = seen.clone();
        let h = handler(move |e| {
            let seen = seen.clone();
            async move {
                let payload: prost_types::Duration = e.decode()?;
                *seen.lock().unwrap().entry(payload.seconds).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok(())
            }
        });
        let relay = Outbox::new(db.clone()).relay("test", config(), HashMap::from([("test.topic", h)]));
        relays.push(tokio::spawn(relay.run(shutdown.clone())));
    }
    enqueue(&outbox, &db, 300).await;
    wait_empty(&outbox).await;
    shutdown.cancel();
    for r in relays {
        r.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 300, "every row delivered");
    assert!(seen.values().all(|n| *n == 1), "no row delivered twice");
    drop_postgres(&name).await;
}

/// Hand-offs gathered in a batch are stored row for row as sent, however many there are (more
/// than one SQLite statement takes, too); one sent outside any trace has no trace context: NULL,
/// not an empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_hand_offs_is_stored_row_for_row() {
    use crs_proto::intake::UpdateStatusRequest;
    for (db, pg_name) in both().await {
        for n in [1usize, 3, 1_200] {
            let mut batch = OutboxBatch::default();
            let mut sent = Vec::new();
            for i in 0..n {
                let message = UpdateStatusRequest { request_id: format!("request-{i}"), ..Default::default() };
                let id = batch.send(&message);
                sent.push((id, UpdateStatusRequest::METHOD.to_owned(), message.encode_to_vec(), None::<String>));
            }
            let txn = db.begin().await.unwrap();
            batch.write(&txn).await.unwrap();
            txn.commit().await.unwrap();

            let backend = db.get_database_backend();
            let sql =
                "SELECT id, topic, payload, trace_context, attempts, created_at, available_at FROM outbox ORDER BY id";
            let rows = db.query_all_raw(Statement::from_string(backend, sql)).await.unwrap();
            let stored: Vec<_> = rows
                .iter()
                .map(|r| {
                    let (created, available): (i64, i64) =
                        (r.try_get("", "created_at").unwrap(), r.try_get("", "available_at").unwrap());
                    assert_eq!((r.try_get::<i32>("", "attempts").unwrap(), created), (0, available), "due at once");
                    (
                        r.try_get::<String>("", "id").unwrap(),
                        r.try_get::<String>("", "topic").unwrap(),
                        r.try_get::<Vec<u8>>("", "payload").unwrap(),
                        r.try_get::<Option<String>>("", "trace_context").unwrap(),
                    )
                })
                .collect();
            sent.sort();
            assert_eq!(stored, sent, "{n} rows on {backend:?}");
            db.execute_unprepared("DELETE FROM outbox").await.unwrap();
        }
        release(db, pg_name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_hand_offs_are_retried_until_they_succeed() {
    for (db, pg_name) in both().await {
        let outbox = Outbox::new(db.clone());
        let attempts: Arc<Mutex<Vec<i32>>> = Default::default();
        let seen = attempts.clone();
        let h = handler(move |e| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(e.attempts);
                if e.attempts < 3 {
                    return Err(anyhow::anyhow!("peer unavailable").into());
                }
                Ok(())
            }
        });
        let relay = TestRelay::start(outbox.relay("test", config(), HashMap::from([("test.topic", h)])));
        enqueue(&outbox, &db, 1).await;
        wait_empty(&outbox).await;
        relay.stop().await;
        assert_eq!(*attempts.lock().unwrap(), vec![1, 2, 3], "retried until the third attempt succeeded");
        release(db, pg_name).await;
    }
}

/// Every failed batch's retry is kept, not only the earliest: row 1's batch fails while row 0's
/// retry is still ahead, and falls due after it. The relay never polls here, so row 1 reaches
/// its receiver only if the relay remembered when.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failed_batch_is_retried_at_its_own_time_without_a_poll() {
    for (db, pg_name) in both().await {
        let outbox = Outbox::new(db.clone());
        let delivered: Arc<Mutex<Vec<i64>>> = Default::default();
        let seen = delivered.clone();
        let h = handler(move |e| {
            let seen = seen.clone();
            async move {
                let payload: prost_types::Duration = e.decode()?;
                if e.attempts == 1 {
                    // Row 1 fails later than row 0, but before row 0's retry (0.8–1.2 s on).
                    if payload.seconds == 1 {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    }
                    return Err(anyhow::anyhow!("peer unavailable").into());
                }
                seen.lock().unwrap().push(payload.seconds);
                Ok(())
            }
        });
        let cfg = OutboxConfig {
            batch_size: 1,
            batches_in_flight: 2,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 1_000,
            poll_interval_ms: 600_000,
            ..config()
        };
        let relay = TestRelay::start(outbox.relay("test", cfg, HashMap::from([("test.topic", h)])));
        enqueue(&outbox, &db, 2).await;
        assert_eq!(delivered_payloads(&delivered, 2).await, vec![0, 1], "both rows retried at their own time");
        wait_empty(&outbox).await;
        relay.stop().await;
        release(db, pg_name).await;
    }
}

/// The rows of one failed batch fall due at times spread by the backoff's jitter (0.8–1.2 s
/// here); those not yet due when the earliest is claimed go at the latest, not at the next poll,
/// which never comes here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_row_of_a_batch_is_retried_without_a_poll() {
    for (db, pg_name) in both().await {
        let outbox = Outbox::new(db.clone());
        let delivered: Arc<Mutex<Vec<i64>>> = Default::default();
        let seen = delivered.clone();
        let h = handler(move |e| {
            let seen = seen.clone();
            async move {
                if e.attempts == 1 {
                    return Err(anyhow::anyhow!("peer unavailable").into());
                }
                let payload: prost_types::Duration = e.decode()?;
                seen.lock().unwrap().push(payload.seconds);
                Ok(())
            }
        });
        let cfg = OutboxConfig {
            batch_size: 8,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 1_000,
            poll_interval_ms: 600_000,
            ..config()
        };
        let relay = TestRelay::start(outbox.relay("test", cfg, HashMap::from([("test.topic", h)])));
        enqueue(&outbox, &db, 8).await;
        assert_eq!(
            delivered_payloads(&delivered, 8).await,
            (0..8).collect::<Vec<i64>>(),
            "every row of the batch retried"
        );
        wait_empty(&outbox).await;
        relay.stop().await;
        release(db, pg_name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_applies_each_event_once() {
    for (db, pg_name) in both().await {
        let txn = db.begin().await.unwrap();
        assert!(inbox_first_time(&txn, "event-1").await.unwrap());
        txn.commit().await.unwrap();
        assert!(!inbox_first_time(&db, "event-1").await.unwrap(), "a repeat is recognised");
        // A rolled-back effect leaves no trace: the event can be applied later.
        let txn = db.begin().await.unwrap();
        assert!(inbox_first_time(&txn, "event-2").await.unwrap());
        txn.rollback().await.unwrap();
        assert!(inbox_first_time(&db, "event-2").await.unwrap());
        release(db, pg_name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_without_a_handler_stay_until_one_exists() {
    let db = sqlite().await;
    let outbox = Outbox::new(db.clone());
    let relay = TestRelay::start(outbox.relay("test", config(), HashMap::new()));
    enqueue(&outbox, &db, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(outbox.backlog().await.unwrap().0, 3, "nothing is dropped");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_expired_hand_offs_become_dead_letters_that_block_nothing_and_replay() {
    for (db, pg_name) in both().await {
        let outbox = Outbox::new(db.clone());
        let delivered: Arc<Mutex<Vec<i64>>> = Default::default();
        let replayed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, fixed) = (delivered.clone(), replayed.clone());
        // Row 0 is refused (INVALID_ARGUMENT) until the cause is fixed; row 1 keeps failing
        // transiently and is older than the maximum age; rows 2.. go through.
        let h = handler(move |e| {
            let (seen, fixed) = (seen.clone(), fixed.clone());
            async move {
                let n = e.decode::<prost_types::Duration>()?.seconds;
                let fixed = fixed.load(std::sync::atomic::Ordering::SeqCst);
                if n == 0 && !fixed {
                    return Err(tonic::Status::invalid_argument("items[0].url is not a URL").into());
                }
                if n == 1 && !fixed {
                    return Err(HandoffError::Transient(anyhow::anyhow!("peer unavailable")));
                }
                seen.lock().unwrap().push(n);
                Ok(())
            }
        });
        // No poll: the retries go at their times, and the replay must wake the relay itself.
        let cfg = OutboxConfig { max_age_secs: 1, poll_interval_ms: 600_000, ..config() };
        let relay = TestRelay::start(outbox.relay("test", cfg, HashMap::from([("test.topic", h)])));
        enqueue(&outbox, &db, 6).await;
        // Everything behind the poison rows is delivered, and the poison rows end as dead letters.
        for _ in 0..200 {
            if crs_platform::dead_letters::count(&db).await.unwrap() == 2 && outbox.backlog().await.unwrap().0 == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let mut got = delivered.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, vec![2, 3, 4, 5], "the rows behind the poison rows went through");
        let dead = crs_platform::dead_letters::list(&db, None, 10).await.unwrap();
        assert_eq!(dead.len(), 2, "both poison rows are dead letters");
        assert!(dead.iter().any(|d| d.last_error.contains("items[0].url")), "{dead:?}");
        assert!(dead.iter().any(|d| d.last_error.contains("peer unavailable")), "{dead:?}");
        // A dead letter is not retried...
        let attempts: Vec<u32> = dead.iter().map(|d| d.attempts).collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again: Vec<u32> =
            crs_platform::dead_letters::list(&db, None, 10).await.unwrap().iter().map(|d| d.attempts).collect();
        assert_eq!(attempts, again, "dead letters are left alone");
        // ...until an admin replays it, once the cause is fixed.
        replayed.store(true, std::sync::atomic::Ordering::SeqCst);
        let ids: Vec<String> = dead.iter().map(|d| d.id.clone()).collect();
        assert_eq!(crs_platform::dead_letters::replay(&outbox, Some(&ids)).await.unwrap(), 2);
        wait_empty(&outbox).await;
        for _ in 0..100 {
            if delivered.lock().unwrap().len() == 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let mut got = delivered.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5], "replayed dead letters are delivered");
        assert_eq!(crs_platform::dead_letters::count(&db).await.unwrap(), 0);
        relay.stop().await;
        release(db, pg_name).await;
    }
}

/// A relay with connections of its own keeps forwarding while the requests hold every connection
/// of the service's pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_its_own_connections_forwards_while_the_pool_is_held() {
    let (db, name) = postgres().await;
    let url = format!("{}/{name}", support::admin_url().rsplit_once('/').unwrap().0);
    let pool_of = |n: u32| {
        let mut options = sea_orm::ConnectOptions::new(url.clone());
        options.max_connections(n).acquire_timeout(Duration::from_millis(500));
        Database::connect(options)
    };
    let (requests, relay_pool) = (pool_of(1).await.unwrap(), pool_of(2).await.unwrap());
    let producer = Outbox::new(db.clone());
    enqueue(&producer, &db, 40).await;

    // Every connection of the service's pool is taken, as by submissions under load.
    let held = requests.begin().await.unwrap();
    let (delivered, h) = counting_handler();
    let shutdown = CancellationToken::new();
    let relay = Outbox::new(requests.clone()).with_relay_connections(relay_pool).relay(
        "test",
        config(),
        HashMap::from([("test.topic", h)]),
    );
    let running = tokio::spawn(relay.run(shutdown.clone()));
    wait_empty(&producer).await;
    assert_eq!(*delivered.lock().unwrap(), 40, "every row forwarded while the pool was held");
    shutdown.cancel();
    running.await.unwrap();
    drop(held);
    drop_postgres(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_batch_does_not_hold_up_the_rows_behind_it() {
    for (db, pg_name) in both().await {
        let producer = Outbox::new(db.clone());
        // Rows 0 and 1 (claimed first, as one batch) go to a receiver that hangs until released.
        enqueue(&producer, &db, 6).await;
        let unblock = Arc::new(tokio::sync::Notify::new());
        let fast: Arc<Mutex<Vec<i64>>> = Default::default();
        let (gate, seen) = (unblock.clone(), fast.clone());
        let h = handler(move |e| {
            let (gate, seen) = (gate.clone(), seen.clone());
            async move {
                let payload: prost_types::Duration = e.decode()?;
                if payload.seconds < 2 {
                    gate.notified().await;
                } else {
                    seen.lock().unwrap().push(payload.seconds);
                }
                Ok(())
            }
        });
        let cfg = OutboxConfig { batch_size: 2, batches_in_flight: 2, ..config() };
        let shutdown = CancellationToken::new();
        let relay = Outbox::new(db.clone()).relay("test", cfg, HashMap::from([("test.topic", h)]));
        let running = tokio::spawn(relay.run(shutdown.clone()));

        let mut behind = Vec::new();
        for _ in 0..200 {
            behind = fast.lock().unwrap().clone();
            if behind.len() == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        behind.sort();
        assert_eq!(behind, vec![2, 3, 4, 5], "the rows behind the hanging batch were delivered meanwhile");
        assert_eq!(producer.backlog().await.unwrap().0, 2, "the hanging batch is still pending");
        unblock.notify_waiters();
        wait_empty(&producer).await;
        shutdown.cancel();
        running.await.unwrap();
        release(db, pg_name).await;
    }
}

/// A relay woken for each hand-off claims once for it: delivering a batch is no reason to look
/// again, since the claim that took it found every row then due (claiming after every batch
/// anyway made a lightly loaded relay write two claims per hand-off, one of them empty). The
/// relay never polls here, so every row is also proof that a commit's wake-up is not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_woken_for_each_hand_off_claims_once_for_it() {
    for (db, pg_name) in both().await {
        let service = format!("claims-{}", if pg_name.is_some() { "postgres" } else { "sqlite" });
        let claims =
            |result: &str| crs_platform::metrics::OUTBOX_CLAIMS.with_label_values(&[service.as_str(), result]).get();
        let (delivered, h) = counting_handler();
        let outbox = Outbox::new(db.clone());
        let cfg = OutboxConfig { poll_interval_ms: 600_000, ..config() };
        let relay = TestRelay::start(outbox.relay(&service, cfg, HashMap::from([("test.topic", h)])));
        let hand_offs = 20;
        for n in 1..=hand_offs {
            enqueue(&outbox, &db, 1).await;
            for _ in 0..400 {
                if *delivered.lock().unwrap() == n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(*delivered.lock().unwrap(), n, "hand-off {n} delivered on its commit's wake-up");
        }
        wait_empty(&outbox).await;
        // Room for a claim that would follow the last batch.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(claims("rows"), hand_offs as u64, "one claim found each hand-off");
        let empty = claims("empty");
        assert!(empty <= 2, "{empty} claims found nothing for {hand_offs} hand-offs (one at start is expected)");
        relay.stop().await;
        release(db, pg_name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_on_one_replica_wakes_the_relay_of_another() {
    let (db, name) = postgres().await;
    let (delivered, h) = counting_handler();
    // Replica B relays; it would poll only once a minute.
    let shutdown = CancellationToken::new();
    let cfg = OutboxConfig { poll_interval_ms: 60_000, ..config() };
    let relay = Outbox::new(db.clone()).relay("test", cfg, HashMap::from([("test.topic", h)]));
    let running = tokio::spawn(relay.run(shutdown.clone()));
    // B has looked, found nothing, and sleeps.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Replica A commits and wakes: its announcement reaches B.
    let replica_a = Outbox::new(db.clone());
    let announcing = tokio::spawn(replica_a.clone().announce_commits(shutdown.clone()));
    enqueue(&replica_a, &db, 5).await;
    wait_empty(&replica_a).await;
    assert_eq!(*delivered.lock().unwrap(), 5, "B delivered A's rows without waiting for its poll");
    shutdown.cancel();
    running.await.unwrap();
    announcing.await.unwrap();
    drop_postgres(&name).await;
}

/// Fills an outbox as a relay that has fallen behind sees it: 20,000 rows delivered and removed
/// (on PostgreSQL their dead versions stay until a vacuum), 110 leased to batches under way (10
/// of them the way an earlier version leased), and 20,000 waiting, each with a payload of a few
/// hundred bytes.
async fn backlog(db: &DatabaseConnection) {
    let backend = db.get_database_backend();
    let (blob, id) = if backend == DbBackend::Postgres {
        ("decode(repeat('ab', 400), 'hex')", "lpad(g::text, 6, '0')")
    } else {
        ("randomblob(400)", "printf('%06d', g)")
    };
    let rows = |prefix: &str, from: i64, count: i64, available: &str| {
        format!(
            "WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < {count}) \
             INSERT INTO outbox (id, topic, payload, created_at, available_at, attempts) \
             SELECT '{prefix}-' || {id}, 'test.topic', {blob}, {from} + g, {available}, 0 FROM n"
        )
    };
    db.execute_unprepared(&rows("gone", 0, 20_000, "g")).await.unwrap();
    db.execute_unprepared("DELETE FROM outbox").await.unwrap();
    db.execute_unprepared(&rows("leased", 0, 100, "1000000000000")).await.unwrap();
    // Leased as a replica of an earlier version leases, during a rolling upgrade: by
    // `locked_until` alone, due long ago.
    db.execute_unprepared(&rows("leased-before", 0, 10, "g")).await.unwrap();
    db.execute_unprepared("UPDATE outbox SET locked_until = 1000000000000 WHERE id LIKE 'leased-before-%'")
        .await
        .unwrap();
    db.execute_unprepared(&rows("wait", 100_000, 20_000, "100000 + g")).await.unwrap();
}

async fn claimed_ids<C: ConnectionTrait>(conn: &C, stmt: Statement) -> Vec<String> {
    let rows = conn.query_all_raw(stmt).await.unwrap();
    let mut ids: Vec<String> = rows.iter().map(|r| r.try_get("", "id").unwrap()).collect();
    ids.sort();
    ids
}

fn waiting(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("wait-{i:06}")).collect()
}

/// Claims take the rows due, oldest first, a batch at a time; a claimed row leaves the claimable
/// rows until its lease ends and is due again then; rows leased to others are not taken early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_take_the_oldest_rows_due_and_leave_leased_ones_alone() {
    for (db, pg_name) in both().await {
        backlog(&db).await;
        let backend = db.get_database_backend();
        let now = 1_000_000;
        let first = claimed_ids(&db, claim_statement(backend, now, now + 30_000, 64)).await;
        assert_eq!(first, waiting(1..=64), "the oldest rows due, on {backend:?}");
        let second = claimed_ids(&db, claim_statement(backend, now, now + 30_000, 64)).await;
        assert_eq!(second, waiting(65..=128), "the next ones, not those just leased, on {backend:?}");
        // Once their leases end, the rows claimed are due again, with every row not yet claimed;
        // the rows leased to others are still not.
        let later = now + 30_000;
        let all = claimed_ids(&db, claim_statement(backend, later, later + 30_000, 50_000)).await;
        assert_eq!(all, waiting(1..=20_000), "every row due and no other, on {backend:?}");
        release(db, pg_name).await;
    }
}

/// A claim reads the rows it claims, not the backlog: with 20,000 rows waiting, 20,000 removed
/// but not vacuumed and 100 leased, and statistics as a freshly migrated service leaves them
/// (taken on empty tables), each claim of 64 rows touches under 1,500 buffers (about 800: the rows, and the index entries of their leases), the same for the
/// first claims (planned for their values) and the later ones (planned once for any). Before,
/// a claim read every row due, sorted them and kept a batch: over 2,500 buffers here, and the
/// longer the backlog it was there to drain, the more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_reads_what_it_claims_however_long_the_backlog_on_postgres() {
    let (db, name) = postgres().await;
    crs_platform::db::refresh_statistics(&db).await.unwrap();
    backlog(&db).await;
    older_transactions_ended(&db).await;
    // One connection, as a relay's: PostgreSQL keeps the claim's plans per session.
    let txn = db.begin().await.unwrap();
    let now = 1_000_000;
    // The first claim steps once over the versions the removed rows left, and marks them dead in
    // the index as it goes, as the relay's claims do.
    assert_eq!(claimed_ids(&txn, claim_statement(DbBackend::Postgres, now, now + 30_000, 64)).await.len(), 64);
    for claim in 2..=10 {
        let stmt = claim_statement(DbBackend::Postgres, now, now + 30_000, 64);
        let explain = Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("EXPLAIN (ANALYZE, BUFFERS) {}", stmt.sql),
            stmt.values.unwrap(),
        );
        let plan = txn
            .query_all_raw(explain)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(claimed_rows(&plan), 64.0, "claim {claim}: 64 rows claimed:\n{plan}");
        let touched = buffers(&plan);
        assert!(touched < 1_500, "claim {claim} touched {touched} buffers for 64 rows:\n{plan}");
    }
    txn.rollback().await.unwrap();
    release(db, Some(name)).await;
}

/// Waits until every transaction the server ran when this was called has ended, in any of its
/// databases. Until then PostgreSQL may count a transaction that ended after the oldest of them
/// (the backlog's removal) as still running, and a scan that steps over the rows it removed
/// leaves them unmarked in the index: other tests' transactions, in databases of their own,
/// would then decide what the claims read.
async fn older_transactions_ended(db: &DatabaseConnection) {
    let number = |sql: &'static str| async move {
        let row = db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql)).await.unwrap().unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    };
    // A transaction of its own, begun after every one that must end.
    let after = number("SELECT pg_current_xact_id()::text::bigint").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while number("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").await <= after {
        assert!(tokio::time::Instant::now() < deadline, "a transaction of the server has run for 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The rows the first node of an `EXPLAIN ANALYZE` plan returned (`actual ... rows=R`; newer
/// PostgreSQL prints R with decimals).
fn claimed_rows(plan: &str) -> f64 {
    let first = plan.lines().next().unwrap_or_default();
    let actual = &first[first.find("(actual").expect("an actual row count")..];
    let rows = actual.split("rows=").nth(1).expect("rows=");
    rows.split(|c: char| !(c.is_ascii_digit() || c == '.')).next().unwrap().parse().unwrap()
}

/// The shared buffers the first node of an `EXPLAIN (ANALYZE, BUFFERS)` plan touched (hit and
/// read), which counts those of everything it ran.
fn buffers(plan: &str) -> u64 {
    let line = plan.lines().find(|l| l.trim_start().starts_with("Buffers: shared")).expect("a Buffers line");
    ["hit=", "read="]
        .iter()
        .filter_map(|key| line.split(key).nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok())
        .sum()
}

/// One of PostgreSQL's counters for the outbox table (`pg_stat_user_tables`).
async fn outbox_stat(db: &DatabaseConnection, column: &str) -> i64 {
    db.query_one_raw(Statement::from_string(
        DbBackend::Postgres,
        format!("SELECT {column} AS n FROM pg_stat_user_tables WHERE relname = 'outbox'"),
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap()
}

/// A relay on PostgreSQL vacuums its outbox once it has removed enough rows: the dead versions
/// its hand-offs leave go, instead of piling up in front of every later claim until autovacuum
/// comes by (this machine's PostgreSQL runs none). `vacuum_count` counts only vacuums asked for,
/// not autovacuum's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_vacuums_its_outbox_after_removing_many_rows_on_postgres() {
    let (db, name) = postgres().await;
    let rows = VACUUM_AFTER_ROWS + 200;
    db.execute_unprepared(&format!(
        "INSERT INTO outbox (id, topic, payload, created_at, available_at, attempts) \
         SELECT 'row-' || lpad(g::text, 6, '0'), 'test.topic', '\\x00', g, g, 0 FROM generate_series(1, {rows}) g"
    ))
    .await
    .unwrap();
    let before = outbox_stat(&db, "vacuum_count").await;
    let (delivered, h) = counting_handler();
    let outbox = Outbox::new(db.clone());
    let relay = TestRelay::start(outbox.relay("test", config(), HashMap::from([("test.topic", h)])));
    wait_empty(&outbox).await;
    assert_eq!(*delivered.lock().unwrap(), rows as usize, "every row delivered");
    let mut after = before;
    for _ in 0..100 {
        after = outbox_stat(&db, "vacuum_count").await;
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(after > before, "the relay removed {rows} rows and never vacuumed its outbox");
    let dead = outbox_stat(&db, "n_dead_tup").await;
    assert!(dead < 200, "{dead} dead row versions left after the vacuum");
    relay.stop().await;
    release(db, Some(name)).await;
}
