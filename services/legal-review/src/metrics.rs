//! Legal review's metrics: decisions by jurisdiction, category and outcome, and each queue's
//! depth and oldest case.

use std::sync::LazyLock;
use std::time::Duration;

use crs_proto::common::{Category, ItemDecision, ItemOutcome, Submission};
use crs_proto::convert::short_name_of;
use prometheus::{IntCounterVec, IntGaugeVec, register_int_counter_vec, register_int_gauge_vec};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use tokio_util::sync::CancellationToken;

use crate::entities::case;

pub static DECISIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "crs_item_decisions_total",
        "Item decisions that took effect, by jurisdiction, category and outcome.",
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
    let category = short_name_of::<Category>(submission.category);
    for d in decisions {
        DECISIONS
            .with_label_values(&[submission.jurisdiction.as_str(), category, short_name_of::<ItemOutcome>(d.outcome)])
            .inc();
    }
}

/// Refreshes the queue gauges `every` so often until `shutdown`; `known` queues are reported
/// at zero when empty.
pub async fn watch_queues(
    db: DatabaseConnection,
    mut known: Vec<String>,
    every: Duration,
    shutdown: CancellationToken,
) {
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
            .filter(case::Column::Status.is_in(crate::service::open_statuses()))
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
            for (queue, n, oldest) in rows {
                if !known.contains(&queue) {
                    known.push(queue.clone());
                }
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
