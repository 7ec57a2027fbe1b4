//! The case commands. Each locks its case in a transaction, asks the rules (`crs_domain::case`)
//! what may happen and what follows, and stores that with everything it causes (the status for
//! intake's projection, notifications, the SLA clock, the audit trail) before committing. A
//! command sent with an idempotency key returns its first result when retried.

use crs_domain::approval::CaseFacts;
use crs_domain::case::{Change, Event, Reviewer, check_reason};
use crs_domain::decision::{self, Request as DecisionRequest};
use crs_platform::auth::{self, Principal, Role};
use crs_platform::outbox::{OutboxBatch, inbox_first_time};
use crs_platform::shared_txn;
use crs_platform::time::{now_millis, timestamp_from_millis};
use crs_proto::common::{ItemDecision, RequestStatus, Submission};
use crs_proto::convert::{self, wire};
use crs_proto::intake::UpdateStatusRequest;
use crs_proto::notification::{NotificationKind, NotifyRequest};
use crs_proto::review::*;
use crs_timers::{Clock, ClockStore};
use prost::Message;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::{self, Action};
use crate::entities::{case, command_result, decision as decision_row, information};
use crate::error::ReviewError;
use crate::service::LegalReview;
use crate::store;

pub(crate) type Result<T> = std::result::Result<T, ReviewError>;

pub(crate) const REVIEWERS: &[Role] = &[Role::Reviewer, Role::SeniorReviewer, Role::Admin];
/// Longest question, reason or comment.
const MAX_TEXT: usize = 2000;

/// The reviewer a principal is, if it holds a reviewer role.
pub(crate) fn reviewer(p: &Principal) -> Result<Reviewer> {
    auth::require_role(p, REVIEWERS)?;
    Ok(Reviewer { subject: p.subject(), senior: p.has_role(Role::SeniorReviewer) || p.has_role(Role::Admin) })
}

/// What a command causes beyond its case row, collected while it runs.
#[derive(Default)]
pub(crate) struct Effects {
    pub audit: Vec<Action>,
    /// Clocks changed in the transaction, to point the timer index at once it commits.
    pub clocks: Vec<(Clock, Clock)>,
    /// A decision that took effect, for the metrics once it commits.
    pub decided: Option<(Submission, Vec<ItemDecision>)>,
    /// Queues recorded in `known_queues` (a withdrawal may open cases in several), remembered
    /// once it commits.
    pub known_queues: Vec<String>,
    /// Hand-offs of what the command did that nothing in its transaction reads back, written
    /// just before its commit ([`Effects::write`]; a case opening's, with those of the other
    /// openings sharing its transaction).
    pub handoffs: OutboxBatch,
    /// A case opening's audit entries, written with those of the other openings sharing its
    /// transaction, just before its commit.
    pub deferred_audit: Vec<audit::Taken>,
}

impl Effects {
    pub fn record(&mut self, row: &case::Model, actor: &str, action: &'static str, details: serde_json::Value) {
        self.audit.push(Action { case_id: row.id.clone(), actor: actor.to_owned(), action, details });
    }

    /// Writes the audit entries and hand-offs collected so far, at `now`, inside `txn`: the last
    /// writes of a command before its commit.
    pub async fn write(&mut self, txn: &DatabaseTransaction, now: i64) -> Result<()> {
        std::mem::take(&mut self.handoffs).write(txn).await?;
        audit::append(txn, std::mem::take(&mut self.audit), now).await?;
        Ok(())
    }

    /// Writes what the case openings of one shared transaction left to be written (their audit
    /// entries and hand-offs), one statement per table for them all.
    pub fn write_openings<'t>(
        txn: &'t DatabaseTransaction,
        opened: &'t mut [(EnqueueCaseResponse, Effects)],
    ) -> futures::future::BoxFuture<'t, Result<()>> {
        let (mut handoffs, mut taken) = (OutboxBatch::default(), Vec::new());
        for (_, fx) in opened.iter_mut() {
            handoffs.extend(std::mem::take(&mut fx.handoffs));
            taken.extend(std::mem::take(&mut fx.deferred_audit));
        }
        Box::pin(async move {
            handoffs.write(txn).await?;
            audit::append_all(txn, taken).await?;
            Ok(())
        })
    }
}

/// A triaged request to open a case for, as relayed from triage.
struct Opening<'a> {
    /// Whether the hand-off's event is new; a repeat changes nothing.
    first_time: bool,
    submission: Submission,
    assessment: crs_proto::common::Assessment,
    policy_name: &'a str,
}

/// One change to store: the locked row, what the rules made of it, the note for the agency's
/// view, and when.
pub(crate) struct Step<'a> {
    pub row: &'a case::Model,
    pub change: &'a Change,
    pub note: &'a str,
    pub now: i64,
}

/// A command's idempotency key, with what it was first used for.
pub(crate) struct Idempotency {
    actor: String,
    key: String,
    command: &'static str,
    request_hash: String,
}

