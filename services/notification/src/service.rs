//! Notification's RPC handlers: recording events with their deliveries, listing them, and the
//! admin's retry; subscriptions and the stream have modules of their own.

use std::collections::HashMap;

use crs_platform::auth::{self, Principal, Role};
use crs_platform::db::arrays::one_of;
use crs_platform::error::FieldViolations;
use crs_platform::paging;
use crs_platform::shared_txn::{self, SharedTransactions};
use crs_platform::time::{millis_from_timestamp, now_millis, timestamp_from_millis};
use crs_proto::ShortName;
use crs_proto::common::{Category, ItemOutcome, LegalInstrument, NoActionReason};
use crs_proto::convert::short_name_of;
use crs_proto::notification::notification_internal_service_server::NotificationInternalService;
use crs_proto::notification::notification_service_server::NotificationService;
use crs_proto::notification::*;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement, TransactionTrait,
};
use tonic::{Request, Response, Status};

use crate::channels::Channels;
use crate::config::AppealConfig;
use crate::entities::{delivery, message, notification, subscription};
use crate::error::NotificationError;
use crate::messages::{self, Event};
use crate::scheduler::Scheduler;
use crate::stream::{EventStream, Stream};
use crate::subscriptions::{Source, Subscriptions};
use crate::transparency::{self, Transparency};

type Result<T> = std::result::Result<T, NotificationError>;

/// What became of one `Notify`.
#[derive(Default)]
struct Recorded {
    id: String,
    replayed: bool,
    /// Whether a message went on the Subscribe stream, whose readers are woken after the commit.
    published: bool,
    deliveries: usize,
    request_id: String,
    /// Its messages and their deliveries, written with those of the notifications sharing its
    /// transaction.
    message_rows: Vec<message::Model>,
    delivery_rows: Vec<delivery::Model>,
}

/// The most rows inserted by one statement on SQLite (messages have 10 values each, deliveries
/// 16: within its bound on parameters).
const ROWS_PER_INSERT: usize = 1000;

/// Inserts the messages and deliveries of the notifications sharing a transaction: on PostgreSQL
/// one statement each whose text never changes (`crs_platform::db::arrays`), however many
/// notifications share it; on SQLite a statement per thousand rows.
async fn insert_records(
    txn: &DatabaseTransaction,
    messages: Vec<message::Model>,
    deliveries: Vec<delivery::Model>,
) -> std::result::Result<(), sea_orm::DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        let messages: Vec<message::ActiveModel> = messages.into_iter().map(Into::into).collect();
        for chunk in messages.chunks(ROWS_PER_INSERT) {
            message::Entity::insert_many(chunk.to_vec()).exec_without_returning(txn).await?;
        }
        let deliveries: Vec<delivery::ActiveModel> = deliveries.into_iter().map(Into::into).collect();
        for chunk in deliveries.chunks(ROWS_PER_INSERT) {
            delivery::Entity::insert_many(chunk.to_vec()).exec_without_returning(txn).await?;
        }
        return Ok(());
    }
    use crs_platform::db::arrays;
    // A nullable number travels beside a flag saying whether the row has one (an array holds
    // no NULL); a trace context as '' when there is none.
    fn optional(values: impl Iterator<Item = Option<i64>> + Clone) -> [sea_orm::Value; 2] {
        [arrays::flags(values.clone().map(|v| v.is_some())), arrays::bigints(values.map(Option::unwrap_or_default))]
    }
    if !messages.is_empty() {
        let m = &messages;
        let [has_seq, seq] = optional(m.iter().map(|m| m.stream_seq));
        let values = vec![
            arrays::texts(m.iter().map(|m| m.notification_id.clone())),
            arrays::ints(m.iter().map(|m| m.audience)),
            arrays::ints(m.iter().map(|m| m.kind)),
            arrays::texts(m.iter().map(|m| m.request_id.clone())),
            arrays::texts(m.iter().map(|m| m.agency_id.clone())),
            arrays::texts(m.iter().map(|m| m.schema.clone())),
            arrays::texts(m.iter().map(|m| m.payload.clone())),
            has_seq,
            seq,
            arrays::bigints(m.iter().map(|m| m.stream_txid)),
            arrays::bigints(m.iter().map(|m| m.created_at)),
        ];
        txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, INSERT_MESSAGES, values)).await?;
    }
    if !deliveries.is_empty() {
        let d = &deliveries;
        let [has_delivered, delivered] = optional(d.iter().map(|d| d.delivered_at));
        let [has_next, next] = optional(d.iter().map(|d| d.next_attempt_at));
        let [has_lock, lock] = optional(d.iter().map(|d| d.locked_until));
        let values = vec![
            arrays::texts(d.iter().map(|d| d.id.clone())),
            arrays::texts(d.iter().map(|d| d.notification_id.clone())),
            arrays::ints(d.iter().map(|d| d.audience)),
            arrays::ints(d.iter().map(|d| d.channel)),
            arrays::texts(d.iter().map(|d| d.subscription_id.clone())),
            arrays::texts(d.iter().map(|d| d.endpoint.clone())),
            arrays::ints(d.iter().map(|d| d.state)),
            arrays::ints(d.iter().map(|d| d.attempts)),
            has_delivered,
            delivered,
            arrays::texts(d.iter().map(|d| d.last_error.clone())),
            arrays::texts(d.iter().map(|d| d.failure.clone())),
            has_next,
            next,
            has_lock,
            lock,
            arrays::bigints(d.iter().map(|d| d.retry_from)),
            arrays::texts(d.iter().map(|d| d.trace_context.clone().unwrap_or_default())),
            arrays::bigints(d.iter().map(|d| d.created_at)),
        ];
        txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, INSERT_DELIVERIES, values)).await?;
    }
    Ok(())
}

