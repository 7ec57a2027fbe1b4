//! Property tests over what agencies send: whatever the submission, validation answers with the
//! normalised items or with violations naming fields of the request (never a panic), and URL
//! normalisation is stable, so equal content gets one key however it was written.
//!
//! `make test` runs proptest's default number of cases; `make fuzz` runs many more
//! (`PROPTEST_CASES`).

use crs_intake::config::Limits;
use crs_intake::entities::agency;
use crs_intake::validate::{normalise_url, submission};
use crs_proto::common::ContentItem;
use crs_proto::intake::SubmitRequestRequest;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits {
        max_items: 8,
        max_keywords: 4,
        max_string_len: 200,
        max_text_len: 400,
        max_request_bytes: 4096,
        max_watch_streams_per_agency: 4,
    }
}

fn agency() -> agency::Model {
    agency::Model {
        id: "agency-1".into(),
        name: "Agency".into(),
        jurisdiction: "DE".into(),
        contact_email: "a@example.org".into(),
        callback_url: String::new(),
        callback_secret: String::new(),
        language: "de".into(),
        settings_version: 1,
        allowed_instruments: "[]".into(),
        allowed_categories: "[]".into(),
        status: 1,
        rate_limit_tier: "standard".into(),
        rate_limit_overrides: "[]".into(),
        event_seq: 0,
        created_at: 0,
        updated_at: 0,
    }
}

/// Any text, weighted towards the characters validation cares about.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,40}", "[ \t\n\r\u{0}\u{7f}a-zA-Z0-9~é]{0,30}", Just(String::new()), "x{150,450}"]
}

/// Strings that look like URLs, with the parts normalisation touches.
fn url_like() -> impl Strategy<Value = String> {
    (
        "(http|https|HTTP|Https|ftp|javascript|)",
        "(://|:/|:)",
        "(user:pw@)?",
        "[a-zA-Z0-9.-]{0,20}|[а-я]{1,8}\\.рф|\\[::1\\]|127\\.0\\.0\\.1",
        "(:80|:443|:8080|:|)",
        "(/[a-zA-Z0-9%._~-]{0,10}){0,3}",
        "(\\?([a-z_]{1,8}=[a-zA-Z0-9%+]{0,6}&?){0,4}|)",
        "(#[a-z]{0,5}|)",
    )
        .prop_map(|(s, sep, user, host, port, path, query, frag)| {
            format!("{s}{sep}{user}{host}{port}{path}{query}{frag}")
        })
}

fn item() -> impl Strategy<Value = ContentItem> {
    (prop_oneof![url_like(), text()], prop_oneof![Just(String::new()), "[a-zA-Z0-9_-]{0,130}", text()], text())
        .prop_map(|(url, content_id, description)| ContentItem { url, content_id, description })
}

fn request() -> impl Strategy<Value = SubmitRequestRequest> {
    (
        (text(), prop_oneof![Just("DE".to_owned()), "[A-Z]{2}", text()], -2i32..12, -2i32..20),
        (prop::collection::vec(-2i32..30, 0..6), -2i32..6, text(), text(), text(), text()),
        prop::collection::vec(item(), 0..10),
        prop_oneof![Just(String::new()), "[a-z]{2}", text()],
    )
        .prop_map(
            |(
                (idempotency_key, jurisdiction, legal_instrument, category),
                (keywords, requested_action, legal_basis, justification, reference, issuing_authority),
                items,
                content_language,
            )| SubmitRequestRequest {
                idempotency_key,
                jurisdiction,
                legal_instrument,
                category,
                keywords,
                requested_action,
                legal_basis,
                justification,
                reference,
                issuing_authority,
                items,
                content_language,
            },
        )
}

