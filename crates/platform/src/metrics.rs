//! The admin HTTP port: Prometheus text at `/metrics` for every metric registered in the
//! process's default registry.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, HistogramVec, IntGaugeVec, TextEncoder, register_histogram_vec, register_int_gauge_vec};
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

/// gRPC server latency by service, method and status code.
pub static GRPC_SERVER_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "crs_grpc_server_duration_seconds",
        "Time to answer a gRPC call, by service, method and gRPC status code.",
        &["rpc_service", "rpc_method", "code"],
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
    )
    .expect("registers once")
});

/// Hand-offs waiting in this service's outbox.
pub static OUTBOX_BACKLOG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("crs_outbox_backlog", "Hand-offs waiting in the outbox.", &["service"])
        .expect("registers once")
});

/// Age of the oldest waiting hand-off (the outbox lag).
pub static OUTBOX_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("crs_outbox_lag_seconds", "Age of the oldest hand-off waiting in the outbox.", &["service"])
        .expect("registers once")
});
