//! Legal review's errors, mapped once to gRPC status codes.

use crs_platform::auth::AuthError;
use crs_platform::error::{FieldViolations, ServiceError};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("invalid request")]
    InvalidArgument(FieldViolations),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("case {0} not found")]
    NotFound(String),
    #[error("case {id} is {status}; cannot {action}")]
    WrongState { id: String, status: String, action: &'static str },
    #[error("case {id} is claimed by {holder} until its lease ends")]
    ClaimedByOther { id: String, holder: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for ReviewError {
    fn from(e: sea_orm::DbErr) -> Self {
        ReviewError::Internal(e.into())
    }
}

impl From<FieldViolations> for ReviewError {
    fn from(v: FieldViolations) -> Self {
        ReviewError::InvalidArgument(v)
    }
}

impl ReviewError {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        let mut v = FieldViolations::new();
        v.add(field, description);
        ReviewError::InvalidArgument(v)
    }
}

impl ServiceError for ReviewError {
    fn code(&self) -> Code {
        match self {
            ReviewError::InvalidArgument(_) => Code::InvalidArgument,
            ReviewError::Auth(e) => e.code(),
            ReviewError::NotFound(_) => Code::NotFound,
            ReviewError::WrongState { .. } | ReviewError::ClaimedByOther { .. } => Code::FailedPrecondition,
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
