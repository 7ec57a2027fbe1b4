//! One request, one trace: the four service processes export to an OTLP/gRPC receiver run by
//! this test, and the request's trace holds every step, across gRPC hops and outbox hand-offs.

use std::collections::{HashMap, HashSet};

use crs_e2e::otlp::{exporting_to, start_collector};
use crs_e2e::{Backend, SERVICES, Suite};
use crs_proto::common::RequestStatus;
use crs_proto::intake::intake_service_client::IntakeServiceClient;
use crs_proto::notification::NotificationKind;
use crsctl::demo::Demo;
use crsctl::receiver::Receiver;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_yields_one_trace_across_all_four_services() {
    let (collector, metrics, endpoint) = start_collector().await;
    let mut extra = exporting_to(&endpoint);
    extra.push(("legal-review", "CRS_REVIEW__QUEUE_METRICS_INTERVAL_MS", "200".into()));
    let mut suite = Suite::start_with(Backend::Sqlite, &extra).await.expect("suite starts");

    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver.clone());
    demo.set_up().await.unwrap();
    let mut intake =
        IntakeServiceClient::new(crsctl::connect(&suite.endpoints.intake, demo.agency().unwrap()).await.unwrap());
    let reply = intake.submit_request(Demo::sample_request(&uuid::Uuid::new_v4().to_string())).await.unwrap();
    let trace_id = reply.metadata().get("x-trace-id").expect("the reply names its trace").to_str().unwrap().to_owned();
    let request_id = reply.into_inner().request.unwrap().id;
    demo.wait_status(&request_id, RequestStatus::Triaged).await.unwrap();

    // A caller's own trace is continued: the reply names the trace the caller sent.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut get = tonic::Request::new(crs_proto::intake::GetRequestRequest { request_id: request_id.clone() });
    get.metadata_mut().insert("traceparent", format!("00-{caller_trace}-00f067aa0ba902b7-01").parse().unwrap());
    let continued = intake.get_request(get).await.unwrap();
    assert_eq!(continued.metadata().get("x-trace-id").unwrap().to_str().unwrap(), caller_trace);

    demo.claim(&request_id).await.unwrap();
    demo.decide_and_approve(&request_id).await.unwrap();
    demo.wait_status(&request_id, RequestStatus::Decided).await.unwrap();
    let notes =
        demo.wait_delivered(&request_id, &[NotificationKind::Acknowledged, NotificationKind::Decided]).await.unwrap();
    let deliveries: usize = notes.iter().map(|n| n.deliveries.len()).sum();

    // Every entry of the case's audit trail names the request's trace.
    let admin = crsctl::Bearer::for_principal(
        &suite.issuer,
        &crs_platform::auth::Principal::Reviewer { id: "root".into(), roles: vec![crs_platform::auth::Role::Admin] },
    )
    .unwrap();
    let mut review = crs_proto::review::legal_review_service_client::LegalReviewServiceClient::new(
        crsctl::connect(&suite.endpoints.legal_review, admin).await.unwrap(),
    );
    let audit = review
        .get_audit_trail(crs_proto::review::GetAuditTrailRequest { case_id: request_id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(audit.len() >= 4, "enqueue, claim, decide, approve: {audit:?}");
    assert!(audit.iter().all(|e| e.trace_id == trace_id), "audit entries carry the request's trace: {audit:?}");

    // A graceful stop flushes every process's spans.
    for svc in SERVICES {
        let status = suite.terminate(svc).unwrap();
        assert!(status.success(), "{svc} stopped cleanly");
    }

    let all = collector.0.lock().unwrap().clone();
    let in_trace: Vec<&(String, Span)> = all.iter().filter(|(_, s)| hex::encode(&s.trace_id) == trace_id).collect();
    let services: HashSet<&str> = in_trace.iter().map(|(svc, _)| svc.as_str()).collect();
    assert_eq!(
        services,
        HashSet::from(["crs-intake", "crs-triage", "crs-legal-review", "crs-notification"]),
        "spans from all four services in the request's trace"
    );
    let names: Vec<&str> = in_trace.iter().map(|(_, s)| s.name.as_str()).collect();
    assert!(names.contains(&"review.decide"), "the decision is in the trace {trace_id}: {names:?}");
    assert!(names.contains(&"review.claim"), "so is the claim");
    assert_eq!(
        names.iter().filter(|n| **n == "process webhook.deliver").count(),
        deliveries,
        "each notification delivery is in the trace: {names:?}"
    );
    // Each webhook POST is an HTTP CLIENT span of its delivery, with the HTTP attributes, and
    // the delivery's span says how it ended.
    let attr = |span: &Span, key: &str| {
        span.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.clone()).and_then(|v| v.value)
    };
    for (_, process) in in_trace.iter().filter(|(_, s)| s.name == "process webhook.deliver") {
        assert!(matches!(attr(process, "crs.delivery.outcome"), Some(Value::StringValue(ref v)) if v == "delivered"));
        let post = in_trace
            .iter()
            .find(|(_, s)| s.parent_span_id == process.span_id && s.name == "POST")
            .map(|(_, s)| s)
            .expect("the delivery's POST");
        assert_eq!(post.kind, SpanKind::Client as i32);
        assert!(matches!(attr(post, "http.request.method"), Some(Value::StringValue(ref v)) if v == "POST"));
        assert!(matches!(attr(post, "server.address"), Some(Value::StringValue(ref v)) if v == "127.0.0.1"));
        assert!(matches!(attr(post, "server.port"), Some(Value::IntValue(p)) if p == i64::from(receiver.addr.port())));
        assert!(matches!(attr(post, "http.response.status_code"), Some(Value::IntValue(204))));
        assert!(
            matches!(attr(post, "url.full"), Some(Value::StringValue(ref v)) if v.starts_with("http://127.0.0.1:"))
        );
    }
    // Each hand-off is a call: the relay's consumer span, a CLIENT span with the RPC attributes,
    // and the receiving server's span as the client span's child.
    for rpc in [
        "crs.triage.v1.TriageInternalService/AssessRequest",
        "crs.review.v1.LegalReviewInternalService/EnqueueCase",
        "crs.notification.v1.NotificationInternalService/Notify",
        "crs.intake.v1.IntakeInternalService/UpdateStatus",
    ] {
        let client = in_trace
            .iter()
            .find(|(_, s)| s.name == rpc && s.kind == SpanKind::Client as i32)
            .unwrap_or_else(|| panic!("a client span for {rpc} in the trace"));
        assert!(matches!(attr(&client.1, "rpc.system"), Some(Value::StringValue(ref v)) if v == "grpc"));
        let (service, method) = rpc.split_once('/').unwrap();
        assert!(matches!(attr(&client.1, "rpc.service"), Some(Value::StringValue(ref v)) if v == service));
        assert!(matches!(attr(&client.1, "rpc.method"), Some(Value::StringValue(ref v)) if v == method));
        assert!(matches!(attr(&client.1, "server.port"), Some(Value::IntValue(p)) if p > 0));
        let process =
            in_trace.iter().find(|(_, s)| s.span_id == client.1.parent_span_id).expect("the client span's parent");
        assert!(process.1.name.starts_with("process "), "{rpc} is called from the relay: {}", process.1.name);
        assert!(
            in_trace.iter().any(|(_, s)| s.name == rpc
                && s.kind == SpanKind::Server as i32
                && s.parent_span_id == client.1.span_id),
            "{rpc}'s server span is the client span's child"
        );
    }

    // Database work follows the database conventions.
    let db_span = in_trace.iter().find(|(_, s)| s.name == "outbox enqueue").expect("database spans in the trace");
    let system = db_span.1.attributes.iter().find(|a| a.key == "db.system").and_then(|a| a.value.clone());
    assert!(
        matches!(system.and_then(|v| v.value), Some(Value::StringValue(ref v)) if v == "sqlite"),
        "db.system is set"
    );

    // Parent/link structure: one root (the agency's call); every other span's parent is in the
    // trace; the decision links to the reviewer's own call, which was exported too.
    let ids: HashSet<&[u8]> = in_trace.iter().map(|(_, s)| s.span_id.as_slice()).collect();
    let roots: Vec<&str> =
        in_trace.iter().filter(|(_, s)| s.parent_span_id.is_empty()).map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(roots, vec!["crs.intake.v1.IntakeService/SubmitRequest"], "one root");
    for (svc, span) in &in_trace {
        if !span.parent_span_id.is_empty() {
            assert!(
                ids.contains(span.parent_span_id.as_slice()),
                "{svc} span {} has its parent in the trace",
                span.name
            );
        }
    }
    let decide = in_trace.iter().find(|(_, s)| s.name == "review.decide").unwrap();
    let link = decide.1.links.first().expect("the decision links to the reviewer's call");
    let linked: HashMap<Vec<u8>, &Span> = all.iter().map(|(_, s)| (s.span_id.clone(), s)).collect();
    let reviewer_call = linked.get(&link.span_id).expect("the linked span was exported");
    assert_eq!(reviewer_call.name, "crs.review.v1.LegalReviewService/SubmitDecision");
    assert_ne!(hex::encode(&reviewer_call.trace_id), trace_id, "the reviewer's call is its own trace");

    // Logs are JSON, one object per line, and carry the trace and span ids.
    let needle = format!("\"trace_id\":\"{trace_id}\"");
    for svc in SERVICES {
        let log = suite.log(svc);
        let line =
            log.lines().find(|l| l.contains(&needle)).unwrap_or_else(|| panic!("{svc} logged the request's trace"));
        let parsed: serde_json::Value = serde_json::from_str(line).expect("a JSON object per line");
        assert!(parsed["span_id"].as_str().is_some_and(|s| s.len() == 16), "{line}");
    }

    // The operators' metrics reach the OTLP backend too, from the service that owns each.
    let metrics = metrics.0.lock().unwrap().clone();
    for (service, name) in [
        ("crs-intake", "crs_requests_total"),
        ("crs-intake", "crs_ratelimit_decisions_total"),
        ("crs-intake", "crs_grpc_server_duration_seconds_count"),
        ("crs-intake", "crs_outbox_lag_seconds"),
        ("crs-legal-review", "crs_item_decisions_total"),
        ("crs-legal-review", "crs_review_queue_depth"),
        ("crs-notification", "crs_deliveries_total"),
    ] {
        assert!(metrics.contains(&(service.to_owned(), name.to_owned())), "{service} exported {name} over OTLP");
    }
    suite.stop().await.unwrap();
}

