//! What notification's tests share: the service in process on its own database, gRPC clients
//! as each caller, real webhook endpoints that verify every delivery with the Standard Webhooks
//! reference library (the `standardwebhooks` crate) and misbehave on purpose, and the events
//! the flow sends.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use crs_platform::auth::{Principal, Role};
use crs_proto::common::{
    Category, DecisionGround, Item, ItemDecision, ItemOutcome, LegalInstrument, NoActionReason, SlaDeadline, Submission,
};
use crs_proto::notification::notification_internal_service_client::NotificationInternalServiceClient;
use crs_proto::notification::notification_service_client::NotificationServiceClient;
use crs_proto::notification::*;
use crs_testkit::{Backend, Running, ServiceEnv};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Settings every test starts from: development mode (the endpoints are http on 127.0.0.1),
/// quick retries, and the breaker out of the way unless a test wants it.
pub async fn env(backend: Backend) -> ServiceEnv {
    ServiceEnv::new::<crs_notification::Application>(backend)
        .await
        .set("CRS_DELIVERY__DEVELOPMENT_MODE", "true")
        .set("CRS_DELIVERY__INITIAL_BACKOFF_MS", "50")
        .set("CRS_DELIVERY__MAX_BACKOFF_MS", "200")
        .set("CRS_DELIVERY__POLL_INTERVAL_MS", "100")
        .set("CRS_DELIVERY__BREAKER_FAILURES", "1000")
        .set("CRS_WEBHOOKS__TIMEOUT_MS", "5000")
}

pub async fn start(env: &ServiceEnv) -> Running {
    crs_testkit::service::start::<crs_notification::Application>(env).await
}

type Authed = InterceptedService<Channel, Bearer>;

#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

async fn channel(running: &Running, principal: &Principal) -> Authed {
    let channel = Channel::from_shared(running.url.clone()).unwrap().connect().await.unwrap();
    let token = format!("Bearer {}", crs_testkit::service::token(principal));
    InterceptedService::new(channel, Bearer(token.parse().unwrap()))
}

pub fn admin_principal() -> Principal {
    crs_testkit::service::admin()
}

pub async fn admin(running: &Running) -> NotificationServiceClient<Authed> {
    NotificationServiceClient::new(channel(running, &admin_principal()).await)
}

pub async fn as_principal(running: &Running, principal: &Principal) -> NotificationServiceClient<Authed> {
    NotificationServiceClient::new(channel(running, principal).await)
}

pub async fn agency(running: &Running, id: &str) -> NotificationServiceClient<Authed> {
    as_principal(running, &Principal::Agency { id: id.into() }).await
}

pub async fn reviewer(running: &Running) -> NotificationServiceClient<Authed> {
    as_principal(running, &Principal::Reviewer { id: "ana".into(), roles: vec![Role::Reviewer] }).await
}

/// The internal service as legal review (Notify) or intake (Notify, PutAgencySubscription).
pub async fn internal(running: &Running, service: &str) -> NotificationInternalServiceClient<Authed> {
    NotificationInternalServiceClient::new(channel(running, &Principal::Service { name: service.into() }).await)
}

/// A request of three items from agency `agency_id` in KZ.
pub fn submission(request_id: &str, agency_id: &str) -> Submission {
    Submission {
        request_id: request_id.into(),
        agency_id: agency_id.into(),
        agency_name: "Ministry of Digital Development".into(),
        jurisdiction: "KZ".into(),
        legal_instrument: LegalInstrument::GovernmentOrder as i32,
        category: Category::IllegalOrHarmfulSpeech as i32,
        reference: "MDD-2026/118".into(),
        items: (0..3)
            .map(|i| Item {
                index: i,
                url: format!("https://social.example/posts/{request_id}/{i}"),
                content_key: format!("url:https://social.example/posts/{request_id}/{i}"),
                ..Default::default()
            })
            .collect(),
        received_at: Some(prost_types::Timestamp { seconds: 1_764_000_000, nanos: 0 }),
        ..Default::default()
    }
}

