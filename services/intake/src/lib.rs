//! CRS intake: authenticates agencies, validates and normalises their requests, stores each one
//! with its hand-offs in one transaction, and keeps the agency's view of every request current.

#![forbid(unsafe_code)]

mod agencies;
pub mod entities;
pub mod error;
pub mod limits;
mod metrics;
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
use crs_platform::config::{
    AdminConfig, AuthConfig, DatabaseConfig, OutboxConfig, RedisConfig, ServerConfig, TelemetryConfig,
};
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

[admin]
listen_addr = "127.0.0.1:9101"

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

# Every submission is checked against its agency's rate and daily quota, its jurisdiction's and
# the global limit, all at once. Binding orders (court and government orders) have their own,
# larger buckets. A limit is `{ rate_per_sec, burst }` or `{ per_day }`; add `shadow = true` to
# count and log what it would deny without denying.
[rate_limits]
key_prefix = "crs:rl"

[rate_limits.tiers.standard.normal]
requests = { rate_per_sec = 1.0, burst = 30 }
daily = { per_day = 2000 }

[rate_limits.tiers.standard.binding]
requests = { rate_per_sec = 5.0, burst = 150 }
daily = { per_day = 20000 }

[rate_limits.tiers.high.normal]
requests = { rate_per_sec = 5.0, burst = 150 }
daily = { per_day = 10000 }

[rate_limits.tiers.high.binding]
requests = { rate_per_sec = 20.0, burst = 600 }
daily = { per_day = 100000 }

[rate_limits.jurisdiction]
normal = { rate_per_sec = 20.0, burst = 300 }
binding = { rate_per_sec = 50.0, burst = 1000 }

[rate_limits.global]
normal = { rate_per_sec = 200.0, burst = 3000 }
binding = { rate_per_sec = 500.0, burst = 10000 }
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
    pub limits: Limits,
    pub rate_limits: limits::RateLimitConfig,
}

crs_platform::impl_service_config!(Config, migrator = migration::Migrator, check = Config::check_own);

impl Config {
    /// Intake's own sections, for `--check-config`: its peers' addresses and its rate limits.
    fn check_own(&self) -> anyhow::Result<()> {
        use crs_platform::app::check_peer;
        check_peer("peers.triage", &self.peers.triage)?;
        check_peer("peers.legal_review", &self.peers.legal_review)?;
        check_peer("peers.notification", &self.peers.notification)?;
        self.rate_limits.check()
    }
}

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
        cfg.rate_limits.check()?;
        let platform = Platform::start::<migration::Migrator>(&cfg).await?;
        let credentials = platform.authority.service_credentials("intake");
        let timeout = Duration::from_millis(cfg.outbox.call_timeout_ms);
        let triage = crs_platform::peers::connect(&cfg.peers.triage, credentials.clone(), timeout)?;
        let review = crs_platform::peers::connect(&cfg.peers.legal_review, credentials.clone(), timeout)?;
        let notification = crs_platform::peers::connect(&cfg.peers.notification, credentials, timeout)?;
        let relay = platform.outbox.relay("intake", cfg.outbox.clone(), relay::handlers(triage, review, notification));
        let intake = Intake::new(
            platform.db.clone(),
            platform.outbox.clone(),
            platform.authority.clone(),
            platform.redis.clone(),
            platform.revocations.clone(),
            cfg.limits,
            cfg.rate_limits.clone(),
        );
        Ok(Self { platform, intake, relay })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.platform.local_addr
    }

    /// Where `/metrics` is served.
    pub fn admin_addr(&self) -> SocketAddr {
        self.platform.admin_addr
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
