//! Mutual TLS against real services: real gRPC over real TLS, with certificates made in the test.
//!
//! A caller with a certificate from the services' CA reaches public and internal RPCs; one
//! without a certificate reaches only public RPCs (`client_auth = "optional"`) or is refused at
//! the handshake (`"required"`); certificates from another CA and expired ones are refused;
//! rotated files are used by new connections without a restart, on the server and in the peer
//! channels; triage hands a case to legal review over mutual TLS; and plaintext clients get
//! nowhere, apart from the plaintext health listener meant for probes.

use std::time::Duration;

use crs_platform::auth::{Principal, Role};
use crs_platform::config::{ClientAuth, TlsConfig};
use crs_platform::tls::{ClientTls, Tls};
use crs_proto::common::{Category, Item, LegalInstrument, RequestedAction, Submission};
use crs_proto::review::GetCaseRequest;
use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
use crs_proto::triage::triage_internal_service_client::TriageInternalServiceClient;
use crs_proto::triage::triage_service_client::TriageServiceClient;
use crs_proto::triage::{AssessRequestRequest, ListSlaPoliciesRequest};
use crs_testkit::pki::{TestCa, TlsFiles};
use crs_testkit::service::{self, Running, ServiceEnv};
use crs_testkit::{Backend, eventually};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

const SECOND: Duration = Duration::from_secs(1);

fn intake() -> Principal {
    Principal::Service { name: "intake".into() }
}

fn reviewer() -> Principal {
    Principal::Reviewer { id: "ana".into(), roles: vec![Role::SeniorReviewer] }
}

/// `message` with a bearer token for `principal`.
fn as_<T>(principal: &Principal, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {}", service::token(principal)).parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

/// A lazy channel to `url`, over TLS with `tls` when it is `https://`.
fn channel(url: &str, tls: Option<&ClientTls>) -> Channel {
    let endpoint = Endpoint::from_shared(url.to_owned()).unwrap().connect_timeout(2 * SECOND).timeout(10 * SECOND);
    crs_platform::peers::channel(&endpoint, tls).unwrap()
}

/// Asserts that a call failed in the transport (a refused handshake: nothing reached the
/// server's RPCs), and returns the whole cause chain for further checks.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> String {
    let status = result.expect_err("the call should be refused");
    let mut chain = status.message().to_owned();
    let mut source = std::error::Error::source(&status);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(matches!(status.code(), Code::Unavailable | Code::Unknown), "{status:?}");
    assert!(chain.contains("transport error") || chain.contains("connect"), "not a transport failure: {chain}");
    chain
}

/// A request as intake accepted it, for triage's internal `AssessRequest`.
fn assess_request() -> AssessRequestRequest {
    let id = uuid::Uuid::now_v7().to_string();
    let url = format!("https://social.example/posts/{id}");
    AssessRequestRequest {
        event_id: uuid::Uuid::now_v7().to_string(),
        submission: Some(Submission {
            request_id: id,
            agency_id: "agency-1".into(),
            jurisdiction: "KZ".into(),
            legal_instrument: LegalInstrument::GovernmentNotice as i32,
            category: Category::IllegalOrHarmfulSpeech as i32,
            requested_action: RequestedAction::RestrictInJurisdiction as i32,
            items: vec![Item { index: 0, content_key: format!("url:{url}"), url, ..Default::default() }],
            received_at: Some(crs_platform::time::timestamp_from_millis(crs_platform::time::now_millis())),
            ..Default::default()
        }),
    }
}

/// Calls a public RPC (`ListSlaPolicies`) over `channel`.
async fn public_call(channel: Channel) -> Result<usize, tonic::Status> {
    let reply =
        TriageServiceClient::new(channel).list_sla_policies(as_(&reviewer(), ListSlaPoliciesRequest {})).await?;
    Ok(reply.into_inner().policies.len())
}

/// Calls an internal RPC (`AssessRequest`) as intake over `channel`.
async fn internal_call(channel: Channel) -> Result<String, tonic::Status> {
    let reply = TriageInternalServiceClient::new(channel).assess_request(as_(&intake(), assess_request())).await?;
    Ok(reply.into_inner().assessment.unwrap_or_default().queue)
}

/// Triage serving TLS with `files`, with more settings from `extra`.
async fn triage(files: &TlsFiles, extra: &[(&str, &str)]) -> Running {
    let mut env = files.apply(ServiceEnv::new::<crs_triage::Application>(Backend::Sqlite).await);
    for (key, value) in extra {
        env = env.set(key, *value);
    }
    service::start::<crs_triage::Application>(&env).await
}

/// A CA and the files of a service whose certificate it signed.
fn pki(ca_name: &str, service: &str) -> (TestCa, TlsFiles) {
    let ca = TestCa::new(ca_name);
    let files = TlsFiles::write(&ca, &ca.issue(service));
    (ca, files)
}

