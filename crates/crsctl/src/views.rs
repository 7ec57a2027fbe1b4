//! The documents `-o json` and `-o yaml` print: the API's messages with enum short names and
//! RFC 3339 times, field names as in the protos.

use crs_proto::common::{
    Category, DecisionGround, Item, ItemDecision, ItemOutcome, Keyword, LegalInstrument, NoActionReason,
    RequestedAction, SlaDeadline,
};
use crs_proto::intake::{Agency, AgencyStatus, GovernmentRequest};
use crs_proto::review::Case;
use serde_json::{Value, json};

use crate::output::{duration_secs, ts_json};
use crate::vocab::{name, status};

pub fn deadline(d: &Option<SlaDeadline>) -> Value {
    match d {
        None => Value::Null,
        Some(d) => json!({
            "policy_id": d.policy_id,
            "legal_reference": d.legal_reference,
            "budget_secs": duration_secs(&d.budget),
            "due_at": ts_json(&d.due_at),
            "paused": d.paused,
            "remaining_when_paused_secs": d.remaining_when_paused.as_ref().map(|r| r.seconds),
        }),
    }
}

pub fn item(i: &Item) -> Value {
    json!({
        "index": i.index,
        "url": i.url,
        "content_id": i.content_id,
        "description": i.description,
        "content_key": i.content_key,
        "outcome": name::<ItemOutcome>(i.outcome),
        "no_action_reason": if i.no_action_reason == 0 { Value::Null } else { name::<NoActionReason>(i.no_action_reason).into() },
        "explanation": i.explanation,
    })
}

pub fn request(r: &GovernmentRequest) -> Value {
    json!({
        "id": r.id,
        "agency_id": r.agency_id,
        "jurisdiction": r.jurisdiction,
        "legal_instrument": name::<LegalInstrument>(r.legal_instrument),
        "category": name::<Category>(r.category),
        "keywords": r.keywords.iter().map(|k| name::<Keyword>(*k)).collect::<Vec<_>>(),
        "requested_action": name::<RequestedAction>(r.requested_action),
        "status": status(r.status),
        "status_note": r.status_note,
        "pending_question": r.pending_question,
        "reference": r.reference,
        "issuing_authority": r.issuing_authority,
        "legal_basis": r.legal_basis,
        "justification": r.justification,
        "received_at": ts_json(&r.received_at),
        "updated_at": ts_json(&r.updated_at),
        "deadline": deadline(&r.deadline),
        "items": r.items.iter().map(item).collect::<Vec<_>>(),
    })
}

pub fn decision(d: &ItemDecision) -> Value {
    json!({
        "item_index": d.item_index,
        "outcome": name::<ItemOutcome>(d.outcome),
        "no_action_reason": if d.no_action_reason == 0 { Value::Null } else { name::<NoActionReason>(d.no_action_reason).into() },
        "ground": if d.ground == 0 { Value::Null } else { name::<DecisionGround>(d.ground).into() },
        "legal_ground": d.legal_ground,
        "platform_policy": d.platform_policy,
        "explanation": d.explanation,
        "territorial_scope": d.territorial_scope,
    })
}

pub fn case(c: &Case) -> Value {
    let submission = c.submission.clone().unwrap_or_default();
    let assessment = c.assessment.clone().unwrap_or_default();
    json!({
        "id": c.id,
        "status": status(c.status),
        "queue": c.queue,
        "escalated": c.escalated,
        "assigned_reviewer": c.assigned_reviewer,
        "claim_expires_at": ts_json(&c.claim_expires_at),
        "priority": assessment.priority,
        "human_rights_review": assessment.human_rights_review,
        "reasons": assessment.reasons,
        "deadline": deadline(&c.deadline),
        "request": {
            "id": submission.request_id,
            "agency_id": submission.agency_id,
            "agency_name": submission.agency_name,
            "jurisdiction": submission.jurisdiction,
            "legal_instrument": name::<LegalInstrument>(submission.legal_instrument),
            "category": name::<Category>(submission.category),
            "keywords": submission.keywords.iter().map(|k| name::<Keyword>(*k)).collect::<Vec<_>>(),
            "requested_action": name::<RequestedAction>(submission.requested_action),
            "legal_basis": submission.legal_basis,
            "justification": submission.justification,
            "reference": submission.reference,
            "issuing_authority": submission.issuing_authority,
            "received_at": ts_json(&submission.received_at),
            "items": submission.items.iter().map(item).collect::<Vec<_>>(),
        },
        "decisions": c.decisions.iter().map(decision).collect::<Vec<_>>(),
        "decision_summary": c.decision_summary,
        "decided_by": c.decided_by,
        "approved_by": c.approved_by,
        "approval_reason": c.approval_reason,
        "pending_question": c.pending_question,
        "information": c.information.iter().map(|i| json!({
            "asked_by": i.asked_by,
            "question": i.question,
            "asked_at": ts_json(&i.asked_at),
            "answer": i.answer,
            "answered_at": ts_json(&i.answered_at),
        })).collect::<Vec<_>>(),
        "created_at": ts_json(&c.created_at),
        "updated_at": ts_json(&c.updated_at),
        "decided_at": ts_json(&c.decided_at),
        "version": c.version,
        "merged_requests": c.merged_requests.iter().map(|m| json!({
            "request_id": m.request_id,
            "agency_id": m.agency_id,
            "agency_name": m.agency_name,
            "legal_instrument": name::<LegalInstrument>(m.legal_instrument),
            "case_items": m.case_items,
            "status": status(m.status),
            "received_at": ts_json(&m.received_at),
            "merged_at": ts_json(&m.merged_at),
            "due_at": ts_json(&m.due_at),
        })).collect::<Vec<_>>(),
        "related_cases": c.related_cases.iter().map(|r| json!({
            "case_id": r.case_id,
            "jurisdiction": r.jurisdiction,
            "status": status(r.status),
            "content_keys": r.content_keys,
            "decisions": r.decisions.iter().map(decision).collect::<Vec<_>>(),
            "decided_at": ts_json(&r.decided_at),
        })).collect::<Vec<_>>(),
    })
}

pub fn agency(a: &Agency) -> Value {
    let mut v = json!({
        "id": a.id,
        "name": a.name,
        "jurisdiction": a.jurisdiction,
        "status": name::<AgencyStatus>(a.status),
        "contact_email": a.contact_email,
        "callback_url": a.callback_url,
        "language": a.language,
        "allowed_instruments": a.allowed_instruments.iter().map(|i| name::<LegalInstrument>(*i)).collect::<Vec<_>>(),
        "allowed_categories": a.allowed_categories.iter().map(|c| name::<Category>(*c)).collect::<Vec<_>>(),
        "rate_limit_tier": a.rate_limit_tier,
        "rate_limit_overrides": a.rate_limit_overrides.iter().map(|o| json!({
            "rule": o.rule, "rate_per_second": o.rate_per_second, "burst": o.burst, "per_day": o.per_day, "shadow": o.shadow,
        })).collect::<Vec<_>>(),
        "created_at": ts_json(&a.created_at),
        "updated_at": ts_json(&a.updated_at),
    });
    if !a.callback_secret.is_empty() {
        v["callback_secret"] = a.callback_secret.clone().into();
    }
    v
}
