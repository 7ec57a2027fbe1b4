//! The sweeper: claims due entries, fires them, and keeps the index whole.
//!
//! Each claimed batch fires in one database transaction: every clock is locked and checked
//! against its entry (same generation, same next threshold, still running), the firing is
//! recorded (unique per case, threshold and generation), the handler acts (e.g. writes outbox
//! rows), and the clock moves to its next threshold. Only after the commit are the entries
//! released and the next thresholds armed. A sweeper that dies after claiming leaves its entries
//! to expire from the lease set and fire again elsewhere; the stale ones are recognised and
//! dropped, so nothing fires twice.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::index::TimerIndex;
use crate::store::ClockStore;
use crate::{Clock, Firing, Member, metrics};

/// Acts on a firing, inside the transaction that records it.
#[async_trait::async_trait]
pub trait FiringHandler: Send + Sync + 'static {
    async fn on_firing(&self, txn: &DatabaseTransaction, firing: &Firing) -> anyhow::Result<()>;
}

#[derive(Debug, Clone)]
pub struct SweeperConfig {
    /// Most entries claimed and fired together.
    pub batch: usize,
    /// How long a claim is held before another sweeper may fire it.
    pub lease_ms: i64,
    /// Longest sleep between claims when nothing is due sooner.
    pub max_sleep_ms: u64,
    /// How often the database is also checked for clocks the index missed.
    pub safety_scan_ms: u64,
    /// Only clocks overdue by this much are taken by the safety scan (the index fires the rest).
    pub safety_grace_ms: i64,
}

impl Default for SweeperConfig {
    fn default() -> Self {
        SweeperConfig {
            batch: 256,
            lease_ms: 30_000,
            max_sleep_ms: 1_000,
            safety_scan_ms: 5_000,
            safety_grace_ms: 2_000,
        }
    }
}

/// Which path found a firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Redis,
    Database,
}

#[derive(Clone)]
pub struct Sweeper {
    db: DatabaseConnection,
    index: TimerIndex,
    handler: Arc<dyn FiringHandler>,
    cfg: SweeperConfig,
    wake: Arc<Notify>,
}

fn now_ms() -> i64 {
    crs_platform::time::now_millis()
}

impl Sweeper {
    pub fn new(db: DatabaseConnection, index: TimerIndex, handler: Arc<dyn FiringHandler>, cfg: SweeperConfig) -> Self {
        Sweeper { db, index, handler, cfg, wake: Arc::new(Notify::new()) }
    }