/// Messages on PostgreSQL, a column's values per array.
const INSERT_MESSAGES: &str = "INSERT INTO messages (notification_id, audience, kind, request_id, agency_id, \
     schema, payload, stream_seq, stream_txid, created_at) \
     SELECT notification_id, audience, kind, request_id, agency_id, schema, payload, \
     CASE WHEN has_seq THEN seq END, stream_txid, created_at \
     FROM UNNEST($1::text[], $2::int4[], $3::int4[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[], \
     $9::int8[], $10::int8[], $11::int8[]) \
     AS batch (notification_id, audience, kind, request_id, agency_id, schema, payload, has_seq, seq, \
     stream_txid, created_at)";

/// Deliveries on PostgreSQL, a column's values per array.
const INSERT_DELIVERIES: &str = "INSERT INTO deliveries (id, notification_id, audience, channel, subscription_id, \
     endpoint, state, attempts, delivered_at, last_error, failure, next_attempt_at, locked_until, retry_from, \
     trace_context, created_at) \
     SELECT id, notification_id, audience, channel, subscription_id, endpoint, state, attempts, \
     CASE WHEN has_delivered THEN delivered END, last_error, failure, CASE WHEN has_next THEN next END, \
     CASE WHEN has_lock THEN lock END, retry_from, NULLIF(trace_context, ''), created_at \
     FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int4[], $5::text[], $6::text[], $7::int4[], $8::int4[], \
     $9::bool[], $10::int8[], $11::text[], $12::text[], $13::bool[], $14::int8[], $15::bool[], $16::int8[], \
     $17::int8[], $18::text[], $19::int8[]) \
     AS batch (id, notification_id, audience, channel, subscription_id, endpoint, state, attempts, has_delivered, \
     delivered, last_error, failure, has_next, next, has_lock, lock, retry_from, trace_context, created_at)";

#[derive(Clone)]
pub struct Notifications {
    db: DatabaseConnection,
    channels: Channels,
    subscriptions: Subscriptions,
    scheduler: Scheduler,
    stream: Stream,
    appeal: AppealConfig,
    transparency: Transparency,
    /// Notifications relayed together are recorded together (see `crs_platform::shared_txn`).
    notices: SharedTransactions<Recorded, NotificationError>,
}

