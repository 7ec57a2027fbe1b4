//! The agency's history of status changes: recorded with each change, and read back in commit
//! order by `WatchRequests` (`crs_platform::db::commit_order`), without any lock that writers of
//! one agency wait on: each event carries the id of the transaction that wrote it (`txid`).

use crs_platform::db::commit_order::{CURRENT_TXID_SQL, current_txid_value};
pub(crate) use crs_platform::db::commit_order::{Position, horizon, readable_after};
use crs_proto::common::RequestStatus;
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use crate::entities::{request, status_event};
use crate::service::Result;

/// Appends a status event about `row` to its agency's history, inside the caller's transaction.
pub(crate) async fn record_event<C: ConnectionTrait>(
    conn: &C,
    row: &request::Model,
    status: RequestStatus,
    note: &str,
) -> Result<()> {
    record_events(conn, &[(row, status, note)]).await?;
    Ok(())
}

/// Events per `INSERT` on SQLite (7 values each, within its bound on parameters).
const EVENT_ROWS_PER_INSERT: usize = 1000;

/// Appends status events (the request, its new status, the note) inside the caller's
/// transaction, numbered in the order given: on PostgreSQL in one statement whose text never changes
/// ([`crs_platform::db::arrays`]), on SQLite a statement per thousand. Each carries the id of
/// that transaction, taken by the statement itself.
pub(crate) async fn record_events<C: ConnectionTrait>(
    conn: &C,
    events: &[(&request::Model, RequestStatus, &str)],
) -> std::result::Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    let backend = conn.get_database_backend();
    if backend == DbBackend::Postgres {
        use crs_platform::db::arrays;
        let values = vec![
            arrays::texts(events.iter().map(|(row, _, _)| row.agency_id.clone())),
            arrays::texts(events.iter().map(|(row, _, _)| row.id.clone())),
            arrays::ints(events.iter().map(|(_, status, _)| *status as i32)),
            arrays::texts(events.iter().map(|(_, _, note)| *note)),
            arrays::bigints(events.iter().map(|(row, _, _)| row.status_at)),
        ];
        let sql = format!(
            "INSERT INTO status_events (agency_id, request_id, status, note, occurred_at, agency_seq, txid) \
             SELECT agency_id, request_id, status, note, occurred_at, 0, {CURRENT_TXID_SQL} \
             FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::text[], $5::int8[]) WITH ORDINALITY \
             AS batch (agency_id, request_id, status, note, occurred_at, position) ORDER BY position"
        );
        conn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
        return Ok(());
    }
    use status_event::Column;
    for chunk in events.chunks(EVENT_ROWS_PER_INSERT) {
        let mut insert = Query::insert();
        insert.into_table(status_event::Entity).columns([
            Column::AgencyId,
            Column::RequestId,
            Column::Status,
            Column::Note,
            Column::OccurredAt,
            Column::AgencySeq,
            Column::Txid,
        ]);
        for (row, status, note) in chunk {
            insert.values_panic([
                Expr::val(row.agency_id.clone()),
                Expr::val(row.id.clone()),
                Expr::val(*status as i32),
                Expr::val(note.to_string()),
                Expr::val(row.status_at),
                Expr::val(0i64),
                current_txid_value(backend),
            ]);
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// The position of `event` in its agency's history.
pub(crate) fn position_of(event: &status_event::Model) -> Position {
    Position { txid: event.txid, seq: event.seq }
}

/// The stream's cursor for a position.
pub(crate) fn cursor(p: Position) -> String {
    format!("{}.{}", p.txid, p.seq)
}

/// A cursor this stream gave out; `None` for anything else, or one of the form cursors had
/// before (a bare per-agency number), which the caller resolves.
pub(crate) fn parse_cursor(cursor: &str) -> Option<Position> {
    let (txid, seq) = cursor.split_once('.')?;
    let (txid, seq) = (txid.parse().ok()?, seq.parse().ok()?);
    (txid >= 0 && seq >= 0).then_some(Position { txid, seq })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_order_by_transaction_first() {
        let p = Position { txid: 812, seq: 40 };
        assert_eq!(parse_cursor(&cursor(p)), Some(p));
        assert!(Position { txid: 811, seq: 90 } < p, "an earlier transaction's event comes first whatever its seq");
        for bad in ["", "12", "a.b", "1.", ".1", "-1.3", "1.2.3"] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }
}
