//! The one mapping from a service's error enum to `tonic::Status`.
//!
//! Each service keeps a small `thiserror` enum and implements [`ServiceError`] for it; handlers
//! return `Result<_, TheirError>` and the `From<TheirError> for Status` impl calls [`to_status`].
//! Internal errors are logged with their whole cause chain and reach the caller as a bare
//! `INTERNAL`, so nothing about storage leaks out.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use crs_domain::FieldViolations;

/// What a service error must say for the caller.
pub trait ServiceError: std::error::Error {
    fn code(&self) -> Code;

    /// Field violations, for `INVALID_ARGUMENT`.
    fn violations(&self) -> Option<&FieldViolations> {
        None
    }

    /// Extra details (retry info, quota failures) beyond field violations.
    fn extra_details(&self, _details: &mut ErrorDetails) {}

    /// Response metadata the caller should get with the error (e.g. `x-ratelimit-*`).
    fn metadata(&self) -> tonic::metadata::MetadataMap {
        tonic::metadata::MetadataMap::new()
    }
}

/// Builds the status a caller receives for `err`.
pub fn to_status<E: ServiceError>(err: &E) -> Status {
    let code = err.code();
    if code == Code::Internal || code == Code::Unknown {
        tracing::error!(error = %error_chain(err), "internal error");
        return Status::internal("internal error");
    }
    let mut details = ErrorDetails::new();
    if let Some(violations) = err.violations() {
        for (field, description) in violations.iter() {
            details.add_bad_request_violation(field, description);
        }
    }
    err.extra_details(&mut details);
    let message = match err.violations() {
        Some(v) if !v.is_empty() => format!("{err}: {v}"),
        _ => err.to_string(),
    };
    Status::with_error_details_and_metadata(code, message, details, err.metadata())
}

/// The `(field, description)` violations a status carries (`google.rpc.BadRequest`), as a
/// caller reads them.
pub fn field_violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| (v.field, v.description)).collect())
        .unwrap_or_default()
}

/// `err` and all its causes, joined, for logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Sample {
        #[error("invalid request")]
        Invalid(FieldViolations),
        #[error("database on fire")]
        Internal,
    }

    impl ServiceError for Sample {
        fn code(&self) -> Code {
            match self {
                Sample::Invalid(_) => Code::InvalidArgument,
                Sample::Internal => Code::Internal,
            }
        }
        fn violations(&self) -> Option<&FieldViolations> {
            match self {
                Sample::Invalid(v) => Some(v),
                Sample::Internal => None,
            }
        }
    }

    #[test]
    fn violations_travel_as_bad_request_details() {
        let mut v = FieldViolations::new();
        v.add("items[3].url", "must use http or https");
        let status = to_status(&Sample::Invalid(v));
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status.get_details_bad_request().expect("bad request details");
        assert_eq!(bad.field_violations[0].field, "items[3].url");
        assert!(status.message().contains("items[3].url"));
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let status = to_status(&Sample::Internal);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("fire"));
    }
}
