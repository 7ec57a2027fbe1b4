//! CRS legal review: cases wait in queues by priority and deadline; reviewers claim them and
//! decide item by item; each decision is handed to notification and to intake's projection.

#![forbid(unsafe_code)]

pub mod entities;
pub mod error;
pub mod migration;
mod relay;
mod service;

use std::net::SocketAddr;
use std::time::Duration;

use crs_platform::app::Platform;
use crs_platform::config::{
    AdminConfig, AuthConfig, DatabaseConfig, OutboxConfig, RedisConfig, ServerConfig, TelemetryConfig,
};
use crs_proto::review::legal_review_service_server::LegalReviewServiceServer;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub use service::LegalReview;

pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50053"

[admin]
listen_addr = "127.0.0.1:9103"

[database]
url = "sqlite://data/legal-review.db?mode=rwc"

[peers]
intake = "http://127.0.0.1:50051"
notification = "http://127.0.0.1:50054"

[review]
claim_lease_secs = 900
max_claim_lease_secs = 7200
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
    pub review: ReviewConfig,
}

crs_platform::impl_service_config!(Config);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peers {
    pub intake: String,
    pub notification: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewConfig {
    /// How long a claim lasts when the reviewer does not say.
    pub claim_lease_secs: i64,
    pub max_claim_lease_secs: i64,
}

pub struct Application {
    platform: Platform,
    review: LegalReview,
    relay: crs_platform::outbox::Relay,
}

impl Application {
    pub async fn build(cfg: Config) -> anyhow::Result<Self> {
        let platform = Platform::start::<migration::Migrator>(&cfg).await?;
        let credentials = platform.authority.service_credentials("legal-review");
        let timeout = Duration::from_millis(cfg.outbox.call_timeout_ms);
        let intake = crs_platform::peers::connect(&cfg.peers.intake, credentials.clone(), timeout)?;
        let notification = crs_platform::peers::connect(&cfg.peers.notification, credentials, timeout)?;
        let relay = platform.outbox.relay(cfg.outbox.clone(), relay::handlers(intake, notification));
        let review = LegalReview::new(platform.db.clone(), platform.outbox.clone(), cfg.review);
        Ok(Self { platform, review, relay })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.platform.local_addr
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application { platform, review, relay } = self;
        let routes =
            tonic::service::Routes::new(LegalReviewServiceServer::with_interceptor(review, platform.verifier()));
        platform.serve(routes, &[<LegalReviewServiceServer<LegalReview> as NamedService>::NAME], relay, shutdown).await
    }
}