    /// Call after arming a clock that may be due sooner than the sweeper's next wake.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn index(&self) -> &TimerIndex {
        &self.index
    }

    /// Sweeps until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut redis_down = false;
        let mut last_scan = tokio::time::Instant::now();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let now = now_ms();
            let mut sleep = Duration::from_millis(self.cfg.max_sleep_ms);
            let claim =
                tokio::time::timeout(Duration::from_secs(1), self.index.claim(now, self.cfg.lease_ms, self.cfg.batch))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("redis did not answer within 1 s")));
            match claim {
                Ok(claim) => {
                    if redis_down {
                        tracing::info!("redis answers again; sweeping the index");
                        metrics::DATABASE_FALLBACK.set(0);
                        redis_down = false;
                    }
                    if !claim.built {
                        // Redis lost its data (restart, failover): rebuild before trusting it.
                        if let Err(e) = self.rebuild().await {
                            tracing::warn!(error = %e, "index rebuild failed; will retry");
                        }
                        continue;
                    }
                    metrics::REFIRED.inc_by(claim.refired);
                    if claim.refired > 0 {
                        tracing::warn!(count = claim.refired, "claims re-fired after their lease ended");
                    }
                    let full = claim.members.len() >= self.cfg.batch;
                    if !claim.members.is_empty() {
                        self.fire_claimed(claim.members).await;
                    }
                    if full {
                        continue;
                    }
                    if let Some(next) = claim.next_wake {
                        sleep = sleep.min(Duration::from_millis((next - now_ms()).max(0) as u64));
                    }
                }
                Err(e) => {
                    if !redis_down {
                        tracing::warn!(error = %e, "redis unreachable; sweeping SLA clocks from the database");
                        metrics::DATABASE_FALLBACK.set(1);
                        redis_down = true;
                    }
                    match self.sweep_database(now).await {
                        Ok(next) => {
                            if let Some(next) = next {
                                sleep = sleep.min(Duration::from_millis((next - now_ms()).max(0) as u64));
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "database sweep failed"),
                    }
                }
            }
            if !redis_down && last_scan.elapsed() >= Duration::from_millis(self.cfg.safety_scan_ms) {
                last_scan = tokio::time::Instant::now();
                if let Err(e) = self.safety_scan().await {
                    tracing::warn!(error = %e, "safety scan failed");
                }
                if let Ok(n) = self.index.armed().await {
                    metrics::ARMED.set(n as i64);
                }
            }
            if sleep.is_zero() {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {},
                _ = tokio::time::sleep(sleep) => {},
            }
        }
    }

    /// Fires claimed entries and releases them; entries that could not be handled stay leased
    /// and fire again after the lease.
    async fn fire_claimed(&self, members: Vec<String>) {
        let decoded: Vec<Member> = members.iter().filter_map(|m| Member::decode(m)).collect();
        match self.fire(&decoded, Path::Redis).await {
            Ok(()) => {
                if let Err(e) = self.index.ack(&members).await {
                    tracing::warn!(error = %e, "cannot release fired entries; they will be found stale");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, count = members.len(), "firing failed; entries fire again after their lease")
            }
        }
    }

    /// Fires the given entries in one transaction, then arms each clock's next threshold. The
    /// clocks are read (and locked) together, the firings recorded and the clocks advanced in
    /// multi-row statements, so a batch costs a few statements, not a few per firing.
    ///
    /// The batch is traced in a span of its own, linked to the trace of each case it reads; each
    /// firing continues its case's trace (see [`FiringHandler::on_firing`]).
    async fn fire(&self, members: &[Member], path: Path) -> anyhow::Result<()> {
        let span = tracing::info_span!(parent: None, "batch", otel.name = "sla firings", crs.batch.size = members.len() as i64);
        self.fire_traced(members, path, &span).instrument(span.clone()).await
    }

    async fn fire_traced(&self, members: &[Member], path: Path, span: &tracing::Span) -> anyhow::Result<()> {
        let now = now_ms();
        let txn = self.db.begin().await?;
        let ids: Vec<String> = members.iter().map(|m| m.case_id.clone()).collect();
        let clocks: std::collections::HashMap<String, Clock> = ClockStore::load_many(&txn, &ids, true)
            .instrument(crs_platform::db::span(&txn, "sla clocks load"))
            .await?
            .into_iter()
            .map(|c| (c.case_id.clone(), c))
            .collect();
        crs_platform::telemetry::link_stored_traces(span, clocks.values().map(|c| c.trace_context.as_deref()));
        let mut advanced: Vec<(Clock, Clock)> = Vec::with_capacity(members.len());
        let mut fired: Vec<Firing> = Vec::with_capacity(members.len());
        for member in members {
            let Some(clock) = clocks.get(&member.case_id) else { continue };
            let Some((index, due)) = clock.next_due() else { continue };
            if clock.generation != member.generation || index != member.index {
                continue; // stale: the clock changed or this threshold already fired
            }
            if fired.iter().any(|f| f.case_id == clock.case_id) {
                continue; // named twice in one batch: once is enough
            }
            if due > now {
                // Armed early (e.g. a re-fired lease): put it back at its real time.
                advanced.push((clock.clone(), clock.clone()));
                continue;
            }
            let firing = Firing {
                case_id: clock.case_id.clone(),
                threshold: clock.deadline.thresholds[index],
                generation: clock.generation,
                due_at: due,
                fired_at: now,
                trace_context: clock.trace_context.clone(),
            };
            let mut next = clock.clone();
            next.next_index += 1;
            advanced.push((clock.clone(), next));
            fired.push(firing);
        }
        ClockStore::record_firings(&txn, &fired).instrument(crs_platform::db::span(&txn, "sla firings record")).await?;
        for firing in &fired {
            self.handler.on_firing(&txn, firing).await?;
        }
        let changed: Vec<Clock> = advanced.iter().filter(|(b, a)| b != a).map(|(_, a)| a.clone()).collect();
        ClockStore::save_many(&txn, &changed).instrument(crs_platform::db::span(&txn, "sla clocks advance")).await?;
        txn.commit().await?;
        for f in &fired {
            metrics::LATENESS.observe(f.lateness_ms() as f64 / 1000.0);
            let kind = if f.is_breach() { "breach" } else { "warning" };
            let path = if path == Path::Redis { "redis" } else { "database" };
            metrics::FIRED.with_label_values(&[kind, path]).inc();
            tracing::debug!(case_id = %f.case_id, threshold = f.threshold, lateness_ms = f.lateness_ms(), "sla threshold fired");
        }
        if path == Path::Redis {
            self.arm_next(&advanced).await;
        }
        Ok(())
    }

    /// Arms each advanced clock's next threshold (and drops its fired entry), pipelined.
    async fn arm_next(&self, advanced: &[(Clock, Clock)]) {
        let changes: Vec<(Option<&Clock>, &Clock)> =
            advanced.iter().map(|(before, after)| ((before != after).then_some(before), after)).collect();
        if let Err(e) = self.index.sync_many(&changes).await {
            tracing::warn!(error = %e, count = changes.len(), "cannot arm next thresholds; the safety scan will");
        }
    }

    /// While Redis is away: fire what the database says is due; returns the next due time.
    async fn sweep_database(&self, now: i64) -> anyhow::Result<Option<i64>> {
        loop {
            let due = ClockStore::due(&self.db, now, self.cfg.batch as u64).await?;
            let members: Vec<Member> = due.iter().filter_map(Clock::member).collect();
            let full = members.len() >= self.cfg.batch;
            if !members.is_empty() {
                self.fire(&members, Path::Database).await?;
            }
            if !full {
                break;
            }
        }
        let next = ClockStore::due(&self.db, i64::MAX, 1).await?;
        Ok(next.first().and_then(|c| c.next_due()).map(|(_, due)| due))
    }

    /// Fires clocks overdue by more than the grace that the index did not (e.g. an arm lost
    /// between a commit and Redis), and re-arms them.
    async fn safety_scan(&self) -> anyhow::Result<()> {
        let overdue = ClockStore::due(&self.db, now_ms() - self.cfg.safety_grace_ms, self.cfg.batch as u64).await?;
        let members: Vec<Member> = overdue.iter().filter_map(Clock::member).collect();
        if !members.is_empty() {
            tracing::warn!(
                count = members.len(),
                "clocks overdue and not fired by the index; firing from the database"
            );
            self.fire(&members, Path::Redis).await?;
        }
        Ok(())
    }

    /// Re-arms every running clock from the database, then marks the index built. Thresholds
    /// that passed meanwhile are due at once and fire with their lateness recorded.
    pub async fn rebuild(&self) -> anyhow::Result<u64> {
        let started = std::time::Instant::now();
        let mut after = String::new();
        let mut armed = 0u64;
        loop {
            let page = ClockStore::running_after(&self.db, &after, 5_000).await?;
            let Some(last) = page.last() else { break };
            after = last.case_id.clone();
            armed += self.index.arm_many(&page).await? as u64;
        }
        self.index.mark_built().await?;
        metrics::REBUILDS.inc();
        tracing::info!(clocks = armed, elapsed_ms = started.elapsed().as_millis() as u64, "sla timer index rebuilt");
        Ok(armed)
    }
}
