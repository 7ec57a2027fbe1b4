//! CRS intake: authenticates agencies, validates and normalises their requests, stores each one
//! with its hand-offs in one transaction, and keeps the agency's view of every request current.
//!
//! - `grpc`: the RPCs; `service`: state shared by the handlers;
//! - `submit`: submissions and idempotency keys; `group_commit`: many submissions to a
//!   transaction; `agency_view`: get and list; `withdraw`;
//!   `information`: answers to reviewers' questions; `projection`: the status legal review
//!   reports; `events`: the agency's history, in commit order; `watch`: the resumable stream;
//! - `agencies`: agencies and credentials; `limits`: rate limits; `validate`: input rules.

#![forbid(unsafe_code)]

pub mod admission;
mod agencies;
mod agency_view;
pub mod config;
pub mod entities;
pub mod error;
mod events;
mod group_commit;
mod grpc;
mod information;
pub mod limits;
mod metrics;
pub mod migration;
mod projection;
mod relay;
mod retention;
mod service;
pub mod submit;
pub mod validate;
mod views;
mod watch;
mod withdraw;

use std::net::SocketAddr;
use std::time::Duration;

use crs_platform::app::Platform;
use crs_proto::intake::agency_admin_service_server::AgencyAdminServiceServer;
use crs_proto::intake::intake_internal_service_server::IntakeInternalServiceServer;
use crs_proto::intake::intake_service_server::IntakeServiceServer;
use crs_proto::review::legal_review_internal_service_client::LegalReviewInternalServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub use config::{Config, DEFAULTS, Limits, Peers};
pub use service::Intake;

/// How often intake re-publishes the revocation list (the other services wait for it at start).
const REPUBLISH_INTERVAL: Duration = Duration::from_secs(5);

/// The intake service, bound and ready to serve.
pub struct Application {
    platform: Platform,
    intake: Intake,
    relay: crs_platform::outbox::Relay,
}

impl crs_platform::app::Service for Application {
    type Config = Config;
    const NAME: &'static str = "intake";
    const DEFAULTS: &'static str = DEFAULTS;

    async fn build(cfg: Config) -> anyhow::Result<Self> {
        cfg.rate_limits.check()?;
        let secrets = crs_platform::secrets::SecretBox::from_config("webhooks", &cfg.webhooks)?;
        let mut platform = Platform::start::<migration::Migrator>(Self::NAME, &cfg).await?;
        platform.retain(retention::rules(&cfg.retention));
        agencies::seal_legacy_secrets(&platform.db, &secrets).await?;
        let timeout = Duration::from_millis(cfg.outbox.call_timeout_ms);
        let triage = platform.peer("triage", &cfg.peers.triage, timeout)?;
        let review = platform.peer("legal-review", &cfg.peers.legal_review, timeout)?;
        let notification = platform.peer("notification", &cfg.peers.notification, timeout)?;
        let relay =
            platform.outbox.relay(Self::NAME, cfg.outbox.clone(), relay::routes(triage, review.clone(), notification));
        let intake = Intake::new(
            platform.db.clone(),
            platform.outbox.clone(),
            platform
                .issuer
                .clone()
                .ok_or_else(|| anyhow::anyhow!("intake issues tokens: set auth.token_signing_key_file"))?,
            platform.redis.clone(),
            platform.revocations.clone(),
            crs_platform::bounded!(LegalReviewInternalServiceClient::new(review)),
            cfg.limits,
            cfg.retention.idempotency_secs,
            cfg.rate_limits.clone(),
            secrets,
            &cfg.group_commit,
            Duration::from_secs(cfg.server.request_timeout_secs),
        );
        // Intake's database is the truth about revocations: known before the first call.
        intake.load_revocations().await?;
        Ok(Self { platform, intake, relay })
    }

    fn local_addr(&self) -> SocketAddr {
        self.platform.local_addr
    }

    fn admin_addr(&self) -> SocketAddr {
        self.platform.admin_addr
    }

    async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application { platform, intake, relay } = self;
        let housekeeping = tokio::spawn(housekeeping(intake.clone(), shutdown.clone()));
        let routes = tonic::service::Routes::new(crs_platform::bounded!(IntakeServiceServer::new(intake.clone())))
            .add_service(crs_platform::bounded!(AgencyAdminServiceServer::new(intake.clone())))
            .add_service(crs_platform::bounded!(IntakeInternalServiceServer::new(intake)));
        let names = [
            <IntakeServiceServer<Intake> as NamedService>::NAME,
            <AgencyAdminServiceServer<Intake> as NamedService>::NAME,
            <IntakeInternalServiceServer<Intake> as NamedService>::NAME,
        ];
        let served = platform.serve(routes, &names, relay, shutdown).await;
        let _ = housekeeping.await;
        served
    }
}

/// Intake's periodic work: keep the revocation list in Redis complete (it may have restarted
/// empty), and end open streams on shutdown.
async fn housekeeping(intake: Intake, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(REPUBLISH_INTERVAL);
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
    }
}
