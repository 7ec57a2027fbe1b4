//! The service's database through sea-orm: the same code on SQLite (the embedded default) and
//! PostgreSQL (production).

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use sea_orm_migration::MigratorTrait;
use tokio_util::sync::CancellationToken;

use crate::config::DatabaseConfig;

/// Connects and, when configured, applies the service's pending migrations.
pub async fn connect<M: MigratorTrait>(cfg: &DatabaseConfig) -> anyhow::Result<DatabaseConnection> {
    let sqlite = cfg.url.starts_with("sqlite:");
    if sqlite {
        ensure_sqlite_parent_dir(&cfg.url)?;
    }
    let mut options = ConnectOptions::new(cfg.url.clone());
    // A call waits at most this long for a connection: a lost database fails calls fast
    // (UNAVAILABLE), it does not hold them until the caller's deadline.
    options
        .connect_timeout(Duration::from_millis(cfg.acquire_timeout_ms))
        .acquire_timeout(Duration::from_millis(cfg.acquire_timeout_ms))
        .sqlx_logging(false);
    // SQLite allows one writer at a time; a single pooled connection serialises writers in the
    // pool instead of surfacing SQLITE_BUSY when a reading transaction upgrades to writing.
    options.max_connections(if sqlite { 1 } else { cfg.max_connections });
    if !sqlite {
        let kept_open = cfg.min_connections.min(cfg.max_connections);
        // Opened before `connect` returns, so before the service starts serving.
        options.min_connections(kept_open);
        // A connection handed out again within a second is not asked first whether it still
        // works: under load that question was a round trip to PostgreSQL for every transaction.
        // One idle for longer is, as it may have been dropped by the server or a proxy since.
        options.test_before_acquire_if_idle_for(PING_AFTER_IDLE);
    }
    let db = Database::connect(options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database at {}: {e}", redact(&cfg.url)))?;
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;").await?;
    }
    if cfg.migrate {
        M::up(&db, None).await.map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
        refresh_statistics(&db).await?;
    }
    Ok(db)
}

/// How long a pooled PostgreSQL connection may have been idle and still be handed out without a
/// ping first (see [`connect`]).
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Refreshes the planner's statistics (PostgreSQL `ANALYZE`), after migrations: a new index or
/// table without them can make the planner pick a plan that reads thousands of rows where it
/// needs one (the idempotency lookup once scanned an agency's whole history). Where autovacuum
/// is off, [`spawn_statistics_keeper`] keeps them fresh as the tables grow.
pub async fn refresh_statistics(db: &DatabaseConnection) -> anyhow::Result<()> {
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared("ANALYZE").await.map_err(|e| anyhow::anyhow!("ANALYZE after migrations failed: {e}"))?;
    }
    Ok(())
}

/// How often [`spawn_statistics_keeper`] looks at what changed.
pub const STATISTICS_CHECK: Duration = Duration::from_secs(2);

/// How long [`spawn_statistics_keeper`] leaves a table that turned over without growing (a
/// queue such as the outbox, rows updated in place) before it analyzes it again: autovacuum's
/// own pace (its default `autovacuum_naptime`).
pub const TURNOVER_ANALYZE_INTERVAL: Duration = Duration::from_secs(60);

