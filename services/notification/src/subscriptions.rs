//! Subscriptions: who is told (audience, and the agency for agencies) and how (channel,
//! endpoint, language). Admins set them with PutSubscription; agencies' arrive from intake.
//!
//! Every change bumps the subscription's version; an admin may make a change conditional on the
//! version read (`expected_version`). Intake's hand-offs carry the agency's settings version
//! (`source_version`), and one not newer than the version applied is stale: it has no effect,
//! so hand-offs relayed out of order never undo a newer one. A repeated event id has no effect
//! either (the inbox).
//!
//! Webhook secrets are sealed at rest ([`SecretBox`]). A new webhook subscription without a
//! secret gets one generated, returned once. A new secret (given or rotated) replaces the
//! current one, which keeps signing beside it for `webhooks.rotation_overlap_secs`, so
//! receivers can switch without losing a delivery. Deliveries read the subscription at each
//! attempt, so pending retries sign with the secrets in force then.

use crs_platform::auth::{Principal, Role};
use crs_platform::error::FieldViolations;
use crs_platform::outbox::inbox_first_time;
use crs_platform::secrets::{SecretBox, WebhookSecret, agency_callback_context, is_sealed};
use crs_platform::time::{millis_from_timestamp, now_millis, timestamp_from_millis};
use crs_proto::notification::{
    Audience, Channel as ChannelKind, ListSubscriptionsRequest, PutSubscriptionRequest, Subscription,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, TransactionTrait,
};

use crate::channels::Channels;
use crate::channels::webhook::secret_context;
use crate::entities::{delivery, subscription};
use crate::error::NotificationError;
use crate::scheduler::Scheduler;

type Result<T> = std::result::Result<T, NotificationError>;

/// The longest recipient name accepted.
const MAX_NAME_LEN: usize = 256;

/// How long before intake's `settings_changed_at` (its clock) a message recorded here (this
/// service's clock) still counts as one that overtook the agency's new subscription: the clocks
/// of two hosts may differ by this much.
const CLOCK_SKEW_ALLOWANCE_MS: i64 = 60_000;

/// Deliveries per `INSERT` when a subscription is given what overtook it (16 values each).
const DELIVERY_ROWS_PER_INSERT: usize = 500;

/// Whether `s` has the shape of an ISO 639-1 code: two lower-case letters.
pub fn is_language_code(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_lowercase())
}

/// The advisory lock (PostgreSQL) that orders a new agency subscription against the agency's
/// messages being recorded: `put` holds it while it gives the new subscription what overtook
/// it, and `Notify` shares it before it reads the agency's subscriptions. Without it, each could
/// miss the other's uncommitted row. SQLite runs one writing transaction at a time and needs none.
fn agency_lock(agency_id: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("crs.notification.agency-subscription:{agency_id}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("eight bytes"))
}

/// The statement that waits until no new subscription of the agency is being committed, and
/// keeps one from being committed until this transaction ends (shared: recording notifications
/// never wait on each other); none where no lock is needed. Sent with other writes
/// (`crs_platform::db::in_one_round_trip`), as its last.
pub(crate) fn holding_agency_subscriptions(backend: sea_orm::DbBackend, agency_id: &str) -> Option<sea_orm::Statement> {
    agency_lock_statement(backend, agency_id, "pg_advisory_xact_lock_shared")
}

/// Takes the agency's lock (`function`: shared or exclusive) until the transaction ends, on
/// PostgreSQL.
async fn lock_agency<C: sea_orm::ConnectionTrait>(conn: &C, agency_id: &str, function: &str) -> Result<()> {
    if let Some(lock) = agency_lock_statement(conn.get_database_backend(), agency_id, function) {
        conn.execute_raw(lock).await?;
    }
    Ok(())
}

fn agency_lock_statement(backend: sea_orm::DbBackend, agency_id: &str, function: &str) -> Option<sea_orm::Statement> {
    (backend == sea_orm::DbBackend::Postgres).then(|| {
        crs_platform::outbox::statement(backend, &format!("SELECT {function}($1)"), vec![agency_lock(agency_id).into()])
    })
}

/// Where a change comes from: an admin's call, or intake's hand-off (which alone may carry a
/// sealed secret and a source version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Admin,
    Intake,
}

