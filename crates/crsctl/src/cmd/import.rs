//! `crsctl request import`: a spreadsheet of URLs (CSV or XLSX) submitted as requests.
//!
//! Rows are grouped into requests (by a column such as the agency's order reference, then in
//! chunks of `--per-request`), and each request's idempotency key is derived from the file's
//! digest and the group's position. Running the same import again, after an interruption or a
//! failure, therefore submits what is missing and gets the original answer for what went in
//! already: no row is submitted twice. Intake keeps idempotency keys for a day
//! (`retention.idempotency_secs`), which bounds how late a resume may come.
//!
//! Rate limits are waited out: a RESOURCE_EXHAUSTED reply says when to retry (RetryInfo), and
//! the same group is sent again then, with the same key.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use crs_proto::common::ContentItem;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tonic::Code;

use crate::cli::App;
use crate::cmd::request::{RequestFields, build_request};
use crate::errors::{retry_delay, usage};

/// Imports a CSV or XLSX file of URLs as requests.
///
/// The first row names the columns: `url` or `content_id` (one per row), optionally
/// `description`, and any request field (`reference`, `jurisdiction`, `legal_instrument`,
/// `category`, `keywords` separated by `;`, `requested_action`, `legal_basis`, `justification`,
/// `issuing_authority`), which flags fill in where a column is missing or empty. Rows sharing
/// a --group-by value (default: `reference`, when there is such a column) form one request,
/// split into requests of at most --per-request items.
///
/// Interrupted or failed imports are resumed by running the same command again: every request's
/// idempotency key comes from the file's contents and its row group, so nothing is submitted
/// twice. Rate limits are waited out as the service says (RetryInfo).
#[derive(Args)]
pub struct Import {
    /// The CSV (.csv) or Excel (.xlsx, .xls, .ods) file; the first sheet is read.
    file: PathBuf,
    /// Rows with the same value in this column go into the same request(s).
    #[arg(long, value_name = "COLUMN")]
    group_by: Option<String>,
    /// At most this many items per request.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    per_request: u32,
    #[command(flatten)]
    defaults: RequestFields,
    /// Reads and groups the file and prints the requests it would submit, submitting nothing.
    #[arg(long)]
    dry_run: bool,
    /// Gives up after this many consecutive failed attempts at one request while the service is
    /// unavailable (rate limits are always waited out).
    #[arg(long, default_value_t = 8)]
    max_retries: u32,
}

/// One row of the sheet, by lower-case column name.
type Row = HashMap<String, String>;

/// A request to submit: its rows and its idempotency key.
struct Group {
    key: String,
    label: String,
    rows: Vec<Row>,
}

fn column_name(raw: &str) -> String {
    raw.trim().to_lowercase().replace([' ', '-'], "_")
}

fn read_rows(path: &Path, bytes: &[u8]) -> anyhow::Result<Vec<Row>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_lowercase();
    let table: Vec<Vec<String>> = match ext.as_str() {
        "xlsx" | "xlsm" | "xls" | "xlsb" | "ods" => {
            use calamine::Reader as _;
            let mut book =
                calamine::open_workbook_auto(path).with_context(|| format!("cannot open {}", path.display()))?;
            let range = book
                .worksheet_range_at(0)
                .ok_or_else(|| usage(format!("{} has no sheet", path.display())))?
                .with_context(|| format!("cannot read {}", path.display()))?;
            range.rows().map(|r| r.iter().map(cell_text).collect()).collect()
        }
        _ => {
            let mut reader =
                csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(bytes);
            let mut rows = Vec::new();
            for (n, record) in reader.records().enumerate() {
                let record = record.map_err(|e| usage(format!("{} line {}: {e}", path.display(), n + 1)))?;
                rows.push(record.iter().map(str::to_owned).collect());
            }
            rows
        }
    };
    let mut lines = table.into_iter();
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| usage(format!("{} is empty", path.display())))?
        .iter()
        .map(|h| column_name(h))
        .collect();
    if !header.iter().any(|h| h == "url" || h == "content_id") {
        return Err(usage(format!("{}: the first row must name a `url` or `content_id` column", path.display())));
    }
    Ok(lines
        .map(|cells| header.iter().cloned().zip(cells.into_iter().map(|c| c.trim().to_owned())).collect::<Row>())
        .filter(|row| {
            row.get("url").is_some_and(|v| !v.is_empty()) || row.get("content_id").is_some_and(|v| !v.is_empty())
        })
        .collect())
}

