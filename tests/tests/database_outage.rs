//! PostgreSQL stopped for 20 seconds under load: every service says so on its health at once and
//! back when the database returns; callers get UNAVAILABLE (which they retry), not a hang or
//! INTERNAL; and every request, accepted before or retried after, is carried through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crs_e2e::{Backend, SERVICES, Suite, health_of};
use crs_proto::common::RequestStatus;
use crs_proto::intake::SubmitRequestRequest;
use crs_proto::intake::intake_service_client::IntakeServiceClient;
use crs_testkit::PrivatePostgres;
use crsctl::demo::Demo;
use crsctl::receiver::Receiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// What the submitting agency saw: each request's key and every code it got for it.
type Outcomes = Arc<Mutex<Vec<(SubmitRequestRequest, Result<String, Code>)>>>;

/// Every health answer per service, with when it came.
type HealthLog = Arc<Mutex<HashMap<&'static str, Vec<(Instant, Option<i32>)>>>>;

/// The first time after `from` that `svc` answered `status`.
fn first(log: &HealthLog, svc: &str, from: Instant, status: ServingStatus) -> Option<Instant> {
    log.lock().unwrap()[svc].iter().find(|(at, s)| *at >= from && *s == Some(status as i32)).map(|(at, _)| *at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_is_reported_at_once_and_loses_nothing() {
    let pg = PrivatePostgres::start().expect("a private PostgreSQL");
    let mut options = Suite::options(Backend::Postgres).postgres(&pg.admin_url());
    // The load is one agency's; keep its rate limits out of the way.
    for (key, value) in [("RATE_PER_SEC", "1000.0"), ("BURST", "10000")] {
        options = options.set("intake", &format!("CRS_RATE_LIMITS__TIERS__STANDARD__BINDING__REQUESTS__{key}"), value);
    }
    let suite = options.start().await.expect("suite starts");
    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver);
    demo.patience = Duration::from_secs(120);
    demo.set_up().await.unwrap();

    let stop = CancellationToken::new();
    let health: HealthLog = Arc::new(Mutex::new(SERVICES.iter().map(|s| (*s, Vec::new())).collect()));
    let mut pollers = Vec::new();
    for svc in SERVICES {
        let (url, health, stop) = (suite.url(svc).to_owned(), health.clone(), stop.clone());
        pollers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let status = health_of(&url).await;
                health.lock().unwrap().get_mut(svc).unwrap().push((Instant::now(), status));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }

    // One submission every 100 ms, each with its own idempotency key, for the whole run.
    let outcomes: Outcomes = Arc::default();
    let load = {
        let (outcomes, stop) = (outcomes.clone(), stop.clone());
        let mut intake =
            IntakeServiceClient::new(crsctl::connect(&suite.endpoints.intake, demo.agency().unwrap()).await.unwrap());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let request = Demo::sample_request(&uuid::Uuid::new_v4().to_string());
                let mut call = tonic::Request::new(request.clone());
                // A caller's own deadline, well past the bound a service must answer within.
                call.set_timeout(Duration::from_secs(15));
                let result =
                    intake.submit_request(call).await.map(|r| r.into_inner().request.unwrap().id).map_err(|s| s.code());
                outcomes.lock().unwrap().push((request, result));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped_at = Instant::now();
    pg.stop().unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let started_at = Instant::now();
    pg.start_again().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    crs_testkit::eventually("every service is SERVING again", Duration::from_secs(60), || async {
        SERVICES.iter().all(|s| first(&health, s, started_at, ServingStatus::Serving).is_some()).then_some(())
    })
    .await;
    stop.cancel();
    load.await.unwrap();
    for p in pollers {
        p.await.unwrap();
    }

    // Health said so, promptly, in every service.
    for svc in SERVICES {
        let down = first(&health, svc, stopped_at, ServingStatus::NotServing)
            .unwrap_or_else(|| panic!("{svc} never reported NOT_SERVING while the database was stopped"));
        assert!(down - stopped_at < Duration::from_secs(8), "{svc} took {:?} to report NOT_SERVING", down - stopped_at);
        assert!(down < started_at, "{svc} reported NOT_SERVING only after the database returned");
        let up = first(&health, svc, started_at, ServingStatus::Serving).expect("checked above");
        eprintln!(
            "{svc}: NOT_SERVING {:?} after the stop, SERVING {:?} after the start",
            down - stopped_at,
            up - started_at
        );
    }

    // Callers saw UNAVAILABLE, never a hang (their own deadline) or INTERNAL.
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let mut codes: HashMap<Code, usize> = HashMap::new();
    for (_, result) in &outcomes {
        *codes.entry(result.as_ref().err().copied().unwrap_or(Code::Ok)).or_default() += 1;
    }
    eprintln!("codes the agency saw: {codes:?}");
    assert!(codes.get(&Code::Unavailable).copied().unwrap_or(0) > 0, "no call met the outage: {codes:?}");
    assert!(
        codes.keys().all(|c| matches!(c, Code::Ok | Code::Unavailable)),
        "calls during the outage got other codes: {codes:?}"
    );

    // Every request is carried through: those accepted, and those refused once retried with the
    // same key as a client would.
    let mut intake =
        IntakeServiceClient::new(crsctl::connect(&suite.endpoints.intake, demo.agency().unwrap()).await.unwrap());
    let mut ids = Vec::new();
    for (request, result) in outcomes {
        let id = match result {
            Ok(id) => id,
            Err(_) => intake.submit_request(request).await.expect("a retry succeeds").into_inner().request.unwrap().id,
        };
        ids.push(id);
    }
    for id in &ids {
        demo.wait_status(id, RequestStatus::Triaged).await.expect("every request is triaged");
    }
    suite.stop().await.unwrap();
}
