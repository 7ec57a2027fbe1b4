//! The schema check catches what it is for: a column an entity has but no migration added, a
//! column a migration left that no entity maps, and a nullability that differs.

use crs_testkit::schema::{differences, expected};
use crs_testkit::{Backend, TestDb};
use sea_orm::ConnectionTrait;

mod widget {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "widgets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub weight: Option<i64>,
        /// Added to the entity; no migration adds it.
        pub colour: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

async fn check(backend: Backend) {
    let db = TestDb::fresh(backend, "schema_check").await.unwrap();
    let conn = db.connect().await.unwrap();
    conn.execute_unprepared(
        "CREATE TABLE widgets (id varchar NOT NULL PRIMARY KEY, name varchar NOT NULL, weight bigint NOT NULL, legacy varchar)",
    )
    .await
    .unwrap();
    let diffs = differences(&conn, &[expected::<widget::Entity>(conn.get_database_backend())]).await.unwrap();
    assert_eq!(
        diffs,
        [
            "widgets.weight is NOT NULL, the entity expects nullable",
            "widgets.colour is missing (add a migration)",
            "widgets.legacy exists but no entity field maps it",
        ],
        "{backend:?}"
    );
    conn.close().await.unwrap();
    db.drop_now().await.unwrap();
}

#[tokio::test]
async fn drift_is_named_on_sqlite() {
    check(Backend::Sqlite).await;
}

#[tokio::test]
async fn drift_is_named_on_postgres() {
    check(Backend::Postgres).await;
}
