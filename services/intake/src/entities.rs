//! Intake's tables. Times are Unix milliseconds, so comparisons read the same on every backend.

pub mod agency {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "agencies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub jurisdiction: String,
        pub contact_email: String,
        pub callback_url: String,
        /// Sealed with the webhook-secret key (`crs_platform::secrets`); empty without a callback.
        pub callback_secret: String,
        /// ISO 639-1 language the agency is written to in.
        pub language: String,
        /// Increases with every change to the agency's notification settings.
        pub settings_version: i64,
        /// JSON array of `LegalInstrument` numbers; empty means all.
        pub allowed_instruments: String,
        /// JSON array of `Category` numbers; empty means all.
        pub allowed_categories: String,
        pub status: i32,
        pub rate_limit_tier: String,
        /// JSON list of `RateLimitOverride`s replacing the tier's limits for this agency.
        #[sea_orm(column_type = "Text")]
        pub rate_limit_overrides: String,
        /// The last sequence number given to one of this agency's status events.
        pub event_seq: i64,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod request {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "requests")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(indexed)]
        pub agency_id: String,
        pub idempotency_key: String,
        /// SHA-256 of the submitted body, to tell a retry from a reuse of the key.
        pub body_hash: String,
        pub jurisdiction: String,
        pub legal_instrument: i32,
        pub category: i32,
        /// JSON array of `Keyword` numbers.
        pub keywords: String,
        pub requested_action: i32,
        #[sea_orm(column_type = "Text")]
        pub legal_basis: String,
        #[sea_orm(column_type = "Text")]
        pub justification: String,
        pub reference: String,
        pub issuing_authority: String,
        pub status: i32,
        /// When the current status took effect (at the service that reported it).
        pub status_at: i64,
        pub status_note: String,
        pub pending_question: String,
        /// Encoded `SlaDeadline`, as legal review last reported it.
        pub deadline: Option<Vec<u8>>,
        /// The case version of the last status legal review reported (0 before any).
        pub status_version: i64,
        pub received_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod request_item {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "request_items")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub item_index: i32,
        pub url: String,
        pub content_id: String,
        pub description: String,
        /// The normalised identity of the content (same content, same key).
        pub content_key: String,
        pub outcome: i32,
        pub no_action_reason: i32,
        #[sea_orm(column_type = "Text")]
        pub explanation: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod status_event {
    use sea_orm::entity::prelude::*;

    /// The agency-visible history of its requests, read in commit order: by the writing
    /// transaction's id (`txid`, PostgreSQL's `pg_current_xact_id()`; 0 on SQLite, whose one
    /// writer commits in `seq` order), then `seq`. `agency_seq` numbers the events written before
    /// that order existed (0 since), for the cursors given out then (see `crate::watch`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "status_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub seq: i64,
        #[sea_orm(indexed)]
        pub agency_id: String,
        pub request_id: String,
        pub status: i32,
        pub note: String,
        pub occurred_at: i64,
        pub agency_seq: i64,
        pub txid: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod issued_token {
    use sea_orm::entity::prelude::*;

    /// Tokens issued by admins, so a revocation knows how long it must last.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "issued_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_id: String,
        pub subject: String,
        pub issued_by: String,
        pub expires_at: i64,
        pub revoked_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod revocation {
    use sea_orm::entity::prelude::*;

    /// The durable record of revocations; Redis only distributes it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "revocations")]
    pub struct Model {
        /// `token:<id>` or `subject:<principal>`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub entry: String,
        /// Unix seconds after which it no longer matters; `None` until lifted.
        pub expires_at: Option<i64>,
        pub revoked_by: String,
        pub revoked_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod information_answer {
    use sea_orm::entity::prelude::*;

    /// An agency's answer to a reviewer's question, keyed for idempotent retries.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "information_answers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub idempotency_key: String,
        #[sea_orm(column_type = "Text")]
        pub answer: String,
        pub answered_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
