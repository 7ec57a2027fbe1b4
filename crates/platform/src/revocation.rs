//! Revoked tokens and subjects, the same in every service within about a second, failing closed.
//!
//! Intake's database is the truth. Intake publishes the list to Redis (a sorted set scored by
//! when each entry may be forgotten, a version, and a marker that the list is there) at start and
//! every few seconds; every service mirrors it into memory each second, so the per-call check is
//! a lookup. The mirror never lets a revocation go because Redis lost it: a list without the
//! marker, or with an older version than the one mirrored, only adds to what is known. A service
//! that has never loaded the list refuses people's calls (UNAVAILABLE) and reports NOT_SERVING.
//!
//! An entry revokes one token (by id, until the token would have expired, plus the leeway), or
//! every token of a subject issued up to a moment (a reviewer's lost laptop, a suspended agency).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::redis::RedisHandle;

const KEY: &str = "crs:auth:revoked";
const VERSION_KEY: &str = "crs:auth:revoked:version";
const MARKER_KEY: &str = "crs:auth:revoked:published";
/// How often each service re-reads the list: the bound on how long a revoked token still works.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// How long past its expiry a token entry is kept: beyond the verification leeway.
const KEEP_PAST_EXPIRY_SECS: i64 = crate::auth::LEEWAY_SECS as i64 + 60;
/// The longest a token may live, so a subject's revocation covers every token issued before it.
pub const MAX_TOKEN_TTL_SECS: i64 = 366 * 24 * 3600;

/// A revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// A token id, until the token would have expired (unix seconds).
    Token { token_id: String, expires_at: i64 },
    /// Every token of this subject (e.g. `agency:42`) issued at or before `before` (unix seconds;
    /// [`FOREVER`] for every token, a suspended agency's).
    Subject { subject: String, before: i64 },
}

/// A subject revocation that covers every token, whenever issued.
pub const FOREVER: i64 = i64::MAX / 4;

impl Revoked {
    fn member(&self) -> String {
        match self {
            Revoked::Token { token_id, .. } => format!("token:{token_id}"),
            Revoked::Subject { subject, before } => format!("subject:{subject}@{before}"),
        }
    }

    /// When the entry may be forgotten (unix seconds).
    fn forget_after(&self) -> i64 {
        match self {
            Revoked::Token { expires_at, .. } => expires_at + KEEP_PAST_EXPIRY_SECS,
            Revoked::Subject { before, .. } => before.saturating_add(MAX_TOKEN_TTL_SECS + KEEP_PAST_EXPIRY_SECS),
        }
    }

    fn parse(member: &str) -> Option<Revoked> {
        if let Some(id) = member.strip_prefix("token:") {
            return Some(Revoked::Token { token_id: id.to_owned(), expires_at: i64::MAX / 2 });
        }
        let rest = member.strip_prefix("subject:")?;
        let (subject, before) = rest.rsplit_once('@')?;
        Some(Revoked::Subject { subject: subject.to_owned(), before: before.parse().ok()? })
    }
}

#[derive(Debug, Default)]
struct Mirror {
    tokens: HashSet<String>,
    /// The latest `before` per subject.
    subjects: HashMap<String, i64>,
}

impl Mirror {
    fn add(&mut self, r: &Revoked) {
        match r {
            Revoked::Token { token_id, .. } => {
                self.tokens.insert(token_id.clone());
            }
            Revoked::Subject { subject, before } => {
                let entry = self.subjects.entry(subject.clone()).or_insert(*before);
                *entry = (*entry).max(*before);
            }
        }
    }
}

/// The in-memory mirror every server checks on each call.
#[derive(Clone, Debug, Default)]
pub struct Revocations {
    mirror: Arc<RwLock<Mirror>>,
    /// The version of the list last mirrored; 0 before any.
    version: Arc<AtomicI64>,
    loaded: Arc<AtomicBool>,
}

impl Revocations {
    /// Whether a token (by id), or its subject at the time it was issued, is revoked.
    pub fn is_revoked(&self, token_id: &str, subject: &str, issued_at: i64) -> bool {
        let m = self.mirror.read().expect("revocation lock");
        m.tokens.contains(token_id) || m.subjects.get(subject).is_some_and(|before| issued_at <= *before)
    }

