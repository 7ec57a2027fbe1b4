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
            Box::new(ChannelsAndDeliveryQueue),
            Box::new(TransparencyRecords),
            Box::new(StreamInCommitOrder),
            Box::new(MessagesByAgency),
            Box::new(crs_platform::outbox::OutboxClaimOrder),
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

/// Subscriptions gain a channel (webhook, email, stream), a language and versions, keyed by
/// (audience, agency, channel), with secrets sealed (sealed at start-up: a migration holds no
/// key). Each audience's message is stored once per notification; the Subscribe stream reads
/// them by position. Deliveries become their own queue (due time, lease, retry window, trace
/// context) instead of rows in the shared outbox, reference their subscription instead of
/// copying its secret, and keep a summary of the last failure fit for the subscriber.
struct ChannelsAndDeliveryQueue;

impl MigrationName for ChannelsAndDeliveryQueue {
    fn name(&self) -> &str {
        "m20261201_000001_channels_and_delivery_queue"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ChannelsAndDeliveryQueue {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("channel_subscriptions"))
                    .if_not_exists()
                    .col(string_key("id"))
                    .col(integer("audience"))
                    .col(string("agency_id"))
                    .col(integer("channel"))
                    .col(string("endpoint"))
                    .col(string("language"))
                    .col(string("recipient_name"))
                    .col(text("secret"))
                    .col(text("previous_secret"))
                    .col(big_null("previous_secret_expires_at"))
                    .col(big("version"))
                    .col(big("source_version"))
                    .col(big("created_at"))
                    .col(big("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("channel_subscriptions_target")
                    .table(Alias::new("channel_subscriptions"))
                    .col(Alias::new("audience"))
                    .col(Alias::new("agency_id"))
                    .col(Alias::new("channel"))
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Earlier subscriptions were webhooks; their secrets are still plain text here and are
        // sealed when the service starts (see `subscriptions::seal_legacy_secrets`).
        db.execute_unprepared(
            "INSERT INTO channel_subscriptions (id, audience, agency_id, channel, endpoint, language, \
             recipient_name, secret, previous_secret, previous_secret_expires_at, version, source_version, \
             created_at, updated_at) \
             SELECT id, audience, agency_id, 1, endpoint, 'en', '', secret, '', CAST(NULL AS BIGINT), 1, 0, updated_at, updated_at \
             FROM subscriptions",
        )
        .await?;
        manager.drop_table(Table::drop().table(Alias::new("subscriptions")).to_owned()).await?;

        manager
            .create_table(
                Table::create()
                    .table(Alias::new("messages"))
                    .if_not_exists()
                    .col(string("notification_id"))
                    .col(integer("audience"))
                    .col(integer("kind"))
                    .col(string("request_id"))
                    .col(string("agency_id"))
                    .col(string("schema"))
                    .col(text("payload"))
                    .col(big_null("stream_seq"))
                    .col(big("created_at"))
                    .primary_key(
                        Index::create()
                            .name("pk-messages")
                            .col(Alias::new("notification_id"))
                            .col(Alias::new("audience")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("messages_stream_seq")
                    .table(Alias::new("messages"))
                    .col(Alias::new("stream_seq"))
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("sequences"))
                    .if_not_exists()
                    .col(string_key("name"))
                    .col(big("last"))
                    .to_owned(),
            )
            .await?;
        db.execute_unprepared("INSERT INTO sequences (name, last) VALUES ('stream', 0)").await?;

        for column in [
            integer("channel").default(1).to_owned(),
            string("subscription_id").default("").to_owned(),
            string("failure").default("").to_owned(),
            big_null("next_attempt_at"),
            big_null("locked_until"),
            big("retry_from").default(0).to_owned(),
            string_null("trace_context"),
        ] {
            manager.alter_table(Table::alter().table(Alias::new("deliveries")).add_column(column).to_owned()).await?;
        }
        // Deliveries still waiting keep their place: the audience's message as it was recorded
        // then (one body for every audience, as earlier versions sent), the subscription they
        // were made for, due now.
        db.execute_unprepared(
            "INSERT INTO messages (notification_id, audience, kind, request_id, agency_id, schema, payload, \
             stream_seq, created_at) \
             SELECT DISTINCT d.notification_id, d.audience, n.kind, n.request_id, n.agency_id, \
             'crs.notification.legacy.v0', n.payload, CAST(NULL AS BIGINT), n.created_at \
             FROM deliveries d JOIN notifications n ON n.id = d.notification_id WHERE d.state IN (1, 3)",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE deliveries SET \
             subscription_id = COALESCE((SELECT s.id FROM channel_subscriptions s, notifications n \
               WHERE n.id = deliveries.notification_id AND s.audience = deliveries.audience AND s.channel = 1 \
               AND s.agency_id = CASE WHEN deliveries.audience = 1 THEN n.agency_id ELSE '' END), ''), \
             retry_from = created_at, \
             next_attempt_at = CASE WHEN state IN (1, 3) THEN created_at ELSE NULL END",
        )
        .await?;
        // The secret copied into each delivery goes: deliveries sign with their subscription's.
        db.execute_unprepared("ALTER TABLE deliveries DROP COLUMN secret").await?;
        // Deliveries no longer travel through the outbox.
        db.execute_unprepared("DELETE FROM outbox WHERE topic = 'webhook.deliver'").await?;
        for (name, column) in [("deliveries_due", "next_attempt_at"), ("deliveries_subscription", "subscription_id")] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Alias::new("deliveries"))
                        .col(Alias::new(column))
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for index in ["deliveries_due", "deliveries_subscription"] {
            manager.drop_index(Index::drop().name(index).table(Alias::new("deliveries")).to_owned()).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("deliveries"))
                    .add_column(string("secret").default("").to_owned())
                    .to_owned(),
            )
            .await?;
        for column in
            ["channel", "subscription_id", "failure", "next_attempt_at", "locked_until", "retry_from", "trace_context"]
        {
            db.execute_unprepared(&format!("ALTER TABLE deliveries DROP COLUMN {column}")).await?;
        }
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
            .await?;
        // Sealed secrets cannot be opened here: the earlier version gets webhooks without them.
        db.execute_unprepared(
            "INSERT INTO subscriptions (audience, agency_id, id, endpoint, secret, updated_at) \
             SELECT audience, agency_id, id, endpoint, '', updated_at FROM channel_subscriptions WHERE channel = 1",
        )
        .await?;
        for table in ["sequences", "messages", "channel_subscriptions"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}

/// Transparency records: one row per decided request with only the structured fields that
/// statements of reasons, notices and the report are written from, looked up by decision time.
struct TransparencyRecords;

impl MigrationName for TransparencyRecords {
    fn name(&self) -> &str {
        "m20261210_000001_transparency_records"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for TransparencyRecords {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("transparency_records"))
                    .if_not_exists()
                    .col(string_key("request_id"))
                    .col(string("notification_id"))
                    .col(string("agency_name"))
                    .col(string("jurisdiction"))
                    .col(integer("legal_instrument"))
                    .col(integer("category"))
                    .col(text("keywords"))
                    .col(string("legal_reference"))
                    .col(big_null("received_at"))
                    .col(big("decided_at"))
                    .col(big_null("due_at"))
                    .col(text("items"))
                    .col(big("recorded_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("transparency_records_decided")
                    .table(Alias::new("transparency_records"))
                    .col(Alias::new("decided_at"))
                    .col(Alias::new("request_id"))
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Alias::new("transparency_records")).to_owned()).await
    }
}

/// The Subscribe stream ordered by the transaction that published each message
/// (`stream_txid`, then `stream_seq`; see `crs_platform::db::commit_order`) instead of one
/// counter row that every publishing transaction held until it committed. On PostgreSQL
/// positions come from a sequence, starting after the counter's last; SQLite, with one writer,
/// keeps the counter.
struct StreamInCommitOrder;

impl MigrationName for StreamInCommitOrder {
    fn name(&self) -> &str {
        "m20261211_000001_stream_in_commit_order"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for StreamInCommitOrder {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("messages"))
                    .add_column(ColumnDef::new(Alias::new("stream_txid")).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("messages_stream_order")
                    .table(Alias::new("messages"))
                    .col(Alias::new("audience"))
                    .col(Alias::new("stream_txid"))
                    .col(Alias::new("stream_seq"))
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared("CREATE SEQUENCE IF NOT EXISTS stream_positions").await?;
            db.execute_unprepared(
                "SELECT setval('stream_positions', COALESCE((SELECT last FROM sequences WHERE name = 'stream'), 0) + 1, false)",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared(
                "UPDATE sequences SET last = (SELECT COALESCE(MAX(stream_seq), 0) FROM messages) WHERE name = 'stream'",
            )
            .await?;
            db.execute_unprepared("DROP SEQUENCE IF EXISTS stream_positions").await?;
        }
        manager
            .drop_index(Index::drop().name("messages_stream_order").table(Alias::new("messages")).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(Alias::new("messages")).drop_column(Alias::new("stream_txid")).to_owned())
            .await
    }
}

/// An index on each agency's messages by time: a new agency subscription looks up the messages
/// that overtook it (`Subscriptions::put`).
struct MessagesByAgency;

impl MigrationName for MessagesByAgency {
    fn name(&self) -> &str {
        "m20261212_000001_messages_by_agency"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for MessagesByAgency {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("messages_agency_created")
                    .table(Alias::new("messages"))
                    .col(Alias::new("agency_id"))
                    .col(Alias::new("audience"))
                    .col(Alias::new("created_at"))
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("messages_agency_created").table(Alias::new("messages")).to_owned()).await
    }
}
