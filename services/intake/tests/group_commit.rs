//! Concurrent submissions share transactions (group commit): every one is answered with its own
//! outcome after its commit, each agency's status events stay numbered without gaps, and one
//! failing submission never fails its neighbours.

mod support;

use std::collections::HashSet;

use crs_proto::common::{ContentItem, Keyword, RequestStatus};
use crs_proto::intake::{GetRequestRequest, GovernmentRequest, SubmitRequestRequest};
use sea_orm::{ConnectionTrait, Statement};
use support::{Backend, Intake, submit_in_background, valid_request};

/// Submits `requests` at once as `agency`, each over its own connection; the answers in order.
async fn submit_all(
    intake: &Intake,
    agency: &str,
    requests: Vec<SubmitRequestRequest>,
) -> Vec<Result<crs_proto::intake::SubmitRequestResponse, tonic::Status>> {
    let mut clients = Vec::new();
    for _ in 0..requests.len() {
        clients.push(intake.intake(intake.as_agency(agency)).await);
    }
    let calls = clients.into_iter().zip(requests).map(|(mut client, request)| async move {
        client.submit_request(request).await.map(tonic::Response::into_inner)
    });
    futures::future::join_all(calls).await
}

async fn numbers(intake: &Intake, sql: String) -> Vec<i64> {
    let backend = intake.db.get_database_backend();
    let rows = intake.db.query_all_raw(Statement::from_string(backend, sql)).await.unwrap();
    rows.into_iter().map(|r| r.try_get::<i64>("", "n").unwrap()).collect()
}

/// The agency's events: how many, and how many distinct requests they name.
async fn events_of(intake: &Intake, agency: &str) -> (i64, i64) {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM status_events WHERE agency_id = '{agency}' UNION ALL \
         SELECT COUNT(DISTINCT request_id) AS n FROM status_events WHERE agency_id = '{agency}'"
    );
    let n = numbers(intake, sql).await;
    (n[0], n[1])
}

async fn next_update(
    stream: &mut tonic::Streaming<crs_proto::intake::RequestUpdate>,
) -> crs_proto::intake::RequestUpdate {
    use futures::StreamExt;
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next());
    next.await.expect("an update in time").unwrap().unwrap()
}

/// A valid request with `n` items of its own (URLs and content ids in turn), and text of its own
/// in every field, so that a value stored in another's column is seen.
fn with_items(n: usize) -> SubmitRequestRequest {
    let key = uuid::Uuid::new_v4().simple().to_string();
    let items = (0..n)
        .map(|k| ContentItem {
            url: if k % 2 == 0 { format!("https://social.example/posts/{key}/{k}") } else { String::new() },
            content_id: if k % 2 == 1 { format!("video_{key}_{k}") } else { String::new() },
            description: format!("item {k} of {key}, with a quote: 'it's here'"),
        })
        .collect();
    let keywords = if n.is_multiple_of(2) { vec![Keyword::HateSpeech as i32] } else { vec![] };
    SubmitRequestRequest {
        items,
        keywords,
        legal_basis: format!("Law {key}, Art. {n}"),
        justification: format!("Why {key} is unlawful."),
        reference: format!("REF-{key}"),
        issuing_authority: format!("Court of {key}"),
        ..valid_request()
    }
}

/// What the agency sees of a stored request, beside what it sent: each field's column.
fn as_sent(sent: &SubmitRequestRequest) -> (String, i32, i32, Vec<i32>, i32, String, String, String, String) {
    (
        sent.jurisdiction.clone(),
        sent.legal_instrument,
        sent.category,
        sent.keywords.clone(),
        sent.requested_action,
        sent.legal_basis.clone(),
        sent.justification.clone(),
        sent.reference.clone(),
        sent.issuing_authority.clone(),
    )
}

fn as_stored(stored: &GovernmentRequest) -> (String, i32, i32, Vec<i32>, i32, String, String, String, String) {
    (
        stored.jurisdiction.clone(),
        stored.legal_instrument,
        stored.category,
        stored.keywords.clone(),
        stored.requested_action,
        stored.legal_basis.clone(),
        stored.justification.clone(),
        stored.reference.clone(),
        stored.issuing_authority.clone(),
    )
}

