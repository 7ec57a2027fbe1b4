//! The parts every service assembles at start-up, so each service's `Application::build` only
//! adds what is its own, and each `main` stays a few lines.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{ServiceIdentity, TokenIssuer, TokenVerifier};
use crate::config::{
    AdminConfig, AuthConfig, DatabaseConfig, OutboxConfig, RedisConfig, ServerConfig, TelemetryConfig, TlsConfig,
};
use crate::outbox::Outbox;
use crate::redis::RedisHandle;
use crate::revocation::Revocations;
use crate::server::Dependencies;

/// The allocator every service binary installs (`#[global_allocator]` in its `main.rs`).
///
/// Each call allocates and frees many small, short-lived buffers (frames, rows, statements,
/// spans) on every worker thread; under load glibc's malloc took about a seventh of the
/// services' CPU, mostly in consolidating and relinking free chunks; with mimalloc's
/// thread-local free lists, allocation took ~4 % of all samples where glibc's took ~6.7 %
/// (bench/PROFILE.md).
pub use mimalloc::MiMalloc as Allocator;

/// What a service's configuration shares with every other service, and what [`run_service`]
/// needs to know about the service beyond it.
pub trait ServiceConfig: DeserializeOwned {
    /// The service's database migrations, which `--migrate-only` applies.
    type Migrator: MigratorTrait;

    fn server(&self) -> &ServerConfig;
    fn admin(&self) -> &AdminConfig;
    fn database(&self) -> &DatabaseConfig;
    fn redis(&self) -> &RedisConfig;
    fn auth(&self) -> &AuthConfig;
    fn telemetry(&self) -> &TelemetryConfig;
    fn outbox(&self) -> &OutboxConfig;
    fn tls(&self) -> &TlsConfig;
    fn retention(&self) -> &crate::retention::RetentionConfig;

    /// Checks what loading cannot: that files are readable and URLs well formed. The default
    /// checks the shared sections; a service adds its own sections' checks through
    /// [`impl_service_config!`]'s `check =`.
    fn check(&self) -> anyhow::Result<()> {
        check_shared(self)
    }
}

/// A CRS service as a library: built from its configuration (binding its listeners, port 0
/// picks a free one), then run until stopped. `main` and the tests start it the same way.
pub trait Service: Sized + Send + 'static {
    type Config: ServiceConfig + Send;
    /// The service's name: `crs-<name>` is its binary, `service:<name>` its principal.
    const NAME: &'static str;
    /// Its built-in configuration defaults (the platform's apply first).
    const DEFAULTS: &'static str;

    fn build(cfg: Self::Config) -> impl Future<Output = anyhow::Result<Self>> + Send;
    /// Where its gRPC server listens.
    fn local_addr(&self) -> SocketAddr;
    /// Where its metrics are served.
    fn admin_addr(&self) -> SocketAddr;
    fn run_until_stopped(self, shutdown: CancellationToken) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A service binary's `main`: runs `S` as [`run_service`] describes.
pub fn main<S: Service>() -> ExitCode {
    run_service::<S::Config, _, _>(S::NAME, S::DEFAULTS, |cfg, shutdown| async move {
        S::build(cfg).await?.run_until_stopped(shutdown).await
    })
}

/// Loads `S`'s configuration from the built-in defaults and `env` alone (no file), as tests do.
pub fn config_from_env<S: Service>(env: &HashMap<String, String>) -> anyhow::Result<S::Config> {
    crate::config::load(&[crate::config::PLATFORM_DEFAULTS, S::DEFAULTS], None, env)
}

