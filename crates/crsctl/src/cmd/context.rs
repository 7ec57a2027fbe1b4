//! `crsctl login` and `crsctl context`: named contexts in the context file.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use crs_proto::intake::{ListAgenciesRequest, ListRequestsRequest};
use crs_proto::review::ListQueuesRequest;
use serde_json::json;

use crate::cli::{App, Run};
use crate::client::{Session, apply_overrides};
use crate::context::{ConfigFile, Context, DEFAULT_ENDPOINTS, peek_claims};
use crate::errors::usage;
use crate::output::Table;

/// Stores a token an admin issued (`crsctl token issue`) and the services' addresses
/// (--intake, --triage, --legal-review, --notification, TLS files) as a context, checks the
/// token with one call, and makes the context current.
#[derive(Args)]
pub struct Login {
    /// The context's name (default: the token's subject, e.g. reviewer-ana).
    name: Option<String>,
    /// Reads the token from a file ('-' for standard input); else --token, CRSCTL_TOKEN, or
    /// standard input when it is not a terminal.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Stores the context without checking the token against the services.
    #[arg(long)]
    no_verify: bool,
}

impl Run for Login {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let token = match (&self.token_file, &app.global.token) {
            (Some(p), _) if p.as_os_str() == "-" => read_stdin()?,
            (Some(p), _) => std::fs::read_to_string(p).map_err(|e| usage(format!("{}: {e}", p.display())))?,
            (None, Some(t)) => t.clone(),
            (None, None) if !std::io::stdin().is_terminal() => read_stdin()?,
            (None, None) => return Err(usage("give the token: --token, --token-file or standard input")),
        };
        let token = token.trim().to_owned();
        let claims = peek_claims(&token)?;
        let name = self.name.clone().unwrap_or_else(|| claims.sub.replace(':', "-"));
        let path = app.config_path();
        let mut file = ConfigFile::load(&path)?;
        let mut context = file.contexts.get(&name).cloned().unwrap_or_default();
        let mut overrides = app.overrides();
        overrides.token = Some(token);
        apply_overrides(&mut context, &overrides);
        for (service, url) in DEFAULT_ENDPOINTS {
            if context.endpoint(service).is_none() {
                context.set_endpoint(service, url.to_owned());
            }
        }
        context.subject = Some(claims.sub.clone());
        context.expires_at = chrono::DateTime::from_timestamp(claims.exp, 0).map(|t| t.to_rfc3339());
        if !self.no_verify {
            let session = Session::new(
                Some(name.clone()),
                context.clone(),
                path.clone(),
                app.global.verbose,
                std::time::Duration::from_secs(app.global.timeout),
            )?;
            verify(&session, &claims.sub, &claims.roles).await?;
        }
        file.contexts.insert(name.clone(), context);
        file.current_context = Some(name.clone());
        file.save(&path)?;
        let value = json!({"context": name, "subject": claims.sub, "roles": claims.roles,
                           "expires_at": chrono::DateTime::from_timestamp(claims.exp, 0).map(|t| t.to_rfc3339()),
                           "config": path.display().to_string()});
        app.out.emit(&value, || {
            let until = chrono::DateTime::from_timestamp(claims.exp, 0)
                .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M %Z").to_string())
                .unwrap_or_default();
            let roles = if claims.roles.is_empty() { String::new() } else { format!(" ({})", claims.roles.join(", ")) };
            println!("logged in as {}{roles} until {until}", claims.sub);
            println!("context {name:?} is now current ({})", path.display());
        })
    }
}

fn read_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s)?;
    Ok(s)
}

/// One cheap call the token's holder may make, so a wrong token or address shows at login.
async fn verify(session: &Session, subject: &str, roles: &[String]) -> anyhow::Result<()> {
    if subject.starts_with("agency:") {
        crate::cmd::intake(session)?.list_requests(ListRequestsRequest { page_size: 1, ..Default::default() }).await?;
    } else if roles.iter().any(|r| r == "admin") {
        crate::cmd::agency_admin(session)?
            .list_agencies(ListAgenciesRequest { page_size: 1, ..Default::default() })
            .await?;
    } else if roles.iter().any(|r| r == "reviewer" || r == "senior_reviewer") {
        crate::cmd::review(session)?.list_queues(ListQueuesRequest {}).await?;
    }
    // A consumer's token reads notification streams only: nothing cheap to call.
    Ok(())
}

#[derive(Subcommand)]
pub enum ContextCmd {
    /// Lists the contexts; the current one is marked.
    List,
    /// Makes a context current.
    Use { name: String },
    /// Shows a context (the current one by default), its token hidden.
    Show { name: Option<String> },
    /// Deletes a context.
    Delete { name: String },
}

fn masked(c: &Context) -> serde_json::Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if c.token.is_some() {
        v["token"] = "(hidden)".into();
    }
    v
}

impl Run for ContextCmd {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let path = app.config_path();
        let mut file = ConfigFile::load(&path)?;
        match self {
            ContextCmd::List => {
                let current = file.current_context.clone().unwrap_or_default();
                let value = json!({
                    "current_context": file.current_context,
                    "contexts": file.contexts.iter().map(|(n, c)| {
                        let mut v = masked(c);
                        v["name"] = n.clone().into();
                        v
                    }).collect::<Vec<_>>(),
                });
                app.out.emit(&value, || {
                    let mut t = Table::new(&["CURRENT", "NAME", "SUBJECT", "EXPIRES", "INTAKE"]);
                    for (n, c) in &file.contexts {
                        t.row(vec![
                            if *n == current { "*".into() } else { String::new() },
                            n.clone(),
                            c.subject.clone().unwrap_or_default(),
                            c.expires_at.clone().unwrap_or_default(),
                            c.intake.clone().unwrap_or_default(),
                        ]);
                    }
                    t.print(&app.out);
                })
            }
            ContextCmd::Use { name } => {
                if !file.contexts.contains_key(&name) {
                    return Err(usage(format!("no context named {name:?}")));
                }
                file.current_context = Some(name.clone());
                file.save(&path)?;
                app.out.emit(&json!({"current_context": name}), || println!("switched to context {name:?}"))
            }
            ContextCmd::Show { name } => {
                let (name, c) = file
                    .context(name.as_deref().or(app.global.context.as_deref()))?
                    .ok_or_else(|| usage("no current context: run `crsctl login`"))?;
                let mut v = masked(c);
                v["name"] = name.into();
                app.out.emit(&v, || print!("{}", serde_norway::to_string(&v).unwrap_or_default()))
            }
            ContextCmd::Delete { name } => {
                if file.contexts.remove(&name).is_none() {
                    return Err(usage(format!("no context named {name:?}")));
                }
                if file.current_context.as_deref() == Some(name.as_str()) {
                    file.current_context = None;
                }
                file.save(&path)?;
                app.out.emit(&json!({"deleted": name}), || println!("deleted context {name:?}"))
            }
        }
    }
}
