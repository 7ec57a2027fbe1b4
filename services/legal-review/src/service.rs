//! Legal review's state shared by its handlers, and the reading side: cases, queues and the
//! audit trail.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crs_domain::approval::ApprovalPolicy;
use crs_platform::auth::{self, Principal, Role};
use crs_platform::outbox::Outbox;
use crs_platform::paging;
use crs_platform::shared_txn::SharedTransactions;
use crs_platform::time::{duration, now_millis, timestamp_from_millis};
use crs_proto::common::RequestStatus;
use crs_proto::convert::wire;
use crs_proto::review::*;
use crs_timers::Clock;
use crs_timers::index::TimerIndex;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use tracing::Instrument;

use crate::commands::{Effects, REVIEWERS, Result, reviewer};
use crate::config::ReviewConfig;
use crate::entities::{audit_entry, case};
use crate::error::ReviewError;
use crate::store;

/// A span for an action on a case: part of the case's stored trace, linked to the current one.
pub(crate) fn case_span(action: &'static str, case_id: &str, stored_trace: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!("review action", otel.name = action, case_id = %case_id);
    crs_platform::telemetry::join_stored_trace(&span, stored_trace, &tracing::Span::current());
    span
}

/// Cases read per query while filling a page.
const LIST_CHUNK: u64 = 50;

#[derive(Clone)]
pub struct LegalReview {
    pub(crate) db: DatabaseConnection,
    pub(crate) outbox: Outbox,
    pub(crate) timers: TimerIndex,
    pub(crate) cfg: Arc<ReviewConfig>,
    pub(crate) approval: Arc<ApprovalPolicy>,
    /// Cases relayed together are opened together (see `crs_platform::shared_txn`).
    pub(crate) openings: SharedTransactions<(EnqueueCaseResponse, Effects), ReviewError>,
    /// Queues this process saw recorded in `known_queues` (committed), so opening a case in one
    /// writes nothing more: the table only grows, and a queue's first case is all it keeps.
    pub(crate) known_queues: Arc<Mutex<HashSet<String>>>,
}

/// The statuses a reviewer can still work on (those the state machine lets a reviewer claim),
/// as wire numbers.
fn claimable_statuses() -> Vec<i32> {
    crs_domain::Status::ALL
        .iter()
        .filter(|s| crs_domain::state::State::new(**s).allows(crs_domain::state::Command::Claim))
        .map(|s| wire::<RequestStatus, _>(*s))
        .collect()
}

/// The open statuses (what a queue's depth counts), as wire numbers.
pub(crate) fn open_statuses() -> Vec<i32> {
    crs_domain::Status::ALL.iter().filter(|s| s.is_open()).map(|s| wire::<RequestStatus, _>(*s)).collect()
}

