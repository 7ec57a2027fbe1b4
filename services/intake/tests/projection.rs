//! The agency's view of a request has one producer, legal review, ordered by the case's version:
//! updates relayed late or out of order never move the view back, and a late TRIAGED never
//! overwrites the question of a request already AWAITING_INFORMATION.

mod support;

use crs_platform::auth::Principal;
use crs_proto::common::RequestStatus;
use crs_proto::intake::intake_internal_service_client::IntakeInternalServiceClient;
use crs_proto::intake::*;
use crsctl::connect;
use support::{Backend, Intake, valid_request};

fn update(request_id: &str, status: RequestStatus, version: u64, question: &str) -> UpdateStatusRequest {
    UpdateStatusRequest {
        event_id: uuid::Uuid::new_v4().to_string(),
        request_id: request_id.into(),
        status: status as i32,
        pending_question: question.into(),
        note: format!("version {version}"),
        case_version: version,
        ..Default::default()
    }
}

async fn out_of_order(backend: Backend) {
    let intake = Intake::start(backend).await;
    let agency = intake.agency().await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    let request = client.submit_request(valid_request()).await.unwrap().into_inner().request.unwrap();
    let review = intake.bearer(Principal::Service { name: "legal-review".into() });
    let mut internal = IntakeInternalServiceClient::new(connect(&intake.url, review).await.unwrap());
    let view = |client: &mut crs_proto::intake::intake_service_client::IntakeServiceClient<crsctl::Authed>| {
        let mut client = client.clone();
        let id = request.id.clone();
        async move { client.get_request(GetRequestRequest { request_id: id }).await.unwrap().into_inner().request.unwrap() }
    };

    // Legal review's case moved TRIAGED (v1) → IN_REVIEW (v2) → AWAITING_INFORMATION (v3); the
    // relay delivers v3 first, then the older two.
    let asked = update(&request.id, RequestStatus::AwaitingInformation, 3, "Which post do you mean?");
    assert!(internal.update_status(asked).await.unwrap().into_inner().applied);
    for (status, version) in [(RequestStatus::Triaged, 1), (RequestStatus::InReview, 2)] {
        let late = internal.update_status(update(&request.id, status, version, "")).await.unwrap().into_inner();
        assert!(!late.applied, "{status:?} (v{version}) arrived after v3 and changes nothing");
    }
    let seen = view(&mut client).await;
    assert_eq!(seen.status, RequestStatus::AwaitingInformation as i32);
    assert_eq!(seen.pending_question, "Which post do you mean?", "the question survives a late TRIAGED");
    assert_eq!(seen.status_note, "version 3");

    // The same version again is no newer: nothing changes.
    let again = update(&request.id, RequestStatus::InReview, 3, "");
    assert!(!internal.update_status(again).await.unwrap().into_inner().applied);
    // A newer one applies, skipping states intake never saw.
    let decided = update(&request.id, RequestStatus::Escalated, 7, "");
    assert!(internal.update_status(decided).await.unwrap().into_inner().applied);
    let seen = view(&mut client).await;
    assert_eq!(seen.status, RequestStatus::Escalated as i32);
    assert!(seen.pending_question.is_empty());
    // A newer version with the same status (the clock paused: only the deadline moves) applies
    // and is no new event in the agency's history.
    let paused = UpdateStatusRequest {
        deadline: Some(crs_proto::common::SlaDeadline { paused: true, ..Default::default() }),
        ..update(&request.id, RequestStatus::Escalated, 8, "")
    };
    assert!(internal.update_status(paused).await.unwrap().into_inner().applied);
    let seen = view(&mut client).await;
    assert_eq!(seen.status, RequestStatus::Escalated as i32);
    assert!(seen.deadline.is_some_and(|d| d.paused), "the deadline moved with the newer version");
    if backend == Backend::Postgres {
        // RECEIVED, AWAITING_INFORMATION, ESCALATED: each ordered by the transaction that wrote it.
        assert_eq!(intake.events_without_their_transaction().await, (0, 3));
    }
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_updates_never_move_the_agencys_view_back_on_sqlite() {
    out_of_order(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_updates_never_move_the_agencys_view_back_on_postgres() {
    out_of_order(Backend::Postgres).await;
}

/// Status updates relayed at once share transactions: each is answered with its own outcome, a
/// repeated event applies once, and an update for an unknown request fails alone.
async fn applied_together(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    const N: usize = 30;
    let intake = Intake::start(backend).await;
    let agency = intake.agency().await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    let mut ids = Vec::new();
    for _ in 0..N {
        ids.push(client.submit_request(valid_request()).await.unwrap().into_inner().request.unwrap().id);
    }
    let review = intake.bearer(Principal::Service { name: "legal-review".into() });
    let internal = IntakeInternalServiceClient::new(connect(&intake.url, review).await.unwrap());
    let call = |u: UpdateStatusRequest| {
        let mut internal = internal.clone();
        async move { internal.update_status(u).await.map(tonic::Response::into_inner) }
    };
    let updates: Vec<UpdateStatusRequest> = ids.iter().map(|id| update(id, RequestStatus::Triaged, 1, "")).collect();
    let repeated = updates[0].clone();
    let (answers, repeat, unknown) = tokio::join!(
        futures::future::join_all(updates.iter().cloned().map(call)),
        call(repeated),
        call(update("no-such-request", RequestStatus::Triaged, 1, "")),
    );
    let applied: Vec<bool> = answers.into_iter().map(|a| a.expect("every update is answered").applied).collect();
    assert!(applied[1..].iter().all(|a| *a), "every other update applies: {applied:?}");
    let repeat = repeat.expect("a repeated event is answered").applied;
    assert!(applied[0] != repeat, "exactly one of the two deliveries of the event applied it");
    assert_eq!(unknown.expect_err("an unknown request is refused").code(), tonic::Code::NotFound);
    for id in &ids {
        let seen = client.get_request(GetRequestRequest { request_id: id.clone() }).await.unwrap().into_inner();
        assert_eq!(seen.request.unwrap().status, RequestStatus::Triaged as i32, "{id}");
    }
    if backend == Backend::Postgres {
        assert_eq!(intake.events_without_their_transaction().await, (0, 2 * N as i64), "RECEIVED and TRIAGED each");
        let sql = format!(
            "SELECT COUNT(DISTINCT xmin::text)::bigint FROM status_events WHERE status = {}",
            RequestStatus::Triaged as i32
        );
        let row = intake.db.query_one_raw(Statement::from_string(intake.db.get_database_backend(), sql)).await;
        let transactions = row.unwrap().unwrap().try_get_by_index::<i64>(0).unwrap();
        assert!(transactions < N as i64, "{N} concurrent updates took {transactions} transactions");
    }
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_relayed_together_are_applied_together_on_sqlite() {
    applied_together(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_relayed_together_are_applied_together_on_postgres() {
    applied_together(Backend::Postgres).await;
}
