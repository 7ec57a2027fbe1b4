//! `crsctl`, the real binary, against the four running services: contexts and login, agencies
//! and tokens, a reviewer's whole day, an import interrupted and resumed, operators' commands,
//! and what each prints and exits with.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crs_e2e::{Backend, Suite, crsctl_bin};
use crs_platform::auth::{Principal, Role};
use serde_json::Value;

/// Runs crsctl with its own context file, as a user on their own machine would.
struct Ctl {
    dir: PathBuf,
    config: PathBuf,
    /// Makes the people's ids unique to the test: the suites share one Redis, and with it the
    /// list of revoked subjects.
    id: String,
}

impl Ctl {
    fn new() -> Ctl {
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let dir = std::env::temp_dir().join(format!("crsctl-e2e-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.yaml");
        Ctl { dir, config, id }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(crsctl_bin());
        cmd.args(args)
            .env("CRSCTL_CONFIG", &self.config)
            .env("TZ", "UTC")
            .env_remove("CRSCTL_CONTEXT")
            .env_remove("CRSCTL_TOKEN")
            .env_remove("CRSCTL_OUTPUT")
            .env_remove("CRSCTL_INTAKE")
            .env_remove("CRSCTL_TRIAGE")
            .env_remove("CRSCTL_LEGAL_REVIEW")
            .env_remove("CRSCTL_NOTIFICATION")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("crsctl runs")
    }

    /// Runs and expects success; returns standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "crsctl {args:?} failed ({}):\n{}\n{}", out.status, stdout(&out), stderr(&out));
        stdout(&out)
    }