/// Where the PostgreSQL server runs no autovacuum, keeps the planner's statistics of this
/// database's tables from falling far behind. Every `every` it analyzes again each table that
/// either
/// - **grew**: holds more than 50 rows and twice as many rows as the planner believes it holds
///   (it doubled, say). Autovacuum's analyze goes by a tenth, but looks once a minute; looking
///   every few seconds, a tenth would analyze a growing table over and over, at a cost that grows
///   with it, where what matters is that the planner is never wrong by orders of magnitude; or
/// - **turned over**: had more than 50 rows and a tenth of its rows inserted, updated or deleted
///   since it was last analyzed, and was last analyzed [`TURNOVER_ANALYZE_INTERVAL`] ago or more,
///   as autovacuum would. A queue's rows come and go all the time without its size changing
///   much; analyzing it each time its rows turned over (every few seconds under load) cost
///   PostgreSQL 6–8 % of its CPU, and each `ANALYZE` made every connection plan its statements
///   on that table again.
///
/// Statistics taken after migrations on a new database describe empty tables, and the planner
/// trusts them: a plan it makes then and keeps on a connection stays until the statistics change.
/// A submission's idempotency lookup was planned that way through `requests_agency_received`,
/// and read the agency's whole history on every submission as it grew. Where autovacuum runs,
/// this does nothing: its analyze does the same.
pub fn spawn_statistics_keeper(
    db: DatabaseConnection,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if db.get_database_backend() != DbBackend::Postgres {
            return;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {},
            }
            if let Err(e) = analyze_changed_tables(&db, TURNOVER_ANALYZE_INTERVAL).await {
                tracing::debug!(error = %e, "could not refresh the tables' statistics; will try again");
            }
        }
    })
}

/// Analyzes the tables whose statistics fell far behind, when autovacuum is off: those that grew,
/// and those that turned over and were last analyzed `turnover_interval` ago or more (see
/// [`spawn_statistics_keeper`]); answers which.
pub async fn analyze_changed_tables(
    db: &DatabaseConnection,
    turnover_interval: Duration,
) -> Result<Vec<String>, sea_orm::DbErr> {
    let changed = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            // `reltuples`: the rows the planner believes the table holds, as last analyzed (or
            // vacuumed); `n_live_tup`: the rows it holds now, as counted since. Only the tables
            // this role may analyze (its own): another's would be asked for, and refused, every
            // round.
            "SELECT format('%I.%I', s.schemaname, s.relname) AS name FROM pg_stat_user_tables s \
             JOIN pg_class c ON c.oid = s.relid WHERE current_setting('autovacuum') = 'off' \
             AND pg_has_role(c.relowner, 'USAGE') AND (\
               s.n_live_tup > 50 + 2 * GREATEST(c.reltuples, 0) \
               OR (s.n_mod_since_analyze > 50 + 0.1 * GREATEST(c.reltuples, 0) \
                   AND COALESCE(GREATEST(s.last_analyze, s.last_autoanalyze), '-infinity') \
                       <= now() - make_interval(secs => $1)))",
            [turnover_interval.as_secs_f64().into()],
        ))
        .await?;
    let mut analyzed = Vec::with_capacity(changed.len());
    for row in changed {
        let name: String = row.try_get("", "name")?;
        // SKIP_LOCKED: a table being vacuumed (a relay's outbox) is analyzed another time. One
        // that fails (dropped meanwhile) does not keep the others from their turn.
        match db.execute_unprepared(&format!("ANALYZE (SKIP_LOCKED) {name}")).await {
            Ok(_) => analyzed.push(name),
            Err(e) => tracing::debug!(table = %name, error = %e, "could not analyze; will try again"),
        }
    }
    Ok(analyzed)
}

/// How long health waits for the database to answer before it counts as gone.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers whether the database is reachable (for health), within [`PING_TIMEOUT`].
pub async fn ping(db: &DatabaseConnection) -> bool {
    matches!(tokio::time::timeout(PING_TIMEOUT, db.ping()).await, Ok(Ok(())))
}

/// Whether `err` means the database could not be reached (the caller may retry: UNAVAILABLE),
/// rather than that the statement failed (INTERNAL).
pub fn is_unavailable(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    let sqlx_err = match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match sqlx_err.as_ref() {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Tls(_) => true,
        // Class 08: connection exceptions; 57P: the server shutting down or restarting.
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

fn ensure_sqlite_parent_dir(url: &str) -> anyhow::Result<()> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("cannot create the database directory {}: {e}", parent.display()))?;
    }
    Ok(())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Runs `statements` in one round trip on PostgreSQL; elsewhere one after the other, in order.
