//! Typed, layered configuration: built-in defaults → an optional TOML file → `CRS_`-prefixed
//! environment variables (`__` separates sections: `CRS_DATABASE__URL`).
//!
//! The environment is passed in as a map so tests never touch the process environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

pub use crate::retention::RetentionConfig;

/// Where the gRPC server listens and how long it drains on shutdown.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen_addr: SocketAddr,
    /// Seconds in-flight calls get to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Calls one connection may have in flight at once (HTTP/2 streams included).
    pub concurrent_calls_per_connection: usize,
    /// The longest a unary call may take before it is cut off (a stream's opening included).
    pub request_timeout_secs: u64,
    /// A second, plaintext listener serving only `grpc.health.v1.Health`, for probes that cannot
    /// speak TLS (Kubernetes' gRPC probes) when `[tls]` is on. Unset: health is served on
    /// `listen_addr` only.
    #[serde(default)]
    pub health_listen_addr: Option<SocketAddr>,
}

/// The operators' HTTP port: Prometheus metrics at `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen_addr: SocketAddr,
}

/// The service's own database: `sqlite://path?mode=rwc` or `postgres://...`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    /// PostgreSQL connections opened before the service serves and kept open while idle, at
    /// most `max_connections` (a larger figure means all of them): a connection opened on demand
    /// costs PostgreSQL a new backend, a TLS handshake and cold caches, and the first requests
    /// after a start or a quiet spell would wait for them.
    #[serde(default)]
    pub min_connections: u32,
    /// The longest a call waits to connect or for a free connection before it fails
    /// UNAVAILABLE.
    pub acquire_timeout_ms: u64,
    /// Run pending migrations at start-up (production runs them as a Helm hook instead).
    pub migrate: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
}

/// Who may call: Ed25519 keys, in PEM files (`crsctl keygen --dir DIR` writes a set). Every
/// service verifies with public keys; only the token issuer (intake) holds the key that signs
/// people's and agencies' tokens, and each service holds only its own private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The `iss` of people's and agencies' tokens.
    pub issuer: String,
    /// The token issuer's public keys: tokens signed by any of them are accepted (list the new key
    /// beside the old one while a key rotates).
    pub token_public_key_files: Vec<String>,
    /// The token issuer's private key, where tokens are issued (intake's `IssueToken`); empty
    /// elsewhere.
    pub token_signing_key_file: String,
    /// This service's own private key: it signs this service's calls to its peers.
    pub service_key_file: String,
    /// Where the services' public keys are, as `<service>.pub`: a service whose key is not there
    /// cannot call this one.
    pub service_public_keys_dir: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `tracing` filter directives, e.g. `info,crs_intake=debug`.
    pub log_filter: String,
    /// OTLP gRPC endpoint; when empty, `OTEL_EXPORTER_OTLP_ENDPOINT` decides, else no export.
    pub otlp_endpoint: Option<String>,
}

/// How the outbox relay claims and retries hand-offs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    pub batch_size: u32,
    /// Safety-net poll; commits wake the relay at once.
    pub poll_interval_ms: u64,
    /// A claimed row is re-claimable after this long (its relay is presumed dead).
    pub lease_ms: u64,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Per-call deadline for the gRPC hand-off.
    pub call_timeout_ms: u64,
    /// How long a failing hand-off is retried before it becomes a dead letter.
    pub max_age_secs: u64,
    /// Connections the relay keeps for itself on PostgreSQL, apart from the pool that serves
    /// requests (SQLite's one connection is shared).
    pub relay_connections: u32,
    /// Batches the relay delivers at once: it claims the next while earlier ones wait for
    /// their receivers.
    pub batches_in_flight: u32,
}

/// Transport security of the gRPC listener and of calls to peers: mutual TLS with certificates
/// and keys read from files (mounted Secrets), re-read when they change. Off by default
/// (plaintext, for `make run` and tests).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub enabled: bool,
    /// This service's certificate chain (PEM, its own certificate first). It serves it to callers
    /// and presents it as its client certificate to peers, so it needs both the `serverAuth` and
    /// `clientAuth` extended key usages.
    pub cert_file: String,
    /// The private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// The CA certificate(s) (PEM) that sign the services' certificates: client certificates are
    /// verified against them, and so are peers' server certificates.
    pub ca_file: String,
    /// Whether every caller must present a client certificate (`required`), or only callers of
    /// internal RPCs (`optional`: public callers without one reach the public services).
    pub client_auth: ClientAuth,
    /// How often the files are checked for changes; new connections use new material.
    pub reload_interval_secs: u64,
    /// Connections are closed gracefully after this long, so that long-lived ones handshake
    /// again with the current certificates; 0 keeps them open.
    pub max_connection_age_secs: u64,
}

/// Which callers must present a client certificate signed by `tls.ca_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Every connection: the handshake fails without a valid client certificate.
    Required,
    /// Connections may come without one; they reach public RPCs only (internal RPCs are refused
    /// with `UNAUTHENTICATED`). A certificate that is presented must still be valid.
    Optional,
}

/// Defaults shared by every service; each service adds its own sections and listen address.
pub const PLATFORM_DEFAULTS: &str = r#"
[server]
shutdown_grace_secs = 10
concurrent_calls_per_connection = 256
request_timeout_secs = 30

[database]
max_connections = 10
min_connections = 10
acquire_timeout_ms = 3000
migrate = true

[redis]
url = "redis://127.0.0.1:6379"

