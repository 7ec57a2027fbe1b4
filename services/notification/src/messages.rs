//! What each audience is told of an event: who is told of which kind, and the message each
//! receives, shaped for it alone. The schemas are versioned (`crs.notification.<audience>.v1`)
//! and documented in the README; a field is never removed or changes meaning within a version.
//!
//! - the agency: the outcome of its own items, its question, acknowledgements (with its own
//!   reference);
//! - the content owner: for each item restricted, the decision, its DSA ground, territorial
//!   scope, statement of reasons and how to appeal, and which authority asked, never the
//!   authority's internal reference or id;
//! - enforcement: exactly the action to apply to each item and where, nothing else;
//! - on-call: the SLA threshold reached and the deadline;
//! - transparency: a statement-of-reasons record per item restricted, without personal data.

use crs_platform::time::{datetime_from_millis, millis_from_timestamp};
use crs_proto::ShortName;
use crs_proto::common::{
    Category, DecisionGround, Item, ItemDecision, ItemOutcome, LegalInstrument, NoActionReason, Submission,
};
use crs_proto::convert::short_name_of;
use crs_proto::notification::{Audience, NotificationKind, NotifyRequest};
use serde_json::{Value, json};

use crate::config::{AppealConfig, TransparencyConfig};

/// Who is told of each kind of event (each audience only when it has something to learn; see
/// [`message`]).
pub fn audiences(kind: NotificationKind) -> &'static [Audience] {
    match kind {
        NotificationKind::Decided => {
            &[Audience::Agency, Audience::ContentOwner, Audience::Enforcement, Audience::Transparency]
        }
        NotificationKind::SlaWarning | NotificationKind::SlaBreach => &[Audience::OnCall],
        NotificationKind::Acknowledged
        | NotificationKind::InformationRequested
        | NotificationKind::Withdrawn
        | NotificationKind::Rejected => &[Audience::Agency],
        NotificationKind::Unspecified => &[],
    }
}

/// The kinds an agency is told of (and may list).
pub fn agency_kinds() -> Vec<i32> {
    [
        NotificationKind::Acknowledged,
        NotificationKind::InformationRequested,
        NotificationKind::Decided,
        NotificationKind::Withdrawn,
        NotificationKind::Rejected,
    ]
    .iter()
    .map(|k| *k as i32)
    .collect()
}

/// The schema name of an audience's messages.
pub fn schema(audience: Audience) -> String {
    format!("crs.notification.{}.v1", audience.short_name().to_lowercase())
}

/// The event type of a kind, as Standard Webhooks recommends (`a.b`, letters and underscores).
pub fn event_type(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Acknowledged => "request.acknowledged",
        NotificationKind::InformationRequested => "request.information_requested",
        NotificationKind::Decided => "request.decided",
        NotificationKind::Withdrawn => "request.withdrawn",
        NotificationKind::Rejected => "request.rejected",
        NotificationKind::SlaWarning => "sla.warning",
        NotificationKind::SlaBreach => "sla.breach",
        NotificationKind::Unspecified => "unspecified",
    }
}

/// One audience's message.
#[derive(Debug, Clone)]
pub struct Message {
    pub schema: String,
    /// The JSON document, serialised once: every channel and every attempt carries these bytes.
    pub payload: String,
}

/// The event as the audiences see it.
pub struct Event<'a> {
    pub notification_id: &'a str,
    pub kind: NotificationKind,
    pub request: &'a NotifyRequest,
    pub submission: &'a Submission,
    pub created_at: i64,
}

