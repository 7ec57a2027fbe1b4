//! The audit trail: every action on a case recorded in the transaction of the action, then
//! sealed into one hash chain over the whole trail (see `crs_domain::audit`), and read back or
//! verified.
//!
//! Recording takes no lock: a command inserts its entries into `audit_pending`, so commands on
//! different cases never wait on each other for the chain. The sealer ([`seal`], run every
//! [`SEAL_INTERVAL`] and before every read of the trail) moves pending entries into
//! `audit_entries` in the order they were committed, numbering and linking them; one sealing
//! transaction at a time holds the chain's end (an advisory lock on PostgreSQL; SQLite has one
//! writer), so sequence numbers have no gaps and each entry links to the one sealed before it.
//! Two actions on one case are committed one after the other (the case's row is locked), so
//! they are sealed in that order too.

use std::time::Duration;

use crs_domain::audit::{Entry, Verification, Verifier};
use crs_platform::db::arrays::one_of;
use crs_platform::outbox::statement;
use sea_orm::{ColumnTrait, DatabaseConnection, Set, TransactionTrait};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio_util::sync::CancellationToken;

use crate::entities::{audit_entry, audit_pending};

/// The advisory lock that serialises sealing on PostgreSQL.
const APPEND_LOCK: i64 = 0x0c25_a0d1_7000_0001;

/// How often pending entries are sealed.
pub const SEAL_INTERVAL: Duration = Duration::from_millis(200);

/// Entries sealed per transaction.
const SEAL_BATCH: u64 = 1000;

/// An action to record.
#[derive(Debug, Clone)]
pub struct Action {
    pub case_id: String,
    /// `reviewer:<id>`, `service:<name>`, `agency:<id>` or `system:sla`.
    pub actor: String,
    /// What was done: `enqueue`, `claim`, `decide`, ...
    pub action: &'static str,
    /// The action's full content.
    pub details: serde_json::Value,
}

/// Records `actions` inside `txn`, in order, to be sealed into the chain once committed.
pub async fn append(txn: &DatabaseTransaction, actions: Vec<Action>, at: i64) -> Result<(), sea_orm::DbErr> {
    append_all(txn, vec![taken(actions, at)]).await
}

/// Actions a command took, with the time and the trace they were taken in, to be recorded with
/// other commands' ([`append_all`]).
#[derive(Debug)]
pub struct Taken {
    actions: Vec<Action>,
    trace_id: String,
    at: i64,
}

/// `actions` taken at `at`, in the current trace.
pub fn taken(actions: Vec<Action>, at: i64) -> Taken {
    Taken { actions, trace_id: crs_platform::telemetry::current_trace_id().unwrap_or_default(), at }
}

/// Entries per `INSERT` on SQLite (6 values each, within its bound on parameters).
const ENTRIES_PER_INSERT: usize = 1000;

/// Pending entries on PostgreSQL, a column's values per array, numbered in the arrays' order.
const INSERT_PENDING: &str = "INSERT INTO audit_pending (case_id, actor, action, details, trace_id, at) \
     SELECT case_id, actor, action, details, trace_id, at \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[]) WITH ORDINALITY \
     AS batch (case_id, actor, action, details, trace_id, at, position) ORDER BY position";

