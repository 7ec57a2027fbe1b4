//! Withdrawal and decision never both win: legal review decides under the case's lock which came
//! first, whatever the order, however often they race; a withdrawal before the case exists is
//! kept and the case starts withdrawn.

mod support;

use crs_proto::InternalCall;
use crs_proto::common::RequestStatus;
use crs_proto::intake::UpdateStatusRequest;
use crs_proto::notification::{NotificationKind, NotifyRequest};
use crs_proto::review::*;
use crs_testkit::Backend;
use support::*;
use tonic::Code;

async fn withdraw(review: &Review, case: &str) -> Result<Case, tonic::Status> {
    review
        .internal("intake")
        .await
        .withdraw_case(WithdrawCaseRequest {
            event_id: format!("withdraw:{case}"),
            case_id: case.into(),
            reason: "resolved".into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn the_first_of_withdrawal_and_decision_wins(backend: Backend) {
    let review = Review::start(backend).await;
    let ana = reviewer("ana");

    // Decision first: the withdrawal is refused, naming the decision.
    let case = review.enqueue(&CaseSpec::default()).await;
    review.claim(&ana, &case).await.unwrap();
    review.decide(&ana, &case, restrict_all(2)).await.unwrap();
    let refused = withdraw(&review, &case).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("RESTRICTED_IN_JURISDICTION"), "{}", refused.message());

    // Withdrawal first: the decision is refused.
    let case = review.enqueue(&CaseSpec::default()).await;
    review.claim(&ana, &case).await.unwrap();
    assert_eq!(withdraw(&review, &case).await.unwrap().status, RequestStatus::Withdrawn as i32);
    assert_eq!(review.decide(&ana, &case, restrict_all(2)).await.unwrap_err().code(), Code::FailedPrecondition);

    // Racing, many times: exactly one wins each time, and the loser is told so.
    for round in 0..20 {
        let case = review.enqueue(&CaseSpec::default()).await;
        review.claim(&ana, &case).await.unwrap();
        let (w, d) = if round % 2 == 0 {
            tokio::join!(withdraw(&review, &case), review.decide(&ana, &case, restrict_all(2)))
        } else {
            let (d, w) = tokio::join!(review.decide(&ana, &case, restrict_all(2)), withdraw(&review, &case));
            (w, d)
        };
        let status = review.get(&case).await.status;
        match (w, d) {
            (Ok(_), Err(e)) => {
                assert_eq!(e.code(), Code::FailedPrecondition);
                assert_eq!(status, RequestStatus::Withdrawn as i32);
            }
            (Err(e), Ok(_)) => {
                assert_eq!(e.code(), Code::FailedPrecondition);
                assert_eq!(status, RequestStatus::Decided as i32);
            }
            (w, d) => panic!("round {round}: both or neither won: {w:?} / {d:?}"),
        }
    }

    // What was sent agrees: no withdrawn case was announced as decided.
    let withdrawn: std::collections::HashSet<String> = review
        .sent::<UpdateStatusRequest>(UpdateStatusRequest::METHOD)
        .await
        .into_iter()
        .filter(|u| u.status == RequestStatus::Withdrawn as i32)
        .map(|u| u.request_id)
        .collect();
    let decided: Vec<String> = review
        .sent::<NotifyRequest>(NotifyRequest::METHOD)
        .await
        .into_iter()
        .filter(|n| n.kind == NotificationKind::Decided as i32)
        .filter_map(|n| n.submission.map(|s| s.request_id))
        .collect();
    assert!(decided.iter().all(|id| !withdrawn.contains(id)), "a withdrawn case was also announced as decided");
    assert_eq!(withdrawn.len() + decided.len(), 22, "every case ended one way or the other");
    review.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn withdrawal_against_decision_on_sqlite() {
    the_first_of_withdrawal_and_decision_wins(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn withdrawal_against_decision_on_postgres() {
    the_first_of_withdrawal_and_decision_wins(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_before_the_case_is_kept_and_the_case_starts_withdrawn() {
    let review = Review::start(Backend::Postgres).await;
    let id = uuid::Uuid::now_v7().to_string();
    let first = withdraw(&review, &id).await.unwrap();
    assert_eq!(first.status, RequestStatus::Withdrawn as i32);
    assert_eq!(withdraw(&review, &id).await.unwrap().status, RequestStatus::Withdrawn as i32, "a repeat agrees");
    review.enqueue_as(&id, &CaseSpec::default()).await;
    let case = review.get(&id).await;
    assert_eq!(case.status, RequestStatus::Withdrawn as i32);
    assert!(case.submission.is_some(), "the request is kept with the case");
    assert_eq!(review.claim(&reviewer("ana"), &id).await.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(review.count("SELECT COUNT(*) FROM sla_clocks").await, 0, "no clock runs for a withdrawn request");
    review.stop().await;
}