impl Idempotency {
    /// `None` when the caller sent no key.
    pub fn of(p: &Principal, key: &str, command: &'static str, request: &impl Message) -> Result<Option<Self>> {
        if key.is_empty() {
            return Ok(None);
        }
        if key.len() > 128 || key.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ReviewError::invalid("idempotency_key", "at most 128 printable characters without spaces"));
        }
        Ok(Some(Idempotency {
            actor: p.subject(),
            key: key.to_owned(),
            command,
            request_hash: hex::encode(Sha256::digest(request.encode_to_vec())),
        }))
    }

    /// The first result, if this key was used before for this very command.
    async fn replay(&self, txn: &DatabaseTransaction) -> Result<Option<Case>> {
        let found = command_result::Entity::find_by_id((self.actor.clone(), self.key.clone())).one(txn).await?;
        match found {
            None => Ok(None),
            Some(r) if r.command == self.command && r.request_hash == self.request_hash => {
                Case::decode(r.response.as_slice()).map(Some).map_err(|e| ReviewError::Internal(e.into()))
            }
            Some(_) => Err(ReviewError::IdempotencyKeyReused(self.key.clone())),
        }
    }

    async fn remember(&self, txn: &DatabaseTransaction, case: &Case, now: i64) -> Result<()> {
        command_result::ActiveModel::from(command_result::Model {
            actor: self.actor.clone(),
            idempotency_key: self.key.clone(),
            case_id: case.id.clone(),
            command: self.command.to_owned(),
            request_hash: self.request_hash.clone(),
            response: case.encode_to_vec(),
            created_at: now,
        })
        .insert(txn)
        .await?;
        Ok(())
    }
}

/// The lease a reviewer asked for, within the server's bounds, in milliseconds.
fn lease_ms(cfg: &crate::config::ReviewConfig, requested: Option<&prost_types::Duration>) -> Result<i64> {
    let secs = match requested.map(|d| d.seconds) {
        None | Some(0) => cfg.claim_lease_secs,
        Some(s) if s < 0 => return Err(ReviewError::invalid("lease", "must be positive")),
        Some(s) => s.min(cfg.max_claim_lease_secs),
    };
    Ok(secs * 1000)
}

fn check_text(field: &str, text: &str) -> Result<()> {
    check_reason(field, text, MAX_TEXT).map_err(|r| ReviewError::refused("", r))
}

impl LegalReview {
    /// Stores `change` on the locked `row` inside `txn` with what it causes; `extra` sets the
    /// command's own columns. Returns the row as now stored.
    pub(crate) async fn apply(
        &self,
        txn: &DatabaseTransaction,
        step: Step<'_>,
        fx: &mut Effects,
        extra: impl FnOnce(&mut case::ActiveModel),
    ) -> Result<case::Model> {
        let Step { row, change, note, now } = step;
        let before = store::to_domain(row)?;
        let after = &change.case;
        let mut active: case::ActiveModel = row.clone().into();
        active.status = Set(wire::<RequestStatus, _>(after.state.status));
        active.escalated = Set(after.state.escalated);
        let (holder, expires, senior) = match &after.claim {
            Some(c) => (c.holder.clone(), c.expires_at, c.senior),
            None => (String::new(), 0, false),
        };
        active.assigned_reviewer = Set(holder);
        active.claim_expires_at = Set(expires);
        active.claim_senior = Set(senior);
        active.decided_by = Set(after.decided_by.clone().unwrap_or_default());
        active.approved_by = Set(after.approved_by.clone().unwrap_or_default());
        if change.has(&Event::Escalated) {
            active.queue = Set(self.cfg.escalation_queue.clone());
        }
        for event in &change.events {
            let clock = match event {
                Event::ClockPaused => ClockStore::pause(txn, &row.id, now).await?,
                Event::ClockResumed => ClockStore::resume(txn, &row.id, now).await?,
                Event::ClockStopped => ClockStore::stop(txn, &row.id, now).await?,
                _ => continue,
            };
            if let Some((was, is)) = clock {
                active.due_at = Set(is.deadline.due_at(is.deadline.paused_at.unwrap_or(now)));
                fx.clocks.push((was, is));
            }
        }
        if change.has(&Event::DecisionTookEffect) {
            active.decided_at = Set(Some(now));
        }
        if change.has(&Event::DecisionSentBack) {
            decision_row::Entity::delete_many()
                .filter(decision_row::Column::CaseId.eq(row.id.clone()))
                .exec(txn)
                .await?;
            active.decision_summary = Set(String::new());
            active.approval_reason = Set(String::new());
        }
        active.version = Set(row.version + 1);
        active.updated_at = Set(now);
        extra(&mut active);
        let updated = active.update(txn).await?;

        let submission = (!store::is_placeholder(&updated)).then(|| store::submission(&updated)).transpose()?;
        let decisions: Vec<ItemDecision> = if change.has(&Event::DecisionTookEffect) {
            store::decisions(txn, &row.id).await?.iter().map(crate::views::item_decision).collect()
        } else {
            Vec::new()
        };
        // Intake's projection follows what the agency may see, in the case's version order.
        let seen = after.state.seen_by_agency();
        if seen != before.state.seen_by_agency() && submission.is_some() {
            let assessment = store::assessment(&updated)?;
            let clock = ClockStore::load(txn, &row.id, false).await?;
            self.outbox
                .send(
                    txn,
                    &UpdateStatusRequest {
                        request_id: row.id.clone(),
                        status: wire::<RequestStatus, _>(seen),
                        item_decisions: decisions.clone(),
                        deadline: crate::views::deadline(&assessment, clock.as_ref(), now),
                        note: note.to_owned(),
                        pending_question: updated.pending_question.clone(),
                        occurred_at: Some(timestamp_from_millis(now)),
                        case_version: updated.version as u64,
                        ..Default::default()
                    },
                )
                .await?;
        }
        if change.has(&Event::DecisionTookEffect)
            && let Some(submission) = submission
        {
            // The deadline as the stopped clock left it and the moment of the decision: the
            // transparency report measures time to decision and deadlines met from them.
            let assessment = store::assessment(&updated)?;
            let clock = ClockStore::load(txn, &row.id, false).await?;
            let deadline = crate::views::deadline(&assessment, clock.as_ref(), now);
            self.outbox
                .send(
                    txn,
                    &NotifyRequest {
                        kind: NotificationKind::Decided as i32,
                        submission: Some(submission.clone()),
                        decisions: decisions.clone(),
                        message: updated.decision_summary.clone(),
                        deadline: deadline.clone(),
                        decided_at: Some(timestamp_from_millis(now)),
                        ..Default::default()
                    },
                )
                .await?;
            let closing = crate::merges::Closing::Decided { decisions: &decisions, deadline };
            let answered = self.case_closed(txn, &updated, closing, fx, now).await?;
            self.outbox.send(txn, &record_decision(&row.id, &submission, &decisions, &answered, now)).await?;
            fx.decided = Some((submission, decisions));
        } else if after.state.status == crs_domain::Status::Withdrawn && before.state.status != after.state.status {
            self.case_closed(txn, &updated, crate::merges::Closing::Withdrawn, fx, now).await?;
        }
        Ok(updated)
    }

