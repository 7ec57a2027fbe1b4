//! Secrets CRS keeps on behalf of others: the signing secrets of webhook subscriptions.
//!
//! A [`WebhookSecret`] is what Standard Webhooks 1.0 calls a symmetric secret: `whsec_` and the
//! standard base64 of 24 to 64 random bytes, the HMAC-SHA256 key of every signature.
//!
//! Such secrets never rest or travel in plain text: a [`SecretBox`] seals them with
//! XChaCha20-Poly1305 under a key from configuration (`webhooks.secret_key_file`), bound to where
//! they belong (the associated data names the row, so a sealed secret copied to another row does
//! not open). Intake seals an agency's callback secret for its table and for the hand-off to
//! notification; notification opens it and seals it again for its own table. Both services are
//! configured with the same key; no other service holds it.

use std::fmt;
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The prefix Standard Webhooks gives symmetric secrets.
pub const WHSEC_PREFIX: &str = "whsec_";
/// The shortest and longest secrets Standard Webhooks allows, in bytes.
pub const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// The size of the secrets CRS generates.
const GENERATED_BYTES: usize = 32;

/// What a webhook secret must look like, for field violations.
pub const SECRET_RULE: &str =
    "must be \"whsec_\" followed by the standard base64 (with padding) of 24 to 64 random bytes";

