//! An in-process intake on its own fresh database (SQLite file or PostgreSQL database), with
//! the real Redis, and helpers to call it as any principal. Built on `crs-testkit`.

#![allow(dead_code)]

use std::time::Duration;

use crs_intake::Application;
use crs_platform::auth::{Principal, Role, TokenIssuer};
use crs_proto::common::{Category, ContentItem, LegalInstrument, RequestedAction};
use crs_proto::intake::agency_admin_service_client::AgencyAdminServiceClient;
use crs_proto::intake::intake_service_client::IntakeServiceClient;
use crs_proto::intake::{CreateAgencyRequest, SubmitRequestRequest};
use crs_testkit::service::{Running, ServiceEnv};
use crs_testkit::{TestDb, service};
use crsctl::{Authed, Bearer, connect};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

pub use crs_testkit::Backend;

/// The test deployment's token issuer.
pub fn issuer() -> TokenIssuer {
    crs_testkit::service::issuer()
}

/// A running intake.
pub struct Intake {
    /// The legal review it asks about withdrawals.
    review: Running,
    review_db: TestDb,
    pub url: String,
    /// Where `/metrics` is served.
    pub admin_addr: std::net::SocketAddr,
    pub db: DatabaseConnection,
    pub issuer: TokenIssuer,
    pub test_db: TestDb,
    running: Running,
}

impl Intake {
    pub async fn start(backend: Backend) -> Intake {
        Self::start_with(backend, &[]).await
    }

    /// Starts an intake with extra `CRS_*` settings.
    pub async fn start_with(backend: Backend, extra: &[(&str, &str)]) -> Intake {
        let db = TestDb::fresh(backend, "intake").await.unwrap();
        Self::start_on(db, extra).await
    }

    /// Intake on PostgreSQL with one group-commit writer taking one submission at a time: a test
    /// that holds the writer ([`Intake::hold_the_writer`]) knows the order of what waits behind it.
    pub async fn start_with_one_writer_of_one() -> Intake {
        Self::start_with(Backend::Postgres, &[("CRS_GROUP_COMMIT__WRITERS", "1"), ("CRS_GROUP_COMMIT__MAX_BATCH", "1")])
            .await
    }

    /// Starts an intake on an existing database (a second replica shares the first one's).
    pub async fn start_on(db: TestDb, extra: &[(&str, &str)]) -> Intake {
        // Withdrawals are decided by legal review while the agency waits: run one beside it.
        let review_db = TestDb::fresh(db.backend, "review").await.unwrap();
        let review = service::start::<crs_legal_review::Application>(&ServiceEnv::on::<crs_legal_review::Application>(
            review_db.clone(),
        ))
        .await;
        let mut env = ServiceEnv::on::<Application>(db.clone())
            .set("CRS_PEERS__LEGAL_REVIEW", review.url.clone())
            .set("CRS_LIMITS__MAX_ITEMS", "10")
            .set("CRS_OUTBOX__POLL_INTERVAL_MS", "5000");
        for (k, v) in extra {
            env = env.set(k, *v);
        }
        let running = service::start::<Application>(&env).await;
        let conn = db.connect().await.unwrap();
        Intake {
            review,
            review_db,
            url: running.url.clone(),
            admin_addr: running.admin_addr,
            db: conn,
            issuer: issuer(),
            test_db: db,
            running,
        }
    }

    pub async fn stop(self) {
        self.running.stop().await;
        self.review.stop().await;
        self.db.close().await.unwrap();
        self.test_db.drop_now().await.unwrap();
        self.review_db.drop_now().await.unwrap();
    }

