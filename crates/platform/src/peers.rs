//! Clients for calling other CRS services: lazy channels (a peer that is down delays work, it
//! does not stop start-up) carrying this service's credentials, with a CLIENT span per call that
//! carries the trace to the peer. An `https://` peer is called over mutual TLS with the
//! service's [`ClientTls`], which follows certificate rotation without a restart. Every
//! connection is opened by [`connect_tcp`], which refuses one the kernel made to itself.

use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
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
            Ok(endpoint.connect_with_connector_lazy(PlainConnector))
        }
    }
}

/// Opens a TCP connection to `host:port` for calls to a peer, with Nagle off, and refuses one
/// the kernel connected to itself.
///
/// On Linux, a connection to a local port inside the ephemeral range (32768–60999) where
/// nothing listens may be given that same port for its own end, and then connects to itself.
/// A relay retrying a stopped peer on such a port (the conventional gRPC ports 50051–50054
/// are) would hold the peer's port, and the peer could not listen on it when it comes back:
/// not while the connection is open, nor for a minute after it closes normally (its
/// `TIME-WAIT`). Such a connection is reset instead, which frees the port at once, and the
/// attempt fails as a refused one does.
pub async fn connect_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let stream = refuse_self_connection(TcpStream::connect((host, port)).await?)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `stream`, or an error if its two ends are the same address, having reset it (see
/// [`connect_tcp`]).
fn refuse_self_connection(stream: TcpStream) -> io::Result<TcpStream> {
    let peer = stream.peer_addr()?;
    if stream.local_addr()? != peer {
        return Ok(stream);
    }
    // Closed with a reset, the connection leaves no TIME-WAIT behind holding the port.
    stream.set_zero_linger()?;
    drop(stream);
    Err(io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("{peer}: the connection reached itself; nothing listens there"),
    ))
}

/// The host (without an IPv6 address's brackets) and port `uri` names, `default_port` when it
/// names none.
pub fn host_and_port(uri: &http::Uri, default_port: u16) -> io::Result<(String, u16)> {
    let host = uri.host().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} names no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    Ok((host, uri.port_u16().unwrap_or(default_port)))
}

/// Opens plaintext connections to peers with [`connect_tcp`], for
/// `Endpoint::connect_with_connector_lazy`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainConnector;

impl tower::Service<http::Uri> for PlainConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<Self::Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(async move {
            let (host, port) = host_and_port(&uri, 80)?;
            Ok(TokioIo::new(connect_tcp(&host, port).await?))
        })
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

#[cfg(test)]
mod tests {
    use tokio::net::{TcpListener, TcpSocket};

    use super::*;

    /// A socket bound to a port and connected to that same port: what the kernel may make of a
    /// connection to a local port nobody listens on.
    async fn connected_to_itself() -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let own = socket.local_addr().unwrap();
        socket.connect(own).await.unwrap()
    }

    #[tokio::test]
    async fn a_connection_to_itself_is_refused_and_leaves_the_port_free() {
        let stream = connected_to_itself().await;
        let port = stream.local_addr().unwrap().port();
        // While it lives, the service that owns the port cannot listen on it.
        let taken = TcpListener::bind(("127.0.0.1", port)).await.expect_err("the port is held");
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);

        let refused = refuse_self_connection(stream).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        assert!(refused.to_string().contains(&format!("127.0.0.1:{port}")), "{refused}");
        TcpListener::bind(("127.0.0.1", port)).await.expect("the service can listen on its port again at once");
    }

    /// Closed the ordinary way, the same connection keeps the port from its service: what
    /// [`refuse_self_connection`] avoids.
    #[tokio::test]
    async fn a_connection_to_itself_closed_the_ordinary_way_keeps_holding_the_port() {
        let stream = connected_to_itself().await;
        let port = stream.local_addr().unwrap().port();
        drop(stream);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let taken = TcpListener::bind(("127.0.0.1", port)).await.expect_err("TIME-WAIT holds the port");
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn a_listening_peer_is_connected_to_with_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = connect_tcp("127.0.0.1", port).await.unwrap();
        assert!(stream.nodelay().unwrap());
        assert_eq!(stream.peer_addr().unwrap(), listener.local_addr().unwrap());
        assert!(refuse_self_connection(stream).is_ok());
    }

    #[test]
    fn hosts_and_ports_are_read_from_the_peer_address() {
        let read = |uri: &str| host_and_port(&uri.parse().unwrap(), 443).unwrap();
        assert_eq!(read("https://triage.crs.svc:50051"), ("triage.crs.svc".to_owned(), 50051));
        assert_eq!(read("https://[::1]:8443"), ("::1".to_owned(), 8443));
        assert_eq!(read("https://triage.crs.svc"), ("triage.crs.svc".to_owned(), 443));
    }
}
