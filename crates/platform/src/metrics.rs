//! The admin HTTP port: Prometheus text at `/metrics` for every metric registered in the
//! process's default registry.

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `/metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) {
    let app = Router::new().route("/metrics", get(render));
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await {
        tracing::error!(error = %e, "admin http server failed");
    }
}

async fn render() -> impl IntoResponse {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut body) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    ([(CONTENT_TYPE, encoder.format_type().to_owned())], body)
}
