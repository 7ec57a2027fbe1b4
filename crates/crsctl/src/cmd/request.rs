//! `crsctl request`: an agency's requests (IntakeService): submit, import, list, show, watch,
//! withdraw, answer.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use crs_proto::common::{Category, ContentItem, Keyword, LegalInstrument, RequestStatus, RequestedAction};
use crs_proto::intake::{
    GetRequestRequest, GovernmentRequest, ListRequestsRequest, ProvideInformationRequest, SubmitRequestRequest,
    WatchRequestsRequest, WithdrawRequestRequest,
};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::cli::{App, Run};
use crate::errors::usage;
use crate::output::{Out, Table, due_local, fields, span, ts_json, ts_local};
use crate::vocab::{self, name, status};

#[derive(Subcommand)]
pub enum RequestCmd {
    /// Submits one request, from flags or a JSON/YAML file (flags win over the file).
    Submit(Box<Submit>),
    /// Imports a CSV or XLSX of URLs as requests, resumably: see `crsctl request import --help`.
    Import(Box<crate::cmd::import::Import>),
    /// Lists the agency's requests, newest first.
    List(List),
    /// Shows one request with its items, status and deadline.
    Show { request_id: String },
    /// Streams status changes of the agency's requests as they happen.
    Watch(Watch),
    /// Withdraws a request before a decision on it took effect.
    Withdraw {
        request_id: String,
        /// Why; recorded in the audit trail.
        #[arg(long)]
        reason: String,
    },
    /// Answers the platform's question on a request awaiting information.
    Answer {
        request_id: String,
        /// The answer.
        #[arg(long)]
        answer: String,
        /// More precise URLs (repeatable).
        #[arg(long = "url")]
        urls: Vec<String>,
        /// Retrying with the same key has no further effect.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
}

/// The request fields, shared by `submit` and `import`.
#[derive(Args, Default, Clone)]
pub struct RequestFields {
    /// ISO 3166-1 alpha-2, the agency's own (e.g. KZ).
    #[arg(long)]
    pub jurisdiction: Option<String>,
    /// court-order, government-order, government-notice or law-enforcement-request.
    #[arg(long)]
    pub instrument: Option<String>,
    /// A DSA category, e.g. illegal-or-harmful-speech, risk-for-public-security.
    #[arg(long)]
    pub category: Option<String>,
    /// DSA keywords, e.g. violation-national-law (repeatable).
    #[arg(long = "keyword")]
    pub keywords: Vec<String>,
    /// remove, restrict-in-jurisdiction or review.
    #[arg(long)]
    pub action: Option<String>,
    /// The provision of law relied on (required for court and government orders).
    #[arg(long)]
    pub legal_basis: Option<String>,
    /// Why the content is unlawful under it (required for court and government orders).
    #[arg(long)]
    pub justification: Option<String>,
    /// The agency's own reference (order or file number).
    #[arg(long)]
    pub reference: Option<String>,
    /// The court or authority that issued the order, when not the agency.
    #[arg(long)]
    pub issuing_authority: Option<String>,
    /// The language of the content (ISO 639-1, e.g. kk): triage may route by it.
    #[arg(long)]
    pub content_language: Option<String>,
}

#[derive(Args)]
pub struct Submit {
    #[command(flatten)]
    fields: RequestFields,
    /// A URL of the content (repeatable).
    #[arg(long = "url")]
    urls: Vec<String>,
    /// A platform content id (repeatable).
    #[arg(long = "content-id")]
    content_ids: Vec<String>,
    /// A JSON or YAML file with the request: the fields above in snake_case (legal_instrument,
    /// requested_action, ...) and `items: [{url, description} | {content_id}]`.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Retrying with the same key returns the first result and creates nothing. Default: a
    /// digest of --file's contents, or a new key for a request given by flags.
    #[arg(long)]
    idempotency_key: Option<String>,
}

/// A request in a file: the API's fields, enums by name.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RequestFile {
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    jurisdiction: Option<String>,
    #[serde(default)]
    legal_instrument: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    requested_action: Option<String>,
    #[serde(default)]
    items: Vec<FileItem>,
    #[serde(default)]
    legal_basis: Option<String>,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    issuing_authority: Option<String>,
    #[serde(default)]
    content_language: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileItem {
    #[serde(default)]
    url: String,
    #[serde(default)]
    content_id: String,
    #[serde(default)]
    description: String,
}

/// Builds the submission from `fields` (enums parsed); `None` fields must be set by then.
pub fn build_request(f: &RequestFields, items: Vec<ContentItem>, key: String) -> anyhow::Result<SubmitRequestRequest> {
    let need = |v: &Option<String>, flag: &str| v.clone().ok_or_else(|| usage(format!("--{flag} is required")));
    Ok(SubmitRequestRequest {
        idempotency_key: key,
        jurisdiction: need(&f.jurisdiction, "jurisdiction")?.to_uppercase(),
        legal_instrument: vocab::parse::<LegalInstrument>(&need(&f.instrument, "instrument")?)? as i32,
        category: vocab::parse::<Category>(&need(&f.category, "category")?)? as i32,
        keywords: f.keywords.iter().map(|k| vocab::parse::<Keyword>(k).map(|k| k as i32)).collect::<Result<_, _>>()?,
        requested_action: vocab::parse::<RequestedAction>(&need(&f.action, "action")?)? as i32,
        items,
        legal_basis: f.legal_basis.clone().unwrap_or_default(),
        justification: f.justification.clone().unwrap_or_default(),
        reference: f.reference.clone().unwrap_or_default(),
        issuing_authority: f.issuing_authority.clone().unwrap_or_default(),
        content_language: f.content_language.clone().unwrap_or_default(),
    })
}

fn read_request_file(path: &Path) -> anyhow::Result<(RequestFile, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    let is_json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    let parsed: RequestFile = if is_json {
        serde_json::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display())))?
    } else {
        serde_norway::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display())))?
    };
    Ok((parsed, bytes))
}