fn cell_text(cell: &calamine::Data) -> String {
    match cell {
        calamine::Data::Empty => String::new(),
        // Whole numbers (content ids typed into Excel) without a trailing ".0".
        calamine::Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        other => other.to_string(),
    }
}

/// Groups rows into requests, in the order groups first appear, and names each one's key.
fn group(rows: Vec<Row>, group_by: Option<&str>, per_request: usize, digest: &str) -> Vec<Group> {
    let mut order: Vec<String> = Vec::new();
    let mut by_value: HashMap<String, Vec<Row>> = HashMap::new();
    for row in rows {
        let value = group_by.and_then(|c| row.get(c)).cloned().unwrap_or_default();
        if !by_value.contains_key(&value) {
            order.push(value.clone());
        }
        by_value.entry(value).or_default().push(row);
    }
    let mut groups = Vec::new();
    for (g, value) in order.iter().enumerate() {
        let rows = by_value.remove(value).unwrap_or_default();
        for (c, chunk) in rows.chunks(per_request).enumerate() {
            let label = if value.is_empty() {
                format!("rows group {}", groups.len() + 1)
            } else {
                format!("{value} part {}", c + 1)
            };
            groups.push(Group { key: format!("import-{digest}-{g}-{c}"), label, rows: chunk.to_vec() });
        }
    }
    groups
}

