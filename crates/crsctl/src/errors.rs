//! How crsctl fails: exit codes that tell scripts what happened, and the details the services
//! put in an error (field violations, quota, retry delay) printed for people.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure (a check that failed, an internal error) |
//! | 2 | usage: bad flags or arguments, a malformed file, no context |
//! | 3 | refused: UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, FAILED_PRECONDITION, ALREADY_EXISTS, ABORTED, OUT_OF_RANGE |
//! | 4 | not found |
//! | 5 | unavailable: a service down or unreachable, a deadline exceeded, rate-limited (RESOURCE_EXHAUSTED): try again later |

use std::fmt::Write as _;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_REFUSED: u8 = 3;
pub const EXIT_NOT_FOUND: u8 = 4;
pub const EXIT_UNAVAILABLE: u8 = 5;

/// The exit codes, for `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  failure (e.g. `audit verify` found the chain broken, `status` found a service down)
  2  usage error: bad flags or arguments, malformed input file, no context
  3  refused: UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, FAILED_PRECONDITION, ALREADY_EXISTS
  4  not found
  5  unavailable: service down or unreachable, deadline exceeded, rate-limited; try again later";

/// A mistake in how crsctl was called, caught before any call (exit 2).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// A failure whose message was already printed, with the exit code to end with.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// The exit code for a gRPC status code.
pub fn exit_code_of(code: Code) -> u8 {
    match code {
        Code::Unauthenticated
        | Code::PermissionDenied
        | Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::Aborted
        | Code::OutOfRange => EXIT_REFUSED,
        Code::NotFound => EXIT_NOT_FOUND,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => EXIT_UNAVAILABLE,
        _ => EXIT_FAILURE,
    }
}

/// The code of a failed call as the caller should read it: tonic reports its own client-side
/// timeout (`--timeout`) as CANCELLED "Timeout expired", which is a deadline exceeded.
pub fn effective_code(status: &Status) -> Code {
    if status.code() == Code::Cancelled && status.message() == "Timeout expired" {
        Code::DeadlineExceeded
    } else {
        status.code()
    }
}

/// The exit code for any error crsctl ends with.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(Exit(code)) = err.downcast_ref::<Exit>() {
        return *code;
    }
    if err.downcast_ref::<Usage>().is_some() || err.downcast_ref::<clap::Error>().is_some() {
        return EXIT_USAGE;
    }
    match status_of(err) {
        Some(status) => exit_code_of(effective_code(status)),
        None => EXIT_FAILURE,
    }
}

/// The gRPC status inside `err`, if the failure was a call's.
pub fn status_of(err: &anyhow::Error) -> Option<&Status> {
    err.chain().find_map(|e| e.downcast_ref::<Status>())
}

/// How long the service asked the caller to wait (`google.rpc.RetryInfo`).
pub fn retry_delay(status: &Status) -> Option<Duration> {
    status.get_details_retry_info().and_then(|r| r.retry_delay)
}

/// The error as people read it: the code, the message, then each detail on its own line.
pub fn describe(err: &anyhow::Error) -> String {
    let Some(status) = status_of(err) else {
        return format!("{err:#}");
    };
    let mut out = String::new();
    // The context anyhow added around the status (e.g. "submitting group 3"), if any.
    let context: Vec<String> =
        err.chain().take_while(|e| e.downcast_ref::<Status>().is_none()).map(|e| e.to_string()).collect();
    if !context.is_empty() {
        let _ = write!(out, "{}: ", context.join(": "));
    }
    let _ = write!(out, "{}: {}", code_name(effective_code(status)), status.message());
    let details = status.get_error_details();
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            let _ = write!(out, "\n  {}: {}", v.field, v.description);
        }
    }
    if let Some(pf) = details.precondition_failure() {
        for v in &pf.violations {
            let _ = write!(out, "\n  precondition {} {}: {}", v.r#type, v.subject, v.description);
        }
    }
    if let Some(quota) = details.quota_failure() {
        for v in &quota.violations {
            let _ = write!(out, "\n  quota {}: {}", v.subject, v.description);
        }
    }
    if let Some(delay) = retry_delay(status) {
        let _ = write!(out, "\n  retry after {:.1}s", delay.as_secs_f64());
    }
    for key in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"] {
        if let Some(v) = status.metadata().get(key).and_then(|v| v.to_str().ok()) {
            let _ = write!(out, "\n  {key}: {v}");
        }
    }
    if let Some(trace) = status.metadata().get("x-trace-id").and_then(|v| v.to_str().ok()) {
        let _ = write!(out, "\n  trace id {trace}");
    }
    out
}

/// `PERMISSION_DENIED`, as grpcurl and the protos spell codes.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_documented_exit_codes() {
        assert_eq!(exit_code(&anyhow::Error::new(Status::permission_denied("no"))), EXIT_REFUSED);
        assert_eq!(exit_code(&anyhow::Error::new(Status::invalid_argument("no"))), EXIT_REFUSED);
        assert_eq!(exit_code(&anyhow::Error::new(Status::not_found("no"))), EXIT_NOT_FOUND);
        assert_eq!(exit_code(&anyhow::Error::new(Status::unavailable("no"))), EXIT_UNAVAILABLE);
        assert_eq!(exit_code(&usage("bad flag")), EXIT_USAGE);
        let wrapped = anyhow::Error::new(Status::not_found("gone")).context("reading case 7");
        assert_eq!(exit_code(&wrapped), EXIT_NOT_FOUND);
        assert!(describe(&wrapped).starts_with("reading case 7: NOT_FOUND: gone"));
        let timed_out = anyhow::Error::new(Status::cancelled("Timeout expired"));
        assert_eq!(exit_code(&timed_out), EXIT_UNAVAILABLE, "the client's own deadline passed");
        assert!(describe(&timed_out).starts_with("DEADLINE_EXCEEDED: Timeout expired"));
        assert_eq!(exit_code(&anyhow::Error::new(Status::cancelled("the user gave up"))), EXIT_FAILURE);
    }

    #[test]
    fn field_violations_and_retry_info_are_printed() {
        let mut details = tonic_types::ErrorDetails::new();
        details.add_bad_request_violation("items[3].url", "must use http or https");
        details.set_retry_info(Some(Duration::from_millis(1500)));
        let status = Status::with_error_details(Code::InvalidArgument, "invalid submission", details);
        let text = describe(&anyhow::Error::new(status));
        assert!(text.contains("\n  items[3].url: must use http or https"), "{text}");
        assert!(text.contains("retry after 1.5s"), "{text}");
    }
}