    /// Appends the audit entries, remembers the result for its idempotency key, commits, and
    /// does what must follow the commit; returns the case as the caller sees it.
    async fn finish(
        &self,
        txn: DatabaseTransaction,
        row: case::Model,
        fx: Effects,
        idempotency: Option<Idempotency>,
        now: i64,
    ) -> Result<Case> {
        let around = store::around(&txn, std::slice::from_ref(&row.id)).await?;
        let case = crate::views::to_case(&row, &around, now);
        if let Some(i) = &idempotency {
            i.remember(&txn, &case, now).await?;
        }
        self.commit(txn, fx, now).await?;
        Ok(case)
    }

    /// Appends the audit entries, commits, and does what must follow the commit: [`finish`]
    /// without the case's view, for a caller that answers without it (a relayed hand-off), which
    /// spares the four reads the view takes.
    ///
    /// [`finish`]: LegalReview::finish
    async fn commit(&self, txn: DatabaseTransaction, mut fx: Effects, now: i64) -> Result<()> {
        fx.write(&txn, now).await?;
        txn.commit().await?;
        self.committed(fx).await;
        Ok(())
    }

    /// What follows a commit: the relay, the SLA timers and the metrics learn of it.
    async fn committed(&self, fx: Effects) {
        self.outbox.wake();
        for (was, is) in fx.clocks {
            self.sync_clock(Some((was, is))).await;
        }
        if let Some((submission, decisions)) = fx.decided {
            crate::metrics::count_decisions(&submission, &decisions);
        }
        if !fx.known_queues.is_empty() {
            self.known_queues.lock().expect("known queues").extend(fx.known_queues);
        }
    }

    /// Locks the case and answers a retried command from its first result.
    async fn begin(
        &self,
        id: &str,
        idempotency: &Option<Idempotency>,
    ) -> Result<(DatabaseTransaction, case::Model, Option<Case>)> {
        let txn = self.db.begin().await?;
        let row = store::lock(&txn, id).await?;
        let replayed = match idempotency {
            Some(i) => i.replay(&txn).await?,
            None => None,
        };
        Ok((txn, row, replayed))
    }

    pub(crate) async fn claim(&self, p: Principal, req: ClaimCaseRequest) -> Result<Case> {
        let who = reviewer(&p)?;
        let lease = lease_ms(&self.cfg, req.lease.as_ref())?;
        let (txn, row, _) = self.begin(&req.case_id, &None).await?;
        self.claim_locked(txn, row, &who, lease).await
    }

