//! A sandbox running the four CRS binaries as separate processes, each with its own database
//! (fresh SQLite files, or fresh PostgreSQL databases), sharing one Redis. The sandbox binds each
//! service's listeners itself and hands them over at start (socket activation), so no port is
//! chosen and then lost to another process, and a restarted service gets the same sockets.
//!
//! The binaries are the ones `cargo build --bins` put next to the test executable; `make test`
//! builds them first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crs_platform::auth::TokenIssuer;
use crs_testkit::{Listeners, TestDb};
use crsctl::demo::Endpoints;

pub mod otlp;

pub const SERVICES: [&str; 4] = ["intake", "triage", "legal-review", "notification"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn redis_url() -> String {
    crs_testkit::redis::shared_url()
}

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent().and_then(Path::parent).expect("target directory").to_path_buf()
}

/// The `crsctl` binary built beside the services (`cargo build --bins`, as for the services).
pub fn crsctl_bin() -> PathBuf {
    let bin = bin_dir().join("crsctl");
    assert!(bin.exists(), "{} is missing: run `cargo build --bins` first (make test does)", bin.display());
    bin
}

/// The `crs-bench` load generator built beside the services.
pub fn crs_bench_bin() -> PathBuf {
    let bin = bin_dir().join("crs-bench");
    assert!(bin.exists(), "{} is missing: run `cargo build --bins` first (make test does)", bin.display());
    bin
}

struct Process {
    env: HashMap<String, String>,
    listeners: Listeners,
    child: Option<Child>,
    log: PathBuf,
}

/// The four services, running.
pub struct Suite {
    pub backend: Backend,
    pub endpoints: Endpoints,
    /// Signs people's and agencies' tokens as the deployment's token issuer.
    pub issuer: TokenIssuer,
    dir: PathBuf,
    processes: HashMap<&'static str, Process>,
    databases: Vec<TestDb>,
    patience: Duration,
}

/// How to start a [`Suite`]: `Suite::options(backend).redis(url).set("intake", KEY, value).start()`.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    backend: Backend,
    redis: String,
    /// The PostgreSQL server the databases are created on (default: the tests' server).
    postgres_admin_url: String,
    patience: Duration,
    extra: Vec<(String, String, String)>,
}

impl SuiteOptions {
    /// The Redis every service uses (default: the shared one).
    pub fn redis(mut self, url: &str) -> Self {
        self.redis = url.to_owned();
        self
    }

    /// The PostgreSQL server the services' databases are created on, e.g. a
    /// [`crs_testkit::PrivatePostgres`] a test stops and starts.
    pub fn postgres(mut self, admin_url: &str) -> Self {
        self.postgres_admin_url = admin_url.to_owned();
        self
    }

    /// How long each service gets to report SERVING (default 60 s).
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Sets a `CRS_*` variable of one service.
    pub fn set(mut self, service: &str, key: &str, value: impl Into<String>) -> Self {
        self.extra.push((service.to_owned(), key.to_owned(), value.into()));
        self
    }

    pub async fn start(self) -> anyhow::Result<Suite> {
        Suite::start_full(self).await
    }
}

impl Suite {
    pub fn options(backend: Backend) -> SuiteOptions {
        SuiteOptions {
            backend,
            redis: redis_url(),
            postgres_admin_url: crs_testkit::db::postgres_admin_url(),
            patience: Duration::from_secs(60),
            extra: Vec::new(),
        }
    }

    /// Starts all four services and waits until each reports SERVING.
    pub async fn start(backend: Backend) -> anyhow::Result<Suite> {
        Self::options(backend).start().await
    }

    /// Starts the services with extra settings: `(service, CRS_* variable, value)`.
    pub async fn start_with(backend: Backend, extra: &[(&str, &str, String)]) -> anyhow::Result<Suite> {
        extra.iter().fold(Self::options(backend), |o, (svc, k, v)| o.set(svc, k, v.clone())).start().await
    }

    /// Starts the services against `redis`, giving each `patience` to report SERVING.
    pub async fn start_with_redis(backend: Backend, redis: &str, patience: Duration) -> anyhow::Result<Suite> {
        Self::options(backend).redis(redis).patience(patience).start().await
    }

