//! The case commands as pure functions: each takes the case as stored, the actor and the time,
//! and returns the case as it must be stored next with the events the service acts on (outbox
//! messages, clock changes, audit entries), or a [`Refusal`] saying why not.
//!
//! Who may do what:
//! - any reviewer may claim an open case; once escalated, only senior reviewers may claim,
//!   decide, ask or approve, and an escalation ends a claim held by anyone else;
//! - only the holder of a live claim decides or asks the agency;
//! - the claim holder or a senior reviewer releases; a senior reviewer reassigns;
//! - a decision that needs approval waits for a senior reviewer other than the decider, who
//!   approves it (it takes effect) or sends it back (the case returns to review, unclaimed).

use crate::FieldViolations;
use crate::approval::ApprovalReason;
use crate::state::{Command, Refused, State};
use crate::vocab::Status;

/// A reviewer acting on a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewer {
    /// The principal, `reviewer:<id>`.
    pub subject: String,
    /// Holds the senior_reviewer (or admin) role.
    pub senior: bool,
}

/// A reviewer's claim on a case: a lease until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub holder: String,
    /// Whether the holder was known to be senior when the claim was taken.
    pub senior: bool,
    pub expires_at: i64,
}

impl Claim {
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at > now
    }
}

/// A case as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub state: State,
    pub claim: Option<Claim>,
    /// Who submitted the decision awaiting approval, or in effect.
    pub decided_by: Option<String>,
    /// Who approved the decision in effect, when it needed approval.
    pub approved_by: Option<String>,
    /// Whether the SLA clock stops while the agency is asked (from the case's SLA policy).
    pub pauses_while_awaiting_information: bool,
}

/// What a command did, for the service to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The status changed.
    StatusChanged {
        from: Status,
        to: Status,
    },
    /// A claim was taken or renewed.
    Claimed {
        holder: String,
        until: i64,
    },
    /// A claim ended before its lease (released, reassigned, escalated away, decided).
    ClaimEnded {
        holder: String,
    },
    InformationRequested,
    InformationReceived,
    Escalated,
    /// A decision was recorded and waits for a second reviewer.
    DecisionAwaitingApproval(ApprovalReason),
    /// A decision took effect: tell the agency, the content owner and enforcement.
    DecisionTookEffect,
    /// The decision awaiting approval was sent back; it is discarded.
    DecisionSentBack,
    Withdrawn,
    ClockPaused,
    ClockResumed,
    ClockStopped,
}

/// The case after a command, and what followed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub case: Case,
    pub events: Vec<Event>,
}

impl Change {
    pub fn has(&self, event: &Event) -> bool {
        self.events.contains(event)
    }

    /// The new status, if it changed.
    pub fn new_status(&self) -> Option<Status> {
        self.events.iter().find_map(|e| match e {
            Event::StatusChanged { to, .. } => Some(*to),
            _ => None,
        })
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The state machine does not allow the command now (FAILED_PRECONDITION).
    State(Refused),
    /// Another reviewer holds a live claim (FAILED_PRECONDITION).
    ClaimedByOther { holder: String },
    /// The caller holds no live claim on the case (FAILED_PRECONDITION).
    NoClaim,
    /// Only senior reviewers may do this to this case (PERMISSION_DENIED).
    SeniorOnly,
    /// The decider may not approve or send back their own decision (PERMISSION_DENIED).
    OwnDecision,
    /// Only the claim holder or a senior reviewer may do this (PERMISSION_DENIED).
    HolderOrSenior,
    /// The command's own input is wrong (INVALID_ARGUMENT).
    Invalid(FieldViolations),
}

impl From<Refused> for Refusal {
    fn from(r: Refused) -> Self {
        Refusal::State(r)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::State(r) => write!(f, "{r}"),
            Refusal::ClaimedByOther { holder } => write!(f, "it is claimed by {holder} until the claim's lease ends"),
            Refusal::NoClaim => write!(f, "the caller holds no live claim on it (ClaimCase first)"),
            Refusal::SeniorOnly => write!(f, "it is escalated: only senior reviewers may act on it"),
            Refusal::OwnDecision => write!(f, "a decision needs a second reviewer other than the one who made it"),
            Refusal::HolderOrSenior => write!(f, "only the claim holder or a senior reviewer may do this"),
            Refusal::Invalid(v) => write!(f, "{v}"),
        }
    }
}

impl std::error::Error for Refusal {}

type Outcome = Result<Change, Refusal>;

impl Case {
    /// A case opened by legal review for a triaged request.
    pub fn open(pauses_while_awaiting_information: bool) -> Case {
        Case {
            state: State::new(Status::Triaged),
            claim: None,
            decided_by: None,
            approved_by: None,
            pauses_while_awaiting_information,
        }
    }

