//! Transparency: what CRS publishes about government requests and what was done with them.
//!
//! When a decision is recorded ([`record`]), the request leaves one row of structured fields only
//! (jurisdiction, instrument, category, keywords, times, and per item its outcome, ground, scope
//! and a locator cut down to the host). Nothing free-text is kept there: descriptions,
//! justifications, legal grounds and explanations as typed, references, issuing authorities and
//! full URLs (which may name the content's owner) never reach the table, so no export can leak
//! them. Every published text is written from those fields and the operator's configuration:
//!
//! - [`statement`]: one EU DSA Transparency Database statement of reasons per item restricted;
//! - [`notice`]: one Lumen-style notice per decided request;
//! - [`report`]: counts, shares and times of a period, as JSON, CSV or an SVG chart.

pub mod csv;
pub mod earlier;
pub mod notice;
pub mod report;
pub mod service;
pub mod statement;

use crs_platform::time::millis_from_timestamp;
use crs_proto::ShortName;
use crs_proto::common::{DecisionGround, ItemDecision, ItemOutcome, Keyword, NoActionReason, Submission};
use crs_proto::convert::short_name_of;
use crs_proto::notification::NotifyRequest;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

use crate::entities::transparency_record;
use crate::error::NotificationError;
use crs_platform::error::FieldViolations;

pub use crate::config::TransparencyConfig;
pub use service::Transparency;

/// What is kept of one decided item: structured values only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub index: u32,
    /// The outcome's short name, e.g. `RESTRICTED_IN_JURISDICTION`.
    pub outcome: String,
    /// For NO_ACTION, the reason's short name; empty otherwise.
    pub no_action_reason: String,
    /// For a restriction, the DSA ground (`DECISION_GROUND_...`); empty otherwise.
    pub ground: String,
    /// Whether the decision cites the platform's terms (beside or instead of the law).
    pub cites_terms: bool,
    /// Where a restriction applies: country codes checked to be two upper-case letters; empty for
    /// a global removal and for items not restricted.
    pub territorial_scope: Vec<String>,
    /// The content's locator with everything after the host withheld
    /// (`https://host/[REDACTED]`), or `[REDACTED]` for a platform content id.
    pub locator: String,
}

/// How a decided request ended, counted item by item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestOutcome {
    /// Every item still available was removed or restricted.
    GrantedInFull,
    /// Some items were removed or restricted, others left.
    GrantedInPart,
    /// No item was removed or restricted; at least one was left.
    Refused,
    /// Every item was already unavailable: nothing to grant or refuse.
    AlreadyUnavailable,
}

impl RequestOutcome {
    pub const ALL: [RequestOutcome; 4] = [
        RequestOutcome::GrantedInFull,
        RequestOutcome::GrantedInPart,
        RequestOutcome::Refused,
        RequestOutcome::AlreadyUnavailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RequestOutcome::GrantedInFull => "GRANTED_IN_FULL",
            RequestOutcome::GrantedInPart => "GRANTED_IN_PART",
            RequestOutcome::Refused => "REFUSED",
            RequestOutcome::AlreadyUnavailable => "ALREADY_UNAVAILABLE",
        }
    }

    pub fn of(items: &[ItemRecord]) -> RequestOutcome {
        let acted = items.iter().filter(|i| i.restricts()).count();
        let left = items.iter().filter(|i| i.outcome == ItemOutcome::NoAction.short_name()).count();
        match (acted, left) {
            (0, 0) => RequestOutcome::AlreadyUnavailable,
            (0, _) => RequestOutcome::Refused,
            (_, 0) => RequestOutcome::GrantedInFull,
            _ => RequestOutcome::GrantedInPart,
        }
    }
}

impl ItemRecord {
    pub fn restricts(&self) -> bool {
        self.removed_globally() || self.outcome == ItemOutcome::RestrictedInJurisdiction.short_name()
    }

    pub fn removed_globally(&self) -> bool {
        self.outcome == ItemOutcome::RemovedGlobally.short_name()
    }
}

/// A decided request as the transparency records see it.
#[derive(Debug, Clone)]
pub struct Decided {
    pub row: transparency_record::Model,
    pub keywords: Vec<String>,
    pub items: Vec<ItemRecord>,
}

