//! Limiter throughput and latency against a real Redis, next to `redis-benchmark` running the
//! same script by `EVALSHA` in the same run (the baseline: 50 clients, no pipelining).
//!
//! Run with `make bench` or `cargo bench -p crs-ratelimit`. `REDIS_URL` picks the server
//! (default `redis://127.0.0.1:6379`); `BENCH_SECS` the measuring time (default 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crs_platform::redis::RedisHandle;
use crs_ratelimit::{Limit, Limiter, Rule};

const CALLERS: usize = 64;
const BASELINE_CLIENTS: usize = 50;
/// Callers act for this many agencies, spread over four jurisdictions, all under one global limit.
const AGENCIES: usize = 16;

/// The four limits an intake submission of agency `a` is checked against, wide enough never to
/// deny, so the figures measure deciding, not refusing.
fn rules(a: usize) -> Vec<Rule> {
    let wide = Limit { rate_per_sec: 1e6, burst: 1_000_000, shadow: false };
    let rule = |name: &str, subject: String| Rule { name: name.into(), subject, limit: wide.clone() };
    vec![
        rule("agency", format!("agency:{a}")),
        rule("agency_daily", format!("agency:{a}")),
        rule("jurisdiction", format!("jurisdiction:{}", a % 4)),
        rule("global", "all".into()),
    ]
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(limiter: Arc<Limiter>, secs: f64) -> (f64, Vec<u32>) {
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let limiter = limiter.clone();
        let rules = rules(caller % AGENCIES);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(200_000);
            while Instant::now() < stop {
                let t = Instant::now();
                let d = limiter.check(&rules, 1).await;
                latencies.push(t.elapsed().as_micros() as u32);
                assert_eq!(d.source, crs_ratelimit::Source::Redis, "the benchmark needs Redis");
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    (all.len() as f64 / elapsed, all)
}

/// `redis-benchmark` calling the same script with the same keys and arguments.
fn baseline(url: &str, sha: &str, requests: u64) -> Option<f64> {
    let parsed = redis::parse_redis_url(url)?;
    let host = parsed.host_str()?.to_owned();
    let port = parsed.port().unwrap_or(6379).to_string();
    // `-r` makes redis-benchmark replace `__rand_int__` in the keys with a random agency number.
    let mut args: Vec<String> = vec![
        "-r".into(),
        AGENCIES.to_string(),
        "-h".into(),
        host,
        "-p".into(),
        port,
        "-c".into(),
        BASELINE_CLIENTS.to_string(),
        "-n".into(),
        requests.to_string(),
        "-q".into(),
        "EVALSHA".into(),
        sha.into(),
        "4".into(),
    ];
    let rules = rules(0);
    args.extend(
        rules.iter().map(|r| format!("crs:bench:{}:{}", r.subject.replace("agency:0", "agency:__rand_int__"), r.name)),
    );
    // One decision (cost 1, four limits) per call: the script as a single caller uses it.
    args.extend(["1".into(), "1".into(), rules.len().to_string()]);
    for r in &rules {
        args.extend([format!("{}", 1_000_000.0 / r.limit.rate_per_sec), r.limit.burst.to_string(), "0".into()]);
    }
    let out = std::process::Command::new("redis-benchmark").args(&args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "EVALSHA ...: 61728.39 requests per second, p50=0.391 msec"
    let line = text.lines().rev().find(|l| l.contains("requests per second"))?;
    let before = line.split(" requests per second").next()?;
    before.rsplit(' ').next()?.parse().ok()
}

fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let secs: f64 = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let limiter = Arc::new(Limiter::new(RedisHandle::new(&url).unwrap(), "crs:bench"));
    let sha = limiter.script_sha().to_owned();

    let (rate, latencies) = runtime.block_on(async {
        measure(limiter.clone(), 1.0).await; // warm-up: connect, load the script
        measure(limiter.clone(), secs).await
    });
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    println!(
        "crs-ratelimit: {CALLERS} concurrent callers, one multiplexed connection, concurrent calls coalesced and pipelined, 4 limits per call"
    );
    println!("  {rate:>10.0} decisions/s   p50 {p50} us   p99 {p99} us   ({} calls in {secs} s)", latencies.len());

    let requests = (rate * secs).max(100_000.0) as u64;
    match baseline(&url, &sha, requests) {
        Some(base) => {
            println!("redis-benchmark: EVALSHA of the same script, {BASELINE_CLIENTS} clients, no pipelining");
            println!("  {base:>10.0} requests/s");
            println!("ratio (crs-ratelimit / redis-benchmark): {:.2}x", rate / base);
        }
        None => println!("redis-benchmark not found or failed (Debian: apt-get install redis-tools); no baseline"),
    }
}
