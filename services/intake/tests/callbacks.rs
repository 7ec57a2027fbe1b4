//! An agency's notification settings: its callback secret is a Standard Webhooks secret, shown
//! once and sealed everywhere it rests or travels (its table, the hand-off to notification);
//! its language and contact address reach notification as subscriptions, each change carrying
//! a newer settings version.

mod support;

use crs_platform::secrets::{SecretBox, WebhookSecret, agency_callback_context};
use crs_proto::intake::{CreateAgencyRequest, GetAgencyRequest, UpdateAgencyRequest};
use crs_proto::notification::{Channel, PutSubscriptionRequest};
use prost::Message as _;
use sea_orm::{ConnectionTrait, Statement};
use support::{Backend, Intake};
use tonic::Code;

/// The subscription hand-offs waiting in intake's outbox, oldest first.
async fn handoffs(intake: &Intake) -> Vec<(Vec<u8>, PutSubscriptionRequest)> {
    let rows = intake
        .db
        .query_all_raw(Statement::from_string(
            intake.db.get_database_backend(),
            "SELECT payload FROM outbox WHERE topic LIKE '%PutAgencySubscription' ORDER BY created_at, id",
        ))
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| {
            let bytes: Vec<u8> = r.try_get("", "payload").unwrap();
            let message = PutSubscriptionRequest::decode(bytes.as_slice()).unwrap();
            (bytes, message)
        })
        .collect()
}

