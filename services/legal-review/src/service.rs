//! Legal review's RPC handlers.

use crs_platform::auth::{self, Principal, Role};
use crs_platform::error::FieldViolations;
use crs_platform::outbox::{Outbox, inbox_first_time};
use crs_platform::time::{millis_from_timestamp, now_millis, timestamp_from_millis};
use crs_proto::common::{
    Assessment, DecisionGround, ItemDecision, ItemOutcome, NoActionReason, RequestStatus, SlaDeadline, Submission,
};
use crs_proto::intake::UpdateStatusRequest;
use crs_proto::notification::{NotificationKind, NotifyRequest};
use crs_proto::review::legal_review_service_server::LegalReviewService;
use crs_proto::review::*;
use prost::Message;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, TransactionTrait,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::ReviewConfig;
use crate::entities::{case, decision, withdrawal};
use crate::error::ReviewError;
use crate::relay;
use crs_timers::index::TimerIndex;
use crs_timers::{Clock, ClockStore};

type Result<T> = std::result::Result<T, ReviewError>;

const REVIEWERS: &[Role] = &[Role::Reviewer, Role::SeniorReviewer, Role::Admin];
const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 500;
const MAX_LEGAL_GROUND: usize = 500;
const MAX_EXPLANATION: usize = 2000;

#[derive(Clone)]
pub struct LegalReview {
    db: DatabaseConnection,
    outbox: Outbox,
    timers: TimerIndex,
    cfg: std::sync::Arc<ReviewConfig>,
}

impl LegalReview {
    pub fn new(db: DatabaseConnection, outbox: Outbox, timers: TimerIndex, cfg: ReviewConfig) -> Self {
        Self { db, outbox, timers, cfg: std::sync::Arc::new(cfg) }
    }

    /// Runs a reviewer's action on a case inside the case's own trace (the request's), linked to
    /// the reviewer's call, so the request's trace shows what reviewers did to it.
    async fn in_case_trace<T>(
        &self,
        case_id: &str,
        action: &'static str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let stored = case::Entity::find_by_id(case_id.to_owned())
            .select_only()
            .column(case::Column::TraceContext)
            .into_tuple::<Option<String>>()
            .one(&self.db)
            .await?
            .flatten();
        let span = tracing::info_span!("review action", otel.name = action, case_id = %case_id);
        crs_platform::telemetry::join_stored_trace(&span, stored.as_deref(), &tracing::Span::current());
        work.instrument(span).await
    }

    /// Points the timer index at a clock's new state after its transaction committed. If Redis
    /// is away, the sweepers' database fallback and rebuild cover it.
    async fn sync_clock(&self, change: Option<(Clock, Clock)>) {
        if let Some((before, after)) = change
            && let Err(e) = self.timers.sync(Some(&before), &after).await
        {
            tracing::warn!(error = %e, case_id = %after.case_id, "timer index not updated; the sweepers will catch up");
        }
    }

