//! Reviewers' commands are safe to retry: the same idempotency key returns the first result,
//! even once the case has moved on, and the command's effect happens once.

mod support;

use crs_proto::common::RequestStatus;
use crs_proto::review::*;
use crs_testkit::Backend;
use support::*;
use tonic::Code;

async fn retried_commands_return_their_first_result(backend: Backend) {
    let review = Review::start(backend).await;
    let (ana, sam) = (reviewer("ana"), senior("sam"));

    // RequestInformation: one round asked, however often it is retried.
    let case = review.enqueue(&CaseSpec::default()).await;
    review.claim(&ana, &case).await.unwrap();
    let ask = RequestInformationRequest {
        case_id: case.clone(),
        question: "Which court?".into(),
        idempotency_key: "ask-1".into(),
    };
    let first = review.as_(&ana).await.request_information(ask.clone()).await.unwrap().into_inner();
    let again = review.as_(&ana).await.request_information(ask).await.unwrap().into_inner();
    assert_eq!(first, again);
    assert_eq!(review.count(&format!("SELECT COUNT(*) FROM information_exchanges WHERE case_id = '{case}'")).await, 1);

    // SubmitDecision: the retry after success returns the decision, not FAILED_PRECONDITION.
    let case = review.enqueue(&CaseSpec { human_rights_review: true, ..Default::default() }).await;
    review.claim(&ana, &case).await.unwrap();
    let decide = SubmitDecisionRequest {
        case_id: case.clone(),
        decisions: restrict_all(2),
        summary: "granted".into(),
        idempotency_key: "decide-1".into(),
    };
    let first = review.as_(&ana).await.submit_decision(decide.clone()).await.unwrap().into_inner();
    assert_eq!(first.status, RequestStatus::AwaitingApproval as i32);
    let again = review.as_(&ana).await.submit_decision(decide.clone()).await.unwrap().into_inner();
    assert_eq!(first, again);
    // The same key for another decision is a client bug, said so.
    let other = SubmitDecisionRequest { decisions: refuse_all(2), ..decide };
    assert_eq!(review.as_(&ana).await.submit_decision(other).await.unwrap_err().code(), Code::AlreadyExists);

    // ApproveDecision: approved once; the retry returns the approval.
    let approve = ApproveDecisionRequest {
        case_id: case.clone(),
        approve: true,
        comment: String::new(),
        idempotency_key: "approve-1".into(),
    };
    let first = review.as_(&sam).await.approve_decision(approve.clone()).await.unwrap().into_inner();
    assert_eq!(first.status, RequestStatus::Decided as i32);
    let again = review.as_(&sam).await.approve_decision(approve).await.unwrap().into_inner();
    assert_eq!(first, again);
    let approvals = review.audit_entries(&format!("case_id = '{case}' AND action = 'approve'")).await;
    assert_eq!(approvals, 1, "approved once");
    // Another reviewer's key is their own.
    let theirs = SubmitDecisionRequest {
        case_id: case,
        decisions: restrict_all(2),
        summary: String::new(),
        idempotency_key: "decide-1".into(),
    };
    assert_eq!(
        review.as_(&reviewer("bob")).await.submit_decision(theirs).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    review.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_commands_on_sqlite() {
    retried_commands_return_their_first_result(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_commands_on_postgres() {
    retried_commands_return_their_first_result(Backend::Postgres).await;
}
