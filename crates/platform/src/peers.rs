//! Clients for calling other CRS services: lazy channels (a peer that is down delays work, it
//! does not stop start-up) carrying this service's credentials and the trace context.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::auth::ServiceCredentials;

/// A channel to a peer with this service's credentials attached to every call.
pub type PeerChannel = InterceptedService<Channel, ServiceCredentials>;

/// Opens a lazy channel to `url` (e.g. `http://127.0.0.1:50052`).
pub fn connect(url: &str, credentials: ServiceCredentials, call_timeout: Duration) -> anyhow::Result<PeerChannel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| anyhow::anyhow!("invalid peer address {url}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(call_timeout)
        .tcp_nodelay(true);
    Ok(InterceptedService::new(endpoint.connect_lazy(), credentials))
}
