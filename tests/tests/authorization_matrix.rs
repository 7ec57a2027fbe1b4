//! Who may call what, exhaustively: every RPC of every service (read from the descriptor set, so an
//! RPC is covered the day it is added) called over real gRPC by every kind of caller (no token, a
//! malformed one, a forged signature, another audience, an expired or revoked token, an agency,
//! each reviewer role, each service), with the exact status each gets.
//!
//! The whole table is kept in `tests/authorization-matrix.txt`, so any change to who may call
//! what shows in review (`UPDATE_AUTHZ_MATRIX=update` rewrites it). Independently of that file, the
//! rules themselves are asserted: every unauthenticated kind is UNAUTHENTICATED everywhere; an
//! internal RPC admits exactly the services `INTERNAL_CALLERS` lists; agencies reach only intake
//! and notification; a consumer reaches only `Subscribe`.

use std::collections::BTreeMap;
use std::time::Duration;

use crs_e2e::{Backend, Suite};
use crs_platform::auth::{Principal, Role};
use crs_proto::intake::agency_admin_service_client::AgencyAdminServiceClient;
use crs_proto::intake::{CreateAgencyRequest, IssueTokenRequest, RevokeTokenRequest};
use crsctl::Bearer;
use prost::Message;
use tonic::Code;

/// One RPC as the descriptor set declares it.
#[derive(Debug, Clone)]
struct Rpc {
    /// The service's process (`intake`, ...).
    process: &'static str,
    /// `/package.Service/Method`.
    path: String,
    streaming: bool,
}

/// Every RPC of CRS's own services, by the process that serves it.
fn rpcs() -> Vec<Rpc> {
    let set = prost_types::FileDescriptorSet::decode(crs_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = Vec::new();
    for file in set.file {
        let package = file.package().to_owned();
        let process = match package.as_str() {
            "crs.intake.v1" => "intake",
            "crs.triage.v1" => "triage",
            "crs.review.v1" => "legal-review",
            "crs.notification.v1" => "notification",
            // Every process serves the outbox admin service: each is checked.
            "crs.admin.v1" => "*",
            _ => continue,
        };
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{package}.{}/{}", service.name(), method.name());
                let streaming = method.server_streaming();
                if process == "*" {
                    for p in crs_e2e::SERVICES {
                        out.push(Rpc { process: p, path: path.clone(), streaming });
                    }
                } else {
                    out.push(Rpc { process, path, streaming });
                }
            }
        }
    }
    out
}

/// Signs claims as a token issuer would, with any key: for forged, expired and misaddressed tokens.
fn sign(private_pem: &str, claims: serde_json::Value) -> String {
    let kid = crs_platform::keys::key_id(&crs_platform::keys::public_of(private_pem).unwrap());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid);
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap())
        .unwrap()
}

