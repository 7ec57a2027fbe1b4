//! Notification's schema, written out migration by migration: a released migration never
//! changes, so a database upgraded step by step and a fresh one end up the same (the schema test
//! checks that against the entities).

use crs_platform::db::columns::*;
use sea_orm::sea_query::{Alias, Index};
use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(crs_platform::outbox::OutboxMigration),
            Box::new(CreateNotificationTables),
            Box::new(crs_platform::outbox::OutboxTopicsByRpc),
            Box::new(crs_platform::outbox::OutboxDeadLetters),
        ]
    }
}

struct CreateNotificationTables;

impl MigrationName for CreateNotificationTables {
    fn name(&self) -> &str {
        "m20261128_000002_notification_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateNotificationTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("notifications"))
                    .if_not_exists()
                    .col(string_key("id"))
                    .col(string("event_id").unique_key())
                    .col(integer("kind"))
                    .col(string("request_id"))
                    .col(string("agency_id"))
                    .col(text("payload"))
                    .col(big("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("deliveries"))
                    .if_not_exists()
                    .col(string_key("id"))
                    .col(string("notification_id"))
                    .col(integer("audience"))
                    .col(string("endpoint"))
                    .col(string("secret"))
                    .col(integer("state"))
                    .col(integer("attempts"))
                    .col(big_null("delivered_at"))
                    .col(text("last_error"))
                    .col(big("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("subscriptions"))
                    .if_not_exists()
                    .col(integer("audience"))
                    .col(string("agency_id"))
                    .col(string("id"))
                    .col(string("endpoint"))
                    .col(string("secret"))
                    .col(big("updated_at"))
                    .primary_key(
                        Index::create()
                            .name("pk-subscriptions")
                            .col(Alias::new("audience"))
                            .col(Alias::new("agency_id")),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["subscriptions", "deliveries", "notifications"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}
