//! RPC metrics are labelled by the methods the server has, not by whatever path a caller sends:
//! a thousand random paths add no series (each is counted as `unknown/unknown`).

use std::time::Duration;

use crs_platform::auth::{Principal, Role};
use crs_proto::triage::ListSlaPoliciesRequest;
use crs_proto::triage::triage_service_client::TriageServiceClient;
use crs_testkit::service::{self, ServiceEnv};
use crs_testkit::{Backend, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn metrics(addr: std::net::SocketAddr) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    body
}

fn series(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("crs_grpc_server_duration_seconds_count")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_paths_add_no_metric_series() {
    let db = TestDb::fresh(Backend::Sqlite, "triage").await.unwrap();
    let triage =
        service::start::<crs_triage::Application>(&ServiceEnv::on::<crs_triage::Application>(db.clone())).await;
    let reviewer = crs_testkit::keys::token(&Principal::Reviewer { id: "ana".into(), roles: vec![Role::Reviewer] });
    let channel = tonic::transport::Endpoint::from_shared(triage.url.clone()).unwrap().connect().await.unwrap();
    let mut known = TriageServiceClient::with_interceptor(channel.clone(), move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", format!("Bearer {reviewer}").parse().unwrap());
        Ok(r)
    });
    known.list_sla_policies(ListSlaPoliciesRequest {}).await.unwrap();

    for i in 0..1000 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path: http::uri::PathAndQuery = format!("/attacker.Probe{i}/Method{i}").parse().unwrap();
        let status = grpc
            .unary::<(), (), _>(tonic::Request::new(()), path, tonic_prost::ProstCodec::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "refused before routing");
    }

    let text = tokio::time::timeout(Duration::from_secs(10), metrics(triage.admin_addr)).await.unwrap();
    let lines = series(&text);
    assert!(
        lines.iter().any(|l| l.contains(r#"rpc_method="ListSlaPolicies""#)),
        "the known method is counted: {lines:?}"
    );
    assert!(lines.iter().all(|l| !l.contains("attacker") && !l.contains("Probe")), "{lines:?}");
    let unknown: Vec<_> = lines.iter().filter(|l| l.contains(r#"rpc_service="unknown""#)).collect();
    assert_eq!(unknown.len(), 1, "one series for every unknown path: {unknown:?}");
    assert!(unknown[0].ends_with(" 1000"), "{}", unknown[0]);
    triage.stop().await;
    db.drop_now().await.unwrap();
}