/// Connected platform parts: listener bound, database migrated, Redis handle, keys and TLS
/// material loaded.
pub struct Platform {
    pub listener: TcpListener,
    pub local_addr: SocketAddr,
    /// The plaintext health-only listener (`server.health_listen_addr`), if configured.
    pub health_listener: Option<TcpListener>,
    pub health_addr: Option<SocketAddr>,
    /// The TLS material when `[tls]` is enabled: the listener serves TLS, peers are called with it.
    pub tls: Option<crate::tls::Tls>,
    /// The admin HTTP listener (metrics).
    pub admin_listener: TcpListener,
    pub admin_addr: SocketAddr,
    pub db: DatabaseConnection,
    pub redis: RedisHandle,
    /// This service's own identity, for its calls to peers.
    pub identity: ServiceIdentity,
    /// Verifies every call's token.
    pub verifier: TokenVerifier,
    /// Signs people's and agencies' tokens, where this service issues them (intake).
    pub issuer: Option<TokenIssuer>,
    pub outbox: Outbox,
    pub revocations: Revocations,
    /// The readiness probe's own connection to the database. A pool busy with requests is not
    /// a database that stopped answering: pinged through the pool, an overloaded service would
    /// wait for a connection past the ping's bound and take itself out of rotation, refusing
    /// every call while its database is answering. SQLite's one connection is shared.
    probe: DatabaseConnection,
    pub grace: Duration,
    /// The server's bounds (calls per connection, time per call).
    pub server: crate::config::ServerConfig,
    pub retention: crate::retention::RetentionConfig,
    /// What the retention job prunes besides the inbox (see [`Platform::retain`]).
    retention_rules: Vec<crate::retention::Rule>,
}

impl Platform {
    /// Binds, connects and migrates (with the service's migrator `M`) for the service `name`.
    pub async fn start<M: MigratorTrait>(name: &str, cfg: &impl ServiceConfig) -> anyhow::Result<Platform> {
        let auth = cfg.auth();
        let identity = ServiceIdentity::from_file(name, std::path::Path::new(&auth.service_key_file))?;
        let verifier = TokenVerifier::from_config(name, auth)?;
        let issuer = (!auth.token_signing_key_file.is_empty())
            .then(|| TokenIssuer::from_file(std::path::Path::new(&auth.token_signing_key_file), &auth.issuer))
            .transpose()?;
        // Bad TLS material stops start-up before anything is bound or connected.
        let tls = if cfg.tls().enabled { Some(crate::tls::Tls::load(cfg.tls())?) } else { None };
        let listener = crate::server::bind(cfg.server().listen_addr, crate::server::Listener::Grpc).await?;
        let local_addr = listener.local_addr()?;
        let health_listener = match cfg.server().health_listen_addr {
            Some(addr) => Some(crate::server::bind(addr, crate::server::Listener::Health).await?),
            None => None,
        };
        let health_addr = health_listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let admin_listener = crate::server::bind(cfg.admin().listen_addr, crate::server::Listener::Admin).await?;
        let admin_addr = admin_listener.local_addr()?;
        let db = crate::db::connect::<M>(cfg.database()).await?;
        let redis = RedisHandle::new(&cfg.redis().url)?;
        let mut outbox = Outbox::new(db.clone());
        if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            // One more, held by the relay's LISTEN for other replicas' wake-ups.
            let relay_connections = cfg.outbox().relay_connections.max(1) + 1;
            let relay = DatabaseConfig {
                migrate: false,
                max_connections: relay_connections,
                min_connections: cfg.database().min_connections.min(relay_connections),
                ..cfg.database().clone()
            };
            outbox = outbox.with_relay_connections(crate::db::connect::<M>(&relay).await?);
        }
        let probe = match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                crate::db::connect::<M>(&DatabaseConfig {
                    migrate: false,
                    max_connections: 1,
                    min_connections: cfg.database().min_connections.min(1),
                    ..cfg.database().clone()
                })
                .await?
            }
            _ => db.clone(),
        };
        Ok(Platform {
            listener,
            local_addr,
            health_listener,
            health_addr,
            tls,
            admin_listener,
            admin_addr,
            db,
            redis,
            identity,
            verifier,
            issuer,
            outbox,
            revocations: Revocations::default(),
            probe,
            grace: Duration::from_secs(cfg.server().shutdown_grace_secs),
            server: cfg.server().clone(),
            retention: cfg.retention().clone(),
            retention_rules: Vec::new(),
        })
    }

    /// The layer that authenticates every call to this service and guards its internal RPCs.
    pub fn access(&self) -> crate::access::AccessLayer {
        crate::access::AccessLayer::new(self.verifier.clone(), self.revocations.clone())
    }

    /// What calls to `https://` peers use (with `peers::connect`): this service's certificate
    /// and the CA, following reloads. `None` when `[tls]` is off.
    pub fn client_tls(&self) -> Option<crate::tls::ClientTls> {
        self.tls.as_ref().map(crate::tls::Tls::client)
    }

    /// Adds the service's own data classes to what the retention job prunes (the inbox is
    /// every service's already).
    pub fn retain(&mut self, rules: impl IntoIterator<Item = crate::retention::Rule>) {
        self.retention_rules.extend(rules);
    }

    /// A channel to the peer service `peer` at `url`: each call proves this service to that
    /// peer alone, over TLS when `[tls]` is on, and gives up after `call_timeout`.
    pub fn peer(&self, peer: &str, url: &str, call_timeout: Duration) -> anyhow::Result<crate::peers::PeerChannel> {
        crate::peers::connect(url, self.identity.credentials_for(peer), call_timeout, self.client_tls())
    }

    pub fn dependencies(&self) -> Dependencies {
        Dependencies { db: self.probe.clone(), redis: self.redis.clone(), revocations: self.revocations.clone() }
    }

    /// Runs the service until `shutdown`: its outbox relay in the background, `routes` (named
    /// `service_names` for health and reflection) on the listener; then drains and stops the relay.
    pub async fn serve(
        self,
        routes: tonic::service::Routes,
        service_names: &[&'static str],
        relay: crate::outbox::Relay,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        tracing::info!(
            addr = %self.local_addr,
            admin = %self.admin_addr,
            health = ?self.health_addr,
            tls = self.tls.is_some(),
            client_auth = ?self.tls.as_ref().map(|t| t.settings().client_auth),
            services = ?service_names,
            "listening"
        );
        let deps = self.dependencies();
        let access = self.access();
        let admin = tokio::spawn(crate::metrics::serve(self.admin_listener, shutdown.clone()));
        let relay = tokio::spawn(relay.run(shutdown.clone()));
        let revocations = self.revocations.spawn_refresh(self.redis.clone(), shutdown.clone());
        let tls_reload = self.tls.as_ref().map(|tls| tls.spawn_reload(shutdown.clone()));
        let statistics =
            crate::db::spawn_statistics_keeper(self.db.clone(), crate::db::STATISTICS_CHECK, shutdown.clone());
        let mut rules = vec![crate::retention::inbox_rule(&self.retention)];
        rules.extend(self.retention_rules);
        let retention = crate::retention::spawn(
            self.db.clone(),
            rules,
            Duration::from_secs(self.retention.interval_secs),
            shutdown.clone(),
        );
        // Every service offers its operators its outbox's dead letters.
        let routes = routes.add_service(crs_proto::admin::outbox_admin_service_server::OutboxAdminServiceServer::new(
            crate::dead_letters::OutboxAdmin::new(self.outbox.clone()),
        ));
        let mut names = service_names.to_vec();
        names.push(<crs_proto::admin::outbox_admin_service_server::OutboxAdminServiceServer<crate::dead_letters::OutboxAdmin> as tonic::server::NamedService>::NAME);
        let served = crate::server::serve(
            routes,
            &names,
            crate::server::Served {
                listener: self.listener,
                access,
                deps,
                limits: self.server.clone(),
                tls: self.tls.clone(),
                health_listener: self.health_listener,
            },
            shutdown.clone(),
            self.grace,
        )
        .await;
        shutdown.cancel();
        let _ = relay.await;
        let _ = revocations.await;
        let _ = retention.await;
        let _ = statistics.await;
        if let Some(reload) = tls_reload {
            let _ = reload.await;
        }
        let _ = admin.await;
        served
    }
}

