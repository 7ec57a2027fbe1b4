//! Intake's schema, written out migration by migration: a released migration never changes, so a
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
            Box::new(CreateIntakeTables),
            Box::new(AgencyViewAndCredentials),
            Box::new(RateLimitOverrides),
            Box::new(crs_platform::outbox::OutboxTopicsByRpc),
            Box::new(ProjectionVersion),
            Box::new(crs_platform::outbox::OutboxDeadLetters),
            Box::new(AgencyLanguageAndSettingsVersion),
            Box::new(EventsInCommitOrder),
            Box::new(crs_platform::outbox::OutboxClaimOrder),
        ]
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
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("agencies"))
                    .if_not_exists()
                    .col(string_key("id"))
                    .col(string("name"))
                    .col(string("jurisdiction"))
                    .col(string("contact_email"))
                    .col(string("callback_url"))
                    .col(string("callback_secret"))
                    .col(string("allowed_instruments"))
                    .col(string("allowed_categories"))
                    .col(integer("status"))
                    .col(string("rate_limit_tier"))
                    .col(big("created_at"))
                    .col(big("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("requests"))
                    .if_not_exists()
                    .col(string_key("id"))
                    .col(string("agency_id"))
                    .col(string("idempotency_key"))
                    .col(string("body_hash"))
                    .col(string("jurisdiction"))
                    .col(integer("legal_instrument"))
                    .col(integer("category"))
                    .col(string("keywords"))
                    .col(integer("requested_action"))
                    .col(text("legal_basis"))
                    .col(text("justification"))
                    .col(string("reference"))
                    .col(string("issuing_authority"))
                    .col(integer("status"))
                    .col(big("status_at"))
                    .col(string("status_note"))
                    .col(string("pending_question"))
                    .col(bytes_null("deadline"))
                    .col(big("received_at"))
                    .col(big("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("request_items"))
                    .if_not_exists()
                    .col(string("request_id"))
                    .col(integer("item_index"))
                    .col(string("url"))
                    .col(string("content_id"))
                    .col(string("description"))
                    .col(string("content_key"))
                    .col(integer("outcome"))
                    .col(integer("no_action_reason"))
                    .col(text("explanation"))
                    .primary_key(
                        Index::create()
                            .name("pk-request_items")
                            .col(Alias::new("request_id"))
                            .col(Alias::new("item_index")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("status_events"))
                    .if_not_exists()
                    .col(big("seq").auto_increment().primary_key())
                    .col(string("agency_id"))
                    .col(string("request_id"))
                    .col(integer("status"))
                    .col(string("note"))
                    .col(big("occurred_at"))
                    .to_owned(),
            )
            .await?;
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
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("issued_tokens"))
                    .if_not_exists()
                    .col(string_key("token_id"))
                    .col(string("subject"))
                    .col(string("issued_by"))
                    .col(big("expires_at"))
                    .col(big_null("revoked_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("revocations"))
                    .if_not_exists()
                    .col(string_key("entry"))
                    .col(big_null("expires_at"))
                    .col(string("revoked_by"))
                    .col(big("revoked_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("information_answers"))
                    .if_not_exists()
                    .col(string("request_id"))
                    .col(string("idempotency_key"))
                    .col(text("answer"))
                    .col(big("answered_at"))
                    .primary_key(
                        Index::create()
                            .name("pk-information_answers")
                            .col(Alias::new("request_id"))
                            .col(Alias::new("idempotency_key")),
                    )
                    .to_owned(),
            )
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

/// The case version of the last status applied from legal review, so later updates never move
/// the projection back.
struct ProjectionVersion;

impl MigrationName for ProjectionVersion {
    fn name(&self) -> &str {
        "m20261129_000002_projection_version"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ProjectionVersion {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Alias::new("requests")).add_column(big("status_version").default(0)).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Alias::new("requests")).drop_column(Alias::new("status_version")).to_owned(),
            )
            .await
    }
}

/// The language an agency is written to in, and a version of the agency's notification settings
/// (name, contact address, callback URL and secret, language), which notification uses to drop
/// hand-offs that arrive after a newer one. Callback secrets stored in plain text by earlier
/// versions are sealed at start-up (a migration holds no key; see `agencies::seal_legacy_secrets`).
struct AgencyLanguageAndSettingsVersion;

impl MigrationName for AgencyLanguageAndSettingsVersion {
    fn name(&self) -> &str {
        "m20261201_000001_agency_language_and_settings_version"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AgencyLanguageAndSettingsVersion {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Alias::new("agencies")).add_column(string("language").default("en")).to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(Alias::new("agencies")).add_column(big("settings_version").default(1)).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["settings_version", "language"] {
            manager
                .alter_table(Table::alter().table(Alias::new("agencies")).drop_column(Alias::new(column)).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Status events ordered by the transaction that wrote them (`txid`, then `seq`) instead of a
/// per-agency number taken under the agency row's lock: writers of one agency no longer wait on
/// each other. Events written before keep `txid` 0 (they come first) and their `agency_seq`, which
/// cursors given out before still name.
struct EventsInCommitOrder;

impl MigrationName for EventsInCommitOrder {
    fn name(&self) -> &str {
        "m20261206_000001_events_in_commit_order"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for EventsInCommitOrder {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("status_events"))
                    .add_column(ColumnDef::new(Alias::new("txid")).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        // New events carry no per-agency number (0); the old ones stay unique by theirs.
        manager
            .drop_index(Index::drop().name("status_events_agency_seq").table(Alias::new("status_events")).to_owned())
            .await?;
        for (name, columns) in [
            ("status_events_agency_seq", &["agency_id", "agency_seq"][..]),
            ("status_events_agency_order", &["agency_id", "txid", "seq"][..]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Alias::new("status_events")).if_not_exists();
            for c in columns {
                index.col(Alias::new(*c));
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["status_events_agency_order", "status_events_agency_seq"] {
            manager.drop_index(Index::drop().name(name).table(Alias::new("status_events")).to_owned()).await?;
        }
        manager
            .alter_table(Table::alter().table(Alias::new("status_events")).drop_column(Alias::new("txid")).to_owned())
            .await
    }
}
