//! Legal review's outbox topics and the peer calls that deliver them.

use std::collections::HashMap;

use crs_platform::outbox::{Envelope, Handler, handler};
use crs_platform::peers::PeerChannel;
use crs_proto::intake::UpdateStatusRequest;
use crs_proto::intake::intake_service_client::IntakeServiceClient;
use crs_proto::notification::NotifyRequest;
use crs_proto::notification::notification_service_client::NotificationServiceClient;

/// Intake's projection follows the case.
pub const STATUS: &str = "intake.status";
/// Everyone concerned is told of a decision.
pub const NOTIFY: &str = "notification.notify";

pub fn handlers(intake: PeerChannel, notification: PeerChannel) -> HashMap<&'static str, Handler> {
    let intake = IntakeServiceClient::new(intake);
    let notification = NotificationServiceClient::new(notification);
    HashMap::from([
        (
            STATUS,
            handler(move |e: Envelope| {
                let mut client = intake.clone();
                async move {
                    let mut request: UpdateStatusRequest = e.decode()?;
                    request.event_id = e.id;
                    client.update_status(request).await?;
                    Ok(())
                }
            }),
        ),
        (
            NOTIFY,
            handler(move |e: Envelope| {
                let mut client = notification.clone();
                async move {
                    let mut request: NotifyRequest = e.decode()?;
                    request.event_id = e.id;
                    client.notify(request).await?;
                    Ok(())
                }
            }),
        ),
    ])
}
