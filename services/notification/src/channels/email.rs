//! Email by SMTP, for the people among the audiences: the agency (at its contact address), the
//! content owner (through the platform's user-messaging relay, which knows who owns what) and
//! on-call. Each message is rendered from the audience's message with the template of the
//! subscription's language (English when there is none in it; see `templates`).

use std::str::FromStr as _;
use std::time::Duration;

use crs_platform::error::FieldViolations;
use crs_proto::notification::{Audience, Channel as ChannelKind, NotificationKind};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tracing::Instrument;

use super::{Attempt, Channel, Failure, Outcome};
use crate::config::{AppealConfig, EmailConfig};
use crate::templates::Templates;

/// The audiences email serves: people, not systems.
const FOR_PEOPLE: [Audience; 3] = [Audience::Agency, Audience::ContentOwner, Audience::OnCall];
/// The longest address accepted (RFC 5321's path limit).
const MAX_ADDRESS_LEN: usize = 254;

/// Checks the email section: a parsable SMTP URL with TLS (plain SMTP only in development
/// mode) and a sender address.
pub fn check(cfg: &EmailConfig, development: bool) -> anyhow::Result<()> {
    Mailbox::from_str(&cfg.from).map_err(|e| anyhow::anyhow!("email.from {:?} is not an address: {e}", cfg.from))?;
    if cfg.smtp_url.is_empty() {
        return Ok(());
    }
    let url = url::Url::parse(&cfg.smtp_url).map_err(|e| anyhow::anyhow!("email.smtp_url is not a valid URL: {e}"))?;
    let tls = url.scheme() == "smtps" || url.query_pairs().any(|(k, v)| k == "tls" && v == "required");
    anyhow::ensure!(
        matches!(url.scheme(), "smtp" | "smtps"),
        "email.smtp_url must be an smtps: or smtp: URL, not {}",
        crs_platform::db::redact(&cfg.smtp_url)
    );
    anyhow::ensure!(
        tls || development,
        "email.smtp_url must use TLS (smtps://, or smtp://...?tls=required); plain SMTP only in development mode"
    );
    AsyncSmtpTransport::<Tokio1Executor>::from_url(&cfg.smtp_url)
        .map_err(|e| anyhow::anyhow!("email.smtp_url: {e}"))?;
    Ok(())
}

pub struct Email {
    /// `None` when no SMTP server is configured: the channel is off.
    mailer: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    server: (String, u16),
    templates: Templates,
    appeal: AppealConfig,
    /// `email.timeout_ms`, which bounds each round trip of a conversation, not the whole.
    timeout: Duration,
}

impl Email {
    pub fn new(cfg: &EmailConfig, appeal: &AppealConfig, development: bool) -> anyhow::Result<Email> {
        check(cfg, development)?;
        let from = Mailbox::from_str(&cfg.from)?;
        let (mailer, server) = if cfg.smtp_url.is_empty() {
            (None, (String::new(), 0))
        } else {
            let url = url::Url::parse(&cfg.smtp_url)?;
            let port = url.port().unwrap_or(if url.scheme() == "smtps" { 465 } else { 587 });
            let mailer = AsyncSmtpTransport::<Tokio1Executor>::from_url(&cfg.smtp_url)?
                .timeout(Some(Duration::from_millis(cfg.timeout_ms)))
                .build();
            (Some(mailer), (url.host_str().unwrap_or_default().to_owned(), port))
        };
        let timeout = Duration::from_millis(cfg.timeout_ms);
        Ok(Email { mailer, from, server, templates: Templates::new()?, appeal: appeal.clone(), timeout })
    }

    async fn send(&self, attempt: &Attempt) -> Outcome {
        let Some(mailer) = &self.mailer else {
            return Outcome::Failed(Failure::internal("email is not configured (email.smtp_url)"));
        };
        let sub = &attempt.subscription;
        let audience = Audience::try_from(attempt.message.audience).unwrap_or(Audience::Unspecified);
        let kind = NotificationKind::try_from(attempt.message.kind).unwrap_or(NotificationKind::Unspecified);
        let payload: serde_json::Value = match serde_json::from_str(&attempt.message.payload) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(Failure::internal(format!("the message is not JSON: {e}"))),
        };
        let rendered = self.templates.render(&crate::templates::Context {
            audience,
            kind,
            language: &sub.language,
            recipient_name: &sub.recipient_name,
            delivery_id: &attempt.delivery.id,
            payload: &payload,
            appeal: self.appeal.route(&sub.language),
        });
        let rendered = match rendered {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(Failure::internal(format!("cannot render the email: {e:#}"))),
        };
        let to = match Mailbox::from_str(&sub.endpoint) {
            Ok(to) => to,
            Err(e) => {
                return Outcome::Failed(Failure {
                    permanent: true,
                    summary: "the address is not valid".into(),
                    detail: format!("{:?}: {e}", sub.endpoint),
                    retry_after: None,
                    endpoint_unwell: false,
                });
            }
        };
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .message_id(Some(format!("<{}@crs.notification>", attempt.delivery.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(rendered.body);
        let email = match email {
            Ok(e) => e,
            Err(e) => return Outcome::Failed(Failure::internal(format!("cannot build the email: {e}"))),
        };
        let span = tracing::info_span!(
            "smtp client",
            otel.name = "smtp send",
            otel.kind = "client",
            network.protocol.name = "smtp",
            server.address = %self.server.0,
            server.port = i64::from(self.server.1),
            smtp.response.code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let sent = mailer.send(email).instrument(span.clone()).await;
        match sent {
            Ok(response) => {
                span.record("smtp.response.code", i64::from(u16::from(response.code())));
                Outcome::Delivered
            }
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                if let Some(code) = e.status() {
                    span.record("smtp.response.code", i64::from(u16::from(code)));
                }
                span.record(
                    "error.type",
                    if e.is_timeout() {
                        "timeout"
                    } else if e.is_permanent() {
                        "permanent"
                    } else {
                        "transient"
                    },
                );
                let summary = if e.is_permanent() {
                    "the mail server refused the message"
                } else {
                    "the mail server could not be reached or deferred the message"
                };
                Outcome::Failed(Failure {
                    // A 5xx reply is the server's final word on this message.
                    permanent: e.is_permanent(),
                    summary: summary.into(),
                    detail: crs_platform::error::error_chain(&e),
                    retry_after: None,
                    endpoint_unwell: !e.is_permanent(),
                })
            }
        }
    }
}

impl Channel for Email {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn enabled(&self) -> bool {
        self.mailer.is_some()
    }

    /// A conversation takes several round trips, each under the timeout; three cover the
    /// connection and greeting, the envelope and the message.
    fn longest_attempt(&self) -> Duration {
        self.timeout * 3
    }

    fn check_endpoint(&self, audience: Audience, endpoint: &str, v: &mut FieldViolations) {
        if !FOR_PEOPLE.contains(&audience) {
            v.add("channel", "email is for people: the agency, content owners (through their relay) and on-call");
        }
        if endpoint.is_empty() {
            v.add("endpoint", "is required: the email address");
        } else if endpoint.len() > MAX_ADDRESS_LEN || Address::from_str(endpoint).is_err() {
            v.add("endpoint", "must be an email address (name@domain)");
        }
    }

    fn deliver<'a>(&'a self, attempt: &'a Attempt) -> BoxFuture<'a, Outcome> {
        self.send(attempt).boxed()
    }
}