///
/// On PostgreSQL each statement but the last becomes a data-modifying `WITH` clause of the
/// last, so they are one statement: all of them run (a `WITH` clause that writes runs whether
/// or not the rest refers to it), all see the database as it was before the statement, and none
/// sees the rows another writes. So they must be writes that need no answer and do not depend
/// on each other's rows. The last may be anything but a statement with a `WITH` of its own,
/// such as a lock taken for the statements after it. Each statement is written with `$n`
/// placeholders counting from `$1`, as sea-query writes them for PostgreSQL.
pub async fn in_one_round_trip<C: ConnectionTrait>(conn: &C, statements: Vec<Statement>) -> Result<(), sea_orm::DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres || statements.len() < 2 {
        for statement in statements {
            conn.execute_raw(statement).await?;
        }
        return Ok(());
    }
    conn.execute_raw(one_statement(statements)).await?;
    Ok(())
}

/// `statements` as one PostgreSQL statement (see [`in_one_round_trip`]).
fn one_statement(statements: Vec<Statement>) -> Statement {
    let count = statements.len();
    let mut sql = String::new();
    let mut values: Vec<sea_orm::Value> = Vec::new();
    for (i, statement) in statements.into_iter().enumerate() {
        let part = renumbered(&statement.sql, values.len());
        if i + 1 < count {
            sql.push_str(if i == 0 { "WITH " } else { ", " });
            sql.push_str(&format!("write_{i} AS ({part})"));
        } else {
            sql.push(' ');
            sql.push_str(&part);
        }
        values.extend(statement.values.map(|v| v.0).unwrap_or_default());
    }
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// `sql` with each placeholder `$n` moved to `$(n + offset)`.
fn renumbered(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' || !chars.peek().is_some_and(char::is_ascii_digit) {
            continue;
        }
        let mut n = 0usize;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            n = n * 10 + d as usize;
            chars.next();
        }
        out.push_str(&(n + offset).to_string());
    }
    out
}

/// A client span for a unit of database work, named by what it does, with the database
/// semantic-convention attributes (`db.system`, `db.operation.name`).
pub fn span(db: &impl sea_orm::ConnectionTrait, operation: &'static str) -> tracing::Span {
    let system = match db.get_database_backend() {
        DbBackend::Postgres => "postgresql",
        DbBackend::Sqlite => "sqlite",
        _ => "other_sql",
    };
    tracing::info_span!(
        "db",
        otel.name = operation,
        otel.kind = "client",
        db.system = system,
        db.operation.name = operation
    )
}

/// A batch of rows sent to PostgreSQL as one array per column, for a statement that reads the
/// batch as `UNNEST($1::text[], $2::int4[], ...)`. Its text is the same whatever the batch's
/// size, so each connection prepares it once. A `VALUES` list with a row of placeholders per
/// row is a new statement for every size a batch comes in, parsed, analyzed and planned afresh:
/// that was most of the parsing and planning in PostgreSQL's profile under load.
///
/// An array's elements cannot be NULL (they are bound as `Vec<T>`); a nullable column travels
/// as a value the column never holds, turned back into NULL by the statement (`NULLIF`), or
/// beside an array of flags saying which rows have one.
pub mod arrays {
    use sea_orm::Value;
    use sea_orm::sea_query::ArrayType;

    fn array(ty: ArrayType, values: impl IntoIterator<Item = Value>) -> Value {
        Value::Array(ty, Some(Box::new(values.into_iter().collect())))
    }

    /// A `text[]` (also read into `varchar` columns).
    pub fn texts<S: Into<String>>(values: impl IntoIterator<Item = S>) -> Value {
        array(ArrayType::String, values.into_iter().map(|v| Value::from(v.into())))
    }