#[derive(Clone)]
pub struct Subscriptions {
    db: DatabaseConnection,
    channels: Channels,
    secrets: SecretBox,
    overlap_ms: i64,
    scheduler: Scheduler,
}

impl Subscriptions {
    pub fn new(
        db: DatabaseConnection,
        channels: Channels,
        secrets: SecretBox,
        overlap_secs: u64,
        scheduler: Scheduler,
    ) -> Self {
        Subscriptions { db, channels, secrets, overlap_ms: (overlap_secs as i64).saturating_mul(1000), scheduler }
    }

    /// Checks a change; returns the audience, the channel, and the secret it sets (if any).
    fn check(
        &self,
        req: &PutSubscriptionRequest,
        source: Source,
    ) -> Result<(Audience, ChannelKind, Option<WebhookSecret>)> {
        let mut v = FieldViolations::new();
        let audience = Audience::try_from(req.audience).unwrap_or(Audience::Unspecified);
        let kind = match req.channel {
            0 => Some(ChannelKind::Webhook),
            n => ChannelKind::try_from(n).ok().filter(|k| *k != ChannelKind::Unspecified),
        };
        let channel = kind.and_then(|k| self.channels.get(k as i32));
        if channel.is_none() {
            v.add("channel", "must be a known channel: webhook, email or stream");
        }
        let stream = kind == Some(ChannelKind::Stream);
        match audience {
            Audience::Unspecified => v.add("audience", "must be a known audience"),
            Audience::Agency if req.agency_id.is_empty() && !stream => {
                v.add("agency_id", "is required for the agency audience (empty only on the stream, for every agency)")
            }
            Audience::Agency => {}
            _ if !req.agency_id.is_empty() => v.add("agency_id", "is only for the agency audience"),
            _ => {}
        }
        if req.agency_id.len() > 128 {
            v.add("agency_id", "longer than 128 characters");
        }
        if let Some(channel) = channel {
            if audience != Audience::Unspecified {
                channel.check_endpoint(audience, &req.endpoint, &mut v);
            }
            if !channel.signs() && (!req.secret.is_empty() || !req.sealed_secret.is_empty() || req.rotate_secret) {
                v.add("secret", "only webhooks are signed");
            }
        }
        if !req.language.is_empty() && !is_language_code(&req.language) {
            v.add("language", "must be an ISO 639-1 code: two lower-case letters, e.g. \"kk\"");
        }
        if req.recipient_name.chars().count() > MAX_NAME_LEN || req.recipient_name.chars().any(char::is_control) {
            v.add("recipient_name", format!("must be one line of at most {MAX_NAME_LEN} characters"));
        }
        if source == Source::Admin {
            if !req.sealed_secret.is_empty() {
                v.add("sealed_secret", "is only for hand-offs between services; give secret");
            }
            if req.source_version != 0 {
                v.add("source_version", "is only for hand-offs between services; use expected_version");
            }
            if req.settings_changed_at.is_some() {
                v.add("settings_changed_at", "is only for hand-offs between services");
            }
        }
        if !req.secret.is_empty() && !req.sealed_secret.is_empty() {
            v.add("secret", "give secret or sealed_secret, not both");
        }
        if req.rotate_secret && (!req.secret.is_empty() || !req.sealed_secret.is_empty()) {
            v.add("rotate_secret", "generates a secret: give no secret with it");
        }
        let mut secret = None;
        if !req.secret.is_empty() {
            match WebhookSecret::parse(&req.secret) {
                Ok(s) => secret = Some(s),
                Err(why) => v.add("secret", why),
            }
        }
        v.into_result()?;
        if !req.sealed_secret.is_empty() {
            // A secret that does not open here is a key mismatch between intake and
            // notification: an operator's fix, after which the hand-off is retried.
            let sealed = std::str::from_utf8(&req.sealed_secret)
                .map_err(|_| NotificationError::invalid("sealed_secret", "is not a sealed secret"))?;
            secret = Some(
                self.secrets
                    .open_webhook_secret(sealed, &agency_callback_context(&req.agency_id))
                    .map_err(|e| NotificationError::Internal(e.context("cannot open the agency's sealed secret")))?,
            );
        }
        let channel = channel.expect("checked above");
        if source == Source::Admin && !channel.enabled() {
            return Err(NotificationError::FailedPrecondition(format!(
                "the {} channel is not configured in this deployment (email.smtp_url)",
                crate::channels::name(channel.kind() as i32)
            )));
        }
        Ok((audience, channel.kind(), secret))
    }

