//! One piece of content is under review at most once per jurisdiction.
//!
//! A case claims its content in `open_content` when it opens, in the transaction that opens it;
//! the table's primary key (jurisdiction, content key) makes a concurrent claim of the same
//! content wait for the first to commit and then find it taken. A request whose every item is
//! held by one open case is not opened: it is MERGED into that case and follows it. The case's
//! decision answers every merged request (each agency is told of the items it named, through its
//! own channels); a merged request may be withdrawn on its own; and if the case itself is
//! withdrawn, its merged requests are placed again: each becomes a case of its own or follows
//! another. A request only partly covered opens a case of its own, and the reviewer sees the
//! other cases naming the same content (`related_cases`); content another open case holds is
//! decided there first (a decision naming it waits), and that case is due by the earlier of
//! the two deadlines.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crs_domain::state::{Command, State};
use crs_platform::auth::Principal;
use crs_platform::db::arrays::one_of;
use crs_platform::time::{millis_from_timestamp, timestamp_from_millis};
use crs_proto::common::{Assessment, ItemDecision, RequestStatus, Submission};
use crs_proto::convert::{self, wire};
use crs_proto::intake::UpdateStatusRequest;
use crs_proto::notification::{NotificationKind, NotifyRequest};
use crs_proto::review::{Case, MergedRequest, RelatedCase};
use crs_timers::{Clock, ClockStore};
use prost::Message;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QueryTrait, Set,
};
use serde_json::json;

use crate::commands::{Effects, Result};
use crate::entities::{case, case_content, known_queue, merged_request, open_content};
use crate::error::ReviewError;
use crate::service::LegalReview;
use crate::store;

/// How many times a request is placed again when the case it was to follow closed meanwhile.
const PLACEMENT_ATTEMPTS: usize = 3;

/// Where a request went.
pub(crate) enum Placed {
    /// Opened as a case of its own.
    Opened,
    /// Merged into this open case.
    Merged(String),
}

/// How a case closed.
pub(crate) enum Closing<'a> {
    /// Its decision took effect: these decisions, under this deadline as it stood.
    Decided { decisions: &'a [ItemDecision], deadline: Option<crs_proto::common::SlaDeadline> },
    /// Its agency withdrew it.
    Withdrawn,
}

/// A request to place: the request as accepted, triage's verdict, and the version its agency's
/// view is at (0 for a new request; a merged request placed again continues its own).
pub(crate) struct Placement<'a> {
    pub submission: &'a Submission,
    pub assessment: &'a Assessment,
    pub version: i64,
    /// Who placed it, for the audit trail (`service:triage`, or the agency that withdrew the
    /// case it followed).
    pub actor: String,
    /// The note for the agency's view when it opens (TRIAGED).
    pub note: String,
    /// Extra details for the `enqueue` audit entry.
    pub details: serde_json::Value,
}

