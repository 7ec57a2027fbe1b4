//! What operators watch in notification (README "Metrics" says what to do when each moves).

use std::sync::LazyLock;

use prometheus::{
    IntCounterVec, IntGauge, IntGaugeVec, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
};

/// Delivery attempts by audience, channel and resulting state (`delivered`, `retrying`, and
/// `failed` when a delivery is given up: a dead letter).
pub static DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "crs_deliveries_total",
        "Delivery attempts by audience, channel and resulting state; state=failed counts dead letters.",
        &["audience", "channel", "state"]
    )
    .expect("registers once")
});

/// Deliveries given up on and waiting for an admin's RetryDelivery, by audience.
pub static DEAD_LETTERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "crs_deliveries_failed",
        "Deliveries in state FAILED (dead letters awaiting RetryDelivery), by audience.",
        &["audience"]
    )
    .expect("registers once")
});

/// Deliveries waiting for an attempt (pending or retrying), by channel.
pub static BACKLOG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("crs_delivery_backlog", "Deliveries pending or retrying, by channel.", &["channel"])
        .expect("registers once")
});

/// Age of the oldest delivery still waiting.
pub static OLDEST_WAITING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("crs_delivery_oldest_waiting_seconds", "Age of the oldest delivery still pending or retrying.")
        .expect("registers once")
});

/// Endpoints whose circuit is open in this replica.
pub static CIRCUITS_OPEN: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "crs_delivery_circuits_open",
        "Endpoints whose circuit breaker is open (attempts paused after consecutive failures)."
    )
    .expect("registers once")
});

/// Webhook connections refused because the address is not allowed, by the range it is in.
pub static ADDRESSES_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "crs_webhook_addresses_refused_total",
        "Webhook destinations refused because their address is not allowed, by range (loopback, private, cloud_metadata, ...).",
        &["range"]
    )
    .expect("registers once")
});

/// Registers every metric at start-up, so each is exported (at zero) before it first moves.
pub fn register() {
    LazyLock::force(&DELIVERIES);
    LazyLock::force(&DEAD_LETTERS);
    LazyLock::force(&BACKLOG);
    LazyLock::force(&OLDEST_WAITING);
    LazyLock::force(&CIRCUITS_OPEN);
    LazyLock::force(&ADDRESSES_REFUSED);
}
