//! Notification's schema. The first migration creates the tables from the entity definitions;
//! later changes are new migrations with explicit DDL.

use sea_orm::Schema;
use sea_orm::sea_query::Alias;
use sea_orm_migration::prelude::*;

use crate::entities::{delivery, notification, subscription};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(crs_platform::outbox::OutboxMigration), Box::new(CreateNotificationTables)]
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
        let schema = Schema::new(manager.get_database_backend());
        manager.create_table(schema.create_table_from_entity(notification::Entity).if_not_exists().to_owned()).await?;
        manager.create_table(schema.create_table_from_entity(delivery::Entity).if_not_exists().to_owned()).await?;
        manager.create_table(schema.create_table_from_entity(subscription::Entity).if_not_exists().to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["subscriptions", "deliveries", "notifications"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}
