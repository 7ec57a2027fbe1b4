//! Rate limits for government requests: GCRA (the generic cell rate algorithm) in one Lua
//! script on Redis's clock, several limits decided atomically per call.
//!
//! Each limited subject (an agency, a jurisdiction, everything) has one Redis key holding its
//! theoretical arrival time, expiring when its bucket is full again. A call names every limit
//! that applies; the script admits it only if all of them have room, and a denied call consumes
//! none of them. The script is loaded once and called by its SHA (re-loaded if Redis restarted).
//!
//! Concurrent calls are coalesced: a dispatcher takes every decision waiting at that moment into
//! one script call (each decision still evaluated in order, all or nothing on its own), and keeps
//! several such calls in flight on the multiplexed connection. A lone caller is sent at once, as
//! a batch of one, so batching adds no waiting.
//!
//! When Redis cannot be reached the same rules run in process (per replica) until it answers
//! again, so requests keep flowing under a local bound and nothing is refused for Redis's sake.
//!
//! An allowed call that in the end does nothing (what it was allowed for was never stored)
//! gives back what it took: a [`Charge`] held for it refunds the limits when dropped, unless
//! the caller keeps it.

#![forbid(unsafe_code)]

mod local;
pub mod metrics;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};

use crs_platform::redis::RedisHandle;
use serde::Deserialize;

/// One limit: `rate_per_sec` sustained, with up to `burst` at once. In configuration it is
/// written `{ rate_per_sec = 5.0, burst = 50 }` or, for a daily quota, `{ per_day = 5000 }`;
/// either may add `shadow = true`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "LimitSpec")]
pub struct Limit {
    pub rate_per_sec: f64,
    pub burst: u32,
    /// Count and log what it would deny, but never deny.
    pub shadow: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitSpec {
    rate_per_sec: Option<f64>,
    per_day: Option<u32>,
    burst: Option<u32>,
    #[serde(default)]
    shadow: bool,
}

impl TryFrom<LimitSpec> for Limit {
    type Error = String;

    fn try_from(spec: LimitSpec) -> Result<Limit, String> {
        let limit = match (spec.rate_per_sec, spec.per_day, spec.burst) {
            (Some(rate), None, Some(burst)) => Limit { rate_per_sec: rate, burst, shadow: spec.shadow },
            (None, Some(n), burst) => Limit { burst: burst.unwrap_or(n), ..Limit::per_day(n) },
            _ => return Err("a limit is `{ rate_per_sec, burst }` or `{ per_day }`".into()),
        };
        let limit = Limit { shadow: spec.shadow, ..limit };
        limit.check()?;
        Ok(limit)
    }
}

impl Limit {
    /// A quota of `n` per day (a bucket of `n` that refills over a day).
    pub fn per_day(n: u32) -> Limit {
        Limit { rate_per_sec: f64::from(n) / 86_400.0, burst: n, shadow: false }
    }

    /// Rejects limits that cannot work: no rate, or no room for even one request.
    pub fn check(&self) -> Result<(), String> {
        if !(self.rate_per_sec.is_finite() && self.rate_per_sec > 0.0 && self.rate_per_sec <= 1e6) {
            return Err(format!("rate must be above 0 and at most 1000000 per second, got {}", self.rate_per_sec));
        }
        if self.burst == 0 {
            return Err("burst must be at least 1".into());
        }
        Ok(())
    }

    fn interval_us(&self) -> f64 {
        1_000_000.0 / self.rate_per_sec
    }
}

/// A limit applied to one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule's name in metrics and errors, e.g. `agency`, `jurisdiction`.
    pub name: String,
    /// The limited subject, e.g. `agency:42`; the Redis key is `<prefix>:<subject>:<name>`.
    pub subject: String,
    pub limit: Limit,
}

/// What one rule said about a call.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleOutcome {
    pub name: String,
    pub subject: String,
    pub limit: Limit,
    /// The rule had no room (for a shadow rule: would have denied).
    pub exceeded: bool,
    pub remaining: u32,
    pub retry_after: Duration,
    pub reset_after: Duration,
}

