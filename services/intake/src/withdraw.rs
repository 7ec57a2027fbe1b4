//! Withdrawal by the agency. Legal review is the authority once a case exists, so intake asks it
//! while the agency waits: under the case's lock either the withdrawal or a decision came first,
//! and the agency is told which (WITHDRAWN, or FAILED_PRECONDITION naming the decision). If legal
//! review cannot be reached nothing is withdrawn and the agency is told to retry (UNAVAILABLE).

use crs_domain::state::{Command, State};
use crs_platform::FieldViolations;
use crs_platform::auth::Principal;
use crs_platform::time::now_millis;
use crs_proto::common::RequestStatus;
use crs_proto::intake::*;
use crs_proto::notification::{NotificationKind, NotifyRequest};
use crs_proto::review::WithdrawCaseRequest;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};

use crate::entities::{request, request_item};
use crate::error::IntakeError;
use crate::events::record_event;
use crate::service::{Intake, Result};
use crate::validate;
use crate::views::{to_government_request, to_submission};

impl Intake {
    pub(crate) async fn withdraw(
        &self,
        principal: Principal,
        req: WithdrawRequestRequest,
    ) -> Result<WithdrawRequestResponse> {
        let agency = self.calling_agency(&principal).await?;
        let mut v = FieldViolations::new();
        validate::check_text(&mut v, "reason", &req.reason, self.limits.max_text_len, false);
        v.into_result()?;
        let row = self.visible_request(&principal, &req.request_id).await?;
        let status = crs_proto::convert::status(row.status).unwrap_or(crs_domain::Status::Received);
        if status == crs_domain::Status::Decided {
            let items = self.items_of(&row.id).await?;
            let outcomes: Vec<String> = items
                .iter()
                .map(|i| {
                    format!(
                        "item {}: {}",
                        i.item_index,
                        crs_proto::convert::short_name_of::<crs_proto::common::ItemOutcome>(i.outcome)
                    )
                })
                .collect();
            return Err(IntakeError::Refused(format!(
                "request {} was decided ({}); a decision that took effect cannot be withdrawn",
                row.id,
                outcomes.join(", ")
            )));
        }
        // Already withdrawn: a retry, perhaps of a call whose answer was lost after legal review
        // had withdrawn the case. It is answered as the first was, and its confirmation to the
        // agency (one event, however often sent) is made sure of below.
        let case_version = if status == crs_domain::Status::Withdrawn {
            0
        } else {
            if !State::new(status).allows(Command::Withdraw) {
                return Err(IntakeError::WrongState {
                    id: row.id,
                    status: status.name().to_owned(),
                    action: "withdraw it",
                });
            }
            self.withdraw_case(&row.id, &req.reason).await?
        };

        let now = now_millis();
        let txn = self.db.begin().await?;
        let row = request::Entity::find_by_id(req.request_id.clone())
            .lock_exclusive()
            .one(&txn)
            .await?
            .filter(|r| r.agency_id == agency.id)
            .ok_or_else(|| IntakeError::NotFound { kind: "request", id: req.request_id.clone() })?;
        let updated = if row.status == RequestStatus::Withdrawn as i32 {
            row
        } else {
            let mut active: request::ActiveModel = row.clone().into();
            active.status = Set(RequestStatus::Withdrawn as i32);
            active.status_at = Set(now);
            active.status_note = Set(req.reason.clone());
            active.pending_question = Set(String::new());
            active.status_version = Set(row.status_version.max(case_version));
            active.updated_at = Set(now);
            let updated = active.update(&txn).await?;
            record_event(&txn, &updated, RequestStatus::Withdrawn, &req.reason).await?;
            updated
        };
        let items = request_item::Entity::find()
            .filter(request_item::Column::RequestId.eq(updated.id.clone()))
            .order_by_asc(request_item::Column::ItemIndex)
            .all(&txn)
            .await?;
        // One confirmation however often the agency retries: the event id is the request's.
        self.outbox
            .send_as(
                &txn,
                &format!("withdrawn:{}", updated.id),
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

    /// Asks legal review to withdraw the request's case; returns the case's version. UNAVAILABLE
    /// when it cannot be reached (a retry asks again with the same event id, which legal review
    /// applies once).
    async fn withdraw_case(&self, request_id: &str, reason: &str) -> Result<i64> {
        let mut review = self.review.clone();
        let case = review
            .withdraw_case(WithdrawCaseRequest {
                event_id: format!("withdraw:{request_id}"),
                case_id: request_id.to_owned(),
                reason: reason.to_owned(),
            })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::FailedPrecondition => IntakeError::Refused(s.message().to_owned()),
                _ => IntakeError::PeerUnavailable { peer: "legal review", why: s.message().to_owned() },
            })?
            .into_inner();
        if crs_proto::convert::status(case.status) != Some(crs_domain::Status::Withdrawn) {
            return Err(IntakeError::Refused(format!(
                "legal review kept case {} {}",
                case.id,
                crs_proto::convert::short_name_of::<RequestStatus>(case.status)
            )));
        }
        Ok(case.version as i64)
    }
}
