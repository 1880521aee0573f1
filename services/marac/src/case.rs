//! A MARAC case as a state machine that follows the coordinator's decisions, and the fixed
//! lists its steps take their codes from. Pure (no I/O): the whole transition table is tested
//! here; the API, the console and the inbox-following work all ask [`next`] before they
//! change a case.
//!
//! ```text
//! received --screen_in--> screened_in --list--> listed --hear--> heard
//!    |                      ^    |  ^             |  ^ list (to another meeting)
//!    | screen_out  screen_in|    |  +---defer-----+
//!    v                      |    v screen_out
//! criteria_not_met ---------+  criteria_not_met
//! any state but closed --close--> closed (with a reason)
//! ```
//!
//! A decision can be taken back while the case is not yet on an agenda: a case screened out
//! is screened in when the coordinator reconsiders (it is never stuck at `criteria_not_met`),
//! and one screened in is screened out. Every code is a token from a fixed list.

use std::fmt;

use runtime::codes;

codes!(
    /// Where a case is.
    Status {
        Received = "received": "Awaiting screening",
        ScreenedIn = "screened_in": "Screened in",
        CriteriaNotMet = "criteria_not_met": "Criteria not met",
        Listed = "listed": "Listed for a meeting",
        Heard = "heard": "Heard",
        Closed = "closed": "Closed",
    }
);

codes!(
    /// What the coordinator does to a case: each a route (`POST /cases/{id}/...`) and a form.
    Step {
        ScreenIn = "screen_in": "Screen in",
        ScreenOut = "screen_out": "Screen out: criteria not met",
        List = "list": "List for a meeting",
        Defer = "defer": "Take off the agenda",
        Hear = "hear": "Record the hearing",
        Close = "close": "Close the case",
    }
);

codes!(
    /// The screening decision, as `POST /cases/{id}/screen` takes it.
    Decision {
        ScreenedIn = "screened_in": "Screened in: MARAC criteria met",
        CriteriaNotMet = "criteria_not_met": "Criteria not met",
    }
);

codes!(
    /// Why a case closed.
    CloseReason {
        ActionsComplete = "actions_complete": "The actions agreed are complete",
        NoFurtherAction = "no_further_action": "No further action at MARAC",
        Duplicate = "duplicate": "A duplicate of another referral of the same incident",
        TransferredOut = "transferred_out": "Transferred to the MARAC of another area",
        ReferralRevoked = "referral_revoked": "The referrer revoked the referral",
    }
);

codes!(
    /// What the meeting decided for a case it heard (the proto's `MaracOutcome`).
    Outcome {
        ActionsAgreed = "actions_agreed": "Actions agreed",
        NoFurtherAction = "no_further_action": "No further action: the agencies involved manage the risk",
        TransferredOut = "transferred_out": "Transferred to the MARAC of another area",
    }
);

codes!(
    /// Where an action agreed at a meeting stands, as its owner reports it (the proto's
    /// `ActionStatus`).
    ActionStatus {
        InProgress = "in_progress": "In progress",
        Done = "done": "Done",
        CircumstancesChanged = "circumstances_changed": "Circumstances changed",
        NotDone = "not_done": "Not done",
    }
);

impl Status {
    pub fn is_open(self) -> bool {
        self != Status::Closed
    }
}

impl Decision {
    /// The step a decision takes.
    pub fn step(self) -> Step {
        match self {
            Decision::ScreenedIn => Step::ScreenIn,
            Decision::CriteriaNotMet => Step::ScreenOut,
        }
    }
}

impl CloseReason {
    /// Whether the coordinator may close with it: `referral_revoked` is the service's own.
    pub fn chosen_by_staff(self) -> bool {
        self != CloseReason::ReferralRevoked
    }

    pub fn for_staff() -> impl Iterator<Item = CloseReason> {
        CloseReason::ALL.iter().copied().filter(|r| r.chosen_by_staff())
    }
}

impl Outcome {
    pub fn to_proto(self) -> proto::v1::MaracOutcome {
        match self {
            Outcome::ActionsAgreed => proto::v1::MaracOutcome::ActionsAgreed,
            Outcome::NoFurtherAction => proto::v1::MaracOutcome::NoFurtherAction,
            Outcome::TransferredOut => proto::v1::MaracOutcome::TransferredOut,
        }
    }
}

