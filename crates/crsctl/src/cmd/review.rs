//! `crsctl review`: a reviewer's day (LegalReviewService): queues, the next case, reading it,
//! deciding item by item (from flags, a file, or $EDITOR on a template), questions to the
//! agency, escalation, release, a senior reviewer's reassignment, and the second reviewer's
//! approval or send-back.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use crs_proto::common::{DecisionGround, ItemDecision, ItemOutcome, NoActionReason, RequestStatus};
use crs_proto::review::{
    ApproveDecisionRequest, Case, ClaimCaseRequest, ClaimNextCaseRequest, EscalateCaseRequest, GetCaseRequest,
    ListCasesRequest, ListQueuesRequest, ReassignCaseRequest, ReleaseCaseRequest, RequestInformationRequest,
    SubmitDecisionRequest,
};
use serde::Deserialize;
use serde_json::json;
use tonic::Code;

use crate::cli::{App, Run};
use crate::client::Session;
use crate::errors::usage;
use crate::output::{Out, Table, clip, due_local, duration_secs, fields, span, ts_json, ts_local};
use crate::vocab::{self, name, status};

#[derive(Subcommand)]
pub enum ReviewCmd {
    /// Each queue: open and claimable cases, the oldest, the nearest deadline.
    Queues,
    /// Lists cases, most urgent first.
    List {
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, value_parser = vocab::number::<RequestStatus>)]
        status: Option<i32>,
        /// Only cases I hold.
        #[arg(long)]
        mine: bool,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Claims the most urgent case I may take (of --queue, or of the queue whose deadline is
    /// nearest) and shows it.
    Next {
        #[arg(long)]
        queue: Option<String>,
        /// Minutes the claim lasts (default: the server's, 15).
        #[arg(long)]
        lease_mins: Option<i64>,
    },
    /// Claims a given case (or renews my claim).
    Claim {
        case_id: String,
        #[arg(long)]
        lease_mins: Option<i64>,
    },
    /// Shows a case: the request, its items, deadline, questions and decisions.
    Show { case_id: String },
    /// Decides every item: from --item flags, from --file, or in $EDITOR on a template.
    ///
    /// Per-item flags are INDEX=VALUE, e.g. `--item 0=restrict --legal-ground "0=Art. 9(4)"
    /// --explanation "0=Unlawful call to an assembly" --item 1=no-action
    /// --reason 1=not-specific-enough --explanation "1=..."`. Without --item or --file,
    /// $VISUAL or $EDITOR opens a YAML template of the case's items (`--template` prints it).
    Decide(Box<Decide>),
    /// Asks the agency a question; the case waits for the answer (the clock may pause).
    Ask {
        case_id: String,
        #[arg(long)]
        question: String,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Escalates a case to senior reviewers.
    Escalate {
        case_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Gives up my claim so others can take the case.
    Release { case_id: String },
    /// Moves a case's claim to another reviewer (senior reviewers); the reason goes into the
    /// audit trail.
    Reassign {
        case_id: String,
        /// The reviewer who takes the claim.
        #[arg(long, value_name = "reviewer:ID")]
        to: String,
        #[arg(long)]
        reason: String,
        /// Minutes the new claim lasts (default: the server's, 15).
        #[arg(long)]
        lease_mins: Option<i64>,
    },
    /// Approves a decision awaiting a second reviewer (senior reviewers).
    Approve {
        case_id: String,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Sends a decision awaiting approval back to review, with a comment (senior reviewers).
    SendBack {
        case_id: String,
        #[arg(long)]
        comment: String,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
}

/// A decision on every item of a case.
#[derive(Args)]
pub struct Decide {
    case_id: String,
    /// INDEX=OUTCOME: remove (removed-globally), restrict (restricted-in-jurisdiction),
    /// no-action, unavailable (already-unavailable) (repeatable).
    #[arg(long = "item", value_name = "INDEX=OUTCOME")]
    items: Vec<String>,
    /// INDEX=GROUND: illegal-content or incompatible-content (default: illegal-content for a
    /// restriction, incompatible-content for a removal).
    #[arg(long = "ground", value_name = "INDEX=GROUND")]
    grounds: Vec<String>,
    /// INDEX=TEXT: the law relied on, or the term of service breached.
    #[arg(long = "legal-ground", value_name = "INDEX=TEXT")]
    legal_grounds: Vec<String>,
    /// INDEX=TEXT: the platform policy a removal rests on, beside an illegal-content ground.
    #[arg(long = "platform-policy", value_name = "INDEX=TEXT")]
    platform_policies: Vec<String>,
    /// INDEX=REASON for no-action: not-unlawful, not-specific-enough, over-broad, protected-speech.
    #[arg(long = "reason", value_name = "INDEX=REASON")]
    reasons: Vec<String>,
    /// INDEX=TEXT: why (goes into the statement of reasons and to the agency).
    #[arg(long = "explanation", value_name = "INDEX=TEXT")]
    explanations: Vec<String>,
    /// The decision's summary, shared with the agency.
    #[arg(long)]
    summary: Option<String>,
    /// A filled-in template (as `crsctl review decide CASE --template` prints) instead of flags.
    #[arg(long, short = 'f', conflicts_with = "items")]
    file: Option<PathBuf>,
    /// Prints the template for the case and exits.
    #[arg(long, conflicts_with_all = ["items", "file"])]
    template: bool,
    #[arg(long)]
    idempotency_key: Option<String>,
}

/// The decision template: one entry per item.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionFile {
    #[serde(default)]
    summary: String,
    #[serde(default)]
    items: Vec<DecisionEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionEntry {
    index: u32,
    /// Shown in the template to say which item this is; ignored.
    #[serde(default)]
    #[allow(dead_code)]
    content: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    ground: String,
    #[serde(default)]
    legal_ground: String,
    #[serde(default)]
    platform_policy: String,
    #[serde(default)]
    no_action_reason: String,
    #[serde(default)]
    explanation: String,
    #[serde(default)]
    territorial_scope: Vec<String>,
}

fn parse_outcome(s: &str) -> anyhow::Result<ItemOutcome> {
    let alias = match s.trim().to_lowercase().replace('_', "-").as_str() {
        "remove" | "removed" | "remove-globally" => "REMOVED_GLOBALLY",
        "restrict" | "restricted" | "restrict-in-jurisdiction" => "RESTRICTED_IN_JURISDICTION",
        "none" | "no-action" => "NO_ACTION",
        "unavailable" | "already-unavailable" => "ALREADY_UNAVAILABLE",
        _ => s,
    }
    .to_owned();
    let outcome = vocab::parse::<ItemOutcome>(&alias)?;
    if outcome == ItemOutcome::Pending {
        return Err(usage("an item's outcome cannot be PENDING"));
    }
    Ok(outcome)
}

fn entry_decision(e: &DecisionEntry) -> anyhow::Result<ItemDecision> {
    if e.outcome.trim().is_empty() {
        return Err(usage(format!("item {} has no outcome", e.index)));
    }
    let outcome = parse_outcome(&e.outcome)?;
    let ground = if !e.ground.trim().is_empty() {
        vocab::parse::<DecisionGround>(&e.ground)? as i32
    } else {
        match outcome {
            ItemOutcome::RestrictedInJurisdiction => DecisionGround::IllegalContent as i32,
            ItemOutcome::RemovedGlobally => DecisionGround::IncompatibleContent as i32,
            _ => 0,
        }
    };
    let no_action_reason = if e.no_action_reason.trim().is_empty() {
        0
    } else {
        vocab::parse::<NoActionReason>(&e.no_action_reason)? as i32
    };
    Ok(ItemDecision {
        item_index: e.index,
        outcome: outcome as i32,
        no_action_reason,
        ground,
        legal_ground: e.legal_ground.trim().to_owned(),
        explanation: e.explanation.trim().to_owned(),
        territorial_scope: e.territorial_scope.iter().map(|s| s.trim().to_uppercase()).collect(),
        platform_policy: e.platform_policy.trim().to_owned(),
    })
}

/// `INDEX=VALUE` flags by index.
fn by_index(flag: &str, values: &[String]) -> anyhow::Result<std::collections::BTreeMap<u32, String>> {
    values
        .iter()
        .map(|v| {
            let (i, text) = v.split_once('=').ok_or_else(|| usage(format!("--{flag} {v:?}: expected INDEX=VALUE")))?;
            let i =
                i.trim().parse::<u32>().map_err(|_| usage(format!("--{flag} {v:?}: {i:?} is not an item index")))?;
            Ok((i, text.to_owned()))
        })
        .collect()
}

impl Decide {
    fn entries_from_flags(&self) -> anyhow::Result<Vec<DecisionEntry>> {
        let outcomes = by_index("item", &self.items)?;
        let grounds = by_index("ground", &self.grounds)?;
        let legal = by_index("legal-ground", &self.legal_grounds)?;
        let policies = by_index("platform-policy", &self.platform_policies)?;
        let reasons = by_index("reason", &self.reasons)?;
        let explanations = by_index("explanation", &self.explanations)?;
        for (flag, map) in [
            ("ground", &grounds),
            ("legal-ground", &legal),
            ("platform-policy", &policies),
            ("reason", &reasons),
            ("explanation", &explanations),
        ] {
            if let Some(i) = map.keys().find(|i| !outcomes.contains_key(i)) {
                return Err(usage(format!("--{flag} names item {i}, which has no --item {i}=OUTCOME")));
            }
        }
        let get = |m: &std::collections::BTreeMap<u32, String>, i: &u32| m.get(i).cloned().unwrap_or_default();
        Ok(outcomes
            .iter()
            .map(|(i, outcome)| DecisionEntry {
                index: *i,
                content: String::new(),
                outcome: outcome.clone(),
                ground: get(&grounds, i),
                legal_ground: get(&legal, i),
                platform_policy: get(&policies, i),
                no_action_reason: get(&reasons, i),
                explanation: get(&explanations, i),
                territorial_scope: Vec::new(),
            })
            .collect())
    }
}

/// The YAML template a reviewer fills in: every item of the case, with what it is.
pub fn template(case: &Case) -> String {
    let submission = case.submission.clone().unwrap_or_default();
    let mut t = format!(
        "# Decision on case {} (request {}, {} {}).\n\
         # Fill in every item; lines starting with # are ignored. Save and quit to submit;\n\
         # leave every outcome empty to abandon.\n\
         # outcome: removed-globally | restricted-in-jurisdiction | no-action | already-unavailable\n\
         # ground (removal/restriction): illegal-content | incompatible-content\n\
         # no_action_reason (no-action): not-unlawful | not-specific-enough | over-broad | protected-speech\n\
         # A removal everywhere needs a platform policy: ground incompatible-content with the term in\n\
         # legal_ground, or platform_policy beside an illegal-content ground.\n\
         summary: {}\nitems:\n",
        case.id,
        submission.request_id,
        submission.jurisdiction,
        name::<crs_proto::common::Category>(submission.category),
        yaml_str(&case.decision_summary),
    );
    for item in &submission.items {
        let existing = case.decisions.iter().find(|d| d.item_index == item.index);
        let pick = |f: fn(&ItemDecision) -> String| existing.map(f).unwrap_or_default();
        t.push_str(&format!("  - index: {}\n    content: {}\n", item.index, yaml_str(&item.content_key)));
        if !item.description.is_empty() {
            t.push_str(&format!("    # the agency says: {}\n", item.description.replace('\n', " ")));
        }
        t.push_str(&format!(
            "    outcome: {}\n    ground: {}\n    legal_ground: {}\n    platform_policy: {}\n    no_action_reason: {}\n    explanation: {}\n",
            yaml_str(&pick(|d| if d.outcome == 0 { String::new() } else { name::<ItemOutcome>(d.outcome).to_lowercase().replace('_', "-") })),
            yaml_str(&pick(|d| if d.ground == 0 { String::new() } else { name::<DecisionGround>(d.ground).to_lowercase().replace('_', "-") })),
            yaml_str(&pick(|d| d.legal_ground.clone())),
            yaml_str(&pick(|d| d.platform_policy.clone())),
            yaml_str(&pick(|d| if d.no_action_reason == 0 { String::new() } else { name::<NoActionReason>(d.no_action_reason).to_lowercase().replace('_', "-") })),
            yaml_str(&pick(|d| d.explanation.clone())),
        ));
    }
    t
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn parse_decision_file(text: &str) -> anyhow::Result<(String, Vec<DecisionEntry>)> {
    let file: DecisionFile =
        serde_norway::from_str(text).map_err(|e| usage(format!("the decision does not parse: {e}")))?;
    if file.items.iter().all(|e| e.outcome.trim().is_empty()) {
        return Err(usage("no item has an outcome: nothing submitted"));
    }
    Ok((file.summary, file.items))
}

/// Opens $VISUAL or $EDITOR on the template and returns what was saved.
fn edit(template: &str) -> anyhow::Result<String> {
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .or_else(|| std::env::var("EDITOR").ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".to_owned());
    let file = tempfile::Builder::new().prefix("crsctl-decision-").suffix(".yaml").tempfile()?;
    std::fs::write(file.path(), template)?;
    // Through the shell, so EDITOR="code --wait" works as it does for git.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file.path())
        .status()
        .map_err(|e| usage(format!("cannot run the editor {editor:?}: {e}")))?;
    if !status.success() {
        return Err(usage(format!("the editor {editor:?} failed ({status}): nothing submitted")));
    }
    Ok(std::fs::read_to_string(file.path())?)
}

/// `reviewer:<id>`, as the services name reviewers.
fn reviewer_subject(to: &str) -> anyhow::Result<String> {
    match to.trim().split_once(':') {
        Some(("reviewer", id)) if !id.trim().is_empty() => Ok(format!("reviewer:{}", id.trim())),
        _ => Err(usage(format!("--to {to:?}: name a reviewer as reviewer:<id>"))),
    }
}

fn lease(mins: Option<i64>) -> Option<prost_types::Duration> {
    mins.map(|m| prost_types::Duration { seconds: m * 60, nanos: 0 })
}

pub fn print_case(out: &Out, c: &Case) {
    let s = c.submission.clone().unwrap_or_default();
    let a = c.assessment.clone().unwrap_or_default();
    let deadline = c.deadline.as_ref().map(|d| {
        if d.paused {
            format!("paused, {} left ({})", span(duration_secs(&d.remaining_when_paused)), d.policy_id)
        } else {
            format!("{}  {} ({})", due_local(&d.due_at), d.policy_id, d.legal_reference)
        }
    });
    let claim = if c.assigned_reviewer.is_empty() {
        String::new()
    } else {
        format!("{} until {}", c.assigned_reviewer, ts_local(&c.claim_expires_at))
    };
    let keywords: Vec<_> = s.keywords.iter().map(|k| name::<crs_proto::common::Keyword>(*k)).collect();
    fields(
        out,
        &[
            ("case", c.id.clone()),
            ("status", format!("{}{}", out.status(status(c.status)), if c.escalated { " (escalated)" } else { "" })),
            ("queue", format!("{}, priority {}", c.queue, a.priority)),
            ("deadline", deadline.unwrap_or_default()),
            ("claimed by", claim),
            ("request", s.request_id.clone()),
            ("agency", format!("{} ({}, {})", s.agency_name, s.agency_id, s.jurisdiction)),
            ("instrument", name::<crs_proto::common::LegalInstrument>(s.legal_instrument).to_owned()),
            ("category", name::<crs_proto::common::Category>(s.category).to_owned()),
            ("keywords", keywords.join(", ")),
            ("asks for", name::<crs_proto::common::RequestedAction>(s.requested_action).to_owned()),
            ("reference", s.reference.clone()),
            ("issued by", s.issuing_authority.clone()),
            ("legal basis", s.legal_basis.clone()),
            ("justification", s.justification.clone()),
            ("received", ts_local(&s.received_at)),
            (
                "human rights",
                if a.human_rights_review { "flagged for human-rights review".into() } else { String::new() },
            ),
            ("triage", a.reasons.join("; ")),
            ("question", c.pending_question.clone()),
            (
                "merged",
                c.merged_requests
                    .iter()
                    .map(|m| {
                        format!(
                            "{} from {} ({}, items {:?}, {})",
                            m.request_id,
                            m.agency_name,
                            name::<crs_proto::common::LegalInstrument>(m.legal_instrument),
                            m.case_items,
                            status(m.status)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            (
                "related",
                c.related_cases
                    .iter()
                    .map(|r| {
                        format!(
                            "{} ({}, {}): {}",
                            r.case_id,
                            r.jurisdiction,
                            status(r.status),
                            r.content_keys.join(", ")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        ],
    );
    println!();
    let mut t = Table::new(&["#", "CONTENT", "AGENCY'S DESCRIPTION", "DECISION", "EXPLANATION"]);
    for i in &s.items {
        let d = c.decisions.iter().find(|d| d.item_index == i.index);
        t.row(vec![
            i.index.to_string(),
            i.content_key.clone(),
            clip(&i.description, 40),
            d.map(|d| out.status(name::<ItemOutcome>(d.outcome))).unwrap_or_else(|| "-".into()),
            d.map(|d| clip(&d.explanation, 50)).unwrap_or_default(),
        ]);
    }
    t.print(out);
    if !c.information.is_empty() {
        println!();
        for x in &c.information {
            println!("{} asked {}: {}", x.asked_by, ts_local(&x.asked_at), x.question);
            if x.answer.is_empty() {
                println!("  (no answer yet)");
            } else {
                println!("  answered {}: {}", ts_local(&x.answered_at), x.answer);
            }
        }
    }
    if !c.decided_by.is_empty() {
        println!();
        fields(
            out,
            &[
                ("decided by", c.decided_by.clone()),
                ("summary", c.decision_summary.clone()),
                ("needs approval", c.approval_reason.clone()),
                ("approved by", c.approved_by.clone()),
                ("decided", ts_local(&c.decided_at)),
            ],
        );
    }
}

fn emit_case(app: &App, c: &Case) -> anyhow::Result<()> {
    app.out.emit(&crate::views::case(c), || print_case(&app.out, c))
}

async fn get_case(session: &Session, case_id: &str) -> anyhow::Result<Case> {
    Ok(crate::cmd::review(session)?.get_case(GetCaseRequest { case_id: case_id.to_owned() }).await?.into_inner())
}

impl Run for ReviewCmd {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let session = app.session()?;
        let mut review = crate::cmd::review(&session)?;
        match self {
            ReviewCmd::Queues => {
                let queues = review.list_queues(ListQueuesRequest {}).await?.into_inner().queues;
                let value = json!({"queues": queues.iter().map(|q| json!({
                    "name": q.name, "depth": q.depth, "claimable": q.claimable,
                    "oldest_age_secs": duration_secs(&q.oldest_age), "nearest_deadline": ts_json(&q.nearest_deadline),
                })).collect::<Vec<_>>()});
                app.out.emit(&value, || {
                    let mut t = Table::new(&["QUEUE", "OPEN", "CLAIMABLE", "OLDEST", "NEAREST DEADLINE"]);
                    for q in &queues {
                        t.row(vec![
                            q.name.clone(),
                            q.depth.to_string(),
                            q.claimable.to_string(),
                            if q.depth == 0 { "-".into() } else { span(duration_secs(&q.oldest_age)) },
                            due_local(&q.nearest_deadline),
                        ]);
                    }
                    t.print(&app.out);
                })
            }
            ReviewCmd::List { queue, status: st, mine, limit } => {
                let mut cases = Vec::new();
                let mut page_token = String::new();
                loop {
                    let page = review
                        .list_cases(ListCasesRequest {
                            queue: queue.clone().unwrap_or_default(),
                            status: st.unwrap_or(0),
                            only_mine: mine,
                            page_size: 500,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    cases.extend(page.cases);
                    if (limit > 0 && cases.len() >= limit) || page.next_page_token.is_empty() {
                        break;
                    }
                    page_token = page.next_page_token;
                }
                if limit > 0 {
                    cases.truncate(limit);
                }
                let value = json!({"cases": cases.iter().map(crate::views::case).collect::<Vec<_>>()});
                app.out.emit(&value, || {
                    let mut t = Table::new(&["CASE", "STATUS", "QUEUE", "PRIO", "JUR", "ITEMS", "REVIEWER", "DUE"]);
                    for c in &cases {
                        let s = c.submission.clone().unwrap_or_default();
                        t.row(vec![
                            c.id.clone(),
                            app.out.status(status(c.status)),
                            c.queue.clone(),
                            c.assessment.as_ref().map(|a| a.priority).unwrap_or_default().to_string(),
                            s.jurisdiction,
                            s.items.len().to_string(),
                            c.assigned_reviewer.clone(),
                            due_local(&c.deadline.as_ref().and_then(|d| d.due_at)),
                        ]);
                    }
                    t.print(&app.out);
                })
            }
            ReviewCmd::Next { queue, lease_mins } => {
                let queues = match queue {
                    Some(q) => vec![q],
                    None => {
                        // The queue whose nearest deadline comes first, among those with work.
                        let mut qs = review.list_queues(ListQueuesRequest {}).await?.into_inner().queues;
                        qs.retain(|q| q.claimable > 0);
                        qs.sort_by_key(|q| q.nearest_deadline.map(|t| (t.seconds, t.nanos)).unwrap_or((i64::MAX, 0)));
                        qs.into_iter().map(|q| q.name).collect()
                    }
                };
                for q in &queues {
                    match review
                        .claim_next_case(ClaimNextCaseRequest { queue: q.clone(), lease: lease(lease_mins) })
                        .await
                    {
                        Ok(c) => return emit_case(app, &c.into_inner()),
                        Err(s) if s.code() == Code::NotFound => continue,
                        Err(s) => return Err(s.into()),
                    }
                }
                Err(tonic::Status::not_found("no case you may claim is waiting").into())
            }
            ReviewCmd::Claim { case_id, lease_mins } => {
                let c = review.claim_case(ClaimCaseRequest { case_id, lease: lease(lease_mins) }).await?.into_inner();
                emit_case(app, &c)
            }
            ReviewCmd::Show { case_id } => emit_case(app, &get_case(&session, &case_id).await?),
            ReviewCmd::Decide(d) => {
                if d.template {
                    let c = get_case(&session, &d.case_id).await?;
                    print!("{}", template(&c));
                    return Ok(());
                }
                let (summary, entries) = if let Some(path) = &d.file {
                    let text = std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
                    parse_decision_file(&text)?
                } else if !d.items.is_empty() {
                    (String::new(), d.entries_from_flags()?)
                } else {
                    let c = get_case(&session, &d.case_id).await?;
                    parse_decision_file(&edit(&template(&c))?)?
                };
                let decisions = entries.iter().map(entry_decision).collect::<anyhow::Result<Vec<_>>>()?;
                let c = review
                    .submit_decision(SubmitDecisionRequest {
                        case_id: d.case_id.clone(),
                        decisions,
                        summary: d.summary.clone().unwrap_or(summary),
                        idempotency_key: crate::cmd::key_or_new(&d.idempotency_key),
                    })
                    .await?
                    .into_inner();
                app.out.emit(&crate::views::case(&c), || {
                    print_case(&app.out, &c);
                    if c.status == RequestStatus::AwaitingApproval as i32 {
                        println!("\nA second, senior reviewer must approve it: crsctl review approve {}", c.id);
                    }
                })
            }
            ReviewCmd::Ask { case_id, question, idempotency_key } => {
                let c = review
                    .request_information(RequestInformationRequest {
                        case_id,
                        question,
                        idempotency_key: crate::cmd::key_or_new(&idempotency_key),
                    })
                    .await?
                    .into_inner();
                emit_case(app, &c)
            }
            ReviewCmd::Escalate { case_id, reason } => {
                let c = review.escalate_case(EscalateCaseRequest { case_id, reason }).await?.into_inner();
                emit_case(app, &c)
            }
            ReviewCmd::Release { case_id } => {
                let c = review.release_case(ReleaseCaseRequest { case_id }).await?.into_inner();
                emit_case(app, &c)
            }
            ReviewCmd::Reassign { case_id, to, reason, lease_mins } => {
                let assignee = reviewer_subject(&to)?;
                let c = review
                    .reassign_case(ReassignCaseRequest { case_id, assignee, lease: lease(lease_mins), reason })
                    .await?
                    .into_inner();
                emit_case(app, &c)
            }
            ReviewCmd::Approve { case_id, comment, idempotency_key } => {
                let c = review
                    .approve_decision(ApproveDecisionRequest {
                        case_id,
                        approve: true,
                        comment,
                        idempotency_key: crate::cmd::key_or_new(&idempotency_key),
                    })
                    .await?
                    .into_inner();
                emit_case(app, &c)
            }
            ReviewCmd::SendBack { case_id, comment, idempotency_key } => {
                let c = review
                    .approve_decision(ApproveDecisionRequest {
                        case_id,
                        approve: false,
                        comment,
                        idempotency_key: crate::cmd::key_or_new(&idempotency_key),
                    })
                    .await?
                    .into_inner();
                emit_case(app, &c)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crs_proto::common::{Item, Submission};

    #[test]
    fn the_template_parses_back_once_filled_in() {
        let case = Case {
            id: "c1".into(),
            submission: Some(Submission {
                items: vec![
                    Item {
                        index: 0,
                        content_key: "url:https://a.example/1".into(),
                        description: "a: b".into(),
                        ..Default::default()
                    },
                    Item { index: 1, content_key: "content:v1".into(), ..Default::default() },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let t = template(&case);
        assert!(parse_decision_file(&t).is_err(), "an untouched template submits nothing");
        let filled = t
            .replacen("outcome: \"\"", "outcome: restrict", 1)
            .replacen("outcome: \"\"", "outcome: no-action", 1)
            .replacen(
                "no_action_reason: \"\"\n    explanation: \"\"",
                "no_action_reason: over-broad\n    explanation: \"too broad\"",
                2,
            );
        let (_, entries) = parse_decision_file(&filled).unwrap();
        let d: Vec<_> = entries.iter().map(|e| entry_decision(e).unwrap()).collect();
        assert_eq!(d[0].outcome, ItemOutcome::RestrictedInJurisdiction as i32);
        assert_eq!(d[0].ground, DecisionGround::IllegalContent as i32);
        assert_eq!(d[1].no_action_reason, NoActionReason::OverBroad as i32);
    }

    #[test]
    fn reassignment_names_a_reviewer() {
        assert_eq!(reviewer_subject(" reviewer:ana ").unwrap(), "reviewer:ana");
        for bad in ["ana", "reviewer:", "agency:a1", ""] {
            assert_eq!(crate::errors::exit_code(&reviewer_subject(bad).unwrap_err()), 2, "{bad}");
        }
    }

    #[test]
    fn item_flags_must_name_decided_items() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from([
            "crsctl",
            "review",
            "decide",
            "c1",
            "--item",
            "0=restrict",
            "--explanation",
            "1=why",
        ])
        .unwrap();
        let crate::cli::Command::Review(ReviewCmd::Decide(d)) = cli.command else { panic!() };
        assert!(d.entries_from_flags().is_err());
    }
}
