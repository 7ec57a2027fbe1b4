//! A small webhook receiver for the demo and the tests: it verifies every POST with the Standard
//! Webhooks reference library (the `standardwebhooks` crate) against the secret registered for
//! its endpoint, answers 401 to one that does not verify (as a real receiver would), and records
//! everything it is sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// One webhook as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path segment after `/hook/`, naming who the endpoint stands for.
    pub endpoint: String,
    /// `webhook-id`: the delivery id, the same on every attempt.
    pub delivery_id: String,
    /// Whether the reference library verified it, or why not.
    pub verified: Result<(), String>,
    pub body: serde_json::Value,
    /// The body as sent.
    pub raw: Vec<u8>,
}

/// A running receiver; endpoints are `http://<addr>/hook/<name>`.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// Each endpoint's `whsec_` secret, as the subscription call returned it.
    secrets: Arc<Mutex<HashMap<String, String>>>,
    /// When set, answers 503 to everything (an endpoint that is down).
    failing: Arc<Mutex<bool>>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let receiver =
            Receiver { addr, received: Default::default(), secrets: Default::default(), failing: Default::default() };
        let app = Router::new().route("/hook/{name}", post(record)).with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(receiver)
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/hook/{name}", self.addr)
    }

    /// The secret webhooks to `name` are signed with.
    pub fn register(&self, name: &str, secret: &str) {
        self.secrets.lock().expect("receiver lock").insert(name.to_owned(), secret.to_owned());
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("receiver lock").clone()
    }

    pub fn set_failing(&self, failing: bool) {
        *self.failing.lock().expect("receiver lock") = failing;
    }
}

/// Verifies `body` as Standard Webhooks specifies, with the reference library: the signature
/// over `id.timestamp.body` and a timestamp within its tolerance.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let webhook = standardwebhooks::Webhook::new(secret).map_err(|e| format!("unusable secret: {e:?}"))?;
    webhook.verify(body, headers).map_err(|e| format!("{e:?}"))
}

async fn record(
    State(receiver): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    if *receiver.failing.lock().expect("receiver lock") {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let secret = receiver.secrets.lock().expect("receiver lock").get(&name).cloned();
    let verified = match secret {
        Some(secret) => verify(&secret, &headers, &body),
        None => Err(format!("no secret registered for {name}")),
    };
    let raw = body.to_vec();
    let ok = verified.is_ok();
    receiver.received.lock().expect("receiver lock").push(Received {
        endpoint: name,
        delivery_id: headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned(),
        verified,
        body: serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null),
        raw,
    });
    if ok { StatusCode::NO_CONTENT } else { StatusCode::UNAUTHORIZED }
}
