//! Triage's RPC handlers: assessing a request (stored and handed on), explaining what an
//! assessment would be (nothing stored), and recording decisions for later assessments.

use std::collections::BTreeMap;

use crs_platform::auth::{self, Role};
use crs_platform::db::arrays;
use crs_platform::outbox::{Outbox, OutboxBatch, inbox_first_time, statement};
use crs_platform::shared_txn::{self, SharedTransactions};
use crs_platform::time::{millis_from_timestamp, now_millis};
use crs_proto::common::{Assessment, ItemOutcome, Submission};
use crs_proto::review::EnqueueCaseRequest;
use crs_proto::triage::triage_internal_service_server::TriageInternalService;
use crs_proto::triage::triage_service_server::TriageService;
use crs_proto::triage::*;
use prost::Message;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryTrait, TransactionTrait, Value,
};
use tonic::{Request, Response, Status};

use crate::assess::{Context, RecentDecision, assess};
use crate::entities::{agency_history, assessment, content_decision, content_index};
use crate::error::TriageError;
use crate::policies::LivePolicies;
use crate::sla::Policy;

type Result<T> = std::result::Result<T, TriageError>;

const REVIEWERS: &[Role] = &[Role::Reviewer, Role::SeniorReviewer, Role::Admin];

#[derive(Clone)]
pub struct Triage {
    db: DatabaseConnection,
    outbox: Outbox,
    policies: LivePolicies,
    /// Assessments relayed together are stored together (see `crs_platform::shared_txn`).
    assessments: SharedTransactions<Assessed, TriageError>,
}

/// What became of one relayed request.
struct Assessed {
    assessment: Assessment,
    replayed: bool,
    /// The rule that routed it and the policy set's digest, for the log.
    route: String,
    policies: String,
    /// The hand-off to legal review, written with those of the units sharing its transaction.
    handoff: OutboxBatch,
}

impl Triage {
    pub fn new(db: DatabaseConnection, outbox: Outbox, policies: LivePolicies) -> Self {
        // Nothing in the transaction reads the hand-offs back: they go in one statement.
        let assessments = SharedTransactions::start_deferring(db.clone(), |txn, assessed: &mut [Assessed]| {
            let mut handoffs = OutboxBatch::default();
            for a in assessed {
                handoffs.extend(std::mem::take(&mut a.handoff));
            }
            Box::pin(async move { Ok(handoffs.write(txn).await?) })
        });
        Self { db, outbox, policies, assessments }
    }

    async fn assess(&self, req: AssessRequestRequest) -> Result<AssessRequestResponse> {
        if req.event_id.is_empty() {
            return Err(TriageError::invalid("event_id", "is required"));
        }
        let submission = req.submission.ok_or_else(|| TriageError::invalid("submission", "is required"))?;
        if submission.request_id.is_empty() {
            return Err(TriageError::invalid("submission.request_id", "is required"));
        }
        let received_at = submission
            .received_at
            .as_ref()
            .map(millis_from_timestamp)
            .ok_or_else(|| TriageError::invalid("submission.received_at", "is required"))?;

        let request_id = submission.request_id.clone();
        let this = self.clone();
        let event_id = req.event_id;
        let assessed = self
            .assessments
            .run(shared_txn::handoff(event_id, move |txn, first_time| {
                let (this, submission) = (this.clone(), submission.clone());
                Box::pin(async move { this.store_assessment(txn, first_time, submission, received_at).await })
            }))
            .await?;
        if !assessed.replayed {
            self.outbox.wake();
            let assessment = &assessed.assessment;
            tracing::info!(
                request_id = %request_id,
                policy = %assessment.policy.as_ref().map(|p| p.id.as_str()).unwrap_or_default(),
                priority = assessment.priority,
                queue = %assessment.queue,
                route = %assessed.route,
                policies = %assessed.policies,
                "request triaged"
            );
        }
        Ok(AssessRequestResponse { assessment: Some(assessed.assessment), replayed: assessed.replayed })
    }