impl Submit {
    fn request(self) -> anyhow::Result<SubmitRequestRequest> {
        let mut fields = RequestFields::default();
        let mut items = Vec::new();
        let mut key = None;
        if let Some(path) = &self.file {
            let (file, bytes) = read_request_file(path)?;
            fields = RequestFields {
                jurisdiction: file.jurisdiction,
                instrument: file.legal_instrument,
                category: file.category,
                keywords: file.keywords,
                action: file.requested_action,
                legal_basis: file.legal_basis,
                justification: file.justification,
                reference: file.reference,
                issuing_authority: file.issuing_authority,
                content_language: file.content_language,
            };
            items = file
                .items
                .into_iter()
                .map(|i| ContentItem { url: i.url, content_id: i.content_id, description: i.description })
                .collect();
            // The same file submitted twice is one request.
            key = Some(
                file.idempotency_key.unwrap_or_else(|| format!("file-{}", hex::encode(&Sha256::digest(&bytes)[..16]))),
            );
        }
        let f = self.fields;
        macro_rules! over {
            ($($field:ident),*) => { $(if f.$field.is_some() { fields.$field = f.$field.clone(); })* };
        }
        over!(
            jurisdiction,
            instrument,
            category,
            action,
            legal_basis,
            justification,
            reference,
            issuing_authority,
            content_language
        );
        if !f.keywords.is_empty() {
            fields.keywords = f.keywords.clone();
        }
        items.extend(self.urls.into_iter().map(|url| ContentItem { url, ..Default::default() }));
        items.extend(self.content_ids.into_iter().map(|content_id| ContentItem { content_id, ..Default::default() }));
        if items.is_empty() {
            return Err(usage("name the content: --url, --content-id or items in --file"));
        }
        let key = self.idempotency_key.or(key).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        build_request(&fields, items, key)
    }
}

