//! Server bootstrap shared by every service: health (`grpc.health.v1`), reflection, a span per
//! RPC, and graceful shutdown on SIGTERM/SIGINT.
//!
//! Health starts NOT_SERVING and turns SERVING once the database and Redis both answer; it goes
//! back to NOT_SERVING when draining starts, so load balancers stop sending work first. The
//! `liveness` health service answers SERVING for as long as the process runs.
//!
//! With `[tls]` on, the listener speaks only TLS ([`crate::tls`]); `server.health_listen_addr`
//! then adds a plaintext listener serving health alone, for probes that cannot speak TLS.

use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tracing::Instrument;

use crate::redis::RedisHandle;

/// Which of the listeners a parent process may hand over (systemd socket activation order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Grpc = 0,
    Admin = 1,
    /// The plaintext health listener (`server.health_listen_addr`), when configured.
    Health = 2,
}

/// Listeners a parent process handed over (systemd socket activation: `LISTEN_FDS`, the gRPC
/// listener first, the admin listener second, the plaintext health listener third if
/// configured), taken once before any thread starts, because
/// taking them edits the environment.
static INHERITED: std::sync::Mutex<Vec<Option<std::net::TcpListener>>> = std::sync::Mutex::new(Vec::new());

/// Takes the listeners a parent process handed over, if any. Call before starting threads.
pub fn take_inherited_listeners() {
    let mut fds = listenfd::ListenFd::from_env();
    let mut taken = INHERITED.lock().expect("inherited listeners");
    for i in 0..fds.len() {
        taken.push(fds.take_tcp_listener(i).ok().flatten());
    }
}

/// Binds a listener on `addr` (port 0 picks a free port), or uses the one a parent process
/// bound and handed over, so a supervisor or a test can hold the port before the service starts.
pub async fn bind(addr: SocketAddr, which: Listener) -> anyhow::Result<TcpListener> {
    let inherited = INHERITED.lock().expect("inherited listeners").get_mut(which as usize).and_then(Option::take);
    if let Some(listener) = inherited {
        listener.set_nonblocking(true)?;
        return Ok(TcpListener::from_std(listener)?);
    }
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

/// The largest gRPC message any CRS server or client sends or accepts, the same everywhere so
/// that whatever one service accepts, the next one in the flow accepts too.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Applies [`MAX_MESSAGE_BYTES`] both ways to a generated gRPC server or client.
#[macro_export]
macro_rules! bounded {
    ($e:expr) => {
        $e.max_decoding_message_size($crate::server::MAX_MESSAGE_BYTES)
            .max_encoding_message_size($crate::server::MAX_MESSAGE_BYTES)
    };
}

/// What a server serves on: its listener (TLS when `tls` is set), its access layer, the
/// dependencies readiness watches, its bounds, and the optional plaintext listener for health
/// alone.
pub struct Served {
    pub listener: TcpListener,
    pub access: crate::access::AccessLayer,
    pub deps: Dependencies,
    pub limits: crate::config::ServerConfig,
    pub tls: Option<crate::tls::Tls>,
    pub health_listener: Option<TcpListener>,
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("install SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received");
        token.cancel();
    });
}

/// The health-check service name that answers SERVING as long as the process runs.
pub const LIVENESS: &str = "liveness";

/// What the server needs to decide readiness.
#[derive(Clone, Debug)]
pub struct Dependencies {
    /// Pinged for readiness, over a connection of its own (see [`crate::app::Platform`]).
    pub db: DatabaseConnection,
    pub redis: RedisHandle,
    /// People's calls wait until the revocation list is known.
    pub revocations: crate::revocation::Revocations,
}

