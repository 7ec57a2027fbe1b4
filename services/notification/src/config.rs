//! Notification's configuration: the shared sections, how deliveries are scheduled, and each
//! channel's settings.

use std::collections::BTreeMap;

use crs_platform::config::{
    AdminConfig, AuthConfig, DatabaseConfig, OutboxConfig, RedisConfig, ServerConfig, TelemetryConfig, TlsConfig,
};
use crs_platform::secrets::{SecretBox, SecretKeyConfig};
use secrecy::SecretString;
use serde::Deserialize;

/// Notification's built-in defaults (the platform's are applied first).
pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50054"

[auth]
service_key_file = "data/keys/notification.key"

[admin]
listen_addr = "127.0.0.1:9104"

[database]
url = "sqlite://data/notification.db?mode=rwc"

[delivery]
development_mode = false
per_endpoint_concurrency = 4
max_in_flight = 64
initial_backoff_ms = 5000
max_backoff_ms = 3600000
max_age_secs = 259200
breaker_failures = 5
breaker_cooldown_ms = 60000
poll_interval_ms = 1000

[webhooks]
timeout_ms = 15000
secret_key_file = "data/keys/webhook-secret.key"
allow_cidrs = []
rotation_overlap_secs = 86400

[email]
smtp_url = ""
from = "CRS notifications <notifications@crs.invalid>"
timeout_ms = 15000

[appeal]
url = ""
text = ""

[transparency]
platform_name = "The platform"
terms = "The platform's terms of service"
"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub telemetry: TelemetryConfig,
    pub outbox: OutboxConfig,
    pub tls: TlsConfig,
    pub delivery: DeliveryConfig,
    pub retention: crs_platform::config::RetentionConfig,
    pub webhooks: WebhookConfig,
    pub email: EmailConfig,
    pub appeal: AppealConfig,
    pub transparency: TransparencyConfig,
}

crs_platform::impl_service_config!(Config, migrator = crate::migration::Migrator, check = Config::check_own);

/// How deliveries are scheduled on every channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// For `make run` and tests only: webhooks may use `http:` and reach loopback addresses, and
    /// email may go to an SMTP server without TLS.
    pub development_mode: bool,
    /// Attempts in flight to one endpoint at once: a slow endpoint holds at most this many.
    pub per_endpoint_concurrency: usize,
    /// Attempts in flight in this replica, over all endpoints.
    pub max_in_flight: usize,
    /// Backoff after the first failed attempt; it doubles per attempt (with full jitter).
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// A delivery still failing this long after its first attempt (or after an admin's
    /// RetryDelivery) is given up: FAILED, a dead letter.
    pub max_age_secs: u64,
    /// Consecutive failures that open an endpoint's circuit: no attempts until the cooldown ends,
    /// then one probe.
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
    /// Safety-net poll (commits wake the scheduler at once).
    pub poll_interval_ms: u64,
}

/// Signed webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Deadline of one POST, connection included.
    pub timeout_ms: u64,
    /// The key that seals webhook secrets at rest (shared with intake, which seals agencies'
    /// callback secrets with it): inline or a file of at least 32 random bytes.
    pub secret_key: Option<SecretString>,
    pub secret_key_file: Option<String>,
    /// Networks webhooks may reach although they are not public (loopback, private, link-local,
    /// ...), e.g. `["10.20.0.0/16"]` for an enforcement system inside the cluster.
    pub allow_cidrs: Vec<String>,
    /// After a secret changes, the previous one keeps signing alongside it this long.
    pub rotation_overlap_secs: u64,
}

impl WebhookConfig {
    pub fn key(&self) -> SecretKeyConfig {
        SecretKeyConfig { secret_key: self.secret_key.clone(), secret_key_file: self.secret_key_file.clone() }
    }
}

/// Email by SMTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtps://user:pass@host:465`, `smtp://host:587?tls=required`; empty: no email channel.
    /// Plain `smtp://` without TLS only in development mode.
    pub smtp_url: String,
    /// The sender, e.g. `CRS notifications <notifications@example.org>`.
    pub from: String,
    pub timeout_ms: u64,
}

