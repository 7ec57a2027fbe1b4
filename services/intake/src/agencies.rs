//! Agencies and credentials, managed by admins: agency records, token issue and revocation,
//! suspension (which revokes every token of the agency at once).

use crs_platform::FieldViolations;
use crs_platform::auth::{self, Principal, Role};
use crs_platform::paging;
use crs_platform::revocation::Revoked;
use crs_platform::secrets::{SecretBox, WebhookSecret, agency_callback_context, is_sealed};
use crs_platform::time::now_millis;
use crs_proto::common::{Category, LegalInstrument};
use crs_proto::intake::*;
use crs_proto::notification::{Audience, Channel, PutSubscriptionRequest};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};

use crate::entities::{agency, issued_token, revocation};
use crate::error::IntakeError;
use crate::service::{Intake, Result};
use crate::validate;
use crate::views::to_agency;

const DEFAULT_TOKEN_TTL_SECS: u64 = 24 * 3600;
const MAX_TOKEN_TTL_SECS: u64 = crs_platform::revocation::MAX_TOKEN_TTL_SECS as u64;

/// The agency fields that creation and update share, for validation.
struct AgencyFields<'a> {
    contact_email: &'a str,
    callback_url: &'a str,
    callback_secret: &'a str,
    language: &'a str,
    instruments: &'a [i32],
    categories: &'a [i32],
    tier: &'a str,
}

impl<'a> From<&'a CreateAgencyRequest> for AgencyFields<'a> {
    fn from(r: &'a CreateAgencyRequest) -> Self {
        AgencyFields {
            contact_email: &r.contact_email,
            callback_url: &r.callback_url,
            callback_secret: &r.callback_secret,
            language: &r.language,
            instruments: &r.allowed_instruments,
            categories: &r.allowed_categories,
            tier: &r.rate_limit_tier,
        }
    }
}

impl<'a> From<&'a UpdateAgencyRequest> for AgencyFields<'a> {
    fn from(r: &'a UpdateAgencyRequest) -> Self {
        AgencyFields {
            contact_email: &r.contact_email,
            callback_url: &r.callback_url,
            callback_secret: &r.callback_secret,
            language: &r.language,
            instruments: &r.allowed_instruments,
            categories: &r.allowed_categories,
            tier: &r.rate_limit_tier,
        }
    }
}

/// An agency's language when none is given.
const DEFAULT_LANGUAGE: &str = "en";

/// A language code as agencies give it: ISO 639-1, two lower-case letters.
pub(crate) fn is_language_code(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_lowercase())
}

impl Intake {
    fn check_agency_fields(&self, v: &mut FieldViolations, f: AgencyFields<'_>) {
        let AgencyFields { contact_email, callback_url, callback_secret, language, instruments, categories, tier } = f;
        validate::check_line(v, "contact_email", contact_email, self.limits.max_string_len, false);
        if !contact_email.is_empty() && !contact_email.contains('@') {
            v.add("contact_email", "must be an email address");
        }
        if !callback_url.is_empty()
            && let Err(why) = validate::normalise_url(callback_url, self.limits.max_string_len)
        {
            v.add("callback_url", why);
        }
        if !callback_secret.is_empty()
            && let Err(why) = WebhookSecret::parse(callback_secret)
        {
            v.add("callback_secret", why);
        }
        if !language.is_empty() && !is_language_code(language) {
            v.add("language", "must be an ISO 639-1 code: two lower-case letters, e.g. \"kk\"");
        }
        for (i, x) in instruments.iter().enumerate() {
            if !matches!(LegalInstrument::try_from(*x), Ok(k) if k != LegalInstrument::Unspecified) {
                v.add(format!("allowed_instruments[{i}]"), "must be a known legal instrument");
            }
        }
        for (i, x) in categories.iter().enumerate() {
            if !matches!(Category::try_from(*x), Ok(k) if k != Category::Unspecified) {
                v.add(format!("allowed_categories[{i}]"), "must be a known category");
            }
        }
        validate::check_line(v, "rate_limit_tier", tier, 64, false);
    }

