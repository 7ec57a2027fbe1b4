//! Intake's outbox topics and the peer calls that deliver them.

use std::collections::HashMap;

use crs_platform::outbox::{Envelope, Handler, handler};
use crs_platform::peers::PeerChannel;
use crs_proto::notification::notification_service_client::NotificationServiceClient;
use crs_proto::notification::{NotifyRequest, PutSubscriptionRequest};
use crs_proto::triage::AssessRequestRequest;
use crs_proto::triage::triage_service_client::TriageServiceClient;

/// A new request goes to triage.
pub const ASSESS: &str = "triage.assess";
/// The agency is told its request was received.
pub const NOTIFY: &str = "notification.notify";
/// An agency's callback endpoint is registered with notification.
pub const SUBSCRIBE: &str = "notification.subscribe";

pub fn handlers(triage: PeerChannel, notification: PeerChannel) -> HashMap<&'static str, Handler> {
    let triage = TriageServiceClient::new(triage);
    let notify = NotificationServiceClient::new(notification);
    let subscribe = notify.clone();
    HashMap::from([
        (
            ASSESS,
            handler(move |e: Envelope| {
                let mut client = triage.clone();
                async move {
                    let mut request: AssessRequestRequest = e.decode()?;
                    request.event_id = e.id;
                    client.assess_request(request).await?;
                    Ok(())
                }
            }),
        ),
        (
            NOTIFY,
            handler(move |e: Envelope| {
                let mut client = notify.clone();
                async move {
                    let mut request: NotifyRequest = e.decode()?;
                    request.event_id = e.id;
                    client.notify(request).await?;
                    Ok(())
                }
            }),
        ),
        (
            SUBSCRIBE,
            handler(move |e: Envelope| {
                let mut client = subscribe.clone();
                async move {
                    let mut request: PutSubscriptionRequest = e.decode()?;
                    request.event_id = e.id;
                    client.put_subscription(request).await?;
                    Ok(())
                }
            }),
        ),
    ])
}