/// The distinct content keys a submission names, sorted: claims are taken in this order so two
/// concurrent claims never wait on each other in a cycle.
fn content_keys(s: &Submission) -> Vec<String> {
    s.items.iter().map(|i| i.content_key.clone()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// The request's own SLA clock, from its receipt.
fn clock_of(id: &str, submission: &Submission, assessment: &Assessment, trace: Option<String>) -> Clock {
    let policy = assessment.policy.clone().unwrap_or_default();
    let received = submission.received_at.as_ref().map_or(0, millis_from_timestamp);
    let budget_ms = policy.budget.as_ref().map_or(0, |b| b.seconds * 1000);
    ClockStore::new_clock(id, budget_ms, &policy.warning_percents, received, trace)
}

impl LegalReview {
    /// Opens `p`'s request as a case inside `txn`, or merges it into the open case that holds
    /// every item it names. The caller has inserted the request's case row (`gate`, made by
    /// [`opening`]), which is what a concurrent withdrawal of the same request waits on; a merge
    /// deletes it again.
    pub(crate) async fn place(
        &self,
        txn: &DatabaseTransaction,
        gate: case::Model,
        p: Placement<'_>,
        fx: &mut Effects,
        now: i64,
    ) -> Result<Placed> {
        let s = p.submission;
        let keys = content_keys(s);
        let mut others = BTreeSet::new();
        for _ in 0..PLACEMENT_ATTEMPTS {
            let mut claimed = 0;
            if !keys.is_empty() {
                claimed = open_content::Entity::insert_many(keys.iter().map(|k| {
                    open_content::ActiveModel::from(open_content::Model {
                        jurisdiction: s.jurisdiction.clone(),
                        content_key: k.clone(),
                        case_id: gate.id.clone(),
                    })
                }))
                .on_conflict(
                    OnConflict::columns([open_content::Column::Jurisdiction, open_content::Column::ContentKey])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
            }
            if claimed == keys.len() as u64 {
                // Every item was free and is now this request's: no case to merge into or share
                // with, and nothing to read back.
                break;
            }
            let holders: BTreeSet<String> = open_content::Entity::find()
                .filter(open_content::Column::Jurisdiction.eq(s.jurisdiction.clone()))
                .filter(one_of(txn.get_database_backend(), open_content::Column::ContentKey, keys.clone()))
                .all(txn)
                .await?
                .into_iter()
                .map(|r| r.case_id)
                .collect();
            let merge_into = match holders.iter().collect::<Vec<_>>().as_slice() {
                [only] if **only != gate.id && !keys.is_empty() => (*only).clone(),
                _ => {
                    others = holders.into_iter().filter(|h| *h != gate.id).collect();
                    break;
                }
            };
            let target = store::lock(txn, &merge_into).await?;
            if !store::status(&target)?.is_open() {
                // Closed since we looked: its content is free now; claim it.
                continue;
            }
            self.merge(txn, gate, target, &p, fx, now).await?;
            return Ok(Placed::Merged(merge_into));
        }
        let id = gate.id.clone();
        self.open(txn, gate, &p, fx, now).await?;
        for other in others {
            self.share(txn, &other, &id, &p, fx, now).await?;
        }
        Ok(Placed::Opened)
    }

    /// The new case `id` names content the open case `holder` reviews: that case decides the
    /// shared content first (a decision on it in `id` waits, see [`held_elsewhere`]), so it is
    /// now due by the new request's deadline too when that is earlier, and ranks as high.
    async fn share(
        &self,
        txn: &DatabaseTransaction,
        holder: &str,
        id: &str,
        p: &Placement<'_>,
        fx: &mut Effects,
        now: i64,
    ) -> Result<()> {
        let row = store::lock(txn, holder).await?;
        if !store::status(&row)?.is_open() {
            return Ok(());
        }
        let own_due = clock_of(id, p.submission, p.assessment, None).deadline.due_at(now);
        let (row, brought_forward) = answer_for(txn, row, own_due, p.assessment.priority, fx, now).await?;
        fx.record(
            &row,
            &p.actor,
            "share",
            json!({
                "case_id": id,
                "agency_id": p.submission.agency_id,
                "due_at": own_due,
                "deadline_brought_forward": brought_forward,
            }),
        );
        Ok(())
    }

    /// Opens the gate row as a new TRIAGED case: arms its clock and records what it names.
    async fn open(
        &self,
        txn: &DatabaseTransaction,
        gate: case::Model,
        p: &Placement<'_>,
        fx: &mut Effects,
        now: i64,
    ) -> Result<()> {
        let (s, assessment) = (p.submission, p.assessment);
        let policy = assessment.policy.clone().unwrap_or_default();
        // The gate row is already the case as it opens (see `opening`).
        let row = gate;
        let clock = clock_of(&row.id, s, assessment, row.trace_context.clone());
        let backend = txn.get_database_backend();
        let mut writes = vec![ClockStore::insert_statement(backend, &clock)];
        let recorded = self.known_queues.lock().expect("known queues").contains(&assessment.queue)
            || fx.known_queues.contains(&assessment.queue);
        if !recorded {
            writes.push(
                known_queue::Entity::insert(known_queue::ActiveModel::from(known_queue::Model {
                    name: assessment.queue.clone(),
                    first_case_at: now,
                }))
                .on_conflict(OnConflict::column(known_queue::Column::Name).do_nothing().to_owned())
                .build(backend),
            );
            fx.known_queues.push(assessment.queue.clone());
        }
        if !s.items.is_empty() {
            writes.push(
                case_content::Entity::insert_many(s.items.iter().map(|i| {
                    case_content::ActiveModel::from(case_content::Model {
                        case_id: row.id.clone(),
                        item_index: i.index as i32,
                        content_key: i.content_key.clone(),
                        jurisdiction: s.jurisdiction.clone(),
                    })
                }))
                .on_conflict(
                    OnConflict::columns([case_content::Column::CaseId, case_content::Column::ItemIndex])
                        .do_nothing()
                        .to_owned(),
                )
                .build(backend),
            );
        }
        // The clock, the queue and the content in one round trip: none reads another.
        crs_platform::db::in_one_round_trip(txn, writes).await?;
        fx.handoffs.send(&UpdateStatusRequest {
            request_id: row.id.clone(),
            status: RequestStatus::Triaged as i32,
            deadline: crate::views::deadline(assessment, Some(&clock), now),
            note: p.note.clone(),
            occurred_at: Some(timestamp_from_millis(now)),
            case_version: row.version as u64,
            ..Default::default()
        });
        let mut details = json!({
            "agency_id": s.agency_id,
            "jurisdiction": s.jurisdiction,
            "legal_instrument": convert::short_name_of::<crs_proto::common::LegalInstrument>(s.legal_instrument),
            "category": convert::short_name_of::<crs_proto::common::Category>(s.category),
            "items": s.items.len(),
            "queue": assessment.queue,
            "priority": assessment.priority,
            "sla_policy": policy.id,
            "human_rights_review": assessment.human_rights_review,
        });
        if let (Some(d), Some(extra)) = (details.as_object_mut(), p.details.as_object()) {
            d.extend(extra.clone());
        }
        fx.record(&row, &p.actor, "enqueue", details);
        fx.clocks.push((clock.clone(), clock));
        tracing::info!(case_id = %row.id, queue = %assessment.queue, "case enqueued");
        Ok(())
    }

    /// Merges the request of the `gate` row into the locked, open `target` case: the request
    /// follows it, the case's deadline comes forward to the request's own when that is earlier,
    /// and its priority rises to the request's when higher.
    async fn merge(
        &self,
        txn: &DatabaseTransaction,
        gate: case::Model,
        target: case::Model,
        p: &Placement<'_>,
        fx: &mut Effects,
        now: i64,
    ) -> Result<()> {
        let (s, assessment) = (p.submission, p.assessment);
        let state = State::new(crs_domain::Status::Received)
            .next(Command::Merge)
            .map_err(|r| ReviewError::refused(&gate.id, crs_domain::case::Refusal::State(r)))?;
        case::Entity::delete_by_id(gate.id.clone()).exec(txn).await?;
        let own_due = clock_of(&gate.id, s, assessment, None).deadline.due_at(now);
        let (target, brought_forward) = answer_for(txn, target, own_due, assessment.priority, fx, now).await?;
        let version = p.version + 1;
        // A request placed again after the case it followed was withdrawn moves to its new case.
        merged_request::Entity::insert(merged_request::ActiveModel::from(merged_request::Model {
            request_id: gate.id.clone(),
            case_id: target.id.clone(),
            submission: s.encode_to_vec(),
            assessment: assessment.encode_to_vec(),
            status: wire::<RequestStatus, _>(state.status),
            version,
            merged_at: now,
            finished_at: None,
            text_redacted_at: None,
        }))
        .on_conflict(
            OnConflict::column(merged_request::Column::RequestId)
                .update_columns([
                    merged_request::Column::CaseId,
                    merged_request::Column::Status,
                    merged_request::Column::Version,
                    merged_request::Column::MergedAt,
                    merged_request::Column::FinishedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
        let case_submission = store::submission(&target)?;
        let clock = ClockStore::load(txn, &target.id, false).await?;
        self.outbox
            .send(
                txn,
                &UpdateStatusRequest {
                    request_id: gate.id.clone(),
                    status: wire::<RequestStatus, _>(state.status),
                    deadline: crate::views::deadline(&store::assessment(&target)?, clock.as_ref(), now),
                    note: format!(
                        "merged into case {}, which reviews the same content for {}: its decision answers this request",
                        target.id, case_submission.jurisdiction
                    ),
                    occurred_at: Some(timestamp_from_millis(now)),
                    case_version: version as u64,
                    ..Default::default()
                },
            )
            .await?;
        fx.record(
            &target,
            &p.actor,
            "merge",
            json!({
                "request_id": gate.id,
                "agency_id": s.agency_id,
                "legal_instrument": convert::short_name_of::<crs_proto::common::LegalInstrument>(s.legal_instrument),
                "case_items": case_items(s, &case_submission),
                "due_at": own_due,
                "deadline_brought_forward": brought_forward,
                "priority": assessment.priority,
            }),
        );
        tracing::info!(request_id = %gate.id, case_id = %target.id, "request merged into an open case");
        Ok(())
    }

    /// What follows when `row`'s case closes (decided or withdrawn) inside `txn`: its content is
    /// free again, and each request merged into it is answered by the decision, or, if the case
    /// was withdrawn, placed again. Returns the merged requests a decision answered, each with
    /// the decisions on its own items, for triage's history.
    pub(crate) async fn case_closed(
        &self,
        txn: &DatabaseTransaction,
        row: &case::Model,
        closing: Closing<'_>,
        fx: &mut Effects,
        now: i64,
    ) -> Result<Vec<(Submission, Vec<ItemDecision>)>> {
        hand_over_content(txn, &row.id).await?;
        let followers = merged_request::Entity::find()
            .filter(merged_request::Column::CaseId.eq(row.id.clone()))
            .filter(merged_request::Column::Status.eq(RequestStatus::Merged as i32))
            .order_by_asc(merged_request::Column::MergedAt)
            .all(txn)
            .await?;
        if followers.is_empty() {
            return Ok(Vec::new());
        }
        let case_submission = store::submission(row)?;
        let mut answered = Vec::new();
        for m in followers {
            let submission = decode_submission(&m)?;
            match &closing {
                Closing::Decided { decisions, deadline } => {
                    let state = State::new(crs_domain::Status::Merged)
                        .next(Command::FollowDecision)
                        .map_err(|r| ReviewError::refused(&m.request_id, crs_domain::case::Refusal::State(r)))?;
                    let own = decisions_for(&submission, &case_submission, decisions);
                    self.outbox
                        .send(
                            txn,
                            &UpdateStatusRequest {
                                request_id: m.request_id.clone(),
                                status: wire::<RequestStatus, _>(state.status),
                                item_decisions: own.clone(),
                                deadline: deadline.clone(),
                                note: format!("decided in case {}: {}", row.id, row.decision_summary),
                                occurred_at: Some(timestamp_from_millis(now)),
                                case_version: (m.version + 1) as u64,
                                ..Default::default()
                            },
                        )
                        .await?;
                    self.outbox
                        .send(
                            txn,
                            &NotifyRequest {
                                kind: NotificationKind::Decided as i32,
                                submission: Some(submission.clone()),
                                decisions: own.clone(),
                                message: row.decision_summary.clone(),
                                deadline: deadline.clone(),
                                decided_at: Some(timestamp_from_millis(now)),
                                decided_in_case: row.id.clone(),
                                ..Default::default()
                            },
                        )
                        .await?;
                    finish(txn, m, state.status, now).await?;
                    answered.push((submission, own));
                }
                Closing::Withdrawn => {
                    // The case it followed is gone: the request is placed again on its own.
                    let assessment = Assessment::decode(m.assessment.as_slice())
                        .map_err(|e| ReviewError::Internal(anyhow::Error::from(e)))?;
                    let version = m.version;
                    let gate = opening(&submission, &assessment, version, row.trace_context.clone(), now);
                    case::Entity::insert(case::ActiveModel::from(gate.clone())).exec_without_returning(txn).await?;
                    finish(txn, m, crs_domain::Status::Triaged, now).await?;
                    let placement = Placement {
                        submission: &submission,
                        assessment: &assessment,
                        version,
                        actor: "system:merge".into(),
                        note: format!("opened as a case of its own: case {} that it followed was withdrawn", row.id),
                        details: json!({ "followed_withdrawn_case": row.id }),
                    };
                    Box::pin(self.place(txn, gate, placement, fx, now)).await?;
                }
            }
        }
        Ok(answered)
    }

    /// The agency withdraws a request that follows a case. The case's lock orders this against
    /// the case's decision: whichever comes first is what the agency is told.
    pub(crate) async fn withdraw_merged(
        &self,
        txn: DatabaseTransaction,
        p: &Principal,
        merged: merged_request::Model,
        reason: &str,
        now: i64,
    ) -> Result<Case> {
        let row = store::lock(&txn, &merged.case_id).await?;
        let merged = merged_request::Entity::find_by_id(merged.request_id.clone())
            .one(&txn)
            .await?
            .ok_or_else(|| ReviewError::NotFound(format!("case {}", merged.request_id)))?;
        let status = convert::status(merged.status).unwrap_or(crs_domain::Status::Merged);
        let state = match State::new(status).next(Command::Withdraw) {
            Ok(state) => state,
            Err(_) if status == crs_domain::Status::Decided => {
                return Err(ReviewError::AlreadyDecided {
                    id: merged.request_id,
                    decision: format!("in case {}: {}", row.id, row.decision_summary),
                });
            }
            Err(_) if status == crs_domain::Status::Withdrawn => return merged_view(&merged),
            Err(r) => return Err(ReviewError::refused(&merged.request_id, crs_domain::case::Refusal::State(r))),
        };
        // The withdrawal's own gate row (inserted by the caller) is not a case.
        case::Entity::delete_by_id(merged.request_id.clone()).exec(&txn).await?;
        self.outbox
            .send(
                &txn,
                &UpdateStatusRequest {
                    request_id: merged.request_id.clone(),
                    status: wire::<RequestStatus, _>(state.status),
                    note: reason.to_owned(),
                    occurred_at: Some(timestamp_from_millis(now)),
                    case_version: (merged.version + 1) as u64,
                    ..Default::default()
                },
            )
            .await?;
        let mut fx = Effects::default();
        fx.record(
            &row,
            &p.subject(),
            "withdraw_merged",
            json!({ "request_id": merged.request_id, "reason": crate::commands::agency_text(reason) }),
        );
        let merged = finish(&txn, merged, state.status, now).await?;
        fx.write(&txn, now).await?;
        txn.commit().await?;
        self.outbox.wake();
        tracing::info!(request_id = %merged.request_id, case_id = %row.id, "merged request withdrawn by the agency");
        merged_view(&merged)
    }
}

/// Makes the locked case `row` answer for another request too: due by `due_by` when that is
/// earlier than its own deadline, ranked at `priority` when that is higher. Returns the row as
/// stored and whether the deadline came forward.
async fn answer_for(
    txn: &DatabaseTransaction,
    row: case::Model,
    due_by: i64,
    priority: u32,
    fx: &mut Effects,
    now: i64,
) -> Result<(case::Model, bool)> {
    let brought_forward =
        ClockStore::bring_forward(txn, &row.id, due_by, now).await?.filter(|(was, is)| was.generation != is.generation);
    let mut active: case::ActiveModel = row.clone().into();
    let moved = brought_forward.is_some();
    if let Some((was, is)) = brought_forward {
        active.due_at = Set(is.deadline.due_at(now));
        fx.clocks.push((was, is));
    }
    active.priority = Set(row.priority.max(priority as i32));
    active.version = Set(row.version + 1);
    active.updated_at = Set(now);
    Ok((active.update(txn).await?, moved))
}

/// Gives up the content case `id` held: each piece goes to the oldest other open case of the
/// same jurisdiction naming it, if any (it decides it next), or is free for the next request.
async fn hand_over_content(txn: &DatabaseTransaction, id: &str) -> Result<()> {
    let released = open_content::Entity::find().filter(open_content::Column::CaseId.eq(id)).all(txn).await?;
    open_content::Entity::delete_many().filter(open_content::Column::CaseId.eq(id)).exec(txn).await?;
    if released.is_empty() {
        return Ok(());
    }
    let naming = case_content::Entity::find()
        .filter(one_of(
            txn.get_database_backend(),
            case_content::Column::ContentKey,
            released.iter().map(|r| r.content_key.clone()),
        ))
        .filter(case_content::Column::CaseId.ne(id))
        .all(txn)
        .await?;
    if naming.is_empty() {
        return Ok(());
    }
    let open: Vec<i32> =
        crs_domain::Status::ALL.iter().filter(|s| s.is_open()).map(|s| wire::<RequestStatus, _>(*s)).collect();
    let oldest_first: Vec<String> = case::Entity::find()
        .filter(one_of(txn.get_database_backend(), case::Column::Id, naming.iter().map(|c| c.case_id.clone())))
        .filter(case::Column::Status.is_in(open))
        .order_by_asc(case::Column::CreatedAt)
        .all(txn)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let heirs: Vec<open_content::Model> = released
        .into_iter()
        .filter_map(|r| {
            let heir = oldest_first.iter().find(|case| {
                naming
                    .iter()
                    .any(|n| &n.case_id == *case && n.content_key == r.content_key && n.jurisdiction == r.jurisdiction)
            })?;
            Some(open_content::Model { case_id: heir.clone(), ..r })
        })
        .collect();
    if !heirs.is_empty() {
        open_content::Entity::insert_many(heirs.into_iter().map(open_content::ActiveModel::from))
            .on_conflict(
                OnConflict::columns([open_content::Column::Jurisdiction, open_content::Column::ContentKey])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// The case row request `id` opens as (TRIAGED, after its agency's view at `version`). Inserted
/// before the placement, it is the gate a withdrawal of the same request meets; a merge deletes it.
pub(crate) fn opening(
    s: &Submission,
    assessment: &Assessment,
    version: i64,
    trace: Option<String>,
    now: i64,
) -> case::Model {
    let clock = clock_of(&s.request_id, s, assessment, None);
    case::Model {
        status: RequestStatus::Triaged as i32,
        queue: assessment.queue.clone(),
        priority: assessment.priority as i32,
        due_at: clock.deadline.due_at(now),
        submission: s.encode_to_vec(),
        assessment: assessment.encode_to_vec(),
        trace_context: trace,
        version: version + 1,
        ..crate::commands::placeholder(&s.request_id, now)
    }
}

async fn finish(
    txn: &DatabaseTransaction,
    m: merged_request::Model,
    status: crs_domain::Status,
    now: i64,
) -> Result<merged_request::Model> {
    let version = m.version + 1;
    let mut active: merged_request::ActiveModel = m.into();
    active.status = Set(wire::<RequestStatus, _>(status));
    active.version = Set(version);
    active.finished_at = Set(Some(now));
    Ok(active.update(txn).await?)
}

fn decode_submission(m: &merged_request::Model) -> Result<Submission> {
    Submission::decode(m.submission.as_slice()).map_err(|e| ReviewError::Internal(e.into()))
}

/// For each item of `s`, the index of the case's item naming the same content.
fn case_items(s: &Submission, case: &Submission) -> Vec<u32> {
    let by_key: HashMap<&str, u32> = case.items.iter().map(|i| (i.content_key.as_str(), i.index)).collect();
    s.items.iter().filter_map(|i| by_key.get(i.content_key.as_str()).copied()).collect()
}

/// The case's decisions, told as decisions on the merged request's own items.
fn decisions_for(s: &Submission, case: &Submission, decisions: &[ItemDecision]) -> Vec<ItemDecision> {
    let by_key: HashMap<&str, &ItemDecision> = case
        .items
        .iter()
        .filter_map(|i| Some((i.content_key.as_str(), decisions.iter().find(|d| d.item_index == i.index)?)))
        .collect();
    s.items
        .iter()
        .filter_map(|i| {
            by_key.get(i.content_key.as_str()).map(|d| ItemDecision { item_index: i.index, ..(*d).clone() })
        })
        .collect()
}

/// A merged request as the withdrawal's caller sees it.
fn merged_view(m: &merged_request::Model) -> Result<Case> {
    Ok(Case {
        id: m.request_id.clone(),
        submission: Some(decode_submission(m)?),
        status: m.status,
        updated_at: Some(timestamp_from_millis(m.finished_at.unwrap_or(m.merged_at))),
        version: m.version.max(0) as u64,
        ..Default::default()
    })
}

/// The merged requests of the cases `ids`, oldest first, as reviewers see them.
pub(crate) async fn merged_requests<C: ConnectionTrait>(
    conn: &C,
    ids: &[String],
) -> Result<HashMap<String, Vec<MergedRequest>>> {
    let mut out: HashMap<String, Vec<MergedRequest>> = HashMap::new();
    let rows = merged_request::Entity::find()
        .filter(one_of(conn.get_database_backend(), merged_request::Column::CaseId, ids.iter().cloned()))
        .order_by_asc(merged_request::Column::MergedAt)
        .all(conn)
        .await?;
    if rows.is_empty() {
        return Ok(out);
    }
    let case_items: HashMap<(String, String), u32> = case_content::Entity::find()
        .filter(one_of(
            conn.get_database_backend(),
            case_content::Column::CaseId,
            rows.iter().map(|m| m.case_id.clone()),
        ))
        .all(conn)
        .await?
        .into_iter()
        .map(|c| ((c.case_id, c.content_key), c.item_index as u32))
        .collect();
    for m in rows {
        let Ok(s) = decode_submission(&m) else { continue };
        let assessment = Assessment::decode(m.assessment.as_slice()).unwrap_or_default();
        let clock = clock_of(&m.request_id, &s, &assessment, None);
        out.entry(m.case_id.clone()).or_default().push(MergedRequest {
            request_id: m.request_id.clone(),
            agency_id: s.agency_id.clone(),
            agency_name: s.agency_name.clone(),
            legal_instrument: s.legal_instrument,
            case_items: s
                .items
                .iter()
                .filter_map(|i| case_items.get(&(m.case_id.clone(), i.content_key.clone())).copied())
                .collect(),
            status: m.status,
            received_at: s.received_at,
            merged_at: Some(timestamp_from_millis(m.merged_at)),
            due_at: Some(timestamp_from_millis(clock.deadline.due_at(m.merged_at))),
        });
    }
    Ok(out)
}

/// The items of `row`'s request whose content another open case of the same jurisdiction holds:
/// (item index, content key, holding case). That case decides the content first.
pub(crate) async fn held_elsewhere<C: ConnectionTrait>(
    conn: &C,
    row: &case::Model,
    s: &Submission,
) -> Result<Vec<(u32, String, String)>> {
    let keys = content_keys(s);
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let holders: HashMap<String, String> = open_content::Entity::find()
        .filter(open_content::Column::Jurisdiction.eq(s.jurisdiction.clone()))
        .filter(one_of(conn.get_database_backend(), open_content::Column::ContentKey, keys))
        .filter(open_content::Column::CaseId.ne(row.id.clone()))
        .all(conn)
        .await?
        .into_iter()
        .map(|h| (h.content_key, h.case_id))
        .collect();
    Ok(s.items
        .iter()
        .filter_map(|i| holders.get(&i.content_key).map(|case| (i.index, i.content_key.clone(), case.clone())))
        .collect())
}

/// The other cases naming some of `row`'s content, newest first, with what they decided on it.
pub(crate) async fn related_cases<C: ConnectionTrait>(conn: &C, row: &case::Model) -> Result<Vec<RelatedCase>> {
    let Ok(s) = store::submission(row) else { return Ok(Vec::new()) };
    let keys = content_keys(&s);
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut shared: BTreeMap<String, Vec<case_content::Model>> = BTreeMap::new();
    for c in case_content::Entity::find()
        .filter(one_of(conn.get_database_backend(), case_content::Column::ContentKey, keys))
        .filter(case_content::Column::CaseId.ne(row.id.clone()))
        .all(conn)
        .await?
    {
        shared.entry(c.case_id.clone()).or_default().push(c);
    }
    let mut out = Vec::new();
    let others = case::Entity::find()
        .filter(one_of(conn.get_database_backend(), case::Column::Id, shared.keys().cloned()))
        .order_by_desc(case::Column::CreatedAt)
        .all(conn)
        .await?;
    for other in others {
        let items = &shared[&other.id];
        let decided = store::status(&other)? == crs_domain::Status::Decided;
        let decisions = if decided {
            store::decisions(conn, &other.id)
                .await?
                .iter()
                .filter(|d| items.iter().any(|i| i.item_index == d.item_index))
                .map(crate::views::item_decision)
                .collect()
        } else {
            Vec::new()
        };
        out.push(RelatedCase {
            case_id: other.id.clone(),
            jurisdiction: items.first().map(|i| i.jurisdiction.clone()).unwrap_or_default(),
            status: other.status,
            content_keys: items.iter().map(|i| i.content_key.clone()).collect::<BTreeSet<_>>().into_iter().collect(),
            decisions,
            decided_at: other.decided_at.map(timestamp_from_millis),
        });
    }
    Ok(out)
}
