//! What a complete decision on a case is, and what scope the law invoked allows.
//!
//! - Every item of the request is decided exactly once, with a final outcome.
//! - `NO_ACTION` names its reason; a reason is given for nothing else.
//! - A restriction states its DSA ground, the legal ground (the law, or the platform's term)
//!   and an explanation: the statement of reasons the content owner receives.
//! - `RESTRICTED_IN_JURISDICTION` applies in the requesting agency's jurisdiction only: local
//!   law reaches no further.
//! - `REMOVED_GLOBALLY` takes the content down everywhere, which local law alone cannot justify:
//!   the decision must cite the platform policy the content breaks (ground
//!   `INCOMPATIBLE_CONTENT`, or `ILLEGAL_CONTENT` together with `platform_policy`).

use crate::FieldViolations;
use crate::vocab::{COUNTRY_CODE_RULE, Ground, NoActionReason, Outcome, is_country_code};

/// Longest legal ground or platform policy citation (the DSA database's limit).
pub const MAX_LEGAL_GROUND: usize = 500;
/// Longest explanation (the DSA database's limit).
pub const MAX_EXPLANATION: usize = 2000;
/// Longest summary of a whole decision.
pub const MAX_SUMMARY: usize = 4000;

/// A value as a caller sent it: left unset, known, or not a value this version knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Given<T> {
    Unset,
    Value(T),
    Unknown,
}

impl<T: Copy> Given<T> {
    pub fn value(self) -> Option<T> {
        match self {
            Given::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// One item's decision as the reviewer sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedItemDecision {
    pub item_index: u32,
    pub outcome: Given<Outcome>,
    pub no_action_reason: Given<NoActionReason>,
    pub ground: Given<Ground>,
    pub legal_ground: String,
    pub explanation: String,
    pub platform_policy: String,
    pub territorial_scope: Vec<String>,
}

/// One item's decision, complete and within the law's reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemDecision {
    pub item_index: u32,
    pub outcome: Outcome,
    pub no_action_reason: Option<NoActionReason>,
    pub ground: Option<Ground>,
    pub legal_ground: String,
    pub explanation: String,
    /// The platform policy the content breaks, when cited besides an illegal-content ground.
    pub platform_policy: String,
    /// Where a restriction applies: the requesting jurisdiction for a restriction, empty for a
    /// global removal and for no restriction.
    pub territorial_scope: Vec<String>,
}

/// What the decision is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// How many items the request names.
    pub items: usize,
    /// The requesting agency's jurisdiction.
    pub jurisdiction: &'a str,
}