    /// Assesses `submission` and stores the assessment and its content inside `txn`, leaving the
    /// hand-off to legal review to be written before the commit; a replayed event (not `first_time`) answers with the assessment
    /// stored the first time.
    async fn store_assessment(
        &self,
        txn: &DatabaseTransaction,
        first_time: bool,
        submission: Submission,
        received_at: i64,
    ) -> Result<Assessed> {
        if !first_time {
            let assessment = stored(txn, &submission.request_id).await?;
            return Ok(Assessed {
                assessment,
                replayed: true,
                route: String::new(),
                policies: String::new(),
                handoff: OutboxBatch::default(),
            });
        }
        let set = self.policies.current();
        let now = now_millis();
        let ctx = context(txn, &submission, set.rules.related.recent_decision_days, now).await?;
        let assessment = assess(&submission, &set, received_at, &ctx, now).assessment;
        let policy_id = assessment.policy.as_ref().map(|p| p.id.clone()).unwrap_or_default();
        let backend = txn.get_database_backend();
        let mut writes = vec![
            assessment::Entity::insert(assessment::ActiveModel::from(assessment::Model {
                request_id: submission.request_id.clone(),
                priority: assessment.priority as i32,
                policy_id,
                queue: assessment.queue.clone(),
                human_rights_review: assessment.human_rights_review,
                duplicate_of: assessment.duplicate_of.clone(),
                encoded: assessment.encode_to_vec(),
                assessed_at: now,
            }))
            .build(backend),
        ];
        // One statement for every item (a request names at most `limits.max_items` at intake).
        if !submission.items.is_empty() {
            let indexed = submission.items.iter().map(|item| {
                content_index::ActiveModel::from(content_index::Model {
                    content_key: item.content_key.clone(),
                    request_id: submission.request_id.clone(),
                    indexed_at: now,
                })
            });
            writes.push(content_index::Entity::insert_many(indexed).build(backend));
        }
        // The assessment and its content in one round trip: neither reads the other.
        crs_platform::db::in_one_round_trip(txn, writes).await?;
        let route = assessment.route_rule.clone();
        let mut handoff = OutboxBatch::default();
        handoff.send(&EnqueueCaseRequest {
            event_id: String::new(),
            submission: Some(submission),
            assessment: Some(assessment.clone()),
        });
        Ok(Assessed { assessment, replayed: false, route, policies: set.digest.clone(), handoff })
    }

    async fn explain(&self, req: ExplainAssessmentRequest) -> Result<ExplainAssessmentResponse> {
        let submission = req.submission.ok_or_else(|| TriageError::invalid("submission", "is required"))?;
        let now = now_millis();
        let received_at = submission.received_at.as_ref().map_or(now, millis_from_timestamp);
        let set = self.policies.current();
        let ctx = context(&self.db, &submission, set.rules.related.recent_decision_days, now).await?;
        let explained = assess(&submission, &set, received_at, &ctx, now);
        Ok(ExplainAssessmentResponse {
            assessment: Some(explained.assessment),
            sla_policies: explained.sla_policies,
            routes: explained.routes,
            human_rights_rules: explained.human_rights_rules,
        })
    }

