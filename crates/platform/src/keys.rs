//! Ed25519 key pairs, as PEM files: the token issuer's (it signs agencies' and reviewers' tokens)
//! and each service's own (it signs that service's calls to its peers). Only the holder of a
//! private key can mint what it signs; everyone else holds public keys and verifies.
//!
//! A key set for a deployment is written by `crsctl keygen --dir DIR`: `tokens.key`/`tokens.pub`
//! and `<service>.key`/`<service>.pub` for each service.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The services, by the name their keys and principals carry.
pub const SERVICES: [&str; 4] = ["intake", "triage", "legal-review", "notification"];

/// The file stem of the token issuer's key pair.
pub const TOKENS: &str = "tokens";

/// A freshly generated key pair, as PEM.
#[derive(Clone)]
pub struct KeyPair {
    pub private_pem: String,
    pub public_pem: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("public_pem", &self.public_pem).finish_non_exhaustive()
    }
}

impl KeyPair {
    pub fn generate() -> anyhow::Result<KeyPair> {
        Self::from_seed(rand::random())
    }

    /// The key pair of a 32-byte seed (tests use fixed seeds).
    pub fn from_seed(seed: [u8; 32]) -> anyhow::Result<KeyPair> {
        let key = SigningKey::from_bytes(&seed);
        Ok(KeyPair {
            private_pem: key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| anyhow::anyhow!("cannot encode a private key: {e}"))?
                .to_string(),
            public_pem: key
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| anyhow::anyhow!("cannot encode a public key: {e}"))?,
        })
    }
}

/// The key id of a public key: the first 16 hex digits of the SHA-256 of its PEM, so tokens name
/// which of several keys (during a rotation) signed them.
pub fn key_id(public_pem: &str) -> String {
    hex::encode(Sha256::digest(public_pem.trim().as_bytes()))[..16].to_owned()
}

/// The public key PEM of a private key PEM.
pub fn public_of(private_pem: &str) -> anyhow::Result<String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let key = SigningKey::from_pkcs8_pem(private_pem)
        .map_err(|e| anyhow::anyhow!("not an Ed25519 private key (PKCS#8 PEM): {e}"))?;
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("cannot encode a public key: {e}"))
}

/// Checks that `pem` is an Ed25519 public key (SPKI PEM).
pub fn check_public(pem: &str) -> anyhow::Result<()> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    VerifyingKey::from_public_key_pem(pem)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("not an Ed25519 public key (SPKI PEM): {e}"))
}

/// Reads a key file, naming the setting it came from when it cannot.
pub fn read(setting: &str, path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {setting} {}: {e}", path.display()))
}

/// Writes a deployment's key set into `dir`: the token issuer's pair and one per service.
/// Existing files are kept, so running it again changes nothing. Returns the files written.
pub fn write_key_set(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for name in std::iter::once(TOKENS).chain(SERVICES) {
        let (private, public) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")));
        if private.exists() {
            continue;
        }
        let pair = KeyPair::generate()?;
        write_private(&private, &pair.private_pem)?;
        std::fs::write(&public, &pair.public_pem)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", public.display()))?;
        written.extend([private, public]);
    }
    Ok(written)
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
    }
    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    #[cfg(not(unix))]
    let mut file = std::fs::File::create(path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    file.write_all(pem.as_bytes()).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sets_are_written_once_and_their_halves_match() {
        let dir = std::env::temp_dir().join(format!("crs-keys-{}", uuid::Uuid::new_v4()));
        let written = write_key_set(&dir).unwrap();
        assert_eq!(written.len(), 10);
        assert!(write_key_set(&dir).unwrap().is_empty(), "a second run keeps the keys");
        let private = std::fs::read_to_string(dir.join("triage.key")).unwrap();
        let public = std::fs::read_to_string(dir.join("triage.pub")).unwrap();
        assert_eq!(public_of(&private).unwrap(), public);
        check_public(&public).unwrap();
        assert!(check_public(&private).is_err());
        assert_eq!(key_id(&public).len(), 16);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("tokens.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "private keys are the owner's alone");
        }
    }
}
