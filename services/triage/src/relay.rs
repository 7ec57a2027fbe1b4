//! Where triage's hand-offs go: legal review's queues.

use crs_platform::outbox::{Handler, route};
use crs_platform::peers::PeerChannel;
use crs_proto::review::EnqueueCaseRequest;
use crs_proto::review::legal_review_internal_service_client::LegalReviewInternalServiceClient;

pub fn routes(review: PeerChannel) -> [(&'static str, Handler); 1] {
    let review = crs_platform::bounded!(LegalReviewInternalServiceClient::new(review));
    [route(move |r: EnqueueCaseRequest| {
        let mut c = review.clone();
        async move { c.enqueue_case(r).await.map(drop) }
    })]
}
