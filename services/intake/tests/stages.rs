//! Where a submission's time goes, as `/metrics` tells an operator: the checks before the
//! group-commit queue, the wait in it, and the write. Alone in its test binary, because the
//! metrics are the process's and other tests' submissions would add to them.

mod support;

use std::time::Duration;

use support::{Intake, submit_in_background, valid_request};

/// The value of the `crs_intake_submission_stage_seconds_<name>` series in `metrics`.
fn series(metrics: &str, name: &str) -> f64 {
    let prefix = format!("crs_intake_submission_stage_seconds_{name} ");
    let line = metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str()));
    line.map_or(0.0, |v| v.parse().unwrap())
}

/// Submissions of `stage` that took more than a second.
fn over_a_second(metrics: &str, stage: &str) -> f64 {
    series(metrics, &format!("count{{stage=\"{stage}\"}}"))
        - series(metrics, &format!("bucket{{stage=\"{stage}\",le=\"1\"}}"))
}

/// One writer, one submission per batch: the first is written while its table is locked, and
/// the second waits for the writer all that time. Each stage's histogram shows which waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stage_of_a_submission_is_timed_on_postgres() {
    let intake = Intake::start_with_one_writer_of_one().await;
    let agency = intake.agency().await;
    let client = intake.intake(intake.as_agency(&agency)).await;
    let submit = || submit_in_background(&client, valid_request());

    let (blocker, first) = intake.hold_the_writer(submit()).await;
    let second = submit();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    blocker.rollback().await.unwrap();
    first.await.unwrap().expect("the first is stored");
    second.await.unwrap().expect("the second is stored");

    let metrics = intake.metrics().await;
    assert_eq!(series(&metrics, "count{stage=\"checks\"}"), 2.0, "both passed the checks");
    assert_eq!(over_a_second(&metrics, "checks"), 0.0, "which do not wait for the writer");
    assert_eq!(series(&metrics, "count{stage=\"queue\"}"), 2.0);
    assert_eq!(over_a_second(&metrics, "queue"), 1.0, "the second waited for the held writer");
    assert_eq!(series(&metrics, "count{stage=\"write\"}"), 2.0);
    assert_eq!(over_a_second(&metrics, "write"), 1.0, "the first was written while its table was locked");
    intake.stop().await;
}
