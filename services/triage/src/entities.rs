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