    /// An `int4[]`.
    pub fn ints(values: impl IntoIterator<Item = i32>) -> Value {
        array(ArrayType::Int, values.into_iter().map(Value::from))
    }

    /// An `int8[]`.
    pub fn bigints(values: impl IntoIterator<Item = i64>) -> Value {
        array(ArrayType::BigInt, values.into_iter().map(Value::from))
    }

    /// A `bool[]`.
    pub fn flags(values: impl IntoIterator<Item = bool>) -> Value {
        array(ArrayType::Bool, values.into_iter().map(Value::from))
    }

    /// A `bytea[]`.
    pub fn bytes(values: impl IntoIterator<Item = Vec<u8>>) -> Value {
        array(ArrayType::Bytes, values.into_iter().map(|v| Value::Bytes(Some(v))))
    }

    /// `column` equal to one of `values`. On PostgreSQL `column = ANY($n)`, the values one
    /// array: the statement's text is the same however many there are, so each connection
    /// prepares and plans it once, where `IN ($1, ..., $n)` is a statement of its own for every
    /// count. Elsewhere `IN (...)`.
    pub fn one_of<V: sea_orm::sea_query::ValueType + Into<Value>>(
        backend: sea_orm::DbBackend,
        column: impl sea_orm::sea_query::IntoColumnRef,
        values: impl IntoIterator<Item = V>,
    ) -> sea_orm::sea_query::Expr {
        use sea_orm::sea_query::{Expr, ExprTrait, extension::postgres::PgFunc};
        let values = values.into_iter().map(Into::into);
        match backend {
            sea_orm::DbBackend::Postgres => {
                Expr::col(column).eq(PgFunc::any(Expr::val(array(V::array_type(), values))))
            }
            _ => Expr::col(column).is_in(values.collect::<Vec<Value>>()),
        }
    }

    /// [`one_of`] for a statement written by hand: adds `values` to the statement's `params` and
    /// answers what follows the column, their placeholders numbered on from those already in
    /// `params`. On PostgreSQL `= ANY($n)`, the values one array; elsewhere `IN ($n, ...)`.
    pub fn one_of_sql<V: sea_orm::sea_query::ValueType + Into<Value>>(
        backend: sea_orm::DbBackend,
        params: &mut Vec<Value>,
        values: impl IntoIterator<Item = V>,
    ) -> String {
        let first = params.len() + 1;
        let values = values.into_iter().map(Into::into);
        if backend == sea_orm::DbBackend::Postgres {
            params.push(array(V::array_type(), values));
            return format!("= ANY(${first})");
        }
        params.extend(values);
        let placeholders: Vec<String> = (first..=params.len()).map(|i| format!("${i}")).collect();
        format!("IN ({})", placeholders.join(", "))
    }
}

