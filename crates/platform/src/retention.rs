//! Retention: each service keeps each class of data only as long as it is needed, and a
//! background job prunes the rest. A service lists its data classes as [`Rule`]s; every service
//! has the inbox's. README's "Retention" section lists every class, where it lives, for how long,
//! and what pruning does to it.
//!
//! Pruning works in batches of [`BATCH`] rows, each its own short statement, so it never holds
//! locks for long or competes with requests for more than a moment; it runs every
//! `retention.interval_secs` and once at start.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Rows pruned per statement.
pub const BATCH: u64 = 500;

/// `[retention]`: how long each class of data is kept, in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// How often the job runs.
    pub interval_secs: u64,
    /// Receivers' records of applied hand-offs: must outlive any retry of them
    /// (`outbox.max_age_secs`), or a late retry would be applied twice.
    pub inbox_secs: i64,
    /// How long an idempotency key names its first result, so a client may retry (intake's
    /// submissions, legal review's commands).
    pub idempotency_secs: i64,
    /// How long after a request is finished (decided, withdrawn, rejected, closed) its
    /// free text is kept: legal basis, justification, item descriptions, notes, answers and
    /// reasons. 0 keeps it for good.
    pub request_text_secs: i64,
}

impl RetentionConfig {
    /// Checks the numbers, and that the inbox outlives every retry of a hand-off.
    pub fn check(&self, outbox_max_age_secs: u64) -> anyhow::Result<()> {
        anyhow::ensure!(self.interval_secs >= 1, "retention.interval_secs must be at least 1");
        anyhow::ensure!(self.idempotency_secs >= 60, "retention.idempotency_secs must be at least 60");
        anyhow::ensure!(self.request_text_secs >= 0, "retention.request_text_secs must be 0 (keep) or more");
        anyhow::ensure!(
            self.inbox_secs > outbox_max_age_secs as i64,
            "retention.inbox_secs ({}) must exceed outbox.max_age_secs ({outbox_max_age_secs}): a hand-off retried \
             after its inbox record is gone would be applied twice",
            self.inbox_secs
        );
        Ok(())
    }
}

/// A service-specific pruning step: given the connection and the cutoff (Unix milliseconds),
/// prunes at most [`BATCH`] rows and says how many it pruned.
pub type Step = Arc<dyn Fn(DatabaseConnection, i64) -> BoxFuture<'static, anyhow::Result<u64>> + Send + Sync>;

/// How a class of data is pruned once older than the cutoff. SQL is written with `$1` for the
/// cutoff (Unix milliseconds) and runs on PostgreSQL and SQLite alike.
#[derive(Clone)]
pub enum Prune {
    /// Deletes the rows of `table` whose `key` the `select` returns.
    Delete { table: &'static str, key: &'static str, select: String },
    /// Applies `set` to the rows of `table` whose `key` the `select` returns. The `select` must
    /// leave out rows already pruned, or the job would never finish.
    Update { table: &'static str, key: &'static str, set: &'static str, select: String },
    /// What SQL alone cannot do (e.g. editing an encoded message).
    Custom(Step),
}

/// One class of data, kept for `keep_secs` (0: for good).
#[derive(Clone)]
pub struct Rule {
    /// The class's name, as metrics and logs show it (`inbox`, `request_text`, ...).
    pub class: &'static str,
    pub keep_secs: i64,
    pub prune: Prune,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule").field("class", &self.class).field("keep_secs", &self.keep_secs).finish_non_exhaustive()
    }
}

/// Every service's inbox: the event ids it applied, kept for `inbox_secs`.
pub fn inbox_rule(cfg: &RetentionConfig) -> Rule {
    Rule {
        class: "inbox",
        keep_secs: cfg.inbox_secs,
        prune: Prune::Delete {
            table: "inbox",
            key: "event_id",
            select: "SELECT event_id FROM inbox WHERE applied_at < $1".into(),
        },
    }
}

/// The wire numbers of the statuses in which nothing about a request changes any more (decided,
/// closed, withdrawn, rejected), as an SQL list: `7, 8, ...`.
pub fn final_statuses_sql() -> String {
    crs_domain::vocab::Status::ALL
        .iter()
        .filter(|s| s.is_final())
        .map(|s| crs_proto::convert::wire::<crs_proto::common::RequestStatus, _>(*s).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Rule {
    /// Prunes one batch; the number of rows pruned.
    async fn prune_batch(&self, db: &DatabaseConnection, cutoff: i64) -> anyhow::Result<u64> {
        let sql = match &self.prune {
            Prune::Delete { table, key, select } => {
                format!("DELETE FROM {table} WHERE {key} IN ({select} LIMIT {BATCH})")
            }
            Prune::Update { table, key, set, select } => {
                format!("UPDATE {table} SET {set} WHERE {key} IN ({select} LIMIT {BATCH})")
            }
            Prune::Custom(step) => return step(db.clone(), cutoff).await,
        };
        let stmt = crate::outbox::statement(db.get_database_backend(), &sql, vec![cutoff.into()]);
        Ok(db.execute_raw(stmt).await?.rows_affected())
    }

    /// Prunes everything older than its retention, batch by batch; the rows pruned.
    pub async fn run(&self, db: &DatabaseConnection, now_millis: i64) -> anyhow::Result<u64> {
        if self.keep_secs <= 0 {
            return Ok(0);
        }
        let cutoff = now_millis - self.keep_secs * 1000;
        let mut total = 0;
        loop {
            let n = self.prune_batch(db, cutoff).await?;
            total += n;
            if n < BATCH {
                return Ok(total);
            }
            // Let requests in between batches.
            tokio::task::yield_now().await;
        }
    }
}

/// Runs every rule once; what each pruned, by class.
pub async fn run_once(db: &DatabaseConnection, rules: &[Rule]) -> Vec<(&'static str, anyhow::Result<u64>)> {
    let now = crate::time::now_millis();
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let result = rule.run(db, now).await;
        if let Ok(n) = &result {
            crate::metrics::RETENTION_PRUNED.with_label_values(&[rule.class]).inc_by(*n);
        }
        out.push((rule.class, result));
    }
    out
}

/// Runs the rules at start and every `interval` until `shutdown`.
pub fn spawn(
    db: DatabaseConnection,
    rules: Vec<Rule>,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for (class, result) in run_once(&db, &rules).await {
                match result {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(class, pruned = n, "retention: pruned data past its retention"),
                    Err(e) => tracing::warn!(class, error = %e, "retention: cannot prune; trying again next round"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    })
}
