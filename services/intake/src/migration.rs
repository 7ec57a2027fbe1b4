//! Intake's schema. The first migration creates the tables from the entity definitions; later
//! changes are new migrations with explicit DDL.

use sea_orm::Schema;
use sea_orm::sea_query::{Alias, Index};
use sea_orm_migration::prelude::*;

use crate::entities::{agency, information_answer, issued_token, request, request_item, revocation, status_event};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(crs_platform::outbox::OutboxMigration),
            Box::new(CreateIntakeTables),
            Box::new(AgencyViewAndCredentials),
            Box::new(RateLimitOverrides),
        ]
    }
}

struct CreateIntakeTables;

/// `table` as derived from its entity, minus the columns later migrations add.
fn without_columns(table: &TableCreateStatement, name: &str, later: &[&str]) -> TableCreateStatement {
    let mut out = Table::create();
    out.table(Alias::new(name)).if_not_exists();
    for c in table.get_columns().iter().filter(|c| !later.contains(&c.get_column_name().as_str())) {
        out.col(c.clone());
    }
    out
}

impl MigrationName for CreateIntakeTables {
    fn name(&self) -> &str {
        "m20261128_000002_intake_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateIntakeTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(manager.get_database_backend());
        // Columns added later (agencies.event_seq, status_events.agency_seq) come from the next
        // migration, so this one creates the tables as they first were.
        let agencies = schema.create_table_from_entity(agency::Entity);
        manager.create_table(without_columns(&agencies, "agencies", &["event_seq", "rate_limit_overrides"])).await?;
        manager.create_table(schema.create_table_from_entity(request::Entity).if_not_exists().to_owned()).await?;
        manager.create_table(schema.create_table_from_entity(request_item::Entity).if_not_exists().to_owned()).await?;
        let events = schema.create_table_from_entity(status_event::Entity);
        manager.create_table(without_columns(&events, "status_events", &["agency_seq"])).await?;
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

/// Per-agency event numbering (the resumable cursor of `WatchRequests`), issued tokens,
/// revocations and answers to reviewers' questions.
struct AgencyViewAndCredentials;

impl MigrationName for AgencyViewAndCredentials {
    fn name(&self) -> &str {
        "m20261128_000003_agency_view_and_credentials"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AgencyViewAndCredentials {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("agencies"))
                    .add_column(ColumnDef::new(Alias::new("event_seq")).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("status_events"))
                    .add_column(ColumnDef::new(Alias::new("agency_seq")).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared("UPDATE status_events SET agency_seq = seq").await?;
        db.execute_unprepared(
            "UPDATE agencies SET event_seq = (SELECT COALESCE(MAX(seq), 0) FROM status_events \
             WHERE status_events.agency_id = agencies.id)",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("status_events_agency_seq")
                    .table(Alias::new("status_events"))
                    .col(Alias::new("agency_id"))
                    .col(Alias::new("agency_seq"))
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // An agency's list of requests, newest first.
        manager
            .create_index(
                Index::create()
                    .name("requests_agency_received")
                    .table(Alias::new("requests"))
                    .col(Alias::new("agency_id"))
                    .col(Alias::new("received_at"))
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        let schema = Schema::new(manager.get_database_backend());
        manager.create_table(schema.create_table_from_entity(issued_token::Entity).if_not_exists().to_owned()).await?;
        manager.create_table(schema.create_table_from_entity(revocation::Entity).if_not_exists().to_owned()).await?;
        manager
            .create_table(schema.create_table_from_entity(information_answer::Entity).if_not_exists().to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["information_answers", "revocations", "issued_tokens"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        for index in ["status_events_agency_seq", "requests_agency_received"] {
            manager.drop_index(Index::drop().name(index).to_owned()).await?;
        }
        for (table, column) in [("status_events", "agency_seq"), ("agencies", "event_seq")] {
            manager
                .alter_table(Table::alter().table(Alias::new(table)).drop_column(Alias::new(column)).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Per-agency rate-limit overrides, changed live by admins.
struct RateLimitOverrides;

impl MigrationName for RateLimitOverrides {
    fn name(&self) -> &str {
        "m20261128_000004_rate_limit_overrides"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for RateLimitOverrides {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("agencies"))
                    .add_column(ColumnDef::new(Alias::new("rate_limit_overrides")).text().not_null().default("[]"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Alias::new("agencies")).drop_column(Alias::new("rate_limit_overrides")).to_owned(),
            )
            .await
    }
}
