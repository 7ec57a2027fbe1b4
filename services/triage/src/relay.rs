//! Triage's outbox topics and the peer calls that deliver them.

use std::collections::HashMap;

use crs_platform::outbox::{Envelope, Handler, handler};
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
            handler(move |e: Envelope| {
                let mut client = review.clone();
                async move {
                    let mut request: EnqueueCaseRequest = e.decode()?;
                    request.event_id = e.id;
                    client.enqueue_case(request).await?;
                    Ok(())
                }
            }),
        ),
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
    ])
}
