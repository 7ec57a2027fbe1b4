//! Calls to the services: a channel per service (plaintext, or TLS with the context's CA and
//! client certificate), the bearer token on every call, and a fresh W3C `traceparent` per call
//! so that each call starts a trace the services continue; `-v` prints it.

use std::path::PathBuf;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context as _;
use crs_platform::tls::ClientTls;
use http::HeaderValue;
use rand::RngCore as _;
use tonic::transport::{Channel, Endpoint};

use crate::context::{ConfigFile, Context, DEFAULT_ENDPOINTS};
use crate::errors::usage;

/// Everything a command needs to call the services, resolved from flags, `CRSCTL_*` variables
/// and the context file, in that order.
#[derive(Clone)]
pub struct Session {
    pub context_name: Option<String>,
    pub context: Context,
    pub config_path: PathBuf,
    pub verbose: bool,
    pub timeout: Duration,
    tls: Option<ClientTls>,
}

/// The settings given on the command line or in the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub context: Option<String>,
    pub token: Option<String>,
    pub endpoints: [Option<String>; 4],
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl Session {
    pub fn resolve(
        config_path: PathBuf,
        overrides: &Overrides,
        verbose: bool,
        timeout: Duration,
    ) -> anyhow::Result<Session> {
        let file = ConfigFile::load(&config_path)?;
        let (name, mut context) = match file.context(overrides.context.as_deref())? {
            Some((name, c)) => (Some(name.to_owned()), c.clone()),
            None => (None, Context::default()),
        };
        apply_overrides(&mut context, overrides);
        Session::new(name, context, config_path, verbose, timeout)
    }

    pub fn new(
        context_name: Option<String>,
        context: Context,
        config_path: PathBuf,
        verbose: bool,
        timeout: Duration,
    ) -> anyhow::Result<Session> {
        let tls = client_tls(&context)?;
        Ok(Session { context_name, context, config_path, verbose, timeout, tls })
    }

    /// The address of `service`: the context's, else `make run`'s.
    pub fn endpoint(&self, service: &str) -> String {
        self.context.endpoint(service).map(str::to_owned).unwrap_or_else(|| {
            DEFAULT_ENDPOINTS.iter().find(|(s, _)| *s == service).map(|(_, u)| (*u).to_owned()).unwrap_or_default()
        })
    }

    pub fn token(&self) -> anyhow::Result<&str> {
        self.context
            .token
            .as_deref()
            .ok_or_else(|| usage("no token: run `crsctl login` (or pass --token, or set CRSCTL_TOKEN)"))
    }

    /// A connection to `service` that sends the token with every call.
    pub fn conn(&self, service: &str) -> anyhow::Result<Conn> {
        let bearer = HeaderValue::try_from(format!("Bearer {}", self.token()?))
            .map_err(|_| usage("the token holds characters a header cannot carry"))?;
        self.conn_with(service, Some(bearer))
    }

    /// A connection to `service` without credentials (health checks).
    pub fn anonymous(&self, service: &str) -> anyhow::Result<Conn> {
        self.conn_with(service, None)
    }

    fn conn_with(&self, service: &str, bearer: Option<HeaderValue>) -> anyhow::Result<Conn> {
        let url = self.endpoint(service);
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| usage(format!("{service} address {url:?}: {e}")))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(self.timeout);
        if endpoint.uri().scheme_str() == Some("https") && self.tls.is_none() {
            return Err(usage(format!(
                "{url} is https: give the CA that signs the services' certificates (--ca-file)"
            )));
        }
        let channel = crs_platform::peers::channel(&endpoint, self.tls.as_ref())?;
        Ok(Conn { inner: channel, bearer, verbose: self.verbose })
    }
}

/// Flags and variables win over the context file.
pub fn apply_overrides(context: &mut Context, overrides: &Overrides) {
    for ((service, _), value) in DEFAULT_ENDPOINTS.iter().zip(&overrides.endpoints) {
        if let Some(v) = value {
            context.set_endpoint(service, v.clone());
        }
    }
    if let Some(t) = &overrides.token {
        context.token = Some(t.clone());
    }
    if overrides.ca_file.is_some() {
        context.ca_file = overrides.ca_file.clone();
    }
    if overrides.cert_file.is_some() {
        context.cert_file = overrides.cert_file.clone();
    }
    if overrides.key_file.is_some() {
        context.key_file = overrides.key_file.clone();
    }
}

fn client_tls(context: &Context) -> anyhow::Result<Option<ClientTls>> {
    let Some(ca) = &context.ca_file else {
        if context.cert_file.is_some() || context.key_file.is_some() {
            return Err(usage("a client certificate needs the CA too (--ca-file)"));
        }
        return Ok(None);
    };
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let ca = read(ca)?;
    let identity = match (&context.cert_file, &context.key_file) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        (None, None) => None,
        _ => return Err(usage("--cert-file and --key-file go together")),
    };
    let tls = ClientTls::from_pem(&ca, identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())))?;
    Ok(Some(tls))
}

/// A channel that adds the bearer token and a new `traceparent` to every call.
#[derive(Clone)]
pub struct Conn {
    inner: Channel,
    bearer: Option<HeaderValue>,
    verbose: bool,
}

/// A new W3C trace context: (traceparent, trace id).
pub fn new_traceparent() -> (String, String) {
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    rand::rng().fill_bytes(&mut trace);
    rand::rng().fill_bytes(&mut span);
    let trace_id = hex::encode(trace);
    (format!("00-{trace_id}-{}-01", hex::encode(span)), trace_id)
}

impl tower::Service<http::Request<tonic::body::Body>> for Conn {
    type Response = http::Response<tonic::body::Body>;
    type Error = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Error;
    type Future = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let (traceparent, trace_id) = new_traceparent();
        if let Ok(v) = HeaderValue::try_from(traceparent) {
            request.headers_mut().insert("traceparent", v);
        }
        if let Some(bearer) = &self.bearer {
            request.headers_mut().insert(http::header::AUTHORIZATION, bearer.clone());
        }
        if self.verbose {
            let authority = request.uri().authority().map(|a| a.to_string()).unwrap_or_default();
            eprintln!("crsctl: {authority}{} trace_id={trace_id}", request.uri().path());
        }
        self.inner.call(request)
    }
}
