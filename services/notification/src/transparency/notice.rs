//! Lumen-style notices: one per decided request, after the Lumen database's notice model
//! (type, sender, recipient, jurisdictions, regulations, works with their URLs, action taken),
//! with personal data withheld as Lumen does (`[REDACTED]`): a work's URL keeps its host only,
//! and no text a person wrote is carried.

use crs_proto::common::LegalInstrument;
use serde_json::{Value, json};

use super::{Decided, ItemRecord, RequestOutcome, TransparencyConfig, date, statement};

/// The CSV columns of a notice: one row per work, the notice's fields repeated.
pub const COLUMNS: [&str; 17] = [
    "id",
    "type",
    "title",
    "date_received",
    "date_decided",
    "sender_name",
    "sender_country_code",
    "recipient_name",
    "jurisdictions",
    "regulations",
    "category",
    "action_taken",
    "work_index",
    "work_description",
    "work_infringing_url",
    "work_action",
    "work_statement_puid",
];

/// Lumen's notice type for an instrument.
pub fn lumen_type(instrument: i32) -> &'static str {
    match LegalInstrument::try_from(instrument) {
        Ok(LegalInstrument::CourtOrder) => "CourtOrder",
        Ok(LegalInstrument::LawEnforcementRequest) => "LawEnforcementRequest",
        _ => "GovernmentRequest",
    }
}

/// Lumen's `action_taken`: Yes, Partial or No.
pub fn action_taken(outcome: RequestOutcome) -> &'static str {
    match outcome {
        RequestOutcome::GrantedInFull => "Yes",
        RequestOutcome::GrantedInPart => "Partial",
        RequestOutcome::Refused | RequestOutcome::AlreadyUnavailable => "No",
    }
}

/// What was done with one work, in words.
fn work_action(item: &ItemRecord, jurisdiction: &str) -> String {
    match item.outcome.as_str() {
        "REMOVED_GLOBALLY" => "removed everywhere".to_owned(),
        "RESTRICTED_IN_JURISDICTION" => {
            let scope = if item.territorial_scope.is_empty() {
                jurisdiction.to_owned()
            } else {
                item.territorial_scope.join(", ")
            };
            format!("access restricted in {scope}")
        }
        "NO_ACTION" => format!("no action: {}", item.no_action_reason.to_lowercase().replace('_', " ")),
        "ALREADY_UNAVAILABLE" => "already unavailable".to_owned(),
        other => other.to_lowercase().replace('_', " "),
    }
}

/// The notice of one decided request.
pub fn notice(d: &Decided, cfg: &TransparencyConfig) -> Value {
    let r = &d.row;
    let count = |f: fn(&ItemRecord) -> bool| d.items.iter().filter(|i| f(i)).count();
    let removed = count(|i| i.removed_globally());
    let restricted = count(|i| i.outcome == "RESTRICTED_IN_JURISDICTION");
    let left = count(|i| i.outcome == "NO_ACTION");
    let unavailable = count(|i| i.outcome == "ALREADY_UNAVAILABLE");
    let instrument = statement::instrument_words(r.legal_instrument);
    let works: Vec<Value> = d
        .items
        .iter()
        .map(|i| {
            json!({
                "index": i.index,
                "description": format!("Item {} of the {instrument}", i.index + 1),
                "infringing_urls": [i.locator],
                "action": work_action(i, &r.jurisdiction),
                "statement_of_reasons_puid": if i.restricts() { statement::puid(&r.request_id, i.index) } else { String::new() },
            })
        })
        .collect();
    json!({
        "id": format!("crs-{}", r.request_id),
        "type": lumen_type(r.legal_instrument),
        "title": format!("{} from {} concerning {} item{}", capitalised(instrument), r.jurisdiction, d.items.len(),
            if d.items.len() == 1 { "" } else { "s" }),
        "body": format!(
            "An authority of {j} sent a {instrument} about content it considered unlawful ({category}). After legal \
             review the platform removed {removed} item(s) everywhere, restricted access to {restricted} in the \
             requesting country, took no action on {left} and found {unavailable} already unavailable.",
            j = r.jurisdiction,
            category = statement::category_words(r.category),
        ),
        "date_received": r.received_at.map(date),
        "date_decided": date(r.decided_at),
        "sender": {
            "name": if r.agency_name.is_empty() { super::REDACTED.to_owned() } else { r.agency_name.clone() },
            "kind": "government authority",
            "country_code": r.jurisdiction,
        },
        "recipient": {"name": cfg.platform_name.trim()},
        "jurisdictions": [r.jurisdiction],
        "regulations": if r.legal_reference.is_empty() { Vec::new() } else { vec![r.legal_reference.clone()] },
        "category": crs_proto::convert::short_name_of::<crs_proto::common::Category>(r.category),
        "category_specification": d.keywords,
        "action_taken": action_taken(d.outcome()),
        "works": works,
    })
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The notice's CSV rows: one per work.
pub fn to_csv_rows(n: &Value) -> Vec<Vec<String>> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string()))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let head = [
        text(&n["id"]),
        text(&n["type"]),
        text(&n["title"]),
        text(&n["date_received"]),
        text(&n["date_decided"]),
        text(&n["sender"]["name"]),
        text(&n["sender"]["country_code"]),
        text(&n["recipient"]["name"]),
        text(&n["jurisdictions"]),
        text(&n["regulations"]),
        text(&n["category"]),
        text(&n["action_taken"]),
    ];
    n["works"]
        .as_array()
        .map(|works| {
            works
                .iter()
                .map(|w| {
                    let mut row = head.to_vec();
                    row.extend([
                        text(&w["index"]),
                        text(&w["description"]),
                        text(&w["infringing_urls"]),
                        text(&w["action"]),
                        text(&w["statement_of_reasons_puid"]),
                    ]);
                    row
                })
                .collect()
        })
        .unwrap_or_default()
}
