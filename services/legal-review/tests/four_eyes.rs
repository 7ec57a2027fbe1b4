//! Second-reviewer approval: a decision on a flagged or high-risk case, or a global removal on a
//! government order, reaches nobody until a senior reviewer other than the decider approves it.

mod support;

use crs_proto::InternalCall;
use crs_proto::common::{DecisionGround, ItemDecision, ItemOutcome, RequestStatus};
use crs_proto::notification::{NotificationKind, NotifyRequest};
use crs_testkit::Backend;
use support::*;
use tonic::Code;

fn decided_notifications(sent: &[NotifyRequest]) -> usize {
    sent.iter().filter(|n| n.kind == NotificationKind::Decided as i32).count()
}

async fn a_flagged_decision_waits_for_a_second_senior_reviewer(backend: Backend) {
    let review = Review::start(backend).await;
    let case = review.enqueue(&CaseSpec { human_rights_review: true, ..Default::default() }).await;
    let (ana, sam, sue) = (reviewer("ana"), senior("sam"), senior("sue"));
    review.claim(&ana, &case).await.unwrap();
    let pending = review.decide(&ana, &case, restrict_all(2)).await.unwrap();
    assert_eq!(pending.status, RequestStatus::AwaitingApproval as i32);
    assert!(pending.approval_reason.contains("human-rights"), "{}", pending.approval_reason);
    assert_eq!(pending.decisions.len(), 2, "the decision is kept while it waits");
    assert_eq!(
        decided_notifications(&review.sent::<NotifyRequest>(NotifyRequest::METHOD).await),
        0,
        "nobody is told yet"
    );

    // Nobody but a second senior reviewer may approve.
    assert_eq!(review.approve(&ana, &case, true, "").await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(review.approve(&reviewer("joe"), &case, true, "").await.unwrap_err().code(), Code::PermissionDenied);
    // Sending back needs a reason.
    let err = review.approve(&sam, &case, false, "").await.unwrap_err();
    assert_eq!((err.code(), field_violations(&err)), (Code::InvalidArgument, vec!["comment".to_owned()]));
    let back = review.approve(&sam, &case, false, "Item 1 is commentary on a court case.").await.unwrap();
    assert_eq!(back.status, RequestStatus::InReview as i32, "sent back to review");
    assert!(back.decisions.is_empty() && back.assigned_reviewer.is_empty(), "discarded, and claimable again");
    assert_eq!(review.approve(&sue, &case, true, "").await.unwrap_err().code(), Code::FailedPrecondition);

    // Decided again by another reviewer, approved by the senior who did not decide.
    review.claim(&sam, &case).await.unwrap();
    review.decide(&sam, &case, refuse_all(2)).await.unwrap();
    assert_eq!(
        review.approve(&sam, &case, true, "").await.unwrap_err().code(),
        Code::PermissionDenied,
        "not the decider"
    );
    let approved = review.approve(&sue, &case, true, "Agreed.").await.unwrap();
    assert_eq!(approved.status, RequestStatus::Decided as i32);
    assert_eq!((approved.decided_by.as_str(), approved.approved_by.as_str()), ("reviewer:sam", "reviewer:sue"));
    let sent = review.sent::<NotifyRequest>(NotifyRequest::METHOD).await;
    assert_eq!(decided_notifications(&sent), 1, "told once, after approval");
    let told = sent.iter().find(|n| n.kind == NotificationKind::Decided as i32).unwrap();
    assert!(
        told.decisions.iter().all(|d| d.outcome == ItemOutcome::NoAction as i32),
        "the approved decision, not the first"
    );
    // Told when it took effect (the approval, not the decision) and against which deadline, for
    // the transparency report.
    assert_eq!(told.decided_at, approved.decided_at, "when the approval made it take effect");
    assert!(told.deadline.as_ref().and_then(|d| d.due_at.as_ref()).is_some(), "the deadline it was decided against");
    review.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_eyes_on_sqlite() {
    a_flagged_decision_waits_for_a_second_senior_reviewer(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_eyes_on_postgres() {
    a_flagged_decision_waits_for_a_second_senior_reviewer(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_removals_on_orders_and_high_risk_policies_need_approval_and_the_rules_are_configuration() {
    let review = Review::start(Backend::Sqlite).await;
    let remove = |policy: &str| {
        vec![ItemDecision {
            item_index: 0,
            outcome: ItemOutcome::RemovedGlobally as i32,
            ground: DecisionGround::IllegalContent as i32,
            legal_ground: "Art. 9".into(),
            explanation: "Threats of violence.".into(),
            platform_policy: policy.into(),
            ..Default::default()
        }]
    };
    let order =
        CaseSpec { items: 1, instrument: crs_proto::common::LegalInstrument::GovernmentOrder, ..Default::default() };
    let case = review.enqueue(&order).await;
    review.claim(&reviewer("ana"), &case).await.unwrap();
    let pending = review.decide(&reviewer("ana"), &case, remove("Community Standards: violent threats")).await.unwrap();
    assert_eq!(pending.status, RequestStatus::AwaitingApproval as i32);
    assert!(pending.approval_reason.contains("GOVERNMENT_ORDER"), "{}", pending.approval_reason);

    // A restriction on the same order takes effect at once.
    let case = review.enqueue(&order).await;
    review.claim(&reviewer("ana"), &case).await.unwrap();
    assert_eq!(
        review.decide(&reviewer("ana"), &case, restrict_all(1)).await.unwrap().status,
        RequestStatus::Decided as i32
    );

    // A policy marked high-risk holds every decision.
    let case = review.enqueue(&CaseSpec { high_risk: true, ..Default::default() }).await;
    review.claim(&reviewer("ana"), &case).await.unwrap();
    assert_eq!(
        review.decide(&reviewer("ana"), &case, refuse_all(2)).await.unwrap().status,
        RequestStatus::AwaitingApproval as i32
    );
    review.stop().await;

    // With the rules switched off in configuration, the same decisions take effect at once.
    let relaxed = Review::start_with(
        Backend::Sqlite,
        &[
            ("CRS_REVIEW__APPROVAL__HUMAN_RIGHTS_FLAGGED", "false"),
            ("CRS_REVIEW__APPROVAL__GLOBAL_REMOVAL_INSTRUMENTS", "[]"),
            ("CRS_REVIEW__APPROVAL__HIGH_RISK_POLICIES", "false"),
        ],
    )
    .await;
    for spec in [CaseSpec { human_rights_review: true, ..order.clone() }, CaseSpec { high_risk: true, ..order.clone() }]
    {
        let case = relaxed.enqueue(&spec).await;
        relaxed.claim(&reviewer("ana"), &case).await.unwrap();
        let decided = relaxed.decide(&reviewer("ana"), &case, remove("Community Standards")).await.unwrap();
        assert_eq!(decided.status, RequestStatus::Decided as i32);
    }
    relaxed.stop().await;
}
