//! Retention at intake: idempotency keys are released past `retention.idempotency_secs`, a
//! finished request's free text is blanked past `retention.request_text_secs` (what was asked,
//! about which content, and its status stay), inbox records go past `retention.inbox_secs`, and
//! nothing of an open request is touched. Time passing is simulated by moving rows' times back.

mod support;

use crs_proto::common::{ContentItem, RequestStatus};
use crs_proto::intake::*;
use sea_orm::ConnectionTrait;
use support::{Backend, Intake, valid_request};

const DAY_MS: i64 = 86_400_000;

async fn exec(intake: &Intake, sql: &str) {
    intake.db.execute_unprepared(sql).await.unwrap();
}

async fn count(intake: &Intake, sql: &str) -> i64 {
    let row = intake
        .db
        .query_one_raw(sea_orm::Statement::from_string(intake.db.get_database_backend(), sql.to_owned()))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn finished_requests_lose_their_free_text_and_keys_are_released(backend: Backend) {
    let intake = Intake::start_with(backend, &[("CRS_RETENTION__INTERVAL_SECS", "1")]).await;
    let agency = intake.agency().await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    let words = "the private words of the agency";
    let with_text = || {
        let mut r = valid_request();
        r.legal_basis = words.into();
        r.justification = words.into();
        r.items = vec![ContentItem {
            url: "https://social.example/posts/9".into(),
            description: words.into(),
            ..Default::default()
        }];
        r
    };
    let finished_request = with_text();
    let finished = client.submit_request(finished_request.clone()).await.unwrap().into_inner().request.unwrap().id;
    client
        .withdraw_request(WithdrawRequestRequest { request_id: finished.clone(), reason: words.into() })
        .await
        .unwrap();
    let open = client.submit_request(with_text()).await.unwrap().into_inner().request.unwrap().id;
    exec(&intake, "INSERT INTO inbox (event_id, applied_at) VALUES ('old-event', 0)").await;

    // A year and more passes for both requests.
    exec(
        &intake,
        &format!("UPDATE requests SET updated_at = updated_at - {0}, received_at = received_at - {0}", 400 * DAY_MS),
    )
    .await;
    crs_testkit::eventually("the retention job runs", std::time::Duration::from_secs(20), || async {
        let got = intake
            .intake(intake.as_agency(&agency))
            .await
            .get_request(GetRequestRequest { request_id: finished.clone() })
            .await;
        let request = got.unwrap().into_inner().request.unwrap();
        // Each kind of text has a rule of its own, applied one after the other: wait for them all.
        let notes = format!("SELECT COUNT(*) AS n FROM status_events WHERE request_id = '{finished}' AND note <> ''");
        (request.legal_basis.is_empty()
            && request.items.iter().all(|i| i.description.is_empty())
            && count(&intake, &notes).await == 0
            && count(&intake, "SELECT COUNT(*) AS n FROM inbox WHERE event_id = 'old-event'").await == 0)
            .then_some(())
    })
    .await;

    let mut client = intake.intake(intake.as_agency(&agency)).await;
    let get = |id: String| {
        let mut client = client.clone();
        async move { client.get_request(GetRequestRequest { request_id: id }).await.unwrap().into_inner().request.unwrap() }
    };
    let gone = get(finished.clone()).await;
    assert!(gone.justification.is_empty());
    assert_eq!(gone.status, RequestStatus::Withdrawn as i32, "the request stays, with its status");
    assert!(gone.items.iter().all(|i| i.description.is_empty() && !i.url.is_empty()), "the content named stays");
    let notes = count(
        &intake,
        &format!("SELECT COUNT(*) AS n FROM status_events WHERE request_id = '{finished}' AND note <> ''"),
    )
    .await;
    assert_eq!(notes, 0, "the withdrawal's reason is gone from the status history");

    let kept = get(open.clone()).await;
    assert_eq!(
        (kept.legal_basis.as_str(), kept.items[0].description.as_str()),
        (words, words),
        "an open request keeps its text"
    );

    // Both keys were released: the finished request's key now names a new request.
    let again = client.submit_request(finished_request).await.unwrap().into_inner();
    assert!(!again.replayed);
    assert_ne!(again.request.unwrap().id, finished);
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_sqlite() {
    finished_requests_lose_their_free_text_and_keys_are_released(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_postgres() {
    finished_requests_lose_their_free_text_and_keys_are_released(Backend::Postgres).await;
}
