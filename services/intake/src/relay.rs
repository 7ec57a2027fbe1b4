//! Where intake's hand-offs go: triage, legal review and notification.

use crs_platform::outbox::{Handler, route};
use crs_platform::peers::PeerChannel;
use crs_proto::notification::notification_internal_service_client::NotificationInternalServiceClient;
use crs_proto::notification::{NotifyRequest, PutSubscriptionRequest};
use crs_proto::review::legal_review_internal_service_client::LegalReviewInternalServiceClient;
use crs_proto::review::{ResumeCaseRequest, WithdrawCaseRequest};
use crs_proto::triage::AssessRequestRequest;
use crs_proto::triage::triage_internal_service_client::TriageInternalServiceClient;

pub fn routes(triage: PeerChannel, review: PeerChannel, notification: PeerChannel) -> [(&'static str, Handler); 5] {
    let triage = crs_platform::bounded!(TriageInternalServiceClient::new(triage));
    let review = crs_platform::bounded!(LegalReviewInternalServiceClient::new(review));
    let notification = crs_platform::bounded!(NotificationInternalServiceClient::new(notification));
    let (review2, notification2) = (review.clone(), notification.clone());
    [
        route(move |r: AssessRequestRequest| {
            let mut c = triage.clone();
            async move { c.assess_request(r).await.map(drop) }
        }),
        route(move |r: NotifyRequest| {
            let mut c = notification.clone();
            async move { c.notify(r).await.map(drop) }
        }),
        route(move |r: PutSubscriptionRequest| {
            let mut c = notification2.clone();
            async move { c.put_agency_subscription(r).await.map(drop) }
        }),
        route(move |r: ResumeCaseRequest| {
            let mut c = review.clone();
            async move { c.resume_case(r).await.map(drop) }
        }),
        // Withdrawals are asked synchronously now; rows queued before that still go, and a
        // refusal (a decision came first) is the answer, not a failure to retry.
        route(move |r: WithdrawCaseRequest| {
            let mut c = review2.clone();
            async move {
                match c.withdraw_case(r).await {
                    Err(s) if s.code() == tonic::Code::FailedPrecondition => Ok(()),
                    other => other.map(drop),
                }
            }
        }),
    ]
}
