//! `crsctl`: the CRS command-line client.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use crs_platform::auth::{Principal, TokenAuthority};
use secrecy::SecretString;

#[derive(Parser)]
#[command(name = "crsctl", about = "Command-line client for CRS")]
struct Cli {
    /// The token signing key; otherwise read from --key-file.
    #[arg(long, env = "CRS_AUTH__SIGNING_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
    #[arg(long, env = "CRS_AUTH__SIGNING_KEY_FILE", default_value = "data/signing.key", global = true)]
    key_file: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a new random signing key to --key-file (unless one is there already).
    Keygen,
    /// Prints a bearer token for a principal.
    Token {
        /// agency:<id>, reviewer:<id> or service:<name>.
        #[arg(long)]
        subject: String,
        /// Reviewer roles: reviewer, senior_reviewer, admin (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
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
}

fn authority(cli: &Cli) -> anyhow::Result<TokenAuthority> {
    let key = match &cli.key {
        Some(k) => k.clone(),
        None => std::fs::read_to_string(&cli.key_file).map_err(|e| {
            anyhow::anyhow!("cannot read the signing key {}: {e} (run `crsctl keygen`)", cli.key_file.display())
        })?,
    };
    TokenAuthority::new(&SecretString::from(key.trim().to_owned()), "crs")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Keygen => {
            if cli.key_file.exists() {
                println!("{} exists; keeping it", cli.key_file.display());
                return Ok(());
            }
            if let Some(dir) = cli.key_file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let bytes: [u8; 48] = rand::random();
            use base64::Engine as _;
            std::fs::write(&cli.key_file, base64::engine::general_purpose::STANDARD.encode(bytes))?;
            println!("wrote {}", cli.key_file.display());
            Ok(())
        }
        Command::Token { subject, roles, ttl_secs } => {
            let principal = Principal::from_subject(subject, roles)
                .ok_or_else(|| anyhow::anyhow!("--subject must be agency:<id>, reviewer:<id> or service:<name>; roles reviewer, senior_reviewer, admin"))?;
            println!("{}", authority(&cli)?.issue(&principal, *ttl_secs)?.token);
            Ok(())
        }
        Command::Demo { intake, triage, legal_review, notification } => {
            let endpoints = crsctl::demo::Endpoints {
                intake: intake.clone(),
                triage: triage.clone(),
                legal_review: legal_review.clone(),
                notification: notification.clone(),
            };
            let authority = authority(&cli)?;
            tokio::runtime::Runtime::new()?.block_on(crsctl::demo::run(endpoints, authority))
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
