//! CRS notification: tells the agency, the content owner, the enforcement system, on-call and the
//! transparency pipeline what each should know of what happened, over the channels their
//! subscriptions name (signed webhooks, email, the Subscribe stream), and records every delivery.
//!
//! - [`messages`]: who is told of what, and the message each audience receives;
//! - [`subscriptions`]: who is told how, versioned, with sealed webhook secrets;
//! - [`channels`]: one module per channel; [`egress`]: where webhooks may go;
//! - [`scheduler`]: attempts deliveries with per-endpoint lanes, circuit breakers, retries and
//!   dead letters; [`stream`]: the Subscribe stream; [`templates`]: email templates;
//! - [`transparency`]: statements of reasons, Lumen-style notices and the transparency report,
//!   without personal data.

#![forbid(unsafe_code)]

pub mod channels;
pub mod config;
pub mod egress;
pub mod entities;
pub mod error;
pub mod messages;
pub mod metrics;
pub mod migration;
pub mod scheduler;
mod service;
pub mod stream;
pub mod subscriptions;
pub mod templates;
pub mod transparency;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crs_platform::app::Platform;
use crs_platform::secrets::SecretBox;
use crs_proto::notification::notification_internal_service_server::NotificationInternalServiceServer;
use crs_proto::notification::notification_service_server::NotificationServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub use config::{Config, DEFAULTS};
pub use service::Notifications;

pub struct Application {
    platform: Platform,
    notifications: Notifications,
    scheduler: scheduler::Scheduler,
    relay: crs_platform::outbox::Relay,
    stopping: CancellationToken,
}

impl crs_platform::app::Service for Application {
    type Config = Config;
    const NAME: &'static str = "notification";
    const DEFAULTS: &'static str = DEFAULTS;

    async fn build(cfg: Config) -> anyhow::Result<Self> {
        let secrets = SecretBox::from_config("webhooks", &cfg.webhooks.key())?;
        let platform = Platform::start::<migration::Migrator>(Self::NAME, &cfg).await?;
        metrics::register();
        subscriptions::seal_legacy_secrets(&platform.db, &secrets).await?;
        transparency::earlier::record_earlier_decisions(&platform.db).await?;

        let policy = egress::EgressPolicy::from_config(&cfg.delivery, &cfg.webhooks)?;
        let webhook_timeout = Duration::from_millis(cfg.webhooks.timeout_ms);
        let channels = channels::Channels::new(vec![
            Arc::new(channels::webhook::Webhooks::new(policy, secrets.clone(), webhook_timeout)?),
            Arc::new(channels::email::Email::new(&cfg.email, &cfg.appeal, cfg.delivery.development_mode)?),
            Arc::new(channels::stream::Stream),
        ]);
        let scheduler = scheduler::Scheduler::new(platform.db.clone(), channels.clone(), cfg.delivery.clone());
        let stopping = CancellationToken::new();
        let subscriptions = subscriptions::Subscriptions::new(
            platform.db.clone(),
            channels.clone(),
            secrets,
            cfg.webhooks.rotation_overlap_secs,
            scheduler.clone(),
        );
        let notifications = Notifications::new(
            platform.db.clone(),
            channels,
            subscriptions,
            scheduler.clone(),
            stream::Stream::new(platform.db.clone(), stopping.clone()),
            cfg.appeal.clone(),
            transparency::Transparency::new(platform.db.clone(), cfg.transparency.clone()),
        );
        // Notification hands nothing to other services; deliveries have their own scheduler.
        let relay = platform.outbox.relay(Self::NAME, cfg.outbox.clone(), []);
        Ok(Self { platform, notifications, scheduler, relay, stopping })
    }

    fn local_addr(&self) -> SocketAddr {
        self.platform.local_addr
    }

    fn admin_addr(&self) -> SocketAddr {
        self.platform.admin_addr
    }

    async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application { platform, notifications, scheduler, relay, stopping } = self;
        let routes =
            tonic::service::Routes::new(crs_platform::bounded!(NotificationServiceServer::new(notifications.clone())))
                .add_service(crs_platform::bounded!(NotificationInternalServiceServer::new(notifications)));
        let names = [
            <NotificationServiceServer<Notifications> as NamedService>::NAME,
            <NotificationInternalServiceServer<Notifications> as NamedService>::NAME,
        ];
        let deliveries = tokio::spawn(scheduler.run(shutdown.clone()));
        let streams = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                stopping.cancel();
            })
        };
        let served = platform.serve(routes, &names, relay, shutdown.clone()).await;
        shutdown.cancel();
        let _ = deliveries.await;
        let _ = streams.await;
        served
    }
}
