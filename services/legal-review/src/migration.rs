//! Legal review's schema. The first migration creates the tables from the entity definitions;
//! later changes are new migrations with explicit DDL.

use sea_orm::Schema;
use sea_orm::sea_query::Alias;
use sea_orm_migration::prelude::*;

use crate::entities::{case, decision, withdrawal};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(crs_platform::outbox::OutboxMigration),
            Box::new(CreateReviewTables),
            Box::new(InformationAndWithdrawal),
            Box::new(crs_timers::ClockMigration),
            Box::new(CaseTraceContext),
        ]
    }
}

struct CreateReviewTables;

impl MigrationName for CreateReviewTables {
    fn name(&self) -> &str {
        "m20261128_000002_review_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateReviewTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(manager.get_database_backend());
        // The case columns a later migration adds are left out, so this creates the table as it was.
        let cases = schema.create_table_from_entity(case::Entity);
        let mut first = Table::create();
        first.table(Alias::new("cases")).if_not_exists();
        for c in cases
            .get_columns()
            .iter()
            .filter(|c| !["pending_question", "last_answer", "trace_context"].contains(&c.get_column_name().as_str()))
        {
            first.col(c.clone());
        }
        manager.create_table(first).await?;
        manager.create_table(schema.create_table_from_entity(decision::Entity).if_not_exists().to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["decisions", "cases"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}

/// Questions to agencies and their answers on cases, and withdrawals that precede their case.
struct InformationAndWithdrawal;

impl MigrationName for InformationAndWithdrawal {
    fn name(&self) -> &str {
        "m20261128_000003_information_and_withdrawal"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for InformationAndWithdrawal {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["pending_question", "last_answer"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("cases"))
                        .add_column(ColumnDef::new(Alias::new(column)).text().not_null().default(""))
                        .to_owned(),
                )
                .await?;
        }
        let schema = Schema::new(manager.get_database_backend());
        manager.create_table(schema.create_table_from_entity(withdrawal::Entity).if_not_exists().to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Alias::new("case_withdrawals")).to_owned()).await?;
        for column in ["pending_question", "last_answer"] {
            manager
                .alter_table(Table::alter().table(Alias::new("cases")).drop_column(Alias::new(column)).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// The request's trace context on its case.
struct CaseTraceContext;

impl MigrationName for CaseTraceContext {
    fn name(&self) -> &str {
        "m20261128_000004_case_trace_context"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CaseTraceContext {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("cases"))
                    .add_column(ColumnDef::new(Alias::new("trace_context")).string_len(256).null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Alias::new("cases")).drop_column(Alias::new("trace_context")).to_owned())
            .await
    }
}
