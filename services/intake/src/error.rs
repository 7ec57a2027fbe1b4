//! Intake's errors, mapped once to gRPC status codes.

use crs_platform::auth::AuthError;
use crs_platform::error::{FieldViolations, ServiceError};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("invalid request")]
    InvalidArgument(FieldViolations),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("agency {0} is suspended")]
    AgencySuspended(String),
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("idempotency key {0:?} was already used with a different request body")]
    IdempotencyKeyReused(String),
    #[error("request {id} is {status}; cannot {action}")]
    WrongState { id: String, status: String, action: &'static str },
    /// The owner of the request's case refused what was asked (e.g. a withdrawal after a decision).
    #[error("{0}")]
    Refused(String),
    /// The agency holds as many open streams as it may.
    #[error("agency {agency} already holds {max} open WatchRequests streams; close one first")]
    TooManyStreams { agency: String, max: usize },
    /// A service this call depends on could not be reached: nothing was done; retry.
    #[error("{peer} cannot be reached ({why}); nothing was changed, retry")]
    PeerUnavailable { peer: &'static str, why: String },
    #[error("rate limit `{}` exceeded for {}; retry in {:.1} s", .0.tightest().name, .0.tightest().subject, .0.tightest().retry_after.as_secs_f64())]
    RateLimited(Box<crs_ratelimit::Decision>),
    /// Intake is taking in no more than it can store within its callers' deadlines
    /// (`crate::admission`): nothing was done; the caller may retry after a while.
    #[error(
        "intake is saturated: the {} submissions ahead of this one would take about {:.2} s, more than half of the {:.2} s this call allows; nothing was stored, retry in {:.1} s",
        .0.ahead, .0.wait.as_secs_f64().min(3600.0), .0.allowed.as_secs_f64(), .0.retry_after.as_secs_f64()
    )]
    Saturated(crate::admission::Saturated),
    /// The database could not be reached: nothing was done; the caller may retry.
    #[error("the service's database cannot be reached now; retry")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for IntakeError {
    fn from(e: sea_orm::DbErr) -> Self {
        if crs_platform::db::is_unavailable(&e) {
            IntakeError::Unavailable(e.to_string())
        } else {
            IntakeError::Internal(e.into())
        }
    }
}

impl From<FieldViolations> for IntakeError {
    fn from(v: FieldViolations) -> Self {
        IntakeError::InvalidArgument(v)
    }
}

impl IntakeError {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        IntakeError::InvalidArgument(FieldViolations::single(field, description))
    }
}

impl ServiceError for IntakeError {
    fn code(&self) -> Code {
        match self {
            IntakeError::InvalidArgument(_) => Code::InvalidArgument,
            IntakeError::Auth(e) => e.code(),
            IntakeError::AgencySuspended(_) => Code::PermissionDenied,
            IntakeError::NotFound { .. } => Code::NotFound,
            IntakeError::IdempotencyKeyReused(_) => Code::AlreadyExists,
            IntakeError::WrongState { .. } | IntakeError::Refused(_) => Code::FailedPrecondition,
            IntakeError::PeerUnavailable { .. } => Code::Unavailable,
            IntakeError::TooManyStreams { .. } => Code::ResourceExhausted,
            IntakeError::RateLimited(_) => Code::ResourceExhausted,
            IntakeError::Unavailable(_) | IntakeError::Saturated(_) => Code::Unavailable,
            IntakeError::Internal(_) => Code::Internal,
        }
    }

    fn violations(&self) -> Option<&FieldViolations> {
        match self {
            IntakeError::InvalidArgument(v) => Some(v),
            _ => None,
        }
    }

    fn extra_details(&self, details: &mut tonic_types::ErrorDetails) {
        if let IntakeError::Saturated(why) = self {
            details.set_retry_info(Some(why.retry_after));
        }
        if let IntakeError::RateLimited(decision) = self {
            let rule = decision.tightest();
            details.set_retry_info(Some(rule.retry_after));
            for r in decision.rules.iter().filter(|r| r.exceeded && !r.limit.shadow) {
                details.add_quota_failure_violation(
                    format!("{}:{}", r.subject, r.name),
                    format!("{} requests per second, burst {}", r.limit.rate_per_sec, r.limit.burst),
                );
            }
        }
    }

    fn metadata(&self) -> tonic::metadata::MetadataMap {
        match self {
            IntakeError::RateLimited(decision) => crate::limits::metadata(decision),
            _ => tonic::metadata::MetadataMap::new(),
        }
    }
}

impl From<IntakeError> for Status {
    fn from(e: IntakeError) -> Status {
        crs_platform::error::to_status(&e)
    }
}
