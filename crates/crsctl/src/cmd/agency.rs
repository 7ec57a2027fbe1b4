//! `crsctl agency`: agencies, their settings and rate limits (AgencyAdminService, admin only).

use clap::{Args, Subcommand};
use crs_proto::common::{Category, LegalInstrument};
use crs_proto::intake::{
    Agency, AgencyStatus, CreateAgencyRequest, GetAgencyRequest, ListAgenciesRequest, RateLimitOverride,
    SetRateLimitOverridesRequest, SuspendAgencyRequest, UpdateAgencyRequest,
};
use serde_json::{Value, json};

use crate::cli::{App, Run};
use crate::errors::usage;
use crate::output::{Out, Table, fields, ts_local};
use crate::vocab::{self, name};

#[derive(Subcommand)]
pub enum AgencyCmd {
    /// Registers an agency; a generated callback secret is shown once.
    Create(Create),
    /// Lists agencies, optionally of one jurisdiction.
    List {
        /// ISO 3166-1 alpha-2, e.g. KZ.
        #[arg(long)]
        jurisdiction: Option<String>,
    },
    /// Shows one agency.
    Show { agency_id: String },
    /// Changes an agency's settings; what is not given keeps its value.
    Update(Update),
    /// Suspends an agency: its submissions are refused and its tokens revoked.
    Suspend {
        agency_id: String,
        /// Why; kept for the record.
        #[arg(long)]
        reason: String,
    },
    /// Replaces an agency's rate-limit overrides (none given: back to its tier).
    SetLimits(SetLimits),
}

#[derive(Args)]
pub struct Create {
    /// Official name.
    #[arg(long)]
    name: String,
    /// ISO 3166-1 alpha-2, e.g. KZ.
    #[arg(long)]
    jurisdiction: String,
    #[arg(long)]
    contact_email: Option<String>,
    /// https endpoint for the agency's notifications (signed webhooks).
    #[arg(long)]
    callback_url: Option<String>,
    /// whsec_... (generated when a callback is given without one).
    #[arg(long)]
    callback_secret: Option<String>,
    /// Allowed legal instruments (repeatable; none allows all), e.g. court-order.
    #[arg(long = "instrument", value_parser = vocab::number::<LegalInstrument>)]
    instruments: Vec<i32>,
    /// Allowed categories (repeatable; none allows all), e.g. illegal-or-harmful-speech.
    #[arg(long = "category", value_parser = vocab::number::<Category>)]
    categories: Vec<i32>,
    /// Rate-limit tier.
    #[arg(long)]
    tier: Option<String>,
    /// ISO 639-1 language to write to the agency in (default en).
    #[arg(long)]
    language: Option<String>,
    /// Retrying with the same key returns the agency first created.
    #[arg(long)]
    idempotency_key: Option<String>,
}

#[derive(Args)]
pub struct Update {
    agency_id: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    contact_email: Option<String>,
    #[arg(long)]
    callback_url: Option<String>,
    #[arg(long)]
    callback_secret: Option<String>,
    /// Replaces the allowed instruments (repeatable).
    #[arg(long = "instrument", value_parser = vocab::number::<LegalInstrument>)]
    instruments: Vec<i32>,
    /// Replaces the allowed categories (repeatable).
    #[arg(long = "category", value_parser = vocab::number::<Category>)]
    categories: Vec<i32>,
    #[arg(long)]
    tier: Option<String>,
    #[arg(long)]
    language: Option<String>,
}

#[derive(Args)]
pub struct SetLimits {
    agency_id: String,
    /// RULE:rate=R,burst=B or RULE:per_day=N, with ",shadow" to only count; rules: agency,
    /// agency_daily, agency_binding, agency_daily_binding (repeatable). E.g.
    /// `--limit agency:rate=2,burst=5 --limit agency_daily:per_day=5000`.
    #[arg(long = "limit", value_parser = parse_limit)]
    limits: Vec<RateLimitOverride>,
}

/// `agency:rate=2,burst=5`, `agency_daily:per_day=5000,shadow`.
pub fn parse_limit(spec: &str) -> Result<RateLimitOverride, String> {
    let (rule, rest) = spec.split_once(':').ok_or("expected RULE:rate=R,burst=B or RULE:per_day=N")?;
    let mut o = RateLimitOverride { rule: rule.trim().to_owned(), ..Default::default() };
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("rate", v)) => o.rate_per_second = v.parse().map_err(|_| format!("rate {v:?} is not a number"))?,
            Some(("burst", v)) => o.burst = v.parse().map_err(|_| format!("burst {v:?} is not a whole number"))?,
            Some(("per_day", v)) => {
                o.per_day = v.parse().map_err(|_| format!("per_day {v:?} is not a whole number"))?
            }
            None if part == "shadow" => o.shadow = true,
            _ => return Err(format!("unknown setting {part:?} (rate, burst, per_day, shadow)")),
        }
    }
    Ok(o)
}

