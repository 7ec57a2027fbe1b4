//! What legal review keeps, and for how long (see README, Retention):
//!
//! - a reviewer's command result named by an idempotency key is kept for
//!   `retention.idempotency_secs`, so a retry within it gets the first result;
//! - a finished case's copy of the agency's free text (legal basis, justification and item
//!   descriptions in the submission; the questions and answers exchanged) is blanked
//!   `retention.request_text_secs` after the case finished. Decisions and their statements of
//!   reasons stay (they are the platform's record and feed the transparency reports), and so does
//!   the audit trail, which holds only digests of the agency's words. The copies of requests
//!   merged into a case are blanked the same way once they finished.

use std::sync::Arc;

use crs_platform::retention::{BATCH, Prune, RetentionConfig, Rule, final_statuses_sql};
use crs_proto::common::Submission;
use prost::Message;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};

use crate::entities::{case, merged_request};

pub fn rules(cfg: &RetentionConfig) -> Vec<Rule> {
    let finished = format!("SELECT id FROM cases WHERE status IN ({}) AND updated_at < $1", final_statuses_sql());
    vec![
        Rule {
            class: "idempotency_keys",
            keep_secs: cfg.idempotency_secs,
            // Every row at one of the selected instants is past the cutoff too: the instant is a
            // sufficient key for deleting.
            prune: Prune::Delete {
                table: "command_results",
                key: "created_at",
                select: "SELECT created_at FROM command_results WHERE created_at < $1".into(),
            },
        },
        Rule {
            class: "request_text",
            keep_secs: cfg.request_text_secs,
            prune: Prune::Update {
                table: "information_exchanges",
                key: "case_id",
                set: "question = '', answer = ''",
                select: format!(
                    "{finished} AND id IN (SELECT case_id FROM information_exchanges WHERE question <> '' OR answer <> '')"
                ),
            },
        },
        Rule {
            class: "request_text",
            keep_secs: cfg.request_text_secs,
            prune: Prune::Custom(Arc::new(|db, cutoff| Box::pin(redact_cases(db, cutoff)))),
        },
        Rule {
            class: "request_text",
            keep_secs: cfg.request_text_secs,
            prune: Prune::Custom(Arc::new(|db, cutoff| Box::pin(redact_merged(db, cutoff)))),
        },
    ]
}

/// The submission with the agency's free text blanked (legal basis, justification, item
/// descriptions); `None` if it does not decode.
fn without_free_text(encoded: &[u8]) -> Option<Vec<u8>> {
    if encoded.is_empty() {
        return Some(Vec::new());
    }
    let mut s = Submission::decode(encoded).ok()?;
    s.legal_basis.clear();
    s.justification.clear();
    for item in &mut s.items {
        item.description.clear();
    }
    Some(s.encode_to_vec())
}

/// Blanks the agency's free text in the copies of merged requests that finished (decided,
/// withdrawn, or opened as cases of their own, whose case keeps its own copy) before the cutoff.
async fn redact_merged(db: DatabaseConnection, cutoff: i64) -> anyhow::Result<u64> {
    let rows = merged_request::Entity::find()
        .filter(merged_request::Column::FinishedAt.lt(cutoff))
        .filter(merged_request::Column::TextRedactedAt.is_null())
        .limit(BATCH)
        .all(&db)
        .await?;
    let now = crs_platform::time::now_millis();
    let mut done = 0;
    for row in rows {
        let Some(submission) = without_free_text(&row.submission) else {
            tracing::warn!(request_id = %row.request_id, "retention: the merged request does not decode; left as it is");
            continue;
        };
        done += merged_request::Entity::update_many()
            .col_expr(merged_request::Column::Submission, Expr::value(submission))
            .col_expr(merged_request::Column::TextRedactedAt, Expr::value(now))
            .filter(merged_request::Column::RequestId.eq(row.request_id))
            .filter(merged_request::Column::TextRedactedAt.is_null())
            .exec(&db)
            .await?
            .rows_affected;
    }
    Ok(done)
}

/// Blanks the agency's free text in the submissions of finished cases past the cutoff.
async fn redact_cases(db: DatabaseConnection, cutoff: i64) -> anyhow::Result<u64> {
    let finished: Vec<i32> = final_statuses_sql().split(", ").filter_map(|s| s.parse().ok()).collect();
    let rows = case::Entity::find()
        .filter(case::Column::Status.is_in(finished))
        .filter(case::Column::UpdatedAt.lt(cutoff))
        .filter(case::Column::TextRedactedAt.is_null())
        .limit(BATCH)
        .all(&db)
        .await?;
    let now = crs_platform::time::now_millis();
    let mut done = 0;
    for row in rows {
        let Some(submission) = without_free_text(&row.submission) else {
            tracing::warn!(case_id = %row.id, "retention: the case's submission does not decode; left as it is");
            continue;
        };
        // Only if still unredacted: another replica's job may have been first.
        done += case::Entity::update_many()
            .col_expr(case::Column::Submission, Expr::value(submission))
            .col_expr(case::Column::PendingQuestion, Expr::value(""))
            .col_expr(case::Column::TextRedactedAt, Expr::value(now))
            .filter(case::Column::Id.eq(row.id))
            .filter(case::Column::TextRedactedAt.is_null())
            .exec(&db)
            .await?
            .rows_affected;
    }
    Ok(done)
}
