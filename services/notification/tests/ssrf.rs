//! No delivery reaches an address the operator did not allow: every form of a loopback,
//! private, link-local, metadata or multicast address is refused when a subscription names it
//! and where the connection is made (a name that resolves to one), and each refusal is counted.

mod support;

use std::time::Duration;

use crs_proto::notification::*;
use crs_testkit::{Backend, eventually};
use support::*;

const PATIENCE: Duration = Duration::from_secs(30);

/// Production settings: https only, public addresses only.
async fn strict(backend: Backend) -> crs_testkit::ServiceEnv {
    env(backend).await.set("CRS_DELIVERY__DEVELOPMENT_MODE", "false")
}

async fn put(running: &crs_testkit::Running, endpoint: &str) -> Result<Subscription, tonic::Status> {
    admin(running)
        .await
        .put_subscription(PutSubscriptionRequest {
            audience: Audience::Enforcement as i32,
            endpoint: endpoint.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

fn violation(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| (v.field, v.description)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_of_a_forbidden_address_is_refused_when_subscribed_and_counted() {
    let env = strict(Backend::Sqlite).await;
    let running = start(&env).await;
    // The registry is the process's: other tests running alongside count too.
    let before = metrics(&running).await;
    for (endpoint, range) in [
        ("https://169.254.169.254/latest/meta-data/iam/", "cloud_metadata"),
        ("https://[fd00:ec2::254]/latest/", "cloud_metadata"),
        ("https://127.0.0.1:6379/", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://0x7f000001/hook", "loopback"),
        ("https://2130706433/hook", "loopback"),
        ("https://127.1/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://[::ffff:a9fe:a9fe]/", "cloud_metadata"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://10.0.0.7/hook", "private"),
        ("https://172.20.1.1/hook", "private"),
        ("https://192.168.1.10/hook", "private"),
        ("https://[fc00::7]/hook", "private"),
        ("https://100.64.0.1/hook", "shared_address_space"),
        ("https://169.254.10.10/hook", "link_local"),
        ("https://[fe80::1]/hook", "link_local"),
        ("https://224.0.0.251/hook", "multicast"),
        ("https://[ff02::1]/hook", "multicast"),
    ] {
        let refused = put(&running, endpoint).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{endpoint}");
        let v = violation(&refused);
        assert_eq!(v.len(), 1, "{endpoint}: {v:?}");
        assert_eq!(v[0].0, "endpoint");
        assert!(v[0].1.contains(&range.replace('_', " ")), "{endpoint}: {}", v[0].1);
    }
    // Plain http only in development mode; credentials in the URL never.
    let http = put(&running, "http://hooks.example/notify").await.unwrap_err();
    assert!(violation(&http)[0].1.contains("must be https"), "{http:?}");
    let creds = put(&running, "https://user:pw@hooks.example/notify").await.unwrap_err();
    assert!(violation(&creds)[0].1.contains("credentials"), "{creds:?}");
    let after = metrics(&running).await;
    for (range, at_least) in [("loopback", 6), ("cloud_metadata", 3), ("private", 4), ("multicast", 2)] {
        let series = format!("crs_webhook_addresses_refused_total{{range=\"{range}\"}}");
        assert!(metric(&after, &series) - metric(&before, &series) >= at_least, "{series} counted");
    }
    assert!(
        admin(&running)
            .await
            .list_subscriptions(ListSubscriptionsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .subscriptions
            .is_empty(),
        "nothing half-written"
    );
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// A name is checked where the connection is made: `localhost` resolves to loopback, so the
/// delivery is refused (and given up: trying again cannot help) without a connection, counted,
/// and the agency-safe summary names no address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_a_forbidden_address_is_refused_at_connection_time() {
    let env = strict(Backend::Sqlite).await;
    let running = start(&env).await;
    let internal_service = Forbidden::start().await;
    put(&running, &format!("https://localhost:{}/hook", internal_service.port)).await.expect("a name is accepted");
    internal(&running, "legal-review").await.notify(decided("s-1", "agency-1")).await.unwrap();
    let refused = eventually("the delivery is refused", PATIENCE, || async {
        deliveries(&running).await.into_iter().find(|d| d.state == DeliveryState::Failed as i32)
    })
    .await;
    assert_eq!(refused.attempts, 1, "refused at once, not retried");
    assert!(refused.last_error.contains("loopback"), "{refused:?}");
    assert_eq!(internal_service.connections(), 0, "no connection was made");
    assert!(metric(&metrics(&running).await, "crs_webhook_addresses_refused_total{range=\"loopback\"}") >= 1);
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// What the allow-list names is reachable, and only that: 127.0.0.1 allowed, ::1 still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_opens_only_the_addresses_it_names() {
    let env = strict(Backend::Sqlite).await.set("CRS_WEBHOOKS__ALLOW_CIDRS", "[\"127.0.0.1/32\"]");
    let running = start(&env).await;
    let allowed = Forbidden::start().await;
    put(&running, &format!("https://127.0.0.1:{}/hook", allowed.port)).await.expect("an allowed address");
    let v6 = put(&running, "https://[::1]/hook").await.unwrap_err();
    assert!(violation(&v6)[0].1.contains("loopback"));
    internal(&running, "legal-review").await.notify(decided("s-2", "agency-1")).await.unwrap();
    // The stand-in speaks no TLS, so the attempt fails after connecting: the address was allowed.
    eventually("the allowed address is contacted", PATIENCE, || async { (allowed.connections() >= 1).then_some(()) })
        .await;
    let attempted = eventually("the attempt is recorded", PATIENCE, || async {
        deliveries(&running).await.into_iter().find(|d| d.attempts >= 1 && !d.last_error.is_empty())
    })
    .await;
    assert!(!attempted.last_error.contains("not reach"), "not refused by policy: {attempted:?}");
    running.stop().await;
    env.db.drop_now().await.unwrap();
}

/// Development mode (`make run`, tests) allows http and loopback, and nothing else it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_mode_allows_loopback_but_not_the_rest() {
    let env = env(Backend::Sqlite).await;
    let running = start(&env).await;
    put(&running, "http://127.0.0.1:9/hook").await.expect("loopback over http in development mode");
    for endpoint in ["http://169.254.169.254/", "http://10.1.1.1/", "http://[fe80::1]/"] {
        assert_eq!(put(&running, endpoint).await.unwrap_err().code(), tonic::Code::InvalidArgument, "{endpoint}");
    }
    running.stop().await;
    env.db.drop_now().await.unwrap();
}