/// Runs a service binary: loads configuration (defaults → `--config`/`CRS_CONFIG` file →
/// `CRS_*` environment), sets up telemetry, runs `serve` until SIGTERM/SIGINT, flushes telemetry.
/// Bad configuration exits with status 2 and a message naming what is wrong.
///
/// Two flags stop short of serving: `--check-config` loads and checks the configuration, prints
/// `configuration OK` and exits 0 (or names the problem and exits 2) without connecting to
/// anything; `--migrate-only` connects to the database, applies pending migrations and exits.
/// Both together check only what migrating needs.
pub fn run_service<C, F, Fut>(service_name: &str, defaults: &str, serve: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    crate::server::take_inherited_listeners();
    let env: HashMap<String, String> = std::env::vars().collect();
    let flags: Vec<String> = std::env::args().skip(1).collect();
    let mode = Mode::from_args(&flags);
    let file = crate::config::file_from_args_or_env(&env);
    let cfg: C = match crate::config::load(&[crate::config::PLATFORM_DEFAULTS, defaults], file.as_deref(), &env) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("crs-{service_name}: {e:#}");
            return ExitCode::from(2);
        }
    };
    if mode.check_only || mode.migrate_only {
        if let Err(e) = check(&cfg, mode.migrate_only) {
            eprintln!("crs-{service_name}: {e:#}");
            return ExitCode::from(2);
        }
        if mode.check_only {
            println!("configuration OK");
            return ExitCode::SUCCESS;
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crs-{service_name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if mode.migrate_only {
        return match runtime.block_on(migrate::<C::Migrator>(cfg.database())) {
            Ok(applied) => {
                println!("crs-{service_name}: database up to date ({applied} pending migrations applied)");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("crs-{service_name}: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    runtime.block_on(async move {
        let telemetry = match crate::telemetry::init(&format!("crs-{service_name}"), cfg.telemetry(), &env) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("crs-{service_name}: {e:#}");
                return ExitCode::from(2);
            }
        };
        let shutdown = CancellationToken::new();
        crate::server::cancel_on_signals(shutdown.clone());
        let result = serve(cfg, shutdown).await;
        let code = match result {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "service failed");
                eprintln!("crs-{service_name}: {e:#}");
                ExitCode::FAILURE
            }
        };
        telemetry.shutdown();
        code
    })
}

