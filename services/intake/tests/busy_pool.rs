//! A pool busy with requests is not a database that stopped answering: while intake's one
//! pooled connection waits on a lock, intake stays in rotation, and a call that comes meanwhile
//! waits for the connection instead of being refused as if the database were gone.

mod support;

use std::time::Duration;

use sea_orm::{ConnectionTrait, TransactionTrait};
use support::{Backend, Intake, valid_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_pool_keeps_the_service_serving_and_its_calls_waiting() {
    let intake = Intake::start_with(
        Backend::Postgres,
        &[("CRS_DATABASE__MAX_CONNECTIONS", "1"), ("CRS_DATABASE__ACQUIRE_TIMEOUT_MS", "30000")],
    )
    .await;
    let agency = intake.agency().await;
    let client = intake.intake(intake.as_agency(&agency)).await;

    // Every submission reads its agency: with that table locked, the first one holds the pool's
    // only connection until the lock goes.
    let blocker = intake.db.begin().await.unwrap();
    blocker.execute_unprepared("LOCK TABLE agencies IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let mut first_client = client.clone();
    let first = tokio::spawn(async move { first_client.submit_request(valid_request()).await });
    // Past the readiness ping's bound (two seconds) and several pings.
    tokio::time::sleep(Duration::from_secs(4)).await;
    crs_testkit::wait_serving(&intake.url, Duration::from_secs(1))
        .await
        .expect("still serving while its pool is busy and its database answers");
    let mut second_client = client.clone();
    let second = tokio::spawn(async move { second_client.submit_request(valid_request()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocker.rollback().await.unwrap();

    for (name, call) in [("first", first), ("second", second)] {
        let answer = call.await.unwrap();
        assert!(answer.is_ok(), "the {name} submission waited for the connection and was taken: {answer:?}");
    }
    intake.stop().await;
}