    pub(crate) async fn create_agency(&self, principal: Principal, req: CreateAgencyRequest) -> Result<Agency> {
        auth::require_role(&principal, &[Role::Admin])?;
        let mut v = FieldViolations::new();
        validate::check_line(&mut v, "name", &req.name, self.limits.max_string_len, true);
        if !crs_domain::vocab::is_country_code(&req.jurisdiction) {
            v.add("jurisdiction", crs_domain::vocab::COUNTRY_CODE_RULE);
        }
        self.check_agency_fields(&mut v, (&req).into());
        v.into_result()?;

        let now = now_millis();
        let id = uuid::Uuid::now_v7().to_string();
        // A callback without a secret gets one, returned once in this reply.
        let (secret, generated) = match req.callback_secret.as_str() {
            "" if req.callback_url.is_empty() => (None, None),
            "" => {
                let s = WebhookSecret::generate();
                (Some(s.clone()), Some(s))
            }
            given => {
                (Some(WebhookSecret::parse(given).map_err(|why| IntakeError::invalid("callback_secret", why))?), None)
            }
        };
        let row = agency::Model {
            id: id.clone(),
            name: req.name.trim().to_owned(),
            jurisdiction: req.jurisdiction.clone(),
            contact_email: req.contact_email.clone(),
            callback_url: req.callback_url.clone(),
            callback_secret: secret.map(|s| seal(&self.secrets, &id, &s)).unwrap_or_default(),
            language: if req.language.is_empty() { DEFAULT_LANGUAGE.into() } else { req.language.clone() },
            settings_version: 1,
            allowed_instruments: serde_json::to_string(&req.allowed_instruments).expect("numbers serialise"),
            allowed_categories: serde_json::to_string(&req.allowed_categories).expect("numbers serialise"),
            status: AgencyStatus::Active as i32,
            rate_limit_tier: if req.rate_limit_tier.is_empty() {
                crate::limits::DEFAULT_TIER.into()
            } else {
                req.rate_limit_tier.clone()
            },
            rate_limit_overrides: "[]".into(),
            event_seq: 0,
            created_at: now,
            updated_at: now,
        };
        let txn = self.db.begin().await?;
        agency::ActiveModel::from(row.clone()).insert(&txn).await?;
        self.subscribe(&txn, &row).await?;
        txn.commit().await?;
        self.outbox.wake();
        tracing::info!(agency_id = %row.id, jurisdiction = %row.jurisdiction, "agency created");
        Ok(with_secret(to_agency(&row), generated.as_ref()))
    }

    /// Tells notification how this agency is to be told things: at its callback (a signed
    /// webhook, the secret sealed as stored) and at its contact address (email), in its
    /// language, each change carrying the agency's settings version so an older hand-off
    /// relayed late never undoes a newer one.
    async fn subscribe<C: sea_orm::ConnectionTrait>(&self, conn: &C, row: &agency::Model) -> Result<()> {
        let channels = [
            (Channel::Webhook, &row.callback_url, row.callback_secret.as_bytes().to_vec()),
            (Channel::Email, &row.contact_email, Vec::new()),
        ];
        for (channel, endpoint, sealed_secret) in channels {
            if endpoint.is_empty() {
                continue;
            }
            self.outbox
                .send(
                    conn,
                    &PutSubscriptionRequest {
                        audience: Audience::Agency as i32,
                        agency_id: row.id.clone(),
                        endpoint: endpoint.clone(),
                        channel: channel as i32,
                        language: row.language.clone(),
                        recipient_name: row.name.clone(),
                        source_version: row.settings_version as u64,
                        settings_changed_at: Some(crs_platform::time::timestamp_from_millis(row.updated_at)),
                        sealed_secret,
                        ..Default::default()
                    },
                )
                .await?;
        }
        Ok(())
    }