    async fn record_decision(&self, req: RecordDecisionRequest) -> Result<RecordDecisionResponse> {
        if req.event_id.is_empty() {
            return Err(TriageError::invalid("event_id", "is required"));
        }
        if req.case_id.is_empty() {
            return Err(TriageError::invalid("case_id", "is required"));
        }
        let decided_at = req
            .decided_at
            .as_ref()
            .map(millis_from_timestamp)
            .ok_or_else(|| TriageError::invalid("decided_at", "is required"))?;
        for (i, c) in req.content.iter().enumerate() {
            if c.content_key.is_empty() {
                return Err(TriageError::invalid(&format!("content[{i}].content_key"), "is required"));
            }
            if matches!(ItemOutcome::try_from(c.outcome), Ok(ItemOutcome::Pending) | Err(_)) {
                return Err(TriageError::invalid(&format!("content[{i}].outcome"), "must be a decided outcome"));
            }
        }
        let txn = self.db.begin().await?;
        if !inbox_first_time(&txn, &req.event_id).await? {
            return Ok(RecordDecisionResponse { replayed: true });
        }
        // One row per content key: a key named twice in a case counts once.
        let by_key: BTreeMap<&str, i32> = req.content.iter().map(|c| (c.content_key.as_str(), c.outcome)).collect();
        for (key, outcome) in by_key {
            content_decision::Entity::insert(content_decision::ActiveModel::from(content_decision::Model {
                content_key: key.to_owned(),
                case_id: req.case_id.clone(),
                jurisdiction: req.jurisdiction.clone(),
                outcome,
                decided_at,
            }))
            .on_conflict(
                OnConflict::columns([content_decision::Column::ContentKey, content_decision::Column::CaseId])
                    .update_columns([content_decision::Column::Outcome, content_decision::Column::DecidedAt])
                    .to_owned(),
            )
            .exec(&txn)
            .await?;
        }
        let now = now_millis();
        for r in &req.requests {
            let granted = i64::from(r.items_granted > 0);
            // Adds to the agency's counts in one statement, so concurrent records never lose one.
            agency_history::Entity::insert(agency_history::ActiveModel::from(agency_history::Model {
                agency_id: r.agency_id.clone(),
                decided_requests: 1,
                granted_requests: granted,
                updated_at: now,
            }))
            .on_conflict(
                OnConflict::column(agency_history::Column::AgencyId)
                    .value(
                        agency_history::Column::DecidedRequests,
                        Expr::cust("agency_history.decided_requests + excluded.decided_requests"),
                    )
                    .value(
                        agency_history::Column::GrantedRequests,
                        Expr::cust("agency_history.granted_requests + excluded.granted_requests"),
                    )
                    .update_column(agency_history::Column::UpdatedAt)
                    .to_owned(),
            )
            .exec(&txn)
            .await?;
        }
        txn.commit().await?;
        tracing::info!(case_id = %req.case_id, content = req.content.len(), requests = req.requests.len(), "decision recorded");
        Ok(RecordDecisionResponse { replayed: false })
    }

    async fn stored(&self, request_id: &str) -> Result<Assessment> {
        stored(&self.db, request_id).await
    }
}

/// The assessment stored for `request_id`.
async fn stored(db: &impl ConnectionTrait, request_id: &str) -> Result<Assessment> {
    let row = assessment::Entity::find_by_id(request_id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| TriageError::NotFound(request_id.to_owned()))?;
    Assessment::decode(row.encoded.as_slice()).map_err(|e| TriageError::Internal(e.into()))
}

