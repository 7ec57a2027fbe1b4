//! Two agencies of one jurisdiction name the same content, spelt differently (an IDN host and its
//! punycode, http and https, a trailing slash, tracking parameters): one case, one decision, and
//! each agency told, at its own endpoint, of the items it named. The content's owner and
//! enforcement hear of the decision once.

use crs_e2e::{Backend, Suite};
use crs_platform::auth::{Principal, Role};
use crs_proto::common::{ContentItem, DecisionGround, ItemDecision, ItemOutcome, NoActionReason, RequestStatus};
use crs_proto::notification::NotificationKind;
use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
use crs_proto::review::{GetCaseRequest, SubmitDecisionRequest};
use crsctl::connect;
use crsctl::demo::Demo;
use crsctl::receiver::Receiver;

async fn two_agencies_one_case_one_decision_both_told(backend: Backend) {
    let suite = Suite::start(backend).await.expect("suite starts");
    let (first_hooks, second_hooks) = (Receiver::start().await.unwrap(), Receiver::start().await.unwrap());
    let mut first = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), first_hooks.clone());
    first.set_up().await.unwrap();
    let mut second = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), second_hooks.clone());
    second.set_up_agency().await.unwrap();
    assert_ne!(first.agency_id, second.agency_id);

    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let item = |url: String| ContentItem { url, ..Default::default() };
    let mut request = Demo::sample_request(&uuid::Uuid::new_v4().to_string());
    request.items = vec![
        item(format!("http://пример.рф/{tag}/post?utm_source=tg")),
        item(format!("https://social.example/{tag}/video/")),
    ];
    let a = first.submit(request).await.unwrap();
    first.wait_status(&a.id, RequestStatus::Triaged).await.unwrap();

    let mut request = Demo::sample_request(&uuid::Uuid::new_v4().to_string());
    request.reference = "second agency's own reference".into();
    request.items = vec![
        item(format!("HTTP://Social.Example/{tag}/video#comments")),
        item(format!("https://xn--e1afmkfd.xn--p1ai/{tag}/post/?fbclid=abc")),
    ];
    let b = second.submit(request).await.unwrap();
    let merged = second.wait_status(&b.id, RequestStatus::Merged).await.unwrap();
    assert!(merged.status_note.contains(&a.id), "the merged request names the case: {}", merged.status_note);

    // The reviewer sees one case, with the other agency's request following it.
    let mut review =
        LegalReviewServiceClient::new(connect(&suite.endpoints.legal_review, first.reviewer().unwrap()).await.unwrap());
    let case = review.get_case(GetCaseRequest { case_id: a.id.clone() }).await.unwrap().into_inner();
    assert_eq!(case.merged_requests.len(), 1);
    assert_eq!(case.merged_requests[0].request_id, b.id);
    assert_eq!(case.merged_requests[0].agency_id, second.agency_id);
    assert_eq!(case.merged_requests[0].case_items, vec![1, 0], "b's video is a's item 1, its post a's item 0");
    let not_a_case = review.get_case(GetCaseRequest { case_id: b.id.clone() }).await.unwrap_err();
    assert_eq!(not_a_case.code(), tonic::Code::NotFound);

    // crsctl shows the reviewer the same.
    let token =
        suite.issuer.issue(&Principal::Reviewer { id: "ana".into(), roles: vec![Role::Reviewer] }, 600).unwrap().token;
    let crsctl = |args: &[&str]| {
        let out = std::process::Command::new(crs_e2e::crsctl_bin())
            .args(args)
            .env("CRSCTL_CONFIG", std::env::temp_dir().join(format!("crsctl-merges-{tag}.yaml")))
            .env("CRSCTL_TOKEN", &token)
            .env("CRSCTL_LEGAL_REVIEW", &suite.endpoints.legal_review)
            .env_remove("CRSCTL_CONTEXT")
            .env_remove("CRSCTL_OUTPUT")
            .output()
            .unwrap();
        assert!(out.status.success(), "crsctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = crsctl(&["review", "show", &a.id]);
    let merged_line = shown.lines().find(|l| l.starts_with("merged:")).unwrap_or_else(|| panic!("{shown}"));
    assert!(merged_line.contains(&b.id) && merged_line.contains("MERGED"), "{merged_line}");
    let json: serde_json::Value = serde_json::from_str(&crsctl(&["review", "show", &a.id, "-o", "json"])).unwrap();
    assert_eq!(json["merged_requests"][0]["request_id"], b.id.as_str());
    assert_eq!(json["merged_requests"][0]["case_items"], serde_json::json!([1, 0]));

    // One decision: the post restricted in KZ, the video left up.
    first.claim(&a.id).await.unwrap();
    let decided = review
        .submit_decision(SubmitDecisionRequest {
            case_id: a.id.clone(),
            decisions: vec![
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
                    explanation: "Nothing unlawful is identified in the video.".into(),
                    ..Default::default()
                },
            ],
            summary: "Partly granted.".into(),
            idempotency_key: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    if decided.status == RequestStatus::AwaitingApproval as i32 {
        first.approve(&a.id).await.unwrap();
    }

    // Each agency sees its own request decided, item by item in its own order.
    let outcomes = |r: &crs_proto::intake::GovernmentRequest| r.items.iter().map(|i| i.outcome).collect::<Vec<_>>();
    let a_done = first.wait_status(&a.id, RequestStatus::Decided).await.unwrap();
    assert_eq!(outcomes(&a_done), vec![ItemOutcome::RestrictedInJurisdiction as i32, ItemOutcome::NoAction as i32]);
    let b_done = second.wait_status(&b.id, RequestStatus::Decided).await.unwrap();
    assert_eq!(outcomes(&b_done), vec![ItemOutcome::NoAction as i32, ItemOutcome::RestrictedInJurisdiction as i32]);

    // Each is told at its own endpoint; the owner and enforcement once, from the case.
    if let Err(e) = first.wait_delivered(&a.id, &[NotificationKind::Acknowledged, NotificationKind::Decided]).await {
        panic!("{e}: {:#?}", first.notifications(&a.id).await);
    }
    let b_notes = match second.wait_delivered(&b.id, &[NotificationKind::Acknowledged, NotificationKind::Decided]).await
    {
        Ok(n) => n,
        Err(e) => panic!("{e}: {:#?}", second.notifications(&b.id).await),
    };
    let b_decided = b_notes.iter().find(|n| n.kind == NotificationKind::Decided as i32).unwrap();
    assert_eq!(b_decided.deliveries.len(), 1, "only the agency hears of a merged request's decision: {b_decided:?}");
    let hooks = |r: &Receiver, endpoint: &str, request: &str| {
        r.received()
            .into_iter()
            .filter(|h| {
                h.endpoint == endpoint && h.body["type"] == "request.decided" && h.body["data"]["request_id"] == request
            })
            .collect::<Vec<_>>()
    };
    let told_b = hooks(&second_hooks, "agency", &b.id);
    assert_eq!(told_b.len(), 1, "the second agency is told once");
    assert_eq!(told_b[0].verified, Ok(()));
    assert_eq!(told_b[0].body["data"]["decided_in_case"], a.id.as_str());
    assert_eq!(told_b[0].body["data"]["items"][1]["outcome"], "RESTRICTED_IN_JURISDICTION");
    assert!(hooks(&first_hooks, "agency", &b.id).is_empty(), "the first agency is not told of the second's request");
    assert_eq!(hooks(&first_hooks, "agency", &a.id).len(), 1);
    for r in [&first_hooks, &second_hooks] {
        assert!(
            r.received()
                .iter()
                .all(|h| h.endpoint == "agency" || !h.raw.windows(b.id.len()).any(|w| w == b.id.as_bytes())),
            "the merged request reaches no one but its agency"
        );
    }
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agencies_one_case_on_sqlite() {
    two_agencies_one_case_one_decision_both_told(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agencies_one_case_on_postgres() {
    two_agencies_one_case_one_decision_both_told(Backend::Postgres).await;
}
