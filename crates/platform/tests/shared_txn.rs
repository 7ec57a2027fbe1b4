//! Shared transactions against real databases: concurrent units are committed together, each
//! answered with its own outcome, and a failing unit never fails its neighbours.

use std::collections::HashSet;

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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const QUEUED: usize = 40;

    let (db, name) = fresh_postgres("crs_shared").await;
    db.execute_unprepared("CREATE TABLE units (n BIGINT PRIMARY KEY)").await.unwrap();
    let shared = SharedTransactions::<i64, DbErr>::start(db.clone());
    // One unit per writer that holds it until the others are queued.
    let (gate, holding) = (Arc::new(tokio::sync::Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let holders: Vec<_> = (0..shared_txn::WRITERS)
        .map(|_| {
            let (shared, gate, holding) = (shared.clone(), gate.clone(), holding.clone());
            tokio::spawn(async move {
                let unit = shared_txn::unit(move |_| {
                    let (gate, holding) = (gate.clone(), holding.clone());
                    Box::pin(async move {
                        holding.fetch_add(1, Ordering::SeqCst);
                        gate.acquire().await.expect("the gate stays open").forget();
                        Ok(0)
                    })
                });
                shared.run(unit).await
            })
        })
        .collect();
    while holding.load(Ordering::SeqCst) < shared_txn::WRITERS {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let queued: Vec<_> = (0..QUEUED as i64)
        .map(|n| {
            let shared = shared.clone();
            tokio::spawn(async move { shared.run(insert(n)).await })
        })
        .collect();
    // Every queued unit is sent before the writers come free.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    gate.add_permits(shared_txn::WRITERS);
    for h in holders.into_iter().chain(queued) {
        h.await.unwrap().unwrap();
    }

    let batches = numbers(&db, "SELECT COUNT(*)::bigint FROM units GROUP BY xmin::text ORDER BY 1 DESC").await;
    assert_eq!(batches.iter().sum::<i64>(), QUEUED as i64);
    let fair_share = QUEUED.div_ceil(shared_txn::WRITERS) as i64;
    assert!(batches[0] <= fair_share, "one writer took {} of {QUEUED} queued units: {batches:?}", batches[0]);
    assert!(batches.len() < QUEUED, "they still share transactions: {batches:?}");
    drop_postgres(&name).await;
}