#[tokio::test]
async fn a_peer_with_a_valid_client_certificate_reaches_public_and_internal_rpcs() {
    let (ca, files) = pki("CRS CA", "triage");
    let triage = triage(&files, &[]).await;
    assert!(triage.url.starts_with("https://"), "{}", triage.url);

    let peer = channel(&triage.url, Some(&ca.client(Some(&ca.issue("intake")))));
    assert!(public_call(peer.clone()).await.unwrap() > 0);
    assert_eq!(internal_call(peer).await.unwrap(), "standard");
    triage.stop().await;
}

#[tokio::test]
async fn without_a_client_certificate_only_public_rpcs_answer() {
    let (ca, files) = pki("CRS CA", "triage");
    let triage = triage(&files, &[]).await;

    // client_auth = "optional" (the default): an agency's or a reviewer's tool without a
    // certificate reaches the public services, over TLS...
    let anonymous = channel(&triage.url, Some(&ca.client(None)));
    assert!(public_call(anonymous.clone()).await.unwrap() > 0);
    // ...but not the hand-offs, even with a valid service token.
    let refused = internal_call(anonymous).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("client certificate"), "{refused:?}");
    triage.stop().await;
}

#[tokio::test]
async fn client_auth_required_refuses_the_handshake_without_a_certificate() {
    let (ca, files) = pki("CRS CA", "triage");
    let triage = triage(&files, &[("CRS_TLS__CLIENT_AUTH", "required")]).await;

    let anonymous = channel(&triage.url, Some(&ca.client(None)));
    assert!(refused(public_call(anonymous).await).contains("CertificateRequired"));

    let peer = channel(&triage.url, Some(&ca.client(Some(&ca.issue("intake")))));
    assert!(public_call(peer.clone()).await.unwrap() > 0);
    assert_eq!(internal_call(peer).await.unwrap(), "standard");
    triage.stop().await;
}

