//! A government request travels all four services, as separate processes, over real gRPC,
//! with real webhooks, on PostgreSQL and on SQLite.

use std::collections::{HashMap, HashSet};

use crs_e2e::{Backend, SERVICES, Suite};
use crs_proto::common::{ItemOutcome, RequestStatus};
use crs_proto::notification::{Audience, DeliveryState, NotificationKind};
use crsctl::demo::{Demo, delivered};
use crsctl::receiver::{Received, Receiver};

/// The receiver verified it with the Standard Webhooks reference library, and its id is the
/// delivery's.
fn assert_signed(r: &Received) {
    assert_eq!(r.verified, Ok(()), "{} verifies: {:?}", r.endpoint, r.body);
    assert!(!r.delivery_id.is_empty());
}

/// The path of one request: submitted, triaged under the right SLA policy, claimed, decided per
/// item, and announced to the agency, the content owner and enforcement, each exactly once.
async fn walk_a_request(backend: Backend) {
    let suite = Suite::start(backend).await.expect("suite starts");
    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver.clone());
    demo.set_up().await.unwrap();

    let key = uuid::Uuid::new_v4().to_string();
    let submitted = demo.submit(Demo::sample_request(&key)).await.unwrap();
    assert_eq!(submitted.status, RequestStatus::Received as i32);
    let keys: Vec<_> = submitted.items.iter().map(|i| i.content_key.as_str()).collect();
    assert_eq!(keys, Demo::sample_content_keys(&key), "items are normalised and the duplicate collapsed");
    // A retry with the same key and body is answered with the original request.
    let again = demo.submit(Demo::sample_request(&key)).await.unwrap();
    assert_eq!(again.id, submitted.id);

    let triaged = demo.wait_status(&submitted.id, RequestStatus::Triaged).await.unwrap();
    let deadline = triaged.deadline.expect("triage set a deadline");
    assert_eq!(deadline.policy_id, "kz-online-platforms");
    assert_eq!(deadline.budget.unwrap().seconds, 24 * 3600);

    let case = demo.claim(&submitted.id).await.unwrap();
    assert_eq!(case.status, RequestStatus::InReview as i32);
    demo.wait_status(&submitted.id, RequestStatus::InReview).await.unwrap();
    // A global removal on a government order, on a speech case: four eyes before it takes effect.
    let pending = demo.decide(&case.id).await.unwrap();
    assert_eq!(pending.status, RequestStatus::AwaitingApproval as i32, "{pending:?}");
    assert!(!pending.approval_reason.is_empty());
    let approved = demo.approve(&case.id).await.unwrap();
    assert_eq!(approved.status, RequestStatus::Decided as i32);
    assert_eq!(approved.decided_by, "reviewer:ana");
    assert_eq!(approved.approved_by, "reviewer:sam");
    // The reviewers' list shows the case with its decisions.
    let mut review = crs_proto::review::legal_review_service_client::LegalReviewServiceClient::new(
        crsctl::connect(&suite.endpoints.legal_review, demo.reviewer().unwrap()).await.unwrap(),
    );
    let listed = review
        .list_cases(crs_proto::review::ListCasesRequest { status: RequestStatus::Decided as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let listed_case = listed.cases.iter().find(|c| c.id == case.id).expect("the decided case is listed");
    assert_eq!(listed_case.decisions.len(), 3, "with one decision per item");

    let view = demo.wait_status(&submitted.id, RequestStatus::Decided).await.unwrap();
    let outcomes: Vec<_> = view.items.iter().map(|i| i.outcome).collect();
    assert_eq!(
        outcomes,
        [
            ItemOutcome::RestrictedInJurisdiction as i32,
            ItemOutcome::NoAction as i32,
            ItemOutcome::RemovedGlobally as i32
        ]
    );

    let notes =
        demo.wait_delivered(&submitted.id, &[NotificationKind::Acknowledged, NotificationKind::Decided]).await.unwrap();
    assert_exactly_once(&notes, &receiver.received());
    suite.stop().await.unwrap();
}

/// One ACKNOWLEDGED (to the agency) and one DECIDED (to agency, content owner and enforcement)
/// notification, every delivery delivered, and the receivers got each delivery's webhook.
fn assert_exactly_once(notes: &[crs_proto::notification::Notification], received: &[Received]) {
    let kinds: Vec<_> = notes.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        [NotificationKind::Acknowledged as i32, NotificationKind::Decided as i32],
        "one notification per event"
    );
    let audiences =
        |n: &crs_proto::notification::Notification| n.deliveries.iter().map(|d| d.audience).collect::<Vec<_>>();
    assert_eq!(audiences(&notes[0]), [Audience::Agency as i32]);
    assert_eq!(
        audiences(&notes[1]),
        [Audience::Agency as i32, Audience::ContentOwner as i32, Audience::Enforcement as i32]
    );
    for n in notes {
        assert!(delivered(n), "{n:?}");
        assert!(n.deliveries.iter().all(|d| d.state == DeliveryState::Delivered as i32 && d.delivered_at.is_some()));
    }
    let expected: HashSet<&str> = notes.iter().flat_map(|n| n.deliveries.iter().map(|d| d.id.as_str())).collect();
    let got: HashSet<&str> = received.iter().map(|r| r.delivery_id.as_str()).collect();
    assert_eq!(got, expected, "every recorded delivery reached its endpoint, and nothing else did");
    // Per (kind, endpoint) there is one delivery id: a redelivered hand-off never makes a second.
    let mut per_target: HashMap<(String, String), HashSet<&str>> = HashMap::new();
    for r in received {
        assert_signed(r);
        per_target
            .entry((r.body["type"].as_str().unwrap_or_default().to_owned(), r.endpoint.clone()))
            .or_default()
            .insert(r.delivery_id.as_str());
    }
    assert_eq!(per_target.len(), 4, "{per_target:?}");
    assert!(per_target.values().all(|ids| ids.len() == 1), "{per_target:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_travels_all_four_services_on_postgres() {
    walk_a_request(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_travels_all_four_services_on_sqlite() {
    walk_a_request(Backend::Sqlite).await;
}

/// Services that are down delay work but lose none, and restarts repeat nothing. Each of the four
/// is killed (SIGKILL) mid-flow: triage is down when the request arrives, intake dies with the
/// hand-off to triage still in its outbox, legal review dies right after the decision, and
/// notification dies while deliveries are being retried. Every notification is still recorded
/// once and delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_services_lose_nothing_and_deliver_each_notification_once() {
    let mut suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver.clone());
    demo.set_up().await.unwrap();

    suite.kill("triage");
    let submitted = demo.submit(Demo::sample_request(&uuid::Uuid::new_v4().to_string())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(demo.get(&submitted.id).await.unwrap().status, RequestStatus::Received as i32, "triage is down");
    suite.kill("intake");
    suite.restart("intake").await.unwrap();
    suite.restart("triage").await.unwrap();
    demo.wait_status(&submitted.id, RequestStatus::Triaged).await.unwrap();

    let case = demo.claim(&submitted.id).await.unwrap();
    // The agency's endpoint fails for a while, so deliveries are mid-retry when notification dies.
    receiver.set_failing(true);
    demo.decide_and_approve(&case.id).await.unwrap();
    suite.kill("legal-review");
    suite.restart("legal-review").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    suite.kill("notification");
    receiver.set_failing(false);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    suite.restart("notification").await.unwrap();

    demo.wait_status(&submitted.id, RequestStatus::Decided).await.unwrap();
    let notes =
        demo.wait_delivered(&submitted.id, &[NotificationKind::Acknowledged, NotificationKind::Decided]).await.unwrap();
    assert_exactly_once(&notes, &receiver.received());
    suite.stop().await.unwrap();
}

/// `grpcurl list` works on every service: reflection lists its API, health and reflection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_lists_its_api_health_and_reflection() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let mut suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    let apis: HashMap<&str, &[&str]> = HashMap::from([
        ("intake", &["crs.intake.v1.IntakeService", "crs.intake.v1.AgencyAdminService"][..]),
        ("triage", &["crs.triage.v1.TriageService"][..]),
        ("legal-review", &["crs.review.v1.LegalReviewService"][..]),
        ("notification", &["crs.notification.v1.NotificationService"][..]),
    ]);
    for svc in SERVICES {
        let channel =
            tonic::transport::Endpoint::from_shared(suite.url(svc).to_owned()).unwrap().connect().await.unwrap();
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
        let reply = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else { panic!("{reply:?}") };
        let names: HashSet<String> = list.service.into_iter().map(|s| s.name).collect();
        for expected in apis[svc].iter().chain(&["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]) {
            assert!(names.contains(*expected), "{svc} does not list {expected}: {names:?}");
        }
        for (other, their_apis) in &apis {
            if *other != svc {
                assert!(their_apis.iter().all(|api| !names.contains(*api)), "{svc} lists {other}'s API: {names:?}");
            }
        }
    }
    // SIGTERM drains and exits cleanly.
    let status = suite.terminate("triage").unwrap();
    assert!(status.success(), "triage exited with {status}");
    suite.stop().await.unwrap();
}

