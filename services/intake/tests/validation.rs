//! Every bad submission is refused with INVALID_ARGUMENT naming the field, and writes nothing.

mod support;

use crs_proto::common::{Category, ContentItem, Keyword, LegalInstrument};
use crs_proto::intake::SubmitRequestRequest;
use support::{Backend, Intake, valid_request};
use tonic_types::StatusExt;

type Mutation = fn(&mut SubmitRequestRequest);

fn url(r: &mut SubmitRequestRequest, u: &str) {
    r.items = vec![ContentItem { url: u.into(), ..Default::default() }];
}

fn cases() -> Vec<(&'static str, &'static str, Mutation)> {
    vec![
        ("missing idempotency key", "idempotency_key", |r| r.idempotency_key.clear()),
        ("idempotency key with a space", "idempotency_key", |r| r.idempotency_key = "a b".into()),
        ("idempotency key too long", "idempotency_key", |r| r.idempotency_key = "k".repeat(129)),
        ("idempotency key in the reserved space", "idempotency_key", |r| r.idempotency_key = "~expired:x".into()),
        ("missing jurisdiction", "jurisdiction", |r| r.jurisdiction.clear()),
        ("lower-case jurisdiction", "jurisdiction", |r| r.jurisdiction = "kz".into()),
        ("three-letter jurisdiction", "jurisdiction", |r| r.jurisdiction = "KAZ".into()),
        ("foreign jurisdiction", "jurisdiction", |r| r.jurisdiction = "DE".into()),
        ("unspecified legal instrument", "legal_instrument", |r| r.legal_instrument = 0),
        ("unknown legal instrument number", "legal_instrument", |r| r.legal_instrument = 99),
        ("legal instrument not allowed for the agency", "legal_instrument", |r| {
            r.legal_instrument = LegalInstrument::CourtOrder as i32
        }),
        ("unspecified category", "category", |r| r.category = 0),
        ("unknown category number", "category", |r| r.category = 999),
        ("category not allowed for the agency", "category", |r| r.category = Category::ScamsAndFraud as i32),
        ("unspecified keyword", "keywords[0]", |r| r.keywords = vec![0]),
        ("unknown keyword number", "keywords[1]", |r| r.keywords = vec![Keyword::HateSpeech as i32, 500]),
        ("too many keywords", "keywords", |r| r.keywords = vec![Keyword::HateSpeech as i32; 21]),
        ("unspecified requested action", "requested_action", |r| r.requested_action = 0),
        ("unknown requested action number", "requested_action", |r| r.requested_action = 77),
        ("no items", "items", |r| r.items.clear()),
        ("more items than allowed", "items", |r| {
            r.items = (0..11).map(|i| ContentItem { url: format!("https://e.com/{i}"), ..Default::default() }).collect()
        }),
        ("item with neither url nor content id", "items[0]", |r| r.items = vec![ContentItem::default()]),
        ("item with both url and content id", "items[0]", |r| {
            r.items = vec![ContentItem { url: "https://e.com/1".into(), content_id: "v1".into(), ..Default::default() }]
        }),
        ("ftp url", "items[0].url", |r| url(r, "ftp://e.com/file")),
        ("javascript url", "items[0].url", |r| url(r, "javascript:alert(1)")),
        ("relative url", "items[0].url", |r| url(r, "/posts/1")),
        ("url with a space", "items[0].url", |r| url(r, "https://e.com/a b")),
        ("url with a control character", "items[0].url", |r| url(r, "https://e.com/\u{7}")),
        ("oversized url", "items[0].url", |r| url(r, &format!("https://e.com/{}", "a".repeat(3000)))),
        ("url carrying credentials", "items[0].url", |r| url(r, "https://user:pw@e.com/1")),
        ("url without a host", "items[0].url", |r| url(r, "http://")),
        ("content id with a slash", "items[0].content_id", |r| {
            r.items = vec![ContentItem { content_id: "abc/def".into(), ..Default::default() }]
        }),
        ("content id too long", "items[0].content_id", |r| {
            r.items = vec![ContentItem { content_id: "c".repeat(129), ..Default::default() }]
        }),
        ("description with a control character", "items[0].description", |r| {
            r.items =
                vec![ContentItem { url: "https://e.com/1".into(), description: "a\u{0}b".into(), ..Default::default() }]
        }),
        ("oversized description", "items[0].description", |r| {
            r.items = vec![ContentItem {
                url: "https://e.com/1".into(),
                description: "d".repeat(20_001),
                ..Default::default()
            }]
        }),
        ("one bad url among good items", "items[3].url", |r| {
            r.items = (0..5)
                .map(|i| ContentItem {
                    url: if i == 3 { "mailto:x@e.com".into() } else { format!("https://e.com/{i}") },
                    ..Default::default()
                })
                .collect()
        }),
        ("order without legal basis", "legal_basis", |r| r.legal_basis.clear()),
        ("order without justification", "justification", |r| r.justification.clear()),
        ("order with a blank legal basis", "legal_basis", |r| r.legal_basis = "   \n ".into()),
        ("oversized legal basis", "legal_basis", |r| r.legal_basis = "l".repeat(20_001)),
        ("justification with a NUL", "justification", |r| r.justification = "x\u{0}".into()),
        ("reference with a line break", "reference", |r| r.reference = "a\nb".into()),
        ("oversized reference", "reference", |r| r.reference = "r".repeat(2049)),
        ("issuing authority with an escape character", "issuing_authority", |r| {
            r.issuing_authority = "\u{1b}[31mred".into()
        }),
        ("oversized issuing authority", "issuing_authority", |r| r.issuing_authority = "a".repeat(2049)),
    ]
}

async fn every_bad_request_is_refused_naming_its_field(backend: Backend) {
    let intake = Intake::start(backend).await;
    let agency = intake.agency().await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let before = intake.written().await;
    let mut names = std::collections::HashSet::new();
    for (name, field, mutate) in cases {
        assert!(names.insert(name), "duplicate case {name}");
        let mut request = valid_request();
        mutate(&mut request);
        let status = client.submit_request(request).await.expect_err(name);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{name}: {status:?}");
        let violations = status.get_details_bad_request().unwrap_or_else(|| panic!("{name}: no field violations"));
        let fields: Vec<_> = violations.field_violations.iter().map(|v| v.field.as_str()).collect();
        assert!(fields.contains(&field), "{name}: expected {field}, got {fields:?}");
        assert_eq!(intake.written().await, before, "{name}: something was written");
    }
    // And the valid request itself is accepted, so the table tests what it says it does.
    client.submit_request(valid_request()).await.expect("the unmodified request is valid");
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_on_sqlite() {
    every_bad_request_is_refused_naming_its_field(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_on_postgres() {
    every_bad_request_is_refused_naming_its_field(Backend::Postgres).await;
}
