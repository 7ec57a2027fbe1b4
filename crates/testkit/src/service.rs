//! Any CRS service in process, on port 0 and its own database, started the way `main` starts it.
//!
//! ```text
//! let env = ServiceEnv::new::<crs_triage::Application>(Backend::Sqlite).await;
//! let triage = crs_testkit::service::start::<crs_triage::Application>(&env).await;
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crs_platform::app::{Service, ServiceConfig};
use crs_platform::auth::{Principal, Role};
use tokio_util::sync::CancellationToken;

use crate::db::{Backend, TestDb};

pub use crate::keys::{issuer, token};

/// The key that seals webhook secrets, shared by the test services that hold one (intake and
/// notification, the services with a `[webhooks]` section).
pub const WEBHOOK_SECRET_KEY: &str = "crs-tests-webhook-secret-key-0123456789abcdef";

/// An admin principal.
pub fn admin() -> Principal {
    Principal::Reviewer { id: "root".into(), roles: vec![Role::Admin] }
}

/// A service's settings for a test: its own fresh database, the shared Redis, the test signing
/// key, ports 0, peers unreachable, and whatever the test adds.
#[derive(Debug, Clone)]
pub struct ServiceEnv {
    pub db: TestDb,
    vars: HashMap<String, String>,
}

impl ServiceEnv {
    pub async fn new<S: Service>(backend: Backend) -> ServiceEnv {
        let db = TestDb::fresh(backend, S::NAME).await.expect("a fresh test database");
        Self::on::<S>(db)
    }

    /// Settings for a service on an existing database (e.g. a second replica).
    pub fn on<S: Service>(db: TestDb) -> ServiceEnv {
        let mut vars: HashMap<String, String> = [
            ("CRS_SERVER__LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("CRS_SERVER__SHUTDOWN_GRACE_SECS", "2".to_owned()),
            ("CRS_ADMIN__LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("CRS_DATABASE__URL", db.url.clone()),
            // Tests run many services at once on one PostgreSQL server (100 connections by
            // default): each opens connections as it needs them, not a warm pool's worth.
            ("CRS_DATABASE__MIN_CONNECTIONS", "0".to_owned()),
            ("CRS_REDIS__URL", crate::redis::shared_url()),
            ("CRS_OUTBOX__POLL_INTERVAL_MS", "200".to_owned()),
            ("CRS_OUTBOX__INITIAL_BACKOFF_MS", "100".to_owned()),
            ("CRS_OUTBOX__MAX_BACKOFF_MS", "500".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        vars.extend(crate::keys::auth_env(S::NAME));
        if S::DEFAULTS.lines().any(|l| l.trim() == "[webhooks]") {
            vars.insert("CRS_WEBHOOKS__SECRET_KEY".to_owned(), WEBHOOK_SECRET_KEY.to_owned());
        }
        // Peers nobody listens on, unless the test points them somewhere.
        for peer in peer_names(S::DEFAULTS) {
            vars.insert(format!("CRS_PEERS__{}", peer.to_uppercase()), "http://127.0.0.1:9".to_owned());
        }
        ServiceEnv { db, vars }
    }

    /// Sets a `CRS_*` variable.
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.vars.insert(key.to_owned(), value.into());
        self
    }

    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }
}

/// The keys of the `[peers]` section of a service's defaults.
fn peer_names(defaults: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_peers = false;
    for line in defaults.lines().map(str::trim) {
        if line.starts_with('[') {
            in_peers = line == "[peers]";
        } else if in_peers && let Some((k, _)) = line.split_once('=') {
            out.push(k.trim().to_owned());
        }
    }
    out
}

/// A service running in this process.
pub struct Running {
    /// `http://127.0.0.1:<port>`, or `https://` when its `[tls]` is on.
    pub url: String,
    pub addr: SocketAddr,
    /// Where its `/metrics` is served.
    pub admin_addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Builds `S` from `env` and runs it until [`Running::stop`]; returns once it is SERVING.
pub async fn start<S: Service>(env: &ServiceEnv) -> Running {
    crs_platform::telemetry::init_for_tests();
    let cfg = crs_platform::app::config_from_env::<S>(env.vars()).expect("a valid test configuration");
    if cfg.redis().url == crate::redis::shared_url() {
        crate::redis::mark_revocations_published().await;
    }
    // A TLS service is asked about its health as its peers would ask: with its own certificate.
    let tls = cfg.tls().enabled.then(|| own_client_tls(cfg.tls()));
    let app = S::build(cfg).await.expect("the service builds");
    let (addr, admin_addr) = (app.local_addr(), app.admin_addr());
    let url = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    crate::wait_serving_with(&url, tls.as_ref(), Duration::from_secs(30)).await.expect("the service reports SERVING");
    Running { url, addr, admin_addr, shutdown, task }
}

/// A client with the service's own certificate, key and CA.
fn own_client_tls(tls: &crs_platform::config::TlsConfig) -> crs_platform::tls::ClientTls {
    let read = |path: &str| std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let (ca, cert, key) = (read(&tls.ca_file), read(&tls.cert_file), read(&tls.key_file));
    crs_platform::tls::ClientTls::from_pem(&ca, Some((&cert, &key))).expect("the service's TLS material")
}

impl Running {
    /// Stops it as SIGTERM would (drain, then stop) and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}
