//! Transport security: mutual TLS (rustls, ring) on the gRPC listener and on calls to peers,
//! with the certificate, key and CA read from files and re-read when they change.
//!
//! - **Material.** `tls.cert_file` (this service's chain), `tls.key_file` and `tls.ca_file` (the CA
//!   that signs the services' certificates) build one rustls server configuration and one client
//!   configuration. The service serves its certificate to callers and presents the same
//!   certificate to the peers it calls; peers' server certificates and callers' client
//!   certificates are verified against the CA.
//! - **Rotation.** [`Tls::spawn_reload`] checks the files every `tls.reload_interval_secs` and,
//!   when they changed and still make a consistent set, swaps both configurations atomically.
//!   Every new connection, accepted or opened to a peer, handshakes with the configuration of
//!   the moment; connections older than `tls.max_connection_age_secs` are closed gracefully so
//!   that they handshake again. A set that does not load (a key that does not match its
//!   certificate, an expired certificate, a file half written) is logged and counted, and the
//!   previous material stays in use.
//! - **Who must present a certificate.** With `client_auth = "required"` the handshake fails
//!   without a valid client certificate. With `"optional"` a caller may come without one and
//!   reach the public services, but [`ClientCertGuardLayer`] refuses every internal RPC
//!   (`*InternalService`) over a connection that did not present a verified client certificate.
//!   A certificate that is presented is always verified: one from another CA, or expired, fails
//!   the handshake in both modes.
//! - **No resumption on the server.** Every connection is a full handshake, so a client
//!   certificate is checked (issuer, validity) each time a connection opens.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, bail};
use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use hyper_util::rt::TokioIo;
use prometheus::{IntCounter, IntCounterVec, register_int_counter, register_int_counter_vec};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::config::{ClientAuth, TlsConfig};

/// The protocol tonic speaks; a TLS server must select it (ALPN) or tonic clients give up.
const ALPN_H2: &[u8] = b"h2";

/// How long an accepted connection has to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reloads of the TLS files, by outcome.
static RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "crs_tls_reloads_total",
        "Reloads of the TLS certificate, key and CA files after they changed, by outcome (ok; failed: the previous material stays in use).",
        &["outcome"]
    )
    .expect("registers once")
});

/// Incoming connections refused during the TLS handshake.
static HANDSHAKE_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "crs_tls_handshake_failures_total",
        "Incoming connections whose TLS handshake failed or timed out (no, expired or untrusted client certificate; a plaintext client)."
    )
    .expect("registers once")
});

/// The crypto provider of every TLS configuration here (ring), named explicitly so no
/// process-wide default is needed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The three files as read, and their digest (to notice changes).
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl Files {
    fn read(cfg: &TlsConfig) -> anyhow::Result<Files> {
        Ok(Files {
            cert: read("tls.cert_file", &cfg.cert_file)?,
            key: read("tls.key_file", &cfg.key_file)?,
            ca: read("tls.ca_file", &cfg.ca_file)?,
        })
    }

    fn digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for part in [&self.cert, &self.key, &self.ca] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        hash.finalize().into()
    }
}

fn read(key: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(!path.is_empty(), "{key} is not set (required when tls.enabled)");
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {key} {path}: {e}"))
}

/// The certificates in `pem`, which `what` names in errors (e.g. `tls.ca_file /etc/ca.crt`).
fn certificates(what: &str, pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{what} is not a PEM certificate file: {e}"))?;
    anyhow::ensure!(!certs.is_empty(), "{what} holds no PEM certificate");
    Ok(certs)
}

/// Both sides' rustls configurations, built from one consistent set of files.
struct Material {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl Material {
    /// Parses and checks the files: PEM certificates and key, the key belongs to the
    /// certificate, and the certificate is valid today under the CA as a client certificate
    /// (which is how peers will see it).
    fn build(cfg: &TlsConfig, files: &Files) -> anyhow::Result<Material> {
        let provider = provider();
        let chain = certificates(&format!("tls.cert_file {}", cfg.cert_file), &files.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&files.key)
            .map_err(|e| anyhow::anyhow!("tls.key_file {} holds no PEM private key: {e}", cfg.key_file))?;
        let mut roots = RootCertStore::empty();
        for cert in certificates(&format!("tls.ca_file {}", cfg.ca_file), &files.ca)? {
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("tls.ca_file {} holds an unusable CA certificate: {e}", cfg.ca_file))?;
        }
        let roots = Arc::new(roots);

