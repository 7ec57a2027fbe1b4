//! Triage's tables. Times are Unix milliseconds.

pub mod assessment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "assessments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        pub priority: i32,
        pub policy_id: String,
        pub queue: String,
        pub human_rights_review: bool,
        pub duplicate_of: String,
        /// The full `Assessment` as sent on, encoded, so replays answer byte for byte.
        pub encoded: Vec<u8>,
        pub assessed_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod content_index {
    use sea_orm::entity::prelude::*;

    /// Which requests named which content, to find duplicates across requests.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "content_index")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub content_key: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        pub indexed_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod content_decision {
    use sea_orm::entity::prelude::*;

    /// What a case decided about a piece of content, for later requests naming it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "content_decisions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub content_key: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub case_id: String,
        pub jurisdiction: String,
        /// `ItemOutcome` number.
        pub outcome: i32,
        pub decided_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod agency_history {
    use sea_orm::entity::prelude::*;

    /// An agency's record: its decided requests and how many were granted at least in part.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "agency_history")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub agency_id: String,
        pub decided_requests: i64,
        pub granted_requests: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