/// The fields a violation may name for `req`.
fn is_field_of(field: &str, req: &SubmitRequestRequest) -> bool {
    const TOP: &[&str] = &[
        "idempotency_key",
        "jurisdiction",
        "legal_instrument",
        "category",
        "keywords",
        "requested_action",
        "content_language",
        "legal_basis",
        "justification",
        "reference",
        "issuing_authority",
        "items",
    ];
    if TOP.contains(&field) {
        return true;
    }
    let indexed = |prefix: &str, len: usize| {
        field
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(i, rest)| i.parse::<usize>().ok().map(|i| (i, rest)))
            .is_some_and(|(i, rest)| i < len && matches!(rest, "" | ".url" | ".content_id" | ".description"))
    };
    indexed("keywords[", req.keywords.len()) || indexed("items[", req.items.len())
}

proptest! {
    #[test]
    fn fuzz_submissions_are_valid_or_name_their_bad_fields(req in request()) {
        match submission(&req, &agency(), &limits()) {
            Ok(valid) => {
                prop_assert!(!valid.items.is_empty());
                let keys: std::collections::HashSet<_> = valid.items.iter().map(|i| &i.content_key).collect();
                prop_assert_eq!(keys.len(), valid.items.len(), "one item per content");
                for item in &valid.items {
                    if !item.url.is_empty() {
                        prop_assert_eq!(normalise_url(&item.url, usize::MAX), Ok(item.url.clone()));
                    }
                }
            }
            Err(violations) => {
                prop_assert!(!violations.fields().is_empty());
                for field in violations.fields() {
                    prop_assert!(is_field_of(field, &req), "{field} is not a field of the request");
                }
            }
        }
    }

    #[test]
    fn fuzz_any_text_normalises_or_is_refused(raw in ".{0,300}") {
        if let Ok(url) = normalise_url(&raw, 2048) {
            prop_assert!(url.starts_with("http://") || url.starts_with("https://"));
            prop_assert_eq!(normalise_url(&url, usize::MAX), Ok(url.clone()));
        }
    }

    #[test]
    fn fuzz_normalised_urls_are_stable_and_clean(raw in url_like()) {
        if let Ok(url) = normalise_url(&raw, 2048) {
            let parsed = url::Url::parse(&url).expect("a normalised URL parses");
            prop_assert!(matches!(parsed.scheme(), "http" | "https"));
            prop_assert!(parsed.fragment().is_none(), "fragment kept in {url}");
            prop_assert!(parsed.username().is_empty() && parsed.password().is_none());
            prop_assert!(
                parsed.query_pairs().all(|(k, _)| !k.starts_with("utm_") && k != "fbclid" && k != "gclid"),
                "tracking parameter kept in {url}"
            );
            prop_assert_eq!(normalise_url(&url, usize::MAX), Ok(url.clone()), "not stable");
        }
    }

    /// Tracking parameters and fragments never make the same content two items.
    #[test]
    fn fuzz_tracking_parameters_do_not_change_the_key(
        host in "[a-z]{1,10}\\.(org|de|fr)",
        path in "(/[a-z0-9]{1,8}){0,3}",
        kept in prop::collection::vec(("[a-z]{1,6}", "[a-z0-9]{0,6}"), 0..3),
        tracking in prop::collection::vec(("(utm_source|utm_campaign|fbclid|gclid|si)", "[a-z0-9]{1,6}"), 1..3),
        fragment in "[a-z]{0,6}",
    ) {
        const TRACKING: &[&str] = &["fbclid", "gclid", "dclid", "gbraid", "wbraid", "igshid", "yclid", "si"];
        prop_assume!(kept.iter().all(|(k, _)| !TRACKING.contains(&k.as_str())));
        let query = |pairs: &[(String, String)]| {
            pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
        };
        let plain = format!("https://{host}{path}?{}", query(&kept));
        let mut all = kept.clone();
        all.extend(tracking);
        let tracked = format!("HTTPS://{}{path}?{}#{fragment}", host.to_uppercase(), query(&all));
        prop_assert_eq!(normalise_url(&plain, 2048), normalise_url(&tracked, 2048));
    }
}