        let certified = CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => anyhow::anyhow!(
                "tls.key_file {} is not the private key of the certificate in tls.cert_file {}",
                cfg.key_file,
                cfg.cert_file
            ),
            e => anyhow::anyhow!("tls.key_file {} cannot be used: {e}", cfg.key_file),
        })?;
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => bail!("tls.key_file {} does not match tls.cert_file {}: {e}", cfg.key_file, cfg.cert_file),
        }

        let strict = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .context("cannot build the client certificate verifier")?;
        strict.verify_client_cert(&chain[0], &chain[1..], UnixTime::now()).map_err(|e| {
            anyhow::anyhow!(
                "the certificate in tls.cert_file {} is not valid under tls.ca_file {} as a client certificate \
                 (it is presented to peers; it needs the clientAuth and serverAuth usages): {e}",
                cfg.cert_file,
                cfg.ca_file
            )
        })?;

        let verifier = match cfg.client_auth {
            ClientAuth::Required => strict,
            ClientAuth::Optional => WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .allow_unauthenticated()
                .build()
                .context("cannot build the client certificate verifier")?,
        };
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| anyhow::anyhow!("tls.cert_file {} cannot be served: {e}", cfg.cert_file))?;
        server.alpn_protocols = vec![ALPN_H2.to_vec()];
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;

        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| anyhow::anyhow!("tls.cert_file {} cannot be presented to peers: {e}", cfg.cert_file))?;
        client.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Material { server: Arc::new(server), client: Arc::new(client) })
    }
}

/// Checks `[tls]` as `--check-config` does: when enabled, the files are readable, parse, belong
/// together and make a certificate valid today under the CA.
pub fn check(cfg: &TlsConfig) -> anyhow::Result<()> {
    if !cfg.enabled {
        return Ok(());
    }
    Tls::load(cfg).map(drop)
}

/// This service's TLS material, current and reloadable; cheap to clone.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

struct Inner {
    settings: TlsConfig,
    server: ArcSwap<ServerConfig>,
    client: Arc<ArcSwap<ClientConfig>>,
    /// The digest of the files last looked at (loaded or not), so a bad set is reported once.
    seen: Mutex<[u8; 32]>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the files named in `cfg` (which must be enabled).
    pub fn load(cfg: &TlsConfig) -> anyhow::Result<Tls> {
        anyhow::ensure!(cfg.reload_interval_secs >= 1, "tls.reload_interval_secs must be at least 1");
        let files = Files::read(cfg)?;
        let material = Material::build(cfg, &files)?;
        Ok(Tls {
            inner: Arc::new(Inner {
                settings: cfg.clone(),
                server: ArcSwap::new(material.server),
                client: Arc::new(ArcSwap::new(material.client)),
                seen: Mutex::new(files.digest()),
            }),
        })
    }

    pub fn settings(&self) -> &TlsConfig {
        &self.inner.settings
    }

