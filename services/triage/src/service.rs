//! Triage's RPC handlers.

use crs_domain::deadline::Deadline;
use crs_platform::auth::{self, Role};
use crs_platform::outbox::{Outbox, inbox_first_time};
use crs_platform::time::{millis_from_timestamp, now_millis, timestamp_from_millis};
use crs_proto::ShortName;
use crs_proto::common::{Assessment, Category, Keyword, Submission};
use crs_proto::review::EnqueueCaseRequest;
use crs_proto::triage::triage_internal_service_server::TriageInternalService;
use crs_proto::triage::triage_service_server::TriageService;
use crs_proto::triage::*;
use prost::Message;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait};
use tonic::{Request, Response, Status};

use crate::entities::{assessment, content_index};
use crate::error::TriageError;
use crate::policy::{Policies, Policy};

type Result<T> = std::result::Result<T, TriageError>;

#[derive(Clone)]
pub struct Triage {
    db: DatabaseConnection,
    outbox: Outbox,
    policies: std::sync::Arc<Policies>,
}

/// Requests with a deadline this short go to the urgent queue.
const URGENT_BUDGET_SECS: i64 = 4 * 3600;

impl Triage {
    pub fn new(db: DatabaseConnection, outbox: Outbox, policies: Policies) -> Self {
        Self { db, outbox, policies: std::sync::Arc::new(policies) }
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

        let txn = self.db.begin().await?;
        if !inbox_first_time(&txn, &req.event_id).await? {
            drop(txn);
            return Ok(AssessRequestResponse {
                assessment: Some(self.stored(&submission.request_id).await?),
                replayed: true,
            });
        }
        let keys: Vec<String> = submission.items.iter().map(|i| i.content_key.clone()).collect();
        let earlier = content_index::Entity::find()
            .filter(content_index::Column::ContentKey.is_in(keys.clone()))
            .filter(content_index::Column::RequestId.ne(submission.request_id.clone()))
            .all(&txn)
            .await?;

        let policy = self.policies.select(&submission);
        let assessment = assess(&submission, policy, received_at, &earlier);
        assessment::ActiveModel::from(assessment::Model {
            request_id: submission.request_id.clone(),
            priority: assessment.priority as i32,
            policy_id: policy.id.clone(),
            queue: assessment.queue.clone(),
            human_rights_review: assessment.human_rights_review,
            duplicate_of: assessment.duplicate_of.clone(),
            encoded: assessment.encode_to_vec(),
            assessed_at: now_millis(),
        })
        .insert(&txn)
        .await?;
        let now = now_millis();
        for key in keys {
            content_index::ActiveModel::from(content_index::Model {
                content_key: key,
                request_id: submission.request_id.clone(),
                indexed_at: now,
            })
            .insert(&txn)
            .await?;
        }
        self.outbox
            .send(
                &txn,
                &EnqueueCaseRequest {
                    event_id: String::new(),
                    submission: Some(submission.clone()),
                    assessment: Some(assessment.clone()),
                },
            )
            .await?;
        txn.commit().await?;
        self.outbox.wake();
        tracing::info!(
            request_id = %submission.request_id,
            policy = %policy.id,
            priority = assessment.priority,
            queue = %assessment.queue,
            "request triaged"
        );
        Ok(AssessRequestResponse { assessment: Some(assessment), replayed: false })
    }

    async fn stored(&self, request_id: &str) -> Result<Assessment> {
        let row = assessment::Entity::find_by_id(request_id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| TriageError::NotFound(request_id.to_owned()))?;
        Assessment::decode(row.encoded.as_slice()).map_err(|e| TriageError::Internal(e.into()))
    }
}