    async fn enqueue(&self, principal: Principal, req: EnqueueCaseRequest) -> Result<EnqueueCaseResponse> {
        auth::require_service(&principal)?;
        if req.event_id.is_empty() {
            return Err(ReviewError::invalid("event_id", "is required"));
        }
        let submission = req.submission.ok_or_else(|| ReviewError::invalid("submission", "is required"))?;
        let assessment = req.assessment.ok_or_else(|| ReviewError::invalid("assessment", "is required"))?;
        let policy =
            assessment.policy.clone().ok_or_else(|| ReviewError::invalid("assessment.policy", "is required"))?;
        let due_at = assessment
            .due_at
            .as_ref()
            .map(millis_from_timestamp)
            .ok_or_else(|| ReviewError::invalid("assessment.due_at", "is required"))?;
        let txn = self.db.begin().await?;
        if !inbox_first_time(&txn, &req.event_id).await? {
            return Ok(EnqueueCaseResponse { case_id: submission.request_id, replayed: true });
        }
        let deadline = SlaDeadline {
            policy_id: policy.id.clone(),
            legal_reference: policy.legal_reference.clone(),
            budget: policy.budget,
            due_at: assessment.due_at,
            paused: false,
            remaining_when_paused: None,
        };
        let now = now_millis();
        let withdrawn = withdrawal::Entity::find_by_id(submission.request_id.clone()).one(&txn).await?;
        let status = if withdrawn.is_some() { RequestStatus::Withdrawn } else { RequestStatus::Triaged };
        case::ActiveModel::from(case::Model {
            id: submission.request_id.clone(),
            status: status as i32,
            queue: assessment.queue.clone(),
            priority: assessment.priority as i32,
            due_at,
            submission: submission.encode_to_vec(),
            assessment: assessment.encode_to_vec(),
            deadline: deadline.encode_to_vec(),
            assigned_reviewer: String::new(),
            claim_expires_at: 0,
            decision_summary: String::new(),
            decided_by: String::new(),
            decided_at: None,
            pending_question: String::new(),
            last_answer: String::new(),
            trace_context: crs_platform::telemetry::current_traceparent(),
            created_at: now,
            updated_at: now,
        })
        .insert(&txn)
        .await?;
        // The legal deadline runs from receipt of the request.
        let clock = (status == RequestStatus::Triaged).then(|| {
            let received = submission.received_at.as_ref().map(millis_from_timestamp).unwrap_or(now);
            let budget_ms = policy.budget.as_ref().map_or(0, |b| b.seconds * 1000);
            ClockStore::new_clock(
                &submission.request_id,
                budget_ms,
                &policy.warning_percents,
                received,
                crs_platform::telemetry::current_traceparent(),
            )
        });
        if let Some(clock) = &clock {
            ClockStore::insert(&txn, clock).await?;
        }
        txn.commit().await?;
        if let Some(clock) = clock
            && let Err(e) = self.timers.sync(None, &clock).await
        {
            tracing::warn!(error = %e, case_id = %clock.case_id, "timer not armed in redis; the sweepers will catch up");
        }
        tracing::info!(case_id = %submission.request_id, queue = %assessment.queue, "case enqueued");
        Ok(EnqueueCaseResponse { case_id: submission.request_id, replayed: false })
    }

    async fn find(&self, id: &str) -> Result<case::Model> {
        case::Entity::find_by_id(id.to_owned()).one(&self.db).await?.ok_or_else(|| ReviewError::NotFound(id.to_owned()))
    }

    async fn to_case(&self, row: &case::Model) -> Result<Case> {
        let decisions = decision::Entity::find()
            .filter(decision::Column::CaseId.eq(row.id.clone()))
            .order_by_asc(decision::Column::ItemIndex)
            .all(&self.db)
            .await?;
        Ok(to_case(row, &decisions))
    }

