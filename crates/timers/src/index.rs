//! The Redis index that fires: one sorted set of due entries (one per running clock, its next
//! threshold, scored by due time in ms), a lease set for claimed entries, and a marker key that
//! says the index was built (its absence means Redis lost its data and the index is rebuilt).

use crate::{Clock, Member};
use crs_platform::redis::RedisHandle;

/// What one claim returned.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    /// The index has been built since Redis last lost its data.
    pub built: bool,
    /// Entries whose lease ended and were put back to fire again.
    pub refired: u64,
    /// When the next entry is due or the next lease ends (ms), if any.
    pub next_wake: Option<i64>,
    pub members: Vec<String>,
}

#[derive(Clone)]
pub struct TimerIndex {
    redis: RedisHandle,
    due: String,
    leased: String,
    built: String,
    claim: std::sync::Arc<redis::Script>,
}

impl TimerIndex {
    pub fn new(redis: RedisHandle, prefix: &str) -> TimerIndex {
        TimerIndex {
            redis,
            due: format!("{prefix}:due"),
            leased: format!("{prefix}:leased"),
            built: format!("{prefix}:built"),
            claim: std::sync::Arc::new(redis::Script::new(include_str!("claim.lua"))),
        }
    }

    async fn conn(&self) -> anyhow::Result<redis::aio::ConnectionManager> {
        self.redis.get().await.ok_or_else(|| anyhow::anyhow!("redis unreachable"))
    }

    /// Claims up to `max` due entries for `lease_ms`.
    pub async fn claim(&self, now: i64, lease_ms: i64, max: usize) -> anyhow::Result<Claim> {
        let mut conn = self.conn().await?;
        let reply: Vec<redis::Value> = self
            .claim
            .key(&self.due)
            .key(&self.leased)
            .key(&self.built)
            .arg(now)
            .arg(lease_ms)
            .arg(max)
            .invoke_async(&mut conn)
            .await?;
        let int = |v: &redis::Value| -> i64 { redis::from_redis_value_ref::<i64>(v).unwrap_or(-1) };
        anyhow::ensure!(reply.len() >= 3, "short claim reply");
        let wake = int(&reply[2]);
        Ok(Claim {
            built: int(&reply[0]) == 1,
            refired: int(&reply[1]).max(0) as u64,
            next_wake: (wake >= 0).then_some(wake),
            members: reply[3..].iter().filter_map(|v| redis::from_redis_value_ref::<String>(v).ok()).collect(),
        })
    }

    /// Releases claimed entries that were handled (fired, or found stale).
    pub async fn ack(&self, members: &[String]) -> anyhow::Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        for chunk in members.chunks(1000) {
            redis::cmd("ZREM").arg(&self.leased).arg(chunk).query_async::<()>(&mut conn).await?;
        }
        Ok(())
    }

    /// Points the index at `after`'s next threshold, dropping `before`'s entry.
    pub async fn sync(&self, before: Option<&Clock>, after: &Clock) -> anyhow::Result<()> {
        self.sync_many(&[(before, after)]).await
    }

    /// [`TimerIndex::sync`] for many clocks, in one pipeline.
    pub async fn sync_many(&self, changes: &[(Option<&Clock>, &Clock)]) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        let mut commands = 0;
        for (before, after) in changes {
            let old = before.and_then(Clock::member).map(|m| m.encode());
            let new = after.next_due().map(|(i, due)| {
                (due, Member { case_id: after.case_id.clone(), generation: after.generation, index: i }.encode())
            });
            if old.as_ref() == new.as_ref().map(|(_, m)| m) {
                continue;
            }
            if let Some(old) = old {
                pipe.cmd("ZREM").arg(&self.due).arg(old).ignore();
                commands += 1;
            }
            if let Some((due, member)) = new {
                pipe.cmd("ZADD").arg(&self.due).arg(due).arg(member).ignore();
                commands += 1;
            }
        }
        if commands > 0 {
            let mut conn = self.conn().await?;
            pipe.query_async::<()>(&mut conn).await?;
        }
        Ok(())
    }

    /// Arms many clocks' next thresholds at once, pipelined.
    pub async fn arm_many(&self, clocks: &[Clock]) -> anyhow::Result<usize> {
        let mut conn = self.conn().await?;
        let mut armed = 0;
        let mut pipe = redis::pipe();
        let mut pending = 0;
        for chunk in clocks.chunks(500) {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(&self.due);
            let mut any = false;
            for c in chunk {
                if let Some((i, due)) = c.next_due() {
                    cmd.arg(due)
                        .arg(Member { case_id: c.case_id.clone(), generation: c.generation, index: i }.encode());
                    armed += 1;
                    any = true;
                }
            }
            if any {
                pipe.add_command(cmd).ignore();
                pending += 1;
            }
            if pending == 20 {
                pipe.query_async::<()>(&mut conn).await?;
                pipe = redis::pipe();
                pending = 0;
            }
        }
        if pending > 0 {
            pipe.query_async::<()>(&mut conn).await?;
        }
        Ok(armed)
    }

    /// Says the index is complete (after a rebuild).
    pub async fn mark_built(&self) -> anyhow::Result<()> {
        let mut conn = self.conn().await?;
        redis::cmd("SET").arg(&self.built).arg(1).query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Entries armed and not yet claimed.
    pub async fn armed(&self) -> anyhow::Result<u64> {
        let mut conn = self.conn().await?;
        Ok(redis::cmd("ZCARD").arg(&self.due).query_async(&mut conn).await?)
    }
}
