//! Intake's schema. The first migration creates the tables from the entity definitions; later
//! changes are new migrations with explicit DDL.

use sea_orm::Schema;
use sea_orm::sea_query::{Alias, Index};
use sea_orm_migration::prelude::*;

use crate::entities::{agency, request, request_item, status_event};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(crs_platform::outbox::OutboxMigration), Box::new(CreateIntakeTables)]
    }
}

struct CreateIntakeTables;

impl MigrationName for CreateIntakeTables {
    fn name(&self) -> &str {
        "m20261128_000002_intake_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateIntakeTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(manager.get_database_backend());
        manager.create_table(schema.create_table_from_entity(agency::Entity).if_not_exists().to_owned()).await?;
        manager.create_table(schema.create_table_from_entity(request::Entity).if_not_exists().to_owned()).await?;
        manager.create_table(schema.create_table_from_entity(request_item::Entity).if_not_exists().to_owned()).await?;
        manager.create_table(schema.create_table_from_entity(status_event::Entity).if_not_exists().to_owned()).await?;
        // One request per (agency, idempotency key): concurrent retries collapse onto one row.
        manager
            .create_index(
                Index::create()
                    .name("requests_agency_idempotency_key")
                    .table(Alias::new("requests"))
                    .col(Alias::new("agency_id"))
                    .col(Alias::new("idempotency_key"))
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["status_events", "request_items", "requests", "agencies"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}
