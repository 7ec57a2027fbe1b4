//! What every CRS service shares, so that each concern has one home:
//! configuration, telemetry, server bootstrap, authentication, storage, errors,
//! and the transactional outbox that carries every hand-off between services.

pub mod access;
pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod dead_letters;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod outbox;
pub mod paging;
pub mod peers;
pub mod redis;
pub mod retention;
pub mod revocation;
pub mod secrets;
pub mod server;
pub mod shared_txn;
pub mod telemetry;
pub mod time;
pub mod tls;

pub use auth::{Principal, Role};
pub use error::{FieldViolations, ServiceError};
