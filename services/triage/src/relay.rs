//! Triage's outbox topics and the peer calls that deliver them.

use std::collections::HashMap;

use crs_platform::outbox::{Handler, forward};
use crs_platform::peers::PeerChannel;
use crs_proto::intake::UpdateStatusRequest;
use crs_proto::intake::intake_service_client::IntakeServiceClient;
use crs_proto::review::EnqueueCaseRequest;
use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;

/// An assessed request goes to legal review's queue.
pub const ENQUEUE: &str = "review.enqueue";
/// Intake's projection learns the request was triaged.
pub const STATUS: &str = "intake.status";

pub fn handlers(intake: PeerChannel, review: PeerChannel) -> HashMap<&'static str, Handler> {
    let intake = IntakeServiceClient::new(intake);
    let review = LegalReviewServiceClient::new(review);
    HashMap::from([
        (
            ENQUEUE,
            forward(move |r: EnqueueCaseRequest| {
                let mut c = review.clone();
                async move { c.enqueue_case(r).await.map(drop) }
            }),
        ),
        (
            STATUS,
            forward(move |r: UpdateStatusRequest| {
                let mut c = intake.clone();
                async move { c.update_status(r).await.map(drop) }
            }),
        ),
    ])
}
