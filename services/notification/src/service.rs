//! Notification's RPC handlers.

use crs_platform::auth::{self, Principal, Role};
use crs_platform::error::FieldViolations;
use crs_platform::outbox::{Outbox, inbox_first_time};
use crs_platform::paging;
use crs_platform::time::{millis_from_timestamp, now_millis, timestamp_from_millis};
use crs_proto::ShortName;
use crs_proto::common::{Category, ItemOutcome, LegalInstrument, NoActionReason, Submission};
use crs_proto::convert::short_name_of;
use crs_proto::notification::notification_internal_service_server::NotificationInternalService;
use crs_proto::notification::notification_service_server::NotificationService;
use crs_proto::notification::*;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, TransactionTrait,
};
use tonic::{Request, Response, Status};

use crate::entities::{delivery, notification, subscription};
use crate::error::NotificationError;
use crate::webhook;

type Result<T> = std::result::Result<T, NotificationError>;

#[derive(Clone)]
pub struct Notifications {
    db: DatabaseConnection,
    outbox: Outbox,
}

/// Who is told of each kind of event.
fn audiences(kind: NotificationKind) -> &'static [Audience] {
    match kind {
        NotificationKind::Decided => &[Audience::Agency, Audience::ContentOwner, Audience::Enforcement],
        NotificationKind::SlaWarning | NotificationKind::SlaBreach => &[Audience::OnCall],
        NotificationKind::Acknowledged
        | NotificationKind::InformationRequested
        | NotificationKind::Withdrawn
        | NotificationKind::Rejected => &[Audience::Agency],
        NotificationKind::Unspecified => &[],
    }
}

impl Notifications {
    pub fn new(db: DatabaseConnection, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

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
        let submission = req.submission.clone().unwrap_or_default();

        let txn = self.db.begin().await?;
        if !inbox_first_time(&txn, &req.event_id).await? {
            drop(txn);
            let existing = notification::Entity::find()
                .filter(notification::Column::EventId.eq(req.event_id.clone()))
                .one(&self.db)
                .await?
                .ok_or_else(|| NotificationError::NotFound(format!("notification for event {}", req.event_id)))?;
            return Ok(NotifyResponse { notification_id: existing.id, replayed: true });
        }
        let now = now_millis();
        let id = uuid::Uuid::now_v7().to_string();
        notification::ActiveModel::from(notification::Model {
            id: id.clone(),
            event_id: req.event_id.clone(),
            kind: kind as i32,
            request_id: submission.request_id.clone(),
            agency_id: submission.agency_id.clone(),
            payload: payload(&id, kind, &req, &submission).to_string(),
            created_at: now,
        })
        .insert(&txn)
        .await?;

        let mut deliveries = 0;
        for audience in audiences(kind) {
            // Agencies are told at their own endpoint; the other audiences have one each.
            let owner = if *audience == Audience::Agency { submission.agency_id.clone() } else { String::new() };
            let Some(sub) = subscription::Entity::find_by_id((*audience as i32, owner)).one(&txn).await? else {
                tracing::warn!(audience = audience.as_str_name(), request_id = %submission.request_id, "no subscription; not delivered");
                continue;
            };
            let delivery_id = uuid::Uuid::now_v7().to_string();
            delivery::ActiveModel::from(delivery::Model {
                id: delivery_id.clone(),
                notification_id: id.clone(),
                audience: *audience as i32,
                endpoint: sub.endpoint,
                secret: sub.secret,
                state: DeliveryState::Pending as i32,
                attempts: 0,
                delivered_at: None,
                last_error: String::new(),
                created_at: now,
            })
            .insert(&txn)
            .await?;
            self.outbox.enqueue(&txn, webhook::TOPIC, &Delivery { id: delivery_id, ..Default::default() }).await?;
            deliveries += 1;
        }
        txn.commit().await?;
        self.outbox.wake();
        tracing::info!(notification_id = %id, kind = kind.as_str_name(), request_id = %submission.request_id, deliveries, "notification recorded");
        Ok(NotifyResponse { notification_id: id, replayed: false })
    }

