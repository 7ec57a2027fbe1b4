//! How intake's rows look to callers.

use crs_platform::time::timestamp_from_millis;
use crs_proto::common::{SlaDeadline, Submission};
use crs_proto::intake::{Agency, GovernmentRequest};
use prost::Message;

use crate::entities::{agency, request, request_item};

pub fn to_item(item: &request_item::Model) -> crs_proto::common::Item {
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

pub fn to_submission(row: &request::Model, items: &[request_item::Model]) -> Submission {
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
        // Named where content owners may be told of the request (see `submit`).
        agency_name: String::new(),
        // Carried to triage at submission only: routing is its sole use.
        language: String::new(),
    }
}

pub fn to_government_request(row: &request::Model, items: &[request_item::Model]) -> GovernmentRequest {
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

pub fn to_agency(row: &agency::Model) -> Agency {
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
        rate_limit_overrides: crate::limits::stored_overrides(row).iter().map(|o| o.to_proto()).collect(),
        language: row.language.clone(),
        // Shown once, by the call that generated it.
        callback_secret: String::new(),
    }
}
