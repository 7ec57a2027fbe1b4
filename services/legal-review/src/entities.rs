//! Legal review's tables. Times are Unix milliseconds.

pub mod case {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cases")]
    pub struct Model {
        /// The request id: one case per request.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub status: i32,
        #[sea_orm(indexed)]
        pub queue: String,
        pub priority: i32,
        /// When the decision is due, counting the pauses so far (the ordering column; the clock
        /// in `sla_clocks` is the truth).
        pub due_at: i64,
        /// Encoded `Submission` as intake accepted it; empty for a withdrawal that arrived before
        /// its case.
        pub submission: Vec<u8>,
        /// Encoded `Assessment` as triage made it.
        pub assessment: Vec<u8>,
        /// The claim holder (`reviewer:<id>`); empty when unclaimed.
        pub assigned_reviewer: String,
        pub claim_expires_at: i64,
        /// The claim holder was known to be senior when the claim was taken.
        pub claim_senior: bool,
        /// Escalated at some point: senior reviewers only from then on.
        pub escalated: bool,
        #[sea_orm(column_type = "Text")]
        pub decision_summary: String,
        /// Who submitted the decision awaiting approval or in effect.
        pub decided_by: String,
        /// Who approved the decision in effect.
        pub approved_by: String,
        /// Why the decision awaiting approval needs a second reviewer.
        pub approval_reason: String,
        pub decided_at: Option<i64>,
        /// The reviewer's open question to the agency, while AWAITING_INFORMATION.
        #[sea_orm(column_type = "Text")]
        pub pending_question: String,
        /// The request's trace, so reviewers' actions and SLA firings join it.
        pub trace_context: Option<String>,
        /// Bumped with every change; intake's projection applies status updates in this order.
        pub version: i64,
        pub created_at: i64,
        pub updated_at: i64,
        /// When the retention job blanked the finished case's free text (agency's text in the
        /// submission, questions and answers); `None` while it is kept.
        pub text_redacted_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod decision {
    use sea_orm::entity::prelude::*;

    /// The decision on one item of a case: awaiting approval, or in effect.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "decisions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub case_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub item_index: i32,
        pub outcome: i32,
        pub no_action_reason: i32,
        pub ground: i32,
        #[sea_orm(column_type = "Text")]
        pub legal_ground: String,
        #[sea_orm(column_type = "Text")]
        pub explanation: String,
        /// The platform policy cited beside an illegal-content ground.
        #[sea_orm(column_type = "Text")]
        pub platform_policy: String,
        /// JSON array of ISO country codes.
        pub territorial_scope: String,
        pub decided_by: String,
        pub decided_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod information {
    use sea_orm::entity::prelude::*;

    /// One question put to the agency and its answer; rounds are numbered from 1 and never
    /// overwritten.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "information_exchanges")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub case_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub round: i32,
        pub asked_by: String,
        #[sea_orm(column_type = "Text")]
        pub question: String,
        pub asked_at: i64,
        #[sea_orm(column_type = "Text")]
        pub answer: String,
        pub answered_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit_entry {
    use sea_orm::entity::prelude::*;

    /// The append-only, hash-chained audit trail (see `crs_domain::audit`). On PostgreSQL the
    /// service's role may only INSERT and SELECT here.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_entries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sequence: i64,
        #[sea_orm(indexed)]
        pub case_id: String,
        pub actor: String,
        pub action: String,
        #[sea_orm(column_type = "Text")]
        pub details: String,
        pub trace_id: String,
        #[sea_orm(indexed)]
        pub at: i64,
        pub previous_hash: String,
        pub hash: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit_pending {
    use sea_orm::entity::prelude::*;

    /// Audit entries recorded with their actions and not yet sealed into the chain: the sealer
    /// moves them to `audit_entries` in the order they were committed (see `crate::audit`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_pending")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub case_id: String,
        pub actor: String,
        pub action: String,
        #[sea_orm(column_type = "Text")]
        pub details: String,
        pub trace_id: String,
        pub at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod command_result {
    use sea_orm::entity::prelude::*;

    /// The first result of a reviewer's command sent with an idempotency key, returned again
    /// to a retry with the same key.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "command_results")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub actor: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub idempotency_key: String,
        pub case_id: String,
        pub command: String,
        /// SHA-256 of the command's request, to tell a retry from a reuse of the key.
        pub request_hash: String,
        /// The encoded `Case` first returned.
        pub response: Vec<u8>,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod known_queue {
    use sea_orm::entity::prelude::*;

    /// Every queue a case has been routed to: the queues are named by triage's routing rules,
    /// and one stays listed (at zero) after its last case is decided.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "known_queues")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub first_case_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod case_content {
    use sea_orm::entity::prelude::*;

    /// Every piece of content each case names, in any status: how a case finds the others
    /// naming the same content (`Case.related_cases`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "case_content")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub case_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub item_index: i32,
        #[sea_orm(indexed)]
        pub content_key: String,
        pub jurisdiction: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod open_content {
    use sea_orm::entity::prelude::*;

    /// Which open case holds each piece of content in each jurisdiction. The primary key is the
    /// rule that one piece of content is under review at most once per jurisdiction: a case
    /// claims its rows when it opens (a concurrent claim of the same row waits for the first to
    /// commit) and gives them up when it is decided or withdrawn.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "open_content")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub jurisdiction: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub content_key: String,
        #[sea_orm(indexed)]
        pub case_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod merged_request {
    use sea_orm::entity::prelude::*;

    /// A request that follows a case because every item it names is one of the case's.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "merged_requests")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        #[sea_orm(indexed)]
        pub case_id: String,
        /// Encoded `Submission` as intake accepted it.
        pub submission: Vec<u8>,
        /// Encoded `Assessment` as triage made it.
        pub assessment: Vec<u8>,
        /// MERGED, DECIDED or WITHDRAWN (wire numbers); TRIAGED once it became a case of its own.
        pub status: i32,
        /// Its own version for intake's projection, continued by its case if it becomes one.
        pub version: i64,
        pub merged_at: i64,
        pub finished_at: Option<i64>,
        /// When the retention job blanked the agency's free text in `submission`; `None` while
        /// it is kept.
        pub text_redacted_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
