//! The agency's history of status changes: recorded with each change, and read back in commit
//! order by `WatchRequests` (`crs_platform::db::commit_order`), without any lock that writers of
//! one agency wait on: each event carries the id of the transaction that wrote it (`txid`).

pub(crate) use crs_platform::db::commit_order::{Position, horizon, readable_after};
use crs_proto::common::RequestStatus;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};

use crate::entities::{request, status_event};
use crate::service::Result;

/// Appends a status event about `row` to its agency's history, inside the caller's transaction.
pub(crate) async fn record_event<C: ConnectionTrait>(
    conn: &C,
    row: &request::Model,
    status: RequestStatus,
    note: &str,
) -> Result<()> {
    status_event::ActiveModel {
        agency_id: Set(row.agency_id.clone()),
        request_id: Set(row.id.clone()),
        status: Set(status as i32),
        note: Set(note.to_owned()),
        occurred_at: Set(row.status_at),
        agency_seq: Set(0),
        // `txid` is left to the column's default: the writing transaction's id (see the migration
        // `EventsTakeTheirTransactionId`).
        ..Default::default()
    }
    .insert(conn)
    .await?;
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
