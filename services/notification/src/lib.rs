//! CRS notification: tells the agency, the content owner, the enforcement system and on-call
//! what happened, by signed webhooks with retries, and records every delivery.

#![forbid(unsafe_code)]

pub mod config;
pub mod entities;
pub mod error;
pub mod migration;
mod service;
mod webhook;

use std::net::SocketAddr;
use std::time::Duration;

use crs_platform::app::Platform;
use crs_proto::notification::notification_internal_service_server::NotificationInternalServiceServer;
use crs_proto::notification::notification_service_server::NotificationServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub use config::{Config, DEFAULTS, WebhookConfig};
pub use service::Notifications;

pub struct Application {
    platform: Platform,
    notifications: Notifications,
    relay: crs_platform::outbox::Relay,
}

impl crs_platform::app::Service for Application {
    type Config = Config;
    const NAME: &'static str = "notification";
    const DEFAULTS: &'static str = DEFAULTS;

    async fn build(cfg: Config) -> anyhow::Result<Self> {
        let platform = Platform::start::<migration::Migrator>(Self::NAME, &cfg).await?;
        let sender = webhook::Sender::new(platform.db.clone(), Duration::from_millis(cfg.webhooks.timeout_ms))?;
        // Deliveries travel through this service's own outbox: the same claim, lease and
        // backoff as every hand-off, so a restart loses none and repeats none that succeeded.
        let relay = platform.outbox.relay(Self::NAME, cfg.outbox.clone(), [(webhook::TOPIC, sender.handler())]);
        let notifications = Notifications::new(platform.db.clone(), platform.outbox.clone());
        Ok(Self { platform, notifications, relay })
    }

    fn local_addr(&self) -> SocketAddr {
        self.platform.local_addr
    }

    fn admin_addr(&self) -> SocketAddr {
        self.platform.admin_addr
    }

    async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application { platform, notifications, relay } = self;
        let routes =
            tonic::service::Routes::new(crs_platform::bounded!(NotificationServiceServer::new(notifications.clone())))
                .add_service(crs_platform::bounded!(NotificationInternalServiceServer::new(notifications)));
        let names = [
            <NotificationServiceServer<Notifications> as NamedService>::NAME,
            <NotificationInternalServiceServer<Notifications> as NamedService>::NAME,
        ];
        platform.serve(routes, &names, relay, shutdown).await
    }
}
