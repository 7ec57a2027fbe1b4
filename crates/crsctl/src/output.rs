//! What commands print: tables for people (colour only on a terminal), JSON or YAML for
//! scripts; times in the reader's zone (`TZ`), deadlines with the time left.

use std::io::IsTerminal as _;

use chrono::{DateTime, Local, Utc};
use serde_json::Value;

/// `-o`: how results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and sentences for people.
    Table,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// The printer every command writes through.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub format: Format,
    pub color: bool,
}

impl Out {
    pub fn new(format: Format, no_color: bool) -> Out {
        let color = !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
        Out { format, color }
    }

    pub fn human(&self) -> bool {
        self.format == Format::Table
    }

    /// Prints `value` as JSON or YAML, or calls `human` for the table form.
    pub fn emit(&self, value: &Value, human: impl FnOnce()) -> anyhow::Result<()> {
        match self.format {
            Format::Table => human(),
            Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
            Format::Yaml => print!("{}", serde_norway::to_string(value)?),
        }
        Ok(())
    }

    /// A status name coloured by what it means for the reader.
    pub fn status(&self, name: &str) -> String {
        let code = match name {
            "DECIDED" | "CLOSED" | "DELIVERED" | "SERVING" | "ACTIVE" | "REMOVED_GLOBALLY" => "32",
            "RESTRICTED_IN_JURISDICTION" | "AWAITING_APPROVAL" | "AWAITING_INFORMATION" | "RETRYING" | "PENDING" => {
                "33"
            }
            "ESCALATED" | "FAILED" | "NOT_SERVING" | "UNREACHABLE" | "SUSPENDED" | "REJECTED" | "BROKEN" => "31",
            "IN_REVIEW" | "TRIAGED" | "RECEIVED" => "36",
            _ => return name.to_owned(),
        };
        self.paint(code, name)
    }

    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
}

/// A table printed with aligned columns.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn print(&self, out: &Out) {
        let mut widths: Vec<usize> = self.header.iter().map(|h| visible_len(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(visible_len(cell));
                }
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, cell) in cells.iter().enumerate() {
                s.push_str(cell);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(widths[i].saturating_sub(visible_len(cell)) + 2));
                }
            }
            s
        };
        let header: Vec<String> = self.header.iter().map(|h| out.bold(h)).collect();
        println!("{}", line(&header));
        for row in &self.rows {
            println!("{}", line(row));
        }
    }
}

/// Length as shown: ANSI colour codes take no room.
fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

pub fn to_utc(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.seconds, ts.nanos.clamp(0, 999_999_999) as u32)
}

/// RFC 3339 in UTC, for JSON and YAML; `null` when unset.
pub fn ts_json(ts: &Option<prost_types::Timestamp>) -> Value {
    ts.as_ref().and_then(to_utc).map(|t| Value::String(t.to_rfc3339())).unwrap_or(Value::Null)
}

/// A time in the reader's zone, to the second; `-` when unset.
pub fn ts_local(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref()
        .and_then(to_utc)
        .map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S %Z").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// A deadline in the reader's zone with the time left (`in 3h 12m`) or past (`5m overdue`).
pub fn due_local(ts: &Option<prost_types::Timestamp>) -> String {
    match ts.as_ref().and_then(to_utc) {
        None => "-".to_owned(),
        Some(t) => format!("{} ({})", t.with_timezone(&Local).format("%Y-%m-%d %H:%M %Z"), time_left(t, Utc::now())),
    }
}

/// `in 3h 12m`, or `5m overdue`.
pub fn time_left(due: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (due - now).num_seconds();
    if secs >= 0 { format!("in {}", span(secs as u64)) } else { format!("{} overdue", span(secs.unsigned_abs())) }
}

/// A duration as people (and the laws) say it: `7d`, `2d 3h`, `24h`, `3h 12m`, `4m 10s`, `9s`.
pub fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60, secs % 60);
    let hours = secs / 3600;
    match (hours, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        (1..48, 0) => format!("{hours}h"),
        (1..48, _) => format!("{hours}h {m}m"),
        _ if h == 0 => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

pub fn duration_secs(d: &Option<prost_types::Duration>) -> u64 {
    d.as_ref().map(|d| d.seconds.max(0) as u64).unwrap_or_default()
}

/// The first `n` characters of `s`, with an ellipsis when cut.
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n.saturating_sub(1)).collect::<String>())
    }
}

/// `label:  value` lines, labels aligned; empty values are left out.
pub fn fields(out: &Out, rows: &[(&str, String)]) {
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for (label, value) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        println!("{}{}  {value}", out.bold(&format!("{label}:")), " ".repeat(width - label.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_naturally() {
        let now = Utc::now();
        assert_eq!(time_left(now + chrono::Duration::seconds(3 * 3600 + 12 * 60 + 5), now), "in 3h 12m");
        assert_eq!(time_left(now - chrono::Duration::seconds(300), now), "5m 0s overdue");
        assert_eq!(span(2 * 86400 + 3 * 3600), "2d 3h");
        assert_eq!((span(24 * 3600), span(7 * 86400), span(3600)), ("24h".into(), "7d".into(), "1h".into()));
    }

    #[test]
    fn colour_codes_take_no_width() {
        let out = Out { format: Format::Table, color: true };
        assert_eq!(visible_len(&out.status("DECIDED")), "DECIDED".len());
    }
}
