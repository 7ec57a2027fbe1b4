//! `crsctl`: the CRS command-line client.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use crs_platform::auth::{Principal, TokenIssuer};

#[derive(Parser)]
#[command(name = "crsctl", about = "Command-line client for CRS")]
struct Cli {
    /// The deployment's key directory (`crsctl keygen` writes it).
    #[arg(long, env = "CRSCTL_KEY_DIR", default_value = "data/keys", global = true)]
    key_dir: PathBuf,
    /// The token issuer the services expect (`auth.issuer`).
    #[arg(long, env = "CRSCTL_ISSUER", default_value = "crs", global = true)]
    issuer: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a deployment's keys into --key-dir: the token issuer's pair (`tokens.key`,
    /// `tokens.pub`) and one pair per service (`<service>.key`, `<service>.pub`). Existing keys
    /// are kept.
    Keygen,
    /// Development helpers that sign with the token issuer's private key directly.
    #[command(subcommand)]
    Dev(Dev),
    /// Walks one request through the four running services, printing each step.
    Demo {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        intake: String,
        #[arg(long, default_value = "http://127.0.0.1:50052")]
        triage: String,
        #[arg(long, default_value = "http://127.0.0.1:50053")]
        legal_review: String,
        #[arg(long, default_value = "http://127.0.0.1:50054")]
        notification: String,
    },
    /// Statements of reasons, notices and the transparency report of a period.
    #[command(subcommand)]
    Transparency(crsctl::transparency::Command),
}

#[derive(Subcommand)]
enum Dev {
    /// Prints a bearer token for an agency or a reviewer, signed with `tokens.key` (development
    /// only: in production an admin issues tokens with IssueToken).
    Token {
        /// agency:<id> or reviewer:<id>.
        #[arg(long)]
        subject: String,
        /// Reviewer roles: reviewer, senior_reviewer, admin (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
}

fn issuer(cli: &Cli) -> anyhow::Result<TokenIssuer> {
    TokenIssuer::from_file(&cli.key_dir.join("tokens.key"), &cli.issuer)
        .map_err(|e| anyhow::anyhow!("{e:#} (run `crsctl keygen --key-dir {}`)", cli.key_dir.display()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Keygen => {
            let written = crs_platform::keys::write_key_set(&cli.key_dir)?;
            if written.is_empty() {
                println!("{}: keys exist; keeping them", cli.key_dir.display());
            }
            for path in written {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Command::Dev(Dev::Token { subject, roles, ttl_secs }) => {
            let principal = Principal::from_subject(subject, roles).ok_or_else(|| {
                anyhow::anyhow!(
                    "--subject must be agency:<id> or reviewer:<id>; roles reviewer, senior_reviewer, admin"
                )
            })?;
            println!("{}", issuer(&cli)?.issue(&principal, *ttl_secs)?.token);
            Ok(())
        }
        Command::Demo { intake, triage, legal_review, notification } => {
            let endpoints = crsctl::demo::Endpoints {
                intake: intake.clone(),
                triage: triage.clone(),
                legal_review: legal_review.clone(),
                notification: notification.clone(),
            };
            let issuer = issuer(&cli)?;
            tokio::runtime::Runtime::new()?.block_on(crsctl::demo::run(endpoints, issuer))
        }
        Command::Transparency(command) => {
            tokio::runtime::Runtime::new()?.block_on(crsctl::transparency::run(command, || issuer(&cli)))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crsctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
