//! Webhooks against real HTTP endpoints that verify every delivery with the Standard Webhooks
//! reference library, or fail on purpose: each audience gets its own message, signed and
//! verifiable; captured webhooks cannot be replayed; secrets rotate without a lost delivery;
//! failing endpoints are retried, then given up and retried by an admin; a hanging or failing
//! endpoint never holds up another; deliveries held back by a full lane go when it frees up;
//! redirects are not followed; agencies see only their own.

mod support;

use std::time::Duration;

use crs_platform::secrets::{SecretBox, WebhookSecret, agency_callback_context};
use crs_proto::notification::*;
use crs_testkit::{Backend, eventually};
use sea_orm::{ConnectionTrait, Statement};
use support::*;

const PATIENCE: Duration = Duration::from_secs(30);

/// Subscribes the agency's callback at the receiver's endpoint `name` as intake does: the secret
/// sealed with the shared key. The receiver learns the secret before the subscription is sent:
/// what was kept for the agency may be delivered the moment it arrives.
async fn subscribe_agency(
    running: &crs_testkit::Running,
    agency_id: &str,
    receiver: &Receiver,
    name: &str,
) -> WebhookSecret {
    subscribe_agency_changed_at(running, agency_id, receiver, name, crs_platform::time::now_millis()).await
}

/// Subscribes the agency's callback as intake does, for settings that changed at `changed_at`.
async fn subscribe_agency_changed_at(
    running: &crs_testkit::Running,
    agency_id: &str,
    receiver: &Receiver,
    name: &str,
    changed_at: i64,
) -> WebhookSecret {
    subscribe_agency_as_of(running, agency_id, receiver, name, 1, changed_at).await
}

/// Subscribes the agency's callback as intake does, for its settings at `version`, changed at
/// `changed_at`.
async fn subscribe_agency_as_of(
    running: &crs_testkit::Running,
    agency_id: &str,
    receiver: &Receiver,
    name: &str,
    version: u64,
    changed_at: i64,
) -> WebhookSecret {
    let secret = WebhookSecret::generate();
    receiver.register(name, &secret.encoded());
    send_agency_subscription(running, agency_id, &receiver.url(name), version, changed_at, &secret).await;
    secret
}