/// Serves `routes` plus health and reflection on `listener` until `shutdown` is cancelled, then
/// drains for at most `grace`.
pub async fn serve(
    routes: Routes,
    service_names: &[&'static str],
    served: Served,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let Served { listener, access, deps, limits, tls, health_listener } = served;
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let mut names: Vec<&str> = vec![""];
    names.extend_from_slice(service_names);
    for name in &names {
        reporter.set_service_status(*name, ServingStatus::NotServing).await;
    }
    // Whether the process is alive, apart from whether it can serve: a liveness probe asks this,
    // so a database outage takes replicas out of rotation without restarting them.
    reporter.set_service_status(LIVENESS, ServingStatus::Serving).await;

    // The descriptor set holds every CRS API; advertise only what this server serves.
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crs_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for name in service_names.iter().chain(&[
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]) {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let database = DatabaseGate::default();
    let readiness =
        tokio::spawn(track_readiness(reporter.clone(), names.clone(), deps, database.clone(), shutdown.clone()));

    let drain_started = {
        let reporter = reporter.clone();
        let names = names.clone();
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            for name in &names {
                reporter.set_service_status(*name, ServingStatus::NotServing).await;
            }
            tracing::info!("draining");
        }
    };

    // Probes that cannot speak TLS ask a plaintext listener that serves health and nothing else.
    let health_stop = CancellationToken::new();
    let health_server = health_listener.map(|listener| {
        let server = tonic::transport::Server::builder()
            .add_service(health_service.clone())
            .serve_with_incoming_shutdown(without_delay(listener), health_stop.clone().cancelled_owned());
        tokio::spawn(server)
    });

    let mut builder = tonic::transport::Server::builder();
    if let Some(age) = tls.as_ref().and_then(crate::tls::Tls::max_connection_age) {
        builder = builder.max_connection_age(age);
    }
    let router = builder
        // Bounds on what one client can hold: calls at once per connection, time per call.
        .concurrency_limit_per_connection(limits.concurrent_calls_per_connection)
        .timeout(Duration::from_secs(limits.request_timeout_secs))
        .max_concurrent_streams(Some(limits.concurrent_calls_per_connection as u32))
        .tcp_nodelay(true)
        .layer(RpcTraceLayer::new(service_names))
        .layer(crate::tls::ClientCertGuardLayer::new(tls.is_some()))
        .layer(database)
        .layer(access)
        .add_routes(routes)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let server: BoxFuture<'_, Result<(), tonic::transport::Error>> = match tls {
        None => Box::pin(router.serve_with_incoming_shutdown(without_delay(listener), drain_started)),
        Some(tls) => Box::pin(
            router.serve_with_incoming_shutdown(crate::tls::incoming(listener, tls, shutdown.clone()), drain_started),
        ),
    };

    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let served = tokio::select! {
        result = server => result.map_err(anyhow::Error::from),
        _ = deadline => {
            tracing::warn!(grace_secs = grace.as_secs(), "grace period over; closing remaining calls");
            Ok(())
        }
    };
    health_stop.cancel();
    if let Some(health) = health_server {
        let _ = health.await;
    }
    readiness.abort();
    served
}

async fn track_readiness(
    reporter: tonic_health::server::HealthReporter,
    names: Vec<&'static str>,
    deps: Dependencies,
    database: DatabaseGate,
    shutdown: CancellationToken,
) {
    let mut serving = false;
    // Redis must answer, and the revocation list be known, before the first SERVING. After that
    // only the database decides: with Redis gone, rate limits and timers have fallbacks, the last
    // revocation list stays in force, and taking the service out of rotation would refuse
    // requests it can safely take.
    let mut redis_seen = false;
    loop {
        let db_ok = crate::db::ping(&deps.db).await;
        database.set_answering(db_ok);
        redis_seen = redis_seen || deps.redis.ping().await;
        let ready = db_ok && redis_seen && deps.revocations.is_loaded();
        if ready != serving && !shutdown.is_cancelled() {
            let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
            for name in &names {
                reporter.set_service_status(*name, status).await;
            }
            if ready {
                tracing::info!("dependencies ready; serving");
            } else {
                tracing::warn!("a dependency stopped answering; not serving");
            }
            serving = ready;
        }
        // Checked each second: a lost database takes the service out of rotation within a few.
        let pause = if serving { Duration::from_secs(1) } else { Duration::from_millis(200) };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {},
        }
    }
}

