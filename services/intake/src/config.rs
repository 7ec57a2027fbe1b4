//! Intake's configuration: the shared sections, its peers, the bounds on every input, and the
//! rate limits.

use crs_platform::config::{
    AdminConfig, AuthConfig, DatabaseConfig, OutboxConfig, RedisConfig, ServerConfig, TelemetryConfig, TlsConfig,
};
use serde::Deserialize;

/// Intake's built-in defaults (the platform's are applied first).
pub const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:50051"

[auth]
service_key_file = "data/keys/intake.key"
token_signing_key_file = "data/keys/tokens.key"

[admin]
listen_addr = "127.0.0.1:9101"

[database]
url = "sqlite://data/intake.db?mode=rwc"

[peers]
triage = "http://127.0.0.1:50052"
legal_review = "http://127.0.0.1:50053"
notification = "http://127.0.0.1:50054"

# The key that seals agencies' callback secrets (at rest and in the hand-off to notification,
# which holds the same key): inline `secret_key`, or a file of at least 32 random bytes.
[webhooks]
secret_key_file = "data/keys/webhook-secret.key"

[limits]
max_items = 1000
max_keywords = 20
max_string_len = 2048
max_text_len = 20000
max_request_bytes = 4194304
max_watch_streams_per_agency = 4

# Concurrent submissions are stored together: one transaction and one commit carry up to
# `max_batch` of them, gathered for at most `max_wait_us` once submissions queue (a lone one is
# written at once). `writers` batches are written at a time. A submission that fails in a batch
# is retried alone, so it never fails its neighbours. Once the oldest waiting has waited 100 ms,
# the newest are written first, and a submission whose caller has gone is not written.
# Under overload `max_batch` trades each caller's wait for throughput: a full batch of 256 takes
# about three times as long to write as one of 64, and spreads its commit over four times as
# many submissions. Callers with short deadlines (a few seconds) are answered in time more often
# with 64; callers that wait long, more of them within the server's bound on a call with 256
# (bench/PROFILE.md).
[group_commit]
max_batch = 256
max_wait_us = 1000
writers = 2

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
    pub tls: TlsConfig,
    pub retention: crs_platform::config::RetentionConfig,
    pub peers: Peers,
    pub webhooks: crs_platform::secrets::SecretKeyConfig,
    pub limits: Limits,
    pub group_commit: GroupCommitConfig,
    pub rate_limits: crate::limits::RateLimitConfig,
}

crs_platform::impl_service_config!(Config, migrator = crate::migration::Migrator, check = Config::check_own);

impl Config {
    /// Intake's own sections, for `--check-config`: its peers' addresses, the webhook-secret key
    /// and its rate limits.
    fn check_own(&self) -> anyhow::Result<()> {
        use crs_platform::app::check_peer;
        check_peer("peers.triage", &self.peers.triage)?;
        check_peer("peers.legal_review", &self.peers.legal_review)?;
        check_peer("peers.notification", &self.peers.notification)?;
        crs_platform::secrets::SecretBox::from_config("webhooks", &self.webhooks)?;
        anyhow::ensure!(self.group_commit.max_batch >= 1, "group_commit.max_batch must be at least 1");
        anyhow::ensure!(self.group_commit.writers >= 1, "group_commit.writers must be at least 1");
        anyhow::ensure!(
            self.group_commit.max_wait_us <= 100_000,
            "group_commit.max_wait_us must be at most 100000 (a tenth of a second): every submission in a batch waits for it"
        );
        // A decision travels with the request it decides: leave it room in every hand-off.
        anyhow::ensure!(
            self.limits.max_request_bytes <= crs_platform::server::MAX_MESSAGE_BYTES / 2,
            "limits.max_request_bytes must be at most {} (half the gRPC message bound)",
            crs_platform::server::MAX_MESSAGE_BYTES / 2
        );
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

/// How concurrent submissions share transactions (see `crate::group_commit`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupCommitConfig {
    /// Most submissions in one transaction.
    pub max_batch: usize,
    /// Longest a queued submission waits for others to join its batch, in microseconds.
    pub max_wait_us: u64,
    /// Batches written at a time.
    pub writers: usize,
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
    /// Largest request, in bytes once stored: every hand-off carries it, within the gRPC
    /// message bound every service shares (`crs_platform::server::MAX_MESSAGE_BYTES`).
    pub max_request_bytes: usize,
    /// Open `WatchRequests` streams one agency may hold on one intake replica.
    pub max_watch_streams_per_agency: usize,
}