impl ActionStatus {
    pub fn from_proto(status: proto::v1::ActionStatus) -> Option<ActionStatus> {
        Some(match status {
            proto::v1::ActionStatus::InProgress => ActionStatus::InProgress,
            proto::v1::ActionStatus::Done => ActionStatus::Done,
            proto::v1::ActionStatus::CircumstancesChanged => ActionStatus::CircumstancesChanged,
            proto::v1::ActionStatus::NotDone => ActionStatus::NotDone,
            proto::v1::ActionStatus::Unspecified => return None,
        })
    }

    pub fn to_proto(self) -> proto::v1::ActionStatus {
        match self {
            ActionStatus::InProgress => proto::v1::ActionStatus::InProgress,
            ActionStatus::Done => proto::v1::ActionStatus::Done,
            ActionStatus::CircumstancesChanged => proto::v1::ActionStatus::CircumstancesChanged,
            ActionStatus::NotDone => proto::v1::ActionStatus::NotDone,
        }
    }
}

/// Why a step is not possible from a case's status: a sentence for the person who tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The transition table: the status `step` takes a case in `from` to, or why it cannot.
pub fn next(from: Status, step: Step) -> Result<Status, Refused> {
    use Status as S;
    use Step as T;
    match (from, step) {
        (S::Closed, _) => Err(Refused("the case is closed: nothing more can be done on it")),
        (_, T::Close) => Ok(S::Closed),

        (S::Received | S::CriteriaNotMet, T::ScreenIn) => Ok(S::ScreenedIn),
        (S::ScreenedIn, T::ScreenIn) => Err(Refused("the case is screened in already")),
        (S::Listed | S::Heard, T::ScreenIn) => Err(Refused("the case was screened in and is past screening")),

        (S::Received | S::ScreenedIn, T::ScreenOut) => Ok(S::CriteriaNotMet),
        (S::CriteriaNotMet, T::ScreenOut) => Err(Refused("the case is screened out already")),
        (S::Listed, T::ScreenOut) => Err(Refused("the case is on a meeting's agenda: take it off the agenda first")),
        (S::Heard, T::ScreenOut) => Err(Refused("the case was heard: it can no longer be screened out")),

        (S::ScreenedIn | S::Listed, T::List) => Ok(S::Listed),
        (S::Received, T::List) => Err(Refused("the case is awaiting screening: screen it in before listing it")),
        (S::CriteriaNotMet, T::List) => Err(Refused("the case was screened out: screen it in before listing it")),
        (S::Heard, T::List) => Err(Refused("the case was heard already: a further incident is a new referral")),

        (S::Listed, T::Defer) => Ok(S::ScreenedIn),
        (_, T::Defer) => Err(Refused("the case is not on a meeting's agenda")),

        (S::Listed, T::Hear) => Ok(S::Heard),
        (S::Heard, T::Hear) => Err(Refused("the case was heard already")),
        (_, T::Hear) => Err(Refused("the case is not on a meeting's agenda: list it first")),
    }
}

/// The steps possible from `from`, in the order a page offers them.
pub fn allowed(from: Status) -> Vec<Step> {
    Step::ALL.iter().copied().filter(|s| next(from, *s).is_ok()).collect()
}

/// The chronology's event for a step.
pub fn event_of(step: Step) -> &'static str {
    match step {
        Step::ScreenIn => "marac_screened_in",
        Step::ScreenOut => "marac_screened_out",
        Step::List => "marac_case_listed",
        Step::Defer => "marac_case_deferred",
        Step::Hear => "marac_case_heard",
        Step::Close => "marac_case_closed",
    }
}

#[cfg(test)]
mod tests {
    use super::{Status as S, Step as T, *};