    /// Creates or changes a subscription.
    pub async fn put(&self, req: PutSubscriptionRequest, source: Source) -> Result<Subscription> {
        let (audience, kind, given) = self.check(&req, source)?;
        let signs = self.channels.get(kind as i32).is_some_and(|c| c.signs());
        let key = (audience as i32, req.agency_id.clone(), kind as i32);
        let txn = self.db.begin().await?;
        let find = || {
            subscription::Entity::find()
                .filter(subscription::Column::Audience.eq(key.0))
                .filter(subscription::Column::AgencyId.eq(key.1.clone()))
                .filter(subscription::Column::Channel.eq(key.2))
        };
        if !req.event_id.is_empty() && !inbox_first_time(&txn, &req.event_id).await? {
            let current = find().one(&txn).await?;
            txn.commit().await?;
            return current
                .map(|row| to_subscription(&row, None))
                .ok_or_else(|| NotificationError::NotFound(format!("subscription for event {}", req.event_id)));
        }
        let existing = find().lock_exclusive().one(&txn).await?;
        if let Some(row) = &existing {
            if req.expected_version != 0 && row.version as u64 != req.expected_version {
                return Err(NotificationError::Aborted(format!(
                    "the subscription is at version {}, not {}: read it again and retry",
                    row.version, req.expected_version
                )));
            }
            if source == Source::Intake && req.source_version != 0 && row.source_version as u64 >= req.source_version {
                // Stale, yet it may cover earlier messages than the newer change did.
                let overtaken = self.deliver_overtaken(&txn, &req, row, now_millis()).await?;
                txn.commit().await?;
                if overtaken > 0 {
                    self.scheduler.wake();
                }
                tracing::info!(subscription_id = %row.id, stale = req.source_version, applied = row.source_version, "stale subscription hand-off ignored");
                return Ok(to_subscription(row, None));
            }
        } else if req.expected_version != 0 {
            return Err(NotificationError::Aborted(format!(
                "no subscription at version {} exists: read it again and retry",
                req.expected_version
            )));
        }
        let now = now_millis();
        let (row, returned) = match existing {
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                let generated = (signs && given.is_none()).then(WebhookSecret::generate);
                let secret = match given.as_ref().or(generated.as_ref()) {
                    Some(s) => self.secrets.seal_webhook_secret(s, &secret_context(&id, "current")),
                    None => String::new(),
                };
                let row = subscription::Model {
                    id,
                    audience: key.0,
                    agency_id: key.1.clone(),
                    channel: key.2,
                    endpoint: req.endpoint.clone(),
                    language: if req.language.is_empty() { "en".into() } else { req.language.clone() },
                    recipient_name: req.recipient_name.trim().to_owned(),
                    secret,
                    previous_secret: String::new(),
                    previous_secret_expires_at: None,
                    version: 1,
                    source_version: req.source_version as i64,
                    created_at: now,
                    updated_at: now,
                };
                let inserted = subscription::ActiveModel::from(row).insert(&txn).await.map_err(concurrent)?;
                (inserted, generated)
            }
            Some(row) => {
                let generated = (signs && req.rotate_secret).then(WebhookSecret::generate);
                let mut active: subscription::ActiveModel = row.clone().into();
                if !req.endpoint.is_empty() {
                    active.endpoint = Set(req.endpoint.clone());
                }
                if !req.language.is_empty() {
                    active.language = Set(req.language.clone());
                }
                if !req.recipient_name.trim().is_empty() {
                    active.recipient_name = Set(req.recipient_name.trim().to_owned());
                }
                if let Some(new) = given.as_ref().or(generated.as_ref()) {
                    self.rotate(&mut active, &row, new, now)?;
                }
                active.version = Set(row.version + 1);
                active.source_version = Set(row.source_version.max(req.source_version as i64));
                active.updated_at = Set(now);
                (active.update(&txn).await?, generated)
            }
        };
        let overtaken = match source {
            Source::Intake => self.deliver_overtaken(&txn, &req, &row, now).await?,
            Source::Admin => 0,
        };
        txn.commit().await?;
        if overtaken > 0 {
            self.scheduler.wake();
        }
        tracing::info!(
            subscription_id = %row.id,
            audience = audience.as_str_name(),
            channel = kind.as_str_name(),
            agency_id = %row.agency_id,
            version = row.version,
            overtaken,
            "subscription set"
        );
        Ok(to_subscription(&row, returned.as_ref()))
    }

    /// Gives an agency subscription the agency's messages recorded since the settings that
    /// intake's hand-off carries changed (`settings_changed_at`) that it has no delivery of yet:
    /// hand-offs travel independently, so an acknowledgement or a decision may have overtaken the
    /// subscription on its way here and been kept with nowhere of the agency's to go. Every
    /// intake hand-off looks, stale ones too, since an older change relayed late may cover
    /// earlier messages than the newer one applied first; what already has a delivery here is
    /// left alone. Returns how many deliveries it added.
    async fn deliver_overtaken<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        req: &PutSubscriptionRequest,
        sub: &subscription::Model,
        now: i64,
    ) -> Result<usize> {
        let Some(since) = req.settings_changed_at.as_ref().map(millis_from_timestamp) else {
            return Ok(0);
        };
        let Some(channel) = self.channels.enabled(sub.channel) else {
            return Ok(0);
        };
        if sub.audience != Audience::Agency as i32 {
            return Ok(0);
        }
        lock_agency(conn, &sub.agency_id, "pg_advisory_xact_lock").await?;
        let backend = conn.get_database_backend();
        let overtaken = conn
            .query_all_raw(crs_platform::outbox::statement(
                backend,
                "SELECT m.notification_id, m.audience FROM messages m \
                 WHERE m.agency_id = $1 AND m.audience = $2 AND m.created_at >= $3 \
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.notification_id = m.notification_id \
                   AND d.audience = m.audience AND d.subscription_id = $4) \
                 ORDER BY m.created_at",
                vec![
                    sub.agency_id.clone().into(),
                    (Audience::Agency as i32).into(),
                    since.saturating_sub(CLOCK_SKEW_ALLOWANCE_MS).into(),
                    sub.id.clone().into(),
                ],
            ))
            .await?;
        let complete = channel.complete_when_recorded();
        let mut rows = Vec::with_capacity(overtaken.len());
        for m in &overtaken {
            let (notification_id, audience): (String, i32) =
                (m.try_get("", "notification_id")?, m.try_get("", "audience")?);
            rows.push(delivery::ActiveModel::from(delivery::Model::new(
                &notification_id,
                audience,
                sub,
                complete,
                now,
                None,
            )));
        }
        let added = rows.len();
        // Within both backends' bounds on the parameters of one statement.
        while !rows.is_empty() {
            let rest = rows.split_off(rows.len().min(DELIVERY_ROWS_PER_INSERT));
            delivery::Entity::insert_many(std::mem::replace(&mut rows, rest)).exec_without_returning(conn).await?;
        }
        if added > 0 {
            tracing::info!(subscription_id = %sub.id, agency_id = %sub.agency_id, added, "messages that overtook the agency's subscription are delivered to it");
        }
        Ok(added)
    }

    /// Makes `new` the current secret; the current one (if different) signs beside it until the
    /// overlap ends.
    fn rotate(
        &self,
        active: &mut subscription::ActiveModel,
        row: &subscription::Model,
        new: &WebhookSecret,
        now: i64,
    ) -> Result<()> {
        let current = if row.secret.is_empty() {
            None
        } else {
            Some(self.secrets.open_webhook_secret(&row.secret, &secret_context(&row.id, "current"))?)
        };
        if current.as_ref() == Some(new) {
            return Ok(());
        }
        active.secret = Set(self.secrets.seal_webhook_secret(new, &secret_context(&row.id, "current")));
        match current {
            Some(old) => {
                active.previous_secret =
                    Set(self.secrets.seal_webhook_secret(&old, &secret_context(&row.id, "previous")));
                active.previous_secret_expires_at = Set(Some(now + self.overlap_ms));
            }
            None => {
                active.previous_secret = Set(String::new());
                active.previous_secret_expires_at = Set(None);
            }
        }
        Ok(())
    }

    pub async fn list(&self, principal: &Principal, req: ListSubscriptionsRequest) -> Result<Vec<Subscription>> {
        crs_platform::auth::require_role(principal, &[Role::Admin])?;
        let mut cond = Condition::all();
        if req.audience != 0 {
            cond = cond.add(subscription::Column::Audience.eq(req.audience));
        }
        if !req.agency_id.is_empty() {
            cond = cond.add(subscription::Column::AgencyId.eq(req.agency_id));
        }
        if req.channel != 0 {
            cond = cond.add(subscription::Column::Channel.eq(req.channel));
        }
        let rows = subscription::Entity::find()
            .filter(cond)
            .order_by_asc(subscription::Column::Audience)
            .order_by_asc(subscription::Column::AgencyId)
            .order_by_asc(subscription::Column::Channel)
            .all(&self.db)
            .await?;
        Ok(rows.iter().map(|r| to_subscription(r, None)).collect())
    }
}

