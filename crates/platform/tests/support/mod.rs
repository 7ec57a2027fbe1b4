//! Fresh PostgreSQL databases for the platform's tests (`crs-testkit` builds on this crate, so
//! these tests cannot use it).

#![allow(dead_code)]

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// The administrative connection: `CRS_TEST_POSTGRES_URL`, or the local server.
pub fn admin_url() -> String {
    std::env::var("CRS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A new, empty database named `<prefix>_<random>`, connected; and its name, for [`drop_postgres`].
pub async fn fresh_postgres(prefix: &str) -> (DatabaseConnection, String) {
    let admin_url = admin_url();
    let name = format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let admin = Database::connect(&admin_url).await.unwrap();
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
    let server = admin_url.rsplit_once('/').unwrap().0.to_owned();
    (Database::connect(format!("{server}/{name}")).await.unwrap(), name)
}

pub async fn drop_postgres(name: &str) {
    let admin = Database::connect(&admin_url()).await.unwrap();
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
}
