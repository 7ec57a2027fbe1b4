//! An in-process intake on its own fresh database (SQLite file or PostgreSQL database), with
//! the real Redis, and helpers to call it as any principal.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use crs_intake::{Application, Config, DEFAULTS};
use crs_platform::auth::{Principal, Role, TokenAuthority};
use crs_proto::common::{Category, ContentItem, LegalInstrument, RequestedAction};
use crs_proto::intake::agency_admin_service_client::AgencyAdminServiceClient;
use crs_proto::intake::intake_service_client::IntakeServiceClient;
use crs_proto::intake::{CreateAgencyRequest, SubmitRequestRequest};
use crsctl::{Authed, Bearer, connect};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const KEY: &str = "intake-tests-signing-key-0123456789abcdef";

pub fn authority() -> TokenAuthority {
    TokenAuthority::new(&SecretString::from(KEY), "crs").unwrap()
}

fn postgres_admin_url() -> String {
    std::env::var("CRS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database for one intake.
pub async fn fresh_database(backend: Backend) -> (String, Option<String>) {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("crs-intake-{id}.db"));
            (format!("sqlite://{}?mode=rwc", path.display()), None)
        }
        Backend::Postgres => {
            let name = format!("crs_intake_{id}");
            let admin = Database::connect(postgres_admin_url()).await.unwrap();
            admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
            let base = postgres_admin_url();
            (format!("{}/{name}", base.rsplit_once('/').unwrap().0), Some(name))
        }
    }
}

/// A running intake.
pub struct Intake {
    pub url: String,
    /// Where `/metrics` is served.
    pub admin_addr: std::net::SocketAddr,
    pub db: DatabaseConnection,
    pub authority: TokenAuthority,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pg_name: Option<String>,
}

impl Intake {
    pub async fn start(backend: Backend) -> Intake {
        Self::start_with(backend, &[]).await
    }

    /// Starts an intake with extra `CRS_*` settings.
    pub async fn start_with(backend: Backend, extra: &[(&str, &str)]) -> Intake {
        let (db_url, pg_name) = fresh_database(backend).await;
        Self::start_on(&db_url, pg_name, extra).await
    }

    /// Starts an intake on an existing database (a second replica shares the first one's).
    pub async fn start_on(db_url: &str, pg_name: Option<String>, extra: &[(&str, &str)]) -> Intake {
        crs_platform::telemetry::init_for_tests();
        let unreachable = "http://127.0.0.1:9".to_owned();
        let env: HashMap<String, String> = [
            ("CRS_SERVER__LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("CRS_ADMIN__LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("CRS_DATABASE__URL", db_url.to_owned()),
            ("CRS_REDIS__URL", std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())),
            ("CRS_AUTH__SIGNING_KEY", KEY.to_owned()),
            ("CRS_PEERS__TRIAGE", unreachable.clone()),
            ("CRS_PEERS__LEGAL_REVIEW", unreachable.clone()),
            ("CRS_PEERS__NOTIFICATION", unreachable),
            ("CRS_LIMITS__MAX_ITEMS", "10".to_owned()),
            ("CRS_OUTBOX__POLL_INTERVAL_MS", "5000".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
        let cfg: Config =
            crs_platform::config::load(&[crs_platform::config::PLATFORM_DEFAULTS, DEFAULTS], None, &env).unwrap();
        let app = Application::build(cfg).await.unwrap();
        let url = format!("http://{}", app.local_addr());
        let admin_addr = app.admin_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        crsctl::wait_serving(&url, Duration::from_secs(30)).await.unwrap();
        let db = Database::connect(db_url).await.unwrap();
        Intake { url, admin_addr, db, authority: authority(), shutdown, task, pg_name }
    }

    /// The database URL, for a second replica.
    pub fn pg_name(&self) -> Option<String> {
        self.pg_name.clone()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
        self.db.close().await.unwrap();
        if let Some(name) = self.pg_name {
            let admin = Database::connect(postgres_admin_url()).await.unwrap();
            admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
        }
    }

    pub fn bearer(&self, principal: Principal) -> Bearer {
        Bearer::for_principal(&self.authority, &principal).unwrap()
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

    pub fn as_agency(&self, id: &str) -> Bearer {
        self.bearer(Principal::Agency { id: id.to_owned() })
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
    }
}

/// The `crs-intake` binary as a separate process, sharing a database with an in-process intake.
pub struct Process {
    pub url: String,
    child: std::process::Child,
}

impl Process {
    pub async fn start(db_url: &str) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_crs-intake"))
            .env("CRS_SERVER__LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("CRS_ADMIN__LISTEN_ADDR", "127.0.0.1:0")
            .env("CRS_DATABASE__URL", db_url)
            .env("CRS_REDIS__URL", std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()))
            .env("CRS_AUTH__SIGNING_KEY", KEY)
            .env("CRS_PEERS__TRIAGE", "http://127.0.0.1:9")
            .env("CRS_PEERS__LEGAL_REVIEW", "http://127.0.0.1:9")
            .env("CRS_PEERS__NOTIFICATION", "http://127.0.0.1:9")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        crsctl::wait_serving(&url, Duration::from_secs(30)).await.unwrap();
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

/// A redis-server of the test's own, which it may kill and restart on the same port.
pub struct PrivateRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = PrivateRedis { port, child: None };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