/// Sends intake's hand-off of the agency's callback settings at `version`, the secret sealed with
/// the shared key.
async fn send_agency_subscription(
    running: &crs_testkit::Running,
    agency_id: &str,
    endpoint: &str,
    version: u64,
    changed_at: i64,
    secret: &WebhookSecret,
) {
    let sealer = SecretBox::new(crs_testkit::service::WEBHOOK_SECRET_KEY.as_bytes());
    internal(running, "intake")
        .await
        .put_agency_subscription(PutSubscriptionRequest {
            audience: Audience::Agency as i32,
            agency_id: agency_id.into(),
            endpoint: endpoint.into(),
            channel: Channel::Webhook as i32,
            sealed_secret: sealer.seal_webhook_secret(secret, &agency_callback_context(agency_id)).into_bytes(),
            source_version: version,
            recipient_name: "Ministry of Digital Development".into(),
            language: "kk".into(),
            event_id: uuid::Uuid::new_v4().to_string(),
            settings_changed_at: Some(crs_platform::time::timestamp_from_millis(changed_at)),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn each_audience_gets_its_own_signed_message(backend: Backend) {
    let env = env(backend).await;
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    let agency_secret = subscribe_agency(&running, "agency-1", &receiver, "agency").await;
    for (audience, name) in [(Audience::ContentOwner, "owner"), (Audience::Enforcement, "enforcement")] {
        let sub = subscribe(&running, audience, &receiver.url(name)).await;
        assert!(sub.secret.starts_with("whsec_") && sub.has_secret, "a secret is generated and shown once");
        receiver.register(name, &sub.secret);
    }

    let mut notify = internal(&running, "legal-review").await;
    notify.notify(acknowledged("r-1", "agency-1")).await.unwrap();
    notify.notify(decided("r-1", "agency-1")).await.unwrap();
    eventually("every webhook arrives", PATIENCE, || async {
        (receiver.received("agency").len() == 2
            && receiver.received("owner").len() == 1
            && receiver.received("enforcement").len() == 1)
            .then_some(())
    })
    .await;
    for name in ["agency", "owner", "enforcement"] {
        for r in receiver.received(name) {
            assert_eq!(r.verified, Ok(()), "{name}: the reference library verifies it");
            assert!(r.header("webhook-signature").starts_with("v1,"));
        }
    }
    // The webhook id is the delivery's id.
    let notes = notifications(&running, "r-1").await;
    let ids: Vec<String> = notes.iter().flat_map(|n| n.deliveries.iter().map(|d| d.id.clone())).collect();
    for name in ["agency", "owner", "enforcement"] {
        for r in receiver.received(name) {
            assert!(ids.contains(&r.header("webhook-id")), "{name}: webhook-id names a recorded delivery");
        }
    }
    // Each is recorded as delivered once its endpoint's answer is back (just after it arrived).
    eventually("every delivery recorded as delivered", PATIENCE, || async {
        let notes = notifications(&running, "r-1").await;
        let decided = notes.iter().find(|n| n.kind == NotificationKind::Decided as i32)?;
        decided.deliveries.iter().all(|d| d.state == DeliveryState::Delivered as i32).then_some(())
    })
    .await;

    // Each audience its own schema, and only what it should know.
    let owner = receiver.received("owner")[0].json();
    assert_eq!(owner["schema"], "crs.notification.content_owner.v1");
    assert_eq!(owner["type"], "request.decided");
    let text = owner.to_string();
    assert!(!text.contains("agency-1") && !text.contains("MDD-2026/118"), "no agency id or reference: {text}");
    assert_eq!(owner["data"]["requested_by"]["authority"], "Ministry of Digital Development");
    assert_eq!(owner["data"]["items"].as_array().unwrap().len(), 2, "only the items acted on");
    assert_eq!(owner["data"]["items"][0]["decision_ground"], "DECISION_GROUND_ILLEGAL_CONTENT");
    let enforcement = receiver.received("enforcement")[0].json();
    assert_eq!(enforcement["schema"], "crs.notification.enforcement.v1");
    let actions: Vec<(String, serde_json::Value)> = enforcement["data"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap().to_owned(), a["countries"].clone()))
        .collect();
    assert_eq!(
        actions,
        [("RESTRICT".to_owned(), serde_json::json!(["KZ"])), ("REMOVE".to_owned(), serde_json::json!([]))]
    );
    let agency = receiver.received("agency").iter().map(|r| r.json()).find(|j| j["type"] == "request.decided").unwrap();
    assert_eq!(agency["data"]["reference"], "MDD-2026/118", "the agency gets its own reference back");
    assert_eq!(agency["data"]["items"].as_array().unwrap().len(), 3, "and the outcome of each of its items");

    // Secrets are write-only and sealed at rest.
    let listed =
        admin(&running).await.list_subscriptions(ListSubscriptionsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.subscriptions.len(), 3);
    assert!(listed.subscriptions.iter().all(|s| s.secret.is_empty() && s.has_secret));
    let conn = env.db.connect().await.unwrap();
    let stored = conn
        .query_all_raw(Statement::from_string(conn.get_database_backend(), "SELECT secret FROM channel_subscriptions"))
        .await
        .unwrap();
    let plain = agency_secret.encoded();
    let plain_b64 = plain.trim_start_matches("whsec_");
    for row in stored {
        let secret: String = row.try_get("", "secret").unwrap();
        assert!(secret.starts_with("sealed:v1:") && !secret.contains(plain_b64), "stored sealed: {secret}");
    }
    conn.close().await.unwrap();
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_audience_gets_its_own_signed_message_on_sqlite() {
    each_audience_gets_its_own_signed_message(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_audience_gets_its_own_signed_message_on_postgres() {
    each_audience_gets_its_own_signed_message(Backend::Postgres).await;
}

/// A captured webhook is worthless later: its timestamp is signed, and the reference library
/// refuses one outside its tolerance (five minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_webhook_cannot_be_replayed_later() {
    let env = env(Backend::Sqlite).await;
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    let sub = subscribe(&running, Audience::Enforcement, &receiver.url("enforcement")).await;
    receiver.register("enforcement", &sub.secret);
    internal(&running, "legal-review").await.notify(decided("r-2", "agency-1")).await.unwrap();
    let captured =
        eventually("the webhook arrives", PATIENCE, || async { receiver.received("enforcement").into_iter().next() })
            .await;
    let webhook = standardwebhooks::Webhook::new(&sub.secret).unwrap();
    assert!(webhook.verify(&captured.body, &captured.headers).is_ok());

    // Sent again a minute later with its timestamp refreshed: the signature no longer matches.
    let mut refreshed = captured.headers.clone();
    let sent: i64 = captured.header("webhook-timestamp").parse().unwrap();
    refreshed.insert("webhook-timestamp", (sent + 60).to_string().parse().unwrap());
    let err = webhook.verify(&captured.body, &refreshed).unwrap_err();
    assert!(matches!(err, standardwebhooks::WebhookError::InvalidSignature), "{err:?}");

    // Replayed ten minutes later as it was: too old.
    let id = captured.header("webhook-id");
    let old = chrono::Utc::now().timestamp() - 600;
    let secret = WebhookSecret::parse(&sub.secret).unwrap();
    let mut late = captured.headers.clone();
    late.insert("webhook-timestamp", old.to_string().parse().unwrap());
    late.insert(
        "webhook-signature",
        crs_notification::channels::webhook::sign(&secret, &id, old, &captured.body).parse().unwrap(),
    );
    let err = webhook.verify(&captured.body, &late).unwrap_err();
    assert!(matches!(err, standardwebhooks::WebhookError::TimestampTooOldError), "{err:?}");
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// A new secret signs beside the old one for the overlap, so receivers switch without losing a
/// delivery; a retry pending since before the rotation is signed with the secrets in force when
/// it is attempted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_old_one_and_pending_retries_use_it() {
    let env = env(Backend::Sqlite).await;
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    let first = subscribe(&running, Audience::Enforcement, &receiver.url("enforcement")).await;
    receiver.behave("enforcement", Behaviour::Answer(503));
    internal(&running, "legal-review").await.notify(decided("r-3", "agency-1")).await.unwrap();
    eventually("the delivery is failing", PATIENCE, || async { (receiver.arrived("enforcement") >= 2).then_some(()) })
        .await;

    let mut admin = admin(&running).await;
    let rotated = admin
        .put_subscription(PutSubscriptionRequest {
            audience: Audience::Enforcement as i32,
            endpoint: receiver.url("enforcement"),
            rotate_secret: true,
            expected_version: first.version,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rotated.secret.starts_with("whsec_") && rotated.secret != first.secret);
    assert_eq!(rotated.version, first.version + 1);
    assert!(rotated.previous_secret_expires_at.is_some(), "the old secret signs for the overlap");
    // A change based on a version that is no longer current is refused.
    let stale = admin
        .put_subscription(PutSubscriptionRequest {
            audience: Audience::Enforcement as i32,
            endpoint: receiver.url("enforcement"),
            expected_version: first.version,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted, "{stale:?}");

    receiver.register("enforcement", &rotated.secret);
    receiver.behave("enforcement", Behaviour::Verify);
    let delivered = eventually("the pending retry is delivered", PATIENCE, || async {
        receiver.received("enforcement").into_iter().find(|r| r.verified.is_ok())
    })
    .await;
    let signatures = delivered.header("webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2, "both secrets sign during the overlap: {signatures}");
    // Receivers still holding the old secret verify too.
    let old = standardwebhooks::Webhook::new(&first.secret).unwrap();
    assert!(old.verify(&delivered.body, &delivered.headers).is_ok());
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// An endpoint that keeps failing is retried with backoff until the maximum age, then the
/// delivery is FAILED (a dead letter, counted); an admin retries it once the endpoint is fixed.
/// An endpoint that answers 410 Gone is given up at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_delivery_becomes_a_dead_letter_that_an_admin_retries() {
    let env = env(Backend::Sqlite).await.set("CRS_DELIVERY__MAX_AGE_SECS", "1");
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    let enforcement = subscribe(&running, Audience::Enforcement, &receiver.url("enforcement")).await;
    receiver.register("enforcement", &enforcement.secret);
    receiver.behave("enforcement", Behaviour::Answer(500));
    let gone = subscribe(&running, Audience::ContentOwner, &receiver.url("gone")).await;
    receiver.register("gone", &gone.secret);
    receiver.behave("gone", Behaviour::Answer(410));
    internal(&running, "legal-review").await.notify(decided("r-4", "agency-1")).await.unwrap();

    let failed = eventually("both deliveries are given up", PATIENCE, || async {
        let all = deliveries(&running).await;
        all.iter().all(|d| d.state == DeliveryState::Failed as i32).then_some(all)
    })
    .await;
    let by_audience = |a: Audience| failed.iter().find(|d| d.audience == a as i32).unwrap().clone();
    let dead = by_audience(Audience::Enforcement);
    assert!(dead.attempts >= 2, "retried before giving up: {dead:?}");
    assert!(dead.last_error.contains("500") && dead.last_error.contains("maximum age"), "{dead:?}");
    assert!(dead.next_attempt_at.is_none());
    let gone_delivery = by_audience(Audience::ContentOwner);
    assert_eq!(gone_delivery.attempts, 1, "410 Gone is final: {gone_delivery:?}");
    eventually("the dead letters are counted", PATIENCE, || async {
        let text = metrics(&running).await;
        // Other tests in this process count too: at least this one.
        (metric(&text, "crs_deliveries_total{audience=\"ENFORCEMENT\",channel=\"webhook\",state=\"failed\"}") >= 1
            && metric(&text, "crs_deliveries_failed{audience=\"ENFORCEMENT\"}") >= 1)
            .then_some(())
    })
    .await;

    // Only admins retry.
    let refused = reviewer(&running)
        .await
        .retry_delivery(RetryDeliveryRequest { delivery_id: dead.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    receiver.behave("enforcement", Behaviour::Verify);
    let retried =
        admin(&running).await.retry_delivery(RetryDeliveryRequest { delivery_id: dead.id.clone() }).await.unwrap();
    assert_eq!(retried.into_inner().state, DeliveryState::Pending as i32);
    eventually("the retried delivery is delivered", PATIENCE, || async {
        deliveries(&running).await.into_iter().find(|d| d.id == dead.id && d.state == DeliveryState::Delivered as i32)
    })
    .await;
    assert_eq!(receiver.received("enforcement").len(), 1);
    let again = admin(&running).await.retry_delivery(RetryDeliveryRequest { delivery_id: dead.id }).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    let unknown =
        admin(&running).await.retry_delivery(RetryDeliveryRequest { delivery_id: "nope".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// An agency lists the notifications addressed to it with only its own deliveries, and a
/// summary of their failures, never another party's endpoint or an internal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agencies_list_only_their_own_deliveries_without_internal_errors() {
    let env = env(Backend::Sqlite).await;
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    subscribe_agency(&running, "agency-a", &receiver, "agency-a").await;
    receiver.behave("agency-a", Behaviour::Answer(503));
    for (audience, name) in [(Audience::ContentOwner, "owner"), (Audience::Enforcement, "enforcement")] {
        let sub = subscribe(&running, audience, &receiver.url(name)).await;
        receiver.register(name, &sub.secret);
    }
    let on_call = subscribe(&running, Audience::OnCall, &receiver.url("on-call")).await;
    receiver.register("on-call", &on_call.secret);
    let mut notify = internal(&running, "legal-review").await;
    notify.notify(decided("r-5", "agency-a")).await.unwrap();
    let mut warning = sla_warning("r-5", 50);
    warning.submission.as_mut().unwrap().agency_id = "agency-a".into();
    notify.notify(warning).await.unwrap();
    eventually("the agency's delivery has failed at least once", PATIENCE, || async {
        deliveries(&running)
            .await
            .into_iter()
            .find(|d| d.audience == Audience::Agency as i32 && d.attempts >= 1 && !d.last_error.is_empty())
    })
    .await;

    let seen = agency(&running, "agency-a")
        .await
        .list_notifications(ListNotificationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(seen.len(), 1, "only what is addressed to the agency (no SLA warnings): {seen:?}");
    let own = &seen[0].deliveries;
    assert_eq!(own.len(), 1, "only its own delivery: {own:?}");
    assert_eq!(own[0].audience, Audience::Agency as i32);
    assert_eq!(own[0].endpoint, receiver.url("agency-a"));
    assert_eq!(own[0].last_error, "the endpoint answered 503", "a summary, not the detail");
    let all = notifications(&running, "r-5").await;
    assert_eq!(all.iter().map(|n| n.deliveries.len()).sum::<usize>(), 4, "admins see every delivery");
    let other = agency(&running, "agency-b")
        .await
        .list_notifications(ListNotificationsRequest { request_id: "r-5".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(other.notifications.is_empty(), "another agency sees nothing of it");
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// An endpoint that never answers holds only its own lane (per_endpoint_concurrency attempts):
/// every delivery to a healthy endpoint completes while the hanging one's are still pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_delays_only_its_own_deliveries() {
    let env = env(Backend::Sqlite)
        .await
        .set("CRS_DELIVERY__PER_ENDPOINT_CONCURRENCY", "2")
        .set("CRS_WEBHOOKS__TIMEOUT_MS", "120000");
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    subscribe(&running, Audience::Enforcement, &receiver.url("hanging")).await;
    receiver.behave("hanging", Behaviour::Hang);
    let owner = subscribe(&running, Audience::ContentOwner, &receiver.url("owner")).await;
    receiver.register("owner", &owner.secret);
    let mut notify = internal(&running, "legal-review").await;
    for i in 0..10 {
        notify.notify(decided(&format!("h-{i}"), "agency-1")).await.unwrap();
    }
    eventually("every delivery to the healthy endpoint completes", PATIENCE, || async {
        (receiver.received("owner").iter().filter(|r| r.verified.is_ok()).count() == 10).then_some(())
    })
    .await;
    // The receiver keeps a webhook before it answers, and the outcome is written after that.
    let all = eventually("the healthy endpoint's deliveries are recorded delivered", PATIENCE, || async {
        let all = deliveries(&running).await;
        all.iter()
            .filter(|d| d.audience == Audience::ContentOwner as i32)
            .all(|d| d.state == DeliveryState::Delivered as i32)
            .then_some(all)
    })
    .await;
    let hanging: Vec<_> = all.iter().filter(|d| d.audience == Audience::Enforcement as i32).collect();
    assert_eq!(hanging.len(), 10);
    assert!(hanging.iter().all(|d| d.state == DeliveryState::Pending as i32), "{hanging:?}");
    assert_eq!(receiver.arrived("hanging"), 2, "the hanging endpoint holds only its own two slots");
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// Deliveries an endpoint's full lane held back go as soon as attempts end, and a failed attempt
/// is retried at its time: the scheduler never polls here, so only the attempts that end can
/// wake it for them. (It no longer looks again after every delivery made, which found nothing
/// to claim when nothing was held back.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_held_back_or_failed_go_when_attempts_end_without_a_poll() {
    let env = env(Backend::Sqlite)
        .await
        .set("CRS_DELIVERY__POLL_INTERVAL_MS", "600000")
        .set("CRS_DELIVERY__PER_ENDPOINT_CONCURRENCY", "2")
        // Held attempts wait for the release, however long the notifications take to send.
        .set("CRS_WEBHOOKS__TIMEOUT_MS", "120000");
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    subscribe_agency(&running, "agency-1", &receiver, "agency").await;
    receiver.hold();
    let mut intake = internal(&running, "intake").await;
    for i in 0..7 {
        intake.notify(acknowledged(&format!("held-{i}"), "agency-1")).await.unwrap();
    }
    eventually("the lane holds two attempts", PATIENCE, || async { (receiver.arrived("agency") == 2).then_some(()) })
        .await;
    receiver.release();
    eventually("the five held back are delivered once the lane frees up", PATIENCE, || async {
        let all = deliveries(&running).await;
        (all.len() == 7 && all.iter().all(|d| d.state == DeliveryState::Delivered as i32)).then_some(())
    })
    .await;

    receiver.behave("agency", Behaviour::Answer(503));
    intake.notify(acknowledged("retried", "agency-1")).await.unwrap();
    eventually("the endpoint refused the first attempt", PATIENCE, || async {
        (receiver.arrived("agency") >= 8).then_some(())
    })
    .await;
    receiver.behave("agency", Behaviour::Verify);
    eventually("the failed delivery is retried at its time and delivered", PATIENCE, || async {
        let all = deliveries(&running).await;
        (all.len() == 8 && all.iter().all(|d| d.state == DeliveryState::Delivered as i32)).then_some(())
    })
    .await;
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// After consecutive failures an endpoint's circuit opens: no more attempts at it, however
/// many deliveries queue up, while another endpoint's deliveries all go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoints_circuit_opens_while_others_keep_their_pace() {
    let env = env(Backend::Sqlite)
        .await
        .set("CRS_DELIVERY__BREAKER_FAILURES", "3")
        .set("CRS_DELIVERY__BREAKER_COOLDOWN_MS", "600000")
        .set("CRS_DELIVERY__PER_ENDPOINT_CONCURRENCY", "1");
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    subscribe(&running, Audience::Enforcement, &receiver.url("failing")).await;
    receiver.behave("failing", Behaviour::Answer(503));
    let owner = subscribe(&running, Audience::ContentOwner, &receiver.url("owner")).await;
    receiver.register("owner", &owner.secret);
    let mut notify = internal(&running, "legal-review").await;
    for round in 0..2 {
        for i in 0..5 {
            notify.notify(decided(&format!("c-{round}-{i}"), "agency-1")).await.unwrap();
        }
        let want = (round + 1) * 5;
        eventually("the healthy endpoint gets every delivery", PATIENCE, || async {
            (receiver.received("owner").len() == want).then_some(())
        })
        .await;
    }
    assert_eq!(receiver.arrived("failing"), 3, "no attempt after the circuit opened");
    eventually("the open circuit is reported", PATIENCE, || async {
        (metric(&metrics(&running).await, "crs_delivery_circuits_open") >= 1).then_some(())
    })
    .await;
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// A redirect is an answer, not a place to go: the target never sees a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let env = env(Backend::Sqlite).await;
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    let target = Forbidden::start().await;
    receiver.redirect_to(&format!("http://127.0.0.1:{}/latest/meta-data/", target.port));
    receiver.behave("redirecting", Behaviour::Redirect);
    subscribe(&running, Audience::Enforcement, &receiver.url("redirecting")).await;
    internal(&running, "legal-review").await.notify(decided("r-6", "agency-1")).await.unwrap();
    let failing = eventually("the redirect is a failed attempt", PATIENCE, || async {
        deliveries(&running).await.into_iter().find(|d| d.attempts >= 2 && d.last_error.contains("redirect"))
    })
    .await;
    assert_eq!(failing.state, DeliveryState::Retrying as i32);
    assert_eq!(target.connections(), 0, "the redirect's target was never contacted");
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// The same event handed over again (a relay retrying after a lost reply, or several at once)
/// is recorded once and delivered once per audience and endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_is_recorded_and_delivered_once() {
    let env = env(Backend::Sqlite).await;
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    let sub = subscribe(&running, Audience::Enforcement, &receiver.url("enforcement")).await;
    receiver.register("enforcement", &sub.secret);
    let mut calls = Vec::new();
    for _ in 0..5 {
        let mut client = internal(&running, "legal-review").await;
        calls.push(tokio::spawn(async move { client.notify(decided("r-7", "agency-1")).await.unwrap().into_inner() }));
    }
    let mut replies = Vec::new();
    for call in calls {
        replies.push(call.await.unwrap());
    }
    assert!(replies.iter().all(|r| r.notification_id == replies[0].notification_id));
    assert_eq!(replies.iter().filter(|r| !r.replayed).count(), 1, "{replies:?}");
    eventually("the webhook arrives", PATIENCE, || async {
        (receiver.received("enforcement").len() == 1).then_some(())
    })
    .await;
    // A later notification's webhook arriving shows the scheduler has moved past this one.
    internal(&running, "legal-review").await.notify(decided("r-8", "agency-1")).await.unwrap();
    eventually("the next webhook arrives", PATIENCE, || async {
        (receiver.received("enforcement").len() >= 2).then_some(())
    })
    .await;
    let ids: Vec<String> =
        receiver.received("enforcement").iter().map(|r| r.json()["data"]["request_id"].to_string()).collect();
    assert_eq!(ids.iter().filter(|id| id.contains("r-7")).count(), 1, "{ids:?}");
    assert_eq!(notifications(&running, "r-7").await.len(), 1);
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// An endpoint that does not answer within `webhooks.timeout_ms` has its attempt cut off and
/// retried; once it answers, the delivery goes through, under the same webhook id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_attempt_is_retried_until_the_endpoint_answers() {
    let env = env(Backend::Sqlite).await.set("CRS_WEBHOOKS__TIMEOUT_MS", "300");
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    let sub = subscribe(&running, Audience::Enforcement, &receiver.url("slow")).await;
    receiver.register("slow", &sub.secret);
    receiver.behave("slow", Behaviour::Hang);
    internal(&running, "legal-review").await.notify(decided("t-1", "agency-1")).await.unwrap();
    let timed_out = eventually("attempts time out", PATIENCE, || async {
        deliveries(&running).await.into_iter().find(|d| d.attempts >= 2 && d.last_error.contains("timed out"))
    })
    .await;
    assert_eq!(timed_out.state, DeliveryState::Retrying as i32);
    receiver.behave("slow", Behaviour::Verify);
    let delivered = eventually("the delivery goes through", PATIENCE, || async {
        receiver.received("slow").into_iter().find(|r| r.verified.is_ok())
    })
    .await;
    assert_eq!(delivered.header("webhook-id"), timed_out.id);
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// An attempt cut off by a stop is made again once its lease ends, and the lease is the
/// webhook's (its timeout and a margin: 13 s here), not an email conversation's (three of email's
/// default 15 s timeouts and the margin: 50 s), so the delivery goes well within the patience.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_cut_off_by_a_stop_is_made_again_after_its_own_channels_lease() {
    let env = env(Backend::Sqlite).await.set("CRS_WEBHOOKS__TIMEOUT_MS", "8000");
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    let sub = subscribe(&running, Audience::Enforcement, &receiver.url("cut")).await;
    receiver.register("cut", &sub.secret);
    receiver.hold();
    internal(&running, "legal-review").await.notify(decided("cut-1", "agency-1")).await.unwrap();
    eventually("the attempt reaches the endpoint", PATIENCE, || async { (receiver.arrived("cut") == 1).then_some(()) })
        .await;
    // The stop gives attempts 5 s, then cuts this one off, before its 8 s timeout: it stays leased.
    running.stop().await;
    assert!(receiver.received("cut").is_empty(), "the held attempt was never answered");
    receiver.release();
    let running = start(&env).await;
    let made = eventually("the cut-off delivery is made again", PATIENCE, || async {
        receiver.received("cut").into_iter().find(|r| r.verified.is_ok())
    })
    .await;
    let delivery = eventually("its outcome is written", PATIENCE, || async {
        deliveries(&running).await.into_iter().find(|d| d.state == DeliveryState::Delivered as i32)
    })
    .await;
    assert_eq!(made.header("webhook-id"), delivery.id, "the same delivery, under its webhook id");
    assert_eq!(delivery.attempts, 2, "attempted once before the stop and once after its lease");
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// Hand-offs travel independently: an agency's acknowledgement may reach notification before
/// the agency's subscription does. It is kept for the agency and delivered, signed, once the
/// subscription arrives; a subscription whose settings changed after it was recorded does not
/// get it, and the messages that follow reach both as usual.
async fn a_notification_that_overtakes_the_agencys_subscription_still_reaches_it(backend: Backend) {
    let env = env(backend).await;
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    let mut intake = internal(&running, "intake").await;
    let before = crs_platform::time::now_millis();
    intake.notify(acknowledged("r-early", "agency-new")).await.unwrap();
    intake.notify(acknowledged("r-old", "agency-later")).await.unwrap();

    subscribe_agency_changed_at(&running, "agency-new", &receiver, "new", before).await;
    // Its contact address arrives too, but this deployment sends no email: nothing is due there.
    intake
        .put_agency_subscription(PutSubscriptionRequest {
            audience: Audience::Agency as i32,
            agency_id: "agency-new".into(),
            endpoint: "requests@ministry.example".into(),
            channel: Channel::Email as i32,
            source_version: 1,
            event_id: uuid::Uuid::new_v4().to_string(),
            settings_changed_at: Some(crs_platform::time::timestamp_from_millis(before)),
            ..Default::default()
        })
        .await
        .unwrap();
    // This agency's callback was set long after its earlier request was acknowledged.
    let later = before + 10 * 60 * 1000;
    subscribe_agency_changed_at(&running, "agency-later", &receiver, "later", later).await;
    intake.notify(acknowledged("r-next", "agency-new")).await.unwrap();
    intake.notify(acknowledged("r-new", "agency-later")).await.unwrap();

    let ids = |name: &str| -> Vec<String> {
        receiver
            .received(name)
            .iter()
            .map(|r| r.json()["data"]["request_id"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    eventually("both acknowledgements reach the new agency", PATIENCE, || async {
        (receiver.received("new").len() >= 2).then_some(())
    })
    .await;
    let mut new = ids("new");
    new.sort();
    assert_eq!(new, ["r-early", "r-next"]);
    assert!(receiver.received("new").iter().all(|r| r.verified.is_ok()), "every delivery is signed");
    eventually("the later agency's new acknowledgement arrives", PATIENCE, || async {
        (!receiver.received("later").is_empty()).then_some(())
    })
    .await;
    // Deliveries are attempted oldest first, so the earlier one would have come by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ids("later"), ["r-new"], "what was recorded before its settings changed is not sent");
    let early = agency(&running, "agency-new")
        .await
        .list_notifications(ListNotificationsRequest { request_id: "r-early".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(early.len(), 1);
    assert_eq!(early[0].deliveries.len(), 1, "its webhook only: {early:?}");
    assert_eq!(early[0].deliveries[0].state, DeliveryState::Delivered as i32);

    // Two changes of an agency's settings relayed out of order: the newer one creates the
    // subscription, and the older one, stale when it arrives, still brings what came after it.
    intake.notify(acknowledged("r-between", "agency-reordered")).await.unwrap();
    subscribe_agency_as_of(&running, "agency-reordered", &receiver, "reordered", 2, later).await;
    // The stale change carries a secret of its own, which must not replace the newer one.
    let stale = WebhookSecret::generate();
    send_agency_subscription(&running, "agency-reordered", &receiver.url("reordered"), 1, before, &stale).await;
    eventually("the acknowledgement before the newer change arrives", PATIENCE, || async {
        (ids("reordered") == ["r-between"]).then_some(())
    })
    .await;
    assert!(receiver.received("reordered")[0].verified.is_ok(), "signed with the newer settings' secret");
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_that_overtakes_the_agencys_subscription_still_reaches_it_on_sqlite() {
    a_notification_that_overtakes_the_agencys_subscription_still_reaches_it(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_that_overtakes_the_agencys_subscription_still_reaches_it_on_postgres() {
    a_notification_that_overtakes_the_agencys_subscription_still_reaches_it(Backend::Postgres).await;
}

/// Deliveries made together have their outcomes written together: attempts held at the
/// endpoints and answered at once share commits, and each is recorded DELIVERED once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_made_together_are_recorded_together_on_postgres() {
    // Held attempts wait for the release, however long the notifications take to send.
    let env = env(Backend::Postgres).await.set("CRS_WEBHOOKS__TIMEOUT_MS", "120000");
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    let agencies: Vec<String> = (0..8).map(|i| format!("agency-{i}")).collect();
    for agency in &agencies {
        subscribe_agency(&running, agency, &receiver, agency).await;
    }
    receiver.hold();
    let mut intake = internal(&running, "intake").await;
    for (i, agency) in agencies.iter().cycle().take(32).enumerate() {
        intake.notify(acknowledged(&format!("r-{i}"), agency)).await.unwrap();
    }
    // Four attempts per endpoint are under way at once (delivery.per_endpoint_concurrency).
    eventually("every endpoint holds four attempts", PATIENCE, || async {
        agencies.iter().all(|a| receiver.arrived(a) == 4).then_some(())
    })
    .await;
    receiver.release();
    eventually("every acknowledgement is recorded delivered", PATIENCE, || async {
        let all = deliveries(&running).await;
        (all.len() == 32 && all.iter().all(|d| d.state == DeliveryState::Delivered as i32)).then_some(())
    })
    .await;
    let received: usize = agencies.iter().map(|a| receiver.received(a).len()).sum();
    assert_eq!(received, 32, "each delivered once");
    let conn = env.db.connect().await.unwrap();
    let commits: i64 = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(DISTINCT xmin::text) AS n FROM deliveries WHERE delivered_at IS NOT NULL",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    assert!(commits < 32, "32 outcomes written in {commits} transactions");
    conn.close().await.unwrap();
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// The agency's subscription is committed while its acknowledgement is being recorded, each
/// transaction unable to see the other's rows: the acknowledgement still reaches the
/// subscription. (A trigger holds the acknowledgement's transaction open at its message.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_committed_while_a_notification_is_recorded_still_gets_it_on_postgres() {
    let env = env(Backend::Postgres).await;
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    let conn = env.db.connect().await.unwrap();
    conn.execute_unprepared(
        "CREATE FUNCTION slow_message() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_sleep(2); RETURN NEW; END $$; \
         CREATE TRIGGER slow_message BEFORE INSERT ON messages FOR EACH ROW \
         WHEN (NEW.agency_id = 'agency-racing') EXECUTE FUNCTION slow_message();",
    )
    .await
    .unwrap();
    let before = crs_platform::time::now_millis();
    let mut intake = internal(&running, "intake").await;
    let recording = tokio::spawn(async move { intake.notify(acknowledged("r-racing", "agency-racing")).await });
    eventually("the acknowledgement's transaction is under way", PATIENCE, || async {
        let row = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()",
            ))
            .await
            .unwrap()
            .unwrap();
        (row.try_get::<i64>("", "n").unwrap() == 1).then_some(())
    })
    .await;
    subscribe_agency_changed_at(&running, "agency-racing", &receiver, "racing", before).await;
    recording.await.unwrap().unwrap();
    eventually("the acknowledgement arrives", PATIENCE, || async {
        (receiver.received("racing").len() == 1).then_some(())
    })
    .await;
    assert!(receiver.received("racing")[0].verified.is_ok());
    conn.close().await.unwrap();
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// An agency's subscription that arrives after thousands of its messages (its hand-off stuck
/// for days, then replayed) is given every one of them: the deliveries are written in parts
/// within the database's bound on one statement's parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_arriving_after_thousands_of_messages_gets_them_all_on_sqlite() {
    const MESSAGES: usize = 2_100;
    let env = env(Backend::Sqlite).await;
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    receiver.behave("busy", Behaviour::Answer(204));
    let before = crs_platform::time::now_millis();
    let mut senders = Vec::new();
    for lane in 0..8 {
        let mut intake = internal(&running, "intake").await;
        senders.push(tokio::spawn(async move {
            for i in (lane..MESSAGES).step_by(8) {
                intake.notify(acknowledged(&format!("r-{i}"), "agency-busy")).await.unwrap();
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    subscribe_agency_changed_at(&running, "agency-busy", &receiver, "busy", before).await;
    let conn = env.db.connect().await.unwrap();
    let due: i64 = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM deliveries d JOIN channel_subscriptions s ON s.id = d.subscription_id \
             WHERE s.agency_id = 'agency-busy'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    assert_eq!(due, MESSAGES as i64, "one delivery per message kept for the agency");
    conn.close().await.unwrap();
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// Notifications relayed at once share transactions: each is answered with its own
/// notification, a repeated event is recorded once, and every audience's webhook arrives.
async fn recorded_together(backend: Backend) {
    const N: usize = 40;
    let env = env(backend).await;
    let running = start(&env).await;
    let receiver = Receiver::start().await;
    subscribe_agency(&running, "agency-1", &receiver, "agency").await;
    let sub = subscribe(&running, Audience::Enforcement, &receiver.url("enforcement")).await;
    receiver.register("enforcement", &sub.secret);

    let client = internal(&running, "legal-review").await;
    let call = |r: NotifyRequest| {
        let mut client = client.clone();
        async move { client.notify(r).await.map(tonic::Response::into_inner) }
    };
    let requests: Vec<NotifyRequest> = (0..N).map(|i| decided(&format!("t-{i}"), "agency-1")).collect();
    let (answers, repeat) =
        tokio::join!(futures::future::join_all(requests.iter().cloned().map(call)), call(requests[0].clone()));
    let answers: Vec<NotifyResponse> = answers.into_iter().map(|a| a.expect("every notification is taken")).collect();
    let repeat = repeat.expect("a repeated event is answered");
    assert!(answers[0].replayed != repeat.replayed, "exactly one of the two deliveries of the event recorded it");
    assert_eq!(answers[0].notification_id, repeat.notification_id);
    let ids: std::collections::HashSet<&str> = answers.iter().map(|a| a.notification_id.as_str()).collect();
    assert_eq!(ids.len(), N, "each its own notification");

    eventually("every webhook arrives", PATIENCE, || async {
        (receiver.received("agency").len() == N && receiver.received("enforcement").len() == N).then_some(())
    })
    .await;
    for name in ["agency", "enforcement"] {
        let mut told: Vec<String> = receiver
            .received(name)
            .iter()
            .map(|r| r.json()["data"]["request_id"].as_str().unwrap().to_owned())
            .collect();
        told.sort();
        told.dedup();
        assert_eq!(told.len(), N, "{name}: each request once");
    }
    assert_eq!(deliveries(&running).await.len(), 2 * N);
    if backend == Backend::Postgres {
        let db = env.db.connect().await.unwrap();
        let sql = "SELECT COUNT(DISTINCT xmin::text)::bigint FROM notifications WHERE request_id LIKE 't-%'";
        let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
        let transactions = row.unwrap().try_get_by_index::<i64>(0).unwrap();
        assert!(transactions < N as i64, "{N} concurrent notifications took {transactions} transactions");
        db.close().await.unwrap();
    }
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_relayed_together_are_recorded_together_on_sqlite() {
    recorded_together(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_relayed_together_are_recorded_together_on_postgres() {
    recorded_together(Backend::Postgres).await;
}
