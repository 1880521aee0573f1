//! An IDVA case as a state machine, and the fixed lists its steps take their codes from.
//! Pure (no I/O): the whole transition table is tested here, and the API, the console and the
//! referral-following work all ask [`next`] before they change a case.
//!
//! ```text
//! awaiting_triage --triage--> triaged --contact_attempt--> contact_attempted --engaged--> engaged
//!                                                          |        ^
//!                                                 not_reached       | contact_attempt
//!                                                          v        |
//!                                                        not_reached
//! any open state --close--> closed (with an outcome)
//! ```
//!
//! Contact attempts go on being logged while a case is `contact_attempted` or `engaged`
//! (the state stays). Every code is a token from a fixed list: counted in reports, read at a
//! glance, never free text (notes are separate and sealed).

use std::fmt;

use runtime::codes;

codes!(
    /// Where a case is.
    Status {
        AwaitingTriage = "awaiting_triage": "Awaiting triage",
        Triaged = "triaged": "Triaged",
        ContactAttempted = "contact_attempted": "Contact attempted",
        Engaged = "engaged": "Engaged",
        NotReached = "not_reached": "Not reached",
        Closed = "closed": "Closed",
    }
);

codes!(
    /// What staff do to a case: each a route (`POST /cases/{id}/...`) and a form.
    Step {
        Triage = "triage": "Triage",
        ContactAttempt = "contact_attempt": "Log a contact attempt",
        Engaged = "engaged": "Mark as engaged",
        NotReached = "not_reached": "Mark as not reached",
        Close = "close": "Close the case",
    }
);

codes!(
    /// How soon the survivor is contacted, decided at triage.
    Priority {
        Urgent = "urgent": "Urgent",
        High = "high": "High",
        Standard = "standard": "Standard",
    }
);

codes!(
    /// How contact was attempted.
    Method {
        Phone = "phone": "Phone call",
        Text = "text": "Text message",
        Email = "email": "Email",
        InPerson = "in_person": "In person",
        Letter = "letter": "Letter",
        ViaProfessional = "via_professional": "Through another professional",
    }
);

codes!(
    /// What came of a contact attempt.
    Reach {
        Reached = "reached": "Reached the survivor",
        NoAnswer = "no_answer": "No answer",
        UnsafeToLeaveMessage = "unsafe_to_leave_message": "Not safe to leave a message",
        WrongNumber = "wrong_number": "Wrong number or address",
        DeclinedSupport = "declined_support": "Survivor declined support",
    }
);

codes!(
    /// Why a case closed: the outcomes partnership reporting counts.
    Outcome {
        RiskReduced = "risk_reduced": "Risk reduced",
        SupportCompleted = "support_completed": "Support completed",
        Disengaged = "disengaged": "Survivor disengaged",
        MovedOutOfArea = "moved_out_of_area": "Moved out of the area",
        DeclinedService = "declined_service": "Declined the service",
        ReferredOn = "referred_on": "Referred on to another service",
        UnableToContact = "unable_to_contact": "Unable to contact",
        ReferralRevoked = "referral_revoked": "Referral revoked by the referrer",
    }
);

impl Status {
    pub fn is_open(self) -> bool {
        self != Status::Closed
    }
}

impl Outcome {
    /// Whether staff may close a case with it: `referral_revoked` is the service's own, set
    /// when the referrer revokes the referral.
    pub fn chosen_by_staff(self) -> bool {
        self != Outcome::ReferralRevoked
    }

    /// The outcomes staff choose from.
    pub fn for_staff() -> impl Iterator<Item = Outcome> {
        Outcome::ALL.iter().copied().filter(|o| o.chosen_by_staff())
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

        (S::AwaitingTriage, T::Triage) => Ok(S::Triaged),
        (_, T::Triage) => Err(Refused("the case was triaged already")),

        (S::AwaitingTriage, T::ContactAttempt) => Err(Refused("the case is awaiting triage: triage it before attempting contact")),
        (S::Triaged | S::ContactAttempted | S::NotReached, T::ContactAttempt) => Ok(S::ContactAttempted),
        (S::Engaged, T::ContactAttempt) => Ok(S::Engaged),

        (S::ContactAttempted, T::Engaged) => Ok(S::Engaged),
        (S::AwaitingTriage | S::Triaged, T::Engaged) => Err(Refused("no contact has been attempted yet: log an attempt that reached the survivor first")),
        (S::NotReached, T::Engaged) => Err(Refused("the survivor was not reached: log a new contact attempt that reached them first")),
        (S::Engaged, T::Engaged) => Err(Refused("the survivor is engaged already")),

        (S::ContactAttempted, T::NotReached) => Ok(S::NotReached),
        (S::AwaitingTriage | S::Triaged, T::NotReached) => Err(Refused("no contact has been attempted yet: log the attempts first")),
        (S::NotReached, T::NotReached) => Err(Refused("the case is marked not reached already")),
        (S::Engaged, T::NotReached) => Err(Refused("the survivor is engaged: if contact was lost, close the case as disengaged")),
    }
}

