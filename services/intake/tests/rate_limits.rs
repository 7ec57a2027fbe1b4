//! Rate limits at intake, against a real Redis: denials the caller can act on, live per-agency
//! overrides, a separate bucket for binding orders, limits shared by several intake processes,
//! shadow mode, and Redis going away mid-flight without losing a request.

mod support;

use std::time::Duration;

use crs_proto::common::LegalInstrument;
use crs_proto::intake::*;
use support::{Backend, Intake, valid_request};
use tonic::Code;
use tonic_types::StatusExt;

fn notice() -> SubmitRequestRequest {
    SubmitRequestRequest { legal_instrument: LegalInstrument::GovernmentNotice as i32, ..valid_request() }
}

fn header(meta: &tonic::metadata::MetadataMap, key: &str) -> Option<u64> {
    meta.get(key).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

async fn set_burst(intake: &Intake, agency: &str, rule: &str, burst: u32, shadow: bool) {
    intake
        .admin_client()
        .await
        .set_rate_limit_overrides(SetRateLimitOverridesRequest {
            agency_id: agency.into(),
            overrides: vec![RateLimitOverride { rule: rule.into(), rate_per_second: 0.001, burst, per_day: 0, shadow }],
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_say_when_to_retry_and_every_reply_carries_the_limits() {
    let intake = Intake::start(Backend::Sqlite).await;
    let agency = intake.agency().await;
    set_burst(&intake, &agency, "agency", 3, false).await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    for expected_remaining in [2, 1, 0] {
        let reply = client.submit_request(notice()).await.unwrap();
        assert_eq!(header(reply.metadata(), "x-ratelimit-limit"), Some(3));
        assert_eq!(header(reply.metadata(), "x-ratelimit-remaining"), Some(expected_remaining));
        assert!(header(reply.metadata(), "x-ratelimit-reset").unwrap() > 0);
    }
    let before = intake.written().await;
    let denied = client.submit_request(notice()).await.unwrap_err();
    assert_eq!(denied.code(), Code::ResourceExhausted);
    let retry = denied.get_details_retry_info().expect("RetryInfo").retry_delay.expect("a delay");
    assert!(retry > Duration::from_secs(900), "the next slot is ~1000 s away at 0.001/s, got {retry:?}");
    let quota = denied.get_details_quota_failure().expect("QuotaFailure");
    assert_eq!(quota.violations[0].subject, format!("agency:{agency}:agency"));
    assert_eq!(header(denied.metadata(), "x-ratelimit-remaining"), Some(0));
    assert_eq!(header(denied.metadata(), "x-ratelimit-limit"), Some(3));
    assert_eq!(intake.written().await, before, "a denied request writes nothing");

    // A retry of an accepted request is still answered: it consumes nothing.
    let mut first = notice();
    first.idempotency_key = "kept".into();
    set_burst(&intake, &agency, "agency", 4, false).await;
    client.submit_request(first.clone()).await.unwrap();
    let replay = client.submit_request(first).await.unwrap().into_inner();
    assert!(replay.replayed);
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_change_live_and_binding_orders_have_their_own_bucket() {
    let intake = Intake::start(Backend::Sqlite).await;
    let agency = intake.agency().await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    set_burst(&intake, &agency, "agency", 2, false).await;
    let admitted = |n: usize| n;
    let mut ok = 0;
    for _ in 0..5 {
        ok += usize::from(client.submit_request(notice()).await.is_ok());
    }
    assert_eq!(ok, admitted(2));
    // Raised live, without a restart: the bucket now holds 5, of which 2 are used.
    set_burst(&intake, &agency, "agency", 5, false).await;
    let mut more = 0;
    for _ in 0..5 {
        more += usize::from(client.submit_request(notice()).await.is_ok());
    }
    assert_eq!(more, 3);
    // Notices are exhausted, but a binding order draws from its own bucket.
    let order = client.submit_request(valid_request()).await.expect("a government order is not crowded out");
    assert_eq!(header(order.metadata(), "x-ratelimit-limit"), Some(150), "the binding bucket of the standard tier");
    // Overrides are validated field by field.
    let bad = intake
        .admin_client()
        .await
        .set_rate_limit_overrides(SetRateLimitOverridesRequest {
            agency_id: agency.clone(),
            overrides: vec![
                RateLimitOverride { rule: "agency".into(), rate_per_second: 1.0, burst: 0, ..Default::default() },
                RateLimitOverride { rule: "planet".into(), rate_per_second: 1.0, burst: 1, ..Default::default() },
            ],
        })
        .await
        .unwrap_err();
    let fields: Vec<_> = bad.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
    assert_eq!(fields, ["overrides[0].burst", "overrides[1].rule"]);
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_rule_counts_without_denying() {
    let intake = Intake::start(Backend::Sqlite).await;
    let agency = intake.agency().await;
    set_burst(&intake, &agency, "agency", 1, true).await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    for _ in 0..4 {
        client.submit_request(notice()).await.expect("shadow never denies");
    }
    let metrics = intake.metrics().await;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("crs_ratelimit_decisions_total")
                && l.contains("rule=\"agency\"")
                && l.contains("shadow_denied")
        })
        .expect("shadow denials are counted");
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{line}");
    intake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_intake_processes_share_one_agencys_limit() {
    // Two intake processes on one PostgreSQL database, as replicas run in production.
    let db = crs_testkit::TestDb::fresh(Backend::Postgres, "intake").await.unwrap();
    let db_url = db.url.clone();
    let first = Intake::start_on(db, &[]).await;
    let agency = first.agency().await;
    set_burst(&first, &agency, "agency", 4, false).await;
    let second = support::Process::start(&db_url).await;
    let mut a = first.intake(first.as_agency(&agency)).await;
    let mut b = second.intake(first.as_agency(&agency)).await;
    let mut admitted = 0;
    for i in 0..10 {
        let client = if i % 2 == 0 { &mut a } else { &mut b };
        admitted += usize::from(client.submit_request(notice()).await.is_ok());
    }
    assert_eq!(admitted, 4, "one limit across both processes");
    second.stop();
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_flight_loses_nothing() {
    let mut redis = crs_testkit::PrivateRedis::start();
    let intake = Intake::start_with(Backend::Sqlite, &[("CRS_REDIS__URL", &redis.url())]).await;
    let agency = intake.agency().await;
    set_burst(&intake, &agency, "agency", 5, false).await;
    let mut client = intake.intake(intake.as_agency(&agency)).await;
    let mut accepted = Vec::new();
    for _ in 0..2 {
        accepted.push(client.submit_request(notice()).await.unwrap().into_inner().request.unwrap().id);
    }
    redis.kill();
    // Intake keeps accepting, under the same rules applied in process (a fresh local bucket).
    let mut during = Vec::new();
    for _ in 0..7 {
        during.push(client.submit_request(notice()).await);
    }
    let ok: Vec<_> = during.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 5, "the local bound is the agency's limit");
    assert!(during.iter().filter_map(|r| r.as_ref().err()).all(|e| e.code() == Code::ResourceExhausted));
    accepted.extend(ok.iter().map(|r| r.get_ref().request.clone().unwrap().id));
    let metrics = intake.metrics().await;
    assert!(metrics.contains("crs_ratelimit_fallback_active 1"), "the fallback is visible");

    redis.restart();
    let mut back = false;
    for _ in 0..60 {
        let metrics = intake.metrics().await;
        let reply = client.submit_request(notice()).await;
        if let Ok(r) = reply {
            accepted.push(r.into_inner().request.unwrap().id);
        }
        if metrics.contains("crs_ratelimit_fallback_active 0") {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "decisions return to Redis");
    // Every accepted request is there.
    let mut client_view = intake.intake(intake.as_agency(&agency)).await;
    for id in &accepted {
        client_view.get_request(GetRequestRequest { request_id: id.clone() }).await.expect("accepted request kept");
    }
    assert_eq!(intake.written().await[0] as usize, accepted.len());
    intake.stop().await;
}