impl Notifications {
    pub fn new(
        db: DatabaseConnection,
        channels: Channels,
        subscriptions: Subscriptions,
        scheduler: Scheduler,
        stream: Stream,
        appeal: AppealConfig,
        transparency: Transparency,
    ) -> Self {
        // Nothing in the transaction reads the messages or deliveries back: they go in one
        // statement each.
        let notices = SharedTransactions::start_deferring(db.clone(), |txn, recorded: &mut [Recorded]| {
            let messages: Vec<message::Model> =
                recorded.iter_mut().flat_map(|r| std::mem::take(&mut r.message_rows)).collect();
            let deliveries: Vec<delivery::Model> =
                recorded.iter_mut().flat_map(|r| std::mem::take(&mut r.delivery_rows)).collect();
            Box::pin(async move { Ok(insert_records(txn, messages, deliveries).await?) })
        });
        Self { db, channels, subscriptions, scheduler, stream, appeal, transparency, notices }
    }

    /// Records the event, each concerned audience's message, and a delivery per subscription of
    /// that audience, in one transaction (shared with other notifications relayed at the same
    /// time); the scheduler and the stream take it from there.
    async fn notify(&self, req: NotifyRequest) -> Result<NotifyResponse> {
        let mut v = FieldViolations::new();
        if req.event_id.is_empty() {
            v.add("event_id", "is required");
        }
        let kind = NotificationKind::try_from(req.kind).unwrap_or(NotificationKind::Unspecified);
        if kind == NotificationKind::Unspecified {
            v.add("kind", "must be a known notification kind");
        }
        match &req.submission {
            Some(s) if !s.request_id.is_empty() => {}
            _ => v.add("submission.request_id", "is required"),
        }
        v.into_result()?;
        let this = self.clone();
        let recorded = self
            .notices
            .run(shared_txn::handoff(req.event_id.clone(), move |txn, first_time| {
                let (this, req) = (this.clone(), req.clone());
                Box::pin(async move { this.record_notification(txn, first_time, kind, &req).await })
            }))
            .await?;
        if !recorded.replayed {
            self.scheduler.wake();
            if recorded.published {
                self.stream.published();
            }
            tracing::info!(notification_id = %recorded.id, kind = kind.as_str_name(), request_id = %recorded.request_id, deliveries = recorded.deliveries, "notification recorded");
        }
        Ok(NotifyResponse { notification_id: recorded.id, replayed: recorded.replayed })
    }

