//! `crs-bench`: load against a running CRS, and the bare gRPC ceiling beside it.
//!
//! - `load`: agencies (several, over several jurisdictions) submit `SubmitRequest`s with 1 to 20
//!   items to intake over a few channels, closed loop (N clients, each sending its next request
//!   when the last is answered) or open loop (a fixed rate, each latency counted from when the
//!   request was due, so a slow server cannot hide its queue). A sample of the accepted requests
//!   is followed to legal review (reply to claimable case) and, with `--decide`, decided there and
//!   followed to the agency's webhook (decision to delivery). It prints requests/s, latency
//!   percentiles, errors by code, the hops, and the database commits each request caused.
//! - `echo-server` and `echo`: a bare tonic server answering `grpc.health.v1.Health/Check` and
//!   nothing else, called the way `load` calls intake: what gRPC alone costs on this machine.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use crs_platform::auth::{Principal, Role, TokenIssuer};
use crs_proto::common::{
    Category, ContentItem, ItemDecision, ItemOutcome, LegalInstrument, NoActionReason, RequestedAction,
};
use crs_proto::intake::agency_admin_service_client::AgencyAdminServiceClient;
use crs_proto::intake::intake_service_client::IntakeServiceClient;
use crs_proto::intake::{CreateAgencyRequest, SubmitRequestRequest};
use crs_proto::review::legal_review_service_client::LegalReviewServiceClient;
use crs_proto::review::{ClaimCaseRequest, GetCaseRequest, SubmitDecisionRequest};
use crsctl::Bearer;
use rand::Rng;
use serde_json::json;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

mod report;

#[derive(Parser)]
#[command(name = "crs-bench", version, about = "Load against a running CRS, and the bare gRPC ceiling")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Agencies submitting to intake, closed or open loop.
    Load(LoadArgs),
    /// A bare tonic server answering grpc.health.v1 Check: the gRPC ceiling.
    EchoServer {
        #[arg(long, default_value = "127.0.0.1:20099")]
        listen: SocketAddr,
    },
    /// Calls the echo server as `load` calls intake.
    Echo(EchoArgs),
    /// Writes bench/RESULTS.md from one `make bench` run's figures.
    Report {
        /// The run's directory: the JSON figures and the benchmarks' text output.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "bench/RESULTS.md")]
        out: PathBuf,
    },
}

#[derive(Args, Clone)]
struct Shape {
    /// Concurrent clients (closed loop).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Offered requests per second (open loop); closed loop when unset.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// HTTP/2 connections the clients share.
    #[arg(long, default_value_t = 8)]
    channels: usize,
    /// Writes the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A name for this run in the JSON.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Args)]
struct EchoArgs {
    #[arg(long, default_value = "http://127.0.0.1:20099")]
    target: String,
    #[command(flatten)]
    shape: Shape,
}

#[derive(Args)]
struct LoadArgs {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    intake: String,
    #[arg(long, default_value = "http://127.0.0.1:50053")]
    legal_review: String,
    /// The deployment's key directory (the token issuer's key signs the bench's tokens).
    #[arg(long, default_value = "data/keys")]
    key_dir: PathBuf,
    #[arg(long, default_value = "crs")]
    issuer: String,
    /// Agencies the clients act for, spread over five jurisdictions.
    #[arg(long, default_value_t = 16)]
    agencies: usize,
    /// The agencies' rate-limit tier (`make bench` configures intake with a wide `bench` tier).
    #[arg(long, default_value = "bench")]
    tier: String,
    /// Follows every Nth accepted request to legal review (0: none), once the warm-up is over:
    /// the hops are those of a running system, not of one whose connections and caches are
    /// still being filled.
    #[arg(long, default_value_t = 0)]
    follow: u64,
    /// Also decides each followed case and waits for the agency's webhook.
    #[arg(long)]
    decide: bool,
    /// Where the bench's webhook receiver listens (the agencies' callbacks point here).
    #[arg(long, default_value = "127.0.0.1:0")]
    receiver: SocketAddr,
    /// Each submission's deadline in milliseconds, sent as `grpc-timeout` as an agency's client
    /// would set it (0: none). Past it, intake gives the call up, and does not store a
    /// submission no writer has taken yet.
    #[arg(long, default_value_t = 0)]
    deadline_ms: u64,
    /// PostgreSQL databases of the four services (`postgres://...`, comma-separated): the
    /// commits each request caused are read from their `pg_stat_database`.
    #[arg(long, value_delimiter = ',')]
    databases: Vec<String>,
    #[command(flatten)]
    shape: Shape,
}

const JURISDICTIONS: [&str; 5] = ["KZ", "TR", "IN", "BR", "DE"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::EchoServer { listen } => echo_server(listen).await,
        Command::Echo(args) => echo(args).await,
        Command::Load(args) => load(args).await,
        Command::Report { dir, out } => report::write(&dir, &out),
    }
}