/// The steps possible from `from`, in the order a page offers them.
pub fn allowed(from: Status) -> Vec<Step> {
    Step::ALL.iter().copied().filter(|s| next(from, *s).is_ok()).collect()
}

/// A case id from a path: the envelope id of its referral.
pub fn check_id(id: &str) -> Result<(), runtime::error::ApiError> {
    isp::clear::required("id", id, isp::clear::is_envelope_id, isp::clear::ENVELOPE_ID).map_err(runtime::error::clear_field)
}

#[cfg(test)]
mod tests {
    use super::{Status as S, Step as T, *};

    /// Every (status, step) pair and where it leads; None is refused.
    const TABLE: &[(S, T, Option<S>)] = &[
        (S::AwaitingTriage, T::Triage, Some(S::Triaged)),
        (S::AwaitingTriage, T::ContactAttempt, None),
        (S::AwaitingTriage, T::Engaged, None),
        (S::AwaitingTriage, T::NotReached, None),
        (S::AwaitingTriage, T::Close, Some(S::Closed)),
        (S::Triaged, T::Triage, None),
        (S::Triaged, T::ContactAttempt, Some(S::ContactAttempted)),
        (S::Triaged, T::Engaged, None),
        (S::Triaged, T::NotReached, None),
        (S::Triaged, T::Close, Some(S::Closed)),
        (S::ContactAttempted, T::Triage, None),
        (S::ContactAttempted, T::ContactAttempt, Some(S::ContactAttempted)),
        (S::ContactAttempted, T::Engaged, Some(S::Engaged)),
        (S::ContactAttempted, T::NotReached, Some(S::NotReached)),
        (S::ContactAttempted, T::Close, Some(S::Closed)),
        (S::Engaged, T::Triage, None),
        (S::Engaged, T::ContactAttempt, Some(S::Engaged)),
        (S::Engaged, T::Engaged, None),
        (S::Engaged, T::NotReached, None),
        (S::Engaged, T::Close, Some(S::Closed)),
        (S::NotReached, T::Triage, None),
        (S::NotReached, T::ContactAttempt, Some(S::ContactAttempted)),
        (S::NotReached, T::Engaged, None),
        (S::NotReached, T::NotReached, None),
        (S::NotReached, T::Close, Some(S::Closed)),
        (S::Closed, T::Triage, None),
        (S::Closed, T::ContactAttempt, None),
        (S::Closed, T::Engaged, None),
        (S::Closed, T::NotReached, None),
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
    fn a_case_can_always_close_until_it_is_closed_and_never_leaves_closed() {
        for from in S::ALL {
            assert_eq!(allowed(*from).contains(&T::Close), from.is_open(), "{from}");
        }
        assert!(allowed(S::Closed).is_empty());
        assert_eq!(allowed(S::AwaitingTriage), vec![T::Triage, T::Close]);
        assert_eq!(allowed(S::NotReached), vec![T::ContactAttempt, T::Close]);
    }

    #[test]
    fn a_case_walks_from_referral_to_closure() {
        let mut s = S::AwaitingTriage;
        for step in [T::Triage, T::ContactAttempt, T::NotReached, T::ContactAttempt, T::ContactAttempt, T::Engaged, T::ContactAttempt, T::Close] {
            s = next(s, step).unwrap_or_else(|e| panic!("{s} --{step}-->: {e}"));
        }
        assert_eq!(s, S::Closed);
    }

    #[test]
    fn codes_round_trip_and_are_tokens() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(all: &[T], code: fn(T) -> &'static str, parse: fn(&str) -> Option<T>) {
            for v in all {
                let c = code(*v);
                assert_eq!(parse(c), Some(*v));
                assert!(isp::clear::is_token(c), "{c}");
            }
            assert_eq!(parse("Urgent "), None);
        }
        check(S::ALL, S::code, S::parse);
        check(T::ALL, T::code, T::parse);
        check(Priority::ALL, Priority::code, Priority::parse);
        check(Method::ALL, Method::code, Method::parse);
        check(Reach::ALL, Reach::code, Reach::parse);
        check(Outcome::ALL, Outcome::code, Outcome::parse);
        assert!(!Outcome::for_staff().any(|o| o == Outcome::ReferralRevoked));
        assert_eq!(Outcome::for_staff().count(), Outcome::ALL.len() - 1);
    }
}
