//! The Subscribe stream as a channel: a subscription on it publishes the audience's messages on
//! `NotificationService.Subscribe`, in the transaction that records them (see `crate::stream`),
//! so its deliveries are complete when recorded and never attempted.

use crs_platform::error::FieldViolations;
use crs_proto::notification::{Audience, Channel as ChannelKind};
use futures::future::BoxFuture;

use super::{Attempt, Channel, Outcome};

pub struct Stream;

impl Channel for Stream {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Stream
    }

    fn complete_when_recorded(&self) -> bool {
        true
    }

    fn check_endpoint(&self, _audience: Audience, endpoint: &str, v: &mut FieldViolations) {
        if !endpoint.is_empty() {
            v.add("endpoint", "must be empty for the stream: consumers call Subscribe");
        }
    }

    fn deliver<'a>(&'a self, _attempt: &'a Attempt) -> BoxFuture<'a, Outcome> {
        Box::pin(std::future::ready(Outcome::Delivered))
    }
}
