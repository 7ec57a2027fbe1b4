//! Submissions: validated, rate-limited, stored with their hand-offs in one transaction (shared
//! with concurrent submissions, see `crate::group_commit`), and answered from storage when
//! retried with the same idempotency key.

use crs_platform::auth;
use crs_platform::auth::Principal;
use crs_platform::outbox::OutboxBatch;
use crs_platform::time::now_millis;
use crs_proto::common::{ItemOutcome, RequestStatus};
use crs_proto::intake::*;
use crs_proto::notification::{NotificationKind, NotifyRequest};
use crs_proto::triage::AssessRequestRequest;
use prost::Message;
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, JoinType, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, IdenStatic, QueryFilter, Statement,
};
use sha2::{Digest, Sha256};

use crate::entities::{agency, request, request_item};
use crate::error::IntakeError;
use crate::group_commit::{Stored, Submission};
use crate::service::{Intake, Result};
use crate::validate;
use crate::views::{to_government_request, to_submission};

/// Idempotency keys past their retention are rewritten with this prefix, freeing the key.
use crate::retention::EXPIRED_KEY_PREFIX;

impl Intake {
    /// Validates, checks the rate limits, and stores the request with its hand-offs. A retry of
    /// an accepted request is answered from storage and consumes no limit, nor does a
    /// submission that is not stored; the decision comes back so the caller sees
    /// `x-ratelimit-*`.
    pub(crate) async fn submit(
        &self,
        principal: Principal,
        req: SubmitRequestRequest,
        admitted: crate::admission::Admitted,
    ) -> Result<(SubmitRequestResponse, Option<crs_ratelimit::Decision>)> {
        let started = tokio::time::Instant::now();
        let (agency, holder) = self.calling_agency_and_key(&principal, &req.idempotency_key).await?;
        let valid = validate::submission(&req, &agency, &self.limits)?;
        let body_hash = body_hash(&req);

        if let Some(existing) = holder {
            return Ok((self.replay(existing, &body_hash, &req.idempotency_key).await?, None));
        }

        let rules = crate::limits::rules(&self.rate_limits, &agency, crate::limits::is_binding(req.legal_instrument));
        let decision = self.limiter.check(&rules, 1).await;
        if !decision.allowed {
            // A concurrent twin of this call may have been accepted meanwhile: answer as it was.
            if let Some(existing) = self.find_by_key(&agency.id, &req.idempotency_key).await? {
                return Ok((self.replay(existing, &body_hash, &req.idempotency_key).await?, None));
            }
            tracing::info!(agency_id = %agency.id, rule = %decision.tightest().name, "submission rate-limited");
            return Err(IntakeError::RateLimited(Box::new(decision)));
        }

        // Only stored requests count against the limits: given back if this one is not
        // (its caller gone, a failure, or a concurrent retry stored first).
        let charge = crs_ratelimit::Charge::new(self.limiter.clone(), &decision, 1);
        let now = now_millis();
        let id = uuid::Uuid::now_v7().to_string();
        let row = request::Model {
            id: id.clone(),
            agency_id: agency.id.clone(),
            idempotency_key: req.idempotency_key.clone(),
            body_hash,
            jurisdiction: req.jurisdiction.clone(),
            legal_instrument: req.legal_instrument,
            category: req.category,
            keywords: serde_json::to_string(&req.keywords).expect("numbers serialise"),
            requested_action: req.requested_action,
            legal_basis: req.legal_basis.clone(),
            justification: req.justification.clone(),
            reference: req.reference.clone(),
            issuing_authority: req.issuing_authority.clone(),
            status: RequestStatus::Received as i32,
            status_at: now,
            status_note: String::new(),
            pending_question: String::new(),
            deadline: None,
            status_version: 0,
            received_at: now,
            updated_at: now,
        };
        let items: Vec<request_item::Model> = valid
            .items
            .into_iter()
            .enumerate()
            .map(|(i, item)| request_item::Model {
                request_id: id.clone(),
                item_index: i as i32,
                url: item.url,
                content_id: item.content_id,
                description: item.description,
                content_key: item.content_key,
                outcome: ItemOutcome::Pending as i32,
                no_action_reason: 0,
                explanation: String::new(),
            })
            .collect();
        let mut submission = to_submission(&row, &items);
        // Content owners are told which authority asked, by name.
        submission.agency_name = agency.name.clone();
        submission.language = req.content_language.clone();

        let mut handoffs = OutboxBatch::default();
        handoffs.send(&AssessRequestRequest { event_id: String::new(), submission: Some(submission.clone()) });
        handoffs.send(&NotifyRequest {
            kind: NotificationKind::Acknowledged as i32,
            submission: Some(submission),
            message: "request received".into(),
            ..Default::default()
        });
        crate::metrics::STAGE_CHECKS.observe(started.elapsed().as_secs_f64());
        let stored =
            self.group_commit.store(Submission { row: row.clone(), items: items.clone(), handoffs }, charge).await?;
        if stored == Stored::KeyTaken {
            // A concurrent retry with the same key won the race: answer as it did.
            let existing = self.find_by_key(&agency.id, &req.idempotency_key).await?.ok_or_else(|| {
                IntakeError::Internal(anyhow::anyhow!("idempotency key conflict but no request found"))
            })?;
            return Ok((self.replay(existing, &row.body_hash, &req.idempotency_key).await?, None));
        }
        admitted.stored();
        tracing::info!(request_id = %row.id, agency_id = %row.agency_id, items = items.len(), "request received");
        Ok((
            SubmitRequestResponse { request: Some(to_government_request(&row, &items)), replayed: false },
            Some(decision),
        ))
    }

