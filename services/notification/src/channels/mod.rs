//! How audiences are told: one module per channel, each a [`Channel`]. Audiences and their
//! messages know nothing of channels, and the scheduler knows channels only through this trait,
//! so a new channel is a new module here (and its wire name in `Channel` in the proto).

pub mod email;
pub mod stream;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crs_platform::error::FieldViolations;
use crs_proto::notification::{Audience, Channel as ChannelKind};
use futures::future::BoxFuture;

use crate::entities::{delivery, message, subscription};

/// One attempt at a delivery: the delivery, the audience's message, and the subscription as it
/// is now (its current endpoint and secrets, so retries follow changes).
pub struct Attempt {
    pub delivery: delivery::Model,
    pub message: message::Model,
    pub subscription: subscription::Model,
}

/// How an attempt ended.
#[derive(Debug)]
pub enum Outcome {
    Delivered,
    Failed(Failure),
}

/// Why an attempt failed, in two registers.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Trying again cannot help (the endpoint is gone or not allowed): given up at once.
    pub permanent: bool,
    /// Fit for the subscriber (e.g. an agency listing its deliveries): no addresses, no
    /// internal errors.
    pub summary: String,
    /// The whole story, for admins and logs.
    pub detail: String,
    /// The endpoint asked to be left alone this long (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// Whether this says the endpoint is unwell (timeouts, 5xx), which opens its circuit after
    /// enough in a row; a refusal by policy does not.
    pub endpoint_unwell: bool,
}

impl Failure {
    /// A failure on this side (a secret that does not open, a template that does not render):
    /// retried, but no fault of the endpoint's.
    pub fn internal(detail: impl Into<String>) -> Failure {
        Failure {
            permanent: false,
            summary: "an internal error; it will be retried".into(),
            detail: detail.into(),
            retry_after: None,
            endpoint_unwell: false,
        }
    }
}

/// A way of telling an audience.
pub trait Channel: Send + Sync {
    /// Its wire name.
    fn kind(&self) -> ChannelKind;

    /// Whether this deployment can use it (email needs an SMTP server).
    fn enabled(&self) -> bool {
        true
    }

    /// Whether deliveries on it are signed, so its subscriptions hold a secret.
    fn signs(&self) -> bool {
        false
    }

    /// Whether a delivery is complete once recorded (the stream publishes in the same
    /// transaction); such deliveries are never attempted.
    fn complete_when_recorded(&self) -> bool {
        false
    }

    /// The longest one attempt on it may take: a delivery claimed for an attempt is leased for
    /// this and a margin, so one cut off by a crash is retried once its lease ends.
    fn longest_attempt(&self) -> Duration {
        Duration::ZERO
    }

    /// Checks a subscription's endpoint for this channel and audience, adding field violations.
    fn check_endpoint(&self, audience: Audience, endpoint: &str, violations: &mut FieldViolations);

    /// Makes one attempt.
    fn deliver<'a>(&'a self, attempt: &'a Attempt) -> BoxFuture<'a, Outcome>;
}

/// Every channel of this deployment, by wire number.
#[derive(Clone)]
pub struct Channels {
    by_kind: Arc<HashMap<i32, Arc<dyn Channel>>>,
}

impl Channels {
    pub fn new(channels: Vec<Arc<dyn Channel>>) -> Channels {
        Channels { by_kind: Arc::new(channels.into_iter().map(|c| (c.kind() as i32, c)).collect()) }
    }

    /// Every channel, by wire number.
    pub fn all(&self) -> impl Iterator<Item = (i32, &Arc<dyn Channel>)> {
        self.by_kind.iter().map(|(kind, c)| (*kind, c))
    }

    pub fn get(&self, kind: i32) -> Option<&Arc<dyn Channel>> {
        self.by_kind.get(&kind)
    }

    /// The channel of `kind` if this deployment can deliver on it: a subscription on any other
    /// is kept, but gets no deliveries.
    pub fn enabled(&self, kind: i32) -> Option<&Arc<dyn Channel>> {
        self.get(kind).filter(|c| c.enabled())
    }
}

/// The wire name of a channel without its prefix, in lower case, for labels and messages.
pub fn name(kind: i32) -> String {
    crs_proto::convert::short_name_of::<ChannelKind>(kind).to_lowercase()
}