#[tokio::test]
async fn a_client_certificate_signed_by_another_ca_is_refused() {
    let (ca, files) = pki("CRS CA", "triage");
    let triage = triage(&files, &[]).await;

    // The client trusts the right CA, but its own certificate comes from elsewhere. A certificate
    // that is presented must verify, even where certificates are optional.
    let stranger = TestCa::new("Someone else's CA").issue("intake");
    let forged = channel(&triage.url, Some(&ca.client(Some(&stranger))));
    assert!(refused(public_call(forged.clone()).await).contains("UnknownCA"));
    assert!(refused(internal_call(forged).await).contains("UnknownCA"));
    triage.stop().await;
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused() {
    let (ca, files) = pki("CRS CA", "triage");
    let triage = triage(&files, &[]).await;

    let expired = channel(&triage.url, Some(&ca.client(Some(&ca.issue_expired("intake")))));
    assert!(refused(internal_call(expired.clone()).await).contains("CertificateExpired"));
    assert!(refused(public_call(expired).await).contains("CertificateExpired"));
    triage.stop().await;
}

#[tokio::test]
async fn the_server_rotates_to_a_new_ca_without_a_restart() {
    let (old_ca, files) = pki("CRS CA 2025", "triage");
    let triage = triage(&files, &[]).await;
    let old_client = || old_ca.client(Some(&old_ca.issue("intake")));
    assert_eq!(internal_call(channel(&triage.url, Some(&old_client()))).await.unwrap(), "standard");

    // A new CA, and a new server certificate from it, replace the files under the running server.
    let new_ca = TestCa::new("CRS CA 2026");
    files.replace(&new_ca.cert_pem, &new_ca.issue("triage"));
    let new_client = new_ca.client(Some(&new_ca.issue("intake")));
    eventually("new connections use the new chain", 10 * SECOND, || async {
        internal_call(channel(&triage.url, Some(&new_client))).await.ok()
    })
    .await;

    // The old CA's clients no longer get in: they do not trust the new server certificate, and
    // their certificates are no longer trusted either.
    assert!(refused(internal_call(channel(&triage.url, Some(&old_client()))).await).contains("UnknownIssuer"));
    let trusting_new_with_old_cert = new_ca.client(Some(&old_ca.issue("intake")));
    assert!(refused(public_call(channel(&triage.url, Some(&trusting_new_with_old_cert))).await).contains("UnknownCA"));
    triage.stop().await;
}

#[tokio::test]
async fn a_peer_channel_follows_rotation_of_both_sides_without_a_restart() {
    let old_ca = TestCa::new("CRS CA 2025");
    let server_files = TlsFiles::write(&old_ca, &old_ca.issue("triage"));
    // Connections live at most a second, so the channel's connection is replaced soon after.
    let triage = triage(&server_files, &[("CRS_TLS__MAX_CONNECTION_AGE_SECS", "1")]).await;

    // The calling side as intake runs it: its files, reloaded, behind one long-lived channel.
    let client_files = TlsFiles::write(&old_ca, &old_ca.issue("intake"));
    let client_tls = Tls::load(&settings(&client_files)).unwrap();
    let stop = CancellationToken::new();
    let reload = client_tls.spawn_reload(stop.clone());
    let credentials = crs_testkit::keys::identity("intake").credentials_for("triage");
    let peer = crs_platform::peers::connect(&triage.url, credentials, 10 * SECOND, Some(client_tls.client())).unwrap();
    let assess = || async {
        TriageInternalServiceClient::new(peer.clone()).assess_request(Request::new(assess_request())).await
    };
    assess().await.unwrap();

    // The server moves to a new CA first. Its connections are retired after a second, and the
    // channel's next connection fails: the client still trusts only the old CA.
    let new_ca = TestCa::new("CRS CA 2026");
    server_files.replace(&new_ca.cert_pem, &new_ca.issue("triage"));
    let status = eventually("the old connection is retired", 10 * SECOND, || async { assess().await.err() }).await;
    assert!(refused::<()>(Err(status)).contains("UnknownIssuer"));

    // Then the client's files: the same channel, in the same process, gets through again.
    client_files.replace(&new_ca.cert_pem, &new_ca.issue("intake"));
    eventually("the channel reconnects with the new material", 10 * SECOND, || async { assess().await.ok() }).await;
    // The server really moved to the new CA.
    refused(internal_call(channel(&triage.url, Some(&old_ca.client(Some(&old_ca.issue("intake")))))).await);

    stop.cancel();
    reload.await.unwrap();
    triage.stop().await;
}

/// A `[tls]` section naming `files`.
fn settings(files: &TlsFiles) -> TlsConfig {
    TlsConfig {
        enabled: true,
        cert_file: files.cert_file().display().to_string(),
        key_file: files.key_file().display().to_string(),
        ca_file: files.ca_file().display().to_string(),
        client_auth: ClientAuth::Optional,
        reload_interval_secs: 1,
        max_connection_age_secs: 0,
    }
}

#[tokio::test]
async fn triage_hands_a_case_to_legal_review_over_mutual_tls() {
    let ca = TestCa::new("CRS CA");
    let review_files = TlsFiles::write(&ca, &ca.issue("legal-review"));
    let review_env = review_files
        .apply(ServiceEnv::new::<crs_legal_review::Application>(Backend::Sqlite).await)
        .set("CRS_TIMERS__KEY_PREFIX", format!("crs:test:{}:timers", uuid::Uuid::new_v4().simple()));
    let review = service::start::<crs_legal_review::Application>(&review_env).await;
    let triage_files = TlsFiles::write(&ca, &ca.issue("triage"));
    let triage = triage(&triage_files, &[("CRS_PEERS__LEGAL_REVIEW", review.url.as_str())]).await;

    // Intake's hand-off to triage, over mutual TLS...
    let request = assess_request();
    let case_id = request.submission.as_ref().unwrap().request_id.clone();
    let intake_tls = ca.client(Some(&ca.issue("intake")));
    TriageInternalServiceClient::new(channel(&triage.url, Some(&intake_tls)))
        .assess_request(as_(&intake(), request))
        .await
        .unwrap();

    // ...and triage's outbox relay hands the case on to legal review's internal EnqueueCase over
    // mutual TLS, with triage's certificate.
    let reviewer_tls = ca.client(None);
    let case = eventually("legal review has the case", 20 * SECOND, || async {
        LegalReviewServiceClient::new(channel(&review.url, Some(&reviewer_tls)))
            .get_case(as_(&reviewer(), GetCaseRequest { case_id: case_id.clone() }))
            .await
            .ok()
    })
    .await
    .into_inner();
    assert_eq!(case.id, case_id);
    triage.stop().await;
    review.stop().await;
}

#[tokio::test]
async fn plaintext_clients_cannot_talk_to_a_tls_server() {
    let (_ca, files) = pki("CRS CA", "triage");
    // A port for the plaintext health listener.
    let health_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let health_addr = format!("127.0.0.1:{health_port}");
    let triage = triage(&files, &[("CRS_SERVER__HEALTH_LISTEN_ADDR", health_addr.as_str())]).await;
    let plaintext_url = triage.url.replacen("https://", "http://", 1);

    let plaintext = channel(&plaintext_url, None);
    refused(public_call(plaintext.clone()).await);
    refused(internal_call(plaintext.clone()).await);
    refused(
        tonic_health::pb::health_client::HealthClient::new(plaintext)
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await,
    );

    // Probes that cannot speak TLS ask the plaintext health listener, which serves health alone.
    let probe = channel(&format!("http://{health_addr}"), None);
    crs_testkit::wait_serving(&format!("http://{health_addr}"), 10 * SECOND).await.unwrap();
    let liveness = tonic_health::pb::health_client::HealthClient::new(probe.clone())
        .check(tonic_health::pb::HealthCheckRequest { service: "liveness".into() })
        .await
        .unwrap();
    assert_eq!(liveness.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    assert_eq!(public_call(probe).await.unwrap_err().code(), Code::Unimplemented);
    triage.stop().await;
}
