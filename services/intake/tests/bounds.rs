//! What one agency can hold at intake is bounded: open `WatchRequests` streams per agency, and
//! the bytes of a list page; a stream lives only while its caller may (a revoked token or a
//! suspended agency ends it).

mod support;

use std::time::Duration;

use crs_platform::paging::MAX_PAGE_BYTES;
use crs_proto::common::ContentItem;
use crs_proto::intake::*;
use support::{Backend, Intake, valid_request};
use tokio_stream::StreamExt;
use tonic::Code;

async fn watch(intake: &Intake, bearer: crsctl::Bearer) -> Result<tonic::Streaming<RequestUpdate>, tonic::Status> {
    intake.intake(bearer).await.watch_requests(WatchRequestsRequest::default()).await.map(|r| r.into_inner())
}

/// How a stream ends: the status it ends with.
async fn end_of(mut stream: tonic::Streaming<RequestUpdate>) -> tonic::Status {
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return status,
                None => return tonic::Status::ok("ended without a status"),
            }
        }
    });
    ended.await.expect("the stream ends within 15 s")
}

async fn streams_are_bounded_per_agency(backend: Backend) {
    let intake = Intake::start_with(backend, &[("CRS_LIMITS__MAX_WATCH_STREAMS_PER_AGENCY", "2")]).await;
    let (one, other) = (intake.agency().await, intake.agency().await);
    let first = watch(&intake, intake.as_agency(&one)).await.unwrap();
    let _second = watch(&intake, intake.as_agency(&one)).await.unwrap();
    let third = watch(&intake, intake.as_agency(&one)).await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");
    // Another agency's streams are its own.
    let _theirs = watch(&intake, intake.as_agency(&other)).await.unwrap();
    // A stream that ends gives its slot back.
    drop(first);
    crs_testkit::eventually("the closed stream's slot is free again", Duration::from_secs(10), || async {
        watch(&intake, intake.as_agency(&one)).await.ok()
    })
    .await;
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_are_bounded_per_agency_on_sqlite() {
    streams_are_bounded_per_agency(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_are_bounded_per_agency_on_postgres() {
    streams_are_bounded_per_agency(Backend::Postgres).await;
}

async fn streams_end_with_their_callers_rights(backend: Backend) {
    let intake = Intake::start(backend).await;
    let mut admin = intake.admin_client().await;

    // A token revoked while its stream is open ends the stream.
    let agency = intake.agency().await;
    let issued = admin
        .issue_token(IssueTokenRequest { subject: format!("agency:{agency}"), roles: vec![], ttl_seconds: 600 })
        .await
        .unwrap()
        .into_inner();
    let stream = watch(&intake, crsctl::Bearer::new(&issued.token).unwrap()).await.unwrap();
    admin.revoke_token(RevokeTokenRequest { token_id: issued.token_id, ..Default::default() }).await.unwrap();
    assert_eq!(end_of(stream).await.code(), Code::Unauthenticated);

    // Suspending an agency ends every stream it holds.
    let suspended = intake.agency().await;
    let streams = [
        watch(&intake, intake.as_agency(&suspended)).await.unwrap(),
        watch(&intake, intake.as_agency(&suspended)).await.unwrap(),
    ];
    admin
        .suspend_agency(SuspendAgencyRequest { agency_id: suspended.clone(), reason: "compromised account".into() })
        .await
        .unwrap();
    for stream in streams {
        let code = end_of(stream).await.code();
        assert!(matches!(code, Code::Unauthenticated | Code::PermissionDenied), "{code:?}");
    }
    // Other agencies keep watching.
    let bystander = intake.agency().await;
    assert!(watch(&intake, intake.as_agency(&bystander)).await.is_ok());
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_with_their_callers_rights_on_sqlite() {
    streams_end_with_their_callers_rights(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_with_their_callers_rights_on_postgres() {
    streams_end_with_their_callers_rights(Backend::Postgres).await;
}

async fn pages_are_bounded_in_bytes(backend: Backend) {
    let intake = Intake::start_with(backend, &[("CRS_LIMITS__MAX_ITEMS", "1000")]).await;
    let agency = intake.agency().await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    // Three requests of about 1.9 MB each: two fit a page, three do not.
    let mut ids = Vec::new();
    for r in 0..3 {
        let mut request = valid_request();
        request.items = (0..1000)
            .map(|i| ContentItem {
                url: format!("https://social.example/{r}/{i}/{}", "x".repeat(1900)),
                ..Default::default()
            })
            .collect();
        ids.push(client.submit_request(request).await.unwrap().into_inner().request.unwrap().id);
    }

    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_requests(ListRequestsRequest { page_size: 500, page_token, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(
            prost::Message::encoded_len(&page) <= MAX_PAGE_BYTES + 64 * 1024,
            "a page of {} bytes",
            prost::Message::encoded_len(&page)
        );
        assert!(!page.requests.is_empty(), "every page holds at least one request");
        seen.extend(page.requests.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert!(pages >= 2, "the byte bound cut the first page short");
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids, "every request is listed exactly once across the pages");
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_are_bounded_in_bytes_on_sqlite() {
    pages_are_bounded_in_bytes(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_are_bounded_in_bytes_on_postgres() {
    pages_are_bounded_in_bytes(Backend::Postgres).await;
}
