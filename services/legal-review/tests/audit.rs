//! The audit trail: every action on a case, with its content (the agency's own words as digests),
//! in one hash chain that verifies, and that names the first entry altered or deleted behind the service's back.

mod support;

use crs_proto::review::*;
use crs_testkit::Backend;
use support::*;

async fn trail(review: &Review, case: &str) -> Vec<AuditEntry> {
    // The whole trail is for admins; a case's, for senior reviewers too.
    let reader = if case.is_empty() { admin() } else { senior("auditor") };
    let mut client = review.as_(&reader).await;
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .get_audit_trail(GetAuditTrailRequest { case_id: case.into(), page_size: 3, page_token: token })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.entries);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

async fn verify(review: &Review) -> VerifyAuditTrailResponse {
    review.as_(&admin()).await.verify_audit_trail(VerifyAuditTrailRequest::default()).await.unwrap().into_inner()
}

async fn every_action_is_chained_and_tampering_is_named(backend: Backend) {
    let review = Review::start(backend).await;
    let case = review.enqueue(&CaseSpec { human_rights_review: true, ..Default::default() }).await;
    let (ana, sam) = (reviewer("ana"), senior("sam"));
    review.claim(&ana, &case).await.unwrap();
    // Two rounds of questions and answers: both kept, neither overwritten.
    for (q, a) in
        [("Which court issued the order?", "Almaty district court"), ("Which posts exactly?", "Items 0 and 1")]
    {
        review.ask(&ana, &case, q).await.unwrap();
        review.answer(&case, a).await.unwrap();
    }
    review.decide(&ana, &case, restrict_all(2)).await.unwrap();
    review.approve(&sam, &case, true, "Agreed.").await.unwrap();

    let entries = trail(&review, &case).await;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["enqueue", "claim", "ask", "answer", "ask", "answer", "decide", "approve"]);
    let actors: Vec<&str> = entries.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors[..3], ["service:triage", "reviewer:ana", "reviewer:ana"]);
    assert_eq!(actors[3], "service:intake");
    assert_eq!(actors[7], "reviewer:sam");
    let all = entries.iter().map(|e| e.details_json.as_str()).collect::<Vec<_>>().join("\n");
    for text in ["Which court issued the order?", "Which posts exactly?", "RESTRICTED_IN_JURISDICTION", "Agreed."] {
        assert!(all.contains(text), "the trail keeps {text:?}");
    }
    // The agency's own words are kept with the case, subject to retention; the trail, which is
    // never edited, keeps their digest, which proves them while they exist.
    for answer in ["Almaty district court", "Items 0 and 1"] {
        assert!(!all.contains(answer), "the trail holds the agency's words {answer:?}");
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(answer.as_bytes()))
        };
        assert!(all.contains(&digest), "the trail keeps the digest of {answer:?}");
    }
    assert!(entries.windows(2).all(|w| w[1].previous_hash == w[0].hash && w[1].sequence == w[0].sequence + 1));
    let case_now = review.get(&case).await;
    assert_eq!(case_now.information.len(), 2, "both rounds are on the case");
    assert_eq!(case_now.information[1].answer, "Items 0 and 1");

    let intact = verify(&review).await;
    assert!(intact.intact, "{intact:?}");
    assert_eq!(intact.entries_checked, 8);

    // Someone edits the decision's entry in the database directly.
    let decide_seq = entries[6].sequence;
    review
        .exec(&format!(
            "UPDATE audit_entries SET details = REPLACE(details, 'RESTRICTED_IN_JURISDICTION', 'NO_ACTION') WHERE sequence = {decide_seq}"
        ))
        .await;
    let broken = verify(&review).await;
    assert!(!broken.intact);
    assert_eq!(broken.first_broken_sequence, decide_seq, "{broken:?}");
    assert!(broken.problem.contains("content"), "{}", broken.problem);
    // Restored by hand, then an entry deleted: the gap is named.
    review
        .exec(&format!(
            "UPDATE audit_entries SET details = REPLACE(details, 'NO_ACTION', 'RESTRICTED_IN_JURISDICTION') WHERE sequence = {decide_seq}"
        ))
        .await;
    assert!(verify(&review).await.intact);
    review.exec(&format!("DELETE FROM audit_entries WHERE sequence = {}", entries[3].sequence)).await;
    let gap = verify(&review).await;
    assert_eq!(gap.first_broken_sequence, entries[3].sequence, "{gap:?}");
    review.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trail_on_sqlite() {
    every_action_is_chained_and_tampering_is_named(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trail_on_postgres() {
    every_action_is_chained_and_tampering_is_named(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_range_verifies_from_the_entry_before_it() {
    let review = Review::start(Backend::Sqlite).await;
    let first = review.enqueue(&CaseSpec::default()).await;
    review.claim(&reviewer("ana"), &first).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let from = crs_platform::time::timestamp_from_millis(crs_platform::time::now_millis());
    let second = review.enqueue(&CaseSpec::default()).await;
    review.claim(&reviewer("ana"), &second).await.unwrap();
    let mut client = review.as_(&admin()).await;
    let ranged =
        client.verify_audit_trail(VerifyAuditTrailRequest { from: Some(from), to: None }).await.unwrap().into_inner();
    assert!(ranged.intact && ranged.entries_checked == 2, "{ranged:?}");
    // Tampering before the range leaves the range intact; the whole trail names it.
    review.exec("UPDATE audit_entries SET actor = 'reviewer:mallory' WHERE sequence = 2").await;
    assert!(
        client
            .verify_audit_trail(VerifyAuditTrailRequest { from: Some(from), to: None })
            .await
            .unwrap()
            .into_inner()
            .intact
    );
    assert_eq!(verify(&review).await.first_broken_sequence, 2);
    // Reading the whole trail is for admins; a case's trail for seniors too.
    let whole = review.as_(&senior("sam")).await.get_audit_trail(GetAuditTrailRequest::default()).await;
    assert_eq!(whole.unwrap_err().code(), tonic::Code::PermissionDenied);
    let of_case = review
        .as_(&reviewer("ana"))
        .await
        .get_audit_trail(GetAuditTrailRequest { case_id: first, ..Default::default() })
        .await;
    assert_eq!(of_case.unwrap_err().code(), tonic::Code::PermissionDenied);
    review.stop().await;
}

/// The documented grant holds: legal review runs with a role that may only insert and read the
/// audit trail, and that role cannot rewrite it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_service_role_may_only_append_to_the_trail() {
    let owner = Review::start(Backend::Postgres).await;
    let role = format!("crs_review_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("REVOKE UPDATE, DELETE, TRUNCATE ON audit_entries FROM {role}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"),
    ] {
        owner.exec(&sql).await;
    }
    let url = owner.test_db.url.replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    let env = crs_testkit::ServiceEnv::on::<crs_legal_review::Application>(owner.test_db.clone())
        .set("CRS_DATABASE__URL", url.clone())
        .set("CRS_DATABASE__MIGRATE", "false")
        .set("CRS_TIMERS__KEY_PREFIX", format!("crs:test:{role}"));
    let limited = crs_testkit::service::start::<crs_legal_review::Application>(&env).await;
    let mut as_limited = Review::view(&owner).await;
    as_limited.url = limited.url.clone();
    let case = as_limited.enqueue(&CaseSpec::default()).await;
    as_limited.claim(&reviewer("ana"), &case).await.unwrap();
    assert!(verify(&as_limited).await.intact);
    let conn = sea_orm::Database::connect(&url).await.unwrap();
    let denied = sea_orm::ConnectionTrait::execute_unprepared(&conn, "UPDATE audit_entries SET actor = 'x'").await;
    assert!(denied.unwrap_err().to_string().contains("permission denied"), "the role cannot rewrite the trail");
    let denied = sea_orm::ConnectionTrait::execute_unprepared(&conn, "DELETE FROM audit_entries").await;
    assert!(denied.unwrap_err().to_string().contains("permission denied"));
    conn.close().await.unwrap();
    limited.stop().await;
    as_limited.db.close().await.unwrap();
    owner.exec(&format!("DROP OWNED BY {role}")).await;
    owner.exec(&format!("DROP ROLE {role}")).await;
    owner.stop().await;
}

/// The other actions on a case reach the trail too, each with who did it: a release, a
/// reassignment, an escalation, a decision sent back by the second reviewer, and the agency's
/// withdrawal (its reason as a digest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_reassignments_escalations_send_backs_and_withdrawals_are_in_the_trail() {
    let review = Review::start(Backend::Sqlite).await;
    let case = review.enqueue(&CaseSpec { human_rights_review: true, ..Default::default() }).await;
    let (ana, sam, lee) = (reviewer("ana"), senior("sam"), senior("lee"));
    review.claim(&ana, &case).await.unwrap();
    review.as_(&ana).await.release_case(ReleaseCaseRequest { case_id: case.clone() }).await.unwrap();
    review
        .as_(&sam)
        .await
        .reassign_case(ReassignCaseRequest {
            case_id: case.clone(),
            assignee: "reviewer:ana".into(),
            lease: None,
            reason: "Ana reads Kazakh.".into(),
        })
        .await
        .unwrap();
    review
        .as_(&ana)
        .await
        .escalate_case(EscalateCaseRequest { case_id: case.clone(), reason: "Political speech.".into() })
        .await
        .unwrap();
    review.claim(&sam, &case).await.unwrap();
    review.decide(&sam, &case, restrict_all(2)).await.unwrap();
    review.approve(&lee, &case, false, "The ground is too thin.").await.unwrap();
    let withdrawn = review
        .internal("intake")
        .await
        .withdraw_case(WithdrawCaseRequest {
            event_id: uuid::Uuid::new_v4().to_string(),
            case_id: case.clone(),
            reason: "The court lifted its order.".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(withdrawn.status, crs_proto::common::RequestStatus::Withdrawn as i32);

    let entries = trail(&review, &case).await;
    let got: Vec<(&str, &str)> = entries.iter().map(|e| (e.action.as_str(), e.actor.as_str())).collect();
    for expected in [
        ("release", "reviewer:ana"),
        ("reassign", "reviewer:sam"),
        ("escalate", "reviewer:ana"),
        ("decide", "reviewer:sam"),
        ("send_back", "reviewer:lee"),
        ("withdraw", "service:intake"),
    ] {
        assert!(got.contains(&expected), "{expected:?} is in the trail: {got:?}");
    }
    let all = entries.iter().map(|e| e.details_json.as_str()).collect::<Vec<_>>().join("\n");
    for text in ["Ana reads Kazakh.", "Political speech.", "The ground is too thin."] {
        assert!(all.contains(text), "the trail keeps the reviewers' {text:?}");
    }
    assert!(!all.contains("The court lifted its order."), "the agency's reason is kept as a digest");
    assert!(verify(&review).await.intact, "the chain verifies");
    review.stop().await;
}

/// Commands on many cases at once record their entries without waiting for one another; the
/// trail that results is one gapless chain that verifies, each case's actions in their order.
/// Entries a stopped service left recorded but unsealed join the chain at the next read.
async fn concurrent_commands_make_one_chain(backend: Backend) {
    let review = Review::start(backend).await;
    let spec = CaseSpec::default();
    let cases: Vec<String> = futures::future::join_all((0..12).map(|_| review.enqueue(&spec))).await;
    let claims = cases.iter().enumerate().map(|(i, case)| {
        let review = &review;
        async move { review.claim(&reviewer(&format!("r{i}")), case).await.unwrap() }
    });
    futures::future::join_all(claims).await;

    // As if a process had stopped after committing an action and before sealing it.
    review
        .exec(&format!(
            "INSERT INTO audit_pending (case_id, actor, action, details, trace_id, at) \
             VALUES ('{}', 'reviewer:r0', 'release', '{{}}', '', 1)",
            cases[0]
        ))
        .await;

    let whole = trail(&review, "").await;
    let sequences: Vec<u64> = whole.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=25).collect::<Vec<u64>>(), "one entry per action, numbered without gaps");
    for (i, case) in cases.iter().enumerate() {
        let actions: Vec<&str> = whole.iter().filter(|e| &e.case_id == case).map(|e| e.action.as_str()).collect();
        let expected: &[&str] = if i == 0 { &["enqueue", "claim", "release"] } else { &["enqueue", "claim"] };
        assert_eq!(actions, expected, "case {i}'s actions in the order they happened");
    }
    let verified = verify(&review).await;
    assert!(verified.intact, "{verified:?}");
    assert_eq!(verified.entries_checked, 25);
    assert_eq!(review.count("SELECT COUNT(*) FROM audit_pending").await, 0, "nothing left unsealed");
    review.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_make_one_chain_on_sqlite() {
    concurrent_commands_make_one_chain(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_make_one_chain_on_postgres() {
    concurrent_commands_make_one_chain(Backend::Postgres).await;
}
