//! A legal review running in process on its own database, with helpers to open cases as triage
//! would, act on them as reviewers of each role, and look at what it wrote.

#![allow(dead_code)]

use std::time::Duration;

use crs_legal_review::Application;
use crs_platform::auth::{Principal, Role};
use crs_proto::common::{
    Assessment, Category, DecisionGround, Item, ItemDecision, ItemOutcome, LegalInstrument, NoActionReason, SlaPolicy,
    Submission,
};
use crs_proto::review::legal_review_internal_service_client::LegalReviewInternalServiceClient;
use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
use crs_proto::review::*;
use crs_testkit::service::{Running, ServiceEnv};
use crs_testkit::{Backend, TestDb, service};
use crsctl::{Authed, Bearer, connect};
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

pub struct Review {
    pub url: String,
    pub db: DatabaseConnection,
    pub test_db: TestDb,
    running: Option<Running>,
}

/// What a test case looks like.
#[derive(Clone, Debug)]
pub struct CaseSpec {
    pub items: usize,
    pub jurisdiction: &'static str,
    pub instrument: LegalInstrument,
    pub human_rights_review: bool,
    pub high_risk: bool,
    pub queue: &'static str,
    pub priority: u32,
    pub budget_secs: i64,
    pub pauses: bool,
    /// The agency's free text in the submission (legal basis, justification, each item's
    /// description); empty when `None`.
    pub free_text: Option<&'static str>,
    /// The content the items name (their content keys); when empty, `items` pieces of content
    /// no other case names.
    pub content: Vec<String>,
    pub agency: &'static str,
}

impl Default for CaseSpec {
    fn default() -> Self {
        CaseSpec {
            items: 2,
            jurisdiction: "KZ",
            instrument: LegalInstrument::GovernmentNotice,
            human_rights_review: false,
            high_risk: false,
            queue: "standard",
            priority: 50,
            budget_secs: 86_400,
            pauses: true,
            free_text: None,
            content: Vec::new(),
            agency: "agency-1",
        }
    }
}

pub fn reviewer(id: &str) -> Principal {
    Principal::Reviewer { id: id.into(), roles: vec![Role::Reviewer] }
}

pub fn senior(id: &str) -> Principal {
    Principal::Reviewer { id: id.into(), roles: vec![Role::SeniorReviewer] }
}

pub fn admin() -> Principal {
    Principal::Reviewer { id: "root".into(), roles: vec![Role::Admin] }
}

pub fn service_principal(name: &str) -> Principal {
    Principal::Service { name: name.into() }
}

impl Review {
    pub async fn start(backend: Backend) -> Review {
        Self::start_with(backend, &[]).await
    }

    pub async fn start_with(backend: Backend, extra: &[(&str, &str)]) -> Review {
        let db = TestDb::fresh(backend, "review").await.unwrap();
        Self::on_with(db, extra).await
    }

    /// Runs legal review on an existing database (migrated at start).
    pub async fn on(db: TestDb) -> Review {
        Self::on_with(db, &[]).await
    }

    async fn on_with(db: TestDb, extra: &[(&str, &str)]) -> Review {
        let mut env = ServiceEnv::on::<Application>(db.clone())
            .set("CRS_TIMERS__KEY_PREFIX", format!("crs:test:{}:timers", uuid::Uuid::new_v4().simple()))
            .set("CRS_OUTBOX__POLL_INTERVAL_MS", "60000")
            .set("CRS_OUTBOX__INITIAL_BACKOFF_MS", "60000")
            .set("CRS_OUTBOX__MAX_BACKOFF_MS", "60000");
        for (k, v) in extra {
            env = env.set(k, *v);
        }
        let running = service::start::<Application>(&env).await;
        let conn = db.connect().await.unwrap();
        Review { url: running.url.clone(), db: conn, test_db: db, running: Some(running) }
    }

    /// Another handle on `other`'s database that runs no server of its own.
    pub async fn view(other: &Review) -> Review {
        Review {
            url: other.url.clone(),
            db: other.test_db.connect().await.unwrap(),
            test_db: other.test_db.clone(),
            running: None,
        }
    }

    pub async fn stop(self) {
        if let Some(running) = self.running {
            running.stop().await;
        }
        self.db.close().await.unwrap();
        self.test_db.drop_now().await.unwrap();
    }

    pub async fn as_(&self, p: &Principal) -> LegalReviewServiceClient<Authed> {
        LegalReviewServiceClient::new(
            connect(&self.url, Bearer::new(&crs_testkit::service::token(p)).unwrap()).await.unwrap(),
        )
    }

    pub async fn internal(&self, service: &str) -> LegalReviewInternalServiceClient<Authed> {
        let token = crs_testkit::service::token(&service_principal(service));
        LegalReviewInternalServiceClient::new(connect(&self.url, Bearer::new(&token).unwrap()).await.unwrap())
    }

