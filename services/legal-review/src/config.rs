//! Legal review's configuration: the shared sections, its peers, claims and queues, the rules
//! for second-reviewer approval, and the SLA timer index.

use crs_domain::approval::ApprovalPolicy;
use crs_domain::vocab::Instrument;
use crs_platform::config::{
    AdminConfig, AuthConfig, DatabaseConfig, OutboxConfig, RedisConfig, ServerConfig, TelemetryConfig, TlsConfig,
};
use serde::Deserialize;

/// Legal review's built-in defaults (the platform's are applied first).
pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50053"

[auth]
service_key_file = "data/keys/legal-review.key"

[admin]
listen_addr = "127.0.0.1:9103"

[database]
url = "sqlite://data/legal-review.db?mode=rwc"

[peers]
intake = "http://127.0.0.1:50051"
notification = "http://127.0.0.1:50054"
triage = "http://127.0.0.1:50052"

[review]
claim_lease_secs = 900
max_claim_lease_secs = 7200
queue_metrics_interval_ms = 5000
queues = []
escalation_queue = "escalated"

# Which decisions take effect only after a second, senior reviewer approves them.
[review.approval]
human_rights_flagged = true
global_removal_instruments = ["GOVERNMENT_ORDER"]
high_risk_policies = true

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
    pub tls: TlsConfig,
    pub retention: crs_platform::config::RetentionConfig,
    pub peers: Peers,
    pub review: ReviewConfig,
    pub timers: TimerConfig,
}

crs_platform::impl_service_config!(Config, migrator = crate::migration::Migrator, check = Config::check_own);

impl Config {
    /// Legal review's own sections, for `--check-config`: its peers' addresses and its approval rules.
    fn check_own(&self) -> anyhow::Result<()> {
        crs_platform::app::check_peer("peers.intake", &self.peers.intake)?;
        crs_platform::app::check_peer("peers.notification", &self.peers.notification)?;
        crs_platform::app::check_peer("peers.triage", &self.peers.triage)?;
        self.review.approval.policy().map(drop)
    }
}

/// Where legal review hands its outcomes on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peers {
    pub intake: String,
    pub notification: String,
    /// Told of each decision, for later requests about the same content and the agency's history.
    pub triage: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewConfig {
    /// How long a claim lasts when the reviewer does not say.
    pub claim_lease_secs: i64,
    pub max_claim_lease_secs: i64,
    /// How often the queue depth and oldest-case gauges are recomputed.
    pub queue_metrics_interval_ms: u64,
    /// Queues to report (at zero) before any case reaches them. The queues themselves are named
    /// by triage's routing rules: a queue exists once a case is routed to it.
    pub queues: Vec<String>,
    /// Where escalated cases wait for senior reviewers.
    pub escalation_queue: String,
    pub approval: ApprovalConfig,
}

/// Which decisions need a second, senior reviewer (see `crs_domain::approval`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// Every decision on a case triage flagged for human-rights review.
    pub human_rights_flagged: bool,
    /// Every global removal on a request under these legal instruments (e.g. `GOVERNMENT_ORDER`).
    pub global_removal_instruments: Vec<String>,
    /// Every decision under an SLA policy marked `high_risk`.
    pub high_risk_policies: bool,
}

impl ApprovalConfig {
    pub fn policy(&self) -> anyhow::Result<ApprovalPolicy> {
        let instruments = self
            .global_removal_instruments
            .iter()
            .map(|name| {
                Instrument::parse(name).ok_or_else(|| {
                    anyhow::anyhow!(
                        "review.approval.global_removal_instruments: unknown legal instrument {name:?} (known: {})",
                        Instrument::ALL.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(ApprovalPolicy {
            human_rights_flagged: self.human_rights_flagged,
            global_removal_instruments: instruments,
            high_risk_policies: self.high_risk_policies,
        })
    }
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
