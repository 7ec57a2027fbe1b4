//! Legal review's schema, written out migration by migration: a released migration never
//! changes, so a database upgraded step by step and a fresh one end up the same (the schema
//! test checks that against the entities).

use crs_platform::db::columns::*;
use sea_orm::DbBackend;
use sea_orm::sea_query::{Alias, Index, Table};
use sea_orm_migration::prelude::*;

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
            Box::new(crs_platform::outbox::OutboxTopicsByRpc),
            Box::new(ReviewIntegrity),
            Box::new(crs_platform::outbox::OutboxDeadLetters),
            Box::new(CaseTextRetention),
            Box::new(KnownQueues),
            Box::new(Merges),
            Box::new(AuditPending),
            Box::new(crs_platform::outbox::OutboxClaimOrder),
        ]
    }
}

fn t(name: &str) -> Alias {
    Alias::new(name)
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
        manager
            .create_table(
                Table::create()
                    .table(t("cases"))
                    .if_not_exists()
                    .col(string_key("id"))
                    .col(integer("status"))
                    .col(string("queue"))
                    .col(integer("priority"))
                    .col(big("due_at"))
                    .col(bytes("submission"))
                    .col(bytes("assessment"))
                    .col(bytes("deadline"))
                    .col(string("assigned_reviewer"))
                    .col(big("claim_expires_at"))
                    .col(text("decision_summary"))
                    .col(string("decided_by"))
                    .col(big_null("decided_at"))
                    .col(big("created_at"))
                    .col(big("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(t("decisions"))
                    .if_not_exists()
                    .col(string("case_id"))
                    .col(integer("item_index"))
                    .col(integer("outcome"))
                    .col(integer("no_action_reason"))
                    .col(integer("ground"))
                    .col(text("legal_ground"))
                    .col(text("explanation"))
                    .col(string("territorial_scope"))
                    .col(string("decided_by"))
                    .col(big("decided_at"))
                    .primary_key(Index::create().name("pk-decisions").col(t("case_id")).col(t("item_index")))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["decisions", "cases"] {
            manager.drop_table(Table::drop().table(t(table)).to_owned()).await?;
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
                .alter_table(Table::alter().table(t("cases")).add_column(text(column).default("")).to_owned())
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(t("case_withdrawals"))
                    .if_not_exists()
                    .col(string_key("case_id"))
                    .col(text("reason"))
                    .col(big("withdrawn_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(t("case_withdrawals")).to_owned()).await?;
        for column in ["pending_question", "last_answer"] {
            manager.alter_table(Table::alter().table(t("cases")).drop_column(t(column)).to_owned()).await?;
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
                    .table(t("cases"))
                    .add_column(ColumnDef::new(t("trace_context")).string_len(256).null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(t("cases")).drop_column(t("trace_context")).to_owned()).await
    }
}

/// Review that can be trusted: escalation that holds, second-reviewer approval, a case version
/// for intake's projection, every question and answer kept, the audit trail, idempotent
/// commands, and withdrawals that precede their case kept as withdrawn cases. The deadline now
/// lives in columns and the SLA clock, not in a copied blob.
struct ReviewIntegrity;

impl MigrationName for ReviewIntegrity {
    fn name(&self) -> &str {
        "m20261129_000002_review_integrity"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ReviewIntegrity {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        for column in [
            boolean("claim_senior").default(false).to_owned(),
            boolean("escalated").default(false).to_owned(),
            string("approved_by").default("").to_owned(),
            string("approval_reason").default("").to_owned(),
            big("version").default(0).to_owned(),
        ] {
            manager.alter_table(Table::alter().table(t("cases")).add_column(column).to_owned()).await?;
        }
        // Escalated cases stay escalated; only senior reviewers could claim them.
        db.execute_unprepared("UPDATE cases SET escalated = TRUE, claim_senior = TRUE WHERE status = 5").await?;
        db.execute_unprepared("UPDATE cases SET version = 1").await?;
        manager
            .alter_table(
                Table::alter().table(t("decisions")).add_column(text("platform_policy").default("")).to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(t("information_exchanges"))
                    .col(string("case_id"))
                    .col(integer("round"))
                    .col(string("asked_by"))
                    .col(text("question"))
                    .col(big("asked_at"))
                    .col(text("answer"))
                    .col(big_null("answered_at"))
                    .primary_key(Index::create().name("pk-information_exchanges").col(t("case_id")).col(t("round")))
                    .to_owned(),
            )
            .await?;
        // The one question and answer a case kept before: the latest answer, then a pending question.
        db.execute_unprepared(
            "INSERT INTO information_exchanges (case_id, round, asked_by, question, asked_at, answer, answered_at) \
             SELECT id, 1, '', '(not recorded)', updated_at, last_answer, updated_at FROM cases WHERE last_answer <> ''",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO information_exchanges (case_id, round, asked_by, question, asked_at, answer, answered_at) \
             SELECT id, CASE WHEN last_answer <> '' THEN 2 ELSE 1 END, assigned_reviewer, pending_question, updated_at, '', NULL \
             FROM cases WHERE pending_question <> ''",
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(t("audit_entries"))
                    .col(big("sequence").primary_key().to_owned())
                    .col(string("case_id"))
                    .col(string("actor"))
                    .col(string("action"))
                    .col(text("details"))
                    .col(string("trace_id"))
                    .col(big("at"))
                    .col(string("previous_hash"))
                    .col(string("hash"))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [("audit_entries_case_id", "case_id"), ("audit_entries_at", "at")] {
            manager
                .create_index(Index::create().name(name).table(t("audit_entries")).col(t(column)).to_owned())
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(t("command_results"))
                    .col(string("actor"))
                    .col(string("idempotency_key"))
                    .col(string("case_id"))
                    .col(string("command"))
                    .col(string("request_hash"))
                    .col(bytes("response"))
                    .col(big("created_at"))
                    .primary_key(Index::create().name("pk-command_results").col(t("actor")).col(t("idempotency_key")))
                    .to_owned(),
            )
            .await?;
        // Claim-next reads a queue's most urgent cases.
        manager
            .create_index(
                Index::create()
                    .name("cases_queue_priority_due")
                    .table(t("cases"))
                    .col(t("queue"))
                    .col(t("priority"))
                    .col(t("due_at"))
                    .to_owned(),
            )
            .await?;

        // A withdrawal that came before its case becomes the case itself, withdrawn: the row is
        // the gate both the withdrawal and the enqueue pass.
        let empty = if backend == DbBackend::Postgres { "'\\x'::bytea" } else { "X''" };
        db.execute_unprepared(&format!(
            "INSERT INTO cases (id, status, queue, priority, due_at, submission, assessment, deadline, \
             assigned_reviewer, claim_expires_at, decision_summary, decided_by, decided_at, pending_question, \
             last_answer, trace_context, created_at, updated_at, claim_senior, escalated, approved_by, \
             approval_reason, version) \
             SELECT case_id, 8, '', 0, 0, {empty}, {empty}, {empty}, '', 0, '', '', NULL, '', '', NULL, withdrawn_at, \
             withdrawn_at, FALSE, FALSE, '', '', 1 FROM case_withdrawals \
             WHERE case_id NOT IN (SELECT id FROM cases)"
        ))
        .await?;
        manager.drop_table(Table::drop().table(t("case_withdrawals")).to_owned()).await?;
        for column in ["deadline", "last_answer"] {
            manager.alter_table(Table::alter().table(t("cases")).drop_column(t(column)).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration("the review integrity migration keeps the audit trail and cannot be undone".into()))
    }
}

/// When a finished case's free text was blanked by the retention job (see `retention`).
struct CaseTextRetention;

impl MigrationName for CaseTextRetention {
    fn name(&self) -> &str {
        "m20261129_000001_case_text_retention"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CaseTextRetention {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(t("cases")).add_column(big_null("text_redacted_at")).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(t("cases")).drop_column(t("text_redacted_at")).to_owned()).await
    }
}

/// The queues cases have been routed to, so a queue stays listed after its last case: triage's
/// routing rules name them, legal review has no list of its own.
struct KnownQueues;

impl MigrationName for KnownQueues {
    fn name(&self) -> &str {
        "m20261206_000002_known_queues"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for KnownQueues {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(t("known_queues"))
                    .if_not_exists()
                    .col(string_key("name"))
                    .col(big("first_case_at"))
                    .to_owned(),
            )
            .await?;
        // The queues of the cases already here.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO known_queues (name, first_case_at) \
                 SELECT queue, MIN(created_at) FROM cases WHERE queue <> '' GROUP BY queue",
            )
            .await
            .map(drop)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(t("known_queues")).to_owned()).await
    }
}

/// Merged requests: which content each case names, which open case holds each piece of content
/// per jurisdiction, and the requests that follow a case.
struct Merges;

impl MigrationName for Merges {
    fn name(&self) -> &str {
        "m20261206_000003_merges"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Merges {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(t("case_content"))
                    .if_not_exists()
                    .col(string("case_id"))
                    .col(integer("item_index"))
                    .col(string("content_key"))
                    .col(string("jurisdiction"))
                    .primary_key(Index::create().name("pk-case_content").col(t("case_id")).col(t("item_index")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(t("open_content"))
                    .if_not_exists()
                    .col(string("jurisdiction"))
                    .col(string("content_key"))
                    .col(string("case_id"))
                    .primary_key(Index::create().name("pk-open_content").col(t("jurisdiction")).col(t("content_key")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(t("merged_requests"))
                    .if_not_exists()
                    .col(string_key("request_id"))
                    .col(string("case_id"))
                    .col(bytes("submission"))
                    .col(bytes("assessment"))
                    .col(integer("status"))
                    .col(big("version"))
                    .col(big("merged_at"))
                    .col(big_null("finished_at"))
                    .col(big_null("text_redacted_at"))
                    .to_owned(),
            )
            .await?;
        for (table, name, column) in [
            ("case_content", "case_content_content_key", "content_key"),
            ("open_content", "open_content_case_id", "case_id"),
            ("merged_requests", "merged_requests_case_id", "case_id"),
        ] {
            manager.create_index(Index::create().name(name).table(t(table)).col(t(column)).to_owned()).await?;
        }
        backfill_content(manager.get_connection()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["merged_requests", "open_content", "case_content"] {
            manager.drop_table(Table::drop().table(t(table)).to_owned()).await?;
        }
        Ok(())
    }
}

/// Records the content of the cases opened before merges existed, and lets the open ones hold
/// it, so a new request naming it follows them.
async fn backfill_content(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    use prost::Message;
    let open: Vec<i32> = crs_domain::Status::ALL
        .iter()
        .filter(|s| s.is_open())
        .map(|s| crs_proto::convert::wire::<crs_proto::common::RequestStatus, _>(*s))
        .collect();
    let mut after = String::new();
    loop {
        let page = conn
            .query_all(
                &Query::select()
                    .columns([t("id"), t("status"), t("submission")])
                    .from(t("cases"))
                    .and_where(Expr::col(t("id")).gt(after.clone()))
                    .order_by(t("id"), Order::Asc)
                    .limit(500)
                    .to_owned(),
            )
            .await?;
        let Some(last) = page.last() else { return Ok(()) };
        after = last.try_get::<String>("", "id")?;
        for row in page {
            let id: String = row.try_get("", "id")?;
            let status: i32 = row.try_get("", "status")?;
            let bytes: Vec<u8> = row.try_get("", "submission")?;
            let Ok(s) = crs_proto::common::Submission::decode(bytes.as_slice()) else { continue };
            if s.items.is_empty() {
                continue;
            }
            let mut content = Query::insert()
                .into_table(t("case_content"))
                .columns([t("case_id"), t("item_index"), t("content_key"), t("jurisdiction")])
                .on_conflict(OnConflict::columns([t("case_id"), t("item_index")]).do_nothing().to_owned())
                .to_owned();
            for i in &s.items {
                content.values_panic([
                    id.clone().into(),
                    (i.index as i32).into(),
                    i.content_key.clone().into(),
                    s.jurisdiction.clone().into(),
                ]);
            }
            conn.execute(&content).await?;
            if open.contains(&status) {
                let mut held = Query::insert()
                    .into_table(t("open_content"))
                    .columns([t("jurisdiction"), t("content_key"), t("case_id")])
                    .on_conflict(OnConflict::columns([t("jurisdiction"), t("content_key")]).do_nothing().to_owned())
                    .to_owned();
                for key in s.items.iter().map(|i| &i.content_key).collect::<std::collections::BTreeSet<_>>() {
                    held.values_panic([s.jurisdiction.clone().into(), key.clone().into(), id.clone().into()]);
                }
                conn.execute(&held).await?;
            }
        }
    }
}

/// Audit entries recorded with their actions, waiting to be sealed into the chain: commands no
/// longer serialise on the chain's end (see `crate::audit`).
struct AuditPending;

impl MigrationName for AuditPending {
    fn name(&self) -> &str {
        "m20261206_000004_audit_pending"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AuditPending {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(t("audit_pending"))
                    .if_not_exists()
                    .col(big("id").auto_increment().primary_key())
                    .col(string("case_id"))
                    .col(string("actor"))
                    .col(string("action"))
                    .col(text("details"))
                    .col(string("trace_id"))
                    .col(big("at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(t("audit_pending")).to_owned()).await
    }
}
