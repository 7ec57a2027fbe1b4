//! The agency's own view and the guarantees around it: idempotent submission under concurrency,
//! a resumable status stream, listing, withdrawal, and credentials that stop working in every
//! replica within seconds of a revocation or suspension.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use crs_proto::common::{Category, RequestStatus};
use crs_proto::intake::*;
use support::{Backend, Intake, valid_request};
use tokio_stream::StreamExt;
use tonic::Code;

async fn fifty_identical_submissions_make_one_request(backend: Backend) {
    let intake = Intake::start(backend).await;
    let agency = intake.agency().await;
    let request = valid_request();
    let mut calls = Vec::new();
    for _ in 0..50 {
        let bearer = intake.as_agency(&agency);
        let url = intake.url.clone();
        let request = request.clone();
        calls.push(tokio::spawn(async move {
            let mut client =
                intake_service_client::IntakeServiceClient::new(crsctl::connect(&url, bearer).await.unwrap());
            client.submit_request(request).await.map(|r| r.into_inner())
        }));
    }
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for call in calls {
        let reply = call.await.unwrap().expect("every retry is answered");
        ids.insert(reply.request.unwrap().id);
        fresh += usize::from(!reply.replayed);
    }
    assert_eq!(ids.len(), 1, "all fifty got the same request");
    assert_eq!(fresh, 1, "exactly one call created it");
    assert_eq!(intake.written().await[0], 1, "one request row");

    // The same key with another body is refused, clearly.
    let mut other = request.clone();
    other.reference = "something else".into();
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    let err = client.submit_request(other).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains("different request body"), "{}", err.message());
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_submissions_on_sqlite() {
    fifty_identical_submissions_make_one_request(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_submissions_on_postgres() {
    fifty_identical_submissions_make_one_request(Backend::Postgres).await;
}

async fn next_update(stream: &mut tonic::Streaming<RequestUpdate>) -> RequestUpdate {
    tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("an update in time").unwrap().unwrap()
}

async fn a_dropped_stream_resumes_without_missing_or_repeating(backend: Backend) {
    let intake = Intake::start(backend).await;
    let agency = intake.agency().await;
    let stranger = intake.agency_in("TR").await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    let mut stranger_client = intake.intake(intake.as_agency(&stranger)).await;

    let mut stream = client.watch_requests(WatchRequestsRequest { cursor: String::new() }).await.unwrap().into_inner();
    let mut submitted = Vec::new();
    for _ in 0..3 {
        submitted.push(client.submit_request(valid_request()).await.unwrap().into_inner().request.unwrap().id);
    }
    let mut r = valid_request();
    r.jurisdiction = "TR".into();
    stranger_client.submit_request(r).await.unwrap();
    let first = next_update(&mut stream).await;
    let second = next_update(&mut stream).await;
    assert_eq!([&first.request_id, &second.request_id], [&submitted[0], &submitted[1]]);
    drop(stream); // the client disconnects

    // While it is away: two more submissions and a withdrawal.
    for _ in 0..2 {
        submitted.push(client.submit_request(valid_request()).await.unwrap().into_inner().request.unwrap().id);
    }
    client
        .withdraw_request(WithdrawRequestRequest { request_id: submitted[0].clone(), reason: "resolved".into() })
        .await
        .unwrap();

    let mut resumed =
        client.watch_requests(WatchRequestsRequest { cursor: second.cursor.clone() }).await.unwrap().into_inner();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let u = next_update(&mut resumed).await;
        seen.push((u.request_id, RequestStatus::try_from(u.status).unwrap()));
    }
    assert_eq!(
        seen,
        vec![
            (submitted[2].clone(), RequestStatus::Received),
            (submitted[3].clone(), RequestStatus::Received),
            (submitted[4].clone(), RequestStatus::Received),
            (submitted[0].clone(), RequestStatus::Withdrawn),
        ],
        "exactly the missed updates, in order, none repeated, none of another agency"
    );
    // Nothing else arrives.
    assert!(tokio::time::timeout(Duration::from_millis(700), resumed.next()).await.is_err());

    let bad = client.watch_requests(WatchRequestsRequest { cursor: "999999".into() }).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_resume_on_sqlite() {
    a_dropped_stream_resumes_without_missing_or_repeating(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_resume_on_postgres() {
    a_dropped_stream_resumes_without_missing_or_repeating(Backend::Postgres).await;
}

async fn listing_pages_filters_and_withdrawal(backend: Backend) {
    let intake = Intake::start(backend).await;
    let agency = intake.agency().await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut r = valid_request();
        if i % 2 == 1 {
            r.category = Category::RiskForPublicSecurity as i32;
        }
        ids.push(client.submit_request(r).await.unwrap().into_inner().request.unwrap().id);
    }
    // Pages of two, newest first, each request once.
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_requests(ListRequestsRequest { page_size: 2, page_token: token.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert!(page.requests.len() <= 2);
        listed.extend(page.requests.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
    // A page token is good for its own list and filters only, and not once altered.
    let first =
        client.list_requests(ListRequestsRequest { page_size: 2, ..Default::default() }).await.unwrap().into_inner();
    let token = first.next_page_token;
    let mut altered = token.clone().into_bytes();
    let last = altered.len() - 3;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    for (page_token, status) in
        [(String::from_utf8(altered).unwrap(), 0), (token.clone(), RequestStatus::Received as i32)]
    {
        let err = client
            .list_requests(ListRequestsRequest { page_size: 2, page_token, status, ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("page_token"), "{}", err.message());
    }

    let security = client
        .list_requests(ListRequestsRequest { category: Category::RiskForPublicSecurity as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(security.requests.len(), 2);

    let withdrawn = client
        .withdraw_request(WithdrawRequestRequest { request_id: ids[0].clone(), reason: "no longer needed".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(withdrawn.request.unwrap().status, RequestStatus::Withdrawn as i32);
    // Withdrawing again (a retry whose first answer was lost, say) returns it as it is.
    let again = client
        .withdraw_request(WithdrawRequestRequest { request_id: ids[0].clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!((again.status, again.status_note.as_str()), (RequestStatus::Withdrawn as i32, "no longer needed"));
    let only_withdrawn = client
        .list_requests(ListRequestsRequest { status: RequestStatus::Withdrawn as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only_withdrawn.requests.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), vec![ids[0].clone()]);

    let future = prost_types::Timestamp { seconds: chrono_like_now() + 3600, nanos: 0 };
    let none = client
        .list_requests(ListRequestsRequest { received_after: Some(future), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(none.requests.is_empty());
    let bad = client.list_requests(ListRequestsRequest { page_token: "garbage".into(), ..Default::default() }).await;
    assert_eq!(bad.unwrap_err().code(), Code::InvalidArgument);
    intake.stop().await;
}

fn chrono_like_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_on_sqlite() {
    listing_pages_filters_and_withdrawal(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_on_postgres() {
    listing_pages_filters_and_withdrawal(Backend::Postgres).await;
}

/// Waits until `check` holds, for at most `within`.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

async fn revocations_reach_every_replica(backend: Backend) {
    let first = Intake::start(backend).await;
    // A second replica on its own database: it shares only Redis with the first.
    let second = Intake::start(backend).await;
    let agency = first.agency().await;
    let mut admin = first.admin_client().await;
    let issued = admin
        .issue_token(IssueTokenRequest {
            subject: "reviewer:zoe".into(),
            roles: vec!["reviewer".into()],
            ttl_seconds: 600,
        })
        .await
        .unwrap()
        .into_inner();
    let zoe = crsctl::Bearer::new(&issued.token).unwrap();
    let probe = |intake: &Intake, bearer: crsctl::Bearer| {
        let url = intake.url.clone();
        async move {
            let mut c = intake_service_client::IntakeServiceClient::new(crsctl::connect(&url, bearer).await.unwrap());
            c.get_request(GetRequestRequest { request_id: "none".into() }).await.unwrap_err().code()
        }
    };
    assert_eq!(probe(&second, zoe.clone()).await, Code::NotFound, "the token works before revocation");
    admin.revoke_token(RevokeTokenRequest { token_id: issued.token_id.clone(), ..Default::default() }).await.unwrap();
    assert_eq!(probe(&first, zoe.clone()).await, Code::Unauthenticated, "at once where it was revoked");
    eventually(Duration::from_secs(3), || {
        let p = probe(&second, zoe.clone());
        async move { p.await == Code::Unauthenticated }
    })
    .await;

    // Suspension stops the agency's tokens everywhere too.
    let agency_token = first.as_agency(&agency);
    let mut client = first.intake(agency_token.clone()).await;
    client.submit_request(valid_request()).await.unwrap();
    admin
        .suspend_agency(SuspendAgencyRequest { agency_id: agency.clone(), reason: "compromised".into() })
        .await
        .unwrap();
    let refused = client.submit_request(valid_request()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    eventually(Duration::from_secs(3), || {
        let p = probe(&second, agency_token.clone());
        async move { p.await == Code::Unauthenticated }
    })
    .await;
    let listed = admin.get_agency(GetAgencyRequest { agency_id: agency }).await.unwrap().into_inner();
    assert_eq!(listed.status, AgencyStatus::Suspended as i32);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_suspension_on_sqlite() {
    revocations_reach_every_replica(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_suspension_on_postgres() {
    revocations_reach_every_replica(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_kept_for_the_configured_retention() {
    let intake = Intake::start(Backend::Sqlite).await;
    let agency = intake.agency().await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    let request = valid_request();
    let first = client.submit_request(request.clone()).await.unwrap().into_inner().request.unwrap().id;
    let retry = client.submit_request(request.clone()).await.unwrap().into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.request.unwrap().id, first, "a retry within retention gets the original");
    // A day and more passes (retention.idempotency_secs is a day), before the job releases it.
    sea_orm::ConnectionTrait::execute_unprepared(
        &intake.db,
        "UPDATE requests SET received_at = received_at - 90000000",
    )
    .await
    .unwrap();
    let later = client.submit_request(request).await.unwrap().into_inner();
    assert!(!later.replayed, "after retention the key names a new request");
    assert_ne!(later.request.unwrap().id, first);
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agencies_are_listed_updated_and_validated() {
    let intake = Intake::start(Backend::Sqlite).await;
    let mut admin = intake.admin_client().await;
    let a = intake.agency().await;
    let _b = intake.agency_in("DE").await;
    let de = admin
        .list_agencies(ListAgenciesRequest { jurisdiction: "DE".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(de.agencies.len(), 1);
    let page =
        admin.list_agencies(ListAgenciesRequest { page_size: 1, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(page.agencies.len(), 1);
    assert!(!page.next_page_token.is_empty());
    let updated = admin
        .update_agency(UpdateAgencyRequest {
            agency_id: a.clone(),
            contact_email: "desk@agency.example".into(),
            allowed_categories: vec![Category::ScamsAndFraud as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.contact_email, "desk@agency.example");
    assert_eq!(updated.allowed_categories, vec![Category::ScamsAndFraud as i32]);
    assert!(updated.name.starts_with("Agency "), "empty fields keep their value");
    // The narrowed categories now apply to submissions.
    let mut client = intake.intake(intake.as_agency(&a)).await;
    assert_eq!(client.submit_request(valid_request()).await.unwrap_err().code(), Code::InvalidArgument);

    let bad = admin
        .create_agency(CreateAgencyRequest {
            name: String::new(),
            jurisdiction: "Germany".into(),
            callback_url: "ftp://x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    for field in ["name", "jurisdiction", "callback_url"] {
        assert!(bad.message().contains(field), "{field} named in {}", bad.message());
    }
    intake.stop().await;
}
