//! SLA timer figures on this machine, against a private redis-server and a SQLite database:
//! arming 1,000,000 clocks (time, Redis memory per clock), rebuilding the index from the
//! database, firing under light load and under a sustained stream, and `redis-benchmark`'s
//! ZADD and ZRANGEBYSCORE in the same run as the ceiling.
//!
//! `make bench` or `cargo bench -p crs-timers`. `BENCH_CLOCKS` sets the number armed
//! (default 1000000), `BENCH_RATE` the sustained firing rate offered (default 25000/s).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crs_platform::config::DatabaseConfig;
use crs_platform::redis::RedisHandle;
use crs_timers::index::TimerIndex;
use crs_timers::sweeper::{FiringHandler, Sweeper, SweeperConfig};
use crs_timers::{Clock, ClockMigration, ClockStore, Firing};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio_util::sync::CancellationToken;

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(ClockMigration)]
    }
}

/// Records each firing's lateness; does nothing else, so the figures are the timer engine's.
#[derive(Default)]
struct Lateness(Mutex<Vec<(i64, i64)>>);

#[async_trait::async_trait]
impl FiringHandler for Lateness {
    async fn on_firing(&self, _txn: &DatabaseTransaction, f: &Firing) -> anyhow::Result<()> {
        self.0.lock().unwrap().push((f.lateness_ms(), f.fired_at));
        Ok(())
    }
}

fn now() -> i64 {
    crs_platform::time::now_millis()
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn used_memory(redis: &RedisHandle) -> i64 {
    let mut conn = redis.get().await.unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut conn).await.unwrap();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap()
}

/// Clocks whose single threshold (the breach) falls due at `rate` per second from `start`.
fn stream(prefix: &str, n: usize, rate: f64, start: i64) -> Vec<Clock> {
    (0..n)
        .map(|i| {
            let due = start + (i as f64 * 1000.0 / rate) as i64;
            ClockStore::new_clock(&format!("{prefix}-{i:08}"), 1_000, &[], due - 1_000, None)
        })
        .collect()
}

/// Arms `clocks`, runs `sweepers` until each fired, returns (firings/s, lateness ms sorted).
async fn fire(db: &DatabaseConnection, index: &TimerIndex, clocks: Vec<Clock>, sweepers: usize) -> (f64, Vec<i64>) {
    let txn = db.begin().await.unwrap();
    ClockStore::insert_many(&txn, &clocks).await.unwrap();
    txn.commit().await.unwrap();
    index.arm_many(&clocks).await.unwrap();
    let first_due = clocks.iter().filter_map(|c| c.next_due()).map(|(_, d)| d).min().unwrap();
    assert!(first_due > now(), "the stream must start in the future; raise the lead time");
    let recorder = Arc::new(Lateness::default());
    let stop = CancellationToken::new();
    for _ in 0..sweepers {
        let cfg = SweeperConfig { batch: 512, safety_scan_ms: 3_600_000, ..SweeperConfig::default() };
        let sweeper = Sweeper::new(db.clone(), index.clone(), recorder.clone(), cfg);
        tokio::spawn(sweeper.run(stop.clone()));
    }
    let n = clocks.len();
    let deadline = Instant::now() + Duration::from_secs(600);
    while recorder.0.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let fired = recorder.0.lock().unwrap().clone();
    let last = fired.iter().map(|(_, at)| *at).max().unwrap_or(first_due);
    let rate = fired.len() as f64 / ((last - first_due).max(1) as f64 / 1000.0);
    let mut lateness: Vec<i64> = fired.iter().map(|(l, _)| *l).collect();
    lateness.sort_unstable();
    (rate, lateness)
}

fn redis_benchmark(port: u16, command: &[&str]) -> Option<f64> {
    let out = std::process::Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-c", "50", "-n", "200000", "-r", "1000000", "-q"])
        .args(command)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.contains("requests per second"))?;
    line.split(" requests per second").next()?.rsplit(' ').next()?.parse().ok()
}