    async fn list(&self, principal: Principal, req: ListCasesRequest) -> Result<ListCasesResponse> {
        auth::require_role(&principal, REVIEWERS)?;
        let offset: u64 = if req.page_token.is_empty() {
            0
        } else {
            req.page_token
                .parse()
                .map_err(|_| ReviewError::invalid("page_token", "is not a token this service issued"))?
        };
        let size = match u64::from(req.page_size) {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let mut cond = Condition::all();
        if !req.queue.is_empty() {
            cond = cond.add(case::Column::Queue.eq(req.queue.clone()));
        }
        if req.status != 0 {
            cond = cond.add(case::Column::Status.eq(req.status));
        }
        if req.only_mine {
            cond = cond.add(case::Column::AssignedReviewer.eq(principal.subject()));
        }
        // Most urgent first: highest priority, then the nearest deadline.
        let rows = case::Entity::find()
            .filter(cond)
            .order_by_desc(case::Column::Priority)
            .order_by_asc(case::Column::DueAt)
            .order_by_asc(case::Column::Id)
            .offset(offset)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > size;
        let rows: Vec<&case::Model> = rows.iter().take(size as usize).collect();
        // The page's decisions in one query, not one per case.
        let mut decisions: std::collections::HashMap<String, Vec<decision::Model>> = Default::default();
        for d in decision::Entity::find()
            .filter(decision::Column::CaseId.is_in(rows.iter().map(|r| r.id.clone())))
            .order_by_asc(decision::Column::ItemIndex)
            .all(&self.db)
            .await?
        {
            decisions.entry(d.case_id.clone()).or_default().push(d);
        }
        let cases = rows.iter().map(|r| to_case(r, decisions.get(&r.id).map_or(&[][..], Vec::as_slice))).collect();
        Ok(ListCasesResponse { cases, next_page_token: if more { (offset + size).to_string() } else { String::new() } })
    }

    async fn claim(&self, principal: Principal, req: ClaimCaseRequest) -> Result<Case> {
        auth::require_role(&principal, REVIEWERS)?;
        let lease = match req.lease.as_ref().map(|d| d.seconds) {
            None | Some(0) => self.cfg.claim_lease_secs,
            Some(s) if s < 0 => return Err(ReviewError::invalid("lease", "must be positive")),
            Some(s) => s.min(self.cfg.max_claim_lease_secs),
        };
        let txn = self.db.begin().await?;
        let row = lock_case(&txn, &req.case_id).await?;
        let status = status_of(&row);
        if !matches!(status, RequestStatus::Triaged | RequestStatus::InReview | RequestStatus::Escalated) {
            return Err(wrong_state(&row, "claim it"));
        }
        if status == RequestStatus::Escalated
            && !principal.has_role(Role::SeniorReviewer)
            && !principal.has_role(Role::Admin)
        {
            return Err(auth::AuthError::Forbidden(format!(
                "{} (escalated cases need a senior reviewer)",
                principal.subject()
            ))
            .into());
        }
        let now = now_millis();
        let me = principal.subject();
        if !row.assigned_reviewer.is_empty() && row.assigned_reviewer != me && row.claim_expires_at > now {
            return Err(ReviewError::ClaimedByOther { id: row.id, holder: row.assigned_reviewer });
        }
        let mut active: case::ActiveModel = row.clone().into();
        active.assigned_reviewer = Set(me.clone());
        active.claim_expires_at = Set(now + lease * 1000);
        active.updated_at = Set(now);
        if status == RequestStatus::Triaged {
            active.status = Set(RequestStatus::InReview as i32);
            self.outbox
                .enqueue(
                    &txn,
                    relay::STATUS,
                    &UpdateStatusRequest {
                        note: "under legal review".into(),
                        ..status_update(&row.id, RequestStatus::InReview, now)
                    },
                )
                .await?;
        }
        let updated = active.update(&txn).await?;
        txn.commit().await?;
        self.outbox.wake();
        tracing::info!(case_id = %updated.id, reviewer = %me, "case claimed");
        self.to_case(&updated).await
    }

    async fn decide(&self, principal: Principal, req: SubmitDecisionRequest) -> Result<Case> {
        auth::require_role(&principal, REVIEWERS)?;
        let txn = self.db.begin().await?;
        let row = lock_case(&txn, &req.case_id).await?;
        if !matches!(status_of(&row), RequestStatus::InReview | RequestStatus::Escalated) {
            return Err(wrong_state(&row, "decide it"));
        }
        let me = principal.subject();
        let now = now_millis();
        if row.assigned_reviewer != me || row.claim_expires_at <= now {
            return Err(wrong_state(&row, "decide it without holding its claim (ClaimCase first)"));
        }
        let submission = Submission::decode(row.submission.as_slice()).map_err(|e| ReviewError::Internal(e.into()))?;
        let decisions = validate_decisions(&submission, req.decisions)?;
        let mut v = FieldViolations::new();
        if req.summary.chars().count() > MAX_EXPLANATION * 2 {
            v.add("summary", format!("longer than {} characters", MAX_EXPLANATION * 2));
        }
        v.into_result()?;

        let recorded = decisions.clone();
        for d in &decisions {
            decision::ActiveModel::from(decision::Model {
                case_id: row.id.clone(),
                item_index: d.item_index as i32,
                outcome: d.outcome,
                no_action_reason: d.no_action_reason,
                ground: d.ground,
                legal_ground: d.legal_ground.clone(),
                explanation: d.explanation.clone(),
                territorial_scope: serde_json::to_string(&d.territorial_scope).expect("strings serialise"),
                decided_by: me.clone(),
                decided_at: now,
            })
            .insert(&txn)
            .await?;
        }
        let deadline = SlaDeadline::decode(row.deadline.as_slice()).ok();
        let mut active: case::ActiveModel = row.clone().into();
        active.status = Set(RequestStatus::Decided as i32);
        active.decision_summary = Set(req.summary.clone());
        active.decided_by = Set(me.clone());
        active.decided_at = Set(Some(now));
        active.updated_at = Set(now);
        let updated = active.update(&txn).await?;
        self.outbox
            .enqueue(
                &txn,
                relay::NOTIFY,
                &NotifyRequest {
                    kind: NotificationKind::Decided as i32,
                    submission: Some(submission),
                    decisions: decisions.clone(),
                    deadline: deadline.clone(),
                    message: req.summary.clone(),
                    ..Default::default()
                },
            )
            .await?;
        self.outbox
            .enqueue(
                &txn,
                relay::STATUS,
                &UpdateStatusRequest {
                    request_id: row.id.clone(),
                    status: RequestStatus::Decided as i32,
                    item_decisions: decisions,
                    deadline,
                    note: req.summary,
                    occurred_at: Some(timestamp_from_millis(now)),
                    ..Default::default()
                },
            )
            .await?;
        let clock = ClockStore::stop(&txn, &row.id, now).await?;
        txn.commit().await?;
        self.outbox.wake();
        self.sync_clock(clock).await;
        if let Ok(submission) = Submission::decode(row.submission.as_slice()) {
            crate::metrics::count_decisions(&submission, &recorded);
        }
        tracing::info!(case_id = %updated.id, reviewer = %me, "case decided");
        self.to_case(&updated).await
    }
}

impl LegalReview {
    /// The claimant asks the agency a question; the case waits (and its SLA clock pauses).
    async fn request_information(&self, principal: Principal, req: RequestInformationRequest) -> Result<Case> {
        auth::require_role(&principal, REVIEWERS)?;
        let mut v = FieldViolations::new();
        if req.question.trim().is_empty() {
            v.add("question", "is required");
        } else if req.question.chars().count() > MAX_EXPLANATION {
            v.add("question", format!("longer than {MAX_EXPLANATION} characters"));
        } else if req.question.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            v.add("question", "must not contain control characters");
        }
        v.into_result()?;
        let txn = self.db.begin().await?;
        let row = lock_case(&txn, &req.case_id).await?;
        if !matches!(status_of(&row), RequestStatus::InReview | RequestStatus::Escalated) {
            return Err(wrong_state(&row, "ask the agency a question"));
        }
        let now = now_millis();
        if row.assigned_reviewer != principal.subject() || row.claim_expires_at <= now {
            return Err(wrong_state(&row, "ask a question without holding its claim (ClaimCase first)"));
        }
        let submission = Submission::decode(row.submission.as_slice()).map_err(|e| ReviewError::Internal(e.into()))?;
        let pauses = Assessment::decode(row.assessment.as_slice())
            .ok()
            .and_then(|a| a.policy)
            .is_none_or(|p| p.pauses_while_awaiting_information);
        let clock = if pauses { ClockStore::pause(&txn, &row.id, now).await? } else { None };
        let mut deadline = SlaDeadline::decode(row.deadline.as_slice()).unwrap_or_default();
        if let Some((_, paused)) = &clock {
            deadline.paused = true;
            deadline.remaining_when_paused = Some(crs_platform::time::duration(paused.remaining_ms(now) / 1000));
        }
        let mut active: case::ActiveModel = row.clone().into();
        active.deadline = Set(deadline.encode_to_vec());
        active.status = Set(RequestStatus::AwaitingInformation as i32);
        active.pending_question = Set(req.question.clone());
        active.updated_at = Set(now);
        let updated = active.update(&txn).await?;
        self.outbox
            .enqueue(
                &txn,
                relay::STATUS,
                &UpdateStatusRequest {
                    pending_question: req.question.clone(),
                    deadline: Some(deadline),
                    note: "the reviewer asked for information".into(),
                    ..status_update(&row.id, RequestStatus::AwaitingInformation, now)
                },
            )
            .await?;
        self.outbox
            .enqueue(
                &txn,
                relay::NOTIFY,
                &NotifyRequest {
                    kind: NotificationKind::InformationRequested as i32,
                    submission: Some(submission),
                    message: req.question,
                    ..Default::default()
                },
            )
            .await?;
        txn.commit().await?;
        self.outbox.wake();
        self.sync_clock(clock).await;
        tracing::info!(case_id = %updated.id, "information requested");
        self.to_case(&updated).await
    }

