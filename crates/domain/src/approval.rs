//! Which decisions take effect only once a second, senior reviewer approved them ("four eyes").
//!
//! The defaults: every decision on a case triage flagged for human-rights review; every global
//! removal on a government order; and every decision under an SLA policy marked high-risk.
//! Operators change them in configuration.

use crate::decision::ItemDecision;
use crate::vocab::{Instrument, Outcome};

/// The deployment's rules for second-reviewer approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// Decisions on cases flagged for human-rights review need approval.
    pub human_rights_flagged: bool,
    /// A global removal on a request under one of these instruments needs approval.
    pub global_removal_instruments: Vec<Instrument>,
    /// Decisions under an SLA policy marked high-risk need approval.
    pub high_risk_policies: bool,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        ApprovalPolicy {
            human_rights_flagged: true,
            global_removal_instruments: vec![Instrument::GovernmentOrder],
            high_risk_policies: true,
        }
    }
}

/// What the approval rules look at in a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFacts {
    pub human_rights_review: bool,
    pub instrument: Option<Instrument>,
    pub high_risk_policy: bool,
}

/// Why a decision needs a second reviewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalReason {
    HumanRightsReview,
    GlobalRemovalOnOrder(Instrument),
    HighRiskPolicy,
}

impl std::fmt::Display for ApprovalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApprovalReason::HumanRightsReview => write!(f, "the case is flagged for human-rights review"),
            ApprovalReason::GlobalRemovalOnOrder(i) => write!(f, "it removes content globally on a {i}"),
            ApprovalReason::HighRiskPolicy => write!(f, "its SLA policy is marked high-risk"),
        }
    }
}

impl ApprovalPolicy {
    /// Why `decisions` on a case with `facts` need approval, or `None` when they take effect at once.
    pub fn requires(&self, facts: &CaseFacts, decisions: &[ItemDecision]) -> Option<ApprovalReason> {
        if self.human_rights_flagged && facts.human_rights_review {
            return Some(ApprovalReason::HumanRightsReview);
        }
        if let Some(instrument) = facts.instrument
            && self.global_removal_instruments.contains(&instrument)
            && decisions.iter().any(|d| d.outcome == Outcome::RemovedGlobally)
        {
            return Some(ApprovalReason::GlobalRemovalOnOrder(instrument));
        }
        if self.high_risk_policies && facts.high_risk_policy {
            return Some(ApprovalReason::HighRiskPolicy);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(outcome: Outcome) -> ItemDecision {
        ItemDecision {
            item_index: 0,
            outcome,
            no_action_reason: None,
            ground: None,
            legal_ground: String::new(),
            explanation: String::new(),
            platform_policy: String::new(),
            territorial_scope: Vec::new(),
        }
    }

    #[test]
    fn the_defaults_hold_flagged_cases_global_removals_on_orders_and_high_risk_policies() {
        let p = ApprovalPolicy::default();
        let plain = CaseFacts {
            human_rights_review: false,
            instrument: Some(Instrument::GovernmentOrder),
            high_risk_policy: false,
        };
        assert_eq!(p.requires(&plain, &[decision(Outcome::RestrictedInJurisdiction)]), None);
        assert_eq!(
            p.requires(&plain, &[decision(Outcome::RemovedGlobally)]),
            Some(ApprovalReason::GlobalRemovalOnOrder(Instrument::GovernmentOrder))
        );
        let notice = CaseFacts { instrument: Some(Instrument::GovernmentNotice), ..plain.clone() };
        assert_eq!(p.requires(&notice, &[decision(Outcome::RemovedGlobally)]), None);
        let flagged = CaseFacts { human_rights_review: true, ..notice.clone() };
        assert_eq!(p.requires(&flagged, &[decision(Outcome::NoAction)]), Some(ApprovalReason::HumanRightsReview));
        let risky = CaseFacts { high_risk_policy: true, ..notice };
        assert_eq!(p.requires(&risky, &[decision(Outcome::NoAction)]), Some(ApprovalReason::HighRiskPolicy));
        let off = ApprovalPolicy {
            human_rights_flagged: false,
            global_removal_instruments: vec![],
            high_risk_policies: false,
        };
        assert_eq!(off.requires(&flagged, &[decision(Outcome::RemovedGlobally)]), None);
    }
}