/// Where a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Redis,
    /// The in-process fallback, while Redis is unreachable.
    Local,
}

/// The answer for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Index of the tightest rule: the one that denied, or the one with the least room left.
    pub tightest: usize,
    pub rules: Vec<RuleOutcome>,
    pub source: Source,
}

impl Decision {
    pub fn tightest(&self) -> &RuleOutcome {
        &self.rules[self.tightest]
    }
}

/// How long to keep deciding locally after Redis failed, before trying it again.
const FALLBACK_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Most decisions in one script call.
const MAX_BATCH: usize = 128;
/// Script calls in flight at once on the connection.
const MAX_IN_FLIGHT: usize = 4;

/// A decision waiting for the dispatcher.
struct Pending {
    rules: Vec<Rule>,
    cost: u32,
    reply: oneshot::Sender<anyhow::Result<Decision>>,
}

/// Decides calls against rules, in Redis or, while it is away, in process.
pub struct Limiter {
    redis: RedisHandle,
    script: Arc<redis::Script>,
    /// Gives back allowed calls' consumption (`refund.lua`).
    refund_script: Arc<redis::Script>,
    prefix: Arc<str>,
    local: local::LocalGcra,
    /// Until when decisions stay local (Redis failed recently).
    fallback_until: Mutex<Option<Instant>>,
    /// The dispatcher's queue, started with the first call (it needs the runtime).
    queue: OnceLock<mpsc::UnboundedSender<Pending>>,
    /// Refunds waiting to be sent, many to a script call (started with the first refund).
    refunds: OnceLock<mpsc::UnboundedSender<PendingRefund>>,
}

/// A refund waiting for the refund dispatcher: each state key and the microseconds to give back.
struct PendingRefund {
    keys: Vec<(String, f64)>,
    reply: oneshot::Sender<anyhow::Result<()>>,
}

impl Limiter {
    pub fn new(redis: RedisHandle, prefix: &str) -> Limiter {
        Limiter {
            redis,
            script: Arc::new(redis::Script::new(include_str!("gcra.lua"))),
            refund_script: Arc::new(redis::Script::new(include_str!("refund.lua"))),
            prefix: prefix.into(),
            local: local::LocalGcra::default(),
            fallback_until: Mutex::new(None),
            queue: OnceLock::new(),
            refunds: OnceLock::new(),
        }
    }

    /// The script's SHA1, as `EVALSHA` names it.
    pub fn script_sha(&self) -> &str {
        self.script.get_hash()
    }

    /// Decides whether a call costing `cost` may pass every rule; records the decision's metrics.
    pub async fn check(&self, rules: &[Rule], cost: u32) -> Decision {
        assert!(!rules.is_empty(), "a call is checked against at least one rule");
        let decision = match self.use_redis() {
            true => match self.check_in_redis(rules, cost).await {
                Ok(d) => {
                    self.redis_answered();
                    d
                }
                Err(e) => {
                    self.redis_failed(&e);
                    self.local.check(rules, cost)
                }
            },
            false => self.local.check(rules, cost),
        };
        metrics::record(&decision);
        decision
    }

    /// Gives back what an allowed call took from its limits, because it did nothing in the
    /// end. Only the limits it consumed are refunded (a shadow limit it exceeded took nothing),
    /// each no further than a full bucket, where the decision was made. If Redis cannot be
    /// reached the charge stays: the limit errs toward holding callers back, never the reverse.
    pub async fn refund(&self, decision: &Decision, cost: u32) {
        let consumed: Vec<&RuleOutcome> = decision.rules.iter().filter(|r| !r.exceeded).collect();
        if !decision.allowed || consumed.is_empty() || cost == 0 {
            return;
        }
        match decision.source {
            Source::Local => self.local.refund(&consumed, cost),
            Source::Redis => {
                if let Err(e) = self.refund_in_redis(&consumed, cost).await {
                    tracing::warn!(error = %e, "could not give an unused rate-limit charge back; it stays");
                    return;
                }
            }
        }
        metrics::record_refund(&consumed);
    }

