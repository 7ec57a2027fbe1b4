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
        pub due_at: i64,
        /// Encoded `Submission` as intake accepted it.
        pub submission: Vec<u8>,
        /// Encoded `Assessment` as triage made it.
        pub assessment: Vec<u8>,
        /// Encoded `SlaDeadline`.
        pub deadline: Vec<u8>,
        pub assigned_reviewer: String,
        pub claim_expires_at: i64,
        #[sea_orm(column_type = "Text")]
        pub decision_summary: String,
        pub decided_by: String,
        pub decided_at: Option<i64>,
        /// The reviewer's open question to the agency, while AWAITING_INFORMATION.
        #[sea_orm(column_type = "Text")]
        pub pending_question: String,
        /// The agency's latest answer.
        #[sea_orm(column_type = "Text")]
        pub last_answer: String,
        /// The request's trace, so reviewers' actions and SLA firings join it.
        pub trace_context: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod decision {
    use sea_orm::entity::prelude::*;

    /// The decision on one item of a case.
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
        /// JSON array of ISO country codes.
        pub territorial_scope: String,
        pub decided_by: String,
        pub decided_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod withdrawal {
    use sea_orm::entity::prelude::*;

    /// A withdrawal that reached legal review before its case did; the case starts withdrawn.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "case_withdrawals")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub case_id: String,
        #[sea_orm(column_type = "Text")]
        pub reason: String,
        pub withdrawn_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
