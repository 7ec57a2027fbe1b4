//! A PostgreSQL server of the test's own (`initdb` + `pg_ctl` on a free port), which a fault test
//! may stop and start again without disturbing every other test on the machine's server.
//!
//! The binaries are found in `CRS_TEST_PG_BINDIR`, else in the newest `/usr/lib/postgresql/*/bin`,
//! else on `PATH`. PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
//! user (through `runuser`), in a directory that user owns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A private PostgreSQL cluster; stopped and removed on drop.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    run_as_postgres: bool,
}

impl PrivatePostgres {
    /// Creates a cluster in a fresh directory and starts it on a free port (trust auth, user
    /// `postgres`, nothing fsynced: it lives as long as the test).
    pub fn start() -> anyhow::Result<PrivatePostgres> {
        let bin = bin_dir()?;
        let run_as_postgres = is_root();
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let dir = std::env::temp_dir().join(format!("crs-pg-{id}"));
        std::fs::create_dir_all(&dir)?;
        if run_as_postgres {
            anyhow::ensure!(
                Command::new("chown").arg("postgres:").arg(&dir).status()?.success(),
                "cannot give {} to the postgres user",
                dir.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let pg = PrivatePostgres { bin, dir, port, run_as_postgres };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C"],
        )?;
        pg.start_again()?;
        Ok(pg)
    }

    /// The URL of its `postgres` database, to create test databases on (see
    /// [`crate::TestDb::fresh_on`]).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it at once, as a crash or a lost host would: every connection is cut and new ones
    /// are refused until [`PrivatePostgres::start_again`].
    pub fn stop(&self) -> anyhow::Result<()> {
        self.run("pg_ctl", &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"])
    }

    /// Starts it again on the same port and data, and waits until it accepts connections.
    pub fn start_again(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data_dir(), "-l", &log, "-o", &options, "-w", "-t", "30", "start"])
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bin.join(tool);
        let mut cmd = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd.args(args).current_dir(&self.dir).stdin(Stdio::null()).output()?;
        anyhow::ensure!(
            out.status.success(),
            "{} {} failed: {}{}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop();
        // Give the postmaster a moment to let go of its files before removing them.
        std::thread::sleep(Duration::from_millis(50));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("CRS_TEST_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|v| v.parse::<u32>().ok()).map(|v| (v, e.path())))
        .max_by_key(|(v, _)| *v)
        .map(|(_, p)| p.join("bin"));
    if let Some(dir) = newest.filter(|d| d.join("initdb").exists()) {
        return Ok(dir);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).find(|d| Path::new(d).join("initdb").exists()))
        .unwrap_or_default();
    on_path.ok_or_else(|| {
        anyhow::anyhow!(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: install postgresql \
             (Debian: apt-get install postgresql) or set CRS_TEST_PG_BINDIR"
        )
    })
}
