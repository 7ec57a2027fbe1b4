//! The command line: global options, and one line per command group in [`Command`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser};

use crate::client::{Overrides, Session};
use crate::errors::EXIT_CODES_HELP;
use crate::output::{Format, Out};

/// The groups of commands. Each runs through [`Run`]; adding a group is one entry here.
macro_rules! command_groups {
    ($($(#[$meta:meta])* $variant:ident($ty:ty),)*) => {
        #[derive(clap::Subcommand)]
        pub enum Command {
            $($(#[$meta])* $variant($ty),)*
        }

        impl Run for Command {
            async fn run(self, app: &App) -> anyhow::Result<()> {
                match self {
                    $(Command::$variant(c) => c.run(app).await,)*
                }
            }
        }
    };
}

command_groups! {
    /// Logs in: stores the endpoints and an issued token as a context, and makes it current.
    Login(crate::cmd::context::Login),
    /// Lists, shows, switches and deletes contexts.
    #[command(subcommand)]
    Context(crate::cmd::context::ContextCmd),
    /// Agencies and their settings and limits (admin).
    #[command(subcommand)]
    Agency(crate::cmd::agency::AgencyCmd),
    /// Issues and revokes bearer tokens for agencies and reviewers (admin).
    #[command(subcommand)]
    Token(crate::cmd::token::TokenCmd),
    /// Submits, imports, follows, withdraws and answers requests (agency).
    #[command(subcommand)]
    Request(crate::cmd::request::RequestCmd),
    /// Works review queues: claim, read, decide, ask, escalate, release, reassign, approve (reviewers).
    #[command(subcommand)]
    Review(crate::cmd::review::ReviewCmd),
    /// Reads and verifies the hash-chained audit trail (senior reviewers, admins).
    #[command(subcommand)]
    Audit(crate::cmd::audit::AuditCmd),
    /// The SLA policies in force.
    #[command(subcommand)]
    Sla(crate::cmd::sla::SlaCmd),
    /// Notification deliveries: list and retry (admin).
    #[command(subcommand)]
    Deliveries(crate::cmd::deliveries::DeliveriesCmd),
    /// Hand-offs the services gave up on: list and replay them (admin).
    #[command(subcommand)]
    DeadLetters(crate::cmd::dead_letters::DeadLettersCmd),
    /// Health of every service, review queues and dead letters.
    Status(crate::cmd::status::Status),
    /// Statements of reasons, notices and the transparency report of a period (admin).
    #[command(subcommand)]
    Transparency(crate::transparency::Command),
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(crate::cmd::local::Completions),
    /// Writes crsctl's man pages (one per command) into a directory.
    Man(crate::cmd::local::Man),
    /// Writes a deployment's keys into --key-dir: the token issuer's pair (`tokens.key`,
    /// `tokens.pub`) and one pair per service. Existing keys are kept.
    Keygen(crate::cmd::local::Keygen),
    /// Development helpers that sign with the token issuer's private key directly.
    #[command(subcommand)]
    Dev(crate::cmd::local::Dev),
    /// Walks one request through the four running services with crsctl commands, printing each.
    Demo(crate::cmd::local::Demo),
}

/// A command that runs. Commands run one at a time on crsctl's runtime, so their futures need
/// not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Run {
    async fn run(self, app: &App) -> anyhow::Result<()>;
}

#[derive(Parser)]
#[command(
    name = "crsctl",
    version,
    about = "The command-line client for CRS: agencies, requests, review, audit and operations",
    long_about = "The command-line client for CRS.\n\nStart with `crsctl login --token TOKEN` (an admin issues \
                  tokens with `crsctl token issue`); contexts are kept in $XDG_CONFIG_HOME/crs/config.yaml.",
    after_help = EXIT_CODES_HELP,
    after_long_help = EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// The context file.
    #[arg(long, env = "CRSCTL_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The context to use instead of the current one.
    #[arg(long, env = "CRSCTL_CONTEXT", global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// A bearer token instead of the context's.
    #[arg(long, env = "CRSCTL_TOKEN", global = true, hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Intake's address (default http://127.0.0.1:50051).
    #[arg(long, env = "CRSCTL_INTAKE", global = true, value_name = "URL")]
    pub intake: Option<String>,
    /// Triage's address (default http://127.0.0.1:50052).
    #[arg(long, env = "CRSCTL_TRIAGE", global = true, value_name = "URL")]
    pub triage: Option<String>,
    /// Legal review's address (default http://127.0.0.1:50053).
    #[arg(long, env = "CRSCTL_LEGAL_REVIEW", global = true, value_name = "URL")]
    pub legal_review: Option<String>,
    /// Notification's address (default http://127.0.0.1:50054).
    #[arg(long, env = "CRSCTL_NOTIFICATION", global = true, value_name = "URL")]
    pub notification: Option<String>,
    /// The CA that signs the services' certificates (their tls.ca_file), for https:// addresses.
    #[arg(long, env = "CRSCTL_CA_FILE", global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for deployments with client_auth = "required".
    #[arg(long, env = "CRSCTL_CERT_FILE", global = true, value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "CRSCTL_KEY_FILE", global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, env = "CRSCTL_OUTPUT", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Prints each call and its trace id (W3C traceparent) on standard error.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// No colour, even on a terminal (NO_COLOR works too).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Seconds each call may take.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS")]
    pub timeout: u64,
    /// The deployment's key directory (keygen, dev token, demo).
    #[arg(long, env = "CRSCTL_KEY_DIR", default_value = "data/keys", global = true, hide_short_help = true)]
    pub key_dir: PathBuf,
    /// The token issuer the services expect (`auth.issuer`; dev token, demo).
    #[arg(long, env = "CRSCTL_ISSUER", default_value = "crs", global = true, hide_short_help = true)]
    pub issuer: String,
}

/// What every command gets: the global options and the printer.
pub struct App {
    pub global: Global,
    pub out: Out,
}

impl App {
    pub fn new(global: Global) -> App {
        let out = Out::new(global.output, global.no_color);
        App { global, out }
    }

    pub fn config_path(&self) -> PathBuf {
        self.global.config.clone().unwrap_or_else(crate::context::default_path)
    }

    pub fn overrides(&self) -> Overrides {
        let g = &self.global;
        Overrides {
            context: g.context.clone(),
            token: g.token.clone(),
            endpoints: [g.intake.clone(), g.triage.clone(), g.legal_review.clone(), g.notification.clone()],
            ca_file: g.ca_file.clone(),
            cert_file: g.cert_file.clone(),
            key_file: g.key_file.clone(),
        }
    }

    /// The session to call the services with.
    pub fn session(&self) -> anyhow::Result<Session> {
        Session::resolve(
            self.config_path(),
            &self.overrides(),
            self.global.verbose,
            Duration::from_secs(self.global.timeout),
        )
    }
}

/// The clap command, for completions and man pages.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        super::command().debug_assert();
    }
}
