//! Triage's configuration: the shared sections, its peers and its policy file.

use crs_platform::config::{
    AdminConfig, AuthConfig, DatabaseConfig, OutboxConfig, RedisConfig, ServerConfig, TelemetryConfig,
};
use serde::Deserialize;

/// Triage's built-in defaults (the platform's are applied first).
pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50052"

[admin]
listen_addr = "127.0.0.1:9102"

[database]
url = "sqlite://data/triage.db?mode=rwc"

[peers]
legal_review = "http://127.0.0.1:50053"

[policies]
file = ""
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
    pub peers: Peers,
    pub policies: PolicyConfig,
}

crs_platform::impl_service_config!(Config);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peers {
    pub legal_review: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A TOML policy file replacing the built-in one; empty uses `config/sla-policies.toml`.
    pub file: String,
}
