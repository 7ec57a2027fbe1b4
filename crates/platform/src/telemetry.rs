//! Telemetry set up in one place: JSON logs (one line per event, with trace and span ids),
//! traces with W3C trace-context and baggage propagation, exported over OTLP/gRPC when an
//! endpoint is configured.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapCompositePropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tonic::metadata::{KeyAndValueRef, MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::TelemetryConfig;

/// Keeps the exporters alive; [`Telemetry::shutdown`] flushes them.
#[must_use = "dropping the handle without shutdown() loses buffered spans"]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    metrics: Option<crate::metrics::OtlpMetrics>,
}

impl Telemetry {
    /// Flushes buffered spans. Call once, on the way out.
    pub fn shutdown(self) {
        if let Some(metrics) = self.metrics {
            metrics.shutdown();
        }
        if let Some(provider) = self.tracer_provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("telemetry shutdown: {e}");
        }
    }
}

/// Installs the global subscriber for `service_name`.
///
/// Traces are always recorded (so every log line and reply carries a trace id); they are
/// exported by OTLP/gRPC when `telemetry.otlp_endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
/// The standard variables apply: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (read from `env`).
pub fn init(service_name: &str, cfg: &TelemetryConfig, env: &HashMap<String, String>) -> anyhow::Result<Telemetry> {
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    let filter = EnvFilter::try_new(&cfg.log_filter)
        .map_err(|e| anyhow::anyhow!("invalid telemetry.log_filter {:?}: {e}", cfg.log_filter))?;
    let fmt = tracing_subscriber::fmt::layer().event_format(JsonWithTrace).with_writer(std::io::stderr);

    let endpoint = cfg
        .otlp_endpoint
        .clone()
        .filter(|e| !e.is_empty())
        .or_else(|| env.get("OTEL_EXPORTER_OTLP_ENDPOINT").cloned().filter(|e| !e.is_empty()));
    let name =
        env.get("OTEL_SERVICE_NAME").cloned().filter(|n| !n.is_empty()).unwrap_or_else(|| service_name.to_owned());
    let mut resource = opentelemetry_sdk::Resource::builder().with_service_name(name);
    for (k, v) in resource_attributes(env) {
        resource = resource.with_attribute(opentelemetry::KeyValue::new(k, v));
    }
    let resource = resource.build();
    let metrics = match &endpoint {
        Some(endpoint) => {
            let interval = env
                .get("OTEL_METRIC_EXPORT_INTERVAL")
                .and_then(|v| v.parse().ok())
                .map(std::time::Duration::from_millis)
                .unwrap_or(std::time::Duration::from_secs(60));
            Some(crate::metrics::OtlpMetrics::start(endpoint, resource.clone(), interval)?)
        }
        None => None,
    };
    let mut provider = SdkTracerProvider::builder().with_resource(resource).with_sampler(sampler(env)?);
    if let Some(endpoint) = endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the OTLP exporter: {e}"))?;
        // Export from the tokio runtime the gRPC client lives on (the SDK's default batch
        // processor runs on a thread of its own, where the tonic exporter cannot make progress).
        let batch = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
        provider = provider.with_span_processor(batch);
    }
    let provider = provider.build();
    let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name.to_owned()));

    tracing_subscriber::registry()
        .with(filter)
        .with(otel_layer)
        .with(fmt)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the tracing subscriber: {e}"))?;
    Ok(Telemetry { tracer_provider: Some(provider), metrics })
}

