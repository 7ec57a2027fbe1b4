//! Email templates, one per audience and language, compiled into the binary
//! (`templates/email/<language>/<audience>.txt`). Each renders a whole message: a first line
//! `Subject: ...`, then the body. A language without a template for the audience falls back to
//! English.

use crs_proto::ShortName;
use crs_proto::notification::{Audience, NotificationKind};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior, Value, context};

use crate::config::AppealRoute;

/// The languages with templates, English first (the fallback).
pub const LANGUAGES: [&str; 3] = ["en", "ru", "kk"];

macro_rules! templates {
    ($($language:literal / $audience:literal),* $(,)?) => {
        &[$((concat!($language, "/", $audience), include_str!(concat!("../templates/email/", $language, "/", $audience, ".txt")))),*]
    };
}

const SOURCES: &[(&str, &str)] = templates!(
    "en" / "agency",
    "en" / "content_owner",
    "en" / "on_call",
    "ru" / "agency",
    "ru" / "content_owner",
    "ru" / "on_call",
    "kk" / "agency",
    "kk" / "content_owner",
    "kk" / "on_call",
);

/// What a template is given.
pub struct Context<'a> {
    pub audience: Audience,
    pub kind: NotificationKind,
    /// The subscription's language (ISO 639-1).
    pub language: &'a str,
    /// Whom to greet; empty for a generic greeting.
    pub recipient_name: &'a str,
    pub delivery_id: &'a str,
    /// The audience's message.
    pub payload: &'a serde_json::Value,
    pub appeal: AppealRoute,
}

/// A rendered email.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub language: &'static str,
    pub subject: String,
    pub body: String,
}

/// An RFC 3339 time as people read it (`2026-12-01 10:00 UTC`); anything else as it is.
fn when(value: Option<String>) -> String {
    match value {
        Some(v) => chrono::DateTime::parse_from_rfc3339(&v)
            .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or(v),
        None => "-".into(),
    }
}

pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn new() -> anyhow::Result<Templates> {
        let mut env = Environment::new();
        env.set_syntax(SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build()?);
        env.add_filter("when", when);
        // A field missing from a message is a bug to see in tests, not a blank in a letter; a
        // field a message may leave out is tested with `if`.
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        for (name, source) in SOURCES {
            env.add_template(name, source).map_err(|e| anyhow::anyhow!("email template {name}: {e}"))?;
        }
        Ok(Templates { env })
    }

    /// The language a recipient who reads `wanted` is written to in, for `audience`.
    pub fn language_for(&self, audience: Audience, wanted: &str) -> &'static str {
        let name = |l: &str| format!("{l}/{}", audience.short_name().to_lowercase());
        LANGUAGES.iter().copied().find(|l| *l == wanted && self.env.get_template(&name(l)).is_ok()).unwrap_or("en")
    }

    pub fn render(&self, cx: &Context<'_>) -> anyhow::Result<Rendered> {
        let language = self.language_for(cx.audience, cx.language);
        let name = format!("{language}/{}", cx.audience.short_name().to_lowercase());
        let template = self.env.get_template(&name).map_err(|_| anyhow::anyhow!("no email template for {name}"))?;
        let text = template
            .render(context! {
                kind => cx.kind.short_name(),
                recipient_name => cx.recipient_name,
                delivery_id => cx.delivery_id,
                payload => Value::from(minijinja::value::Serde(cx.payload)),
                appeal => context! { url => cx.appeal.url.clone(), text => cx.appeal.text.clone() },
            })
            .map_err(|e| anyhow::anyhow!("email template {name}: {e:#}"))?;
        let text = text.trim_start();
        let (first, body) = text.split_once('\n').unwrap_or((text, ""));
        let subject = first
            .strip_prefix("Subject: ")
            .ok_or_else(|| anyhow::anyhow!("email template {name} for {} renders no subject", cx.kind.short_name()))?;
        Ok(Rendered { language, subject: subject.trim().to_owned(), body: body.trim_start_matches('\n').to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn render(audience: Audience, kind: NotificationKind, language: &str, data: serde_json::Value) -> Rendered {
        let payload = json!({"type": "t", "timestamp": "2026-12-01T10:00:00Z", "schema": "s", "notification_id": "n", "data": data});
        Templates::new()
            .unwrap()
            .render(&Context {
                audience,
                kind,
                language,
                recipient_name: "",
                delivery_id: "d-1",
                payload: &payload,
                appeal: AppealRoute { url: "https://platform.example/appeal".into(), text: String::new() },
            })
            .unwrap()
    }

    fn agency_data() -> serde_json::Value {
        json!({"request_id": "r-1", "reference": "REF-9", "jurisdiction": "KZ", "received_at": "2026-12-01T10:00:00+00:00",
               "items": [{"index": 0, "url": "https://social.example/p/1", "content_id": ""}],
               "question": "Which ruling?", "deadline": null, "reason": "no items"})
    }

    #[test]
    fn every_template_renders_every_kind_it_serves_in_every_language() {
        let owner = json!({"decision_reference": "r-1",
            "requested_by": {"authority": "Ministry", "jurisdiction": "KZ", "legal_instrument": "GOVERNMENT_ORDER"},
            "items": [{"url": "https://social.example/p/1", "content_id": "", "decision": "RESTRICTED_IN_JURISDICTION",
                       "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT", "legal_ground": "Art. 9", "explanation": "Because.",
                       "platform_policy": "", "worldwide": false, "territorial_scope": ["KZ"], "application_date": "2026-12-01"}],
            "appeal": {"url": "", "text": "", "by_language": {}}});
        let sla = json!({"request_id": "r-1", "jurisdiction": "KZ", "legal_instrument": "COURT_ORDER", "category": "VIOLENCE",
            "threshold_percent": 75, "breach": false,
            "deadline": {"policy_id": "p", "legal_reference": "law", "due_at": "2026-12-02T10:00:00+00:00", "paused": false}});
        let mut decided = agency_data();
        decided["items"] = json!([{"index": 0, "url": "https://social.example/p/1", "content_id": "", "outcome": "NO_ACTION",
            "no_action_reason": "OVER_BROAD", "explanation": "Too broad."}]);
        for language in LANGUAGES {
            for kind in [
                NotificationKind::Acknowledged,
                NotificationKind::InformationRequested,
                NotificationKind::Withdrawn,
                NotificationKind::Rejected,
            ] {
                let r = render(Audience::Agency, kind, language, agency_data());
                assert_eq!(r.language, language);
                assert!(r.subject.contains("r-1") && r.body.contains("d-1"), "{language} {kind:?}: {r:?}");
            }
            let r = render(Audience::Agency, NotificationKind::Decided, language, decided.clone());
            assert!(r.body.contains("Too broad."), "{r:?}");
            let r = render(Audience::ContentOwner, NotificationKind::Decided, language, owner.clone());
            assert!(r.body.contains("Ministry") && r.body.contains("https://platform.example/appeal"), "{r:?}");
            for kind in [NotificationKind::SlaWarning, NotificationKind::SlaBreach] {
                assert!(render(Audience::OnCall, kind, language, sla.clone()).subject.contains("r-1"));
            }
        }
    }

    #[test]
    fn an_unknown_language_falls_back_to_english() {
        let r = render(Audience::Agency, NotificationKind::Acknowledged, "de", agency_data());
        assert_eq!(r.language, "en");
        assert!(r.subject.starts_with("Request r-1 received"));
    }
}