    /// Records the event inside `txn`, leaving its messages and their deliveries to be written
    /// before the commit; a replayed event (not `first_time`) answers with the notification
    /// recorded the first time.
    async fn record_notification(
        &self,
        txn: &DatabaseTransaction,
        first_time: bool,
        kind: NotificationKind,
        req: &NotifyRequest,
    ) -> Result<Recorded> {
        let submission = req.submission.clone().unwrap_or_default();
        if !first_time {
            let existing = notification::Entity::find()
                .filter(notification::Column::EventId.eq(req.event_id.clone()))
                .one(txn)
                .await?
                .ok_or_else(|| NotificationError::NotFound(format!("notification for event {}", req.event_id)))?;
            return Ok(Recorded { id: existing.id, replayed: true, ..Default::default() });
        }
        let now = now_millis();
        let id = uuid::Uuid::now_v7().to_string();
        // A request merged into another's case is told of the decision; everyone else learns of
        // it once, from that case (one statement of reasons per decision on a piece of content).
        let merged = kind == NotificationKind::Decided && !req.decided_in_case.is_empty();
        let audiences: Vec<Audience> =
            messages::audiences(kind).iter().copied().filter(|a| !merged || *a == Audience::Agency).collect();
        let backend = txn.get_database_backend();
        let mut writes = vec![
            notification::Entity::insert(notification::ActiveModel::from(notification::Model {
                id: id.clone(),
                event_id: req.event_id.clone(),
                kind: kind as i32,
                request_id: submission.request_id.clone(),
                agency_id: submission.agency_id.clone(),
                payload: record(kind, req).to_string(),
                created_at: now,
            }))
            .build(backend),
        ];
        // The agency's subscriptions are read below, in a statement of their own: its snapshot
        // is taken after the lock, so it sees a subscription committed before the lock was had.
        if audiences.contains(&Audience::Agency) {
            writes.extend(crate::subscriptions::holding_agency_subscriptions(backend, &submission.agency_id));
        }
        crs_platform::db::in_one_round_trip(txn, writes).await?;
        if kind == NotificationKind::Decided && !merged {
            transparency::record(txn, &transparency::decided_of(&id, req, now)).await?;
        }

        let event = Event { notification_id: &id, kind, request: req, submission: &submission, created_at: now };
        let trace_context = crs_platform::telemetry::current_traceparent();
        let (mut deliveries, mut published) = (0, false);
        let (mut messages, mut rows) = (Vec::new(), Vec::new());
        for audience in &audiences {
            let subs = self.subscriptions_of(txn, *audience, &submission.agency_id).await?;
            let Some(msg) = messages::message(*audience, &event, &self.appeal, self.transparency.config()) else {
                continue;
            };
            if subs.is_empty() {
                if *audience != Audience::Agency {
                    tracing::warn!(audience = audience.as_str_name(), request_id = %submission.request_id, "no subscription; not delivered");
                    continue;
                }
                // Recorded all the same: the agency's subscription may still be on its way from
                // intake, and gets the message when it arrives (`Subscriptions::put`).
                tracing::info!(request_id = %submission.request_id, agency_id = %submission.agency_id, "the agency has no subscription yet; message kept for it");
            }
            let on_stream =
                subs.iter().any(|s| self.channels.get(s.channel).is_some_and(|c| c.complete_when_recorded()));
            let (stream_txid, stream_seq) = match on_stream {
                true => {
                    let p = crate::stream::next_position(txn).await?;
                    (p.txid, Some(p.seq))
                }
                false => (0, None),
            };
            published |= on_stream;
            messages.push(message::Model {
                notification_id: id.clone(),
                audience: *audience as i32,
                kind: kind as i32,
                request_id: submission.request_id.clone(),
                agency_id: submission.agency_id.clone(),
                schema: msg.schema,
                payload: msg.payload,
                stream_seq,
                stream_txid,
                created_at: now,
            });
            for sub in subs {
                let complete = self.channels.get(sub.channel).is_some_and(|c| c.complete_when_recorded());
                rows.push(delivery::Model::new(&id, *audience as i32, &sub, complete, now, trace_context.clone()));
                deliveries += 1;
            }
        }
        Ok(Recorded {
            id,
            replayed: false,
            published,
            deliveries,
            request_id: submission.request_id,
            message_rows: messages,
            delivery_rows: rows,
        })
    }

    /// The subscriptions an audience's message goes to, on channels this deployment has: an
    /// agency is told at its own subscriptions, and on the stream of every agency's.
    async fn subscriptions_of<C: ConnectionTrait>(
        &self,
        conn: &C,
        audience: Audience,
        agency_id: &str,
    ) -> Result<Vec<subscription::Model>> {
        let scope = if audience == Audience::Agency {
            Condition::any()
                .add(subscription::Column::AgencyId.eq(agency_id))
                .add(subscription::Column::AgencyId.eq(""))
        } else {
            Condition::all().add(subscription::Column::AgencyId.eq(""))
        };
        Ok(subscription::Entity::find()
            .filter(subscription::Column::Audience.eq(audience as i32))
            .filter(scope)
            .all(conn)
            .await?
            .into_iter()
            .filter(|s| match self.channels.enabled(s.channel) {
                Some(_) => true,
                None => {
                    tracing::warn!(subscription_id = %s.id, channel = %crate::channels::name(s.channel), "channel not configured; not delivered");
                    false
                }
            })
            .collect())
    }

