//! Who may call what, checked in one place for every server: a tower layer that verifies each
//! call's bearer token (health and reflection are open), puts the caller's [`Principal`] in the
//! request's extensions, and lets only the services listed in [`INTERNAL_CALLERS`] call each
//! internal RPC. Public RPCs check roles in their handlers (`auth::require_*`).

use std::sync::Arc;
use std::task::{Context, Poll};

use crs_proto::InternalCall;
use crs_proto::intake::UpdateStatusRequest;
use crs_proto::notification::{NotifyRequest, PutSubscriptionRequest};
use crs_proto::review::{EnqueueCaseRequest, ResumeCaseRequest, WithdrawCaseRequest};
use crs_proto::triage::{AssessRequestRequest, RecordDecisionRequest};
use futures::future::BoxFuture;
use tonic::Status;

use crate::auth::{AuthError, Principal, TokenId, TokenVerifier, Verified};
use crate::revocation::Revocations;

/// The services that call each internal RPC in the flow; no one else may.
pub const INTERNAL_CALLERS: &[(&str, &[&str])] = &[
    (AssessRequestRequest::METHOD, &["intake"]),
    (RecordDecisionRequest::METHOD, &["legal-review"]),
    (EnqueueCaseRequest::METHOD, &["triage"]),
    (ResumeCaseRequest::METHOD, &["intake"]),
    (WithdrawCaseRequest::METHOD, &["intake"]),
    (UpdateStatusRequest::METHOD, &["legal-review"]),
    (NotifyRequest::METHOD, &["intake", "legal-review"]),
    (PutSubscriptionRequest::METHOD, &["intake"]),
];

/// Whether `principal` may call the internal RPC at `path`.
pub fn may_call_internal(principal: &Principal, path: &str) -> bool {
    let Principal::Service { name } = principal else { return false };
    INTERNAL_CALLERS.iter().any(|(method, callers)| *method == path && callers.contains(&name.as_str()))
}

/// Paths anyone may call: health checks and server reflection.
pub(crate) fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

/// Verifies tokens and enforces [`INTERNAL_CALLERS`] on every call to the server it wraps.
#[derive(Clone, Debug)]
pub struct AccessLayer {
    verifier: Arc<TokenVerifier>,
    revocations: Revocations,
}

impl AccessLayer {
    pub fn new(verifier: TokenVerifier, revocations: Revocations) -> Self {
        Self { verifier: Arc::new(verifier), revocations }
    }

    /// The caller of a request with these headers, or why it is turned away.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Verified, Status> {
        let header = headers.get("authorization").ok_or(AuthError::Missing)?;
        let value = header.to_str().map_err(|_| AuthError::Invalid("not ASCII".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| AuthError::Invalid("expected `Bearer <token>`".into()))?;
        let verified = self.verifier.verify(token.trim())?;
        let person = !matches!(verified.principal, Principal::Service { .. });
        // Fail closed: until this service knows which tokens are revoked, people wait.
        if person && !self.revocations.is_loaded() {
            return Err(Status::unavailable("the revocation list is not loaded yet; retry shortly"));
        }
        if self.revocations.is_revoked(&verified.token_id, &verified.principal.subject(), verified.issued_at) {
            return Err(AuthError::Invalid("token revoked".into()).into());
        }
        Ok(verified)
    }

    /// Decides a call to `path`: the principal to hand on, or the status to answer with.
    fn admit(&self, path: &str, headers: &http::HeaderMap) -> Result<Option<Verified>, Status> {
        if is_open(path) {
            return Ok(None);
        }
        let verified = self.authenticate(headers)?;
        if crs_proto::internal::is_internal(path) && !may_call_internal(&verified.principal, path) {
            return Err(
                AuthError::Forbidden(format!("{} (not a caller of {path})", verified.principal.subject())).into()
            );
        }
        Ok(Some(verified))
    }
}

impl<S> tower::Layer<S> for AccessLayer {
    type Service = Access<S>;
    fn layer(&self, inner: S) -> Access<S> {
        Access { inner, layer: self.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct Access<S> {
    inner: S,
    layer: AccessLayer,
}

impl<S, B> tower::Service<http::Request<B>> for Access<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.layer.admit(request.uri().path(), request.headers()) {
            Ok(admitted) => {
                if let Some(verified) = admitted {
                    request.extensions_mut().insert(verified.principal.clone());
                    request.extensions_mut().insert(TokenId(verified.token_id.clone()));
                    request.extensions_mut().insert(verified);
                }
                Box::pin(self.inner.call(request))
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::*;

    #[test]
    fn every_internal_rpc_has_its_callers_listed() {
        let fds = FileDescriptorSet::decode(crs_proto::FILE_DESCRIPTOR_SET).unwrap();
        for file in &fds.file {
            for s in file.service.iter().filter(|s| s.name().ends_with("InternalService")) {
                for m in &s.method {
                    let path = format!("/{}.{}/{}", file.package(), s.name(), m.name());
                    assert!(INTERNAL_CALLERS.iter().any(|(p, _)| *p == path), "{path} lists no callers");
                }
            }
        }
    }

    #[test]
    fn only_the_services_in_the_flow_call_each_internal_rpc() {
        let service = |name: &str| Principal::Service { name: name.into() };
        assert!(may_call_internal(&service("intake"), AssessRequestRequest::METHOD));
        assert!(!may_call_internal(&service("legal-review"), AssessRequestRequest::METHOD));
        assert!(!may_call_internal(&service("intake"), UpdateStatusRequest::METHOD));
        assert!(may_call_internal(&service("legal-review"), NotifyRequest::METHOD));
        assert!(!may_call_internal(&service("triage"), NotifyRequest::METHOD));
        let admin = Principal::Reviewer { id: "a".into(), roles: vec![crate::Role::Admin] };
        assert!(!may_call_internal(&admin, PutSubscriptionRequest::METHOD));
        assert!(!may_call_internal(&service("intake"), "/crs.triage.v1.TriageInternalService/Unknown"));
    }
}
