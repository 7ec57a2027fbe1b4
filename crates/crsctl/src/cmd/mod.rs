//! The commands, one module per group.

pub mod agency;
pub mod audit;
pub mod context;
pub mod dead_letters;
pub mod deliveries;
pub mod import;
pub mod local;
pub mod request;
pub mod review;
pub mod sla;
pub mod status;
pub mod token;

use crs_proto::admin::outbox_admin_service_client::OutboxAdminServiceClient;
use crs_proto::intake::agency_admin_service_client::AgencyAdminServiceClient;
use crs_proto::intake::intake_service_client::IntakeServiceClient;
use crs_proto::notification::notification_service_client::NotificationServiceClient;
use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
use crs_proto::triage::triage_service_client::TriageServiceClient;

use crate::client::{Conn, Session};

pub fn intake(s: &Session) -> anyhow::Result<IntakeServiceClient<Conn>> {
    Ok(IntakeServiceClient::new(s.conn("intake")?))
}

pub fn agency_admin(s: &Session) -> anyhow::Result<AgencyAdminServiceClient<Conn>> {
    Ok(AgencyAdminServiceClient::new(s.conn("intake")?))
}

pub fn review(s: &Session) -> anyhow::Result<LegalReviewServiceClient<Conn>> {
    Ok(LegalReviewServiceClient::new(s.conn("legal-review")?))
}

pub fn triage(s: &Session) -> anyhow::Result<TriageServiceClient<Conn>> {
    Ok(TriageServiceClient::new(s.conn("triage")?))
}

pub fn notification(s: &Session) -> anyhow::Result<NotificationServiceClient<Conn>> {
    Ok(NotificationServiceClient::new(s.conn("notification")?))
}

pub fn outbox(s: &Session, service: &str) -> anyhow::Result<OutboxAdminServiceClient<Conn>> {
    Ok(OutboxAdminServiceClient::new(s.conn(service)?))
}

/// A fresh idempotency key for a command that changes something, unless one was given
/// (give one to retry a command safely from a script).
pub fn key_or_new(key: &Option<String>) -> String {
    key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}
