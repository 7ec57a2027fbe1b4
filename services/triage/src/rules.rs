//! Triage rules as data (`config/triage-rules.toml`, or the operator's `policies.rules_file`): the
//! priority weights, the routes to review queues, the human-rights rules, and how far back
//! decisions on the same content are reported.

use std::collections::{BTreeMap, HashMap};

use crs_proto::common::Category;
use serde::Deserialize;
use toml::Spanned;

use crate::conditions::Match;
use crate::source::Source;

/// The rules shipped with CRS.
pub const BUILT_IN: &str = include_str!("../../../config/triage-rules.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    priority: Spanned<Priority>,
    route: Vec<Spanned<Route>>,
    #[serde(default)]
    human_rights: Vec<Spanned<HumanRightsRule>>,
    related: Related,
}

/// `[priority]`: the points each part of a request adds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Priority {
    /// By the SLA budget: the first row whose `max_budget_secs` holds; the last has none.
    pub deadline: Vec<DeadlinePoints>,
    pub binding_instrument: i32,
    pub items: ItemPoints,
    pub agency_history: HistoryPoints,
    /// By category name (without prefix).
    #[serde(default)]
    pub categories: BTreeMap<String, i32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlinePoints {
    pub max_budget_secs: Option<i64>,
    pub points: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemPoints {
    pub per_item: i32,
    pub max: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryPoints {
    pub points: i32,
    pub min_decided: u32,
}

/// `[[route]]`: the queue for requests it matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub id: String,
    pub queue: String,
    #[serde(default, rename = "match")]
    pub matcher: Match,
}

/// `[[human_rights]]`: requests it matches need a human-rights review.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HumanRightsRule {
    pub id: String,
    #[serde(default, rename = "match")]
    pub matcher: Match,
}

/// `[related]`: what a reviewer is told about the same content elsewhere.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Related {
    /// Decisions on the same content within this many days are reported.
    pub recent_decision_days: u32,
}

/// The rules in force.
#[derive(Debug, Clone)]
pub struct Rules {
    pub priority: Priority,
    pub routes: Vec<Route>,
    pub human_rights: Vec<HumanRightsRule>,
    pub related: Related,
}

/// Points must stay within what a priority can be.
fn check_points(what: &str, points: i32) -> Result<(), String> {
    if (0..=100).contains(&points) { Ok(()) } else { Err(format!("{what}: {points} is outside 0..=100")) }
}

