//! Shedding at intake's door: a submission that cannot be stored within its caller's deadline is
//! refused at once, before it costs a lookup, a rate-limit check or a place in the queue.
//!
//! Under overload every submission admitted makes the others wait: its checks hold a connection
//! and CPU, its write makes a batch longer. One whose caller gives up before it is stored was
//! that cost for nothing, and cost the submissions that could have made it their deadlines. So
//! a submission is admitted only while those already in flight would be stored, at the rate
//! intake stores them when it is busy, within half of what its call allows (Little's law: a
//! queue of `n` drained at `r` a second is `n / r` seconds long). Its call allows its
//! `grpc-timeout`, and at most the server's bound on a call (`server.request_timeout_secs`).
//! Callers that set no deadline are held back only when the wait passes half that bound, so a
//! burst of thousands is still absorbed; those whose deadline is short are told at once, instead of
//! when it has passed.
//!
//! The rate is measured only over spans of a second or more, and of at least a batch's worth
//! of stored submissions (`group_commit.max_batch`), in which intake never ran out of work to
//! write (no group-commit writer found the queue empty and waited for some): a quiet hour, or
//! a few small batches written slowly, say little of what intake can store. A rate not
//! measured again for [`RATE_KEPT`] is forgotten. Without one, every submission is admitted,
//! and so is one with nothing ahead of it.
//!
//! A refused submission is answered `UNAVAILABLE` (retry with backoff): it stored nothing and
//! took nothing from its rate limits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Share of a call's time that the wait ahead of a submission may take: the wait estimated is
/// a mean, and a caller whose deadline equals it would miss it half the time.
const HEADROOM: f64 = 0.5;

/// The shortest span over which the rate of stored submissions is measured.
const WINDOW: Duration = Duration::from_secs(1);

/// How long a measured rate is kept without being measured again: what intake could store
/// during an overload long past (a slow database, a smaller deployment) must not refuse
/// today's burst.
const RATE_KEPT: Duration = Duration::from_secs(60);

/// The least time a refused caller is told to wait before retrying.
const RETRY_AFTER_MIN: Duration = Duration::from_millis(100);

/// Decides which submissions intake takes in.
#[derive(Clone)]
pub(crate) struct Admission {
    state: Arc<State>,
    /// The longest a call may take (the server's bound), for callers without a deadline.
    bound: Duration,
}

struct State {
    in_flight: AtomicUsize,
    /// A batch's worth (`group_commit.max_batch`): the least a span stores to be measured.
    full_batch: u64,
    writers: WritersIdle,
    spans: Mutex<Spans>,
}

/// The span under way, and the rate of the busy ones before it.
#[derive(Debug, Default)]
struct Spans {
    started: Option<Instant>,
    stored: u64,
    /// Submissions stored per second while busy (each busy span's rate weighs half), and when
    /// it was last measured.
    measured: Option<(f64, Instant)>,
}

/// Whether intake ran out of work to write: how many group-commit writers wait for work now
/// (one at most: the others wait for it to finish gathering), and whether one did since the
/// span under way began.
#[derive(Clone)]
pub(crate) struct WritersIdle {
    waiting: Arc<AtomicUsize>,
    waited: Arc<AtomicBool>,
}

/// A writer waiting for work; dropped when it has some.
pub(crate) struct WaitingForWork(WritersIdle);

impl WritersIdle {
    fn new() -> Self {
        Self { waiting: Arc::default(), waited: Arc::new(AtomicBool::new(true)) }
    }

    /// A writer found the queue empty and waits for work until the guard is dropped.
    pub(crate) fn waiting(&self) -> WaitingForWork {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.waited.store(true, Ordering::SeqCst);
        WaitingForWork(self.clone())
    }

    /// Whether a writer waited since the last call, without starting the next span.
    fn waited_now(&self) -> bool {
        self.waited.load(Ordering::SeqCst)
    }

    /// Whether a writer waited since the last call; starts the next span, spoilt from its start
    /// if one waits now.
    fn waited_since_asked(&self) -> bool {
        let waited = self.waited.swap(false, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.waited.store(true, Ordering::SeqCst);
        }
        waited
    }
}