/// The flags that make a service binary do something other than serve.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Mode {
    check_only: bool,
    migrate_only: bool,
}

impl Mode {
    fn from_args(args: &[String]) -> Mode {
        Mode {
            check_only: args.iter().any(|a| a == "--check-config"),
            migrate_only: args.iter().any(|a| a == "--migrate-only"),
        }
    }
}

/// What `--check-config` verifies: everything serving needs from the configuration, or, for
/// `--migrate-only`, the database section alone (a migration job holds no signing key).
pub fn check(cfg: &impl ServiceConfig, migrate_only: bool) -> anyhow::Result<()> {
    if migrate_only { check_database(cfg.database()) } else { cfg.check() }
}

/// Connects, applies the pending migrations of `M` and answers how many there were.
async fn migrate<M: MigratorTrait>(database: &DatabaseConfig) -> anyhow::Result<usize> {
    let db =
        crate::db::connect::<M>(&DatabaseConfig { migrate: false, min_connections: 0, ..database.clone() }).await?;
    let pending = M::get_pending_migrations(&db).await.map_err(|e| anyhow::anyhow!("cannot read migrations: {e}"))?;
    M::up(&db, None).await.map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
    crate::db::refresh_statistics(&db).await?;
    let _ = db.close().await;
    Ok(pending.len())
}

/// Checks the sections every service shares: distinct listen addresses, the database and Redis
/// URLs, the keys (read and parsed as at start-up), the log filter, the OTLP endpoint, the
/// outbox's numbers and, when enabled, the TLS files (readable, PEM, the key matching the
/// certificate, the certificate valid today under the CA).
pub fn check_shared(cfg: &impl ServiceConfig) -> anyhow::Result<()> {
    let (grpc, admin) = (cfg.server().listen_addr, cfg.admin().listen_addr);
    anyhow::ensure!(
        grpc.port() == 0 || grpc != admin,
        "server.listen_addr and admin.listen_addr are both {grpc}; give them different ports"
    );
    if let Some(health) = cfg.server().health_listen_addr {
        anyhow::ensure!(
            health.port() == 0 || (health != grpc && health != admin),
            "server.health_listen_addr {health} is taken by server.listen_addr or admin.listen_addr; give it its own port"
        );
    }
    crate::tls::check(cfg.tls())?;
    check_database(cfg.database())?;
    check_url("redis.url", &cfg.redis().url, &["redis", "rediss"])?;
    RedisHandle::new(&cfg.redis().url)?;
    crate::auth::check_config(cfg.auth())?;
    let telemetry = cfg.telemetry();
    tracing_subscriber::EnvFilter::try_new(&telemetry.log_filter)
        .map_err(|e| anyhow::anyhow!("invalid telemetry.log_filter {:?}: {e}", telemetry.log_filter))?;
    if let Some(endpoint) = telemetry.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        check_url("telemetry.otlp_endpoint", endpoint, &["http", "https"])?;
    }
    let outbox = cfg.outbox();
    anyhow::ensure!(outbox.batch_size >= 1, "outbox.batch_size must be at least 1");
    anyhow::ensure!(outbox.batches_in_flight >= 1, "outbox.batches_in_flight must be at least 1");
    for (key, ms) in [
        ("outbox.poll_interval_ms", outbox.poll_interval_ms),
        ("outbox.lease_ms", outbox.lease_ms),
        ("outbox.call_timeout_ms", outbox.call_timeout_ms),
    ] {
        anyhow::ensure!(ms > 0, "{key} must be positive");
    }
    anyhow::ensure!(
        outbox.initial_backoff_ms <= outbox.max_backoff_ms,
        "outbox.initial_backoff_ms ({}) exceeds outbox.max_backoff_ms ({})",
        outbox.initial_backoff_ms,
        outbox.max_backoff_ms
    );
    cfg.retention().check(outbox.max_age_secs)
}