/// A concurrent creation of the same subscription won the race.
fn concurrent(e: sea_orm::DbErr) -> NotificationError {
    if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) {
        NotificationError::Aborted("the subscription was created concurrently: retry".into())
    } else {
        e.into()
    }
}

pub fn to_subscription(row: &subscription::Model, secret: Option<&WebhookSecret>) -> Subscription {
    Subscription {
        id: row.id.clone(),
        audience: row.audience,
        agency_id: row.agency_id.clone(),
        endpoint: row.endpoint.clone(),
        has_secret: !row.secret.is_empty(),
        channel: row.channel,
        language: row.language.clone(),
        version: row.version as u64,
        secret: secret.map(|s| s.encoded().to_string()).unwrap_or_default(),
        updated_at: Some(timestamp_from_millis(row.updated_at)),
        recipient_name: row.recipient_name.clone(),
        previous_secret_expires_at: row
            .previous_secret_expires_at
            .filter(|at| *at > now_millis())
            .map(timestamp_from_millis),
    }
}

/// Seals the webhook secrets an earlier version stored in plain text. A secret that is a
/// Standard Webhooks secret, or 24 or more bytes (used as the key as they are, as before), keeps
/// working. A shorter or missing one cannot sign as the specification requires: a new secret is
/// generated, and the log says to rotate it and hand it to the receiver, whose checks fail until
/// then (deliveries retry meanwhile).
pub async fn seal_legacy_secrets(db: &DatabaseConnection, secrets: &SecretBox) -> anyhow::Result<()> {
    let rows = subscription::Entity::find()
        .filter(subscription::Column::Channel.eq(ChannelKind::Webhook as i32))
        .all(db)
        .await?;
    for row in rows.into_iter().filter(|r| !is_sealed(&r.secret)) {
        let secret = WebhookSecret::from_legacy(&row.secret).unwrap_or_else(|| {
            tracing::warn!(
                subscription_id = %row.id,
                "this webhook subscription's secret was missing or shorter than Standard Webhooks allows; \
                 a new one was generated: rotate it (PutSubscription with rotate_secret) and give it to the receiver"
            );
            WebhookSecret::generate()
        });
        let mut active: subscription::ActiveModel = row.clone().into();
        active.secret = Set(secrets.seal_webhook_secret(&secret, &secret_context(&row.id, "current")));
        active.update(db).await?;
        tracing::info!(subscription_id = %row.id, "webhook secret sealed");
    }
    Ok(())
}