impl Drop for WaitingForWork {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A submission let in; dropping it lets it out.
pub(crate) struct Admitted {
    state: Arc<State>,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admitted")
    }
}

/// Why a submission was refused: the submissions ahead of it, how long they would take, what
/// its call allows, and when a retry would find the wait short enough (about; at least 100 ms,
/// at most the server's bound).
#[derive(Debug, Clone, PartialEq)]
pub struct Saturated {
    pub ahead: usize,
    pub wait: Duration,
    pub allowed: Duration,
    pub retry_after: Duration,
}

impl Admission {
    /// Admission to a server whose calls take at most `bound`, storing up to `full_batch`
    /// submissions a transaction.
    pub(crate) fn new(bound: Duration, full_batch: usize) -> Self {
        let state = State {
            in_flight: AtomicUsize::new(0),
            full_batch: full_batch.max(1) as u64,
            writers: WritersIdle::new(),
            spans: Mutex::new(Spans::default()),
        };
        Self { state: Arc::new(state), bound }
    }

    /// What the group-commit writers report their waits for work to.
    pub(crate) fn writers(&self) -> WritersIdle {
        self.state.writers.clone()
    }

    /// Lets a submission in, or says why not; `deadline` is what its caller allows (its
    /// `grpc-timeout`), if it said.
    pub(crate) fn admit(&self, deadline: Option<Duration>) -> Result<Admitted, Saturated> {
        self.admit_at(deadline, Instant::now())
    }

    fn admit_at(&self, deadline: Option<Duration>, now: Instant) -> Result<Admitted, Saturated> {
        let ahead = self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        let admitted = Admitted { state: self.state.clone() };
        if ahead == 0 {
            return Ok(admitted);
        }
        let Some(per_sec) = self.state.spans(now).rate(now) else {
            return Ok(admitted);
        };
        let allowed = deadline.map_or(self.bound, |d| d.min(self.bound));
        let wait = Duration::try_from_secs_f64(ahead as f64 / per_sec).unwrap_or(Duration::MAX);
        let admissible = allowed.mul_f64(HEADROOM);
        if wait <= admissible {
            return Ok(admitted);
        }
        let retry_after = wait.saturating_sub(admissible).clamp(RETRY_AFTER_MIN, self.bound.max(RETRY_AFTER_MIN));
        Err(Saturated { ahead, wait, allowed, retry_after })
    }
}

impl State {
    /// The spans, the one under way closed once it has lasted [`WINDOW`] and stored a batch's
    /// worth, or a writer waited for work in it: its rate counts if none did.
    fn spans(&self, now: Instant) -> std::sync::MutexGuard<'_, Spans> {
        let mut spans = self.spans.lock().expect("admission spans poisoned");
        match spans.started {
            None => {
                spans.started = Some(now);
                self.writers.waited_since_asked();
            }
            // A span that has not yet stored a batch's worth stays open, unless a writer waited:
            // what a few small batches took says little of how many intake stores.
            Some(started)
                if now.saturating_duration_since(started) >= WINDOW
                    && (spans.stored >= self.full_batch || self.writers.waited_now()) =>
            {
                let busy = !self.writers.waited_since_asked();
                if busy && spans.stored > 0 {
                    let rate = spans.stored as f64 / now.saturating_duration_since(started).as_secs_f64();
                    let per_sec = spans.rate(now).map_or(rate, |before| (before + rate) / 2.0);
                    spans.measured = Some((per_sec, now));
                    crate::metrics::ADMISSION_RATE.set(per_sec);
                }
                spans.started = Some(now);
                spans.stored = 0;
            }
            Some(_) => {}
        }
        spans
    }
}

impl Spans {
    /// The measured rate, unless it is older than [`RATE_KEPT`].
    fn rate(&self, now: Instant) -> Option<f64> {
        let (per_sec, at) = self.measured?;
        (now.saturating_duration_since(at) <= RATE_KEPT).then_some(per_sec)
    }
}

impl Admitted {
    /// The submission was stored: it counts towards the rate.
    pub(crate) fn stored(self) {
        self.stored_at(Instant::now());
    }

