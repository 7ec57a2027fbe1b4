//! The conditions every policy rule is written with (SLA policies, routing rules, human-rights
//! rules): each listed condition must hold, and an absent or empty one holds for anything. A
//! rule is explained condition by condition, so an operator sees why it did or did not match.

use crs_proto::common::{Category, Keyword, LegalInstrument, Submission};
use crs_proto::triage::ConditionResult;
use serde::Deserialize;

/// `[*.match]` in a policy file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// ISO 3166-1 alpha-2 codes.
    #[serde(default)]
    pub jurisdictions: Vec<String>,
    /// `LegalInstrument` names without prefix, e.g. `COURT_ORDER`.
    #[serde(default)]
    pub instruments: Vec<String>,
    /// `Category` names without prefix, e.g. `RISK_FOR_PUBLIC_SECURITY`.
    #[serde(default)]
    pub categories: Vec<String>,
    /// `Keyword` names without prefix; any one of them present matches.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// BCP 47 primary language subtags (`ru`, `kk`); matches the submission's `language`.
    #[serde(default)]
    pub languages: Vec<String>,
    /// Holds when the deadline that applies is at most this long (routing rules only).
    #[serde(default)]
    pub max_budget_secs: Option<i64>,
}

/// What a submission is matched on: its fields, with names as policy files spell them.
#[derive(Debug, Clone)]
pub struct Facts {
    pub jurisdiction: String,
    pub instrument: String,
    pub category: String,
    pub keywords: Vec<String>,
    pub language: String,
    /// The budget of the SLA policy that applies (for routing rules).
    pub budget_secs: i64,
}

impl Facts {
    pub fn of(s: &Submission, budget_secs: i64) -> Facts {
        let strip = |name: &str, prefix: &str| name.strip_prefix(prefix).unwrap_or(name).to_owned();
        Facts {
            jurisdiction: s.jurisdiction.clone(),
            instrument: LegalInstrument::try_from(s.legal_instrument)
                .map(|i| strip(i.as_str_name(), "LEGAL_INSTRUMENT_"))
                .unwrap_or_default(),
            category: Category::try_from(s.category).map(|c| strip(c.as_str_name(), "CATEGORY_")).unwrap_or_default(),
            keywords: s
                .keywords
                .iter()
                .filter_map(|k| Keyword::try_from(*k).ok())
                .map(|k| strip(k.as_str_name(), "KEYWORD_"))
                .collect(),
            language: s.language.to_ascii_lowercase(),
            budget_secs,
        }
    }
}

impl Match {
    /// Whether every condition holds.
    pub fn holds(&self, f: &Facts) -> bool {
        self.evaluate(f).iter().all(|c| c.holds)
    }

    /// Each condition the rule lists, with what it asks, what the submission has, and whether it
    /// holds. A rule without conditions matches everything (an empty list).
    pub fn evaluate(&self, f: &Facts) -> Vec<ConditionResult> {
        let mut out = Vec::new();
        let mut one_of = |name: &str, expected: &[String], actual: &str| {
            if !expected.is_empty() {
                out.push(ConditionResult {
                    name: name.into(),
                    expected: expected.join(", "),
                    actual: actual.into(),
                    holds: expected.iter().any(|e| e.eq_ignore_ascii_case(actual)),
                });
            }
        };
        one_of("jurisdictions", &self.jurisdictions, &f.jurisdiction);
        one_of("instruments", &self.instruments, &f.instrument);
        one_of("categories", &self.categories, &f.category);
        one_of("languages", &self.languages, &f.language);
        if !self.keywords.is_empty() {
            out.push(ConditionResult {
                name: "keywords".into(),
                expected: self.keywords.join(", "),
                actual: f.keywords.join(", "),
                holds: self.keywords.iter().any(|k| f.keywords.contains(k)),
            });
        }
        if let Some(max) = self.max_budget_secs {
            out.push(ConditionResult {
                name: "max_budget_secs".into(),
                expected: format!("<= {max}"),
                actual: f.budget_secs.to_string(),
                holds: f.budget_secs <= max,
            });
        }
        out
    }

