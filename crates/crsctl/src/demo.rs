//! One government request walked through the whole suite, step by step. `crsctl demo` prints
//! each step; the end-to-end tests drive the same steps and check what each service reports.

use std::time::Duration;

use crs_platform::auth::{Principal, Role, TokenIssuer};
use crs_proto::common::{
    Category, ContentItem, DecisionGround, ItemDecision, ItemOutcome, Keyword, LegalInstrument, NoActionReason,
    RequestStatus, RequestedAction,
};
use crs_proto::intake::agency_admin_service_client::AgencyAdminServiceClient;
use crs_proto::intake::intake_service_client::IntakeServiceClient;
use crs_proto::intake::{CreateAgencyRequest, GetRequestRequest, GovernmentRequest, SubmitRequestRequest};
use crs_proto::notification::notification_service_client::NotificationServiceClient;
use crs_proto::notification::{
    Audience, DeliveryState, ListNotificationsRequest, Notification, NotificationKind, PutSubscriptionRequest,
};
use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
use crs_proto::review::{ApproveDecisionRequest, Case, ClaimCaseRequest, GetCaseRequest, SubmitDecisionRequest};

use crate::receiver::Receiver;
use crate::{Bearer, connect};

/// Where the four services listen.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub intake: String,
    pub triage: String,
    pub legal_review: String,
    pub notification: String,
}

impl Endpoints {
    pub fn all(&self) -> [(&'static str, &str); 4] {
        [
            ("intake", &self.intake),
            ("triage", &self.triage),
            ("legal-review", &self.legal_review),
            ("notification", &self.notification),
        ]
    }
}

/// The demo's actors: an admin, an agency (once created) and a reviewer.
pub struct Demo {
    pub endpoints: Endpoints,
    issuer: TokenIssuer,
    pub receiver: Receiver,
    pub agency_id: String,
    /// How long each wait may take before the demo gives up.
    pub patience: Duration,
}

/// What a delivery-complete notification looks like for the demo's checks.
pub fn delivered(n: &Notification) -> bool {
    !n.deliveries.is_empty() && n.deliveries.iter().all(|d| d.state == DeliveryState::Delivered as i32)
}

impl Demo {
    pub fn new(endpoints: Endpoints, issuer: TokenIssuer, receiver: Receiver) -> Self {
        Demo { endpoints, issuer, receiver, agency_id: String::new(), patience: Duration::from_secs(30) }
    }

    fn bearer(&self, principal: Principal) -> anyhow::Result<Bearer> {
        Bearer::for_principal(&self.issuer, &principal)
    }

    fn admin(&self) -> anyhow::Result<Bearer> {
        self.bearer(Principal::Reviewer { id: "demo-admin".into(), roles: vec![Role::Admin] })
    }

    pub fn reviewer(&self) -> anyhow::Result<Bearer> {
        self.bearer(Principal::Reviewer { id: "ana".into(), roles: vec![Role::Reviewer] })
    }

    /// The second reviewer: a senior reviewer who approves decisions that need four eyes.
    pub fn approver(&self) -> anyhow::Result<Bearer> {
        self.bearer(Principal::Reviewer { id: "sam".into(), roles: vec![Role::SeniorReviewer] })
    }

    pub fn agency(&self) -> anyhow::Result<Bearer> {
        self.bearer(Principal::Agency { id: self.agency_id.clone() })
    }