    /// What intake's `/metrics` serves now.
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.admin_addr).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: intake\r\n\r\n").await.unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        body
    }

    pub fn bearer(&self, principal: Principal) -> Bearer {
        Bearer::new(&crs_testkit::keys::token(&principal)).unwrap()
    }

    pub fn admin(&self) -> Bearer {
        self.bearer(Principal::Reviewer { id: "root".into(), roles: vec![Role::Admin] })
    }

    pub async fn intake(&self, bearer: Bearer) -> IntakeServiceClient<Authed> {
        IntakeServiceClient::new(connect(&self.url, bearer).await.unwrap())
    }

    pub async fn admin_client(&self) -> AgencyAdminServiceClient<Authed> {
        AgencyAdminServiceClient::new(connect(&self.url, self.admin()).await.unwrap())
    }

    /// Creates a KZ agency allowed government orders and notices about speech and public security.
    pub async fn agency(&self) -> String {
        self.agency_in("KZ").await
    }

    pub async fn agency_in(&self, jurisdiction: &str) -> String {
        self.admin_client()
            .await
            .create_agency(CreateAgencyRequest {
                name: format!("Agency {}", uuid::Uuid::new_v4()),
                jurisdiction: jurisdiction.into(),
                allowed_instruments: vec![
                    LegalInstrument::GovernmentOrder as i32,
                    LegalInstrument::GovernmentNotice as i32,
                ],
                allowed_categories: vec![
                    Category::IllegalOrHarmfulSpeech as i32,
                    Category::RiskForPublicSecurity as i32,
                ],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .id
    }

    /// Lets `agency` submit `burst` binding orders (what `valid_request` is) before it is refused.
    pub async fn allow_orders(&self, agency: &str, burst: u32) {
        use crs_proto::intake::{RateLimitOverride, SetRateLimitOverridesRequest};
        let overrides = vec![RateLimitOverride {
            rule: "agency_binding".into(),
            rate_per_second: 0.001,
            burst,
            ..Default::default()
        }];
        let request = SetRateLimitOverridesRequest { agency_id: agency.into(), overrides };
        self.admin_client().await.set_rate_limit_overrides(request).await.unwrap();
    }

    pub fn as_agency(&self, id: &str) -> Bearer {
        self.bearer(Principal::Agency { id: id.to_owned() })
    }

    /// On PostgreSQL, how many status events (of how many) do not carry the id of the
    /// transaction that wrote them, which the watch cursors order them by: `txid`'s low 32 bits
    /// are the row's `xmin` (for rows not updated since, and not written under a savepoint).
    pub async fn events_without_their_transaction(&self) -> (i64, i64) {
        let sql = "SELECT COUNT(*) FILTER (WHERE txid = 0 OR txid % 4294967296 <> xmin::text::bigint) AS wrong, \
                   COUNT(*) AS n FROM status_events";
        let row =
            self.db.query_one_raw(Statement::from_string(self.db.get_database_backend(), sql)).await.unwrap().unwrap();
        (row.try_get::<i64>("", "wrong").unwrap(), row.try_get::<i64>("", "n").unwrap())
    }

    /// Holds intake's group-commit writer (on PostgreSQL): `first` (a submission under way) is
    /// being written, and its insert of request items waits for the returned transaction's lock
    /// (reads go on). Returns once it waits; rolling the transaction back lets it go.
    pub async fn hold_the_writer<T>(
        &self,
        first: tokio::task::JoinHandle<T>,
    ) -> (sea_orm::DatabaseTransaction, tokio::task::JoinHandle<T>) {
        use sea_orm::TransactionTrait;
        let blocker = self.db.begin().await.unwrap();
        blocker.execute_unprepared("LOCK TABLE request_items IN EXCLUSIVE MODE").await.unwrap();
        let waiting_on_the_lock = "SELECT COUNT(*) AS n FROM pg_stat_activity \
                                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
        let backend = self.db.get_database_backend();
        for _ in 0..200 {
            let row = self.db.query_one_raw(Statement::from_string(backend, waiting_on_the_lock)).await.unwrap();
            if row.unwrap().try_get::<i64>("", "n").unwrap() > 0 {
                return (blocker, first);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the first submission never reached the writer");
    }

    /// Rows in every table a submission writes to.
    pub async fn written(&self) -> [i64; 4] {
        let mut out = [0; 4];
        for (i, table) in ["requests", "request_items", "status_events", "outbox"].iter().enumerate() {
            let row = self
                .db
                .query_one_raw(Statement::from_string(
                    self.db.get_database_backend(),
                    format!("SELECT COUNT(*) AS n FROM {table}"),
                ))
                .await
                .unwrap()
                .unwrap();
            out[i] = row.try_get::<i64>("", "n").unwrap();
        }
        out
    }
}

/// Submits `request` with `client` as a task of its own, so that a test can hold intake's writer
/// meanwhile.
pub fn submit_in_background(
    client: &IntakeServiceClient<Authed>,
    request: SubmitRequestRequest,
) -> tokio::task::JoinHandle<Result<tonic::Response<crs_proto::intake::SubmitRequestResponse>, tonic::Status>> {
    let mut client = client.clone();
    tokio::spawn(async move { client.submit_request(request).await })
}

/// A valid request from the KZ agency created by [`Intake::agency`].
pub fn valid_request() -> SubmitRequestRequest {
    SubmitRequestRequest {
        idempotency_key: uuid::Uuid::new_v4().to_string(),
        jurisdiction: "KZ".into(),
        legal_instrument: LegalInstrument::GovernmentOrder as i32,
        category: Category::IllegalOrHarmfulSpeech as i32,
        keywords: vec![],
        requested_action: RequestedAction::RestrictInJurisdiction as i32,
        items: vec![
            ContentItem { url: "https://social.example/posts/1".into(), ..Default::default() },
            ContentItem { content_id: "video_1".into(), ..Default::default() },
        ],
        legal_basis: "Law on Online Platforms, Art. 9(4)(2)".into(),
        justification: "Calls to an unlawful assembly.".into(),
        reference: "REF-1".into(),
        issuing_authority: "Ministry".into(),
        content_language: String::new(),
    }
}

/// The `crs-intake` binary as a separate process, sharing a database with an in-process intake.
pub struct Process {
    pub url: String,
    child: std::process::Child,
}

impl Process {
    pub async fn start(db_url: &str) -> Process {
        let listeners = crs_testkit::Listeners::bind().unwrap();
        let port = listeners.grpc_port();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_crs-intake"));
        listeners.pass_to(&mut cmd).unwrap();
        let child = cmd
            .env("CRS_DATABASE__URL", db_url)
            .env("CRS_REDIS__URL", crs_testkit::redis::shared_url())
            .envs(crs_testkit::keys::auth_env("intake"))
            .env("CRS_WEBHOOKS__SECRET_KEY", crs_testkit::service::WEBHOOK_SECRET_KEY)
            .env("CRS_PEERS__TRIAGE", "http://127.0.0.1:9")
            .env("CRS_PEERS__LEGAL_REVIEW", "http://127.0.0.1:9")
            .env("CRS_PEERS__NOTIFICATION", "http://127.0.0.1:9")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        crs_testkit::wait_serving(&url, Duration::from_secs(30)).await.unwrap();
        Process { url, child }
    }

    pub async fn intake(&self, bearer: Bearer) -> IntakeServiceClient<Authed> {
        IntakeServiceClient::new(connect(&self.url, bearer).await.unwrap())
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
