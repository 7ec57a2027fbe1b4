//! Transparency as an operator publishes it: every statement of reasons passes the EU DSA
//! Transparency Database's field rules, the Lumen-style notice of a decided request says what it
//! should field by field, the report's figures are those of a seeded set of requests with known
//! outcomes and times, its chart is valid SVG with the expected series, and none of it carries a
//! word of the free text the requests and decisions held (each free-text field holds a marker).

mod support;

use std::collections::{BTreeMap, BTreeSet};

use crs_platform::auth::{Principal, Role};
use crs_proto::common::{
    Category, DecisionGround, Item, ItemDecision, ItemOutcome, Keyword, LegalInstrument, NoActionReason, SlaDeadline,
    Submission,
};
use crs_proto::notification::*;
use crs_testkit::{Backend, Running};
use serde_json::{Value, json};
use support::*;
use tokio_stream::StreamExt as _;
use tonic::Code;

// ---------------------------------------------------------------------------------------------
// The DSA Transparency Database's rules for a statement of reasons (API v1,
// StatementStoreRequest), written as data.

/// How a field's value is checked.
enum Kind {
    /// Free text up to a length.
    Text(usize),
    /// One of the values.
    OneOf(&'static [&'static str]),
    /// A list whose every entry is one of the values.
    ListOf(&'static [&'static str]),
    /// YYYY-MM-DD on or after the date.
    DateFrom(&'static str),
    /// At most 500 characters of [A-Za-z0-9-_].
    Puid,
}

struct Rule {
    field: &'static str,
    required: bool,
    kind: Kind,
}

const VISIBILITY: &[&str] = &[
    "DECISION_VISIBILITY_CONTENT_REMOVED",
    "DECISION_VISIBILITY_CONTENT_DISABLED",
    "DECISION_VISIBILITY_CONTENT_DEMOTED",
    "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED",
    "DECISION_VISIBILITY_CONTENT_INTERACTION_RESTRICTED",
    "DECISION_VISIBILITY_CONTENT_LABELLED",
    "DECISION_VISIBILITY_OTHER",
];
const GROUNDS: &[&str] = &["DECISION_GROUND_ILLEGAL_CONTENT", "DECISION_GROUND_INCOMPATIBLE_CONTENT"];
const CATEGORIES: &[&str] = &[
    "STATEMENT_CATEGORY_ANIMAL_WELFARE",
    "STATEMENT_CATEGORY_CONSUMER_INFORMATION",
    "STATEMENT_CATEGORY_CYBER_VIOLENCE",
    "STATEMENT_CATEGORY_CYBER_VIOLENCE_AGAINST_WOMEN",
    "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS",
    "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
    "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS",
    "STATEMENT_CATEGORY_NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS",
    "STATEMENT_CATEGORY_NOT_SPECIFIED_NOTICE",
    "STATEMENT_CATEGORY_OTHER_VIOLATION_TC",
    "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
    "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
    "STATEMENT_CATEGORY_SCAMS_AND_FRAUD",
    "STATEMENT_CATEGORY_SELF_HARM",
    "STATEMENT_CATEGORY_UNSAFE_AND_PROHIBITED_PRODUCTS",
    "STATEMENT_CATEGORY_VIOLENCE",
];
const KEYWORDS: &[&str] = &[
    "KEYWORD_TERRORIST_CONTENT",
    "KEYWORD_HATE_SPEECH",
    "KEYWORD_DEFAMATION",
    "KEYWORD_DISCRIMINATION",
    "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL",
    "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS",
    "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING",
    "KEYWORD_NON_CONSENSUAL_ITEMS_DEEPFAKE",
    "KEYWORD_ILLEGAL_ORGANIZATIONS",
    "KEYWORD_RISK_ENVIRONMENTAL_DAMAGE",
    "KEYWORD_RISK_PUBLIC_HEALTH",
    "KEYWORD_VIOLATION_NATIONAL_LAW",
    "KEYWORD_ELECTION_INTERFERENCE",
    "KEYWORD_FOREIGN_INFORMATION_MANIPULATION",
    "KEYWORD_MISINFORMATION_DISINFORMATION",
    "KEYWORD_IMPERSONATION_ACCOUNT_HIJACKING",
    "KEYWORD_PHISHING",
    "KEYWORD_INCITEMENT_VIOLENCE_HATRED",
    "KEYWORD_COPYRIGHT_INFRINGEMENT",
    "KEYWORD_OTHER",
];
const CONTENT_TYPES: &[&str] = &[
    "CONTENT_TYPE_APP",
    "CONTENT_TYPE_AUDIO",
    "CONTENT_TYPE_IMAGE",
    "CONTENT_TYPE_PRODUCT",
    "CONTENT_TYPE_SYNTHETIC_MEDIA",
    "CONTENT_TYPE_TEXT",
    "CONTENT_TYPE_VIDEO",
    "CONTENT_TYPE_OTHER",
];
const SOURCES: &[&str] =
    &["SOURCE_ARTICLE_16", "SOURCE_TRUSTED_FLAGGER", "SOURCE_TYPE_OTHER_NOTIFICATION", "SOURCE_VOLUNTARY"];
