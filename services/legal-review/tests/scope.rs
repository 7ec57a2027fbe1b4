//! A decision reaches only as far as the law invoked: a restriction under local law stays in the
//! requesting jurisdiction; removing content everywhere needs the platform policy it breaks. A
//! refused decision writes nothing.

mod support;

use crs_proto::common::{DecisionGround, ItemDecision, ItemOutcome, RequestStatus};
use crs_testkit::Backend;
use support::*;
use tonic::Code;

async fn scope_beyond_the_law_is_refused_and_nothing_is_written(backend: Backend) {
    let review = Review::start(backend).await;
    let case = review.enqueue(&CaseSpec { items: 2, ..Default::default() }).await;
    let ana = reviewer("ana");
    review.claim(&ana, &case).await.unwrap();
    let outbox_before = review.count("SELECT COUNT(*) FROM outbox").await;
    let audit_before = review.audit_entries("1 = 1").await;

    // A KZ restriction with DE and US in its scope.
    let mut decisions = restrict_all(2);
    decisions[0].territorial_scope = vec!["DE".into(), "US".into()];
    let err = review.decide(&ana, &case, decisions).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(field_violations(&err), ["decisions[0].territorial_scope[0]", "decisions[0].territorial_scope[1]"]);
    assert!(err.message().contains("only in the requesting jurisdiction (KZ)"), "{}", err.message());

    // A global removal on local law alone.
    let mut decisions = restrict_all(2);
    decisions[1] = ItemDecision {
        item_index: 1,
        outcome: ItemOutcome::RemovedGlobally as i32,
        ground: DecisionGround::IllegalContent as i32,
        legal_ground: "Law on Online Platforms, Art. 9".into(),
        explanation: "Unlawful in Kazakhstan.".into(),
        ..Default::default()
    };
    let err = review.decide(&ana, &case, decisions.clone()).await.unwrap_err();
    assert_eq!((err.code(), field_violations(&err)), (Code::InvalidArgument, vec!["decisions[1].ground".to_owned()]));

    // Nothing was written by either refusal.
    let case_now = review.get(&case).await;
    assert_eq!(case_now.status, RequestStatus::InReview as i32);
    assert!(case_now.decisions.is_empty());
    assert_eq!(review.count("SELECT COUNT(*) FROM decisions").await, 0);
    assert_eq!(review.count("SELECT COUNT(*) FROM outbox").await, outbox_before);
    assert_eq!(review.audit_entries("1 = 1").await, audit_before);

    // Citing the platform policy it breaks makes the global removal lawful; the restriction
    // defaults to the requesting jurisdiction.
    decisions[1].platform_policy = "Community Standards: violent threats".into();
    let decided = review.decide(&ana, &case, decisions).await.unwrap();
    assert_eq!(decided.status, RequestStatus::Decided as i32);
    assert_eq!(decided.decisions[0].territorial_scope, ["KZ"]);
    assert!(decided.decisions[1].territorial_scope.is_empty());
    review.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_on_sqlite() {
    scope_beyond_the_law_is_refused_and_nothing_is_written(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_on_postgres() {
    scope_beyond_the_law_is_refused_and_nothing_is_written(Backend::Postgres).await;
}
