//! Intake's shared state and the gRPC surface: each RPC authenticates, then calls the handler of
//! its concern (`requests`, `agencies`, `watch`).

use std::pin::Pin;
use std::sync::Arc;

use crs_platform::auth::{self, Principal, Role, TokenAuthority};
use crs_platform::outbox::{Outbox, statement};
use crs_platform::redis::RedisHandle;
use crs_platform::revocation::Revocations;
use crs_proto::common::RequestStatus;
use crs_proto::intake::agency_admin_service_server::AgencyAdminService;
use crs_proto::intake::intake_service_server::IntakeService;
use crs_proto::intake::*;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::Limits;
use crate::entities::{agency, request, request_item, status_event};
use crate::error::IntakeError;

pub(crate) type Result<T> = std::result::Result<T, IntakeError>;

#[derive(Clone)]
pub struct Intake {
    pub(crate) db: DatabaseConnection,
    pub(crate) outbox: Outbox,
    pub(crate) authority: TokenAuthority,
    pub(crate) redis: RedisHandle,
    pub(crate) revocations: Revocations,
    pub(crate) limits: Arc<Limits>,
    pub(crate) rate_limits: Arc<crate::limits::RateLimitConfig>,
    pub(crate) limiter: Arc<crs_ratelimit::Limiter>,
    /// Woken after every commit that adds status events, so open streams send them at once.
    pub(crate) events: Arc<Notify>,
    /// Cancelled when the service drains: open streams end.
    pub(crate) stopping: CancellationToken,
}

impl Intake {
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        authority: TokenAuthority,
        redis: RedisHandle,
        revocations: Revocations,
        limits: Limits,
        rate_limits: crate::limits::RateLimitConfig,
    ) -> Self {
        let limiter = Arc::new(crs_ratelimit::Limiter::new(redis.clone(), &rate_limits.key_prefix));
        Self {
            rate_limits: Arc::new(rate_limits),
            limiter,
            db,
            outbox,
            authority,
            redis,
            revocations,
            limits: Arc::new(limits),
            events: Arc::new(Notify::new()),
            stopping: CancellationToken::new(),
        }
    }

    /// The calling agency's record; suspended or unknown agencies are turned away.
    pub(crate) async fn calling_agency(&self, principal: &Principal) -> Result<agency::Model> {
        let id = auth::require_agency(principal)?;
        let agency = agency::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| auth::AuthError::Invalid(format!("unknown agency {id}")))?;
        if agency.status != AgencyStatus::Active as i32 {
            return Err(IntakeError::AgencySuspended(agency.id));
        }
        Ok(agency)
    }

    /// A request the caller may see: its own agency's, or any for reviewers, admins and services.
    /// Another agency's request is reported as not found, so existence does not leak.
    pub(crate) async fn visible_request(&self, principal: &Principal, id: &str) -> Result<request::Model> {
        let not_found = || IntakeError::NotFound { kind: "request", id: id.to_owned() };
        if let Principal::Agency { .. } = principal {
            self.calling_agency(principal).await?;
        } else if !matches!(principal, Principal::Service { .. }) {
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

/// Appends a status event to the agency's history. The agency row's lock orders its events:
/// sequence numbers become visible in the order they were given, so a cursor never skips one.
pub(crate) async fn record_event<C: ConnectionTrait>(
    conn: &C,
    row: &request::Model,
    status: RequestStatus,
    note: &str,
) -> Result<()> {
    let bump = statement(
        conn.get_database_backend(),
        "UPDATE agencies SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq",
        vec![row.agency_id.clone().into()],
    );
    let seq: i64 = conn
        .query_one_raw(bump)
        .await?
        .ok_or_else(|| IntakeError::Internal(anyhow::anyhow!("agency {} vanished", row.agency_id)))?
        .try_get("", "event_seq")?;
    status_event::ActiveModel {
        agency_id: Set(row.agency_id.clone()),
        request_id: Set(row.id.clone()),
        status: Set(status as i32),
        note: Set(note.to_owned()),
        occurred_at: Set(row.status_at),
        agency_seq: Set(seq),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(())
}

type Reply<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl IntakeService for Intake {
    async fn submit_request(&self, request: Request<SubmitRequestRequest>) -> Reply<SubmitRequestResponse> {
        let principal = auth::principal(&request)?;
        let req = request.into_inner();
        let (jurisdiction, category) = (req.jurisdiction.clone(), req.category);
        let result = self.submit(principal, req).await;
        crate::metrics::count_submission(&jurisdiction, category, result.as_ref().map(|(r, _)| r.replayed));
        let (reply, decision) = result?;
        let mut response = Response::new(reply);
        if let Some(decision) = decision {
            for kv in crate::limits::metadata(&decision).into_headers() {
                if let (Some(k), v) = kv {
                    response.metadata_mut().as_mut().insert(k, v);
                }
            }
        }
        Ok(response)
    }

    async fn get_request(&self, request: Request<GetRequestRequest>) -> Reply<GetRequestResponse> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.get(principal, request.into_inner()).await?))
    }

    async fn list_requests(&self, request: Request<ListRequestsRequest>) -> Reply<ListRequestsResponse> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.list(principal, request.into_inner()).await?))
    }

    async fn withdraw_request(&self, request: Request<WithdrawRequestRequest>) -> Reply<WithdrawRequestResponse> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.withdraw(principal, request.into_inner()).await?))
    }

    async fn provide_information(
        &self,
        request: Request<ProvideInformationRequest>,
    ) -> Reply<ProvideInformationResponse> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.provide_information(principal, request.into_inner()).await?))
    }

    type WatchRequestsStream = Pin<Box<dyn futures::Stream<Item = std::result::Result<RequestUpdate, Status>> + Send>>;

    async fn watch_requests(&self, request: Request<WatchRequestsRequest>) -> Reply<Self::WatchRequestsStream> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.watch(principal, request.into_inner()).await?))
    }

    async fn update_status(&self, request: Request<UpdateStatusRequest>) -> Reply<UpdateStatusResponse> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.update_status(principal, request.into_inner()).await?))
    }
}

#[tonic::async_trait]
impl AgencyAdminService for Intake {
    async fn create_agency(&self, request: Request<CreateAgencyRequest>) -> Reply<Agency> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.create_agency(principal, request.into_inner()).await?))
    }

    async fn update_agency(&self, request: Request<UpdateAgencyRequest>) -> Reply<Agency> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.update_agency(principal, request.into_inner()).await?))
    }

    async fn suspend_agency(&self, request: Request<SuspendAgencyRequest>) -> Reply<Agency> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.suspend_agency(principal, request.into_inner()).await?))
    }

    async fn get_agency(&self, request: Request<GetAgencyRequest>) -> Reply<Agency> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.get_agency(principal, request.into_inner()).await?))
    }

    async fn list_agencies(&self, request: Request<ListAgenciesRequest>) -> Reply<ListAgenciesResponse> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.list_agencies(principal, request.into_inner()).await?))
    }

    async fn issue_token(&self, request: Request<IssueTokenRequest>) -> Reply<IssueTokenResponse> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.issue_token(principal, request.into_inner()).await?))
    }

    async fn revoke_token(&self, request: Request<RevokeTokenRequest>) -> Reply<RevokeTokenResponse> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.revoke_token(principal, request.into_inner()).await?))
    }

    async fn set_rate_limit_overrides(&self, request: Request<SetRateLimitOverridesRequest>) -> Reply<Agency> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.set_rate_limit_overrides(principal, request.into_inner()).await?))
    }
}
