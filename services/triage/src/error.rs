//! Triage's errors, mapped once to gRPC status codes.

use crs_platform::auth::AuthError;
use crs_platform::error::{FieldViolations, ServiceError};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    #[error("invalid request")]
    InvalidArgument(FieldViolations),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("no assessment for request {0}")]
    NotFound(String),
    /// The database could not be reached: nothing was done; the caller may retry.
    #[error("the service's database cannot be reached now; retry")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for TriageError {
    fn from(e: sea_orm::DbErr) -> Self {
        if crs_platform::db::is_unavailable(&e) {
            TriageError::Unavailable(e.to_string())
        } else {
            TriageError::Internal(e.into())
        }
    }
}

impl TriageError {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        let mut v = FieldViolations::new();
        v.add(field, description);
        TriageError::InvalidArgument(v)
    }
}

impl ServiceError for TriageError {
    fn code(&self) -> Code {
        match self {
            TriageError::InvalidArgument(_) => Code::InvalidArgument,
            TriageError::Auth(e) => e.code(),
            TriageError::NotFound(_) => Code::NotFound,
            TriageError::Unavailable(_) => Code::Unavailable,
            TriageError::Internal(_) => Code::Internal,
        }
    }

    fn violations(&self) -> Option<&FieldViolations> {
        match self {
            TriageError::InvalidArgument(v) => Some(v),
            _ => None,
        }
    }
}

impl From<TriageError> for Status {
    fn from(e: TriageError) -> Status {
        crs_platform::error::to_status(&e)
    }
}