    /// Whether the rule lists no condition at all (it matches every request).
    pub fn is_catch_all(&self) -> bool {
        self.jurisdictions.is_empty()
            && self.instruments.is_empty()
            && self.categories.is_empty()
            && self.keywords.is_empty()
            && self.languages.is_empty()
            && self.max_budget_secs.is_none()
    }

    /// Every name the rule uses is one CRS knows; `allow_budget` says whether `max_budget_secs`
    /// may be used (not in SLA policies, which set the budget).
    pub fn check(&self, allow_budget: bool) -> Result<(), String> {
        for j in &self.jurisdictions {
            if !crs_domain::vocab::is_country_code(j) {
                return Err(format!("jurisdictions: {j:?}: {}", crs_domain::vocab::COUNTRY_CODE_RULE));
            }
        }
        let known = |prefix: &str, name: &str, exists: fn(&str) -> bool| {
            if exists(&format!("{prefix}{name}")) {
                Ok(())
            } else {
                Err(format!("unknown {} {name}", prefix_word(prefix)))
            }
        };
        for i in &self.instruments {
            known("LEGAL_INSTRUMENT_", i, |n| LegalInstrument::from_str_name(n).is_some())?;
        }
        for c in &self.categories {
            known("CATEGORY_", c, |n| Category::from_str_name(n).is_some())?;
        }
        for k in &self.keywords {
            known("KEYWORD_", k, |n| Keyword::from_str_name(n).is_some())?;
        }
        for l in &self.languages {
            if !is_language(l) {
                return Err(format!("languages: {l:?} is not a BCP 47 primary language subtag (2 or 3 letters)"));
            }
        }
        match self.max_budget_secs {
            Some(_) if !allow_budget => Err("max_budget_secs: only routing rules may use it".into()),
            Some(s) if s <= 0 => Err("max_budget_secs must be positive".into()),
            _ => Ok(()),
        }
    }
}

fn prefix_word(prefix: &str) -> &'static str {
    match prefix {
        "LEGAL_INSTRUMENT_" => "instrument",
        "CATEGORY_" => "category",
        _ => "keyword",
    }
}

/// A BCP 47 primary language subtag: two or three ASCII letters.
pub fn is_language(s: &str) -> bool {
    (2..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            jurisdiction: "DE".into(),
            instrument: "COURT_ORDER".into(),
            category: "ILLEGAL_OR_HARMFUL_SPEECH".into(),
            keywords: vec!["HATE_SPEECH".into()],
            language: "de".into(),
            budget_secs: 86_400,
        }
    }

    #[test]
    fn every_listed_condition_must_hold_and_each_is_explained() {
        let m = Match {
            jurisdictions: vec!["DE".into(), "AT".into()],
            keywords: vec!["TERRORIST_CONTENT".into()],
            ..Default::default()
        };
        let conditions = m.evaluate(&facts());
        assert_eq!(conditions.len(), 2);
        assert!(conditions[0].holds && !conditions[1].holds);
        assert_eq!(conditions[1].actual, "HATE_SPEECH");
        assert!(!m.holds(&facts()));
        assert!(Match::default().holds(&facts()) && Match::default().is_catch_all());
        let route = Match { max_budget_secs: Some(86_400), languages: vec!["DE".into()], ..Default::default() };
        assert!(route.holds(&facts()), "languages compare without case; the budget bound is inclusive");
    }

    #[test]
    fn unknown_names_are_refused() {
        let bad = |m: Match, allow: bool| m.check(allow).unwrap_err();
        assert!(
            bad(Match { instruments: vec!["DECREE".into()], ..Default::default() }, true).contains("instrument DECREE")
        );
        assert!(bad(Match { jurisdictions: vec!["EU".into()], ..Default::default() }, true).contains("jurisdictions"));
        assert!(bad(Match { languages: vec!["english".into()], ..Default::default() }, true).contains("languages"));
        assert!(bad(Match { max_budget_secs: Some(60), ..Default::default() }, false).contains("routing rules"));
    }
}