    /// Sends the refund with every other waiting then: under overload callers give up many
    /// submissions at once, and each would otherwise be a round trip of its own.
    async fn refund_in_redis(&self, consumed: &[&RuleOutcome], cost: u32) -> anyhow::Result<()> {
        let queue = self.refunds.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(dispatch_refunds(self.redis.clone(), self.refund_script.clone(), rx));
            tx
        });
        let keys = consumed
            .iter()
            .map(|r| (state_key(&self.prefix, &r.subject, &r.name), r.limit.interval_us() * f64::from(cost)))
            .collect();
        let (reply, answer) = oneshot::channel();
        queue.send(PendingRefund { keys, reply }).map_err(|_| anyhow::anyhow!("the refund dispatcher stopped"))?;
        answer.await.map_err(|_| anyhow::anyhow!("the refund dispatcher dropped a refund"))?
    }

    fn use_redis(&self) -> bool {
        let until = *self.fallback_until.lock().expect("fallback lock");
        until.is_none_or(|t| Instant::now() >= t)
    }

    fn redis_answered(&self) {
        let mut until = self.fallback_until.lock().expect("fallback lock");
        if until.take().is_some() {
            metrics::FALLBACK_ACTIVE.set(0);
            tracing::info!("redis answers again; rate limits decided in redis");
        }
    }

    fn redis_failed(&self, error: &anyhow::Error) {
        let mut until = self.fallback_until.lock().expect("fallback lock");
        if until.is_none() {
            metrics::FALLBACK_ACTIVE.set(1);
            metrics::FALLBACK_ENTERED.inc();
            tracing::warn!(error = %error, "redis unreachable; rate limits decided in process until it answers");
        }
        *until = Some(Instant::now() + FALLBACK_PROBE_INTERVAL);
    }

    async fn check_in_redis(&self, rules: &[Rule], cost: u32) -> anyhow::Result<Decision> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(dispatch(self.redis.clone(), self.script.clone(), self.prefix.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        queue
            .send(Pending { rules: rules.to_vec(), cost, reply })
            .map_err(|_| anyhow::anyhow!("the rate-limit dispatcher stopped"))?;
        answer.await.map_err(|_| anyhow::anyhow!("the rate-limit dispatcher dropped a call"))?
    }
}

