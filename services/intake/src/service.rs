//! Intake's RPC handlers: the agency-facing `IntakeService` and the admin-facing
//! `AgencyAdminService`.

use std::pin::Pin;

use crs_platform::auth::{self, Principal, Role, TokenAuthority};
use crs_platform::outbox::{Outbox, inbox_first_time};
use crs_platform::time::{millis_from_timestamp, now_millis, timestamp_from_millis};
use crs_proto::common::{ItemOutcome, RequestStatus, SlaDeadline, Submission};
use crs_proto::intake::agency_admin_service_server::AgencyAdminService;
use crs_proto::intake::intake_service_server::IntakeService;
use crs_proto::intake::*;
use crs_proto::notification::{Audience, NotificationKind, NotifyRequest, PutSubscriptionRequest};
use crs_proto::triage::AssessRequestRequest;
use prost::Message;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set, SqlErr,
    TransactionTrait,
};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::Limits;
use crate::entities::{agency, request, request_item, status_event};
use crate::error::IntakeError;
use crate::relay;
use crate::validate;

#[derive(Clone)]
pub struct Intake {
    db: DatabaseConnection,
    outbox: Outbox,
    authority: TokenAuthority,
    limits: std::sync::Arc<Limits>,
}

type Result<T> = std::result::Result<T, IntakeError>;

impl Intake {
    pub fn new(db: DatabaseConnection, outbox: Outbox, authority: TokenAuthority, limits: Limits) -> Self {
        Self { db, outbox, authority, limits: std::sync::Arc::new(limits) }
    }

