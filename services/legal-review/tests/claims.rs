//! Taking work: claim-next hands each reviewer the most urgent claimable case, never the same
//! case to two reviewers, and none is lost; claims lapse with their lease; queues report their
//! depth, claimable cases, oldest case and nearest deadline.

mod support;

use std::collections::HashMap;

use crs_proto::review::*;
use crs_testkit::Backend;
use support::*;
use tonic::Code;

async fn many_reviewers_take_every_case_once(backend: Backend) {
    let review = Review::start(backend).await;
    // 24 cases, priorities and deadlines mixed, plus a case in another queue that must not be handed out.
    let mut urgency: HashMap<String, (u32, i64)> = HashMap::new();
    for i in 0..24u32 {
        let spec = CaseSpec {
            priority: (i * 7) % 5 * 10,
            budget_secs: 3600 + i64::from((i * 13) % 7) * 600,
            ..Default::default()
        };
        let id = review.enqueue(&spec).await;
        urgency.insert(id, (spec.priority, spec.budget_secs));
    }
    let other = review.enqueue(&CaseSpec { queue: "urgent", ..Default::default() }).await;

    // The first case handed out is the most urgent: highest priority, then nearest deadline.
    let first = review
        .as_(&reviewer("r0"))
        .await
        .claim_next_case(ClaimNextCaseRequest { queue: "standard".into(), lease: None })
        .await
        .unwrap()
        .into_inner();
    let top = urgency.values().map(|(p, _)| *p).max().unwrap();
    let nearest = urgency.values().filter(|(p, _)| *p == top).map(|(_, b)| *b).min().unwrap();
    assert_eq!(urgency[&first.id], (top, nearest), "the most urgent case comes first");
    assert_eq!(first.assigned_reviewer, "reviewer:r0");

    // Eight reviewers take cases concurrently until the queue is empty.
    let tasks: Vec<_> = (1..=8)
        .map(|n| {
            let url = review.url.clone();
            tokio::spawn(async move {
                let p = reviewer(&format!("r{n}"));
                let token = crs_testkit::service::token(&p);
                let mut client = crs_proto::review::legal_review_service_client::LegalReviewServiceClient::new(
                    crsctl::connect(&url, crsctl::Bearer::new(&token).unwrap()).await.unwrap(),
                );
                let mut got = Vec::new();
                loop {
                    match client.claim_next_case(ClaimNextCaseRequest { queue: "standard".into(), lease: None }).await {
                        Ok(c) => got.push(c.into_inner().id),
                        Err(s) if s.code() == Code::NotFound => return got,
                        Err(s) => panic!("claim-next failed: {s}"),
                    }
                }
            })
        })
        .collect();
    let mut handed: Vec<String> = vec![first.id.clone()];
    for t in tasks {
        handed.extend(t.await.unwrap());
    }
    let mut unique = handed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), handed.len(), "no case was handed to two reviewers");
    let mut all: Vec<String> = urgency.keys().cloned().collect();
    all.sort();
    assert_eq!(unique, all, "every case of the queue was handed out, and only those");
    let still = review.get(&other).await;
    assert!(still.assigned_reviewer.is_empty(), "the other queue was left alone");
    review.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claim_next_on_sqlite() {
    many_reviewers_take_every_case_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claim_next_on_postgres() {
    many_reviewers_take_every_case_once(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_lapses_with_its_lease() {
    let review = Review::start(Backend::Sqlite).await;
    let case = review.enqueue(&CaseSpec::default()).await;
    let (ana, bob) = (reviewer("ana"), reviewer("bob"));
    // Long enough for the checks below to run while it lasts, however slow the machine.
    let short = Some(prost_types::Duration { seconds: 3, nanos: 0 });
    review.as_(&ana).await.claim_case(ClaimCaseRequest { case_id: case.clone(), lease: short }).await.unwrap();
    let taken = review.claim(&bob, &case).await.unwrap_err();
    assert_eq!(taken.code(), Code::FailedPrecondition);
    assert!(taken.message().contains("reviewer:ana"), "{}", taken.message());
    let next =
        review.as_(&bob).await.claim_next_case(ClaimNextCaseRequest { queue: "standard".into(), lease: None }).await;
    assert_eq!(next.unwrap_err().code(), Code::NotFound, "a live claim is not handed out");
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    // Lapsed: the decision needs a live claim, and another reviewer may take the case.
    assert_eq!(review.decide(&ana, &case, restrict_all(2)).await.unwrap_err().code(), Code::FailedPrecondition);
    let next = review
        .as_(&bob)
        .await
        .claim_next_case(ClaimNextCaseRequest { queue: "standard".into(), lease: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((next.id.as_str(), next.assigned_reviewer.as_str()), (case.as_str(), "reviewer:bob"));
    review.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_report_depth_claimable_oldest_and_nearest_deadline() {
    let review = Review::start(Backend::Sqlite).await;
    let a = review.enqueue(&CaseSpec { budget_secs: 7200, ..Default::default() }).await;
    review.enqueue(&CaseSpec { budget_secs: 3600, ..Default::default() }).await;
    review.enqueue(&CaseSpec { queue: "urgent", budget_secs: 600, ..Default::default() }).await;
    review.claim(&reviewer("ana"), &a).await.unwrap();
    let queues =
        review.as_(&reviewer("ana")).await.list_queues(ListQueuesRequest {}).await.unwrap().into_inner().queues;
    let by_name: HashMap<&str, &QueueSummary> = queues.iter().map(|q| (q.name.as_str(), q)).collect();
    assert_eq!(
        by_name.keys().copied().collect::<std::collections::BTreeSet<_>>(),
        ["escalated", "standard", "urgent"].into()
    );
    let standard = by_name["standard"];
    assert_eq!((standard.depth, standard.claimable), (2, 1));
    let now = crs_platform::time::now_millis() / 1000;
    let nearest = standard.nearest_deadline.as_ref().unwrap().seconds;
    assert!((nearest - now - 3600).abs() < 60, "the nearest deadline is the one-hour case: {nearest} vs {now}");
    assert!(standard.oldest_age.is_some());
    assert_eq!((by_name["urgent"].depth, by_name["escalated"].depth), (1, 0));
    assert!(by_name["escalated"].nearest_deadline.is_none());
    review.stop().await;
}

/// The list's "nearest deadline first" follows pauses: a case that waited for the agency's
/// answer moves back by the time it waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_case_moves_back_in_the_list_by_the_time_it_waited() {
    let review = Review::start(Backend::Sqlite).await;
    let a = review.enqueue(&CaseSpec { budget_secs: 3600, ..Default::default() }).await;
    let b = review.enqueue(&CaseSpec { budget_secs: 3601, ..Default::default() }).await;
    let order = || async {
        let cases = review
            .as_(&reviewer("ana"))
            .await
            .list_cases(ListCasesRequest { queue: "standard".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .cases;
        cases.into_iter().map(|c| (c.id, c.deadline.unwrap().due_at.unwrap().seconds)).collect::<Vec<_>>()
    };
    let before = order().await;
    assert_eq!([&before[0].0, &before[1].0], [&a, &b], "a is due first");
    review.claim(&reviewer("ana"), &a).await.unwrap();
    review
        .as_(&reviewer("ana"))
        .await
        .request_information(RequestInformationRequest {
            case_id: a.clone(),
            question: "Which court?".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    review
        .internal("intake")
        .await
        .resume_case(ResumeCaseRequest {
            event_id: uuid::Uuid::new_v4().to_string(),
            case_id: a.clone(),
            answer: "Almaty".into(),
        })
        .await
        .unwrap();
    let after = order().await;
    assert_eq!([&after[0].0, &after[1].0], [&b, &a], "a waited 2.5 s, so b is due first now");
    let moved = after[1].1 - before[0].1;
    assert!((2..=4).contains(&moved), "a's deadline moved by the time it waited: {moved} s");
    review.stop().await;
}