/// The decision: item 0 restricted in KZ, item 1 left, item 2 removed everywhere.
pub fn decided(request_id: &str, agency_id: &str) -> NotifyRequest {
    NotifyRequest {
        event_id: format!("decided:{request_id}"),
        kind: NotificationKind::Decided as i32,
        submission: Some(submission(request_id, agency_id)),
        decisions: vec![
            ItemDecision {
                item_index: 0,
                outcome: ItemOutcome::RestrictedInJurisdiction as i32,
                ground: DecisionGround::IllegalContent as i32,
                legal_ground: "Law on Online Platforms, Art. 9(4)(2)".into(),
                explanation: "The post calls for an assembly a court declared unlawful.".into(),
                ..Default::default()
            },
            ItemDecision {
                item_index: 1,
                outcome: ItemOutcome::NoAction as i32,
                no_action_reason: NoActionReason::NotSpecificEnough as i32,
                explanation: "The request does not say what is unlawful here.".into(),
                ..Default::default()
            },
            ItemDecision {
                item_index: 2,
                outcome: ItemOutcome::RemovedGlobally as i32,
                ground: DecisionGround::IncompatibleContent as i32,
                legal_ground: "Community Standards: violent threats".into(),
                explanation: "The video threatens named people with violence.".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

pub fn acknowledged(request_id: &str, agency_id: &str) -> NotifyRequest {
    NotifyRequest {
        event_id: format!("ack:{request_id}"),
        kind: NotificationKind::Acknowledged as i32,
        submission: Some(submission(request_id, agency_id)),
        ..Default::default()
    }
}

pub fn question(request_id: &str, agency_id: &str, question: &str) -> NotifyRequest {
    NotifyRequest {
        event_id: format!("question:{request_id}"),
        kind: NotificationKind::InformationRequested as i32,
        submission: Some(submission(request_id, agency_id)),
        message: question.into(),
        ..Default::default()
    }
}

pub fn sla_warning(request_id: &str, percent: u32) -> NotifyRequest {
    NotifyRequest {
        event_id: format!("sla:{request_id}:{percent}"),
        kind: NotificationKind::SlaWarning as i32,
        submission: Some(submission(request_id, "agency-1")),
        sla_threshold_percent: percent,
        deadline: Some(SlaDeadline {
            policy_id: "kz-online-platforms".into(),
            legal_reference: "Law on Online Platforms Art. 9(4)(2)".into(),
            due_at: Some(prost_types::Timestamp { seconds: 1_764_086_400, nanos: 0 }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Subscribes `endpoint` for `audience` by webhook (an admin's call) and returns the subscription
/// with its secret, shown this once.
pub async fn subscribe(running: &Running, audience: Audience, endpoint: &str) -> Subscription {
    admin(running)
        .await
        .put_subscription(PutSubscriptionRequest {
            audience: audience as i32,
            endpoint: endpoint.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Every notification about `request_id`, as an admin sees it.
pub async fn notifications(running: &Running, request_id: &str) -> Vec<Notification> {
    admin(running)
        .await
        .list_notifications(ListNotificationsRequest { request_id: request_id.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .notifications
}

/// Every delivery recorded, as an admin sees them.
pub async fn deliveries(running: &Running) -> Vec<Delivery> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin(running)
            .await
            .list_notifications(ListNotificationsRequest { page_token: token, page_size: 500, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.notifications.into_iter().flat_map(|n| n.deliveries));
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// The service's Prometheus text.
pub async fn metrics(running: &Running) -> String {
    reqwest::get(format!("http://{}/metrics", running.admin_addr)).await.unwrap().text().await.unwrap()
}

/// The value of one series in Prometheus text, or 0 when absent.
pub fn metric(text: &str, series: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok()))
        .map_or(0, |v| v as i64)
}

/// How an endpoint of the [`Receiver`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Verifies with the reference library; 204 when it verifies, 401 when not.
    Verify,
    /// Answers this status without looking.
    Answer(u16),
    /// Never answers.
    Hang,
    /// Redirects (307) to the URL set with [`Receiver::redirect_to`].
    Redirect,
}

/// One webhook as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub endpoint: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// What the reference library said.
    pub verified: Result<(), String>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }
}

#[derive(Default)]
struct ReceiverState {
    behaviour: HashMap<String, Behaviour>,
    secrets: HashMap<String, String>,
    received: Vec<Received>,
    redirect_to: String,
}

/// A real HTTP server with one endpoint per name (`/hook/<name>`), each verifying every delivery
/// with the Standard Webhooks reference library, or misbehaving as told.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    /// Requests that arrived, by endpoint, including ones never answered.
    arrived: Arc<Mutex<HashMap<String, usize>>>,
    /// While false, requests wait before they are answered (see [`Receiver::hold`]).
    open: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            state: Default::default(),
            arrived: Default::default(),
            open: Arc::new(tokio::sync::watch::Sender::new(true)),
        };
        let app = Router::new().route("/hook/{name}", post(hook)).with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        receiver
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/hook/{name}", self.addr)
    }

    pub fn behave(&self, name: &str, behaviour: Behaviour) {
        self.state.lock().unwrap().behaviour.insert(name.into(), behaviour);
    }

    pub fn register(&self, name: &str, secret: &str) {
        self.state.lock().unwrap().secrets.insert(name.into(), secret.into());
    }

    /// Holds every request that arrives from now on unanswered until [`Receiver::release`].
    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    /// Answers the requests held, and those that follow at once.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    pub fn redirect_to(&self, url: &str) {
        self.state.lock().unwrap().redirect_to = url.into();
    }

    pub fn received(&self, name: &str) -> Vec<Received> {
        self.state.lock().unwrap().received.iter().filter(|r| r.endpoint == name).cloned().collect()
    }

    pub fn arrived(&self, name: &str) -> usize {
        self.arrived.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

async fn hook(
    State(r): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    *r.arrived.lock().unwrap().entry(name.clone()).or_default() += 1;
    let _ = r.open.subscribe().wait_for(|open| *open).await;
    let (behaviour, secret, redirect) = {
        let s = r.state.lock().unwrap();
        (
            s.behaviour.get(&name).copied().unwrap_or(Behaviour::Verify),
            s.secrets.get(&name).cloned(),
            s.redirect_to.clone(),
        )
    };
    match behaviour {
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Behaviour::Answer(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Behaviour::Redirect => (StatusCode::TEMPORARY_REDIRECT, [("location", redirect)]).into_response(),
        Behaviour::Verify => {
            let verified = match secret {
                Some(secret) => standardwebhooks::Webhook::new(&secret)
                    .map_err(|e| format!("{e:?}"))
                    .and_then(|w| w.verify(&body, &headers).map_err(|e| format!("{e:?}"))),
                None => Err("no secret registered".into()),
            };
            let ok = verified.is_ok();
            r.state.lock().unwrap().received.push(Received { endpoint: name, headers, body: body.to_vec(), verified });
            if ok { StatusCode::NO_CONTENT.into_response() } else { StatusCode::UNAUTHORIZED.into_response() }
        }
    }
}

/// A plain TCP listener that counts the connections it gets: a stand-in for a service webhooks
/// must never reach.
pub struct Forbidden {
    pub port: u16,
    connections: Arc<AtomicUsize>,
}

impl Forbidden {
    pub async fn start() -> Forbidden {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        Forbidden { port, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}
