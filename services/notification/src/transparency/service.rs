//! The transparency RPCs: the paged statements of reasons, the streamed exports and the report.
//! Admins only: exports and reports are what an operator publishes.

use std::pin::Pin;

use crs_platform::auth::{self, Principal, Role};
use crs_platform::error::FieldViolations;
use crs_platform::paging;
use crs_proto::notification::{
    ExportStatementsOfReasonsRequest, ExportStatementsOfReasonsResponse, ExportTransparencyRecordsRequest,
    GetTransparencyReportRequest, StatementOfReasons, TransparencyChunk, TransparencyFormat, TransparencyRecord,
    TransparencyReport,
};
use sea_orm::{DatabaseConnection, EntityTrait};
use tonic::Status;

use super::{Decided, Period, TransparencyConfig, csv, notice, report, statement};
use crate::entities::transparency_record;
use crate::error::NotificationError;

type Result<T> = std::result::Result<T, NotificationError>;

pub type ChunkStream = Pin<Box<dyn futures::Stream<Item = std::result::Result<TransparencyChunk, Status>> + Send>>;

/// The most statements on one page: what the DSA database's bulk endpoint takes per call.
const MAX_STATEMENTS_PER_PAGE: u64 = 100;
/// Decided requests read per database query (and at most per streamed chunk).
const BATCH: u64 = 100;

#[derive(Clone)]
pub struct Transparency {
    db: DatabaseConnection,
    cfg: TransparencyConfig,
}

/// The restricted items' statements of a request, with their item indexes.
fn indexed_statements(d: &Decided, cfg: &TransparencyConfig) -> Vec<(u32, StatementOfReasons)> {
    let indexes = d.items.iter().filter(|i| i.restricts()).map(|i| i.index);
    indexes.zip(statement::statements(d, cfg)).collect()
}

impl Transparency {
    pub fn new(db: DatabaseConnection, cfg: TransparencyConfig) -> Self {
        Self { db, cfg }
    }

    pub fn config(&self) -> &TransparencyConfig {
        &self.cfg
    }