/// Work done once for many requests (intake's group commit of submissions, each receiver's
/// shared transaction of hand-offs) is traced with the requests it serves: for one request, in
/// its trace; for several, in a span of its own that links to each request's. No database span
/// is left a trace of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_done_together_is_traced_with_each_request() {
    const REQUESTS: usize = 24;
    let (collector, _metrics, endpoint) = start_collector().await;
    let mut suite = Suite::start_with(Backend::Postgres, &exporting_to(&endpoint)).await.expect("suite starts");
    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver);
    demo.set_up().await.unwrap();
    let intake =
        IntakeServiceClient::new(crsctl::connect(&suite.endpoints.intake, demo.agency().unwrap()).await.unwrap());
    // Submitted at once, so that some share a commit, and their hand-offs a transaction.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let mut intake = intake.clone();
        calls
            .spawn(async move { intake.submit_request(Demo::sample_request(&uuid::Uuid::new_v4().to_string())).await });
    }
    let mut submitted = Vec::new();
    while let Some(reply) = calls.join_next().await {
        let reply = reply.unwrap().expect("accepted");
        let trace_id = reply.metadata().get("x-trace-id").unwrap().to_str().unwrap().to_owned();
        submitted.push((trace_id, reply.into_inner().request.unwrap().id));
    }
    for (_, request_id) in &submitted {
        demo.wait_status(request_id, RequestStatus::Triaged).await.unwrap();
        demo.wait_delivered(request_id, &[NotificationKind::Acknowledged]).await.unwrap();
    }
    for svc in SERVICES {
        assert!(suite.terminate(svc).unwrap().success(), "{svc} stopped cleanly");
    }
    let all = collector.0.lock().unwrap().clone();

    let has_attribute = |span: &Span, key: &str| span.attributes.iter().any(|a| a.key == key);
    let lone_db_spans: Vec<String> = all
        .iter()
        .filter(|(_, s)| s.parent_span_id.is_empty() && has_attribute(s, "db.system"))
        .map(|(svc, s)| format!("{svc}: {}", s.name))
        .collect();
    assert!(lone_db_spans.is_empty(), "database spans that are traces of their own: {lone_db_spans:?}");

    let batches: Vec<&(String, Span)> =
        all.iter().filter(|(_, s)| s.name == "group commit" || s.name == "shared transaction").collect();
    let size =
        |span: &Span| match span.attributes.iter().find(|a| a.key == "crs.batch.size").and_then(|a| a.value.clone()) {
            Some(opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(Value::IntValue(n)) }) => n as usize,
            other => panic!("{} has no crs.batch.size: {other:?}", span.name),
        };
    for (svc, batch) in &batches {
        if size(batch) == 1 {
            assert!(
                !batch.parent_span_id.is_empty() && batch.links.is_empty(),
                "{svc}: a batch of one is its caller's child"
            );
        } else {
            assert!(batch.parent_span_id.is_empty(), "{svc}: a batch of several is a trace of its own");
            assert_eq!(batch.links.len(), size(batch), "{svc}: a batch of several links to each of its callers");
        }
    }
    for (trace_id, request_id) in &submitted {
        for (service, batch) in [
            ("crs-intake", "group commit"),
            ("crs-triage", "shared transaction"),
            ("crs-legal-review", "shared transaction"),
            ("crs-notification", "shared transaction"),
            ("crs-intake", "shared transaction"),
        ] {
            let serves = batches.iter().any(|(svc, s)| {
                svc == service
                    && s.name == batch
                    && (hex::encode(&s.trace_id) == *trace_id
                        || s.links.iter().any(|l| hex::encode(&l.trace_id) == *trace_id))
            });
            assert!(serves, "request {request_id}: {service}'s {batch} is in its trace or linked to it");
        }
    }
    let shared = batches.iter().filter(|(_, s)| s.links.len() > 1).count();
    eprintln!("{} batches, {shared} of them of several requests", batches.len());
    suite.stop().await.unwrap();
}

