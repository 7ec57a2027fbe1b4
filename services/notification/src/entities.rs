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
        /// The JSON body every audience receives.
        #[sea_orm(column_type = "Text")]
        pub payload: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod delivery {
    use sea_orm::entity::prelude::*;

    /// One notification to one endpoint, with its attempts.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(indexed)]
        pub notification_id: String,
        pub audience: i32,
        pub endpoint: String,
        pub secret: String,
        pub state: i32,
        pub attempts: i32,
        pub delivered_at: Option<i64>,
        #[sea_orm(column_type = "Text")]
        pub last_error: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod subscription {
    use sea_orm::entity::prelude::*;

    /// Where an audience is told: per agency for agencies, global (empty agency) otherwise.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subscriptions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub audience: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub agency_id: String,
        pub id: String,
        pub endpoint: String,
        pub secret: String,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