/// How content owners appeal a decision, told in every statement of reasons.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppealConfig {
    /// Where to appeal (https); empty: the statement says to reply to the message.
    pub url: String,
    /// The deployment's own words on appeals (deadline, who reviews), added to the standard text.
    pub text: String,
    /// Per language (ISO 639-1): a page and words of that language, e.g. `[appeal.languages.kk]`.
    #[serde(default)]
    pub languages: BTreeMap<String, AppealRoute>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppealRoute {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub text: String,
}

impl AppealConfig {
    /// The route in `language`, falling back to the deployment's default for what it leaves out.
    pub fn route(&self, language: &str) -> AppealRoute {
        let own = self.languages.get(language);
        let pick = |own: Option<&String>, default: &String| own.filter(|s| !s.is_empty()).unwrap_or(default).clone();
        AppealRoute { url: pick(own.map(|r| &r.url), &self.url), text: pick(own.map(|r| &r.text), &self.text) }
    }
}

/// Words the published transparency records use for the platform itself: every text in them is
/// written from structured fields and these, never copied from a request or a decision.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransparencyConfig {
    /// The platform's name: the recipient of every notice (e.g. "Example Social").
    pub platform_name: String,
    /// The name of the terms of service that global removals rely on, the DSA
    /// `incompatible_content_ground` (e.g. "Example Social Community Standards").
    pub terms: String,
}

impl Config {
    /// What `--check-config` verifies beyond the shared sections.
    pub fn check_own(&self) -> anyhow::Result<()> {
        let d = &self.delivery;
        for (key, value) in [
            ("delivery.per_endpoint_concurrency", d.per_endpoint_concurrency as u64),
            ("delivery.max_in_flight", d.max_in_flight as u64),
            ("delivery.initial_backoff_ms", d.initial_backoff_ms),
            ("delivery.max_age_secs", d.max_age_secs),
            ("delivery.breaker_failures", u64::from(d.breaker_failures)),
            ("delivery.breaker_cooldown_ms", d.breaker_cooldown_ms),
            ("delivery.poll_interval_ms", d.poll_interval_ms),
            ("webhooks.timeout_ms", self.webhooks.timeout_ms),
            ("email.timeout_ms", self.email.timeout_ms),
        ] {
            anyhow::ensure!(value > 0, "{key} must be positive");
        }
        anyhow::ensure!(
            d.initial_backoff_ms <= d.max_backoff_ms,
            "delivery.initial_backoff_ms ({}) exceeds delivery.max_backoff_ms ({})",
            d.initial_backoff_ms,
            d.max_backoff_ms
        );
        SecretBox::from_config("webhooks", &self.webhooks.key())?;
        crate::egress::EgressPolicy::from_config(&self.delivery, &self.webhooks)?;
        crate::channels::email::check(&self.email, d.development_mode)?;
        for (key, value, max) in [
            ("transparency.platform_name", &self.transparency.platform_name, 200),
            ("transparency.terms", &self.transparency.terms, 500),
        ] {
            let length = value.trim().chars().count();
            anyhow::ensure!((1..=max).contains(&length), "{key} must be 1 to {max} characters");
        }
        for (language, route) in
            std::iter::once(("default", &AppealRoute { url: self.appeal.url.clone(), text: self.appeal.text.clone() }))
                .chain(self.appeal.languages.iter().map(|(l, r)| (l.as_str(), r)))
        {
            if language != "default" {
                anyhow::ensure!(
                    crate::subscriptions::is_language_code(language),
                    "appeal.languages.{language}: not an ISO 639-1 code (two lower-case letters)"
                );
            }
            if !route.url.is_empty() {
                crs_platform::app::check_url(&format!("appeal url ({language})"), &route.url, &["https", "http"])?;
            }
        }
        Ok(())
    }
}
