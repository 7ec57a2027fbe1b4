//! Subscriptions: changes are versioned, so a stale hand-off never overwrites a newer one and a
//! repeated one changes nothing; bad input is refused field by field with nothing written; only
//! admins (and intake, for agencies) set them.

mod support;

use crs_proto::notification::*;
use crs_testkit::Backend;
use support::*;

fn handoff(version: u64, endpoint: &str, event_id: &str) -> PutSubscriptionRequest {
    PutSubscriptionRequest {
        audience: Audience::Agency as i32,
        agency_id: "agency-1".into(),
        channel: Channel::Email as i32,
        endpoint: endpoint.into(),
        language: "ru".into(),
        source_version: version,
        event_id: event_id.into(),
        ..Default::default()
    }
}

async fn stale_handoffs_never_overwrite_newer_ones(backend: Backend) {
    let sink = crs_testkit::SmtpSink::start().await.unwrap();
    let env = env(backend).await.set("CRS_EMAIL__SMTP_URL", sink.url());
    let running = start(&env).await;
    let mut intake = internal(&running, "intake").await;
    let v2 = intake.put_agency_subscription(handoff(2, "new@ministry.kz", "e-2")).await.unwrap().into_inner();
    // Version 1 arrives late (the relay retried it after a lost reply): no effect.
    let late = intake.put_agency_subscription(handoff(1, "old@ministry.kz", "e-1")).await.unwrap().into_inner();
    assert_eq!(late.endpoint, "new@ministry.kz");
    assert_eq!(late.version, v2.version);
    // The same event again: no effect either, even though its version would be newer now.
    let mut repeated = handoff(3, "other@ministry.kz", "e-2");
    repeated.language = "kk".into();
    let again = intake.put_agency_subscription(repeated).await.unwrap().into_inner();
    assert_eq!((again.endpoint.as_str(), again.language.as_str()), ("new@ministry.kz", "ru"));
    let v3 = intake.put_agency_subscription(handoff(3, "newest@ministry.kz", "e-3")).await.unwrap().into_inner();
    assert_eq!(v3.endpoint, "newest@ministry.kz");
    assert_eq!(v3.version, v2.version + 1);
    let listed = admin(&running)
        .await
        .list_subscriptions(ListSubscriptionsRequest { agency_id: "agency-1".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .subscriptions;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].endpoint, "newest@ministry.kz");
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_handoffs_never_overwrite_newer_ones_on_sqlite() {
    stale_handoffs_never_overwrite_newer_ones(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_handoffs_never_overwrite_newer_ones_on_postgres() {
    stale_handoffs_never_overwrite_newer_ones(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused_field_by_field_and_nothing_is_written() {
    let env = env(Backend::Sqlite).await;
    let running = start(&env).await;
    let mut admin = admin(&running).await;
    for (request, field) in [
        (PutSubscriptionRequest { endpoint: "http://127.0.0.1:9/".into(), ..Default::default() }, "audience"),
        (
            PutSubscriptionRequest {
                audience: Audience::Agency as i32,
                endpoint: "http://127.0.0.1:9/".into(),
                ..Default::default()
            },
            "agency_id",
        ),
        (
            PutSubscriptionRequest {
                audience: Audience::Enforcement as i32,
                agency_id: "agency-1".into(),
                endpoint: "http://127.0.0.1:9/".into(),
                ..Default::default()
            },
            "agency_id",
        ),
        (
            PutSubscriptionRequest {
                audience: Audience::Enforcement as i32,
                endpoint: "ftp://x/".into(),
                ..Default::default()
            },
            "endpoint",
        ),
        (
            PutSubscriptionRequest {
                audience: Audience::Enforcement as i32,
                endpoint: "http://127.0.0.1:9/".into(),
                secret: "s".into(),
                ..Default::default()
            },
            "secret",
        ),
        (
            PutSubscriptionRequest {
                audience: Audience::Enforcement as i32,
                endpoint: "http://127.0.0.1:9/".into(),
                secret: "whsec_c2hvcnQ=".into(),
                ..Default::default()
            },
            "secret",
        ),
        (
            PutSubscriptionRequest {
                audience: Audience::Enforcement as i32,
                endpoint: "http://127.0.0.1:9/".into(),
                channel: 42,
                ..Default::default()
            },
            "channel",
        ),
        (
            PutSubscriptionRequest {
                audience: Audience::Enforcement as i32,
                channel: Channel::Stream as i32,
                endpoint: "http://127.0.0.1:9/".into(),
                ..Default::default()
            },
            "endpoint",
        ),
        (
            PutSubscriptionRequest {
                audience: Audience::Enforcement as i32,
                endpoint: "http://127.0.0.1:9/".into(),
                sealed_secret: b"sealed:v1:x".to_vec(),
                ..Default::default()
            },
            "sealed_secret",
        ),
        (
            PutSubscriptionRequest {
                audience: Audience::Enforcement as i32,
                endpoint: "http://127.0.0.1:9/".into(),
                source_version: 3,
                ..Default::default()
            },
            "source_version",
        ),
        (
            PutSubscriptionRequest {
                audience: Audience::Enforcement as i32,
                endpoint: "http://127.0.0.1:9/".into(),
                settings_changed_at: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
                ..Default::default()
            },
            "settings_changed_at",
        ),
    ] {
        let refused = admin.put_subscription(request.clone()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{request:?}");
        assert!(refused.message().contains(field), "{field}: {}", refused.message());
    }
    // A given secret of the right form is accepted and never echoed.
    let given = crs_platform::secrets::WebhookSecret::generate();
    let accepted = admin
        .put_subscription(PutSubscriptionRequest {
            audience: Audience::Enforcement as i32,
            endpoint: "http://127.0.0.1:9/".into(),
            secret: given.encoded().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(accepted.secret.is_empty() && accepted.has_secret);
    let listed = admin.list_subscriptions(ListSubscriptionsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.subscriptions.len(), 1, "nothing else was written");
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_set_subscriptions_and_only_intake_hands_agencies_over() {
    let env = env(Backend::Sqlite).await;
    let running = start(&env).await;
    let request = PutSubscriptionRequest {
        audience: Audience::Enforcement as i32,
        endpoint: "http://127.0.0.1:9/".into(),
        ..Default::default()
    };
    for mut client in [reviewer(&running).await, agency(&running, "agency-1").await] {
        let refused = client.put_subscription(request.clone()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    }
    let mut triage = internal(&running, "triage").await;
    let mut agency_request = handoff(1, "x@y.kz", "t-1");
    agency_request.channel = Channel::Webhook as i32;
    let refused = triage.put_agency_subscription(agency_request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "not in the access table");
    let not_agency = internal(&running, "intake")
        .await
        .put_agency_subscription(PutSubscriptionRequest { audience: Audience::Enforcement as i32, ..request })
        .await
        .unwrap_err();
    assert_eq!(not_agency.code(), tonic::Code::InvalidArgument);
    running.stop().await;
    env.db.drop_now().await.unwrap();
}
