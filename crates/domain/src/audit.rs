//! The audit trail's hash chain: each entry carries the SHA-256 of the entry before it, so an
//! entry altered, inserted or deleted after the fact breaks the chain at that entry.
//!
//! Sequence numbers start at 1 and have no gaps: a missing number is a deleted entry.

use sha2::{Digest, Sha256};

/// One entry of the trail, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub sequence: u64,
    pub case_id: String,
    pub actor: String,
    pub action: String,
    /// The action's full content, as a JSON object.
    pub details_json: String,
    pub trace_id: String,
    /// Unix milliseconds.
    pub at: i64,
    /// The previous entry's hash; empty for the first entry.
    pub previous_hash: String,
    pub hash: String,
}

impl Entry {
    /// The hash this entry must carry: over every field and the previous entry's hash.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        // Each field is length-prefixed, so no two different entries hash the same bytes.
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(b"crs-audit-v1");
        field(&self.sequence.to_be_bytes());
        field(self.case_id.as_bytes());
        field(self.actor.as_bytes());
        field(self.action.as_bytes());
        field(self.details_json.as_bytes());
        field(self.trace_id.as_bytes());
        field(&self.at.to_be_bytes());
        field(self.previous_hash.as_bytes());
        hex::encode(h.finalize())
    }

    /// The entry that follows `previous` (None for the first), with its hash.
    #[allow(clippy::too_many_arguments)]
    pub fn next(
        previous: Option<(u64, &str)>,
        case_id: &str,
        actor: &str,
        action: &str,
        details_json: String,
        trace_id: String,
        at: i64,
    ) -> Entry {
        let (sequence, previous_hash) = match previous {
            Some((seq, hash)) => (seq + 1, hash.to_owned()),
            None => (1, String::new()),
        };
        let mut entry = Entry {
            sequence,
            case_id: case_id.to_owned(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            details_json,
            trace_id,
            at,
            previous_hash,
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        entry
    }
}

/// How a verification ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub entries_checked: u64,
    /// The first entry whose content, position or link does not match; `None` when intact.
    pub first_broken: Option<u64>,
    /// What is wrong with it.
    pub problem: Option<String>,
}

/// Walks entries in sequence order and checks every link.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The sequence and hash the next entry must follow; `None` before the first entry.
    expected: Option<(u64, String)>,
    checked: u64,
    broken: Option<(u64, String)>,
}

impl Verifier {
    /// Verifies from the start of the trail.
    pub fn from_start() -> Verifier {
        Verifier { expected: None, checked: 0, broken: None }
    }

    /// Verifies a range that starts after `anchor`, an entry already verified (or trusted).
    pub fn after(anchor: &Entry) -> Verifier {
        Verifier { expected: Some((anchor.sequence, anchor.hash.clone())), checked: 0, broken: None }
    }

    /// Checks the next entry; returns false once the chain is broken (stop feeding it).
    pub fn check(&mut self, entry: &Entry) -> bool {
        if self.broken.is_some() {
            return false;
        }
        self.checked += 1;
        let (want_seq, want_prev) = match &self.expected {
            Some((seq, hash)) => (seq + 1, hash.as_str()),
            None => (1, ""),
        };
        let problem = if entry.sequence > want_seq {
            Some((want_seq, format!("entries {want_seq} to {} are missing", entry.sequence - 1)))
        } else if entry.sequence < want_seq {
            Some((entry.sequence, format!("entry {} is out of sequence", entry.sequence)))
        } else if entry.previous_hash != want_prev {
            Some((entry.sequence, "does not follow the entry before it".to_owned()))
        } else if entry.compute_hash() != entry.hash {
            Some((entry.sequence, "its content does not match its hash".to_owned()))
        } else {
            None
        };
        if let Some(p) = problem {
            self.broken = Some(p);
            return false;
        }
        self.expected = Some((entry.sequence, entry.hash.clone()));
        true
    }

    /// The result so far. `last_sequence` is the trail's last sequence number, so entries
    /// deleted from its end are found too.
    pub fn finish(self, last_sequence: Option<u64>) -> Verification {
        let mut broken = self.broken;
        if broken.is_none()
            && let Some(last) = last_sequence
        {
            let seen = self.expected.as_ref().map_or(0, |(s, _)| *s);
            if last > seen {
                broken = Some((seen + 1, format!("entries {} to {last} are missing", seen + 1)));
            }
        }
        Verification {
            entries_checked: self.checked,
            first_broken: broken.as_ref().map(|(s, _)| *s),
            problem: broken.map(|(_, p)| p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| (e.sequence, e.hash.as_str()));
            out.push(Entry::next(
                prev,
                "case-1",
                "reviewer:a",
                "claim",
                format!("{{\"n\":{i}}}"),
                "t".into(),
                i as i64,
            ));
        }
        out
    }

    fn verify(entries: &[Entry], last: Option<u64>) -> Verification {
        let mut v = Verifier::from_start();
        for e in entries {
            if !v.check(e) {
                break;
            }
        }
        v.finish(last)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let c = chain(5);
        assert_eq!(verify(&c, Some(5)), Verification { entries_checked: 5, first_broken: None, problem: None });
    }

    #[test]
    fn an_altered_entry_is_named() {
        let mut c = chain(5);
        c[2].details_json = "{\"n\":99}".into();
        assert_eq!(verify(&c, Some(5)).first_broken, Some(3));
    }

    #[test]
    fn an_altered_entry_with_a_recomputed_hash_breaks_the_next_link() {
        let mut c = chain(5);
        c[2].actor = "reviewer:mallory".into();
        c[2].hash = c[2].compute_hash();
        assert_eq!(verify(&c, Some(5)).first_broken, Some(4));
    }

    #[test]
    fn deleted_and_inserted_entries_are_named() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(&c, Some(5)).first_broken, Some(2));
        let c = chain(5);
        assert_eq!(verify(&c[..4], Some(5)).first_broken, Some(5), "a deleted last entry");
        let mut c = chain(5);
        let forged =
            Entry::next(Some((c[1].sequence, &c[1].hash)), "case-1", "x", "decide", "{}".into(), "t".into(), 9);
        c[2] = forged;
        assert_eq!(verify(&c, Some(5)).first_broken, Some(4), "an entry replaced in the middle breaks its successor");
    }

    #[test]
    fn a_range_verifies_from_its_anchor() {
        let c = chain(6);
        let mut v = Verifier::after(&c[2]);
        for e in &c[3..] {
            assert!(v.check(e));
        }
        assert_eq!(v.finish(Some(6)).first_broken, None);
    }
}
