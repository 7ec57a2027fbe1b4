//! The rules of CRS, in one place and with no I/O: no database, network, Redis or runtime.
//!
//! Services load what they store, ask this crate what may happen and what follows from it, then
//! persist and announce the result. So a reviewer changing a rule edits one file here:
//!
//! - [`state`]: the request/case state machine as one transition table;
//! - [`case`]: the case commands (claim, ask, decide, approve, escalate, withdraw, ...) as pure
//!   functions returning the new case and the events to act on;
//! - [`deadline`]: the SLA deadline (budget, receipt, paused time, thresholds), computed once;
//! - [`decision`]: what a complete decision is, and the territorial scope the law invoked allows;
//! - [`approval`]: which decisions need a second, senior reviewer;
//! - [`audit`]: the hash chain of the audit trail and its verification;
//! - [`vocab`]: the shared vocabulary (statuses, instruments, outcomes, grounds, country codes);
//! - [`violations`]: field-level problems, reported to callers as `google.rpc.BadRequest`.

#![forbid(unsafe_code)]

pub mod approval;
pub mod audit;
pub mod case;
pub mod deadline;
pub mod decision;
pub mod state;
pub mod violations;
pub mod vocab;

pub use violations::FieldViolations;
pub use vocab::Status;