/// The message for `audience`, or `None` when it has nothing to learn (e.g. no item was
/// restricted, so neither the content owner nor enforcement is concerned).
pub fn message(
    audience: Audience,
    event: &Event<'_>,
    appeal: &AppealConfig,
    published: &TransparencyConfig,
) -> Option<Message> {
    let data = match audience {
        Audience::Agency => Some(agency(event)),
        Audience::ContentOwner => content_owner(event, appeal),
        Audience::Enforcement => enforcement(event),
        Audience::OnCall => Some(on_call(event)),
        Audience::Transparency => transparency(event, published),
        Audience::Unspecified => None,
    }?;
    let document = json!({
        "type": event_type(event.kind),
        "timestamp": datetime_from_millis(event.created_at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "schema": schema(audience),
        "notification_id": event.notification_id,
        "data": data,
    });
    Some(Message { schema: schema(audience), payload: document.to_string() })
}

fn item(s: &Submission, index: u32) -> Option<&Item> {
    s.items.iter().find(|i| i.index == index).or_else(|| s.items.get(index as usize))
}

fn content(i: Option<&Item>) -> Value {
    json!({
        "url": i.map(|i| i.url.as_str()).unwrap_or_default(),
        "content_id": i.map(|i| i.content_id.as_str()).unwrap_or_default(),
    })
}

fn restricts(d: &ItemDecision) -> bool {
    matches!(ItemOutcome::try_from(d.outcome), Ok(ItemOutcome::RemovedGlobally | ItemOutcome::RestrictedInJurisdiction))
}

fn worldwide(d: &ItemDecision) -> bool {
    d.outcome == ItemOutcome::RemovedGlobally as i32
}

/// Where a restriction applies: the decision's scope, or the requesting jurisdiction.
fn countries(d: &ItemDecision, s: &Submission) -> Vec<String> {
    if worldwide(d) {
        Vec::new()
    } else if d.territorial_scope.is_empty() {
        vec![s.jurisdiction.clone()]
    } else {
        d.territorial_scope.clone()
    }
}

fn ground(d: &ItemDecision) -> Option<&'static str> {
    (d.ground != DecisionGround::Unspecified as i32)
        .then(|| DecisionGround::try_from(d.ground).map(|g| g.as_str_name()).unwrap_or("DECISION_GROUND_UNSPECIFIED"))
}

/// The DSA visibility restriction an outcome applies.
fn visibility(d: &ItemDecision) -> &'static str {
    if worldwide(d) { "DECISION_VISIBILITY_CONTENT_REMOVED" } else { "DECISION_VISIBILITY_CONTENT_DISABLED" }
}

/// Which authority asked, as the content owner may be told: the issuing authority named in the
/// request, else the agency's official name.
fn authority(s: &Submission) -> &str {
    if !s.issuing_authority.trim().is_empty() { s.issuing_authority.trim() } else { s.agency_name.trim() }
}

fn deadline(r: &NotifyRequest) -> Value {
    match &r.deadline {
        Some(d) => json!({
            "policy_id": d.policy_id,
            "legal_reference": d.legal_reference,
            "due_at": d.due_at.as_ref().map(|t| datetime_from_millis(millis_from_timestamp(t)).to_rfc3339()),
            "paused": d.paused,
        }),
        None => Value::Null,
    }
}

