//! Redis for tests: the machine's (`REDIS_URL`, default `redis://127.0.0.1:6379`), or a private
//! `redis-server` of the test's own that it may kill, restart empty, or leave down.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The shared Redis the tests use when they do not need their own.
pub fn shared_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Marks the shared Redis as holding a published revocation list, as intake does when it starts,
/// so a service tested without an intake beside it serves people (a service that has never seen
/// the list refuses them). Adds no revocation and never lowers the list's version.
pub async fn mark_revocations_published() {
    let redis = crs_platform::redis::RedisHandle::new(&shared_url()).expect("a Redis URL");
    crs_platform::revocation::Revocations::default()
        .publish(&redis, &[], 0)
        .await
        .expect("the shared Redis answers (is redis-server running?)");
}

/// A redis-server of the test's own, which it may kill and restart on the same port.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one on a free port; it keeps nothing on disk.
    pub fn start() -> PrivateRedis {
        for _ in 0..20 {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
            let mut r = PrivateRedis { port, child: None };
            if r.try_restart() {
                return r;
            }
        }
        panic!("cannot start a private redis-server (is it installed?)");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Restarts it on the same port, empty.
    pub fn restart(&mut self) {
        assert!(self.try_restart(), "redis-server did not come back on port {}", self.port);
    }

    fn try_restart(&mut self) -> bool {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        for _ in 0..200 {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false; // it exited: the port was taken
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Stops it abruptly; it stays down until [`PrivateRedis::restart`].
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
