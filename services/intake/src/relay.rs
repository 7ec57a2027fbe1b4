//! Intake's outbox topics and the peer calls that deliver them.

use std::collections::HashMap;

use crs_platform::outbox::{Envelope, Handler, handler};
use crs_platform::peers::PeerChannel;
use crs_proto::notification::notification_service_client::NotificationServiceClient;
use crs_proto::notification::{NotifyRequest, PutSubscriptionRequest};
use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
use crs_proto::review::{ResumeCaseRequest, WithdrawCaseRequest};
use crs_proto::triage::AssessRequestRequest;
use crs_proto::triage::triage_service_client::TriageServiceClient;

/// A new request goes to triage.
pub const ASSESS: &str = "triage.assess";
/// The agency is told its request was received.
pub const NOTIFY: &str = "notification.notify";
/// An agency's callback endpoint is registered with notification.
pub const SUBSCRIBE: &str = "notification.subscribe";
/// The agency withdrew its request: legal review closes the case.
pub const WITHDRAW: &str = "review.withdraw";
/// The agency answered the reviewer's question: legal review resumes the case.
pub const RESUME: &str = "review.resume";

pub fn handlers(triage: PeerChannel, review: PeerChannel, notification: PeerChannel) -> HashMap<&'static str, Handler> {
    let triage = TriageServiceClient::new(triage);
    let withdraw = LegalReviewServiceClient::new(review);
    let resume = withdraw.clone();
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
        (
            WITHDRAW,
            handler(move |e: Envelope| {
                let mut client = withdraw.clone();
                async move {
                    let mut request: WithdrawCaseRequest = e.decode()?;
                    request.event_id = e.id;
                    client.withdraw_case(request).await?;
                    Ok(())
                }
            }),
        ),
        (
            RESUME,
            handler(move |e: Envelope| {
                let mut client = resume.clone();
                async move {
                    let mut request: ResumeCaseRequest = e.decode()?;
                    request.event_id = e.id;
                    client.resume_case(request).await?;
                    Ok(())
                }
            }),
        ),
    ])
}