fn agency(e: &Event<'_>) -> Value {
    let s = e.submission;
    let mut data = json!({
        "request_id": s.request_id,
        "reference": s.reference,
        "jurisdiction": s.jurisdiction,
    });
    let fields = data.as_object_mut().expect("an object");
    match e.kind {
        NotificationKind::Acknowledged => {
            fields.insert(
                "received_at".into(),
                s.received_at.as_ref().map(|t| datetime_from_millis(millis_from_timestamp(t)).to_rfc3339()).into(),
            );
            fields.insert(
                "items".into(),
                s.items
                    .iter()
                    .map(|i| json!({"index": i.index, "url": i.url, "content_id": i.content_id}))
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        NotificationKind::InformationRequested => {
            fields.insert("question".into(), e.request.message.clone().into());
            fields.insert("deadline".into(), deadline(e.request));
        }
        NotificationKind::Rejected => {
            fields.insert("reason".into(), e.request.message.clone().into());
        }
        NotificationKind::Decided => {
            let items: Vec<Value> = e
                .request
                .decisions
                .iter()
                .map(|d| {
                    let mut v = content(item(s, d.item_index));
                    let o = v.as_object_mut().expect("an object");
                    o.insert("index".into(), d.item_index.into());
                    o.insert("outcome".into(), short_name_of::<ItemOutcome>(d.outcome).into());
                    if d.outcome == ItemOutcome::NoAction as i32 {
                        o.insert("no_action_reason".into(), short_name_of::<NoActionReason>(d.no_action_reason).into());
                    }
                    if restricts(d) {
                        o.insert("decision_ground".into(), ground(d).into());
                        o.insert("legal_ground".into(), d.legal_ground.clone().into());
                        o.insert("worldwide".into(), worldwide(d).into());
                        o.insert("territorial_scope".into(), countries(d, s).into());
                    }
                    o.insert("explanation".into(), d.explanation.clone().into());
                    v
                })
                .collect();
            fields.insert("items".into(), items.into());
            if !e.request.decided_in_case.is_empty() {
                fields.insert("decided_in_case".into(), e.request.decided_in_case.clone().into());
            }
        }
        _ => {}
    }
    data
}

fn content_owner(e: &Event<'_>, appeal: &AppealConfig) -> Option<Value> {
    if e.kind != NotificationKind::Decided {
        return None;
    }
    let s = e.submission;
    let decided_on = datetime_from_millis(e.created_at).format("%Y-%m-%d").to_string();
    let items: Vec<Value> = e
        .request
        .decisions
        .iter()
        .filter(|d| restricts(d))
        .map(|d| {
            let mut v = content(item(s, d.item_index));
            let o = v.as_object_mut().expect("an object");
            o.insert("decision".into(), short_name_of::<ItemOutcome>(d.outcome).into());
            o.insert("decision_visibility".into(), visibility(d).into());
            o.insert("decision_ground".into(), ground(d).into());
            o.insert("legal_ground".into(), d.legal_ground.clone().into());
            o.insert("explanation".into(), d.explanation.clone().into());
            o.insert("platform_policy".into(), d.platform_policy.clone().into());
            o.insert("worldwide".into(), worldwide(d).into());
            o.insert("territorial_scope".into(), countries(d, s).into());
            // Art. 17(3)(c) DSA: whether automated means were used. Every CRS decision is a
            // legal reviewer's.
            o.insert("automated_detection".into(), false.into());
            o.insert("automated_decision".into(), "AUTOMATED_DECISION_NOT_AUTOMATED".into());
            o.insert("application_date".into(), decided_on.clone().into());
            v
        })
        .collect();
    if items.is_empty() {
        return None;
    }
    let by_language: serde_json::Map<String, Value> = appeal
        .languages
        .keys()
        .map(|l| {
            let r = appeal.route(l);
            (l.clone(), json!({"url": r.url, "text": r.text}))
        })
        .collect();
    Some(json!({
        "decision_reference": s.request_id,
        "requested_by": {
            "authority": authority(s),
            "jurisdiction": s.jurisdiction,
            "legal_instrument": short_name_of::<LegalInstrument>(s.legal_instrument),
        },
        "items": items,
        "appeal": {"url": appeal.url, "text": appeal.text, "by_language": by_language},
    }))
}

fn enforcement(e: &Event<'_>) -> Option<Value> {
    if e.kind != NotificationKind::Decided {
        return None;
    }
    let s = e.submission;
    let actions: Vec<Value> = e
        .request
        .decisions
        .iter()
        .filter(|d| restricts(d))
        .map(|d| {
            let i = item(s, d.item_index);
            json!({
                "item_index": d.item_index,
                "url": i.map(|i| i.url.as_str()).unwrap_or_default(),
                "content_id": i.map(|i| i.content_id.as_str()).unwrap_or_default(),
                "content_key": i.map(|i| i.content_key.as_str()).unwrap_or_default(),
                "action": if worldwide(d) { "REMOVE" } else { "RESTRICT" },
                "worldwide": worldwide(d),
                "countries": countries(d, s),
            })
        })
        .collect();
    (!actions.is_empty()).then(|| json!({"request_id": s.request_id, "actions": actions}))
}

fn on_call(e: &Event<'_>) -> Value {
    let s = e.submission;
    json!({
        "request_id": s.request_id,
        "jurisdiction": s.jurisdiction,
        "legal_instrument": short_name_of::<LegalInstrument>(s.legal_instrument),
        "category": short_name_of::<Category>(s.category),
        "threshold_percent": e.request.sla_threshold_percent,
        "breach": e.kind == NotificationKind::SlaBreach,
        "deadline": deadline(e.request),
    })
}

/// The statements of reasons of the items restricted, written as the exports write them: from
/// structured fields only, so the pipeline receives nothing a person typed (see `transparency`).
fn transparency(e: &Event<'_>, published: &TransparencyConfig) -> Option<Value> {
    if e.kind != NotificationKind::Decided {
        return None;
    }
    let decided = crate::transparency::decided_of(e.notification_id, e.request, e.created_at);
    let global: Vec<bool> =
        decided.items.iter().filter(|i| i.restricts()).map(crate::transparency::ItemRecord::removed_globally).collect();
    let statements: Vec<Value> = crate::transparency::statement::statements(&decided, published)
        .iter()
        .zip(global)
        .map(|(s, worldwide)| {
            let mut v = crate::transparency::statement::to_json(s, &decided.row.jurisdiction);
            v.as_object_mut().expect("an object").insert("worldwide".into(), worldwide.into());
            v
        })
        .collect();
    (!statements.is_empty()).then(|| json!({"request_id": e.submission.request_id, "statements": statements}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission() -> Submission {
        Submission {
            request_id: "req-1".into(),
            agency_id: "agency-7".into(),
            agency_name: "Ministry of Digital Development".into(),
            jurisdiction: "KZ".into(),
            legal_instrument: LegalInstrument::GovernmentOrder as i32,
            category: Category::IllegalOrHarmfulSpeech as i32,
            reference: "MDD-2026/118".into(),
            items: (0..3)
                .map(|i| Item {
                    index: i,
                    url: format!("https://social.example/posts/{i}"),
                    content_key: format!("url:https://social.example/posts/{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn decided() -> NotifyRequest {
        NotifyRequest {
            kind: NotificationKind::Decided as i32,
            decisions: vec![
                ItemDecision {
                    item_index: 0,
                    outcome: ItemOutcome::RestrictedInJurisdiction as i32,
                    ground: DecisionGround::IllegalContent as i32,
                    legal_ground: "Law on Online Platforms, Art. 9".into(),
                    explanation: "Unlawful call to an assembly.".into(),
                    ..Default::default()
                },
                ItemDecision {
                    item_index: 1,
                    outcome: ItemOutcome::NoAction as i32,
                    no_action_reason: NoActionReason::NotSpecificEnough as i32,
                    ..Default::default()
                },
                ItemDecision {
                    item_index: 2,
                    outcome: ItemOutcome::RemovedGlobally as i32,
                    ground: DecisionGround::IncompatibleContent as i32,
                    legal_ground: "Community Standards: violent threats".into(),
                    explanation: "Threatens named people.".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn data(audience: Audience, request: &NotifyRequest, s: &Submission) -> Option<Value> {
        let event = Event {
            notification_id: "n-1",
            kind: NotificationKind::try_from(request.kind).unwrap(),
            request,
            submission: s,
            created_at: 1_764_000_000_000,
        };
        let appeal = AppealConfig {
            url: "https://platform.example/appeal".into(),
            text: String::new(),
            languages: Default::default(),
        };
        let published = TransparencyConfig { platform_name: "Example".into(), terms: "Example Terms".into() };
        message(audience, &event, &appeal, &published)
            .map(|m| serde_json::from_str::<Value>(&m.payload).unwrap()["data"].clone())
    }

    #[test]
    fn the_content_owner_learns_the_decision_and_the_authority_but_not_its_reference() {
        let (s, r) = (submission(), decided());
        let owner = data(Audience::ContentOwner, &r, &s).unwrap();
        let text = owner.to_string();
        assert!(!text.contains("agency-7") && !text.contains("MDD-2026/118"), "{text}");
        assert_eq!(owner["requested_by"]["authority"], "Ministry of Digital Development");
        let items = owner["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "only restricted items");
        assert_eq!(items[0]["decision_ground"], "DECISION_GROUND_ILLEGAL_CONTENT");
        assert_eq!(items[0]["territorial_scope"], json!(["KZ"]));
        assert_eq!(items[1]["worldwide"], true);
        assert_eq!(owner["appeal"]["url"], "https://platform.example/appeal");
    }

    #[test]
    fn enforcement_learns_exactly_the_actions_per_item_and_country() {
        let (s, r) = (submission(), decided());
        let e = data(Audience::Enforcement, &r, &s).unwrap();
        assert_eq!(
            e["actions"],
            json!([
                {"item_index": 0, "url": "https://social.example/posts/0", "content_id": "",
                 "content_key": "url:https://social.example/posts/0", "action": "RESTRICT", "worldwide": false,
                 "countries": ["KZ"]},
                {"item_index": 2, "url": "https://social.example/posts/2", "content_id": "",
                 "content_key": "url:https://social.example/posts/2", "action": "REMOVE", "worldwide": true,
                 "countries": []},
            ])
        );
        assert!(!e.to_string().contains("explanation"), "no reasons for enforcement");
    }

    #[test]
    fn the_agency_learns_the_outcome_of_each_of_its_items() {
        let (s, r) = (submission(), decided());
        let a = data(Audience::Agency, &r, &s).unwrap();
        assert_eq!(a["reference"], "MDD-2026/118");
        let outcomes: Vec<&str> =
            a["items"].as_array().unwrap().iter().map(|i| i["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["RESTRICTED_IN_JURISDICTION", "NO_ACTION", "REMOVED_GLOBALLY"]);
        assert_eq!(a["items"][1]["no_action_reason"], "NOT_SPECIFIC_ENOUGH");
    }

    #[test]
    fn nothing_restricted_concerns_neither_the_owner_nor_enforcement() {
        let s = submission();
        let mut r = decided();
        r.decisions.retain(|d| !restricts(d));
        for audience in [Audience::ContentOwner, Audience::Enforcement, Audience::Transparency] {
            assert!(data(audience, &r, &s).is_none(), "{audience:?}");
        }
        assert!(data(Audience::Agency, &r, &s).is_some());
    }
}