impl Decided {
    pub fn from_row(row: transparency_record::Model) -> Result<Decided, NotificationError> {
        let keywords = serde_json::from_str(&row.keywords)
            .map_err(|e| anyhow::anyhow!("transparency record {}: keywords: {e}", row.request_id))?;
        let items = serde_json::from_str(&row.items)
            .map_err(|e| anyhow::anyhow!("transparency record {}: items: {e}", row.request_id))?;
        Ok(Decided { row, keywords, items })
    }

    pub fn outcome(&self) -> RequestOutcome {
        RequestOutcome::of(&self.items)
    }
}

/// A country code as published: two upper-case ASCII letters, or nothing.
fn country(code: &str) -> Option<String> {
    let code = code.trim();
    (code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())).then(|| code.to_owned())
}

/// The content's locator with the path, query and fragment withheld: they carry account names
/// and post ids that identify the content's owner. The host says which service the content was on.
pub fn redacted_locator(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            format!("{}://{}/{}", u.scheme(), u.host_str().unwrap_or_default(), REDACTED)
        }
        _ => REDACTED.to_owned(),
    }
}

/// Lumen's mark for withheld personal data.
pub const REDACTED: &str = "[REDACTED]";

fn item_record(d: &ItemDecision, s: &Submission) -> ItemRecord {
    let item = s.items.iter().find(|i| i.index == d.item_index).or_else(|| s.items.get(d.item_index as usize));
    let outcome = ItemOutcome::try_from(d.outcome).unwrap_or(ItemOutcome::Unspecified);
    let restricts = matches!(outcome, ItemOutcome::RemovedGlobally | ItemOutcome::RestrictedInJurisdiction);
    let territorial_scope = if outcome == ItemOutcome::RestrictedInJurisdiction {
        let scope: Vec<String> = d.territorial_scope.iter().filter_map(|c| country(c)).collect();
        if scope.is_empty() { country(&s.jurisdiction).into_iter().collect() } else { scope }
    } else {
        Vec::new()
    };
    ItemRecord {
        index: d.item_index,
        outcome: outcome.short_name().to_owned(),
        no_action_reason: if outcome == ItemOutcome::NoAction {
            short_name_of::<NoActionReason>(d.no_action_reason).to_owned()
        } else {
            String::new()
        },
        ground: match DecisionGround::try_from(d.ground) {
            Ok(g) if restricts && g != DecisionGround::Unspecified => g.as_str_name().to_owned(),
            _ => String::new(),
        },
        cites_terms: d.ground == DecisionGround::IncompatibleContent as i32 || !d.platform_policy.trim().is_empty(),
        territorial_scope,
        locator: match item {
            Some(i) if !i.url.is_empty() => redacted_locator(&i.url),
            _ => REDACTED.to_owned(),
        },
    }
}

/// What a DECIDED event leaves for transparency, before it is stored.
pub fn decided_of(notification_id: &str, req: &NotifyRequest, recorded_at: i64) -> Decided {
    let s = req.submission.clone().unwrap_or_default();
    let keywords: Vec<String> = s
        .keywords
        .iter()
        .filter_map(|k| Keyword::try_from(*k).ok())
        .filter(|k| *k != Keyword::Unspecified)
        .map(|k| k.as_str_name().to_owned())
        .collect();
    let items: Vec<ItemRecord> = req.decisions.iter().map(|d| item_record(d, &s)).collect();
    let deadline = req.deadline.as_ref();
    let row = transparency_record::Model {
        request_id: s.request_id.clone(),
        notification_id: notification_id.to_owned(),
        agency_name: s.agency_name.trim().chars().take(statement::MAX_SOURCE_IDENTITY).collect(),
        jurisdiction: country(&s.jurisdiction).unwrap_or_default(),
        legal_instrument: s.legal_instrument,
        category: s.category,
        keywords: serde_json::to_string(&keywords).unwrap_or_else(|_| "[]".into()),
        // The citation comes from the operator's SLA policy file, not from the agency.
        legal_reference: deadline.map(|d| d.legal_reference.trim().chars().take(200).collect()).unwrap_or_default(),
        received_at: s.received_at.as_ref().map(millis_from_timestamp),
        decided_at: req.decided_at.as_ref().map(millis_from_timestamp).unwrap_or(recorded_at),
        due_at: deadline.and_then(|d| d.due_at.as_ref()).map(millis_from_timestamp),
        items: serde_json::to_string(&items).unwrap_or_else(|_| "[]".into()),
        recorded_at,
    };
    Decided { row, keywords, items }
}

