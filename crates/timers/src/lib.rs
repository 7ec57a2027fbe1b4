//! SLA clocks that warn, escalate, pause, and survive losing Redis.
//!
//! The database holds each clock's truth ([`Clock`]: budget, start, paused time, generation,
//! thresholds, which threshold is next). Redis holds the index that fires: a sorted set with one
//! entry per running clock, its next threshold, scored by due time ([`index::TimerIndex`]). Any
//! number of sweepers ([`sweeper::Sweeper`]) claim due entries atomically with a lease, fire them
//! through a [`sweeper::FiringHandler`] inside a database transaction that also records the
//! firing (unique by case, threshold and generation, so a firing has its effect once), and
//! re-fire the claims of a sweeper that died once its lease runs out.
//!
//! Every change to a clock (pause, resume, stop) starts a new generation, so index entries of an
//! older generation are recognised as stale and dropped. While Redis is unreachable, sweepers
//! read due clocks from the database; when Redis comes back empty, the index is rebuilt from it.

#![forbid(unsafe_code)]

pub mod index;
pub mod metrics;
pub mod store;
pub mod sweeper;

pub use crs_domain::deadline::Deadline;
pub use store::{ClockMigration, ClockStore};

/// A clock as the database holds it: the case's SLA [`Deadline`] (whose arithmetic lives in the
/// domain crate) and the firing state around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    pub case_id: String,
    /// Budget, start, paused time and thresholds.
    pub deadline: Deadline,
    /// Bumped on every change; index entries of older generations are stale.
    pub generation: i64,
    /// Index into the deadline's thresholds of the next one to fire.
    pub next_index: usize,
    pub stopped_at: Option<i64>,
    /// The case's trace context, so firings continue its trace.
    pub trace_context: Option<String>,
}

impl Clock {
    /// When threshold `i` is due, given the time paused so far.
    pub fn due_at(&self, i: usize) -> i64 {
        self.deadline.threshold_at(i)
    }

    /// The next threshold to fire and when, if the clock is running.
    pub fn next_due(&self) -> Option<(usize, i64)> {
        if self.stopped_at.is_some() || self.deadline.is_paused() || self.next_index >= self.deadline.thresholds.len() {
            return None;
        }
        Some((self.next_index, self.due_at(self.next_index)))
    }

    /// Budget left at `now`, not counting paused time.
    pub fn remaining_ms(&self, now: i64) -> i64 {
        self.deadline.remaining_ms(now)
    }

    /// The index entry naming this clock's next threshold in this generation.
    pub fn member(&self) -> Option<Member> {
        self.next_due().map(|(i, _)| Member { case_id: self.case_id.clone(), generation: self.generation, index: i })
    }
}

/// One index entry: a clock's threshold in one generation, written `case|generation|index`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Member {
    pub case_id: String,
    pub generation: i64,
    pub index: usize,
}

impl Member {
    pub fn encode(&self) -> String {
        format!("{}|{}|{}", self.case_id, self.generation, self.index)
    }

    pub fn decode(s: &str) -> Option<Member> {
        let mut parts = s.rsplitn(3, '|');
        let index = parts.next()?.parse().ok()?;
        let generation = parts.next()?.parse().ok()?;
        let case_id = parts.next()?.to_owned();
        Some(Member { case_id, generation, index })
    }
}

/// A threshold that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub case_id: String,
    /// Percent of the budget; 100 is the breach.
    pub threshold: u32,
    pub generation: i64,
    pub due_at: i64,
    pub fired_at: i64,
    pub trace_context: Option<String>,
}

impl Firing {
    pub fn is_breach(&self) -> bool {
        self.threshold >= 100
    }

    /// How late it fired (a threshold that passed while nothing could fire it is late).
    pub fn lateness_ms(&self) -> i64 {
        (self.fired_at - self.due_at).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock {
            case_id: "c".into(),
            deadline: Deadline::new(3_600_000, 1_000, &[50, 75, 90]),
            generation: 1,
            next_index: 0,
            stopped_at: None,
            trace_context: None,
        }
    }

    #[test]
    fn thresholds_fall_at_their_share_of_the_budget_plus_paused_time() {
        let mut c = clock();
        assert_eq!(c.due_at(0), 1_000 + 1_800_000);
        assert_eq!(c.due_at(3), 1_000 + 3_600_000);
        c.deadline.paused_total_ms = 60_000;
        assert_eq!(c.due_at(3), 1_000 + 3_660_000);
    }

    #[test]
    fn paused_or_stopped_clocks_have_nothing_due() {
        let mut c = clock();
        c.deadline.pause(5_000);
        assert_eq!(c.next_due(), None);
        assert_eq!(c.remaining_ms(10_000), 3_600_000 - 4_000, "the pause does not count");
        let mut c = clock();
        c.stopped_at = Some(5);
        assert_eq!(c.member(), None);
    }

    #[test]
    fn members_round_trip() {
        let m = Member { case_id: "01a2-b|x".into(), generation: 7, index: 3 };
        assert_eq!(Member::decode(&m.encode()), Some(m));
        assert_eq!(Member::decode("nonsense"), None);
    }
}