    /// Creates the agency (with its callback at the receiver) and subscribes the content owner
    /// and enforcement endpoints.
    pub async fn set_up(&mut self) -> anyhow::Result<()> {
        let mut admin = AgencyAdminServiceClient::new(connect(&self.endpoints.intake, self.admin()?).await?);
        let agency = admin
            .create_agency(CreateAgencyRequest {
                name: "Ministry of Digital Development (demo)".into(),
                jurisdiction: "KZ".into(),
                contact_email: "requests@ministry.example".into(),
                callback_url: self.receiver.url("agency"),
                callback_secret: "demo-callback-secret".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        self.agency_id = agency.id;
        let mut notification =
            NotificationServiceClient::new(connect(&self.endpoints.notification, self.admin()?).await?);
        for (audience, name) in [(Audience::ContentOwner, "content-owner"), (Audience::Enforcement, "enforcement")] {
            notification
                .put_subscription(PutSubscriptionRequest {
                    audience: audience as i32,
                    endpoint: self.receiver.url(name),
                    secret: format!("{name}-secret"),
                    ..Default::default()
                })
                .await?;
        }
        Ok(())
    }

    /// The agency's request: three items, one of them named twice (it collapses into one).
    pub fn sample_request(idempotency_key: &str) -> SubmitRequestRequest {
        SubmitRequestRequest {
            idempotency_key: idempotency_key.into(),
            jurisdiction: "KZ".into(),
            legal_instrument: LegalInstrument::GovernmentOrder as i32,
            category: Category::IllegalOrHarmfulSpeech as i32,
            keywords: vec![Keyword::ViolationNationalLaw as i32],
            requested_action: RequestedAction::RestrictInJurisdiction as i32,
            items: vec![
                ContentItem {
                    url: "https://Social.Example/posts/1001?utm_source=share#top".into(),
                    description: "post calling for an unsanctioned rally".into(),
                    ..Default::default()
                },
                ContentItem { url: "https://social.example/posts/1001".into(), ..Default::default() },
                ContentItem { url: "https://social.example/posts/1002".into(), ..Default::default() },
                ContentItem { content_id: "video_77f3".into(), ..Default::default() },
            ],
            legal_basis: "Law on Online Platforms and Online Advertising, Art. 9(4)(2)".into(),
            justification: "The posts call for participation in an assembly the court declared unlawful.".into(),
            reference: "MDD-2026/118".into(),
            issuing_authority: "Ministry of Digital Development".into(),
        }
    }

    pub async fn submit(&self, request: SubmitRequestRequest) -> anyhow::Result<GovernmentRequest> {
        Ok(self.submit_traced(request).await?.0)
    }

    /// Submits, and returns the trace id intake's reply names (`x-trace-id`).
    pub async fn submit_traced(
        &self,
        request: SubmitRequestRequest,
    ) -> anyhow::Result<(GovernmentRequest, Option<String>)> {
        let mut intake = IntakeServiceClient::new(connect(&self.endpoints.intake, self.agency()?).await?);
        let reply = intake.submit_request(request).await?;
        let trace_id = reply.metadata().get("x-trace-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let request =
            reply.into_inner().request.ok_or_else(|| anyhow::anyhow!("intake replied without the request"))?;
        Ok((request, trace_id))
    }

    /// The agency's view of its request.
    pub async fn get(&self, request_id: &str) -> anyhow::Result<GovernmentRequest> {
        let mut intake = IntakeServiceClient::new(connect(&self.endpoints.intake, self.agency()?).await?);
        let reply = intake.get_request(GetRequestRequest { request_id: request_id.into() }).await?.into_inner();
        reply.request.ok_or_else(|| anyhow::anyhow!("intake replied without the request"))
    }

    /// Waits until the agency sees `status`.
    pub async fn wait_status(&self, request_id: &str, status: RequestStatus) -> anyhow::Result<GovernmentRequest> {
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            let request = self.get(request_id).await?;
            if request.status == status as i32 {
                return Ok(request);
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "request {request_id} is {:?}, not {:?}, after {:?}",
                    RequestStatus::try_from(request.status).unwrap_or_default(),
                    status,
                    self.patience
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the case to reach legal review, then claims it as the reviewer.
    pub async fn claim(&self, case_id: &str) -> anyhow::Result<Case> {
        let mut review = LegalReviewServiceClient::new(connect(&self.endpoints.legal_review, self.reviewer()?).await?);
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            match review.get_case(GetCaseRequest { case_id: case_id.into() }).await {
                Ok(_) => break,
                Err(s) if s.code() == tonic::Code::NotFound && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(s) => return Err(s.into()),
            }
        }
        Ok(review.claim_case(ClaimCaseRequest { case_id: case_id.into(), lease: None }).await?.into_inner())
    }

    /// The reviewer's decision: restrict the first item in KZ, no action on the second,
    /// remove the third everywhere under the platform's terms.
    pub fn sample_decisions() -> Vec<ItemDecision> {
        vec![
            ItemDecision {
                item_index: 0,
                outcome: ItemOutcome::RestrictedInJurisdiction as i32,
                ground: DecisionGround::IllegalContent as i32,
                legal_ground: "Kazakhstan Law on Online Platforms, Art. 9(4)(2)".into(),
                explanation: "Unlawful call to an assembly under a court ruling in Kazakhstan.".into(),
                ..Default::default()
            },
            ItemDecision {
                item_index: 1,
                outcome: ItemOutcome::NoAction as i32,
                no_action_reason: NoActionReason::NotSpecificEnough as i32,
                explanation: "The request does not say what in this post is unlawful.".into(),
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
        ]
    }

    pub async fn decide(&self, case_id: &str) -> anyhow::Result<Case> {
        let mut review = LegalReviewServiceClient::new(connect(&self.endpoints.legal_review, self.reviewer()?).await?);
        Ok(review
            .submit_decision(SubmitDecisionRequest {
                case_id: case_id.into(),
                decisions: Self::sample_decisions(),
                summary: "Partly granted: one item restricted in KZ, one removed globally, one refused.".into(),
                idempotency_key: uuid::Uuid::new_v4().to_string(),
            })
            .await?
            .into_inner())
    }

    /// Decides, and approves as the second reviewer when the decision needs it.
    pub async fn decide_and_approve(&self, case_id: &str) -> anyhow::Result<Case> {
        let decided = self.decide(case_id).await?;
        if decided.status == RequestStatus::AwaitingApproval as i32 { self.approve(case_id).await } else { Ok(decided) }
    }

    /// The second reviewer approves the decision awaiting approval.
    pub async fn approve(&self, case_id: &str) -> anyhow::Result<Case> {
        let mut review = LegalReviewServiceClient::new(connect(&self.endpoints.legal_review, self.approver()?).await?);
        Ok(review
            .approve_decision(ApproveDecisionRequest {
                case_id: case_id.into(),
                approve: true,
                comment: "Checked against the law invoked and the platform policy; approved.".into(),
                idempotency_key: uuid::Uuid::new_v4().to_string(),
            })
            .await?
            .into_inner())
    }

    /// Notification's record of the request, as an admin sees it.
    pub async fn notifications(&self, request_id: &str) -> anyhow::Result<Vec<Notification>> {
        let mut notification =
            NotificationServiceClient::new(connect(&self.endpoints.notification, self.admin()?).await?);
        Ok(notification
            .list_notifications(ListNotificationsRequest { request_id: request_id.into(), ..Default::default() })
            .await?
            .into_inner()
            .notifications)
    }

    /// Waits until notification has recorded `kinds` for the request, each fully delivered.
    pub async fn wait_delivered(
        &self,
        request_id: &str,
        kinds: &[NotificationKind],
    ) -> anyhow::Result<Vec<Notification>> {
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            let last = match self.notifications(request_id).await {
                Ok(list) => {
                    let done = kinds.iter().all(|k| list.iter().any(|n| n.kind == *k as i32 && delivered(n)));
                    if done {
                        return Ok(list);
                    }
                    format!("{} notification(s) so far", list.len())
                }
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("notifications for {request_id} not all delivered after {:?}: {last}", self.patience);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `crsctl demo`: the whole flow, printed.
pub async fn run(endpoints: Endpoints, issuer: TokenIssuer) -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let mut demo = Demo::new(endpoints, issuer, receiver);
    println!("== waiting for the four services to report SERVING");
    for (name, url) in demo.endpoints.all() {
        crate::wait_serving(url, Duration::from_secs(60)).await?;
        println!("   {name:<13} {url}  SERVING");
    }
    demo.set_up().await?;
    println!("== 1. admin created agency {} (KZ); its callback is {}", demo.agency_id, demo.receiver.url("agency"));

    let (submitted, trace_id) = demo.submit_traced(Demo::sample_request(&uuid::Uuid::new_v4().to_string())).await?;
    println!("== 2. agency submitted request {} -> {}", submitted.id, status_name(submitted.status));
    if let Some(trace_id) = &trace_id {
        println!("      trace id {trace_id} (search for it in your tracing backend)");
    }
    for item in &submitted.items {
        println!("      item {}: {}", item.index, item.content_key);
    }

    let triaged = demo.wait_status(&submitted.id, RequestStatus::Triaged).await?;
    if let Some(d) = &triaged.deadline {
        let due = d.due_at.as_ref().map(|t| t.seconds).unwrap_or_default();
        println!(
            "== 3. triage applied SLA policy {} ({}); decision due at unix {}",
            d.policy_id, d.legal_reference, due
        );
    }

    let case = demo.claim(&submitted.id).await?;
    println!("== 4. reviewer ana claimed case {} -> {}", case.id, status_name(case.status));
    demo.wait_status(&submitted.id, RequestStatus::InReview).await?;
    let decided = demo.decide(&case.id).await?;
    println!("== 5. reviewer ana decided -> {}", status_name(decided.status));
    if decided.status == RequestStatus::AwaitingApproval as i32 {
        println!("      a second reviewer must approve: {}", decided.approval_reason);
        let approved = demo.approve(&case.id).await?;
        println!("      senior reviewer sam approved -> {}", status_name(approved.status));
    }

    let view = demo.wait_status(&submitted.id, RequestStatus::Decided).await?;
    println!("== 6. the agency now sees {}:", status_name(view.status));
    for item in &view.items {
        let outcome = ItemOutcome::try_from(item.outcome).map(|o| o.as_str_name()).unwrap_or("?");
        println!("      item {} {:<40} {}", item.index, item.content_key, outcome);
    }

    let notes =
        demo.wait_delivered(&submitted.id, &[NotificationKind::Acknowledged, NotificationKind::Decided]).await?;
    println!("== 7. notification recorded {} notification(s):", notes.len());
    for n in &notes {
        let kind = NotificationKind::try_from(n.kind).map(|k| k.as_str_name()).unwrap_or("?");
        for d in &n.deliveries {
            let audience = Audience::try_from(d.audience).map(|a| a.as_str_name()).unwrap_or("?");
            let state = DeliveryState::try_from(d.state).map(|s| s.as_str_name()).unwrap_or("?");
            println!("      {kind:<30} {audience:<24} {state} after {} attempt(s)", d.attempts);
        }
    }
    println!("== 8. webhooks received by the demo's receiver:");
    for r in demo.receiver.received() {
        println!(
            "      /hook/{:<14} kind={} delivery={}",
            r.endpoint,
            r.body["kind"].as_str().unwrap_or("?"),
            r.delivery_id
        );
    }
    println!(
        "== done. Logs: data/logs/*.log; databases: data/*.db; try `grpcurl -plaintext {} list`",
        demo.endpoints.intake.trim_start_matches("http://")
    );
    Ok(())
}

fn status_name(status: i32) -> &'static str {
    RequestStatus::try_from(status).map(|s| s.as_str_name()).unwrap_or("?")
}
