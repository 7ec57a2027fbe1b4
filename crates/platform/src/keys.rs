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

/// The DER of an Ed25519 SubjectPublicKeyInfo up to the key's 32 bytes (RFC 8410, section 4).
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// An Ed25519 public key in the one form key ids are computed on (SPKI PEM, LF line ends), from
/// a public key PEM or from an X.509 certificate PEM holding one. Certificates are accepted
/// because they are what some tools can make from a private key (Helm's template functions
/// among them); only the key inside is used: no chain, dates or names.
pub fn public_key(pem: &str) -> anyhow::Result<String> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let key = if pem.trim_start().starts_with("-----BEGIN CERTIFICATE-----") {
        let (_, der) = ed25519_dalek::pkcs8::spki::der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| anyhow::anyhow!("not a certificate (PEM): {e}"))?;
        let at = der
            .windows(ED25519_SPKI_PREFIX.len())
            .position(|w| w == ED25519_SPKI_PREFIX)
            .ok_or_else(|| anyhow::anyhow!("the certificate does not hold an Ed25519 public key"))?;
        let start = at + ED25519_SPKI_PREFIX.len();
        let bytes: [u8; 32] = der
            .get(start..start + 32)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow::anyhow!("the certificate's Ed25519 public key is truncated"))?;
        VerifyingKey::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("the certificate's key is not usable: {e}"))?
    } else {
        VerifyingKey::from_public_key_pem(pem)
            .map_err(|e| anyhow::anyhow!("not an Ed25519 public key (SPKI PEM, or a certificate holding one): {e}"))?
    };
    key.to_public_key_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("cannot encode a public key: {e}"))
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
        assert_eq!(public_key(&public).unwrap(), public);
        assert!(public_key(&private).is_err());
        assert_eq!(key_id(&public).len(), 16);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("tokens.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "private keys are the owner's alone");
        }
    }

    #[test]
    fn a_certificate_stands_for_the_public_key_it_holds() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap().self_signed(&pair).unwrap();
        let expected = public_of(&pair.serialize_pem()).unwrap();
        assert_eq!(public_key(&cert.pem()).unwrap(), expected);
        // Whitespace around the PEM does not change the key or its id.
        assert_eq!(key_id(&public_key(&format!("\n{}\n\n", cert.pem())).unwrap()), key_id(&expected));
        // A certificate for another kind of key is refused, and says why.
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap().self_signed(&p256).unwrap();
        let err = public_key(&other.pem()).unwrap_err().to_string();
        assert!(err.contains("does not hold an Ed25519 public key"), "{err}");
        assert!(public_key("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----").is_err());
    }
}