    /// The agency's answer (relayed by intake): the case goes back to review.
    async fn resume(&self, principal: Principal, req: ResumeCaseRequest) -> Result<Case> {
        auth::require_service(&principal)?;
        if req.event_id.is_empty() {
            return Err(ReviewError::invalid("event_id", "is required"));
        }
        let txn = self.db.begin().await?;
        let first = inbox_first_time(&txn, &req.event_id).await?;
        let row = lock_case(&txn, &req.case_id).await?;
        if !first || status_of(&row) != RequestStatus::AwaitingInformation {
            // A repeat, or an answer overtaken by events (e.g. a decision): nothing to resume.
            drop(txn);
            return self.to_case(&row).await;
        }
        let now = now_millis();
        let clock = ClockStore::resume(&txn, &row.id, now).await?;
        let mut deadline = SlaDeadline::decode(row.deadline.as_slice()).unwrap_or_default();
        if let Some((_, resumed)) = &clock {
            // Every pending threshold, and the deadline itself, moved by the time spent waiting.
            deadline.paused = false;
            deadline.remaining_when_paused = None;
            deadline.due_at = Some(timestamp_from_millis(resumed.due_at(resumed.thresholds.len() - 1)));
        }
        let mut active: case::ActiveModel = row.clone().into();
        active.deadline = Set(deadline.encode_to_vec());
        active.status = Set(RequestStatus::InReview as i32);
        active.pending_question = Set(String::new());
        active.last_answer = Set(req.answer);
        active.updated_at = Set(now);
        let updated = active.update(&txn).await?;
        self.outbox
            .enqueue(
                &txn,
                relay::STATUS,
                &UpdateStatusRequest {
                    deadline: Some(deadline),
                    note: "the agency answered; review resumed".into(),
                    ..status_update(&row.id, RequestStatus::InReview, now)
                },
            )
            .await?;
        txn.commit().await?;
        self.outbox.wake();
        self.sync_clock(clock).await;
        tracing::info!(case_id = %updated.id, "case resumed with the agency's answer");
        self.to_case(&updated).await
    }