/// Records the actions of several commands inside `txn`, in order: on PostgreSQL in one
/// statement whose text never changes however many commands share the transaction
/// (`crs_platform::db::arrays`), on SQLite a statement per thousand.
pub async fn append_all(txn: &DatabaseTransaction, taken: Vec<Taken>) -> Result<(), sea_orm::DbErr> {
    if txn.get_database_backend() == DbBackend::Postgres {
        use crs_platform::db::arrays;
        let entries: Vec<(&Action, &str, i64)> =
            taken.iter().flat_map(|t| t.actions.iter().map(move |a| (a, t.trace_id.as_str(), t.at))).collect();
        if entries.is_empty() {
            return Ok(());
        }
        let values = vec![
            arrays::texts(entries.iter().map(|(a, _, _)| a.case_id.clone())),
            arrays::texts(entries.iter().map(|(a, _, _)| a.actor.clone())),
            arrays::texts(entries.iter().map(|(a, _, _)| a.action)),
            arrays::texts(entries.iter().map(|(a, _, _)| a.details.to_string())),
            arrays::texts(entries.iter().map(|(_, trace_id, _)| *trace_id)),
            arrays::bigints(entries.iter().map(|(_, _, at)| *at)),
        ];
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(DbBackend::Postgres, INSERT_PENDING, values)).await?;
        return Ok(());
    }
    let rows: Vec<audit_pending::ActiveModel> = taken
        .into_iter()
        .flat_map(|t| {
            let Taken { actions, trace_id, at } = t;
            actions.into_iter().map(move |a| audit_pending::ActiveModel {
                case_id: Set(a.case_id),
                actor: Set(a.actor),
                action: Set(a.action.to_owned()),
                details: Set(a.details.to_string()),
                trace_id: Set(trace_id.clone()),
                at: Set(at),
                ..Default::default()
            })
        })
        .collect();
    for chunk in rows.chunks(ENTRIES_PER_INSERT) {
        audit_pending::Entity::insert_many(chunk.to_vec()).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// Seals every committed pending entry into the chain, oldest first; returns how many.
pub async fn seal(db: &DatabaseConnection) -> Result<u64, sea_orm::DbErr> {
    let mut sealed = 0;
    loop {
        let txn = db.begin().await?;
        let backend = txn.get_database_backend();
        if backend == DbBackend::Postgres {
            txn.execute_raw(statement(backend, "SELECT pg_advisory_xact_lock($1)", vec![APPEND_LOCK.into()])).await?;
        }
        // Read after the lock: another sealer's work is visible by then.
        let pending =
            audit_pending::Entity::find().order_by_asc(audit_pending::Column::Id).limit(SEAL_BATCH).all(&txn).await?;
        if pending.is_empty() {
            return Ok(sealed);
        }
        let full = pending.len() as u64 == SEAL_BATCH;
        let last = audit_entry::Entity::find().order_by_desc(audit_entry::Column::Sequence).limit(1).one(&txn).await?;
        let mut previous: Option<(u64, String)> = last.map(|e| (e.sequence as u64, e.hash));
        let ids: Vec<i64> = pending.iter().map(|p| p.id).collect();
        let mut rows = Vec::with_capacity(pending.len());
        for p in pending {
            let entry = Entry::next(
                previous.as_ref().map(|(s, h)| (*s, h.as_str())),
                &p.case_id,
                &p.actor,
                &p.action,
                p.details,
                p.trace_id,
                p.at,
            );
            previous = Some((entry.sequence, entry.hash.clone()));
            rows.push(audit_entry::ActiveModel {
                sequence: Set(entry.sequence as i64),
                case_id: Set(entry.case_id),
                actor: Set(entry.actor),
                action: Set(entry.action),
                details: Set(entry.details_json),
                trace_id: Set(entry.trace_id),
                at: Set(entry.at),
                previous_hash: Set(entry.previous_hash),
                hash: Set(entry.hash),
            });
        }
        sealed += rows.len() as u64;
        audit_entry::Entity::insert_many(rows).exec_without_returning(&txn).await?;
        audit_pending::Entity::delete_many()
            .filter(one_of(txn.get_database_backend(), audit_pending::Column::Id, ids))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        if !full {
            return Ok(sealed);
        }
    }
}

/// Seals pending entries every [`SEAL_INTERVAL`] until shut down, and once more then.
pub async fn run_sealer(db: DatabaseConnection, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SEAL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        if let Err(e) = seal(&db).await {
            tracing::warn!(error = %e, "audit entries not sealed this round; will retry");
        }
        if stopping {
            return;
        }
    }
}

pub fn to_entry(m: audit_entry::Model) -> Entry {
    Entry {
        sequence: m.sequence as u64,
        case_id: m.case_id,
        actor: m.actor,
        action: m.action,
        details_json: m.details,
        trace_id: m.trace_id,
        at: m.at,
        previous_hash: m.previous_hash,
        hash: m.hash,
    }
}

/// Entries read per query while verifying.
const VERIFY_PAGE: u64 = 1000;

/// Recomputes the chain over the entries recorded in `[from, to)` (the whole trail when both are
/// unset) and reports the first entry altered, inserted or missing.
pub async fn verify(
    db: &DatabaseConnection,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Verification, sea_orm::DbErr> {
    // Where to start: the first entry of the range, checked against the entry before it.
    let first_in_range = match from {
        Some(f) => audit_entry::Entity::find()
            .filter(audit_entry::Column::At.gte(f))
            .order_by_asc(audit_entry::Column::Sequence)
            .one(db)
            .await?
            .map(|e| e.sequence),
        None => Some(1),
    };
    let Some(start) = first_in_range else {
        return Ok(Verification { entries_checked: 0, first_broken: None, problem: None });
    };
    let mut verifier = match start {
        1 => Verifier::from_start(),
        s => match audit_entry::Entity::find_by_id(s - 1).one(db).await? {
            Some(anchor) => Verifier::after(&to_entry(anchor)),
            // The anchor itself is gone: the range starts after a deleted entry.
            None => {
                return Ok(Verification {
                    entries_checked: 0,
                    first_broken: Some((s - 1) as u64),
                    problem: Some(format!("entry {} is missing", s - 1)),
                });
            }
        },
    };
    let mut next = start;
    let mut beyond_range = false;
    'pages: loop {
        let page = audit_entry::Entity::find()
            .filter(audit_entry::Column::Sequence.gte(next))
            .order_by_asc(audit_entry::Column::Sequence)
            .limit(VERIFY_PAGE)
            .all(db)
            .await?;
        let full = page.len() as u64 == VERIFY_PAGE;
        for e in page {
            next = e.sequence + 1;
            // One entry past the range is checked too: its link proves the range's last entry.
            if to.is_some_and(|t| e.at >= t) {
                beyond_range = true;
            }
            if !verifier.check(&to_entry(e)) || beyond_range {
                break 'pages;
            }
        }
        if !full {
            break;
        }
    }
    let last = if to.is_some() {
        None
    } else {
        audit_entry::Entity::find()
            .select_only()
            .column_as(audit_entry::Column::Sequence.max(), "last")
            .into_tuple::<Option<i64>>()
            .one(db)
            .await?
            .flatten()
            .map(|l| l as u64)
    };
    let mut result = verifier.finish(last);
    if beyond_range && result.first_broken.is_none() {
        result.entries_checked -= 1;
    }
    Ok(result)
}
