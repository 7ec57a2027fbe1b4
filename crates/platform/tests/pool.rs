//! A service's pool of PostgreSQL connections: open before its first request, and a connection
//! the server dropped while it sat idle is replaced before anyone uses it.

use std::time::Duration;

use crs_platform::config::DatabaseConfig;
use crs_platform::db::PING_AFTER_IDLE;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod support;
use support::{admin_url, drop_postgres, fresh_postgres};

/// No migrations: the tests connect only.
struct NoMigrations;

impl MigratorTrait for NoMigrations {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}

async fn one_number(db: &impl ConnectionTrait, sql: &str) -> i64 {
    let row = db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// The backends connected to database `name`, as the server counts them.
async fn backends_of(admin: &DatabaseConnection, name: &str) -> i64 {
    one_number(admin, &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'")).await
}

/// A new database with no connections to it, and a connection to the server's own.
async fn empty_database(prefix: &str) -> (DatabaseConnection, String) {
    let (setup, name) = fresh_postgres(prefix).await;
    setup.close().await.unwrap();
    (Database::connect(&admin_url()).await.unwrap(), name)
}

fn pool_config(name: &str, min_connections: u32, max_connections: u32) -> DatabaseConfig {
    let server = admin_url().rsplit_once('/').unwrap().0.to_owned();
    DatabaseConfig {
        url: format!("{server}/{name}"),
        max_connections,
        min_connections,
        acquire_timeout_ms: 5_000,
        migrate: false,
    }
}

#[tokio::test]
async fn the_pool_is_open_before_the_first_request() {
    let (admin, name) = empty_database("crs_pool_open").await;

    let db = crs_platform::db::connect::<NoMigrations>(&pool_config(&name, 4, 6)).await.expect("PostgreSQL");
    // Read at once: a pool left to open them in the background would hold one by now.
    let pool = db.get_postgres_connection_pool();
    assert_eq!((pool.size(), pool.num_idle()), (4, 4), "min_connections are open, and idle, when connect returns");
    assert_eq!(backends_of(&admin, &name).await, 4, "the server counts them too");

    // More than the pool may hold opens all it may hold, and no more.
    let capped = crs_platform::db::connect::<NoMigrations>(&pool_config(&name, 50, 3)).await.expect("PostgreSQL");
    assert_eq!(backends_of(&admin, &name).await, 4 + 3, "min_connections above max_connections opens max_connections");

    db.close().await.unwrap();
    capped.close().await.unwrap();
    drop_postgres(&name).await;
}

#[tokio::test]
async fn a_connection_dropped_while_idle_is_replaced_before_use() {
    let (admin, name) = empty_database("crs_pool_dropped").await;
    let db = crs_platform::db::connect::<NoMigrations>(&pool_config(&name, 1, 1)).await.expect("PostgreSQL");
    let first = one_number(&db, "SELECT pg_backend_pid()::bigint").await;

    // As when the server restarts, or a proxy closes a connection it thinks abandoned.
    one_number(&admin, &format!("SELECT pg_terminate_backend({first})::int::bigint")).await;
    tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(300)).await;

    let second = one_number(&db, "SELECT pg_backend_pid()::bigint").await;
    assert_ne!(second, first, "the dropped connection was found out and another one opened");

    db.close().await.unwrap();
    drop_postgres(&name).await;
}