/// A queue name: what reviewers type, and a metric label.
fn is_queue_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Rules {
    /// Parses and checks a rules file; problems name the file and line.
    pub fn parse(source: Source<'_>) -> anyhow::Result<Self> {
        let file: RulesFile = source.parse()?;
        let at = |offset: usize, what: String| source.error_at(offset, what);

        let p = file.priority.get_ref();
        let p_at = file.priority.span().start;
        let priority_problem = (|| -> Result<(), String> {
            let (last, rows) =
                p.deadline.split_last().ok_or("priority.deadline: at least the default row is needed")?;
            if last.max_budget_secs.is_some() {
                return Err("priority.deadline: the last row is the default and has no max_budget_secs".into());
            }
            let mut previous = 0;
            for row in rows {
                let max = row.max_budget_secs.ok_or("priority.deadline: only the last row may omit max_budget_secs")?;
                if max <= previous {
                    return Err(format!("priority.deadline: max_budget_secs {max} must be larger than the row above"));
                }
                previous = max;
            }
            for row in &p.deadline {
                check_points("priority.deadline points", row.points)?;
            }
            check_points("priority.binding_instrument", p.binding_instrument)?;
            check_points("priority.items.per_item", p.items.per_item)?;
            check_points("priority.items.max", p.items.max)?;
            check_points("priority.agency_history.points", p.agency_history.points)?;
            for (name, points) in &p.categories {
                if Category::from_str_name(&format!("CATEGORY_{name}")).is_none() {
                    return Err(format!("priority.categories: unknown category {name}"));
                }
                check_points(&format!("priority.categories.{name}"), *points)?;
            }
            Ok(())
        })();
        priority_problem.map_err(|e| at(p_at, e))?;

        let mut ids: HashMap<&str, usize> = HashMap::new();
        for r in &file.route {
            let (route, start) = (r.get_ref(), r.span().start);
            let problem = |what: String| at(start, format!("route {:?}: {what}", route.id));
            if let Some(line) = ids.insert(&route.id, source.line_of(start)) {
                return Err(problem(format!("the id is used twice (also at line {line})")));
            }
            if !is_queue_name(&route.queue) {
                return Err(problem(format!(
                    "queue {:?} must be 1 to 64 characters of a-z, 0-9, '-' or '_'",
                    route.queue
                )));
            }
            route.matcher.check(true).map_err(problem)?;
        }
        match file.route.iter().position(|r| r.get_ref().matcher.is_catch_all()) {
            None => {
                let end = file.route.last().map_or(0, |r| r.span().start);
                return Err(at(end, "the last route must match every request (no conditions)".into()));
            }
            Some(i) if i + 1 < file.route.len() => {
                let next = &file.route[i + 1];
                return Err(at(
                    next.span().start,
                    format!(
                        "route {:?} can never apply: route {:?} above it matches every request",
                        next.get_ref().id,
                        file.route[i].get_ref().id
                    ),
                ));
            }
            Some(_) => {}
        }

        let mut ids: HashMap<&str, usize> = HashMap::new();
        for r in &file.human_rights {
            let (rule, start) = (r.get_ref(), r.span().start);
            let problem = |what: String| at(start, format!("human_rights {:?}: {what}", rule.id));
            if let Some(line) = ids.insert(&rule.id, source.line_of(start)) {
                return Err(problem(format!("the id is used twice (also at line {line})")));
            }
            rule.matcher.check(false).map_err(problem)?;
        }

        Ok(Rules {
            priority: file.priority.into_inner(),
            routes: file.route.into_iter().map(Spanned::into_inner).collect(),
            human_rights: file.human_rights.into_iter().map(Spanned::into_inner).collect(),
            related: file.related,
        })
    }

    /// Every queue the routes name, each once, in the order of the routes.
    pub fn queues(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.routes {
            if !out.contains(&r.queue) {
                out.push(r.queue.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        Rules::parse(Source::new("rules.toml", text)).unwrap_err().to_string()
    }

    #[test]
    fn the_built_in_rules_load() {
        let rules = Rules::parse(Source::new("built-in", BUILT_IN)).unwrap();
        assert_eq!(rules.queues(), ["urgent", "standard"]);
        assert_eq!(rules.priority.categories["PROTECTION_OF_MINORS"], 20);
    }

    #[test]
    fn a_bad_rules_file_is_refused_naming_the_line() {
        let twice = BUILT_IN.replacen("id = \"short-deadline\"", "id = \"child-safety\"", 1);
        let line = BUILT_IN.lines().position(|l| l.contains("id = \"short-deadline\"")).unwrap();
        let err = refused(&twice);
        assert!(err.starts_with(&format!("rules.toml:{line}: route \"child-safety\": the id is used twice")), "{err}");

        let err = refused(&BUILT_IN.replace("queue = \"standard\"", "queue = \"Standard Queue\""));
        assert!(err.contains("route \"default\": queue \"Standard Queue\""), "{err}");
        let err = refused(&BUILT_IN.replace("binding_instrument = 10", "binding_instrument = 150"));
        assert!(err.contains("priority.binding_instrument: 150 is outside 0..=100"), "{err}");
        let err = refused(&BUILT_IN.replace("SELF_HARM = 10", "SELF_HARMS = 10"));
        assert!(err.contains("unknown category SELF_HARMS"), "{err}");
        let typo = BUILT_IN.replace("recent_decision_days = 90", "recent_decisions_days = 90");
        let line = BUILT_IN.lines().position(|l| l.contains("recent_decision_days")).unwrap() + 1;
        let err = refused(&typo);
        assert!(err.starts_with(&format!("rules.toml:{line}: ")) && err.contains("recent_decisions_days"), "{err}");
        let err = refused(&BUILT_IN.replace("[[route]]\nid = \"default\"\nqueue = \"standard\"\n", ""));
        assert!(err.contains("the last route must match every request"), "{err}");
    }
}
