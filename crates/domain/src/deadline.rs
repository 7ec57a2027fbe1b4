//! The SLA deadline of a case, computed in one place.
//!
//! The clock starts at the request's receipt and carries the budget of its SLA policy. Time
//! spent paused (awaiting the agency's answer, for policies that pause) does not count, so every
//! threshold moves later by exactly the time paused. Thresholds are percentages of the budget:
//! the policy's warnings, then 100, the breach.

use crate::FieldViolations;

/// The percentage of the budget at which the deadline is breached.
pub const BREACH: u32 = 100;

/// The default warnings, as percentages of the budget.
pub const DEFAULT_WARNINGS: [u32; 3] = [50, 75, 90];

/// A running, paused or finished SLA deadline. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    /// Time allowed from receipt to decision, excluding paused time.
    pub budget_ms: i64,
    /// When the request was received: the clock starts here.
    pub started_at: i64,
    /// Set while paused.
    pub paused_at: Option<i64>,
    /// Time spent paused before the current pause.
    pub paused_total_ms: i64,
    /// Percentages of the budget at which to act, ascending, ending with [`BREACH`].
    pub thresholds: Vec<u32>,
}

impl Deadline {
    /// A running deadline of `budget_ms` from `started_at`, warning at `warnings` percent.
    pub fn new(budget_ms: i64, started_at: i64, warnings: &[u32]) -> Deadline {
        Deadline { budget_ms, started_at, paused_at: None, paused_total_ms: 0, thresholds: thresholds(warnings) }
    }

    /// When threshold `i` falls, counting the pauses so far (not a pause still running).
    pub fn threshold_at(&self, i: usize) -> i64 {
        self.started_at + self.paused_total_ms + self.budget_ms * i64::from(self.thresholds[i]) / 100
    }

    /// When the decision is due if the clock runs from now on: receipt + budget + time paused,
    /// counting a pause still running up to `now`.
    pub fn due_at(&self, now: i64) -> i64 {
        self.started_at + self.paused_total_ms + self.paused_at.map_or(0, |p| (now - p).max(0)) + self.budget_ms
    }

    /// Budget left at `now`, not counting paused time (negative once breached).
    pub fn remaining_ms(&self, now: i64) -> i64 {
        self.due_at(now) - now
    }

    pub fn is_paused(&self) -> bool {
        self.paused_at.is_some()
    }

    /// Stops the clock at `now`; pausing a paused clock changes nothing.
    pub fn pause(&mut self, now: i64) {
        if self.paused_at.is_none() {
            self.paused_at = Some(now);
        }
    }

    /// Restarts the clock at `now`: the time paused is added to every threshold.
    pub fn resume(&mut self, now: i64) {
        if let Some(p) = self.paused_at.take() {
            self.paused_total_ms += (now - p).max(0);
        }
    }
}

/// The thresholds of a policy with `warnings`: the warnings ascending, then the breach.
pub fn thresholds(warnings: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = warnings.iter().copied().filter(|w| *w > 0 && *w < BREACH).collect();
    out.sort_unstable();
    out.dedup();
    out.push(BREACH);
    out
}

/// Checks a policy's warnings: each strictly between 0 and 100 %, ascending, none repeated.
pub fn check_warnings(field: &str, warnings: &[u32]) -> Result<(), FieldViolations> {
    let mut v = FieldViolations::new();
    for (i, w) in warnings.iter().enumerate() {
        if *w == 0 || *w >= BREACH {
            v.add(
                format!("{field}[{i}]"),
                format!("{w} % is not a warning: it must be between 1 and 99 (100 % is the breach)"),
            );
        } else if i > 0 && *w <= warnings[i - 1] {
            v.add(format!("{field}[{i}]"), "warnings must be ascending, each once");
        }
    }
    v.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_fall_at_their_share_of_the_budget_plus_paused_time() {
        let mut d = Deadline::new(3_600_000, 1_000, &DEFAULT_WARNINGS);
        assert_eq!(d.thresholds, [50, 75, 90, 100]);
        assert_eq!(d.threshold_at(0), 1_000 + 1_800_000);
        assert_eq!(d.threshold_at(3), 1_000 + 3_600_000);
        assert_eq!(d.due_at(5_000), 3_601_000);
        d.pause(10_000);
        assert_eq!(d.remaining_ms(70_000), 3_600_000 - 9_000, "the pause does not count");
        d.resume(70_000);
        assert_eq!(d.threshold_at(3), 1_000 + 3_660_000);
        assert_eq!(d.due_at(80_000), 3_661_000);
    }

    #[test]
    fn warnings_must_be_ascending_and_below_the_breach() {
        assert!(check_warnings("w", &[50, 75, 90]).is_ok());
        assert_eq!(check_warnings("w", &[50, 120]).unwrap_err().fields(), ["w[1]"]);
        assert_eq!(check_warnings("w", &[75, 50]).unwrap_err().fields(), ["w[1]"]);
        assert_eq!(check_warnings("w", &[0]).unwrap_err().fields(), ["w[0]"]);
    }
}
