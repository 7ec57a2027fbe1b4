//! The Subscribe stream: an internal consumer reads an audience's events in order, resumes from
//! its last cursor with no gap and no repeat, also while events are being recorded concurrently.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use crs_proto::notification::*;
use crs_testkit::Backend;
use support::*;
use tokio_stream::StreamExt as _;

const PATIENCE: Duration = Duration::from_secs(30);

async fn stream_subscription(running: &crs_testkit::Running, audience: Audience) {
    admin(running)
        .await
        .put_subscription(PutSubscriptionRequest {
            audience: audience as i32,
            channel: Channel::Stream as i32,
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn open(running: &crs_testkit::Running, cursor: &str, from_oldest: bool) -> tonic::Streaming<NotificationEvent> {
    let mut consumer = as_principal(
        running,
        &crs_platform::auth::Principal::Reviewer {
            id: "enforcement-bridge".into(),
            roles: vec![crs_platform::auth::Role::Consumer],
        },
    )
    .await;
    consumer
        .subscribe(SubscribeRequest { audience: Audience::Enforcement as i32, cursor: cursor.into(), from_oldest })
        .await
        .unwrap()
        .into_inner()
}

async fn next(stream: &mut tonic::Streaming<NotificationEvent>) -> NotificationEvent {
    tokio::time::timeout(PATIENCE, stream.next()).await.expect("an event in time").expect("the stream goes on").unwrap()
}

async fn resumes_without_gaps_or_repeats(backend: Backend) {
    let env = env(backend).await;
    let running = start(&env).await;
    stream_subscription(&running, Audience::Enforcement).await;
    let mut notify = internal(&running, "legal-review").await;
    for i in 0..5 {
        notify.notify(decided(&format!("st-{i}"), "agency-1")).await.unwrap();
    }
    let mut stream = open(&running, "", true).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next(&mut stream).await);
    }
    drop(stream);
    // More events while the consumer is away, then it resumes from the last cursor it got.
    for i in 5..8 {
        notify.notify(decided(&format!("st-{i}"), "agency-1")).await.unwrap();
    }
    let mut stream = open(&running, &seen.last().unwrap().cursor, false).await;
    for _ in 3..8 {
        seen.push(next(&mut stream).await);
    }
    let requests: Vec<String> = seen.iter().map(|e| e.request_id.clone()).collect();
    let expected: Vec<String> = (0..8).map(|i| format!("st-{i}")).collect();
    assert_eq!(requests, expected, "every event once, in order");
    let first: serde_json::Value = serde_json::from_str(&seen[0].payload_json).unwrap();
    assert_eq!(seen[0].schema, "crs.notification.enforcement.v1");
    assert_eq!(first["data"]["actions"].as_array().unwrap().len(), 2, "the audience's own message");
    // Published deliveries are recorded as delivered.
    let on_stream = deliveries(&running).await;
    assert_eq!(on_stream.len(), 8);
    assert!(
        on_stream.iter().all(|d| d.channel == Channel::Stream as i32 && d.state == DeliveryState::Delivered as i32)
    );

    // A cursor is bound to its audience and cannot be forged.
    let mut consumer = admin(&running).await;
    for (audience, cursor) in
        [(Audience::ContentOwner, seen[0].cursor.clone()), (Audience::Enforcement, "bogus".into())]
    {
        let refused = consumer
            .subscribe(SubscribeRequest { audience: audience as i32, cursor, from_oldest: false })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains("cursor"), "{refused:?}");
    }
    // Agencies are not internal consumers.
    let agency = agency(&running, "agency-1")
        .await
        .subscribe(SubscribeRequest { audience: Audience::Agency as i32, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(agency.code(), tonic::Code::PermissionDenied);
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_resumes_from_its_cursor_without_gaps_or_repeats_on_sqlite() {
    resumes_without_gaps_or_repeats(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_resumes_from_its_cursor_without_gaps_or_repeats_on_postgres() {
    resumes_without_gaps_or_repeats(Backend::Postgres).await;
}

/// Events recorded concurrently reach a consumer reading at the same time in the order of their
/// positions, none skipped: a position is visible only after every earlier one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_events_reach_a_live_consumer_in_order_with_none_skipped() {
    let env = env(Backend::Postgres).await;
    let running = start(&env).await;
    stream_subscription(&running, Audience::Enforcement).await;
    let mut stream = open(&running, "", false).await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut notify = internal(&running, "legal-review").await;
        writers.push(tokio::spawn(async move {
            for i in 0..10 {
                notify.notify(decided(&format!("cc-{w}-{i}"), "agency-1")).await.unwrap();
            }
        }));
    }
    let mut seen = Vec::new();
    while seen.len() < 40 {
        seen.push(next(&mut stream).await);
    }
    for w in writers {
        w.await.unwrap();
    }
    let unique: HashSet<&str> = seen.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(unique.len(), 40, "none repeated");
    // Reading again from the start gives the same sequence: the live reader skipped nothing.
    let mut replay = open(&running, "", true).await;
    let mut again = Vec::new();
    while again.len() < 40 {
        again.push(next(&mut replay).await.request_id);
    }
    assert_eq!(again, seen.iter().map(|e| e.request_id.clone()).collect::<Vec<_>>());
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// A message still being published (its transaction open) holds up no other publication; the
/// consumer gets the later one only after it, so the order it reads is never broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_publication_holds_up_no_other_and_is_read_first() {
    use sea_orm::{ConnectionTrait, TransactionTrait};

    let env = env(Backend::Postgres).await;
    let running = start(&env).await;
    stream_subscription(&running, Audience::Enforcement).await;
    let mut stream = open(&running, "", false).await;
    let mut notify = internal(&running, "legal-review").await;
    notify.notify(decided("before", "agency-1")).await.unwrap();
    assert_eq!(next(&mut stream).await.request_id, "before");

    let db = env.db.connect().await.unwrap();
    let slow = db.begin().await.unwrap();
    slow.execute_unprepared(&format!(
        "INSERT INTO messages (notification_id, audience, kind, request_id, agency_id, schema, payload, \
         stream_seq, stream_txid, created_at) VALUES ('slow-1', {}, 1, 'slow', 'agency-1', 'test', '{{}}', \
         nextval('stream_positions'), pg_current_xact_id()::text::bigint, 0)",
        Audience::Enforcement as i32
    ))
    .await
    .unwrap();

    tokio::time::timeout(Duration::from_secs(10), notify.notify(decided("after", "agency-1")))
        .await
        .expect("publishing does not wait for the open publication")
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(700), stream.next()).await.is_err(),
        "the later message waits for the earlier transaction"
    );
    slow.commit().await.unwrap();
    let order = [next(&mut stream).await.request_id, next(&mut stream).await.request_id];
    assert_eq!(order, ["slow", "after"]);
    db.close().await.unwrap();
    running.stop().await;
    env.db.drop_now().await.unwrap();
}