    fn stored_at(self, now: Instant) {
        self.state.spans(now).stored += 1;
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a call allows, from its `grpc-timeout` header (an integer of up to eight digits and a
/// unit: `H`ours, `M`inutes, `S`econds, `m`illiseconds, `u` microseconds, `n`anoseconds); `None`
/// when it sets none or one that does not parse (the server's bound then applies).
pub(crate) fn call_deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` submissions admitted at `at`, without deadlines.
    fn admitted(admission: &Admission, n: usize, at: Instant) -> Vec<Admitted> {
        (0..n).map(|_| admission.admit_at(None, at).expect("admitted")).collect()
    }

    /// The rate measured, as of `at`.
    fn measured(admission: &Admission, at: Instant) -> Option<f64> {
        admission.state.spans(at).measured.map(|(per_sec, _)| per_sec)
    }

    /// Stores `n` of `in_flight` at `at`.
    fn store(in_flight: &mut Vec<Admitted>, n: usize, at: Instant) {
        for a in in_flight.drain(..n) {
            a.stored_at(at);
        }
    }

    #[test]
    fn every_submission_is_admitted_until_the_rate_is_known() {
        let admission = Admission::new(Duration::from_secs(30), 1);
        let now = Instant::now();
        let short = Some(Duration::from_millis(1));
        let held: Vec<_> = (0..100).map(|_| admission.admit_at(short, now).expect("nothing to go by")).collect();
        assert_eq!(held.len(), 100);
    }

    #[test]
    fn a_submission_is_refused_when_the_wait_ahead_passes_half_its_deadline() {
        let admission = Admission::new(Duration::from_secs(30), 1);
        let start = Instant::now();
        let mut in_flight = admitted(&admission, 120, start);
        store(&mut in_flight, 100, start + WINDOW / 2);
        // A busy second stored 100: the 20 still in flight are a fifth of a second's wait.
        let now = start + WINDOW;
        let ok = admission.admit_at(Some(Duration::from_millis(500)), now).expect("0.2 s of 0.5 s");
        drop(ok);
        let refused = admission.admit_at(Some(Duration::from_millis(300)), now).expect_err("0.2 s of 0.3 s");
        assert_eq!(refused.ahead, 20);
        assert!((refused.wait.as_secs_f64() - 0.2).abs() < 1e-6, "{:?}", refused.wait);
        assert_eq!(refused.allowed, Duration::from_millis(300));
        assert_eq!(admission.state.in_flight.load(Ordering::Relaxed), 20, "a refusal holds no place");
    }

    #[test]
    fn a_span_in_which_a_writer_waited_for_work_measures_nothing() {
        let admission = Admission::new(Duration::from_secs(30), 1);
        let start = Instant::now();
        let mut in_flight = admitted(&admission, 30, start);
        // A quiet spell: a writer waits for work, and what is stored is not intake's pace.
        let waiting = admission.writers().waiting();
        store(&mut in_flight, 25, start + WINDOW / 2);
        drop(waiting);
        let mut more = admitted(&admission, 30, start + WINDOW);
        assert!(admission.state.spans(start + WINDOW).measured.is_none());
        assert_eq!(more.len(), 30, "all admitted: nothing to go by");
        // Busy from here on: 20 stored in a second.
        store(&mut more, 20, start + WINDOW * 3 / 2);
        assert_eq!(measured(&admission, start + WINDOW * 2), Some(20.0));
        // A writer that waits from before a span to past its end spoils it too.
        let waiting = admission.writers().waiting();
        store(&mut more, 2, start + WINDOW * 5 / 2);
        store(&mut more, 2, start + WINDOW * 7 / 2);
        store(&mut more, 2, start + WINDOW * 4);
        assert_eq!(measured(&admission, start + WINDOW * 9 / 2), Some(20.0), "neither span measured");
        drop(waiting);
    }

    #[test]
    fn callers_without_a_deadline_wait_up_to_half_the_servers_bound() {
        let admission = Admission::new(Duration::from_secs(10), 1);
        let start = Instant::now();
        let mut in_flight = admitted(&admission, 20, start);
        store(&mut in_flight, 10, start + WINDOW / 2);
        let now = start + WINDOW;
        // 10 stored a second: 49 ahead are 4.9 s, within 5; 50 are 5 s; 51 are past it.
        in_flight.extend((0..40).map(|_| admission.admit_at(None, now).expect("within 5 s")));
        in_flight.push(admission.admit_at(Some(Duration::from_secs(60)), now).expect("5 s: half the bound"));
        let refused = admission.admit_at(None, now).expect_err("5.1 s");
        assert_eq!(refused.allowed, Duration::from_secs(10), "the server's bound");
        let refused = admission.admit_at(Some(Duration::from_secs(60)), now).expect_err("a longer deadline is cut");
        assert_eq!(refused.allowed, Duration::from_secs(10));
    }

    #[test]
    fn each_busy_span_weighs_half_in_the_rate() {
        let admission = Admission::new(Duration::from_secs(30), 1);
        let start = Instant::now();
        let mut in_flight = admitted(&admission, 200, start);
        store(&mut in_flight, 100, start + WINDOW / 2);
        assert_eq!(measured(&admission, start + WINDOW), Some(100.0));
        store(&mut in_flight, 50, start + WINDOW * 3 / 2);
        assert_eq!(measured(&admission, start + WINDOW * 2), Some(75.0), "then 50 in a second");
    }

    #[test]
    fn a_span_is_measured_once_it_has_stored_a_batchs_worth() {
        let admission = Admission::new(Duration::from_secs(30), 100);
        let start = Instant::now();
        let mut in_flight = admitted(&admission, 300, start);
        store(&mut in_flight, 60, start + WINDOW / 2);
        assert!(admission.state.spans(start + WINDOW).measured.is_none(), "60 of a batch of 100");
        store(&mut in_flight, 60, start + WINDOW * 3 / 2);
        // Closed by the 101st stored, a second and a half in.
        let per_sec = measured(&admission, start + WINDOW * 2).expect("measured");
        assert!((per_sec - 100.0 / 1.5).abs() < 1e-6, "{per_sec}");
    }

    #[test]
    fn a_rate_not_measured_for_a_minute_is_forgotten() {
        let admission = Admission::new(Duration::from_secs(30), 1);
        let start = Instant::now();
        let mut in_flight = admitted(&admission, 30, start);
        store(&mut in_flight, 10, start + WINDOW / 2);
        let later = start + WINDOW + RATE_KEPT;
        assert!(admission.admit_at(Some(Duration::from_millis(100)), start + WINDOW).is_err(), "20 ahead at 10/s");
        let admitted = admission.admit_at(Some(Duration::from_millis(100)), later + WINDOW);
        assert!(admitted.is_ok(), "nothing measured since: no rate to go by");
    }

    #[test]
    fn a_refused_caller_is_told_when_the_wait_will_be_short_enough() {
        let admission = Admission::new(Duration::from_secs(30), 1);
        let start = Instant::now();
        let mut in_flight = admitted(&admission, 110, start);
        store(&mut in_flight, 100, start + WINDOW / 2);
        let now = start + WINDOW;
        // 10 ahead at 100/s: 100 ms of waiting, 50 ms more than a 100 ms call may wait.
        let refused = admission.admit_at(Some(Duration::from_millis(100)), now).unwrap_err();
        assert_eq!(refused.retry_after, RETRY_AFTER_MIN, "never sooner than 100 ms");
        in_flight.extend(admitted(&admission, 290, now));
        // 300 ahead: 3 s, 2.5 s more than a 1 s call may wait.
        let refused = admission.admit_at(Some(Duration::from_secs(1)), now).unwrap_err();
        assert!((refused.retry_after.as_secs_f64() - 2.5).abs() < 1e-6, "{:?}", refused.retry_after);
    }

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        let deadline = |v: &str| {
            let mut m = tonic::metadata::MetadataMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            call_deadline(&m)
        };
        assert_eq!(deadline("2S"), Some(Duration::from_secs(2)));
        assert_eq!(deadline("1999m"), Some(Duration::from_millis(1999)));
        assert_eq!(deadline("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(deadline("3M"), Some(Duration::from_secs(180)));
        assert_eq!(deadline("500u"), Some(Duration::from_micros(500)));
        assert_eq!(deadline("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(deadline("123456789S"), None, "more than eight digits");
        assert_eq!(deadline("5x"), None);
        assert_eq!(deadline("S"), None);
        assert_eq!(call_deadline(&tonic::metadata::MetadataMap::new()), None);
    }
}
