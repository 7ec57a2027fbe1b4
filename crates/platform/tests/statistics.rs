//! Where the PostgreSQL server runs no autovacuum (as on the machines these tests run on), a
//! service keeps the planner's statistics of its tables fresh itself: a table that grew is
//! analyzed again, so the planner no longer believes it empty, and a table that did not change
//! is left alone. Where autovacuum runs, the service leaves it to autovacuum.

use std::time::Duration;

use crs_platform::db::{refresh_statistics, spawn_statistics_keeper};
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
    let autovacuum_off = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('autovacuum') = 'off' AS off",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<bool>("", "off")
        .unwrap();
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