/// Records a decided request's transparency row in the transaction that records its
/// notification. A request decided again (a later decision replacing the first) keeps the latest.
pub async fn record<C: ConnectionTrait>(conn: &C, decided: &Decided) -> Result<(), NotificationError> {
    use transparency_record::Column as C;
    transparency_record::Entity::insert(transparency_record::ActiveModel::from(decided.row.clone()))
        .on_conflict(
            OnConflict::column(C::RequestId)
                .update_columns([
                    C::NotificationId,
                    C::AgencyName,
                    C::Jurisdiction,
                    C::LegalInstrument,
                    C::Category,
                    C::Keywords,
                    C::LegalReference,
                    C::ReceivedAt,
                    C::DecidedAt,
                    C::DueAt,
                    C::Items,
                    C::RecordedAt,
                ])
                .to_owned(),
        )
        .exec(conn)
        .await?;
    Ok(())
}

/// A time range of decisions, `[after, before)` in Unix milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    pub after: Option<i64>,
    pub before: Option<i64>,
}

impl Period {
    /// The range of a request, refused (naming `before_field`) when it ends before it starts.
    pub fn of(
        after: Option<&prost_types::Timestamp>,
        before: Option<&prost_types::Timestamp>,
        before_field: &str,
    ) -> Result<Period, NotificationError> {
        let mut v = FieldViolations::new();
        for (field, ts) in [("decided_after", after), (before_field, before)] {
            if let Some(ts) = ts
                && !in_range(ts)
            {
                v.add(field, "must be a time between years 1 and 9999 with nanos in [0, 999999999]");
            }
        }
        v.into_result()?;
        let period = Period { after: after.map(millis_from_timestamp), before: before.map(millis_from_timestamp) };
        if let (Some(a), Some(b)) = (period.after, period.before)
            && b <= a
        {
            return Err(NotificationError::invalid(before_field, "must be later than decided_after"));
        }
        Ok(period)
    }

    pub fn describe(&self) -> (Option<String>, Option<String>) {
        let show = |ms: i64| crs_platform::time::datetime_from_millis(ms).to_rfc3339();
        (self.after.map(show), self.before.map(show))
    }

    fn condition(&self) -> Condition {
        let mut c = Condition::all();
        if let Some(a) = self.after {
            c = c.add(transparency_record::Column::DecidedAt.gte(a));
        }
        if let Some(b) = self.before {
            c = c.add(transparency_record::Column::DecidedAt.lt(b));
        }
        c
    }
}

/// Whether `ts` is a valid protobuf Timestamp (0001-01-01 to 9999-12-31), so that it converts to
/// milliseconds and back to a date without overflowing.
fn in_range(ts: &prost_types::Timestamp) -> bool {
    (-62_135_596_800..=253_402_300_799).contains(&ts.seconds) && (0..1_000_000_000).contains(&ts.nanos)
}

/// The decided requests of `period` after `position` (decided_at, request_id), oldest decision
/// first, at most `limit`.
pub async fn page<C: ConnectionTrait>(
    conn: &C,
    period: Period,
    position: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<Decided>, NotificationError> {
    use transparency_record::Column as C;
    let mut cond = period.condition();
    if let Some((at, id)) = position {
        cond = cond.add(
            Condition::any()
                .add(C::DecidedAt.gt(at))
                .add(Condition::all().add(C::DecidedAt.eq(at)).add(C::RequestId.gt(id))),
        );
    }
    transparency_record::Entity::find()
        .filter(cond)
        .order_by_asc(C::DecidedAt)
        .order_by_asc(C::RequestId)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(Decided::from_row)
        .collect()
}

/// Every decided request of `period`, read in pages.
pub async fn all<C: ConnectionTrait>(conn: &C, period: Period) -> Result<Vec<Decided>, NotificationError> {
    let mut out: Vec<Decided> = Vec::new();
    loop {
        let position = out.last().map(|d| (d.row.decided_at, d.row.request_id.clone()));
        let batch = page(conn, period, position, 500).await?;
        let done = batch.len() < 500;
        out.extend(batch);
        if done {
            return Ok(out);
        }
    }
}

/// A date as the DSA database and Lumen write it.
pub fn date(millis: i64) -> String {
    crs_platform::time::datetime_from_millis(millis).format("%Y-%m-%d").to_string()
}

/// A timestamp for JSON output.
pub fn rfc3339(millis: i64) -> String {
    crs_platform::time::datetime_from_millis(millis).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