/// What triage already knows about `s`'s content and agency: the earlier requests naming the
/// same content, recent decisions on it and the agency's record, in one statement. Each request
/// is a unit of a shared transaction, and a statement is a round trip the units behind it wait
/// for: read as three, these were a third of triage's statements per request.
async fn context(db: &impl ConnectionTrait, s: &Submission, recent_days: u32, now: i64) -> Result<Context> {
    let since = now - i64::from(recent_days) * 86_400_000;
    let mut values: Vec<Value> = vec![s.agency_id.clone().into(), s.request_id.clone().into(), since.into()];
    // `source` tells the rows apart; the other columns are each part's own, or NULL.
    let mut sql = String::from(
        "SELECT 'agency' AS source, NULL AS content_key, NULL AS ref_id, NULL AS jurisdiction, \
                decided_requests AS n1, granted_requests AS n2 \
         FROM agency_history WHERE agency_id = $1",
    );
    if !s.items.is_empty() {
        // On PostgreSQL the keys go as one array, so the statement's text is the same whatever
        // the number of items: one statement to prepare and plan, not one per count.
        let keys =
            arrays::one_of_sql(db.get_database_backend(), &mut values, s.items.iter().map(|i| i.content_key.clone()));
        sql.push_str(&format!(
            " UNION ALL SELECT 'earlier', content_key, request_id, NULL, NULL, NULL \
              FROM content_index WHERE content_key {keys} AND request_id <> $2 \
              UNION ALL SELECT 'decision', content_key, case_id, jurisdiction, outcome, decided_at \
              FROM content_decisions WHERE content_key {keys} AND decided_at >= $3"
        ));
    }
    let rows = db.query_all_raw(statement(db.get_database_backend(), &sql, values)).await?;
    let mut earlier: BTreeMap<String, usize> = BTreeMap::new();
    let mut decisions: Vec<(i64, RecentDecision)> = Vec::new();
    let (mut agency_decided, mut agency_granted) = (0, 0);
    let count = |n: Option<i64>| n.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32;
    for row in rows {
        let text = |column: &str| row.try_get::<Option<String>>("", column).map(Option::unwrap_or_default);
        let number = |column: &str| row.try_get::<Option<i64>>("", column);
        match row.try_get::<String>("", "source")?.as_str() {
            "agency" => (agency_decided, agency_granted) = (count(number("n1")?), count(number("n2")?)),
            "earlier" => *earlier.entry(text("ref_id")?).or_default() += 1,
            _ => decisions.push((
                number("n2")?.unwrap_or(0),
                RecentDecision {
                    content_key: text("content_key")?,
                    case_id: text("ref_id")?,
                    jurisdiction: text("jurisdiction")?,
                    outcome: ItemOutcome::try_from(number("n1")?.unwrap_or(0) as i32)
                        .unwrap_or(ItemOutcome::Unspecified),
                },
            )),
        }
    }
    // Newest first.
    decisions.sort_by_key(|(decided_at, _)| std::cmp::Reverse(*decided_at));
    Ok(Context {
        earlier: earlier.into_iter().collect(),
        recent_decisions: decisions.into_iter().map(|(_, d)| d).collect(),
        agency_decided,
        agency_granted,
    })
}

#[tonic::async_trait]
impl TriageService for Triage {
    async fn get_assessment(
        &self,
        request: Request<GetAssessmentRequest>,
    ) -> std::result::Result<Response<Assessment>, Status> {
        let principal = auth::principal(&request)?;
        auth::require_role(&principal, REVIEWERS).map_err(TriageError::from)?;
        Ok(Response::new(self.stored(&request.get_ref().request_id).await?))
    }

    async fn explain_assessment(
        &self,
        request: Request<ExplainAssessmentRequest>,
    ) -> std::result::Result<Response<ExplainAssessmentResponse>, Status> {
        let principal = auth::principal(&request)?;
        auth::require_role(&principal, REVIEWERS).map_err(TriageError::from)?;
        Ok(Response::new(self.explain(request.into_inner()).await?))
    }

    async fn list_sla_policies(
        &self,
        request: Request<ListSlaPoliciesRequest>,
    ) -> std::result::Result<Response<ListSlaPoliciesResponse>, Status> {
        let principal = auth::principal(&request)?;
        auth::require_role(&principal, REVIEWERS).map_err(TriageError::from)?;
        Ok(Response::new(ListSlaPoliciesResponse {
            policies: self.policies.current().sla.all().iter().map(Policy::to_proto).collect(),
        }))
    }
}

/// Only the services the access table lists reach this (see `crs_platform::access`).
#[tonic::async_trait]
impl TriageInternalService for Triage {
    async fn assess_request(
        &self,
        request: Request<AssessRequestRequest>,
    ) -> std::result::Result<Response<AssessRequestResponse>, Status> {
        auth::principal(&request)?;
        Ok(Response::new(self.assess(request.into_inner()).await?))
    }

    async fn record_decision(
        &self,
        request: Request<RecordDecisionRequest>,
    ) -> std::result::Result<Response<RecordDecisionResponse>, Status> {
        auth::principal(&request)?;
        Ok(Response::new(Triage::record_decision(self, request.into_inner()).await?))
    }
}