    /// Wakes the relay and open streams after a commit.
    pub(crate) fn committed(&self) {
        self.outbox.wake();
        self.events.notify_waiters();
    }

    /// The calling agency, if active, and the live request holding `key` for it: the two reads
    /// every submission starts with, in one statement.
    async fn calling_agency_and_key(
        &self,
        principal: &Principal,
        key: &str,
    ) -> Result<(agency::Model, Option<request::Model>)> {
        let id = auth::require_agency(principal)?;
        let row = self
            .db
            .query_one_raw(agency_and_key_statement(self.db.get_database_backend(), id, key))
            .await?
            .ok_or_else(|| auth::AuthError::Invalid(format!("unknown agency {id}")))?;
        let agency = crate::service::active(agency::Model::from_query_result(&row, AGENCY)?)?;
        let holder = match row.try_get::<Option<String>>(HOLDER, request::Column::Id.as_str())? {
            Some(_) => Some(request::Model::from_query_result(&row, HOLDER)?),
            None => None,
        };
        Ok((agency, self.live(holder).await?))
    }

    /// The live request holding `key` for the agency. A key older than the retention period is
    /// released first, so it can name a new request.
    async fn find_by_key(&self, agency_id: &str, key: &str) -> Result<Option<request::Model>> {
        let found = request::Entity::find()
            .filter(request::Column::AgencyId.eq(agency_id))
            .filter(request::Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await?;
        self.live(found).await
    }

    /// The request holding an idempotency key, unless the key is past its retention: then it is
    /// released, so it can name a new request.
    async fn live(&self, found: Option<request::Model>) -> Result<Option<request::Model>> {
        match found {
            Some(row) if row.received_at < now_millis() - self.idempotency_secs * 1000 => {
                self.expire_key(&row.id).await?;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    async fn expire_key(&self, request_id: &str) -> Result<()> {
        request::Entity::update_many()
            .col_expr(request::Column::IdempotencyKey, Expr::value(format!("{EXPIRED_KEY_PREFIX}{request_id}")))
            .filter(request::Column::Id.eq(request_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn replay(&self, existing: request::Model, body_hash: &str, key: &str) -> Result<SubmitRequestResponse> {
        if existing.body_hash != body_hash {
            return Err(IntakeError::IdempotencyKeyReused(key.to_owned()));
        }
        let items = self.items_of(&existing.id).await?;
        Ok(SubmitRequestResponse { request: Some(to_government_request(&existing, &items)), replayed: true })
    }
}

/// Column prefixes of [`agency_and_key_statement`]'s two rows.
const AGENCY: &str = "a_";
const HOLDER: &str = "r_";

/// The agency `agency_id` and the request of its holding `key`, if any, as one row (columns
/// prefixed `a_` and `r_`): public so that its plan is checked.
pub fn agency_and_key_statement(backend: DbBackend, agency_id: &str, key: &str) -> Statement {
    let (a, r) = (Alias::new("a"), Alias::new("r"));
    let mut select = Query::select();
    crs_platform::db::select_prefixed::<agency::Entity>(&mut select, &a, AGENCY);
    crs_platform::db::select_prefixed::<request::Entity>(&mut select, &r, HOLDER);
    select
        .from_as(agency::Entity, a.clone())
        .join_as(
            JoinType::LeftJoin,
            request::Entity,
            r.clone(),
            Condition::all()
                .add(Expr::col((r.clone(), request::Column::AgencyId)).equals((a.clone(), agency::Column::Id)))
                .add(Expr::col((r, request::Column::IdempotencyKey)).eq(key)),
        )
        .and_where(Expr::col((a, agency::Column::Id)).eq(agency_id));
    backend.build(&select)
}

/// The body's fingerprint, without the idempotency key itself.
fn body_hash(req: &SubmitRequestRequest) -> String {
    let mut body = req.clone();
    body.idempotency_key.clear();
    hex::encode(Sha256::digest(body.encode_to_vec()))
}
