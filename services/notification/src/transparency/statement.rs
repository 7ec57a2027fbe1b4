//! Statements of reasons in the shape of the EU DSA Transparency Database API (v1), one per item
//! removed or restricted. Every text is written here from structured fields and the operator's
//! configuration; nothing a reviewer or an agency typed is copied in.

use crs_proto::ShortName;
use crs_proto::common::{Category, DecisionGround, LegalInstrument};
use crs_proto::notification::StatementOfReasons;
use serde_json::{Value, json};

use super::{Decided, ItemRecord, TransparencyConfig, date};

/// The database's limits on the fields written here.
pub const MAX_LEGAL_GROUND: usize = 500;
pub const MAX_EXPLANATION: usize = 2000;
pub const MAX_DECISION_FACTS: usize = 5000;
pub const MAX_SOURCE_IDENTITY: usize = 500;
pub const MAX_PUID: usize = 500;

/// The countries the database accepts in `territorial_scope`: the European Economic Area (the
/// 27 member states, Iceland, Liechtenstein and Norway), as its `EuropeanCountriesService` lists
/// them.
pub const EEA: [&str; 30] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IS", "IT", "LI", "LT",
    "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// CRS does not know what kind of content an item is (a URL or an id is all a request names).
const CONTENT_TYPE_OTHER: &str = "Content named by its address or platform id in a government request";

/// The CSV columns of a statement, in the API's field names.
pub const COLUMNS: [&str; 20] = [
    "puid",
    "decision_visibility",
    "decision_ground",
    "illegal_content_legal_ground",
    "illegal_content_explanation",
    "incompatible_content_ground",
    "incompatible_content_explanation",
    "category",
    "category_specification",
    "content_type",
    "content_type_other",
    "territorial_scope",
    "content_date",
    "application_date",
    "decision_facts",
    "source_type",
    "source_identity",
    "automated_detection",
    "automated_decision",
    "request_jurisdiction",
];

/// How an instrument is named in the published texts.
pub fn instrument_words(instrument: i32) -> &'static str {
    match LegalInstrument::try_from(instrument) {
        Ok(LegalInstrument::CourtOrder) => "court order",
        Ok(LegalInstrument::GovernmentOrder) => "government order",
        Ok(LegalInstrument::GovernmentNotice) => "government notice",
        Ok(LegalInstrument::LawEnforcementRequest) => "law-enforcement request",
        _ => "request",
    }
}

/// How a category is named in the published texts ("illegal or harmful speech").
pub fn category_words(category: i32) -> String {
    match Category::try_from(category) {
        Ok(Category::Unspecified) | Err(_) => "no category named".to_owned(),
        Ok(c) => c.short_name().to_lowercase().replace('_', " "),
    }
}

fn clip(s: String, max: usize) -> String {
    if s.chars().count() <= max { s } else { s.chars().take(max).collect() }
}

/// The platform-unique id of the decision on one item: the request id and the item's index,
/// kept to the characters the database allows.
pub fn puid(request_id: &str, index: u32) -> String {
    let id: String = request_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    clip(format!("{id}-{index}"), MAX_PUID)
}

fn eea(code: &str) -> bool {
    EEA.contains(&code)
}

/// The statements of reasons of one decided request: one per item removed or restricted.
pub fn statements(d: &Decided, cfg: &TransparencyConfig) -> Vec<StatementOfReasons> {
    d.items.iter().filter(|i| i.restricts()).map(|i| statement(d, i, cfg)).collect()
}

