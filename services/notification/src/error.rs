//! Notification's errors, mapped once to gRPC status codes.

use crs_platform::auth::AuthError;
use crs_platform::error::{FieldViolations, ServiceError};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("invalid request")]
    InvalidArgument(FieldViolations),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0} not found")]
    NotFound(String),
    /// The call is valid but the state does not allow it (e.g. a delivery already delivered).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrent change won (e.g. expected_version no longer matches).
    #[error("{0}")]
    Aborted(String),
    /// The database could not be reached: nothing was done; the caller may retry.
    #[error("the service's database cannot be reached now; retry")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for NotificationError {
    fn from(e: sea_orm::DbErr) -> Self {
        if crs_platform::db::is_unavailable(&e) {
            NotificationError::Unavailable(e.to_string())
        } else {
            NotificationError::Internal(e.into())
        }
    }
}

impl From<FieldViolations> for NotificationError {
    fn from(v: FieldViolations) -> Self {
        NotificationError::InvalidArgument(v)
    }
}

impl NotificationError {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        let mut v = FieldViolations::new();
        v.add(field, description);
        NotificationError::InvalidArgument(v)
    }
}

impl ServiceError for NotificationError {
    fn code(&self) -> Code {
        match self {
            NotificationError::InvalidArgument(_) => Code::InvalidArgument,
            NotificationError::Auth(e) => e.code(),
            NotificationError::NotFound(_) => Code::NotFound,
            NotificationError::FailedPrecondition(_) => Code::FailedPrecondition,
            NotificationError::Aborted(_) => Code::Aborted,
            NotificationError::Unavailable(_) => Code::Unavailable,
            NotificationError::Internal(_) => Code::Internal,
        }
    }

    fn violations(&self) -> Option<&FieldViolations> {
        match self {
            NotificationError::InvalidArgument(v) => Some(v),
            _ => None,
        }
    }
}

impl From<NotificationError> for Status {
    fn from(e: NotificationError) -> Status {
        crs_platform::error::to_status(&e)
    }
}
