//! The trust boundary across the four processes: revocations that no Redis failure lifts, a
//! service that serves no one until it knows what is revoked, and requests as large as intake
//! takes carried through every hand-off while larger ones are refused up front.

use std::time::Duration;

use crs_e2e::{Backend, SERVICES, Suite};
use crs_platform::auth::{Principal, Role};
use crs_proto::admin::ListDeadLettersRequest;
use crs_proto::admin::outbox_admin_service_client::OutboxAdminServiceClient;
use crs_proto::common::{ContentItem, RequestStatus};
use crs_proto::intake::agency_admin_service_client::AgencyAdminServiceClient;
use crs_proto::intake::{IssueTokenRequest, RevokeTokenRequest};
use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
use crs_proto::review::{GetCaseRequest, ListCasesRequest};
use crs_proto::triage::ListSlaPoliciesRequest;
use crs_proto::triage::triage_service_client::TriageServiceClient;
use crs_testkit::PrivateRedis;
use crsctl::Bearer;
use crsctl::demo::Demo;
use crsctl::receiver::Receiver;
use tonic::Code;

fn admin(suite: &Suite) -> Bearer {
    Bearer::for_principal(&suite.issuer, &Principal::Reviewer { id: "root".into(), roles: vec![Role::Admin] }).unwrap()
}

/// What a reviewer holding `bearer` gets from legal review and triage right now.
async fn codes(suite: &Suite, bearer: &Bearer) -> (Code, Code) {
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    let review =
        LegalReviewServiceClient::new(crsctl::connect(&suite.endpoints.legal_review, bearer.clone()).await.unwrap())
            .list_cases(ListCasesRequest::default())
            .await
            .map(drop);
    let triage = TriageServiceClient::new(crsctl::connect(&suite.endpoints.triage, bearer.clone()).await.unwrap())
        .list_sla_policies(ListSlaPoliciesRequest {})
        .await
        .map(drop);
    (code(review), code(triage))
}

