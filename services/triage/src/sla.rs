//! SLA policies as data: which legal deadline applies to a request (`config/sla-policies.toml`,
//! or the operator's `policies.sla_file`).

use std::collections::HashMap;

use crs_proto::common::{SlaPolicy, Submission};
use serde::Deserialize;
use toml::Spanned;

use crate::conditions::{Facts, Match};
use crate::source::Source;

/// The policy file shipped with CRS; operators replace it with `policies.sla_file`.
pub const BUILT_IN: &str = include_str!("../../../config/sla-policies.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    policy: Vec<Spanned<Policy>>,
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

/// The ordered policy list; the first match wins.
#[derive(Debug, Clone)]
pub struct Policies(Vec<Policy>);

impl Policies {
    /// Parses and checks a policy file: every name known, every number sensible, ids unique,
    /// the last policy a catch-all and none after it. Problems name the file and line.
    pub fn parse(source: Source<'_>) -> anyhow::Result<Self> {
        let file: PolicyFile = source.parse()?;
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for spanned in &file.policy {
            let p = spanned.get_ref();
            let at = |what: String| source.error_at(spanned.span().start, format!("policy {:?}: {what}", p.id));
            if let Some(line) = seen.insert(&p.id, source.line_of(spanned.span().start)) {
                return Err(at(format!("the id is used twice (also at line {line})")));
            }
            if p.budget_secs <= 0 {
                return Err(at("budget_secs must be positive".into()));
            }
            crs_domain::deadline::check_warnings("warning_percents", &p.warning_percents)
                .map_err(|v| at(v.to_string()))?;
            p.matcher.check(false).map_err(at)?;
        }
        let Some(catch_all) = file.policy.iter().position(|p| p.get_ref().matcher.is_catch_all()) else {
            let last = file.policy.last().ok_or_else(|| anyhow::anyhow!("{}: lists no policy", source.name))?;
            return Err(source.error_at(
                last.span().start,
                format!("policy {:?}: the last SLA policy must match every request (no conditions)", last.get_ref().id),
            ));
        };
        if let Some(unreachable) = file.policy.get(catch_all + 1) {
            return Err(source.error_at(
                unreachable.span().start,
                format!(
                    "policy {:?} can never apply: policy {:?} above it matches every request",
                    unreachable.get_ref().id,
                    file.policy[catch_all].get_ref().id
                ),
            ));
        }
        Ok(Policies(file.policy.into_iter().map(Spanned::into_inner).collect()))
    }

    pub fn all(&self) -> &[Policy] {
        &self.0
    }

    /// The policy for `s`: the first whose conditions all hold.
    pub fn select(&self, s: &Submission) -> &Policy {
        let facts = Facts::of(s, 0);
        self.0.iter().find(|p| p.matcher.holds(&facts)).expect("the last policy matches everything")
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
    use crs_proto::common::{Category, Keyword, LegalInstrument};

    fn submission(jurisdiction: &str, instrument: LegalInstrument, keywords: &[Keyword]) -> Submission {
        Submission {
            jurisdiction: jurisdiction.into(),
            legal_instrument: instrument as i32,
            keywords: keywords.iter().map(|k| *k as i32).collect(),
            category: Category::IllegalOrHarmfulSpeech as i32,
            ..Default::default()
        }
    }

    /// (jurisdiction, instrument, category, keywords) → (policy id, budget, the law it cites).
    type Row = (&'static str, LegalInstrument, Category, &'static [Keyword], &'static str, i64, &'static str);

    /// Every shipped policy row, with what selects it and what it must give.
    #[test]
    fn every_built_in_row_gives_its_legal_deadline_and_source() {
        use Category::*;
        use Keyword::*;
        use LegalInstrument::*;
        let p = Policies::parse(Source::new("built-in", BUILT_IN)).unwrap();
        #[rustfmt::skip]
        let table: &[Row] = &[
            ("FR", GovernmentOrder, RiskForPublicSecurity, &[TerroristContent], "eu-tco-removal-order", 3_600, "2021/784"),
            ("DE", CourtOrder, RiskForPublicSecurity, &[TerroristContent], "eu-tco-removal-order", 3_600, "Art. 3(3)"),
            ("FR", GovernmentNotice, RiskForPublicSecurity, &[TerroristContent], "default", 259_200, "Art. 9"),
            ("IN", GovernmentOrder, DataProtectionAndPrivacyViolations, &[NonConsensualImageSharing], "in-it-rules-ncii", 7_200, "2 hours"),
            ("IN", GovernmentNotice, DataProtectionAndPrivacyViolations, &[NonConsensualItemsDeepfake], "in-it-rules-ncii", 7_200, "G.S.R. 120(E)"),
            ("IN", CourtOrder, IllegalOrHarmfulSpeech, &[], "in-it-rules", 10_800, "3 hours"),
            ("TR", GovernmentOrder, IllegalOrHarmfulSpeech, &[], "tr-5651-8a", 14_400, "5651"),
            ("TR", LawEnforcementRequest, ScamsAndFraud, &[], "tr-5651-8a", 14_400, "Art. 8/A"),
            ("KZ", GovernmentOrder, IllegalOrHarmfulSpeech, &[], "kz-online-platforms", 86_400, "Art. 9(4)(2)"),
            ("DE", CourtOrder, IllegalOrHarmfulSpeech, &[], "de-netzdg-manifest", 86_400, "§3(2) No. 2"),
            ("DE", GovernmentOrder, IllegalOrHarmfulSpeech, &[], "de-netzdg-manifest", 86_400, "manifestly"),
            ("DE", GovernmentNotice, IllegalOrHarmfulSpeech, &[], "de-netzdg", 604_800, "7 days"),
            ("AU", GovernmentNotice, ProtectionOfMinors, &[], "au-osa-removal-notice", 86_400, "Online Safety Act 2021"),
            ("VN", GovernmentNotice, IllegalOrHarmfulSpeech, &[], "vn-decree-147", 86_400, "147/2024"),
            ("BR", CourtOrder, ScamsAndFraud, &[], "default", 259_200, "72 hours"),
            ("US", GovernmentNotice, IllegalOrHarmfulSpeech, &[], "default", 259_200, "without undue delay"),
        ];
        for (j, instrument, category, keywords, id, budget, cites) in table {
            let s = Submission {
                jurisdiction: (*j).into(),
                legal_instrument: *instrument as i32,
                category: *category as i32,
                keywords: keywords.iter().map(|k| *k as i32).collect(),
                ..Default::default()
            };
            let got = p.select(&s);
            assert_eq!((got.id.as_str(), got.budget_secs), (*id, *budget), "{j} {instrument:?} {keywords:?}");
            assert!(got.legal_reference.contains(cites), "{id}: {:?} should cite {cites:?}", got.legal_reference);
        }
        // Every shipped policy is reached by some row above.
        for policy in p.all() {
            assert!(table.iter().any(|row| row.4 == policy.id), "no row for {}", policy.id);
        }
        // The TCO one-hour rule holds in every EU member state, and nowhere else.
        const EU: &[&str] = &[
            "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU",
            "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
        ];
        for j in EU.iter().chain(&["GB", "NO", "CH", "US"]) {
            let s = submission(j, GovernmentOrder, &[TerroristContent]);
            assert_eq!(p.select(&s).id == "eu-tco-removal-order", EU.contains(j), "{j}");
        }
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_line() {
        let policy = |id: &str, rest: &str| {
            format!(
                "[[policy]]\nid='{id}'\nname='x'\nlegal_reference='x'\nbudget_secs=60\npauses_while_awaiting_information=true\nwarning_percents=[50]\n{rest}"
            )
        };
        let refused = |text: String| Policies::parse(Source::new("sla.toml", &text)).unwrap_err().to_string();
        let de = "[policy.match]\njurisdictions=['DE']\n";
        let no_default = policy("de", de);
        assert_eq!(
            refused(no_default.clone()),
            "sla.toml:1: policy \"de\": the last SLA policy must match every request (no conditions)"
        );
        let unknown = format!("{}{}", policy("x", "[policy.match]\ninstruments=['DECREE']\n"), policy("d", ""));
        assert!(refused(unknown).starts_with("sla.toml:1: policy \"x\": unknown instrument DECREE"));
        let twice = format!("{}{}{}", policy("a", de), policy("a", ""), "");
        assert!(refused(twice).contains("sla.toml:10: policy \"a\": the id is used twice (also at line 1)"));
        let above = format!("{}{}", policy("a", ""), policy("b", "warning_percents_typo=1\n"));
        assert!(refused(above).starts_with("sla.toml:15:"), "an unknown field names its own line");
        let over = policy("d", "").replace("[50]", "[50, 120]");
        assert!(refused(over).contains("120 % is not a warning"));
        let unreachable = format!("{}{}", policy("all", ""), policy("de", de));
        assert!(refused(unreachable).contains("sla.toml:8: policy \"de\" can never apply"));
    }
}