    /// Claims a case already locked in `txn` (by ClaimCase, or by ClaimNextCase's pick).
    pub(crate) async fn claim_locked(
        &self,
        txn: DatabaseTransaction,
        row: case::Model,
        who: &Reviewer,
        lease: i64,
    ) -> Result<Case> {
        let now = now_millis();
        let change = store::to_domain(&row)?.claim(who, now, lease).map_err(|r| ReviewError::refused(&row.id, r))?;
        let mut fx = Effects::default();
        fx.record(&row, &who.subject, "claim", json!({ "until": now + lease }));
        let row = self
            .apply(&txn, Step { row: &row, change: &change, note: "under legal review", now }, &mut fx, |_| {})
            .await?;
        tracing::info!(case_id = %row.id, reviewer = %who.subject, "case claimed");
        self.finish(txn, row, fx, None, now).await
    }

    pub(crate) async fn release(&self, p: Principal, req: ReleaseCaseRequest) -> Result<Case> {
        let who = reviewer(&p)?;
        let (txn, row, _) = self.begin(&req.case_id, &None).await?;
        let now = now_millis();
        let change = store::to_domain(&row)?.release(&who, now).map_err(|r| ReviewError::refused(&row.id, r))?;
        let mut fx = Effects::default();
        fx.record(&row, &who.subject, "release", json!({ "holder": row.assigned_reviewer }));
        let row = self.apply(&txn, Step { row: &row, change: &change, note: "", now }, &mut fx, |_| {}).await?;
        self.finish(txn, row, fx, None, now).await
    }

    pub(crate) async fn reassign(&self, p: Principal, req: ReassignCaseRequest) -> Result<Case> {
        let who = reviewer(&p)?;
        if crs_platform::auth::Principal::from_subject(&req.assignee, &["reviewer".to_owned()])
            .is_none_or(|a| !matches!(a, Principal::Reviewer { .. }))
        {
            return Err(ReviewError::invalid("assignee", "must name a reviewer: reviewer:<id>"));
        }
        check_text("reason", &req.reason)?;
        let lease = lease_ms(&self.cfg, req.lease.as_ref())?;
        let (txn, row, _) = self.begin(&req.case_id, &None).await?;
        let now = now_millis();
        let change = store::to_domain(&row)?
            .reassign(&who, &req.assignee, now, lease)
            .map_err(|r| ReviewError::refused(&row.id, r))?;
        let mut fx = Effects::default();
        fx.record(
            &row,
            &who.subject,
            "reassign",
            json!({ "from": row.assigned_reviewer, "to": req.assignee, "until": now + lease, "reason": req.reason }),
        );
        let row = self
            .apply(&txn, Step { row: &row, change: &change, note: "under legal review", now }, &mut fx, |_| {})
            .await?;
        self.finish(txn, row, fx, None, now).await
    }

    pub(crate) async fn escalate(&self, p: Principal, req: EscalateCaseRequest) -> Result<Case> {
        let who = reviewer(&p)?;
        check_text("reason", &req.reason)?;
        let (txn, row, _) = self.begin(&req.case_id, &None).await?;
        let now = now_millis();
        let change = store::to_domain(&row)?.escalate(&who, now).map_err(|r| ReviewError::refused(&row.id, r))?;
        let mut fx = Effects::default();
        fx.record(&row, &who.subject, "escalate", json!({ "reason": req.reason, "from_queue": row.queue }));
        let note = format!("escalated to senior reviewers: {}", req.reason);
        let row = self.apply(&txn, Step { row: &row, change: &change, note: &note, now }, &mut fx, |_| {}).await?;
        tracing::info!(case_id = %row.id, by = %who.subject, "case escalated");
        self.finish(txn, row, fx, None, now).await
    }

