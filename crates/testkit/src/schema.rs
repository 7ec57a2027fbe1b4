//! The check that a service's migrations produce the schema its entities expect: every column
//! an entity declares exists with a compatible type and the same nullability, and no table an
//! entity maps has columns the entity does not know. A column added to an entity without a
//! migration (or a migration that drifts from the entities) fails it, on SQLite and PostgreSQL.

use sea_orm::sea_query::{ColumnType, TableCreateStatement};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, Schema, Statement};

/// One table as an entity expects it: column name, type family, nullable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub table: String,
    pub columns: Vec<(String, &'static str, bool)>,
}

/// What `E` expects of its table.
pub fn expected<E: EntityTrait + Default>(backend: DbBackend) -> Expected {
    let create: TableCreateStatement = Schema::new(backend).create_table_from_entity(E::default());
    let table = E::default().table_name().to_owned();
    let columns = create
        .get_columns()
        .iter()
        .map(|c| {
            let spec = c.get_column_spec();
            let nullable = spec.nullable != Some(false) && !spec.primary_key;
            (c.get_column_name(), family(c.get_column_type()), nullable)
        })
        .collect();
    Expected { table, columns }
}

/// The broad kind of a declared type, as both backends store it.
fn family(t: Option<&ColumnType>) -> &'static str {
    match t {
        Some(ColumnType::Char(_) | ColumnType::String(_) | ColumnType::Text) => "text",
        Some(ColumnType::TinyInteger | ColumnType::SmallInteger | ColumnType::Integer | ColumnType::BigInteger) => {
            "integer"
        }
        Some(ColumnType::TinyUnsigned | ColumnType::SmallUnsigned | ColumnType::Unsigned | ColumnType::BigUnsigned) => {
            "integer"
        }
        Some(ColumnType::Boolean) => "boolean",
        Some(ColumnType::Binary(_) | ColumnType::VarBinary(_) | ColumnType::Blob) => "binary",
        Some(ColumnType::Float | ColumnType::Double | ColumnType::Decimal(_)) => "float",
        Some(ColumnType::Json | ColumnType::JsonBinary) => "json",
        _ => "other",
    }
}

/// The family of a type as the database reports it.
fn db_family(declared: &str) -> &'static str {
    let t = declared.to_lowercase();
    if t.contains("char") || t.contains("text") || t.contains("clob") {
        "text"
    } else if t.contains("bool") {
        "boolean"
    } else if t.contains("int") {
        "integer"
    } else if t.contains("blob") || t.contains("bytea") || t.contains("binary") {
        "binary"
    } else if t.contains("real")
        || t.contains("double")
        || t.contains("float")
        || t.contains("numeric")
        || t.contains("decimal")
    {
        "float"
    } else if t.contains("json") {
        "json"
    } else {
        "other"
    }
}

/// The columns of `table` as the database has them: name, type family, nullable.
pub async fn actual(db: &DatabaseConnection, table: &str) -> anyhow::Result<Vec<(String, &'static str, bool)>> {
    let backend = db.get_database_backend();
    let rows = match backend {
        DbBackend::Sqlite => {
            db.query_all_raw(Statement::from_string(backend, format!("SELECT name, type, \"notnull\" AS not_null, pk FROM pragma_table_info('{table}')")))
                .await?
        }
        _ => {
            db.query_all_raw(Statement::from_sql_and_values(
                backend,
                "SELECT column_name AS name, data_type AS type, CASE WHEN is_nullable = 'NO' THEN 1 ELSE 0 END AS not_null, 0 AS pk \
                 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
                [table.into()],
            ))
            .await?
        }
    };
    rows.into_iter()
        .map(|r| {
            let name: String = r.try_get("", "name")?;
            let ty: String = r.try_get("", "type")?;
            let not_null: i32 = r.try_get("", "not_null")?;
            let pk: i32 = r.try_get("", "pk")?;
            // SQLite's primary keys may hold NULL unless declared NOT NULL; the entity never does.
            Ok((name, db_family(&ty), not_null == 0 && pk == 0))
        })
        .collect()
}

/// Every difference between what the entities expect and what the database has.
pub async fn differences(db: &DatabaseConnection, expected: &[Expected]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in expected {
        let have = actual(db, &e.table).await?;
        if have.is_empty() {
            out.push(format!("table {} is missing", e.table));
            continue;
        }
        for (name, family, nullable) in &e.columns {
            match have.iter().find(|(n, _, _)| n == name) {
                None => out.push(format!("{}.{name} is missing (add a migration)", e.table)),
                Some((_, f, _)) if f != family => {
                    out.push(format!("{}.{name} is {f}, the entity expects {family}", e.table))
                }
                Some((_, _, n)) if n != nullable => out.push(format!(
                    "{}.{name} is {}, the entity expects {}",
                    e.table,
                    if *n { "nullable" } else { "NOT NULL" },
                    if *nullable { "nullable" } else { "NOT NULL" }
                )),
                Some(_) => {}
            }
        }
        for (name, _, _) in &have {
            if !e.columns.iter().any(|(n, _, _)| n == name) {
                out.push(format!("{}.{name} exists but no entity field maps it", e.table));
            }
        }
    }
    Ok(out)
}