fn admin_claims(aud: Vec<String>, iat: i64, exp: i64) -> serde_json::Value {
    serde_json::json!({
        "sub": "reviewer:mallory", "roles": ["admin"], "iss": "crs", "aud": aud,
        "iat": iat, "exp": exp, "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// The callers, in the table's column order: (name, the authorization header, if any).
async fn callers(suite: &Suite, agency_id: &str) -> Vec<(String, Option<String>)> {
    let now = chrono::Utc::now().timestamp();
    let every_service: Vec<String> = crs_e2e::SERVICES.iter().map(|s| crs_platform::auth::audience(s)).collect();
    let tokens_key = std::fs::read_to_string(crs_testkit::keys::dir().join("tokens.key")).unwrap();
    let stranger = crs_platform::keys::KeyPair::generate().unwrap();
    let person = |p: Principal| Some(suite.issuer.issue(&p, 3600).unwrap().token);
    let reviewer = |id: &str, role: Role| person(Principal::Reviewer { id: id.into(), roles: vec![role] });

    // A token revoked by id through intake, as an admin would.
    let mut admin =
        AgencyAdminServiceClient::new(crsctl::connect(suite.url("intake"), admin_bearer(suite)).await.unwrap());
    let issued = admin
        .issue_token(IssueTokenRequest {
            subject: "reviewer:revoked".into(),
            roles: vec!["admin".into()],
            ttl_seconds: 3600,
        })
        .await
        .unwrap()
        .into_inner();
    admin.revoke_token(RevokeTokenRequest { token_id: issued.token_id.clone(), ..Default::default() }).await.unwrap();

    let mut out = vec![
        ("no-token".to_owned(), None),
        ("malformed".to_owned(), Some("not.a.token".to_owned())),
        ("forged".to_owned(), Some(sign(&stranger.private_pem, admin_claims(every_service.clone(), now, now + 3600)))),
        (
            "other-audience".to_owned(),
            Some(sign(&tokens_key, admin_claims(vec!["crs-elsewhere".into()], now, now + 3600))),
        ),
        (
            "expired".to_owned(),
            Some(sign(
                &tokens_key,
                admin_claims(every_service, now - 7200, now - crs_platform::auth::LEEWAY_SECS as i64 - 60),
            )),
        ),
        ("revoked".to_owned(), Some(issued.token)),
        ("agency".to_owned(), person(Principal::Agency { id: agency_id.into() })),
        ("reviewer".to_owned(), reviewer("ana", Role::Reviewer)),
        ("senior".to_owned(), reviewer("sam", Role::SeniorReviewer)),
        ("admin".to_owned(), reviewer("root", Role::Admin)),
        ("consumer".to_owned(), reviewer("bridge", Role::Consumer)),
    ];
    for s in crs_e2e::SERVICES {
        out.push((format!("service:{s}"), Some(crs_testkit::keys::token(&Principal::Service { name: s.into() }))));
    }
    out
}

fn admin_bearer(suite: &Suite) -> Bearer {
    Bearer::for_principal(&suite.issuer, &Principal::Reviewer { id: "root".into(), roles: vec![Role::Admin] }).unwrap()
}

/// Calls `rpc` with an empty message; the status it gets (OK when it is served).
async fn call(channel: &tonic::transport::Channel, rpc: &Rpc, auth: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(());
    if let Some(token) = auth {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let path: http::uri::PathAndQuery = rpc.path.parse().unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let result = if rpc.streaming {
        // A stream that opens is served; its first message (or its end) is not the question.
        grpc.server_streaming(request, path, codec).await.map(drop)
    } else {
        grpc.unary(request, path, codec).await.map(drop)
    };
    result.err().map_or(Code::Ok, |s| s.code())
}

fn short(code: Code) -> String {
    format!("{code:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_every_kind_of_caller_as_the_access_rules_say() {
    let suite = Suite::start(Backend::Sqlite).await.unwrap();
    let mut admin =
        AgencyAdminServiceClient::new(crsctl::connect(suite.url("intake"), admin_bearer(&suite)).await.unwrap());
    let agency = admin
        .create_agency(CreateAgencyRequest {
            name: "Ministry of Justice".into(),
            jurisdiction: "KZ".into(),
            contact_email: "requests@ministry.example".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let callers = callers(&suite, &agency.id).await;
    // The revocation is on every service before the table is taken.
    let revoked = callers.iter().find(|(n, _)| n == "revoked").unwrap().1.clone().unwrap();
    let probe =
        Rpc { process: "legal-review", path: "/crs.review.v1.LegalReviewService/ListQueues".into(), streaming: false };
    for process in crs_e2e::SERVICES {
        let channel =
            tonic::transport::Endpoint::from_shared(suite.url(process).to_owned()).unwrap().connect().await.unwrap();
        let rpc = Rpc { process, ..probe.clone() };
        let rpc = if process == "legal-review" {
            rpc
        } else {
            Rpc { path: "/crs.admin.v1.OutboxAdminService/ListDeadLetters".into(), ..rpc }
        };
        crs_testkit::eventually("the revocation reaches every service", Duration::from_secs(10), || {
            let (channel, rpc, revoked) = (&channel, &rpc, &revoked);
            async move { (call(channel, rpc, Some(revoked)).await == Code::Unauthenticated).then_some(()) }
        })
        .await;
    }

    let mut table: BTreeMap<(String, String), BTreeMap<String, Code>> = BTreeMap::new();
    for rpc in rpcs() {
        let channel = tonic::transport::Endpoint::from_shared(suite.url(rpc.process).to_owned())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let row = table.entry((rpc.process.to_owned(), rpc.path.clone())).or_default();
        for (name, auth) in &callers {
            row.insert(name.clone(), call(&channel, &rpc, auth.as_deref()).await);
        }
    }

    // The rules, asserted directly; every breach is listed at once.
    let mut problems: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    let unauthenticated = ["no-token", "malformed", "forged", "other-audience", "expired", "revoked"];
    for ((process, path), row) in &table {
        for kind in unauthenticated {
            check(row[kind] == Code::Unauthenticated, format!("{kind} at {process} {path}: {:?}", row[kind]));
        }
        let internal = crs_proto::internal::is_internal(path);
        for s in crs_e2e::SERVICES {
            let code = row[&format!("service:{s}")];
            let listed =
                crs_platform::access::INTERNAL_CALLERS.iter().any(|(m, callers)| m == path && callers.contains(&s));
            if internal && listed {
                check(
                    !matches!(code, Code::PermissionDenied | Code::Unauthenticated),
                    format!("service:{s} at {path}: {code:?}"),
                );
            } else if internal || !path.contains(".OutboxAdminService/") {
                // A service calls only the internal RPCs listed for it; no public RPC serves it.
                check(matches!(code, Code::PermissionDenied), format!("service:{s} at {process} {path}: {code:?}"));
            }
        }
        for person in ["agency", "reviewer", "senior", "admin", "consumer"] {
            if internal {
                let code = row[person];
                check(
                    matches!(code, Code::PermissionDenied | Code::Unauthenticated),
                    format!("{person} at {path}: {code:?}"),
                );
            }
        }
        if !matches!(process.as_str(), "intake" | "notification") {
            check(
                row["agency"] == Code::Unauthenticated,
                format!("an agency token is not for {process}: {path} {:?}", row["agency"]),
            );
        }
        if !path.ends_with("/Subscribe") {
            check(
                matches!(row["consumer"], Code::PermissionDenied),
                format!("a consumer reads streams and nothing else: {process} {path}: {:?}", row["consumer"]),
            );
        }
        if path.contains(".OutboxAdminService/") || path.contains(".AgencyAdminService/") {
            for person in ["agency", "reviewer", "senior"] {
                check(
                    matches!(row[person], Code::PermissionDenied | Code::Unauthenticated),
                    format!("{person} at {path}: {:?}", row[person]),
                );
            }
            check(
                !matches!(row["admin"], Code::PermissionDenied | Code::Unauthenticated),
                format!("admin at {path}: {:?}", row["admin"]),
            );
        }
    }

    assert!(problems.is_empty(), "the access rules are broken:\n{}", problems.join("\n"));

    // The exact table, held in the repository.
    let names: Vec<&str> = callers.iter().map(|(n, _)| n.as_str()).collect();
    let mut text = String::from(
        "# Who may call what: the status each kind of caller gets from every RPC called with an empty\n\
         # message (tests/tests/authorization_matrix.rs; UPDATE_AUTHZ_MATRIX=update rewrites this file).\n\
         # Past authentication and authorization, an empty message is usually InvalidArgument or\n\
         # NotFound: what matters is where Unauthenticated and PermissionDenied stop a caller.\n",
    );
    text.push_str(&format!("# columns: {}\n", names.join(" ")));
    for ((process, path), row) in &table {
        let codes: Vec<String> = names.iter().map(|n| format!("{n}={}", short(row[*n]))).collect();
        text.push_str(&format!("{process} {path}\n    {}\n", codes.join(" ")));
    }
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("authorization-matrix.txt");
    if std::env::var("UPDATE_AUTHZ_MATRIX").as_deref() == Ok("update") {
        std::fs::write(&file, &text).unwrap();
    } else {
        let kept = std::fs::read_to_string(&file).unwrap_or_default();
        if kept != text {
            let diff: Vec<String> = kept
                .lines()
                .zip(text.lines())
                .filter(|(a, b)| a != b)
                .take(10)
                .map(|(a, b)| format!("- {a}\n+ {b}"))
                .collect();
            panic!(
                "who may call what changed (review, then UPDATE_AUTHZ_MATRIX=update):\n{}\n({} lines kept, {} now)",
                diff.join("\n"),
                kept.lines().count(),
                text.lines().count()
            );
        }
    }
    suite.stop().await.unwrap();
}
