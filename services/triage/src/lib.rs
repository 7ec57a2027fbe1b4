//! CRS triage: scores each request's priority, finds content already in an open case, picks the
//! SLA policy that sets its legal deadline, routes it to a review queue, and hands it on.

#![forbid(unsafe_code)]

pub mod entities;
pub mod error;
pub mod migration;
pub mod policy;
mod relay;
mod service;

use std::net::SocketAddr;
use std::time::Duration;

use crs_platform::app::Platform;
use crs_platform::config::{
    AdminConfig, AuthConfig, DatabaseConfig, OutboxConfig, RedisConfig, ServerConfig, TelemetryConfig,
};
use crs_proto::triage::triage_service_server::TriageServiceServer;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub use service::Triage;

pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50052"

[admin]
listen_addr = "127.0.0.1:9102"

[database]
url = "sqlite://data/triage.db?mode=rwc"

[peers]
intake = "http://127.0.0.1:50051"
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

crs_platform::impl_service_config!(Config, migrator = migration::Migrator, check = Config::check_own);

impl Config {
    /// Triage's own sections, for `--check-config`: its peers' addresses and its policy file.
    fn check_own(&self) -> anyhow::Result<()> {
        crs_platform::app::check_peer("peers.intake", &self.peers.intake)?;
        crs_platform::app::check_peer("peers.legal_review", &self.peers.legal_review)?;
        self.policies.load().map(drop)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peers {
    pub intake: String,
    pub legal_review: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A TOML policy file replacing the built-in one; empty uses `config/sla-policies.toml`.
    pub file: String,
}

impl PolicyConfig {
    /// Reads and parses the policy file (or the built-in one).
    pub fn load(&self) -> anyhow::Result<policy::Policies> {
        if self.file.is_empty() {
            return policy::Policies::parse(policy::BUILT_IN);
        }
        let text = std::fs::read_to_string(&self.file)
            .map_err(|e| anyhow::anyhow!("cannot read policies.file {}: {e}", self.file))?;
        policy::Policies::parse(&text).map_err(|e| anyhow::anyhow!("policies.file {}: {e:#}", self.file))
    }
}

pub struct Application {
    platform: Platform,
    triage: Triage,
    relay: crs_platform::outbox::Relay,
}

impl Application {
    pub async fn build(cfg: Config) -> anyhow::Result<Self> {
        let policies = cfg.policies.load()?;
        let platform = Platform::start::<migration::Migrator>(&cfg).await?;
        let credentials = platform.authority.service_credentials("triage");
        let timeout = Duration::from_millis(cfg.outbox.call_timeout_ms);
        let intake = crs_platform::peers::connect(&cfg.peers.intake, credentials.clone(), timeout)?;
        let review = crs_platform::peers::connect(&cfg.peers.legal_review, credentials, timeout)?;
        let relay = platform.outbox.relay("triage", cfg.outbox.clone(), relay::handlers(intake, review));
        let triage = Triage::new(platform.db.clone(), platform.outbox.clone(), policies);
        Ok(Self { platform, triage, relay })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.platform.local_addr
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application { platform, triage, relay } = self;
        let routes = tonic::service::Routes::new(TriageServiceServer::with_interceptor(triage, platform.verifier()));
        platform.serve(routes, &[<TriageServiceServer<Triage> as NamedService>::NAME], relay, shutdown).await
    }
}
