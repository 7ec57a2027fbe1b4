//! Triage's configuration: the shared sections, its peers and its policy file.

use crs_platform::config::{
    AdminConfig, AuthConfig, DatabaseConfig, OutboxConfig, RedisConfig, ServerConfig, TelemetryConfig, TlsConfig,
};
use serde::Deserialize;

/// Triage's built-in defaults (the platform's are applied first).
pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50052"

[auth]
service_key_file = "data/keys/triage.key"

[admin]
listen_addr = "127.0.0.1:9102"

[database]
url = "sqlite://data/triage.db?mode=rwc"

[peers]
legal_review = "http://127.0.0.1:50053"

[policies]
sla_file = ""
rules_file = ""
reload_interval_secs = 10
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
    pub retention: crs_platform::config::RetentionConfig,
    pub peers: Peers,
    pub policies: PolicyConfig,
}

crs_platform::impl_service_config!(Config, migrator = crate::migration::Migrator, check = Config::check_own);

impl Config {
    /// Triage's own sections, for `--check-config`: its peer's address and its policy file.
    fn check_own(&self) -> anyhow::Result<()> {
        crs_platform::app::check_peer("peers.legal_review", &self.peers.legal_review)?;
        crate::policies::PolicySet::load(&self.policies).map(drop)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peers {
    pub legal_review: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A TOML file of SLA policies replacing the built-in `config/sla-policies.toml`; empty: the
    /// built-in one.
    pub sla_file: String,
    /// A TOML file of triage rules (priority, routes, human-rights rules) replacing the built-in
    /// `config/triage-rules.toml`; empty: the built-in one.
    pub rules_file: String,
    /// How often the files are checked for changes (SIGHUP reloads at once); 0: only on SIGHUP.
    pub reload_interval_secs: u64,
}
