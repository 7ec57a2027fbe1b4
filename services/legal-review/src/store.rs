//! How cases are stored and read: the case row locked for a command, the rules' view of it,
//! and the rows around it (decisions, questions and answers, the SLA clock), loaded a page at a
//! time.

use std::collections::HashMap;

use crs_domain::case::{Case, Claim};
use crs_domain::state::State;
use crs_platform::db::arrays::one_of;
use crs_proto::common::{Assessment, Submission};
use crs_timers::{Clock, ClockStore};
use prost::Message;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::{case, decision, information};
use crate::error::ReviewError;

type Result<T> = std::result::Result<T, ReviewError>;

/// The case, locked for the caller's transaction; NOT_FOUND if there is none.
pub async fn lock<C: ConnectionTrait>(txn: &C, id: &str) -> Result<case::Model> {
    case::Entity::find_by_id(id.to_owned())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| ReviewError::NotFound(format!("case {id}")))
}

pub async fn find<C: ConnectionTrait>(conn: &C, id: &str) -> Result<case::Model> {
    case::Entity::find_by_id(id.to_owned()).one(conn).await?.ok_or_else(|| ReviewError::NotFound(format!("case {id}")))
}

/// The wire status of a row, in the domain's words.
pub fn status(row: &case::Model) -> Result<crs_domain::Status> {
    crs_proto::convert::status(row.status)
        .ok_or_else(|| ReviewError::Internal(anyhow::anyhow!("case {} has unknown status {}", row.id, row.status)))
}

/// The request as intake accepted it.
pub fn submission(row: &case::Model) -> Result<Submission> {
    Submission::decode(row.submission.as_slice()).map_err(|e| ReviewError::Internal(e.into()))
}

/// Triage's verdict.
pub fn assessment(row: &case::Model) -> Result<Assessment> {
    Assessment::decode(row.assessment.as_slice()).map_err(|e| ReviewError::Internal(e.into()))
}

/// Whether the row stands for a withdrawal that arrived before its case (no request yet).
pub fn is_placeholder(row: &case::Model) -> bool {
    row.submission.is_empty()
}

/// The case as the rules see it.
pub fn to_domain(row: &case::Model) -> Result<Case> {
    let pauses = assessment(row).ok().and_then(|a| a.policy).is_none_or(|p| p.pauses_while_awaiting_information);
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok(Case {
        state: State { status: status(row)?, escalated: row.escalated },
        claim: (!row.assigned_reviewer.is_empty()).then(|| Claim {
            holder: row.assigned_reviewer.clone(),
            senior: row.claim_senior,
            expires_at: row.claim_expires_at,
        }),
        decided_by: nonempty(&row.decided_by),
        approved_by: nonempty(&row.approved_by),
        pauses_while_awaiting_information: pauses,
    })
}

/// What a case's view needs besides its row.
#[derive(Debug, Default)]
pub struct Around {
    pub decisions: HashMap<String, Vec<decision::Model>>,
    pub information: HashMap<String, Vec<information::Model>>,
    pub clocks: HashMap<String, Clock>,
    /// The requests merged into each case.
    pub merged: HashMap<String, Vec<crs_proto::review::MergedRequest>>,
}

/// Loads the decisions, questions and clocks of `ids` in one query each.
pub async fn around<C: ConnectionTrait>(conn: &C, ids: &[String]) -> Result<Around> {
    let mut out = Around::default();
    if ids.is_empty() {
        return Ok(out);
    }
    for d in decision::Entity::find()
        .filter(one_of(conn.get_database_backend(), decision::Column::CaseId, ids.iter().cloned()))
        .order_by_asc(decision::Column::ItemIndex)
        .all(conn)
        .await?
    {
        out.decisions.entry(d.case_id.clone()).or_default().push(d);
    }
    for i in information::Entity::find()
        .filter(one_of(conn.get_database_backend(), information::Column::CaseId, ids.iter().cloned()))
        .order_by_asc(information::Column::Round)
        .all(conn)
        .await?
    {
        out.information.entry(i.case_id.clone()).or_default().push(i);
    }
    for c in ClockStore::load_many(conn, ids, false).await? {
        out.clocks.insert(c.case_id.clone(), c);
    }
    out.merged = crate::merges::merged_requests(conn, ids).await?;
    Ok(out)
}

/// The decisions recorded on a case, in item order.
pub async fn decisions<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Vec<decision::Model>> {
    Ok(decision::Entity::find()
        .filter(decision::Column::CaseId.eq(id))
        .order_by_asc(decision::Column::ItemIndex)
        .all(conn)
        .await?)
}