/// Takes every waiting decision into one script call, with up to `MAX_IN_FLIGHT` calls in flight.
async fn dispatch(
    redis: RedisHandle,
    script: Arc<redis::Script>,
    prefix: Arc<str>,
    mut queue: mpsc::UnboundedReceiver<Pending>,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        // Wait for a free slot first: while every slot is busy, more decisions gather.
        let permit = in_flight.clone().acquire_owned().await.expect("semaphore never closes");
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let (redis, script, prefix) = (redis.clone(), script.clone(), prefix.clone());
        tokio::spawn(async move {
            match run_batch(&redis, &script, &prefix, &batch).await {
                Ok(decisions) => {
                    for (p, d) in batch.into_iter().zip(decisions) {
                        let _ = p.reply.send(Ok(d));
                    }
                }
                Err(e) => {
                    let message = format!("{e:#}");
                    for p in batch {
                        let _ = p.reply.send(Err(anyhow::anyhow!(message.clone())));
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn run_batch(
    redis: &RedisHandle,
    script: &redis::Script,
    prefix: &str,
    batch: &[Pending],
) -> anyhow::Result<Vec<Decision>> {
    let mut conn = redis.get().await.ok_or_else(|| anyhow::anyhow!("redis unreachable"))?;
    let mut invocation = script.prepare_invoke();
    invocation.arg(batch.len());
    for p in batch {
        invocation.arg(p.cost).arg(p.rules.len());
        for rule in &p.rules {
            invocation.key(state_key(prefix, &rule.subject, &rule.name));
            invocation.arg(rule.limit.interval_us()).arg(rule.limit.burst).arg(if rule.limit.shadow {
                "1"
            } else {
                "0"
            });
        }
    }
    let reply: Vec<i64> = invocation.invoke_async(&mut conn).await?;
    let mut decisions = Vec::with_capacity(batch.len());
    let mut at = 0;
    for p in batch {
        let len = 3 + 4 * p.rules.len();
        anyhow::ensure!(reply.len() >= at + len, "short script reply");
        decisions.push(parse_reply(&p.rules, &reply[at..at + len], Source::Redis)?);
        at += len;
    }
    Ok(decisions)
}

/// Takes every waiting refund into one script call, one call at a time.
async fn dispatch_refunds(
    redis: RedisHandle,
    script: Arc<redis::Script>,
    mut queue: mpsc::UnboundedReceiver<PendingRefund>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let sent = async {
            let mut conn = redis.get().await.ok_or_else(|| anyhow::anyhow!("redis unreachable"))?;
            let mut invocation = script.prepare_invoke();
            for (key, micros) in batch.iter().flat_map(|r| &r.keys) {
                invocation.key(key).arg(*micros);
            }
            let _given: i64 = invocation.invoke_async(&mut conn).await?;
            anyhow::Ok(())
        }
        .await
        .map_err(|e| format!("{e:#}"));
        for r in batch {
            let _ = r.reply.send(sent.clone().map_err(|e| anyhow::anyhow!(e)));
        }
    }
}

/// The Redis key holding one limit's state for one subject.
fn state_key(prefix: &str, subject: &str, name: &str) -> String {
    format!("{prefix}:{subject}:{name}")
}

/// An allowed call's hold on its limits: given back when dropped, unless [`Charge::keep`] says
/// the call did what it was allowed to do. Held across the work the limit pays for, it refunds
/// on every way that work can end undone: an error, a caller that went away (its task dropped),
/// or a request found to be a retry of one already counted.
pub struct Charge {
    limiter: Arc<Limiter>,
    /// What was taken, while it is still to be given back.
    decision: Option<Decision>,
    cost: u32,
}

impl Charge {
    /// The hold of a call decided by `decision` at `cost`; a denied call holds nothing.
    pub fn new(limiter: Arc<Limiter>, decision: &Decision, cost: u32) -> Charge {
        Charge { limiter, decision: decision.allowed.then(|| decision.clone()), cost }
    }

    /// The call did what it was allowed to: what it took stays taken.
    pub fn keep(mut self) {
        self.decision = None;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let Some(decision) = self.decision.take() else { return };
        // Often dropped with a cancelled call's task: the refund runs as a task of its own.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let (limiter, cost) = (self.limiter.clone(), self.cost);
                runtime.spawn(async move { limiter.refund(&decision, cost).await });
            }
            Err(_) => tracing::debug!("no runtime left to give an unused rate-limit charge back on; it stays"),
        }
    }
}

fn parse_reply(rules: &[Rule], reply: &[i64], source: Source) -> anyhow::Result<Decision> {
    anyhow::ensure!(reply.len() == 3 + 4 * rules.len(), "unexpected script reply of {} values", reply.len());
    let us = |v: i64| Duration::from_micros(v.max(0) as u64);
    let outcomes = rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let r = &reply[3 + 4 * i..7 + 4 * i];
            RuleOutcome {
                name: rule.name.clone(),
                subject: rule.subject.clone(),
                limit: rule.limit.clone(),
                exceeded: r[0] == 1,
                remaining: r[1].clamp(0, i64::from(u32::MAX)) as u32,
                retry_after: us(r[2]),
                reset_after: us(r[3]),
            }
        })
        .collect();
    Ok(Decision { allowed: reply[0] == 1, tightest: (reply[1] - 1).max(0) as usize, rules: outcomes, source })
}