    /// The agency withdrew its request (relayed by intake). A decided case stays decided; a case
    /// not yet enqueued will start withdrawn.
    async fn withdraw(&self, principal: Principal, req: WithdrawCaseRequest) -> Result<Case> {
        auth::require_service(&principal)?;
        if req.event_id.is_empty() {
            return Err(ReviewError::invalid("event_id", "is required"));
        }
        let txn = self.db.begin().await?;
        let first = inbox_first_time(&txn, &req.event_id).await?;
        let now = now_millis();
        let Some(row) = case::Entity::find_by_id(req.case_id.clone()).lock_exclusive().one(&txn).await? else {
            if first {
                withdrawal::ActiveModel::from(withdrawal::Model {
                    case_id: req.case_id.clone(),
                    reason: req.reason,
                    withdrawn_at: now,
                })
                .insert(&txn)
                .await?;
                txn.commit().await?;
            }
            return Ok(Case { id: req.case_id, status: RequestStatus::Withdrawn as i32, ..Default::default() });
        };
        let status = status_of(&row);
        if !first || matches!(status, RequestStatus::Decided | RequestStatus::Closed | RequestStatus::Withdrawn) {
            drop(txn);
            return self.to_case(&row).await;
        }
        let clock = ClockStore::stop(&txn, &row.id, now).await?;
        let mut active: case::ActiveModel = row.into();
        active.status = Set(RequestStatus::Withdrawn as i32);
        active.pending_question = Set(String::new());
        active.updated_at = Set(now);
        let updated = active.update(&txn).await?;
        txn.commit().await?;
        self.sync_clock(clock).await;
        tracing::info!(case_id = %updated.id, "case withdrawn by the agency");
        self.to_case(&updated).await
    }
}

