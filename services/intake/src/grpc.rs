//! Intake's gRPC surface: each RPC takes the verified caller and calls the handler of its concern.

use std::pin::Pin;

use crs_platform::auth;
use crs_proto::intake::agency_admin_service_server::AgencyAdminService;
use crs_proto::intake::intake_internal_service_server::IntakeInternalService;
use crs_proto::intake::intake_service_server::IntakeService;
use crs_proto::intake::*;
use tonic::{Request, Response, Status};

use crate::service::Intake;

type Reply<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl IntakeService for Intake {
    async fn submit_request(&self, request: Request<SubmitRequestRequest>) -> Reply<SubmitRequestResponse> {
        let principal = auth::principal(&request)?;
        let admitted = self.admission.admit(crate::admission::call_deadline(request.metadata()));
        let req = request.into_inner();
        let (jurisdiction, category) = (req.jurisdiction.clone(), req.category);
        let result = match admitted {
            Ok(admitted) => self.submit(principal, req, admitted).await,
            Err(saturated) => Err(crate::error::IntakeError::Saturated(saturated)),
        };
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
        let token = request
            .extensions()
            .get::<crs_platform::auth::Verified>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        Ok(Response::new(self.watch(principal, token, request.into_inner()).await?))
    }
}

/// Only the services the access table lists reach these (see `crs_platform::access`).
#[tonic::async_trait]
impl IntakeInternalService for Intake {
    async fn update_status(&self, request: Request<UpdateStatusRequest>) -> Reply<UpdateStatusResponse> {
        auth::principal(&request)?;
        Ok(Response::new(self.update_status(request.into_inner()).await?))
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
