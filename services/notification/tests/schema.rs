//! The schema the migrations build is the schema the entities expect, on SQLite and PostgreSQL:
//! a column added to an entity without a migration fails here.

use crs_testkit::schema::{differences, expected};
use crs_testkit::{Backend, TestDb};
use sea_orm::ConnectionTrait;
use sea_orm_migration::MigratorTrait;

async fn check(backend: Backend) {
    let db = TestDb::fresh(backend, "schema").await.unwrap();
    let conn = db.connect().await.unwrap();
    crs_notification::migration::Migrator::up(&conn, None).await.unwrap();
    // Running them again changes nothing.
    crs_notification::migration::Migrator::up(&conn, None).await.unwrap();
    let b = conn.get_database_backend();
    let diffs = differences(
        &conn,
        &[
            expected::<crs_notification::entities::notification::Entity>(b),
            expected::<crs_notification::entities::message::Entity>(b),
            expected::<crs_notification::entities::sequence::Entity>(b),
            expected::<crs_notification::entities::delivery::Entity>(b),
            expected::<crs_notification::entities::subscription::Entity>(b),
            expected::<crs_notification::entities::transparency_record::Entity>(b),
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

mod support;

/// A database from before channels: its webhook subscription (secret in plain text, long
/// enough to keep), a delivery still pending (its secret copied in) and the delivery's row in the
/// shared outbox. After the upgrade the secret is sealed, the copy and the outbox row are gone,
/// and the pending delivery is delivered, signed with the same key as before.
async fn upgrade(backend: Backend) {
    let db = TestDb::fresh(backend, "upgrade").await.unwrap();
    let conn = db.connect().await.unwrap();
    crs_notification::migration::Migrator::up(&conn, Some(4)).await.unwrap();
    let receiver = support::Receiver::start().await;
    let legacy_secret = "a-legacy-secret-of-32-bytes-long";
    let endpoint = receiver.url("enforcement");
    let b = conn.get_database_backend();
    let now = chrono::Utc::now().timestamp_millis();
    for sql in [
        format!(
            "INSERT INTO subscriptions (audience, agency_id, id, endpoint, secret, updated_at) \
             VALUES (3, '', 'sub-legacy', '{endpoint}', '{legacy_secret}', {now})"
        ),
        format!(
            "INSERT INTO notifications (id, event_id, kind, request_id, agency_id, payload, created_at) \
             VALUES ('n-legacy', 'e-legacy', 3, 'r-legacy', 'a-legacy', '{{\"kind\":\"DECIDED\"}}', {now})"
        ),
        format!(
            "INSERT INTO deliveries (id, notification_id, audience, endpoint, secret, state, attempts, delivered_at, \
             last_error, created_at) VALUES ('d-legacy', 'n-legacy', 3, '{endpoint}', '{legacy_secret}', 3, 2, NULL, \
             'endpoint answered 503', {now})"
        ),
    ] {
        conn.execute_unprepared(&sql).await.unwrap();
    }
    conn.execute_raw(sea_orm::Statement::from_sql_and_values(
        b,
        if b == sea_orm::DbBackend::Postgres {
            "INSERT INTO outbox (id, topic, payload, created_at, available_at, attempts) VALUES ($1, 'webhook.deliver', $2, 1, 1, 2)"
        } else {
            "INSERT INTO outbox (id, topic, payload, created_at, available_at, attempts) VALUES (?, 'webhook.deliver', ?, 1, 1, 2)"
        },
        ["o-legacy".into(), sea_orm::Value::Bytes(Some(b"\x0a\x08d-legacy".to_vec()))],
    ))
    .await
    .unwrap();

    use base64::Engine as _;
    receiver
        .register("enforcement", &format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(legacy_secret)));
    let env = crs_testkit::ServiceEnv::on::<crs_notification::Application>(db.clone())
        .set("CRS_DELIVERY__DEVELOPMENT_MODE", "true")
        .set("CRS_DELIVERY__POLL_INTERVAL_MS", "100");
    let running = crs_testkit::service::start::<crs_notification::Application>(&env).await;
    let delivered =
        crs_testkit::eventually("the pending delivery is delivered", std::time::Duration::from_secs(30), || async {
            receiver.received("enforcement").into_iter().next()
        })
        .await;
    assert_eq!(delivered.verified, Ok(()), "signed with the key it had");
    assert_eq!(delivered.header("webhook-id"), "d-legacy");
    let one = |sql: &'static str| {
        let conn = &conn;
        async move { conn.query_one_raw(sea_orm::Statement::from_string(b, sql)).await.unwrap().unwrap() }
    };
    let sealed: String =
        one("SELECT secret FROM channel_subscriptions WHERE id = 'sub-legacy'").await.try_get("", "secret").unwrap();
    assert!(sealed.starts_with("sealed:v1:") && !sealed.contains(legacy_secret), "{sealed}");
    let outbox: i64 = one("SELECT COUNT(*) AS n FROM outbox").await.try_get("", "n").unwrap();
    assert_eq!(outbox, 0);
    running.stop().await;
    conn.close().await.unwrap();
    db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_database_keeps_its_subscriptions_and_pending_deliveries_on_sqlite() {
    upgrade(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_database_keeps_its_subscriptions_and_pending_deliveries_on_postgres() {
    upgrade(Backend::Postgres).await;
}
