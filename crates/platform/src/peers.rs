//! Clients for calling other CRS services: lazy channels (a peer that is down delays work, it
//! does not stop start-up) carrying this service's credentials, with a CLIENT span per call that
//! carries the trace to the peer. An `https://` peer is called over mutual TLS with the
//! service's [`ClientTls`], which follows certificate rotation without a restart.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument;

use crate::auth::ServiceCredentials;
use crate::tls::ClientTls;

/// A channel to a peer with this service's credentials attached to every call, each call a
/// client span of the current trace.
pub type PeerChannel = ClientTrace<InterceptedService<Channel, ServiceCredentials>>;

/// Opens a lazy channel to `url`: `http://127.0.0.1:50052` in plaintext, or
/// `https://triage.crs.svc:50051` over TLS with `tls` (the service's, from
/// `Platform::client_tls`; required for `https://`).
pub fn connect(
    url: &str,
    credentials: ServiceCredentials,
    call_timeout: Duration,
    tls: Option<ClientTls>,
) -> anyhow::Result<PeerChannel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| anyhow::anyhow!("invalid peer address {url}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(call_timeout)
        .tcp_nodelay(true);
    let peer = endpoint.uri().authority().map(|a| a.to_string()).unwrap_or_default();
    let channel = channel(&endpoint, tls.as_ref())?;
    Ok(ClientTrace { inner: InterceptedService::new(channel, credentials), peer })
}

/// A lazy channel to `endpoint`, whose scheme decides the transport: `http` is plaintext,
/// `https` is TLS with `tls` (each new connection uses the material current at that moment).
pub fn channel(endpoint: &Endpoint, tls: Option<&ClientTls>) -> anyhow::Result<Channel> {
    let uri = endpoint.uri();
    match (uri.scheme_str(), tls) {
        (Some("https"), Some(tls)) => Ok(endpoint.connect_with_connector_lazy(tls.connector())),
        (Some("https"), None) => {
            anyhow::bail!("{uri} is an https:// address: calling it needs [tls] enabled (certificate, key and CA)")
        }
        (_, tls) => {
            if tls.is_some() {
                tracing::warn!(peer = %uri, "[tls] is enabled but this peer's address is http://: calls to it are plaintext");
            }
            Ok(endpoint.connect_lazy())
        }
    }
}

/// Wraps each outgoing call in a CLIENT span with the RPC semantic-convention attributes; the
/// trace context injected into the call's metadata is this span's, so the peer's server span is
/// its child.
#[derive(Clone, Debug)]
pub struct ClientTrace<S> {
    inner: S,
    /// `host:port` of the peer, for `server.address`.
    peer: String,
}

impl<S, B, R> tower::Service<http::Request<B>> for ClientTrace<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().trim_start_matches('/').to_owned();
        let (service, method) = path.split_once('/').unwrap_or((path.as_str(), ""));
        let (address, port) = self.peer.rsplit_once(':').unwrap_or((self.peer.as_str(), ""));
        let span = tracing::info_span!(
            "rpc client",
            otel.name = %path,
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            server.address = %address,
            server.port = port.parse::<i64>().unwrap_or(0),
            rpc.grpc.status_code = tracing::field::Empty,
        );
        // The credentials interceptor runs inside this call and injects the current context.
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let result = future.await;
                if let Ok(response) = &result {
                    // Errors come back "trailers-only", with the status in the headers.
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(0);
                    tracing::Span::current().record("rpc.grpc.status_code", code);
                }
                result
            }
            .instrument(span),
        )
    }
}
