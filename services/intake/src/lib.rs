//! CRS intake: authenticates agencies, validates and normalises their requests, stores each one
//! with its hand-offs in one transaction, and keeps the agency's view of every request current.

#![forbid(unsafe_code)]

mod agencies;
pub mod entities;
pub mod error;
pub mod migration;
mod relay;
mod requests;
mod service;
pub mod validate;
mod views;
mod watch;

use std::net::SocketAddr;
use std::time::Duration;

use crs_platform::app::Platform;
use crs_platform::config::{AuthConfig, DatabaseConfig, OutboxConfig, RedisConfig, ServerConfig, TelemetryConfig};
use crs_proto::intake::agency_admin_service_server::AgencyAdminServiceServer;
use crs_proto::intake::intake_service_server::IntakeServiceServer;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub use service::Intake;

/// Intake's built-in defaults (the platform's are applied first).
pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50051"

[database]
url = "sqlite://data/intake.db?mode=rwc"

[peers]
triage = "http://127.0.0.1:50052"
legal_review = "http://127.0.0.1:50053"
notification = "http://127.0.0.1:50054"

[limits]
max_items = 1000
max_keywords = 20
max_string_len = 2048
max_text_len = 20000
idempotency_retention_secs = 86400
"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub telemetry: TelemetryConfig,
    pub outbox: OutboxConfig,
    pub peers: Peers,
    pub limits: Limits,
}

crs_platform::impl_service_config!(Config);

/// Where intake hands requests on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peers {
    pub triage: String,
    pub legal_review: String,
    pub notification: String,
}

/// Bounds on every input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_items: usize,
    pub max_keywords: usize,
    /// Longest URL, id, name or reference.
    pub max_string_len: usize,
    /// Longest legal basis, justification or answer.
    pub max_text_len: usize,
    /// How long an idempotency key names its request; a client may retry for this long.
    pub idempotency_retention_secs: i64,
}

/// The intake service, bound and ready to serve.
pub struct Application {
    platform: Platform,
    intake: Intake,
    relay: crs_platform::outbox::Relay,
}

impl Application {
    pub async fn build(cfg: Config) -> anyhow::Result<Self> {
        let platform = Platform::start::<migration::Migrator>(&cfg).await?;
        let credentials = platform.authority.service_credentials("intake");
        let timeout = Duration::from_millis(cfg.outbox.call_timeout_ms);
        let triage = crs_platform::peers::connect(&cfg.peers.triage, credentials.clone(), timeout)?;
        let review = crs_platform::peers::connect(&cfg.peers.legal_review, credentials.clone(), timeout)?;
        let notification = crs_platform::peers::connect(&cfg.peers.notification, credentials, timeout)?;
        let relay = platform.outbox.relay(cfg.outbox.clone(), relay::handlers(triage, review, notification));
        let intake = Intake::new(
            platform.db.clone(),
            platform.outbox.clone(),
            platform.authority.clone(),
            platform.redis.clone(),
            platform.revocations.clone(),
            cfg.limits,
        );
        Ok(Self { platform, intake, relay })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.platform.local_addr
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application { platform, intake, relay } = self;
        let housekeeping = tokio::spawn(housekeeping(intake.clone(), shutdown.clone()));
        let verify = platform.verifier();
        let routes = tonic::service::Routes::new(IntakeServiceServer::with_interceptor(intake.clone(), verify.clone()))
            .add_service(AgencyAdminServiceServer::with_interceptor(intake, verify));
        let names = [
            <IntakeServiceServer<Intake> as NamedService>::NAME,
            <AgencyAdminServiceServer<Intake> as NamedService>::NAME,
        ];
        let served = platform.serve(routes, &names, relay, shutdown).await;
        let _ = housekeeping.await;
        served
    }
}

/// Intake's periodic work: keep the revocation list in Redis complete (it may have restarted
/// empty), release idempotency keys past retention, and end open streams on shutdown.
async fn housekeeping(intake: Intake, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                intake.stopping.cancel();
                return;
            }
            _ = tick.tick() => {}
        }
        if let Err(e) = intake.republish_revocations().await {
            tracing::debug!(error = %e, "revocations not re-published this round");
        }
        match intake.expire_idempotency_keys().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "idempotency keys past retention released"),
            Err(e) => tracing::warn!(error = %e, "cannot release expired idempotency keys"),
        }
    }
}
