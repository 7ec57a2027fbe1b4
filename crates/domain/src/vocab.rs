//! The shared vocabulary of CRS, aligned with the public schemas it follows (Lumen's notice
//! types, the EU DSA Transparency Database): what every service means by a status, an
//! instrument, an outcome or a ground, and which country codes exist.
//!
//! Names are the contracts' spellings without their enum prefix (`IN_REVIEW`, `COURT_ORDER`);
//! `crs-proto` converts between these and the wire enums.

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The contracts' spelling without its prefix, e.g. `IN_REVIEW`.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses [`Self::name`]'s spelling.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named_enum! {
    /// Where a request (at intake) and its case (at legal review) stand. [`crate::state`] says
    /// which command leads from which status to which.
    Status {
        /// Accepted and stored by intake; not yet triaged.
        Received => "RECEIVED",
        /// Triaged and waiting in a review queue.
        Triaged => "TRIAGED",
        /// Under review by a legal reviewer.
        InReview => "IN_REVIEW",
        /// A question to the agency is pending; the SLA clock may be paused.
        AwaitingInformation => "AWAITING_INFORMATION",
        /// Only senior reviewers may claim, decide or approve it.
        Escalated => "ESCALATED",
        /// A decision waits for a second, senior reviewer; the SLA clock keeps running.
        AwaitingApproval => "AWAITING_APPROVAL",
        /// The decision took effect.
        Decided => "DECIDED",
        /// Finished after its decision.
        Closed => "CLOSED",
        /// Withdrawn by the agency before a decision took effect.
        Withdrawn => "WITHDRAWN",
        /// Found invalid at triage.
        Rejected => "REJECTED",
        /// Every item is in an open case of the same jurisdiction: followed there until that
        /// case is decided (then DECIDED) or withdrawn (then a case of its own).
        Merged => "MERGED",
    }
}

impl Status {
    /// No command leads anywhere from here.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Closed | Status::Withdrawn | Status::Rejected)
    }

    /// A decision took effect, or the request ended without one: nothing about it will change.
    pub fn is_final(self) -> bool {
        self == Status::Decided || self.is_terminal()
    }

    /// Waiting for, or under, review: the cases a queue's depth counts.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Status::Triaged
                | Status::InReview
                | Status::AwaitingInformation
                | Status::Escalated
                | Status::AwaitingApproval
        )
    }
}

named_enum! {
    /// The kind of legal instrument behind a request (after Lumen's notice types).
    Instrument {
        CourtOrder => "COURT_ORDER",
        GovernmentOrder => "GOVERNMENT_ORDER",
        GovernmentNotice => "GOVERNMENT_NOTICE",
        LawEnforcementRequest => "LAW_ENFORCEMENT_REQUEST",
    }
}

impl Instrument {
    /// Court and government orders bind the platform in law: they need a legal basis and a
    /// justification, and draw from their own, larger rate-limit buckets.
    pub fn is_binding(self) -> bool {
        matches!(self, Instrument::CourtOrder | Instrument::GovernmentOrder)
    }
}

named_enum! {
    /// The decision on one item.
    Outcome {
        /// Removed everywhere: the content breaks the platform's global policy.
        RemovedGlobally => "REMOVED_GLOBALLY",
        /// Restricted in the requesting jurisdiction only: unlawful there.
        RestrictedInJurisdiction => "RESTRICTED_IN_JURISDICTION",
        /// Left as it is, for a stated reason.
        NoAction => "NO_ACTION",
        /// Already gone when reviewed.
        AlreadyUnavailable => "ALREADY_UNAVAILABLE",
    }
}

impl Outcome {
    /// The content's visibility is restricted (a statement of reasons is owed).
    pub fn restricts(self) -> bool {
        matches!(self, Outcome::RemovedGlobally | Outcome::RestrictedInJurisdiction)
    }
}

named_enum! {
    /// Why no action was taken on an item.
    NoActionReason {
        NotUnlawful => "NOT_UNLAWFUL",
        NotSpecificEnough => "NOT_SPECIFIC_ENOUGH",
        OverBroad => "OVER_BROAD",
        ProtectedSpeech => "PROTECTED_SPEECH",
    }
}

named_enum! {
    /// The ground of a restriction in the DSA statement of reasons.
    Ground {
        /// Illegal under the law named in `legal_ground`.
        IllegalContent => "ILLEGAL_CONTENT",
        /// Incompatible with the platform's terms (the term named in `legal_ground`).
        IncompatibleContent => "INCOMPATIBLE_CONTENT",
    }
}

/// ISO 3166-1 alpha-2 codes officially assigned, plus XK (Kosovo), which registries and the EU
/// use in practice.
const COUNTRY_CODES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD",
    "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA",
    "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE",
    "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA",
    "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK",
    "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP",
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT",
    "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS",
    "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
    "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS",
    "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST",
    "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW",
    "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "XK", "YE", "YT",
    "ZA", "ZM", "ZW",
];

/// Whether `code` is an assigned ISO 3166-1 alpha-2 country code, in upper case (`DE`, `KZ`).
pub fn is_country_code(code: &str) -> bool {
    COUNTRY_CODES.binary_search(&code).is_ok()
}

/// What a field holding a country code must be, for messages.
pub const COUNTRY_CODE_RULE: &str = "must be an ISO 3166-1 alpha-2 country code in upper case, e.g. DE";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.name()), Some(*s));
        }
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.name()), Some(*o));
        }
        assert_eq!(Instrument::parse("DECREE"), None);
    }

    #[test]
    fn country_codes_are_assigned_upper_case_codes() {
        assert!(COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]), "sorted for binary search");
        assert!(COUNTRY_CODES.len() >= 249);
        for ok in ["DE", "KZ", "IN", "TR", "US", "XK"] {
            assert!(is_country_code(ok), "{ok}");
        }
        for bad in ["de", "XX", "EU", "D", "DEU", "", "ZZ", "UK"] {
            assert!(!is_country_code(bad), "{bad}");
        }
    }

    #[test]
    fn only_orders_bind() {
        let binding: Vec<_> = Instrument::ALL.iter().filter(|i| i.is_binding()).collect();
        assert_eq!(binding, [&Instrument::CourtOrder, &Instrument::GovernmentOrder]);
    }

    #[test]
    fn open_and_final_statuses_do_not_overlap() {
        for s in Status::ALL {
            assert!(!(s.is_open() && s.is_final()), "{s}");
        }
        assert!(Status::Decided.is_final() && !Status::Decided.is_terminal());
    }
}
