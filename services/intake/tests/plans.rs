//! The hot lookups use the indexes meant for them on PostgreSQL, with statistics as a started
//! service leaves them (it refreshes them after migrating): the idempotency lookup reads one row
//! through `requests_agency_idempotency_key`, however long the agency's history, alone and as
//! a submission reads it with its agency.

mod support;

use sea_orm::{ConnectionTrait, Statement};
use support::{Backend, Intake};

/// PostgreSQL's plan for `statement`, as text.
async fn explain(intake: &Intake, mut statement: Statement) -> String {
    statement.sql = format!("EXPLAIN {}", statement.sql);
    let rows = intake.db.query_all_raw(statement).await.unwrap();
    rows.iter().map(|r| r.try_get_by_index::<String>(0).unwrap()).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_lookup_reads_one_row_through_its_index() {
    let intake = Intake::start(Backend::Postgres).await;
    let agency = intake.agency().await;
    // A long history for one agency, as after months of use: 20,000 requests.
    intake
        .db
        .execute_unprepared(&format!(
            "INSERT INTO requests (id, agency_id, idempotency_key, body_hash, jurisdiction, legal_instrument, \
             category, keywords, requested_action, legal_basis, justification, reference, issuing_authority, \
             status, status_at, status_note, pending_question, deadline, status_version, received_at, updated_at) \
             SELECT 'r-' || g, '{agency}', 'key-' || g, 'h', 'FR', 1, 1, '[]', 1, '', '', '', '', 1, g, '', '', \
             NULL, 0, g, g FROM generate_series(1, 20000) AS g"
        ))
        .await
        .unwrap();
    // Statistics as a restarted service would leave them.
    crs_platform::db::refresh_statistics(&intake.db).await.unwrap();

    let lookup = format!("SELECT * FROM requests WHERE agency_id = '{agency}' AND idempotency_key = 'key-17'");
    let plan = explain(&intake, Statement::from_string(sea_orm::DbBackend::Postgres, lookup)).await;
    assert!(plan.contains("requests_agency_idempotency_key"), "the lookup uses its unique index:\n{plan}");
    assert!(!plan.contains("Seq Scan"), "no scan of the table:\n{plan}");
    assert!(plan.contains("rows=1 "), "the planner expects one row:\n{plan}");

    // As a submission reads it: with its agency, in one statement.
    let submission = crs_intake::submit::agency_and_key_statement(sea_orm::DbBackend::Postgres, &agency, "key-17");
    let plan = explain(&intake, submission).await;
    assert!(plan.contains("requests_agency_idempotency_key"), "the submission's read uses the index:\n{plan}");
    assert!(!plan.contains("Seq Scan on requests"), "no scan of the requests:\n{plan}");
    intake.stop().await;
}
