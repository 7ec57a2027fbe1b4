//! The assessment of one request under one policy set, as a pure function: the SLA policy, the
//! priority with each of its components, the queue, the human-rights rules, and what is already
//! known about the same content. `AssessRequest` stores it; `ExplainAssessment` returns it with
//! every rule's evaluation, so the explanation is the assessment's own reasoning, not a copy.

use crs_domain::deadline::Deadline;
use crs_platform::time::timestamp_from_millis;
use crs_proto::ShortName;
use crs_proto::common::{Assessment, Category, ItemOutcome, PriorityComponent, Submission};
use crs_proto::triage::RuleEvaluation;

use crate::conditions::{Facts, Match};
use crate::policies::PolicySet;

/// What triage knows about the submission's content and agency beyond the submission itself.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Earlier requests naming some of the same content: (request id, how many of its items).
    pub earlier: Vec<(String, usize)>,
    /// Decisions on the same content, in any jurisdiction, within `related.recent_decision_days`,
    /// newest first.
    pub recent_decisions: Vec<RecentDecision>,
    /// The agency's decided requests and how many of them were granted at least in part.
    pub agency_decided: u32,
    pub agency_granted: u32,
}

/// A decision on a piece of content the submission names.
#[derive(Debug, Clone)]
pub struct RecentDecision {
    pub content_key: String,
    pub case_id: String,
    pub jurisdiction: String,
    pub outcome: ItemOutcome,
}

/// An assessment and the evaluation of every rule behind it.
#[derive(Debug, Clone)]
pub struct Explained {
    pub assessment: Assessment,
    pub sla_policies: Vec<RuleEvaluation>,
    pub routes: Vec<RuleEvaluation>,
    pub human_rights_rules: Vec<RuleEvaluation>,
}

/// Evaluates `rules` in order: `first_only` marks only the first match as applied (SLA policies,
/// routes); otherwise every match applies (human-rights rules).
fn evaluate<'a>(
    rules: impl Iterator<Item = (&'a str, &'a Match)>,
    facts: &Facts,
    first_only: bool,
) -> Vec<RuleEvaluation> {
    let mut applied_one = false;
    rules
        .map(|(id, matcher)| {
            let conditions = matcher.evaluate(facts);
            let matched = conditions.iter().all(|c| c.holds);
            let applied = matched && !(first_only && applied_one);
            applied_one |= applied;
            RuleEvaluation { id: id.to_owned(), matched, applied, conditions }
        })
        .collect()
}

/// Assesses `s`, received at `received_at` (Unix ms), at `now`.
pub fn assess(s: &Submission, set: &PolicySet, received_at: i64, ctx: &Context, now: i64) -> Explained {
    let base = Facts::of(s, 0);
    let sla_policies = evaluate(set.sla.all().iter().map(|p| (p.id.as_str(), &p.matcher)), &base, true);
    let policy = set.sla.select(s);
    let facts = Facts { budget_secs: policy.budget_secs, ..base };
    let routes = evaluate(set.rules.routes.iter().map(|r| (r.id.as_str(), &r.matcher)), &facts, true);
    let human_rights_rules =
        evaluate(set.rules.human_rights.iter().map(|r| (r.id.as_str(), &r.matcher)), &facts, false);

    let components = priority_components(s, set, policy.budget_secs, ctx);
    let priority = components.iter().map(|c| c.points.max(0) as u32).sum::<u32>().min(100);
    let route = set
        .rules
        .routes
        .iter()
        .zip(&routes)
        .find(|(_, e)| e.applied)
        .map(|(r, _)| r)
        .expect("the last route matches everything");
    let human_rights: Vec<String> = human_rights_rules.iter().filter(|e| e.applied).map(|e| e.id.clone()).collect();

    let mut reasons = vec![format!("SLA policy {} ({})", policy.id, policy.legal_reference)];
    reasons.extend(
        components.iter().filter(|c| c.points != 0).map(|c| format!("{}: {} (+{})", c.name, c.detail, c.points)),
    );
    reasons.push(format!("queue {} by route {}", route.queue, route.id));
    if !human_rights.is_empty() {
        reasons.push(format!("human-rights review: {}", human_rights.join(", ")));
    }
    let mut duplicate_of = String::new();
    for (request_id, n) in &ctx.earlier {
        reasons.push(format!("{n} item(s) already named in request {request_id}"));
        if *n == s.items.len() && duplicate_of.is_empty() {
            duplicate_of = request_id.clone();
        }
    }
    for d in &ctx.recent_decisions {
        reasons.push(format!(
            "{} was decided {} for {} in case {}",
            d.content_key,
            d.outcome.short_name(),
            d.jurisdiction,
            d.case_id
        ));
    }
    // The initial due time; legal review owns the running deadline from here on.
    let deadline = Deadline::new(policy.budget_secs * 1000, received_at, &policy.warning_percents);
    let assessment = Assessment {
        request_id: s.request_id.clone(),
        priority,
        policy: Some(policy.to_proto()),
        due_at: Some(timestamp_from_millis(deadline.due_at(received_at))),
        queue: route.queue.clone(),
        human_rights_review: !human_rights.is_empty(),
        duplicate_of,
        reasons,
        assessed_at: Some(timestamp_from_millis(now)),
        priority_components: components,
        route_rule: route.id.clone(),
        human_rights_rules: human_rights,
    };
    Explained { assessment, sla_policies, routes, human_rights_rules }
}

