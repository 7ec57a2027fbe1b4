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

use crate::auth::TokenAuthority;
use crate::config::{
    AdminConfig, AuthConfig, DatabaseConfig, OutboxConfig, RedisConfig, ServerConfig, TelemetryConfig,
};
use crate::outbox::Outbox;
use crate::redis::RedisHandle;
use crate::revocation::Revocations;
use crate::server::Dependencies;

/// What a service's configuration shares with every other service.
pub trait ServiceConfig: DeserializeOwned {
    fn server(&self) -> &ServerConfig;
    fn admin(&self) -> &AdminConfig;
    fn database(&self) -> &DatabaseConfig;
    fn redis(&self) -> &RedisConfig;
    fn auth(&self) -> &AuthConfig;
    fn telemetry(&self) -> &TelemetryConfig;
    fn outbox(&self) -> &OutboxConfig;
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

/// Connected platform parts: listener bound, database migrated, Redis handle, token authority.
pub struct Platform {
    pub listener: TcpListener,
    pub local_addr: SocketAddr,
    /// The admin HTTP listener (metrics).
    pub admin_listener: TcpListener,
    pub admin_addr: SocketAddr,
    pub db: DatabaseConnection,
    pub redis: RedisHandle,
    pub authority: TokenAuthority,
    pub outbox: Outbox,
    pub revocations: Revocations,
    pub grace: Duration,
}

impl Platform {
    /// Binds, connects and migrates (with the service's migrator `M`).
    pub async fn start<M: MigratorTrait>(cfg: &impl ServiceConfig) -> anyhow::Result<Platform> {
        let listener = crate::server::bind(cfg.server().listen_addr, crate::server::Listener::Grpc).await?;
        let local_addr = listener.local_addr()?;
        let admin_listener = crate::server::bind(cfg.admin().listen_addr, crate::server::Listener::Admin).await?;
        let admin_addr = admin_listener.local_addr()?;
        let db = crate::db::connect::<M>(cfg.database()).await?;
        let redis = RedisHandle::new(&cfg.redis().url)?;
        let authority = TokenAuthority::from_config(cfg.auth())?;
        let outbox = Outbox::new(db.clone());
        Ok(Platform {
            listener,
            local_addr,
            admin_listener,
            admin_addr,
            db,
            redis,
            authority,
            outbox,
            revocations: Revocations::default(),
            grace: Duration::from_secs(cfg.server().shutdown_grace_secs),
        })
    }

    /// The layer that authenticates every call to this service and guards its internal RPCs.
    pub fn access(&self) -> crate::access::AccessLayer {
        crate::access::AccessLayer::new(self.authority.clone(), self.revocations.clone())
    }

    pub fn dependencies(&self) -> Dependencies {
        Dependencies { db: self.db.clone(), redis: self.redis.clone() }
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
        tracing::info!(addr = %self.local_addr, admin = %self.admin_addr, services = ?service_names, "listening");
        let deps = self.dependencies();
        let access = self.access();
        let admin = tokio::spawn(crate::metrics::serve(self.admin_listener, shutdown.clone()));
        let relay = tokio::spawn(relay.run(shutdown.clone()));
        let revocations = self.revocations.spawn_refresh(self.redis.clone(), shutdown.clone());
        let served = crate::server::serve(
            routes,
            service_names,
            crate::server::Served { listener: self.listener, access, deps },
            shutdown.clone(),
            self.grace,
        )
        .await;
        shutdown.cancel();
        let _ = relay.await;
        let _ = revocations.await;
        let _ = admin.await;
        served
    }
}

/// Runs a service binary: loads configuration (defaults → `--config`/`CRS_CONFIG` file →
/// `CRS_*` environment), sets up telemetry, runs `serve` until SIGTERM/SIGINT, flushes telemetry.
/// Bad configuration exits with status 2 and a message naming what is wrong.
pub fn run_service<C, F, Fut>(service_name: &str, defaults: &str, serve: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    crate::server::take_inherited_listeners();
    let env: HashMap<String, String> = std::env::vars().collect();
    let file = crate::config::file_from_args_or_env(&env);
    let cfg: C = match crate::config::load(&[crate::config::PLATFORM_DEFAULTS, defaults], file.as_deref(), &env) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("crs-{service_name}: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crs-{service_name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
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

/// Implements [`ServiceConfig`] for a struct with the six shared sections as fields.
#[macro_export]
macro_rules! impl_service_config {
    ($ty:ty) => {
        impl $crate::app::ServiceConfig for $ty {
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
        }
    };
}
