//! Notification's configuration: the shared sections and its webhooks.

use crs_platform::config::{
    AdminConfig, AuthConfig, DatabaseConfig, OutboxConfig, RedisConfig, ServerConfig, TelemetryConfig, TlsConfig,
};
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

[webhooks]
timeout_ms = 5000
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
    pub webhooks: WebhookConfig,
}

crs_platform::impl_service_config!(Config, migrator = crate::migration::Migrator);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Deadline of one webhook POST.
    pub timeout_ms: u64,
}
