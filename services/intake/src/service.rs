//! Intake's state shared by its handlers, and what several of them use: the calling agency,
//! the requests a caller may see, and the agency's history of status changes.

use std::sync::Arc;

use crs_platform::auth::{self, Principal, Role, TokenIssuer};
use crs_platform::outbox::Outbox;
use crs_platform::peers::PeerChannel;
use crs_platform::redis::RedisHandle;
use crs_platform::revocation::Revocations;
use crs_platform::secrets::SecretBox;
use crs_platform::shared_txn::SharedTransactions;
use crs_proto::intake::AgencyStatus;
use crs_proto::review::legal_review_internal_service_client::LegalReviewInternalServiceClient;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Limits;
use crate::entities::{agency, request, request_item};
use crate::error::IntakeError;

pub(crate) type Result<T> = std::result::Result<T, IntakeError>;

#[derive(Clone)]
pub struct Intake {
    pub(crate) db: DatabaseConnection,
    pub(crate) outbox: Outbox,
    /// Signs the tokens `IssueToken` hands out.
    pub(crate) issuer: TokenIssuer,
    pub(crate) redis: RedisHandle,
    pub(crate) revocations: Revocations,
    pub(crate) limits: Arc<Limits>,
    /// How long an idempotency key names its request (`retention.idempotency_secs`).
    pub(crate) idempotency_secs: i64,
    pub(crate) rate_limits: Arc<crate::limits::RateLimitConfig>,
    pub(crate) limiter: Arc<crs_ratelimit::Limiter>,
    /// Woken after every commit that adds status events, so open streams send them at once.
    pub(crate) events: Arc<Notify>,
    /// Cancelled when the service drains: open streams end.
    pub(crate) stopping: CancellationToken,
    /// Legal review, asked while the agency waits whether a withdrawal came before a decision.
    pub(crate) review: LegalReviewInternalServiceClient<PeerChannel>,
    /// Seals agencies' callback secrets; intake never opens them (only notification signs).
    pub(crate) secrets: SecretBox,
    /// Open `WatchRequests` streams per agency.
    pub(crate) watchers: crate::watch::Watchers,
    /// Which submissions are taken in when more come than can be stored in time.
    pub(crate) admission: crate::admission::Admission,
    /// Where submissions are stored, many to a transaction.
    pub(crate) group_commit: crate::group_commit::GroupCommit,
    /// Status updates relayed together are applied together (see `crs_platform::shared_txn`).
    pub(crate) status_updates: SharedTransactions<crate::projection::Projected, IntakeError>,
}

impl Intake {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        issuer: TokenIssuer,
        redis: RedisHandle,
        revocations: Revocations,
        review: LegalReviewInternalServiceClient<PeerChannel>,
        limits: Limits,
        idempotency_secs: i64,
        rate_limits: crate::limits::RateLimitConfig,
        secrets: SecretBox,
        group_commit: &crate::config::GroupCommitConfig,
        call_bound: std::time::Duration,
    ) -> Self {
        let limiter = Arc::new(crs_ratelimit::Limiter::new(redis.clone(), &rate_limits.key_prefix));
        let events = Arc::new(Notify::new());
        let committed = {
            let (outbox, events) = (outbox.clone(), events.clone());
            Arc::new(move || {
                outbox.wake();
                events.notify_waiters();
            })
        };
        let admission = crate::admission::Admission::new(call_bound, group_commit.max_batch);
        let group_commit =
            crate::group_commit::GroupCommit::start(db.clone(), group_commit, committed, admission.writers());
        let status_updates = SharedTransactions::start_deferring(db.clone(), crate::projection::record_deferred_events);
        Self {
            rate_limits: Arc::new(rate_limits),
            limiter,
            db,
            outbox,
            issuer,
            redis,
            revocations,
            limits: Arc::new(limits),
            idempotency_secs,
            events,
            stopping: CancellationToken::new(),
            review,
            secrets,
            watchers: Default::default(),
            admission,
            group_commit,
            status_updates,
        }
    }

    /// The calling agency's record; suspended or unknown agencies are turned away.
    pub(crate) async fn calling_agency(&self, principal: &Principal) -> Result<agency::Model> {
        let id = auth::require_agency(principal)?;
        let agency = agency::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| auth::AuthError::Invalid(format!("unknown agency {id}")))?;
        active(agency)
    }

    /// A request the caller may see: its own agency's, or any for reviewers and admins. Services
    /// read nothing here: they learn what they need through their hand-offs. Another agency's
    /// request is reported as not found, so existence does not leak.
    pub(crate) async fn visible_request(&self, principal: &Principal, id: &str) -> Result<request::Model> {
        let not_found = || IntakeError::NotFound { kind: "request", id: id.to_owned() };
        if let Principal::Agency { .. } = principal {
            self.calling_agency(principal).await?;
        } else {
            auth::require_role(principal, &[Role::Reviewer, Role::SeniorReviewer, Role::Admin])?;
        }
        let row = request::Entity::find_by_id(id.to_owned()).one(&self.db).await?.ok_or_else(not_found)?;
        match principal {
            Principal::Agency { id: agency_id } if *agency_id != row.agency_id => Err(not_found()),
            _ => Ok(row),
        }
    }

    pub(crate) async fn items_of(&self, request_id: &str) -> Result<Vec<request_item::Model>> {
        Ok(request_item::Entity::find()
            .filter(request_item::Column::RequestId.eq(request_id))
            .order_by_asc(request_item::Column::ItemIndex)
            .all(&self.db)
            .await?)
    }
}

/// The agency, if it may act: a suspended agency may not.
pub(crate) fn active(agency: agency::Model) -> Result<agency::Model> {
    if agency.status != AgencyStatus::Active as i32 {
        return Err(IntakeError::AgencySuspended(agency.id));
    }
    Ok(agency)
}