/// The database section: a `sqlite:` or `postgres:` URL and a usable pool size.
pub fn check_database(database: &DatabaseConfig) -> anyhow::Result<()> {
    if !database.url.starts_with("sqlite:") {
        check_url("database.url", &database.url, &["sqlite", "postgres", "postgresql"])?;
    }
    anyhow::ensure!(database.max_connections >= 1, "database.max_connections must be at least 1");
    Ok(())
}

/// A peer's address (`peers.*`): an `http:` or `https:` URL.
pub fn check_peer(key: &str, url: &str) -> anyhow::Result<()> {
    check_url(key, url, &["http", "https"])
}

/// Checks that `key`'s `value` is a URL with one of `schemes` and a host. Messages show the URL
/// without its password, and not at all when it does not parse (it may hold one).
pub fn check_url(key: &str, value: &str, schemes: &[&str]) -> anyhow::Result<()> {
    let url = url::Url::parse(value).map_err(|e| anyhow::anyhow!("{key} is not a valid URL: {e}"))?;
    let wanted = schemes.iter().map(|s| format!("{s}:")).collect::<Vec<_>>().join(" or ");
    anyhow::ensure!(schemes.contains(&url.scheme()), "{key} must be a {wanted} URL, not {}", crate::db::redact(value));
    anyhow::ensure!(url.host_str().is_some_and(|h| !h.is_empty()), "{key} names no host: {}", crate::db::redact(value));
    Ok(())
}