    async fn agency(&self, id: &str) -> Result<agency::Model> {
        agency::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| IntakeError::NotFound { kind: "agency", id: id.to_owned() })
    }

    /// Empty fields keep their value; a non-empty list replaces the old one.
    pub(crate) async fn update_agency(&self, principal: Principal, req: UpdateAgencyRequest) -> Result<Agency> {
        auth::require_role(&principal, &[Role::Admin])?;
        let mut v = FieldViolations::new();
        validate::check_line(&mut v, "name", &req.name, self.limits.max_string_len, false);
        self.check_agency_fields(&mut v, (&req).into());
        v.into_result()?;
        let row = self.agency(&req.agency_id).await?;
        let mut active: agency::ActiveModel = row.clone().into();
        if !req.name.trim().is_empty() {
            active.name = Set(req.name.trim().to_owned());
        }
        if !req.contact_email.is_empty() {
            active.contact_email = Set(req.contact_email.clone());
        }
        let settings_changed = (!req.name.trim().is_empty() && req.name.trim() != row.name)
            || (!req.contact_email.is_empty() && req.contact_email != row.contact_email)
            || (!req.callback_url.is_empty() && req.callback_url != row.callback_url)
            || !req.callback_secret.is_empty()
            || (!req.language.is_empty() && req.language != row.language);
        if !req.callback_url.is_empty() {
            active.callback_url = Set(req.callback_url.clone());
        }
        if !req.language.is_empty() {
            active.language = Set(req.language.clone());
        }
        // A new secret, or a first callback without one (generated, returned once).
        let generated =
            (req.callback_secret.is_empty() && row.callback_secret.is_empty() && !req.callback_url.is_empty())
                .then(WebhookSecret::generate);
        let new_secret = match req.callback_secret.as_str() {
            "" => generated.clone(),
            given => Some(WebhookSecret::parse(given).map_err(|why| IntakeError::invalid("callback_secret", why))?),
        };
        if let Some(secret) = &new_secret {
            active.callback_secret = Set(seal(&self.secrets, &row.id, secret));
        }
        if settings_changed {
            active.settings_version = Set(row.settings_version + 1);
        }
        if !req.allowed_instruments.is_empty() {
            active.allowed_instruments =
                Set(serde_json::to_string(&req.allowed_instruments).expect("numbers serialise"));
        }
        if !req.allowed_categories.is_empty() {
            active.allowed_categories = Set(serde_json::to_string(&req.allowed_categories).expect("numbers serialise"));
        }
        if !req.rate_limit_tier.is_empty() {
            active.rate_limit_tier = Set(req.rate_limit_tier.clone());
        }
        active.updated_at = Set(now_millis());
        let txn = self.db.begin().await?;
        let updated = active.update(&txn).await?;
        if settings_changed {
            self.subscribe(&txn, &updated).await?;
        }
        txn.commit().await?;
        self.outbox.wake();
        tracing::info!(agency_id = %updated.id, settings_version = updated.settings_version, "agency updated");
        Ok(with_secret(to_agency(&updated), generated.as_ref()))
    }

    /// Suspends the agency: its tokens stop working in every service within seconds.
    pub(crate) async fn suspend_agency(&self, principal: Principal, req: SuspendAgencyRequest) -> Result<Agency> {
        auth::require_role(&principal, &[Role::Admin])?;
        let mut v = FieldViolations::new();
        validate::check_text(&mut v, "reason", &req.reason, self.limits.max_text_len, false);
        v.into_result()?;
        let row = self.agency(&req.agency_id).await?;
        let subject = Principal::Agency { id: row.id.clone() }.subject();
        let now = now_millis();
        let txn = self.db.begin().await?;
        let mut active: agency::ActiveModel = row.into();
        active.status = Set(AgencyStatus::Suspended as i32);
        active.updated_at = Set(now);
        let updated = active.update(&txn).await?;
        // Every token of a suspended agency, whenever issued.
        let revoked = Revoked::Subject { subject, before: crs_platform::revocation::FOREVER };
        record_revocation(&txn, &revoked, &principal, now).await?;
        txn.commit().await?;
        self.publish(&[revoked]).await;
        tracing::warn!(agency_id = %updated.id, by = %principal.subject(), "agency suspended");
        Ok(to_agency(&updated))
    }

    /// Replaces the agency's rate-limit overrides; the next submission uses them, in every
    /// replica, since the limits are read with the agency's row.
    pub(crate) async fn set_rate_limit_overrides(
        &self,
        principal: Principal,
        req: SetRateLimitOverridesRequest,
    ) -> Result<Agency> {
        auth::require_role(&principal, &[Role::Admin])?;
        let overrides = crate::limits::validate_overrides(&req.overrides)?;
        let row = self.agency(&req.agency_id).await?;
        let mut active: agency::ActiveModel = row.into();
        active.rate_limit_overrides = Set(serde_json::to_string(&overrides).expect("overrides serialise"));
        active.updated_at = Set(now_millis());
        let updated = active.update(&self.db).await?;
        tracing::info!(agency_id = %updated.id, overrides = ?overrides, by = %principal.subject(), "rate-limit overrides set");
        Ok(to_agency(&updated))
    }

    pub(crate) async fn get_agency(&self, principal: Principal, req: GetAgencyRequest) -> Result<Agency> {
        auth::require_role(&principal, &[Role::Admin])?;
        Ok(to_agency(&self.agency(&req.agency_id).await?))
    }

    pub(crate) async fn list_agencies(
        &self,
        principal: Principal,
        req: ListAgenciesRequest,
    ) -> Result<ListAgenciesResponse> {
        auth::require_role(&principal, &[Role::Admin])?;
        if !req.jurisdiction.is_empty() && !crs_domain::vocab::is_country_code(&req.jurisdiction) {
            return Err(IntakeError::invalid("jurisdiction", crs_domain::vocab::COUNTRY_CODE_RULE));
        }
        let size = paging::page_size(req.page_size);
        let after = paging::decode(&req.page_token, "agencies", &req.jurisdiction)?;
        let mut cond = Condition::all();
        if !req.jurisdiction.is_empty() {
            cond = cond.add(agency::Column::Jurisdiction.eq(req.jurisdiction.clone()));
        }
        if let Some(id) = after.and_then(|p| p.into_iter().next()) {
            cond = cond.add(agency::Column::Id.gt(id));
        }
        let rows =
            agency::Entity::find().filter(cond).order_by_asc(agency::Column::Id).limit(size + 1).all(&self.db).await?;
        let more = rows.len() as u64 > size;
        let rows: Vec<_> = rows.into_iter().take(size as usize).collect();
        Ok(ListAgenciesResponse {
            next_page_token: match (more, rows.last()) {
                (true, Some(last)) => paging::encode("agencies", &req.jurisdiction, &[&last.id]),
                _ => String::new(),
            },
            agencies: rows.iter().map(to_agency).collect(),
        })
    }

    pub(crate) async fn issue_token(&self, principal: Principal, req: IssueTokenRequest) -> Result<IssueTokenResponse> {
        auth::require_role(&principal, &[Role::Admin])?;
        let subject = Principal::from_subject(&req.subject, &req.roles).ok_or_else(|| {
            IntakeError::invalid("subject", "must be agency:<id> or reviewer:<id> (with known roles)")
        })?;
        if let Principal::Service { .. } = subject {
            return Err(IntakeError::invalid(
                "subject",
                "service principals prove themselves with their own keys; tokens are issued to agencies and reviewers",
            ));
        }
        if let Principal::Agency { id } = &subject {
            let agency = self.agency(id).await.map_err(|_| IntakeError::invalid("subject", "names no agency"))?;
            if agency.status != AgencyStatus::Active as i32 {
                return Err(IntakeError::invalid("subject", "names a suspended agency"));
            }
        }
        if req.ttl_seconds > MAX_TOKEN_TTL_SECS {
            return Err(IntakeError::invalid("ttl_seconds", format!("at most {MAX_TOKEN_TTL_SECS}")));
        }
        let ttl = if req.ttl_seconds == 0 { DEFAULT_TOKEN_TTL_SECS } else { req.ttl_seconds };
        let issued = self.issuer.issue(&subject, ttl).map_err(IntakeError::Internal)?;
        issued_token::ActiveModel::from(issued_token::Model {
            token_id: issued.token_id.clone(),
            subject: subject.subject(),
            issued_by: principal.subject(),
            expires_at: issued.expires_at,
            revoked_at: None,
        })
        .insert(&self.db)
        .await?;
        tracing::info!(subject = %subject.subject(), token_id = %issued.token_id, by = %principal.subject(), "token issued");
        Ok(IssueTokenResponse {
            token: issued.token,
            token_id: issued.token_id,
            expires_at: Some(prost_types::Timestamp { seconds: issued.expires_at, nanos: 0 }),
        })
    }

    /// Revokes one token by id, or every token of a subject issued until now. A token id this
    /// service did not issue (a development token, say) is revoked for the longest lifetime a
    /// token can have.
    pub(crate) async fn revoke_token(
        &self,
        principal: Principal,
        req: RevokeTokenRequest,
    ) -> Result<RevokeTokenResponse> {
        auth::require_role(&principal, &[Role::Admin])?;
        let mut v = FieldViolations::new();
        match (req.token_id.is_empty(), req.subject.is_empty()) {
            (false, true) => validate::check_token(&mut v, "token_id", &req.token_id, 128),
            (true, false) => {
                if Principal::from_subject(&req.subject, &[]).is_none_or(|p| matches!(p, Principal::Service { .. })) {
                    v.add("subject", "must be agency:<id> or reviewer:<id>");
                }
            }
            _ => v.add("token_id", "give exactly one of token_id or subject"),
        }
        v.into_result()?;
        let now = now_millis();
        let txn = self.db.begin().await?;
        let revoked = if req.subject.is_empty() {
            let expires_at = match issued_token::Entity::find_by_id(req.token_id.clone()).one(&txn).await? {
                Some(token) => {
                    let expires_at = token.expires_at;
                    let mut active: issued_token::ActiveModel = token.into();
                    active.revoked_at = Set(Some(now));
                    active.update(&txn).await?;
                    expires_at
                }
                None => now / 1000 + MAX_TOKEN_TTL_SECS as i64,
            };
            Revoked::Token { token_id: req.token_id.clone(), expires_at }
        } else {
            Revoked::Subject { subject: req.subject.clone(), before: now / 1000 }
        };
        record_revocation(&txn, &revoked, &principal, now).await?;
        txn.commit().await?;
        self.publish(&[revoked]).await;
        tracing::warn!(token_id = %req.token_id, subject = %req.subject, by = %principal.subject(), "revoked");
        Ok(RevokeTokenResponse {})
    }

    /// Sends revocations to every service; if Redis is away, the periodic re-publish catches up.
    async fn publish(&self, revoked: &[Revoked]) {
        let version = match self.revocation_version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the revocation version; the re-publish will send it");
                self.revocations.add(revoked);
                return;
            }
        };
        if let Err(e) = self.revocations.publish(&self.redis, revoked, version).await {
            tracing::warn!(error = %e, "revocation recorded but not yet distributed; will retry");
        }
    }

    /// The list's version: when its latest entry was recorded.
    async fn revocation_version(&self) -> Result<i64> {
        Ok(revocation::Entity::find()
            .select_only()
            .column_as(revocation::Column::RevokedAt.max(), "v")
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await?
            .flatten()
            .unwrap_or(0))
    }

    /// Every revocation still in force, and the list's version.
    async fn revocations_in_force(&self) -> Result<(Vec<Revoked>, i64)> {
        let now = now_millis() / 1000;
        let rows = revocation::Entity::find()
            .filter(
                Condition::any()
                    .add(revocation::Column::ExpiresAt.is_null())
                    .add(revocation::Column::ExpiresAt.gt(now)),
            )
            .all(&self.db)
            .await?;
        let revoked = rows
            .into_iter()
            .filter_map(|r| match (r.entry.split_once(':'), r.expires_at) {
                (Some(("token", id)), Some(expires_at)) => Some(Revoked::Token { token_id: id.to_owned(), expires_at }),
                (Some(("subject", s)), None) => {
                    Some(Revoked::Subject { subject: s.to_owned(), before: crs_platform::revocation::FOREVER })
                }
                (Some(("subject", s)), Some(_)) => {
                    Some(Revoked::Subject { subject: s.to_owned(), before: r.revoked_at / 1000 })
                }
                _ => None,
            })
            .collect();
        Ok((revoked, self.revocation_version().await?))
    }

    /// Loads the list from the database into this process (intake knows it before any call).
    pub(crate) async fn load_revocations(&self) -> Result<()> {
        let (revoked, version) = self.revocations_in_force().await?;
        self.revocations.load(&revoked, version);
        if let Err(e) = self.revocations.publish(&self.redis, &revoked, version).await {
            tracing::warn!(error = %e, "revocation list not yet distributed; will retry");
        }
        Ok(())
    }

    /// Publishes every revocation still in force (after a Redis restart the list is rebuilt).
    pub(crate) async fn republish_revocations(&self) -> Result<()> {
        let (revoked, version) = self.revocations_in_force().await?;
        self.revocations.publish(&self.redis, &revoked, version).await.map_err(IntakeError::Internal)
    }
}

