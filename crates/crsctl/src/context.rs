//! Contexts: named sets of endpoints, a token and TLS files, kept in one YAML file like
//! kubectl's, so a reviewer who works against staging and production switches with
//! `crsctl context use`. Flags and `CRSCTL_*` variables override the current context.
//!
//! The file holds bearer tokens, so it is written readable by its owner only.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The four services' addresses when nothing else names them: `make run`'s.
pub const DEFAULT_ENDPOINTS: [(&str, &str); 4] = [
    ("intake", "http://127.0.0.1:50051"),
    ("triage", "http://127.0.0.1:50052"),
    ("legal-review", "http://127.0.0.1:50053"),
    ("notification", "http://127.0.0.1:50054"),
];

/// One context: where the services are, who is calling, and how to reach them over TLS.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intake: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_review: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
    /// The bearer token an admin issued (IssueToken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Who the token names, and until when: shown by `context list`, never trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The CA that signs the services' certificates (`tls.ca_file` on the services), PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key, for deployments with `client_auth = "required"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl Context {
    pub fn endpoint(&self, service: &str) -> Option<&str> {
        match service {
            "intake" => self.intake.as_deref(),
            "triage" => self.triage.as_deref(),
            "legal-review" => self.legal_review.as_deref(),
            _ => self.notification.as_deref(),
        }
    }

    pub fn set_endpoint(&mut self, service: &str, url: String) {
        let slot = match service {
            "intake" => &mut self.intake,
            "triage" => &mut self.triage,
            "legal-review" => &mut self.legal_review,
            _ => &mut self.notification,
        };
        *slot = Some(url);
    }
}

/// The context file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// Where the context file lives: `--config`/`CRSCTL_CONFIG`, else
/// `$XDG_CONFIG_HOME/crs/config.yaml`, else `~/.config/crs/config.yaml`.
pub fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("crs").join("config.yaml")
}

impl ConfigFile {
    /// Reads the file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Ok(ConfigFile::default()),
            Ok(text) => serde_norway::from_str(&text)
                .with_context(|| format!("{} is not a crsctl context file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the file atomically (a temporary file renamed over it), mode 0600.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let text = serde_norway::to_string(self)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        // NamedTempFile is created 0600 on Unix: the tokens inside stay private.
        tmp.write_all(text.as_bytes())?;
        tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// The context named, or the current one; `None` when there is none.
    pub fn context(&self, name: Option<&str>) -> anyhow::Result<Option<(&str, &Context)>> {
        match name.or(self.current_context.as_deref()) {
            None => Ok(None),
            Some(name) => match self.contexts.get_key_value(name) {
                Some((k, c)) => Ok(Some((k.as_str(), c))),
                None => Err(crate::errors::usage(format!(
                    "no context named {name:?} (known: {})",
                    self.contexts.keys().cloned().collect::<Vec<_>>().join(", ")
                ))),
            },
        }
    }
}

/// What a token says about itself (its payload, not verified: only the services verify).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenClaims {
    #[serde(default)]
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub exp: i64,
    #[serde(default)]
    pub jti: String,
}

/// Reads the claims of a JWT without verifying it, to name who a context logs in as.
pub fn peek_claims(token: &str) -> anyhow::Result<TokenClaims> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).ok_or_else(|| crate::errors::usage("the token is not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| crate::errors::usage("the token is not a JWT"))?;
    serde_json::from_slice(&bytes).map_err(|_| crate::errors::usage("the token is not a JWT"))
}