/// Implements [`ServiceConfig`] for a struct with the shared sections as fields (`server`,
/// `admin`, `database`, `redis`, `auth`, `telemetry`, `outbox`, `tls`):
/// `impl_service_config!(Config, migrator = migration::Migrator)`, optionally followed by
/// `check = Config::check_own`, a `fn(&Config) -> anyhow::Result<()>` for the service's own
/// sections, run after the shared checks.
#[macro_export]
macro_rules! impl_service_config {
    ($ty:ty, migrator = $migrator:ty) => {
        $crate::impl_service_config!(@impl $ty, $migrator, {});
    };
    ($ty:ty, migrator = $migrator:ty, check = $check:path) => {
        $crate::impl_service_config!(@impl $ty, $migrator, {
            fn check(&self) -> ::anyhow::Result<()> {
                $crate::app::check_shared(self)?;
                $check(self)
            }
        });
    };
    (@impl $ty:ty, $migrator:ty, { $($check:tt)* }) => {
        impl $crate::app::ServiceConfig for $ty {
            type Migrator = $migrator;
            fn server(&self) -> &$crate::config::ServerConfig {
                &self.server
            }
            fn admin(&self) -> &$crate::config::AdminConfig {
                &self.admin
            }
            fn database(&self) -> &$crate::config::DatabaseConfig {
                &self.database
            }
            fn redis(&self) -> &$crate::config::RedisConfig {
                &self.redis
            }
            fn auth(&self) -> &$crate::config::AuthConfig {
                &self.auth
            }
            fn telemetry(&self) -> &$crate::config::TelemetryConfig {
                &self.telemetry
            }
            fn outbox(&self) -> &$crate::config::OutboxConfig {
                &self.outbox
            }
            fn tls(&self) -> &$crate::config::TlsConfig {
                &self.tls
            }
            fn retention(&self) -> &$crate::retention::RetentionConfig {
                &self.retention
            }
            $($check)*
        }
    };
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use sea_orm_migration::MigrationTrait;
    use serde::Deserialize;

    use super::*;

    struct NoMigrations;

    impl MigratorTrait for NoMigrations {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            Vec::new()
        }
    }

    /// A service with the shared sections and one peer, checked like a real one.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TestConfig {
        server: ServerConfig,
        admin: AdminConfig,
        database: DatabaseConfig,
        redis: RedisConfig,
        auth: AuthConfig,
        telemetry: TelemetryConfig,
        outbox: OutboxConfig,
        tls: TlsConfig,
        retention: crate::retention::RetentionConfig,
        peers: TestPeers,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TestPeers {
        next: String,
    }

    crate::impl_service_config!(TestConfig, migrator = NoMigrations, check = TestConfig::check_own);

    impl TestConfig {
        fn check_own(&self) -> anyhow::Result<()> {
            check_peer("peers.next", &self.peers.next)
        }
    }

    const DEFAULTS: &str = r#"
        [server]
        listen_addr = "127.0.0.1:50051"
        [admin]
        listen_addr = "127.0.0.1:9101"
        [database]
        url = "sqlite://data/test.db?mode=rwc"
        [peers]
        next = "http://127.0.0.1:50052"
    "#;

    /// A deployment's key set in a fresh directory.
    fn key_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("crs-check-{}", uuid::Uuid::new_v4()));
        crate::keys::write_key_set(&dir).unwrap();
        dir
    }

    /// Loads as `run_service` does (defaults, then `env`, with a fresh key set unless `env` names
    /// the files) and checks as `--check-config` does.
    fn check_with(env: &[(&str, &str)], migrate_only: bool) -> anyhow::Result<()> {
        let keys = key_dir();
        let mut env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let file = |name: &str| keys.join(name).display().to_string();
        env.entry("CRS_AUTH__SERVICE_KEY_FILE".into()).or_insert_with(|| file("triage.key"));
        env.entry("CRS_AUTH__TOKEN_PUBLIC_KEY_FILES".into()).or_insert_with(|| format!("[\"{}\"]", file("tokens.pub")));
        env.entry("CRS_AUTH__SERVICE_PUBLIC_KEYS_DIR".into()).or_insert_with(|| keys.display().to_string());
        let cfg: TestConfig = crate::config::load(&[crate::config::PLATFORM_DEFAULTS, DEFAULTS], None, &env)?;
        check(&cfg, migrate_only)
    }

    fn problem(env: &[(&str, &str)]) -> String {
        format!("{:#}", check_with(env, false).expect_err("the check should refuse this configuration"))
    }

    #[test]
    fn a_complete_configuration_passes() {
        check_with(&[], false).unwrap();
        check_with(
            &[
                ("CRS_DATABASE__URL", "postgres://crs:secret@db.example:5432/crs_intake"),
                ("CRS_REDIS__URL", "redis://:secret@redis.example:6380/0"),
                ("CRS_TELEMETRY__OTLP_ENDPOINT", "http://collector.observability:4317"),
                ("CRS_PEERS__NEXT", "https://triage.crs.svc:50051"),
            ],
            false,
        )
        .unwrap();
    }

    #[test]
    fn an_unknown_key_is_refused_while_loading() {
        let err = check_with(&[("CRS_SERVER__LISTEN_ADR", "0.0.0.0:1")], false).unwrap_err();
        assert!(format!("{err:#}").contains("listen_adr"), "{err:#}");
    }

    #[test]
    fn key_files_must_be_readable_ed25519_keys_of_the_right_half() {
        let missing = std::env::temp_dir().join(format!("crs-missing-{}", uuid::Uuid::new_v4()));
        let missing = missing.display().to_string();
        let err = problem(&[("CRS_AUTH__SERVICE_KEY_FILE", &missing)]);
        assert!(err.contains("auth.service_key_file") && err.contains(&missing), "{err}");
        let keys = key_dir();
        // A public key where the private one belongs, and the other way round.
        let public = keys.join("triage.pub").display().to_string();
        assert!(problem(&[("CRS_AUTH__SERVICE_KEY_FILE", &public)]).contains("auth.service_key_file"));
        let private = format!("[\"{}\"]", keys.join("tokens.key").display());
        assert!(problem(&[("CRS_AUTH__TOKEN_PUBLIC_KEY_FILES", &private)]).contains("auth.token_public_key_files"));
        let not_a_key = keys.join("garbage.key");
        std::fs::write(&not_a_key, "k".repeat(48)).unwrap();
        let not_a_key = not_a_key.display().to_string();
        assert!(problem(&[("CRS_AUTH__TOKEN_SIGNING_KEY_FILE", &not_a_key)]).contains("auth.token_signing_key_file"));
    }

    #[test]
    fn urls_need_their_schemes_and_passwords_stay_hidden() {
        let err = problem(&[("CRS_DATABASE__URL", "mysql://crs:hunter2@db/crs")]);
        assert!(err.contains("database.url") && err.contains("postgres:"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(problem(&[("CRS_DATABASE__URL", "not a url")]).contains("database.url"));
        assert!(problem(&[("CRS_REDIS__URL", "http://127.0.0.1:6379")]).contains("redis.url"));
        assert!(problem(&[("CRS_PEERS__NEXT", "ftp://triage:50052")]).contains("peers.next"));
        assert!(problem(&[("CRS_PEERS__NEXT", "triage:50052")]).contains("peers.next"));
        assert!(problem(&[("CRS_TELEMETRY__OTLP_ENDPOINT", "collector:4317")]).contains("telemetry.otlp_endpoint"));
    }

    #[test]
    fn other_shared_settings_are_checked() {
        assert!(problem(&[("CRS_TELEMETRY__LOG_FILTER", "info,[")]).contains("telemetry.log_filter"));
        assert!(problem(&[("CRS_ADMIN__LISTEN_ADDR", "127.0.0.1:50051")]).contains("different ports"));
        assert!(problem(&[("CRS_DATABASE__MAX_CONNECTIONS", "0")]).contains("database.max_connections"));
        assert!(problem(&[("CRS_OUTBOX__INITIAL_BACKOFF_MS", "60000")]).contains("outbox.initial_backoff_ms"));
    }

    #[test]
    fn tls_files_are_checked_when_tls_is_on() {
        let ca = crate::tls::tests::Ca::new("ca");
        let (cert, key) = ca.issue();
        let tls = crate::tls::tests::files(&cert, &key, &ca.pem);
        let on = [
            ("CRS_TLS__ENABLED", "true"),
            ("CRS_TLS__CERT_FILE", tls.cert_file.as_str()),
            ("CRS_TLS__KEY_FILE", tls.key_file.as_str()),
            ("CRS_TLS__CA_FILE", tls.ca_file.as_str()),
        ];
        check_with(&on, false).unwrap();
        check_with(&[&on[..], &[("CRS_TLS__CLIENT_AUTH", "required")]].concat(), false).unwrap();
        let err = problem(&[&on[..], &[("CRS_TLS__CLIENT_AUTH", "sometimes")]].concat());
        assert!(err.contains("sometimes") && err.contains("required"), "{err}");
        assert!(problem(&[("CRS_TLS__ENABLED", "true")]).contains("tls.cert_file is not set"));
        let (_, other_key) = ca.issue();
        let other_key_file = format!("{}.other", tls.key_file);
        std::fs::write(&other_key_file, other_key).unwrap();
        let err = problem(&[&on[..], &[("CRS_TLS__KEY_FILE", other_key_file.as_str())]].concat());
        assert!(err.contains("is not the private key"), "{err}");
        // Off, the files are not read.
        check_with(&[("CRS_TLS__CERT_FILE", "/nonexistent")], false).unwrap();
        let err = problem(&[&on[..], &[("CRS_SERVER__HEALTH_LISTEN_ADDR", "127.0.0.1:9101")]].concat());
        assert!(err.contains("server.health_listen_addr"), "{err}");
    }

    #[test]
    fn migrating_needs_only_the_database() {
        let missing = ("CRS_AUTH__SERVICE_KEY_FILE", "/nonexistent/triage.key");
        check_with(&[missing, ("CRS_PEERS__NEXT", "nowhere")], true).unwrap();
        assert!(check_with(&[missing, ("CRS_DATABASE__URL", "mysql://db/crs")], true).is_err());
        assert!(check_with(&[missing], false).is_err());
    }

    #[test]
    fn flags_choose_the_mode() {
        let args = |a: &[&str]| Mode::from_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(args(&["--config", "c.toml"]), Mode::default());
        assert_eq!(args(&["--check-config"]), Mode { check_only: true, migrate_only: false });
        assert_eq!(args(&["--migrate-only", "--check-config"]), Mode { check_only: true, migrate_only: true });
    }
}