    pub fn status(&self) -> Status {
        self.state.status
    }

    /// The live claim, if any.
    pub fn live_claim(&self, now: i64) -> Option<&Claim> {
        self.claim.as_ref().filter(|c| c.is_live(now))
    }

    /// Whether `who` may be handed this case by claim-next (its rules, without taking it).
    pub fn claimable_by(&self, who: &Reviewer, now: i64) -> bool {
        self.state.allows(Command::Claim)
            && (!self.state.escalated || who.senior)
            && self.live_claim(now).is_none_or(|c| c.holder == who.subject)
    }

    /// Moves to `command`'s next state, recording the status change.
    fn step(&self, command: Command) -> Result<(Case, Vec<Event>), Refusal> {
        let next = self.state.next(command)?;
        let mut events = Vec::new();
        if next.status != self.state.status {
            events.push(Event::StatusChanged { from: self.state.status, to: next.status });
        }
        if next.escalated && !self.state.escalated {
            events.push(Event::Escalated);
        }
        let mut case = self.clone();
        case.state = next;
        Ok((case, events))
    }

    fn require_senior_if_escalated(&self, who: &Reviewer) -> Result<(), Refusal> {
        if self.state.escalated && !who.senior { Err(Refusal::SeniorOnly) } else { Ok(()) }
    }

    fn require_claim(&self, who: &Reviewer, now: i64) -> Result<(), Refusal> {
        match self.live_claim(now) {
            Some(c) if c.holder == who.subject => Ok(()),
            _ => Err(Refusal::NoClaim),
        }
    }

    /// Ends the claim, recording it if one was held.
    fn end_claim(case: &mut Case, events: &mut Vec<Event>) {
        if let Some(c) = case.claim.take() {
            events.push(Event::ClaimEnded { holder: c.holder });
        }
    }

    /// Ends a claim held by someone not known to be senior (an escalation takes it away).
    fn end_junior_claim(case: &mut Case, events: &mut Vec<Event>) {
        if case.claim.as_ref().is_some_and(|c| !c.senior) {
            Self::end_claim(case, events);
        }
    }

    /// `who` claims the case (or renews their claim) until `now + lease_ms`.
    pub fn claim(&self, who: &Reviewer, now: i64, lease_ms: i64) -> Outcome {
        let (mut case, mut events) = self.step(Command::Claim)?;
        self.require_senior_if_escalated(who)?;
        if let Some(c) = self.live_claim(now)
            && c.holder != who.subject
        {
            return Err(Refusal::ClaimedByOther { holder: c.holder.clone() });
        }
        let until = now + lease_ms;
        case.claim = Some(Claim { holder: who.subject.clone(), senior: who.senior, expires_at: until });
        events.push(Event::Claimed { holder: who.subject.clone(), until });
        Ok(Change { case, events })
    }

    /// The claim holder, or a senior reviewer, gives the claim up.
    pub fn release(&self, who: &Reviewer, now: i64) -> Outcome {
        let (mut case, mut events) = self.step(Command::Release)?;
        let Some(claim) = self.live_claim(now) else { return Err(Refusal::NoClaim) };
        if claim.holder != who.subject && !who.senior {
            return Err(Refusal::HolderOrSenior);
        }
        Self::end_claim(&mut case, &mut events);
        Ok(Change { case, events })
    }

    /// A senior reviewer hands the case to `assignee` until `now + lease_ms`.
    pub fn reassign(&self, who: &Reviewer, assignee: &str, now: i64, lease_ms: i64) -> Outcome {
        let (mut case, mut events) = self.step(Command::Reassign)?;
        if !who.senior {
            return Err(Refusal::SeniorOnly);
        }
        if self.live_claim(now).is_some() {
            Self::end_claim(&mut case, &mut events);
        }
        let until = now + lease_ms;
        // The assignee's roles are unknown here: as holder they are checked when they act.
        case.claim = Some(Claim {
            holder: assignee.to_owned(),
            senior: assignee == who.subject && who.senior,
            expires_at: until,
        });
        events.push(Event::Claimed { holder: assignee.to_owned(), until });
        Ok(Change { case, events })
    }

    /// The claim holder asks the agency a question; the clock pauses if the policy says so.
    pub fn ask_information(&self, who: &Reviewer, now: i64) -> Outcome {
        let (case, mut events) = self.step(Command::AskInformation)?;
        self.require_senior_if_escalated(who)?;
        self.require_claim(who, now)?;
        events.push(Event::InformationRequested);
        if self.pauses_while_awaiting_information {
            events.push(Event::ClockPaused);
        }
        Ok(Change { case, events })
    }

