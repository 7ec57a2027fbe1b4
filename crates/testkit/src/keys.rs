//! One key set for every test of a process, written once into a temp directory: the token
//! issuer's pair and each service's, from fixed seeds, so tests sign any principal's token and
//! services verify them as in production.

use std::path::PathBuf;
use std::sync::OnceLock;

use crs_platform::auth::{Principal, ServiceIdentity, TokenIssuer};
use crs_platform::keys::{KeyPair, SERVICES, TOKENS};

static DIR: OnceLock<PathBuf> = OnceLock::new();

fn seed(name: &str) -> [u8; 32] {
    let mut s = [7u8; 32];
    for (i, b) in name.bytes().enumerate() {
        s[i % 32] ^= b;
    }
    s
}

/// The directory holding `tokens.{key,pub}` and `<service>.{key,pub}`.
pub fn dir() -> PathBuf {
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("crs-test-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a key directory");
        for name in std::iter::once(TOKENS).chain(SERVICES) {
            let pair = KeyPair::from_seed(seed(name)).expect("a key pair");
            std::fs::write(dir.join(format!("{name}.key")), &pair.private_pem).expect("write a key");
            std::fs::write(dir.join(format!("{name}.pub")), &pair.public_pem).expect("write a key");
        }
        dir
    })
    .clone()
}

/// The `CRS_AUTH__*` settings of `service` for this key set.
pub fn auth_env(service: &str) -> Vec<(String, String)> {
    let dir = dir();
    let path = |f: &str| dir.join(f).display().to_string();
    vec![
        ("CRS_AUTH__TOKEN_PUBLIC_KEY_FILES".into(), format!("[\"{}\"]", path("tokens.pub"))),
        ("CRS_AUTH__SERVICE_KEY_FILE".into(), path(&format!("{service}.key"))),
        ("CRS_AUTH__SERVICE_PUBLIC_KEYS_DIR".into(), dir.display().to_string()),
        (
            "CRS_AUTH__TOKEN_SIGNING_KEY_FILE".into(),
            if service == "intake" { path("tokens.key") } else { String::new() },
        ),
    ]
}

/// The token issuer of this key set.
pub fn issuer() -> TokenIssuer {
    TokenIssuer::from_file(&dir().join("tokens.key"), "crs").expect("the test token issuer")
}

/// A token for `principal`, valid for an hour: issued by the token issuer for people and
/// agencies, signed by the service's own key (for every peer) for a service.
pub fn token(principal: &Principal) -> String {
    match principal {
        Principal::Service { name } => identity(name).token_for_peers(&SERVICES).expect("a token").token,
        other => issuer().issue(other, 3600).expect("a test token").token,
    }
}

/// The service `name`'s own identity, as that service holds it.
pub fn identity(name: &str) -> ServiceIdentity {
    ServiceIdentity::from_file(name, &dir().join(format!("{name}.key")))
        .unwrap_or_else(|e| panic!("no test identity for service {name}: {e}"))
}
