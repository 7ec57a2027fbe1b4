//! A database written by the version before review integrity upgrades unchanged, with its data
//! carried over: escalated cases stay escalated, the question pending and the last answer are
//! kept as information rounds, a withdrawal that waited for its case becomes that case, and
//! hand-offs pending in the outbox keep their way to their RPC, and open cases hold their content
//! against duplicates.

mod support;

use crs_proto::common::RequestStatus;
use crs_proto::review::*;
use crs_testkit::TestDb;
use crs_testkit::schema::{differences, expected};
use sea_orm::ConnectionTrait;
use support::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_version_upgrades_with_its_data() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legal-review-before-integrity.db");
    let db = TestDb::sqlite_copy_of(&fixture).unwrap();
    let review = Review::on(db).await;

    let b = review.db.get_database_backend();
    let diffs = differences(
        &review.db,
        &[
            expected::<crs_legal_review::entities::case::Entity>(b),
            expected::<crs_legal_review::entities::decision::Entity>(b),
            expected::<crs_legal_review::entities::information::Entity>(b),
            expected::<crs_legal_review::entities::audit_entry::Entity>(b),
            expected::<crs_legal_review::entities::audit_pending::Entity>(b),
            expected::<crs_legal_review::entities::command_result::Entity>(b),
        ],
    )
    .await
    .unwrap();
    assert!(diffs.is_empty(), "the upgraded schema is the fresh one: {diffs:?}");

    // The escalated case stays with senior reviewers, its earlier answer kept.
    let escalated = review.get("case-escalated").await;
    assert!(escalated.escalated && escalated.status == RequestStatus::Escalated as i32);
    assert_eq!(escalated.information.len(), 1);
    assert_eq!(escalated.information[0].answer, "Almaty district court");
    assert_eq!(review.claim(&reviewer("ana"), "case-escalated").await.unwrap_err().code(), Code::PermissionDenied);

    // A case opened before merges holds its content: a request naming all of it follows that case.
    let held = escalated.submission.clone().unwrap();
    let content: Vec<String> = held.items.iter().map(|i| i.content_key.clone()).collect();
    let duplicate = CaseSpec {
        items: content.len(),
        content,
        jurisdiction: Box::leak(held.jurisdiction.into_boxed_str()),
        ..Default::default()
    };
    // (Two open cases of the earlier version name that content; the first by id holds it.)
    assert_eq!(review.enqueue_as("late-duplicate", &duplicate).await.case_id, "case-awaiting");
    assert_eq!(review.get("case-awaiting").await.merged_requests[0].request_id, "late-duplicate");

    // The pending question is a round awaiting its answer; the answer resumes the case.
    let awaiting = review.get("case-awaiting").await;
    assert_eq!(awaiting.information.len(), 1);
    assert_eq!(awaiting.information[0].question, "Which court issued the order?");
    let resumed = review
        .internal("intake")
        .await
        .resume_case(ResumeCaseRequest {
            event_id: "e-1".into(),
            case_id: "case-awaiting".into(),
            answer: "Almaty".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.status, RequestStatus::InReview as i32);
    assert_eq!(resumed.information[0].answer, "Almaty");

    // The withdrawal that waited for its case is that case now, withdrawn.
    assert_eq!(review.get("case-withdrawn-early").await.status, RequestStatus::Withdrawn as i32);
    review.enqueue_as("case-withdrawn-early", &CaseSpec::default()).await;
    assert_eq!(review.get("case-withdrawn-early").await.status, RequestStatus::Withdrawn as i32);

    // The decided case refuses a late withdrawal, naming its decision.
    let late = review
        .internal("intake")
        .await
        .withdraw_case(WithdrawCaseRequest {
            event_id: "w-1".into(),
            case_id: "case-decided".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert!(late.message().contains("RESTRICTED_IN_JURISDICTION"), "{}", late.message());

    // Pending hand-offs were renamed to the RPCs they go to.
    let topics = review
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            b,
            "SELECT topic FROM outbox WHERE id LIKE '018f0000%' ORDER BY id".to_owned(),
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.try_get::<String>("", "topic").unwrap())
        .collect::<Vec<_>>();
    assert_eq!(
        topics,
        [
            "/crs.intake.v1.IntakeInternalService/UpdateStatus",
            "/crs.notification.v1.NotificationInternalService/Notify"
        ]
    );
    review.stop().await;
}