/// Every item decided exactly once, each decision complete for its outcome.
fn validate_decisions(submission: &Submission, decisions: Vec<ItemDecision>) -> Result<Vec<ItemDecision>> {
    let mut v = FieldViolations::new();
    let items = submission.items.len();
    let mut seen = vec![false; items];
    let mut out = Vec::with_capacity(decisions.len());
    for (i, mut d) in decisions.into_iter().enumerate() {
        let f = |name: &str| format!("decisions[{i}].{name}");
        let index = d.item_index as usize;
        if index >= items {
            v.add(f("item_index"), format!("the case has items 0 to {}", items.saturating_sub(1)));
            continue;
        }
        if std::mem::replace(&mut seen[index], true) {
            v.add(f("item_index"), format!("item {index} is decided twice"));
            continue;
        }
        let outcome = ItemOutcome::try_from(d.outcome).unwrap_or(ItemOutcome::Unspecified);
        match outcome {
            ItemOutcome::Unspecified | ItemOutcome::Pending => v.add(f("outcome"), "must be a final outcome"),
            ItemOutcome::NoAction => {
                if !matches!(NoActionReason::try_from(d.no_action_reason), Ok(r) if r != NoActionReason::Unspecified) {
                    v.add(f("no_action_reason"), "is required when no action is taken");
                }
                d.territorial_scope.clear();
            }
            ItemOutcome::AlreadyUnavailable => d.territorial_scope.clear(),
            ItemOutcome::RemovedGlobally | ItemOutcome::RestrictedInJurisdiction => {
                if !matches!(DecisionGround::try_from(d.ground), Ok(g) if g != DecisionGround::Unspecified) {
                    v.add(f("ground"), "is required for a restriction (statement of reasons)");
                }
                if d.legal_ground.trim().is_empty() {
                    v.add(f("legal_ground"), "is required for a restriction");
                } else if d.legal_ground.chars().count() > MAX_LEGAL_GROUND {
                    v.add(f("legal_ground"), format!("longer than {MAX_LEGAL_GROUND} characters"));
                }
                if d.explanation.trim().is_empty() {
                    v.add(f("explanation"), "is required for a restriction");
                }
                if outcome == ItemOutcome::RemovedGlobally {
                    d.territorial_scope.clear();
                } else if d.territorial_scope.is_empty() {
                    d.territorial_scope.push(submission.jurisdiction.clone());
                }
                for (j, c) in d.territorial_scope.iter().enumerate() {
                    if !(c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())) {
                        v.add(format!("decisions[{i}].territorial_scope[{j}]"), "must be an ISO 3166-1 alpha-2 code");
                    }
                }
            }
        }
        if d.explanation.chars().count() > MAX_EXPLANATION {
            v.add(f("explanation"), format!("longer than {MAX_EXPLANATION} characters"));
        }
        out.push(d);
    }
    for (index, done) in seen.iter().enumerate() {
        if !done {
            v.add("decisions", format!("item {index} has no decision"));
        }
    }
    v.into_result()?;
    out.sort_by_key(|d| d.item_index);
    Ok(out)
}