    /// The calling agency's record; suspended or unknown agencies are turned away.
    async fn calling_agency(&self, principal: &Principal) -> Result<agency::Model> {
        let id = auth::require_agency(principal)?;
        let agency = agency::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| auth::AuthError::Invalid(format!("unknown agency {id}")))?;
        if agency.status != AgencyStatus::Active as i32 {
            return Err(IntakeError::AgencySuspended(agency.id));
        }
        Ok(agency)
    }

    async fn submit(&self, principal: Principal, req: SubmitRequestRequest) -> Result<SubmitRequestResponse> {
        let agency = self.calling_agency(&principal).await?;
        let valid = validate::submission(&req, &agency, &self.limits)?;
        let body_hash = body_hash(&req);

        if let Some(existing) = self.find_by_key(&agency.id, &req.idempotency_key).await? {
            return self.replay(existing, &body_hash, &req.idempotency_key).await;
        }

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
        let submission = to_submission(&row, &items);

        let txn = self.db.begin().await?;
        let inserted = request::ActiveModel::from(row.clone()).insert(&txn).await;
        if let Err(e) = inserted {
            // A concurrent retry with the same key won the race: answer as it did.
            if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
                drop(txn);
                let existing = self
                    .find_by_key(&agency.id, &req.idempotency_key)
                    .await?
                    .ok_or(IntakeError::Internal(anyhow::anyhow!("idempotency key conflict but no request found")))?;
                return self.replay(existing, &row.body_hash, &req.idempotency_key).await;
            }
            return Err(e.into());
        }
        request_item::Entity::insert_many(items.iter().cloned().map(request_item::ActiveModel::from))
            .exec(&txn)
            .await?;
        record_event(&txn, &row, RequestStatus::Received, "received").await?;
        self.outbox
            .enqueue(
                &txn,
                relay::ASSESS,
                &AssessRequestRequest { event_id: String::new(), submission: Some(submission.clone()) },
            )
            .await?;
        self.outbox
            .enqueue(
                &txn,
                relay::NOTIFY,
                &NotifyRequest {
                    kind: NotificationKind::Acknowledged as i32,
                    submission: Some(submission),
                    message: "request received".into(),
                    ..Default::default()
                },
            )
            .await?;
        txn.commit().await?;
        self.outbox.wake();
        tracing::info!(request_id = %row.id, agency_id = %row.agency_id, items = items.len(), "request received");
        Ok(SubmitRequestResponse { request: Some(to_government_request(&row, &items)), replayed: false })
    }

    async fn find_by_key(&self, agency_id: &str, key: &str) -> Result<Option<request::Model>> {
        Ok(request::Entity::find()
            .filter(request::Column::AgencyId.eq(agency_id))
            .filter(request::Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await?)
    }

    async fn replay(&self, existing: request::Model, body_hash: &str, key: &str) -> Result<SubmitRequestResponse> {
        if existing.body_hash != body_hash {
            return Err(IntakeError::IdempotencyKeyReused(key.to_owned()));
        }
        let items = self.items_of(&existing.id).await?;
        Ok(SubmitRequestResponse { request: Some(to_government_request(&existing, &items)), replayed: true })
    }

    async fn items_of(&self, request_id: &str) -> Result<Vec<request_item::Model>> {
        Ok(request_item::Entity::find()
            .filter(request_item::Column::RequestId.eq(request_id))
            .order_by_asc(request_item::Column::ItemIndex)
            .all(&self.db)
            .await?)
    }

    /// A request the caller may see: its own agency's, or any for admins and services.
    /// Another agency's request is reported as not found, so existence does not leak.
    async fn visible_request(&self, principal: &Principal, id: &str) -> Result<request::Model> {
        let not_found = || IntakeError::NotFound { kind: "request", id: id.to_owned() };
        let row = request::Entity::find_by_id(id.to_owned()).one(&self.db).await?.ok_or_else(not_found)?;
        match principal {
            Principal::Agency { id: agency_id } if *agency_id == row.agency_id => Ok(row),
            Principal::Agency { .. } => Err(not_found()),
            Principal::Service { .. } => Ok(row),
            p if p.has_role(Role::Admin) || p.has_role(Role::Reviewer) || p.has_role(Role::SeniorReviewer) => Ok(row),
            p => Err(auth::AuthError::Forbidden(p.subject()).into()),
        }
    }

    async fn update_status(&self, principal: Principal, req: UpdateStatusRequest) -> Result<UpdateStatusResponse> {
        auth::require_service(&principal)?;
        if req.event_id.is_empty() {
            return Err(IntakeError::invalid("event_id", "is required"));
        }
        let status = RequestStatus::try_from(req.status)
            .ok()
            .filter(|s| *s != RequestStatus::Unspecified)
            .ok_or_else(|| IntakeError::invalid("status", "must be a known status"))?;
        let txn = self.db.begin().await?;
        if !inbox_first_time(&txn, &req.event_id).await? {
            return Ok(UpdateStatusResponse { applied: false });
        }
        let row = request::Entity::find_by_id(req.request_id.clone())
            .one(&txn)
            .await?
            .ok_or_else(|| IntakeError::NotFound { kind: "request", id: req.request_id.clone() })?;
        let occurred_at = req.occurred_at.as_ref().map(millis_from_timestamp).unwrap_or_else(now_millis);
        let current = RequestStatus::try_from(row.status).unwrap_or(RequestStatus::Unspecified);
        // Hand-offs from different services may arrive out of order: a final status is never
        // replaced by an earlier step, and steps apply in the order they happened.
        let moves = !is_final(current) && (is_final(status) || occurred_at >= row.status_at);

        let mut active: request::ActiveModel = row.clone().into();
        if moves {
            active.status = Set(status as i32);
            active.status_at = Set(occurred_at);
            active.status_note = Set(req.note.clone());
            active.pending_question = Set(req.pending_question.clone());
        }
        if let Some(deadline) = &req.deadline {
            active.deadline = Set(Some(deadline.encode_to_vec()));
        }
        active.updated_at = Set(now_millis());
        let updated = active.update(&txn).await?;
        for decision in &req.item_decisions {
            if let Some(item) =
                request_item::Entity::find_by_id((row.id.clone(), decision.item_index as i32)).one(&txn).await?
            {
                let mut item: request_item::ActiveModel = item.into();
                item.outcome = Set(decision.outcome);
                item.no_action_reason = Set(decision.no_action_reason);
                item.explanation = Set(decision.explanation.clone());
                item.update(&txn).await?;
            }
        }
        if moves {
            record_event(&txn, &updated, status, &req.note).await?;
        }
        txn.commit().await?;
        tracing::info!(request_id = %row.id, status = status.as_str_name(), applied = moves, "status updated");
        Ok(UpdateStatusResponse { applied: true })
    }

    async fn create_agency(&self, principal: Principal, req: CreateAgencyRequest) -> Result<Agency> {
        auth::require_role(&principal, &[Role::Admin])?;
        let mut v = crs_platform::FieldViolations::new();
        validate::check_line(&mut v, "name", &req.name, self.limits.max_string_len, true);
        if !validate::is_country_code(&req.jurisdiction) {
            v.add("jurisdiction", "must be an ISO 3166-1 alpha-2 code in upper case, e.g. DE");
        }
        validate::check_line(&mut v, "contact_email", &req.contact_email, self.limits.max_string_len, false);
        if !req.callback_url.is_empty()
            && let Err(why) = validate::normalise_url(&req.callback_url, self.limits.max_string_len)
        {
            v.add("callback_url", why);
        }
        validate::check_line(&mut v, "callback_secret", &req.callback_secret, 256, false);
        validate::check_line(&mut v, "rate_limit_tier", &req.rate_limit_tier, 64, false);
        v.into_result()?;

        let now = now_millis();
        let row = agency::Model {
            id: uuid::Uuid::now_v7().to_string(),
            name: req.name.trim().to_owned(),
            jurisdiction: req.jurisdiction.clone(),
            contact_email: req.contact_email.clone(),
            callback_url: req.callback_url.clone(),
            callback_secret: req.callback_secret.clone(),
            allowed_instruments: serde_json::to_string(&req.allowed_instruments).expect("numbers serialise"),
            allowed_categories: serde_json::to_string(&req.allowed_categories).expect("numbers serialise"),
            status: AgencyStatus::Active as i32,
            rate_limit_tier: if req.rate_limit_tier.is_empty() {
                "standard".into()
            } else {
                req.rate_limit_tier.clone()
            },
            created_at: now,
            updated_at: now,
        };
        let txn = self.db.begin().await?;
        agency::ActiveModel::from(row.clone()).insert(&txn).await?;
        if !row.callback_url.is_empty() {
            self.outbox
                .enqueue(
                    &txn,
                    relay::SUBSCRIBE,
                    &PutSubscriptionRequest {
                        audience: Audience::Agency as i32,
                        agency_id: row.id.clone(),
                        endpoint: row.callback_url.clone(),
                        secret: row.callback_secret.clone(),
                        event_id: String::new(),
                    },
                )
                .await?;
        }
        txn.commit().await?;
        self.outbox.wake();
        tracing::info!(agency_id = %row.id, jurisdiction = %row.jurisdiction, "agency created");
        Ok(to_agency(&row))
    }
}

