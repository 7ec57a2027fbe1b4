//! A fresh, empty database per test: a SQLite file in the temp directory, or a PostgreSQL
//! database with a random name on the test server (`CRS_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped by [`TestDb::drop_now`].

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("CRS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of one test's own.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub backend: Backend,
    /// The URL a service is configured with.
    pub url: String,
    /// The PostgreSQL server's admin URL and the database's name, to drop it.
    pg: Option<(String, String)>,
    /// The SQLite file, to remove it.
    path: Option<std::path::PathBuf>,
}

impl TestDb {
    /// Creates an empty database; `label` goes into its name, to find it when debugging.
    pub async fn fresh(backend: Backend, label: &str) -> anyhow::Result<TestDb> {
        Self::fresh_on(backend, label, &postgres_admin_url()).await
    }

    /// Like [`TestDb::fresh`], with PostgreSQL databases on the server at `postgres_admin_url`
    /// (for example a [`crate::PrivatePostgres`]).
    pub async fn fresh_on(backend: Backend, label: &str, postgres_admin_url: &str) -> anyhow::Result<TestDb> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let label: String =
            label.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("crs-{label}-{id}.db"));
                Ok(TestDb { backend, url: format!("sqlite://{}?mode=rwc", path.display()), pg: None, path: Some(path) })
            }
            Backend::Postgres => {
                let name = format!("crs_{label}_{id}");
                let admin = Database::connect(postgres_admin_url).await?;
                admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
                admin.close().await?;
                let server = postgres_admin_url.rsplit_once('/').map(|(s, _)| s).unwrap_or(postgres_admin_url);
                Ok(TestDb {
                    backend,
                    url: format!("{server}/{name}"),
                    pg: Some((postgres_admin_url.to_owned(), name)),
                    path: None,
                })
            }
        }
    }

    /// A copy of an SQLite database file (e.g. one an earlier version wrote), for an upgrade test.
    pub fn sqlite_copy_of(original: &std::path::Path) -> anyhow::Result<TestDb> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let path = std::env::temp_dir().join(format!("crs-copy-{id}.db"));
        std::fs::copy(original, &path)?;
        Ok(TestDb {
            backend: Backend::Sqlite,
            url: format!("sqlite://{}?mode=rwc", path.display()),
            pg: None,
            path: Some(path),
        })
    }

    /// A connection of the test's own to the database.
    pub async fn connect(&self) -> anyhow::Result<DatabaseConnection> {
        Ok(Database::connect(&self.url).await?)
    }

    /// Drops the database (or removes the file).
    pub async fn drop_now(self) -> anyhow::Result<()> {
        if let Some((admin_url, name)) = &self.pg {
            let admin = Database::connect(admin_url).await?;
            admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
            admin.close().await?;
        }
        if let Some(path) = &self.path {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        Ok(())
    }
}
