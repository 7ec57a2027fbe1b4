//! Intake's metrics: submissions by jurisdiction, category and outcome, and how many share a
//! transaction.

use std::sync::LazyLock;

use crs_proto::common::Category;
use prometheus::{
    Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, register_gauge, register_histogram,
    register_histogram_vec, register_int_counter, register_int_counter_vec,
};

use crate::error::IntakeError;

/// `outcome`: accepted, replayed, invalid, rate_limited, shed (intake saturated, see
/// `crate::admission`), refused (authentication, authorisation, suspension), failed (internal).
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "crs_requests_total",
        "Submissions by jurisdiction, category and outcome.",
        &["jurisdiction", "category", "outcome"]
    )
    .expect("registers once")
});

/// Counts one submission. Labels come from validated vocabularies only, so a caller cannot
/// create new series by sending odd values.
pub fn count_submission(jurisdiction: &str, category: i32, result: Result<bool, &IntakeError>) {
    let jurisdiction = if crs_domain::vocab::is_country_code(jurisdiction) { jurisdiction } else { "invalid" };
    let category = crs_proto::convert::short_name_of::<Category>(category);
    let outcome = match result {
        Ok(false) => "accepted",
        Ok(true) => "replayed",
        Err(IntakeError::InvalidArgument(_)) | Err(IntakeError::IdempotencyKeyReused(_)) => "invalid",
        Err(IntakeError::RateLimited(_)) => "rate_limited",
        Err(IntakeError::Saturated(_)) => "shed",
        Err(IntakeError::Internal(_)) => "failed",
        Err(_) => "refused",
    };
    REQUESTS.with_label_values(&[jurisdiction, category, outcome]).inc();
}

/// Submissions intake stores a second while it never runs out of work to write, as last
/// measured: what its admission divides the submissions in flight by (`crate::admission`).
pub static ADMISSION_RATE: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "crs_intake_admission_stored_per_second",
        "Submissions stored per second while intake was busy, as last measured for admission."
    )
    .expect("registers once")
});

/// Submissions per group-commit transaction (its `_count` is the number of transactions).
pub static GROUP_COMMIT_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "crs_intake_group_commit_size",
        "Submissions stored per transaction.",
        vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
    )
    .expect("registers once")
});

/// Where an accepted submission's time goes, by `stage`: `checks` (from the start of the call's
/// handling to the group commit: the agency and key lookup, validation, the rate limit),
/// `queue` (waiting for a group-commit writer), `write` (its batch's transaction, to the
/// commit). What `crs_grpc_server_duration_seconds` adds beyond them is the call's way in and
/// out (HTTP/2, authentication, waiting for a thread).
pub static SUBMISSION_STAGE: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "crs_intake_submission_stage_seconds",
        "Time submissions spent in each stage of intake: checks, queue (for a writer) and write.",
        &["stage"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
    )
    .expect("registers once")
});

/// The stages of [`SUBMISSION_STAGE`], each looked up once rather than on every submission.
pub static STAGE_CHECKS: LazyLock<Histogram> = LazyLock::new(|| SUBMISSION_STAGE.with_label_values(&["checks"]));
pub static STAGE_QUEUE: LazyLock<Histogram> = LazyLock::new(|| SUBMISSION_STAGE.with_label_values(&["queue"]));
pub static STAGE_WRITE: LazyLock<Histogram> = LazyLock::new(|| SUBMISSION_STAGE.with_label_values(&["write"]));

/// Submissions not stored because their callers had gone (deadline passed, or cancelled) before
/// a group-commit writer took them: a sign that intake is taking longer than its callers wait.
pub static SUBMISSIONS_ABANDONED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "crs_intake_submissions_abandoned_total",
        "Submissions not stored because their callers had gone before they were written."
    )
    .expect("registers once")
});

/// Batches taken newest first because the oldest waiting submission had waited too long: intake
/// was receiving more submissions than it wrote.
pub static GROUP_COMMIT_NEWEST_FIRST: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "crs_intake_group_commit_newest_first_total",
        "Group-commit batches taken newest first because submissions had queued too long."
    )
    .expect("registers once")
});
