//! What operators watch on the SLA clocks.

use std::sync::LazyLock;

use prometheus::{
    Histogram, IntCounter, IntCounterVec, IntGauge, register_histogram, register_int_counter, register_int_counter_vec,
    register_int_gauge,
};

/// Clocks armed in the index (entries waiting to fire).
pub static ARMED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("crs_sla_timers_armed", "SLA clock entries armed in the Redis index.").expect("registers once")
});

/// How late thresholds fired, in seconds.
pub static LATENESS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "crs_sla_firing_lateness_seconds",
        "How long after its due time an SLA threshold fired.",
        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0]
    )
    .expect("registers once")
});

/// Thresholds fired, by kind (`warning`, `breach`) and path (`redis`, `database`).
pub static FIRED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("crs_sla_firings_total", "SLA thresholds fired.", &["kind", "path"])
        .expect("registers once")
});

/// Claims fired again because the sweeper holding them did not finish within its lease.
pub static REFIRED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("crs_sla_claims_refired_total", "Timer claims re-fired after their lease ended.")
        .expect("registers once")
});

/// Rebuilds of the index from the database.
pub static REBUILDS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("crs_sla_index_rebuilds_total", "Rebuilds of the SLA timer index from the database.")
        .expect("registers once")
});

/// 1 while the sweeper reads due clocks from the database because Redis is unreachable.
pub static DATABASE_FALLBACK: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("crs_sla_database_fallback_active", "1 while SLA clocks are swept from the database.")
        .expect("registers once")
});
