//! `crsctl token`: bearer tokens issued and revoked by intake (admin only).

use clap::Subcommand;
use crs_proto::intake::{IssueTokenRequest, RevokeTokenRequest};
use serde_json::json;

use crate::cli::{App, Run};
use crate::errors::usage;
use crate::output::{due_local, fields, ts_json};

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Issues a token for an agency or a reviewer; its holder runs `crsctl login` with it.
    /// Only the token goes to standard output (the rest to standard error), so
    /// `crsctl token issue ... | crsctl login` works.
    Issue {
        /// agency:<id> or reviewer:<id>.
        #[arg(long)]
        subject: String,
        /// For reviewers: reviewer, senior_reviewer, admin, consumer (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime in seconds (default: the deployment's).
        #[arg(long)]
        ttl_secs: Option<u64>,
    },
    /// Revokes one token (--id) or every token of a subject issued until now (--subject).
    Revoke {
        /// The token's id (shown by `token issue`).
        #[arg(long, conflicts_with = "subject", required_unless_present = "subject")]
        id: Option<String>,
        /// agency:<id> or reviewer:<id>.
        #[arg(long)]
        subject: Option<String>,
    },
}

impl Run for TokenCmd {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let session = app.session()?;
        let mut admin = crate::cmd::agency_admin(&session)?;
        match self {
            TokenCmd::Issue { subject, roles, ttl_secs } => {
                if !(subject.starts_with("agency:") || subject.starts_with("reviewer:")) {
                    return Err(usage("--subject must be agency:<id> or reviewer:<id>"));
                }
                let issued = admin
                    .issue_token(IssueTokenRequest {
                        subject: subject.clone(),
                        roles,
                        ttl_seconds: ttl_secs.unwrap_or(0),
                    })
                    .await?
                    .into_inner();
                let value = json!({"token": issued.token, "token_id": issued.token_id, "subject": subject,
                                   "expires_at": ts_json(&issued.expires_at)});
                app.out.emit(&value, || {
                    println!("{}", issued.token);
                    eprintln!("token {} for {subject}, expires {}", issued.token_id, due_local(&issued.expires_at));
                    eprintln!("its holder logs in with: crsctl login --token-file FILE (or pipe it into crsctl login)");
                })
            }
            TokenCmd::Revoke { id, subject } => {
                admin
                    .revoke_token(RevokeTokenRequest {
                        token_id: id.clone().unwrap_or_default(),
                        subject: subject.clone().unwrap_or_default(),
                    })
                    .await?;
                let value = json!({"revoked": {"token_id": id, "subject": subject}});
                app.out.emit(&value, || {
                    fields(&app.out, &[("revoked", id.clone().or(subject.clone()).unwrap_or_default())]);
                    println!("every service refuses it within about a second");
                })
            }
        }
    }
}