    pub(crate) async fn decide(&self, p: Principal, req: SubmitDecisionRequest) -> Result<Case> {
        let who = reviewer(&p)?;
        let idempotency = Idempotency::of(&p, &req.idempotency_key, "decide", &req)?;
        let (txn, row, replayed) = self.begin(&req.case_id, &idempotency).await?;
        if let Some(first) = replayed {
            return Ok(first);
        }
        let now = now_millis();
        let case = store::to_domain(&row)?;
        case.may_decide(&who, now).map_err(|r| ReviewError::refused(&row.id, r))?;
        let submission = store::submission(&row)?;
        let assessment = store::assessment(&row)?;
        // One piece of content is decided once at a time per jurisdiction.
        let held = crate::merges::held_elsewhere(&txn, &row, &submission).await?;
        if !held.is_empty() {
            let items: Vec<String> =
                held.iter().map(|(i, key, case)| format!("item {i} ({key}) in case {case}")).collect();
            return Err(ReviewError::ContentUnderReview { id: row.id.clone(), items: items.join(", ") });
        }
        let decisions = decision::validate(
            &DecisionRequest { items: submission.items.len(), jurisdiction: &submission.jurisdiction },
            req.decisions.into_iter().map(convert::proposed_item_decision).collect(),
            &req.summary,
        )?;
        let facts = CaseFacts {
            human_rights_review: assessment.human_rights_review,
            instrument: convert::instrument(submission.legal_instrument),
            high_risk_policy: assessment.policy.as_ref().is_some_and(|p| p.high_risk),
        };
        let approval = self.approval.requires(&facts, &decisions);
        let change = case.decide(&who, approval, now).map_err(|r| ReviewError::refused(&row.id, r))?;

        decision_row::Entity::delete_many().filter(decision_row::Column::CaseId.eq(row.id.clone())).exec(&txn).await?;
        decision_row::Entity::insert_many(decisions.iter().map(|d| {
            let wire = convert::item_decision(d);
            decision_row::ActiveModel::from(decision_row::Model {
                case_id: row.id.clone(),
                item_index: d.item_index as i32,
                outcome: wire.outcome,
                no_action_reason: wire.no_action_reason,
                ground: wire.ground,
                legal_ground: wire.legal_ground,
                explanation: wire.explanation,
                platform_policy: wire.platform_policy,
                territorial_scope: serde_json::to_string(&wire.territorial_scope).expect("strings serialise"),
                decided_by: who.subject.clone(),
                decided_at: now,
            })
        }))
        .exec_without_returning(&txn)
        .await?;
        let mut fx = Effects::default();
        let reason = approval.map(|r| r.to_string()).unwrap_or_default();
        fx.record(
            &row,
            &who.subject,
            "decide",
            json!({
                "decisions": decisions.iter().map(decision_json).collect::<Vec<_>>(),
                "summary": req.summary,
                "needs_approval": reason,
            }),
        );
        let summary = req.summary.clone();
        let row = self
            .apply(&txn, Step { row: &row, change: &change, note: &req.summary, now }, &mut fx, |a| {
                a.decision_summary = Set(summary);
                a.approval_reason = Set(reason.clone());
            })
            .await?;
        match approval {
            Some(why) => {
                tracing::info!(case_id = %row.id, reviewer = %who.subject, reason = %why, "decision awaits approval")
            }
            None => tracing::info!(case_id = %row.id, reviewer = %who.subject, "case decided"),
        }
        self.finish(txn, row, fx, idempotency, now).await
    }

    pub(crate) async fn approve(&self, p: Principal, req: ApproveDecisionRequest) -> Result<Case> {
        let who = reviewer(&p)?;
        if !req.approve {
            check_text("comment", &req.comment)?;
        } else if req.comment.chars().count() > MAX_TEXT {
            return Err(ReviewError::invalid("comment", format!("longer than {MAX_TEXT} characters")));
        }
        let idempotency = Idempotency::of(&p, &req.idempotency_key, "approve", &req)?;
        let (txn, row, replayed) = self.begin(&req.case_id, &idempotency).await?;
        if let Some(first) = replayed {
            return Ok(first);
        }
        let now = now_millis();
        let case = store::to_domain(&row)?;
        let change = if req.approve { case.approve(&who) } else { case.send_back(&who) }
            .map_err(|r| ReviewError::refused(&row.id, r))?;
        let mut fx = Effects::default();
        if req.approve {
            fx.record(&row, &who.subject, "approve", json!({ "comment": req.comment, "decided_by": row.decided_by }));
        } else {
            let discarded: Vec<_> =
                store::decisions(&txn, &row.id).await?.iter().map(crate::views::item_decision).collect();
            fx.record(
                &row,
                &who.subject,
                "send_back",
                json!({
                    "comment": req.comment,
                    "decided_by": row.decided_by,
                    "discarded": discarded.iter().map(wire_decision_json).collect::<Vec<_>>(),
                }),
            );
        }
        let note = row.decision_summary.clone();
        let row = self.apply(&txn, Step { row: &row, change: &change, note: &note, now }, &mut fx, |_| {}).await?;
        tracing::info!(case_id = %row.id, approver = %who.subject, approved = req.approve, "second review");
        self.finish(txn, row, fx, idempotency, now).await
    }

    pub(crate) async fn request_information(&self, p: Principal, req: RequestInformationRequest) -> Result<Case> {
        let who = reviewer(&p)?;
        check_text("question", &req.question)?;
        let idempotency = Idempotency::of(&p, &req.idempotency_key, "ask", &req)?;
        let (txn, row, replayed) = self.begin(&req.case_id, &idempotency).await?;
        if let Some(first) = replayed {
            return Ok(first);
        }
        let now = now_millis();
        let change =
            store::to_domain(&row)?.ask_information(&who, now).map_err(|r| ReviewError::refused(&row.id, r))?;
        let rounds =
            information::Entity::find().filter(information::Column::CaseId.eq(row.id.clone())).all(&txn).await?;
        information::ActiveModel::from(information::Model {
            case_id: row.id.clone(),
            round: rounds.len() as i32 + 1,
            asked_by: who.subject.clone(),
            question: req.question.clone(),
            asked_at: now,
            answer: String::new(),
            answered_at: None,
        })
        .insert(&txn)
        .await?;
        let submission = store::submission(&row)?;
        self.outbox
            .send(
                &txn,
                &NotifyRequest {
                    kind: NotificationKind::InformationRequested as i32,
                    submission: Some(submission),
                    message: req.question.clone(),
                    ..Default::default()
                },
            )
            .await?;
        let mut fx = Effects::default();
        fx.record(&row, &who.subject, "ask", json!({ "round": rounds.len() + 1, "question": req.question }));
        let question = req.question.clone();
        let row = self
            .apply(
                &txn,
                Step { row: &row, change: &change, note: "the reviewer asked for information", now },
                &mut fx,
                |a| a.pending_question = Set(question),
            )
            .await?;
        tracing::info!(case_id = %row.id, "information requested");
        self.finish(txn, row, fx, idempotency, now).await
    }

