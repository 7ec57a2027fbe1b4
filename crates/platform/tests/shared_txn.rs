//! Shared transactions against real databases: concurrent units are committed together, each
//! answered with its own outcome, and a failing unit never fails its neighbours.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crs_platform::shared_txn::{self, SharedTransactions};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement};

mod support;
use support::{drop_postgres, fresh_postgres};

const UNITS: usize = 200;

async fn sqlite() -> (DatabaseConnection, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("crs-shared-{}.db", uuid::Uuid::new_v4()));
    (Database::connect(format!("sqlite://{}?mode=rwc", path.display())).await.unwrap(), path)
}

async fn numbers(db: &DatabaseConnection, sql: &str) -> Vec<i64> {
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.into_iter().map(|r| r.try_get_by_index::<i64>(0).unwrap()).collect()
}

/// Inserts row `n` and reads back how many rows its transaction sees: a unit sees the rows of
/// the units before it in the same transaction. Row `poison` collides with a row already there.
fn insert(n: i64) -> shared_txn::Unit<i64, DbErr> {
    shared_txn::unit(move |txn| {
        Box::pin(async move {
            let backend = txn.get_database_backend();
            txn.execute_raw(Statement::from_sql_and_values(backend, "INSERT INTO units (n) VALUES ($1)", [n.into()]))
                .await?;
            let seen = txn
                .query_one_raw(Statement::from_string(backend, "SELECT COUNT(*) FROM units"))
                .await?
                .expect("a count")
                .try_get_by_index::<i64>(0)?;
            Ok(seen)
        })
    })
}

