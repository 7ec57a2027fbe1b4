//! What operators watch: decisions by rule and outcome, calls near their limit, and whether
//! the in-process fallback is deciding.

use std::sync::LazyLock;

use prometheus::{
    IntCounter, IntCounterVec, IntGauge, register_int_counter, register_int_counter_vec, register_int_gauge,
};

use crate::{Decision, RuleOutcome, Source};

/// `outcome` is `allowed`, `denied` or `shadow_denied`; `source` is `redis` or `local`.
pub static DECISIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "crs_ratelimit_decisions_total",
        "Rate-limit decisions by rule, outcome and where they were made.",
        &["rule", "outcome", "source"]
    )
    .expect("metric registers once")
});

/// Allowed calls that left a rule with 20 % or less of its burst.
pub static NEAR_LIMIT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "crs_ratelimit_near_limit_total",
        "Allowed calls that left a rule at or above 80 % of its burst.",
        &["rule"]
    )
    .expect("metric registers once")
});

/// Allowed calls that gave back what they took, because they did nothing in the end.
pub static REFUNDED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "crs_ratelimit_refunded_total",
        "Allowed calls that gave their consumption of a rule back, having done nothing in the end.",
        &["rule"]
    )
    .expect("metric registers once")
});

/// 1 while decisions are made in process because Redis is unreachable.
pub static FALLBACK_ACTIVE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "crs_ratelimit_fallback_active",
        "1 while rate limits are decided in process (Redis unreachable)."
    )
    .expect("metric registers once")
});

/// Times the limiter fell back to in-process decisions.
pub static FALLBACK_ENTERED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "crs_ratelimit_fallback_entered_total",
        "Times rate limiting fell back to in-process decisions."
    )
    .expect("metric registers once")
});

pub(crate) fn record_refund(consumed: &[&RuleOutcome]) {
    for rule in consumed {
        REFUNDED.with_label_values(&[rule.name.as_str()]).inc();
    }
}

pub(crate) fn record(decision: &Decision) {
    let source = match decision.source {
        Source::Redis => "redis",
        Source::Local => "local",
    };
    // Every rule was evaluated atomically, so each is counted, not only the tightest.
    for rule in &decision.rules {
        let outcome = match (rule.exceeded, rule.limit.shadow) {
            (false, _) => "allowed",
            (true, true) => "shadow_denied",
            (true, false) => "denied",
        };
        DECISIONS.with_label_values(&[rule.name.as_str(), outcome, source]).inc();
        if decision.allowed && !rule.exceeded && f64::from(rule.remaining) <= 0.2 * f64::from(rule.limit.burst) {
            NEAR_LIMIT.with_label_values(&[rule.name.as_str()]).inc();
        }
    }
}
