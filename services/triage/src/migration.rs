//! Triage's schema, written out migration by migration: a released migration never changes, so a
//! database upgraded step by step and a fresh one end up the same (the schema test checks that
//! against the entities).

use crs_platform::db::columns::*;
use sea_orm::sea_query::{Alias, Index};
use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(crs_platform::outbox::OutboxMigration),
            Box::new(CreateTriageTables),
            Box::new(crs_platform::outbox::OutboxTopicsByRpc),
            Box::new(DeadlineOwnedByReview),
            Box::new(crs_platform::outbox::OutboxDeadLetters),
            Box::new(DecisionsRecorded),
            Box::new(crs_platform::outbox::OutboxClaimOrder),
        ]
    }
}

struct CreateTriageTables;

impl MigrationName for CreateTriageTables {
    fn name(&self) -> &str {
        "m20261128_000002_triage_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateTriageTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("assessments"))
                    .if_not_exists()
                    .col(string_key("request_id"))
                    .col(integer("priority"))
                    .col(string("policy_id"))
                    .col(string("queue"))
                    .col(big("due_at"))
                    .col(boolean("human_rights_review"))
                    .col(string("duplicate_of"))
                    .col(bytes("encoded"))
                    .col(big("assessed_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("content_index"))
                    .if_not_exists()
                    .col(string("content_key"))
                    .col(string("request_id"))
                    .col(big("indexed_at"))
                    .primary_key(
                        Index::create()
                            .name("pk-content_index")
                            .col(Alias::new("content_key"))
                            .col(Alias::new("request_id")),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["content_index", "assessments"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}

/// The case's deadline is legal review's: triage keeps its assessment (with the initial due time
/// it computed) but no copy of the deadline to drift.
struct DeadlineOwnedByReview;

impl MigrationName for DeadlineOwnedByReview {
    fn name(&self) -> &str {
        "m20261129_000002_deadline_owned_by_review"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DeadlineOwnedByReview {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Legal review now tells intake the request was triaged: status hand-offs still pending
        // from here are superseded.
        let status = <crs_proto::intake::UpdateStatusRequest as crs_proto::InternalCall>::METHOD;
        manager
            .get_connection()
            .execute_raw(crs_platform::outbox::statement(
                manager.get_database_backend(),
                "DELETE FROM outbox WHERE topic = $1",
                vec![status.into()],
            ))
            .await?;
        manager
            .alter_table(Table::alter().table(Alias::new("assessments")).drop_column(Alias::new("due_at")).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Alias::new("assessments")).add_column(big("due_at").default(0)).to_owned(),
            )
            .await
    }
}

/// Decisions recorded from legal review: on each piece of content (reported to reviewers of later
/// requests naming it) and per agency (its share of requests granted weighs in its priority).
struct DecisionsRecorded;

impl MigrationName for DecisionsRecorded {
    fn name(&self) -> &str {
        "m20261206_000001_decisions_recorded"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DecisionsRecorded {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("content_decisions"))
                    .if_not_exists()
                    .col(string("content_key"))
                    .col(string("case_id"))
                    .col(string("jurisdiction"))
                    .col(integer("outcome"))
                    .col(big("decided_at"))
                    .primary_key(
                        Index::create()
                            .name("pk-content_decisions")
                            .col(Alias::new("content_key"))
                            .col(Alias::new("case_id")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx-content_decisions-key-jurisdiction-decided")
                    .table(Alias::new("content_decisions"))
                    .col(Alias::new("content_key"))
                    .col(Alias::new("jurisdiction"))
                    .col(Alias::new("decided_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("agency_history"))
                    .if_not_exists()
                    .col(string_key("agency_id"))
                    .col(big("decided_requests"))
                    .col(big("granted_requests"))
                    .col(big("updated_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["agency_history", "content_decisions"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}