async fn units_share_transactions(db: DatabaseConnection) {
    db.execute_unprepared("CREATE TABLE units (n BIGINT PRIMARY KEY)").await.unwrap();
    let poison = 7;
    db.execute_unprepared(&format!("INSERT INTO units (n) VALUES ({poison})")).await.unwrap();
    let shared = SharedTransactions::<i64, DbErr>::start(db.clone());

    let calls = (0..UNITS as i64).map(|n| {
        let shared = shared.clone();
        tokio::spawn(async move { (n, shared.run(insert(1000 + n)).await) })
    });
    let poisoned = {
        let shared = shared.clone();
        tokio::spawn(async move { shared.run(insert(poison)).await })
    };
    let answers = futures::future::join_all(calls).await;
    for answer in answers {
        let (n, outcome) = answer.unwrap();
        let seen = outcome.unwrap_or_else(|e| panic!("unit {n} failed: {e}"));
        assert!(seen >= 2, "unit {n} saw its own row and the one there before: {seen}");
    }
    let refused = poisoned.await.unwrap();
    assert!(refused.is_err(), "the colliding unit is answered with its own failure: {refused:?}");

    let stored: HashSet<i64> = numbers(&db, "SELECT n FROM units").await.into_iter().collect();
    assert_eq!(stored.len(), UNITS + 1, "every unit but the colliding one committed, and that one changed nothing");
    assert!((0..UNITS as i64).all(|n| stored.contains(&(1000 + n))));
    if db.get_database_backend() == DbBackend::Postgres {
        let transactions =
            numbers(&db, "SELECT COUNT(DISTINCT xmin::text)::bigint FROM units WHERE n >= 1000").await[0];
        assert!(transactions < UNITS as i64, "{UNITS} concurrent units took {transactions} transactions");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_units_share_transactions_and_a_failing_one_fails_alone_on_postgres() {
    let (db, name) = fresh_postgres("crs_shared").await;
    units_share_transactions(db).await;
    drop_postgres(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_units_share_transactions_and_a_failing_one_fails_alone_on_sqlite() {
    let (db, path) = sqlite().await;
    units_share_transactions(db).await;
    let _ = std::fs::remove_file(path);
}

/// Units queued while every writer is busy are shared out among the writers when they come free,
/// not taken all by the first: no unit waits behind a long batch while another writer idles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_units_are_shared_out_among_the_writers_on_postgres() {
    const QUEUED: usize = 40;

    let (db, name) = fresh_postgres("crs_shared").await;
    db.execute_unprepared("CREATE TABLE units (n BIGINT PRIMARY KEY)").await.unwrap();
    let shared = SharedTransactions::<i64, DbErr>::start(db.clone());
    let units = (0..QUEUED as i64).map(insert).collect();
    for answer in queued_together(&shared, DbBackend::Postgres, || 0, units).await {
        answer.unwrap();
    }

    let batches = numbers(&db, "SELECT COUNT(*)::bigint FROM units GROUP BY xmin::text ORDER BY 1 DESC").await;
    assert_eq!(batches.iter().sum::<i64>(), QUEUED as i64);
    let fair_share = QUEUED.div_ceil(shared_txn::WRITERS) as i64;
    assert!(batches[0] <= fair_share, "one writer took {} of {QUEUED} queued units: {batches:?}", batches[0]);
    assert!(batches.len() < QUEUED, "they still share transactions: {batches:?}");
    drop_postgres(&name).await;
}

/// Runs `units` queued while writers are held (every writer on PostgreSQL; on SQLite, where one
/// transaction writes at a time, one, which the others then wait for), so the writers take them
/// in shared transactions; their answers, in order.
async fn queued_together<T: Send + 'static>(
    shared: &SharedTransactions<T, DbErr>,
    backend: DbBackend,
    idle: impl Fn() -> T + Send + Sync + Clone + 'static,
    units: Vec<shared_txn::Unit<T, DbErr>>,
) -> Vec<Result<T, DbErr>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (gate, holding) = (Arc::new(tokio::sync::Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let held = if backend == DbBackend::Postgres { shared_txn::WRITERS } else { 1 };
    let holders: Vec<_> = (0..held)
        .map(|_| {
            let (shared, gate, holding, idle) = (shared.clone(), gate.clone(), holding.clone(), idle.clone());
            tokio::spawn(async move {
                let unit = shared_txn::unit(move |_| {
                    let (gate, holding, idle) = (gate.clone(), holding.clone(), idle.clone());
                    Box::pin(async move {
                        holding.fetch_add(1, Ordering::SeqCst);
                        gate.acquire().await.expect("the gate stays open").forget();
                        Ok(idle())
                    })
                });
                shared.run(unit).await
            })
        })
        .collect();
    for _ in 0..1000 {
        if holding.load(Ordering::SeqCst) == held {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(holding.load(Ordering::SeqCst), held, "the writers are held");
    let count = units.len();
    let queued: Vec<_> = units
        .into_iter()
        .map(|unit| {
            let shared = shared.clone();
            tokio::spawn(async move { shared.run(unit).await })
        })
        .collect();
    if held == shared_txn::WRITERS {
        // No writer takes any until they are released.
        for _ in 0..1000 {
            if shared.queued() == count {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(shared.queued(), count, "every unit is queued before the writers are released");
    } else {
        // The writers not held take some and wait for the connection; the rest are queued.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    gate.add_permits(held);
    for h in holders {
        h.await.unwrap().unwrap();
    }
    let mut answers = Vec::new();
    for q in queued {
        answers.push(q.await.unwrap());
    }
    answers
}

/// A hand-off's unit that applies its effect (a row in `effects`) the first time its event
/// comes, and answers whether it did; `fail` makes it fail after its effect.
fn apply(event_id: &str, fail: bool) -> shared_txn::Unit<bool, DbErr> {
    let id = event_id.to_owned();
    shared_txn::handoff(event_id, move |txn, first_time| {
        let id = id.clone();
        Box::pin(async move {
            if first_time {
                let backend = txn.get_database_backend();
                let insert =
                    Statement::from_sql_and_values(backend, "INSERT INTO effects (event_id) VALUES ($1)", [id.into()]);
                txn.execute_raw(insert).await?;
            }
            if fail {
                return Err(DbErr::Custom("the unit failed".into()));
            }
            Ok(first_time)
        })
    })
}

async fn strings(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.into_iter().map(|r| r.try_get_by_index::<String>(0).unwrap()).collect()
}

/// The events of a shared transaction's hand-offs are recorded together, and each effect is
/// still applied once: by one of the units that carry its event, not by a repeat in the same
/// transaction or a later one, nor for an event applied before. A unit that fails leaves its
/// event unrecorded, so it is applied when it comes again, and fails none of its neighbours.
async fn handoffs_apply_each_event_once(db: DatabaseConnection) {
    db.execute_unprepared("CREATE TABLE inbox (event_id TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)").await.unwrap();
    db.execute_unprepared("CREATE TABLE effects (event_id TEXT NOT NULL)").await.unwrap();
    db.execute_unprepared("INSERT INTO inbox (event_id, applied_at) VALUES ('applied-before', 0)").await.unwrap();
    let shared = SharedTransactions::<bool, DbErr>::start(db.clone());
    let backend = db.get_database_backend();

    let events: Vec<String> = (0..20).map(|n| format!("e-{n}")).collect();
    let mut units: Vec<_> = events.iter().flat_map(|e| [apply(e, false), apply(e, false)]).collect();
    units.push(apply("applied-before", false));
    let answers = queued_together(&shared, backend, || false, units).await;
    for (n, pair) in answers.chunks(2).take(events.len()).enumerate() {
        let told: Vec<bool> = pair.iter().map(|a| *a.as_ref().expect("every unit succeeds")).collect();
        let applied = told.iter().filter(|t| **t).count();
        assert_eq!(applied, 1, "e-{n}: one unit applied it, the repeat was told it was not new: {told:?}");
    }
    assert!(!answers.last().unwrap().as_ref().unwrap(), "an event applied before is not new");
    if db.get_database_backend() == DbBackend::Postgres {
        let transactions =
            numbers(&db, "SELECT COUNT(DISTINCT xmin::text)::bigint FROM inbox WHERE event_id LIKE 'e-%'").await[0];
        assert!(transactions < events.len() as i64, "{} events took {transactions} transactions", events.len());
    }

    // A failing unit among a transaction's hand-offs (16 units queued: on PostgreSQL each writer
    // takes at least two at a time): its neighbours are applied, it is not.
    let beside: Vec<String> = (0..14).map(|n| format!("beside-{n}")).collect();
    let mut units = vec![apply("failing", true), apply("e-0", false)];
    units.extend(beside.iter().map(|e| apply(e, false)));
    let answers = queued_together(&shared, backend, || false, units).await;
    assert!(answers[0].is_err(), "the failing unit is answered with its failure");
    assert!(!answers[1].as_ref().unwrap(), "e-0 was applied before");
    assert!(answers[2..].iter().all(|a| *a.as_ref().unwrap()), "the neighbours were applied: {answers:?}");
    let recorded = strings(&db, "SELECT event_id FROM inbox WHERE event_id = 'failing'").await;
    assert!(recorded.is_empty(), "the failing unit's event is not recorded");
    assert!(shared.run(apply("failing", false)).await.unwrap(), "it is applied when it comes again");

    let mut applied = strings(&db, "SELECT event_id FROM effects").await;
    applied.sort();
    let mut expected: Vec<String> = events.clone();
    expected.extend(beside);
    expected.push("failing".into());
    expected.sort();
    assert_eq!(applied, expected, "each event's effect, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoffs_sharing_a_transaction_apply_each_event_once_on_postgres() {
    let (db, name) = fresh_postgres("crs_shared").await;
    handoffs_apply_each_event_once(db).await;
    drop_postgres(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoffs_sharing_a_transaction_apply_each_event_once_on_sqlite() {
    let (db, path) = sqlite().await;
    handoffs_apply_each_event_once(db).await;
    let _ = std::fs::remove_file(path);
}

/// A unit that inserts `n` into `units` itself and leaves `later` to be written into `deferred`
/// with the other units' rows, before the commit.
fn defer(n: i64, later: i64) -> shared_txn::Unit<Vec<i64>, DbErr> {
    shared_txn::unit(move |txn| {
        Box::pin(async move {
            let backend = txn.get_database_backend();
            txn.execute_raw(Statement::from_sql_and_values(backend, "INSERT INTO units (n) VALUES ($1)", [n.into()]))
                .await?;
            Ok(vec![later])
        })
    })
}

/// Shared transactions whose deferred rows are written in one statement per transaction; each
/// statement's row count is kept in `statements`.
fn deferring(db: DatabaseConnection, statements: Arc<Mutex<Vec<usize>>>) -> SharedTransactions<Vec<i64>, DbErr> {
    SharedTransactions::start_deferring(db, move |txn, outcomes: &mut [Vec<i64>]| {
        let rows: Vec<i64> = outcomes.iter_mut().flat_map(std::mem::take).collect();
        let statements = statements.clone();
        Box::pin(async move {
            if rows.is_empty() {
                return Ok(());
            }
            let values: Vec<String> = rows.iter().map(|n| format!("({n})")).collect();
            txn.execute_unprepared(&format!("INSERT INTO deferred (n) VALUES {}", values.join(", "))).await?;
            statements.lock().unwrap().push(rows.len());
            Ok(())
        })
    })
}

/// What units leave to be written before the commit is written, for a unit alone and for a
/// shared transaction (there in one statement for all its units, in their transaction); if that
/// write fails, each unit runs again alone, and only the one whose row fails is refused.
async fn deferred_writes_go_with_their_transaction(db: DatabaseConnection) {
    db.execute_unprepared("CREATE TABLE units (n BIGINT PRIMARY KEY)").await.unwrap();
    db.execute_unprepared("CREATE TABLE deferred (n BIGINT PRIMARY KEY)").await.unwrap();
    let collides = 7;
    db.execute_unprepared(&format!("INSERT INTO deferred (n) VALUES ({collides})")).await.unwrap();
    let backend = db.get_database_backend();
    let statements = Arc::new(Mutex::new(Vec::new()));
    let shared = deferring(db.clone(), statements.clone());

    let left = shared.run(defer(1, 101)).await.unwrap();
    assert!(left.is_empty(), "a unit alone has its rows taken out and written: {left:?}");
    assert_eq!(numbers(&db, "SELECT n FROM deferred WHERE n = 101").await, [101]);

    let units = (0..20).map(|n| defer(1000 + n, 2000 + n)).collect();
    for answer in queued_together(&shared, backend, Vec::new, units).await {
        assert!(answer.unwrap().is_empty());
    }
    let written = numbers(&db, "SELECT n FROM deferred WHERE n >= 2000 ORDER BY n").await;
    assert_eq!(written, (2000..2020).collect::<Vec<_>>(), "every unit's row is written");
    if backend == DbBackend::Postgres {
        let together = numbers(
            &db,
            "SELECT COUNT(*)::bigint FROM units u JOIN deferred d ON d.n = u.n + 1000 \
             WHERE u.n >= 1000 AND u.xmin::text = d.xmin::text",
        )
        .await[0];
        assert_eq!(together, 20, "each deferred row committed in its unit's transaction");
        let widest = statements.lock().unwrap().iter().copied().max().unwrap_or_default();
        assert!(
            widest > 1,
            "a shared transaction's rows are written in one statement: {:?}",
            statements.lock().unwrap()
        );
    }

    // A deferred row that collides: the transaction it shares is rolled back and its units run
    // again alone; only the colliding one is refused, and nothing of it stays.
    let mut units = vec![defer(3000, collides)];
    units.extend((1..16).map(|n| defer(3000 + n, 4000 + n)));
    let answers = queued_together(&shared, backend, Vec::new, units).await;
    assert!(answers[0].is_err(), "the unit whose deferred row collides is refused");
    assert!(answers[1..].iter().all(|a| a.as_ref().is_ok_and(|left| left.is_empty())), "{answers:?}");
    assert!(numbers(&db, "SELECT n FROM units WHERE n = 3000").await.is_empty(), "the refused unit left nothing");
    assert_eq!(numbers(&db, "SELECT COUNT(*) FROM units WHERE n > 3000").await, [15]);
    assert_eq!(numbers(&db, "SELECT COUNT(*) FROM deferred WHERE n > 4000").await, [15]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_writes_go_with_their_transaction_on_postgres() {
    let (db, name) = fresh_postgres("crs_shared").await;
    deferred_writes_go_with_their_transaction(db).await;
    drop_postgres(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_writes_go_with_their_transaction_on_sqlite() {
    let (db, path) = sqlite().await;
    deferred_writes_go_with_their_transaction(db).await;
    let _ = std::fs::remove_file(path);
}
