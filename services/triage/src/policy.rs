//! SLA policies as data: which legal deadline applies to a request.

use crs_proto::common::{Category, Keyword, LegalInstrument, SlaPolicy, Submission};
use serde::Deserialize;

/// The policy file shipped with CRS; operators replace it with `policies.file`.
pub const BUILT_IN: &str = include_str!("../../../config/sla-policies.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    policy: Vec<Policy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub legal_reference: String,
    pub budget_secs: i64,
    pub pauses_while_awaiting_information: bool,
    pub warning_percents: Vec<u32>,
    /// Decisions under this policy need a second, senior reviewer.
    #[serde(default)]
    pub high_risk: bool,
    #[serde(default, rename = "match")]
    pub matcher: Match,
}

/// Conditions on a request; each listed one must hold, an empty list matches anything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
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
}

/// The ordered policy list; the first match wins.
#[derive(Debug, Clone)]
pub struct Policies(Vec<Policy>);

impl Policies {
    /// Parses and checks a policy file: names must be known and the last policy a catch-all.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("invalid SLA policy file: {e}"))?;
        for p in &file.policy {
            anyhow::ensure!(p.budget_secs > 0, "policy {}: budget_secs must be positive", p.id);
            crs_domain::deadline::check_warnings("warning_percents", &p.warning_percents)
                .map_err(|v| anyhow::anyhow!("policy {}: {v}", p.id))?;
            for i in &p.matcher.instruments {
                anyhow::ensure!(
                    LegalInstrument::from_str_name(&format!("LEGAL_INSTRUMENT_{i}")).is_some(),
                    "policy {}: unknown instrument {i}",
                    p.id
                );
            }
            for c in &p.matcher.categories {
                anyhow::ensure!(
                    Category::from_str_name(&format!("CATEGORY_{c}")).is_some(),
                    "policy {}: unknown category {c}",
                    p.id
                );
            }
            for k in &p.matcher.keywords {
                anyhow::ensure!(
                    Keyword::from_str_name(&format!("KEYWORD_{k}")).is_some(),
                    "policy {}: unknown keyword {k}",
                    p.id
                );
            }
        }
        let last = file.policy.last().ok_or_else(|| anyhow::anyhow!("the SLA policy file lists no policy"))?;
        let m = &last.matcher;
        anyhow::ensure!(
            m.jurisdictions.is_empty() && m.instruments.is_empty() && m.categories.is_empty() && m.keywords.is_empty(),
            "the last SLA policy ({}) must match every request",
            last.id
        );
        Ok(Policies(file.policy))
    }

    pub fn all(&self) -> &[Policy] {
        &self.0
    }

    /// The policy for `s`: the first whose conditions all hold.
    pub fn select(&self, s: &Submission) -> &Policy {
        let instrument = LegalInstrument::try_from(s.legal_instrument).map(|i| i.as_str_name()).unwrap_or_default();
        let category = Category::try_from(s.category).map(|c| c.as_str_name()).unwrap_or_default();
        let keywords: Vec<&str> =
            s.keywords.iter().filter_map(|k| Keyword::try_from(*k).ok()).map(|k| k.as_str_name()).collect();
        self.0
            .iter()
            .find(|p| {
                let m = &p.matcher;
                (m.jurisdictions.is_empty() || m.jurisdictions.contains(&s.jurisdiction))
                    && (m.instruments.is_empty()
                        || m.instruments.iter().any(|i| instrument == format!("LEGAL_INSTRUMENT_{i}")))
                    && (m.categories.is_empty() || m.categories.iter().any(|c| category == format!("CATEGORY_{c}")))
                    && (m.keywords.is_empty()
                        || m.keywords.iter().any(|k| keywords.iter().any(|have| *have == format!("KEYWORD_{k}"))))
            })
            .expect("the last policy matches everything")
    }
}

impl Policy {
    pub fn to_proto(&self) -> SlaPolicy {
        SlaPolicy {
            id: self.id.clone(),
            name: self.name.clone(),
            legal_reference: self.legal_reference.clone(),
            budget: Some(crs_platform::time::duration(self.budget_secs)),
            pauses_while_awaiting_information: self.pauses_while_awaiting_information,
            warning_percents: self.warning_percents.clone(),
            high_risk: self.high_risk,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission(jurisdiction: &str, instrument: LegalInstrument, keywords: &[Keyword]) -> Submission {
        Submission {
            jurisdiction: jurisdiction.into(),
            legal_instrument: instrument as i32,
            keywords: keywords.iter().map(|k| *k as i32).collect(),
            category: Category::IllegalOrHarmfulSpeech as i32,
            ..Default::default()
        }
    }

    #[test]
    fn the_built_in_policies_pick_the_legal_deadline() {
        let p = Policies::parse(BUILT_IN).unwrap();
        let pick = |j, i, k: &[Keyword]| p.select(&submission(j, i, k)).budget_secs;
        assert_eq!(pick("FR", LegalInstrument::GovernmentOrder, &[Keyword::TerroristContent]), 3600);
        assert_eq!(pick("FR", LegalInstrument::GovernmentNotice, &[Keyword::TerroristContent]), 259_200);
        assert_eq!(pick("IN", LegalInstrument::GovernmentOrder, &[Keyword::NonConsensualItemsDeepfake]), 7200);
        assert_eq!(pick("IN", LegalInstrument::CourtOrder, &[]), 10_800);
        assert_eq!(pick("TR", LegalInstrument::GovernmentOrder, &[]), 14_400);
        assert_eq!(pick("KZ", LegalInstrument::GovernmentOrder, &[]), 86_400);
        assert_eq!(pick("DE", LegalInstrument::CourtOrder, &[]), 86_400);
        assert_eq!(pick("DE", LegalInstrument::GovernmentNotice, &[]), 604_800);
        assert_eq!(pick("AU", LegalInstrument::GovernmentNotice, &[]), 86_400);
        assert_eq!(pick("VN", LegalInstrument::GovernmentNotice, &[]), 86_400);
        assert_eq!(pick("BR", LegalInstrument::CourtOrder, &[]), 259_200);
    }

    #[test]
    fn a_file_without_a_catch_all_or_with_unknown_names_is_refused() {
        let no_default = "[[policy]]\nid='x'\nname='x'\nlegal_reference='x'\nbudget_secs=1\npauses_while_awaiting_information=true\nwarning_percents=[50]\n[policy.match]\njurisdictions=['DE']\n";
        assert!(Policies::parse(no_default).unwrap_err().to_string().contains("must match every request"));
        let unknown = no_default.replace("jurisdictions=['DE']", "instruments=['DECREE']");
        assert!(Policies::parse(&unknown).unwrap_err().to_string().contains("unknown instrument"));
    }
}
