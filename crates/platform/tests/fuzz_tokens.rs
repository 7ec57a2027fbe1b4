//! Property tests over what arrives from outside before anyone is trusted: bearer tokens and
//! page tokens. Whatever the bytes, verification answers "refused" (never a panic, never a
//! principal the bytes were not signed for), and a page token decodes only to the position it
//! was issued for.
//!
//! `make test` runs proptest's default number of cases; `make fuzz` runs many more
//! (`PROPTEST_CASES`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crs_platform::auth::{Principal, Role, ServiceIdentity, TokenIssuer, TokenVerifier};
use crs_platform::keys::KeyPair;
use crs_platform::paging;
use proptest::prelude::*;
use std::sync::OnceLock;

struct Keys {
    issuer: TokenIssuer,
    triage: ServiceIdentity,
    /// The verifier of legal review, trusting the issuer and triage.
    verifier: TokenVerifier,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let tokens = KeyPair::from_seed([1; 32]).unwrap();
        let triage = KeyPair::from_seed([2; 32]).unwrap();
        Keys {
            issuer: TokenIssuer::new(&tokens.private_pem, "crs").unwrap(),
            triage: ServiceIdentity::new("triage", &triage.private_pem).unwrap(),
            verifier: TokenVerifier::new(
                "legal-review",
                "crs",
                std::slice::from_ref(&tokens.public_pem),
                &[("triage".to_owned(), triage.public_pem.clone())],
            )
            .unwrap(),
        }
    })
}

fn reviewer() -> Principal {
    Principal::Reviewer { id: "rev-1".into(), roles: vec![Role::Reviewer] }
}

/// A valid token of each kind the verifier accepts.
fn valid_tokens() -> Vec<String> {
    let k = keys();
    vec![k.issuer.issue(&reviewer(), 3600).unwrap().token, k.triage.token_for("legal-review").unwrap().token]
}

proptest! {
    #[test]
    fn fuzz_arbitrary_bytes_are_never_a_principal(raw in ".{0,400}") {
        prop_assert!(keys().verifier.verify(&raw).is_err());
    }

    #[test]
    fn fuzz_token_shaped_garbage_is_refused(
        parts in prop::collection::vec("[A-Za-z0-9_-]{0,120}", 1..5),
    ) {
        prop_assert!(keys().verifier.verify(&parts.join(".")).is_err());
    }

    /// Any change to a valid token (one byte replaced, a part dropped or swapped, text added)
    /// makes it refused: the signature covers everything that is read.
    #[test]
    fn fuzz_altered_tokens_are_refused(which in 0usize..2, at in any::<prop::sample::Index>(), byte in 0u8..128) {
        let token = valid_tokens().swap_remove(which);
        prop_assert!(keys().verifier.verify(&token).is_ok());
        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let altered = String::from_utf8_lossy(&bytes).into_owned();
        // base64url without padding maps some distinct strings to the same bytes (the unused low
        // bits of a final character): such a change alters nothing that is read.
        prop_assume!(decoded_parts(&altered) != decoded_parts(&token));
        prop_assert!(keys().verifier.verify(&altered).is_err(), "accepted {altered}");
    }

    /// Claims re-signed by nobody, with any subject and audience, are refused.
    #[test]
    fn fuzz_forged_claims_are_refused(sub in "[a-z]{1,10}:[a-z0-9-]{0,20}", aud in "[a-z-]{0,20}", alg in "(none|HS256|EdDSA|RS256)") {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        let claims = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"{sub}","aud":["{aud}"],"iss":"crs","exp":99999999999,"iat":0,"jti":"x","roles":["admin"]}}"#
        ));
        for signature in ["", "AAAA", "c2lnbmF0dXJl"] {
            let forged = format!("{header}.{claims}.{signature}");
            prop_assert!(keys().verifier.verify(&forged).is_err(), "accepted {forged}");
        }
    }

    #[test]
    fn fuzz_page_tokens_decode_only_what_was_issued(
        list in "[a-z]{1,12}",
        filters in ".{0,60}",
        position in prop::collection::vec("[^\u{1f}]{0,40}", 1..4),
    ) {
        let parts: Vec<&str> = position.iter().map(String::as_str).collect();
        let token = paging::encode(&list, &filters, &parts);
        prop_assert_eq!(paging::decode(&token, &list, &filters).unwrap(), Some(position.clone()));
        let other_filters = format!("{filters}x");
        let refused = paging::decode(&token, &list, &other_filters).unwrap_err();
        prop_assert_eq!(refused.fields(), vec!["page_token"]);
    }

    #[test]
    fn fuzz_page_token_garbage_is_a_field_error(token in ".{1,300}") {
        match paging::decode(&token, "requests", "") {
            Ok(_) => {
                // Only a token that really carries a valid tag can decode; random text almost
                // never does, and if it does, it decodes to the position it carries.
                prop_assert_eq!(URL_SAFE_NO_PAD.decode(&token).ok().map(|b| b[0]), Some(1u8));
            }
            Err(e) => prop_assert_eq!(e.fields(), vec!["page_token"]),
        }
    }

    #[test]
    fn fuzz_altered_page_tokens_are_refused(at in any::<prop::sample::Index>(), byte in 0u8..128) {
        let token = paging::encode("requests", "status=3", &["1700000000000", "018f-id"]);
        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let altered = String::from_utf8_lossy(&bytes).into_owned();
        prop_assume!(URL_SAFE_NO_PAD.decode(&altered).ok() != URL_SAFE_NO_PAD.decode(&token).ok());
        let refused = paging::decode(&altered, "requests", "status=3").unwrap_err();
        prop_assert_eq!(refused.fields(), vec!["page_token"]);
    }
}

/// The bytes each dot-separated part of a token carries, as a verifier reads them.
fn decoded_parts(token: &str) -> Vec<Option<Vec<u8>>> {
    token.split('.').map(|p| URL_SAFE_NO_PAD.decode(p).ok()).collect()
}