fn print_agency(out: &Out, a: &Agency) {
    let instruments: Vec<_> = a.allowed_instruments.iter().map(|i| name::<LegalInstrument>(*i)).collect();
    let categories: Vec<_> = a.allowed_categories.iter().map(|c| name::<Category>(*c)).collect();
    let limits: Vec<String> = a
        .rate_limit_overrides
        .iter()
        .map(|o| {
            let what = if o.per_day > 0 {
                format!("{}/day", o.per_day)
            } else {
                format!("{}/s burst {}", o.rate_per_second, o.burst)
            };
            format!("{} {what}{}", o.rule, if o.shadow { " (shadow)" } else { "" })
        })
        .collect();
    fields(
        out,
        &[
            ("id", a.id.clone()),
            ("name", a.name.clone()),
            ("jurisdiction", a.jurisdiction.clone()),
            ("status", out.status(name::<AgencyStatus>(a.status))),
            ("contact", a.contact_email.clone()),
            ("callback", a.callback_url.clone()),
            ("callback secret", a.callback_secret.clone()),
            ("language", a.language.clone()),
            ("instruments", if instruments.is_empty() { "all".into() } else { instruments.join(", ") }),
            ("categories", if categories.is_empty() { "all".into() } else { categories.join(", ") }),
            ("tier", if a.rate_limit_tier.is_empty() { "default".into() } else { a.rate_limit_tier.clone() }),
            ("limits", limits.join("; ")),
            ("created", ts_local(&a.created_at)),
            ("updated", ts_local(&a.updated_at)),
        ],
    );
    if !a.callback_secret.is_empty() {
        println!("\nThe callback secret is shown only now: give it to the agency to verify webhooks.");
    }
}

fn emit_agency(app: &App, a: &Agency) -> anyhow::Result<()> {
    app.out.emit(&crate::views::agency(a), || print_agency(&app.out, a))
}

impl Run for AgencyCmd {
    async fn run(self, app: &App) -> anyhow::Result<()> {
        let session = app.session()?;
        let mut admin = crate::cmd::agency_admin(&session)?;
        match self {
            AgencyCmd::Create(c) => {
                let a = admin
                    .create_agency(CreateAgencyRequest {
                        name: c.name,
                        jurisdiction: c.jurisdiction.to_uppercase(),
                        contact_email: c.contact_email.unwrap_or_default(),
                        callback_url: c.callback_url.unwrap_or_default(),
                        callback_secret: c.callback_secret.unwrap_or_default(),
                        allowed_instruments: c.instruments,
                        allowed_categories: c.categories,
                        rate_limit_tier: c.tier.unwrap_or_default(),
                        idempotency_key: crate::cmd::key_or_new(&c.idempotency_key),
                        language: c.language.unwrap_or_default(),
                    })
                    .await?
                    .into_inner();
                emit_agency(app, &a)
            }
            AgencyCmd::List { jurisdiction } => {
                let mut agencies = Vec::new();
                let mut page_token = String::new();
                loop {
                    let page = admin
                        .list_agencies(ListAgenciesRequest {
                            jurisdiction: jurisdiction.clone().unwrap_or_default().to_uppercase(),
                            page_size: 500,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    agencies.extend(page.agencies);
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    page_token = page.next_page_token;
                }
                let value = Value::Array(agencies.iter().map(crate::views::agency).collect());
                app.out.emit(&json!({ "agencies": value }), || {
                    let mut t = Table::new(&["ID", "NAME", "JURISDICTION", "STATUS", "TIER", "CREATED"]);
                    for a in &agencies {
                        t.row(vec![
                            a.id.clone(),
                            a.name.clone(),
                            a.jurisdiction.clone(),
                            app.out.status(name::<AgencyStatus>(a.status)),
                            if a.rate_limit_tier.is_empty() { "default".into() } else { a.rate_limit_tier.clone() },
                            ts_local(&a.created_at),
                        ]);
                    }
                    t.print(&app.out);
                })
            }
            AgencyCmd::Show { agency_id } => {
                let a = admin.get_agency(GetAgencyRequest { agency_id }).await?.into_inner();
                emit_agency(app, &a)
            }
            AgencyCmd::Update(u) => {
                let a = admin
                    .update_agency(UpdateAgencyRequest {
                        agency_id: u.agency_id,
                        name: u.name.unwrap_or_default(),
                        contact_email: u.contact_email.unwrap_or_default(),
                        callback_url: u.callback_url.unwrap_or_default(),
                        callback_secret: u.callback_secret.unwrap_or_default(),
                        allowed_instruments: u.instruments,
                        allowed_categories: u.categories,
                        rate_limit_tier: u.tier.unwrap_or_default(),
                        language: u.language.unwrap_or_default(),
                    })
                    .await?
                    .into_inner();
                emit_agency(app, &a)
            }
            AgencyCmd::Suspend { agency_id, reason } => {
                if reason.trim().is_empty() {
                    return Err(usage("--reason must say why"));
                }
                let a = admin.suspend_agency(SuspendAgencyRequest { agency_id, reason }).await?.into_inner();
                emit_agency(app, &a)
            }
            AgencyCmd::SetLimits(s) => {
                let a = admin
                    .set_rate_limit_overrides(SetRateLimitOverridesRequest {
                        agency_id: s.agency_id,
                        overrides: s.limits,
                    })
                    .await?
                    .into_inner();
                emit_agency(app, &a)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        let o = parse_limit("agency:rate=2.5,burst=5").unwrap();
        assert_eq!((o.rule.as_str(), o.rate_per_second, o.burst, o.shadow), ("agency", 2.5, 5, false));
        let o = parse_limit("agency_daily:per_day=5000,shadow").unwrap();
        assert_eq!((o.per_day, o.shadow), (5000, true));
        assert!(parse_limit("agency").is_err());
        assert!(parse_limit("agency:speed=3").is_err());
    }
}