/// Commit order without a lock: a history that readers follow with a cursor (intake's status
/// events, notification's stream) records with each row the id of the transaction that wrote it,
/// and is read in `(transaction id, row number)` order below the [`horizon`]. Every transaction
/// below the horizon has ended and every later one has a greater id, so no row ever appears
/// behind a reader's position, and writers take no lock that other writers wait on. SQLite has
/// one writer, which commits in row-number order: its transaction id is 0 and its horizon
/// unbounded.
pub mod commit_order {
    use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, Statement};

    async fn one_number<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<i64, DbErr> {
        conn.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(sql.to_owned()))?
            .try_get_by_index(0)
    }

    /// PostgreSQL's expression for the id of the current transaction, as a `bigint`.
    pub const CURRENT_TXID_SQL: &str = "pg_current_xact_id()::text::bigint";

    /// The id of the writing transaction as a value of the statement that writes a row (0 on
    /// SQLite): the row carries it without a statement of its own to ask for it.
    pub fn current_txid_value(backend: DbBackend) -> sea_orm::sea_query::Expr {
        match backend {
            DbBackend::Postgres => sea_orm::sea_query::Expr::cust(CURRENT_TXID_SQL),
            _ => sea_orm::sea_query::Expr::val(0i64),
        }
    }

    /// The id of the transaction `conn` is in (0 on SQLite).
    pub async fn current_txid<C: ConnectionTrait>(conn: &C) -> Result<i64, DbErr> {
        match conn.get_database_backend() {
            DbBackend::Postgres => one_number(conn, &format!("SELECT {CURRENT_TXID_SQL}")).await,
            _ => Ok(0),
        }
    }

    /// Rows written by transactions with ids below this are all committed or gone for good
    /// (`i64::MAX` on SQLite).
    pub async fn horizon<C: ConnectionTrait>(conn: &C) -> Result<i64, DbErr> {
        match conn.get_database_backend() {
            DbBackend::Postgres => {
                one_number(conn, "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").await
            }
            _ => Ok(i64::MAX),
        }
    }

    /// A reader's position: the last row read. The start of "from now on" is
    /// [`Position::after_final`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Position {
        pub txid: i64,
        pub seq: i64,
    }

    /// The rows after `position` that a reader may take now: later in `(txid, seq)` order, and
    /// written by a transaction below `horizon`. Order the query by `txid`, then `seq`.
    pub fn readable_after<C: ColumnTrait>(txid: C, seq: C, position: Position, horizon: i64) -> Condition {
        Condition::all()
            .add(
                Condition::any()
                    .add(txid.gt(position.txid))
                    .add(Condition::all().add(txid.eq(position.txid)).add(seq.gt(position.seq))),
            )
            .add(txid.lt(horizon))
    }

    impl Position {
        /// After every row already final: below `horizon` on PostgreSQL, up to `newest_seq`
        /// (the newest row number) on SQLite.
        pub fn after_final(horizon: i64, newest_seq: i64) -> Position {
            if horizon < i64::MAX {
                Position { txid: horizon - 1, seq: i64::MAX }
            } else {
                Position { txid: 0, seq: newest_seq }
            }
        }
    }
}

/// Column definitions for migrations, written out so that a migration never changes once
/// released (an entity may change; the migrations that built its table do not).
pub mod columns {
    use sea_orm::sea_query::{Alias, ColumnDef, ColumnType, StringLen};

    fn col(name: &str, ty: ColumnType, nullable: bool) -> ColumnDef {
        let mut c = ColumnDef::new_with_type(Alias::new(name), ty);
        if !nullable {
            c.not_null();
        }
        c
    }

    /// `varchar`, NOT NULL.
    pub fn string(name: &str) -> ColumnDef {
        col(name, ColumnType::String(StringLen::None), false)
    }
    /// `varchar`, nullable.
    pub fn string_null(name: &str) -> ColumnDef {
        col(name, ColumnType::String(StringLen::None), true)
    }
    /// `text`, NOT NULL.
    pub fn text(name: &str) -> ColumnDef {
        col(name, ColumnType::Text, false)
    }
    /// `integer`, NOT NULL.
    pub fn integer(name: &str) -> ColumnDef {
        col(name, ColumnType::Integer, false)
    }
    /// `bigint`, NOT NULL.
    pub fn big(name: &str) -> ColumnDef {
        col(name, ColumnType::BigInteger, false)
    }
    /// `bigint`, nullable.
    pub fn big_null(name: &str) -> ColumnDef {
        col(name, ColumnType::BigInteger, true)
    }
    /// `boolean`, NOT NULL.
    pub fn boolean(name: &str) -> ColumnDef {
        col(name, ColumnType::Boolean, false)
    }
    /// Bytes (`bytea` on PostgreSQL), NOT NULL.
    pub fn bytes(name: &str) -> ColumnDef {
        col(name, ColumnType::VarBinary(StringLen::None), false)
    }
    /// Bytes, nullable.
    pub fn bytes_null(name: &str) -> ColumnDef {
        col(name, ColumnType::VarBinary(StringLen::None), true)
    }
    /// A single-column primary key of `varchar`.
    pub fn string_key(name: &str) -> ColumnDef {
        let mut c = string(name);
        c.primary_key();
        c
    }
}