    async fn list(&self, principal: Principal, req: ListNotificationsRequest) -> Result<ListNotificationsResponse> {
        let mut cond = Condition::all();
        // An agency sees the notifications addressed to it, and of them only its own deliveries.
        let agency = match &principal {
            Principal::Agency { id } => {
                cond = cond
                    .add(notification::Column::AgencyId.eq(id.clone()))
                    .add(notification::Column::Kind.is_in(messages::agency_kinds()));
                true
            }
            // Services learn what they need through hand-offs; no service reads this list.
            p => {
                auth::require_role(p, &[Role::Reviewer, Role::SeniorReviewer, Role::Admin])?;
                false
            }
        };
        if !req.request_id.is_empty() {
            cond = cond.add(notification::Column::RequestId.eq(req.request_id.clone()));
        }
        // Oldest first; the token is the position after the last one returned.
        let filters = format!("request={};caller={}", req.request_id, principal.subject());
        if let Some(pos) = paging::decode(&req.page_token, "notifications", &filters)? {
            let bad = || NotificationError::invalid("page_token", "is not a token this service issued");
            let [at, id] = <[String; 2]>::try_from(pos).map_err(|_| bad())?;
            let at: i64 = at.parse().map_err(|_| bad())?;
            cond = cond.add(Condition::any().add(notification::Column::CreatedAt.gt(at)).add(
                Condition::all().add(notification::Column::CreatedAt.eq(at)).add(notification::Column::Id.gt(id)),
            ));
        }
        let size = paging::page_size(req.page_size);
        let rows = notification::Entity::find()
            .filter(cond)
            .order_by_asc(notification::Column::CreatedAt)
            .order_by_asc(notification::Column::Id)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > size;
        let rows: Vec<notification::Model> = rows.into_iter().take(size as usize).collect();
        // The page's deliveries in one query, not one per notification.
        let mut deliveries = delivery::Entity::find().filter(one_of(
            self.db.get_database_backend(),
            delivery::Column::NotificationId,
            rows.iter().map(|r| r.id.clone()),
        ));
        if agency {
            deliveries = deliveries.filter(delivery::Column::Audience.eq(Audience::Agency as i32));
        }
        let mut by_notification: HashMap<String, Vec<delivery::Model>> = HashMap::new();
        for d in deliveries
            .order_by_asc(delivery::Column::Audience)
            .order_by_asc(delivery::Column::Channel)
            .order_by_asc(delivery::Column::Id)
            .all(&self.db)
            .await?
        {
            by_notification.entry(d.notification_id.clone()).or_default().push(d);
        }
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode("notifications", &filters, &[&last.created_at.to_string(), &last.id]),
            _ => String::new(),
        };
        let notifications = rows
            .into_iter()
            .map(|row| Notification {
                deliveries: by_notification
                    .remove(&row.id)
                    .unwrap_or_default()
                    .iter()
                    .map(|d| to_delivery(d, agency))
                    .collect(),
                id: row.id,
                event_id: row.event_id,
                kind: row.kind,
                request_id: row.request_id,
                agency_id: row.agency_id,
                created_at: Some(timestamp_from_millis(row.created_at)),
            })
            .collect();
        Ok(ListNotificationsResponse { notifications, next_page_token })
    }

    /// An admin puts a delivery back in the queue, due now, with a fresh retry window.
    async fn retry(&self, principal: Principal, req: RetryDeliveryRequest) -> Result<Delivery> {
        auth::require_role(&principal, &[Role::Admin])?;
        if req.delivery_id.is_empty() {
            return Err(NotificationError::invalid("delivery_id", "is required"));
        }
        let now = now_millis();
        let txn = self.db.begin().await?;
        let row = delivery::Entity::find_by_id(req.delivery_id.clone())
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or_else(|| NotificationError::NotFound(format!("delivery {}", req.delivery_id)))?;
        if row.state == DeliveryState::Delivered as i32 {
            return Err(NotificationError::FailedPrecondition(format!("delivery {} was delivered", row.id)));
        }
        if row.locked_until.is_some_and(|until| until > now) {
            return Err(NotificationError::FailedPrecondition(format!(
                "an attempt at delivery {} is in flight; retry when it ends",
                row.id
            )));
        }
        let mut active: delivery::ActiveModel = row.into();
        active.state = sea_orm::Set(DeliveryState::Pending as i32);
        active.next_attempt_at = sea_orm::Set(Some(now));
        active.retry_from = sea_orm::Set(now);
        active.locked_until = sea_orm::Set(None);
        let updated = active.update(&txn).await?;
        txn.commit().await?;
        self.scheduler.wake();
        tracing::warn!(delivery_id = %updated.id, by = %principal.subject(), "delivery put back for another attempt");
        Ok(to_delivery(&updated, false))
    }
}

