//! CRS triage: scores each request's priority, finds content already in an open case, picks the
//! SLA policy that sets its legal deadline, routes it to a review queue, and hands it on.

#![forbid(unsafe_code)]

pub mod assess;
pub mod conditions;
pub mod config;
pub mod entities;
pub mod error;
pub mod migration;
pub mod policies;
mod relay;
pub mod rules;
mod service;
pub mod sla;
pub mod source;

use std::net::SocketAddr;
use std::time::Duration;

use crs_platform::app::Platform;
use crs_proto::triage::triage_internal_service_server::TriageInternalServiceServer;
use crs_proto::triage::triage_service_server::TriageServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub use config::{Config, DEFAULTS, Peers, PolicyConfig};
pub use service::Triage;

pub struct Application {
    platform: Platform,
    triage: Triage,
    relay: crs_platform::outbox::Relay,
    policies: policies::LivePolicies,
}

impl crs_platform::app::Service for Application {
    type Config = Config;
    const NAME: &'static str = "triage";
    const DEFAULTS: &'static str = DEFAULTS;

    async fn build(cfg: Config) -> anyhow::Result<Self> {
        let policies = policies::LivePolicies::new(policies::PolicySet::load(&cfg.policies)?, cfg.policies.clone());
        let platform = Platform::start::<migration::Migrator>(Self::NAME, &cfg).await?;
        let timeout = Duration::from_millis(cfg.outbox.call_timeout_ms);
        let review = platform.peer("legal-review", &cfg.peers.legal_review, timeout)?;
        let relay = platform.outbox.relay(Self::NAME, cfg.outbox.clone(), relay::routes(review));
        let triage = Triage::new(platform.db.clone(), platform.outbox.clone(), policies.clone());
        Ok(Self { platform, triage, relay, policies })
    }

    fn local_addr(&self) -> SocketAddr {
        self.platform.local_addr
    }

    fn admin_addr(&self) -> SocketAddr {
        self.platform.admin_addr
    }

    async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application { platform, triage, relay, policies } = self;
        let reloads = policies.watch(shutdown.clone());
        let routes = tonic::service::Routes::new(crs_platform::bounded!(TriageServiceServer::new(triage.clone())))
            .add_service(crs_platform::bounded!(TriageInternalServiceServer::new(triage)));
        let names = [
            <TriageServiceServer<Triage> as NamedService>::NAME,
            <TriageInternalServiceServer<Triage> as NamedService>::NAME,
        ];
        let served = platform.serve(routes, &names, relay, shutdown).await;
        reloads.abort();
        served
    }
}