async fn concurrent(backend: Backend) {
    let intake = Intake::start(backend).await;
    let agencies = [intake.agency().await, intake.agency().await, intake.agency().await];
    // 1 to 4 items each: batches of different numbers of items.
    let intake_ref = &intake;
    let bursts = agencies.iter().map(|agency| {
        let requests: Vec<_> = (0..20).map(|i| with_items(i % 4 + 1)).collect();
        let sent = requests.clone();
        async move { submit_all(intake_ref, agency, requests).await.into_iter().zip(sent).collect::<Vec<_>>() }
    });
    let answers: Vec<_> = futures::future::join_all(bursts).await.into_iter().flatten().collect();

    let mut ids = HashSet::new();
    let mut client = intake.intake(intake.admin()).await;
    for (answer, sent) in answers {
        let answer = answer.expect("every submission is accepted");
        assert!(!answer.replayed);
        let answered = answer.request.unwrap();
        let (id, answer_received_at) = (answered.id, answered.received_at);
        // Read back from the database: the request and every item where it was sent, as it was sent.
        let stored = client.get_request(GetRequestRequest { request_id: id.clone() }).await.unwrap().into_inner();
        let stored = stored.request.unwrap();
        assert_eq!(as_stored(&stored), as_sent(&sent), "the request {id}");
        assert_eq!(stored.status, RequestStatus::Received as i32, "{id}");
        assert_eq!((stored.received_at, stored.updated_at.is_some()), (answer_received_at, true), "{id}");
        assert_eq!((stored.deadline, stored.pending_question.as_str()), (None, ""), "{id}");
        let stored: Vec<_> = stored
            .items
            .into_iter()
            .map(|i| {
                (i.index as usize, ContentItem { url: i.url, content_id: i.content_id, description: i.description })
            })
            .collect();
        assert_eq!(stored, sent.items.into_iter().enumerate().collect::<Vec<_>>(), "the items of {id}");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 60, "each submission is its own request");
    let [requests, items, events, _] = intake.written().await;
    assert_eq!((requests, items, events), (60, 150, 60), "every request stored whole");
    for agency in &agencies {
        assert_eq!(events_of(&intake, agency).await, (20, 20), "one event per request");
    }
    if backend == Backend::Postgres {
        // The transactions that wrote the 60 requests: fewer than 60 means commits were shared.
        let transactions = numbers(&intake, "SELECT COUNT(DISTINCT xmin::text) AS n FROM requests".into()).await[0];
        assert!(transactions < 60, "60 concurrent submissions took {transactions} transactions");
        assert_eq!(intake.events_without_their_transaction().await, (0, 60), "each event names its transaction");
    }
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_share_transactions_on_sqlite() {
    concurrent(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_share_transactions_on_postgres() {
    concurrent(Backend::Postgres).await;
}

/// Makes the database refuse any request whose reference is `POISON`, as a failure no check
/// before the transaction could foresee.
async fn poison(intake: &Intake) {
    let statements: &[&str] = match intake.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => &[
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
               IF NEW.reference = 'POISON' THEN RAISE EXCEPTION 'poisoned request'; END IF; RETURN NEW; \
             END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON requests FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        ],
        _ => &["CREATE TRIGGER refuse_poison BEFORE INSERT ON requests WHEN NEW.reference = 'POISON' \
                BEGIN SELECT RAISE(ABORT, 'poisoned request'); END"],
    };
    for sql in statements {
        intake.db.execute_unprepared(sql).await.unwrap();
    }
}

async fn neighbours(backend: Backend) {
    let intake = Intake::start(backend).await;
    let agency = intake.agency().await;
    poison(&intake).await;

    let mut burst: Vec<SubmitRequestRequest> = (0..30).map(|_| valid_request()).collect();
    for i in [3, 14, 25] {
        burst[i].reference = "POISON".into();
    }
    // A retry sent before the first answer (same key, same body), and a key reused for another body.
    let retried = valid_request();
    let reused = valid_request();
    let mut other_body = reused.clone();
    other_body.justification = "Something else entirely.".into();
    burst.extend([retried.clone(), retried, reused, other_body]);

    let answers = submit_all(&intake, &agency, burst).await;
    for i in [3, 14, 25] {
        let refused = answers[i].as_ref().expect_err("the poisoned submission fails");
        assert_eq!(refused.code(), tonic::Code::Internal);
    }
    let accepted: Vec<_> =
        answers[..30].iter().enumerate().filter(|(i, _)| ![3, 14, 25].contains(i)).map(|(_, a)| a).collect();
    assert!(accepted.iter().all(|a| a.is_ok()), "its 27 neighbours are accepted: {accepted:?}");

    let (first, second) = (answers[30].as_ref().unwrap(), answers[31].as_ref().unwrap());
    assert_eq!(
        first.request.as_ref().unwrap().id,
        second.request.as_ref().unwrap().id,
        "a retry names the same request"
    );
    assert_eq!([first.replayed, second.replayed].iter().filter(|r| **r).count(), 1, "one of them is the replay");
    let reuse: Vec<_> = answers[32..].iter().map(|a| a.as_ref().map(|_| ()).map_err(|s| s.code())).collect();
    assert!(reuse.contains(&Ok(())) && reuse.contains(&Err(tonic::Code::AlreadyExists)), "{reuse:?}");

    let [requests, items, events, _] = intake.written().await;
    assert_eq!((requests, items, events), (29, 58, 29), "nothing of the poisoned ones is stored");
    assert_eq!(events_of(&intake, &agency).await, (29, 29), "one event per stored request");
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_submission_never_fails_its_neighbours_on_sqlite() {
    neighbours(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_submission_never_fails_its_neighbours_on_postgres() {
    neighbours(Backend::Postgres).await;
}

/// Nothing a submission writes waits on the agency's row: a transaction holding it (an admin's
/// change to the agency, say) holds up no submission. And a status change still being written
/// when a later submission commits holds that submission's event back in the stream, so the
/// stream gives both, in order, and never skips one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_of_the_agency_holds_up_no_submission_on_postgres() {
    use crs_proto::common::RequestStatus;
    use crs_proto::intake::WatchRequestsRequest;
    use futures::StreamExt;
    use sea_orm::TransactionTrait;
    use std::time::Duration;

    let intake = Intake::start(Backend::Postgres).await;
    let agency = intake.agency().await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    let mut stream = client.watch_requests(WatchRequestsRequest { cursor: String::new() }).await.unwrap().into_inner();
    let first = client.submit_request(valid_request()).await.unwrap().into_inner().request.unwrap().id;
    assert_eq!(next_update(&mut stream).await.request_id, first);

    let held = intake.db.begin().await.unwrap();
    held.execute_unprepared(&format!("SELECT id FROM agencies WHERE id = '{agency}' FOR UPDATE")).await.unwrap();
    held.execute_unprepared(&format!(
        "INSERT INTO status_events (agency_id, request_id, status, note, occurred_at, agency_seq, txid) \
         VALUES ('{agency}', '{first}', {}, 'slow', 0, 0, pg_current_xact_id()::text::bigint)",
        RequestStatus::InReview as i32
    ))
    .await
    .unwrap();

    let second = tokio::time::timeout(Duration::from_secs(10), client.submit_request(valid_request()))
        .await
        .expect("the submission does not wait for the agency's open transaction")
        .unwrap()
        .into_inner()
        .request
        .unwrap()
        .id;
    assert!(
        tokio::time::timeout(Duration::from_millis(700), stream.next()).await.is_err(),
        "the later event waits for the earlier transaction"
    );
    held.commit().await.unwrap();
    let (a, b) = (next_update(&mut stream).await, next_update(&mut stream).await);
    assert_eq!((a.request_id.as_str(), a.note.as_str()), (first.as_str(), "slow"));
    assert_eq!((b.request_id.as_str(), b.status), (second.as_str(), RequestStatus::Received as i32));

    // Resuming from the last cursor gives nothing more.
    let mut resumed = client.watch_requests(WatchRequestsRequest { cursor: b.cursor }).await.unwrap().into_inner();
    assert!(tokio::time::timeout(Duration::from_millis(700), resumed.next()).await.is_err());
    intake.stop().await;
}

/// A cursor given out by the previous version (the agency's own event number) resumes right
/// after its event, and the events written since follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_from_before_resumes_where_it_was() {
    use crs_proto::intake::WatchRequestsRequest;

    let intake = Intake::start(Backend::Sqlite).await;
    let agency = intake.agency().await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    for (n, note) in [(1, "old one"), (2, "old two")] {
        intake
            .db
            .execute_unprepared(&format!(
                "INSERT INTO status_events (agency_id, request_id, status, note, occurred_at, agency_seq, txid) \
                 VALUES ('{agency}', 'r-old', 1, '{note}', 0, {n}, 0)"
            ))
            .await
            .unwrap();
    }
    let new = client.submit_request(valid_request()).await.unwrap().into_inner().request.unwrap().id;
    let mut stream = client.watch_requests(WatchRequestsRequest { cursor: "1".into() }).await.unwrap().into_inner();
    assert_eq!(next_update(&mut stream).await.note, "old two");
    assert_eq!(next_update(&mut stream).await.request_id, new);
    let unknown = client.watch_requests(WatchRequestsRequest { cursor: "3".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    intake.stop().await;
}

fn remaining(reply: &tonic::Response<crs_proto::intake::SubmitRequestResponse>) -> Option<&str> {
    reply.metadata().get("x-ratelimit-remaining").and_then(|v| v.to_str().ok())
}

/// Submits `request`, again while it is refused for its rate limit, for up to two seconds: a
/// charge is given back just after its submission's caller is answered, and a refusal takes
/// nothing from the limit. The last answer.
async fn accepted_within_a_few_seconds(
    client: &crs_proto::intake::intake_service_client::IntakeServiceClient<crsctl::Authed>,
    request: SubmitRequestRequest,
) -> Result<tonic::Response<crs_proto::intake::SubmitRequestResponse>, tonic::Status> {
    let mut answer = client.clone().submit_request(request.clone()).await;
    for _ in 0..100 {
        match &answer {
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                answer = client.clone().submit_request(request.clone()).await;
            }
            _ => break,
        }
    }
    answer
}

/// A submission whose caller's deadline passes while it waits for a writer is not stored:
/// nobody was told it was accepted, and its retry with the same idempotency key is taken as a
/// new submission, within the agency's rate limit: the one given up gave back what it took.
/// The submission the writer was busy with is stored and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_whose_caller_gave_up_in_the_queue_is_not_stored_on_postgres() {
    use std::time::Duration;

    let intake = Intake::start_with(Backend::Postgres, &[("CRS_GROUP_COMMIT__WRITERS", "1")]).await;
    let agency = intake.agency().await;
    let client = intake.intake(intake.as_agency(&agency)).await;
    let abandoned = |metrics: String| {
        let line =
            metrics.lines().find(|l| l.starts_with("crs_intake_submissions_abandoned_total ")).map(str::to_owned);
        line.map_or(0.0, |l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
    };
    let abandoned_before = abandoned(intake.metrics().await);
    // Room for the first submission and one more: the retry fits only if the one given up
    // gave its share back.
    intake.allow_orders(&agency, 2).await;

    let (blocker, first) = intake.hold_the_writer(submit_in_background(&client, valid_request())).await;

    let given_up = valid_request();
    let mut call = tonic::Request::new(given_up.clone());
    call.set_timeout(Duration::from_millis(400));
    let answer = client.clone().submit_request(call).await;
    let status = answer.expect_err("the caller's deadline passes while the writer is held");
    assert!(matches!(status.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled), "answered {status:?}");
    blocker.rollback().await.unwrap();
    let first = first.await.unwrap().expect("the submission being written is stored").into_inner();
    assert!(!first.replayed);

    let key = &given_up.idempotency_key;
    let stored = format!("SELECT COUNT(*) AS n FROM requests WHERE idempotency_key = '{key}'");
    assert_eq!(numbers(&intake, stored.clone()).await[0], 0, "the abandoned submission was not stored");
    assert!(abandoned(intake.metrics().await) > abandoned_before, "it is counted in /metrics");
    let retried = accepted_within_a_few_seconds(&client, given_up).await;
    let retried = retried.expect("its retry is accepted: the one given up took nothing from the limit");
    assert_eq!(remaining(&retried), Some("0"), "the first submission and the retry used the burst of 2");
    let retried = retried.into_inner();
    assert!(!retried.replayed, "the retry is a new submission, not an answer from storage");
    assert_eq!(numbers(&intake, stored).await[0], 1);
    let [requests, items, events, _] = intake.written().await;
    assert_eq!((requests, items, events), (2, 4, 2), "the first submission and the retry, stored whole");
    intake.stop().await;
}

/// Two concurrent submissions with one idempotency key, both past the lookup before either is
/// stored: one is stored, the other answered as its retry (`replayed`), and only the stored one
/// counts against the agency's rate limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_twins_only_the_one_stored_counts_against_the_limit_on_postgres() {
    let intake = Intake::start_with(Backend::Postgres, &[("CRS_GROUP_COMMIT__WRITERS", "1")]).await;
    let agency = intake.agency().await;
    let client = intake.intake(intake.as_agency(&agency)).await;
    intake.allow_orders(&agency, 3).await;
    let submit = |request: SubmitRequestRequest| submit_in_background(&client, request);

    let (blocker, first) = intake.hold_the_writer(submit(valid_request())).await;
    let twin = valid_request();
    let twins = [submit(twin.clone()), submit(twin.clone())];
    // Both have passed the lookup, found no request with their key, and wait for the writer.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    blocker.rollback().await.unwrap();
    first.await.unwrap().expect("the first submission is stored");
    let mut replayed = Vec::new();
    for call in twins {
        let answer = call.await.unwrap().expect("both twins are answered").into_inner();
        replayed.push(answer.replayed);
    }
    replayed.sort();
    assert_eq!(replayed, [false, true], "one stored, one answered as its retry");
    let key = &twin.idempotency_key;
    assert_eq!(
        numbers(&intake, format!("SELECT COUNT(*) AS n FROM requests WHERE idempotency_key = '{key}'")).await[0],
        1
    );

    // Stored so far: the first and one twin, 2 of the burst of 3; the twin answered from
    // storage gave back what it took, so there is room for one more, and no more.
    let third = accepted_within_a_few_seconds(&client, valid_request()).await;
    let third = third.expect("room for a third: the twin answered from storage took nothing");
    assert_eq!(remaining(&third), Some("0"), "3 - the first - the stored twin - this one");
    let refused = client.clone().submit_request(valid_request()).await.expect_err("the burst is used up");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    intake.stop().await;
}

/// When intake receives more than it writes, the newest submissions are written first: in order,
/// every one would wait as long as the queue is deep, past its caller's deadline. The older
/// ones are still written once the newer are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_submissions_are_written_first_once_the_queue_stands_on_postgres() {
    use std::time::Duration;

    let intake = Intake::start_with_one_writer_of_one().await;
    let agency = intake.agency().await;
    let client = intake.intake(intake.as_agency(&agency)).await;
    let submit = |request: SubmitRequestRequest| submit_in_background(&client, request);

    let (first, older, newer) = (valid_request(), valid_request(), valid_request());
    let (blocker, first_call) = intake.hold_the_writer(submit(first.clone())).await;
    let mut calls = vec![first_call];
    calls.push(submit(older.clone()));
    // The older one has waited well past the queue's bound by the time the writer is free.
    tokio::time::sleep(Duration::from_secs(1)).await;
    calls.push(submit(newer.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    blocker.rollback().await.unwrap();
    for call in calls {
        call.await.unwrap().expect("every submission is stored and answered");
    }

    // One writer, one submission per transaction: transaction ids give the order of writing.
    let order = |key: &str| format!("SELECT xmin::text::bigint AS n FROM requests WHERE idempotency_key = '{key}'");
    let first = numbers(&intake, order(&first.idempotency_key)).await[0];
    let older = numbers(&intake, order(&older.idempotency_key)).await[0];
    let newer = numbers(&intake, order(&newer.idempotency_key)).await[0];
    assert!(first < newer && newer < older, "written: first {first}, newer {newer}, older {older}");

    intake.stop().await;
}