    /// The agency's answer, relayed by intake: the case returns to review.
    pub(crate) async fn resume(&self, p: Principal, req: ResumeCaseRequest) -> Result<Case> {
        if req.event_id.is_empty() {
            return Err(ReviewError::invalid("event_id", "is required"));
        }
        let (txn, row, _) = self.begin(&req.case_id, &None).await?;
        let first = inbox_first_time(&txn, &req.event_id).await?;
        let now = now_millis();
        let change = match store::to_domain(&row)?.answer() {
            Ok(change) if first => change,
            // A repeat, or an answer overtaken by events (a withdrawal): nothing to resume.
            _ => {
                drop(txn);
                let around = store::around(&self.db, std::slice::from_ref(&row.id)).await?;
                return Ok(crate::views::to_case(&row, &around, now));
            }
        };
        let open = information::Entity::find()
            .filter(information::Column::CaseId.eq(row.id.clone()))
            .filter(information::Column::AnsweredAt.is_null())
            .order_by_desc(information::Column::Round)
            .one(&txn)
            .await?;
        let round = open.as_ref().map(|o| o.round);
        if let Some(open) = open {
            let mut a: information::ActiveModel = open.into();
            a.answer = Set(req.answer.clone());
            a.answered_at = Set(Some(now));
            a.update(&txn).await?;
        }
        let mut fx = Effects::default();
        fx.record(&row, &p.subject(), "answer", json!({ "round": round, "answer": agency_text(&req.answer) }));
        let row = self
            .apply(
                &txn,
                Step { row: &row, change: &change, note: "the agency answered; review resumed", now },
                &mut fx,
                |a| a.pending_question = Set(String::new()),
            )
            .await?;
        tracing::info!(case_id = %row.id, "case resumed with the agency's answer");
        self.finish(txn, row, fx, None, now).await
    }

    /// The agency withdraws its request (intake asks while the agency waits). Legal review is
    /// the authority: under the case's lock, either the withdrawal or a decision came first. A
    /// withdrawal before the case exists is kept as a withdrawn case that triage's hand-off fills.
    pub(crate) async fn withdraw(&self, p: Principal, req: WithdrawCaseRequest) -> Result<Case> {
        if req.case_id.is_empty() {
            return Err(ReviewError::invalid("case_id", "is required"));
        }
        let now = now_millis();
        let txn = self.db.begin().await?;
        // The row is the gate: whoever inserts it first (this, or the enqueue) is seen by the other.
        case::Entity::insert(case::ActiveModel::from(placeholder(&req.case_id, now)))
            .on_conflict(OnConflict::column(case::Column::Id).do_nothing().to_owned())
            .exec_without_returning(&txn)
            .await?;
        let row = store::lock(&txn, &req.case_id).await?;
        if store::is_placeholder(&row)
            && row.version == 0
            && let Some(merged) =
                crate::entities::merged_request::Entity::find_by_id(req.case_id.clone()).one(&txn).await?
        {
            // Not a case: a request that follows one.
            return self.withdraw_merged(txn, &p, merged, &req.reason, now).await;
        }
        let case = store::to_domain(&row)?;
        if case.status() == crs_domain::Status::Withdrawn {
            let placeholder_new = store::is_placeholder(&row) && row.version == 0;
            if !placeholder_new {
                drop(txn);
                let around = store::around(&self.db, std::slice::from_ref(&row.id)).await?;
                return Ok(crate::views::to_case(&row, &around, now));
            }
            // A withdrawal before the case: recorded now; the enqueue will find it.
            let mut fx = Effects::default();
            fx.record(
                &row,
                &p.subject(),
                "withdraw",
                json!({ "reason": agency_text(&req.reason), "before_enqueue": true }),
            );
            let mut active: case::ActiveModel = row.into();
            active.version = Set(1);
            active.decision_summary = Set(String::new());
            let row = active.update(&txn).await?;
            tracing::info!(case_id = %row.id, "withdrawn before its case was opened");
            return self.finish(txn, row, fx, None, now).await;
        }
        let change = match case.withdraw() {
            Ok(change) => change,
            Err(crs_domain::case::Refusal::State(refused)) if refused.status == crs_domain::Status::Decided => {
                let decisions = store::decisions(&txn, &row.id).await?;
                let outcomes: Vec<String> = decisions
                    .iter()
                    .map(|d| {
                        format!(
                            "item {}: {}",
                            d.item_index,
                            convert::short_name_of::<crs_proto::common::ItemOutcome>(d.outcome)
                        )
                    })
                    .collect();
                let at = row
                    .decided_at
                    .map(|t| crs_platform::time::datetime_from_millis(t).to_rfc3339())
                    .unwrap_or_default();
                return Err(ReviewError::AlreadyDecided {
                    id: row.id,
                    decision: format!("at {at}: {}", outcomes.join(", ")),
                });
            }
            Err(r) => return Err(ReviewError::refused(&row.id, r)),
        };
        let mut fx = Effects::default();
        fx.record(&row, &p.subject(), "withdraw", json!({ "reason": agency_text(&req.reason) }));
        let note = req.reason.clone();
        let row = self
            .apply(&txn, Step { row: &row, change: &change, note: &note, now }, &mut fx, |a| {
                a.pending_question = Set(String::new())
            })
            .await?;
        tracing::info!(case_id = %row.id, "case withdrawn by the agency");
        self.finish(txn, row, fx, None, now).await
    }