/// A delivery as a caller sees it: agencies get the summary of a failure, not its detail.
fn to_delivery(d: &delivery::Model, for_agency: bool) -> Delivery {
    Delivery {
        id: d.id.clone(),
        audience: d.audience,
        endpoint: d.endpoint.clone(),
        state: d.state,
        attempts: d.attempts.max(0) as u32,
        delivered_at: d.delivered_at.map(timestamp_from_millis),
        last_error: if for_agency { d.failure.clone() } else { d.last_error.clone() },
        channel: d.channel,
        subscription_id: d.subscription_id.clone(),
        next_attempt_at: d.next_attempt_at.map(timestamp_from_millis),
    }
}

/// The event as received, kept with the notification for admins (never sent as it is).
fn record(kind: NotificationKind, req: &NotifyRequest) -> serde_json::Value {
    let s = req.submission.clone().unwrap_or_default();
    let decisions: Vec<serde_json::Value> = req
        .decisions
        .iter()
        .map(|d| {
            serde_json::json!({
                "item_index": d.item_index,
                "outcome": short_name_of::<ItemOutcome>(d.outcome),
                "no_action_reason": short_name_of::<NoActionReason>(d.no_action_reason),
                "ground": d.ground,
                "legal_ground": d.legal_ground,
                "explanation": d.explanation,
                "territorial_scope": d.territorial_scope,
                "platform_policy": d.platform_policy,
            })
        })
        .collect();
    serde_json::json!({
        "kind": kind.short_name(),
        "request_id": s.request_id,
        "agency_id": s.agency_id,
        "jurisdiction": s.jurisdiction,
        "legal_instrument": short_name_of::<LegalInstrument>(s.legal_instrument),
        "category": short_name_of::<Category>(s.category),
        "reference": s.reference,
        "message": req.message,
        "deadline_due_at_ms": req.deadline.as_ref().and_then(|d| d.due_at.as_ref()).map(millis_from_timestamp),
        "sla_threshold_percent": (req.sla_threshold_percent > 0).then_some(req.sla_threshold_percent),
        "decisions": decisions,
    })
}

#[tonic::async_trait]
impl NotificationService for Notifications {
    async fn list_notifications(
        &self,
        request: Request<ListNotificationsRequest>,
    ) -> std::result::Result<Response<ListNotificationsResponse>, Status> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.list(principal, request.into_inner()).await?))
    }

    async fn put_subscription(
        &self,
        request: Request<PutSubscriptionRequest>,
    ) -> std::result::Result<Response<Subscription>, Status> {
        let principal = auth::principal(&request)?;
        auth::require_role(&principal, &[Role::Admin]).map_err(NotificationError::from)?;
        Ok(Response::new(self.subscriptions.put(request.into_inner(), Source::Admin).await?))
    }

    async fn list_subscriptions(
        &self,
        request: Request<ListSubscriptionsRequest>,
    ) -> std::result::Result<Response<ListSubscriptionsResponse>, Status> {
        let principal = auth::principal(&request)?;
        let subscriptions = self.subscriptions.list(&principal, request.into_inner()).await?;
        Ok(Response::new(ListSubscriptionsResponse { subscriptions }))
    }

    async fn export_statements_of_reasons(
        &self,
        request: Request<ExportStatementsOfReasonsRequest>,
    ) -> std::result::Result<Response<ExportStatementsOfReasonsResponse>, Status> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.transparency.statements_page(&principal, request.into_inner()).await?))
    }

    type ExportTransparencyRecordsStream = transparency::service::ChunkStream;

    async fn export_transparency_records(
        &self,
        request: Request<ExportTransparencyRecordsRequest>,
    ) -> std::result::Result<Response<Self::ExportTransparencyRecordsStream>, Status> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.transparency.export(&principal, request.into_inner()).await?))
    }

    async fn get_transparency_report(
        &self,
        request: Request<GetTransparencyReportRequest>,
    ) -> std::result::Result<Response<TransparencyReport>, Status> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.transparency.report(&principal, request.into_inner()).await?))
    }

    async fn retry_delivery(
        &self,
        request: Request<RetryDeliveryRequest>,
    ) -> std::result::Result<Response<Delivery>, Status> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.retry(principal, request.into_inner()).await?))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> std::result::Result<Response<Self::SubscribeStream>, Status> {
        let principal = auth::principal(&request)?;
        Ok(Response::new(self.stream.subscribe(&principal, request.into_inner()).await?))
    }
}

