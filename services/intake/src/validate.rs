//! Validation and normalisation of what agencies submit. Every problem is reported against the
//! field that has it (`items[3].url`), all at once, before anything is written.

use crs_platform::error::FieldViolations;
use crs_proto::common::{Category, ContentItem, Keyword, LegalInstrument, RequestedAction};
use crs_proto::intake::SubmitRequestRequest;

use crate::config::Limits;
use crate::entities::agency;

/// Query parameters that only track who clicked; removing them makes equal content equal.
const TRACKING_PARAMS: &[&str] =
    &["fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "mc_cid", "mc_eid", "igshid", "yclid", "_ga", "si"];

/// An item after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalisedItem {
    pub url: String,
    pub content_id: String,
    pub description: String,
    pub content_key: String,
}

/// A submission that passed every check.
#[derive(Debug, Clone)]
pub struct ValidSubmission {
    pub items: Vec<NormalisedItem>,
}

/// Checks `req` from `agency` against every rule; returns the normalised, de-duplicated items.
pub fn submission(
    req: &SubmitRequestRequest,
    agency: &agency::Model,
    limits: &Limits,
) -> Result<ValidSubmission, FieldViolations> {
    let mut v = FieldViolations::new();
    check_token(&mut v, "idempotency_key", &req.idempotency_key, 128);
    if req.idempotency_key.starts_with('~') {
        v.add("idempotency_key", "must not start with '~'");
    }

    if !crs_domain::vocab::is_country_code(&req.jurisdiction) {
        v.add("jurisdiction", crs_domain::vocab::COUNTRY_CODE_RULE);
    } else if req.jurisdiction != agency.jurisdiction {
        v.add("jurisdiction", format!("must be the agency's own jurisdiction ({})", agency.jurisdiction));
    }

    match LegalInstrument::try_from(req.legal_instrument) {
        Ok(LegalInstrument::Unspecified) | Err(_) => v.add("legal_instrument", "must be a known legal instrument"),
        Ok(i) if !allowed(&agency.allowed_instruments, i as i32) => {
            v.add("legal_instrument", format!("{} is not allowed for this agency", i.as_str_name()))
        }
        Ok(_) => {}
    }
    match Category::try_from(req.category) {
        Ok(Category::Unspecified) | Err(_) => v.add("category", "must be a known DSA category"),
        Ok(c) if !allowed(&agency.allowed_categories, c as i32) => {
            v.add("category", format!("{} is not allowed for this agency", c.as_str_name()))
        }
        Ok(_) => {}
    }
    if req.keywords.len() > limits.max_keywords {
        v.add("keywords", format!("at most {} keywords, got {}", limits.max_keywords, req.keywords.len()));
    }
    for (i, k) in req.keywords.iter().enumerate() {
        if !matches!(Keyword::try_from(*k), Ok(k) if k != Keyword::Unspecified) {
            v.add(format!("keywords[{i}]"), "must be a known DSA keyword");
        }
    }
    if !matches!(RequestedAction::try_from(req.requested_action), Ok(a) if a != RequestedAction::Unspecified) {
        v.add("requested_action", "must be a known requested action");
    }

    let binding = crate::limits::is_binding(req.legal_instrument);
    check_text(&mut v, "legal_basis", &req.legal_basis, limits.max_text_len, binding);
    check_text(&mut v, "justification", &req.justification, limits.max_text_len, binding);
    check_line(&mut v, "reference", &req.reference, limits.max_string_len, false);
    check_line(&mut v, "issuing_authority", &req.issuing_authority, limits.max_string_len, false);
    if !req.content_language.is_empty() && !crate::agencies::is_language_code(&req.content_language) {
        v.add("content_language", "must be an ISO 639-1 code: two lower-case letters, e.g. \"kk\"");
    }

    let items = check_items(&mut v, &req.items, limits);
    // Every hand-off downstream carries the whole request: bound its size so each one fits.
    let stored = prost::Message::encoded_len(req) + items.iter().map(|i| i.content_key.len() + 16).sum::<usize>();
    if stored > limits.max_request_bytes {
        v.add(
            "items",
            format!(
                "the request is {stored} bytes once stored; at most {} are taken: split it",
                limits.max_request_bytes
            ),
        );
    }
    v.into_result().map(|()| ValidSubmission { items })
}

fn check_items(v: &mut FieldViolations, items: &[ContentItem], limits: &Limits) -> Vec<NormalisedItem> {
    if items.is_empty() {
        v.add("items", "at least one item is required");
        return Vec::new();
    }
    if items.len() > limits.max_items {
        v.add("items", format!("at most {} items per request, got {}", limits.max_items, items.len()));
        return Vec::new();
    }
    let mut out: Vec<NormalisedItem> = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| format!("items[{i}].{name}");
        check_line(v, &field("description"), &item.description, limits.max_text_len, false);
        let key = match (item.url.is_empty(), item.content_id.is_empty()) {
            (true, true) => {
                v.add(format!("items[{i}]"), "set exactly one of url or content_id");
                continue;
            }
            (false, false) => {
                v.add(format!("items[{i}]"), "set only one of url or content_id");
                continue;
            }
            (false, true) => match normalise_url(&item.url, limits.max_string_len) {
                Ok(url) => NormalisedItem {
                    content_key: url_content_key(&url),
                    url,
                    content_id: String::new(),
                    description: item.description.clone(),
                },
                Err(why) => {
                    v.add(field("url"), why);
                    continue;
                }
            },
            (true, false) => {
                if !is_content_id(&item.content_id) {
                    v.add(field("content_id"), "must be 1 to 128 characters of A-Z, a-z, 0-9, '-' or '_'");
                    continue;
                }
                NormalisedItem {
                    content_key: format!("content:{}", item.content_id),
                    url: String::new(),
                    content_id: item.content_id.clone(),
                    description: item.description.clone(),
                }
            }
        };
        // The same content named twice in one request is one item.
        if seen.insert(key.content_key.clone()) {
            out.push(key);
        }
    }
    out
}