/// Checks a whole decision: returns the item decisions in item order, or every problem found.
pub fn validate(
    request: &Request<'_>,
    proposed: Vec<ProposedItemDecision>,
    summary: &str,
) -> Result<Vec<ItemDecision>, FieldViolations> {
    let mut v = FieldViolations::new();
    if summary.chars().count() > MAX_SUMMARY {
        v.add("summary", format!("longer than {MAX_SUMMARY} characters"));
    }
    let mut seen = vec![false; request.items];
    let mut out = Vec::with_capacity(proposed.len());
    for (i, d) in proposed.into_iter().enumerate() {
        let f = |name: &str| format!("decisions[{i}].{name}");
        let index = d.item_index as usize;
        if index >= request.items {
            v.add(f("item_index"), format!("the case has items 0 to {}", request.items.saturating_sub(1)));
            continue;
        }
        if std::mem::replace(&mut seen[index], true) {
            v.add(f("item_index"), format!("item {index} is decided twice"));
            continue;
        }
        let Some(outcome) = d.outcome.value() else {
            v.add(f("outcome"), "must be a final outcome: REMOVED_GLOBALLY, RESTRICTED_IN_JURISDICTION, NO_ACTION or ALREADY_UNAVAILABLE");
            continue;
        };
        if d.explanation.chars().count() > MAX_EXPLANATION {
            v.add(f("explanation"), format!("longer than {MAX_EXPLANATION} characters"));
        }
        if d.platform_policy.chars().count() > MAX_LEGAL_GROUND {
            v.add(f("platform_policy"), format!("longer than {MAX_LEGAL_GROUND} characters"));
        }
        let no_action_reason = match (outcome, d.no_action_reason) {
            (Outcome::NoAction, Given::Value(r)) => Some(r),
            (Outcome::NoAction, _) => {
                v.add(f("no_action_reason"), "is required when no action is taken");
                None
            }
            (_, Given::Unset) => None,
            (_, _) => {
                v.add(f("no_action_reason"), "is only for NO_ACTION");
                None
            }
        };
        let mut ground = None;
        let mut scope = Vec::new();
        if outcome.restricts() {
            match d.ground {
                Given::Value(g) => ground = Some(g),
                _ => v.add(f("ground"), "is required for a restriction (statement of reasons)"),
            }
            if d.legal_ground.trim().is_empty() {
                v.add(f("legal_ground"), "is required for a restriction: the law relied on, or the platform's term");
            } else if d.legal_ground.chars().count() > MAX_LEGAL_GROUND {
                v.add(f("legal_ground"), format!("longer than {MAX_LEGAL_GROUND} characters"));
            }
            if d.explanation.trim().is_empty() {
                v.add(f("explanation"), "is required for a restriction");
            }
        }
        match outcome {
            Outcome::RestrictedInJurisdiction => {
                for (j, code) in d.territorial_scope.iter().enumerate() {
                    let field = format!("decisions[{i}].territorial_scope[{j}]");
                    if !is_country_code(code) {
                        v.add(field, COUNTRY_CODE_RULE);
                    } else if code != request.jurisdiction {
                        v.add(
                            field,
                            format!(
                                "a restriction under local law applies only in the requesting jurisdiction ({}); \
                                 {code} is outside it",
                                request.jurisdiction
                            ),
                        );
                    }
                }
                scope.push(request.jurisdiction.to_owned());
            }
            Outcome::RemovedGlobally => {
                if !d.territorial_scope.is_empty() {
                    v.add(f("territorial_scope"), "must be empty: a global removal applies everywhere");
                }
                let cites_policy = ground == Some(Ground::IncompatibleContent) || !d.platform_policy.trim().is_empty();
                if ground.is_some() && !cites_policy {
                    v.add(
                        f("ground"),
                        "local law alone does not justify removing content everywhere: cite the platform policy it \
                         breaks (ground INCOMPATIBLE_CONTENT, or platform_policy), or restrict it in the requesting \
                         jurisdiction",
                    );
                }
            }
            Outcome::NoAction | Outcome::AlreadyUnavailable => {
                if !d.territorial_scope.is_empty() {
                    v.add(f("territorial_scope"), "must be empty: nothing is restricted");
                }
            }
        }
        out.push(ItemDecision {
            item_index: d.item_index,
            outcome,
            no_action_reason,
            ground,
            legal_ground: d.legal_ground,
            explanation: d.explanation,
            platform_policy: d.platform_policy,
            territorial_scope: scope,
        });
    }
    for (index, done) in seen.iter().enumerate() {
        if !done {
            v.add("decisions", format!("item {index} has no decision"));
        }
    }
    v.into_result()?;
    out.sort_by_key(|d| d.item_index);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KZ: Request<'static> = Request { items: 1, jurisdiction: "KZ" };

    fn restrict(index: u32, scope: &[&str]) -> ProposedItemDecision {
        ProposedItemDecision {
            item_index: index,
            outcome: Given::Value(Outcome::RestrictedInJurisdiction),
            no_action_reason: Given::Unset,
            ground: Given::Value(Ground::IllegalContent),
            legal_ground: "Art. 9".into(),
            explanation: "unlawful there".into(),
            platform_policy: String::new(),
            territorial_scope: scope.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn remove(ground: Ground, policy: &str) -> ProposedItemDecision {
        ProposedItemDecision {
            outcome: Given::Value(Outcome::RemovedGlobally),
            ground: Given::Value(ground),
            platform_policy: policy.into(),
            ..restrict(0, &[])
        }
    }

    #[test]
    fn every_item_needs_exactly_one_complete_decision() {
        let two = Request { items: 2, jurisdiction: "KZ" };
        let err = validate(&two, vec![restrict(0, &[]), restrict(0, &[])], "").unwrap_err();
        assert_eq!(err.fields(), ["decisions[1].item_index", "decisions"]);
        let no_reason = ProposedItemDecision { outcome: Given::Value(Outcome::NoAction), ..restrict(0, &[]) };
        let err = validate(&KZ, vec![no_reason], "").unwrap_err();
        assert_eq!(err.fields()[0], "decisions[0].no_action_reason");
        let pending = ProposedItemDecision { outcome: Given::Unknown, ..restrict(0, &[]) };
        assert_eq!(validate(&KZ, vec![pending], "").unwrap_err().fields(), ["decisions[0].outcome"]);
    }

    #[test]
    fn a_restriction_is_confined_to_the_requesting_jurisdiction() {
        assert_eq!(validate(&KZ, vec![restrict(0, &[])], "").unwrap()[0].territorial_scope, ["KZ"]);
        assert_eq!(validate(&KZ, vec![restrict(0, &["KZ"])], "").unwrap()[0].territorial_scope, ["KZ"]);
        let err = validate(&KZ, vec![restrict(0, &["DE", "US"])], "").unwrap_err();
        assert_eq!(err.fields(), ["decisions[0].territorial_scope[0]", "decisions[0].territorial_scope[1]"]);
        assert!(err.to_string().contains("only in the requesting jurisdiction (KZ)"));
        let err = validate(&KZ, vec![restrict(0, &["kz"])], "").unwrap_err();
        assert_eq!(err.fields(), ["decisions[0].territorial_scope[0]"]);
    }

    #[test]
    fn a_global_removal_needs_the_platform_policy_not_local_law_alone() {
        let err = validate(&KZ, vec![remove(Ground::IllegalContent, "")], "").unwrap_err();
        assert_eq!(err.fields(), ["decisions[0].ground"]);
        assert!(validate(&KZ, vec![remove(Ground::IllegalContent, "Community Standards §4")], "").is_ok());
        let ok = validate(&KZ, vec![remove(Ground::IncompatibleContent, "")], "").unwrap();
        assert!(ok[0].territorial_scope.is_empty());
        let scoped =
            ProposedItemDecision { territorial_scope: vec!["KZ".into()], ..remove(Ground::IncompatibleContent, "") };
        assert_eq!(validate(&KZ, vec![scoped], "").unwrap_err().fields(), ["decisions[0].territorial_scope"]);
    }

    #[test]
    fn limits_follow_the_statement_of_reasons() {
        let long = ProposedItemDecision { legal_ground: "x".repeat(501), ..restrict(0, &[]) };
        assert_eq!(validate(&KZ, vec![long], "").unwrap_err().fields(), ["decisions[0].legal_ground"]);
        let long = ProposedItemDecision { explanation: "x".repeat(2001), ..restrict(0, &[]) };
        assert_eq!(validate(&KZ, vec![long], "").unwrap_err().fields(), ["decisions[0].explanation"]);
        assert_eq!(validate(&KZ, vec![restrict(0, &[])], &"x".repeat(4001)).unwrap_err().fields(), ["summary"]);
    }
}
