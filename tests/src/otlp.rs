//! An OTLP/gRPC receiver (traces and metrics) run by a test, for the service processes to export
//! to: what an engineer's collector would receive.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;

use crate::SERVICES;

/// Every span received, with the `service.name` of the process that sent it.
#[derive(Clone, Default)]
pub struct Collector(pub Arc<Mutex<Vec<(String, Span)>>>);

/// Every metric name received, with the `service.name` of the process that sent it.
#[derive(Clone, Default)]
pub struct MetricCollector(pub Arc<Mutex<HashSet<(String, String)>>>);

fn service_name(resource: Option<&Resource>) -> String {
    resource
        .iter()
        .flat_map(|r| r.attributes.iter())
        .find(|a| a.key == "service.name")
        .and_then(|a| match a.value.as_ref().and_then(|v| v.value.clone()) {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        })
        .unwrap_or_default()
}

#[tonic::async_trait]
impl MetricsService for MetricCollector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut names = self.0.lock().unwrap();
        for rm in request.into_inner().resource_metrics {
            let service = service_name(rm.resource.as_ref());
            for sm in rm.scope_metrics {
                names.extend(sm.metrics.into_iter().map(|m| (service.clone(), m.name)));
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = service_name(rs.resource.as_ref());
            for ss in rs.scope_spans {
                spans.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// An OTLP/gRPC receiver (traces and metrics) on a free port.
pub async fn start_collector() -> (Collector, MetricCollector, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (traces, metrics) = (Collector::default(), MetricCollector::default());
    let (t, m) = (traces.clone(), metrics.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(t))
            .add_service(MetricsServiceServer::new(m))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    (traces, metrics, endpoint)
}

pub fn exporting_to(endpoint: &str) -> Vec<(&'static str, &'static str, String)> {
    SERVICES
        .iter()
        .flat_map(|svc| {
            [
                (*svc, "OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
                (*svc, "OTEL_METRIC_EXPORT_INTERVAL", "500".to_owned()),
            ]
        })
        .collect()
}
