//! The wire enums as people type and read them: `government-order`, `GOVERNMENT_ORDER` and
//! `LEGAL_INSTRUMENT_GOVERNMENT_ORDER` all name the same instrument; output uses the short name.

use crs_proto::ShortName;
use crs_proto::common::{
    Category, DecisionGround, ItemOutcome, Keyword, LegalInstrument, NoActionReason, RequestStatus, RequestedAction,
};

use crate::errors::usage;

/// A wire enum that can be parsed from its short name.
pub trait Wire: Sized + ShortName {
    const PREFIX: &'static str;
    const WHAT: &'static str;
    fn from_full(name: &str) -> Option<Self>;
    fn number(self) -> i32;
}

macro_rules! wire {
    ($($ty:ty => $prefix:literal, $what:literal);* $(;)?) => {
        $(impl Wire for $ty {
            const PREFIX: &'static str = $prefix;
            const WHAT: &'static str = $what;
            fn from_full(name: &str) -> Option<Self> {
                <$ty>::from_str_name(name)
            }
            fn number(self) -> i32 {
                self as i32
            }
        })*
    };
}

wire!(
    RequestStatus => "REQUEST_STATUS_", "status";
    LegalInstrument => "LEGAL_INSTRUMENT_", "legal instrument";
    Category => "CATEGORY_", "category";
    Keyword => "KEYWORD_", "keyword";
    RequestedAction => "REQUESTED_ACTION_", "requested action";
    ItemOutcome => "ITEM_OUTCOME_", "outcome";
    NoActionReason => "NO_ACTION_REASON_", "no-action reason";
    DecisionGround => "DECISION_GROUND_", "decision ground";
);

/// Parses a short, long, lower-case or dashed name; UNSPECIFIED is never a valid input.
pub fn parse<E: Wire>(input: &str) -> anyhow::Result<E> {
    let upper = input.trim().to_uppercase().replace(['-', ' '], "_");
    let full = if upper.starts_with(E::PREFIX) { upper } else { format!("{}{upper}", E::PREFIX) };
    E::from_full(&full)
        .filter(|e| !e.short_name().ends_with("UNSPECIFIED"))
        .ok_or_else(|| usage(format!("unknown {} {input:?}", E::WHAT)))
}

/// As `parse`, for clap's `value_parser`: the number on the wire.
pub fn number<E: Wire>(input: &str) -> Result<i32, String> {
    parse::<E>(input).map(E::number).map_err(|e| e.to_string())
}

/// The short name of wire number `n` of enum `E` (`UNKNOWN` for a number it does not know).
pub fn name<E: ShortName + TryFrom<i32>>(n: i32) -> &'static str {
    crs_proto::convert::short_name_of::<E>(n)
}

pub fn status(n: i32) -> &'static str {
    name::<RequestStatus>(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_every_spelling() {
        for s in ["government-order", "GOVERNMENT_ORDER", "LEGAL_INSTRUMENT_GOVERNMENT_ORDER", "government order"] {
            assert_eq!(parse::<LegalInstrument>(s).unwrap(), LegalInstrument::GovernmentOrder, "{s}");
        }
        assert!(parse::<LegalInstrument>("unspecified").is_err());
        assert!(parse::<Category>("nonsense").is_err());
    }
}