    /// Whether the list has been loaded at least once (until then people's calls are refused).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::SeqCst)
    }

    /// Takes `revoked` as the complete list at `version` (intake, from its database).
    pub fn load(&self, revoked: &[Revoked], version: i64) {
        let mut m = Mirror::default();
        for r in revoked {
            m.add(r);
        }
        *self.mirror.write().expect("revocation lock") = m;
        self.version.store(version, Ordering::SeqCst);
        self.loaded.store(true, Ordering::SeqCst);
    }

    /// Adds revocations at once (in this process), before they are published.
    pub fn add(&self, revoked: &[Revoked]) {
        let mut m = self.mirror.write().expect("revocation lock");
        for r in revoked {
            m.add(r);
        }
    }

    /// Publishes revocations to Redis with the list's `version` (and to this process at once).
    pub async fn publish(&self, redis: &RedisHandle, revoked: &[Revoked], version: i64) -> anyhow::Result<()> {
        self.add(revoked);
        let mut conn = redis.get().await.ok_or_else(|| anyhow::anyhow!("redis unreachable"))?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        if !revoked.is_empty() {
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(KEY);
            for r in revoked {
                zadd.arg(r.forget_after()).arg(r.member());
            }
            pipe.add_command(zadd).ignore();
        }
        // The version only moves forward, whoever publishes.
        pipe.cmd("EVAL")
            .arg("local v = tonumber(redis.call('GET', KEYS[1]) or '0') if tonumber(ARGV[1]) > v then redis.call('SET', KEYS[1], ARGV[1]) end return 0")
            .arg(1)
            .arg(VERSION_KEY)
            .arg(version)
            .ignore()
            .cmd("SET")
            .arg(MARKER_KEY)
            .arg(1)
            .ignore();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Mirrors what Redis holds now. A list Redis lost (no marker), or one older than the
    /// mirror, only adds to the mirror; it never lifts a revocation.
    pub async fn refresh(&self, redis: &RedisHandle) -> anyhow::Result<()> {
        let mut conn = redis.get().await.ok_or_else(|| anyhow::anyhow!("redis unreachable"))?;
        let now = chrono::Utc::now().timestamp();
        let (published, version, members): (Option<i64>, Option<i64>, Vec<String>) = redis::pipe()
            .atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(KEY)
            .arg("-inf")
            .arg(format!("({now}"))
            .ignore()
            .cmd("GET")
            .arg(MARKER_KEY)
            .cmd("GET")
            .arg(VERSION_KEY)
            .cmd("ZRANGEBYSCORE")
            .arg(KEY)
            .arg(now)
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        let entries: Vec<Revoked> = members.iter().filter_map(|m| Revoked::parse(m)).collect();
        let version = version.unwrap_or(0);
        if published.is_some() && version >= self.version.load(Ordering::SeqCst) {
            self.load(&entries, version);
        } else {
            // Redis lost the list, or holds an older one: keep what is known, add what is there.
            self.add(&entries);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_revocation_covers_the_tokens_issued_before_it() {
        let r = Revocations::default();
        assert!(!r.is_loaded());
        r.load(&[Revoked::Subject { subject: "reviewer:ana".into(), before: 1_000 }], 5);
        assert!(r.is_loaded());
        assert!(r.is_revoked("t1", "reviewer:ana", 999));
        assert!(r.is_revoked("t1", "reviewer:ana", 1_000));
        assert!(!r.is_revoked("t2", "reviewer:ana", 1_001), "a token issued afterwards works");
        assert!(!r.is_revoked("t1", "reviewer:bob", 10));
        r.add(&[Revoked::Token { token_id: "t9".into(), expires_at: 5_000 }]);
        assert!(r.is_revoked("t9", "agency:1", 4_000));
    }

    #[test]
    fn members_round_trip() {
        for r in [
            Revoked::Subject { subject: "agency:018f-1".into(), before: 1_764_000_000 },
            Revoked::Token { token_id: "abc".into(), expires_at: i64::MAX / 2 },
        ] {
            assert_eq!(Revoked::parse(&r.member()), Some(r));
        }
        assert_eq!(Revoked::parse("junk"), None);
    }
}
