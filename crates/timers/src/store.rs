//! The clocks' truth in the owning service's database, with the same code on SQLite and
//! PostgreSQL. Every function takes the caller's connection or transaction, so a clock changes
//! in the same transaction as the case it times.

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Alias, Index, OnConflict};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryOrder, QuerySelect, QueryTrait, Set, Statement};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

use crate::{Clock, Firing};

pub mod clock {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sla_clocks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub case_id: String,
        pub budget_ms: i64,
        pub started_at: i64,
        pub paused_at: Option<i64>,
        pub paused_total_ms: i64,
        pub generation: i64,
        /// JSON array of percentages, ascending.
        pub thresholds: String,
        pub next_index: i32,
        /// When the next threshold is due; NULL when paused, stopped or done. The index the
        /// database fallback and the rebuild read.
        pub next_due_at: Option<i64>,
        pub stopped_at: Option<i64>,
        pub trace_context: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod firing {
    use sea_orm::entity::prelude::*;

    /// Each threshold fired, once per (case, threshold, generation).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sla_firings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub case_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub threshold: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub generation: i64,
        pub due_at: i64,
        pub fired_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

impl From<clock::Model> for Clock {
    fn from(m: clock::Model) -> Clock {
        Clock {
            case_id: m.case_id,
            deadline: crs_domain::deadline::Deadline {
                budget_ms: m.budget_ms,
                started_at: m.started_at,
                paused_at: m.paused_at,
                paused_total_ms: m.paused_total_ms,
                thresholds: serde_json::from_str(&m.thresholds).unwrap_or_default(),
            },
            generation: m.generation,
            next_index: m.next_index.max(0) as usize,
            stopped_at: m.stopped_at,
            trace_context: m.trace_context,
        }
    }
}

fn row(c: &Clock) -> clock::Model {
    clock::Model {
        case_id: c.case_id.clone(),
        budget_ms: c.deadline.budget_ms,
        started_at: c.deadline.started_at,
        paused_at: c.deadline.paused_at,
        paused_total_ms: c.deadline.paused_total_ms,
        generation: c.generation,
        thresholds: serde_json::to_string(&c.deadline.thresholds).expect("numbers serialise"),
        next_index: c.next_index as i32,
        next_due_at: c.next_due().map(|(_, due)| due),
        stopped_at: c.stopped_at,
        trace_context: c.trace_context.clone(),
    }
}

/// Clock operations on a connection or transaction.
pub struct ClockStore;

impl ClockStore {
    /// A new running clock: thresholds are sorted, and 100 % (the breach) is always one.
    pub fn new_clock(case_id: &str, budget_ms: i64, warnings: &[u32], started_at: i64, trace: Option<String>) -> Clock {
        Clock {
            case_id: case_id.to_owned(),
            deadline: crs_domain::deadline::Deadline::new(budget_ms, started_at, warnings),
            generation: 1,
            next_index: 0,
            stopped_at: None,
            trace_context: trace,
        }
    }

    pub async fn insert<C: ConnectionTrait>(conn: &C, clock: &Clock) -> Result<(), DbErr> {
        conn.execute_raw(Self::insert_statement(conn.get_database_backend(), clock)).await.map(|_| ())
    }

    /// The statement [`ClockStore::insert`] runs, to send with others
    /// (`crs_platform::db::in_one_round_trip`).
    pub fn insert_statement(backend: DbBackend, clock: &Clock) -> Statement {
        clock::Entity::insert(clock::ActiveModel::from(row(clock))).build(backend)
    }

    /// Inserts many clocks in large statements (arming a backlog, benchmarks).
    pub async fn insert_many<C: ConnectionTrait>(conn: &C, clocks: &[Clock]) -> Result<(), DbErr> {
        for chunk in clocks.chunks(500) {
            clock::Entity::insert_many(chunk.iter().map(|c| clock::ActiveModel::from(row(c)))).exec(conn).await?;
        }
        Ok(())
    }

    /// The clock of `case_id`, locked for update when `lock` (PostgreSQL; SQLite serialises writers).
    pub async fn load<C: ConnectionTrait>(conn: &C, case_id: &str, lock: bool) -> Result<Option<Clock>, DbErr> {
        let mut q = clock::Entity::find_by_id(case_id.to_owned());
        if lock {
            q = q.lock_exclusive();
        }
        Ok(q.one(conn).await?.map(Clock::from))
    }

    /// The clocks of `case_ids`, locked for update when `lock`.
    pub async fn load_many<C: ConnectionTrait>(conn: &C, case_ids: &[String], lock: bool) -> Result<Vec<Clock>, DbErr> {
        let mut out = Vec::with_capacity(case_ids.len());
        for chunk in case_ids.chunks(500) {
            let mut q = clock::Entity::find().filter(clock::Column::CaseId.is_in(chunk.iter().cloned()));
            if lock {
                q = q.lock_exclusive();
            }
            out.extend(q.all(conn).await?.into_iter().map(Clock::from));
        }
        Ok(out)
    }

    /// Writes many clocks' new state in a few statements (an upsert per 500 clocks).
    pub async fn save_many<C: ConnectionTrait>(conn: &C, clocks: &[Clock]) -> Result<(), DbErr> {
        for chunk in clocks.chunks(500) {
            clock::Entity::insert_many(chunk.iter().map(|c| clock::ActiveModel::from(row(c))))
                .on_conflict(
                    OnConflict::column(clock::Column::CaseId)
                        .update_columns([
                            clock::Column::PausedAt,
                            clock::Column::PausedTotalMs,
                            clock::Column::Generation,
                            clock::Column::NextIndex,
                            clock::Column::NextDueAt,
                            clock::Column::StoppedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(conn)
                .await?;
        }
        Ok(())
    }

    /// Records many firings; one already recorded (same case, threshold and generation) is
    /// left as it was.
    pub async fn record_firings<C: ConnectionTrait>(conn: &C, firings: &[Firing]) -> Result<(), DbErr> {
        for chunk in firings.chunks(500) {
            firing::Entity::insert_many(chunk.iter().map(|f| firing::ActiveModel {
                case_id: Set(f.case_id.clone()),
                threshold: Set(f.threshold as i32),
                generation: Set(f.generation),
                due_at: Set(f.due_at),
                fired_at: Set(f.fired_at),
            }))
            .on_conflict(
                OnConflict::columns([firing::Column::CaseId, firing::Column::Threshold, firing::Column::Generation])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
        }
        Ok(())
    }

    pub async fn save<C: ConnectionTrait>(conn: &C, clock: &Clock) -> Result<(), DbErr> {
        clock::ActiveModel::from(row(clock)).reset_all().update(conn).await.map(|_| ())
    }

    /// Applies `change` to the clock and starts a new generation; returns (before, after).
    async fn change<C: ConnectionTrait>(
        conn: &C,
        case_id: &str,
        change: impl FnOnce(&mut Clock) -> bool,
    ) -> Result<Option<(Clock, Clock)>, DbErr> {
        let Some(before) = Self::load(conn, case_id, true).await? else { return Ok(None) };
        let mut after = before.clone();
        if !change(&mut after) {
            return Ok(Some((before.clone(), before)));
        }
        after.generation += 1;
        Self::save(conn, &after).await?;
        Ok(Some((before, after)))
    }

    /// Pauses the clock (the remaining budget is kept).
    pub async fn pause<C: ConnectionTrait>(conn: &C, case_id: &str, at: i64) -> Result<Option<(Clock, Clock)>, DbErr> {
        Self::change(conn, case_id, |c| {
            if c.deadline.is_paused() || c.stopped_at.is_some() {
                return false;
            }
            c.deadline.pause(at);
            true
        })
        .await
    }

    /// Resumes a paused clock: every pending threshold moves by exactly the paused time.
    pub async fn resume<C: ConnectionTrait>(conn: &C, case_id: &str, at: i64) -> Result<Option<(Clock, Clock)>, DbErr> {
        Self::change(conn, case_id, |c| {
            if !c.deadline.is_paused() || c.stopped_at.is_some() {
                return false;
            }
            c.deadline.resume(at);
            true
        })
        .await
    }

    /// Brings the deadline forward to `due_by` when it falls later (a request with a shorter
    /// legal deadline now follows the case): the budget shrinks by the difference, so the
    /// thresholds still to come move earlier and one already passed fires at once. A stopped
    /// clock, or one already due by then, is left as it is.
    pub async fn bring_forward<C: ConnectionTrait>(
        conn: &C,
        case_id: &str,
        due_by: i64,
        now: i64,
    ) -> Result<Option<(Clock, Clock)>, DbErr> {
        Self::change(conn, case_id, |c| {
            let due = c.deadline.due_at(now);
            if c.stopped_at.is_some() || due <= due_by {
                return false;
            }
            c.deadline.budget_ms = (c.deadline.budget_ms - (due - due_by)).max(0);
            true
        })
        .await
    }

    /// Stops the clock (a decision): nothing more fires.
    pub async fn stop<C: ConnectionTrait>(conn: &C, case_id: &str, at: i64) -> Result<Option<(Clock, Clock)>, DbErr> {
        Self::change(conn, case_id, |c| {
            if c.stopped_at.is_some() {
                return false;
            }
            c.stopped_at = Some(at);
            true
        })
        .await
    }

    /// Running clocks whose next threshold is due by `now`, earliest first (the fallback sweep).
    pub async fn due<C: ConnectionTrait>(conn: &C, now: i64, limit: u64) -> Result<Vec<Clock>, DbErr> {
        Ok(clock::Entity::find()
            .filter(clock::Column::NextDueAt.lte(now))
            .order_by_asc(clock::Column::NextDueAt)
            .limit(limit)
            .all(conn)
            .await?
            .into_iter()
            .map(Clock::from)
            .collect())
    }

    /// Running clocks after `after` (by case id), for rebuilding the index page by page.
    pub async fn running_after<C: ConnectionTrait>(conn: &C, after: &str, limit: u64) -> Result<Vec<Clock>, DbErr> {
        Ok(clock::Entity::find()
            .filter(clock::Column::NextDueAt.is_not_null())
            .filter(clock::Column::CaseId.gt(after))
            .order_by_asc(clock::Column::CaseId)
            .limit(limit)
            .all(conn)
            .await?
            .into_iter()
            .map(Clock::from)
            .collect())
    }

    /// The firings of a case, in order.
    pub async fn firings<C: ConnectionTrait>(conn: &C, case_id: &str) -> Result<Vec<firing::Model>, DbErr> {
        firing::Entity::find()
            .filter(firing::Column::CaseId.eq(case_id))
            .order_by_asc(firing::Column::FiredAt)
            .order_by_asc(firing::Column::Threshold)
            .all(conn)
            .await
    }
}

/// Creates `sla_clocks` and `sla_firings`; the service owning the clocks lists it.
pub struct ClockMigration;

impl MigrationName for ClockMigration {
    fn name(&self) -> &str {
        "m20261128_000010_sla_clocks"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for ClockMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use crs_platform::db::columns::*;
        use sea_orm::sea_query::Table;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("sla_clocks"))
                    .if_not_exists()
                    .col(string_key("case_id"))
                    .col(big("budget_ms"))
                    .col(big("started_at"))
                    .col(big_null("paused_at"))
                    .col(big("paused_total_ms"))
                    .col(big("generation"))
                    .col(string("thresholds"))
                    .col(integer("next_index"))
                    .col(big_null("next_due_at"))
                    .col(big_null("stopped_at"))
                    .col(string_null("trace_context"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("sla_firings"))
                    .if_not_exists()
                    .col(string("case_id"))
                    .col(integer("threshold"))
                    .col(big("generation"))
                    .col(big("due_at"))
                    .col(big("fired_at"))
                    .primary_key(
                        Index::create()
                            .name("pk-sla_firings")
                            .col(Alias::new("case_id"))
                            .col(Alias::new("threshold"))
                            .col(Alias::new("generation")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("sla_clocks_next_due_at")
                    .table(Alias::new("sla_clocks"))
                    .col(Alias::new("next_due_at"))
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(sea_orm::sea_query::Table::drop().table(Alias::new("sla_firings")).to_owned()).await?;
        manager.drop_table(sea_orm::sea_query::Table::drop().table(Alias::new("sla_clocks")).to_owned()).await
    }
}