    /// The agency answered: the case returns to review and the clock runs again.
    pub fn answer(&self) -> Outcome {
        let (case, mut events) = self.step(Command::Answer)?;
        events.push(Event::InformationReceived);
        if self.pauses_while_awaiting_information {
            events.push(Event::ClockResumed);
        }
        Ok(Change { case, events })
    }

    /// A reviewer hands the case to senior reviewers: the claim holder or a senior reviewer may.
    pub fn escalate(&self, who: &Reviewer, now: i64) -> Outcome {
        let (mut case, mut events) = self.step(Command::Escalate)?;
        let holds = self.live_claim(now).is_some_and(|c| c.holder == who.subject);
        if !holds && !who.senior {
            return Err(Refusal::HolderOrSenior);
        }
        match case.claim.as_mut() {
            // A senior holder keeps the case, and is now known to be senior.
            Some(c) if holds && who.senior => c.senior = true,
            _ => Self::end_junior_claim(&mut case, &mut events),
        }
        Ok(Change { case, events })
    }

    /// The SLA deadline passed undecided: the case is escalated and a junior's claim ends.
    pub fn breach(&self) -> Outcome {
        let (mut case, mut events) = self.step(Command::Breach)?;
        Self::end_junior_claim(&mut case, &mut events);
        Ok(Change { case, events })
    }

    /// Whether `who` may decide the case now (before the decision itself is checked).
    pub fn may_decide(&self, who: &Reviewer, now: i64) -> Result<(), Refusal> {
        self.decide(who, None, now).map(drop)
    }

    /// The claim holder decides. With `approval` the decision waits for a second reviewer and
    /// the clock keeps running; without, it takes effect and the clock stops.
    pub fn decide(&self, who: &Reviewer, approval: Option<ApprovalReason>, now: i64) -> Outcome {
        let command = if approval.is_some() { Command::DecideForApproval } else { Command::Decide };
        let (mut case, mut events) = self.step(command)?;
        self.require_senior_if_escalated(who)?;
        self.require_claim(who, now)?;
        case.decided_by = Some(who.subject.clone());
        case.approved_by = None;
        Self::end_claim(&mut case, &mut events);
        match approval {
            Some(reason) => events.push(Event::DecisionAwaitingApproval(reason)),
            None => {
                events.push(Event::ClockStopped);
                events.push(Event::DecisionTookEffect);
            }
        }
        Ok(Change { case, events })
    }

    fn require_second_senior(&self, who: &Reviewer) -> Result<(), Refusal> {
        if !who.senior {
            return Err(Refusal::SeniorOnly);
        }
        if self.decided_by.as_deref() == Some(who.subject.as_str()) {
            return Err(Refusal::OwnDecision);
        }
        Ok(())
    }

    /// A second senior reviewer approves the decision awaiting approval: it takes effect.
    pub fn approve(&self, who: &Reviewer) -> Outcome {
        let (mut case, mut events) = self.step(Command::Approve)?;
        self.require_second_senior(who)?;
        case.approved_by = Some(who.subject.clone());
        events.push(Event::ClockStopped);
        events.push(Event::DecisionTookEffect);
        Ok(Change { case, events })
    }

    /// A second senior reviewer sends the decision back: it is discarded and the case returns
    /// to review, claimable again.
    pub fn send_back(&self, who: &Reviewer) -> Outcome {
        let (mut case, mut events) = self.step(Command::SendBack)?;
        self.require_second_senior(who)?;
        case.decided_by = None;
        Self::end_claim(&mut case, &mut events);
        events.push(Event::DecisionSentBack);
        Ok(Change { case, events })
    }

    /// The agency withdraws its request: allowed until a decision took effect.
    pub fn withdraw(&self) -> Outcome {
        let (mut case, mut events) = self.step(Command::Withdraw)?;
        Self::end_claim(&mut case, &mut events);
        case.decided_by = None;
        events.push(Event::ClockStopped);
        events.push(Event::Withdrawn);
        Ok(Change { case, events })
    }
}

