//! Notification's RPC handlers: recording events with their deliveries, listing them, and the
//! admin's retry; subscriptions and the stream have modules of their own.

use std::collections::HashMap;

use crs_platform::auth::{self, Principal, Role};
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
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, TransactionTrait,
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
    message_rows: Vec<message::ActiveModel>,
    delivery_rows: Vec<delivery::ActiveModel>,
}

/// The most rows inserted by one statement (messages have 10 values each, deliveries 16: within
/// SQLite's bound on parameters).
const ROWS_PER_INSERT: usize = 1000;

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
            let messages: Vec<message::ActiveModel> =
                recorded.iter_mut().flat_map(|r| std::mem::take(&mut r.message_rows)).collect();
            let deliveries: Vec<delivery::ActiveModel> =
                recorded.iter_mut().flat_map(|r| std::mem::take(&mut r.delivery_rows)).collect();
            Box::pin(async move {
                for chunk in messages.chunks(ROWS_PER_INSERT) {
                    message::Entity::insert_many(chunk.to_vec()).exec_without_returning(txn).await?;
                }
                for chunk in deliveries.chunks(ROWS_PER_INSERT) {
                    delivery::Entity::insert_many(chunk.to_vec()).exec_without_returning(txn).await?;
                }
                Ok(())
            })
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
            messages.push(message::ActiveModel::from(message::Model {
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
            }));
            for sub in subs {
                let complete = self.channels.get(sub.channel).is_some_and(|c| c.complete_when_recorded());
                rows.push(delivery::ActiveModel::from(delivery::Model::new(
                    &id,
                    *audience as i32,
                    &sub,
                    complete,
                    now,
                    trace_context.clone(),
                )));
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
        let mut deliveries =
            delivery::Entity::find().filter(delivery::Column::NotificationId.is_in(rows.iter().map(|r| r.id.clone())));
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
