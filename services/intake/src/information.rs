//! The agency's answer to a reviewer's question: kept, and handed to legal review, which resumes
//! the case and its SLA clock.

use crs_domain::state::{Command, State};
use crs_platform::FieldViolations;
use crs_platform::auth::Principal;
use crs_platform::time::now_millis;
use crs_proto::intake::*;
use crs_proto::review::ResumeCaseRequest;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set, TransactionTrait};

use crate::entities::{information_answer, request, status_event};
use crate::error::IntakeError;
use crate::events::record_event;
use crate::service::{Intake, Result};
use crate::validate;
use crate::views::to_government_request;

impl Intake {
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
        let status = crs_proto::convert::status(row.status).unwrap_or(crs_domain::Status::Received);
        // A case once escalated stays for senior reviewers: its history says whether it was, and
        // the state machine says where an answer leads (ESCALATED or IN_REVIEW).
        let was_escalated = status_event::Entity::find()
            .filter(status_event::Column::AgencyId.eq(row.agency_id.clone()))
            .filter(status_event::Column::RequestId.eq(row.id.clone()))
            .filter(status_event::Column::Status.eq(crs_proto::common::RequestStatus::Escalated as i32))
            .one(&txn)
            .await?
            .is_some();
        let Ok(next) = (State { status, escalated: was_escalated }).next(Command::Answer) else {
            return Err(IntakeError::WrongState {
                id: row.id,
                status: status.name().to_owned(),
                action: "answer it (no question is pending)",
            });
        };
        let resumed = crs_proto::common::RequestStatus::try_from(crs_proto::convert::wire::<
            crs_proto::common::RequestStatus,
            _,
        >(next.status))
        .unwrap_or(crs_proto::common::RequestStatus::InReview);
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
        active.status = Set(resumed as i32);
        active.status_at = Set(now);
        active.status_note = Set("information provided".into());
        active.pending_question = Set(String::new());
        active.updated_at = Set(now);
        let updated = active.update(&txn).await?;
        record_event(&txn, &updated, resumed, "information provided").await?;
        self.outbox
            .send(&txn, &ResumeCaseRequest { event_id: String::new(), case_id: row.id.clone(), answer: req.answer })
            .await?;
        txn.commit().await?;
        self.committed();
        tracing::info!(request_id = %updated.id, "information provided");
        let items = self.items_of(&updated.id).await?;
        Ok(ProvideInformationResponse { request: Some(to_government_request(&updated, &items)) })
    }
}