/// SLA warnings and the breach of a request are spans of that request's trace, and what they
/// send (notifications to on-call) continues from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_firings_join_the_requests_trace() {
    let (collector, _metrics, endpoint) = start_collector().await;
    let policies = std::env::temp_dir().join(format!("crs-trace-policies-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &policies,
        "[[policy]]\nid = \"fast\"\nname = \"fast\"\nlegal_reference = \"test\"\nbudget_secs = 2\n\
         pauses_while_awaiting_information = true\nwarning_percents = [50, 75, 90]\n",
    )
    .unwrap();
    let mut extra = exporting_to(&endpoint);
    extra.push(("triage", "CRS_POLICIES__SLA_FILE", policies.display().to_string()));
    let mut suite = Suite::start_with(Backend::Sqlite, &extra).await.expect("suite starts");
    let receiver = Receiver::start().await.unwrap();
    let mut demo = Demo::new(suite.endpoints.clone(), suite.issuer.clone(), receiver);
    demo.set_up().await.unwrap();
    let mut intake =
        IntakeServiceClient::new(crsctl::connect(&suite.endpoints.intake, demo.agency().unwrap()).await.unwrap());
    let reply = intake.submit_request(Demo::sample_request(&uuid::Uuid::new_v4().to_string())).await.unwrap();
    let trace_id = reply.metadata().get("x-trace-id").unwrap().to_str().unwrap().to_owned();
    let request_id = reply.into_inner().request.unwrap().id;
    demo.wait_status(&request_id, RequestStatus::Escalated).await.unwrap();
    for svc in SERVICES {
        suite.terminate(svc).unwrap();
    }
    let all = collector.0.lock().unwrap().clone();
    let in_trace: Vec<&Span> = all.iter().map(|(_, s)| s).filter(|s| hex::encode(&s.trace_id) == trace_id).collect();
    let count = |name: &str| in_trace.iter().filter(|s| s.name == name).count();
    assert_eq!(count("sla.warning"), 3, "the three warnings are in the request's trace");
    assert_eq!(count("sla.breach"), 1, "and the breach");
    let firing_ids: HashSet<&[u8]> =
        in_trace.iter().filter(|s| s.name.starts_with("sla.")).map(|s| s.span_id.as_slice()).collect();
    // Firings whose notification continues from them (a hand-off retried adds a span, not a firing).
    let notified: HashSet<&[u8]> = in_trace
        .iter()
        .filter(|s| {
            s.name == "process crs.notification.v1.NotificationInternalService/Notify"
                && firing_ids.contains(s.parent_span_id.as_slice())
        })
        .map(|s| s.parent_span_id.as_slice())
        .collect();
    assert_eq!(notified.len(), 4, "each firing's notification continues from the firing");
    // Each batch of firings is a span of its own that links to the trace of each case it read;
    // its database work is in it.
    let sweeps: Vec<&Span> = all
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "sla firings" && s.links.iter().any(|l| hex::encode(&l.trace_id) == trace_id))
        .collect();
    assert!(!sweeps.is_empty(), "the batches that fired the request's thresholds link to its trace");
    let sweep_ids: HashSet<&[u8]> = sweeps.iter().map(|s| s.span_id.as_slice()).collect();
    assert!(
        all.iter().any(|(_, s)| s.name == "sla clocks load" && sweep_ids.contains(s.parent_span_id.as_slice())),
        "reading the clocks is part of the batch"
    );
    // Numbers stay numbers.
    let breach = in_trace.iter().find(|s| s.name == "sla.breach").unwrap();
    let percent = breach.attributes.iter().find(|a| a.key == "sla.threshold_percent").and_then(|a| a.value.clone());
    assert!(matches!(percent.and_then(|v| v.value), Some(Value::IntValue(100))), "sla.threshold_percent is a number");
    suite.stop().await.unwrap();
    let _ = std::fs::remove_file(policies);
}
