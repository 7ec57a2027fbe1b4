//! CRS notification: tells the agency, the content owner, the enforcement system and on-call
//! what happened, by signed webhooks with retries, and records every delivery.

#![forbid(unsafe_code)]

pub mod entities;
pub mod error;
pub mod migration;
mod service;
mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crs_platform::app::Platform;
use crs_platform::config::{
    AdminConfig, AuthConfig, DatabaseConfig, OutboxConfig, RedisConfig, ServerConfig, TelemetryConfig,
};
use crs_proto::notification::notification_service_server::NotificationServiceServer;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub use service::Notifications;

pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50054"

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
    pub webhooks: WebhookConfig,
}

crs_platform::impl_service_config!(Config, migrator = migration::Migrator);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Deadline of one webhook POST.
    pub timeout_ms: u64,
}

pub struct Application {
    platform: Platform,
    notifications: Notifications,
    relay: crs_platform::outbox::Relay,
}

impl Application {
    pub async fn build(cfg: Config) -> anyhow::Result<Self> {
        let platform = Platform::start::<migration::Migrator>(&cfg).await?;
        let sender = webhook::Sender::new(platform.db.clone(), Duration::from_millis(cfg.webhooks.timeout_ms))?;
        // Deliveries travel through this service's own outbox: the same claim, lease and
        // backoff as every hand-off, so a restart loses none and repeats none that succeeded.
        let relay = platform.outbox.relay(
            "notification",
            cfg.outbox.clone(),
            HashMap::from([(webhook::TOPIC, sender.handler())]),
        );
        let notifications = Notifications::new(platform.db.clone(), platform.outbox.clone());
        Ok(Self { platform, notifications, relay })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.platform.local_addr
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application { platform, notifications, relay } = self;
        let routes = tonic::service::Routes::new(NotificationServiceServer::with_interceptor(
            notifications,
            platform.verifier(),
        ));
        platform
            .serve(routes, &[<NotificationServiceServer<Notifications> as NamedService>::NAME], relay, shutdown)
            .await
    }
}