#[derive(Args)]
pub struct List {
    /// Only requests in this status (e.g. in-review, decided).
    #[arg(long, value_parser = vocab::number::<RequestStatus>)]
    status: Option<i32>,
    /// Only requests of this category.
    #[arg(long, value_parser = vocab::number::<Category>)]
    category: Option<i32>,
    /// At most this many (0: all).
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

#[derive(Args)]
pub struct Watch {
    /// Resume after this cursor (printed with every update).
    #[arg(long)]
    cursor: Option<String>,
    /// Follow only this request.
    #[arg(long)]
    request: Option<String>,
    /// With --request: exit once it reaches one of these statuses (repeatable), e.g.
    /// `--until decided --until withdrawn`.
    #[arg(long, requires = "request", value_parser = vocab::number::<RequestStatus>)]
    until: Vec<i32>,
}

pub fn print_request(out: &Out, r: &GovernmentRequest) {
    let deadline = r.deadline.as_ref().map(|d| {
        if d.paused {
            format!(
                "paused, {} left ({})",
                span(d.remaining_when_paused.as_ref().map(|x| x.seconds.max(0) as u64).unwrap_or_default()),
                d.policy_id
            )
        } else {
            format!("{} ({}, {})", due_local(&d.due_at), d.policy_id, d.legal_reference)
        }
    });
    fields(
        out,
        &[
            ("request", r.id.clone()),
            ("status", out.status(status(r.status))),
            ("note", r.status_note.clone()),
            ("question", r.pending_question.clone()),
            ("jurisdiction", r.jurisdiction.clone()),
            ("instrument", name::<LegalInstrument>(r.legal_instrument).to_owned()),
            ("category", name::<Category>(r.category).to_owned()),
            ("action", name::<RequestedAction>(r.requested_action).to_owned()),
            ("reference", r.reference.clone()),
            ("received", ts_local(&r.received_at)),
            ("updated", ts_local(&r.updated_at)),
            ("deadline", deadline.unwrap_or_default()),
        ],
    );
    let mut t = Table::new(&["#", "CONTENT", "OUTCOME", "EXPLANATION"]);
    for i in &r.items {
        t.row(vec![
            i.index.to_string(),
            i.content_key.clone(),
            out.status(name::<crs_proto::common::ItemOutcome>(i.outcome)),
            crate::output::clip(&i.explanation, 60),
        ]);
    }
    println!();
    t.print(out);
}

impl Run for RequestCmd {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let session = app.session()?;
        match self {
            RequestCmd::Import(import) => import.run(app).await,
            RequestCmd::Submit(s) => {
                let request = s.request()?;
                let reply = crate::cmd::intake(&session)?.submit_request(request).await?;
                let trace = reply.metadata().get("x-trace-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let reply = reply.into_inner();
                let r = reply.request.unwrap_or_default();
                let mut value = crate::views::request(&r);
                value["replayed"] = reply.replayed.into();
                value["trace_id"] = trace.clone().into();
                app.out.emit(&value, || {
                    if reply.replayed {
                        println!("already submitted with this idempotency key: the original request");
                    }
                    print_request(&app.out, &r);
                    if let Some(t) = &trace {
                        println!("\ntrace id {t}");
                    }
                })
            }
            RequestCmd::List(l) => {
                let requests = list_all(&session, l.status.unwrap_or(0), l.category.unwrap_or(0), l.limit).await?;
                let value = json!({ "requests": requests.iter().map(crate::views::request).collect::<Vec<_>>() });
                app.out.emit(&value, || {
                    let mut t = Table::new(&["ID", "STATUS", "CATEGORY", "ITEMS", "REFERENCE", "RECEIVED", "DUE"]);
                    for r in &requests {
                        let open = !matches!(
                            RequestStatus::try_from(r.status),
                            Ok(RequestStatus::Decided
                                | RequestStatus::Closed
                                | RequestStatus::Withdrawn
                                | RequestStatus::Rejected
                                | RequestStatus::Merged)
                        );
                        t.row(vec![
                            r.id.clone(),
                            app.out.status(status(r.status)),
                            name::<Category>(r.category).to_owned(),
                            r.items.len().to_string(),
                            r.reference.clone(),
                            ts_local(&r.received_at),
                            if open { due_local(&r.deadline.as_ref().and_then(|d| d.due_at)) } else { "-".into() },
                        ]);
                    }
                    t.print(&app.out);
                })
            }
            RequestCmd::Show { request_id } => {
                let r = crate::cmd::intake(&session)?
                    .get_request(GetRequestRequest { request_id })
                    .await?
                    .into_inner()
                    .request
                    .unwrap_or_default();
                app.out.emit(&crate::views::request(&r), || print_request(&app.out, &r))
            }
            RequestCmd::Watch(w) => watch(app, &session, w).await,
            RequestCmd::Withdraw { request_id, reason } => {
                let r = crate::cmd::intake(&session)?
                    .withdraw_request(WithdrawRequestRequest { request_id, reason })
                    .await?
                    .into_inner()
                    .request
                    .unwrap_or_default();
                app.out.emit(&crate::views::request(&r), || print_request(&app.out, &r))
            }
            RequestCmd::Answer { request_id, answer, urls, idempotency_key } => {
                let r = crate::cmd::intake(&session)?
                    .provide_information(ProvideInformationRequest {
                        request_id,
                        answer,
                        additional_items: urls
                            .into_iter()
                            .map(|url| ContentItem { url, ..Default::default() })
                            .collect(),
                        idempotency_key: crate::cmd::key_or_new(&idempotency_key),
                    })
                    .await?
                    .into_inner()
                    .request
                    .unwrap_or_default();
                app.out.emit(&crate::views::request(&r), || print_request(&app.out, &r))
            }
        }
    }
}

/// Every request of the caller matching the filters, up to `limit` (0: all).
pub async fn list_all(
    session: &crate::client::Session,
    status: i32,
    category: i32,
    limit: usize,
) -> anyhow::Result<Vec<GovernmentRequest>> {
    let mut intake = crate::cmd::intake(session)?;
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = intake
            .list_requests(ListRequestsRequest { status, category, page_size: 500, page_token, ..Default::default() })
            .await?
            .into_inner();
        out.extend(page.requests);
        if (limit > 0 && out.len() >= limit) || page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if limit > 0 {
        out.truncate(limit);
    }
    Ok(out)
}

async fn watch(app: &App, session: &crate::client::Session, w: Watch) -> anyhow::Result<()> {
    let mut intake = crate::cmd::intake(session)?;
    // The stream opens before the request is read, so no change falls between the two.
    let mut stream = intake
        .watch_requests(WatchRequestsRequest { cursor: w.cursor.clone().unwrap_or_default() })
        .await?
        .into_inner();
    let line = |request_id: &str, status_n: i32, at: &Option<prost_types::Timestamp>, note: &str, cursor: &str| {
        let value = json!({"request_id": request_id, "status": status(status_n), "occurred_at": ts_json(at), "note": note, "cursor": cursor});
        match app.out.format {
            crate::output::Format::Table => {
                println!("{}  {request_id}  {}  {note}", ts_local(at), app.out.status(status(status_n)));
            }
            // One document per line, so a script can read updates as they come.
            _ => println!("{}", serde_json::to_string(&value).unwrap_or_default()),
        }
    };
    if let Some(id) = &w.request {
        let r = intake
            .get_request(GetRequestRequest { request_id: id.clone() })
            .await?
            .into_inner()
            .request
            .unwrap_or_default();
        line(&r.id, r.status, &r.updated_at, &r.status_note, "");
        if w.until.contains(&r.status) {
            return Ok(());
        }
    }
    while let Some(update) = stream.message().await? {
        if w.request.as_ref().is_some_and(|id| *id != update.request_id) {
            continue;
        }
        line(&update.request_id, update.status, &update.occurred_at, &update.note, &update.cursor);
        if w.until.contains(&update.status) {
            return Ok(());
        }
    }
    Ok(())
}