    /// Opens the case for a triaged request (relayed by triage) and arms its SLA clock, or merges
    /// the request into the open case that already reviews every item it names (see `merges`).
    pub(crate) async fn enqueue(&self, p: Principal, req: EnqueueCaseRequest) -> Result<EnqueueCaseResponse> {
        if req.event_id.is_empty() {
            return Err(ReviewError::invalid("event_id", "is required"));
        }
        let submission = req.submission.ok_or_else(|| ReviewError::invalid("submission", "is required"))?;
        let assessment = req.assessment.ok_or_else(|| ReviewError::invalid("assessment", "is required"))?;
        let policy =
            assessment.policy.clone().ok_or_else(|| ReviewError::invalid("assessment.policy", "is required"))?;
        if submission.received_at.is_none() {
            return Err(ReviewError::invalid("submission.received_at", "is required"));
        }
        if submission.request_id.is_empty() {
            return Err(ReviewError::invalid("submission.request_id", "is required"));
        }
        let this = self.clone();
        let event_id = req.event_id;
        let (opened, fx) = self
            .openings
            .run(shared_txn::handoff(event_id, move |txn, first_time| {
                let (this, p) = (this.clone(), p.clone());
                let (submission, assessment, policy) = (submission.clone(), assessment.clone(), policy.clone());
                Box::pin(async move {
                    let opening = Opening { first_time, submission, assessment, policy_name: &policy.name };
                    this.open_case(txn, &p, opening).await
                })
            }))
            .await?;
        self.committed(fx).await;
        Ok(opened)
    }

    /// Opens the case of a triaged request inside `txn` (or merges the request into the case
    /// already open on its content); returns its audit entries, to be written before the
    /// commit, and what must follow the commit. A replayed event changes nothing.
    async fn open_case(
        &self,
        txn: &DatabaseTransaction,
        p: &Principal,
        o: Opening<'_>,
    ) -> Result<(EnqueueCaseResponse, Effects)> {
        let Opening { first_time, submission, assessment, policy_name } = o;
        let id = submission.request_id.clone();
        let mut fx = Effects::default();
        if !first_time {
            return Ok((EnqueueCaseResponse { case_id: id, replayed: true }, fx));
        }
        let now = now_millis();
        let trace = crs_platform::telemetry::current_traceparent();
        // The row is the gate a withdrawal of the same request meets: whoever inserts it first
        // is seen by the other.
        let gate = crate::merges::opening(&submission, &assessment, 0, trace, now);
        let inserted = case::Entity::insert(case::ActiveModel::from(gate.clone()))
            .on_conflict(OnConflict::column(case::Column::Id).do_nothing().to_owned())
            .exec_without_returning(txn)
            .await?;
        if inserted == 0 {
            let existing = store::lock(txn, &id).await?;
            if store::is_placeholder(&existing) {
                // The agency withdrew first: the case is kept, withdrawn, with its request.
                let mut active: case::ActiveModel = existing.clone().into();
                active.submission = Set(submission.encode_to_vec());
                active.assessment = Set(assessment.encode_to_vec());
                active.queue = Set(assessment.queue.clone());
                active.priority = Set(assessment.priority as i32);
                active.version = Set(existing.version + 1);
                active.updated_at = Set(now);
                let row = active.update(txn).await?;
                // Intake learnt of the withdrawal when it asked; this makes sure its view agrees.
                self.outbox
                    .send(
                        txn,
                        &UpdateStatusRequest {
                            request_id: id.clone(),
                            status: RequestStatus::Withdrawn as i32,
                            note: "withdrawn by the agency".into(),
                            occurred_at: Some(timestamp_from_millis(existing.created_at)),
                            case_version: row.version as u64,
                            ..Default::default()
                        },
                    )
                    .await?;
                fx.record(
                    &row,
                    &p.subject(),
                    "enqueue",
                    json!({ "withdrawn_before": true, "agency_id": submission.agency_id, "items": submission.items.len() }),
                );
                fx.deferred_audit.push(audit::taken(std::mem::take(&mut fx.audit), now));
            }
            return Ok((EnqueueCaseResponse { case_id: id, replayed: true }, fx));
        }
        let placement = crate::merges::Placement {
            submission: &submission,
            assessment: &assessment,
            version: 0,
            actor: p.subject(),
            note: format!("triaged under {policy_name}"),
            details: json!({}),
        };
        let placed = self.place(txn, gate, placement, &mut fx, now).await?;
        let case_id = match placed {
            crate::merges::Placed::Opened => id.clone(),
            crate::merges::Placed::Merged(case_id) => case_id,
        };
        fx.deferred_audit.push(audit::taken(std::mem::take(&mut fx.audit), now));
        Ok((EnqueueCaseResponse { case_id, replayed: false }, fx))
    }
}

