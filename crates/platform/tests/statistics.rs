//! Where the PostgreSQL server runs no autovacuum (as on the machines these tests run on), a
//! service keeps the planner's statistics of its tables fresh itself: a table that grew is
//! analyzed again, so the planner no longer believes it empty, and a table that did not change
//! is left alone, and a queue whose rows come and go is analyzed at autovacuum's pace, not each
//! time its rows turned over. Where autovacuum runs, the service leaves it to autovacuum.

use std::time::Duration;

use crs_platform::db::{analyze_changed_tables, refresh_statistics, spawn_statistics_keeper};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio_util::sync::CancellationToken;

mod support;
use support::{drop_postgres, fresh_postgres};

/// What the planner believes of `table` (its row count) and how often it was analyzed on request.
async fn seen(db: &DatabaseConnection, table: &str) -> (f32, i64) {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT c.reltuples AS rows, s.analyze_count AS analyzed FROM pg_class c \
                 JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relname = '{table}'"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    (row.try_get("", "rows").unwrap(), row.try_get("", "analyzed").unwrap())
}

async fn autovacuum_is_off(db: &DatabaseConnection) -> bool {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT current_setting('autovacuum') = 'off' AS off"))
        .await
        .unwrap()
        .unwrap()
        .try_get::<bool>("", "off")
        .unwrap()
}

/// Waits until PostgreSQL's statistics count `rows` live rows in `table` and at least `changes`
/// changes since it was last analyzed (a backend reports its counts a moment after it commits).
async fn counted(db: &DatabaseConnection, table: &str, rows: i64, changes: i64) {
    for _ in 0..100 {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT n_live_tup AS rows, n_mod_since_analyze AS changes FROM pg_stat_user_tables \
                     WHERE relname = '{table}'"
                ),
            ))
            .await
            .unwrap()
            .unwrap();
        let (now_rows, now_changes): (i64, i64) =
            (row.try_get("", "rows").unwrap(), row.try_get("", "changes").unwrap());
        if now_rows == rows && now_changes >= changes {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("PostgreSQL's statistics never counted {rows} rows and {changes} changes in {table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statistics_of_tables_that_grew_are_refreshed_where_autovacuum_is_off() {
    let (db, name) = fresh_postgres("crs_statistics").await;
    db.execute_unprepared(
        "CREATE TABLE grown (id bigint PRIMARY KEY, owner integer NOT NULL); \
         CREATE TABLE quiet (id bigint PRIMARY KEY); INSERT INTO quiet SELECT generate_series(1, 10)",
    )
    .await
    .unwrap();
    // As after migrations on a new database: statistics of (nearly) empty tables.
    refresh_statistics(&db).await.unwrap();
    let autovacuum_off = autovacuum_is_off(&db).await;
    let (_, quiet_before) = seen(&db, "quiet").await;
    let (_, grown_before) = seen(&db, "grown").await;

    let shutdown = CancellationToken::new();
    let keeper = spawn_statistics_keeper(db.clone(), Duration::from_millis(100), shutdown.clone());
    db.execute_unprepared("INSERT INTO grown SELECT g, g % 16 FROM generate_series(1, 5000) g").await.unwrap();

    if autovacuum_off {
        let mut now = seen(&db, "grown").await;
        for _ in 0..100 {
            if now.0 == 5000.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            now = seen(&db, "grown").await;
        }
        assert_eq!(now.0, 5000.0, "the planner still believes the grown table holds {} rows", now.0);
        assert!(now.1 > grown_before, "the grown table was analyzed");
        assert_eq!(seen(&db, "quiet").await.1, quiet_before, "the unchanged table was left alone");
    } else {
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(seen(&db, "grown").await.1, grown_before, "with autovacuum on, the service analyzes nothing");
    }
    shutdown.cancel();
    keeper.await.unwrap();
    drop_postgres(&name).await;
}

/// A queue (the outbox) keeps about as many rows as it had while they come and go. It is analyzed
/// again once its rows turned over and the turnover interval passed since it was last analyzed,
/// not each time they turned over: under load that was every few seconds, and each `ANALYZE` made
/// every connection plan its statements on the table again. A table that grew is analyzed however
/// recently it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_whose_rows_turn_over_is_analyzed_at_the_turnover_pace_and_a_grown_table_at_once() {
    let (db, name) = fresh_postgres("crs_statistics").await;
    db.execute_unprepared(
        "CREATE TABLE queue (id bigint PRIMARY KEY, body text NOT NULL); \
         INSERT INTO queue SELECT g, 'hand-off' FROM generate_series(1, 1000) g; \
         CREATE TABLE grown (id bigint PRIMARY KEY); INSERT INTO grown SELECT generate_series(1, 100)",
    )
    .await
    .unwrap();
    // The inserts counted before the statistics are taken: counted after, they would be counted
    // again, on top of what `ANALYZE` found.
    counted(&db, "queue", 1000, 1000).await;
    counted(&db, "grown", 100, 100).await;
    refresh_statistics(&db).await.unwrap();
    // The whole queue relayed and removed, as many new rows in: its size is unchanged, and twice
    // as many changes counted as it has rows. The other table grew tenfold.
    db.execute_unprepared(
        "DELETE FROM queue; INSERT INTO queue SELECT g, 'hand-off' FROM generate_series(1001, 2000) g; \
         INSERT INTO grown SELECT generate_series(101, 1000)",
    )
    .await
    .unwrap();
    counted(&db, "queue", 1000, 2000).await;
    counted(&db, "grown", 1000, 900).await;
    let (_, queue_before) = seen(&db, "queue").await;
    let (_, grown_before) = seen(&db, "grown").await;

    let soon = analyze_changed_tables(&db, Duration::from_secs(3600)).await.unwrap();
    if !autovacuum_is_off(&db).await {
        assert!(soon.is_empty(), "with autovacuum on, the service analyzes nothing: {soon:?}");
        drop_postgres(&name).await;
        return;
    }
    assert_eq!(soon, vec!["public.grown".to_owned()], "within the turnover interval only the grown table is analyzed");
    assert_eq!(seen(&db, "queue").await.1, queue_before, "the queue was left alone");
    assert_eq!(seen(&db, "grown").await, (1000.0, grown_before + 1), "the grown table was analyzed");

    let later = analyze_changed_tables(&db, Duration::ZERO).await.unwrap();
    assert_eq!(later, vec!["public.queue".to_owned()], "once the interval passed, the queue is analyzed");
    assert_eq!(seen(&db, "queue").await.1, queue_before + 1);
    drop_postgres(&name).await;
}