    async fn start_full(options: SuiteOptions) -> anyhow::Result<Suite> {
        let SuiteOptions { backend, redis, postgres_admin_url, patience, extra } = options;
        let redis = redis.as_str();
        crs_platform::telemetry::init_for_tests();
        let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let dir = std::env::temp_dir().join(format!("crs-e2e-{run}"));
        std::fs::create_dir_all(&dir)?;
        // Intake seals agencies' callback secrets with it, notification opens them.
        let webhook_key = format!("e2e-webhook-secret-key-{run}-0123456789abcdef");
        let mut listeners: HashMap<&str, Listeners> = HashMap::new();
        for svc in SERVICES {
            listeners.insert(svc, Listeners::bind()?);
        }
        let ports: HashMap<&str, u16> = listeners.iter().map(|(s, l)| (*s, l.grpc_port())).collect();
        let url = |s: &str| format!("http://127.0.0.1:{}", ports[s]);

        let mut databases = Vec::new();
        let mut db_urls = HashMap::new();
        for svc in SERVICES {
            let db = TestDb::fresh_on(
                match backend {
                    Backend::Sqlite => crs_testkit::Backend::Sqlite,
                    Backend::Postgres => crs_testkit::Backend::Postgres,
                },
                &format!("e2e_{svc}"),
                &postgres_admin_url,
            )
            .await?;
            db_urls.insert(svc, db.url.clone());
            databases.push(db);
        }

        let mut processes = HashMap::new();
        for svc in SERVICES {
            let env: HashMap<String, String> = [
                ("CRS_SERVER__SHUTDOWN_GRACE_SECS", "2".into()),
                ("CRS_DATABASE__URL", db_urls[svc].clone()),
                ("CRS_REDIS__URL", redis.to_owned()),
                ("CRS_OUTBOX__POLL_INTERVAL_MS", "200".into()),
                ("CRS_OUTBOX__INITIAL_BACKOFF_MS", "100".into()),
                ("CRS_OUTBOX__MAX_BACKOFF_MS", "500".into()),
                ("CRS_OUTBOX__LEASE_MS", "3000".into()),
                ("CRS_OUTBOX__CALL_TIMEOUT_MS", "2000".into()),
                ("CRS_TELEMETRY__LOG_FILTER", "info".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain(crs_testkit::keys::auth_env(svc))
            .chain(match svc {
                "intake" => vec![
                    ("CRS_PEERS__TRIAGE".to_owned(), url("triage")),
                    ("CRS_PEERS__LEGAL_REVIEW".to_owned(), url("legal-review")),
                    ("CRS_PEERS__NOTIFICATION".to_owned(), url("notification")),
                    ("CRS_WEBHOOKS__SECRET_KEY".to_owned(), webhook_key.clone()),
                ],
                // The tests' webhook receivers listen on 127.0.0.1 over http: development mode.
                "notification" => vec![
                    ("CRS_WEBHOOKS__SECRET_KEY".to_owned(), webhook_key.clone()),
                    ("CRS_WEBHOOKS__TIMEOUT_MS".to_owned(), "2000".into()),
                    ("CRS_DELIVERY__DEVELOPMENT_MODE".to_owned(), "true".into()),
                    ("CRS_DELIVERY__INITIAL_BACKOFF_MS".to_owned(), "100".into()),
                    ("CRS_DELIVERY__MAX_BACKOFF_MS".to_owned(), "500".into()),
                    ("CRS_DELIVERY__POLL_INTERVAL_MS".to_owned(), "200".into()),
                    ("CRS_DELIVERY__BREAKER_COOLDOWN_MS".to_owned(), "1000".into()),
                ],
                "triage" => vec![("CRS_PEERS__LEGAL_REVIEW".to_owned(), url("legal-review"))],
                "legal-review" => vec![
                    ("CRS_PEERS__INTAKE".to_owned(), url("intake")),
                    ("CRS_PEERS__NOTIFICATION".to_owned(), url("notification")),
                    ("CRS_PEERS__TRIAGE".to_owned(), url("triage")),
                    // Each test its own timer index, so sweepers of different tests never meet.
                    ("CRS_TIMERS__KEY_PREFIX".to_owned(), format!("crs:e2e:{run}:timers")),
                ],
                _ => vec![],
            })
            .chain(extra.iter().filter(|(s, _, _)| s == svc).map(|(_, k, v)| (k.clone(), v.clone())))
            .collect();
            let listeners = listeners.remove(svc).expect("bound above");
            processes.insert(svc, Process { env, listeners, child: None, log: dir.join(format!("{svc}.log")) });
        }

        let mut suite = Suite {
            backend,
            endpoints: Endpoints {
                intake: url("intake"),
                triage: url("triage"),
                legal_review: url("legal-review"),
                notification: url("notification"),
            },
            issuer: crs_testkit::keys::issuer(),
            dir,
            processes,
            databases,
            patience,
        };
        for svc in SERVICES {
            suite.spawn(svc)?;
        }
        for svc in SERVICES {
            suite.wait_started(svc).await?;
        }
        Ok(suite)
    }

    /// Waits for `svc` to report SERVING, failing at once (with its log) if its process exits,
    /// e.g. on a configuration it refuses.
    async fn wait_started(&mut self, svc: &'static str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            let exited = match self.processes.get_mut(svc).and_then(|p| p.child.as_mut()) {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                anyhow::bail!("crs-{svc} exited at start ({status})\n--- log ---\n{}", self.log(svc));
            }
            if self.health(svc).await == Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "crs-{svc} did not become SERVING within {:?}\n--- log ---\n{}",
                    self.patience,
                    self.log(svc)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn spawn(&mut self, svc: &'static str) -> anyhow::Result<()> {
        let bin = bin_dir().join(format!("crs-{svc}"));
        anyhow::ensure!(bin.exists(), "{} is missing: run `cargo build --bins` first (make test does)", bin.display());
        let process = self.processes.get_mut(svc).expect("known service");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&process.log)?;
        let mut cmd = Command::new(bin);
        process.listeners.pass_to(&mut cmd)?;
        let child = cmd
            .envs(&process.env)
            .env_remove("CRS_CONFIG")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        process.child = Some(child);
        Ok(())
    }

    pub fn url(&self, svc: &str) -> &str {
        match svc {
            "intake" => &self.endpoints.intake,
            "triage" => &self.endpoints.triage,
            "legal-review" => &self.endpoints.legal_review,
            _ => &self.endpoints.notification,
        }
    }

    /// What `svc`'s health says right now (`grpc.health.v1` status), or `None` if it does not
    /// answer within two seconds.
    pub async fn health(&self, svc: &str) -> Option<i32> {
        health_of(self.url(svc)).await
    }

    pub async fn wait_serving(&self, svc: &str) -> anyhow::Result<()> {
        crsctl::wait_serving(self.url(svc), self.patience)
            .await
            .map_err(|e| anyhow::anyhow!("{svc}: {e}\n--- log ---\n{}", self.log(svc)))
    }

    /// Kills a service abruptly (SIGKILL): no drain, no flush, as a crash would.
    pub fn kill(&mut self, svc: &'static str) {
        if let Some(mut child) = self.processes.get_mut(svc).and_then(|p| p.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed service again on the same port and database, and waits for it.
    pub async fn restart(&mut self, svc: &'static str) -> anyhow::Result<()> {
        self.respawn(svc)?;
        self.wait_serving(svc).await
    }

    /// Starts a killed service again on the same port and database, without waiting for it.
    pub fn respawn(&mut self, svc: &'static str) -> anyhow::Result<()> {
        self.kill(svc);
        self.spawn(svc)
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    pub fn terminate(&mut self, svc: &'static str) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self
            .processes
            .get_mut(svc)
            .and_then(|p| p.child.take())
            .ok_or_else(|| anyhow::anyhow!("{svc} not running"))?;
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(child.wait()?)
    }

    pub fn log(&self, svc: &str) -> String {
        self.processes.get(svc).and_then(|p| std::fs::read_to_string(&p.log).ok()).unwrap_or_default()
    }

    /// Stops every service and drops the test's databases.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for svc in SERVICES {
            self.kill(svc);
        }
        for db in std::mem::take(&mut self.databases) {
            db.drop_now().await?;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        for process in self.processes.values_mut() {
            if let Some(mut child) = process.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// What the server at `url` says of its health (`grpc.health.v1` status), or `None` if it does
/// not answer within two seconds.
pub async fn health_of(url: &str) -> Option<i32> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    let reply = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .ok()?;
    Some(reply.into_inner().status)
}