/// The territorial scope codes the database accepts (its EuropeanCountriesService: the EEA).
const EEA: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IS", "IT", "LI", "LT",
    "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
];

const RULES: &[Rule] = &[
    Rule { field: "puid", required: true, kind: Kind::Puid },
    Rule { field: "decision_visibility", required: false, kind: Kind::ListOf(VISIBILITY) },
    Rule { field: "decision_ground", required: true, kind: Kind::OneOf(GROUNDS) },
    Rule { field: "illegal_content_legal_ground", required: false, kind: Kind::Text(500) },
    Rule { field: "illegal_content_explanation", required: false, kind: Kind::Text(2000) },
    Rule { field: "incompatible_content_ground", required: false, kind: Kind::Text(500) },
    Rule { field: "incompatible_content_explanation", required: false, kind: Kind::Text(2000) },
    Rule { field: "category", required: true, kind: Kind::OneOf(CATEGORIES) },
    Rule { field: "category_specification", required: false, kind: Kind::ListOf(KEYWORDS) },
    Rule { field: "content_type", required: true, kind: Kind::ListOf(CONTENT_TYPES) },
    Rule { field: "content_type_other", required: false, kind: Kind::Text(500) },
    Rule { field: "territorial_scope", required: false, kind: Kind::ListOf(EEA) },
    Rule { field: "content_date", required: true, kind: Kind::DateFrom("2000-01-01") },
    Rule { field: "application_date", required: true, kind: Kind::DateFrom("2020-01-01") },
    Rule { field: "decision_facts", required: true, kind: Kind::Text(5000) },
    Rule { field: "source_type", required: true, kind: Kind::OneOf(SOURCES) },
    Rule { field: "source_identity", required: false, kind: Kind::Text(500) },
    Rule { field: "automated_detection", required: true, kind: Kind::OneOf(&["Yes", "No"]) },
    Rule {
        field: "automated_decision",
        required: true,
        kind: Kind::OneOf(&[
            "AUTOMATED_DECISION_FULLY",
            "AUTOMATED_DECISION_PARTIALLY",
            "AUTOMATED_DECISION_NOT_AUTOMATED",
        ]),
    },
];

/// Fields "required if" another has a value: (field, when field, has value).
const REQUIRED_IF: &[(&str, &str, &str)] = &[
    ("illegal_content_legal_ground", "decision_ground", "DECISION_GROUND_ILLEGAL_CONTENT"),
    ("illegal_content_explanation", "decision_ground", "DECISION_GROUND_ILLEGAL_CONTENT"),
    ("incompatible_content_ground", "decision_ground", "DECISION_GROUND_INCOMPATIBLE_CONTENT"),
    ("incompatible_content_explanation", "decision_ground", "DECISION_GROUND_INCOMPATIBLE_CONTENT"),
    ("content_type_other", "content_type", "CONTENT_TYPE_OTHER"),
    ("decision_visibility_other", "decision_visibility", "DECISION_VISIBILITY_OTHER"),
];

/// The restriction types, at least one of which a statement must carry.
const RESTRICTIONS: &[&str] = &["decision_visibility", "decision_monetary", "decision_provision", "decision_account"];

/// Fields CRS adds that the API ignores.
const EXTRA: &[&str] = &["request_jurisdiction"];

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

fn has_value(v: &Value, wanted: &str) -> bool {
    match v {
        Value::String(s) => s == wanted,
        Value::Array(a) => a.iter().any(|x| x == wanted),
        _ => false,
    }
}

