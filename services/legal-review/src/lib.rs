//! CRS legal review: cases wait in queues by priority and deadline; reviewers claim them and
//! decide item by item; each decision is handed to notification and to intake's projection.

#![forbid(unsafe_code)]

pub mod entities;
pub mod error;
mod metrics;
pub mod migration;
mod relay;
mod service;
pub mod sla;

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
queue_metrics_interval_ms = 5000

[timers]
key_prefix = "crs:timers"
lease_ms = 30000
batch = 256
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
    pub timers: TimerConfig,
}

crs_platform::impl_service_config!(Config, migrator = migration::Migrator, check = Config::check_own);

impl Config {
    /// Legal review's own sections, for `--check-config`: its peers' addresses.
    fn check_own(&self) -> anyhow::Result<()> {
        crs_platform::app::check_peer("peers.intake", &self.peers.intake)?;
        crs_platform::app::check_peer("peers.notification", &self.peers.notification)
    }
}

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
    /// How often the queue depth and oldest-case gauges are recomputed.
    pub queue_metrics_interval_ms: u64,
}

/// The SLA timer index and its sweepers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerConfig {
    pub key_prefix: String,
    /// How long a claimed threshold is held before another replica fires it.
    pub lease_ms: i64,
    /// Most thresholds fired in one transaction.
    pub batch: usize,
}

pub struct Application {
    platform: Platform,
    review: LegalReview,
    relay: crs_platform::outbox::Relay,
    sweeper: crs_timers::sweeper::Sweeper,
    queue_metrics: std::time::Duration,
}

impl Application {
    pub async fn build(cfg: Config) -> anyhow::Result<Self> {
        let platform = Platform::start::<migration::Migrator>(&cfg).await?;
        let credentials = platform.authority.service_credentials("legal-review");
        let timeout = Duration::from_millis(cfg.outbox.call_timeout_ms);
        let intake = crs_platform::peers::connect(&cfg.peers.intake, credentials.clone(), timeout)?;
        let notification = crs_platform::peers::connect(&cfg.peers.notification, credentials, timeout)?;
        let relay = platform.outbox.relay("legal-review", cfg.outbox.clone(), relay::handlers(intake, notification));
        let timers = crs_timers::index::TimerIndex::new(platform.redis.clone(), &cfg.timers.key_prefix);
        let sweeper = crs_timers::sweeper::Sweeper::new(
            platform.db.clone(),
            timers.clone(),
            std::sync::Arc::new(sla::SlaHandler { outbox: platform.outbox.clone() }),
            crs_timers::sweeper::SweeperConfig {
                batch: cfg.timers.batch,
                lease_ms: cfg.timers.lease_ms,
                ..Default::default()
            },
        );
        let queue_metrics = std::time::Duration::from_millis(cfg.review.queue_metrics_interval_ms);
        let review = LegalReview::new(platform.db.clone(), platform.outbox.clone(), timers, cfg.review);
        Ok(Self { platform, review, relay, sweeper, queue_metrics })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.platform.local_addr
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application { platform, review, relay, sweeper, queue_metrics } = self;
        // Start from a complete index: rebuild it from the database (Redis may have lost it).
        if let Err(e) = sweeper.rebuild().await {
            tracing::warn!(error = %e, "cannot rebuild the SLA timer index now; the sweeper will when Redis answers");
        }
        let sweeping = tokio::spawn(sweeper.run(shutdown.clone()));
        let queues = tokio::spawn(metrics::watch_queues(platform.db.clone(), queue_metrics, shutdown.clone()));
        let routes =
            tonic::service::Routes::new(LegalReviewServiceServer::with_interceptor(review, platform.verifier()));
        let served = platform
            .serve(routes, &[<LegalReviewServiceServer<LegalReview> as NamedService>::NAME], relay, shutdown)
            .await;
        let _ = sweeping.await;
        let _ = queues.await;
        served
    }
}
