//! The request/case state machine: one table of (status, command) → next status.
//!
//! A case also remembers whether it was escalated (by a reviewer or by an SLA breach): once
//! escalated, only senior reviewers may claim, decide or approve it, and a question to the
//! agency or a decision sent back returns it to ESCALATED rather than IN_REVIEW. `Escalate` and
//! `Breach` set that mark; nothing clears it. Everything else about where a case may go is in
//! [`TRANSITIONS`]; what a command refused says is [`Refused`].

use crate::vocab::Status;

/// What can happen to a request or its case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Legal review opens the triaged request as a case in a queue.
    Triage,
    /// Legal review found every item of the request in an open case of the same jurisdiction;
    /// the request follows that case.
    Merge,
    /// The case a merged request follows was decided: the decision answers it too.
    FollowDecision,
    /// A reviewer takes (or renews) the claim on the case.
    Claim,
    /// The claim holder or a senior reviewer gives the claim up.
    Release,
    /// A senior reviewer moves the claim to another reviewer.
    Reassign,
    /// The claim holder asks the agency a question.
    AskInformation,
    /// The agency answers the question.
    Answer,
    /// A reviewer hands the case to senior reviewers.
    Escalate,
    /// The SLA deadline passed undecided.
    Breach,
    /// The claim holder decides; the decision takes effect at once.
    Decide,
    /// The claim holder decides; the decision needs a second, senior reviewer first.
    DecideForApproval,
    /// A second senior reviewer approves the decision awaiting approval: it takes effect.
    Approve,
    /// A second senior reviewer sends the decision back to review.
    SendBack,
    /// The agency withdraws its request.
    Withdraw,
}

impl Command {
    /// What the command does, for messages ("cannot be withdrawn").
    pub fn verb(self) -> &'static str {
        match self {
            Command::Triage => "be triaged",
            Command::Merge => "be merged",
            Command::FollowDecision => "take the decision of a case it follows (it follows none)",
            Command::Claim => "be claimed",
            Command::Release => "be released",
            Command::Reassign => "be reassigned",
            Command::AskInformation => "be put to the agency as a question",
            Command::Answer => "take the agency's answer (no question is pending)",
            Command::Escalate => "be escalated",
            Command::Breach => "breach its deadline",
            Command::Decide | Command::DecideForApproval => "be decided",
            Command::Approve => "have a decision approved (none awaits approval)",
            Command::SendBack => "have a decision sent back (none awaits approval)",
            Command::Withdraw => "be withdrawn",
        }
    }
}

/// Where a command leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// To this status.
    Status(Status),
    /// The status does not change (the claim or the escalation mark may).
    Stay,
    /// Back to review: ESCALATED if the case was ever escalated, IN_REVIEW otherwise.
    Review,
}

use Command as C;
use Status as S;

/// Every allowed transition. A (status, command) pair that is not here is refused.
pub const TRANSITIONS: &[(Status, Command, To)] = &[
    (S::Received, C::Triage, To::Status(S::Triaged)),
    (S::Received, C::Merge, To::Status(S::Merged)),
    (S::Received, C::Withdraw, To::Status(S::Withdrawn)),
    //
    // A merged request is decided by the case it follows, may be withdrawn on its own, and
    // becomes a case of its own if the case it followed is withdrawn by its agency.
    (S::Merged, C::FollowDecision, To::Status(S::Decided)),
    (S::Merged, C::Triage, To::Status(S::Triaged)),
    (S::Merged, C::Withdraw, To::Status(S::Withdrawn)),
    //
    (S::Triaged, C::Claim, To::Status(S::InReview)),
    (S::Triaged, C::Reassign, To::Status(S::InReview)),
    (S::Triaged, C::Escalate, To::Status(S::Escalated)),
    (S::Triaged, C::Breach, To::Status(S::Escalated)),
    (S::Triaged, C::Withdraw, To::Status(S::Withdrawn)),
    //
    (S::InReview, C::Claim, To::Stay),
    (S::InReview, C::Release, To::Stay),
    (S::InReview, C::Reassign, To::Stay),
    (S::InReview, C::AskInformation, To::Status(S::AwaitingInformation)),
    (S::InReview, C::Escalate, To::Status(S::Escalated)),
    (S::InReview, C::Breach, To::Status(S::Escalated)),
    (S::InReview, C::Decide, To::Status(S::Decided)),
    (S::InReview, C::DecideForApproval, To::Status(S::AwaitingApproval)),
    (S::InReview, C::Withdraw, To::Status(S::Withdrawn)),
    //
    // A policy whose clock keeps running while the agency is asked can breach meanwhile: the
    // case stays waiting for the answer, marked escalated, and returns to ESCALATED.
    (S::AwaitingInformation, C::Answer, To::Review),
    (S::AwaitingInformation, C::Escalate, To::Stay),
    (S::AwaitingInformation, C::Breach, To::Stay),
    (S::AwaitingInformation, C::Release, To::Stay),
    (S::AwaitingInformation, C::Reassign, To::Stay),
    (S::AwaitingInformation, C::Withdraw, To::Status(S::Withdrawn)),
    //
    (S::Escalated, C::Claim, To::Stay),
    (S::Escalated, C::Release, To::Stay),
    (S::Escalated, C::Reassign, To::Stay),
    (S::Escalated, C::AskInformation, To::Status(S::AwaitingInformation)),
    (S::Escalated, C::Breach, To::Stay),
    (S::Escalated, C::Decide, To::Status(S::Decided)),
    (S::Escalated, C::DecideForApproval, To::Status(S::AwaitingApproval)),
    (S::Escalated, C::Withdraw, To::Status(S::Withdrawn)),
    //
    // The decision has not taken effect yet: the agency may still withdraw, and the SLA clock
    // keeps running (a breach marks the case escalated).
    (S::AwaitingApproval, C::Approve, To::Status(S::Decided)),
    (S::AwaitingApproval, C::SendBack, To::Review),
    (S::AwaitingApproval, C::Breach, To::Stay),
    (S::AwaitingApproval, C::Withdraw, To::Status(S::Withdrawn)),
];