    /// Every (status, step) pair and where it leads; None is refused.
    const TABLE: &[(S, T, Option<S>)] = &[
        (S::Received, T::ScreenIn, Some(S::ScreenedIn)),
        (S::Received, T::ScreenOut, Some(S::CriteriaNotMet)),
        (S::Received, T::List, None),
        (S::Received, T::Defer, None),
        (S::Received, T::Hear, None),
        (S::Received, T::Close, Some(S::Closed)),
        (S::ScreenedIn, T::ScreenIn, None),
        (S::ScreenedIn, T::ScreenOut, Some(S::CriteriaNotMet)),
        (S::ScreenedIn, T::List, Some(S::Listed)),
        (S::ScreenedIn, T::Defer, None),
        (S::ScreenedIn, T::Hear, None),
        (S::ScreenedIn, T::Close, Some(S::Closed)),
        (S::CriteriaNotMet, T::ScreenIn, Some(S::ScreenedIn)),
        (S::CriteriaNotMet, T::ScreenOut, None),
        (S::CriteriaNotMet, T::List, None),
        (S::CriteriaNotMet, T::Defer, None),
        (S::CriteriaNotMet, T::Hear, None),
        (S::CriteriaNotMet, T::Close, Some(S::Closed)),
        (S::Listed, T::ScreenIn, None),
        (S::Listed, T::ScreenOut, None),
        (S::Listed, T::List, Some(S::Listed)),
        (S::Listed, T::Defer, Some(S::ScreenedIn)),
        (S::Listed, T::Hear, Some(S::Heard)),
        (S::Listed, T::Close, Some(S::Closed)),
        (S::Heard, T::ScreenIn, None),
        (S::Heard, T::ScreenOut, None),
        (S::Heard, T::List, None),
        (S::Heard, T::Defer, None),
        (S::Heard, T::Hear, None),
        (S::Heard, T::Close, Some(S::Closed)),
        (S::Closed, T::ScreenIn, None),
        (S::Closed, T::ScreenOut, None),
        (S::Closed, T::List, None),
        (S::Closed, T::Defer, None),
        (S::Closed, T::Hear, None),
        (S::Closed, T::Close, None),
    ];

    #[test]
    fn the_transition_table() {
        assert_eq!(TABLE.len(), S::ALL.len() * T::ALL.len(), "every pair is in the table once");
        for (from, step, to) in TABLE {
            assert_eq!(next(*from, *step).ok(), *to, "{from} --{step}-->");
        }
    }

    #[test]
    fn every_refusal_says_why() {
        for (from, step, _) in TABLE.iter().filter(|(_, _, to)| to.is_none()) {
            let why = next(*from, *step).unwrap_err().0;
            assert!(why.len() > 20 && !why.contains('{'), "{from} --{step}-->: {why}");
        }
    }

    #[test]
    fn a_screened_out_case_is_never_stuck() {
        // Declined, then accepted on reconsideration, listed and heard.
        let mut s = S::Received;
        for step in [T::ScreenOut, T::ScreenIn, T::List, T::Defer, T::List, T::Hear, T::Close] {
            s = next(s, step).unwrap_or_else(|e| panic!("{s} --{step}-->: {e}"));
        }
        assert_eq!(s, S::Closed);
        // Every open status has a way forward.
        for from in S::ALL.iter().filter(|s| s.is_open()) {
            assert!(!allowed(*from).is_empty(), "{from} is stuck");
        }
        assert!(allowed(S::Closed).is_empty());
    }

    #[test]
    fn codes_round_trip_and_are_tokens() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(all: &[T], code: fn(T) -> &'static str, parse: fn(&str) -> Option<T>) {
            for v in all {
                let c = code(*v);
                assert_eq!(parse(c), Some(*v));
                assert!(isp::clear::is_token(c), "{c}");
            }
        }
        check(S::ALL, S::code, S::parse);
        check(T::ALL, T::code, T::parse);
        check(Decision::ALL, Decision::code, Decision::parse);
        check(CloseReason::ALL, CloseReason::code, CloseReason::parse);
        check(Outcome::ALL, Outcome::code, Outcome::parse);
        check(ActionStatus::ALL, ActionStatus::code, ActionStatus::parse);
        assert!(!CloseReason::for_staff().any(|r| r == CloseReason::ReferralRevoked));
        for s in ActionStatus::ALL {
            assert_eq!(ActionStatus::from_proto(s.to_proto()), Some(*s));
        }
    }
}
