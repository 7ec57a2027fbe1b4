//! Triage's rules as configuration, against the running service: routes to named queues (by
//! jurisdiction, category, keyword, instrument and language), configurable human-rights rules,
//! ExplainAssessment saying exactly what AssessRequest then does, decisions recorded for later
//! requests, reloading that applies to new requests only, and policy files refused with their
//! file and line.

use std::time::Duration;

use crs_platform::auth::{Principal, Role};
use crs_platform::time::timestamp_from_millis;
use crs_proto::common::{Assessment, Category, Item, ItemOutcome, Keyword, LegalInstrument, Submission};
use crs_proto::triage::triage_internal_service_client::TriageInternalServiceClient;
use crs_proto::triage::triage_service_client::TriageServiceClient;
use crs_proto::triage::*;
use crs_testkit::service::{self, Running, ServiceEnv};
use crs_testkit::{Backend, TestDb};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Authed =
    InterceptedService<Channel, Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>>;

async fn channel_as(running: &Running, principal: &Principal) -> Authed {
    let token = crs_testkit::keys::token(principal);
    let channel = tonic::transport::Endpoint::from_shared(running.url.clone()).unwrap().connect().await.unwrap();
    InterceptedService::new(
        channel,
        Box::new(move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
            Ok(r)
        }),
    )
}

async fn intake(running: &Running) -> TriageInternalServiceClient<Authed> {
    TriageInternalServiceClient::new(channel_as(running, &Principal::Service { name: "intake".into() }).await)
}

async fn legal_review(running: &Running) -> TriageInternalServiceClient<Authed> {
    TriageInternalServiceClient::new(channel_as(running, &Principal::Service { name: "legal-review".into() }).await)
}

async fn reviewer(running: &Running) -> TriageServiceClient<Authed> {
    let ana = Principal::Reviewer { id: "ana".into(), roles: vec![Role::Reviewer] };
    TriageServiceClient::new(channel_as(running, &ana).await)
}

fn submission(id: &str, jurisdiction: &str, category: Category, urls: &[&str]) -> Submission {
    Submission {
        request_id: id.into(),
        agency_id: "agency-1".into(),
        jurisdiction: jurisdiction.into(),
        legal_instrument: LegalInstrument::GovernmentNotice as i32,
        category: category as i32,
        items: urls
            .iter()
            .enumerate()
            .map(|(i, u)| Item {
                index: i as u32,
                url: (*u).into(),
                content_key: format!("url:{u}"),
                ..Default::default()
            })
            .collect(),
        received_at: Some(timestamp_from_millis(crs_platform::time::now_millis())),
        ..Default::default()
    }
}

