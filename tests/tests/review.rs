//! Legal review that can be trusted, across the four running services: a flagged decision
//! reaches nobody until a second reviewer approves it, and an agency is never told WITHDRAWN
//! about content that was removed or restricted.

use crs_e2e::{Backend, Suite};
use crs_proto::common::{Category, DecisionGround, ItemDecision, ItemOutcome, LegalInstrument, RequestStatus};
use crs_proto::intake::WithdrawRequestRequest;
use crs_proto::intake::intake_service_client::IntakeServiceClient;
use crs_proto::notification::NotificationKind;
use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
use crs_proto::review::{ApproveDecisionRequest, ClaimCaseRequest, SubmitDecisionRequest};
use crsctl::demo::Demo;
use crsctl::receiver::Receiver;

/// A flagged case is decided, sent back, decided again and approved; only then are the agency,
/// the content owner and enforcement told, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagged_decision_is_told_to_nobody_until_a_second_reviewer_approves_it() {
    let suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver.clone());
    demo.set_up().await.unwrap();
    // Speech, a government order, a global removal: flagged for human-rights review.
    let submitted = demo.submit(Demo::sample_request(&uuid::Uuid::new_v4().to_string())).await.unwrap();
    demo.wait_status(&submitted.id, RequestStatus::Triaged).await.unwrap();
    demo.claim(&submitted.id).await.unwrap();
    // The claim reaches intake by its own hand-off; what follows sends the agency nothing.
    demo.wait_status(&submitted.id, RequestStatus::InReview).await.unwrap();
    let pending = demo.decide(&submitted.id).await.unwrap();
    assert_eq!(pending.status, RequestStatus::AwaitingApproval as i32);

    // The second reviewer sends it back; meanwhile nobody outside review has heard of it.
    let senior = |name: &str| {
        let token = demo_token(&suite, name);
        let url = suite.endpoints.legal_review.clone();
        async move { LegalReviewServiceClient::new(crsctl::connect(&url, token).await.unwrap()) }
    };
    let back = senior("sue")
        .await
        .approve_decision(ApproveDecisionRequest {
            case_id: submitted.id.clone(),
            approve: false,
            comment: "Item 2 restates a court judgment: restrict, do not remove.".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(back.status, RequestStatus::InReview as i32);
    let view = demo.get(&submitted.id).await.unwrap();
    assert_eq!(view.status, RequestStatus::InReview as i32, "the agency sees the case under review throughout");
    assert!(view.items.iter().all(|i| i.outcome == ItemOutcome::Pending as i32));
    let told: Vec<i32> = demo
        .wait_delivered(&submitted.id, &[NotificationKind::Acknowledged])
        .await
        .unwrap()
        .iter()
        .map(|n| n.kind)
        .collect();
    assert_eq!(told, [NotificationKind::Acknowledged as i32], "no decision was announced");
    assert!(receiver.received().iter().all(|r| r.body["kind"] != "DECIDED"), "no webhook carried a decision");

    // Decided again (restrictions only), approved by a senior who did not decide.
    demo.claim(&submitted.id).await.unwrap();
    let mut reviewer = LegalReviewServiceClient::new(
        crsctl::connect(&suite.endpoints.legal_review, demo.reviewer().unwrap()).await.unwrap(),
    );
    let restrict: Vec<ItemDecision> = (0..3)
        .map(|i| ItemDecision {
            item_index: i,
            outcome: ItemOutcome::RestrictedInJurisdiction as i32,
            ground: DecisionGround::IllegalContent as i32,
            legal_ground: "Law on Online Platforms, Art. 9(4)(2)".into(),
            explanation: "Unlawful in Kazakhstan.".into(),
            ..Default::default()
        })
        .collect();
    let again = reviewer
        .submit_decision(SubmitDecisionRequest {
            case_id: submitted.id.clone(),
            decisions: restrict,
            summary: "Restricted in Kazakhstan.".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.status, RequestStatus::AwaitingApproval as i32, "still flagged: four eyes again");
    let approved = senior("sue")
        .await
        .approve_decision(ApproveDecisionRequest {
            case_id: submitted.id.clone(),
            approve: true,
            comment: String::new(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.status, RequestStatus::Decided as i32);
    let view = demo.wait_status(&submitted.id, RequestStatus::Decided).await.unwrap();
    assert!(view.items.iter().all(|i| i.outcome == ItemOutcome::RestrictedInJurisdiction as i32));
    let notes =
        demo.wait_delivered(&submitted.id, &[NotificationKind::Acknowledged, NotificationKind::Decided]).await.unwrap();
    let decided: Vec<_> = notes.iter().filter(|n| n.kind == NotificationKind::Decided as i32).collect();
    assert_eq!(decided.len(), 1, "told once");
    suite.stop().await.unwrap();
}

fn demo_token(suite: &Suite, senior: &str) -> crsctl::Bearer {
    use crs_platform::auth::{Principal, Role};
    crsctl::Bearer::for_principal(
        &suite.issuer,
        &Principal::Reviewer { id: senior.into(), roles: vec![Role::SeniorReviewer] },
    )
    .unwrap()
}

/// The agency withdraws while a reviewer decides, many times over: whichever came first at legal
/// review is what the agency is told, and WITHDRAWN never goes with a restriction.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agency_is_never_told_withdrawn_about_content_that_was_acted_on() {
    let suite = Suite::start(Backend::Postgres).await.expect("suite starts");
    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver);
    demo.set_up().await.unwrap();
    let intake =
        IntakeServiceClient::new(crsctl::connect(&suite.endpoints.intake, demo.agency().unwrap()).await.unwrap());
    let mut review = LegalReviewServiceClient::new(
        crsctl::connect(&suite.endpoints.legal_review, demo.reviewer().unwrap()).await.unwrap(),
    );
    let (mut withdrawn, mut decided) = (0, 0);
    for round in 0..8 {
        // Not flagged: a decision takes effect at once.
        let mut request = Demo::sample_request(&uuid::Uuid::new_v4().to_string());
        request.category = Category::RiskForPublicSecurity as i32;
        request.legal_instrument = LegalInstrument::GovernmentNotice as i32;
        request.keywords.clear();
        let submitted = demo.submit(request).await.unwrap();
        demo.wait_status(&submitted.id, RequestStatus::Triaged).await.unwrap();
        review.claim_case(ClaimCaseRequest { case_id: submitted.id.clone(), lease: None }).await.unwrap();
        let decide = SubmitDecisionRequest {
            case_id: submitted.id.clone(),
            decisions: (0..3)
                .map(|i| ItemDecision {
                    item_index: i,
                    outcome: ItemOutcome::RestrictedInJurisdiction as i32,
                    ground: DecisionGround::IllegalContent as i32,
                    legal_ground: "Art. 9".into(),
                    explanation: "Unlawful there.".into(),
                    ..Default::default()
                })
                .collect(),
            summary: "Restricted.".into(),
            idempotency_key: String::new(),
        };
        let withdraw = WithdrawRequestRequest { request_id: submitted.id.clone(), reason: "resolved".into() };
        let (mut i2, mut r2) = (intake.clone(), review.clone());
        let (w, d) = if round % 2 == 0 {
            tokio::join!(i2.withdraw_request(withdraw), r2.submit_decision(decide))
        } else {
            let (d, w) = tokio::join!(r2.submit_decision(decide), i2.withdraw_request(withdraw));
            (w, d)
        };
        match (&w, &d) {
            (Ok(reply), Err(e)) => {
                assert_eq!(e.code(), tonic::Code::FailedPrecondition);
                assert_eq!(reply.get_ref().request.as_ref().unwrap().status, RequestStatus::Withdrawn as i32);
                withdrawn += 1;
            }
            (Err(e), Ok(_)) => {
                assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
                assert!(
                    e.message().contains("RESTRICTED_IN_JURISDICTION"),
                    "the refusal names the decision: {}",
                    e.message()
                );
                decided += 1;
            }
            _ => panic!("round {round}: both or neither won: {w:?} / {d:?}"),
        }
        // The agency's view settles on the winner and stays there.
        let expect = if w.is_ok() { RequestStatus::Withdrawn } else { RequestStatus::Decided };
        let view = demo.wait_status(&submitted.id, expect).await.unwrap();
        if expect == RequestStatus::Withdrawn {
            assert!(view.items.iter().all(|i| i.outcome == ItemOutcome::Pending as i32), "withdrawn, nothing acted on");
        }
        let kinds: Vec<i32> = demo.notifications(&submitted.id).await.unwrap().iter().map(|n| n.kind).collect();
        assert!(
            !(kinds.contains(&(NotificationKind::Withdrawn as i32))
                && kinds.contains(&(NotificationKind::Decided as i32))),
            "round {round}: told both WITHDRAWN and DECIDED: {kinds:?}"
        );
    }
    assert_eq!(withdrawn + decided, 8);
    suite.stop().await.unwrap();
}