/// A case row with nothing in it yet: the shape of a withdrawal that arrived before its case.
pub(crate) fn placeholder(id: &str, now: i64) -> case::Model {
    case::Model {
        id: id.to_owned(),
        status: RequestStatus::Withdrawn as i32,
        queue: String::new(),
        priority: 0,
        due_at: 0,
        submission: Vec::new(),
        assessment: Vec::new(),
        assigned_reviewer: String::new(),
        claim_expires_at: 0,
        claim_senior: false,
        escalated: false,
        decision_summary: String::new(),
        decided_by: String::new(),
        approved_by: String::new(),
        approval_reason: String::new(),
        decided_at: None,
        pending_question: String::new(),
        trace_context: None,
        version: 0,
        created_at: now,
        updated_at: now,
        text_redacted_at: None,
    }
}

/// What the audit trail keeps of an agency's own words (an answer, a withdrawal's reason): their
/// SHA-256 and length, which prove what was said while the text itself (kept with the request)
/// is subject to retention; the trail itself can never be edited.
pub(crate) fn agency_text(text: &str) -> serde_json::Value {
    use sha2::Digest;
    json!({ "sha256": hex::encode(sha2::Sha256::digest(text.as_bytes())), "chars": text.chars().count() })
}

fn decision_json(d: &crs_domain::decision::ItemDecision) -> serde_json::Value {
    wire_decision_json(&convert::item_decision(d))
}

/// An item decision in full, for the audit trail.
fn wire_decision_json(d: &ItemDecision) -> serde_json::Value {
    json!({
        "item_index": d.item_index,
        "outcome": convert::short_name_of::<crs_proto::common::ItemOutcome>(d.outcome),
        "no_action_reason": convert::short_name_of::<crs_proto::common::NoActionReason>(d.no_action_reason),
        "ground": convert::short_name_of::<crs_proto::common::DecisionGround>(d.ground),
        "legal_ground": d.legal_ground,
        "explanation": d.explanation,
        "platform_policy": d.platform_policy,
        "territorial_scope": d.territorial_scope,
    })
}

/// What triage keeps of a decision: the outcome for each piece of content (reported to reviewers
/// of later requests naming it) and whether the agency's request was granted (its history).
fn record_decision(
    case_id: &str,
    submission: &crs_proto::common::Submission,
    decisions: &[ItemDecision],
    merged: &[(Submission, Vec<ItemDecision>)],
    now: i64,
) -> crs_proto::triage::RecordDecisionRequest {
    use crs_proto::common::ItemOutcome;
    use crs_proto::triage::{DecidedContent, DecidedRequest, RecordDecisionRequest};
    let content: Vec<DecidedContent> = decisions
        .iter()
        .filter_map(|d| {
            let item = submission.items.iter().find(|i| i.index == d.item_index)?;
            Some(DecidedContent { content_key: item.content_key.clone(), outcome: d.outcome })
        })
        .collect();
    // Each agency that asked, the case's and those merged into it, has its request decided.
    let requests = std::iter::once((submission, decisions))
        .chain(merged.iter().map(|(s, d)| (s, d.as_slice())))
        .map(|(s, decisions)| DecidedRequest {
            request_id: s.request_id.clone(),
            agency_id: s.agency_id.clone(),
            items: s.items.len() as u32,
            items_granted: decisions
                .iter()
                .filter(|d| {
                    matches!(
                        ItemOutcome::try_from(d.outcome),
                        Ok(ItemOutcome::RemovedGlobally | ItemOutcome::RestrictedInJurisdiction)
                    )
                })
                .count() as u32,
        })
        .collect();
    RecordDecisionRequest {
        event_id: String::new(),
        case_id: case_id.to_owned(),
        jurisdiction: submission.jurisdiction.clone(),
        decided_at: Some(timestamp_from_millis(now)),
        content,
        requests,
    }
}