fn main() {
    let n: usize = std::env::var("BENCH_CLOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let rate: f64 = std::env::var("BENCH_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(25_000.0);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let redis_server = crs_testkit::PrivateRedis::start();
    let dir = std::env::temp_dir().join(format!("crs-timers-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    rt.block_on(async {
        let db = crs_platform::db::connect::<Migrator>(&DatabaseConfig {
            url: format!("sqlite://{}/clocks.db?mode=rwc", dir.display()),
            max_connections: 1,
            min_connections: 0,
            acquire_timeout_ms: 3000,
            migrate: true,
        })
        .await
        .unwrap();
        let redis = RedisHandle::new(&format!("redis://127.0.0.1:{}", redis_server.port())).unwrap();
        let index = TimerIndex::new(redis.clone(), "crs:timers");
        println!("SLA timers: private redis-server, SQLite database, this machine");

        // 1. Arm n clocks with a day's budget (nothing fires during the run).
        let start = now();
        let clocks: Vec<Clock> = (0..n)
            .map(|_| ClockStore::new_clock(&uuid::Uuid::now_v7().to_string(), 86_400_000, &[50, 75, 90], start, None))
            .collect();
        let t = Instant::now();
        let txn = db.begin().await.unwrap();
        ClockStore::insert_many(&txn, &clocks).await.unwrap();
        txn.commit().await.unwrap();
        let db_secs = t.elapsed().as_secs_f64();
        let before = used_memory(&redis).await;
        let t = Instant::now();
        index.arm_many(&clocks).await.unwrap();
        let arm_secs = t.elapsed().as_secs_f64();
        let per_clock = (used_memory(&redis).await - before) as f64 / n as f64;
        println!("arm {n} clocks:");
        println!("  redis index   {:>9.0} clocks/s  ({arm_secs:.2} s)", n as f64 / arm_secs);
        println!("  database      {:>9.0} clocks/s  ({db_secs:.2} s)", n as f64 / db_secs);
        println!("  redis memory  {per_clock:>9.0} bytes per armed clock");

        // 2. Rebuild the whole index from the database after Redis lost it.
        let mut conn = redis.get().await.unwrap();
        redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await.unwrap();
        let rebuilder = Sweeper::new(db.clone(), index.clone(), Arc::new(Lateness::default()), SweeperConfig::default());
        let t = Instant::now();
        let rebuilt = rebuilder.rebuild().await.unwrap();
        println!("rebuild {rebuilt} clocks from the database: {:.2} s", t.elapsed().as_secs_f64());

        // 3. Light load: a few hundred firings per second, one sweeper.
        let light = stream("light", 1_500, 300.0, now() + 2_000);
        let (light_rate, l) = fire(&db, &index, light, 1).await;
        println!(
            "light load (300/s offered): {light_rate:.0} firings/s, lateness p50 {} ms, p99 {} ms, max {} ms",
            pct(&l, 0.5),
            pct(&l, 0.99),
            l.last().copied().unwrap_or(0)
        );

        // 4. A sustained stream at `rate`, two sweepers (two replicas) on one index.
        let count = (rate * 8.0) as usize;
        let lead = (db_secs / n as f64 * count as f64 * 1500.0) as i64 + 3_000;
        let heavy = stream("heavy", count, rate, now() + lead);
        let (heavy_rate, h) = fire(&db, &index, heavy, 2).await;
        println!(
            "sustained ({rate:.0}/s offered for 8 s, 2 sweepers): {heavy_rate:.0} firings/s, lateness p50 {} ms, p99 {} ms, max {} ms",
            pct(&h, 0.5),
            pct(&h, 0.99),
            h.last().copied().unwrap_or(0)
        );
    });

    // 5. The ceiling: redis-benchmark on the same server, 50 clients, no pipelining.
    let zadd = redis_benchmark(redis_server.port(), &["ZADD", "crs:bench:z", "__rand_int__", "__rand_int__"]);
    let zrange =
        redis_benchmark(redis_server.port(), &["ZRANGEBYSCORE", "crs:bench:z", "0", "1000", "LIMIT", "0", "10"]);
    match (zadd, zrange) {
        (Some(a), Some(r)) => println!("redis-benchmark ceiling: ZADD {a:.0}/s, ZRANGEBYSCORE {r:.0}/s"),
        _ => println!("redis-benchmark not found (Debian: apt-get install redis-tools); no ceiling"),
    }
    let _ = std::fs::remove_dir_all(dir);
}