    /// One page of statements, oldest decision first; the token is the last statement's
    /// (decision time, request, item).
    pub async fn statements_page(
        &self,
        principal: &Principal,
        req: ExportStatementsOfReasonsRequest,
    ) -> Result<ExportStatementsOfReasonsResponse> {
        auth::require_role(principal, &[Role::Admin])?;
        let period = Period::of(req.decided_after.as_ref(), req.decided_before.as_ref(), "decided_before")?;
        let size = paging::page_size(req.page_size).min(MAX_STATEMENTS_PER_PAGE) as usize;
        let filters = format!("after={:?};before={:?}", period.after, period.before);
        let position = match paging::decode(&req.page_token, "statements", &filters)? {
            None => None,
            Some(pos) => {
                let bad = || NotificationError::invalid("page_token", "is not a token this service issued");
                let [at, id, index] = <[String; 3]>::try_from(pos).map_err(|_| bad())?;
                Some((at.parse::<i64>().map_err(|_| bad())?, id, index.parse::<u32>().map_err(|_| bad())?))
            }
        };
        let mut statements: Vec<StatementOfReasons> = Vec::new();
        let mut last: Option<(i64, String, u32)> = None;
        let mut more = false;
        // The rest of the request the previous page stopped in, then the requests after it.
        let mut pending: Vec<Decided> = Vec::new();
        if let Some((_, id, _)) = &position
            && let Some(row) = transparency_record::Entity::find_by_id(id.clone()).one(&self.db).await?
        {
            pending.push(Decided::from_row(row)?);
        }
        let mut cursor = position.as_ref().map(|(at, id, _)| (*at, id.clone()));
        'pages: loop {
            let (batch, from_query) = if pending.is_empty() {
                (super::page(&self.db, period, cursor.clone(), BATCH).await?, true)
            } else {
                (std::mem::take(&mut pending), false)
            };
            for d in &batch {
                cursor = Some((d.row.decided_at, d.row.request_id.clone()));
                for (index, s) in indexed_statements(d, &self.cfg) {
                    if let Some((_, id, after)) = &position
                        && *id == d.row.request_id
                        && index <= *after
                    {
                        continue;
                    }
                    if statements.len() == size {
                        more = true;
                        break 'pages;
                    }
                    last = Some((d.row.decided_at, d.row.request_id.clone(), index));
                    statements.push(s);
                }
            }
            if from_query && (batch.len() as u64) < BATCH {
                break;
            }
        }
        let next_page_token = match (more, last) {
            (true, Some((at, id, index))) => {
                paging::encode("statements", &filters, &[&at.to_string(), &id, &index.to_string()])
            }
            _ => String::new(),
        };
        Ok(ExportStatementsOfReasonsResponse { statements, next_page_token })
    }

    /// Streams the statements or notices of a period, one chunk per batch of requests.
    pub async fn export(&self, principal: &Principal, req: ExportTransparencyRecordsRequest) -> Result<ChunkStream> {
        auth::require_role(principal, &[Role::Admin])?;
        let mut v = FieldViolations::new();
        let record = TransparencyRecord::try_from(req.record).unwrap_or(TransparencyRecord::Unspecified);
        if record == TransparencyRecord::Unspecified {
            v.add("record", "must be STATEMENTS_OF_REASONS or NOTICES");
        }
        let format = TransparencyFormat::try_from(req.format).unwrap_or(TransparencyFormat::Unspecified);
        if !matches!(format, TransparencyFormat::Json | TransparencyFormat::Csv) {
            v.add("format", "must be JSON (lines) or CSV for an export");
        }
        let period = Period::of(req.decided_after.as_ref(), req.decided_before.as_ref(), "decided_before");
        if let Err(NotificationError::InvalidArgument(p)) = &period {
            v.extend(p.clone());
        }
        if !v.is_empty() {
            return Err(v.into());
        }
        let period = period?;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<TransparencyChunk, Status>>(2);
        let (db, cfg) = (self.db.clone(), self.cfg.clone());
        tokio::spawn(async move {
            let csv = format == TransparencyFormat::Csv;
            if csv {
                let header = match record {
                    TransparencyRecord::Notices => csv::line(&notice::COLUMNS),
                    _ => csv::line(&statement::COLUMNS),
                };
                if tx.send(Ok(TransparencyChunk { data: header.into_bytes(), records: 0 })).await.is_err() {
                    return;
                }
            }
            let mut cursor = None;
            loop {
                let batch = match super::page(&db, period, cursor.clone(), BATCH).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                let Some(last) = batch.last() else { return };
                cursor = Some((last.row.decided_at, last.row.request_id.clone()));
                let (mut data, mut records) = (String::new(), 0u32);
                for d in &batch {
                    match record {
                        TransparencyRecord::Notices => {
                            let n = notice::notice(d, &cfg);
                            if csv {
                                notice::to_csv_rows(&n).iter().for_each(|row| data.push_str(&csv::line(row)));
                            } else {
                                data.push_str(&n.to_string());
                                data.push('\n');
                            }
                            records += 1;
                        }
                        _ => {
                            for s in statement::statements(d, &cfg) {
                                if csv {
                                    data.push_str(&csv::line(&statement::to_csv_row(&s, &d.row.jurisdiction)));
                                } else {
                                    data.push_str(&statement::to_json(&s, &d.row.jurisdiction).to_string());
                                    data.push('\n');
                                }
                                records += 1;
                            }
                        }
                    }
                }
                if records > 0 && tx.send(Ok(TransparencyChunk { data: data.into_bytes(), records })).await.is_err() {
                    return; // the caller went away
                }
                if (batch.len() as u64) < BATCH {
                    return;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    pub async fn report(&self, principal: &Principal, req: GetTransparencyReportRequest) -> Result<TransparencyReport> {
        auth::require_role(principal, &[Role::Admin])?;
        let mut v = FieldViolations::new();
        let format = TransparencyFormat::try_from(req.format).unwrap_or(TransparencyFormat::Unspecified);
        if format == TransparencyFormat::Unspecified {
            v.add("format", "must be JSON, CSV or SVG");
        }
        let period = Period::of(req.decided_after.as_ref(), req.decided_before.as_ref(), "decided_before");
        if let Err(NotificationError::InvalidArgument(p)) = &period {
            v.extend(p.clone());
        }
        if !v.is_empty() {
            return Err(v.into());
        }
        let period = period?;
        let decided = super::all(&self.db, period).await?;
        let r = report::Report::of(period, &decided);
        let (content_type, document) = match format {
            TransparencyFormat::Csv => ("text/csv", r.to_csv()),
            TransparencyFormat::Svg => ("image/svg+xml", r.to_svg()?),
            _ => ("application/json", serde_json::to_string_pretty(&r.to_json()).map_err(anyhow::Error::from)?),
        };
        Ok(TransparencyReport {
            content_type: content_type.into(),
            document: document.into_bytes(),
            requests: r.requests() as u32,
        })
    }
}
