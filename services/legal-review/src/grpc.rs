//! Legal review's gRPC surface: each RPC takes the verified caller and calls its command or
//! query. Reviewers' actions run in the case's own trace.

use crs_platform::auth;
use crs_proto::review::legal_review_internal_service_server::LegalReviewInternalService;
use crs_proto::review::legal_review_service_server::LegalReviewService;
use crs_proto::review::*;
use tonic::{Request, Response, Status};

use crate::service::LegalReview;

type Reply<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl LegalReviewService for LegalReview {
    async fn list_cases(&self, request: Request<ListCasesRequest>) -> Reply<ListCasesResponse> {
        let p = auth::principal(&request)?;
        Ok(Response::new(self.list(p, request.into_inner()).await?))
    }

    async fn get_case(&self, request: Request<GetCaseRequest>) -> Reply<Case> {
        let p = auth::principal(&request)?;
        Ok(Response::new(self.get(p, request.into_inner()).await?))
    }

    async fn claim_case(&self, request: Request<ClaimCaseRequest>) -> Reply<Case> {
        let p = auth::principal(&request)?;
        let req = request.into_inner();
        let id = req.case_id.clone();
        Ok(Response::new(self.in_case_trace(&id, "review.claim", self.claim(p, req)).await?))
    }

    async fn claim_next_case(&self, request: Request<ClaimNextCaseRequest>) -> Reply<Case> {
        let p = auth::principal(&request)?;
        Ok(Response::new(self.claim_next(p, request.into_inner()).await?))
    }

    async fn list_queues(&self, request: Request<ListQueuesRequest>) -> Reply<ListQueuesResponse> {
        let p = auth::principal(&request)?;
        Ok(Response::new(LegalReview::list_queues(self, p).await?))
    }

    async fn release_case(&self, request: Request<ReleaseCaseRequest>) -> Reply<Case> {
        let p = auth::principal(&request)?;
        let req = request.into_inner();
        let id = req.case_id.clone();
        Ok(Response::new(self.in_case_trace(&id, "review.release", self.release(p, req)).await?))
    }

    async fn reassign_case(&self, request: Request<ReassignCaseRequest>) -> Reply<Case> {
        let p = auth::principal(&request)?;
        let req = request.into_inner();
        let id = req.case_id.clone();
        Ok(Response::new(self.in_case_trace(&id, "review.reassign", self.reassign(p, req)).await?))
    }

    async fn submit_decision(&self, request: Request<SubmitDecisionRequest>) -> Reply<Case> {
        let p = auth::principal(&request)?;
        let req = request.into_inner();
        let id = req.case_id.clone();
        Ok(Response::new(self.in_case_trace(&id, "review.decide", self.decide(p, req)).await?))
    }

    async fn approve_decision(&self, request: Request<ApproveDecisionRequest>) -> Reply<Case> {
        let p = auth::principal(&request)?;
        let req = request.into_inner();
        let id = req.case_id.clone();
        Ok(Response::new(self.in_case_trace(&id, "review.approve", self.approve(p, req)).await?))
    }

    async fn request_information(&self, request: Request<RequestInformationRequest>) -> Reply<Case> {
        let p = auth::principal(&request)?;
        let req = request.into_inner();
        let id = req.case_id.clone();
        let work = LegalReview::request_information(self, p, req);
        Ok(Response::new(self.in_case_trace(&id, "review.request_information", work).await?))
    }

    async fn escalate_case(&self, request: Request<EscalateCaseRequest>) -> Reply<Case> {
        let p = auth::principal(&request)?;
        let req = request.into_inner();
        let id = req.case_id.clone();
        Ok(Response::new(self.in_case_trace(&id, "review.escalate", self.escalate(p, req)).await?))
    }

    async fn get_audit_trail(&self, request: Request<GetAuditTrailRequest>) -> Reply<GetAuditTrailResponse> {
        let p = auth::principal(&request)?;
        Ok(Response::new(self.audit_trail(p, request.into_inner()).await?))
    }

    async fn verify_audit_trail(&self, request: Request<VerifyAuditTrailRequest>) -> Reply<VerifyAuditTrailResponse> {
        let p = auth::principal(&request)?;
        Ok(Response::new(self.verify_audit(p, request.into_inner()).await?))
    }
}

/// Only the services the access table lists reach these (see `crs_platform::access`).
#[tonic::async_trait]
impl LegalReviewInternalService for LegalReview {
    async fn enqueue_case(&self, request: Request<EnqueueCaseRequest>) -> Reply<EnqueueCaseResponse> {
        let p = auth::principal(&request)?;
        Ok(Response::new(self.enqueue(p, request.into_inner()).await?))
    }

    async fn resume_case(&self, request: Request<ResumeCaseRequest>) -> Reply<Case> {
        let p = auth::principal(&request)?;
        let req = request.into_inner();
        let id = req.case_id.clone();
        Ok(Response::new(self.in_case_trace(&id, "review.resume", self.resume(p, req)).await?))
    }

    async fn withdraw_case(&self, request: Request<WithdrawCaseRequest>) -> Reply<Case> {
        let p = auth::principal(&request)?;
        Ok(Response::new(self.withdraw(p, request.into_inner()).await?))
    }
}