/// Each part of the priority, in a fixed order, including those that add nothing (a reviewer
/// sees what was counted and what was not).
fn priority_components(s: &Submission, set: &PolicySet, budget_secs: i64, ctx: &Context) -> Vec<PriorityComponent> {
    let p = &set.rules.priority;
    let component = |name: &str, detail: String, points: i32| PriorityComponent { name: name.into(), detail, points };
    let row = p
        .deadline
        .iter()
        .find(|r| r.max_budget_secs.is_none_or(|max| budget_secs <= max))
        .expect("the last row has no bound");
    let deadline = match row.max_budget_secs {
        Some(max) => format!("budget {budget_secs} s <= {max} s"),
        None => format!("budget {budget_secs} s (default row)"),
    };
    let binding = crs_proto::convert::instrument(s.legal_instrument).is_some_and(|i| i.is_binding());
    let category = Category::try_from(s.category).unwrap_or(Category::Unspecified);
    let category_name = category.as_str_name().strip_prefix("CATEGORY_").unwrap_or_default();
    let category_points = p.categories.get(category_name).copied().unwrap_or(0);
    let n = s.items.len() as i32;
    let items = n.saturating_mul(p.items.per_item).min(p.items.max);
    let history = if ctx.agency_decided >= p.agency_history.min_decided && ctx.agency_decided > 0 {
        let points = (f64::from(p.agency_history.points) * f64::from(ctx.agency_granted)
            / f64::from(ctx.agency_decided))
        .round() as i32;
        component(
            "agency_history",
            format!("{} of {} past requests granted", ctx.agency_granted, ctx.agency_decided),
            points,
        )
    } else {
        component(
            "agency_history",
            format!("{} past requests decided; counted from {}", ctx.agency_decided, p.agency_history.min_decided),
            0,
        )
    };
    vec![
        component("deadline", deadline, row.points),
        component(
            "binding_instrument",
            if binding { "legally binding order".into() } else { "not a binding order".into() },
            if binding { p.binding_instrument } else { 0 },
        ),
        component("category", category_name.to_owned(), category_points),
        component("items", format!("{n} item(s)"), items),
        history,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyConfig;
    use crs_proto::common::{Item, Keyword, LegalInstrument};

    fn set() -> PolicySet {
        PolicySet::load(&PolicyConfig { sla_file: String::new(), rules_file: String::new(), reload_interval_secs: 0 })
            .unwrap()
    }

    fn submission(j: &str, i: LegalInstrument, c: Category) -> Submission {
        Submission {
            request_id: "r".into(),
            jurisdiction: j.into(),
            legal_instrument: i as i32,
            category: c as i32,
            items: vec![Item { content_key: "url:https://x/1".into(), ..Default::default() }],
            ..Default::default()
        }
    }

    #[test]
    fn the_priority_is_the_sum_of_its_components() {
        let s = submission("TR", LegalInstrument::GovernmentOrder, Category::ProtectionOfMinors);
        let ctx = Context { agency_decided: 10, agency_granted: 8, ..Default::default() };
        let a = assess(&s, &set(), 0, &ctx, 0).assessment;
        let points: Vec<(&str, i32)> = a.priority_components.iter().map(|c| (c.name.as_str(), c.points)).collect();
        assert_eq!(
            points,
            [("deadline", 55), ("binding_instrument", 10), ("category", 20), ("items", 1), ("agency_history", 4)]
        );
        assert_eq!(a.priority, 90);
        assert_eq!(a.queue, "urgent");
        assert_eq!(a.route_rule, "child-safety");
        assert_eq!(a.due_at.unwrap().seconds, 4 * 3600);
    }

    #[test]
    fn an_agency_with_little_history_gets_no_history_points() {
        let s = submission("BR", LegalInstrument::GovernmentNotice, Category::ScamsAndFraud);
        let ctx = Context { agency_decided: 4, agency_granted: 4, ..Default::default() };
        let a = assess(&s, &set(), 0, &ctx, 0).assessment;
        let history = a.priority_components.iter().find(|c| c.name == "agency_history").unwrap();
        assert_eq!(history.points, 0);
        assert_eq!(a.queue, "standard");
        assert_eq!(a.route_rule, "default");
    }

    #[test]
    fn speech_is_flagged_by_the_rules_that_match_and_explained() {
        let mut s = submission("KZ", LegalInstrument::GovernmentOrder, Category::ScamsAndFraud);
        s.keywords = vec![Keyword::Defamation as i32];
        let e = assess(&s, &set(), 0, &Context::default(), 0);
        assert!(e.assessment.human_rights_review);
        assert_eq!(e.assessment.human_rights_rules, ["speech-keywords"]);
        let applied: Vec<&str> = e.human_rights_rules.iter().filter(|r| r.applied).map(|r| r.id.as_str()).collect();
        assert_eq!(applied, ["speech-keywords"]);
        let category_rule = &e.human_rights_rules[0];
        assert!(!category_rule.matched && !category_rule.conditions[0].holds);
        assert_eq!(e.sla_policies.iter().filter(|r| r.applied).count(), 1, "one SLA policy applies");
        assert_eq!(e.routes.iter().filter(|r| r.applied).count(), 1, "one route applies");
    }
}
