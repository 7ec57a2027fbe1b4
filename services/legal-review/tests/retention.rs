//! Retention at legal review: a finished case's copy of the agency's words is blanked once past
//! `retention.request_text_secs`, command results past `retention.idempotency_secs` and inbox
//! records past `retention.inbox_secs` are deleted; open cases, decisions and the audit trail
//! stay, and the trail still verifies. Time passing is simulated by moving rows' times back.

mod support;

use crs_proto::review::*;
use crs_testkit::Backend;
use support::*;

const DAY_MS: i64 = 86_400_000;

async fn finished_cases_lose_the_agencys_words_and_nothing_else(backend: Backend) {
    let review = Review::start_with(backend, &[("CRS_RETENTION__INTERVAL_SECS", "1")]).await;
    let ana = reviewer("ana");
    let words = "the private words of the agency";
    let finished = review.enqueue(&CaseSpec { free_text: Some(words), ..Default::default() }).await;
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
    ] {
        review.exec(&sql).await;
    }
    // A case still open, as old, and one that just arrived.
    let open = review.enqueue(&CaseSpec { free_text: Some(words), ..Default::default() }).await;
    review.exec(&format!("UPDATE cases SET updated_at = updated_at - {} WHERE id = '{open}'", 400 * DAY_MS)).await;

    wait("the retention job runs", || async {
        let case = review.get(&finished).await;
        let submission = case.submission.unwrap_or_default();
        (submission.legal_basis.is_empty()
            && review.count("SELECT COUNT(*) AS n FROM command_results").await == 0
            && review.count("SELECT COUNT(*) AS n FROM inbox").await == 1)
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
