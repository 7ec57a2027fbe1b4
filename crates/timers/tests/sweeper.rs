//! SLA clocks against a real Redis and a real database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crs_platform::redis::RedisHandle;
use crs_timers::index::TimerIndex;
use crs_timers::sweeper::{FiringHandler, Sweeper, SweeperConfig};
use crs_timers::{Clock, ClockMigration, ClockStore, Firing, metrics};
use sea_orm::{Database, DatabaseConnection, DatabaseTransaction};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio_util::sync::CancellationToken;

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(ClockMigration)]
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Firing>>);

#[async_trait::async_trait]
impl FiringHandler for Recorder {
    async fn on_firing(&self, _txn: &DatabaseTransaction, firing: &Firing) -> anyhow::Result<()> {
        self.0.lock().unwrap().push(firing.clone());
        Ok(())
    }
}

fn now() -> i64 {
    crs_platform::time::now_millis()
}

struct Rig {
    db: DatabaseConnection,
    index: TimerIndex,
    fired: Arc<Recorder>,
    shutdown: CancellationToken,
}

impl Rig {
    async fn new(redis_url: &str) -> Rig {
        let path = std::env::temp_dir().join(format!("crs-timers-{}.db", uuid::Uuid::new_v4()));
        let db = Database::connect(format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        let prefix = format!("crs:test:timers:{}", uuid::Uuid::new_v4().simple());
        let index = TimerIndex::new(RedisHandle::new(redis_url).unwrap(), &prefix);
        Rig { db, index, fired: Arc::default(), shutdown: CancellationToken::new() }
    }

    fn sweeper(&self, lease_ms: i64) -> Sweeper {
        let cfg = SweeperConfig { lease_ms, max_sleep_ms: 200, safety_scan_ms: 60_000, ..SweeperConfig::default() };
        Sweeper::new(self.db.clone(), self.index.clone(), self.fired.clone(), cfg)
    }

    fn spawn(&self, sweeper: Sweeper) -> CancellationToken {
        let stop = self.shutdown.child_token();
        tokio::spawn(sweeper.run(stop.clone()));
        stop
    }

    async fn start_clock(&self, case: &str, budget_ms: i64, started_at: i64) -> Clock {
        let clock = ClockStore::new_clock(case, budget_ms, &[50, 75, 90], started_at, None);
        ClockStore::insert(&self.db, &clock).await.unwrap();
        self.index.sync(None, &clock).await.unwrap();
        clock
    }

    fn fired(&self) -> Vec<Firing> {
        self.fired.0.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize, within: Duration) {
        let start = tokio::time::Instant::now();
        while self.fired().len() < n {
            assert!(start.elapsed() < within, "only {} of {n} fired", self.fired().len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn by_case(firings: &[Firing]) -> HashMap<String, Vec<u32>> {
    let mut out: HashMap<String, Vec<u32>> = HashMap::new();
    for f in firings {
        out.entry(f.case_id.clone()).or_default().push(f.threshold);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_fire_in_order_and_once_each() {
    let rig = Rig::new(&redis_url()).await;
    let sweeper = rig.sweeper(30_000);
    sweeper.rebuild().await.unwrap();
    rig.spawn(sweeper);
    let t0 = now();
    for (i, budget) in [600, 700, 800, 900, 1000].iter().enumerate() {
        rig.start_clock(&format!("case-{i}"), *budget, t0).await;
    }
    rig.wait_for(20, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fired = rig.fired();
    assert_eq!(fired.len(), 20, "four thresholds for each of five clocks, no more");
    for (case, thresholds) in by_case(&fired) {
        assert_eq!(thresholds, vec![50, 75, 90, 100], "{case}");
    }
    for f in &fired {
        assert!(f.fired_at >= f.due_at, "{f:?} fired early");
        let budget = [600, 700, 800, 900, 1000][f.case_id[5..].parse::<usize>().unwrap()];
        assert_eq!(f.due_at, t0 + budget * i64::from(f.threshold) / 100);
    }
    let recorded = ClockStore::firings(&rig.db, "case-0").await.unwrap();
    assert_eq!(recorded.len(), 4, "each firing is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_shift_thresholds_by_exactly_the_paused_time() {
    let rig = Rig::new(&redis_url()).await;
    let sweeper = rig.sweeper(30_000);
    sweeper.rebuild().await.unwrap();
    rig.spawn(sweeper);
    let t0 = now();
    // A budget long enough that the pause surely lands before the first threshold, however
    // slow the machine.
    rig.start_clock("paused", 4_000, t0).await;
    let pause_at = t0 + 200;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (before, after) = ClockStore::pause(&rig.db, "paused", pause_at).await.unwrap().unwrap();
    rig.index.sync(Some(&before), &after).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_400)).await;
    assert!(rig.fired().is_empty(), "nothing fires while paused (50 % would have been due at +2000 ms)");
    let resume_at = pause_at + 2_400;
    let (before, after) = ClockStore::resume(&rig.db, "paused", resume_at).await.unwrap().unwrap();
    rig.index.sync(Some(&before), &after).await.unwrap();
    rig.wait_for(4, Duration::from_secs(10)).await;
    let shift = resume_at - pause_at;
    let dues: Vec<i64> = rig.fired().iter().map(|f| f.due_at).collect();
    assert_eq!(dues, vec![t0 + 2_000 + shift, t0 + 3_000 + shift, t0 + 3_600 + shift, t0 + 4_000 + shift]);
    assert!(rig.fired().iter().all(|f| f.generation == 3), "pause and resume each started a generation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweepers_on_one_index_never_both_act() {
    let rig = Rig::new(&redis_url()).await;
    let first = rig.sweeper(30_000);
    first.rebuild().await.unwrap();
    let second = rig.sweeper(30_000);
    rig.spawn(first);
    rig.spawn(second);
    let t0 = now();
    let clocks: Vec<Clock> =
        (0..100).map(|i| ClockStore::new_clock(&format!("c{i:03}"), 400 + i, &[50, 75, 90], t0, None)).collect();
    ClockStore::insert_many(&rig.db, &clocks).await.unwrap();
    rig.index.arm_many(&clocks).await.unwrap();
    rig.wait_for(400, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fired = rig.fired();
    let mut counts: HashMap<(String, u32), usize> = HashMap::new();
    for f in &fired {
        *counts.entry((f.case_id.clone(), f.threshold)).or_default() += 1;
    }
    assert_eq!(counts.len(), 400);
    assert!(counts.values().all(|n| *n == 1), "every threshold fired by exactly one sweeper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweeper_that_dies_after_claiming_is_covered_by_another() {
    let rig = Rig::new(&redis_url()).await;
    let survivor = rig.sweeper(30_000);
    survivor.rebuild().await.unwrap();
    let t0 = now() - 2_000;
    let clocks: Vec<Clock> =
        (0..20).map(|i| ClockStore::new_clock(&format!("d{i:02}"), 1_000_000, &[], t0 - 1_000_000, None)).collect();
    ClockStore::insert_many(&rig.db, &clocks).await.unwrap();
    rig.index.arm_many(&clocks).await.unwrap();
    // The dying sweeper claims all twenty with a short lease, then vanishes without firing.
    let claimed = rig.index.claim(now(), 300, 100).await.unwrap();
    assert_eq!(claimed.members.len(), 20);
    let refired_before = metrics::REFIRED.get();
    rig.spawn(survivor);
    rig.wait_for(20, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.fired().len(), 20, "each fired once, by the survivor");
    assert!(metrics::REFIRED.get() - refired_before >= 20, "and counted as re-fired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_clock_cancels_everything_pending() {
    let rig = Rig::new(&redis_url()).await;
    let sweeper = rig.sweeper(30_000);
    sweeper.rebuild().await.unwrap();
    rig.spawn(sweeper);
    let t0 = now();
    // Budgets long enough that the stop surely lands before the first threshold, however slow
    // the machine.
    rig.start_clock("decided", 4_000, t0).await;
    rig.start_clock("control", 4_000, t0).await;
    let (before, after) = ClockStore::stop(&rig.db, "decided", t0 + 10).await.unwrap().unwrap();
    rig.index.sync(Some(&before), &after).await.unwrap();
    rig.wait_for(4, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cases = by_case(&rig.fired());
    assert_eq!(cases.get("control"), Some(&vec![50, 75, 90, 100]));
    assert_eq!(cases.get("decided"), None, "a stopped clock never fires");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_clock_still_fires_after_flushall() {
    let redis = crs_testkit::PrivateRedis::start();
    let rig = Rig::new(&redis.url()).await;
    let sweeper = rig.sweeper(30_000);
    sweeper.rebuild().await.unwrap();
    rig.spawn(sweeper);
    let t0 = now();
    for i in 0..10 {
        rig.start_clock(&format!("f{i}"), 800 + 50 * i, t0).await;
    }
    let rebuilds = metrics::REBUILDS.get();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let conn = RedisHandle::new(&redis.url()).unwrap();
    let mut c = conn.get().await.unwrap();
    redis::cmd("FLUSHALL").query_async::<()>(&mut c).await.unwrap();
    rig.wait_for(40, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cases = by_case(&rig.fired());
    assert_eq!(cases.len(), 10);
    assert!(cases.values().all(|t| *t == vec![50, 75, 90, 100]), "{cases:?}");
    assert!(metrics::REBUILDS.get() > rebuilds, "the index was rebuilt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_fire_from_the_database_while_redis_is_down() {
    let mut redis = crs_testkit::PrivateRedis::start();
    let rig = Rig::new(&redis.url()).await;
    let sweeper = rig.sweeper(30_000);
    sweeper.rebuild().await.unwrap();
    rig.spawn(sweeper);
    let t0 = now();
    for i in 0..5 {
        rig.start_clock(&format!("r{i}"), 600, t0).await;
    }
    redis.kill();
    rig.wait_for(20, Duration::from_secs(15)).await;
    let cases = by_case(&rig.fired());
    assert!(cases.values().all(|t| *t == vec![50, 75, 90, 100]), "{cases:?}");
    assert_eq!(metrics::DATABASE_FALLBACK.get(), 1);
    // A threshold that passed while nothing could fire it fires at once, its delay recorded.
    redis.restart();
    let late = ClockStore::new_clock("late", 1_000, &[], now() - 5_000, None);
    ClockStore::insert(&rig.db, &late).await.unwrap();
    rig.wait_for(21, Duration::from_secs(15)).await;
    let fired_late = rig.fired().into_iter().find(|f| f.case_id == "late").unwrap();
    assert!(fired_late.lateness_ms() >= 4_000, "{fired_late:?}");
}