/// The case, locked for this transaction; NOT_FOUND if there is none.
async fn lock_case(txn: &sea_orm::DatabaseTransaction, id: &str) -> Result<case::Model> {
    case::Entity::find_by_id(id.to_owned())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| ReviewError::NotFound(id.to_owned()))
}

/// The step of a case that intake's projection is told about, as of `at`.
fn status_update(request_id: &str, status: RequestStatus, at: i64) -> UpdateStatusRequest {
    UpdateStatusRequest {
        request_id: request_id.to_owned(),
        status: status as i32,
        occurred_at: Some(timestamp_from_millis(at)),
        ..Default::default()
    }
}

fn status_of(row: &case::Model) -> RequestStatus {
    RequestStatus::try_from(row.status).unwrap_or(RequestStatus::Unspecified)
}

fn wrong_state(row: &case::Model, action: &'static str) -> ReviewError {
    ReviewError::WrongState { id: row.id.clone(), status: status_of(row).as_str_name().to_owned(), action }
}

fn to_case(row: &case::Model, decisions: &[decision::Model]) -> Case {
    Case {
        id: row.id.clone(),
        submission: Submission::decode(row.submission.as_slice()).ok(),
        assessment: Assessment::decode(row.assessment.as_slice()).ok(),
        status: row.status,
        assigned_reviewer: row.assigned_reviewer.clone(),
        claim_expires_at: (row.claim_expires_at > 0).then(|| timestamp_from_millis(row.claim_expires_at)),
        decisions: decisions
            .iter()
            .map(|d| ItemDecision {
                item_index: d.item_index as u32,
                outcome: d.outcome,
                no_action_reason: d.no_action_reason,
                ground: d.ground,
                legal_ground: d.legal_ground.clone(),
                explanation: d.explanation.clone(),
                territorial_scope: serde_json::from_str(&d.territorial_scope).unwrap_or_default(),
            })
            .collect(),
        deadline: SlaDeadline::decode(row.deadline.as_slice()).ok(),
        decision_summary: row.decision_summary.clone(),
        decided_by: row.decided_by.clone(),
        approved_by: String::new(),
        pending_question: row.pending_question.clone(),
        created_at: Some(timestamp_from_millis(row.created_at)),
        updated_at: Some(timestamp_from_millis(row.updated_at)),
        decided_at: row.decided_at.map(timestamp_from_millis),
    }
}

fn not_yet(method: &str) -> Status {
    Status::unimplemented(format!("{method} is not available in this version"))
}

