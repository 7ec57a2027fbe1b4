//! Intake takes in no more than it can store before its callers' deadlines: under a backlog, a
//! caller with a short deadline is told at once, and nothing of its submission is stored. Alone
//! in its test binary: it reads the rate intake measured from `/metrics`, which are the
//! process's.

mod support;

use std::time::{Duration, Instant};

use crs_proto::intake::SubmitRequestRequest;
use sea_orm::{ConnectionTrait, Statement};
use support::{Intake, submit_in_background, valid_request};
use tonic_types::StatusExt;

/// The value of the metric line starting with `prefix` (summed over its series), or 0.
fn metric(metrics: &str, prefix: &str, containing: &str) -> f64 {
    let values = metrics.lines().filter(|l| l.starts_with(prefix) && l.contains(containing));
    values.map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap()).sum()
}

async fn measured_rate(intake: &Intake) -> f64 {
    metric(&intake.metrics().await, "crs_intake_admission_stored_per_second ", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_that_cannot_be_stored_before_its_deadline_is_refused_at_once_on_postgres() {
    // One writer storing one submission at a time.
    let intake = Intake::start_with_one_writer_of_one().await;
    assert_eq!(measured_rate(&intake).await, 0.0, "nothing measured yet");

    // Steady submissions from sixteen agencies, so many that the writer does not run out of
    // work, until intake has measured how many it stores a second. Two jurisdictions, each
    // well within its limits.
    let mut clients = Vec::new();
    for jurisdiction in ["TR", "IN"].repeat(8) {
        let agency = intake.agency_in(jurisdiction).await;
        intake.allow_orders(&agency, 100_000).await;
        clients.push((jurisdiction, intake.intake(intake.as_agency(&agency)).await));
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let mut loops = Vec::new();
    for (jurisdiction, mut client) in clients {
        let stop = stop.clone();
        loops.push(tokio::spawn(async move {
            let mut stored = 0;
            while !stop.is_cancelled() {
                let request = SubmitRequestRequest { jurisdiction: jurisdiction.into(), ..valid_request() };
                client.submit_request(request).await.expect("the steady submissions are stored");
                stored += 1;
            }
            stored
        }));
    }
    let until = Instant::now() + Duration::from_secs(20);
    while measured_rate(&intake).await == 0.0 {
        assert!(Instant::now() < until, "intake measured no rate in 20 s of steady submissions");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let mut steady = 0;
    for l in loops {
        steady += l.await.unwrap();
    }
    let per_sec = measured_rate(&intake).await;

    // Two hundred and one wait behind a held writer: at the rate measured, more than the
    // 50 ms a 100 ms call may wait.
    let agency = intake.agency().await;
    intake.allow_orders(&agency, 1_000).await;
    let client = intake.intake(intake.as_agency(&agency)).await;
    let (blocker, first) = intake.hold_the_writer(submit_in_background(&client, valid_request())).await;
    let mut waiting: Vec<_> = (0..200).map(|_| submit_in_background(&client, valid_request())).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(201.0 / per_sec > 0.05, "the test needs a slower writer: {per_sec} stored a second");

    let hurried = valid_request();
    let mut call = tonic::Request::new(hurried.clone());
    call.set_timeout(Duration::from_millis(100));
    let status = client.clone().submit_request(call).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().starts_with("intake is saturated: the "), "{}", status.message());
    assert!(status.message().contains("nothing was stored"), "{}", status.message());
    let retry = status.get_details_retry_info().and_then(|r| r.retry_delay).expect("when to retry");
    assert!(retry >= Duration::from_millis(100), "{retry:?}");
    let shed = metric(&intake.metrics().await, "crs_requests_total{", "outcome=\"shed\"");
    assert_eq!(shed, 1.0, "counted as shed in /metrics");

    // Without a deadline, the server's bound of 30 s allows the wait.
    waiting.push(submit_in_background(&client, valid_request()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocker.rollback().await.unwrap();
    first.await.unwrap().expect("the held submission is stored");
    for call in waiting {
        call.await.unwrap().expect("every submission waiting without a deadline is stored");
    }
    let key = &hurried.idempotency_key;
    let backend = intake.db.get_database_backend();
    let sql = format!("SELECT COUNT(*) AS n FROM requests WHERE idempotency_key = '{key}'");
    let row = intake.db.query_one_raw(Statement::from_string(backend, sql)).await.unwrap().unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0, "the refused submission left nothing");
    let [requests, ..] = intake.written().await;
    assert_eq!(requests, steady + 202, "the steady ones, the held one and the 201 behind it");
    intake.stop().await;
}
