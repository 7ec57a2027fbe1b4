//! One piece of content is under review at most once per jurisdiction: a request whose every
//! item is in an open case of its jurisdiction follows that case and is answered by its decision;
//! partly covered requests and other jurisdictions open cases of their own and are linked; races
//! end in one case; a withdrawal on either side leaves no request without a review.

mod support;

use crs_proto::InternalCall;
use crs_proto::common::{ItemOutcome, LegalInstrument, RequestStatus};
use crs_proto::intake::UpdateStatusRequest;
use crs_proto::notification::{NotificationKind, NotifyRequest};
use crs_proto::review::*;
use crs_proto::triage::RecordDecisionRequest;
use crs_testkit::Backend;
use support::*;
use tonic::Code;

fn key(tag: &str, n: u32) -> String {
    format!("url:https://social.example/{tag}/{n}")
}

fn spec(agency: &'static str, jurisdiction: &'static str, content: Vec<String>) -> CaseSpec {
    CaseSpec { agency, jurisdiction, items: content.len(), content, ..Default::default() }
}

async fn withdraw(review: &Review, id: &str, reason: &str) -> Result<Case, tonic::Status> {
    review
        .internal("intake")
        .await
        .withdraw_case(WithdrawCaseRequest {
            event_id: uuid::Uuid::new_v4().to_string(),
            case_id: id.into(),
            reason: reason.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn updates_for(review: &Review, id: &str) -> Vec<UpdateStatusRequest> {
    review
        .sent::<UpdateStatusRequest>(UpdateStatusRequest::METHOD)
        .await
        .into_iter()
        .filter(|u| u.request_id == id)
        .collect()
}

async fn trail_actions(review: &Review, case: &str) -> Vec<(String, serde_json::Value)> {
    let page = review
        .as_(&senior("auditor"))
        .await
        .get_audit_trail(GetAuditTrailRequest { case_id: case.into(), page_size: 100, page_token: String::new() })
        .await
        .unwrap()
        .into_inner();
    page.entries.into_iter().map(|e| (e.action, serde_json::from_str(&e.details_json).unwrap())).collect()
}

async fn merges_follow_the_case_and_its_decision_answers_every_agency(backend: Backend) {
    let review = Review::start(backend).await;
    let t = uuid::Uuid::new_v4().simple().to_string();
    let (k0, k1, k2) = (key(&t, 0), key(&t, 1), key(&t, 2));

    // A week-long notice opens the case.
    let a = review
        .enqueue(&CaseSpec {
            budget_secs: 7 * 86_400,
            priority: 30,
            ..spec("agency-a", "KZ", vec![k0.clone(), k1.clone()])
        })
        .await;
    let before = review.get(&a).await;

    // Another agency's one-hour order names one of its items: merged, not opened.
    let b = uuid::Uuid::now_v7().to_string();
    let merged = review
        .enqueue_as(
            &b,
            &CaseSpec {
                budget_secs: 3_600,
                priority: 80,
                instrument: LegalInstrument::GovernmentOrder,
                ..spec("agency-b", "KZ", vec![k1.clone()])
            },
        )
        .await;
    assert_eq!(merged.case_id, a, "the hand-off names the case the request follows");
    let err = review.as_(&senior("observer")).await.get_case(GetCaseRequest { case_id: b.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "no second case for the same content");

    let case = review.get(&a).await;
    assert_eq!(case.merged_requests.len(), 1);
    let m = &case.merged_requests[0];
    assert_eq!((m.request_id.as_str(), m.agency_id.as_str()), (b.as_str(), "agency-b"));
    assert_eq!(m.case_items, vec![1], "its one item is the case's second");
    assert_eq!(m.status, RequestStatus::Merged as i32);
    // The case must now be decided within the order's hour, and ranks as the order does.
    let due = |c: &Case| c.deadline.as_ref().unwrap().due_at.as_ref().unwrap().seconds;
    assert!(due(&case) < due(&before) - 6 * 86_400, "the deadline came forward to the order's");
    assert!((due(&case) - m.due_at.as_ref().unwrap().seconds).abs() <= 1, "to the order's own due time");
    assert_eq!(case.assessment.as_ref().map(|_| ()), Some(()));
    let trail = trail_actions(&review, &a).await;
    let (_, merge) = trail.iter().find(|(action, _)| action == "merge").expect("the merge is in the case's trail");
    assert_eq!(merge["request_id"], b.as_str());
    assert_eq!(merge["deadline_brought_forward"], true);

    // The merged request's agency sees it merged, with the case named.
    let merged_update = updates_for(&review, &b).await;
    assert_eq!(merged_update.len(), 1);
    assert_eq!(merged_update[0].status, RequestStatus::Merged as i32);
    assert!(merged_update[0].note.contains(&a), "{}", merged_update[0].note);

    // Only partly covered, and the same content elsewhere: cases of their own, linked.
    let c = review.enqueue(&spec("agency-c", "KZ", vec![k1.clone(), k2.clone()])).await;
    let d = review.enqueue(&spec("agency-d", "RU", vec![k0.clone()])).await;
    assert_eq!(review.get(&c).await.status, RequestStatus::Triaged as i32);
    assert_eq!(review.get(&d).await.status, RequestStatus::Triaged as i32);
    let related: Vec<(String, String, Vec<String>)> =
        review.get(&a).await.related_cases.into_iter().map(|r| (r.case_id, r.jurisdiction, r.content_keys)).collect();
    assert!(related.contains(&(c.clone(), "KZ".into(), vec![k1.clone()])), "{related:?}");
    assert!(related.contains(&(d.clone(), "RU".into(), vec![k0.clone()])), "{related:?}");

    // The partly covered case waits for the case holding the shared content to decide it.
    let ana = senior("ana");
    review.claim(&ana, &c).await.unwrap();
    let waits = review.decide(&ana, &c, restrict_all(2)).await.unwrap_err();
    assert_eq!(waits.code(), Code::FailedPrecondition);
    assert!(waits.message().contains(&format!("item 0 ({k1}) in case {a}")), "{}", waits.message());
    assert!(trail_actions(&review, &a).await.iter().any(|(action, d)| action == "share" && d["case_id"] == c.as_str()));

    // One decision answers both agencies, each about the items it named.
    review.claim(&ana, &a).await.unwrap();
    let mut decisions = restrict_all(1);
    decisions.extend(refuse_all(2).into_iter().skip(1));
    let decided = review.decide(&ana, &a, decisions).await.unwrap();
    assert_eq!(decided.status, RequestStatus::Decided as i32);
    assert_eq!(decided.merged_requests[0].status, RequestStatus::Decided as i32);

    let told = updates_for(&review, &b).await;
    let last = told.last().unwrap();
    assert_eq!(last.status, RequestStatus::Decided as i32);
    assert!(last.case_version > merged_update[0].case_version);
    assert_eq!(last.item_decisions.len(), 1);
    assert_eq!(
        (last.item_decisions[0].item_index, last.item_decisions[0].outcome),
        (0, ItemOutcome::NoAction as i32),
        "its item 0 is the case's item 1"
    );
    let notified: Vec<NotifyRequest> = review
        .sent::<NotifyRequest>(NotifyRequest::METHOD)
        .await
        .into_iter()
        .filter(|n| n.kind == NotificationKind::Decided as i32)
        .collect();
    let for_b: Vec<_> = notified.iter().filter(|n| n.submission.as_ref().is_some_and(|s| s.request_id == b)).collect();
    assert_eq!(for_b.len(), 1, "agency b is told once");
    assert_eq!(for_b[0].decided_in_case, a);
    assert_eq!(for_b[0].submission.as_ref().unwrap().agency_id, "agency-b");
    let for_a: Vec<_> = notified.iter().filter(|n| n.submission.as_ref().is_some_and(|s| s.request_id == a)).collect();
    assert_eq!(for_a.len(), 1);
    assert!(for_a[0].decided_in_case.is_empty(), "the case's own decision goes to every audience");
    let recorded = review.sent::<RecordDecisionRequest>(RecordDecisionRequest::METHOD).await;
    let requests: Vec<&str> = recorded[0].requests.iter().map(|r| r.agency_id.as_str()).collect();
    assert_eq!(requests, vec!["agency-a", "agency-b"], "both agencies' histories count the decision");

    // Now the partly covered case holds the shared content and decides it, seeing what was decided.
    assert!(review.get(&c).await.related_cases.iter().any(|r| r.case_id == a && r.decisions.len() == 1));
    assert_eq!(review.decide(&ana, &c, refuse_all(2)).await.unwrap().status, RequestStatus::Decided as i32);

    // The merged request, decided, cannot be withdrawn; the content is free for a new case.
    let late = withdraw(&review, &b, "too late").await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert!(late.message().contains(&a), "{}", late.message());
    let e = review.enqueue(&spec("agency-e", "KZ", vec![k0.clone()])).await;
    let opened = review.get(&e).await;
    assert_eq!(opened.status, RequestStatus::Triaged as i32);
    let earlier = opened.related_cases.iter().find(|r| r.case_id == a).expect("the decided case is linked");
    assert_eq!(earlier.status, RequestStatus::Decided as i32);
    assert_eq!(earlier.decisions.len(), 1, "its decision on the shared content");
    assert_eq!(earlier.decisions[0].outcome, ItemOutcome::RestrictedInJurisdiction as i32);
    review.stop().await;
}

#[tokio::test]
async fn merges_on_sqlite() {
    merges_follow_the_case_and_its_decision_answers_every_agency(Backend::Sqlite).await;
}

#[tokio::test]
async fn merges_on_postgres() {
    merges_follow_the_case_and_its_decision_answers_every_agency(Backend::Postgres).await;
}

async fn withdrawals_leave_no_request_without_a_review(backend: Backend) {
    let review = Review::start(backend).await;
    let t = uuid::Uuid::new_v4().simple().to_string();
    let (k0, k1) = (key(&t, 0), key(&t, 1));
    let a = review.enqueue(&spec("agency-a", "KZ", vec![k0.clone(), k1.clone()])).await;
    let (b, c, d, w) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    for (id, agency, content) in [
        (&b, "agency-b", vec![k0.clone()]),
        (&c, "agency-c", vec![k1.clone()]),
        (&d, "agency-d", vec![k0.clone()]),
        (&w, "agency-w", vec![k1.clone(), k0.clone()]),
    ] {
        assert_eq!(review.enqueue_as(id, &spec(agency, "KZ", content)).await.case_id, a);
    }

    // A merged request withdrawn on its own: the case goes on for the others.
    let withdrawn = withdraw(&review, &w, "no longer needed").await.unwrap();
    assert_eq!((withdrawn.id.as_str(), withdrawn.status), (w.as_str(), RequestStatus::Withdrawn as i32));
    assert_eq!(withdraw(&review, &w, "again").await.unwrap().status, RequestStatus::Withdrawn as i32, "a retry");
    assert!(
        trail_actions(&review, &a)
            .await
            .iter()
            .any(|(action, d)| action == "withdraw_merged" && d["request_id"] == w.as_str())
    );
    let w_updates = updates_for(&review, &w).await;
    assert_eq!(w_updates.last().unwrap().status, RequestStatus::Withdrawn as i32);

    // The case's own agency withdraws: the first request following it becomes a case, the one
    // naming the same content follows that, and the one naming other content opens its own.
    let gone = withdraw(&review, &a, "resolved").await.unwrap();
    assert_eq!(gone.status, RequestStatus::Withdrawn as i32);
    let case_b = review.get(&b).await;
    assert_eq!(case_b.status, RequestStatus::Triaged as i32);
    assert_eq!(case_b.merged_requests.iter().map(|m| m.request_id.as_str()).collect::<Vec<_>>(), vec![d.as_str()]);
    assert_eq!(review.get(&c).await.status, RequestStatus::Triaged as i32);
    let err = review.as_(&senior("observer")).await.get_case(GetCaseRequest { case_id: d.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Each agency's view moves forward: MERGED (v1), then TRIAGED or MERGED again (v2).
    for (id, status) in [(&b, RequestStatus::Triaged), (&c, RequestStatus::Triaged), (&d, RequestStatus::Merged)] {
        let updates = updates_for(&review, id).await;
        let last = updates.last().unwrap();
        assert_eq!((last.status, last.case_version), (status as i32, 2), "{id}: {updates:?}");
    }
    let w_after = updates_for(&review, &w).await;
    assert_eq!(w_after.len(), w_updates.len(), "the withdrawn request is left alone");
    let a_trail = review.get(&a).await;
    assert!(a_trail.merged_requests.iter().all(|m| m.status != RequestStatus::Merged as i32));
    review.stop().await;
}

#[tokio::test]
async fn withdrawals_on_sqlite() {
    withdrawals_leave_no_request_without_a_review(Backend::Sqlite).await;
}

#[tokio::test]
async fn withdrawals_on_postgres() {
    withdrawals_leave_no_request_without_a_review(Backend::Postgres).await;
}

/// Many hand-offs of the same content at once: one case, every other request merged into it.
async fn a_race_ends_in_one_case(backend: Backend) {
    let review = Review::start(backend).await;
    let t = uuid::Uuid::new_v4().simple().to_string();
    let content = vec![key(&t, 0), key(&t, 1), key(&t, 2)];
    const RACERS: usize = 8;
    let mut handles = Vec::new();
    for i in 0..RACERS {
        // Each names the same content, in its own order.
        let mut mine = content.clone();
        mine.rotate_left(i % content.len());
        let request = Review::enqueue_request(&uuid::Uuid::now_v7().to_string(), &spec("agency-r", "KZ", mine));
        let mut client = review.internal("triage").await;
        handles.push(tokio::spawn(async move { client.enqueue_case(request).await.map(|r| r.into_inner()) }));
    }
    let mut cases = std::collections::BTreeSet::new();
    for h in handles {
        cases.insert(h.await.unwrap().expect("every hand-off is taken").case_id);
    }
    assert_eq!(cases.len(), 1, "one case for the same content: {cases:?}");
    let case = review.get(cases.first().unwrap()).await;
    assert_eq!(case.merged_requests.len(), RACERS - 1);
    assert_eq!(review.count("SELECT COUNT(*) FROM cases").await, 1);
    review.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_race_on_sqlite() {
    a_race_ends_in_one_case(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_race_on_postgres() {
    a_race_ends_in_one_case(Backend::Postgres).await;
}

/// Hand-offs relayed at once share transactions and are placed as if one after the other: each
/// opens its case with its audit entry, a request naming content opened in the same batch
/// follows that case, and a repeated event opens nothing more.
async fn opened_together(backend: Backend) {
    const N: usize = 40;
    let review = Review::start(backend).await;
    let t = uuid::Uuid::new_v4().simple().to_string();
    let requests: Vec<EnqueueCaseRequest> = (0..N as u32)
        .map(|i| Review::enqueue_request(&uuid::Uuid::now_v7().to_string(), &spec("agency-t", "KZ", vec![key(&t, i)])))
        .collect();
    let follower =
        Review::enqueue_request(&uuid::Uuid::now_v7().to_string(), &spec("agency-u", "KZ", vec![key(&t, 0)]));
    let repeated = requests[1].clone();
    let client = review.internal("triage").await;
    let call = |r: EnqueueCaseRequest| {
        let mut client = client.clone();
        async move { client.enqueue_case(r).await.map(|r| r.into_inner()) }
    };
    let (answers, follows, repeat) = tokio::join!(
        futures::future::join_all(requests.iter().cloned().map(call)),
        call(follower.clone()),
        call(repeated),
    );
    let answers: Vec<EnqueueCaseResponse> = answers.into_iter().map(|a| a.expect("every hand-off is taken")).collect();
    let follows = follows.expect("the follower is taken");
    let repeat = repeat.expect("a repeated event is answered");
    assert!(answers[1].replayed != repeat.replayed, "exactly one of the two deliveries of the event opened the case");
    assert_eq!(answers[1].case_id, repeat.case_id);
    let first = answers[0].case_id.clone();
    assert_eq!(follows.case_id, first, "the request and its follower share one case");
    for (r, a) in requests.iter().zip(&answers).skip(1) {
        assert_eq!(a.case_id, r.submission.as_ref().unwrap().request_id, "each request opens its own case");
    }
    assert_eq!(review.count("SELECT COUNT(*) FROM cases").await, N as i64, "one case per distinct content");
    assert_eq!(review.get(&first).await.merged_requests.len(), 1);
    assert_eq!(review.audit_entries("action = 'enqueue'").await, N as i64, "each opening is in the audit trail");
    if backend == Backend::Postgres {
        let transactions = review.count("SELECT COUNT(DISTINCT xmin::text)::bigint FROM cases").await;
        assert!(transactions < N as i64, "{N} concurrent openings took {transactions} transactions");
    }
    review.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_offs_relayed_together_are_opened_together_on_sqlite() {
    opened_together(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_offs_relayed_together_are_opened_together_on_postgres() {
    opened_together(Backend::Postgres).await;
}
