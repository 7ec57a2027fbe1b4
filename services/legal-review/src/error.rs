//! Legal review's errors, mapped once to gRPC status codes.

use crs_domain::case::Refusal;
use crs_platform::auth::AuthError;
use crs_platform::error::{FieldViolations, ServiceError};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("invalid request")]
    InvalidArgument(FieldViolations),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0} not found")]
    NotFound(String),
    /// A case command the rules refused.
    #[error("case {id}: {refusal}")]
    Refused { id: String, refusal: Refusal },
    /// A withdrawal that came after the decision took effect.
    #[error("case {id} was decided ({decision}); a decision that took effect cannot be withdrawn")]
    AlreadyDecided { id: String, decision: String },
    /// A decision on content another open case of the same jurisdiction reviews.
    #[error(
        "case {id}: {items} under review in another open case of the same jurisdiction, which decides it first; decide after it (see related_cases)"
    )]
    ContentUnderReview { id: String, items: String },
    #[error("idempotency key {0:?} was already used for another command")]
    IdempotencyKeyReused(String),
    /// The database could not be reached: nothing was done; the caller may retry.
    #[error("the service's database cannot be reached now; retry")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for ReviewError {
    fn from(e: sea_orm::DbErr) -> Self {
        if crs_platform::db::is_unavailable(&e) {
            ReviewError::Unavailable(e.to_string())
        } else {
            ReviewError::Internal(e.into())
        }
    }
}

impl From<FieldViolations> for ReviewError {
    fn from(v: FieldViolations) -> Self {
        ReviewError::InvalidArgument(v)
    }
}

impl ReviewError {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        ReviewError::InvalidArgument(FieldViolations::single(field, description))
    }

    /// A refusal of the rules about case `id`.
    pub fn refused(id: &str, refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(v) => ReviewError::InvalidArgument(v),
            refusal => ReviewError::Refused { id: id.to_owned(), refusal },
        }
    }
}

impl ServiceError for ReviewError {
    fn code(&self) -> Code {
        match self {
            ReviewError::InvalidArgument(_) => Code::InvalidArgument,
            ReviewError::Auth(e) => e.code(),
            ReviewError::NotFound(_) => Code::NotFound,
            ReviewError::Refused { refusal, .. } => match refusal {
                Refusal::State(_) | Refusal::ClaimedByOther { .. } | Refusal::NoClaim => Code::FailedPrecondition,
                Refusal::SeniorOnly | Refusal::OwnDecision | Refusal::HolderOrSenior => Code::PermissionDenied,
                Refusal::Invalid(_) => Code::InvalidArgument,
            },
            ReviewError::AlreadyDecided { .. } => Code::FailedPrecondition,
            ReviewError::ContentUnderReview { .. } => Code::FailedPrecondition,
            ReviewError::IdempotencyKeyReused(_) => Code::AlreadyExists,
            ReviewError::Unavailable(_) => Code::Unavailable,
            ReviewError::Internal(_) => Code::Internal,
        }
    }

    fn violations(&self) -> Option<&FieldViolations> {
        match self {
            ReviewError::InvalidArgument(v) => Some(v),
            _ => None,
        }
    }
}

impl From<ReviewError> for Status {
    fn from(e: ReviewError) -> Status {
        crs_platform::error::to_status(&e)
    }
}
