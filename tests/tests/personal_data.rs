//! Personal data stays in the databases: a request carried through every step (question, answer,
//! decision, approval, a withdrawal) with a marker string in every free-text field, including the
//! agency staff's contact address and a content owner's, both written to by email through a real
//! SMTP server, and not one marker in any service's log or in any span the four processes export
//! to an OTLP receiver.

use std::time::Duration;

use crs_e2e::otlp::{exporting_to, start_collector};
use crs_e2e::{Backend, SERVICES, Suite};
use crs_platform::auth::{Principal, Role};
use crs_proto::common::{
    Category, ContentItem, DecisionGround, ItemDecision, ItemOutcome, LegalInstrument, NoActionReason, RequestStatus,
    RequestedAction,
};
use crs_proto::intake::agency_admin_service_client::AgencyAdminServiceClient;
use crs_proto::intake::intake_service_client::IntakeServiceClient;
use crs_proto::intake::*;
use crs_proto::notification::notification_service_client::NotificationServiceClient;
use crs_proto::notification::{Audience, Channel, PutSubscriptionRequest};
use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
use crs_proto::review::*;
use crsctl::Bearer;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// A marker per field, so a leak names the field it came from.
fn marker(field: &str) -> String {
    format!("PIIMARK{}x", field.replace(['.', '_', '[', ']'], ""))
}

fn bearer(suite: &Suite, principal: Principal) -> Bearer {
    Bearer::for_principal(&suite.issuer, &principal).unwrap()
}

async fn status_of(intake: &mut IntakeServiceClient<crsctl::Authed>, id: &str, want: RequestStatus) {
    crs_testkit::eventually(&format!("request {id} {want:?}"), Duration::from_secs(30), || {
        let mut intake = intake.clone();
        async move {
            let r = intake.get_request(GetRequestRequest { request_id: id.into() }).await.ok()?.into_inner();
            (r.request?.status == want as i32).then_some(())
        }
    })
    .await;
}