/// Normalises a URL so the same content gets the same key: scheme and host lower-cased, host
/// IDNA-encoded, default port, fragment and tracking parameters dropped; path and query kept.
pub fn normalise_url(raw: &str, max_len: usize) -> Result<String, String> {
    if raw.len() > max_len {
        return Err(format!("longer than {max_len} characters"));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    let mut url = url::Url::parse(raw).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must use http or https".into());
    }
    match url.host_str() {
        None | Some("") => return Err("must name a host".into()),
        Some(_) => {}
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    url.set_fragment(None);
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("utm_") && !TRACKING_PARAMS.contains(&k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok(url.to_string())
}

/// The key of the content a normalised URL names: the same content whether it was reached by
/// `http` or `https` and with or without a trailing slash, so requests naming it either way are
/// found to name the same content. (The item keeps its URL as given, normalised.)
pub fn url_content_key(normalised: &str) -> String {
    let rest = normalised.strip_prefix("https://").or_else(|| normalised.strip_prefix("http://")).unwrap_or(normalised);
    let (before_query, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    // A path's trailing slash goes; the host's root ("example.com/") keeps its one slash.
    let path = match before_query.find('/') {
        Some(i) if before_query.len() > i + 1 => before_query.trim_end_matches('/'),
        _ => before_query,
    };
    format!("url:https://{path}{query}")
}

fn allowed(json_list: &str, value: i32) -> bool {
    let list: Vec<i32> = serde_json::from_str(json_list).unwrap_or_default();
    list.is_empty() || list.contains(&value)
}

fn is_content_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A key-like token: printable ASCII without spaces.
pub fn check_token(v: &mut FieldViolations, field: &str, value: &str, max: usize) {
    if value.is_empty() {
        v.add(field, "is required");
    } else if value.len() > max {
        v.add(field, format!("longer than {max} characters"));
    } else if !value.bytes().all(|b| b.is_ascii_graphic()) {
        v.add(field, "must be printable ASCII without spaces");
    }
}

/// A single line of text.
pub fn check_line(v: &mut FieldViolations, field: &str, value: &str, max: usize, required: bool) {
    check_string(v, field, value, max, required, false);
}

/// Free text: may contain line breaks and tabs.
pub fn check_text(v: &mut FieldViolations, field: &str, value: &str, max: usize, required: bool) {
    check_string(v, field, value, max, required, true);
}

fn check_string(v: &mut FieldViolations, field: &str, value: &str, max: usize, required: bool, multiline: bool) {
    if value.trim().is_empty() {
        if required {
            v.add(field, "is required");
        }
        return;
    }
    if value.chars().count() > max {
        v.add(field, format!("longer than {max} characters"));
    } else if value.chars().any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'))) {
        v.add(field, "must not contain control characters");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_normalise_to_one_key() {
        let a = normalise_url("HTTPS://Example.COM:443/Path?a=1&utm_source=x#frag", 2048).unwrap();
        let b = normalise_url("https://example.com/Path?a=1&fbclid=zzz", 2048).unwrap();
        assert_eq!(a, "https://example.com/Path?a=1");
        assert_eq!(a, b);
    }

    #[test]
    fn one_piece_of_content_has_one_key_however_it_is_spelt() {
        let key = |raw: &str| url_content_key(&normalise_url(raw, 2048).unwrap());
        let expected = "url:https://xn--e1afmkfd.xn--p1ai/x";
        for spelling in [
            "http://пример.рф/x",
            "http://xn--e1afmkfd.xn--p1ai/x",
            "https://ПРИМЕР.РФ/x/",
            "https://xn--e1afmkfd.xn--p1ai:443/x?utm_source=tg&fbclid=1#comments",
            "HTTP://пример.рф:80/x/?utm_campaign=share",
        ] {
            assert_eq!(key(spelling), expected, "{spelling}");
        }
        // What differs stays apart: the path, its case, a query that matters, another host.
        assert_eq!(key("https://example.com/"), "url:https://example.com/");
        assert_eq!(key("https://example.com"), "url:https://example.com/");
        assert_eq!(key("https://example.com/a/?id=7"), "url:https://example.com/a?id=7");
        for other in
            ["https://xn--e1afmkfd.xn--p1ai/X", "https://xn--e1afmkfd.xn--p1ai/x?id=2", "https://example.com/x"]
        {
            assert_ne!(key(other), expected, "{other}");
        }
    }

    #[test]
    fn international_hosts_are_idna_encoded() {
        assert_eq!(normalise_url("http://bücher.de/x", 2048).unwrap(), "http://xn--bcher-kva.de/x");
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(normalise_url("ftp://example.com/x", 2048).unwrap_err().contains("http"));
        assert!(normalise_url("javascript:alert(1)", 2048).unwrap_err().contains("http"));
        assert!(normalise_url("https://exa mple.com", 2048).is_err());
        assert!(normalise_url("https://user:pw@example.com/", 2048).unwrap_err().contains("credentials"));
        assert!(normalise_url(&format!("https://e.com/{}", "a".repeat(3000)), 2048).unwrap_err().contains("longer"));
    }
}