async fn assess(running: &Running, s: &Submission) -> Assessment {
    intake(running)
        .await
        .assess_request(AssessRequestRequest {
            event_id: format!("assess-{}", s.request_id),
            submission: Some(s.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .assessment
        .unwrap()
}

/// Rules of an operator's own: a Kazakh-language desk, an elections desk by keyword, court orders
/// to their own queue, and a human-rights rule on one jurisdiction's security requests.
const RULES: &str = r#"
[priority]
deadline = [{ max_budget_secs = 86400, points = 40 }, { points = 10 }]
binding_instrument = 15
items = { per_item = 2, max = 6 }
agency_history = { points = 10, min_decided = 2 }
[priority.categories]
PROTECTION_OF_MINORS = 30

[[route]]
id = "kazakh-desk"
queue = "kk-desk"
[route.match]
languages = ["kk"]

[[route]]
id = "elections"
queue = "elections"
[route.match]
keywords = ["ELECTION_INTERFERENCE"]

[[route]]
id = "courts"
queue = "court-orders"
[route.match]
instruments = ["COURT_ORDER"]
jurisdictions = ["DE", "AT"]

[[route]]
id = "default"
queue = "general"

[[human_rights]]
id = "security-in-tr"
[human_rights.match]
jurisdictions = ["TR"]
categories = ["RISK_FOR_PUBLIC_SECURITY"]

[related]
recent_decision_days = 30
"#;

/// A directory of this test's own, removed afterwards.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("crs-triage-rules-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Files {
    dir: TempDir,
}

impl Files {
    fn new(rules: &str) -> Files {
        let dir = TempDir::new();
        std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
        Files { dir }
    }

    fn rules(&self) -> String {
        self.dir.path().join("rules.toml").display().to_string()
    }

    fn write(&self, rules: &str) {
        // Written aside and renamed, as a ConfigMap update is: the reader never sees half a file.
        let tmp = self.dir.path().join("rules.toml.new");
        std::fs::write(&tmp, rules).unwrap();
        std::fs::rename(tmp, self.dir.path().join("rules.toml")).unwrap();
    }
}

async fn start(backend: Backend, files: &Files) -> (Running, TestDb) {
    let db = TestDb::fresh(backend, "triage").await.unwrap();
    let env = ServiceEnv::on::<crs_triage::Application>(db.clone())
        .set("CRS_POLICIES__RULES_FILE", files.rules())
        .set("CRS_POLICIES__RELOAD_INTERVAL_SECS", "1");
    (service::start::<crs_triage::Application>(&env).await, db)
}

async fn routes_and_explanations(backend: Backend) {
    let files = Files::new(RULES);
    let (triage, db) = start(backend, &files).await;

    let mut kk = submission("kk-1", "KZ", Category::ScamsAndFraud, &["https://example.kz/a"]);
    kk.language = "kk".into();
    let mut elections =
        submission("el-1", "BR", Category::NegativeEffectsOnCivicDiscourseOrElections, &["https://x.br/1"]);
    elections.keywords = vec![Keyword::ElectionInterference as i32];
    let mut court =
        submission("court-1", "DE", Category::IllegalOrHarmfulSpeech, &["https://x.de/1", "https://x.de/2"]);
    court.legal_instrument = LegalInstrument::CourtOrder as i32;
    let mut security = submission("sec-1", "TR", Category::RiskForPublicSecurity, &["https://x.tr/1"]);
    security.legal_instrument = LegalInstrument::GovernmentOrder as i32;
    let plain = submission("plain-1", "FR", Category::ScamsAndFraud, &["https://x.fr/1"]);

    let cases = [
        (&kk, "kk-desk", "kazakh-desk"),
        (&elections, "elections", "elections"),
        (&court, "court-orders", "courts"),
        (&security, "general", "default"),
        (&plain, "general", "default"),
    ];
    for (s, queue, route) in cases {
        // Asked first, then done: the explanation is what assessment then does.
        let explained = reviewer(&triage)
            .await
            .explain_assessment(ExplainAssessmentRequest { submission: Some(s.clone()) })
            .await
            .unwrap()
            .into_inner();
        let assessed = assess(&triage, s).await;
        let predicted = explained.assessment.unwrap();
        assert_eq!((assessed.queue.as_str(), assessed.route_rule.as_str()), (queue, route), "{}", s.request_id);
        assert_eq!(predicted.queue, assessed.queue, "{}", s.request_id);
        assert_eq!(predicted.route_rule, assessed.route_rule);
        assert_eq!(predicted.priority, assessed.priority);
        assert_eq!(predicted.priority_components, assessed.priority_components);
        assert_eq!(predicted.policy, assessed.policy);
        assert_eq!(predicted.human_rights_rules, assessed.human_rights_rules);
        assert_eq!(predicted.due_at, assessed.due_at, "received_at given: the same deadline");
        // Exactly one route and one SLA policy applied, and it is the one the assessment names.
        let applied: Vec<&str> = explained.routes.iter().filter(|r| r.applied).map(|r| r.id.as_str()).collect();
        assert_eq!(applied, [route]);
        let policy = assessed.policy.as_ref().unwrap().id.as_str();
        let sla: Vec<&str> = explained.sla_policies.iter().filter(|r| r.applied).map(|r| r.id.as_str()).collect();
        assert_eq!(sla, [policy]);
        // Rules above the one that applied were evaluated and each says which condition failed.
        for skipped in explained.routes.iter().take_while(|r| !r.applied) {
            assert!(!skipped.matched && skipped.conditions.iter().any(|c| !c.holds), "{skipped:?}");
        }
        assert_eq!(explained.routes.len(), 4, "every route is shown");
    }

    // The human-rights rule is the operator's: TR security requests, not speech (the built-in).
    let security = assess(&triage, &security).await;
    assert!(security.human_rights_review);
    assert_eq!(security.human_rights_rules, ["security-in-tr"]);
    let court = assess(&triage, &court).await;
    assert!(!court.human_rights_review, "speech is not flagged under these rules");

    // The priority is the operator's weights: court order (binding, 15) with two items (2 each),
    // under a 24 h deadline (40).
    let points: Vec<(String, i32)> = court.priority_components.iter().map(|c| (c.name.clone(), c.points)).collect();
    assert_eq!(
        points,
        [
            ("deadline".to_owned(), 40),
            ("binding_instrument".to_owned(), 15),
            ("category".to_owned(), 0),
            ("items".to_owned(), 4),
            ("agency_history".to_owned(), 0)
        ]
    );
    assert_eq!(court.priority, 59);

    // Nothing the explanation looked at was stored.
    let never = submission("never-assessed", "FR", Category::ScamsAndFraud, &["https://x.fr/9"]);
    reviewer(&triage).await.explain_assessment(ExplainAssessmentRequest { submission: Some(never) }).await.unwrap();
    let status = reviewer(&triage)
        .await
        .get_assessment(GetAssessmentRequest { request_id: "never-assessed".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    // Agencies may not ask how triage would rank them: their tokens are for intake alone.
    let agency = Principal::Agency { id: "agency-1".into() };
    let status = TriageServiceClient::new(channel_as(&triage, &agency).await)
        .explain_assessment(ExplainAssessmentRequest { submission: Some(plain.clone()) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // Nor may a token without a reviewer role.
    let consumer = Principal::Reviewer { id: "bridge".into(), roles: vec![Role::Consumer] };
    let status = TriageServiceClient::new(channel_as(&triage, &consumer).await)
        .explain_assessment(ExplainAssessmentRequest { submission: Some(plain.clone()) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status =
        reviewer(&triage).await.explain_assessment(ExplainAssessmentRequest { submission: None }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(crs_platform::error::field_violations(&status)[0].0, "submission");

    triage.stop().await;
    db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_rules_choose_queues_and_explain_matches_assessment_on_sqlite() {
    routes_and_explanations(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_rules_choose_queues_and_explain_matches_assessment_on_postgres() {
    routes_and_explanations(Backend::Postgres).await;
}

/// Relayed requests arriving together are assessed in shared transactions: each is answered
/// with its own assessment, a repeated event with the first one's, and a request assessed again
/// under another event fails alone, without failing its neighbours.
async fn assessed_together(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    const N: usize = 40;
    let files = Files::new(RULES);
    let (triage, db) = start(backend, &files).await;
    let taken = submission("taken-1", "FR", Category::ScamsAndFraud, &["https://x.fr/taken"]);
    assess(&triage, &taken).await;

    let running = &triage;
    let call = |event_id: String, s: Submission| async move {
        intake(running)
            .await
            .assess_request(AssessRequestRequest { event_id, submission: Some(s) })
            .await
            .map(tonic::Response::into_inner)
    };
    let fresh: Vec<Submission> = (0..N)
        .map(|i| submission(&format!("together-{i}"), "FR", Category::ScamsAndFraud, &[&format!("https://x.fr/{i}")]))
        .collect();
    let repeated = fresh[0].clone();
    let (answers, repeat, again) = tokio::join!(
        futures::future::join_all(fresh.iter().map(|s| call(format!("assess-{}", s.request_id), s.clone()))),
        call(format!("assess-{}", repeated.request_id), repeated.clone()),
        call("another-event-for-taken-1".into(), taken.clone()),
    );
    let mut first = None;
    for (s, answer) in fresh.iter().zip(answers) {
        let answer = answer.unwrap_or_else(|e| panic!("{} was not assessed: {e}", s.request_id));
        let assessment = answer.assessment.unwrap();
        assert_eq!(assessment.queue, "general", "{}", s.request_id);
        if s.request_id == repeated.request_id {
            first = Some((answer.replayed, assessment));
        }
    }
    let repeat = repeat.expect("a repeated event is answered");
    let (first_replayed, first) = first.unwrap();
    assert!(first_replayed != repeat.replayed, "exactly one of the two deliveries of the event assessed it");
    assert_eq!(repeat.assessment.unwrap(), first, "both are answered with the one assessment");
    assert!(again.is_err(), "a second assessment of a request under another event is refused: {again:?}");

    let conn = db.connect().await.unwrap();
    let count = |sql: &'static str| {
        let conn = conn.clone();
        async move {
            let row = conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap();
            row.unwrap().try_get_by_index::<i64>(0).unwrap()
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM assessments").await, N as i64 + 1, "every request assessed once");
    assert_eq!(count("SELECT COUNT(*) FROM outbox").await, N as i64 + 1, "and handed on once");
    if backend == Backend::Postgres {
        let transactions =
            count("SELECT COUNT(DISTINCT xmin::text)::bigint FROM assessments WHERE request_id LIKE 'together-%'")
                .await;
        assert!(transactions < N as i64, "{N} concurrent assessments took {transactions} transactions");
    }
    triage.stop().await;
    db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_relayed_together_are_assessed_together_on_sqlite() {
    assessed_together(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_relayed_together_are_assessed_together_on_postgres() {
    assessed_together(Backend::Postgres).await;
}

/// Decisions recorded, the agency's record and earlier requests naming the same content all
/// inform a later request's assessment (read together, in one statement, on either backend).
async fn decisions_inform_later_requests(backend: Backend) {
    let files = Files::new(RULES);
    let (triage, db) = start(backend, &files).await;
    let first = submission("r-1", "KZ", Category::ScamsAndFraud, &["https://a.kz/1", "https://a.kz/2"]);
    let before = assess(&triage, &first).await;
    let history = |a: &Assessment| a.priority_components.iter().find(|c| c.name == "agency_history").cloned().unwrap();
    assert_eq!(history(&before).points, 0);

    // Two decided requests of this agency: one granted in part, one refused.
    let record = |event: &str, case: &str, request: &str, outcome: ItemOutcome, granted: u32| RecordDecisionRequest {
        event_id: event.into(),
        case_id: case.into(),
        jurisdiction: "KZ".into(),
        decided_at: Some(timestamp_from_millis(crs_platform::time::now_millis())),
        content: vec![DecidedContent { content_key: "url:https://a.kz/1".into(), outcome: outcome as i32 }],
        requests: vec![DecidedRequest {
            request_id: request.into(),
            agency_id: "agency-1".into(),
            items: 2,
            items_granted: granted,
        }],
    };
    let mut review = legal_review(&triage).await;
    let granted = record("e-1", "case-1", "r-1", ItemOutcome::RestrictedInJurisdiction, 1);
    assert!(!review.record_decision(granted.clone()).await.unwrap().into_inner().replayed);
    assert!(review.record_decision(granted).await.unwrap().into_inner().replayed, "an event counts once");
    review.record_decision(record("e-2", "case-2", "r-0", ItemOutcome::NoAction, 0)).await.unwrap();

    let later = submission("r-2", "KZ", Category::ScamsAndFraud, &["https://a.kz/1"]);
    let after = assess(&triage, &later).await;
    let h = history(&after);
    assert_eq!((h.points, h.detail.as_str()), (5, "1 of 2 past requests granted"));
    assert!(
        after
            .reasons
            .iter()
            .any(|r| r == "url:https://a.kz/1 was decided RESTRICTED_IN_JURISDICTION for KZ in case case-1"),
        "{:?}",
        after.reasons
    );
    assert!(
        after.reasons.iter().any(|r| r == "url:https://a.kz/1 was decided NO_ACTION for KZ in case case-2"),
        "{:?}",
        after.reasons
    );
    assert!(after.reasons.iter().any(|r| r == "1 item(s) already named in request r-1"), "{:?}", after.reasons);
    assert_eq!(after.duplicate_of, "r-1", "all it names was named in r-1");
    // Content nobody named before: no earlier request, no decision on it.
    let other = assess(&triage, &submission("r-5", "KZ", Category::ScamsAndFraud, &["https://b.kz/9"])).await;
    assert!(other.duplicate_of.is_empty() && !other.reasons.iter().any(|r| r.contains("a.kz")), "{:?}", other.reasons);

    // Only legal review records decisions; a bad record names its field.
    let status = intake(&triage)
        .await
        .record_decision(record("e-3", "case-3", "r-3", ItemOutcome::NoAction, 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = review.record_decision(record("e-4", "case-4", "r-4", ItemOutcome::Pending, 0)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(crs_platform::error::field_violations(&status)[0].0, "content[0].outcome");

    triage.stop().await;
    db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_recorded_inform_later_requests_and_the_agencys_priority_on_sqlite() {
    decisions_inform_later_requests(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_recorded_inform_later_requests_and_the_agencys_priority_on_postgres() {
    decisions_inform_later_requests(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_rules_apply_to_new_requests_only_and_a_broken_file_changes_nothing() {
    let files = Files::new(RULES);
    let (triage, db) = start(Backend::Sqlite, &files).await;
    let first = assess(&triage, &submission("old-1", "FR", Category::ScamsAndFraud, &["https://x.fr/1"])).await;
    assert_eq!(first.queue, "general");

    files.write(&RULES.replace("queue = \"general\"", "queue = \"triage-desk\""));
    let moved = crs_testkit::eventually("the new rules are in force", Duration::from_secs(15), || {
        let triage = &triage;
        async move {
            let mut s = submission("probe", "FR", Category::ScamsAndFraud, &["https://x.fr/probe"]);
            s.request_id = format!("probe-{}", crs_platform::time::now_millis());
            let a = reviewer(triage)
                .await
                .explain_assessment(ExplainAssessmentRequest { submission: Some(s) })
                .await
                .ok()?;
            (a.into_inner().assessment?.queue == "triage-desk").then_some(())
        }
    });
    moved.await;
    let second = assess(&triage, &submission("new-1", "FR", Category::ScamsAndFraud, &["https://x.fr/2"])).await;
    assert_eq!(second.queue, "triage-desk");
    let kept =
        reviewer(&triage).await.get_assessment(GetAssessmentRequest { request_id: "old-1".into() }).await.unwrap();
    assert_eq!(kept.into_inner().queue, "general", "a request assessed before keeps its queue");

    // A broken file is refused; the rules in force stay.
    files.write(&RULES.replace("binding_instrument = 15", "binding_instrument = 150"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let third = assess(&triage, &submission("new-2", "FR", Category::ScamsAndFraud, &["https://x.fr/3"])).await;
    assert_eq!(third.queue, "triage-desk");
    triage.stop().await;
    db.drop_now().await.unwrap();
}

/// Builds triage with these files and returns why it refused to start.
async fn refused(sla: Option<&str>, rules: Option<&str>) -> String {
    let dir = TempDir::new();
    let db = TestDb::fresh(Backend::Sqlite, "triage").await.unwrap();
    let mut env = ServiceEnv::on::<crs_triage::Application>(db.clone());
    if let Some(text) = sla {
        let path = dir.path().join("sla.toml");
        std::fs::write(&path, text).unwrap();
        env = env.set("CRS_POLICIES__SLA_FILE", path.display().to_string());
    }
    if let Some(text) = rules {
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, text).unwrap();
        env = env.set("CRS_POLICIES__RULES_FILE", path.display().to_string());
    }
    let cfg = crs_platform::app::config_from_env::<crs_triage::Application>(env.vars()).unwrap();
    let err = match <crs_triage::Application as crs_platform::app::Service>::build(cfg).await {
        Ok(_) => panic!("triage started with a broken policy file"),
        Err(e) => format!("{e:#}").replace(&format!("{}/", dir.path().display()), ""),
    };
    db.drop_now().await.unwrap();
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_file_stops_triage_at_start_naming_the_file_and_line() {
    let sla = crs_triage::sla::BUILT_IN;
    let line_of = |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;

    let typo = sla.replacen("budget_secs = 3600", "budget_seconds = 3600", 1);
    let err = refused(Some(&typo), None).await;
    assert!(err.starts_with(&format!("sla.toml:{}: ", line_of(&typo, "budget_seconds"))), "{err}");
    assert!(err.contains("budget_seconds"), "{err}");

    let over = sla.replacen("warning_percents = [", "warning_percents = [120, ", 1);
    let err = refused(Some(&over), None).await;
    assert!(err.starts_with("sla.toml:") && err.contains("120 % is not a warning"), "{err}");

    let second_id = sla.lines().filter(|l| l.starts_with("id = ")).nth(1).unwrap();
    let twice = sla.replacen(second_id, sla.lines().find(|l| l.starts_with("id = ")).unwrap(), 1);
    let err = refused(Some(&twice), None).await;
    assert!(err.starts_with("sla.toml:") && err.contains("the id is used twice (also at line"), "{err}");

    let err = refused(None, Some(&RULES.replace("recent_decision_days", "recent_decision_dayz"))).await;
    assert!(err.starts_with(&format!("rules.toml:{}: ", line_of(RULES, "recent_decision_days"))), "{err}");
    let err = refused(None, Some(&RULES.replace("queue = \"elections\"", "queue = \"Elections Desk\""))).await;
    assert!(err.contains("rules.toml:") && err.contains("route \"elections\": queue \"Elections Desk\""), "{err}");
    let err = refused(None, Some(&RULES.replace("languages = [\"kk\"]", "languages = [\"kazakh\"]"))).await;
    assert!(err.contains("route \"kazakh-desk\": languages: \"kazakh\""), "{err}");
}
