//! The CRS command-line client as a library: its commands ([`cli`]), contexts, output and
//! exit codes, authenticated clients for each service, a webhook receiver, the demo that
//! walks one request through the whole suite, and the transparency exports and report.

#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod cmd;
pub mod context;
pub mod demo;
pub mod errors;
pub mod output;
pub mod receiver;
pub mod transparency;
pub mod views;
pub mod vocab;

use std::time::Duration;

use crs_platform::auth::{Principal, TokenIssuer};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Adds a fixed bearer token to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    pub fn new(token: &str) -> anyhow::Result<Self> {
        Ok(Self(format!("Bearer {token}").parse()?))
    }

    /// A token for `principal`, signed by `issuer`, valid for an hour.
    pub fn for_principal(issuer: &TokenIssuer, principal: &Principal) -> anyhow::Result<Self> {
        Self::new(&issuer.issue(principal, 3600)?.token)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

/// A channel to `url` that sends `bearer` with every call.
pub async fn connect(url: &str, bearer: Bearer) -> anyhow::Result<Authed> {
    let channel = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
    Ok(InterceptedService::new(channel, bearer))
}

/// Waits until the service at `url` reports SERVING on `grpc.health.v1`.
pub async fn wait_serving(url: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::from("not reachable");
    while tokio::time::Instant::now() < deadline {
        if let Ok(endpoint) = Endpoint::from_shared(url.to_owned())
            // Each attempt bounded: a socket that accepts but never answers (a process that died
            // behind a listener someone else holds) must not outlast `within`.
            && let Ok(channel) = endpoint
                .connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(2))
                .connect()
                .await
        {
            let mut health = tonic_health_client(channel);
            match health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await {
                Ok(r)
                    if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 =>
                {
                    return Ok(());
                }
                Ok(r) => last = format!("status {}", r.get_ref().status),
                Err(e) => last = e.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{url} did not become SERVING within {within:?} (last: {last})")
}

fn tonic_health_client(channel: Channel) -> tonic_health::pb::health_client::HealthClient<Channel> {
    tonic_health::pb::health_client::HealthClient::new(channel)
}
