//! Every intake RPC against every kind of caller: who may call it, and what the others get.

mod support;

use crs_platform::auth::{Principal, Role, TokenIssuer};
use crs_proto::common::RequestStatus;
use crs_proto::intake::*;
use crsctl::{Bearer, connect};
use support::{Backend, Intake, valid_request};
use tonic::Code;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    NoToken,
    Garbage,
    ForeignKey,
    OwnAgency,
    OtherAgency,
    SuspendedAgency,
    Reviewer,
    SeniorReviewer,
    Admin,
    Service,
}

const CALLERS: [Caller; 10] = [
    Caller::NoToken,
    Caller::Garbage,
    Caller::ForeignKey,
    Caller::OwnAgency,
    Caller::OtherAgency,
    Caller::SuspendedAgency,
    Caller::Reviewer,
    Caller::SeniorReviewer,
    Caller::Admin,
    Caller::Service,
];

#[derive(Debug, Clone, Copy)]
enum Rpc {
    SubmitRequest,
    GetRequest,
    ListRequests,
    WithdrawRequest,
    ProvideInformation,
    WatchRequests,
    UpdateStatus,
    CreateAgency,
    UpdateAgency,
    SuspendAgency,
    GetAgency,
    ListAgencies,
    IssueToken,
    RevokeToken,
}

const RPCS: [Rpc; 14] = [
    Rpc::SubmitRequest,
    Rpc::GetRequest,
    Rpc::ListRequests,
    Rpc::WithdrawRequest,
    Rpc::ProvideInformation,
    Rpc::WatchRequests,
    Rpc::UpdateStatus,
    Rpc::CreateAgency,
    Rpc::UpdateAgency,
    Rpc::SuspendAgency,
    Rpc::GetAgency,
    Rpc::ListAgencies,
    Rpc::IssueToken,
    Rpc::RevokeToken,
];

/// What each caller gets from each RPC, called on the own agency's request where one is needed.
fn expected(rpc: Rpc, caller: Caller) -> Code {
    use Caller::*;
    match caller {
        NoToken | Garbage | ForeignKey | SuspendedAgency => return Code::Unauthenticated,
        _ => {}
    }
    match rpc {
        Rpc::SubmitRequest | Rpc::ListRequests | Rpc::WatchRequests => match caller {
            OwnAgency | OtherAgency => Code::Ok,
            _ => Code::PermissionDenied,
        },
        // Services learn of requests through hand-offs and read none.
        Rpc::GetRequest => match caller {
            OtherAgency => Code::NotFound,
            Service => Code::PermissionDenied,
            _ => Code::Ok,
        },
        Rpc::WithdrawRequest => match caller {
            OwnAgency => Code::Ok,
            OtherAgency => Code::NotFound,
            _ => Code::PermissionDenied,
        },
        // No question is pending, so the owner passes authorisation and meets the state check.
        Rpc::ProvideInformation => match caller {
            OwnAgency => Code::FailedPrecondition,
            OtherAgency => Code::NotFound,
            _ => Code::PermissionDenied,
        },
        Rpc::UpdateStatus => match caller {
            Service => Code::Ok,
            _ => Code::PermissionDenied,
        },
        _ => match caller {
            Admin => Code::Ok,
            _ => Code::PermissionDenied,
        },
    }
}

struct World {
    intake: Intake,
    own: String,
    other: String,
    suspended: String,
}

impl World {
    fn bearer(&self, caller: Caller) -> Option<Bearer> {
        let p = |principal| Some(self.intake.bearer(principal));
        match caller {
            Caller::NoToken => None,
            Caller::Garbage => Some(Bearer::new("not-a-token").unwrap()),
            Caller::ForeignKey => {
                let foreign_key = crs_platform::keys::KeyPair::from_seed([42; 32]).unwrap();
                let foreign = TokenIssuer::new(&foreign_key.private_pem, "crs").unwrap();
                Some(Bearer::for_principal(&foreign, &Principal::Agency { id: self.own.clone() }).unwrap())
            }
            Caller::OwnAgency => p(Principal::Agency { id: self.own.clone() }),
            Caller::OtherAgency => p(Principal::Agency { id: self.other.clone() }),
            Caller::SuspendedAgency => p(Principal::Agency { id: self.suspended.clone() }),
            Caller::Reviewer => p(Principal::Reviewer { id: "r".into(), roles: vec![Role::Reviewer] }),
            Caller::SeniorReviewer => p(Principal::Reviewer { id: "s".into(), roles: vec![Role::SeniorReviewer] }),
            Caller::Admin => p(Principal::Reviewer { id: "a".into(), roles: vec![Role::Admin] }),
            // Legal review, the one service that reports status to intake.
            Caller::Service => p(Principal::Service { name: "legal-review".into() }),
        }
    }

    /// A fresh request of the own agency.
    async fn own_request(&self) -> String {
        let mut client = self.intake.intake(self.intake.as_agency(&self.own)).await;
        client.submit_request(valid_request()).await.unwrap().into_inner().request.unwrap().id
    }