    async fn list(&self, principal: Principal, req: ListNotificationsRequest) -> Result<ListNotificationsResponse> {
        let mut cond = Condition::all();
        match &principal {
            Principal::Agency { id } => cond = cond.add(notification::Column::AgencyId.eq(id.clone())),
            Principal::Service { .. } => {}
            p => auth::require_role(p, &[Role::Reviewer, Role::SeniorReviewer, Role::Admin])?,
        }
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
        let mut by_notification: std::collections::HashMap<String, Vec<delivery::Model>> = Default::default();
        for d in delivery::Entity::find()
            .filter(delivery::Column::NotificationId.is_in(rows.iter().map(|r| r.id.clone())))
            .order_by_asc(delivery::Column::Audience)
            .all(&self.db)
            .await?
        {
            by_notification.entry(d.notification_id.clone()).or_default().push(d);
        }
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode("notifications", &filters, &[&last.created_at.to_string(), &last.id]),
            _ => String::new(),
        };
        let mut notifications = Vec::with_capacity(rows.len());
        for row in rows {
            let deliveries = by_notification.remove(&row.id).unwrap_or_default();
            notifications.push(Notification {
                id: row.id,
                event_id: row.event_id,
                kind: row.kind,
                request_id: row.request_id,
                agency_id: row.agency_id,
                created_at: Some(timestamp_from_millis(row.created_at)),
                deliveries: deliveries
                    .into_iter()
                    .map(|d| Delivery {
                        id: d.id,
                        audience: d.audience,
                        endpoint: d.endpoint,
                        state: d.state,
                        attempts: d.attempts as u32,
                        delivered_at: d.delivered_at.map(timestamp_from_millis),
                        last_error: d.last_error,
                    })
                    .collect(),
            });
        }
        Ok(ListNotificationsResponse { notifications, next_page_token })
    }

    async fn put_subscription(&self, req: PutSubscriptionRequest) -> Result<Subscription> {
        let mut v = FieldViolations::new();
        let audience = Audience::try_from(req.audience).unwrap_or(Audience::Unspecified);
        match audience {
            Audience::Unspecified => v.add("audience", "must be a known audience"),
            Audience::Agency if req.agency_id.is_empty() => v.add("agency_id", "is required for the agency audience"),
            Audience::Agency => {}
            _ if !req.agency_id.is_empty() => v.add("agency_id", "is only for the agency audience"),
            _ => {}
        }
        match url::Url::parse(&req.endpoint) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => v.add("endpoint", "must be an http or https URL"),
        }
        if req.secret.len() > 256 {
            v.add("secret", "longer than 256 characters");
        }
        v.into_result()?;
        let key = (audience as i32, req.agency_id.clone());
        let row = match subscription::Entity::find_by_id(key).one(&self.db).await? {
            Some(existing) => {
                let mut active: subscription::ActiveModel = existing.into();
                active.endpoint = Set(req.endpoint.clone());
                active.secret = Set(req.secret.clone());
                active.updated_at = Set(now_millis());
                active.update(&self.db).await?
            }
            None => {
                subscription::ActiveModel::from(subscription::Model {
                    audience: audience as i32,
                    agency_id: req.agency_id.clone(),
                    id: uuid::Uuid::now_v7().to_string(),
                    endpoint: req.endpoint.clone(),
                    secret: req.secret.clone(),
                    updated_at: now_millis(),
                })
                .insert(&self.db)
                .await?
            }
        };
        tracing::info!(audience = audience.as_str_name(), agency_id = %row.agency_id, endpoint = %row.endpoint, "subscription set");
        Ok(to_subscription(&row))
    }
}

fn to_subscription(row: &subscription::Model) -> Subscription {
    Subscription {
        id: row.id.clone(),
        audience: row.audience,
        agency_id: row.agency_id.clone(),
        endpoint: row.endpoint.clone(),
        has_secret: !row.secret.is_empty(),
    }
}

/// The JSON body of a notification, the same for every audience.
fn payload(id: &str, kind: NotificationKind, req: &NotifyRequest, s: &Submission) -> serde_json::Value {
    let decisions: Vec<serde_json::Value> = req
        .decisions
        .iter()
        .map(|d| {
            let item = s.items.get(d.item_index as usize);
            serde_json::json!({
                "item_index": d.item_index,
                "url": item.map(|i| i.url.clone()).unwrap_or_default(),
                "content_id": item.map(|i| i.content_id.clone()).unwrap_or_default(),
                "outcome": short_name_of::<ItemOutcome>(d.outcome),
                "no_action_reason": short_name_of::<NoActionReason>(d.no_action_reason),
                "legal_ground": d.legal_ground,
                "explanation": d.explanation,
                "territorial_scope": d.territorial_scope,
            })
        })
        .collect();
    serde_json::json!({
        "notification_id": id,
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
        Ok(Response::new(Notifications::put_subscription(self, request.into_inner()).await?))
    }

    async fn list_subscriptions(
        &self,
        request: Request<ListSubscriptionsRequest>,
    ) -> std::result::Result<Response<ListSubscriptionsResponse>, Status> {
        let principal = auth::principal(&request)?;
        auth::require_role(&principal, &[Role::Admin]).map_err(NotificationError::from)?;
        let req = request.into_inner();
        let mut cond = Condition::all();
        if req.audience != 0 {
            cond = cond.add(subscription::Column::Audience.eq(req.audience));
        }
        if !req.agency_id.is_empty() {
            cond = cond.add(subscription::Column::AgencyId.eq(req.agency_id));
        }
        let rows = subscription::Entity::find().filter(cond).all(&self.db).await.map_err(NotificationError::from)?;
        Ok(Response::new(ListSubscriptionsResponse { subscriptions: rows.iter().map(to_subscription).collect() }))
    }

    async fn export_statements_of_reasons(
        &self,
        _request: Request<ExportStatementsOfReasonsRequest>,
    ) -> std::result::Result<Response<ExportStatementsOfReasonsResponse>, Status> {
        Err(Status::unimplemented("ExportStatementsOfReasons is not available in this version"))
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
        Ok(Response::new(Notifications::put_subscription(self, request.into_inner()).await?))
    }
}
