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

/// Rows pruned by the retention job, by data class.
pub static RETENTION_PRUNED: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "crs_retention_pruned_total",
        "Rows deleted or redacted by the retention job, by data class.",
        &["class"]
    )
    .expect("registers once")
});

/// Whether the database answered the last health ping (1) or not (0).
pub static DATABASE_UP: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "crs_database_up",
        "Whether the database answered the last health ping (1) or not (0)."
    )
    .expect("registers once")
});

/// Hand-offs waiting in this service's outbox.
pub static OUTBOX_BACKLOG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("crs_outbox_backlog", "Hand-offs waiting in the outbox.", &["service"])
        .expect("registers once")
});

/// Claims the relays made, by whether they found rows (`rows`, `empty`): empty claims are the
/// relay looking at an outbox with nothing due (its polls, mostly).
pub static OUTBOX_CLAIMS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "crs_outbox_claims_total",
        "Claims of outbox rows by the relay, by whether they found rows (rows) or none (empty).",
        &["service", "result"]
    )
    .expect("registers once")
});

/// Age of the oldest waiting hand-off (the outbox lag).
pub static OUTBOX_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("crs_outbox_lag_seconds", "Age of the oldest hand-off waiting in the outbox.", &["service"])
        .expect("registers once")
});

/// Hand-offs no longer retried, waiting for an admin to replay them.
pub static OUTBOX_DEAD_LETTERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "crs_outbox_dead_letters",
        "Hand-offs that were refused for good or kept failing past their maximum age, waiting to be replayed.",
        &["service"]
    )
    .expect("registers once")
});

/// Hand-offs that became dead letters, by topic.
pub static OUTBOX_DEAD_LETTERED: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "crs_outbox_dead_lettered_total",
        "Hand-offs that became dead letters, by service and topic.",
        &["service", "topic"]
    )
    .expect("registers once")
});

/// Pushes every metric of the registry over OTLP/gRPC as well, so OTLP-only backends see what
/// `/metrics` shows. Counters and gauges go as themselves; a histogram goes as its Prometheus
/// series (`_count`, `_sum`, `_bucket` with `le`). Metrics that appear later (they register on
/// first use) are picked up each second, and once more before the last push at shutdown. The
/// standard `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds) sets the push interval.
pub struct OtlpMetrics {
    provider: opentelemetry_sdk::metrics::SdkMeterProvider,
    bridge: std::sync::Arc<Bridge>,
    stop: CancellationToken,
}

/// An OTel instrument kept alive so its callback keeps reporting.
type Instrument = Box<dyn std::any::Any + Send>;

struct Bridge {
    meter: opentelemetry::metrics::Meter,
    /// Families bridged so far, and their instruments.
    bridged: std::sync::Mutex<(std::collections::HashSet<String>, Vec<Instrument>)>,
}

impl Bridge {
    /// Bridges every family registered since the last call.
    fn refresh(&self) {
        let mut state = self.bridged.lock().expect("bridge lock");
        for family in prometheus::gather() {
            let name = family.name().to_owned();
            if state.0.insert(name.clone()) {
                let instruments = bridge(&self.meter, &name, family.get_field_type());
                state.1.extend(instruments);
            }
        }
    }
}

impl OtlpMetrics {
    pub fn start(
        endpoint: &str,
        resource: opentelemetry_sdk::Resource,
        interval: std::time::Duration,
    ) -> anyhow::Result<Self> {
        use opentelemetry::metrics::MeterProvider as _;
        use opentelemetry_otlp::WithExportConfig;

        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the OTLP metric exporter: {e}"))?;
        // Pushed from the tokio runtime the gRPC client lives on.
        let reader = opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .with_interval(interval)
        .build();
        let provider =
            opentelemetry_sdk::metrics::SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();
        let bridge = std::sync::Arc::new(Bridge { meter: provider.meter("crs"), bridged: Default::default() });
        let stop = CancellationToken::new();
        let (task_bridge, task_stop) = (bridge.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                task_bridge.refresh();
                tokio::select! {
                    _ = task_stop.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {},
                }
            }
        });
        Ok(OtlpMetrics { provider, bridge, stop })
    }

    /// Bridges what registered last, pushes a final time, and stops.
    pub fn shutdown(self) {
        self.stop.cancel();
        self.bridge.refresh();
        if let Err(e) = self.provider.shutdown() {
            eprintln!("metrics shutdown: {e}");
        }
    }
}

/// The current samples of family `name`: (attributes, value) for the series `suffix` selects.
fn samples(name: &str, series: Series) -> Vec<(Vec<opentelemetry::KeyValue>, f64)> {
    use prometheus::proto::MetricType;
    let mut out = Vec::new();
    for family in prometheus::gather().into_iter().filter(|f| f.name() == name) {
        for m in family.get_metric() {
            let labels: Vec<opentelemetry::KeyValue> = m
                .get_label()
                .iter()
                .map(|l| opentelemetry::KeyValue::new(l.name().to_owned(), l.value().to_owned()))
                .collect();
            match (family.get_field_type(), series) {
                (MetricType::COUNTER, Series::Value) => out.push((labels, m.get_counter().get_value())),
                (MetricType::GAUGE, Series::Value) => out.push((labels, m.get_gauge().get_value())),
                (MetricType::HISTOGRAM, Series::Count) => {
                    out.push((labels, m.get_histogram().get_sample_count() as f64))
                }
                (MetricType::HISTOGRAM, Series::Sum) => out.push((labels, m.get_histogram().get_sample_sum())),
                (MetricType::HISTOGRAM, Series::Buckets) => {
                    for b in m.get_histogram().get_bucket() {
                        let mut with_le = labels.clone();
                        with_le.push(opentelemetry::KeyValue::new("le", b.upper_bound().to_string()));
                        out.push((with_le, b.cumulative_count() as f64));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Series {
    Value,
    Count,
    Sum,
    Buckets,
}

fn bridge(meter: &opentelemetry::metrics::Meter, name: &str, kind: prometheus::proto::MetricType) -> Vec<Instrument> {
    use prometheus::proto::MetricType;
    let counter = |otel_name: String, family: String, series: Series| -> Instrument {
        Box::new(
            meter
                .f64_observable_counter(otel_name)
                .with_callback(move |o| {
                    for (attrs, v) in samples(&family, series) {
                        o.observe(v, &attrs);
                    }
                })
                .build(),
        )
    };
    match kind {
        MetricType::COUNTER => vec![counter(name.to_owned(), name.to_owned(), Series::Value)],
        MetricType::GAUGE => {
            let family = name.to_owned();
            vec![Box::new(
                meter
                    .f64_observable_gauge(name.to_owned())
                    .with_callback(move |o| {
                        for (attrs, v) in samples(&family, Series::Value) {
                            o.observe(v, &attrs);
                        }
                    })
                    .build(),
            )]
        }
        MetricType::HISTOGRAM => vec![
            counter(format!("{name}_count"), name.to_owned(), Series::Count),
            counter(format!("{name}_sum"), name.to_owned(), Series::Sum),
            counter(format!("{name}_bucket"), name.to_owned(), Series::Buckets),
        ],
        _ => Vec::new(),
    }
}
