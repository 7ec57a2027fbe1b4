//! CRS legal review: cases wait in queues by priority and deadline; reviewers take them and
//! decide item by item; decisions that need it wait for a second, senior reviewer; every action
//! is recorded in a hash-chained audit trail; each outcome is handed to notification and to
//! intake's projection.
//!
//! - `grpc`: the RPCs; `commands`: what each case command stores and causes; `service`: the
//!   reading side (cases, queues, audit trail); `store` and `views`: rows in and out;
//! - `merges`: one piece of content under review once per jurisdiction; requests merged into
//!   a case and answered by its decision;
//! - `audit`: the trail; `sla`: what the SLA clock does to a case; `relay`: the hand-offs.

#![forbid(unsafe_code)]

mod audit;
mod commands;
pub mod config;
pub mod entities;
pub mod error;
mod grpc;
mod merges;
mod metrics;
pub mod migration;
mod relay;
mod retention;
mod service;
mod sla;
mod store;
mod views;

use std::net::SocketAddr;
use std::time::Duration;

use crs_platform::app::Platform;
use crs_proto::review::legal_review_internal_service_server::LegalReviewInternalServiceServer;
use crs_proto::review::legal_review_service_server::LegalReviewServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub use config::{Config, DEFAULTS};
pub use service::LegalReview;

pub struct Application {
    platform: Platform,
    review: LegalReview,
    relay: crs_platform::outbox::Relay,
    sweeper: crs_timers::sweeper::Sweeper,
    queue_metrics: Duration,
}

impl crs_platform::app::Service for Application {
    type Config = Config;
    const NAME: &'static str = "legal-review";
    const DEFAULTS: &'static str = DEFAULTS;

    async fn build(cfg: Config) -> anyhow::Result<Self> {
        let approval = cfg.review.approval.policy()?;
        let mut platform = Platform::start::<migration::Migrator>(Self::NAME, &cfg).await?;
        platform.retain(retention::rules(&cfg.retention));
        let timeout = Duration::from_millis(cfg.outbox.call_timeout_ms);
        let intake = platform.peer("intake", &cfg.peers.intake, timeout)?;
        let notification = platform.peer("notification", &cfg.peers.notification, timeout)?;
        let triage = platform.peer("triage", &cfg.peers.triage, timeout)?;
        let relay = platform.outbox.relay(Self::NAME, cfg.outbox.clone(), relay::routes(intake, notification, triage));
        let timers = crs_timers::index::TimerIndex::new(platform.redis.clone(), &cfg.timers.key_prefix);
        let queue_metrics = Duration::from_millis(cfg.review.queue_metrics_interval_ms);
        let review =
            LegalReview::new(platform.db.clone(), platform.outbox.clone(), timers.clone(), cfg.review, approval);
        let sweeper = crs_timers::sweeper::Sweeper::new(
            platform.db.clone(),
            timers,
            std::sync::Arc::new(sla::SlaHandler { review: review.clone() }),
            crs_timers::sweeper::SweeperConfig {
                batch: cfg.timers.batch,
                lease_ms: cfg.timers.lease_ms,
                ..Default::default()
            },
        );
        Ok(Self { platform, review, relay, sweeper, queue_metrics })
    }

    fn local_addr(&self) -> SocketAddr {
        self.platform.local_addr
    }

    fn admin_addr(&self) -> SocketAddr {
        self.platform.admin_addr
    }

    async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application { platform, review, relay, sweeper, queue_metrics } = self;
        // Start from a complete index: rebuild it from the database (Redis may have lost it).
        if let Err(e) = sweeper.rebuild().await {
            tracing::warn!(error = %e, "cannot rebuild the SLA timer index now; the sweeper will when Redis answers");
        }
        let sweeping = tokio::spawn(sweeper.run(shutdown.clone()));
        let mut known = review.cfg.queues.clone();
        known.push(review.cfg.escalation_queue.clone());
        let queues = tokio::spawn(metrics::watch_queues(platform.db.clone(), known, queue_metrics, shutdown.clone()));
        // Stopped after the server has drained, so the last commands' entries are sealed too.
        let sealing_done = CancellationToken::new();
        let sealing = tokio::spawn(audit::run_sealer(platform.db.clone(), sealing_done.clone()));
        let routes = tonic::service::Routes::new(crs_platform::bounded!(LegalReviewServiceServer::new(review.clone())))
            .add_service(crs_platform::bounded!(LegalReviewInternalServiceServer::new(review)));
        let names = [
            <LegalReviewServiceServer<LegalReview> as NamedService>::NAME,
            <LegalReviewInternalServiceServer<LegalReview> as NamedService>::NAME,
        ];
        let served = platform.serve(routes, &names, relay, shutdown).await;
        sealing_done.cancel();
        let _ = sealing.await;
        let _ = sweeping.await;
        let _ = queues.await;
        served
    }
}