fn is_final(s: RequestStatus) -> bool {
    matches!(
        s,
        RequestStatus::Decided
            | RequestStatus::Closed
            | RequestStatus::Withdrawn
            | RequestStatus::Rejected
            | RequestStatus::Merged
    )
}

/// The body's fingerprint, without the idempotency key itself.
fn body_hash(req: &SubmitRequestRequest) -> String {
    let mut body = req.clone();
    body.idempotency_key.clear();
    hex::encode(Sha256::digest(body.encode_to_vec()))
}

async fn record_event<C: sea_orm::ConnectionTrait>(
    conn: &C,
    row: &request::Model,
    status: RequestStatus,
    note: &str,
) -> Result<()> {
    status_event::ActiveModel {
        agency_id: Set(row.agency_id.clone()),
        request_id: Set(row.id.clone()),
        status: Set(status as i32),
        note: Set(note.to_owned()),
        occurred_at: Set(row.status_at),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(())
}

fn to_item(item: &request_item::Model) -> crs_proto::common::Item {
    crs_proto::common::Item {
        index: item.item_index as u32,
        url: item.url.clone(),
        content_id: item.content_id.clone(),
        description: item.description.clone(),
        content_key: item.content_key.clone(),
        outcome: item.outcome,
        no_action_reason: item.no_action_reason,
        explanation: item.explanation.clone(),
    }
}

fn to_submission(row: &request::Model, items: &[request_item::Model]) -> Submission {
    Submission {
        request_id: row.id.clone(),
        agency_id: row.agency_id.clone(),
        jurisdiction: row.jurisdiction.clone(),
        legal_instrument: row.legal_instrument,
        category: row.category,
        keywords: serde_json::from_str(&row.keywords).unwrap_or_default(),
        requested_action: row.requested_action,
        items: items.iter().map(to_item).collect(),
        legal_basis: row.legal_basis.clone(),
        justification: row.justification.clone(),
        reference: row.reference.clone(),
        issuing_authority: row.issuing_authority.clone(),
        received_at: Some(timestamp_from_millis(row.received_at)),
    }
}

fn to_government_request(row: &request::Model, items: &[request_item::Model]) -> GovernmentRequest {
    GovernmentRequest {
        id: row.id.clone(),
        agency_id: row.agency_id.clone(),
        jurisdiction: row.jurisdiction.clone(),
        legal_instrument: row.legal_instrument,
        category: row.category,
        keywords: serde_json::from_str(&row.keywords).unwrap_or_default(),
        requested_action: row.requested_action,
        items: items.iter().map(to_item).collect(),
        legal_basis: row.legal_basis.clone(),
        justification: row.justification.clone(),
        reference: row.reference.clone(),
        issuing_authority: row.issuing_authority.clone(),
        status: row.status,
        received_at: Some(timestamp_from_millis(row.received_at)),
        updated_at: Some(timestamp_from_millis(row.updated_at)),
        deadline: row.deadline.as_deref().and_then(|b| SlaDeadline::decode(b).ok()),
        pending_question: row.pending_question.clone(),
        status_note: row.status_note.clone(),
    }
}

fn to_agency(row: &agency::Model) -> Agency {
    Agency {
        id: row.id.clone(),
        name: row.name.clone(),
        jurisdiction: row.jurisdiction.clone(),
        contact_email: row.contact_email.clone(),
        callback_url: row.callback_url.clone(),
        allowed_instruments: serde_json::from_str(&row.allowed_instruments).unwrap_or_default(),
        allowed_categories: serde_json::from_str(&row.allowed_categories).unwrap_or_default(),
        status: row.status,
        rate_limit_tier: row.rate_limit_tier.clone(),
        created_at: Some(timestamp_from_millis(row.created_at)),
        updated_at: Some(timestamp_from_millis(row.updated_at)),
    }
}

fn not_yet(method: &str) -> Status {
    Status::unimplemented(format!("{method} is not available in this version"))
}

#[tonic::async_trait]
impl IntakeService for Intake {
    async fn submit_request(
        &self,
        request: Request<SubmitRequestRequest>,
    ) -> std::result::Result<Response<SubmitRequestResponse>, Status> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.submit(principal, request.into_inner()).await?))
    }

    async fn get_request(
        &self,
        request: Request<GetRequestRequest>,
    ) -> std::result::Result<Response<GetRequestResponse>, Status> {
        let principal = auth::principal(&request)?;
        let row = self.visible_request(&principal, &request.get_ref().request_id).await?;
        let items = self.items_of(&row.id).await?;
        Ok(Response::new(GetRequestResponse { request: Some(to_government_request(&row, &items)) }))
    }

    async fn list_requests(
        &self,
        _request: Request<ListRequestsRequest>,
    ) -> std::result::Result<Response<ListRequestsResponse>, Status> {
        Err(not_yet("ListRequests"))
    }

    async fn withdraw_request(
        &self,
        _request: Request<WithdrawRequestRequest>,
    ) -> std::result::Result<Response<WithdrawRequestResponse>, Status> {
        Err(not_yet("WithdrawRequest"))
    }

    async fn provide_information(
        &self,
        _request: Request<ProvideInformationRequest>,
    ) -> std::result::Result<Response<ProvideInformationResponse>, Status> {
        Err(not_yet("ProvideInformation"))
    }

    type WatchRequestsStream = Pin<Box<dyn futures::Stream<Item = std::result::Result<RequestUpdate, Status>> + Send>>;

    async fn watch_requests(
        &self,
        _request: Request<WatchRequestsRequest>,
    ) -> std::result::Result<Response<Self::WatchRequestsStream>, Status> {
        Err(not_yet("WatchRequests"))
    }

    async fn update_status(
        &self,
        request: Request<UpdateStatusRequest>,
    ) -> std::result::Result<Response<UpdateStatusResponse>, Status> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.update_status(principal, request.into_inner()).await?))
    }
}