/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value,key=value`.
fn resource_attributes(env: &HashMap<String, String>) -> Vec<(String, String)> {
    env.get("OTEL_RESOURCE_ATTRIBUTES")
        .map(|attrs| {
            attrs
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| !k.is_empty() && k != "service.name")
                .collect()
        })
        .unwrap_or_default()
}

/// `OTEL_TRACES_SAMPLER` (and `_ARG` for ratios), as the specification names them.
fn sampler(env: &HashMap<String, String>) -> anyhow::Result<Sampler> {
    let ratio = || -> anyhow::Result<f64> {
        match env.get("OTEL_TRACES_SAMPLER_ARG") {
            Some(arg) => {
                arg.parse().map_err(|_| anyhow::anyhow!("OTEL_TRACES_SAMPLER_ARG must be a number, got {arg:?}"))
            }
            None => Ok(1.0),
        }
    };
    Ok(match env.get("OTEL_TRACES_SAMPLER").map(String::as_str).unwrap_or("parentbased_always_on") {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?))),
        other => anyhow::bail!("OTEL_TRACES_SAMPLER {other:?} is not supported"),
    })
}

/// One JSON object per line: time, level, target, message, the event's fields, the current
/// span's name, and its `trace_id` and `span_id`, so logs and traces join.
struct JsonWithTrace;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonWithTrace
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = JsonFields(serde_json::Map::new());
        event.record(&mut fields);
        let mut line = fields.0;
        let meta = event.metadata();
        line.insert("timestamp".into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true).into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(span) = ctx.lookup_current() {
            line.insert("span".into(), span.name().into());
        }
        let cx = tracing::Span::current().context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            line.insert("trace_id".into(), sc.trace_id().to_string().into());
            line.insert("span_id".into(), sc.span_id().to_string().into());
        }
        let text = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// The trace id of the current span, as hex (for replies and messages).
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Makes `span` part of a stored trace (a case's) and links it to where the work came from
/// (e.g. the reviewer's own call), as the messaging conventions do for deferred work.
pub fn join_stored_trace(span: &tracing::Span, traceparent: Option<&str>, link_from: &tracing::Span) {
    let from = link_from.context().span().span_context().clone();
    continue_stored_trace(span, traceparent);
    if from.is_valid() {
        span.add_link(from);
    }
}

/// The span of work done once for several callers' sakes: a shared transaction, a group commit,
/// a batch of timer firings. Done for one caller (`members` holds one span), it is that span's
/// child, in the caller's trace. Done for several, it starts a trace of its own and links to each
/// caller's span, as the messaging conventions do for a batch: the work belongs to no one
/// caller's trace more than another's, and each can be found from it. Either way what it does in
/// the database is in a trace, not in traces of a single span each.
pub fn batch_span(name: &'static str, members: &[&tracing::Span]) -> tracing::Span {
    if let [only] = members {
        return tracing::info_span!(parent: *only, "batch", otel.name = name, crs.batch.size = 1);
    }
    let span = tracing::info_span!(parent: None, "batch", otel.name = name, crs.batch.size = members.len() as i64);
    for member in members {
        link(&span, member.context().span().span_context().clone());
    }
    span
}

/// Links `span` to each stored trace context among `traceparents` (e.g. the cases whose timers a
/// batch fires).
pub fn link_stored_traces<'a>(span: &tracing::Span, traceparents: impl IntoIterator<Item = Option<&'a str>>) {
    for tp in traceparents.into_iter().flatten() {
        link(span, stored_context(tp).span().span_context().clone());
    }
}

fn link(span: &tracing::Span, to: opentelemetry::trace::SpanContext) {
    if to.is_valid() {
        span.add_link(to);
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (MetadataKey::from_bytes(key.as_bytes()), MetadataValue::try_from(value.as_str())) {
            self.0.insert(k, v);
        }
    }
}

struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter_map(|kv| match kv {
                KeyAndValueRef::Ascii(k, _) => Some(k.as_str()),
                KeyAndValueRef::Binary(..) => None,
            })
            .collect()
    }
}

/// Writes the current span's context (`traceparent`, `tracestate`) into outgoing metadata.
pub fn inject_context(metadata: &mut MetadataMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut MetadataInjector(metadata)));
}

/// Makes `span` a child of the caller's trace carried in `metadata`, if any.
pub fn continue_trace(span: &tracing::Span, metadata: &MetadataMap) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(metadata)));
    let _ = span.set_parent(cx);
}

/// The current span's context as a `traceparent` string, to store beside deferred work.
pub fn current_traceparent() -> Option<String> {
    let mut carrier = HashMap::new();
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier.remove("traceparent")
}

/// Makes `span` continue the trace of a stored `traceparent`.
pub fn continue_stored_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(tp) = traceparent {
        let _ = span.set_parent(stored_context(tp));
    }
}

/// The trace context a stored `traceparent` names.
fn stored_context(traceparent: &str) -> opentelemetry::Context {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier))
}

/// Silent-by-default logging for tests: set `TEST_LOG=1` to see it.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(EnvFilter::new("debug")).with_test_writer().try_init();
    }
}
