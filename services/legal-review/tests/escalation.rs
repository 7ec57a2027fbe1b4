//! Escalation that holds: a breach or a reviewer's escalation ends a junior's claim, keeps the
//! case for senior reviewers through a question to the agency, and claims can be released and
//! reassigned only by those who may.

mod support;

use crs_proto::common::RequestStatus;
use crs_proto::review::*;
use crs_testkit::Backend;
use support::*;
use tonic::Code;

async fn a_breach_takes_the_case_from_a_junior_for_good(backend: Backend) {
    // A five-second budget: the SLA sweeper breaches it while the junior holds the claim (taken
    // well before, however slow the machine).
    let review = Review::start(backend).await;
    let case = review.enqueue(&CaseSpec { budget_secs: 5, queue: "urgent", ..Default::default() }).await;
    let (ana, sam) = (reviewer("ana"), senior("sam"));
    let claimed = review.claim(&ana, &case).await.unwrap();
    assert_eq!(claimed.assigned_reviewer, "reviewer:ana");
    let escalated = wait("the breach escalates the case", || async {
        let c = review.get(&case).await;
        (c.status == RequestStatus::Escalated as i32).then_some(c)
    })
    .await;
    assert!(escalated.escalated && escalated.assigned_reviewer.is_empty(), "the junior's claim ended: {escalated:?}");
    assert_eq!(escalated.queue, "escalated");

    // From now on only senior reviewers act on it.
    assert_eq!(review.claim(&ana, &case).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(review.decide(&ana, &case, restrict_all(2)).await.unwrap_err().code(), Code::PermissionDenied);
    let next =
        review.as_(&ana).await.claim_next_case(ClaimNextCaseRequest { queue: "escalated".into(), lease: None }).await;
    assert_eq!(next.unwrap_err().code(), Code::NotFound, "claim-next never hands a junior an escalated case");
    review.claim(&sam, &case).await.unwrap();

    // A question and the agency's answer keep it escalated.
    let asked = review
        .as_(&sam)
        .await
        .request_information(RequestInformationRequest {
            case_id: case.clone(),
            question: "Which court?".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(asked.status, RequestStatus::AwaitingInformation as i32);
    let answered = review
        .internal("intake")
        .await
        .resume_case(ResumeCaseRequest {
            event_id: uuid::Uuid::new_v4().to_string(),
            case_id: case.clone(),
            answer: "Almaty district court".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answered.status, RequestStatus::Escalated as i32, "an answer returns it to ESCALATED, not IN_REVIEW");
    assert_eq!(review.decide(&sam, &case, restrict_all(2)).await.unwrap().status, RequestStatus::Decided as i32);

    // The trail says what the clock did: the warnings, the breach, and the junior's claim it ended.
    let trail = review
        .as_(&sam)
        .await
        .get_audit_trail(GetAuditTrailRequest { case_id: case.clone(), page_size: 100, page_token: String::new() })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
    for action in ["sla_breach", "claim_ended"] {
        assert!(actions.contains(&action), "{action} is in the trail: {actions:?}");
    }
    let breach = trail.iter().position(|e| e.action == "sla_breach").unwrap();
    let senior_claim = trail.iter().rposition(|e| e.action == "claim" && e.actor == "reviewer:sam").unwrap();
    assert!(breach < senior_claim, "the breach comes before the senior's claim: {actions:?}");
    review.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breach_escalation_on_sqlite() {
    a_breach_takes_the_case_from_a_junior_for_good(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breach_escalation_on_postgres() {
    a_breach_takes_the_case_from_a_junior_for_good(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewers_escalate_release_and_seniors_reassign() {
    let review = Review::start(Backend::Sqlite).await;
    let case = review.enqueue(&CaseSpec::default()).await;
    let (ana, bob, sam) = (reviewer("ana"), reviewer("bob"), senior("sam"));
    review.claim(&ana, &case).await.unwrap();

    // Release: the holder or a senior, nobody else.
    let release = |p| {
        let review = &review;
        let case = case.clone();
        async move { review.as_(p).await.release_case(ReleaseCaseRequest { case_id: case }).await }
    };
    assert_eq!(release(&bob).await.unwrap_err().code(), Code::PermissionDenied);
    assert!(release(&ana).await.unwrap().into_inner().assigned_reviewer.is_empty());
    assert_eq!(release(&ana).await.unwrap_err().code(), Code::FailedPrecondition, "nothing to release");

    // Reassignment: seniors only.
    let reassign = |p, to: &str| {
        let review = &review;
        let req =
            ReassignCaseRequest { case_id: case.clone(), assignee: to.into(), lease: None, reason: "workload".into() };
        async move { review.as_(p).await.reassign_case(req).await }
    };
    assert_eq!(reassign(&ana, "reviewer:bob").await.unwrap_err().code(), Code::PermissionDenied);
    let err = reassign(&sam, "agency:1").await.unwrap_err();
    assert_eq!((err.code(), field_violations(&err)), (Code::InvalidArgument, vec!["assignee".to_owned()]));
    assert_eq!(reassign(&sam, "reviewer:bob").await.unwrap().into_inner().assigned_reviewer, "reviewer:bob");
    assert_eq!(review.claim(&ana, &case).await.unwrap_err().code(), Code::FailedPrecondition, "bob holds it now");

    // Escalation: the holder (or a senior), with a reason; bob's claim ends with it.
    let escalate = |p, reason: &str| {
        let review = &review;
        let req = EscalateCaseRequest { case_id: case.clone(), reason: reason.into() };
        async move { review.as_(p).await.escalate_case(req).await }
    };
    assert_eq!(escalate(&ana, "hard").await.unwrap_err().code(), Code::PermissionDenied, "ana holds no claim");
    let err = escalate(&bob, " ").await.unwrap_err();
    assert_eq!((err.code(), field_violations(&err)), (Code::InvalidArgument, vec!["reason".to_owned()]));
    let escalated = escalate(&bob, "Possible protected speech: needs a senior view").await.unwrap().into_inner();
    assert!(escalated.escalated && escalated.assigned_reviewer.is_empty());
    assert_eq!((escalated.status, escalated.queue.as_str()), (RequestStatus::Escalated as i32, "escalated"));
    assert_eq!(escalate(&sam, "again").await.unwrap_err().code(), Code::FailedPrecondition, "already escalated");
    review.stop().await;
}