[auth]
issuer = "crs"
token_public_key_files = ["data/keys/tokens.pub"]
token_signing_key_file = ""
service_public_keys_dir = "data/keys"

[telemetry]
log_filter = "info"

[outbox]
batch_size = 64
poll_interval_ms = 500
lease_ms = 30000
initial_backoff_ms = 200
max_backoff_ms = 30000
call_timeout_ms = 5000
max_age_secs = 86400
relay_connections = 2
batches_in_flight = 4

# How long each class of data is kept (see README, Retention).
[retention]
interval_secs = 3600
inbox_secs = 2592000
idempotency_secs = 86400
request_text_secs = 31536000

[tls]
enabled = false
cert_file = ""
key_file = ""
ca_file = ""
client_auth = "optional"
reload_interval_secs = 10
max_connection_age_secs = 600
"#;

/// Loads `T` from the layered sources.
///
/// `defaults` are built-in TOML layers (the platform's, then the service's); `file` is read if given; `env` holds the
/// environment (only `CRS_*` keys are used, `CRS_CONFIG` names the file and is skipped).
pub fn load<T: DeserializeOwned>(
    defaults: &[&str],
    file: Option<&Path>,
    env: &HashMap<String, String>,
) -> anyhow::Result<T> {
    let mut merged = Table::new();
    for layer in defaults {
        let table: Table = toml::from_str(layer).context("built-in defaults are not valid TOML")?;
        merge(&mut merged, table);
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        let table: Table = toml::from_str(&text)
            .with_context(|| format!("configuration file {} is not valid TOML", path.display()))?;
        merge(&mut merged, table);
    }
    let mut keys: Vec<_> = env.keys().filter(|k| k.starts_with("CRS_") && *k != "CRS_CONFIG").collect();
    keys.sort();
    for key in keys {
        let path: Vec<String> = key["CRS_".len()..].split("__").map(str::to_lowercase).collect();
        set_path(&mut merged, &path, &env[key]).with_context(|| format!("environment variable {key}"))?;
    }
    T::deserialize(Value::Table(merged)).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

/// The configuration file named by `--config` or `CRS_CONFIG`, if any.
pub fn file_from_args_or_env(env: &HashMap<String, String>) -> Option<std::path::PathBuf> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(Into::into);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(path.into());
        }
    }
    env.get("CRS_CONFIG").filter(|p| !p.is_empty()).map(Into::into)
}

fn merge(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Sets `path` to `raw`, typed after the value it replaces (so `CRS_SERVER__SHUTDOWN_GRACE_SECS=5`
/// becomes an integer while `CRS_AUTH__ISSUER=12345` stays a string).
fn set_path(table: &mut Table, path: &[String], raw: &str) -> anyhow::Result<()> {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut current = table;
    for part in parents {
        let entry = current.entry(part.clone()).or_insert_with(|| Value::Table(Table::new()));
        current = match entry {
            Value::Table(t) => t,
            _ => bail!("`{part}` is not a section"),
        };
    }
    let value = match current.get(last) {
        Some(Value::Integer(_)) => Value::Integer(raw.parse().context("expected an integer")?),
        Some(Value::Float(_)) => Value::Float(raw.parse().context("expected a number")?),
        Some(Value::Boolean(_)) => Value::Boolean(raw.parse().context("expected true or false")?),
        Some(Value::Array(_)) => {
            let wrapped: Table = toml::from_str(&format!("v = {raw}")).context("expected a TOML array")?;
            wrapped["v"].clone()
        }
        _ => Value::String(raw.to_owned()),
    };
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        server: ServerConfig,
        name: String,
        tags: Vec<String>,
    }

    const DEFAULTS: &str = r#"
        name = "x"
        tags = ["a"]
        [server]
        listen_addr = "127.0.0.1:1"
        shutdown_grace_secs = 10
        concurrent_calls_per_connection = 8
        request_timeout_secs = 5
    "#;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("crs-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "name = \"from-file\"\n[server]\nshutdown_grace_secs = 3\n").unwrap();
        let cfg: Sample = load(
            &[DEFAULTS],
            Some(&file),
            &env(&[("CRS_SERVER__SHUTDOWN_GRACE_SECS", "7"), ("CRS_TAGS", "[\"b\", \"c\"]"), ("OTHER", "1")]),
        )
        .unwrap();
        assert_eq!(cfg.name, "from-file");
        assert_eq!(cfg.server.shutdown_grace_secs, 7);
        assert_eq!(cfg.server.listen_addr.port(), 1);
        assert_eq!(cfg.tags, vec!["b", "c"]);
    }

    #[test]
    fn numeric_looking_strings_stay_strings() {
        let cfg: Sample = load(&[DEFAULTS], None, &env(&[("CRS_NAME", "12345")])).unwrap();
        assert_eq!(cfg.name, "12345");
    }

    #[test]
    fn misspelled_keys_and_bad_values_are_named() {
        let err = load::<Sample>(&[DEFAULTS], None, &env(&[("CRS_SERVER__LISTEN_ADR", "x")])).unwrap_err();
        assert!(format!("{err:#}").contains("listen_adr"), "{err:#}");
        let err = load::<Sample>(&[DEFAULTS], None, &env(&[("CRS_SERVER__SHUTDOWN_GRACE_SECS", "soon")])).unwrap_err();
        assert!(format!("{err:#}").contains("CRS_SERVER__SHUTDOWN_GRACE_SECS"), "{err:#}");
    }
}