/// Latencies and outcomes gathered by the clients.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, started: Instant, result: Result<(), tonic::Code>) {
        self.record_took(started.elapsed(), result);
    }

    fn record_took(&mut self, took: Duration, result: Result<(), tonic::Code>) {
        match result {
            Ok(()) => self.latencies_us.push(took.as_micros() as u64),
            Err(code) => *self.errors.entry(format!("{code:?}")).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// Percentiles in milliseconds of `us` (sorted here).
fn percentiles(us: &mut [u64]) -> serde_json::Value {
    us.sort_unstable();
    let at = |p: f64| {
        if us.is_empty() { 0.0 } else { us[((us.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0 }
    };
    json!({ "n": us.len(), "p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": at(1.0) })
}

async fn channels(url: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let channel = Endpoint::from_shared(url.to_owned())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(60))
            .connect()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        out.push(channel);
    }
    Ok(out)
}

/// Runs `call` as the shape says (closed loop with `clients` callers, or open loop at `rate`),
/// after a warm-up; returns the tally and the seconds measured.
async fn drive<F, Fut>(shape: &Shape, call: F) -> (Tally, f64)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Code>> + Send,
{
    let call = Arc::new(call);
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let run = |secs: f64| {
        let call = call.clone();
        let seq = seq.clone();
        let shape = shape.clone();
        async move {
            let start = Instant::now();
            let stop = start + Duration::from_secs_f64(secs);
            let mut tally = Tally::default();
            match shape.rate {
                None => {
                    let mut tasks = Vec::new();
                    for _ in 0..shape.clients {
                        let (call, seq) = (call.clone(), seq.clone());
                        tasks.push(tokio::spawn(async move {
                            let mut t = Tally::default();
                            while Instant::now() < stop {
                                let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let began = Instant::now();
                                let r = call(n).await;
                                t.record(began, r);
                            }
                            t
                        }));
                    }
                    for task in tasks {
                        tally.merge(task.await.unwrap_or_default());
                    }
                }
                Some(rate) => {
                    let interval = Duration::from_secs_f64(1.0 / rate);
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                    let mut due = start;
                    while due < stop {
                        tokio::time::sleep_until(due.into()).await;
                        // Every request due by now goes, each timed from when it was due.
                        while due <= Instant::now() && due < stop {
                            let (call, seq, tx) = (call.clone(), seq.clone(), tx.clone());
                            let scheduled = due;
                            tokio::spawn(async move {
                                let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let r = call(n).await;
                                // Timed here, at the answer: the results are read only once the offer ends.
                                let _ = tx.send((scheduled.elapsed(), r));
                            });
                            due += interval;
                        }
                    }
                    drop(tx);
                    while let Some((took, r)) = rx.recv().await {
                        tally.record_took(took, r);
                    }
                }
            }
            tally
        }
    };
    if shape.warmup_secs > 0.0 {
        run(shape.warmup_secs).await;
    }
    let began = Instant::now();
    let tally = run(shape.secs).await;
    // Closed loop: the run ends when the last answer arrives; open loop: when the offer stops.
    let elapsed = if shape.rate.is_some() { shape.secs } else { began.elapsed().as_secs_f64() };
    (tally, elapsed)
}

fn report(shape: &Shape, mode: &str, tally: &mut Tally, elapsed: f64, extra: serde_json::Value) -> anyhow::Result<()> {
    let ok = tally.latencies_us.len() as u64;
    let rps = ok as f64 / elapsed;
    let latency = percentiles(&mut tally.latencies_us);
    let mut out = json!({
        "label": shape.label,
        "mode": mode,
        "loop": if shape.rate.is_some() { "open" } else { "closed" },
        "clients": shape.clients,
        "offered_per_sec": shape.rate,
        "channels": shape.channels,
        "secs": elapsed,
        "warmup_secs": shape.warmup_secs,
        "ok": ok,
        "per_sec": rps,
        "latency": latency,
        "errors": tally.errors,
    });
    if let (Some(o), Some(e)) = (out.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let load = match shape.rate {
        Some(r) => format!("open loop, {r:.0}/s offered"),
        None => format!("closed loop, {} clients", shape.clients),
    };
    println!(
        "{mode}: {load}, {} channels: {rps:.0}/s ok, p50 {} ms, p90 {} ms, p99 {} ms, max {} ms, errors {:?}",
        shape.channels,
        out["latency"]["p50_ms"],
        out["latency"]["p90_ms"],
        out["latency"]["p99_ms"],
        out["latency"]["max_ms"],
        tally.errors
    );
    if let Some(hops) = out.get("hops").and_then(|h| h.as_object()) {
        for (name, h) in hops {
            println!(
                "  hop {name}: n {}, p50 {} ms, p99 {} ms, max {} ms",
                h["n"], h["p50_ms"], h["p99_ms"], h["max_ms"]
            );
        }
    }
    if let Some(c) = out.get("commits_per_request") {
        println!("  database commits per accepted request: {c}");
    }
    if let Some(path) = &shape.json {
        std::fs::write(path, serde_json::to_vec_pretty(&out)?)?;
    }
    Ok(())
}

async fn echo_server(listen: SocketAddr) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
    println!("echo server on {listen}");
    tonic::transport::Server::builder().tcp_nodelay(true).add_service(health).serve(listen).await?;
    Ok(())
}

async fn echo(args: EchoArgs) -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channels = channels(&args.target, args.shape.channels).await?;
    let (mut tally, elapsed) = drive(&args.shape, move |n| {
        let mut client = HealthClient::new(channels[n as usize % channels.len()].clone());
        async move { client.check(HealthCheckRequest { service: String::new() }).await.map(drop).map_err(|s| s.code()) }
    })
    .await;
    report(&args.shape, "echo", &mut tally, elapsed, json!({}))
}

/// What one request looks like: 1 to 20 items of content no other request names (so nothing
/// is merged), a mix of instruments and categories that need no second reviewer.
fn body(n: u64, jurisdiction: &str) -> SubmitRequestRequest {
    let mut rng = rand::rng();
    let items = rng.random_range(1..=20);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let instrument = [LegalInstrument::GovernmentNotice, LegalInstrument::CourtOrder, LegalInstrument::GovernmentOrder]
        [n as usize % 3];
    let binding = instrument != LegalInstrument::GovernmentNotice;
    SubmitRequestRequest {
        idempotency_key: format!("bench-{run}"),
        jurisdiction: jurisdiction.into(),
        legal_instrument: instrument as i32,
        category: [
            Category::ScamsAndFraud,
            Category::IntellectualPropertyInfringements,
            Category::DataProtectionAndPrivacyViolations,
        ][n as usize % 3] as i32,
        requested_action: RequestedAction::RestrictInJurisdiction as i32,
        items: (0..items)
            .map(|i| ContentItem {
                url: format!("https://social.example/posts/{run}-{i}?utm_source=share"),
                description: "a listing offering counterfeit goods at a fraction of their price".into(),
                ..Default::default()
            })
            .collect(),
        legal_basis: if binding { "Consumer Protection Act, s. 12".into() } else { String::new() },
        justification: if binding { "The seller is not authorised and deceives buyers.".into() } else { String::new() },
        reference: format!("BENCH-{n}"),
        issuing_authority: "Consumer Protection Agency".into(),
        content_language: "en".into(),
        keywords: Vec::new(),
    }
}

/// The bench's own webhook receiver: when each `request.decided` arrived, by request id.
#[derive(Clone, Default)]
struct Hooks {
    decided: Arc<Mutex<HashMap<String, Instant>>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl Hooks {
    async fn start(listen: SocketAddr) -> anyhow::Result<(Hooks, SocketAddr)> {
        use axum::routing::post;
        let hooks = Hooks::default();
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = hooks.clone();
        let app = axum::Router::new().route(
            "/hook/{agency}",
            post(move |body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                        && v["type"] == "request.decided"
                        && let Some(id) = v["data"]["request_id"].as_str()
                    {
                        state.decided.lock().expect("hooks lock").insert(id.to_owned(), Instant::now());
                        state.arrived.notify_waiters();
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((hooks, addr))
    }

    async fn wait(&self, request_id: &str, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.arrived.notified();
            if let Some(at) = self.decided.lock().expect("hooks lock").get(request_id) {
                return Some(*at);
            }
            if tokio::time::timeout_at(deadline.into(), notified).await.is_err() {
                return None;
            }
        }
    }
}

/// Hop latencies of the followed requests, in microseconds.
#[derive(Default)]
struct Hops {
    reply_to_case: Vec<u64>,
    decision_to_webhook: Vec<u64>,
    lost: u64,
}

async fn commits(databases: &[String]) -> anyhow::Result<i64> {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let mut total = 0;
    for url in databases {
        let name = url.rsplit('/').next().unwrap_or_default().split('?').next().unwrap_or_default().to_owned();
        let db = Database::connect(url.as_str()).await?;
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
                [name.into()],
            ))
            .await?
            .context("no statistics for the database")?;
        total += row.try_get_by_index::<i64>(0)?;
        db.close().await?;
    }
    Ok(total)
}

async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let issuer = TokenIssuer::from_file(&args.key_dir.join("tokens.key"), &args.issuer)?;
    let bearer = |p: Principal| Bearer::for_principal(&issuer, &p);
    let admin = bearer(Principal::Reviewer { id: "bench-admin".into(), roles: vec![Role::Admin] })?;
    let (hooks, hooks_addr) = Hooks::start(args.receiver).await?;

    // The agencies, with generous limits (the figures measure accepting, not refusing; the
    // limiter still decides every request in Redis).
    let mut agencies = Vec::new();
    let mut admin_client = AgencyAdminServiceClient::new(crsctl::connect(&args.intake, admin).await?);
    for i in 0..args.agencies.max(1) {
        let jurisdiction = JURISDICTIONS[i % JURISDICTIONS.len()];
        let agency = admin_client
            .create_agency(CreateAgencyRequest {
                name: format!("Bench agency {i} ({})", uuid::Uuid::new_v4().simple()),
                jurisdiction: jurisdiction.into(),
                contact_email: String::new(),
                callback_url: format!("http://{hooks_addr}/hook/{i}"),
                rate_limit_tier: args.tier.clone(),
                language: "en".into(),
                ..Default::default()
            })
            .await
            .with_context(|| {
                format!("creating the bench's agencies (does intake have a `{}` rate-limit tier?)", args.tier)
            })?
            .into_inner();
        agencies.push((agency.id.clone(), jurisdiction, bearer(Principal::Agency { id: agency.id })?));
    }
    let agencies = Arc::new(agencies);
    let intake = channels(&args.intake, args.shape.channels).await?;
    // Legal review is called only to follow requests: a run that follows none (intake alone)
    // needs it not to be there.
    let review_channel = if args.follow > 0 {
        channels(&args.legal_review, 1).await?.remove(0)
    } else {
        Endpoint::from_shared(args.legal_review.clone())?.connect_lazy()
    };
    let reviewer = bearer(Principal::Reviewer { id: "bench-reviewer".into(), roles: vec![Role::SeniorReviewer] })?;
    let hops = Arc::new(Mutex::new(Hops::default()));
    let followers = Arc::new(Mutex::new(Vec::new()));
    let before = if args.databases.is_empty() { None } else { Some(commits(&args.databases).await?) };
    let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let measured_from = Instant::now() + Duration::from_secs_f64(args.shape.warmup_secs);

    let (follow, decide, deadline_ms) = (args.follow, args.decide, args.deadline_ms);
    let (agencies2, hops2, followers2, accepted2) =
        (agencies.clone(), hops.clone(), followers.clone(), accepted.clone());
    let (mut tally, elapsed) = drive(&args.shape, move |n| {
        let (_, jurisdiction, bearer) = agencies2[n as usize % agencies2.len()].clone();
        let channel = intake[n as usize % intake.len()].clone();
        let mut client = IntakeServiceClient::new(InterceptedService::new(channel, bearer));
        let request = body(n, jurisdiction);
        let review = InterceptedService::new(review_channel.clone(), reviewer.clone());
        let (hops, followers, accepted, hooks) = (hops2.clone(), followers2.clone(), accepted2.clone(), hooks.clone());
        async move {
            let mut call = tonic::Request::new(request);
            if deadline_ms > 0 {
                call.set_timeout(Duration::from_millis(deadline_ms));
            }
            let reply = client.submit_request(call).await.map_err(|s| s.code())?.into_inner();
            let replied = Instant::now();
            let seen = accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if follow > 0
                && seen % follow == 0
                && replied >= measured_from
                && let Some(request) = reply.request
            {
                let task =
                    tokio::spawn(follow_request(request.id, request.items.len(), replied, review, decide, hooks, hops));
                followers.lock().expect("followers lock").push(task);
            }
            Ok(())
        }
    })
    .await;
    let tasks: Vec<_> = std::mem::take(&mut *followers.lock().expect("followers lock"));
    for t in tasks {
        let _ = t.await;
    }
    let mut extra = json!({ "agencies": args.agencies });
    if let Some(before) = before {
        // The statistics reach pg_stat_database once the backends report them (about a second).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let after = commits(&args.databases).await?;
        let n = accepted.load(std::sync::atomic::Ordering::Relaxed).max(1);
        extra["commits_per_request"] = json!(((after - before) as f64 / n as f64 * 100.0).round() / 100.0);
    }
    let mut h = std::mem::take(&mut *hops.lock().expect("hops lock"));
    if follow > 0 {
        extra["hops"] = json!({
            "reply_to_case": percentiles(&mut h.reply_to_case),
            "decision_to_webhook": percentiles(&mut h.decision_to_webhook),
        });
        extra["followed_lost"] = json!(h.lost);
    }
    report(&args.shape, "crs", &mut tally, elapsed, extra)
}

/// How long a follower waits before asking legal review again for a case not there after
/// `waited`: a twentieth of it, at least 2 ms. The hop is then measured within 5 % (2 ms while it
/// is short), and followers of cases slow to come, under overload, do not add to the load they
/// measure: 300 of them asking every 2 ms would make up to 150,000 calls a second.
fn poll_interval(waited: Duration) -> Duration {
    (waited / 20).max(Duration::from_millis(2))
}

/// Follows one accepted request: until its case is claimable at legal review; with `decide`,
/// decides it there and waits for the agency's webhook.
async fn follow_request(
    request_id: String,
    items: usize,
    replied: Instant,
    channel: InterceptedService<Channel, Bearer>,
    decide: bool,
    hooks: Hooks,
    hops: Arc<Mutex<Hops>>,
) {
    let mut review = LegalReviewServiceClient::new(channel);
    let give_up = replied + Duration::from_secs(120);
    loop {
        match review.get_case(GetCaseRequest { case_id: request_id.clone() }).await {
            Ok(_) => break,
            Err(_) if Instant::now() < give_up => tokio::time::sleep(poll_interval(replied.elapsed())).await,
            Err(_) => {
                hops.lock().expect("hops lock").lost += 1;
                return;
            }
        }
    }
    hops.lock().expect("hops lock").reply_to_case.push(replied.elapsed().as_micros() as u64);
    if !decide {
        return;
    }
    let decided = async {
        review.claim_case(ClaimCaseRequest { case_id: request_id.clone(), lease: None }).await?;
        review
            .submit_decision(SubmitDecisionRequest {
                case_id: request_id.clone(),
                decisions: (0..items)
                    .map(|i| ItemDecision {
                        item_index: i as u32,
                        outcome: ItemOutcome::NoAction as i32,
                        no_action_reason: NoActionReason::NotSpecificEnough as i32,
                        explanation: "The request does not show what is unlawful.".into(),
                        ..Default::default()
                    })
                    .collect(),
                summary: "Refused: not specific enough.".into(),
                idempotency_key: String::new(),
            })
            .await?;
        Ok::<_, tonic::Status>(Instant::now())
    }
    .await;
    let Ok(at) = decided else {
        hops.lock().expect("hops lock").lost += 1;
        return;
    };
    match hooks.wait(&request_id, Duration::from_secs(120)).await {
        Some(arrived) => hops
            .lock()
            .expect("hops lock")
            .decision_to_webhook
            .push(arrived.saturating_duration_since(at).as_micros() as u64),
        None => hops.lock().expect("hops lock").lost += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_ask_again_within_a_twentieth_of_their_wait() {
        assert_eq!(poll_interval(Duration::ZERO), Duration::from_millis(2));
        assert_eq!(poll_interval(Duration::from_millis(30)), Duration::from_millis(2));
        assert_eq!(poll_interval(Duration::from_secs(1)), Duration::from_millis(50));
        assert_eq!(poll_interval(Duration::from_secs(60)), Duration::from_secs(3));
    }
}