/// Keeps a revocation in intake's database, the list's truth. A subject revoked again keeps the
/// later moment.
async fn record_revocation<C: sea_orm::ConnectionTrait>(
    conn: &C,
    revoked: &Revoked,
    by: &Principal,
    now: i64,
) -> Result<()> {
    let (entry, expires_at) = match revoked {
        Revoked::Token { token_id, expires_at } => (format!("token:{token_id}"), Some(*expires_at)),
        Revoked::Subject { subject, before } if *before >= crs_platform::revocation::FOREVER => {
            (format!("subject:{subject}"), None)
        }
        Revoked::Subject { subject, before } => {
            (format!("subject:{subject}"), Some(before + crs_platform::revocation::MAX_TOKEN_TTL_SECS))
        }
    };
    let row = revocation::Model { entry: entry.clone(), expires_at, revoked_by: by.subject(), revoked_at: now };
    match revocation::Entity::find_by_id(entry).one(conn).await? {
        Some(existing) => {
            // A revocation for good (a suspension) is never narrowed to "tokens until now".
            let expires_at =
                if existing.expires_at.is_none() && existing.entry.starts_with("subject:") { None } else { expires_at };
            let mut active: revocation::ActiveModel = existing.into();
            active.expires_at = Set(expires_at);
            active.revoked_by = Set(by.subject());
            active.revoked_at = Set(now);
            active.update(conn).await?;
        }
        None => {
            revocation::ActiveModel::from(row).insert(conn).await?;
        }
    }
    Ok(())
}