/// Health stays NOT_SERVING while Redis cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_until_redis_answers() {
    let dead_redis = "redis://127.0.0.1:1";
    let result = Suite::start_with_redis(Backend::Sqlite, dead_redis, std::time::Duration::from_secs(3)).await;
    let err = result.err().expect("no service may report SERVING without Redis");
    assert!(err.to_string().contains("did not become SERVING"), "{err}");
}

/// A reviewer's question reaches the agency, the agency's answer resumes the case, and the case
/// is decided: the agency sees each step and is told of the question and the decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_answers_a_question_and_the_case_resumes() {
    use crs_proto::intake::ProvideInformationRequest;
    use crs_proto::intake::intake_service_client::IntakeServiceClient;
    use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
    use crs_proto::review::{GetCaseRequest, RequestInformationRequest};

    let suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver.clone());
    demo.set_up().await.unwrap();
    let submitted = demo.submit(Demo::sample_request(&uuid::Uuid::new_v4().to_string())).await.unwrap();
    demo.wait_status(&submitted.id, RequestStatus::Triaged).await.unwrap();
    demo.claim(&submitted.id).await.unwrap();

    let mut review = LegalReviewServiceClient::new(
        crsctl::connect(&suite.endpoints.legal_review, demo.reviewer().unwrap()).await.unwrap(),
    );
    let question = "Which court ruling declared the assembly unlawful?";
    let asked = review
        .request_information(RequestInformationRequest {
            case_id: submitted.id.clone(),
            question: question.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(asked.status, RequestStatus::AwaitingInformation as i32);
    let waiting = demo.wait_status(&submitted.id, RequestStatus::AwaitingInformation).await.unwrap();
    assert_eq!(waiting.pending_question, question, "the agency sees what it is asked");

    let mut intake =
        IntakeServiceClient::new(crsctl::connect(&suite.endpoints.intake, demo.agency().unwrap()).await.unwrap());
    let answer = ProvideInformationRequest {
        request_id: submitted.id.clone(),
        answer: "Ruling 2-118/2026 of the Astana city court.".into(),
        idempotency_key: "answer-1".into(),
        ..Default::default()
    };
    let answered = intake.provide_information(answer.clone()).await.unwrap().into_inner().request.unwrap();
    assert_eq!(answered.status, RequestStatus::InReview as i32);
    assert!(answered.pending_question.is_empty());
    // A retry of the same answer is answered the same way, not refused.
    intake.provide_information(answer).await.expect("an answer retried is accepted");

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let case = review.get_case(GetCaseRequest { case_id: submitted.id.clone() }).await.unwrap().into_inner();
        if case.status == RequestStatus::InReview as i32 {
            assert!(case.pending_question.is_empty());
            // The reviewer sees why the case is where it is: each part of its priority, the
            // route that chose its queue and the human-rights rule that flagged it.
            let assessment = case.assessment.expect("the case carries triage's assessment");
            let sum: i32 = assessment.priority_components.iter().map(|c| c.points).sum();
            assert_eq!(assessment.priority as i32, sum.min(100), "{:?}", assessment.priority_components);
            let names: Vec<&str> = assessment.priority_components.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["deadline", "binding_instrument", "category", "items", "agency_history"]);
            assert_eq!((assessment.queue.as_str(), assessment.route_rule.as_str()), ("standard", "default"));
            assert_eq!(assessment.human_rights_rules, ["speech-categories"]);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the case did not resume: {case:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    demo.decide_and_approve(&submitted.id).await.unwrap();
    demo.wait_status(&submitted.id, RequestStatus::Decided).await.unwrap();
    let notes = demo
        .wait_delivered(
            &submitted.id,
            &[NotificationKind::Acknowledged, NotificationKind::InformationRequested, NotificationKind::Decided],
        )
        .await
        .unwrap();
    assert_eq!(notes.len(), 3);
    let asked_hook =
        receiver.received().into_iter().find(|r| r.body["type"] == "request.information_requested").unwrap();
    assert_eq!(asked_hook.endpoint, "agency");
    assert_eq!(asked_hook.body["data"]["question"], question);
    assert_signed(&asked_hook);
    suite.stop().await.unwrap();
}

/// A withdrawn request closes its case: reviewers can no longer act on it, and the agency is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_request_closes_its_case() {
    use crs_proto::intake::WithdrawRequestRequest;
    use crs_proto::intake::intake_service_client::IntakeServiceClient;
    use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
    use crs_proto::review::{ClaimCaseRequest, GetCaseRequest};

    let suite = Suite::start(Backend::Postgres).await.expect("suite starts");
    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver.clone());
    demo.set_up().await.unwrap();
    let submitted = demo.submit(Demo::sample_request(&uuid::Uuid::new_v4().to_string())).await.unwrap();
    demo.wait_status(&submitted.id, RequestStatus::Triaged).await.unwrap();

    let mut intake =
        IntakeServiceClient::new(crsctl::connect(&suite.endpoints.intake, demo.agency().unwrap()).await.unwrap());
    intake
        .withdraw_request(WithdrawRequestRequest {
            request_id: submitted.id.clone(),
            reason: "resolved locally".into(),
        })
        .await
        .unwrap();
    let mut review = LegalReviewServiceClient::new(
        crsctl::connect(&suite.endpoints.legal_review, demo.reviewer().unwrap()).await.unwrap(),
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let case = review.get_case(GetCaseRequest { case_id: submitted.id.clone() }).await.map(|c| c.into_inner());
        if matches!(&case, Ok(c) if c.status == RequestStatus::Withdrawn as i32) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the case was not withdrawn: {case:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let claim = review.claim_case(ClaimCaseRequest { case_id: submitted.id.clone(), lease: None }).await.unwrap_err();
    assert_eq!(claim.code(), tonic::Code::FailedPrecondition);
    demo.wait_delivered(&submitted.id, &[NotificationKind::Acknowledged, NotificationKind::Withdrawn]).await.unwrap();
    suite.stop().await.unwrap();
}

/// A token revoked at intake stops working at the other services within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_stops_working_in_every_service() {
    use crs_platform::auth::{Principal, Role};
    use crs_proto::intake::agency_admin_service_client::AgencyAdminServiceClient;
    use crs_proto::intake::{IssueTokenRequest, RevokeTokenRequest};
    use crs_proto::review::ListCasesRequest;
    use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
    use crs_proto::triage::ListSlaPoliciesRequest;
    use crs_proto::triage::triage_service_client::TriageServiceClient;

    let suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    let admin = crsctl::Bearer::for_principal(
        &suite.issuer,
        &Principal::Reviewer { id: "root".into(), roles: vec![Role::Admin] },
    )
    .unwrap();
    let mut admin = AgencyAdminServiceClient::new(crsctl::connect(&suite.endpoints.intake, admin).await.unwrap());
    let issued = admin
        .issue_token(IssueTokenRequest {
            subject: "reviewer:kim".into(),
            roles: vec!["reviewer".into()],
            ttl_seconds: 600,
        })
        .await
        .unwrap()
        .into_inner();
    let kim = crsctl::Bearer::new(&issued.token).unwrap();
    let mut review =
        LegalReviewServiceClient::new(crsctl::connect(&suite.endpoints.legal_review, kim.clone()).await.unwrap());
    let mut triage = TriageServiceClient::new(crsctl::connect(&suite.endpoints.triage, kim).await.unwrap());
    review.list_cases(ListCasesRequest::default()).await.expect("works before revocation");
    triage.list_sla_policies(ListSlaPoliciesRequest {}).await.expect("works before revocation");

    admin.revoke_token(RevokeTokenRequest { token_id: issued.token_id, ..Default::default() }).await.unwrap();
    let start = tokio::time::Instant::now();
    loop {
        let a = review.list_cases(ListCasesRequest::default()).await.err().map(|s| s.code());
        let b = triage.list_sla_policies(ListSlaPoliciesRequest {}).await.err().map(|s| s.code());
        if a == Some(tonic::Code::Unauthenticated) && b == Some(tonic::Code::Unauthenticated) {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "still accepted after 5 s: {a:?} {b:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    suite.stop().await.unwrap();
}

/// A request left undecided: on-call is warned at 50, 75 and 90 % of its SLA budget, and at the
/// deadline the case is escalated to senior reviewers and the agency's view says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecided_request_warns_then_escalates_at_its_deadline() {
    use crs_platform::auth::{Principal, Role};
    use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
    use crs_proto::review::{ClaimCaseRequest, GetCaseRequest};

    // A three-second deadline for Kazakhstan, so the whole clock runs within the test.
    let policies = std::env::temp_dir().join(format!("crs-e2e-policies-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &policies,
        "[[policy]]\nid = \"kz-test\"\nname = \"test\"\nlegal_reference = \"test\"\nbudget_secs = 3\n\
         pauses_while_awaiting_information = true\nwarning_percents = [50, 75, 90]\n[policy.match]\njurisdictions = [\"KZ\"]\n\n\
         [[policy]]\nid = \"default\"\nname = \"default\"\nlegal_reference = \"x\"\nbudget_secs = 259200\n\
         pauses_while_awaiting_information = true\nwarning_percents = [50, 75, 90]\n",
    )
    .unwrap();
    let suite =
        Suite::start_with(Backend::Sqlite, &[("triage", "CRS_POLICIES__SLA_FILE", policies.display().to_string())])
            .await
            .expect("suite starts");
    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver.clone());
    demo.set_up().await.unwrap();
    demo.subscribe(Audience::OnCall, "on-call").await.unwrap();

    let submitted = demo.submit(Demo::sample_request(&uuid::Uuid::new_v4().to_string())).await.unwrap();
    let escalated = demo.wait_status(&submitted.id, RequestStatus::Escalated).await.unwrap();
    assert_eq!(escalated.deadline.unwrap().policy_id, "kz-test");
    demo.wait_delivered(&submitted.id, &[NotificationKind::SlaWarning, NotificationKind::SlaBreach]).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut on_call: Vec<u64>;
    loop {
        on_call = receiver
            .received()
            .iter()
            .filter(|r| r.endpoint == "on-call")
            .filter_map(|r| r.body["data"]["threshold_percent"].as_u64())
            .collect();
        on_call.sort_unstable();
        if on_call.len() >= 4 || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(on_call, vec![50, 75, 90, 100], "on-call told once at each threshold");
    // Read once every threshold's webhook came: the hand-offs travel independently, so the
    // breach may be recorded before the last warning.
    let notes = demo.notifications(&submitted.id).await.unwrap();
    assert_eq!(notes.iter().filter(|n| n.kind == NotificationKind::SlaWarning as i32).count(), 3);

    // The escalated case waits for a senior reviewer.
    let reviewer = demo.reviewer().unwrap();
    let mut review =
        LegalReviewServiceClient::new(crsctl::connect(&suite.endpoints.legal_review, reviewer).await.unwrap());
    let case = review.get_case(GetCaseRequest { case_id: submitted.id.clone() }).await.unwrap().into_inner();
    assert_eq!(case.status, RequestStatus::Escalated as i32);
    let refused = review.claim_case(ClaimCaseRequest { case_id: submitted.id.clone(), lease: None }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let senior = crsctl::Bearer::for_principal(
        &suite.issuer,
        &Principal::Reviewer { id: "sam".into(), roles: vec![Role::SeniorReviewer] },
    )
    .unwrap();
    let mut senior =
        LegalReviewServiceClient::new(crsctl::connect(&suite.endpoints.legal_review, senior).await.unwrap());
    senior
        .claim_case(ClaimCaseRequest { case_id: submitted.id.clone(), lease: None })
        .await
        .expect("a senior reviewer takes it");
    suite.stop().await.unwrap();
    let _ = std::fs::remove_file(policies);
}

/// A service that refuses its configuration stops the start with its own words, not a wait for a
/// health check that will never answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_refusing_its_configuration_fails_the_start_with_its_reason() {
    let started = Suite::options(Backend::Sqlite)
        .set("triage", "CRS_POLICIES__SLA_FILE", "/nonexistent/sla-policies.toml")
        .start()
        .await;
    let err = format!("{:#}", started.err().expect("triage cannot start"));
    assert!(err.contains("crs-triage exited at start"), "{err}");
    assert!(err.contains("policies.sla_file") && err.contains("/nonexistent/sla-policies.toml"), "{err}");
}

/// The demo run again on the same deployment (`make run` twice on the same data) walks its
/// request to the end: its receiver gets fresh secrets for the subscriptions an earlier run left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_demo_on_the_same_deployment_is_told_everything() {
    let suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    for run in 1..=2 {
        let receiver = Receiver::start().await.unwrap();
        let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver.clone());
        demo.set_up().await.unwrap();
        let submitted = demo.submit(Demo::sample_request(&uuid::Uuid::new_v4().to_string())).await.unwrap();
        demo.claim(&submitted.id).await.unwrap();
        demo.decide_and_approve(&submitted.id).await.unwrap();
        let notes = demo
            .wait_delivered(&submitted.id, &[NotificationKind::Acknowledged, NotificationKind::Decided])
            .await
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
        assert!(notes.iter().all(delivered), "run {run}: {notes:?}");
        assert!(receiver.received().iter().all(|r| r.verified.is_ok()), "run {run}: every webhook verifies");
    }
    suite.stop().await.unwrap();
}