    /// Opens a case as triage's hand-off would; returns its id.
    pub async fn enqueue(&self, spec: &CaseSpec) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        self.enqueue_as(&id, spec).await;
        id
    }

    pub async fn enqueue_as(&self, id: &str, spec: &CaseSpec) -> EnqueueCaseResponse {
        self.internal("triage").await.enqueue_case(Self::enqueue_request(id, spec)).await.unwrap().into_inner()
    }

    /// Triage's hand-off of request `id` as `spec` describes it.
    pub fn enqueue_request(id: &str, spec: &CaseSpec) -> EnqueueCaseRequest {
        let now = crs_platform::time::now_millis();
        let content: Vec<String> = if spec.content.is_empty() {
            (0..spec.items).map(|i| format!("url:https://social.example/posts/{id}-{i}")).collect()
        } else {
            spec.content.clone()
        };
        let submission = Submission {
            request_id: id.to_owned(),
            agency_id: spec.agency.into(),
            agency_name: format!("Agency {}", spec.agency),
            jurisdiction: spec.jurisdiction.into(),
            legal_instrument: spec.instrument as i32,
            category: Category::IllegalOrHarmfulSpeech as i32,
            items: content
                .iter()
                .enumerate()
                .map(|(i, key)| Item {
                    index: i as u32,
                    url: key.strip_prefix("url:").unwrap_or_default().to_owned(),
                    content_key: key.clone(),
                    description: spec.free_text.unwrap_or_default().to_owned(),
                    ..Default::default()
                })
                .collect(),
            received_at: Some(crs_platform::time::timestamp_from_millis(now)),
            legal_basis: spec.free_text.unwrap_or_default().to_owned(),
            justification: spec.free_text.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        let assessment = Assessment {
            request_id: id.to_owned(),
            priority: spec.priority,
            policy: Some(SlaPolicy {
                id: "test-policy".into(),
                name: "test policy".into(),
                legal_reference: "Test Act s. 1".into(),
                budget: Some(crs_platform::time::duration(spec.budget_secs)),
                pauses_while_awaiting_information: spec.pauses,
                warning_percents: vec![50, 75, 90],
                high_risk: spec.high_risk,
            }),
            due_at: Some(crs_platform::time::timestamp_from_millis(now + spec.budget_secs * 1000)),
            queue: spec.queue.into(),
            human_rights_review: spec.human_rights_review,
            ..Default::default()
        };
        EnqueueCaseRequest {
            event_id: uuid::Uuid::new_v4().to_string(),
            submission: Some(submission),
            assessment: Some(assessment),
        }
    }

    /// Claims `case` as `p`.
    pub async fn claim(&self, p: &Principal, case: &str) -> Result<Case, tonic::Status> {
        self.as_(p)
            .await
            .claim_case(ClaimCaseRequest { case_id: case.into(), lease: None })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn decide(&self, p: &Principal, case: &str, decisions: Vec<ItemDecision>) -> Result<Case, tonic::Status> {
        self.as_(p)
            .await
            .submit_decision(SubmitDecisionRequest {
                case_id: case.into(),
                decisions,
                summary: "decided".into(),
                idempotency_key: String::new(),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn approve(
        &self,
        p: &Principal,
        case: &str,
        approve: bool,
        comment: &str,
    ) -> Result<Case, tonic::Status> {
        self.as_(p)
            .await
            .approve_decision(ApproveDecisionRequest {
                case_id: case.into(),
                approve,
                comment: comment.into(),
                idempotency_key: String::new(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// `p` asks the agency `question` about `case`.
    pub async fn ask(&self, p: &Principal, case: &str, question: &str) -> Result<Case, tonic::Status> {
        self.as_(p)
            .await
            .request_information(RequestInformationRequest {
                case_id: case.into(),
                question: question.into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }

    /// The agency's `answer` arrives from intake.
    pub async fn answer(&self, case: &str, answer: &str) -> Result<(), tonic::Status> {
        self.internal("intake")
            .await
            .resume_case(ResumeCaseRequest {
                event_id: uuid::Uuid::new_v4().to_string(),
                case_id: case.into(),
                answer: answer.into(),
            })
            .await
            .map(drop)
    }

    pub async fn get(&self, case: &str) -> Case {
        self.as_(&senior("observer"))
            .await
            .get_case(GetCaseRequest { case_id: case.into() })
            .await
            .unwrap()
            .into_inner()
    }

    /// The hand-offs legal review wrote for `topic` (an internal RPC path), decoded as `M`.
    pub async fn sent<M: Message + Default>(&self, topic: &str) -> Vec<M> {
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                match self.db.get_database_backend() {
                    sea_orm::DbBackend::Postgres => "SELECT payload FROM outbox WHERE topic = $1 ORDER BY id",
                    _ => "SELECT payload FROM outbox WHERE topic = ? ORDER BY id",
                },
                [topic.into()],
            ))
            .await
            .unwrap();
        rows.into_iter().map(|r| M::decode(r.try_get::<Vec<u8>>("", "payload").unwrap().as_slice()).unwrap()).collect()
    }

    pub async fn exec(&self, sql: &str) {
        self.db.execute_unprepared(sql).await.unwrap();
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql.to_owned()))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap()
    }

    /// Audit entries matching `filter` (SQL), sealed into the chain or still pending.
    pub async fn audit_entries(&self, filter: &str) -> i64 {
        self.count(&format!(
            "SELECT (SELECT COUNT(*) FROM audit_entries WHERE {filter}) + (SELECT COUNT(*) FROM audit_pending WHERE {filter})"
        ))
        .await
    }
}

/// Restricts every item in the requesting jurisdiction, under local law.
pub fn restrict_all(items: usize) -> Vec<ItemDecision> {
    (0..items)
        .map(|i| ItemDecision {
            item_index: i as u32,
            outcome: ItemOutcome::RestrictedInJurisdiction as i32,
            ground: DecisionGround::IllegalContent as i32,
            legal_ground: "Law on Online Platforms, Art. 9".into(),
            explanation: "Unlawful in Kazakhstan.".into(),
            ..Default::default()
        })
        .collect()
}

/// No action on every item.
pub fn refuse_all(items: usize) -> Vec<ItemDecision> {
    (0..items)
        .map(|i| ItemDecision {
            item_index: i as u32,
            outcome: ItemOutcome::NoAction as i32,
            no_action_reason: NoActionReason::ProtectedSpeech as i32,
            explanation: "Protected political speech.".into(),
            ..Default::default()
        })
        .collect()
}

pub fn field_violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

pub async fn wait<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    crs_testkit::eventually(what, Duration::from_secs(30), check).await
}
