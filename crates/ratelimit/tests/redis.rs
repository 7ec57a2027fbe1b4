//! The limiter against a real Redis.

use std::sync::Arc;
use std::time::Duration;

use crs_platform::redis::RedisHandle;
use crs_ratelimit::{Limit, Limiter, Rule, Source};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn limiter() -> Limiter {
    let prefix = format!("crs:test:{}", uuid::Uuid::new_v4().simple());
    Limiter::new(RedisHandle::new(&redis_url()).unwrap(), &prefix)
}

fn rule(name: &str, rate_per_sec: f64, burst: u32) -> Rule {
    Rule { name: name.into(), subject: "agency:1".into(), limit: Limit { rate_per_sec, burst, shadow: false } }
}

#[tokio::test]
async fn a_burst_is_admitted_exactly() {
    let limiter = limiter();
    let rules = [rule("agency", 0.01, 10)];
    let mut decisions = Vec::new();
    for _ in 0..25 {
        decisions.push(limiter.check(&rules, 1).await);
    }
    assert!(decisions.iter().all(|d| d.source == Source::Redis));
    assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 10, "exactly the burst");
    let remaining: Vec<u32> = decisions[..10].iter().map(|d| d.tightest().remaining).collect();
    assert_eq!(remaining, (0..10).rev().collect::<Vec<_>>(), "remaining counts down to zero");
    let denied = &decisions[10];
    assert!(!denied.allowed);
    // At 0.01/s the next slot is 100 s away (give or take the few ms the calls took).
    let retry = denied.tightest().retry_after.as_secs_f64();
    assert!((99.0..=100.0).contains(&retry), "retry after {retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sustained_rate_holds_within_one_percent_under_32_tasks() {
    const RATE: f64 = 200.0;
    const BURST: u32 = 20;
    let limiter = Arc::new(limiter());
    let rules = Arc::new([rule("agency", RATE, BURST)]);
    let start = tokio::time::Instant::now();
    let until = start + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (limiter, rules) = (limiter.clone(), rules.clone());
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0u64;
            let mut last_answer = start;
            while tokio::time::Instant::now() < until {
                if limiter.check(&rules[..], 1).await.allowed {
                    admitted += 1;
                }
                last_answer = tokio::time::Instant::now();
            }
            (admitted, last_answer)
        }));
    }
    let (mut admitted, mut end) = (0, start);
    for t in tasks {
        let (n, last_answer) = t.await.unwrap();
        admitted += n;
        end = end.max(last_answer);
    }
    // The window ends with the last answer, not when the tasks were joined: on a loaded machine
    // joining them can take longer than the tolerance.
    let elapsed = (end - start).as_secs_f64();
    let expected = RATE * elapsed + f64::from(BURST);
    let error = (admitted as f64 - expected).abs() / expected;
    assert!(error <= 0.01, "admitted {admitted}, expected {expected:.1} over {elapsed:.3} s ({:.2} %)", error * 100.0);
}

#[tokio::test]
async fn a_denied_call_consumes_none_of_its_limits() {
    let limiter = limiter();
    let both = [rule("daily", 0.001, 5), rule("burst", 0.001, 3)];
    let allowed = futures::future::join_all((0..10).map(|_| limiter.check(&both, 1))).await;
    assert_eq!(allowed.iter().filter(|d| d.allowed).count(), 3, "the narrower limit decides");
    let denied = allowed.iter().find(|d| !d.allowed).unwrap();
    assert_eq!(denied.tightest().name, "burst", "the limit that denied is reported");
    let daily = [rule("daily", 0.001, 5)];
    let mut more = 0;
    for _ in 0..10 {
        more += usize::from(limiter.check(&daily, 1).await.allowed);
    }
    assert_eq!(more, 2, "seven denied calls left `daily` with 5 - 3 = 2");
}

/// A call given back makes room for exactly one more, on every limit it took from; a denied
/// call has nothing to give back, and a bucket is never filled past its burst.
#[tokio::test]
async fn a_call_given_back_makes_room_for_one_more_and_no_more() {
    let limiter = limiter();
    let both = [rule("agency", 0.001, 3), rule("global", 0.001, 10)];
    let mut decisions = Vec::new();
    for _ in 0..4 {
        decisions.push(limiter.check(&both, 1).await);
    }
    assert_eq!(decisions.iter().map(|d| d.allowed).collect::<Vec<_>>(), [true, true, true, false]);
    limiter.refund(&decisions[3], 1).await;
    assert!(!limiter.check(&both, 1).await.allowed, "a denied call gave nothing back");

    limiter.refund(&decisions[1], 1).await;
    let again = limiter.check(&both, 1).await;
    assert!(again.allowed, "the call given back made room");
    assert_eq!(again.rules[1].remaining, 7, "`global` got its share back too: 10 - 3");
    assert!(!limiter.check(&both, 1).await.allowed, "for one call only");

    for d in &decisions[..3] {
        limiter.refund(d, 1).await;
    }
    limiter.refund(&again, 1).await;
    limiter.refund(&decisions[0], 1).await;
    let mut admitted = 0;
    for _ in 0..6 {
        admitted += usize::from(limiter.check(&both, 1).await.allowed);
    }
    assert_eq!(admitted, 3, "given back more than it took, a bucket still holds its burst");
}

