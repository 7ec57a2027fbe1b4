//! One page-token format for every list RPC: opaque to callers (base64url), versioned, bound to
//! the list and the filters it was issued for, and checked, so an altered, truncated or foreign
//! token is INVALID_ARGUMENT on `page_token` rather than a silently different page.
//!
//! The check is an integrity check, not a secret: every list applies the caller's authorisation
//! itself, so a token can never widen what a caller sees.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::FieldViolations;

const VERSION: u8 = 1;
const TAG_LEN: usize = 8;
const SEPARATOR: char = '\u{1f}';

/// Results per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// The most results a page holds.
pub const MAX_PAGE_SIZE: u64 = 500;
/// The most bytes a page holds: a page of large results ends early (with a next page token),
/// however many were asked for; one result always fits.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The page size to use for a requested `page_size` (0 means the default; capped at the maximum).
pub fn page_size(requested: u32) -> u64 {
    match u64::from(requested) {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

fn tag(list: &str, filters: &str, position: &str) -> [u8; TAG_LEN] {
    let mut h = Sha256::new();
    for part in ["crs-page-token", list, filters, position] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&digest[..TAG_LEN]);
    out
}

/// A token for the page after `position` (the sort keys of the last row returned) of `list`
/// under `filters` (a canonical rendering of the request's filters).
pub fn encode(list: &str, filters: &str, position: &[&str]) -> String {
    let position = position.join(&SEPARATOR.to_string());
    let mut bytes = vec![VERSION];
    bytes.extend_from_slice(&tag(list, filters, &position));
    bytes.extend_from_slice(position.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The position a token carries, if it was issued for `list` under the same `filters`.
/// An empty token is the first page (`None`).
pub fn decode(token: &str, list: &str, filters: &str) -> Result<Option<Vec<String>>, FieldViolations> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = |why: &str| FieldViolations::single("page_token", why);
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid("is not a token this service issued"))?;
    if bytes.len() < 1 + TAG_LEN || bytes[0] != VERSION {
        return Err(invalid("is not a token this service issued"));
    }
    let position =
        std::str::from_utf8(&bytes[1 + TAG_LEN..]).map_err(|_| invalid("is not a token this service issued"))?;
    if bytes[1..1 + TAG_LEN] != tag(list, filters, position) {
        return Err(invalid("was altered, or was issued for another list or other filters"));
    }
    Ok(Some(position.split(SEPARATOR).map(str::to_owned).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_alteration() {
        let token = encode("requests", "status=3", &["1700000000000", "018f-id"]);
        assert_eq!(
            decode(&token, "requests", "status=3").unwrap(),
            Some(vec!["1700000000000".into(), "018f-id".into()])
        );
        assert_eq!(decode("", "requests", "status=3").unwrap(), None);
        // Other filters, another list, a flipped character, garbage: all refused on page_token.
        for (t, list, filters) in [
            (token.clone(), "requests", "status=4"),
            (token.clone(), "cases", "status=3"),
            (format!("{}A", &token[..token.len() - 1]), "requests", "status=3"),
            ("%%%".to_owned(), "requests", "status=3"),
            ("50".to_owned(), "requests", "status=3"),
        ] {
            let err = decode(&t, list, filters).unwrap_err();
            assert_eq!(err.fields(), ["page_token"], "{t}");
        }
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0), 50);
        assert_eq!(page_size(7), 7);
        assert_eq!(page_size(10_000), 500);
    }
}
