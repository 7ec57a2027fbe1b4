//! Legal review's metrics: decisions by jurisdiction, category and outcome, and each queue's
//! depth and oldest case.

use std::sync::LazyLock;
use std::time::Duration;

use crs_proto::common::{Category, ItemDecision, ItemOutcome, RequestStatus, Submission};
use prometheus::{IntCounterVec, IntGaugeVec, register_int_counter_vec, register_int_gauge_vec};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use tokio_util::sync::CancellationToken;

use crate::entities::case;

pub static DECISIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "crs_item_decisions_total",
        "Item decisions by jurisdiction, category and outcome.",
        &["jurisdiction", "category", "outcome"]
    )
    .expect("registers once")
});

pub static QUEUE_DEPTH: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("crs_review_queue_depth", "Open cases per review queue.", &["queue"])
        .expect("registers once")
});

pub static QUEUE_OLDEST: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("crs_review_queue_oldest_age_seconds", "Age of the oldest open case per queue.", &["queue"])
        .expect("registers once")
});

pub fn count_decisions(submission: &Submission, decisions: &[ItemDecision]) {
    let category = Category::try_from(submission.category)
        .map(|c| c.as_str_name().trim_start_matches("CATEGORY_"))
        .unwrap_or("UNKNOWN");
    for d in decisions {
        let outcome = ItemOutcome::try_from(d.outcome)
            .map(|o| o.as_str_name().trim_start_matches("ITEM_OUTCOME_"))
            .unwrap_or("UNKNOWN");
        DECISIONS.with_label_values(&[submission.jurisdiction.as_str(), category, outcome]).inc();
    }
}

/// Refreshes the queue gauges `every` so often until `shutdown`.
pub async fn watch_queues(db: DatabaseConnection, every: Duration, shutdown: CancellationToken) {
    let open =
        [RequestStatus::Triaged, RequestStatus::InReview, RequestStatus::AwaitingInformation, RequestStatus::Escalated]
            .map(|s| s as i32);
    // The queues triage routes to and the escalation queue exist from the start, at zero.
    let mut known: Vec<String> = ["urgent", "standard", crate::sla::ESCALATED_QUEUE].map(String::from).to_vec();
    for q in &known {
        QUEUE_DEPTH.with_label_values(&[q.as_str()]).set(0);
        QUEUE_OLDEST.with_label_values(&[q.as_str()]).set(0);
    }
    loop {
        let rows: Result<Vec<(String, i64, Option<i64>)>, _> = case::Entity::find()
            .select_only()
            .column(case::Column::Queue)
            .column_as(case::Column::Id.count(), "n")
            .column_as(case::Column::CreatedAt.min(), "oldest")
            .filter(case::Column::Status.is_in(open))
            .group_by(case::Column::Queue)
            .into_tuple()
            .all(&db)
            .await;
        if let Ok(rows) = rows {
            let now = crs_platform::time::now_millis();
            for q in &known {
                if !rows.iter().any(|(name, _, _)| name == q) {
                    QUEUE_DEPTH.with_label_values(&[q.as_str()]).set(0);
                    QUEUE_OLDEST.with_label_values(&[q.as_str()]).set(0);
                }
            }
            for (q, _, _) in &rows {
                if !known.contains(q) {
                    known.push(q.clone());
                }
            }
            for (queue, n, oldest) in rows {
                QUEUE_DEPTH.with_label_values(&[queue.as_str()]).set(n);
                QUEUE_OLDEST.with_label_values(&[queue.as_str()]).set(oldest.map_or(0, |o| (now - o) / 1000));
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {},
        }
    }
}
