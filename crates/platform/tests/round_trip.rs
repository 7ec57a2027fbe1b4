//! Writes sent together (`db::in_one_round_trip`): one statement on PostgreSQL, one after the
//! other on SQLite, every row where it belongs.

use crs_platform::db::in_one_round_trip;
use crs_platform::outbox::statement;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, TransactionTrait};

mod support;
use support::{drop_postgres, fresh_postgres};

async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<(i64, String)> {
    let found = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    found.into_iter().map(|r| (r.try_get_by_index(0).unwrap(), r.try_get_by_index(1).unwrap())).collect()
}

fn insert(backend: DbBackend, table: &str, n: i64, note: &str) -> Statement {
    statement(backend, &format!("INSERT INTO {table} (n, note) VALUES ($1, $2)"), vec![n.into(), note.into()])
}

async fn writes_sent_together(db: DatabaseConnection) {
    let backend = db.get_database_backend();
    for table in ["a", "b"] {
        db.execute_unprepared(&format!("CREATE TABLE {table} (n BIGINT PRIMARY KEY, note TEXT NOT NULL)"))
            .await
            .unwrap();
    }
    in_one_round_trip(
        &db,
        vec![insert(backend, "a", 1, "one"), insert(backend, "b", 2, "two"), insert(backend, "a", 3, "three")],
    )
    .await
    .unwrap();
    assert_eq!(rows(&db, "SELECT n, note FROM a ORDER BY n").await, vec![(1, "one".into()), (3, "three".into())]);
    assert_eq!(rows(&db, "SELECT n, note FROM b ORDER BY n").await, vec![(2, "two".into())]);

    // In a transaction, a part that fails leaves nothing of the others once rolled back.
    let txn = db.begin().await.unwrap();
    let failed = in_one_round_trip(&txn, vec![insert(backend, "b", 10, "ten"), insert(backend, "a", 1, "again")]).await;
    assert!(failed.is_err(), "a key taken is refused");
    txn.rollback().await.unwrap();
    assert_eq!(rows(&db, "SELECT n, note FROM b ORDER BY n").await, vec![(2, "two".into())]);
}

#[tokio::test]
async fn writes_sent_together_on_postgres() {
    let (db, name) = fresh_postgres("crs_round_trip").await;
    writes_sent_together(db.clone()).await;

    // One statement: outside any transaction, a part that fails takes the others with it.
    let failed = in_one_round_trip(
        &db,
        vec![insert(DbBackend::Postgres, "b", 20, "twenty"), insert(DbBackend::Postgres, "a", 3, "again")],
    )
    .await;
    assert!(failed.is_err());
    assert_eq!(rows(&db, "SELECT n, note FROM b WHERE n = 20").await, vec![], "nothing half-written");

    // The last part may be a lock the statements after it rely on: it is taken with the writes.
    let lock = 0x0c25_7e57_0000_0001_i64;
    let txn = db.begin().await.unwrap();
    in_one_round_trip(
        &txn,
        vec![
            insert(DbBackend::Postgres, "a", 30, "thirty"),
            statement(DbBackend::Postgres, "SELECT pg_advisory_xact_lock_shared($1)", vec![lock.into()]),
        ],
    )
    .await
    .unwrap();
    let other =
        Database::connect(format!("{}/{name}", support::admin_url().rsplit_once('/').unwrap().0)).await.unwrap();
    let taken = |db: DatabaseConnection| async move {
        db.query_one_raw(statement(DbBackend::Postgres, "SELECT pg_try_advisory_lock($1) AS got", vec![lock.into()]))
            .await
            .unwrap()
            .unwrap()
            .try_get::<bool>("", "got")
            .unwrap()
    };
    assert!(!taken(other.clone()).await, "the shared lock is held until the transaction ends");
    txn.commit().await.unwrap();
    assert!(taken(other.clone()).await, "and released by its commit");
    assert_eq!(rows(&db, "SELECT n, note FROM a WHERE n = 30").await, vec![(30, "thirty".into())]);
    other.close().await.unwrap();
    db.close().await.unwrap();
    drop_postgres(&name).await;
}

#[tokio::test]
async fn writes_sent_together_on_sqlite() {
    let path = std::env::temp_dir().join(format!("crs-round-trip-{}.db", uuid::Uuid::new_v4()));
    let db = Database::connect(format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
    writes_sent_together(db.clone()).await;
    db.close().await.unwrap();
    let _ = std::fs::remove_file(path);
}
