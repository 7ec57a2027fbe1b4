//! The schema the migrations build is the schema the entities expect, on SQLite and PostgreSQL:
//! a column added to an entity without a migration fails here.

use crs_testkit::schema::{differences, expected};
use crs_testkit::{Backend, TestDb};
use sea_orm_migration::MigratorTrait;

async fn check(backend: Backend) {
    let db = TestDb::fresh(backend, "schema").await.unwrap();
    let conn = db.connect().await.unwrap();
    crs_legal_review::migration::Migrator::up(&conn, None).await.unwrap();
    // Running them again changes nothing.
    crs_legal_review::migration::Migrator::up(&conn, None).await.unwrap();
    let b = conn.get_database_backend();
    let diffs = differences(
        &conn,
        &[
            expected::<crs_legal_review::entities::case::Entity>(b),
            expected::<crs_legal_review::entities::decision::Entity>(b),
            expected::<crs_legal_review::entities::information::Entity>(b),
            expected::<crs_legal_review::entities::audit_entry::Entity>(b),
            expected::<crs_legal_review::entities::audit_pending::Entity>(b),
            expected::<crs_legal_review::entities::command_result::Entity>(b),
            expected::<crs_legal_review::entities::known_queue::Entity>(b),
            expected::<crs_legal_review::entities::case_content::Entity>(b),
            expected::<crs_legal_review::entities::open_content::Entity>(b),
            expected::<crs_legal_review::entities::merged_request::Entity>(b),
            expected::<crs_timers::store::clock::Entity>(b),
            expected::<crs_timers::store::firing::Entity>(b),
        ],
    )
    .await
    .unwrap();
    assert!(diffs.is_empty(), "{backend:?}: the migrations and the entities differ:\n{}", diffs.join("\n"));
    conn.close().await.unwrap();
    db.drop_now().await.unwrap();
}

#[tokio::test]
async fn migrations_build_what_the_entities_expect_on_sqlite() {
    check(Backend::Sqlite).await;
}

#[tokio::test]
async fn migrations_build_what_the_entities_expect_on_postgres() {
    check(Backend::Postgres).await;
}
