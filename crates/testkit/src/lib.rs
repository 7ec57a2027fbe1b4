//! What CRS's tests share, so each test starts what it needs in a few lines:
//!
//! - [`db`]: a fresh SQLite file or PostgreSQL database per test, dropped afterwards;
//! - [`keys`]: one key set for the process's tests, and tokens for any principal;
//! - [`postgres`]: a PostgreSQL server of a test's own, to stop and start again;
//! - [`redis`]: the machine's Redis, or a private `redis-server` a test may kill and restart;
//! - [`service`]: any CRS service in process on port 0, on its own database, with tokens for
//!   any principal;
//! - [`smtp`]: a real SMTP server that keeps the messages it is sent;
//! - [`pki`]: a CA and certificates made in the test, and the files of a `[tls]` section;
//! - [`eventually`]: waiting for something that happens asynchronously, with a bound;
//! - [`schema`]: the check that a service's migrations produce what its entities expect.

#![forbid(unsafe_code)]

pub mod db;
pub mod keys;
pub mod pki;
pub mod postgres;
pub mod redis;
pub mod schema;
pub mod service;
pub mod smtp;

use std::future::Future;
use std::time::Duration;

pub use db::{Backend, TestDb};
pub use postgres::PrivatePostgres;
pub use redis::PrivateRedis;
pub use service::{Running, ServiceEnv};
pub use smtp::SmtpSink;

/// Calls `check` until it returns `Some`, at most for `within`; panics naming `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the gRPC server at `url` reports SERVING on `grpc.health.v1`.
pub async fn wait_serving(url: &str, within: Duration) -> anyhow::Result<()> {
    wait_serving_with(url, None, within).await
}

/// [`wait_serving`] for an `https://` server, asked over TLS with `tls`.
pub async fn wait_serving_with(
    url: &str,
    tls: Option<&crs_platform::tls::ClientTls>,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::from("not reachable");
    while tokio::time::Instant::now() < deadline {
        if let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.to_owned())
            && let Ok(channel) =
                crs_platform::peers::channel(&endpoint.connect_timeout(Duration::from_millis(500)), tls)
        {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            match health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await {
                Ok(r)
                    if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 =>
                {
                    return Ok(());
                }
                Ok(r) => last = format!("status {}", r.get_ref().status),
                Err(e) => last = e.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{url} did not become SERVING within {within:?} (last: {last})")
}

/// A service binary's listeners, bound by the test before the process starts (so no other
/// process can take the port between choosing and using it) and handed over by systemd socket
/// activation (`LISTEN_FDS`): the gRPC listener, then the admin one. The test keeps them, so a
/// killed process restarts on the very same sockets.
#[derive(Debug)]
pub struct Listeners {
    pub grpc: std::net::TcpListener,
    pub admin: std::net::TcpListener,
}

impl Listeners {
    pub fn bind() -> std::io::Result<Listeners> {
        Ok(Listeners {
            grpc: std::net::TcpListener::bind("127.0.0.1:0")?,
            admin: std::net::TcpListener::bind("127.0.0.1:0")?,
        })
    }

    pub fn grpc_port(&self) -> u16 {
        self.grpc.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn admin_port(&self) -> u16 {
        self.admin.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Hands copies of both listeners to `cmd` as fds 3 and 4.
    pub fn pass_to(&self, cmd: &mut std::process::Command) -> anyhow::Result<()> {
        use command_fds::{CommandFdExt, FdMapping};
        cmd.env("LISTEN_FDS", "2").env_remove("LISTEN_PID").env_remove("LISTEN_FDS_FIRST_FD");
        cmd.fd_mappings(vec![
            FdMapping { parent_fd: self.grpc.try_clone()?.into(), child_fd: 3 },
            FdMapping { parent_fd: self.admin.try_clone()?.into(), child_fd: 4 },
        ])
        .map_err(|e| anyhow::anyhow!("cannot hand the listeners over: {e:?}"))?;
        Ok(())
    }
}
