//! The agency's requests: submission, its own view (get, list), withdrawal, answers to
//! reviewers' questions, and the status projection other services keep current.

use crs_platform::FieldViolations;
use crs_platform::auth::{self, Principal};
use crs_platform::outbox::inbox_first_time;
use crs_platform::time::{millis_from_timestamp, now_millis};
use crs_proto::common::{Category, ItemOutcome, RequestStatus};
use crs_proto::intake::*;
use crs_proto::notification::{NotificationKind, NotifyRequest};
use crs_proto::review::{ResumeCaseRequest, WithdrawCaseRequest};
use crs_proto::triage::AssessRequestRequest;
use prost::Message;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr,
    TransactionTrait,
};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::entities::{information_answer, request, request_item};
use crate::error::IntakeError;
use crate::service::{Intake, Result, record_event};
use crate::views::{to_government_request, to_submission};
use crate::{relay, validate};

const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 500;
/// Idempotency keys past their retention are rewritten with this prefix, freeing the key.
const EXPIRED_KEY_PREFIX: &str = "~expired:";

impl Intake {
    /// Validates, checks the rate limits, and stores the request with its hand-offs. A retry of
    /// an accepted request is answered from storage and consumes no limit; the decision comes
    /// back so the caller sees `x-ratelimit-*`.
    pub(crate) async fn submit(
        &self,
        principal: Principal,
        req: SubmitRequestRequest,
    ) -> Result<(SubmitRequestResponse, Option<crs_ratelimit::Decision>)> {
        let agency = self.calling_agency(&principal).await?;
        let valid = validate::submission(&req, &agency, &self.limits)?;
        let body_hash = body_hash(&req);

        if let Some(existing) = self.find_by_key(&agency.id, &req.idempotency_key).await? {
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
        let inserted = request::ActiveModel::from(row.clone())
            .insert(&txn)
            .instrument(crs_platform::db::span(&txn, "requests insert"))
            .await;
        if let Err(e) = inserted {
            // A concurrent retry with the same key won the race: answer as it did.
            if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
                drop(txn);
                let existing = self.find_by_key(&agency.id, &req.idempotency_key).await?.ok_or_else(|| {
                    IntakeError::Internal(anyhow::anyhow!("idempotency key conflict but no request found"))
                })?;
                return Ok((self.replay(existing, &row.body_hash, &req.idempotency_key).await?, None));
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
        self.committed();
        tracing::info!(request_id = %row.id, agency_id = %row.agency_id, items = items.len(), "request received");
        Ok((
            SubmitRequestResponse { request: Some(to_government_request(&row, &items)), replayed: false },
            Some(decision),
        ))
    }

    /// Wakes the relay and open streams after a commit.
    fn committed(&self) {
        self.outbox.wake();
        self.events.notify_waiters();
    }

    /// The live request holding `key` for the agency. A key older than the retention period is
    /// released first, so it can name a new request.
    async fn find_by_key(&self, agency_id: &str, key: &str) -> Result<Option<request::Model>> {
        let found = request::Entity::find()
            .filter(request::Column::AgencyId.eq(agency_id))
            .filter(request::Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await?;
        match found {
            Some(row) if row.received_at < now_millis() - self.limits.idempotency_retention_secs * 1000 => {
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

    /// Releases every idempotency key past its retention (run periodically).
    pub(crate) async fn expire_idempotency_keys(&self) -> Result<u64> {
        let cutoff = now_millis() - self.limits.idempotency_retention_secs * 1000;
        let stmt = crs_platform::outbox::statement(
            sea_orm::ConnectionTrait::get_database_backend(&self.db),
            "UPDATE requests SET idempotency_key = $1 || id WHERE received_at < $2 AND idempotency_key NOT LIKE $3",
            vec![EXPIRED_KEY_PREFIX.into(), cutoff.into(), format!("{EXPIRED_KEY_PREFIX}%").into()],
        );
        Ok(sea_orm::ConnectionTrait::execute_raw(&self.db, stmt).await?.rows_affected())
    }

    async fn replay(&self, existing: request::Model, body_hash: &str, key: &str) -> Result<SubmitRequestResponse> {
        if existing.body_hash != body_hash {
            return Err(IntakeError::IdempotencyKeyReused(key.to_owned()));
        }
        let items = self.items_of(&existing.id).await?;
        Ok(SubmitRequestResponse { request: Some(to_government_request(&existing, &items)), replayed: true })
    }

    pub(crate) async fn get(&self, principal: Principal, req: GetRequestRequest) -> Result<GetRequestResponse> {
        let row = self.visible_request(&principal, &req.request_id).await?;
        let items = self.items_of(&row.id).await?;
        Ok(GetRequestResponse { request: Some(to_government_request(&row, &items)) })
    }

    pub(crate) async fn list(&self, principal: Principal, req: ListRequestsRequest) -> Result<ListRequestsResponse> {
        let agency = self.calling_agency(&principal).await?;
        let mut v = FieldViolations::new();
        if req.status != 0 && !matches!(RequestStatus::try_from(req.status), Ok(s) if s != RequestStatus::Unspecified) {
            v.add("status", "must be a known status");
        }
        if req.category != 0 && !matches!(Category::try_from(req.category), Ok(c) if c != Category::Unspecified) {
            v.add("category", "must be a known category");
        }
        let after = req.received_after.as_ref().map(millis_from_timestamp);
        let before = req.received_before.as_ref().map(millis_from_timestamp);
        if let (Some(a), Some(b)) = (after, before)
            && a >= b
        {
            v.add("received_before", "must be later than received_after");
        }
        let cursor = match req.page_token.as_str() {
            "" => None,
            token => match token.split_once(':').and_then(|(t, id)| Some((t.parse::<i64>().ok()?, id.to_owned()))) {
                Some(c) => Some(c),
                None => {
                    v.add("page_token", "is not a token this service issued");
                    None
                }
            },
        };
        v.into_result()?;
        let size = match u64::from(req.page_size) {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };

        let mut cond = Condition::all().add(request::Column::AgencyId.eq(agency.id.clone()));
        if req.status != 0 {
            cond = cond.add(request::Column::Status.eq(req.status));
        }
        if req.category != 0 {
            cond = cond.add(request::Column::Category.eq(req.category));
        }
        if let Some(a) = after {
            cond = cond.add(request::Column::ReceivedAt.gte(a));
        }
        if let Some(b) = before {
            cond = cond.add(request::Column::ReceivedAt.lt(b));
        }
        // Newest first; the token is the position after the last one returned.
        if let Some((at, id)) = cursor {
            cond = cond.add(
                Condition::any()
                    .add(request::Column::ReceivedAt.lt(at))
                    .add(Condition::all().add(request::Column::ReceivedAt.eq(at)).add(request::Column::Id.lt(id))),
            );
        }
        let rows = request::Entity::find()
            .filter(cond)
            .order_by_desc(request::Column::ReceivedAt)
            .order_by_desc(request::Column::Id)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > size;
        let rows: Vec<_> = rows.into_iter().take(size as usize).collect();
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut items: std::collections::HashMap<String, Vec<request_item::Model>> = Default::default();
        for item in request_item::Entity::find()
            .filter(request_item::Column::RequestId.is_in(ids))
            .order_by_asc(request_item::Column::ItemIndex)
            .all(&self.db)
            .await?
        {
            items.entry(item.request_id.clone()).or_default().push(item);
        }
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => format!("{}:{}", last.received_at, last.id),
            _ => String::new(),
        };
        Ok(ListRequestsResponse {
            requests: rows.iter().map(|r| to_government_request(r, items.get(&r.id).map_or(&[][..], |v| v))).collect(),
            next_page_token,
        })
    }

    pub(crate) async fn withdraw(
        &self,
        principal: Principal,
        req: WithdrawRequestRequest,
    ) -> Result<WithdrawRequestResponse> {
        let agency = self.calling_agency(&principal).await?;
        let mut v = FieldViolations::new();
        validate::check_text(&mut v, "reason", &req.reason, self.limits.max_text_len, false);
        v.into_result()?;
        let txn = self.db.begin().await?;
        let row = request::Entity::find_by_id(req.request_id.clone())
            .lock_exclusive()
            .one(&txn)
            .await?
            .filter(|r| r.agency_id == agency.id)
            .ok_or_else(|| IntakeError::NotFound { kind: "request", id: req.request_id.clone() })?;
        let status = RequestStatus::try_from(row.status).unwrap_or_default();
        if is_final(status) {
            return Err(IntakeError::WrongState {
                id: row.id,
                status: status.as_str_name().to_owned(),
                action: "withdraw it (only requests not yet decided can be withdrawn)",
            });
        }
        let now = now_millis();
        let mut active: request::ActiveModel = row.clone().into();
        active.status = Set(RequestStatus::Withdrawn as i32);
        active.status_at = Set(now);
        active.status_note = Set(req.reason.clone());
        active.pending_question = Set(String::new());
        active.updated_at = Set(now);
        let updated = active.update(&txn).await?;
        record_event(&txn, &updated, RequestStatus::Withdrawn, &req.reason).await?;
        let items = request_item::Entity::find()
            .filter(request_item::Column::RequestId.eq(row.id.clone()))
            .order_by_asc(request_item::Column::ItemIndex)
            .all(&txn)
            .await?;
        self.outbox
            .enqueue(
                &txn,
                relay::WITHDRAW,
                &WithdrawCaseRequest { event_id: String::new(), case_id: row.id.clone(), reason: req.reason.clone() },
            )
            .await?;
        self.outbox
            .enqueue(
                &txn,
                relay::NOTIFY,
                &NotifyRequest {
                    kind: NotificationKind::Withdrawn as i32,
                    submission: Some(to_submission(&updated, &items)),
                    message: req.reason,
                    ..Default::default()
                },
            )
            .await?;
        txn.commit().await?;
        self.committed();
        tracing::info!(request_id = %updated.id, "request withdrawn");
        Ok(WithdrawRequestResponse { request: Some(to_government_request(&updated, &items)) })
    }

    pub(crate) async fn provide_information(
        &self,
        principal: Principal,
        req: ProvideInformationRequest,
    ) -> Result<ProvideInformationResponse> {
        let agency = self.calling_agency(&principal).await?;
        let mut v = FieldViolations::new();
        validate::check_token(&mut v, "idempotency_key", &req.idempotency_key, 128);
        validate::check_text(&mut v, "answer", &req.answer, self.limits.max_text_len, true);
        if !req.additional_items.is_empty() {
            v.add(
                "additional_items",
                "cannot be added to a request under review; submit a new request for new content",
            );
        }
        v.into_result()?;
        let txn = self.db.begin().await?;
        let row = request::Entity::find_by_id(req.request_id.clone())
            .lock_exclusive()
            .one(&txn)
            .await?
            .filter(|r| r.agency_id == agency.id)
            .ok_or_else(|| IntakeError::NotFound { kind: "request", id: req.request_id.clone() })?;
        let answered_before =
            information_answer::Entity::find_by_id((row.id.clone(), req.idempotency_key.clone())).one(&txn).await?;
        if let Some(previous) = answered_before {
            drop(txn);
            if previous.answer != req.answer {
                return Err(IntakeError::IdempotencyKeyReused(req.idempotency_key));
            }
            let items = self.items_of(&row.id).await?;
            return Ok(ProvideInformationResponse { request: Some(to_government_request(&row, &items)) });
        }
        let status = RequestStatus::try_from(row.status).unwrap_or_default();
        if status != RequestStatus::AwaitingInformation {
            return Err(IntakeError::WrongState {
                id: row.id,
                status: status.as_str_name().to_owned(),
                action: "answer it (no question is pending)",
            });
        }
        let now = now_millis();
        information_answer::ActiveModel::from(information_answer::Model {
            request_id: row.id.clone(),
            idempotency_key: req.idempotency_key.clone(),
            answer: req.answer.clone(),
            answered_at: now,
        })
        .insert(&txn)
        .await?;
        let mut active: request::ActiveModel = row.clone().into();
        active.status = Set(RequestStatus::InReview as i32);
        active.status_at = Set(now);
        active.status_note = Set("information provided".into());
        active.pending_question = Set(String::new());
        active.updated_at = Set(now);
        let updated = active.update(&txn).await?;
        record_event(&txn, &updated, RequestStatus::InReview, "information provided").await?;
        self.outbox
            .enqueue(
                &txn,
                relay::RESUME,
                &ResumeCaseRequest { event_id: String::new(), case_id: row.id.clone(), answer: req.answer },
            )
            .await?;
        txn.commit().await?;
        self.committed();
        tracing::info!(request_id = %updated.id, "information provided");
        let items = self.items_of(&updated.id).await?;
        Ok(ProvideInformationResponse { request: Some(to_government_request(&updated, &items)) })
    }

    pub(crate) async fn update_status(
        &self,
        principal: Principal,
        req: UpdateStatusRequest,
    ) -> Result<UpdateStatusResponse> {
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
            .lock_exclusive()
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
        // A step that only updates the deadline (the clock paused or resumed) is no new event.
        if moves && status != current {
            record_event(&txn, &updated, status, &req.note).await?;
        }
        txn.commit().await?;
        self.events.notify_waiters();
        tracing::info!(request_id = %row.id, status = status.as_str_name(), applied = moves, "status updated");
        Ok(UpdateStatusResponse { applied: true })
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