/// A Standard Webhooks symmetric secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl WebhookSecret {
    /// A fresh random secret.
    pub fn generate() -> WebhookSecret {
        let mut bytes = Zeroizing::new(vec![0u8; GENERATED_BYTES]);
        rand::rng().fill_bytes(&mut bytes);
        WebhookSecret(bytes)
    }

    /// Parses `whsec_<base64>`; the error says what is wrong, for a field violation.
    pub fn parse(text: &str) -> Result<WebhookSecret, String> {
        let encoded = text.strip_prefix(WHSEC_PREFIX).ok_or_else(|| SECRET_RULE.to_owned())?;
        let bytes = Zeroizing::new(STANDARD.decode(encoded).map_err(|_| SECRET_RULE.to_owned())?);
        if !SECRET_BYTES.contains(&bytes.len()) {
            return Err(format!("decodes to {} bytes; {SECRET_RULE}", bytes.len()));
        }
        Ok(WebhookSecret(bytes))
    }

    /// A secret of raw key bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<WebhookSecret, String> {
        let bytes = Zeroizing::new(bytes);
        if !SECRET_BYTES.contains(&bytes.len()) {
            return Err(format!("{} bytes; {SECRET_RULE}", bytes.len()));
        }
        Ok(WebhookSecret(bytes))
    }

    /// A secret an earlier version stored in plain text, if it can sign as the specification
    /// asks: a `whsec_` secret, or any text of 24 to 64 bytes, whose bytes stay the key (receivers
    /// verify with the raw bytes, e.g. Python's `Webhook(b"...")`). A shorter one cannot.
    pub fn from_legacy(plain: &str) -> Option<WebhookSecret> {
        WebhookSecret::parse(plain).or_else(|_| WebhookSecret::from_bytes(plain.as_bytes().to_vec())).ok()
    }

    /// The HMAC key: the decoded bytes.
    pub fn key(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_<base64>`, as given to the receiver.
    pub fn encoded(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{WHSEC_PREFIX}{}", STANDARD.encode(&*self.0)))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

/// Where the key that seals webhook secrets comes from: inline, or a file (at least 32 bytes of
/// random material either way).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyConfig {
    pub secret_key: Option<SecretString>,
    pub secret_key_file: Option<String>,
}

/// The text form of a sealed secret: the version, then URL-safe base64 of key id, nonce and
/// ciphertext. Anything without this prefix was stored by an earlier version in plain text.
const SEALED_PREFIX: &str = "sealed:v1:";
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
/// The least key material accepted.
const MIN_KEY_MATERIAL: usize = 32;

/// Seals and opens secrets with the deployment's webhook-secret key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Arc<XChaCha20Poly1305>,
    key_id: [u8; KEY_ID_LEN],
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBox(key {})", hex_id(&self.key_id))
    }
}

fn hex_id(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl SecretBox {
    /// The box for the key `cfg` names (`what` names the section in messages, e.g. `webhooks`).
    pub fn from_config(what: &str, cfg: &SecretKeyConfig) -> anyhow::Result<SecretBox> {
        let material: Zeroizing<Vec<u8>> = match (&cfg.secret_key, &cfg.secret_key_file) {
            (Some(key), _) => Zeroizing::new(key.expose_secret().as_bytes().to_vec()),
            (None, Some(path)) if !path.is_empty() => Zeroizing::new(
                std::fs::read(path).with_context(|| format!("cannot read {what}.secret_key_file {path}"))?,
            ),
            _ => anyhow::bail!("{what}.secret_key or {what}.secret_key_file is required"),
        };
        // A trailing newline from `echo` or an editor is not part of the key.
        let trimmed = material.strip_suffix(b"\n").unwrap_or(&material);
        let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
        anyhow::ensure!(
            trimmed.len() >= MIN_KEY_MATERIAL,
            "the {what} secret key must hold at least {MIN_KEY_MATERIAL} bytes of random material, not {}",
            trimmed.len()
        );
        Ok(SecretBox::new(trimmed))
    }

    /// The box for `material` (at least 32 random bytes; the cipher key is derived from it).
    pub fn new(material: &[u8]) -> SecretBox {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"crs-secret-box"), material);
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand(b"webhook secrets, xchacha20-poly1305, v1", &mut *key).expect("32 bytes is a valid length");
        let digest = Sha256::digest(*key);
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&digest[..KEY_ID_LEN]);
        SecretBox { cipher: Arc::new(XChaCha20Poly1305::new((&*key).into())), key_id }
    }

    /// Seals `plaintext` for the place named by `context` (e.g. `subscription:<id>`).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            .expect("encryption of a short secret cannot fail");
        let mut out = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens what [`SecretBox::seal`] sealed for `context`.
    pub fn open(&self, sealed: &str, context: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        let encoded = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(|| anyhow::anyhow!("not a sealed secret"))?;
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| anyhow::anyhow!("a sealed secret is corrupt"))?;
        anyhow::ensure!(bytes.len() > KEY_ID_LEN + NONCE_LEN, "a sealed secret is truncated");
        let (key_id, rest) = bytes.split_at(KEY_ID_LEN);
        anyhow::ensure!(
            key_id == self.key_id,
            "a secret is sealed with key {} but this service holds key {}: configure the same \
             webhooks secret key in intake and notification",
            hex_id(key_id),
            hex_id(&self.key_id)
        );
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce's length");
        let plaintext = self
            .cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: context.as_bytes() })
            .map_err(|_| anyhow::anyhow!("a sealed secret does not open for {context}: altered or moved"))?;
        Ok(Zeroizing::new(plaintext))
    }

    /// Seals a webhook secret.
    pub fn seal_webhook_secret(&self, secret: &WebhookSecret, context: &str) -> String {
        self.seal(secret.key(), context)
    }

    /// Opens a sealed webhook secret.
    pub fn open_webhook_secret(&self, sealed: &str, context: &str) -> anyhow::Result<WebhookSecret> {
        let bytes = self.open(sealed, context)?;
        anyhow::ensure!(SECRET_BYTES.contains(&bytes.len()), "a sealed webhook secret has {} bytes", bytes.len());
        Ok(WebhookSecret(bytes))
    }
}

/// Where an agency's callback secret is sealed: intake stores it so and hands it to
/// notification as it is stored (intake never opens it); notification opens it.
pub fn agency_callback_context(agency_id: &str) -> String {
    format!("agency:{agency_id}:callback-secret")
}

/// Whether `stored` is sealed (rather than left in plain text by an earlier version).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_follow_the_standard_webhooks_format() {
        let generated = WebhookSecret::generate();
        let text = generated.encoded();
        assert!(text.starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(&text).unwrap(), generated);
        // The specification's test secret: 24 bytes.
        assert_eq!(WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap().key().len(), 24);
        for bad in ["", "x", "whsec_", "C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "whsec_c2hvcnQ=", "whsec_!!!!"] {
            assert!(WebhookSecret::parse(bad).is_err(), "{bad:?} accepted");
        }
        let too_long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        assert!(WebhookSecret::parse(&too_long).unwrap_err().contains("65 bytes"));
        assert_eq!(format!("{generated:?}"), "WebhookSecret(***)");
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_in_their_place() {
        let sealer = SecretBox::new(&[1u8; 32]);
        let secret = WebhookSecret::generate();
        let sealed = sealer.seal_webhook_secret(&secret, "subscription:a");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains(&*secret.encoded()));
        assert_eq!(sealer.open_webhook_secret(&sealed, "subscription:a").unwrap(), secret);
        assert!(sealer.open(&sealed, "subscription:b").is_err(), "moved to another row");
        let other = SecretBox::new(&[2u8; 32]);
        assert!(format!("{:#}", other.open(&sealed, "subscription:a").unwrap_err()).contains("sealed with key"));
        // Two seals of the same secret differ (random nonces).
        assert_ne!(sealed, sealer.seal_webhook_secret(&secret, "subscription:a"));
    }

    #[test]
    fn keys_come_from_configuration_and_must_be_long_enough() {
        let short = SecretKeyConfig { secret_key: Some(SecretString::from("short")), secret_key_file: None };
        assert!(format!("{:#}", SecretBox::from_config("webhooks", &short).unwrap_err()).contains("at least 32"));
        let missing = SecretKeyConfig::default();
        assert!(format!("{:#}", SecretBox::from_config("webhooks", &missing).unwrap_err()).contains("secret_key"));
        let dir = std::env::temp_dir().join(format!("crs-secret-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, format!("{}\n", "k".repeat(40))).unwrap();
        let from_file = SecretBox::from_config(
            "webhooks",
            &SecretKeyConfig { secret_key: None, secret_key_file: Some(file.display().to_string()) },
        )
        .unwrap();
        let inline = SecretBox::from_config(
            "webhooks",
            &SecretKeyConfig { secret_key: Some(SecretString::from("k".repeat(40))), secret_key_file: None },
        )
        .unwrap();
        let sealed = from_file.seal(b"x", "c");
        assert_eq!(&*inline.open(&sealed, "c").unwrap(), b"x", "the newline is not part of the key");
        let _ = std::fs::remove_dir_all(dir);
    }
}