/// Every rule `s` breaks, as "field: why".
fn dsa_violations(s: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let o = s.as_object().expect("a statement is an object");
    for key in o.keys() {
        if !RULES.iter().any(|r| r.field == key) && !EXTRA.contains(&key.as_str()) {
            out.push(format!("{key}: not a field of the API"));
        }
    }
    for rule in RULES {
        let v = &s[rule.field];
        if !present(v) {
            if rule.required {
                out.push(format!("{}: required", rule.field));
            }
            continue;
        }
        let ok = match &rule.kind {
            Kind::Text(max) => v.as_str().is_some_and(|t| t.chars().count() <= *max),
            Kind::OneOf(values) => v.as_str().is_some_and(|t| values.contains(&t)),
            Kind::ListOf(values) => v.as_array().is_some_and(|a| {
                a.iter().all(|x| x.as_str().is_some_and(|t| values.contains(&t)))
                    && a.iter().filter_map(Value::as_str).collect::<BTreeSet<_>>().len() == a.len()
            }),
            Kind::DateFrom(from) => v.as_str().is_some_and(|t| {
                chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok() && t.len() == 10 && t >= *from
            }),
            Kind::Puid => v.as_str().is_some_and(|t| {
                !t.is_empty() && t.len() <= 500 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            }),
        };
        if !ok {
            out.push(format!("{}: {v} breaks the rule", rule.field));
        }
    }
    for (field, when, value) in REQUIRED_IF {
        if has_value(&s[*when], value) && !present(&s[*field]) {
            out.push(format!("{field}: required when {when} is {value}"));
        }
    }
    if !RESTRICTIONS.iter().any(|f| present(&s[*f])) {
        out.push("decision_visibility: one restriction type is required".into());
    }
    if has_value(&s["source_type"], "SOURCE_VOLUNTARY") && present(&s["source_identity"]) {
        out.push("source_identity: not with SOURCE_VOLUNTARY".into());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A seeded set of decided requests with known outcomes and times.

/// A marker in every free-text field a request or a decision carries; none may be published.
const MARKER: &str = "PII-";

const HOUR: i64 = 3600;
/// 2026-11-02T00:00:00Z: every seeded request in November is received then.
const T0: i64 = 1_793_577_600;
/// The report's period: November 2026.
const NOV_1: i64 = 1_793_491_200;
const DEC_1: i64 = 1_796_083_200;

fn ts(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: secs, nanos: 0 }
}

fn restrict(index: u32, scope: &[&str]) -> ItemDecision {
    ItemDecision {
        item_index: index,
        outcome: ItemOutcome::RestrictedInJurisdiction as i32,
        ground: DecisionGround::IllegalContent as i32,
        legal_ground: format!("{MARKER}legal-ground Art. 9 as the reviewer typed it"),
        explanation: format!("{MARKER}explanation naming Ivan Petrov, the author"),
        territorial_scope: scope.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn remove(index: u32, ground: DecisionGround) -> ItemDecision {
    ItemDecision {
        item_index: index,
        outcome: ItemOutcome::RemovedGlobally as i32,
        ground: ground as i32,
        legal_ground: format!("{MARKER}term-or-law"),
        explanation: format!("{MARKER}removal-explanation"),
        platform_policy: format!("{MARKER}platform-policy violent threats"),
        ..Default::default()
    }
}

fn leave(index: u32) -> ItemDecision {
    ItemDecision {
        item_index: index,
        outcome: ItemOutcome::NoAction as i32,
        no_action_reason: NoActionReason::NotSpecificEnough as i32,
        explanation: format!("{MARKER}no-action-explanation"),
        ..Default::default()
    }
}

fn gone(index: u32) -> ItemDecision {
    ItemDecision {
        item_index: index,
        outcome: ItemOutcome::AlreadyUnavailable as i32,
        explanation: format!("{MARKER}unavailable-explanation"),
        ..Default::default()
    }
}

struct Seed {
    id: &'static str,
    jurisdiction: &'static str,
    instrument: LegalInstrument,
    category: Category,
    keywords: Vec<Keyword>,
    decisions: Vec<ItemDecision>,
    received: i64,
    decided: i64,
    due: Option<i64>,
}

fn seeds() -> Vec<Seed> {
    use LegalInstrument as I;
    vec![
        // Granted in part, in 2 h, deadline (24 h) met.
        Seed {
            id: "tr-kz-1",
            jurisdiction: "KZ",
            instrument: I::GovernmentOrder,
            category: Category::IllegalOrHarmfulSpeech,
            keywords: vec![Keyword::HateSpeech],
            decisions: vec![restrict(0, &[]), leave(1), remove(2, DecisionGround::IncompatibleContent)],
            received: T0,
            decided: T0 + 2 * HOUR,
            due: Some(T0 + 24 * HOUR),
        },
        // Granted in full, in 30 min, deadline (1 h) met.
        Seed {
            id: "tr-de-1",
            jurisdiction: "DE",
            instrument: I::CourtOrder,
            category: Category::RiskForPublicSecurity,
            keywords: vec![Keyword::TerroristContent],
            decisions: vec![restrict(0, &["DE"]), remove(1, DecisionGround::IllegalContent)],
            received: T0,
            decided: T0 + HOUR / 2,
            due: Some(T0 + HOUR),
        },
        // Refused, in 6 h, deadline (4 h) missed.
        Seed {
            id: "tr-tr-1",
            jurisdiction: "TR",
            instrument: I::GovernmentOrder,
            category: Category::NegativeEffectsOnCivicDiscourseOrElections,
            keywords: vec![],
            decisions: vec![leave(0), leave(1)],
            received: T0,
            decided: T0 + 6 * HOUR,
            due: Some(T0 + 4 * HOUR),
        },
        // Nothing to act on, in 1 h, no legal deadline.
        Seed {
            id: "tr-kz-2",
            jurisdiction: "KZ",
            instrument: I::GovernmentNotice,
            category: Category::IllegalOrHarmfulSpeech,
            keywords: vec![],
            decisions: vec![gone(0)],
            received: T0,
            decided: T0 + HOUR,
            due: None,
        },
        // Granted in full, in 10 h, deadline (24 h) met.
        Seed {
            id: "tr-kz-3",
            jurisdiction: "KZ",
            instrument: I::GovernmentOrder,
            category: Category::IllegalOrHarmfulSpeech,
            keywords: vec![],
            decisions: vec![restrict(0, &["KZ"]), restrict(1, &[])],
            received: T0,
            decided: T0 + 10 * HOUR,
            due: Some(T0 + 24 * HOUR),
        },
        // Decided in October: outside the period.
        Seed {
            id: "tr-kz-0",
            jurisdiction: "KZ",
            instrument: I::GovernmentOrder,
            category: Category::IllegalOrHarmfulSpeech,
            keywords: vec![],
            decisions: vec![restrict(0, &[])],
            received: NOV_1 - 20 * 24 * HOUR,
            decided: NOV_1 - 19 * 24 * HOUR,
            due: Some(NOV_1 - 18 * 24 * HOUR),
        },
    ]
}

fn notify_request(s: &Seed) -> NotifyRequest {
    let items = (0..s.decisions.len() as u32)
        .map(|i| Item {
            index: i,
            // An account name in the path: the owner's identity.
            url: format!("https://social.example/@{MARKER}owner-{}/status/{i}?ref={MARKER}query", s.id),
            content_key: format!("url:https://social.example/@{MARKER}owner-{}/status/{i}", s.id),
            description: format!("{MARKER}description of item {i}"),
            ..Default::default()
        })
        .collect();
    NotifyRequest {
        event_id: format!("decided:{}", s.id),
        kind: NotificationKind::Decided as i32,
        submission: Some(Submission {
            request_id: s.id.into(),
            agency_id: format!("agency-{}", s.jurisdiction.to_lowercase()),
            agency_name: format!("Authority of {}", s.jurisdiction),
            jurisdiction: s.jurisdiction.into(),
            legal_instrument: s.instrument as i32,
            category: s.category as i32,
            keywords: s.keywords.iter().map(|k| *k as i32).collect(),
            items,
            legal_basis: format!("{MARKER}legal-basis as the agency wrote it"),
            justification: format!("{MARKER}justification naming Aigerim Sadykova"),
            reference: format!("{MARKER}reference 2026/118"),
            issuing_authority: format!("{MARKER}issuing-authority Judge A. Smith"),
            received_at: Some(ts(s.received)),
            ..Default::default()
        }),
        decisions: s.decisions.clone(),
        deadline: s.due.map(|due| SlaDeadline {
            policy_id: format!("policy-{}", s.jurisdiction.to_lowercase()),
            legal_reference: format!("Deadline law of {}", s.jurisdiction),
            due_at: Some(ts(due)),
            ..Default::default()
        }),
        message: format!("{MARKER}decision-summary by reviewer Ana"),
        decided_at: Some(ts(s.decided)),
        ..Default::default()
    }
}

async fn seeded(backend: Backend) -> Running {
    let env = env(backend)
        .await
        .set("CRS_TRANSPARENCY__PLATFORM_NAME", "Example Social")
        .set("CRS_TRANSPARENCY__TERMS", "Example Social Community Standards");
    let running = start(&env).await;
    // The transparency pipeline's feed, on the stream.
    admin(&running)
        .await
        .put_subscription(PutSubscriptionRequest {
            audience: Audience::Transparency as i32,
            channel: Channel::Stream as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut notify = internal(&running, "legal-review").await;
    for s in seeds() {
        notify.notify(notify_request(&s)).await.unwrap();
    }
    running
}

fn november() -> (Option<prost_types::Timestamp>, Option<prost_types::Timestamp>) {
    (Some(ts(NOV_1)), Some(ts(DEC_1)))
}

async fn export(running: &Running, record: TransparencyRecord, format: TransparencyFormat) -> String {
    let (after, before) = november();
    let mut stream = admin(running)
        .await
        .export_transparency_records(ExportTransparencyRecordsRequest {
            record: record as i32,
            format: format as i32,
            decided_after: after,
            decided_before: before,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend(chunk.unwrap().data);
    }
    String::from_utf8(out).unwrap()
}

async fn report(running: &Running, format: TransparencyFormat) -> TransparencyReport {
    let (after, before) = november();
    admin(running)
        .await
        .get_transparency_report(GetTransparencyReportRequest {
            format: format as i32,
            decided_after: after,
            decided_before: before,
        })
        .await
        .unwrap()
        .into_inner()
}

/// RFC 4180 records: quoted fields may hold commas, quotes and line breaks.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "the last record ends with CRLF");
    rows
}

fn assert_no_marker(what: &str, text: &str) {
    assert!(!text.contains(MARKER), "{what} carries free text or personal data:\n{text}");
    for name in ["Ivan Petrov", "Aigerim", "Judge", "Ana"] {
        assert!(!text.contains(name), "{what} names {name}:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------

async fn statements_pass_the_dsa_rules(backend: Backend) {
    let running = seeded(backend).await;
    let lines = export(&running, TransparencyRecord::StatementsOfReasons, TransparencyFormat::Json).await;
    assert_no_marker("the JSON lines export", &lines);
    let statements: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // One per item restricted in November: 2 + 2 + 2, oldest decision first.
    let puids: Vec<&str> = statements.iter().map(|s| s["puid"].as_str().unwrap()).collect();
    assert_eq!(puids, ["tr-de-1-0", "tr-de-1-1", "tr-kz-1-0", "tr-kz-1-2", "tr-kz-3-0", "tr-kz-3-1"]);
    for s in &statements {
        let broken = dsa_violations(s);
        assert!(broken.is_empty(), "{} breaks the DSA rules: {broken:?}\n{s:#}", s["puid"]);
    }
    let by_puid: BTreeMap<&str, &Value> = statements.iter().map(|s| (s["puid"].as_str().unwrap(), s)).collect();
    // A restriction in Germany: disabled there, on the law; a removal everywhere: the whole EEA.
    let de = by_puid["tr-de-1-0"];
    assert_eq!(de["decision_visibility"], json!(["DECISION_VISIBILITY_CONTENT_DISABLED"]));
    assert_eq!(de["territorial_scope"], json!(["DE"]));
    assert_eq!(de["decision_ground"], "DECISION_GROUND_ILLEGAL_CONTENT");
    assert_eq!(de["category"], "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY");
    assert_eq!(de["category_specification"], json!(["KEYWORD_TERRORIST_CONTENT"]));
    assert_eq!(de["source_type"], "SOURCE_TYPE_OTHER_NOTIFICATION");
    assert_eq!(de["source_identity"], "Authority of DE");
    assert_eq!(
        (de["content_date"].as_str(), de["application_date"].as_str()),
        (Some("2026-11-02"), Some("2026-11-02"))
    );
    assert!(de["illegal_content_legal_ground"].as_str().unwrap().contains("Deadline law of DE"), "{de}");
    let global = by_puid["tr-de-1-1"];
    assert_eq!(global["decision_visibility"], json!(["DECISION_VISIBILITY_CONTENT_REMOVED"]));
    assert_eq!(global["territorial_scope"].as_array().unwrap().len(), 30);
    // A restriction in Kazakhstan is outside the scope codes the database takes.
    let kz = by_puid["tr-kz-1-0"];
    assert_eq!((kz["territorial_scope"].clone(), kz["request_jurisdiction"].clone()), (json!([]), json!("KZ")));
    let terms = by_puid["tr-kz-1-2"];
    assert_eq!(terms["decision_ground"], "DECISION_GROUND_INCOMPATIBLE_CONTENT");
    assert_eq!(terms["incompatible_content_ground"], "Example Social Community Standards");

    // The CSV carries the same statements, and passes the same rules.
    let csv = export(&running, TransparencyRecord::StatementsOfReasons, TransparencyFormat::Csv).await;
    assert_no_marker("the CSV export", &csv);
    let rows = parse_csv(&csv);
    let header = &rows[0];
    assert_eq!(rows.len(), 1 + statements.len());
    for (row, line) in rows[1..].iter().zip(&statements) {
        let mut s = serde_json::Map::new();
        for (column, value) in header.iter().zip(row) {
            let list = ["decision_visibility", "category_specification", "content_type", "territorial_scope"];
            let v = if list.contains(&column.as_str()) {
                json!(value.split(',').filter(|v| !v.is_empty()).collect::<Vec<_>>())
            } else {
                json!(value)
            };
            if present(&v) {
                s.insert(column.clone(), v);
            }
        }
        let s = Value::Object(s);
        assert_eq!(s["puid"], line["puid"]);
        assert_eq!(s.get("territorial_scope").cloned().unwrap_or(json!([])), line["territorial_scope"]);
        let broken = dsa_violations(&s);
        assert!(broken.is_empty(), "CSV row {} breaks the DSA rules: {broken:?}", s["puid"]);
    }

    // The paged RPC returns the same statements, a page at a time.
    let (mut token, mut paged) = (String::new(), Vec::new());
    loop {
        let (after, before) = november();
        let page = admin(&running)
            .await
            .export_statements_of_reasons(ExportStatementsOfReasonsRequest {
                decided_after: after,
                decided_before: before,
                page_size: 4,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.statements.len() <= 4);
        paged.extend(page.statements.into_iter().map(|s| s.puid));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, puids);

    // The pipeline's feed is written the same way: no free text there either.
    let mut feed = admin(&running)
        .await
        .subscribe(SubscribeRequest {
            audience: Audience::Transparency as i32,
            cursor: String::new(),
            from_oldest: true,
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..4 {
        let event =
            tokio::time::timeout(std::time::Duration::from_secs(30), feed.next()).await.unwrap().unwrap().unwrap();
        assert_no_marker("the transparency feed", &event.payload_json);
        let data: Value = serde_json::from_str(&event.payload_json).unwrap();
        for s in data["data"]["statements"].as_array().unwrap() {
            let mut s = s.clone();
            s.as_object_mut().unwrap().remove("worldwide");
            assert!(dsa_violations(&s).is_empty(), "{s}");
        }
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exported_statement_passes_the_dsa_field_rules_on_sqlite() {
    statements_pass_the_dsa_rules(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exported_statement_passes_the_dsa_field_rules_on_postgres() {
    statements_pass_the_dsa_rules(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notice_of_a_decided_request_says_what_lumen_shows_and_nothing_personal() {
    let running = seeded(Backend::Sqlite).await;
    let lines = export(&running, TransparencyRecord::Notices, TransparencyFormat::Json).await;
    assert_no_marker("the notices", &lines);
    let notices: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<&str> = notices.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["crs-tr-de-1", "crs-tr-kz-2", "crs-tr-kz-1", "crs-tr-tr-1", "crs-tr-kz-3"], "November, in order");
    let n = notices.iter().find(|n| n["id"] == "crs-tr-kz-1").unwrap();
    assert_eq!(n["type"], "GovernmentRequest");
    assert_eq!(n["title"], "Government order from KZ concerning 3 items");
    assert_eq!(n["date_received"], "2026-11-02");
    assert_eq!(n["date_decided"], "2026-11-02");
    assert_eq!(n["sender"], json!({"name": "Authority of KZ", "kind": "government authority", "country_code": "KZ"}));
    assert_eq!(n["recipient"], json!({"name": "Example Social"}));
    assert_eq!(n["jurisdictions"], json!(["KZ"]));
    assert_eq!(n["regulations"], json!(["Deadline law of KZ"]));
    assert_eq!(n["category"], "ILLEGAL_OR_HARMFUL_SPEECH");
    assert_eq!(n["category_specification"], json!(["KEYWORD_HATE_SPEECH"]));
    assert_eq!(n["action_taken"], "Partial");
    let body = n["body"].as_str().unwrap();
    assert!(body.contains("removed 1 item(s) everywhere, restricted access to 1"), "{body}");
    assert_eq!(
        n["works"],
        json!([
            {"index": 0, "description": "Item 1 of the government order",
             "infringing_urls": ["https://social.example/[REDACTED]"],
             "action": "access restricted in KZ", "statement_of_reasons_puid": "tr-kz-1-0"},
            {"index": 1, "description": "Item 2 of the government order",
             "infringing_urls": ["https://social.example/[REDACTED]"],
             "action": "no action: not specific enough", "statement_of_reasons_puid": ""},
            {"index": 2, "description": "Item 3 of the government order",
             "infringing_urls": ["https://social.example/[REDACTED]"],
             "action": "removed everywhere", "statement_of_reasons_puid": "tr-kz-1-2"},
        ])
    );
    let actions: BTreeMap<&str, &str> =
        notices.iter().map(|n| (n["id"].as_str().unwrap(), n["action_taken"].as_str().unwrap())).collect();
    assert_eq!(actions["crs-tr-de-1"], "Yes");
    assert_eq!(actions["crs-tr-tr-1"], "No");
    assert_eq!(notices.iter().find(|n| n["id"] == "crs-tr-de-1").unwrap()["type"], "CourtOrder");

    // CSV: one row per work.
    let csv = export(&running, TransparencyRecord::Notices, TransparencyFormat::Csv).await;
    assert_no_marker("the notices CSV", &csv);
    let rows = parse_csv(&csv);
    assert_eq!(rows.len(), 1 + 2 + 1 + 3 + 2 + 2);
    let column = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    let kz = rows.iter().find(|r| r[column("id")] == "crs-tr-kz-1" && r[column("work_index")] == "2").unwrap();
    assert_eq!(kz[column("action_taken")], "Partial");
    assert_eq!(kz[column("work_infringing_url")], "https://social.example/[REDACTED]");
    assert_eq!(kz[column("work_statement_puid")], "tr-kz-1-2");
    running.stop().await;
}

async fn report_figures(backend: Backend) {
    let running = seeded(backend).await;
    let json_report = report(&running, TransparencyFormat::Json).await;
    assert_eq!((json_report.content_type.as_str(), json_report.requests), ("application/json", 5));
    let text = String::from_utf8(json_report.document).unwrap();
    assert_no_marker("the report", &text);
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["requests"], 5);
    assert_eq!(r["items"], 3 + 2 + 2 + 1 + 2);
    assert_eq!(
        r["outcomes"],
        json!({"GRANTED_IN_FULL": 2, "GRANTED_IN_PART": 1, "REFUSED": 1, "ALREADY_UNAVAILABLE": 1})
    );
    assert_eq!(
        r["shares"],
        json!({"granted_in_full": 0.4, "granted_in_part": 0.2, "refused": 0.2, "already_unavailable": 0.2})
    );
    // Times to decision: 0.5 h, 1 h, 2 h, 6 h, 10 h; nearest rank: the 3rd and the 5th.
    assert_eq!(r["time_to_decision"], json!({"requests": 5, "median_seconds": 2 * HOUR, "p90_seconds": 10 * HOUR}));
    assert_eq!(r["deadlines"], json!({"with_deadline": 4, "met": 3, "missed": 1, "share_met": 0.75}));
    let rows: Vec<(String, String, String, u64)> = r["by_jurisdiction_category_outcome"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["jurisdiction"].as_str().unwrap().to_owned(),
                row["category"].as_str().unwrap().to_owned(),
                row["outcome"].as_str().unwrap().to_owned(),
                row["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    let row = |j: &str, c: &str, o: &str| (j.to_owned(), c.to_owned(), o.to_owned(), 1);
    assert_eq!(
        rows,
        [
            row("DE", "RISK_FOR_PUBLIC_SECURITY", "GRANTED_IN_FULL"),
            row("KZ", "ILLEGAL_OR_HARMFUL_SPEECH", "GRANTED_IN_FULL"),
            row("KZ", "ILLEGAL_OR_HARMFUL_SPEECH", "GRANTED_IN_PART"),
            row("KZ", "ILLEGAL_OR_HARMFUL_SPEECH", "ALREADY_UNAVAILABLE"),
            row("TR", "NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS", "REFUSED"),
        ]
    );
    assert_eq!(r["period"]["decided_after"], "2026-11-01T00:00:00+00:00");

    // The CSV has the same figures, with the totals.
    let csv = report(&running, TransparencyFormat::Csv).await;
    assert_eq!(csv.content_type, "text/csv");
    let rows = parse_csv(&String::from_utf8(csv.document).unwrap());
    let column = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    let total = rows.iter().find(|r| r[0] == "ALL" && r[1] == "ALL" && r[2] == "ALL").unwrap();
    assert_eq!(total[column("requests")], "5");
    assert_eq!(total[column("median_seconds")], (2 * HOUR).to_string());
    assert_eq!(total[column("p90_seconds")], (10 * HOUR).to_string());
    assert_eq!(total[column("share_deadlines_met")], "0.75");
    let full = rows.iter().find(|r| r[0] == "ALL" && r[2] == "GRANTED_IN_FULL").unwrap();
    assert_eq!(full[column("share_of_requests")], "0.4");
    let refused = rows.iter().find(|r| r[0] == "TR").unwrap();
    assert_eq!((refused[column("deadlines_met")].as_str(), refused[column("deadlines_missed")].as_str()), ("0", "1"));

    // Without a period: October's request counts too.
    let all = admin(&running)
        .await
        .get_transparency_report(GetTransparencyReportRequest {
            format: TransparencyFormat::Json as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.requests, 6);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_the_seeded_outcomes_and_times_on_sqlite() {
    report_figures(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_the_seeded_outcomes_and_times_on_postgres() {
    report_figures(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_is_valid_svg_with_a_bar_per_jurisdiction_in_each_series() {
    let running = seeded(Backend::Sqlite).await;
    let svg = report(&running, TransparencyFormat::Svg).await;
    assert_eq!(svg.content_type, "image/svg+xml");
    let text = String::from_utf8(svg.document).unwrap();
    assert_no_marker("the chart", &text);
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("not XML: {e}\n{text}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(root.tag_name().namespace(), Some("http://www.w3.org/2000/svg"));
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.descendants().filter(|t| t.is_text()).filter_map(|t| t.text()).collect::<String>())
        .collect();
    for expected in ["granted in full", "granted in part", "refused", "DE", "KZ", "TR"] {
        assert!(texts.iter().any(|t| t.trim() == expected), "no text {expected:?} in {texts:?}");
    }
    assert!(texts.iter().any(|t| t.contains("2026-11-01 to 2026-12-01")), "the period in the title: {texts:?}");
    // Each series: a bar per jurisdiction (DE, KZ, TR, in that order) and its legend swatch;
    // bars of equal counts are equally tall.
    let bars = |colour: &str| -> Vec<(f64, f64)> {
        let mut bars: Vec<(f64, f64)> = doc
            .descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("fill").is_some_and(|f| f.eq_ignore_ascii_case(colour)))
            .map(|n| {
                let num = |a: &str| n.attribute(a).unwrap().parse::<f64>().unwrap();
                (num("x"), num("height"), num("width"))
            })
            .filter(|(_, _, width)| *width > 20.0) // not the legend's swatch
            .map(|(x, h, _)| (x, h))
            .collect();
        bars.sort_by(|a, b| a.0.total_cmp(&b.0));
        bars
    };
    let full = bars("#1B9E77");
    let part = bars("#D95F02");
    let refused = bars("#7570B3");
    assert_eq!((full.len(), part.len(), refused.len()), (3, 3, 3), "{text}");
    let one = full[0].1;
    assert!(one > 0.0);
    // DE: 1 in full; KZ: 1 in full, 1 in part (and one with nothing to act on); TR: 1 refused.
    let heights = |b: &[(f64, f64)]| b.iter().map(|(_, h)| (h / one).round() as i64).collect::<Vec<_>>();
    assert_eq!(heights(&full), [1, 1, 0]);
    assert_eq!(heights(&part), [0, 1, 0]);
    assert_eq!(heights(&refused), [0, 0, 1]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field_and_only_admins_may_export() {
    let env = env(Backend::Sqlite).await;
    let running = start(&env).await;
    let fields = |e: &tonic::Status| -> Vec<String> {
        crs_platform::error::field_violations(e).into_iter().map(|(f, _)| f).collect()
    };
    let mut admin = admin(&running).await;
    let err = admin
        .export_transparency_records(ExportTransparencyRecordsRequest {
            record: 0,
            format: TransparencyFormat::Svg as i32,
            decided_after: Some(ts(DEC_1)),
            decided_before: Some(ts(NOV_1)),
        })
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), ["record", "format", "decided_before"]);
    let err = admin
        .get_transparency_report(GetTransparencyReportRequest {
            format: TransparencyFormat::Csv as i32,
            decided_after: Some(prost_types::Timestamp { seconds: i64::MAX, nanos: 0 }),
            decided_before: None,
        })
        .await
        .unwrap_err();
    assert_eq!((err.code(), fields(&err)), (Code::InvalidArgument, vec!["decided_after".to_owned()]));
    let err = admin.get_transparency_report(GetTransparencyReportRequest::default()).await.unwrap_err();
    assert_eq!((err.code(), fields(&err)), (Code::InvalidArgument, vec!["format".to_owned()]));
    let err = admin
        .export_statements_of_reasons(ExportStatementsOfReasonsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!((err.code(), fields(&err)), (Code::InvalidArgument, vec!["page_token".to_owned()]));

    for caller in [
        Principal::Reviewer { id: "ana".into(), roles: vec![Role::Reviewer, Role::SeniorReviewer] },
        Principal::Reviewer { id: "bridge".into(), roles: vec![Role::Consumer] },
        Principal::Agency { id: "agency-kz".into() },
    ] {
        let mut client = as_principal(&running, &caller).await;
        let report = client
            .get_transparency_report(GetTransparencyReportRequest {
                format: TransparencyFormat::Json as i32,
                ..Default::default()
            })
            .await;
        assert_eq!(report.unwrap_err().code(), Code::PermissionDenied, "{caller:?}");
        let export = client
            .export_transparency_records(ExportTransparencyRecordsRequest {
                record: TransparencyRecord::Notices as i32,
                format: TransparencyFormat::Json as i32,
                ..Default::default()
            })
            .await;
        assert_eq!(export.err().unwrap().code(), Code::PermissionDenied, "{caller:?}");
        let page = client.export_statements_of_reasons(ExportStatementsOfReasonsRequest::default()).await;
        assert_eq!(page.unwrap_err().code(), Code::PermissionDenied, "{caller:?}");
    }
    running.stop().await;
}

/// A decision notified before transparency records existed is recorded when the service starts,
/// from the structured fields its notification kept, and is published like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_notified_before_transparency_records_are_published_too() {
    use sea_orm::ConnectionTrait;
    use sea_orm_migration::MigratorTrait;
    let db = crs_testkit::TestDb::fresh(Backend::Sqlite, "earlier").await.unwrap();
    let conn = db.connect().await.unwrap();
    // The schema of the previous version: every migration before the transparency records.
    crs_notification::migration::Migrator::up(&conn, Some(5)).await.unwrap();
    let payload = json!({
        "kind": "DECIDED", "request_id": "old-1", "agency_id": "agency-kz", "jurisdiction": "KZ",
        "legal_instrument": "GOVERNMENT_ORDER", "category": "ILLEGAL_OR_HARMFUL_SPEECH",
        "reference": format!("{MARKER}reference"), "message": format!("{MARKER}summary"),
        "deadline_due_at_ms": (T0 + 24 * HOUR) * 1000, "sla_threshold_percent": null,
        "decisions": [
            {"item_index": 0, "outcome": "RESTRICTED_IN_JURISDICTION", "no_action_reason": "UNSPECIFIED",
             "ground": 1, "legal_ground": format!("{MARKER}ground"), "explanation": format!("{MARKER}why"),
             "territorial_scope": [], "platform_policy": ""},
            {"item_index": 1, "outcome": "NO_ACTION", "no_action_reason": "OVER_BROAD",
             "ground": 0, "legal_ground": "", "explanation": format!("{MARKER}why not"),
             "territorial_scope": [], "platform_policy": ""},
        ],
    });
    for sql in [
        format!(
            "INSERT INTO notifications (id, event_id, kind, request_id, agency_id, payload, created_at) \
             VALUES ('n-old', 'e-old', 3, 'old-1', 'agency-kz', '{payload}', {})",
            (T0 + 3 * HOUR) * 1000
        ),
        // A notification from before decisions were kept with it: nothing to record.
        format!(
            "INSERT INTO notifications (id, event_id, kind, request_id, agency_id, payload, created_at) \
             VALUES ('n-older', 'e-older', 3, 'older-1', 'agency-kz', '{{\"kind\":\"DECIDED\"}}', {})",
            T0 * 1000
        ),
    ] {
        conn.execute_unprepared(&sql).await.unwrap();
    }
    conn.close().await.unwrap();
    let env = crs_testkit::ServiceEnv::on::<crs_notification::Application>(db.clone());
    let running = crs_testkit::service::start::<crs_notification::Application>(&env).await;

    let lines = export(&running, TransparencyRecord::Notices, TransparencyFormat::Json).await;
    assert_no_marker("the notices", &lines);
    let notices: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(notices.len(), 1, "{lines}");
    let n = &notices[0];
    assert_eq!(n["id"], "crs-old-1");
    assert_eq!(n["action_taken"], "Partial");
    assert_eq!(n["date_decided"], "2026-11-02");
    assert!(n["date_received"].is_null(), "not kept then");
    assert_eq!(n["sender"]["name"], "[REDACTED]");
    assert_eq!(n["works"][1]["action"], "no action: over broad");
    let statements = export(&running, TransparencyRecord::StatementsOfReasons, TransparencyFormat::Json).await;
    let s: Value = serde_json::from_str(statements.lines().next().unwrap()).unwrap();
    assert!(dsa_violations(&s).is_empty(), "{s}");
    let r: Value = serde_json::from_slice(&report(&running, TransparencyFormat::Json).await.document).unwrap();
    assert_eq!((r["requests"].as_u64(), r["deadlines"]["met"].as_u64()), (Some(1), Some(1)));
    assert_eq!(r["time_to_decision"]["requests"], 0, "the receipt time was not kept then");
    running.stop().await;
    db.drop_now().await.unwrap();
}
