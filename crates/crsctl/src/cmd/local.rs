//! Commands that call no service: keys, development tokens, completions, man pages; and the demo.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use crs_platform::auth::{Principal, TokenIssuer};

use crate::cli::{App, Run};
use crate::errors::usage;

#[derive(Args)]
pub struct Keygen;

impl Run for Keygen {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let dir = &app.global.key_dir;
        let written = crs_platform::keys::write_key_set(dir)?;
        if written.is_empty() {
            println!("{}: keys exist; keeping them", dir.display());
        }
        for path in written {
            println!("wrote {}", path.display());
        }
        Ok(())
    }
}

#[derive(Subcommand)]
pub enum Dev {
    /// Prints a bearer token for an agency or a reviewer, signed with `tokens.key` from
    /// --key-dir. For development only: in a deployment an admin issues tokens
    /// (`crsctl token issue`), and only intake holds the issuer's key.
    Token {
        /// agency:<id> or reviewer:<id>.
        #[arg(long)]
        subject: String,
        /// Reviewer roles: reviewer, senior_reviewer, admin, consumer (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
}

pub fn issuer(app: &App) -> anyhow::Result<TokenIssuer> {
    let dir = &app.global.key_dir;
    TokenIssuer::from_file(&dir.join("tokens.key"), &app.global.issuer)
        .map_err(|e| anyhow::anyhow!("{e:#} (run `crsctl keygen --key-dir {}`)", dir.display()))
}

impl Run for Dev {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let Dev::Token { subject, roles, ttl_secs } = self;
        let principal = Principal::from_subject(&subject, &roles).ok_or_else(|| {
            usage("--subject must be agency:<id> or reviewer:<id>; roles reviewer, senior_reviewer, admin, consumer")
        })?;
        println!("{}", issuer(app)?.issue(&principal, ttl_secs)?.token);
        Ok(())
    }
}

#[derive(Args)]
pub struct Completions {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

impl Run for Completions {
    async fn run(self, _app: &App) -> anyhow::Result<()> {
        let mut cmd = crate::cli::command();
        clap_complete::generate(self.shell, &mut cmd, "crsctl", &mut std::io::stdout());
        Ok(())
    }
}

#[derive(Args)]
pub struct Man {
    /// Where to write crsctl.1 and one page per command (crsctl-review-decide.1, ...).
    #[arg(long, default_value = "man")]
    out_dir: PathBuf,
}

impl Run for Man {
    async fn run(self, _app: &App) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.out_dir)?;
        clap_mangen::generate_to(crate::cli::command(), &self.out_dir)?;
        println!("wrote man pages into {} (try `man -l {}/crsctl.1`)", self.out_dir.display(), self.out_dir.display());
        Ok(())
    }
}

#[derive(Args)]
pub struct Demo;

impl Run for Demo {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let session = app.session()?;
        let endpoints = crate::demo::Endpoints {
            intake: session.endpoint("intake"),
            triage: session.endpoint("triage"),
            legal_review: session.endpoint("legal-review"),
            notification: session.endpoint("notification"),
        };
        crate::demo::run(endpoints, issuer(app)?).await
    }
}