async fn stored_secret(intake: &Intake, id: &str) -> String {
    intake
        .db
        .query_one_raw(Statement::from_string(
            intake.db.get_database_backend(),
            format!("SELECT callback_secret FROM agencies WHERE id = '{id}'"),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "callback_secret")
        .unwrap()
}

async fn callback_secrets_are_shown_once_and_sealed_everywhere(backend: Backend) {
    let intake = Intake::start(backend).await;
    let mut admin = intake.admin_client().await;
    let created = admin
        .create_agency(CreateAgencyRequest {
            name: "Ministry of Digital Development".into(),
            jurisdiction: "KZ".into(),
            contact_email: "requests@ministry.kz".into(),
            callback_url: "https://portal.ministry.kz/crs/hook".into(),
            language: "kk".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let secret = WebhookSecret::parse(&created.callback_secret).expect("a Standard Webhooks secret, shown once");
    assert_eq!(created.language, "kk");
    let read = admin.get_agency(GetAgencyRequest { agency_id: created.id.clone() }).await.unwrap().into_inner();
    assert!(read.callback_secret.is_empty(), "never shown again");

    let encoded = created.callback_secret.trim_start_matches("whsec_").to_owned();
    let stored = stored_secret(&intake, &created.id).await;
    assert!(stored.starts_with("sealed:v1:") && !stored.contains(&encoded), "sealed at rest: {stored}");

    let sent = handoffs(&intake).await;
    assert_eq!(sent.len(), 2, "a webhook and an email subscription");
    for (bytes, _) in &sent {
        assert!(!String::from_utf8_lossy(bytes).contains(&encoded), "never in plain text in the outbox");
        assert!(!bytes.windows(secret.key().len()).any(|w| w == secret.key()), "nor its raw bytes");
    }
    let webhook = sent.iter().map(|(_, m)| m).find(|m| m.channel == Channel::Webhook as i32).unwrap();
    assert!(webhook.secret.is_empty());
    assert_eq!(webhook.endpoint, "https://portal.ministry.kz/crs/hook");
    assert_eq!((webhook.language.as_str(), webhook.source_version), ("kk", 1));
    // When the settings changed, so notification can give the new subscription what overtook it.
    let changed_at = webhook.settings_changed_at.as_ref().map(crs_platform::time::millis_from_timestamp);
    assert_eq!(changed_at, Some(read.updated_at.as_ref().map(crs_platform::time::millis_from_timestamp).unwrap()));
    // Notification, holding the same key, opens it; it is the secret the agency was given.
    let notification = SecretBox::new(crs_testkit::service::WEBHOOK_SECRET_KEY.as_bytes());
    let sealed = std::str::from_utf8(&webhook.sealed_secret).unwrap();
    assert_eq!(notification.open_webhook_secret(sealed, &agency_callback_context(&created.id)).unwrap(), secret);
    let email = sent.iter().map(|(_, m)| m).find(|m| m.channel == Channel::Email as i32).unwrap();
    assert_eq!(email.endpoint, "requests@ministry.kz");
    assert_eq!(email.recipient_name, "Ministry of Digital Development");

    // A new secret of the agency's own: not echoed, sealed, and handed over with a newer version.
    let own = WebhookSecret::generate();
    let updated = admin
        .update_agency(UpdateAgencyRequest {
            agency_id: created.id.clone(),
            callback_secret: own.encoded().to_string(),
            language: "ru".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(updated.callback_secret.is_empty());
    assert_eq!(updated.language, "ru");
    let sent = handoffs(&intake).await;
    assert_eq!(sent.len(), 4);
    assert!(sent[2..].iter().all(|(_, m)| m.source_version == 2 && m.language == "ru"));
    let millis =
        |m: &PutSubscriptionRequest| m.settings_changed_at.as_ref().map(crs_platform::time::millis_from_timestamp);
    assert!(sent[2..].iter().all(|(_, m)| millis(m) >= changed_at && millis(m).is_some()));
    let webhook = sent[2..].iter().map(|(_, m)| m).find(|m| m.channel == Channel::Webhook as i32).unwrap();
    let sealed = std::str::from_utf8(&webhook.sealed_secret).unwrap();
    assert_eq!(notification.open_webhook_secret(sealed, &agency_callback_context(&created.id)).unwrap(), own);

    // Changes that do not concern notification hand nothing over.
    admin
        .update_agency(UpdateAgencyRequest {
            agency_id: created.id.clone(),
            rate_limit_tier: "high".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(handoffs(&intake).await.len(), 4);
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_secrets_are_shown_once_and_sealed_everywhere_on_sqlite() {
    callback_secrets_are_shown_once_and_sealed_everywhere(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_secrets_are_shown_once_and_sealed_everywhere_on_postgres() {
    callback_secrets_are_shown_once_and_sealed_everywhere(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_secrets_and_unknown_languages_are_refused_by_name() {
    let intake = Intake::start(Backend::Sqlite).await;
    let mut admin = intake.admin_client().await;
    let refused = admin
        .create_agency(CreateAgencyRequest {
            name: "Ministry".into(),
            jurisdiction: "KZ".into(),
            callback_url: "https://portal.ministry.kz/crs/hook".into(),
            callback_secret: "x".into(),
            language: "Kazakh".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    for field in ["callback_secret", "language"] {
        assert!(refused.message().contains(field), "{field} in {}", refused.message());
    }
    let rows = intake
        .db
        .query_one_raw(Statement::from_string(intake.db.get_database_backend(), "SELECT COUNT(*) AS n FROM agencies"))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(rows, 0, "nothing written");
    intake.stop().await;
}

/// A database from before sealed secrets: an agency's callback secret in plain text, and a
/// subscription hand-off still in the outbox carrying it. At start-up both are sealed; the
/// secret notification opens is the one the agency had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_left_in_plain_text_by_an_earlier_version_are_sealed_at_start() {
    use sea_orm_migration::MigratorTrait as _;
    let db = crs_testkit::TestDb::fresh(Backend::Sqlite, "intake-upgrade").await.unwrap();
    let conn = db.connect().await.unwrap();
    crs_intake::migration::Migrator::up(&conn, Some(7)).await.unwrap();
    let plain = "a-plain-text-secret-of-32-bytes!";
    conn.execute_unprepared(&format!(
        "INSERT INTO agencies (id, name, jurisdiction, contact_email, callback_url, callback_secret, \
         allowed_instruments, allowed_categories, status, rate_limit_tier, created_at, updated_at) \
         VALUES ('a-old', 'Ministry', 'KZ', '', 'https://portal.ministry.kz/hook', '{plain}', '[]', '[]', 1, \
         'standard', 1, 1)"
    ))
    .await
    .unwrap();
    let handoff = PutSubscriptionRequest {
        audience: crs_proto::notification::Audience::Agency as i32,
        agency_id: "a-old".into(),
        endpoint: "https://portal.ministry.kz/hook".into(),
        secret: plain.into(),
        ..Default::default()
    };
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "INSERT INTO outbox (id, topic, payload, created_at, available_at, attempts) VALUES (?, ?, ?, 1, 1, 0)",
        [
            "o-old".into(),
            <PutSubscriptionRequest as crs_proto::InternalCall>::METHOD.into(),
            sea_orm::Value::Bytes(Some(handoff.encode_to_vec())),
        ],
    ))
    .await
    .unwrap();
    conn.close().await.unwrap();

    let intake = Intake::start_on(db, &[]).await;
    let stored = stored_secret(&intake, "a-old").await;
    assert!(stored.starts_with("sealed:v1:") && !stored.contains(plain), "{stored}");
    let notification = SecretBox::new(crs_testkit::service::WEBHOOK_SECRET_KEY.as_bytes());
    let (bytes, message) = handoffs(&intake).await.into_iter().next().expect("the hand-off is kept");
    assert!(!String::from_utf8_lossy(&bytes).contains(plain));
    assert!(message.secret.is_empty());
    let opened = notification
        .open_webhook_secret(std::str::from_utf8(&message.sealed_secret).unwrap(), &agency_callback_context("a-old"))
        .unwrap();
    assert_eq!(opened.key(), plain.as_bytes(), "the same key as before");
    intake.stop().await;
}
