//! A small webhook receiver: records every POST it is sent, for the demo and the tests.

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
    pub delivery_id: String,
    pub signature: Option<String>,
    pub body: serde_json::Value,
    /// The body as sent, for signature checks.
    pub raw: Vec<u8>,
}

/// A running receiver; endpoints are `http://<addr>/hook/<name>`.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// When set, answers 503 to everything (an endpoint that is down).
    failing: Arc<Mutex<bool>>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let receiver = Receiver { addr, received: Default::default(), failing: Default::default() };
        let app = Router::new().route("/hook/{name}", post(record)).with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(receiver)
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/hook/{name}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("receiver lock").clone()
    }

    pub fn set_failing(&self, failing: bool) {
        *self.failing.lock().expect("receiver lock") = failing;
    }
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
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let raw = body.to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
    receiver.received.lock().expect("receiver lock").push(Received {
        endpoint: name,
        delivery_id: header("x-crs-delivery-id").unwrap_or_default(),
        signature: header("x-crs-signature"),
        body,
        raw,
    });
    StatusCode::NO_CONTENT
}
