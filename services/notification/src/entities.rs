//! Notification's tables. Times are Unix milliseconds.

pub mod notification {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The producer's event id: one notification per event, however often it is delivered.
        #[sea_orm(unique)]
        pub event_id: String,
        pub kind: i32,
        #[sea_orm(indexed)]
        pub request_id: String,
        pub agency_id: String,
        /// The whole event as received, for the record (admins only); each audience is sent its
        /// own message (see `message`).
        #[sea_orm(column_type = "Text")]
        pub payload: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod message {
    use sea_orm::entity::prelude::*;

    /// What one audience is told of one notification: the JSON document every channel of that
    /// audience carries (a webhook's body, an email's content, a stream event's payload).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "messages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub notification_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub audience: i32,
        pub kind: i32,
        pub request_id: String,
        pub agency_id: String,
        /// The payload's schema, e.g. `crs.notification.enforcement.v1`.
        pub schema: String,
        #[sea_orm(column_type = "Text")]
        pub payload: String,
        /// Its position on the Subscribe stream, when published there, after the transaction
        /// that published it (`stream_txid`; see `stream::next_position`).
        #[sea_orm(unique)]
        pub stream_seq: Option<i64>,
        pub stream_txid: i64,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod delivery {
    use sea_orm::entity::prelude::*;

    /// One audience's message through one subscription, with its attempts. The row is also the
    /// delivery's place in the queue: due when `next_attempt_at` has passed, claimed while
    /// `locked_until` is in the future.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(indexed)]
        pub notification_id: String,
        pub audience: i32,
        pub channel: i32,
        #[sea_orm(indexed)]
        pub subscription_id: String,
        /// The endpoint or address of the last attempt.
        pub endpoint: String,
        pub state: i32,
        pub attempts: i32,
        pub delivered_at: Option<i64>,
        /// The last failure in detail, for admins.
        #[sea_orm(column_type = "Text")]
        pub last_error: String,
        /// The last failure in words fit for the subscriber (no addresses or internal errors).
        pub failure: String,
        #[sea_orm(indexed)]
        pub next_attempt_at: Option<i64>,
        pub locked_until: Option<i64>,
        /// Start of the current retry window: its first attempt, or an admin's RetryDelivery.
        pub retry_from: i64,
        /// The W3C traceparent of the notification, so every attempt joins the request's trace.
        pub trace_context: Option<String>,
        pub created_at: i64,
    }

    impl Model {
        /// A new delivery of one audience's message through `sub`: due at once, or delivered
        /// already when its channel is complete once recorded (the stream).
        pub fn new(
            notification_id: &str,
            audience: i32,
            sub: &super::subscription::Model,
            complete: bool,
            now: i64,
            trace_context: Option<String>,
        ) -> Self {
            use crs_proto::notification::DeliveryState;
            Model {
                id: uuid::Uuid::now_v7().to_string(),
                notification_id: notification_id.to_owned(),
                audience,
                channel: sub.channel,
                subscription_id: sub.id.clone(),
                endpoint: sub.endpoint.clone(),
                state: if complete { DeliveryState::Delivered } else { DeliveryState::Pending } as i32,
                attempts: 0,
                delivered_at: complete.then_some(now),
                last_error: String::new(),
                failure: String::new(),
                next_attempt_at: (!complete).then_some(now),
                locked_until: None,
                retry_from: now,
                trace_context,
                created_at: now,
            }
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod subscription {
    use sea_orm::entity::prelude::*;

    /// Who is told (audience, and the agency for agencies) and how (channel, endpoint, language).
    /// One per (audience, agency, channel).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "channel_subscriptions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub audience: i32,
        pub agency_id: String,
        pub channel: i32,
        pub endpoint: String,
        pub language: String,
        pub recipient_name: String,
        /// The webhook signing secret, sealed (`crs_platform::secrets`); empty for other channels.
        #[sea_orm(column_type = "Text")]
        pub secret: String,
        /// The secret before the last rotation, sealed, signing alongside until it expires.
        #[sea_orm(column_type = "Text")]
        pub previous_secret: String,
        pub previous_secret_expires_at: Option<i64>,
        /// Increases with every change.
        pub version: i64,
        /// The newest source version applied (hand-offs from intake carry the agency's).
        pub source_version: i64,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod sequence {
    use sea_orm::entity::prelude::*;

    /// Counters handed out under a row lock, so numbers become visible in the order given.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sequences")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub last: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod transparency_record {
    use sea_orm::entity::prelude::*;

    /// What a decided request leaves for transparency: structured fields only, so nothing a
    /// person wrote (descriptions, justifications, explanations, references) and nothing that
    /// names a person is ever kept here to be published. Every statement of reasons, notice and
    /// report is written from these rows (see `transparency`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "transparency_records")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        /// The DECIDED notification it was recorded from.
        pub notification_id: String,
        /// The agency's official name as registered at intake: an authority, published as the
        /// sender.
        pub agency_name: String,
        pub jurisdiction: String,
        pub legal_instrument: i32,
        pub category: i32,
        /// The category specification keywords, a JSON array of their names.
        #[sea_orm(column_type = "Text")]
        pub keywords: String,
        /// The citation of the law whose deadline applied (from the SLA policy), or empty.
        pub legal_reference: String,
        pub received_at: Option<i64>,
        #[sea_orm(indexed)]
        pub decided_at: i64,
        /// The legal deadline as it stood at the decision (moved by pauses), when one applied.
        pub due_at: Option<i64>,
        /// Per item: outcome, reason, ground, scope and the redacted locator, a JSON array of
        /// `transparency::ItemRecord`.
        #[sea_orm(column_type = "Text")]
        pub items: String,
        pub recorded_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
