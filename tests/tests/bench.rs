//! `crs-bench` measures a running suite (four processes): closed loop and open loop, with a sample
//! of requests followed to legal review, decided there, and followed to the agency's webhook.
//! The figures themselves come from `make bench` on release binaries; this keeps the tool working.

use crs_e2e::{Backend, Suite, crs_bench_bin};
use serde_json::Value;

fn bench(suite: &Suite, json: &std::path::Path, shape: &[&str]) -> Value {
    let out = std::process::Command::new(crs_bench_bin())
        .args(["load", "--intake", suite.url("intake"), "--legal-review", suite.url("legal-review")])
        .arg("--key-dir")
        .arg(crs_testkit::keys::dir())
        // Small loads within the `high` tier's burst: the suite runs intake's default limits.
        .args(["--tier", "high", "--agencies", "2", "--channels", "2", "--warmup-secs", "0", "--json"])
        .arg(json)
        .args(shape)
        .output()
        .expect("crs-bench runs");
    assert!(out.status.success(), "crs-bench {shape:?}: {}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("/s ok, p50"), "it prints its figures: {printed}");
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_follows_requests_to_review_and_to_the_webhook() {
    let suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    let dir = tempfile::tempdir().unwrap();

    let closed =
        bench(&suite, &dir.path().join("closed.json"), &["--clients", "3", "--secs", "2", "--follow", "4", "--decide"]);
    assert_eq!(closed["loop"], "closed");
    assert!(closed["ok"].as_u64().unwrap() > 0, "{closed}");
    assert_eq!(closed["errors"], serde_json::json!({}), "{closed}");
    let followed = closed["hops"]["reply_to_case"]["n"].as_u64().unwrap();
    assert!(followed > 0, "{closed}");
    assert_eq!(
        closed["hops"]["decision_to_webhook"]["n"].as_u64().unwrap(),
        followed,
        "each decided case told its agency"
    );
    assert_eq!(closed["followed_lost"], 0);
    assert!(closed["latency"]["p99_ms"].as_f64().unwrap() >= closed["latency"]["p50_ms"].as_f64().unwrap());

    // Open loop: the offered rate is kept however the server answers.
    let open = bench(&suite, &dir.path().join("open.json"), &["--rate", "10", "--secs", "2"]);
    assert_eq!(open["loop"], "open");
    assert_eq!(
        open["ok"].as_u64().unwrap()
            + open["errors"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        20,
        "{open}"
    );
    suite.stop().await.unwrap();
}