/// Scores a request: shorter legal deadlines and binding orders first; speech categories get a
/// human-rights review flag; content already named by earlier requests is reported.
fn assess(s: &Submission, policy: &Policy, received_at: i64, earlier: &[content_index::Model]) -> Assessment {
    let mut reasons = vec![format!("SLA policy {} ({})", policy.id, policy.legal_reference)];
    let mut priority: u32 = match policy.budget_secs {
        b if b <= 3600 => 90,
        b if b <= URGENT_BUDGET_SECS => 75,
        b if b <= 86_400 => 55,
        b if b <= 259_200 => 35,
        _ => 20,
    };
    let binding = crs_proto::convert::instrument(s.legal_instrument).is_some_and(|i| i.is_binding());
    if binding {
        priority += 10;
        reasons.push("legally binding order".into());
    }
    let category = Category::try_from(s.category).unwrap_or(Category::Unspecified);
    if matches!(
        category,
        Category::ProtectionOfMinors | Category::RiskForPublicSecurity | Category::Violence | Category::SelfHarm
    ) {
        priority += 5;
        reasons.push(format!("high-harm category {}", category.short_name()));
    }
    // Requests about speech and civic discourse carry the risk of over-removal of protected
    // expression: a human-rights review looks at them before anything is restricted.
    let speech_keywords = [Keyword::Defamation, Keyword::MisinformationDisinformation, Keyword::ElectionInterference];
    let human_rights_review =
        matches!(category, Category::IllegalOrHarmfulSpeech | Category::NegativeEffectsOnCivicDiscourseOrElections)
            || s.keywords.iter().any(|k| speech_keywords.iter().any(|sk| *sk as i32 == *k));
    if human_rights_review {
        reasons.push("speech-related: human-rights review".into());
    }
    let mut duplicate_of = String::new();
    if !earlier.is_empty() {
        let mut by_request: std::collections::BTreeMap<&str, usize> = Default::default();
        for e in earlier {
            *by_request.entry(e.request_id.as_str()).or_default() += 1;
        }
        for (request_id, n) in &by_request {
            reasons.push(format!("{n} item(s) already named in request {request_id}"));
            if *n == s.items.len() && duplicate_of.is_empty() {
                duplicate_of = (*request_id).to_owned();
            }
        }
    }
    // The initial due time; legal review owns the running deadline from here on.
    let deadline = Deadline::new(policy.budget_secs * 1000, received_at, &policy.warning_percents);
    Assessment {
        request_id: s.request_id.clone(),
        priority: priority.min(100),
        policy: Some(policy.to_proto()),
        due_at: Some(timestamp_from_millis(deadline.due_at(received_at))),
        queue: if policy.budget_secs <= URGENT_BUDGET_SECS { "urgent".into() } else { "standard".into() },
        human_rights_review,
        duplicate_of,
        reasons,
        assessed_at: Some(timestamp_from_millis(now_millis())),
    }
}

#[tonic::async_trait]
impl TriageService for Triage {
    async fn get_assessment(
        &self,
        request: Request<GetAssessmentRequest>,
    ) -> std::result::Result<Response<Assessment>, Status> {
        let principal = auth::principal(&request)?;
        auth::require_role(&principal, &[Role::Reviewer, Role::SeniorReviewer, Role::Admin])
            .map_err(TriageError::from)?;
        Ok(Response::new(self.stored(&request.get_ref().request_id).await?))
    }

    async fn list_sla_policies(
        &self,
        request: Request<ListSlaPoliciesRequest>,
    ) -> std::result::Result<Response<ListSlaPoliciesResponse>, Status> {
        auth::principal(&request)?;
        Ok(Response::new(ListSlaPoliciesResponse {
            policies: self.policies.all().iter().map(Policy::to_proto).collect(),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::BUILT_IN;
    use crs_proto::common::LegalInstrument;

    #[test]
    fn shorter_deadlines_and_binding_orders_come_first() {
        let policies = Policies::parse(BUILT_IN).unwrap();
        let mk = |j: &str, i: LegalInstrument| Submission {
            request_id: "r".into(),
            jurisdiction: j.into(),
            legal_instrument: i as i32,
            category: Category::ScamsAndFraud as i32,
            ..Default::default()
        };
        let tr = mk("TR", LegalInstrument::GovernmentOrder);
        let br = mk("BR", LegalInstrument::GovernmentNotice);
        let urgent = assess(&tr, policies.select(&tr), 0, &[]);
        let normal = assess(&br, policies.select(&br), 0, &[]);
        assert!(urgent.priority > normal.priority);
        assert_eq!(urgent.queue, "urgent");
        assert_eq!(normal.queue, "standard");
        assert_eq!(urgent.due_at.unwrap().seconds, 4 * 3600);
    }

    #[test]
    fn content_named_before_is_reported_as_duplicate() {
        let policies = Policies::parse(BUILT_IN).unwrap();
        let s = Submission {
            request_id: "new".into(),
            jurisdiction: "KZ".into(),
            items: vec![crs_proto::common::Item { content_key: "url:https://x/1".into(), ..Default::default() }],
            ..Default::default()
        };
        let earlier = vec![content_index::Model {
            content_key: "url:https://x/1".into(),
            request_id: "old".into(),
            indexed_at: 0,
        }];
        let a = assess(&s, policies.select(&s), 0, &earlier);
        assert_eq!(a.duplicate_of, "old");
    }
}
