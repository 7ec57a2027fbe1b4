//! Between the wire and the domain: the wire enums' short names, and conversions to and from the
//! domain's vocabulary (`crs_domain::vocab`). A wire value the domain has no word for (UNSPECIFIED,
//! or a number from a newer version) converts to `None`, which callers report as a field violation.

use crs_domain::decision::{Given, ProposedItemDecision};
use crs_domain::vocab;

use crate::common;

/// A wire enum's name without its prefix (`ITEM_OUTCOME_REMOVED_GLOBALLY` → `REMOVED_GLOBALLY`).
pub trait ShortName {
    fn short_name(&self) -> &'static str;
}

macro_rules! short_names {
    ($($ty:ty => $prefix:literal),* $(,)?) => {
        $(impl ShortName for $ty {
            fn short_name(&self) -> &'static str {
                let full = self.as_str_name();
                full.strip_prefix($prefix).unwrap_or(full)
            }
        })*
    };
}

short_names!(
    common::RequestStatus => "REQUEST_STATUS_",
    common::LegalInstrument => "LEGAL_INSTRUMENT_",
    common::Category => "CATEGORY_",
    common::Keyword => "KEYWORD_",
    common::RequestedAction => "REQUESTED_ACTION_",
    common::ItemOutcome => "ITEM_OUTCOME_",
    common::NoActionReason => "NO_ACTION_REASON_",
    common::DecisionGround => "DECISION_GROUND_",
    crate::notification::NotificationKind => "NOTIFICATION_KIND_",
    crate::notification::Audience => "AUDIENCE_",
    crate::notification::DeliveryState => "DELIVERY_STATE_",
    crate::notification::Channel => "CHANNEL_",
    crate::intake::AgencyStatus => "AGENCY_STATUS_",
);

/// The short name of the wire value `value` of enum `E`, or `UNKNOWN` for a number it lacks.
pub fn short_name_of<E: ShortName + TryFrom<i32>>(value: i32) -> &'static str {
    E::try_from(value).map(|e| e.short_name()).unwrap_or("UNKNOWN")
}

/// Wire enums whose values map one-to-one onto a domain enum (by name), apart from UNSPECIFIED
/// (and PENDING for outcomes), which have no domain counterpart.
macro_rules! by_name {
    ($wire:ty, $domain:ty, $to_domain:ident) => {
        /// The domain value of a wire number, or `None` for UNSPECIFIED or an unknown number.
        pub fn $to_domain(value: i32) -> Option<$domain> {
            <$wire>::try_from(value).ok().and_then(|w| <$domain>::parse(w.short_name()))
        }

        impl From<$domain> for $wire {
            fn from(d: $domain) -> $wire {
                let full = format!("{}{}", <$wire>::PREFIX, d.name());
                <$wire>::from_str_name(&full).expect("every domain value has a wire value")
            }
        }
    };
}

trait Prefix {
    const PREFIX: &'static str;
}

impl Prefix for common::RequestStatus {
    const PREFIX: &'static str = "REQUEST_STATUS_";
}
impl Prefix for common::LegalInstrument {
    const PREFIX: &'static str = "LEGAL_INSTRUMENT_";
}
impl Prefix for common::ItemOutcome {
    const PREFIX: &'static str = "ITEM_OUTCOME_";
}
impl Prefix for common::NoActionReason {
    const PREFIX: &'static str = "NO_ACTION_REASON_";
}
impl Prefix for common::DecisionGround {
    const PREFIX: &'static str = "DECISION_GROUND_";
}

by_name!(common::RequestStatus, vocab::Status, status);
by_name!(common::LegalInstrument, vocab::Instrument, instrument);
by_name!(common::ItemOutcome, vocab::Outcome, outcome);
by_name!(common::NoActionReason, vocab::NoActionReason, no_action_reason);
by_name!(common::DecisionGround, vocab::Ground, ground);

/// The wire number of a domain value.
pub fn wire<W: From<D> + Into<i32>, D>(d: D) -> i32 {
    W::from(d).into()
}

/// How the domain reads a wire enum field: unset (0), a value it knows, or something else.
fn given<T>(value: i32, to_domain: impl Fn(i32) -> Option<T>) -> Given<T> {
    match value {
        0 => Given::Unset,
        v => to_domain(v).map_or(Given::Unknown, Given::Value),
    }
}

/// A reviewer's item decision as the domain checks it.
pub fn proposed_item_decision(d: common::ItemDecision) -> ProposedItemDecision {
    ProposedItemDecision {
        item_index: d.item_index,
        outcome: given(d.outcome, outcome),
        no_action_reason: given(d.no_action_reason, no_action_reason),
        ground: given(d.ground, ground),
        legal_ground: d.legal_ground,
        explanation: d.explanation,
        platform_policy: d.platform_policy,
        territorial_scope: d.territorial_scope,
    }
}

/// A checked item decision on the wire.
pub fn item_decision(d: &crs_domain::decision::ItemDecision) -> common::ItemDecision {
    common::ItemDecision {
        item_index: d.item_index,
        outcome: wire::<common::ItemOutcome, _>(d.outcome),
        no_action_reason: d.no_action_reason.map_or(0, wire::<common::NoActionReason, _>),
        ground: d.ground.map_or(0, wire::<common::DecisionGround, _>),
        legal_ground: d.legal_ground.clone(),
        explanation: d.explanation.clone(),
        territorial_scope: d.territorial_scope.clone(),
        platform_policy: d.platform_policy.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_value_round_trips_through_the_wire() {
        for s in vocab::Status::ALL {
            assert_eq!(status(wire::<common::RequestStatus, _>(*s)), Some(*s));
        }
        for i in vocab::Instrument::ALL {
            assert_eq!(instrument(wire::<common::LegalInstrument, _>(*i)), Some(*i));
        }
        for o in vocab::Outcome::ALL {
            assert_eq!(outcome(wire::<common::ItemOutcome, _>(*o)), Some(*o));
        }
        for r in vocab::NoActionReason::ALL {
            assert_eq!(no_action_reason(wire::<common::NoActionReason, _>(*r)), Some(*r));
        }
        for g in vocab::Ground::ALL {
            assert_eq!(ground(wire::<common::DecisionGround, _>(*g)), Some(*g));
        }
    }

    #[test]
    fn every_wire_status_but_unspecified_has_a_domain_word() {
        for n in 1..=11 {
            assert!(status(n).is_some(), "status {n}");
        }
        assert_eq!(status(0), None);
        assert_eq!(status(99), None);
        assert_eq!(outcome(common::ItemOutcome::Pending as i32), None);
    }

    #[test]
    fn short_names_drop_the_prefix() {
        assert_eq!(common::ItemOutcome::RemovedGlobally.short_name(), "REMOVED_GLOBALLY");
        assert_eq!(short_name_of::<common::Category>(6), "ILLEGAL_OR_HARMFUL_SPEECH");
        assert_eq!(short_name_of::<common::Category>(999), "UNKNOWN");
    }
}