/// Seals an agency's callback secret as stored and as handed to notification.
fn seal(secrets: &SecretBox, agency_id: &str, secret: &WebhookSecret) -> String {
    secrets.seal_webhook_secret(secret, &agency_callback_context(agency_id))
}

/// The reply to the call that generated the secret: the only time it is shown.
fn with_secret(mut agency: Agency, generated: Option<&WebhookSecret>) -> Agency {
    if let Some(secret) = generated {
        agency.callback_secret = secret.encoded().to_string();
    }
    agency
}

/// Seals what earlier versions kept in plain text: agencies' callback secrets, and the secrets in
/// subscription hand-offs still waiting in the outbox (or dead-lettered there). A secret too
/// short to keep is dropped, and the agency needs a new one (UpdateAgency), as the log says.
pub(crate) async fn seal_legacy_secrets(db: &sea_orm::DatabaseConnection, secrets: &SecretBox) -> anyhow::Result<()> {
    let rows = agency::Entity::find().filter(agency::Column::CallbackSecret.ne("")).all(db).await?;
    for row in rows.into_iter().filter(|r| !is_sealed(&r.callback_secret)) {
        let sealed = match WebhookSecret::from_legacy(&row.callback_secret) {
            Some(secret) => seal(secrets, &row.id, &secret),
            None => {
                tracing::warn!(
                    agency_id = %row.id,
                    "the agency's callback secret is shorter than Standard Webhooks allows and was dropped; \
                     give it a new one with UpdateAgency"
                );
                String::new()
            }
        };
        let mut active: agency::ActiveModel = row.clone().into();
        active.callback_secret = Set(sealed);
        active.update(db).await?;
    }

    use crs_platform::outbox::statement;
    use prost::Message as _;
    use sea_orm::ConnectionTrait as _;
    let backend = db.get_database_backend();
    let pending = db
        .query_all_raw(statement(
            backend,
            "SELECT id, payload FROM outbox WHERE topic = $1",
            vec![<PutSubscriptionRequest as crs_proto::InternalCall>::METHOD.into()],
        ))
        .await?;
    for row in pending {
        let (id, payload): (String, Vec<u8>) = (row.try_get("", "id")?, row.try_get("", "payload")?);
        let Ok(mut handoff) = PutSubscriptionRequest::decode(payload.as_slice()) else { continue };
        if handoff.secret.is_empty() {
            continue;
        }
        handoff.sealed_secret = WebhookSecret::from_legacy(&handoff.secret)
            .map(|secret| seal(secrets, &handoff.agency_id, &secret).into_bytes())
            .unwrap_or_default();
        handoff.secret.clear();
        db.execute_raw(statement(
            backend,
            "UPDATE outbox SET payload = $1 WHERE id = $2",
            vec![sea_orm::Value::Bytes(Some(handoff.encode_to_vec())), id.into()],
        ))
        .await?;
    }
    Ok(())
}