fn strings_in(value: &AnyValue, out: &mut Vec<String>) {
    match &value.value {
        Some(Value::StringValue(s)) => out.push(s.clone()),
        Some(Value::ArrayValue(a)) => a.values.iter().for_each(|v| strings_in(v, out)),
        Some(Value::KvlistValue(kv)) => {
            kv.values.iter().filter_map(|kv| kv.value.as_ref()).for_each(|v| strings_in(v, out))
        }
        Some(Value::BytesValue(b)) => out.push(String::from_utf8_lossy(b).into_owned()),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_free_text_reaches_a_log_or_a_span() {
    let (collector, _metrics, endpoint) = start_collector().await;
    let smtp = crs_testkit::smtp::SmtpSink::start().await.unwrap();
    let mut env = exporting_to(&endpoint);
    env.push(("notification", "CRS_EMAIL__SMTP_URL", smtp.url()));
    env.push(("notification", "CRS_EMAIL__FROM", "CRS <notifications@crs.test>".into()));
    let suite = Suite::start_with(Backend::Sqlite, &env).await.unwrap();
    let owner_email = format!("{}@people.example", marker("owner_email").to_lowercase());
    let agency_email = format!("{}@ministry.example", marker("contact_email").to_lowercase());
    let admin = bearer(&suite, Principal::Reviewer { id: "root".into(), roles: vec![Role::Admin] });
    let mut agencies = AgencyAdminServiceClient::new(crsctl::connect(suite.url("intake"), admin).await.unwrap());
    let agency = agencies
        .create_agency(CreateAgencyRequest {
            name: "Ministry of Information".into(),
            jurisdiction: "KZ".into(),
            contact_email: agency_email.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The content owners' channel: an email address of a person.
    let admin = bearer(&suite, Principal::Reviewer { id: "root".into(), roles: vec![Role::Admin] });
    NotificationServiceClient::new(crsctl::connect(suite.url("notification"), admin).await.unwrap())
        .put_subscription(PutSubscriptionRequest {
            audience: Audience::ContentOwner as i32,
            channel: Channel::Email as i32,
            endpoint: owner_email.clone(),
            language: "en".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut intake = IntakeServiceClient::new(
        crsctl::connect(suite.url("intake"), bearer(&suite, Principal::Agency { id: agency.id.clone() }))
            .await
            .unwrap(),
    );
    let request = |key: &str| SubmitRequestRequest {
        idempotency_key: key.into(),
        jurisdiction: "KZ".into(),
        legal_instrument: LegalInstrument::GovernmentOrder as i32,
        category: Category::IllegalOrHarmfulSpeech as i32,
        requested_action: RequestedAction::RestrictInJurisdiction as i32,
        items: vec![
            ContentItem {
                url: format!("https://social.example/posts/{key}-1"),
                description: marker("items[0].description"),
                ..Default::default()
            },
            ContentItem {
                content_id: format!("video_{key}"),
                description: marker("items[1].description"),
                ..Default::default()
            },
        ],
        legal_basis: marker("legal_basis"),
        justification: marker("justification"),
        reference: marker("reference"),
        issuing_authority: marker("issuing_authority"),
        content_language: "kk".into(),
        keywords: Vec::new(),
    };
    let decided = intake.submit_request(request("first")).await.unwrap().into_inner().request.unwrap().id;
    let withdrawn = intake.submit_request(request("second")).await.unwrap().into_inner().request.unwrap().id;
    status_of(&mut intake, &decided, RequestStatus::Triaged).await;
    status_of(&mut intake, &withdrawn, RequestStatus::Triaged).await;
    intake
        .withdraw_request(WithdrawRequestRequest { request_id: withdrawn.clone(), reason: marker("withdraw.reason") })
        .await
        .unwrap();

    let reviewer = |id: &str, role: Role| bearer(&suite, Principal::Reviewer { id: id.into(), roles: vec![role] });
    let mut ana = LegalReviewServiceClient::new(
        crsctl::connect(suite.url("legal-review"), reviewer("ana", Role::Reviewer)).await.unwrap(),
    );
    ana.claim_case(ClaimCaseRequest { case_id: decided.clone(), lease: None }).await.unwrap();
    ana.request_information(RequestInformationRequest {
        case_id: decided.clone(),
        question: marker("question"),
        idempotency_key: "ask-1".into(),
    })
    .await
    .unwrap();
    status_of(&mut intake, &decided, RequestStatus::AwaitingInformation).await;
    intake
        .provide_information(ProvideInformationRequest {
            request_id: decided.clone(),
            answer: marker("answer"),
            idempotency_key: "answer-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let case = crs_testkit::eventually("the case is back before its reviewer", Duration::from_secs(30), || {
        let mut ana = ana.clone();
        let id = decided.clone();
        async move {
            let case = ana.get_case(GetCaseRequest { case_id: id }).await.ok()?.into_inner();
            (case.status != RequestStatus::AwaitingInformation as i32).then_some(case)
        }
    })
    .await;
    if case.assigned_reviewer.is_empty() {
        ana.claim_case(ClaimCaseRequest { case_id: decided.clone(), lease: None }).await.unwrap();
    }
    let after = ana
        .submit_decision(SubmitDecisionRequest {
            case_id: decided.clone(),
            decisions: vec![
                ItemDecision {
                    item_index: 0,
                    outcome: ItemOutcome::RestrictedInJurisdiction as i32,
                    ground: DecisionGround::IllegalContent as i32,
                    legal_ground: marker("decisions[0].legal_ground"),
                    explanation: marker("decisions[0].explanation"),
                    ..Default::default()
                },
                ItemDecision {
                    item_index: 1,
                    outcome: ItemOutcome::NoAction as i32,
                    no_action_reason: NoActionReason::NotSpecificEnough as i32,
                    explanation: marker("decisions[1].explanation"),
                    ..Default::default()
                },
            ],
            summary: marker("summary"),
            idempotency_key: "decide-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.status, RequestStatus::AwaitingApproval as i32, "speech needs a second reviewer");
    LegalReviewServiceClient::new(
        crsctl::connect(suite.url("legal-review"), reviewer("sam", Role::SeniorReviewer)).await.unwrap(),
    )
    .approve_decision(ApproveDecisionRequest {
        case_id: decided.clone(),
        approve: true,
        comment: marker("approval.comment"),
        idempotency_key: "approve-1".into(),
    })
    .await
    .unwrap();
    status_of(&mut intake, &decided, RequestStatus::Decided).await;
    status_of(&mut intake, &withdrawn, RequestStatus::Withdrawn).await;

    // The agency reads its own words back: they were kept where they belong.
    let view = intake.get_request(GetRequestRequest { request_id: decided.clone() }).await.unwrap().into_inner();
    assert_eq!(view.request.unwrap().justification, marker("justification"));

    // Both people were written to: their addresses went through notification.
    for address in [&agency_email, &owner_email] {
        crs_testkit::eventually(&format!("mail to {address}"), Duration::from_secs(30), || {
            let smtp = &smtp;
            async move { smtp.mails().iter().any(|m| m.to.iter().any(|t| t == address)).then_some(()) }
        })
        .await;
    }

    // Every span of the flow has been exported (the decision's hand-offs are its last steps).
    let spans = crs_testkit::eventually("the decision's spans are exported", Duration::from_secs(30), || {
        let collector = collector.clone();
        async move {
            let spans = collector.0.lock().unwrap().clone();
            spans.iter().any(|(_, s)| s.name.contains("UpdateStatus")).then_some(spans)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spans = { collector.0.lock().unwrap().clone() }.into_iter().chain(spans).collect::<Vec<_>>();

    let fields = [
        "contact_email",
        "owner_email",
        "items[0].description",
        "items[1].description",
        "legal_basis",
        "justification",
        "reference",
        "issuing_authority",
        "withdraw.reason",
        "question",
        "answer",
        "decisions[0].legal_ground",
        "decisions[0].explanation",
        "decisions[1].explanation",
        "summary",
        "approval.comment",
    ];
    let mut leaks = Vec::new();
    for svc in SERVICES {
        let log = suite.log(svc);
        assert!(log.contains(&decided), "{svc}'s log follows the request (by id), so a leak would show");
        for f in fields {
            if log.to_lowercase().contains(&marker(f).to_lowercase()) {
                leaks.push(format!("{svc} log: {f}"));
            }
        }
    }
    for (svc, span) in &spans {
        let mut texts = vec![span.name.clone()];
        for kv in span.attributes.iter().chain(span.events.iter().flat_map(|e| e.attributes.iter())) {
            if let Some(v) = &kv.value {
                strings_in(v, &mut texts);
            }
        }
        texts.extend(span.events.iter().map(|e| e.name.clone()));
        if let Some(status) = &span.status {
            texts.push(status.message.clone());
        }
        for f in fields {
            if texts.iter().any(|t| t.to_lowercase().contains(&marker(f).to_lowercase())) {
                leaks.push(format!("{svc} span {}: {f}", span.name));
            }
        }
    }
    assert!(spans.len() > 20, "the flow was traced: {} spans", spans.len());
    assert!(leaks.is_empty(), "personal data left the databases: {leaks:#?}");
    suite.stop().await.unwrap();
}