impl LegalReview {
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        timers: TimerIndex,
        cfg: ReviewConfig,
        approval: ApprovalPolicy,
    ) -> Self {
        // Nothing in the transaction reads the audit entries or hand-offs back: they go in one
        // statement each.
        let openings = SharedTransactions::start_deferring(db.clone(), crate::commands::Effects::write_openings);
        Self {
            db,
            outbox,
            timers,
            cfg: Arc::new(cfg),
            approval: Arc::new(approval),
            openings,
            known_queues: Default::default(),
        }
    }

    /// Runs a reviewer's action on a case inside the case's own trace (the request's), linked to
    /// the reviewer's call, so the request's trace shows what reviewers did to it.
    pub(crate) async fn in_case_trace<T>(
        &self,
        case_id: &str,
        action: &'static str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let stored = case::Entity::find_by_id(case_id.to_owned())
            .select_only()
            .column(case::Column::TraceContext)
            .into_tuple::<Option<String>>()
            .one(&self.db)
            .await?
            .flatten();
        work.instrument(case_span(action, case_id, stored.as_deref())).await
    }

    /// Points the timer index at a clock's new state after its transaction committed. If Redis
    /// is away, the sweepers' database fallback and rebuild cover it.
    pub(crate) async fn sync_clock(&self, change: Option<(Clock, Clock)>) {
        if let Some((before, after)) = change {
            let before = (before.generation != after.generation).then_some(&before);
            if let Err(e) = self.timers.sync(before, &after).await {
                tracing::warn!(error = %e, case_id = %after.case_id, "timer index not updated; the sweepers will catch up");
            }
        }
    }

    pub(crate) async fn get(&self, p: Principal, req: GetCaseRequest) -> Result<Case> {
        auth::require_role(&p, REVIEWERS)?;
        let row = store::find(&self.db, &req.case_id).await?;
        let around = store::around(&self.db, std::slice::from_ref(&row.id)).await?;
        let mut case = crate::views::to_case(&row, &around, now_millis());
        case.related_cases = crate::merges::related_cases(&self.db, &row).await?;
        Ok(case)
    }

    pub(crate) async fn list(&self, p: Principal, req: ListCasesRequest) -> Result<ListCasesResponse> {
        auth::require_role(&p, REVIEWERS)?;
        if req.status != 0 && crs_proto::convert::status(req.status).is_none() {
            return Err(ReviewError::invalid("status", "must be a known status"));
        }
        let filters = format!("queue={};status={};mine={}", req.queue, req.status, req.only_mine);
        let after = paging::decode(&req.page_token, "cases", &filters)?;
        let size = paging::page_size(req.page_size);
        let mut cond = Condition::all();
        if !req.queue.is_empty() {
            cond = cond.add(case::Column::Queue.eq(req.queue.clone()));
        }
        if req.status != 0 {
            cond = cond.add(case::Column::Status.eq(req.status));
        }
        if req.only_mine {
            cond = cond.add(case::Column::AssignedReviewer.eq(p.subject()));
        }
        // Most urgent first: highest priority, then the nearest deadline, then id. Read a chunk
        // at a time, so a page of large cases stops at the byte budget without loading the rest.
        let bad = || ReviewError::invalid("page_token", "is not a token this service issued");
        let mut position: Option<(i32, i64, String)> = match after {
            Some(pos) => {
                let [priority, due, id] = <[String; 3]>::try_from(pos).map_err(|_| bad())?;
                Some((priority.parse().map_err(|_| bad())?, due.parse().map_err(|_| bad())?, id))
            }
            None => None,
        };
        let now = now_millis();
        let (mut cases, mut bytes, mut more) = (Vec::new(), 0usize, false);
        'chunks: while (cases.len() as u64) < size {
            let mut chunk_cond = cond.clone();
            if let Some((priority, due, id)) = &position {
                chunk_cond = chunk_cond.add(
                    Condition::any()
                        .add(case::Column::Priority.lt(*priority))
                        .add(
                            Condition::all()
                                .add(case::Column::Priority.eq(*priority))
                                .add(case::Column::DueAt.gt(*due)),
                        )
                        .add(
                            Condition::all()
                                .add(case::Column::Priority.eq(*priority))
                                .add(case::Column::DueAt.eq(*due))
                                .add(case::Column::Id.gt(id.clone())),
                        ),
                );
            }
            let want = (size - cases.len() as u64).min(LIST_CHUNK);
            let rows = case::Entity::find()
                .filter(chunk_cond)
                .order_by_desc(case::Column::Priority)
                .order_by_asc(case::Column::DueAt)
                .order_by_asc(case::Column::Id)
                .limit(want + 1)
                .all(&self.db)
                .await?;
            let chunk_more = rows.len() as u64 > want;
            let rows: Vec<case::Model> = rows.into_iter().take(want as usize).collect();
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let around = store::around(&self.db, &ids).await?;
            for (i, r) in rows.iter().enumerate() {
                let view = crate::views::to_case(r, &around, now);
                let len = prost::Message::encoded_len(&view);
                if !cases.is_empty() && bytes + len > paging::MAX_PAGE_BYTES {
                    more = true;
                    break 'chunks;
                }
                bytes += len;
                cases.push(view);
                position = Some((r.priority, r.due_at, r.id.clone()));
                if i + 1 == rows.len() {
                    more = chunk_more;
                }
            }
            if !chunk_more {
                break;
            }
        }
        let next_page_token = match (more, &position) {
            (true, Some((priority, due, id))) => {
                paging::encode("cases", &filters, &[&priority.to_string(), &due.to_string(), id])
            }
            _ => String::new(),
        };
        Ok(ListCasesResponse { cases, next_page_token })
    }

    /// Hands the caller the most urgent case of a queue they may claim, claimed.
    pub(crate) async fn claim_next(&self, p: Principal, req: ClaimNextCaseRequest) -> Result<Case> {
        let who = reviewer(&p)?;
        if req.queue.trim().is_empty() {
            return Err(ReviewError::invalid("queue", "is required"));
        }
        let lease = match req.lease.as_ref().map(|d| d.seconds) {
            None | Some(0) => self.cfg.claim_lease_secs,
            Some(s) if s < 0 => return Err(ReviewError::invalid("lease", "must be positive")),
            Some(s) => s.min(self.cfg.max_claim_lease_secs),
        } * 1000;
        let now = now_millis();
        let txn = self.db.begin().await?;
        let mut query = case::Entity::find()
            .filter(case::Column::Queue.eq(req.queue.clone()))
            .filter(case::Column::Status.is_in(claimable_statuses()))
            .filter(
                Condition::any().add(case::Column::AssignedReviewer.eq("")).add(case::Column::ClaimExpiresAt.lte(now)),
            )
            .order_by_desc(case::Column::Priority)
            .order_by_asc(case::Column::DueAt)
            .order_by_asc(case::Column::Id)
            .limit(1);
        if !who.senior {
            query = query.filter(case::Column::Escalated.eq(false));
        }
        // Replicas and reviewers skip rows another transaction is handing out.
        if sea_orm::ConnectionTrait::get_database_backend(&txn) == DbBackend::Postgres {
            query = query
                .lock_with_behavior(sea_orm::sea_query::LockType::Update, sea_orm::sea_query::LockBehavior::SkipLocked);
        }
        let Some(row) = query.one(&txn).await? else {
            return Err(ReviewError::NotFound(format!("a case you may claim in queue {:?}", req.queue)));
        };
        // The case's trace comes from the row: the transaction holds the (SQLite) connection.
        let span = case_span("review.claim_next", &row.id, row.trace_context.as_deref());
        self.claim_locked(txn, row, &who, lease).instrument(span).await
    }

    pub(crate) async fn list_queues(&self, p: Principal) -> Result<ListQueuesResponse> {
        auth::require_role(&p, REVIEWERS)?;
        let now = now_millis();
        let rows: Vec<(String, i64, Option<i64>, Option<i64>)> = case::Entity::find()
            .select_only()
            .column(case::Column::Queue)
            .column_as(case::Column::Id.count(), "depth")
            .column_as(case::Column::CreatedAt.min(), "oldest")
            .column_as(case::Column::DueAt.min(), "nearest")
            .filter(case::Column::Status.is_in(open_statuses()))
            .group_by(case::Column::Queue)
            .into_tuple()
            .all(&self.db)
            .await?;
        let claimable: Vec<(String, i64)> = case::Entity::find()
            .select_only()
            .column(case::Column::Queue)
            .column_as(case::Column::Id.count(), "n")
            .filter(case::Column::Status.is_in(claimable_statuses()))
            .filter(
                Condition::any().add(case::Column::AssignedReviewer.eq("")).add(case::Column::ClaimExpiresAt.lte(now)),
            )
            .group_by(case::Column::Queue)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut names: Vec<String> = self.cfg.queues.clone();
        names.push(self.cfg.escalation_queue.clone());
        let known = crate::entities::known_queue::Entity::find()
            .order_by_asc(crate::entities::known_queue::Column::FirstCaseAt)
            .all(&self.db)
            .await?;
        for q in known.into_iter().map(|k| k.name).chain(rows.iter().map(|r| r.0.clone())) {
            if !names.contains(&q) {
                names.push(q);
            }
        }
        for (q, ..) in &rows {
            if !names.contains(q) {
                names.push(q.clone());
            }
        }
        let queues = names
            .into_iter()
            .map(|name| {
                let row = rows.iter().find(|r| r.0 == name);
                QueueSummary {
                    depth: row.map_or(0, |r| r.1) as u32,
                    claimable: claimable.iter().find(|c| c.0 == name).map_or(0, |c| c.1) as u32,
                    oldest_age: row.and_then(|r| r.2).map(|o| duration((now - o).max(0) / 1000)),
                    nearest_deadline: row.and_then(|r| r.3).filter(|d| *d > 0).map(timestamp_from_millis),
                    name,
                }
            })
            .collect();
        Ok(ListQueuesResponse { queues })
    }

    pub(crate) async fn audit_trail(&self, p: Principal, req: GetAuditTrailRequest) -> Result<GetAuditTrailResponse> {
        if req.case_id.is_empty() {
            auth::require_role(&p, &[Role::Admin])?;
        } else {
            auth::require_role(&p, &[Role::SeniorReviewer, Role::Admin])?;
            store::find(&self.db, &req.case_id).await?;
        }
        // The trail as of now: what is committed and still pending joins the chain first.
        crate::audit::seal(&self.db).await?;
        let after = paging::decode(&req.page_token, "audit", &req.case_id)?;
        let size = paging::page_size(req.page_size);
        let mut query = audit_entry::Entity::find().order_by_asc(audit_entry::Column::Sequence).limit(size + 1);
        if !req.case_id.is_empty() {
            query = query.filter(audit_entry::Column::CaseId.eq(req.case_id.clone()));
        }
        if let Some(pos) = after {
            let seq: i64 = pos
                .first()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ReviewError::invalid("page_token", "is not a token this service issued"))?;
            query = query.filter(audit_entry::Column::Sequence.gt(seq));
        }
        let rows = query.all(&self.db).await?;
        let more = rows.len() as u64 > size;
        let rows: Vec<_> = rows.into_iter().take(size as usize).collect();
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode("audit", &req.case_id, &[&last.sequence.to_string()]),
            _ => String::new(),
        };
        Ok(GetAuditTrailResponse {
            entries: rows
                .into_iter()
                .map(|e| AuditEntry {
                    sequence: e.sequence as u64,
                    case_id: e.case_id,
                    actor: e.actor,
                    action: e.action,
                    details_json: e.details,
                    at: Some(timestamp_from_millis(e.at)),
                    previous_hash: e.previous_hash,
                    hash: e.hash,
                    trace_id: e.trace_id,
                })
                .collect(),
            next_page_token,
        })
    }

    pub(crate) async fn verify_audit(
        &self,
        p: Principal,
        req: VerifyAuditTrailRequest,
    ) -> Result<VerifyAuditTrailResponse> {
        auth::require_role(&p, &[Role::Admin])?;
        let from = req.from.as_ref().map(crs_platform::time::millis_from_timestamp);
        let to = req.to.as_ref().map(crs_platform::time::millis_from_timestamp);
        crate::audit::seal(&self.db).await?;
        let v = crate::audit::verify(&self.db, from, to).await?;
        if let Some(broken) = v.first_broken {
            tracing::error!(first_broken = broken, problem = ?v.problem, "the audit trail does not verify");
        }
        Ok(VerifyAuditTrailResponse {
            intact: v.first_broken.is_none(),
            entries_checked: v.entries_checked,
            first_broken_sequence: v.first_broken.unwrap_or(0),
            problem: v.problem.unwrap_or_default(),
        })
    }
}
