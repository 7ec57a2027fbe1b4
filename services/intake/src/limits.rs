//! Rate limits on submissions: which limits a call is checked against, per-agency overrides,
//! and how a decision is told to the caller (`x-ratelimit-*` metadata, `RetryInfo`,
//! `QuotaFailure`).
//!
//! Every submission is checked against four limits at once: the agency's rate and burst, the
//! agency's daily quota, its jurisdiction's and the global one. Legally binding orders
//! (`COURT_ORDER`, `GOVERNMENT_ORDER`) draw from their own, larger buckets, so a flood of
//! notices can never crowd out an order.

use std::collections::HashMap;

use crs_platform::FieldViolations;
use crs_proto::intake::RateLimitOverride;
use crs_ratelimit::{Decision, Limit, Rule};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;

use crate::entities::agency;

/// The tier used for agencies whose tier is not configured.
pub const DEFAULT_TIER: &str = "standard";

/// Rules an admin may override per agency.
pub const OVERRIDABLE: [&str; 4] = ["agency", "agency_daily", "agency_binding", "agency_daily_binding"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Prefix of the limiter's Redis keys.
    pub key_prefix: String,
    /// Per-agency limits by tier (the agency's `rate_limit_tier`).
    pub tiers: HashMap<String, Tier>,
    /// Per jurisdiction, shared by all its agencies.
    pub jurisdiction: Buckets,
    /// Across every agency.
    pub global: Buckets,
}

/// An agency's limits: one set for notices and requests, a larger one for binding orders.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub normal: AgencyLimits,
    pub binding: AgencyLimits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyLimits {
    pub requests: Limit,
    pub daily: Limit,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Buckets {
    pub normal: Limit,
    pub binding: Limit,
}

impl RateLimitConfig {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.tiers.contains_key(DEFAULT_TIER),
            "rate_limits.tiers must define the `{DEFAULT_TIER}` tier"
        );
        Ok(())
    }
}

/// An override as stored on the agency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredOverride {
    pub rule: String,
    pub rate_per_sec: f64,
    pub burst: u32,
    pub shadow: bool,
}

impl StoredOverride {
    fn limit(&self) -> Limit {
        Limit { rate_per_sec: self.rate_per_sec, burst: self.burst, shadow: self.shadow }
    }

    pub fn to_proto(&self) -> RateLimitOverride {
        RateLimitOverride {
            rule: self.rule.clone(),
            rate_per_second: self.rate_per_sec,
            burst: self.burst,
            per_day: 0,
            shadow: self.shadow,
        }
    }
}

pub fn stored_overrides(agency: &agency::Model) -> Vec<StoredOverride> {
    serde_json::from_str(&agency.rate_limit_overrides).unwrap_or_default()
}

/// Checks overrides from an admin; each problem is named by its field.
pub fn validate_overrides(overrides: &[RateLimitOverride]) -> Result<Vec<StoredOverride>, FieldViolations> {
    let mut v = FieldViolations::new();
    let mut out: Vec<StoredOverride> = Vec::new();
    for (i, o) in overrides.iter().enumerate() {
        let field = |name: &str| format!("overrides[{i}].{name}");
        if !OVERRIDABLE.contains(&o.rule.as_str()) {
            v.add(field("rule"), format!("must be one of {}", OVERRIDABLE.join(", ")));
            continue;
        }
        if out.iter().any(|s| s.rule == o.rule) {
            v.add(field("rule"), format!("{} is overridden twice", o.rule));
            continue;
        }
        let limit = if o.per_day > 0 {
            if o.rate_per_second != 0.0 {
                v.add(field("rate_per_second"), "set either per_day or rate_per_second, not both");
                continue;
            }
            Limit {
                burst: if o.burst == 0 { o.per_day } else { o.burst },
                shadow: o.shadow,
                ..Limit::per_day(o.per_day)
            }
        } else {
            Limit { rate_per_sec: o.rate_per_second, burst: o.burst, shadow: o.shadow }
        };
        if let Err(why) = limit.check() {
            let name = if why.starts_with("rate") { "rate_per_second" } else { "burst" };
            v.add(field(name), why);
            continue;
        }
        out.push(StoredOverride {
            rule: o.rule.clone(),
            rate_per_sec: limit.rate_per_sec,
            burst: limit.burst,
            shadow: limit.shadow,
        });
    }
    v.into_result().map(|()| out)
}

/// Whether a submission's instrument binds the platform in law (see `crs_domain::vocab`).
pub fn is_binding(instrument: i32) -> bool {
    crs_proto::convert::instrument(instrument).is_some_and(|i| i.is_binding())
}

/// The four limits a submission of `agency` is checked against.
pub fn rules(cfg: &RateLimitConfig, agency: &agency::Model, binding: bool) -> Vec<Rule> {
    let tier = cfg.tiers.get(&agency.rate_limit_tier).unwrap_or_else(|| &cfg.tiers[DEFAULT_TIER]);
    let (own, suffix, jurisdiction, global) = if binding {
        (&tier.binding, "_binding", &cfg.jurisdiction.binding, &cfg.global.binding)
    } else {
        (&tier.normal, "", &cfg.jurisdiction.normal, &cfg.global.normal)
    };
    let overrides = stored_overrides(agency);
    let limit = |name: &str, default: &Limit| {
        overrides.iter().find(|o| o.rule == name).map(StoredOverride::limit).unwrap_or_else(|| default.clone())
    };
    let agency_subject = format!("agency:{}", agency.id);
    vec![
        Rule {
            name: format!("agency{suffix}"),
            subject: agency_subject.clone(),
            limit: limit(&format!("agency{suffix}"), &own.requests),
        },
        Rule {
            name: format!("agency_daily{suffix}"),
            subject: agency_subject,
            limit: limit(&format!("agency_daily{suffix}"), &own.daily),
        },
        Rule {
            name: format!("jurisdiction{suffix}"),
            subject: format!("jurisdiction:{}", agency.jurisdiction),
            limit: jurisdiction.clone(),
        },
        Rule { name: format!("global{suffix}"), subject: "all".into(), limit: global.clone() },
    ]
}

/// `x-ratelimit-limit` (the tightest rule's burst), `x-ratelimit-remaining` and
/// `x-ratelimit-reset` (seconds until that rule's bucket is full again).
pub fn metadata(decision: &Decision) -> MetadataMap {
    let tightest = decision.tightest();
    let mut m = MetadataMap::new();
    let reset = tightest.reset_after.as_secs_f64().ceil() as u64;
    for (key, value) in [
        ("x-ratelimit-limit", tightest.limit.burst.to_string()),
        ("x-ratelimit-remaining", tightest.remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ] {
        m.insert(key, value.parse().expect("digits are valid metadata"));
    }
    m
}