    /// The server configuration new connections handshake with.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.inner.server.load_full()
    }

    /// The client side for calling peers; it follows every reload.
    pub fn client(&self) -> ClientTls {
        ClientTls { config: self.inner.client.clone() }
    }

    /// How long a connection may live before it is closed gracefully, if limited.
    pub fn max_connection_age(&self) -> Option<Duration> {
        let secs = self.inner.settings.max_connection_age_secs;
        (secs > 0).then(|| Duration::from_secs(secs))
    }

    /// Re-reads the files; when they changed and load, swaps the configurations in. Answers
    /// whether new material is in use. On an error the previous material stays.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let settings = &self.inner.settings;
        let files = Files::read(settings)?;
        let digest = files.digest();
        {
            let mut seen = self.inner.seen.lock().expect("tls digest");
            if *seen == digest {
                return Ok(false);
            }
            *seen = digest;
        }
        let material =
            Material::build(settings, &files).inspect_err(|_| RELOADS.with_label_values(&["failed"]).inc())?;
        self.inner.server.store(material.server);
        self.inner.client.store(material.client);
        RELOADS.with_label_values(&["ok"]).inc();
        Ok(true)
    }

    /// Reloads every `tls.reload_interval_secs` until `shutdown`.
    pub fn spawn_reload(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        let every = Duration::from_secs(self.inner.settings.reload_interval_secs.max(1));
        tokio::spawn(async move {
            let mut last_error = String::new();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {},
                }
                match tls.reload() {
                    Ok(true) => {
                        last_error.clear();
                        tracing::info!(cert_file = %tls.settings().cert_file, ca_file = %tls.settings().ca_file, "TLS material reloaded; new connections use it");
                    }
                    Ok(false) => {}
                    Err(e) => {
                        // Unreadable files are retried each interval; say so once.
                        let message = format!("{e:#}");
                        if message != last_error {
                            tracing::error!(error = %message, "TLS files changed but cannot be used; keeping the previous material");
                            last_error = message;
                        }
                    }
                }
            }
        })
    }
}

