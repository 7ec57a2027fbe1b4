//! Retention at legal review: a finished case's copy of the agency's words is blanked once past
//! `retention.request_text_secs` (and so is a merged request's copy once it finished), command results past `retention.idempotency_secs` and inbox
//! records past `retention.inbox_secs` are deleted; open cases, decisions and the audit trail
//! stay, and the trail still verifies. Time passing is simulated by moving rows' times back.

mod support;

use crs_proto::review::*;
use crs_testkit::Backend;
use support::*;

const DAY_MS: i64 = 86_400_000;

async fn content_of(review: &Review, case: &str) -> Vec<String> {
    review.get(case).await.submission.unwrap().items.into_iter().map(|i| i.content_key).collect()
}

/// Legal review's copy of a merged request, as stored.
async fn merged_submission(review: &Review, request_id: &str) -> crs_proto::common::Submission {
    use prost::Message;
    use sea_orm::{ConnectionTrait, Statement};
    let sql = match review.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "SELECT submission FROM merged_requests WHERE request_id = $1",
        _ => "SELECT submission FROM merged_requests WHERE request_id = ?",
    };
    let row = review
        .db
        .query_one_raw(Statement::from_sql_and_values(review.db.get_database_backend(), sql, [request_id.into()]))
        .await
        .unwrap()
        .expect("the merged request is stored");
    crs_proto::common::Submission::decode(row.try_get::<Vec<u8>>("", "submission").unwrap().as_slice()).unwrap()
}

async fn finished_cases_lose_the_agencys_words_and_nothing_else(backend: Backend) {
    let review = Review::start_with(backend, &[("CRS_RETENTION__INTERVAL_SECS", "1")]).await;
    let ana = reviewer("ana");
    let words = "the private words of the agency";
    let finished = review.enqueue(&CaseSpec { free_text: Some(words), ..Default::default() }).await;
    // Another agency's request naming the same content follows the case, with its own words.
    let content = content_of(&review, &finished).await;
    let merged = uuid::Uuid::now_v7().to_string();
    let follower =
        CaseSpec { free_text: Some(words), agency: "agency-2", items: content.len(), content, ..Default::default() };
    assert_eq!(review.enqueue_as(&merged, &follower).await.case_id, finished);
    review.claim(&ana, &finished).await.unwrap();
    review.ask(&ana, &finished, "Who posted it?").await.unwrap();
    review.answer(&finished, "A person we name here").await.unwrap();
    review
        .as_(&ana)
        .await
        .submit_decision(SubmitDecisionRequest {
            case_id: finished.clone(),
            decisions: restrict_all(2),
            summary: "restricted in KZ".into(),
            idempotency_key: "decide-1".into(),
        })
        .await
        .unwrap();
    assert_eq!(review.count("SELECT COUNT(*) AS n FROM command_results").await, 1);

    // A year and more passes for everything written so far.
    for sql in [
        format!("UPDATE cases SET updated_at = updated_at - {}", 400 * DAY_MS),
        format!("UPDATE command_results SET created_at = created_at - {}", 2 * DAY_MS),
        format!("UPDATE inbox SET applied_at = applied_at - {}", 40 * DAY_MS),
        format!("UPDATE merged_requests SET finished_at = finished_at - {}", 400 * DAY_MS),
    ] {
        review.exec(&sql).await;
    }
    // A case still open, as old, and one that just arrived.
    let open = review.enqueue(&CaseSpec { free_text: Some(words), ..Default::default() }).await;
    review.exec(&format!("UPDATE cases SET updated_at = updated_at - {} WHERE id = '{open}'", 400 * DAY_MS)).await;
    let content = content_of(&review, &open).await;
    let following = uuid::Uuid::now_v7().to_string();
    let follower =
        CaseSpec { free_text: Some(words), agency: "agency-2", items: content.len(), content, ..Default::default() };
    assert_eq!(review.enqueue_as(&following, &follower).await.case_id, open);
    review.exec(&format!("UPDATE merged_requests SET merged_at = merged_at - {}", 400 * DAY_MS)).await;

    wait("the retention job runs", || async {
        let case = review.get(&finished).await;
        let submission = case.submission.unwrap_or_default();
        (submission.legal_basis.is_empty()
            && review.count("SELECT COUNT(*) AS n FROM command_results").await == 0
            // (the two hand-offs received since stay)
            && review.count("SELECT COUNT(*) AS n FROM inbox").await == 2)
            .then_some(())
    })
    .await;

    let case = review.get(&finished).await;
    let submission = case.submission.clone().unwrap_or_default();
    assert!(submission.justification.is_empty());
    assert!(submission.items.iter().all(|i| i.description.is_empty() && !i.url.is_empty()), "URLs stay");
    assert_eq!(case.status, crs_proto::common::RequestStatus::Decided as i32, "the case and its decision stay");
    assert_eq!(case.decisions.len(), 2);
    assert!(case.information.iter().all(|x| x.question.is_empty() && x.answer.is_empty()), "{:?}", case.information);
    assert_eq!(case.information.len(), 1, "the exchange is still on record, without its words");

    let still_open = review.get(&open).await.submission.unwrap_or_default();
    assert_eq!(still_open.legal_basis, words, "an open case keeps its text however old");

    // The decided merged request's copy lost the words; the one following the open case kept them.
    wait("the merged request's words are blanked", || async {
        merged_submission(&review, &merged).await.legal_basis.is_empty().then_some(())
    })
    .await;
    let blanked = merged_submission(&review, &merged).await;
    assert!(blanked.justification.is_empty() && blanked.items.iter().all(|i| i.description.is_empty()));
    assert_eq!(blanked.agency_id, "agency-2", "the request itself stays");
    assert_eq!(
        merged_submission(&review, &following).await.legal_basis,
        words,
        "a merged request still open keeps them"
    );

    // The trail never held the agency's words, only their digest, and it still verifies.
    let trail = review
        .as_(&senior("auditor"))
        .await
        .get_audit_trail(GetAuditTrailRequest { case_id: finished.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let details: String = trail.iter().map(|e| e.details_json.clone()).collect();
    assert!(!details.contains("A person we name here"), "{details}");
    assert!(details.contains("sha256"), "{details}");
    let verified =
        review.as_(&admin()).await.verify_audit_trail(VerifyAuditTrailRequest::default()).await.unwrap().into_inner();
    assert!(verified.intact, "{verified:?}");
    review.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_sqlite() {
    finished_cases_lose_the_agencys_words_and_nothing_else(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_postgres() {
    finished_cases_lose_the_agencys_words_and_nothing_else(Backend::Postgres).await;
}
