//! Legal review's outbox topics and the peer calls that deliver them.

use std::collections::HashMap;

use crs_platform::outbox::{Handler, forward};
use crs_platform::peers::PeerChannel;
use crs_proto::intake::UpdateStatusRequest;
use crs_proto::intake::intake_service_client::IntakeServiceClient;
use crs_proto::notification::NotifyRequest;
use crs_proto::notification::notification_service_client::NotificationServiceClient;

/// Intake's projection follows the case.
pub const STATUS: &str = "intake.status";
/// Everyone concerned is told: decisions, questions to the agency, SLA warnings and breaches.
pub const NOTIFY: &str = "notification.notify";

pub fn handlers(intake: PeerChannel, notification: PeerChannel) -> HashMap<&'static str, Handler> {
    let intake = IntakeServiceClient::new(intake);
    let notification = NotificationServiceClient::new(notification);
    HashMap::from([
        (
            STATUS,
            forward(move |r: UpdateStatusRequest| {
                let mut c = intake.clone();
                async move { c.update_status(r).await.map(drop) }
            }),
        ),
        (
            NOTIFY,
            forward(move |r: NotifyRequest| {
                let mut c = notification.clone();
                async move { c.notify(r).await.map(drop) }
            }),
        ),
    ])
}