/// The group's request fields: its first row's columns, else the flags.
fn fields_of(row: &Row, defaults: &RequestFields) -> RequestFields {
    let col = |names: &[&str]| names.iter().find_map(|n| row.get(*n).filter(|v| !v.is_empty()).cloned());
    let keywords: Vec<String> = col(&["keywords", "keyword"])
        .map(|k| k.split([';', '|']).map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    RequestFields {
        jurisdiction: col(&["jurisdiction"]).or(defaults.jurisdiction.clone()),
        instrument: col(&["legal_instrument", "instrument"]).or(defaults.instrument.clone()),
        category: col(&["category"]).or(defaults.category.clone()),
        keywords: if keywords.is_empty() { defaults.keywords.clone() } else { keywords },
        action: col(&["requested_action", "action"]).or(defaults.action.clone()),
        legal_basis: col(&["legal_basis"]).or(defaults.legal_basis.clone()),
        justification: col(&["justification"]).or(defaults.justification.clone()),
        reference: col(&["reference"]).or(defaults.reference.clone()),
        issuing_authority: col(&["issuing_authority"]).or(defaults.issuing_authority.clone()),
        content_language: col(&["content_language", "language"]).or(defaults.content_language.clone()),
    }
}

impl Import {
    pub async fn run(self, app: &App) -> anyhow::Result<()> {
        let bytes = std::fs::read(&self.file).map_err(|e| usage(format!("{}: {e}", self.file.display())))?;
        let digest = hex::encode(&Sha256::digest(&bytes)[..12]);
        let rows = read_rows(&self.file, &bytes)?;
        let group_by = self
            .group_by
            .as_deref()
            .map(column_name)
            .or_else(|| rows.first().filter(|r| r.contains_key("reference")).map(|_| "reference".to_owned()));
        if let Some(c) = &group_by
            && rows.first().is_some_and(|r| !r.contains_key(c))
        {
            return Err(usage(format!("--group-by {c}: no such column")));
        }
        let groups = group(rows, group_by.as_deref(), self.per_request as usize, &digest);
        // Every request is built before the first is sent, so a bad row stops nothing half-way.
        let mut requests = Vec::with_capacity(groups.len());
        for g in &groups {
            let items = g
                .rows
                .iter()
                .map(|r| ContentItem {
                    url: r.get("url").cloned().unwrap_or_default(),
                    content_id: r.get("content_id").cloned().unwrap_or_default(),
                    description: r.get("description").cloned().unwrap_or_default(),
                })
                .collect();
            let request = build_request(&fields_of(&g.rows[0], &self.defaults), items, g.key.clone())
                .with_context(|| format!("{} ({})", g.label, self.file.display()))?;
            requests.push(request);
        }
        let total_items: usize = groups.iter().map(|g| g.rows.len()).sum();
        if self.dry_run {
            let value = json!({"file": self.file.display().to_string(), "requests": groups.iter().map(|g| json!({
                "label": g.label, "idempotency_key": g.key, "items": g.rows.len()})).collect::<Vec<_>>(), "items": total_items});
            return app.out.emit(&value, || {
                for g in &groups {
                    println!("{:<40} {:>5} item(s)  key {}", g.label, g.rows.len(), g.key);
                }
                println!("{} request(s), {total_items} item(s); nothing submitted (--dry-run)", groups.len());
            });
        }

        let session = app.session()?;
        let mut intake = crate::cmd::intake(&session)?;
        let bar = if std::io::stderr().is_terminal() && app.out.human() {
            ProgressBar::new(total_items as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} items ({eta} left) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let (mut submitted, mut replayed, mut waited) = (0usize, 0usize, Duration::ZERO);
        let mut ids = Vec::with_capacity(groups.len());
        for (g, request) in groups.iter().zip(requests) {
            let mut failures = 0;
            let reply = loop {
                match intake.submit_request(request.clone()).await {
                    Ok(reply) => break reply.into_inner(),
                    Err(status) if status.code() == Code::ResourceExhausted => {
                        let delay =
                            retry_delay(&status).unwrap_or(Duration::from_secs(1)).max(Duration::from_millis(50));
                        bar.set_message(format!("rate-limited: waiting {:.1}s", delay.as_secs_f64()));
                        if bar.is_hidden() && app.global.verbose {
                            eprintln!("crsctl: rate-limited; waiting {:.1}s", delay.as_secs_f64());
                        }
                        let started = Instant::now();
                        tokio::time::sleep(delay).await;
                        waited += started.elapsed();
                    }
                    Err(status)
                        if matches!(
                            crate::errors::effective_code(&status),
                            Code::Unavailable | Code::DeadlineExceeded
                        ) && failures < self.max_retries =>
                    {
                        failures += 1;
                        let delay = Duration::from_millis(200 * 2u64.pow(failures.min(6)));
                        bar.set_message(format!(
                            "{}: retrying in {:.1}s",
                            crate::errors::code_name(crate::errors::effective_code(&status)),
                            delay.as_secs_f64()
                        ));
                        tokio::time::sleep(delay).await;
                    }
                    Err(status) => {
                        bar.abandon();
                        return Err(anyhow::Error::new(status).context(format!(
                            "submitting {} ({} item(s)); {} of {} request(s) are in; run the same command again to resume",
                            g.label,
                            g.rows.len(),
                            ids.len(),
                            groups.len()
                        )));
                    }
                }
            };
            bar.set_message("");
            if reply.replayed {
                replayed += 1
            } else {
                submitted += 1
            }
            ids.push(reply.request.map(|r| r.id).unwrap_or_default());
            bar.inc(g.rows.len() as u64);
        }
        bar.finish_and_clear();
        let value = json!({
            "file": self.file.display().to_string(),
            "requests": groups.len(),
            "items": total_items,
            "submitted": submitted,
            "already_submitted": replayed,
            "rate_limit_wait_secs": waited.as_secs_f64(),
            "request_ids": ids,
        });
        app.out.emit(&value, || {
            println!(
                "imported {} item(s) in {} request(s): {submitted} submitted now, {replayed} already submitted earlier",
                total_items,
                groups.len()
            );
            if waited > Duration::ZERO {
                println!("waited {:.1}s for rate limits", waited.as_secs_f64());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(url: &str, reference: &str) -> Row {
        [("url".to_owned(), url.to_owned()), ("reference".to_owned(), reference.to_owned())].into_iter().collect()
    }

    #[test]
    fn rows_group_by_column_then_chunk_with_stable_keys() {
        let rows = vec![row("u1", "A"), row("u2", "B"), row("u3", "A"), row("u4", "A")];
        let groups = group(rows.clone(), Some("reference"), 2, "d");
        let shape: Vec<_> = groups.iter().map(|g| (g.key.as_str(), g.rows.len())).collect();
        assert_eq!(shape, [("import-d-0-0", 2), ("import-d-0-1", 1), ("import-d-1-0", 1)]);
        let again = group(rows, Some("reference"), 2, "d");
        assert_eq!(groups.iter().map(|g| &g.key).collect::<Vec<_>>(), again.iter().map(|g| &g.key).collect::<Vec<_>>());
    }

    #[test]
    fn csv_headers_are_normalised_and_blank_rows_skipped() {
        let csv =
            b"URL,Description,Legal Instrument\nhttps://a.example/1,first,court-order\n,,\nhttps://a.example/2,,\n";
        let rows = read_rows(Path::new("x.csv"), csv).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["legal_instrument"], "court-order");
        assert!(read_rows(Path::new("x.csv"), b"link\nhttps://a.example\n").is_err());
    }
}