/// A command the table does not allow in the current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub status: Status,
    pub command: Command,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "it is {}; a case that is {} cannot {}", self.status, self.status, self.command.verb())
    }
}

impl std::error::Error for Refused {}

/// A case's place in the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct State {
    pub status: Status,
    /// Escalated at some point (by a reviewer or a breach): senior reviewers only from now on.
    pub escalated: bool,
}

impl State {
    pub fn new(status: Status) -> Self {
        State { status, escalated: status == Status::Escalated }
    }

    /// Where `command` leads from here, or why it may not be applied.
    pub fn next(self, command: Command) -> Result<State, Refused> {
        let to = TRANSITIONS
            .iter()
            .find(|(from, c, _)| *from == self.status && *c == command)
            .map(|(_, _, to)| *to)
            .ok_or(Refused { status: self.status, command })?;
        let escalated = self.escalated || matches!(command, Command::Escalate | Command::Breach);
        let status = match to {
            To::Status(s) => s,
            To::Stay => self.status,
            To::Review if escalated => Status::Escalated,
            To::Review => Status::InReview,
        };
        Ok(State { status, escalated })
    }

    /// Whether `command` is allowed now.
    pub fn allows(self, command: Command) -> bool {
        self.next(command).is_ok()
    }

    /// The status the requesting agency sees: a decision awaiting a second reviewer has not been
    /// made as far as anyone outside review is concerned, so the case still shows as under review
    /// (escalated, if it was).
    pub fn seen_by_agency(self) -> Status {
        match self.status {
            Status::AwaitingApproval if self.escalated => Status::Escalated,
            Status::AwaitingApproval => Status::InReview,
            s => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_and_command_appears_at_most_once() {
        for (i, (s, c, _)) in TRANSITIONS.iter().enumerate() {
            assert!(!TRANSITIONS[i + 1..].iter().any(|(s2, c2, _)| s2 == s && c2 == c), "{s} × {c:?} appears twice");
        }
    }

    #[test]
    fn terminal_statuses_lead_nowhere_and_decided_only_stays_decided() {
        for (from, _, _) in TRANSITIONS {
            assert!(!from.is_terminal(), "{from} is terminal but has a way out");
            assert_ne!(*from, Status::Decided, "a decision that took effect cannot be undone");
        }
    }

    #[test]
    fn a_merged_request_follows_its_case_and_may_leave_it() {
        let merged = State::new(Status::Received).next(Command::Merge).unwrap();
        assert_eq!(merged.status, Status::Merged);
        assert_eq!(merged.next(Command::FollowDecision).unwrap().status, Status::Decided);
        assert_eq!(merged.next(Command::Withdraw).unwrap().status, Status::Withdrawn);
        assert_eq!(merged.next(Command::Triage).unwrap().status, Status::Triaged);
        for command in [Command::Claim, Command::Decide, Command::AskInformation, Command::Escalate] {
            assert!(!merged.allows(command), "a merged request is reviewed only through its case: {command:?}");
        }
        assert!(!State::new(Status::InReview).allows(Command::FollowDecision));
    }

    #[test]
    fn escalation_survives_a_question_and_a_send_back() {
        let asked = State::new(Status::Escalated).next(Command::AskInformation).unwrap();
        assert_eq!(asked.status, Status::AwaitingInformation);
        assert_eq!(asked.next(Command::Answer).unwrap().status, Status::Escalated);
        let awaiting = State::new(Status::InReview).next(Command::DecideForApproval).unwrap();
        assert_eq!(awaiting.next(Command::SendBack).unwrap().status, Status::InReview);
        let breached = awaiting.next(Command::Breach).unwrap();
        assert_eq!(breached.status, Status::AwaitingApproval);
        assert_eq!(breached.next(Command::SendBack).unwrap().status, Status::Escalated);
    }

    #[test]
    fn a_decided_case_refuses_a_withdrawal_naming_both() {
        let refused = State::new(Status::Decided).next(Command::Withdraw).unwrap_err();
        assert_eq!(refused, Refused { status: Status::Decided, command: Command::Withdraw });
        assert!(refused.to_string().contains("DECIDED"));
        assert!(refused.to_string().contains("withdrawn"));
    }
}
