//! Where legal review's hand-offs go: intake's projection, notification, and triage's record of
//! decisions.

use crs_platform::outbox::{Handler, route};
use crs_platform::peers::PeerChannel;
use crs_proto::intake::UpdateStatusRequest;
use crs_proto::intake::intake_internal_service_client::IntakeInternalServiceClient;
use crs_proto::notification::NotifyRequest;
use crs_proto::notification::notification_internal_service_client::NotificationInternalServiceClient;
use crs_proto::triage::RecordDecisionRequest;
use crs_proto::triage::triage_internal_service_client::TriageInternalServiceClient;

pub fn routes(intake: PeerChannel, notification: PeerChannel, triage: PeerChannel) -> [(&'static str, Handler); 3] {
    let intake = crs_platform::bounded!(IntakeInternalServiceClient::new(intake));
    let notification = crs_platform::bounded!(NotificationInternalServiceClient::new(notification));
    let triage = crs_platform::bounded!(TriageInternalServiceClient::new(triage));
    [
        route(move |r: UpdateStatusRequest| {
            let mut c = intake.clone();
            async move { c.update_status(r).await.map(drop) }
        }),
        route(move |r: NotifyRequest| {
            let mut c = notification.clone();
            async move { c.notify(r).await.map(drop) }
        }),
        route(move |r: RecordDecisionRequest| {
            let mut c = triage.clone();
            async move { c.record_decision(r).await.map(drop) }
        }),
    ]
}