/// Accepts TCP connections on `listener` and completes their TLS handshakes, each in its own
/// task with a deadline so a slow or hostile client holds up no one, using the server
/// configuration current at that moment. Yields the established streams until `stop` (or until
/// the stream is dropped). Failed handshakes are logged at debug level and counted.
pub fn incoming(
    listener: TcpListener,
    tls: Tls,
    stop: CancellationToken,
) -> ReceiverStream<Result<TlsConnection, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.server_config());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(TlsConnection(stream))).await;
                    }
                    Ok(Err(e)) => handshake_failed(peer, &e.to_string()),
                    Err(_) => handshake_failed(peer, "timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

fn handshake_failed(peer: SocketAddr, error: &str) {
    HANDSHAKE_FAILURES.inc();
    tracing::debug!(%peer, error, "TLS handshake refused");
}

/// An accepted connection whose TLS handshake succeeded.
#[derive(Debug)]
pub struct TlsConnection(tokio_rustls::server::TlsStream<TcpStream>);

/// What the server knows about the TLS connection a request came on; tonic puts it in every
/// request's extensions (`request.extensions().get::<TlsConnectionInfo>()`).
#[derive(Clone, Debug)]
pub struct TlsConnectionInfo {
    pub remote_addr: Option<SocketAddr>,
    /// The client's certificate chain, present only when the client sent one, and then verified
    /// by rustls against `tls.ca_file` (a certificate that does not verify fails the handshake).
    pub client_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl Connected for TlsConnection {
    type ConnectInfo = TlsConnectionInfo;

    fn connect_info(&self) -> TlsConnectionInfo {
        let (tcp, session) = self.0.get_ref();
        TlsConnectionInfo {
            remote_addr: tcp.peer_addr().ok(),
            client_certificates: session.peer_certificates().map(|certs| Arc::new(certs.to_vec())),
        }
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Whether the connection a request came on presented a client certificate, which rustls has
/// verified against `tls.ca_file` during the handshake.
pub fn has_client_certificate<B>(request: &http::Request<B>) -> bool {
    request
        .extensions()
        .get::<TlsConnectionInfo>()
        .and_then(|info| info.client_certificates.as_ref())
        .is_some_and(|certs| !certs.is_empty())
}

/// The one place that ties internal RPCs to mutual TLS: when the server speaks TLS, a call to
/// an internal RPC (`crs_proto::internal::is_internal`) over a connection without a verified
/// client certificate is refused with `UNAUTHENTICATED` before its token is even looked at.
/// With `client_auth = "required"` no such connection gets this far; with `"optional"` this is
/// what keeps public callers without certificates away from the hand-offs. Plaintext servers
/// (`make run`, tests) pass everything on.
#[derive(Clone, Copy, Debug)]
pub struct ClientCertGuardLayer {
    enabled: bool,
}

impl ClientCertGuardLayer {
    /// `enabled` when the server serves TLS.
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }
}

impl<S> tower::Layer<S> for ClientCertGuardLayer {
    type Service = ClientCertGuard<S>;
    fn layer(&self, inner: S) -> ClientCertGuard<S> {
        ClientCertGuard { inner, enabled: self.enabled }
    }
}

#[derive(Clone, Debug)]
pub struct ClientCertGuard<S> {
    inner: S,
    enabled: bool,
}

impl<S, B> tower::Service<http::Request<B>> for ClientCertGuard<S>
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
        let path = request.uri().path();
        if self.enabled && crs_proto::internal::is_internal(path) && !has_client_certificate(&request) {
            let status = tonic::Status::unauthenticated(format!(
                "{path} is an internal RPC: it needs a connection with a client certificate signed by the services' CA"
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        Box::pin(self.inner.call(request))
    }
}

/// The client side of TLS for calls to `https://` peers: the CA that server certificates must
/// chain to, and the client certificate presented. Cheap to clone; one made by
/// [`Tls::client`] follows the service's reloads.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ArcSwap<ClientConfig>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Fixed client material: trust `ca_pem`, present `identity` (certificate chain and key, PEM)
    /// if given. For tools and tests; services use [`Tls::client`].
    pub fn from_pem(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> anyhow::Result<ClientTls> {
        let mut roots = RootCertStore::empty();
        for cert in certificates("the CA", ca_pem)? {
            roots.add(cert)?;
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((cert, key)) => builder.with_client_auth_cert(
                certificates("the client certificate", cert)?,
                PrivateKeyDer::from_pem_slice(key).map_err(|e| anyhow::anyhow!("not a PEM private key: {e}"))?,
            )?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(ClientTls { config: Arc::new(ArcSwap::from_pointee(config)) })
    }

    /// The configuration a connection opened now uses.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.load_full()
    }

    /// A connector for `Endpoint::connect_with_connector_lazy`: TCP (`peers::connect_tcp`), then
    /// a TLS handshake with the configuration current at that moment, verifying the server's
    /// certificate for the URI's host.
    pub fn connector(&self) -> Connector {
        Connector { tls: self.clone() }
    }
}

/// Opens TLS connections to peers; see [`ClientTls::connector`].
#[derive(Clone, Debug)]
pub struct Connector {
    tls: ClientTls,
}

impl tower::Service<http::Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.tls.config();
        Box::pin(async move {
            let (host, port) = crate::peers::host_and_port(&uri, 443)?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
            let tcp = crate::peers::connect_tcp(&host, port).await?;
            let stream = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use time::{Duration as Span, OffsetDateTime};

    use super::*;

    /// A CA made for the test.
    pub(crate) struct Ca {
        issuer: Issuer<'static, KeyPair>,
        pub(crate) pem: String,
    }

    impl Ca {
        pub(crate) fn new(name: &str) -> Ca {
            let now = OffsetDateTime::now_utc();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
            params.not_before = now - Span::hours(1);
            params.not_after = now + Span::days(1);
            let key = KeyPair::generate().unwrap();
            let pem = params.self_signed(&key).unwrap().pem();
            Ca { issuer: Issuer::new(params, key), pem }
        }

        /// (certificate, key) PEM, valid from `from` to `to` hours from now.
        pub(crate) fn issue_between(
            &self,
            from: i64,
            to: i64,
            usages: Vec<ExtendedKeyUsagePurpose>,
        ) -> (String, String) {
            let now = OffsetDateTime::now_utc();
            let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params.distinguished_name.push(DnType::CommonName, "service");
            params.extended_key_usages = usages;
            params.not_before = now + Span::hours(from);
            params.not_after = now + Span::hours(to);
            let key = KeyPair::generate().unwrap();
            (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
        }

        pub(crate) fn issue(&self) -> (String, String) {
            self.issue_between(-1, 24, vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth])
        }
    }

    /// Writes `cert`, `key` and `ca` into a fresh directory and names them in a `[tls]` section.
    pub(crate) fn files(cert: &str, key: &str, ca: &str) -> TlsConfig {
        let dir = std::env::temp_dir().join(format!("crs-tls-unit-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = TlsConfig {
            enabled: true,
            cert_file: dir.join("tls.crt").display().to_string(),
            key_file: dir.join("tls.key").display().to_string(),
            ca_file: dir.join("ca.crt").display().to_string(),
            client_auth: ClientAuth::Optional,
            reload_interval_secs: 1,
            max_connection_age_secs: 0,
        };
        rewrite(&cfg, cert, key, ca);
        cfg
    }

    fn rewrite(cfg: &TlsConfig, cert: &str, key: &str, ca: &str) {
        std::fs::write(&cfg.cert_file, cert).unwrap();
        std::fs::write(&cfg.key_file, key).unwrap();
        std::fs::write(&cfg.ca_file, ca).unwrap();
    }

    fn problem(cfg: &TlsConfig) -> String {
        format!("{:#}", check(cfg).expect_err("the check should refuse this material"))
    }

    #[test]
    fn a_consistent_set_loads_and_a_disabled_section_is_not_read() {
        let ca = Ca::new("ca");
        let (cert, key) = ca.issue();
        check(&files(&cert, &key, &ca.pem)).unwrap();
        check(&TlsConfig { enabled: false, cert_file: String::new(), ..files(&cert, &key, &ca.pem) }).unwrap();
    }

    #[test]
    fn unusable_material_is_named() {
        let ca = Ca::new("ca");
        let (cert, key) = ca.issue();
        let (_, other_key) = ca.issue();
        assert!(problem(&files(&cert, &other_key, &ca.pem)).contains("is not the private key"));
        assert!(problem(&files("not pem", &key, &ca.pem)).contains("tls.cert_file"));
        assert!(problem(&files(&cert, "not pem", &ca.pem)).contains("tls.key_file"));
        assert!(problem(&files(&cert, &key, "")).contains("tls.ca_file"));
        let missing = TlsConfig { ca_file: "/nonexistent/ca.crt".into(), ..files(&cert, &key, &ca.pem) };
        assert!(problem(&missing).contains("cannot read tls.ca_file /nonexistent/ca.crt"));
        let unset = TlsConfig { key_file: String::new(), ..files(&cert, &key, &ca.pem) };
        assert!(problem(&unset).contains("tls.key_file is not set"));
    }

    #[test]
    fn the_certificate_must_be_valid_today_under_the_ca_for_both_uses() {
        let ca = Ca::new("ca");
        let client_and_server = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let (expired, key) = ca.issue_between(-48, -1, client_and_server.clone());
        assert!(problem(&files(&expired, &key, &ca.pem)).contains("not valid under tls.ca_file"));
        let (early, key) = ca.issue_between(2, 48, client_and_server);
        assert!(problem(&files(&early, &key, &ca.pem)).contains("not valid under tls.ca_file"));
        let (server_only, key) = ca.issue_between(-1, 24, vec![ExtendedKeyUsagePurpose::ServerAuth]);
        assert!(problem(&files(&server_only, &key, &ca.pem)).contains("clientAuth"));
        let (cert, key) = ca.issue();
        assert!(problem(&files(&cert, &key, &Ca::new("another").pem)).contains("not valid under tls.ca_file"));
    }

    #[test]
    fn reload_swaps_in_changed_files_and_keeps_the_last_good_set() {
        let ca = Ca::new("ca");
        let (cert, key) = ca.issue();
        let cfg = files(&cert, &key, &ca.pem);
        let tls = Tls::load(&cfg).unwrap();
        let (server, client) = (tls.server_config(), tls.client().config());
        assert!(!tls.reload().unwrap(), "nothing changed");

        // A new certificate whose key has not arrived yet: refused, the old material stays.
        let (new_cert, new_key) = ca.issue();
        rewrite(&cfg, &new_cert, &key, &ca.pem);
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&server, &tls.server_config()));
        assert!(Arc::ptr_eq(&client, &tls.client().config()));

        // The key follows: the new set is in use by both sides, without a restart.
        rewrite(&cfg, &new_cert, &new_key, &ca.pem);
        assert!(tls.reload().unwrap());
        assert!(!Arc::ptr_eq(&server, &tls.server_config()));
        assert!(!Arc::ptr_eq(&client, &tls.client().config()));
        assert!(!tls.reload().unwrap());
    }
}