/// Refunds made at once go to Redis together, and each counts, also when several give back
/// to the same limit.
#[tokio::test]
async fn refunds_made_at_once_each_count() {
    let limiter = limiter();
    let rules = [rule("agency", 0.001, 4)];
    let mut decisions = Vec::new();
    for _ in 0..4 {
        decisions.push(limiter.check(&rules, 1).await);
    }
    assert!(decisions.iter().all(|d| d.allowed));
    futures::future::join_all(decisions[..3].iter().map(|d| limiter.refund(d, 1))).await;
    let mut admitted = 0;
    for _ in 0..5 {
        admitted += usize::from(limiter.check(&rules, 1).await.allowed);
    }
    assert_eq!(admitted, 3, "three calls given back, three admitted");
}

/// A charge dropped without being kept gives its call back; one kept does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_dropped_unkept_is_given_back() {
    let limiter = Arc::new(limiter());
    let rules = [rule("charge-dropped", 0.001, 2)];
    let kept = limiter.check(&rules, 1).await;
    crs_ratelimit::Charge::new(limiter.clone(), &kept, 1).keep();
    let dropped = limiter.check(&rules, 1).await;
    assert!(kept.allowed && dropped.allowed);
    let refunded = || crs_ratelimit::metrics::REFUNDED.with_label_values(&["charge-dropped"]).get();
    drop(crs_ratelimit::Charge::new(limiter.clone(), &dropped, 1));
    let mut waited = 0;
    while refunded() == 0 {
        waited += 1;
        assert!(waited < 200, "the dropped charge was never given back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(limiter.check(&rules, 1).await.allowed, "the dropped call's room is there again");
    assert!(!limiter.check(&rules, 1).await.allowed, "the kept one's is not");
}

#[tokio::test]
async fn a_shadow_rule_counts_but_never_denies() {
    let limiter = limiter();
    let mut shadow = rule("global", 0.001, 2);
    shadow.limit.shadow = true;
    let rules = [rule("agency", 0.001, 100), shadow];
    let before = crs_ratelimit::metrics::DECISIONS.with_label_values(&["global", "shadow_denied", "redis"]).get();
    let mut decisions = Vec::new();
    for _ in 0..5 {
        decisions.push(limiter.check(&rules, 1).await);
    }
    assert!(decisions.iter().all(|d| d.allowed), "shadow never denies");
    assert_eq!(decisions.iter().filter(|d| d.rules[1].exceeded).count(), 3, "but says when it would have");
    assert_eq!(decisions[4].tightest().name, "agency", "a shadow rule is not the tightest");
    let after = crs_ratelimit::metrics::DECISIONS.with_label_values(&["global", "shadow_denied", "redis"]).get();
    assert_eq!(after - before, 3, "and is counted");
}

#[tokio::test]
async fn the_script_is_reloaded_when_redis_forgot_it() {
    let limiter = limiter();
    let rules = [rule("agency", 0.001, 3)];
    assert!(limiter.check(&rules, 1).await.allowed);
    let redis = RedisHandle::new(&redis_url()).unwrap();
    let mut conn = redis.get().await.unwrap();
    // Only this script, so other tests running at the same time are unaffected.
    let exists: Vec<i64> =
        redis::cmd("SCRIPT").arg("EXISTS").arg(limiter.script_sha()).query_async(&mut conn).await.unwrap();
    assert_eq!(exists, vec![1], "called by its SHA after the first load");
    redis::cmd("SCRIPT").arg("FLUSH").query_async::<()>(&mut conn).await.unwrap();
    let d = limiter.check(&rules, 1).await;
    assert_eq!(d.source, Source::Redis, "NOSCRIPT led to a reload, not a fallback");
    assert_eq!(d.tightest().remaining, 1, "and the state survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_test_and_restarted() {
    let mut server = crs_testkit::PrivateRedis::start();
    let limiter = Limiter::new(RedisHandle::new(&server.url()).unwrap(), "crs:test:kill");
    let rules = [rule("agency", 0.001, 3)];
    assert_eq!(limiter.check(&rules, 1).await.source, Source::Redis);

    server.kill();
    let during: Vec<_> = futures::future::join_all((0..5).map(|_| limiter.check(&rules, 1))).await;
    assert!(during.iter().all(|d| d.source == Source::Local), "decided in process while Redis is gone");
    assert_eq!(during.iter().filter(|d| d.allowed).count(), 3, "under the same rules");
    assert_eq!(crs_ratelimit::metrics::FALLBACK_ACTIVE.get(), 1);

    server.restart();
    let mut back = None;
    for _ in 0..100 {
        let d = limiter.check(&rules, 1).await;
        if d.source == Source::Redis {
            back = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = back.expect("decisions return to Redis once it answers");
    // The restarted Redis is empty, so its bucket is full again.
    assert!(back.allowed);
    assert_eq!(back.tightest().remaining, 2);
    assert_eq!(crs_ratelimit::metrics::FALLBACK_ACTIVE.get(), 0);
    drop(server);
}