/// A reason a reviewer must give (escalation, sending back): present and of sane length.
pub fn check_reason(field: &str, reason: &str, max: usize) -> Result<(), Refusal> {
    let mut v = FieldViolations::new();
    if reason.trim().is_empty() {
        v.add(field, "is required");
    } else if reason.chars().count() > max {
        v.add(field, format!("longer than {max} characters"));
    } else if reason.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        v.add(field, "must not contain control characters");
    }
    v.into_result().map_err(Refusal::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn junior(id: &str) -> Reviewer {
        Reviewer { subject: format!("reviewer:{id}"), senior: false }
    }

    fn senior(id: &str) -> Reviewer {
        Reviewer { subject: format!("reviewer:{id}"), senior: true }
    }

    const LEASE: i64 = 60_000;

    #[test]
    fn a_claimed_case_is_decided_by_its_holder_only() {
        let case = Case::open(true);
        let claimed = case.claim(&junior("a"), 0, LEASE).unwrap();
        assert_eq!(claimed.new_status(), Some(Status::InReview));
        let other = claimed.case.claim(&junior("b"), 1, LEASE).unwrap_err();
        assert_eq!(other, Refusal::ClaimedByOther { holder: "reviewer:a".into() });
        assert_eq!(claimed.case.decide(&junior("b"), None, 1).unwrap_err(), Refusal::NoClaim);
        let decided = claimed.case.decide(&junior("a"), None, 1).unwrap();
        assert!(decided.has(&Event::DecisionTookEffect) && decided.has(&Event::ClockStopped));
        assert_eq!(decided.case.claim, None);
        // After the lease, another reviewer may take it.
        assert!(claimed.case.claim(&junior("b"), LEASE + 1, LEASE).is_ok());
    }

    #[test]
    fn four_eyes_need_a_second_senior_reviewer() {
        let claimed = Case::open(true).claim(&senior("s1"), 0, LEASE).unwrap().case;
        let pending = claimed.decide(&senior("s1"), Some(ApprovalReason::HumanRightsReview), 1).unwrap();
        assert_eq!(pending.new_status(), Some(Status::AwaitingApproval));
        assert!(!pending.has(&Event::ClockStopped), "the clock keeps running");
        let pending = pending.case;
        assert_eq!(pending.approve(&senior("s1")).unwrap_err(), Refusal::OwnDecision);
        assert_eq!(pending.approve(&junior("j")).unwrap_err(), Refusal::SeniorOnly);
        let back = pending.send_back(&senior("s2")).unwrap();
        assert_eq!(back.new_status(), Some(Status::InReview));
        assert_eq!(back.case.decided_by, None);
        let approved = pending.approve(&senior("s2")).unwrap();
        assert_eq!(approved.new_status(), Some(Status::Decided));
        assert_eq!(approved.case.approved_by.as_deref(), Some("reviewer:s2"));
    }

    #[test]
    fn a_breach_takes_the_case_from_a_junior_and_keeps_it_for_seniors() {
        let claimed = Case::open(false).claim(&junior("a"), 0, LEASE).unwrap().case;
        let breached = claimed.breach().unwrap();
        assert_eq!(breached.new_status(), Some(Status::Escalated));
        assert!(breached.has(&Event::ClaimEnded { holder: "reviewer:a".into() }));
        let esc = breached.case;
        assert_eq!(esc.decide(&junior("a"), None, 1).unwrap_err(), Refusal::SeniorOnly);
        assert_eq!(esc.claim(&junior("a"), 1, LEASE).unwrap_err(), Refusal::SeniorOnly);
        let mine = esc.claim(&senior("s"), 1, LEASE).unwrap().case;
        let asked = mine.ask_information(&senior("s"), 2).unwrap();
        assert!(!asked.has(&Event::ClockPaused), "this policy keeps the clock running");
        let answered = asked.case.answer().unwrap();
        assert_eq!(answered.new_status(), Some(Status::Escalated), "an answer keeps it escalated");
    }

    #[test]
    fn a_withdrawal_wins_until_a_decision_takes_effect() {
        let pending = Case::open(true)
            .claim(&senior("s1"), 0, LEASE)
            .unwrap()
            .case
            .decide(&senior("s1"), Some(ApprovalReason::HighRiskPolicy), 1)
            .unwrap()
            .case;
        assert_eq!(pending.withdraw().unwrap().new_status(), Some(Status::Withdrawn));
        let decided = pending.approve(&senior("s2")).unwrap().case;
        let refused = decided.withdraw().unwrap_err();
        assert!(matches!(refused, Refusal::State(Refused { status: Status::Decided, .. })));
    }

    #[test]
    fn release_is_for_the_holder_or_a_senior() {
        let claimed = Case::open(true).claim(&junior("a"), 0, LEASE).unwrap().case;
        assert_eq!(claimed.release(&junior("b"), 1).unwrap_err(), Refusal::HolderOrSenior);
        assert_eq!(claimed.release(&senior("s"), 1).unwrap().case.claim, None);
        assert_eq!(claimed.release(&junior("a"), 1).unwrap().case.claim, None);
        let unclaimed = Case::open(true);
        assert!(unclaimed.release(&junior("a"), 1).is_err());
    }
}
