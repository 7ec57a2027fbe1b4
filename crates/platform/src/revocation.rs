//! Revoked tokens and subjects, the same in every service within about a second.
//!
//! Redis carries the list (`crs:auth:revoked`, a sorted set scored by when each entry may be
//! forgotten); every service mirrors it into memory each second, so the per-call check is a
//! lookup and keeps working with the last known list while Redis is away. Intake's database
//! holds the durable record and re-publishes it, so a Redis that restarted empty is refilled.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::redis::RedisHandle;

const KEY: &str = "crs:auth:revoked";
/// How often each service re-reads the list: the bound on how long a revoked token still works.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// A revocation: one token, or every token of a subject (a suspended agency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// A token id, until the token would have expired (unix seconds).
    Token { token_id: String, expires_at: i64 },
    /// Every token naming this subject (e.g. `agency:42`), until reinstated.
    Subject(String),
}

impl Revoked {
    fn member(&self) -> String {
        match self {
            Revoked::Token { token_id, .. } => format!("token:{token_id}"),
            Revoked::Subject(s) => format!("subject:{s}"),
        }
    }

    fn score(&self) -> f64 {
        match self {
            Revoked::Token { expires_at, .. } => *expires_at as f64,
            Revoked::Subject(_) => f64::INFINITY,
        }
    }
}

/// The in-memory mirror every server checks on each call.
#[derive(Clone, Debug, Default)]
pub struct Revocations {
    entries: Arc<RwLock<HashSet<String>>>,
}

impl Revocations {
    /// Whether a token (by id) or its subject is revoked.
    pub fn is_revoked(&self, token_id: &str, subject: &str) -> bool {
        let entries = self.entries.read().expect("revocation lock");
        entries.contains(&format!("token:{token_id}")) || entries.contains(&format!("subject:{subject}"))
    }

    /// Publishes revocations to Redis (and to this process at once).
    pub async fn publish(&self, redis: &RedisHandle, revoked: &[Revoked]) -> anyhow::Result<()> {
        {
            let mut entries = self.entries.write().expect("revocation lock");
            entries.extend(revoked.iter().map(Revoked::member));
        }
        if revoked.is_empty() {
            return Ok(());
        }
        let mut conn = redis.get().await.ok_or_else(|| anyhow::anyhow!("redis unreachable"))?;
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(KEY);
        for r in revoked {
            cmd.arg(r.score()).arg(r.member());
        }
        cmd.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Lifts a subject's revocation (a reinstated agency).
    pub async fn reinstate(&self, redis: &RedisHandle, subject: &str) -> anyhow::Result<()> {
        let member = Revoked::Subject(subject.to_owned()).member();
        self.entries.write().expect("revocation lock").remove(&member);
        let mut conn = redis.get().await.ok_or_else(|| anyhow::anyhow!("redis unreachable"))?;
        redis::cmd("ZREM").arg(KEY).arg(member).query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Replaces the mirror with what Redis holds now, dropping expired entries.
    pub async fn refresh(&self, redis: &RedisHandle) -> anyhow::Result<()> {
        let mut conn = redis.get().await.ok_or_else(|| anyhow::anyhow!("redis unreachable"))?;
        let now = chrono::Utc::now().timestamp();
        let (members,): (Vec<String>,) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(KEY)
            .arg("-inf")
            .arg(format!("({now}"))
            .ignore()
            .cmd("ZRANGEBYSCORE")
            .arg(KEY)
            .arg(now)
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        *self.entries.write().expect("revocation lock") = members.into_iter().collect();
        Ok(())
    }

    /// Keeps the mirror current until `shutdown`. While Redis is away the last list stays in force.
    pub fn spawn_refresh(&self, redis: RedisHandle, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                match this.refresh(&redis).await {
                    Ok(()) if failing => {
                        tracing::info!("revocation list refreshed again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "cannot refresh the revocation list; keeping the last one");
                        failing = true;
                    }
                    Err(_) => {}
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(REFRESH_INTERVAL) => {},
                }
            }
        })
    }
}