/// Whether the database answered its last ping (each second, bounded to two seconds). While it
/// does not, calls are answered UNAVAILABLE at once, which clients retry with backoff, instead of
/// each waiting for a connection that will not come (`database.acquire_timeout_ms`). Health and
/// reflection still answer.
#[derive(Clone, Debug, Default)]
pub struct DatabaseGate {
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DatabaseGate {
    fn set_answering(&self, answering: bool) {
        self.down.store(!answering, std::sync::atomic::Ordering::SeqCst);
        crate::metrics::DATABASE_UP.set(i64::from(answering));
    }

    fn is_down(&self) -> bool {
        self.down.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl<S> tower::Layer<S> for DatabaseGate {
    type Service = Gated<S>;
    fn layer(&self, inner: S) -> Gated<S> {
        Gated { inner, gate: self.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct Gated<S> {
    inner: S,
    gate: DatabaseGate,
}

impl<S, B> tower::Service<http::Request<B>> for Gated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Send,
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
        if self.gate.is_down() && !crate::access::is_open(request.uri().path()) {
            let status = tonic::Status::unavailable("the database is not answering; retry with backoff");
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        Box::pin(self.inner.call(request))
    }
}

/// Wraps every RPC in a server span that continues the caller's trace, and times it. Metrics
/// name only the methods this server serves; any other path counts as `unknown`, so callers
/// cannot create series by calling paths that do not exist.
#[derive(Clone, Debug)]
pub struct RpcTraceLayer {
    known: std::sync::Arc<std::collections::HashSet<String>>,
}

impl RpcTraceLayer {
    /// The layer for a server serving `service_names` (plus health and reflection).
    pub fn new(service_names: &[&str]) -> Self {
        let mut known = std::collections::HashSet::new();
        if let Ok(fds) = <prost_types::FileDescriptorSet as prost::Message>::decode(crs_proto::FILE_DESCRIPTOR_SET) {
            for file in &fds.file {
                for s in &file.service {
                    let full = format!("{}.{}", file.package(), s.name());
                    if service_names.contains(&full.as_str()) {
                        known.extend(s.method.iter().map(|m| format!("{full}/{}", m.name())));
                    }
                }
            }
        }
        known.extend(["grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch"].map(String::from));
        for v in ["v1", "v1alpha"] {
            known.insert(format!("grpc.reflection.{v}.ServerReflection/ServerReflectionInfo"));
        }
        RpcTraceLayer { known: std::sync::Arc::new(known) }
    }
}

impl<S> tower::Layer<S> for RpcTraceLayer {
    type Service = RpcTrace<S>;
    fn layer(&self, inner: S) -> RpcTrace<S> {
        RpcTrace { inner, known: self.known.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct RpcTrace<S> {
    inner: S,
    known: std::sync::Arc<std::collections::HashSet<String>>,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcTrace<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let raw = request.uri().path().trim_start_matches('/');
        let path = if self.known.contains(raw) { raw.to_owned() } else { "unknown/unknown".to_owned() };
        let (service, method) = path.split_once('/').unwrap_or((path.as_str(), ""));
        let span = tracing::info_span!(
            "rpc",
            otel.name = %path,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        crate::telemetry::continue_trace(&span, &tonic::metadata::MetadataMap::from_headers(request.headers().clone()));
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let (service, method) = (service.to_owned(), method.to_owned());
        let started = std::time::Instant::now();
        Box::pin(
            async move {
                let mut result = future.await;
                if let Ok(response) = &mut result {
                    // Unary errors come back "trailers-only": the status is in the headers.
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(0);
                    tracing::Span::current().record("rpc.grpc.status_code", code);
                    crate::metrics::GRPC_SERVER_DURATION
                        .with_label_values(&[service.as_str(), method.as_str(), &code.to_string()])
                        .observe(started.elapsed().as_secs_f64());
                    // The caller can find this call's trace by its id.
                    if let Some(id) = crate::telemetry::current_trace_id()
                        && let Ok(value) = http::HeaderValue::from_str(&id)
                    {
                        response.headers_mut().insert("x-trace-id", value);
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

/// The connections `listener` accepts, with Nagle's algorithm off. The servers take their own
/// listeners (bound before start, or handed over by socket activation), where tonic's
/// `tcp_nodelay` does not reach: without this a small reply waits for the client's delayed ACK,
/// some 40 ms per call. (TLS connections get the same in `tls::incoming`.)
fn without_delay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot turn Nagle off on an accepted connection");
            }
        })
    })
}

#[cfg(test)]
mod nodelay_tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(without_delay(listener));
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap(), "the accepted socket sends small replies at once");
    }
}
