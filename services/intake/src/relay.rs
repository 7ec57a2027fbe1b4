//! Intake's outbox topics and the peer calls that deliver them.

use std::collections::HashMap;

use crs_platform::outbox::{Handler, forward};
use crs_platform::peers::PeerChannel;
use crs_proto::notification::notification_service_client::NotificationServiceClient;
use crs_proto::notification::{NotifyRequest, PutSubscriptionRequest};
use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
use crs_proto::review::{ResumeCaseRequest, WithdrawCaseRequest};
use crs_proto::triage::AssessRequestRequest;
use crs_proto::triage::triage_service_client::TriageServiceClient;

/// A new request goes to triage.
pub const ASSESS: &str = "triage.assess";
/// The agency is told its request was received (or withdrawn).
pub const NOTIFY: &str = "notification.notify";
/// An agency's callback endpoint is registered with notification.
pub const SUBSCRIBE: &str = "notification.subscribe";
/// The agency withdrew its request: legal review closes the case.
pub const WITHDRAW: &str = "review.withdraw";
/// The agency answered the reviewer's question: legal review resumes the case.
pub const RESUME: &str = "review.resume";

pub fn handlers(triage: PeerChannel, review: PeerChannel, notification: PeerChannel) -> HashMap<&'static str, Handler> {
    let triage = TriageServiceClient::new(triage);
    let review = LegalReviewServiceClient::new(review);
    let notification = NotificationServiceClient::new(notification);
    let (review2, notification2) = (review.clone(), notification.clone());
    HashMap::from([
        (
            ASSESS,
            forward(move |r: AssessRequestRequest| {
                let mut c = triage.clone();
                async move { c.assess_request(r).await.map(drop) }
            }),
        ),
        (
            NOTIFY,
            forward(move |r: NotifyRequest| {
                let mut c = notification.clone();
                async move { c.notify(r).await.map(drop) }
            }),
        ),
        (
            SUBSCRIBE,
            forward(move |r: PutSubscriptionRequest| {
                let mut c = notification2.clone();
                async move { c.put_subscription(r).await.map(drop) }
            }),
        ),
        (
            WITHDRAW,
            forward(move |r: WithdrawCaseRequest| {
                let mut c = review.clone();
                async move { c.withdraw_case(r).await.map(drop) }
            }),
        ),
        (
            RESUME,
            forward(move |r: ResumeCaseRequest| {
                let mut c = review2.clone();
                async move { c.resume_case(r).await.map(drop) }
            }),
        ),
    ])
}
