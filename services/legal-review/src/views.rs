//! How cases look to callers.

use crs_platform::time::{duration, timestamp_from_millis};
use crs_proto::common::{Assessment, ItemDecision, SlaDeadline};
use crs_proto::review::{Case, InformationExchange};
use crs_timers::Clock;

use crate::entities::{case, decision, information};
use crate::store::{self, Around};

/// A stored decision on the wire.
pub fn item_decision(d: &decision::Model) -> ItemDecision {
    ItemDecision {
        item_index: d.item_index as u32,
        outcome: d.outcome,
        no_action_reason: d.no_action_reason,
        ground: d.ground,
        legal_ground: d.legal_ground.clone(),
        explanation: d.explanation.clone(),
        territorial_scope: serde_json::from_str(&d.territorial_scope).unwrap_or_default(),
        platform_policy: d.platform_policy.clone(),
    }
}

/// The deadline as callers see it: the policy triage chose, timed by the case's clock.
pub fn deadline(assessment: &Assessment, clock: Option<&Clock>, now: i64) -> Option<SlaDeadline> {
    let policy = assessment.policy.as_ref()?;
    let mut view = SlaDeadline {
        policy_id: policy.id.clone(),
        legal_reference: policy.legal_reference.clone(),
        budget: policy.budget,
        due_at: assessment.due_at,
        paused: false,
        remaining_when_paused: None,
    };
    if let Some(clock) = clock {
        let d = &clock.deadline;
        view.budget = Some(duration(d.budget_ms / 1000));
        view.due_at = Some(timestamp_from_millis(d.due_at(now)));
        view.paused = d.is_paused();
        view.remaining_when_paused = d.is_paused().then(|| duration(d.remaining_ms(now) / 1000));
    }
    Some(view)
}

fn exchange(i: &information::Model) -> InformationExchange {
    InformationExchange {
        asked_by: i.asked_by.clone(),
        question: i.question.clone(),
        asked_at: Some(timestamp_from_millis(i.asked_at)),
        answer: i.answer.clone(),
        answered_at: i.answered_at.map(timestamp_from_millis),
    }
}

/// A case with what surrounds it.
pub fn to_case(row: &case::Model, around: &Around, now: i64) -> Case {
    let assessment = store::assessment(row).ok();
    let none = Vec::new();
    Case {
        id: row.id.clone(),
        submission: store::submission(row).ok().filter(|_| !store::is_placeholder(row)),
        assessment: assessment.clone().filter(|_| !row.assessment.is_empty()),
        status: row.status,
        assigned_reviewer: row.assigned_reviewer.clone(),
        claim_expires_at: (!row.assigned_reviewer.is_empty()).then(|| timestamp_from_millis(row.claim_expires_at)),
        decisions: around.decisions.get(&row.id).unwrap_or(&none).iter().map(item_decision).collect(),
        deadline: assessment.as_ref().and_then(|a| deadline(a, around.clocks.get(&row.id), now)),
        decision_summary: row.decision_summary.clone(),
        decided_by: row.decided_by.clone(),
        approved_by: row.approved_by.clone(),
        pending_question: row.pending_question.clone(),
        created_at: Some(timestamp_from_millis(row.created_at)),
        updated_at: Some(timestamp_from_millis(row.updated_at)),
        decided_at: row.decided_at.map(timestamp_from_millis),
        queue: row.queue.clone(),
        escalated: row.escalated,
        approval_reason: row.approval_reason.clone(),
        information: around.information.get(&row.id).map(|v| v.iter().map(exchange).collect()).unwrap_or_default(),
        version: row.version.max(0) as u64,
        merged_requests: around.merged.get(&row.id).cloned().unwrap_or_default(),
        related_cases: Vec::new(),
    }
}