    async fn call(&self, rpc: Rpc, caller: Caller) -> Code {
        let channel = match self.bearer(caller) {
            Some(b) => connect(&self.intake.url, b).await.unwrap(),
            None => {
                let plain =
                    tonic::transport::Endpoint::from_shared(self.intake.url.clone()).unwrap().connect().await.unwrap();
                return call_plain(rpc, plain, self).await;
            }
        };
        let mut intake = intake_service_client::IntakeServiceClient::new(channel.clone());
        let mut internal = intake_internal_service_client::IntakeInternalServiceClient::new(channel.clone());
        let mut admin = agency_admin_service_client::AgencyAdminServiceClient::new(channel);
        let request_id = self.own_request().await;
        let result = match rpc {
            Rpc::SubmitRequest => {
                let mut r = valid_request();
                if caller == Caller::OtherAgency {
                    r.jurisdiction = "TR".into();
                }
                intake.submit_request(r).await.map(|_| ())
            }
            Rpc::GetRequest => intake.get_request(GetRequestRequest { request_id }).await.map(|_| ()),
            Rpc::ListRequests => intake.list_requests(ListRequestsRequest::default()).await.map(|_| ()),
            Rpc::WithdrawRequest => {
                intake.withdraw_request(WithdrawRequestRequest { request_id, reason: String::new() }).await.map(|_| ())
            }
            Rpc::ProvideInformation => intake
                .provide_information(ProvideInformationRequest {
                    request_id,
                    answer: "answer".into(),
                    idempotency_key: uuid::Uuid::new_v4().to_string(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            Rpc::WatchRequests => intake.watch_requests(WatchRequestsRequest::default()).await.map(|_| ()),
            Rpc::UpdateStatus => internal
                .update_status(UpdateStatusRequest {
                    event_id: uuid::Uuid::new_v4().to_string(),
                    request_id,
                    status: RequestStatus::Triaged as i32,
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            Rpc::CreateAgency => admin
                .create_agency(CreateAgencyRequest {
                    name: "n".into(),
                    jurisdiction: "FR".into(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            Rpc::UpdateAgency => admin
                .update_agency(UpdateAgencyRequest {
                    agency_id: self.other.clone(),
                    name: "renamed".into(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            Rpc::SuspendAgency => {
                // Suspend a throw-away agency so the others stay usable.
                let victim = self.intake.agency_in("FR").await;
                admin
                    .suspend_agency(SuspendAgencyRequest { agency_id: victim, reason: String::new() })
                    .await
                    .map(|_| ())
            }
            Rpc::GetAgency => admin.get_agency(GetAgencyRequest { agency_id: self.own.clone() }).await.map(|_| ()),
            Rpc::ListAgencies => admin.list_agencies(ListAgenciesRequest::default()).await.map(|_| ()),
            Rpc::IssueToken => admin
                .issue_token(IssueTokenRequest { subject: format!("agency:{}", self.own), ..Default::default() })
                .await
                .map(|_| ()),
            Rpc::RevokeToken => admin
                .revoke_token(RevokeTokenRequest { token_id: uuid::Uuid::new_v4().to_string(), ..Default::default() })
                .await
                .map(|_| ()),
        };
        result.err().map_or(Code::Ok, |s| s.code())
    }
}

/// Calls without any authorization header.
async fn call_plain(rpc: Rpc, channel: tonic::transport::Channel, world: &World) -> Code {
    let mut intake = intake_service_client::IntakeServiceClient::new(channel.clone());
    let mut internal = intake_internal_service_client::IntakeInternalServiceClient::new(channel.clone());
    let mut admin = agency_admin_service_client::AgencyAdminServiceClient::new(channel);
    let request_id = world.own_request().await;
    let result = match rpc {
        Rpc::SubmitRequest => intake.submit_request(valid_request()).await.map(|_| ()),
        Rpc::GetRequest => intake.get_request(GetRequestRequest { request_id }).await.map(|_| ()),
        Rpc::ListRequests => intake.list_requests(ListRequestsRequest::default()).await.map(|_| ()),
        Rpc::WithdrawRequest => {
            intake.withdraw_request(WithdrawRequestRequest { request_id, ..Default::default() }).await.map(|_| ())
        }
        Rpc::ProvideInformation => {
            intake.provide_information(ProvideInformationRequest { request_id, ..Default::default() }).await.map(|_| ())
        }
        Rpc::WatchRequests => intake.watch_requests(WatchRequestsRequest::default()).await.map(|_| ()),
        Rpc::UpdateStatus => internal.update_status(UpdateStatusRequest::default()).await.map(|_| ()),
        Rpc::CreateAgency => admin.create_agency(CreateAgencyRequest::default()).await.map(|_| ()),
        Rpc::UpdateAgency => admin.update_agency(UpdateAgencyRequest::default()).await.map(|_| ()),
        Rpc::SuspendAgency => admin.suspend_agency(SuspendAgencyRequest::default()).await.map(|_| ()),
        Rpc::GetAgency => admin.get_agency(GetAgencyRequest::default()).await.map(|_| ()),
        Rpc::ListAgencies => admin.list_agencies(ListAgenciesRequest::default()).await.map(|_| ()),
        Rpc::IssueToken => admin.issue_token(IssueTokenRequest::default()).await.map(|_| ()),
        Rpc::RevokeToken => admin.revoke_token(RevokeTokenRequest::default()).await.map(|_| ()),
    };
    result.err().map_or(Code::Ok, |s| s.code())
}

async fn every_rpc_against_every_caller(backend: Backend) {
    let intake = Intake::start(backend).await;
    let own = intake.agency().await;
    let other = intake.agency_in("TR").await;
    let suspended = intake.agency().await;
    intake
        .admin_client()
        .await
        .suspend_agency(SuspendAgencyRequest { agency_id: suspended.clone(), reason: "test".into() })
        .await
        .unwrap();
    let world = World { intake, own, other, suspended };
    let mut wrong = Vec::new();
    for rpc in RPCS {
        for caller in CALLERS {
            let got = world.call(rpc, caller).await;
            let want = expected(rpc, caller);
            if got != want {
                wrong.push(format!("{rpc:?} as {caller:?}: got {got:?}, expected {want:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {} wrong:\n{}", wrong.len(), RPCS.len() * CALLERS.len(), wrong.join("\n"));
    world.intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorisation_on_sqlite() {
    every_rpc_against_every_caller(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorisation_on_postgres() {
    every_rpc_against_every_caller(Backend::Postgres).await;
}