/// Only the services the access table lists reach these (see `crs_platform::access`).
#[tonic::async_trait]
impl NotificationInternalService for Notifications {
    async fn notify(&self, request: Request<NotifyRequest>) -> std::result::Result<Response<NotifyResponse>, Status> {
        auth::principal(&request)?;
        Ok(Response::new(Notifications::notify(self, request.into_inner()).await?))
    }

    async fn put_agency_subscription(
        &self,
        request: Request<PutSubscriptionRequest>,
    ) -> std::result::Result<Response<Subscription>, Status> {
        auth::principal(&request)?;
        let req = request.into_inner();
        if req.audience != Audience::Agency as i32 {
            return Err(NotificationError::invalid("audience", "intake sets agencies' subscriptions only").into());
        }
        Ok(Response::new(self.subscriptions.put(req, Source::Intake).await?))
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{EntityTrait, QueryOrder};
    use sea_orm_migration::MigratorTrait;

    use super::*;

    fn message_row(n: i64, stream_seq: Option<i64>) -> message::Model {
        message::Model {
            notification_id: format!("notification {n}"),
            audience: n as i32,
            kind: n as i32 + 1,
            request_id: format!("request {n}"),
            agency_id: format!("agency {n}"),
            schema: format!("schema {n}"),
            payload: format!("{{\"n\": {n}}}"),
            stream_seq,
            stream_txid: 100 + n,
            created_at: 200 + n,
        }
    }

    fn delivery_row(n: i64, optional: Option<i64>, trace_context: Option<String>) -> delivery::Model {
        delivery::Model {
            id: format!("delivery {n}"),
            notification_id: format!("notification {n}"),
            audience: n as i32,
            channel: n as i32 + 1,
            subscription_id: format!("subscription {n}"),
            endpoint: format!("https://agency.example/{n}"),
            state: n as i32 + 2,
            attempts: n as i32 + 3,
            delivered_at: optional.map(|v| v + 1),
            last_error: format!("error {n}"),
            failure: format!("failure {n}"),
            next_attempt_at: optional.map(|v| v + 2),
            locked_until: optional.map(|v| v + 3),
            retry_from: 300 + n,
            trace_context,
            created_at: 400 + n,
        }
    }

    /// The messages and deliveries of notifications sharing a transaction are stored column for
    /// column, each nullable column NULL or as given.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_records_are_stored_column_for_column() {
        for backend in crs_testkit::db::Backend::ALL {
            let test_db = crs_testkit::TestDb::fresh(backend, "notification_records").await.unwrap();
            let db = test_db.connect().await.unwrap();
            crate::migration::Migrator::up(&db, None).await.unwrap();
            let messages = vec![message_row(1, None), message_row(2, Some(7)), message_row(3, Some(0))];
            let deliveries = vec![
                delivery_row(1, None, None),
                delivery_row(2, Some(50), Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into())),
                delivery_row(3, Some(0), None),
            ];
            let txn = db.begin().await.unwrap();
            insert_records(&txn, messages.clone(), deliveries.clone()).await.unwrap();
            txn.commit().await.unwrap();

            let stored = message::Entity::find().order_by_asc(message::Column::NotificationId).all(&db).await.unwrap();
            assert_eq!(stored, messages, "{backend:?}");
            let stored = delivery::Entity::find().order_by_asc(delivery::Column::Id).all(&db).await.unwrap();
            assert_eq!(stored, deliveries, "{backend:?}");
            db.close().await.unwrap();
            test_db.drop_now().await.unwrap();
        }
    }
}