fn statement(d: &Decided, item: &ItemRecord, cfg: &TransparencyConfig) -> StatementOfReasons {
    let r = &d.row;
    let jurisdiction = if r.jurisdiction.is_empty() { "an undisclosed country" } else { r.jurisdiction.as_str() };
    let instrument = instrument_words(r.legal_instrument);
    let category = category_words(r.category);
    let global = item.removed_globally();
    // A restriction without a recorded ground is, by CRS's rules, local law (restriction) or the
    // terms (global removal).
    let ground = match item.ground.as_str() {
        "" if global => DecisionGround::IncompatibleContent,
        "" => DecisionGround::IllegalContent,
        g => DecisionGround::from_str_name(g).unwrap_or(DecisionGround::IllegalContent),
    };
    let scope: Vec<String> = if global {
        EEA.iter().map(|c| (*c).to_owned()).collect()
    } else {
        item.territorial_scope.iter().filter(|c| eea(c)).cloned().collect()
    };
    let where_ = if global {
        "everywhere".to_owned()
    } else if item.territorial_scope.is_empty() {
        format!("in {jurisdiction} only")
    } else {
        format!("in {} only", item.territorial_scope.join(", "))
    };
    let action = if global { "removed it" } else { "restricted access to it" };
    let mut s = StatementOfReasons {
        puid: puid(&r.request_id, item.index),
        decision_visibility: vec![
            if global { "DECISION_VISIBILITY_CONTENT_REMOVED" } else { "DECISION_VISIBILITY_CONTENT_DISABLED" }.into(),
        ],
        decision_ground: ground.as_str_name().into(),
        category: format!(
            "STATEMENT_CATEGORY_{}",
            match Category::try_from(r.category) {
                Ok(Category::Unspecified) | Err(_) => "NOT_SPECIFIED_NOTICE",
                Ok(c) => c.short_name(),
            }
        ),
        category_specification: d.keywords.clone(),
        content_type: vec!["CONTENT_TYPE_OTHER".into()],
        content_type_other: CONTENT_TYPE_OTHER.into(),
        territorial_scope: scope,
        content_date: date(r.received_at.unwrap_or(r.decided_at)),
        application_date: date(r.decided_at),
        decision_facts: clip(
            format!(
                "An authority of {jurisdiction} asked the platform, by a {instrument}{received}, to act on content it \
                 considered unlawful ({category}). The platform's legal team reviewed the item against the law of \
                 {jurisdiction} and the platform's terms and {action} {where_} on {decided}. No automated means were \
                 used to detect the content or to decide.",
                received = r.received_at.map(|t| format!(" received on {}", date(t))).unwrap_or_default(),
                decided = date(r.decided_at),
            ),
            MAX_DECISION_FACTS,
        ),
        source_type: "SOURCE_TYPE_OTHER_NOTIFICATION".into(),
        source_identity: clip(
            if r.agency_name.is_empty() { format!("An authority of {jurisdiction}") } else { r.agency_name.clone() },
            MAX_SOURCE_IDENTITY,
        ),
        automated_detection: "No".into(),
        automated_decision: "AUTOMATED_DECISION_NOT_AUTOMATED".into(),
        ..Default::default()
    };
    match ground {
        DecisionGround::IncompatibleContent => {
            s.incompatible_content_ground = clip(cfg.terms.trim().to_owned(), MAX_LEGAL_GROUND);
            s.incompatible_content_explanation = clip(
                format!(
                    "The content breaks {terms}, which apply {where_}; the platform {action} after a {instrument} from \
                     {jurisdiction} reported it ({category}).",
                    terms = cfg.terms.trim(),
                ),
                MAX_EXPLANATION,
            );
        }
        _ => {
            let law = if r.legal_reference.is_empty() {
                format!("The law of {jurisdiction}")
            } else {
                format!("The law of {jurisdiction} ({})", r.legal_reference)
            };
            s.illegal_content_legal_ground =
                clip(format!("{law}, relied on in a {instrument} of an authority of {jurisdiction}"), MAX_LEGAL_GROUND);
            s.illegal_content_explanation = clip(
                format!(
                    "Legal review found the content unlawful under the law of {jurisdiction} ({category}){also}; \
                     the platform {action} {where_}.",
                    also = if item.cites_terms { " and against the platform's terms" } else { "" },
                ),
                MAX_EXPLANATION,
            );
        }
    }
    s
}

/// A statement as a JSON object with the API's field names; fields that do not apply to its
/// ground (or to its content type) are left out, as the API excludes them.
pub fn to_json(s: &StatementOfReasons, request_jurisdiction: &str) -> Value {
    let mut v = json!({
        "puid": s.puid,
        "decision_visibility": s.decision_visibility,
        "decision_ground": s.decision_ground,
        "category": s.category,
        "category_specification": s.category_specification,
        "content_type": s.content_type,
        "territorial_scope": s.territorial_scope,
        "content_date": s.content_date,
        "application_date": s.application_date,
        "decision_facts": s.decision_facts,
        "source_type": s.source_type,
        "source_identity": s.source_identity,
        "automated_detection": s.automated_detection,
        "automated_decision": s.automated_decision,
        // Not an API field (the API ignores it): the country whose authority asked, which
        // territorial_scope leaves out when it is outside the EEA.
        "request_jurisdiction": request_jurisdiction,
    });
    let o = v.as_object_mut().expect("an object");
    if s.content_type.iter().any(|t| t == "CONTENT_TYPE_OTHER") {
        o.insert("content_type_other".into(), s.content_type_other.clone().into());
    }
    if s.decision_ground == DecisionGround::IllegalContent.as_str_name() {
        o.insert("illegal_content_legal_ground".into(), s.illegal_content_legal_ground.clone().into());
        o.insert("illegal_content_explanation".into(), s.illegal_content_explanation.clone().into());
    } else {
        o.insert("incompatible_content_ground".into(), s.incompatible_content_ground.clone().into());
        o.insert("incompatible_content_explanation".into(), s.incompatible_content_explanation.clone().into());
    }
    v
}

