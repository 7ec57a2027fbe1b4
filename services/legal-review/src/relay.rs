//! Where legal review's hand-offs go: intake's projection and notification.

use crs_platform::outbox::{Handler, route};
use crs_platform::peers::PeerChannel;
use crs_proto::intake::UpdateStatusRequest;
use crs_proto::intake::intake_internal_service_client::IntakeInternalServiceClient;
use crs_proto::notification::NotifyRequest;
use crs_proto::notification::notification_internal_service_client::NotificationInternalServiceClient;

pub fn routes(intake: PeerChannel, notification: PeerChannel) -> [(&'static str, Handler); 2] {
    let intake = crs_platform::bounded!(IntakeInternalServiceClient::new(intake));
    let notification = crs_platform::bounded!(NotificationInternalServiceClient::new(notification));
    [
        route(move |r: UpdateStatusRequest| {
            let mut c = intake.clone();
            async move { c.update_status(r).await.map(drop) }
        }),
        route(move |r: NotifyRequest| {
            let mut c = notification.clone();
            async move { c.notify(r).await.map(drop) }
        }),
    ]
}
