//! The in-process fallback: the same GCRA and the same all-or-nothing rule, on this process's
//! monotonic clock, used while Redis is unreachable.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Decision, Rule, RuleOutcome, Source};

#[derive(Debug)]
pub(crate) struct LocalGcra {
    epoch: Instant,
    /// Theoretical arrival time per rule key, in microseconds since `epoch`.
    tats: Mutex<HashMap<String, f64>>,
}

impl Default for LocalGcra {
    fn default() -> Self {
        LocalGcra { epoch: Instant::now(), tats: Mutex::new(HashMap::new()) }
    }
}

impl LocalGcra {
    pub(crate) fn check(&self, rules: &[Rule], cost: u32) -> Decision {
        let now = self.epoch.elapsed().as_micros() as f64;
        let mut tats = self.tats.lock().expect("local limiter lock");
        if tats.len() > 100_000 {
            tats.retain(|_, tat| *tat > now);
        }
        let mut outcomes = Vec::with_capacity(rules.len());
        let mut next = Vec::with_capacity(rules.len());
        let mut denied = false;
        for rule in rules {
            let key = state_key(&rule.subject, &rule.name);
            let interval = rule.limit.interval_us();
            let horizon = interval * f64::from(rule.limit.burst);
            let tat = tats.get(&key).copied().unwrap_or(now).max(now);
            let next_tat = tat + interval * f64::from(cost);
            let used = next_tat - now;
            let exceeded = used > horizon;
            denied |= exceeded && !rule.limit.shadow;
            next.push((key, (!exceeded).then_some(next_tat)));
            outcomes.push(RuleOutcome {
                name: rule.name.clone(),
                subject: rule.subject.clone(),
                limit: rule.limit.clone(),
                exceeded,
                remaining: if exceeded { 0 } else { ((horizon - used) / interval).floor() as u32 },
                retry_after: Duration::from_micros(if exceeded { (used - horizon) as u64 } else { 0 }),
                reset_after: Duration::from_micros(if exceeded { (tat - now) as u64 } else { used as u64 }),
            });
        }
        if !denied {
            for (key, tat) in next {
                if let Some(tat) = tat {
                    tats.insert(key, tat);
                }
            }
        }
        let tightest = tightest(&outcomes, denied);
        Decision { allowed: !denied, tightest, rules: outcomes, source: Source::Local }
    }

    /// Gives back `cost` to each of `consumed`, no further than a full bucket (`refund.lua`).
    pub(crate) fn refund(&self, consumed: &[&RuleOutcome], cost: u32) {
        let now = self.epoch.elapsed().as_micros() as f64;
        let mut tats = self.tats.lock().expect("local limiter lock");
        for rule in consumed {
            if let Some(tat) = tats.get_mut(&state_key(&rule.subject, &rule.name)) {
                *tat = (*tat - rule.limit.interval_us() * f64::from(cost)).max(now);
            }
        }
    }
}

/// The key of one limit's state for one subject.
fn state_key(subject: &str, name: &str) -> String {
    format!("{subject}:{name}")
}

/// Mirrors the script's choice: the denying rule freeing up last, else the one with least room;
/// shadow rules only when every rule is shadow.
fn tightest(outcomes: &[RuleOutcome], denied: bool) -> usize {
    let mut best = 0;
    for (i, r) in outcomes.iter().enumerate() {
        let b = &outcomes[best];
        if b.limit.shadow && !r.limit.shadow {
            best = i;
        } else if r.limit.shadow == b.limit.shadow {
            if denied {
                if r.exceeded && (!b.exceeded || r.retry_after > b.retry_after) {
                    best = i;
                }
            } else if r.remaining < b.remaining {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limit;

    fn rule(name: &str, rate: f64, burst: u32) -> Rule {
        Rule { name: name.into(), subject: "s".into(), limit: Limit { rate_per_sec: rate, burst, shadow: false } }
    }

    #[test]
    fn a_burst_is_admitted_exactly_and_no_more() {
        let g = LocalGcra::default();
        let rules = [rule("a", 0.001, 5)];
        let admitted = (0..20).filter(|_| g.check(&rules, 1).allowed).count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn a_denied_call_consumes_no_limit() {
        let g = LocalGcra::default();
        let both = [rule("wide", 0.001, 5), rule("narrow", 0.001, 2)];
        assert_eq!((0..10).filter(|_| g.check(&both, 1).allowed).count(), 2);
        let wide = [rule("wide", 0.001, 5)];
        assert_eq!((0..10).filter(|_| g.check(&wide, 1).allowed).count(), 3, "denied calls left `wide` untouched");
    }

    #[test]
    fn a_call_given_back_leaves_room_for_one_more_and_no_more() {
        let g = LocalGcra::default();
        let rules = [rule("a", 0.001, 3)];
        let decisions: Vec<Decision> = (0..3).map(|_| g.check(&rules, 1)).collect();
        assert!(decisions.iter().all(|d| d.allowed));
        assert!(!g.check(&rules, 1).allowed, "the burst is used up");
        let consumed: Vec<&RuleOutcome> = decisions[1].rules.iter().collect();
        g.refund(&consumed, 1);
        assert!(g.check(&rules, 1).allowed, "the call given back made room");
        assert!(!g.check(&rules, 1).allowed, "for one call only");
    }

    #[test]
    fn a_refund_never_fills_a_bucket_past_its_burst() {
        let g = LocalGcra::default();
        let rules = [rule("a", 0.001, 2)];
        let decision = g.check(&rules, 1);
        let consumed: Vec<&RuleOutcome> = decision.rules.iter().collect();
        for _ in 0..5 {
            g.refund(&consumed, 1);
        }
        assert_eq!((0..10).filter(|_| g.check(&rules, 1).allowed).count(), 2, "a full bucket holds the burst");
    }

    #[test]
    fn shadow_rules_count_but_never_deny() {
        let g = LocalGcra::default();
        let mut r = rule("shadowed", 0.001, 1);
        r.limit.shadow = true;
        let decisions: Vec<_> = (0..3).map(|_| g.check(std::slice::from_ref(&r), 1)).collect();
        assert!(decisions.iter().all(|d| d.allowed));
        assert_eq!(decisions.iter().filter(|d| d.rules[0].exceeded).count(), 2);
    }
}