/// A statement as a CSV row of [`COLUMNS`]; lists are comma-separated within their field.
pub fn to_csv_row(s: &StatementOfReasons, request_jurisdiction: &str) -> Vec<String> {
    vec![
        s.puid.clone(),
        s.decision_visibility.join(","),
        s.decision_ground.clone(),
        s.illegal_content_legal_ground.clone(),
        s.illegal_content_explanation.clone(),
        s.incompatible_content_ground.clone(),
        s.incompatible_content_explanation.clone(),
        s.category.clone(),
        s.category_specification.join(","),
        s.content_type.join(","),
        s.content_type_other.clone(),
        s.territorial_scope.join(","),
        s.content_date.clone(),
        s.application_date.clone(),
        s.decision_facts.clone(),
        s.source_type.clone(),
        s.source_identity.clone(),
        s.automated_detection.clone(),
        s.automated_decision.clone(),
        request_jurisdiction.to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::transparency_record;
    use crate::transparency::ItemRecord;

    fn decided(items: Vec<ItemRecord>) -> Decided {
        Decided {
            row: transparency_record::Model {
                request_id: "r-1".into(),
                notification_id: "n-1".into(),
                agency_name: "Federal Office of Justice".into(),
                jurisdiction: "DE".into(),
                legal_instrument: LegalInstrument::CourtOrder as i32,
                category: Category::IllegalOrHarmfulSpeech as i32,
                keywords: "[]".into(),
                legal_reference: "NetzDG §3(2)".into(),
                received_at: Some(1_793_577_600_000),
                decided_at: 1_793_584_800_000,
                due_at: None,
                items: String::new(),
                recorded_at: 0,
            },
            keywords: Vec::new(),
            items,
        }
    }

    fn item(outcome: &str, ground: &str, scope: &[&str]) -> ItemRecord {
        ItemRecord {
            index: 0,
            outcome: outcome.into(),
            no_action_reason: String::new(),
            ground: ground.into(),
            cites_terms: false,
            territorial_scope: scope.iter().map(|s| s.to_string()).collect(),
            locator: "https://social.example/[REDACTED]".into(),
        }
    }

    fn cfg() -> TransparencyConfig {
        TransparencyConfig {
            platform_name: "Example Social".into(),
            terms: "Example Social Community Standards".into(),
        }
    }

    #[test]
    fn a_restriction_on_local_law_is_explained_from_its_fields() {
        let d = decided(vec![item("RESTRICTED_IN_JURISDICTION", "DECISION_GROUND_ILLEGAL_CONTENT", &["DE"])]);
        let s = &statements(&d, &cfg())[0];
        assert_eq!(
            s.illegal_content_legal_ground,
            "The law of DE (NetzDG §3(2)), relied on in a court order of an authority of DE"
        );
        assert_eq!(
            s.illegal_content_explanation,
            "Legal review found the content unlawful under the law of DE (illegal or harmful speech); the platform \
             restricted access to it in DE only."
        );
        assert_eq!(
            s.decision_facts,
            "An authority of DE asked the platform, by a court order received on 2026-11-02, to act on content it \
             considered unlawful (illegal or harmful speech). The platform's legal team reviewed the item against the \
             law of DE and the platform's terms and restricted access to it in DE only on 2026-11-02. No automated \
             means were used to detect the content or to decide."
        );
        assert_eq!(s.territorial_scope, ["DE"]);
    }

    #[test]
    fn a_removal_on_the_terms_cites_the_configured_terms_and_applies_across_the_eea() {
        let d = decided(vec![item("REMOVED_GLOBALLY", "DECISION_GROUND_INCOMPATIBLE_CONTENT", &[])]);
        let s = &statements(&d, &cfg())[0];
        assert_eq!(s.incompatible_content_ground, "Example Social Community Standards");
        assert!(s.illegal_content_explanation.is_empty());
        assert_eq!(s.territorial_scope.len(), 30);
        assert_eq!(s.decision_visibility, ["DECISION_VISIBILITY_CONTENT_REMOVED"]);
    }

    #[test]
    fn puids_keep_to_the_characters_the_database_allows() {
        assert_eq!(puid("0193-abc_D/../x y", 7), "0193-abc_Dxy-7");
        assert!(puid(&"a".repeat(600), 1).len() <= MAX_PUID);
    }
}