/// Asks for `within` that both services refuse `bearer` every time.
async fn refused_throughout(suite: &Suite, bearer: &Bearer, within: Duration, what: &str) {
    let until = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < until {
        let got = codes(suite, bearer).await;
        assert_eq!(got, (Code::Unauthenticated, Code::Unauthenticated), "{what}: a revoked token was accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn flush(redis: &PrivateRedis) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await.unwrap();
}

/// Revoked by id or by subject at intake, a token is refused everywhere within seconds, and
/// stays refused through a Redis FLUSHALL and through a Redis restart (intake's database is the
/// truth; the services never take an empty list as "nothing revoked"). A token issued to the
/// same subject after its revocation works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_survive_a_flushed_and_a_restarted_redis() {
    let mut redis = PrivateRedis::start();
    let suite = Suite::options(Backend::Sqlite).redis(&redis.url()).start().await.expect("suite starts");
    let admin = AgencyAdminServiceClient::new(crsctl::connect(&suite.endpoints.intake, admin(&suite)).await.unwrap());
    let issue = |subject: &'static str| {
        let mut admin = admin.clone();
        async move {
            admin
                .issue_token(IssueTokenRequest {
                    subject: subject.into(),
                    roles: vec!["reviewer".into()],
                    ttl_seconds: 600,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let by_id = issue("reviewer:kim").await;
    let by_subject = issue("reviewer:lee").await;
    let kim = Bearer::new(&by_id.token).unwrap();
    let lee = Bearer::new(&by_subject.token).unwrap();
    assert_eq!(codes(&suite, &kim).await, (Code::Ok, Code::Ok));
    assert_eq!(codes(&suite, &lee).await, (Code::Ok, Code::Ok));

    let mut revoke = admin.clone();
    revoke.revoke_token(RevokeTokenRequest { token_id: by_id.token_id, ..Default::default() }).await.unwrap();
    revoke.revoke_token(RevokeTokenRequest { subject: "reviewer:lee".into(), ..Default::default() }).await.unwrap();
    for bearer in [&kim, &lee] {
        crs_testkit::eventually("the revocation reaches triage and legal review", Duration::from_secs(5), || async {
            (codes(&suite, bearer).await == (Code::Unauthenticated, Code::Unauthenticated)).then_some(())
        })
        .await;
    }

    flush(&redis).await;
    refused_throughout(&suite, &kim, Duration::from_secs(8), "after FLUSHALL").await;
    refused_throughout(&suite, &lee, Duration::from_secs(1), "after FLUSHALL").await;

    redis.restart();
    refused_throughout(&suite, &kim, Duration::from_secs(8), "after a Redis restart").await;
    refused_throughout(&suite, &lee, Duration::from_secs(1), "after a Redis restart").await;

    // Lee's new token, issued after the revocation, is not covered by it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = Bearer::new(&issue("reviewer:lee").await.token).unwrap();
    crs_testkit::eventually("a token issued after the revocation works", Duration::from_secs(5), || async {
        (codes(&suite, &again).await == (Code::Ok, Code::Ok)).then_some(())
    })
    .await;
    suite.stop().await.unwrap();
}

/// A service that has not loaded the revocation list since it started (intake is down and Redis
/// lost the list) reports NOT_SERVING and answers people UNAVAILABLE, rather than guessing that
/// nothing is revoked; once intake publishes the list, it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_the_revocation_list_serves_no_one() {
    let redis = PrivateRedis::start();
    let mut suite = Suite::options(Backend::Sqlite).redis(&redis.url()).start().await.expect("suite starts");
    let reviewer =
        Bearer::for_principal(&suite.issuer, &Principal::Reviewer { id: "ana".into(), roles: vec![Role::Reviewer] })
            .unwrap();
    assert_eq!(codes(&suite, &reviewer).await, (Code::Ok, Code::Ok));

    suite.kill("intake");
    flush(&redis).await;
    suite.respawn("legal-review").unwrap();
    let health = || suite.health("legal-review");
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    crs_testkit::eventually("legal review answers health again", Duration::from_secs(30), || async {
        (health().await == Some(not_serving)).then_some(())
    })
    .await;
    // It stays so, and turns people away with a code they retry.
    for _ in 0..20 {
        assert_eq!(health().await, Some(not_serving));
        let code = LegalReviewServiceClient::new(
            crsctl::connect(&suite.endpoints.legal_review, reviewer.clone()).await.unwrap(),
        )
        .list_cases(ListCasesRequest::default())
        .await
        .unwrap_err()
        .code();
        assert_eq!(code, Code::Unavailable);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    suite.restart("intake").await.unwrap();
    suite.wait_serving("legal-review").await.unwrap();
    assert_eq!(codes(&suite, &reviewer).await, (Code::Ok, Code::Ok));
    suite.stop().await.unwrap();
}

/// The largest request intake takes (1,000 items with 2,000-character URLs) is stored, triaged,
/// and becomes a case with every item: each hand-off fits the message bound, nothing is dead-
/// lettered. A request larger than `limits.max_request_bytes` is refused at the door, naming
/// `items`, with nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_request_is_carried_through_and_a_larger_one_is_refused() {
    let suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver);
    demo.patience = Duration::from_secs(120);
    demo.set_up().await.unwrap();

    let url = |i: usize| {
        let path = format!("https://social.example/posts/{i}/");
        format!("{path}{}", "a".repeat(2000 - path.len()))
    };
    let mut largest = Demo::sample_request(&uuid::Uuid::new_v4().to_string());
    largest.items = (0..1000).map(|i| ContentItem { url: url(i), ..Default::default() }).collect();
    let accepted = demo.submit(largest.clone()).await.expect("the largest request is accepted");
    demo.wait_status(&accepted.id, RequestStatus::Triaged).await.expect("and triaged");
    let mut review = LegalReviewServiceClient::new(
        crsctl::connect(&suite.endpoints.legal_review, demo.reviewer().unwrap()).await.unwrap(),
    );
    let case = review.get_case(GetCaseRequest { case_id: accepted.id.clone() }).await.unwrap().into_inner();
    assert_eq!(case.submission.unwrap_or_default().items.len(), 1000, "the case holds every item");
    for svc in SERVICES {
        let mut admin = OutboxAdminServiceClient::new(crsctl::connect(suite.url(svc), admin(&suite)).await.unwrap());
        let dead = admin.list_dead_letters(ListDeadLettersRequest::default()).await.unwrap().into_inner();
        assert!(dead.dead_letters.is_empty(), "{svc} dead-lettered a hand-off: {:?}", dead.dead_letters);
    }

    let mut larger = largest;
    larger.idempotency_key = uuid::Uuid::new_v4().to_string();
    for item in &mut larger.items {
        item.description = "d".repeat(3000);
    }
    let refused = demo.submit(larger).await.expect_err("a request over the bound is refused");
    let status = refused.downcast_ref::<tonic::Status>().expect("a gRPC status");
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = crs_platform::error::field_violations(status);
    assert!(violations.iter().any(|(field, why)| field == "items" && why.contains("bytes")), "{violations:?}");
    suite.stop().await.unwrap();
}

/// A call that needs a peer that is down fails at once with UNAVAILABLE, which the caller retries,
/// and works once the peer is back: withdrawing a request asks legal review while the agency waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_needs_a_peer_that_is_down_is_unavailable_until_it_returns() {
    use crs_proto::intake::WithdrawRequestRequest;
    use crs_proto::intake::intake_service_client::IntakeServiceClient;

    let mut suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver);
    demo.set_up().await.unwrap();
    let submitted = demo.submit(Demo::sample_request(&uuid::Uuid::new_v4().to_string())).await.unwrap();
    demo.wait_status(&submitted.id, RequestStatus::Triaged).await.unwrap();

    suite.kill("legal-review");
    let mut intake =
        IntakeServiceClient::new(crsctl::connect(&suite.endpoints.intake, demo.agency().unwrap()).await.unwrap());
    let withdraw =
        || WithdrawRequestRequest { request_id: submitted.id.clone(), reason: "resolved by the author".into() };
    let mut call = tonic::Request::new(withdraw());
    call.set_timeout(Duration::from_secs(20));
    let refused = intake.withdraw_request(call).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(demo.get(&submitted.id).await.unwrap().status, RequestStatus::Triaged as i32, "nothing changed");

    suite.restart("legal-review").await.unwrap();
    let withdrawn = intake.withdraw_request(withdraw()).await.expect("the retry succeeds").into_inner();
    assert_eq!(withdrawn.request.unwrap().status, RequestStatus::Withdrawn as i32);
    suite.stop().await.unwrap();
}
