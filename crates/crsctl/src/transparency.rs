//! `crsctl transparency`: writes a period's statements of reasons or notices (JSON lines or CSV)
//! and its transparency report (JSON, CSV or SVG) to a file or standard output, as notification
//! produces them. Kept to itself so the rest of the command line can change around it.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use crs_proto::notification::notification_service_client::NotificationServiceClient;
use crs_proto::notification::{
    ExportTransparencyRecordsRequest, GetTransparencyReportRequest, TransparencyFormat, TransparencyRecord,
};

use crate::cli::{App, Run};
use crate::client::Conn;

#[derive(Subcommand)]
pub enum Command {
    /// Every statement of reasons (one per item restricted) or every notice (one per decided
    /// request) of the decisions in a period.
    Export {
        #[arg(long, value_enum, default_value_t = Record::Statements)]
        record: Record,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        #[command(flatten)]
        common: Common,
    },
    /// The transparency report of the decisions in a period.
    Report {
        #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
        format: ReportFormat,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
pub struct Common {
    /// Decisions from this moment on: YYYY-MM-DD (midnight UTC) or RFC 3339.
    #[arg(long)]
    pub from: Option<String>,
    /// Decisions before this moment: YYYY-MM-DD (midnight UTC) or RFC 3339.
    #[arg(long)]
    pub to: Option<String>,
    /// Where to write; standard output when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Record {
    Statements,
    Notices,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Json,
    Csv,
    Svg,
}

/// A moment given on the command line.
fn moment(flag: &str, value: Option<&String>) -> anyhow::Result<Option<prost_types::Timestamp>> {
    let Some(v) = value else { return Ok(None) };
    let at = if let Ok(day) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
    } else {
        chrono::DateTime::parse_from_rfc3339(v)
            .map_err(|_| anyhow::anyhow!("--{flag} {v:?}: expected YYYY-MM-DD or an RFC 3339 time"))?
            .to_utc()
    };
    Ok(Some(prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }))
}

fn output(path: Option<&PathBuf>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    })
}

/// Runs with the context's credentials (an admin's token) against its notification endpoint.
impl Run for Command {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let session = app.session()?;
        execute(&self, crate::cmd::notification(&session)?).await
    }
}

async fn execute(command: &Command, mut client: NotificationServiceClient<Conn>) -> anyhow::Result<()> {
    match command {
        Command::Export { record, format, common } => {
            let request = ExportTransparencyRecordsRequest {
                record: match *record {
                    Record::Statements => TransparencyRecord::StatementsOfReasons,
                    Record::Notices => TransparencyRecord::Notices,
                } as i32,
                format: match *format {
                    ExportFormat::Jsonl => TransparencyFormat::Json,
                    ExportFormat::Csv => TransparencyFormat::Csv,
                } as i32,
                decided_after: moment("from", common.from.as_ref())?,
                decided_before: moment("to", common.to.as_ref())?,
            };
            let mut stream = client.export_transparency_records(request).await?.into_inner();
            let mut out = output(common.out.as_ref())?;
            let mut records = 0u64;
            while let Some(chunk) = stream.message().await? {
                out.write_all(&chunk.data)?;
                records += u64::from(chunk.records);
            }
            out.flush()?;
            if let Some(p) = &common.out {
                eprintln!("wrote {records} records to {}", p.display());
            }
            Ok(())
        }
        Command::Report { format, common } => {
            let request = GetTransparencyReportRequest {
                format: match *format {
                    ReportFormat::Json => TransparencyFormat::Json,
                    ReportFormat::Csv => TransparencyFormat::Csv,
                    ReportFormat::Svg => TransparencyFormat::Svg,
                } as i32,
                decided_after: moment("from", common.from.as_ref())?,
                decided_before: moment("to", common.to.as_ref())?,
            };
            let report = client.get_transparency_report(request).await?.into_inner();
            let mut out = output(common.out.as_ref())?;
            out.write_all(&report.document)?;
            out.flush()?;
            if let Some(p) = &common.out {
                eprintln!("wrote the report of {} decided requests to {}", report.requests, p.display());
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::moment;

    #[test]
    fn moments_are_days_at_midnight_utc_or_rfc3339() {
        let day = moment("from", Some(&"2026-11-01".to_owned())).unwrap().unwrap();
        assert_eq!(day.seconds, 1_793_491_200);
        let exact = moment("to", Some(&"2026-11-01T01:00:00+01:00".to_owned())).unwrap().unwrap();
        assert_eq!(exact.seconds, 1_793_491_200);
        let err = moment("to", Some(&"November".to_owned())).unwrap_err().to_string();
        assert!(err.contains("--to"), "{err}");
    }
}
