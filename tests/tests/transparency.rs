//! Transparency across the four running services: a request submitted, decided and approved is
//! published by `crsctl transparency` as a Lumen-style notice and counted in the report, with the
//! times legal review recorded, and without the words of the agency or the reviewers.

use crs_e2e::{Backend, Suite};
use crs_proto::common::RequestStatus;
use crs_proto::notification::NotificationKind;
use crsctl::demo::Demo;
use crsctl::receiver::Receiver;
use serde_json::{Value, json};

/// Runs the crsctl binary as an admin would, with a token and no context file.
fn crsctl(suite: &Suite, args: &[&str]) {
    let admin = suite
        .issuer
        .issue(
            &crs_platform::auth::Principal::Reviewer {
                id: format!("transparency-{}", uuid::Uuid::new_v4()),
                roles: vec![crs_platform::auth::Role::Admin],
            },
            600,
        )
        .unwrap()
        .token;
    let config = std::env::temp_dir().join(format!("crsctl-{}.yaml", uuid::Uuid::new_v4()));
    let out = std::process::Command::new(crs_e2e::crsctl_bin())
        .args([
            "--config",
            config.to_str().unwrap(),
            "--token",
            &admin,
            "--notification",
            &suite.endpoints.notification,
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "crsctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decided_request_is_published_as_a_notice_and_counted_in_the_report() {
    let suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver.clone());
    demo.set_up().await.unwrap();
    let submitted = demo.submit(Demo::sample_request(&uuid::Uuid::new_v4().to_string())).await.unwrap();
    demo.wait_status(&submitted.id, RequestStatus::Triaged).await.unwrap();
    demo.claim(&submitted.id).await.unwrap();
    demo.decide(&submitted.id).await.unwrap();
    let approved = demo.approve(&submitted.id).await.unwrap();
    assert_eq!(approved.status, RequestStatus::Decided as i32);
    demo.wait_delivered(&submitted.id, &[NotificationKind::Acknowledged, NotificationKind::Decided]).await.unwrap();

    let dir = std::env::temp_dir().join(format!("crs-transparency-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (notices, report) = (dir.join("notices.jsonl"), dir.join("report.json"));
    crsctl(
        &suite,
        &["transparency", "export", "--record", "notices", "--format", "jsonl", "--out", notices.to_str().unwrap()],
    );
    crsctl(&suite, &["transparency", "report", "--format", "json", "--out", report.to_str().unwrap()]);

    let published = std::fs::read_to_string(&notices).unwrap() + &std::fs::read_to_string(&report).unwrap();
    for words in ["unsanctioned rally", "MDD-2026/118", "court declared unlawful", "posts/1001", "video_77f3", "Partly"]
    {
        assert!(!published.contains(words), "published {words:?}:\n{published}");
    }
    let notice: Value = std::fs::read_to_string(&notices)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|n| n["id"] == format!("crs-{}", submitted.id))
        .expect("the request's notice");
    assert_eq!(notice["type"], "GovernmentRequest");
    assert_eq!(notice["sender"]["name"], "Ministry of Digital Development (demo)");
    assert_eq!(notice["jurisdictions"], json!(["KZ"]));
    assert_eq!(notice["action_taken"], "Partial");
    assert_eq!(notice["regulations"].as_array().map(Vec::len), Some(1), "the deadline's law: {notice}");
    let date = |t: Option<prost_types::Timestamp>| {
        chrono::DateTime::from_timestamp(t.unwrap().seconds, 0).unwrap().format("%Y-%m-%d").to_string()
    };
    assert_eq!(notice["date_decided"], date(approved.decided_at));
    assert_eq!(notice["date_received"], date(submitted.received_at));
    let urls: Vec<&str> =
        notice["works"].as_array().unwrap().iter().map(|w| w["infringing_urls"][0].as_str().unwrap()).collect();
    assert_eq!(urls, ["https://social.example/[REDACTED]", "https://social.example/[REDACTED]", "[REDACTED]"]);

    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["requests"], 1);
    assert_eq!(r["outcomes"]["GRANTED_IN_PART"], 1);
    // Legal review told notification when it decided and against which deadline (24 h here).
    assert_eq!(r["deadlines"], json!({"with_deadline": 1, "met": 1, "missed": 0, "share_met": 1.0}));
    let took = r["time_to_decision"]["median_seconds"].as_i64().expect("a time to decision");
    assert!((0..600).contains(&took), "decided within minutes of receipt: {took}");
    std::fs::remove_dir_all(&dir).ok();
    suite.stop().await.unwrap();
}
