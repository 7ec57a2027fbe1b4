//! What intake keeps, and for how long (see README, Retention):
//!
//! - an idempotency key names its request for `retention.idempotency_secs`; then it is released
//!   (the request stays, under a key no client can send);
//! - a finished request's free text (legal basis, justification, item descriptions, status
//!   notes, the pending question, the agency's answers) is blanked `retention.request_text_secs`
//!   after it finished; the rest of the request (what was asked, about what content, and what
//!   was decided) stays for the record and the transparency reports.

use crs_platform::retention::{Prune, RetentionConfig, Rule, final_statuses_sql};

/// Keys intake gave up: `~expired:<request id>`. Clients' keys may not start with `~`.
pub const EXPIRED_KEY_PREFIX: &str = "~expired:";

pub fn rules(cfg: &RetentionConfig) -> Vec<Rule> {
    let finished = format!("SELECT id FROM requests WHERE status IN ({}) AND updated_at < $1", final_statuses_sql());
    let text = |table: &'static str, key: &'static str, set: &'static str, select: String| Rule {
        class: "request_text",
        keep_secs: cfg.request_text_secs,
        prune: Prune::Update { table, key, set, select },
    };
    vec![
        Rule {
            class: "idempotency_keys",
            keep_secs: cfg.idempotency_secs,
            prune: Prune::Update {
                table: "requests",
                key: "id",
                set: "idempotency_key = '~expired:' || id",
                select: "SELECT id FROM requests WHERE received_at < $1 AND idempotency_key NOT LIKE '~%'".into(),
            },
        },
        text(
            "requests",
            "id",
            "legal_basis = '', justification = '', status_note = '', pending_question = ''",
            format!(
                "{finished} AND (legal_basis <> '' OR justification <> '' OR status_note <> '' OR pending_question <> '')"
            ),
        ),
        text(
            "request_items",
            "request_id",
            "description = ''",
            format!("{finished} AND id IN (SELECT request_id FROM request_items WHERE description <> '')"),
        ),
        text(
            "status_events",
            "request_id",
            "note = ''",
            format!("{finished} AND id IN (SELECT request_id FROM status_events WHERE note <> '')"),
        ),
        text(
            "information_answers",
            "request_id",
            "answer = ''",
            format!("{finished} AND id IN (SELECT request_id FROM information_answers WHERE answer <> '')"),
        ),
    ]
}