#[tonic::async_trait]
impl LegalReviewService for LegalReview {
    async fn enqueue_case(
        &self,
        request: Request<EnqueueCaseRequest>,
    ) -> std::result::Result<Response<EnqueueCaseResponse>, Status> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.enqueue(principal, request.into_inner()).await?))
    }

    async fn list_cases(
        &self,
        request: Request<ListCasesRequest>,
    ) -> std::result::Result<Response<ListCasesResponse>, Status> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.list(principal, request.into_inner()).await?))
    }

    async fn get_case(&self, request: Request<GetCaseRequest>) -> std::result::Result<Response<Case>, Status> {
        let principal = auth::principal(&request)?;
        if !matches!(principal, Principal::Service { .. }) {
            auth::require_role(&principal, REVIEWERS).map_err(ReviewError::from)?;
        }
        let row = self.find(&request.get_ref().case_id).await?;
        Ok(Response::new(self.to_case(&row).await?))
    }

    async fn claim_case(&self, request: Request<ClaimCaseRequest>) -> std::result::Result<Response<Case>, Status> {
        let principal = auth::principal(&request)?;
        let req = request.into_inner();
        let id = req.case_id.clone();
        Ok(Response::new(self.in_case_trace(&id, "review.claim", self.claim(principal, req)).await?))
    }

    async fn release_case(&self, _request: Request<ReleaseCaseRequest>) -> std::result::Result<Response<Case>, Status> {
        Err(not_yet("ReleaseCase"))
    }

    async fn submit_decision(
        &self,
        request: Request<SubmitDecisionRequest>,
    ) -> std::result::Result<Response<Case>, Status> {
        let principal = auth::principal(&request)?;
        let req = request.into_inner();
        let id = req.case_id.clone();
        Ok(Response::new(self.in_case_trace(&id, "review.decide", self.decide(principal, req)).await?))
    }

    async fn approve_decision(
        &self,
        _request: Request<ApproveDecisionRequest>,
    ) -> std::result::Result<Response<Case>, Status> {
        Err(not_yet("ApproveDecision"))
    }

    async fn request_information(
        &self,
        request: Request<RequestInformationRequest>,
    ) -> std::result::Result<Response<Case>, Status> {
        let principal = auth::principal(&request)?;
        let req = request.into_inner();
        let id = req.case_id.clone();
        let work = LegalReview::request_information(self, principal, req);
        Ok(Response::new(self.in_case_trace(&id, "review.request_information", work).await?))
    }

    async fn resume_case(&self, request: Request<ResumeCaseRequest>) -> std::result::Result<Response<Case>, Status> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.resume(principal, request.into_inner()).await?))
    }

    async fn escalate_case(
        &self,
        _request: Request<EscalateCaseRequest>,
    ) -> std::result::Result<Response<Case>, Status> {
        Err(not_yet("EscalateCase"))
    }

    async fn withdraw_case(
        &self,
        request: Request<WithdrawCaseRequest>,
    ) -> std::result::Result<Response<Case>, Status> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.withdraw(principal, request.into_inner()).await?))
    }

    async fn get_audit_trail(
        &self,
        _request: Request<GetAuditTrailRequest>,
    ) -> std::result::Result<Response<GetAuditTrailResponse>, Status> {
        Err(not_yet("GetAuditTrail"))
    }

    async fn verify_audit_trail(
        &self,
        _request: Request<VerifyAuditTrailRequest>,
    ) -> std::result::Result<Response<VerifyAuditTrailResponse>, Status> {
        Err(not_yet("VerifyAuditTrail"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crs_proto::common::Item;

    fn submission(items: usize) -> Submission {
        Submission { jurisdiction: "KZ".into(), items: vec![Item::default(); items], ..Default::default() }
    }

    fn restrict(i: u32) -> ItemDecision {
        ItemDecision {
            item_index: i,
            outcome: ItemOutcome::RestrictedInJurisdiction as i32,
            ground: DecisionGround::IllegalContent as i32,
            legal_ground: "Art. 9".into(),
            explanation: "unlawful there".into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_item_needs_exactly_one_complete_decision() {
        let err = validate_decisions(&submission(2), vec![restrict(0), restrict(0)]).unwrap_err();
        let ReviewError::InvalidArgument(v) = err else { panic!() };
        let fields: Vec<_> = v.iter().map(|(f, _)| f.to_owned()).collect();
        assert_eq!(fields, vec!["decisions[1].item_index", "decisions"]);

        let no_reason = ItemDecision { item_index: 0, outcome: ItemOutcome::NoAction as i32, ..Default::default() };
        let ReviewError::InvalidArgument(v) = validate_decisions(&submission(1), vec![no_reason]).unwrap_err() else {
            panic!()
        };
        assert_eq!(v.iter().next().unwrap().0, "decisions[0].no_action_reason");
    }

    #[test]
    fn a_restriction_defaults_to_the_requesting_jurisdiction() {
        let out = validate_decisions(&submission(1), vec![restrict(0)]).unwrap();
        assert_eq!(out[0].territorial_scope, vec!["KZ"]);
    }
}