/// Adds every column of `E`, from the table aliased `alias`, to `select`, each named `prefix`
/// and the column: two tables' rows read as one, each then read back with
/// `FromQueryResult::from_query_result(row, prefix)`.
pub fn select_prefixed<E: sea_orm::EntityTrait>(
    select: &mut sea_orm::sea_query::SelectStatement,
    alias: &sea_orm::sea_query::Alias,
    prefix: &str,
) {
    use sea_orm::{IdenStatic, Iterable};
    for c in E::Column::iter() {
        select.expr_as(
            sea_orm::sea_query::Expr::col((alias.clone(), c)),
            sea_orm::sea_query::Alias::new(format!("{prefix}{}", c.as_str())),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_move_past_those_before_them() {
        assert_eq!(renumbered("VALUES ($1, $2), ($10, $11) -- $", 3), "VALUES ($4, $5), ($13, $14) -- $");
        let joined = one_statement(vec![
            Statement::from_sql_and_values(DbBackend::Postgres, "INSERT INTO a VALUES ($1, $2)", [1.into(), 2.into()]),
            Statement::from_sql_and_values(DbBackend::Postgres, "INSERT INTO b VALUES ($1)", [3.into()]),
            Statement::from_sql_and_values(DbBackend::Postgres, "SELECT f($1)", [4.into()]),
        ]);
        assert_eq!(
            joined.sql,
            "WITH write_0 AS (INSERT INTO a VALUES ($1, $2)), write_1 AS (INSERT INTO b VALUES ($3)) SELECT f($4)"
        );
        assert_eq!(joined.values.unwrap().0, vec![1.into(), 2.into(), 3.into(), 4.into()]);
    }

    /// A lookup by one of several values is one statement's text on PostgreSQL whatever their
    /// number, with the values in one array; elsewhere a list of placeholders.
    #[test]
    fn one_of_is_one_statement_on_postgres_whatever_the_count() {
        use sea_orm::sea_query::{Alias, Query};
        let lookup = |backend: DbBackend, ids: Vec<i64>| {
            let mut select = Query::select();
            select.column(Alias::new("id")).from(Alias::new("t")).and_where(arrays::one_of(
                backend,
                Alias::new("id"),
                ids,
            ));
            backend.build(&select)
        };
        let one = lookup(DbBackend::Postgres, vec![7]);
        let three = lookup(DbBackend::Postgres, vec![7, 8, 9]);
        assert_eq!(one.sql, r#"SELECT "id" FROM "t" WHERE "id" = ANY($1)"#);
        assert_eq!(three.sql, one.sql);
        assert_eq!(three.values.unwrap().0, vec![arrays::bigints([7, 8, 9])]);
        let sqlite = lookup(DbBackend::Sqlite, vec![7, 8, 9]);
        assert_eq!(sqlite.sql, r#"SELECT "id" FROM "t" WHERE "id" IN (?, ?, ?)"#);
        assert_eq!(sqlite.values.unwrap().0, vec![7i64.into(), 8i64.into(), 9i64.into()]);

        // Written by hand, numbered on from the parameters before.
        let mut params: Vec<sea_orm::Value> = vec![1.into()];
        assert_eq!(arrays::one_of_sql(DbBackend::Postgres, &mut params, ["a", "b"].map(String::from)), "= ANY($2)");
        assert_eq!(params, vec![1.into(), arrays::texts(["a", "b"])]);
        let mut params: Vec<sea_orm::Value> = vec![1.into()];
        assert_eq!(arrays::one_of_sql(DbBackend::Sqlite, &mut params, ["a", "b"].map(String::from)), "IN ($2, $3)");
        assert_eq!(params, vec![1.into(), "a".into(), "b".into()]);
    }
}