    /// Runs with `-o json` and parses the result.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap_or_else(|e| panic!("crsctl {args:?}: not JSON: {e}"))
    }

    /// Runs, expects exit code `code`, returns standard error.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "crsctl {args:?}:\n{}\n{}", stdout(&out), stderr(&out));
        stderr(&out)
    }

    /// `crsctl login NAME` with the token on standard input and the suite's addresses as flags.
    fn login(&self, suite: &Suite, name: &str, token: &str) -> String {
        let e = &suite.endpoints;
        let mut child = self
            .command(&[
                "login",
                name,
                "--intake",
                &e.intake,
                "--triage",
                &e.triage,
                "--legal-review",
                &e.legal_review,
                "--notification",
                &e.notification,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "login {name}: {}", stderr(&out));
        stdout(&out)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn admin_token(suite: &Suite, ctl: &Ctl) -> String {
    let admin = Principal::Reviewer { id: format!("root-{}", ctl.id), roles: vec![Role::Admin] };
    suite.issuer.issue(&admin, 3600).unwrap().token
}

/// Logs in an admin (its first token made by the deployment, as `crsctl dev token` does),
/// then, as that admin, creates an agency and issues tokens with IssueToken for it and two
/// reviewers, and logs each in under its own context. Returns the agency's id.
fn set_up_people(suite: &Suite, ctl: &Ctl) -> String {
    ctl.login(suite, "admin", &admin_token(suite, ctl));
    let agency = ctl.json(&[
        "--context",
        "admin",
        "agency",
        "create",
        "--name",
        "Ministry of Digital Development",
        "--jurisdiction",
        "kz",
        "--contact-email",
        "requests@ministry.example",
        "--language",
        "kk",
    ]);
    let agency_id = agency["id"].as_str().unwrap().to_owned();
    assert_eq!(agency["jurisdiction"], "KZ");
    assert_eq!(agency["status"], "ACTIVE");
    for (context, subject, role) in [
        ("kz", format!("agency:{agency_id}"), None),
        ("ana", format!("reviewer:ana-{}", ctl.id), Some("reviewer")),
        ("sam", format!("reviewer:sam-{}", ctl.id), Some("senior_reviewer")),
    ] {
        let mut args = vec!["--context", "admin", "token", "issue", "--subject", &subject];
        if let Some(role) = role {
            args.extend(["--role", role]);
        }
        let issued = ctl.json(&args);
        assert!(!issued["token_id"].as_str().unwrap().is_empty());
        let said = ctl.login(suite, context, issued["token"].as_str().unwrap());
        assert!(said.contains(&format!("logged in as {subject}")), "{said}");
    }
    agency_id
}

/// Polls `crsctl ... -o json` until `done` holds.
fn eventually(ctl: &Ctl, args: &[&str], what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = ctl.run(&all);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            if done(&v) {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "{what}: not after 30 s; last: {}{}", stdout(&out), stderr(&out));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_agencies_tokens_and_exit_codes() {
    let suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    let ctl = Ctl::new();

    // No context yet: a usage error, with what to do.
    let err = ctl.fails(2, &["agency", "list"]);
    assert!(err.contains("crsctl login"), "{err}");

    let agency_id = set_up_people(&suite, &ctl);
    let contexts = ctl.ok(&["context", "list"]);
    for name in ["admin", "kz", "ana", "sam"] {
        assert!(contexts.contains(name), "{contexts}");
    }
    assert!(contexts.contains(&format!("agency:{agency_id}")), "{contexts}");
    // The file keeps the tokens and is for its owner only.
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&ctl.config).unwrap().permissions().mode() & 0o077, 0);
    assert!(!ctl.ok(&["context", "show", "ana"]).contains("eyJ"), "tokens are not shown");

    ctl.ok(&["context", "use", "admin"]);
    let table = ctl.ok(&["agency", "list"]);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(table.contains(&agency_id) && table.contains("Ministry of Digital Development"), "{table}");
    let shown = ctl.ok(&["agency", "show", &agency_id]);
    assert!(shown.contains("jurisdiction:") && shown.contains("KZ"), "{shown}");
    let yaml = ctl.ok(&["agency", "show", &agency_id, "-o", "yaml"]);
    assert!(yaml.contains(&format!("id: {agency_id}")), "{yaml}");

    let updated = ctl.json(&[
        "agency",
        "update",
        &agency_id,
        "--contact-email",
        "new@ministry.example",
        "--instrument",
        "court-order",
        "--instrument",
        "government-notice",
    ]);
    assert_eq!(updated["contact_email"], "new@ministry.example");
    assert_eq!(updated["allowed_instruments"], serde_json::json!(["COURT_ORDER", "GOVERNMENT_NOTICE"]));
    let limited = ctl.json(&[
        "agency",
        "set-limits",
        &agency_id,
        "--limit",
        "agency:rate=5,burst=10",
        "--limit",
        "agency_daily:per_day=5000",
    ]);
    assert_eq!(limited["rate_limit_overrides"].as_array().unwrap().len(), 2);

    // Refused calls exit 3 and print the field violations.
    let err = ctl.fails(3, &["agency", "create", "--name", "X", "--jurisdiction", "Kazakhstan"]);
    assert!(err.contains("INVALID_ARGUMENT") && err.contains("\n  jurisdiction:"), "{err}");
    let err = ctl.fails(3, &["--context", "kz", "agency", "list"]);
    assert!(err.contains("PERMISSION_DENIED"), "{err}");
    // Not found exits 4; usage errors 2; a service that is not there 5.
    ctl.fails(4, &["agency", "show", "no-such-agency"]);
    ctl.fails(2, &["agency", "set-limits", &agency_id, "--limit", "agency:speed=3"]);
    ctl.fails(2, &["review", "decide"]);
    let err = ctl.fails(5, &["--intake", "http://127.0.0.1:9", "agency", "list"]);
    assert!(err.contains("UNAVAILABLE"), "{err}");

    // -v names every call and the trace id sent with it; the service continues that trace.
    let out = ctl.run(&["-v", "agency", "show", &agency_id]);
    let err = stderr(&out);
    assert!(err.contains("/crs.intake.v1.AgencyAdminService/GetAgency trace_id="), "{err}");
    let trace_id = err.split("trace_id=").nth(1).unwrap().trim();
    assert_eq!(trace_id.len(), 32, "{err}");

    // A token revoked is refused everywhere: exit 3.
    let issued = ctl.json(&["token", "issue", "--subject", &format!("reviewer:eve-{}", ctl.id), "--role", "reviewer"]);
    ctl.login(&suite, "eve", issued["token"].as_str().unwrap());
    ctl.ok(&["--context", "eve", "review", "queues"]);
    // Logging in made eve's context current; the admin's is wanted again.
    ctl.ok(&["context", "use", "admin"]);
    ctl.ok(&["--context", "admin", "token", "revoke", "--id", issued["token_id"].as_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ctl.run(&["--context", "eve", "review", "queues"]);
        if out.status.code() == Some(3) {
            assert!(stderr(&out).contains("UNAUTHENTICATED"), "{}", stderr(&out));
            break;
        }
        assert!(Instant::now() < deadline, "revocation took effect: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(200));
    }

    // Suspension: the agency's submissions are refused.
    let suspended = ctl.json(&["agency", "suspend", &agency_id, "--reason", "credentials leaked"]);
    assert_eq!(suspended["status"], "SUSPENDED");
    ctl.fails(
        3,
        &[
            "--context",
            "kz",
            "request",
            "submit",
            "--jurisdiction",
            "KZ",
            "--instrument",
            "government-notice",
            "--category",
            "scams-and-fraud",
            "--action",
            "review",
            "--url",
            "https://social.example/p/1",
        ],
    );

    ctl.ok(&["context", "delete", "eve"]);
    assert!(!ctl.ok(&["context", "list"]).contains("eve"));
    suite.stop().await.unwrap();
}

/// One request from the agency's submission to the second reviewer's approval, every step a
/// crsctl command: next, show, ask, the agency's answer, a decision by flags sent back by the
/// senior reviewer, the same case decided again in $EDITOR, approved; then the agency's view,
/// the audit trail, deliveries, policies and status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewers_whole_day() {
    let suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    let ctl = Ctl::new();
    set_up_people(&suite, &ctl);

    let file = ctl.write(
        "request.yaml",
        "jurisdiction: KZ\nlegal_instrument: GOVERNMENT_ORDER\ncategory: ILLEGAL_OR_HARMFUL_SPEECH\n\
         keywords: [VIOLATION_NATIONAL_LAW]\nrequested_action: RESTRICT_IN_JURISDICTION\n\
         legal_basis: Law on Online Platforms, Art. 9(4)(2)\n\
         justification: The posts call for an assembly a court declared unlawful.\nreference: MDD-2026/118\n\
         items:\n  - url: https://social.example/posts/1001\n    description: calls for the rally\n\
         \x20 - url: https://social.example/posts/1002\n  - content_id: video_77f3\n",
    );
    let submitted = ctl.json(&["--context", "kz", "request", "submit", "-f", file.to_str().unwrap()]);
    let request_id = submitted["id"].as_str().unwrap().to_owned();
    assert_eq!(submitted["status"], "RECEIVED");
    assert_eq!(submitted["replayed"], false);
    assert_eq!(submitted["trace_id"].as_str().unwrap().len(), 32);
    // The same file again is the same request.
    let again = ctl.json(&["--context", "kz", "request", "submit", "-f", file.to_str().unwrap()]);
    assert_eq!((again["id"].as_str().unwrap(), again["replayed"].as_bool()), (request_id.as_str(), Some(true)));

    // The agency follows it until it reaches review.
    let mut watch = ctl
        .command(&[
            "--context",
            "kz",
            "request",
            "watch",
            "--request",
            &request_id,
            "--until",
            "triaged",
            "--until",
            "in-review",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let queues = eventually(&ctl, &["--context", "ana", "review", "queues"], "a claimable case", |v| {
        v["queues"].as_array().unwrap().iter().any(|q| q["claimable"].as_u64() > Some(0))
    });
    assert!(queues["queues"].as_array().unwrap().iter().any(|q| q["name"] == "standard"));
    let table = ctl.ok(&["--context", "ana", "review", "queues"]);
    assert!(table.contains("CLAIMABLE") && table.contains("standard"), "{table}");

    // next: the most urgent case, claimed, shown.
    let shown = ctl.ok(&["--context", "ana", "review", "next"]);
    assert!(
        shown.contains(&request_id)
            && shown.contains("IN_REVIEW")
            && shown.contains(&format!("reviewer:ana-{}", ctl.id)),
        "{shown}"
    );
    assert!(
        shown.contains("url:https://social.example/posts/1001") && shown.contains("calls for the rally"),
        "{shown}"
    );
    assert!(
        shown.contains("kz-online-platforms") && shown.contains("(in 23h"),
        "the deadline and the time left: {shown}"
    );
    let case = ctl.json(&["--context", "ana", "review", "list", "--mine"]);
    let case_id = case["cases"][0]["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    while watch.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "watch --until returns");
        std::thread::sleep(Duration::from_millis(50));
    }
    let watched =
        String::from_utf8(std::io::Read::bytes(watch.stdout.take().unwrap()).map(|b| b.unwrap()).collect()).unwrap();
    assert!(
        watched.contains(&request_id) && (watched.contains("TRIAGED") || watched.contains("IN_REVIEW")),
        "{watched}"
    );

    // Another reviewer cannot take it; an unknown case is not found.
    ctl.fails(3, &["--context", "sam", "review", "claim", &case_id]);
    ctl.fails(4, &["--context", "ana", "review", "show", "no-such-case"]);

    // reassign: a senior reviewer moves the claim to another reviewer and back, with a reason
    // for the audit trail. A reviewer may not; --to must name a reviewer.
    let ana = format!("reviewer:ana-{}", ctl.id);
    let bob = format!("reviewer:bob-{}", ctl.id);
    let err = ctl.fails(3, &["--context", "ana", "review", "reassign", &case_id, "--to", &bob, "--reason", "Away."]);
    assert!(err.contains("PERMISSION_DENIED"), "{err}");
    let err = ctl.fails(2, &["--context", "sam", "review", "reassign", &case_id, "--to", "bob", "--reason", "Away."]);
    assert!(err.contains("reviewer:<id>"), "{err}");
    ctl.fails(2, &["--context", "sam", "review", "reassign", &case_id, "--to", &bob]);
    ctl.fails(4, &["--context", "sam", "review", "reassign", "no-such-case", "--to", &bob, "--reason", "Ana is away."]);
    let moved = ctl.json(&[
        "--context",
        "sam",
        "review",
        "reassign",
        &case_id,
        "--to",
        &bob,
        "--reason",
        "Ana is away this afternoon.",
        "--lease-mins",
        "30",
    ]);
    assert_eq!(
        (moved["assigned_reviewer"].as_str(), moved["status"].as_str()),
        (Some(bob.as_str()), Some("IN_REVIEW"))
    );
    // Ana no longer holds it: she cannot ask the agency anything until it is hers again.
    ctl.fails(3, &["--context", "ana", "review", "ask", &case_id, "--question", "Which post?"]);
    let back = ctl.ok(&["--context", "sam", "review", "reassign", &case_id, "--to", &ana, "--reason", "Ana is back."]);
    assert!(back.contains(&format!("{ana} until")) && back.contains("IN_REVIEW"), "{back}");

    // ask: the agency sees the question and answers it; the case returns to review.
    let asked =
        ctl.json(&["--context", "ana", "review", "ask", &case_id, "--question", "Which post names the rally's date?"]);
    assert_eq!(asked["status"], "AWAITING_INFORMATION");
    let view = eventually(
        &ctl,
        &["--context", "kz", "request", "show", &request_id],
        "the question reaches the agency",
        |v| v["status"] == "AWAITING_INFORMATION",
    );
    assert_eq!(view["pending_question"], "Which post names the rally's date?");
    ctl.ok(&["--context", "kz", "request", "answer", &request_id, "--answer", "Post 1001, second paragraph."]);
    let resumed = eventually(&ctl, &["--context", "ana", "review", "show", &case_id], "the case resumes", |v| {
        v["status"] != "AWAITING_INFORMATION"
    });
    assert_eq!(resumed["information"][0]["answer"], "Post 1001, second paragraph.");
    ctl.ok(&["--context", "ana", "review", "claim", &case_id]);

    // decide by flags: a removal everywhere on a government order needs four eyes.
    let decided = ctl.json(&[
        "--context",
        "ana",
        "review",
        "decide",
        &case_id,
        "--item",
        "0=restrict",
        "--legal-ground",
        "0=Law on Online Platforms, Art. 9(4)(2)",
        "--explanation",
        "0=Unlawful call to an assembly under a court ruling.",
        "--item",
        "1=no-action",
        "--reason",
        "1=not-specific-enough",
        "--explanation",
        "1=Nothing in it is named.",
        "--item",
        "2=remove",
        "--legal-ground",
        "2=Community Standards: violent threats",
        "--explanation",
        "2=The video threatens named people.",
        "--summary",
        "Partly granted.",
    ]);
    assert_eq!(decided["status"], "AWAITING_APPROVAL", "{decided}");
    // The decider may not approve their own decision.
    ctl.fails(3, &["--context", "ana", "review", "approve", &case_id]);
    let sent_back =
        ctl.json(&["--context", "sam", "review", "send-back", &case_id, "--comment", "Item 1: look again."]);
    assert_ne!(sent_back["status"], "AWAITING_APPROVAL");

    // The same case again, decided in $EDITOR on the template.
    ctl.ok(&["--context", "ana", "review", "claim", &case_id]);
    let template = ctl.ok(&["--context", "ana", "review", "decide", &case_id, "--template"]);
    assert!(template.contains("index: 2") && template.contains("content: \"content:video_77f3\""), "{template}");
    let filled = fill(&template);
    let prepared = ctl.write("decision.yaml", &filled);
    let editor = format!("cp {}", prepared.display());
    let out = ctl
        .command(&["--context", "ana", "review", "decide", &case_id])
        .env("EDITOR", &editor)
        .env_remove("VISUAL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("crsctl review approve"), "says what comes next: {}", stdout(&out));
    let approved = ctl.json(&["--context", "sam", "review", "approve", &case_id, "--comment", "Checked."]);
    assert_eq!(approved["status"], "DECIDED");
    assert_eq!(approved["decided_by"], format!("reviewer:ana-{}", ctl.id));
    assert_eq!(approved["approved_by"], format!("reviewer:sam-{}", ctl.id));

    // The agency sees the outcome per item.
    let view = eventually(
        &ctl,
        &["--context", "kz", "request", "show", &request_id],
        "the decision reaches the agency",
        |v| v["status"] == "DECIDED",
    );
    let outcomes: Vec<_> = view["items"].as_array().unwrap().iter().map(|i| i["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["RESTRICTED_IN_JURISDICTION", "NO_ACTION", "REMOVED_GLOBALLY"]);
    let listed = ctl.ok(&["--context", "kz", "request", "list"]);
    assert!(listed.contains(&request_id) && listed.contains("DECIDED"), "{listed}");

    // The audit trail tells the day, and its chain holds.
    let trail = ctl.json(&["--context", "sam", "audit", "show", "--case", &case_id]);
    let actions: Vec<_> =
        trail["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect();
    assert!(actions.len() >= 7, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| *a == "reassign").count(), 2, "{actions:?}");
    let verified = ctl.ok(&["--context", "admin", "audit", "verify"]);
    assert!(verified.contains("the chain holds"), "{verified}");
    ctl.fails(3, &["--context", "ana", "audit", "verify"]);

    // Operators: deliveries, policies, status.
    let deliveries = ctl.json(&["--context", "admin", "deliveries", "list", "--request", &request_id]);
    // Nobody subscribed a webhook in this test, so there is nothing to deliver; the list says so.
    assert!(deliveries["deliveries"].as_array().is_some(), "{deliveries}");
    assert!(ctl.ok(&["--context", "admin", "deliveries", "list"]).starts_with("DELIVERY"));
    let policies = ctl.ok(&["--context", "ana", "sla", "policies"]);
    assert!(
        policies.contains("kz-online-platforms") && policies.contains("24h") && policies.contains("7d"),
        "{policies}"
    );
    let explained = ctl.json(&[
        "--context",
        "ana",
        "sla",
        "explain",
        "--jurisdiction",
        "KZ",
        "--instrument",
        "government-order",
        "--category",
        "illegal-or-harmful-speech",
        "--language",
        "kk",
    ]);
    assert_eq!(explained["sla_policy"], "kz-online-platforms", "{explained}");
    assert_eq!((explained["queue"].as_str(), explained["route"].as_str()), (Some("standard"), Some("default")));
    assert_eq!(explained["human_rights_rules"], serde_json::json!(["speech-categories"]));
    let parts = explained["priority_components"].as_array().unwrap();
    let sum: i64 = parts.iter().map(|p| p["points"].as_i64().unwrap()).sum();
    assert_eq!(explained["priority"].as_i64().unwrap(), sum.min(100));
    assert!(
        ctl.ok(&[
            "--context",
            "ana",
            "sla",
            "explain",
            "--jurisdiction",
            "KZ",
            "--instrument",
            "government-order",
            "--category",
            "scams-and-fraud"
        ])
        .contains("route default")
    );
    let status = ctl.ok(&["--context", "admin", "status"]);
    assert_eq!(status.matches("SERVING").count(), 4, "{status}");
    assert!(status.contains("standard"), "{status}");
    suite.stop().await.unwrap();
}

/// Fills the decision template: restrict item 0, no action on 1, remove 2 under the terms.
fn fill(template: &str) -> String {
    let mut out = String::new();
    let mut index = None;
    for line in template.lines() {
        if let Some(i) = line.trim().strip_prefix("- index: ") {
            index = i.parse::<u32>().ok();
        }
        let value = match (index, line.trim().split(':').next().unwrap_or_default()) {
            (Some(0), "outcome") => Some("restricted-in-jurisdiction"),
            (Some(0), "legal_ground") => Some("Law on Online Platforms, Art. 9(4)(2)"),
            (Some(0), "explanation") => Some("Unlawful call to an assembly."),
            (Some(1), "outcome") => Some("no-action"),
            (Some(1), "no_action_reason") => Some("over-broad"),
            (Some(1), "explanation") => Some("The request names the whole account."),
            (Some(2), "outcome") => Some("removed-globally"),
            (Some(2), "ground") => Some("incompatible-content"),
            (Some(2), "legal_ground") => Some("Community Standards: violent threats"),
            (Some(2), "explanation") => Some("The video threatens named people."),
            _ => None,
        };
        match value {
            Some(v) => out.push_str(&format!("{}: \"{v}\"\n", line.split(':').next().unwrap())),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// An agency's spreadsheet of URLs, imported under a tight rate limit, killed at a random
/// moment and run again: every row ends up submitted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_resumes_without_duplicates() {
    let suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    let ctl = Ctl::new();
    let agency_id = set_up_people(&suite, &ctl);
    // Five requests a second: 40 requests take about eight seconds, waiting out RESOURCE_EXHAUSTED.
    ctl.ok(&["--context", "admin", "agency", "set-limits", &agency_id, "--limit", "agency:rate=5,burst=2"]);

    let mut csv = String::from("reference,url,description\n");
    let mut rows = 0;
    for order in 0..40 {
        for post in 0..(2 + order % 3) {
            csv.push_str(&format!(
                "ORD-{order:03},https://social.example/posts/{order}-{post},\"post {post}, order {order}\"\n"
            ));
            rows += 1;
        }
    }
    let file = ctl.write("urls.csv", &csv);
    let import = [
        "--context",
        "kz",
        "request",
        "import",
        file.to_str().unwrap(),
        "--jurisdiction",
        "KZ",
        "--instrument",
        "government-notice",
        "--category",
        "illegal-or-harmful-speech",
        "--action",
        "restrict-in-jurisdiction",
    ];
    let dry = ctl.json(&[&import[..], &["--dry-run"]].concat());
    assert_eq!((dry["requests"].as_array().unwrap().len(), dry["items"].as_u64()), (40, Some(rows)));

    let mut first = ctl.command(&import).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let kill_after = Duration::from_millis(1500 + rand_ms(2500));
    std::thread::sleep(kill_after);
    assert!(first.try_wait().unwrap().is_none(), "the import is still running after {kill_after:?}");
    first.kill().unwrap();
    first.wait().unwrap();
    let before =
        ctl.json(&["--context", "kz", "request", "list", "--limit", "0"])["requests"].as_array().unwrap().len();
    assert!(before < 40, "the import was interrupted ({before} requests in after {kill_after:?})");

    let resumed = ctl.json(&import);
    assert_eq!(resumed["requests"], 40);
    assert_eq!(resumed["submitted"].as_u64().unwrap() + resumed["already_submitted"].as_u64().unwrap(), 40);
    assert!(resumed["already_submitted"].as_u64().unwrap() >= before as u64, "{resumed}");
    assert!(resumed["rate_limit_wait_secs"].as_f64().unwrap() > 0.0, "the rate limit was waited out: {resumed}");

    let listed = ctl.json(&["--context", "kz", "request", "list", "--limit", "0"]);
    let requests = listed["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 40, "one request per order");
    let mut urls: Vec<&str> = requests
        .iter()
        .flat_map(|r| r["items"].as_array().unwrap().iter().map(|i| i["url"].as_str().unwrap()))
        .collect();
    urls.sort();
    let total = urls.len();
    urls.dedup();
    assert_eq!((total, urls.len()), (rows as usize, rows as usize), "every row exactly once");
    let mut references: Vec<&str> = requests.iter().map(|r| r["reference"].as_str().unwrap()).collect();
    references.sort();
    references.dedup();
    assert_eq!(references.len(), 40);
    // Running it a third time submits nothing new.
    let third = ctl.json(&import);
    assert_eq!(third["already_submitted"], 40);
    suite.stop().await.unwrap();
}

fn rand_ms(below: u64) -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish() % below
}

#[test]
fn completions_man_pages_and_help() {
    let ctl = Ctl::new();
    let bash = ctl.ok(&["completions", "bash"]);
    assert!(bash.contains("crsctl") && bash.contains("review"), "bash completions");
    let dir = ctl.dir.join("man");
    ctl.ok(&["man", "--out-dir", dir.to_str().unwrap()]);
    for page in ["crsctl.1", "crsctl-review-decide.1", "crsctl-request-import.1"] {
        assert!(Path::new(&dir).join(page).exists(), "{page}");
    }
    let help = ctl.ok(&["--help"]);
    assert!(help.contains("Exit codes:") && help.contains("4  not found"), "{help}");
    ctl.fails(2, &["review", "nonsense"]);
}

/// A hand-off that cannot be made becomes a dead letter: with triage down and a one-second
/// maximum age, intake gives up on assessing a request. `dead-letters list` shows it (and
/// `status`), `replay` puts it back once triage is up, and the request goes on to review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed() {
    let mut suite = Suite::options(Backend::Sqlite)
        .set("intake", "CRS_OUTBOX__MAX_AGE_SECS", "1")
        .start()
        .await
        .expect("suite starts");
    let ctl = Ctl::new();
    set_up_people(&suite, &ctl);
    ctl.ok(&["context", "use", "admin"]);

    // Nothing dead yet, in any of the four outboxes.
    assert_eq!(
        ctl.ok(&["dead-letters", "list"]).trim(),
        "no dead letters (intake, triage, legal-review, notification)"
    );
    for service in ["intake", "triage", "legal-review", "notification"] {
        let listed = ctl.json(&["dead-letters", "list", "--service", service]);
        assert_eq!(listed["dead_letters"], serde_json::json!([]), "{service}");
    }
    let replayed = ctl.json(&["dead-letters", "replay", "--service", "notification", "--all"]);
    assert_eq!(replayed["replayed"], 0);

    // Usage errors, before any call; admins only.
    ctl.fails(2, &["dead-letters", "replay", "--service", "intake"]);
    ctl.fails(2, &["dead-letters", "replay", "--service", "intake", "--id", "x", "--all"]);
    ctl.fails(2, &["dead-letters", "replay", "--all"]);
    ctl.fails(2, &["dead-letters", "list", "--service", "billing"]);
    let err = ctl.fails(3, &["--context", "ana", "dead-letters", "list"]);
    assert!(err.contains("listing intake's dead letters: PERMISSION_DENIED"), "{err}");
    ctl.fails(3, &["--context", "sam", "dead-letters", "replay", "--service", "intake", "--all"]);

    // Triage is down: intake cannot hand the request over, and gives up after a second.
    suite.kill("triage");
    let submitted = ctl.json(&[
        "--context",
        "kz",
        "request",
        "submit",
        "--jurisdiction",
        "KZ",
        "--instrument",
        "government-notice",
        "--category",
        "scams-and-fraud",
        "--action",
        "review",
        "--url",
        "https://social.example/p/dead-letter",
    ]);
    let request_id = submitted["id"].as_str().unwrap().to_owned();
    let dead = eventually(&ctl, &["dead-letters", "list", "--service", "intake"], "a dead letter", |v| {
        !v["dead_letters"].as_array().unwrap().is_empty()
    });
    let letters = dead["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{dead}");
    let letter = &letters[0];
    assert_eq!(letter["service"], "intake");
    assert_eq!(letter["topic"], "/crs.triage.v1.TriageInternalService/AssessRequest");
    assert!(letter["attempts"].as_u64().unwrap() >= 1 && letter["payload_bytes"].as_u64().unwrap() > 0, "{letter}");
    assert!(!letter["last_error"].as_str().unwrap().is_empty() && letter["dead_at"].is_string(), "{letter}");
    let id = letter["id"].as_str().unwrap().to_owned();
    // Listing all four: what the others hold, then triage named as not answering, exit 5. (The
    // harness keeps triage's socket open, so its calls time out rather than being refused.)
    let out = ctl.run(&["--timeout", "2", "dead-letters", "list"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("SERVICE") && table.contains(&id) && table.contains("AssessRequest"), "{table}");
    assert_eq!(table.lines().count(), 2, "one dead letter among the services that answered: {table}");
    assert!(stderr(&out).contains("listing triage's dead letters: DEADLINE_EXCEEDED"), "{}", stderr(&out));
    let out = ctl.run(&["--timeout", "2", "dead-letters", "list", "-o", "json"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["dead_letters"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["errors"][0]["service"], "triage", "{listed}");

    // status counts it, and exits 5 while triage is down.
    let out = ctl.run(&["--timeout", "2", "status", "-o", "json"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["services"][0]["dead_letters"], 1, "{status}");
    assert_eq!(status["services"][0]["outbox"]["dead_letters"], 1, "{status}");
    assert_eq!(status["services"][1]["health"], "UNREACHABLE", "{status}");
    assert_eq!(ctl.json(&["--context", "kz", "request", "show", &request_id])["status"], "RECEIVED");

    // Not a dead letter: not found.
    let err = ctl.fails(4, &["dead-letters", "replay", "--service", "intake", "--id", "no-such-letter"]);
    assert!(err.contains("NOT_FOUND"), "{err}");

    // Triage is back; the letter is replayed and the request carried through to review.
    suite.restart("triage").await.unwrap();
    let said = ctl.ok(&["dead-letters", "replay", "--service", "intake", "--id", &id, "--id", "no-such-letter"]);
    assert!(said.contains("intake: 1 dead letter(s) put back") && said.contains("1 of the ids given"), "{said}");
    eventually(&ctl, &["--context", "kz", "request", "show", &request_id], "the request is triaged", |v| {
        v["status"] == "TRIAGED" || v["status"] == "IN_REVIEW"
    });
    assert_eq!(ctl.json(&["dead-letters", "list", "--service", "intake"])["dead_letters"], serde_json::json!([]));
    ctl.fails(4, &["dead-letters", "replay", "--service", "intake", "--id", &id]);

    // With triage stopped again, intake's hand-off waits in its outbox (here for a second, this
    // intake's maximum age, before it is a dead letter): status shows intake's outbox.
    suite.kill("triage");
    ctl.ok(&[
        "--context",
        "kz",
        "request",
        "submit",
        "--jurisdiction",
        "KZ",
        "--instrument",
        "government-notice",
        "--category",
        "scams-and-fraud",
        "--action",
        "review",
        "--url",
        "https://social.example/p/backlog",
    ]);
    let out = ctl.run(&["--timeout", "2", "status", "-o", "json"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let intake = &status["services"][0]["outbox"];
    assert!(intake["pending"].as_u64().unwrap() >= 1 || intake["dead_letters"].as_u64().unwrap() >= 1, "{status}");
    let table = String::from_utf8(ctl.run(&["--timeout", "2", "status"]).stdout).unwrap();
    assert!(table.contains("OUTBOX") && table.contains("OLDEST"), "{table}");
    suite.stop().await.unwrap();
}

/// An agency's Excel workbook: twelve rows under three order references, at most four items a
/// request, so the first order is split in two. Every row is submitted exactly once, and
/// importing the same file again submits nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xlsx_import_submits_every_row_once() {
    let suite = Suite::start(Backend::Sqlite).await.expect("suite starts");
    let ctl = Ctl::new();
    set_up_people(&suite, &ctl);

    let orders = [("ORD-A", 5), ("ORD-B", 4), ("ORD-C", 3)];
    let mut expected = Vec::new();
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    // Headers as people write them; the import normalises them.
    for (col, header) in ["Reference", "URL", "Description", "Post"].into_iter().enumerate() {
        sheet.write_string(0, col as u16, header).unwrap();
    }
    let mut row = 1;
    for (reference, posts) in orders {
        for post in 0..posts {
            let url = format!("https://social.example/{reference}/posts/{post}");
            sheet.write_string(row, 0, reference).unwrap();
            sheet.write_string(row, 1, &url).unwrap();
            sheet.write_string(row, 2, format!("post {post} of {reference}")).unwrap();
            sheet.write_number(row, 3, f64::from(post)).unwrap();
            expected.push(url);
            row += 1;
        }
    }
    let path = ctl.dir.join("orders.xlsx");
    book.save(&path).unwrap();
    assert_eq!(expected.len(), 12);

    let import = [
        "--context",
        "kz",
        "request",
        "import",
        path.to_str().unwrap(),
        "--jurisdiction",
        "KZ",
        "--instrument",
        "government-notice",
        "--category",
        "illegal-or-harmful-speech",
        "--action",
        "restrict-in-jurisdiction",
        "--per-request",
        "4",
    ];
    let dry = ctl.json(&[&import[..], &["--dry-run"]].concat());
    assert_eq!((dry["requests"].as_array().unwrap().len(), dry["items"].as_u64()), (4, Some(12)), "{dry}");
    assert!(
        ctl.json(&["--context", "kz", "request", "list", "--limit", "0"])["requests"].as_array().unwrap().is_empty()
    );

    let imported = ctl.json(&import);
    assert_eq!(
        (imported["requests"].as_u64(), imported["submitted"].as_u64(), imported["already_submitted"].as_u64()),
        (Some(4), Some(4), Some(0)),
        "{imported}"
    );

    let listed = ctl.json(&["--context", "kz", "request", "list", "--limit", "0"]);
    let requests = listed["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 4, "{listed}");
    let mut urls: Vec<String> = requests
        .iter()
        .flat_map(|r| r["items"].as_array().unwrap().iter().map(|i| i["url"].as_str().unwrap().to_owned()))
        .collect();
    urls.sort();
    expected.sort();
    assert_eq!(urls, expected, "every row exactly once");
    let mut references: Vec<&str> = requests.iter().map(|r| r["reference"].as_str().unwrap()).collect();
    references.sort();
    assert_eq!(references, ["ORD-A", "ORD-A", "ORD-B", "ORD-C"]);
    for r in requests {
        let items = r["items"].as_array().unwrap();
        assert!(items.len() <= 4, "{r}");
        let reference = r["reference"].as_str().unwrap();
        assert!(
            items.iter().all(|i| i["url"].as_str().unwrap().contains(reference)),
            "rows stay with their order: {r}"
        );
        assert!(items.iter().all(|i| i["description"].as_str().unwrap().ends_with(reference)), "{r}");
    }

    // The same file again: everything was submitted already, nothing new goes in.
    let again = ctl.ok(&import);
    assert!(
        again.contains("imported 12 item(s) in 4 request(s): 0 submitted now, 4 already submitted earlier"),
        "{again}"
    );
    let listed = ctl.json(&["--context", "kz", "request", "list", "--limit", "0"]);
    assert_eq!(listed["requests"].as_array().unwrap().len(), 4);
    suite.stop().await.unwrap();
}