#[tonic::async_trait]
impl AgencyAdminService for Intake {
    async fn create_agency(
        &self,
        request: Request<CreateAgencyRequest>,
    ) -> std::result::Result<Response<Agency>, Status> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.create_agency(principal, request.into_inner()).await?))
    }

    async fn update_agency(
        &self,
        _request: Request<UpdateAgencyRequest>,
    ) -> std::result::Result<Response<Agency>, Status> {
        Err(not_yet("UpdateAgency"))
    }

    async fn suspend_agency(
        &self,
        _request: Request<SuspendAgencyRequest>,
    ) -> std::result::Result<Response<Agency>, Status> {
        Err(not_yet("SuspendAgency"))
    }

    async fn get_agency(&self, request: Request<GetAgencyRequest>) -> std::result::Result<Response<Agency>, Status> {
        let principal = auth::principal(&request)?;
        auth::require_role(&principal, &[Role::Admin]).map_err(IntakeError::from)?;
        let id = request.into_inner().agency_id;
        let row = agency::Entity::find_by_id(id.clone())
            .one(&self.db)
            .await
            .map_err(IntakeError::from)?
            .ok_or(IntakeError::NotFound { kind: "agency", id })?;
        Ok(Response::new(to_agency(&row)))
    }

    async fn list_agencies(
        &self,
        _request: Request<ListAgenciesRequest>,
    ) -> std::result::Result<Response<ListAgenciesResponse>, Status> {
        Err(not_yet("ListAgencies"))
    }

    async fn issue_token(
        &self,
        request: Request<IssueTokenRequest>,
    ) -> std::result::Result<Response<IssueTokenResponse>, Status> {
        let principal = auth::principal(&request)?;
        auth::require_role(&principal, &[Role::Admin]).map_err(IntakeError::from)?;
        let req = request.into_inner();
        let subject = Principal::from_subject(&req.subject, &req.roles).ok_or_else(|| {
            IntakeError::invalid("subject", "must be agency:<id>, reviewer:<id> (with known roles) or service:<name>")
        })?;
        let ttl = if req.ttl_seconds == 0 { 24 * 3600 } else { req.ttl_seconds.min(365 * 24 * 3600) };
        let issued = self.authority.issue(&subject, ttl).map_err(IntakeError::Internal)?;
        Ok(Response::new(IssueTokenResponse {
            token: issued.token,
            token_id: issued.token_id,
            expires_at: Some(prost_types::Timestamp { seconds: issued.expires_at, nanos: 0 }),
        }))
    }

    async fn revoke_token(
        &self,
        _request: Request<RevokeTokenRequest>,
    ) -> std::result::Result<Response<RevokeTokenResponse>, Status> {
        Err(not_yet("RevokeToken"))
    }
}
