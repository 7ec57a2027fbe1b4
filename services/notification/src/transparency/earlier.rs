//! Decisions notified before transparency records existed: at start-up, each DECIDED
//! notification without a record gets one from the event kept with the notification (its
//! structured fields only, as for a new decision). What those events did not carry stays
//! unknown: the receipt time (so they count in no time to decision), keywords, the agency's name
//! (the notice's sender is withheld) and the content's address (its locator is withheld).

use crs_platform::time::timestamp_from_millis;
use crs_proto::common::{
    Category, DecisionGround, ItemDecision, ItemOutcome, LegalInstrument, NoActionReason, SlaDeadline, Submission,
};
use crs_proto::notification::{NotificationKind, NotifyRequest};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::Value;

use crate::entities::{notification, transparency_record};

const BATCH: u64 = 500;

/// A wire enum value from the short name the event kept (`GOVERNMENT_ORDER`), or 0.
fn named<E>(prefix: &str, v: &Value, parse: fn(&str) -> Option<E>) -> i32
where
    E: Into<i32>,
{
    v.as_str().and_then(|s| parse(&format!("{prefix}{s}"))).map(Into::into).unwrap_or(0)
}

/// The DECIDED event as the notification kept it (`service::record`), or `None` when it holds no
/// decisions (events from before that shape).
fn event(n: &notification::Model) -> Option<NotifyRequest> {
    let v: Value = serde_json::from_str(&n.payload).ok()?;
    let decisions: Vec<ItemDecision> = v["decisions"]
        .as_array()?
        .iter()
        .map(|d| ItemDecision {
            item_index: d["item_index"].as_u64().unwrap_or(0) as u32,
            outcome: named("ITEM_OUTCOME_", &d["outcome"], ItemOutcome::from_str_name),
            no_action_reason: named("NO_ACTION_REASON_", &d["no_action_reason"], NoActionReason::from_str_name),
            ground: d["ground"].as_i64().and_then(|g| DecisionGround::try_from(g as i32).ok()).map_or(0, Into::into),
            territorial_scope: d["territorial_scope"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            // Only whether a policy was cited is kept, never its words.
            platform_policy: if d["platform_policy"].as_str().is_some_and(|p| !p.trim().is_empty()) {
                "cited".into()
            } else {
                String::new()
            },
            ..Default::default()
        })
        .collect();
    if decisions.is_empty() {
        return None;
    }
    Some(NotifyRequest {
        kind: NotificationKind::Decided as i32,
        submission: Some(Submission {
            request_id: n.request_id.clone(),
            agency_id: n.agency_id.clone(),
            jurisdiction: v["jurisdiction"].as_str().unwrap_or_default().to_owned(),
            legal_instrument: named("LEGAL_INSTRUMENT_", &v["legal_instrument"], LegalInstrument::from_str_name),
            category: named("CATEGORY_", &v["category"], Category::from_str_name),
            ..Default::default()
        }),
        decisions,
        deadline: v["deadline_due_at_ms"]
            .as_i64()
            .map(|due| SlaDeadline { due_at: Some(timestamp_from_millis(due)), ..Default::default() }),
        ..Default::default()
    })
}

/// Records every DECIDED notification that has no transparency record yet; returns how many.
pub async fn record_earlier_decisions(db: &DatabaseConnection) -> anyhow::Result<u64> {
    let (mut recorded, mut after): (u64, Option<(i64, String)>) = (0, None);
    loop {
        let mut cond = Condition::all().add(notification::Column::Kind.eq(NotificationKind::Decided as i32)).add(
            notification::Column::RequestId.not_in_subquery(
                Query::select()
                    .column(transparency_record::Column::RequestId)
                    .from(transparency_record::Entity)
                    .to_owned(),
            ),
        );
        if let Some((at, id)) = &after {
            cond = cond.add(
                Condition::any().add(notification::Column::CreatedAt.gt(*at)).add(
                    Condition::all()
                        .add(notification::Column::CreatedAt.eq(*at))
                        .add(notification::Column::Id.gt(id.clone())),
                ),
            );
        }
        let batch = notification::Entity::find()
            .filter(cond)
            .order_by_asc(notification::Column::CreatedAt)
            .order_by_asc(notification::Column::Id)
            .limit(BATCH)
            .all(db)
            .await?;
        for n in &batch {
            // The decision took effect shortly before the notification was recorded.
            if let Some(req) = event(n) {
                super::record(db, &super::decided_of(&n.id, &req, n.created_at)).await?;
                recorded += 1;
            }
        }
        match batch.last() {
            Some(last) if batch.len() as u64 == BATCH => after = Some((last.created_at, last.id.clone())),
            _ => break,
        }
    }
    if recorded > 0 {
        tracing::info!(recorded, "transparency records made for decisions notified before they existed");
    }
    Ok(recorded)
}
