//! Random sequences of commands from several actors never take a case anywhere the transition
//! table does not allow, and never past the rules of claims, escalation and four eyes.

use crs_domain::approval::ApprovalReason;
use crs_domain::case::{Case, Event, Refusal, Reviewer};
use crs_domain::state::{Command, State, TRANSITIONS, To};
use crs_domain::vocab::Status;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Claim(usize),
    Release(usize),
    Reassign(usize, usize),
    Ask(usize),
    Answer,
    Escalate(usize),
    Breach,
    Decide(usize, bool),
    Approve(usize),
    SendBack(usize),
    Withdraw,
    /// Time passes (possibly past a claim's lease).
    Wait(i64),
}

/// Two junior and two senior reviewers.
fn actors() -> Vec<Reviewer> {
    vec![
        Reviewer { subject: "reviewer:j1".into(), senior: false },
        Reviewer { subject: "reviewer:j2".into(), senior: false },
        Reviewer { subject: "reviewer:s1".into(), senior: true },
        Reviewer { subject: "reviewer:s2".into(), senior: true },
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let who = 0usize..4;
    prop_oneof![
        who.clone().prop_map(Step::Claim),
        who.clone().prop_map(Step::Release),
        (who.clone(), who.clone()).prop_map(|(a, b)| Step::Reassign(a, b)),
        who.clone().prop_map(Step::Ask),
        Just(Step::Answer),
        who.clone().prop_map(Step::Escalate),
        Just(Step::Breach),
        (who.clone(), any::<bool>()).prop_map(|(a, b)| Step::Decide(a, b)),
        who.clone().prop_map(Step::Approve),
        who.clone().prop_map(Step::SendBack),
        Just(Step::Withdraw),
        (1i64..120_000).prop_map(Step::Wait),
    ]
}

fn command_of(step: &Step) -> Option<Command> {
    Some(match step {
        Step::Claim(_) => Command::Claim,
        Step::Release(_) => Command::Release,
        Step::Reassign(..) => Command::Reassign,
        Step::Ask(_) => Command::AskInformation,
        Step::Answer => Command::Answer,
        Step::Escalate(_) => Command::Escalate,
        Step::Breach => Command::Breach,
        Step::Decide(_, true) => Command::DecideForApproval,
        Step::Decide(_, false) => Command::Decide,
        Step::Approve(_) => Command::Approve,
        Step::SendBack(_) => Command::SendBack,
        Step::Withdraw => Command::Withdraw,
        Step::Wait(_) => return None,
    })
}

/// The status the table says `command` leads to from `state`, if it allows it.
fn table_target(state: State, command: Command) -> Option<Status> {
    let (_, _, to) = TRANSITIONS.iter().find(|(s, c, _)| *s == state.status && *c == command)?;
    let escalated = state.escalated || matches!(command, Command::Escalate | Command::Breach);
    Some(match to {
        To::Status(s) => *s,
        To::Stay => state.status,
        To::Review if escalated => Status::Escalated,
        To::Review => Status::InReview,
    })
}

const LEASE: i64 = 60_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
    ))]

    #[test]
    fn no_sequence_of_commands_leaves_the_table(pauses in any::<bool>(), steps in prop::collection::vec(step(), 1..60)) {
        let people = actors();
        let mut case = Case::open(pauses);
        let mut now = 0i64;
        for s in &steps {
            if let Step::Wait(ms) = s {
                now += ms;
                continue;
            }
            let command = command_of(s).expect("not a wait");
            let before = case.clone();
            let result = match s {
                Step::Claim(a) => case.claim(&people[*a], now, LEASE),
                Step::Release(a) => case.release(&people[*a], now),
                Step::Reassign(a, b) => case.reassign(&people[*a], &people[*b].subject.clone(), now, LEASE),
                Step::Ask(a) => case.ask_information(&people[*a], now),
                Step::Answer => case.answer(),
                Step::Escalate(a) => case.escalate(&people[*a], now),
                Step::Breach => case.breach(),
                Step::Decide(a, approval) => {
                    case.decide(&people[*a], approval.then_some(ApprovalReason::HumanRightsReview), now)
                }
                Step::Approve(a) => case.approve(&people[*a]),
                Step::SendBack(a) => case.send_back(&people[*a]),
                Step::Withdraw => case.withdraw(),
                Step::Wait(_) => unreachable!(),
            };
            let target = table_target(before.state, command);
            match result {
                Ok(change) => {
                    // Only moves the table allows, to where it says.
                    prop_assert_eq!(Some(change.case.state.status), target, "{:?} from {:?}", command, before.state);
                    // Escalation is never undone.
                    prop_assert!(!before.state.escalated || change.case.state.escalated);
                    prop_assert_eq!(change.case.state.status == Status::Escalated && !change.case.state.escalated, false);
                    // A decision takes effect only by its holder's decision or a second senior's approval.
                    if change.has(&Event::DecisionTookEffect) {
                        prop_assert_eq!(change.case.state.status, Status::Decided);
                        match s {
                            Step::Decide(a, false) => {
                                prop_assert_eq!(before.live_claim(now).map(|c| c.holder.clone()), Some(people[*a].subject.clone()));
                                prop_assert!(!before.state.escalated || people[*a].senior);
                            }
                            Step::Approve(a) => {
                                prop_assert!(people[*a].senior);
                                prop_assert_ne!(before.decided_by.clone(), Some(people[*a].subject.clone()));
                                prop_assert_eq!(before.state.status, Status::AwaitingApproval);
                            }
                            other => prop_assert!(false, "{:?} made a decision take effect", other),
                        }
                    }
                    // Escalated cases are claimed only by seniors.
                    if let Step::Claim(a) = s {
                        prop_assert!(!change.case.state.escalated || people[*a].senior);
                    }
                    if change.case.state.escalated && !before.state.escalated {
                        prop_assert!(change.case.claim.as_ref().is_none_or(|c| c.senior));
                    }
                    case = change.case;
                }
                Err(Refusal::State(refused)) => {
                    prop_assert!(target.is_none(), "the table allows {:?} from {:?}", command, before.state);
                    prop_assert_eq!(refused.status, before.state.status);
                    prop_assert_eq!(refused.command, command);
                }
                Err(_) => prop_assert!(target.is_some(), "refused by a rule, but the table refuses it anyway"),
            }
            // Nothing leaves a final status.
            if before.state.status.is_final() {
                prop_assert_eq!(&case, &before);
            }
        }
    }
}
