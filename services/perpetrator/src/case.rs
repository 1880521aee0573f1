//! A pathway case as a state machine, and the fixed lists its steps take their codes from.
//! Pure (no I/O): the whole transition table is tested here, and the API, the console and the
//! service's own sends all ask [`next`] before they change a case.
//!
//! ```text
//! referred --assess--> assessed --engaged--> engaged --completed--> completed
//!                         |                   |   ^                     ^
//!                         |          disengaged   | engaged             |
//!                         |                   v   |                     |
//!                         +--disengaged---> disengaged                  |
//! assessed, engaged, disengaged, enforcement --enforcement--> enforcement --+
//!                                                   (engaged, completed from there)
//! ```
//!
//! Moving to engaged, disengaged or completed sends an engagement update to the agency the
//! referral named (see [`Status::engagement`]); an enforcement step is one action with the
//! housing provider, which the survivor wants (see [`Wishes`]). Every code is a token from a
//! fixed list: counted in reports, read at a glance, never free text.

use std::fmt;

use proto::v1::{EnforcementAction, Engagement, ReferralReason};
use runtime::codes;

codes!(
    /// What the check of an engagement update this service sent found
    /// (`pathway_sends_checked.verdict`).
    Verdict {
        Named = "named": "Sent to the agency a referral named",
        Revoked = "revoked": "Revoked",
        RevocationRefused = "revocation_refused": "The protocol would not carry its revocation",
        NotSent = "not_sent": "Refused or stopped before it left",
        BeforeCheck = "before_check": "Sent before this check existed",
    }
);

codes!(
    /// Where a case is.
    Status {
        Referred = "referred": "Referred",
        Assessed = "assessed": "Assessed",
        Engaged = "engaged": "Engaged",
        Disengaged = "disengaged": "Disengaged",
        Completed = "completed": "Completed",
        Enforcement = "enforcement": "Enforcement",
    }
);

codes!(
    /// What staff do to a case: each a route (`POST /cases/{id}/{step}`) and a form.
    Step {
        Assess = "assess": "Record the assessment",
        Engaged = "engaged": "Mark him as engaged",
        Disengaged = "disengaged": "Mark him as disengaged",
        Completed = "completed": "Mark the work as completed",
        Enforcement = "enforcement": "Record an enforcement step",
    }
);

codes!(
    /// What a housing provider is asked to do about him.
    Action {
        Injunction = "injunction": "Injunction",
        PossessionProceedings = "possession_proceedings": "Possession proceedings",
        TenancyAction = "tenancy_action": "Tenancy action (a warning, a management move of him)",
    }
);

codes!(
    /// What the survivor wants, as her advocate confirmed: enforcement is led by her.
    Wishes {
        Supports = "supports": "She wants this action",
        Opposes = "opposes": "She does not want this action",
        NotKnown = "not_known": "Not known: her advocate has not asked her yet",
    }
);

codes!(
    /// Why he was referred: the codes of the referral's `reasons`.
    Reason {
        PhysicalViolence = "physical_violence": "Physical violence",
        ThreatsToKill = "threats_to_kill": "Threats to kill",
        Strangulation = "strangulation": "Strangulation, choking or suffocation",
        SexualAbuse = "sexual_abuse": "Sexual abuse",
        CoerciveControl = "coercive_control": "Coercive control",
        StalkingOrHarassment = "stalking_or_harassment": "Stalking or harassment",
        EconomicAbuse = "economic_abuse": "Economic abuse",
        DamageToProperty = "damage_to_property": "Damage to property",
        BreachOfOrder = "breach_of_order": "Breach of bail, an injunction or an order",
        TenancyBreach = "tenancy_breach": "Anti-social behaviour or a breach of tenancy",
        HarmToChildren = "harm_to_children": "Children harmed or exposed to the abuse",
        SubstanceMisuse = "substance_misuse": "Alcohol or drugs bound up with the abuse",
        RepeatIncidents = "repeat_incidents": "Repeated, escalating incidents",
    }
);

impl Reason {
    /// The code of a reason as the referral carries it; None for one this service does not know.
    pub fn of(r: ReferralReason) -> Option<Reason> {
        Some(match r {
            ReferralReason::Unspecified => return None,
            ReferralReason::PhysicalViolence => Reason::PhysicalViolence,
            ReferralReason::ThreatsToKill => Reason::ThreatsToKill,
            ReferralReason::Strangulation => Reason::Strangulation,
            ReferralReason::SexualAbuse => Reason::SexualAbuse,
            ReferralReason::CoerciveControl => Reason::CoerciveControl,
            ReferralReason::StalkingOrHarassment => Reason::StalkingOrHarassment,
            ReferralReason::EconomicAbuse => Reason::EconomicAbuse,
            ReferralReason::DamageToProperty => Reason::DamageToProperty,
            ReferralReason::BreachOfOrder => Reason::BreachOfOrder,
            ReferralReason::TenancyBreach => Reason::TenancyBreach,
            ReferralReason::HarmToChildren => Reason::HarmToChildren,
            ReferralReason::SubstanceMisuse => Reason::SubstanceMisuse,
            ReferralReason::RepeatIncidents => Reason::RepeatIncidents,
        })
    }
}

impl Action {
    pub fn proto(self) -> EnforcementAction {
        match self {
            Action::Injunction => EnforcementAction::Injunction,
            Action::PossessionProceedings => EnforcementAction::PossessionProceedings,
            Action::TenancyAction => EnforcementAction::TenancyAction,
        }
    }
}

impl Status {
    pub fn is_open(self) -> bool {
        self != Status::Completed
    }

    /// The engagement update a case sends by itself when it moves to this status (to the
    /// agency its referral named): None for a status the survivor's advocate is not told of
    /// by itself.
    pub fn engagement(self) -> Option<Engagement> {
        match self {
            Status::Engaged => Some(Engagement::Engaged),
            Status::Disengaged => Some(Engagement::Disengaged),
            Status::Completed => Some(Engagement::Completed),
            Status::Referred | Status::Assessed | Status::Enforcement => None,
        }
    }

    /// How he is engaging, for a progress update staff send about a case in this status.
    pub fn progress(self) -> Engagement {
        match self {
            Status::Referred | Status::Assessed => Engagement::NotStarted,
            Status::Engaged => Engagement::Engaged,
            Status::Disengaged => Engagement::Disengaged,
            Status::Completed => Engagement::Completed,
            Status::Enforcement => Engagement::Breach,
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
        (S::Completed, _) => Err(Refused("the case is completed: nothing more can be done on it")),

        (S::Referred, T::Assess) => Ok(S::Assessed),
        (_, T::Assess) => Err(Refused("the case was assessed already")),
        (S::Referred, _) => Err(Refused("the case has not been assessed yet: record the assessment first")),

        (S::Assessed | S::Disengaged | S::Enforcement, T::Engaged) => Ok(S::Engaged),
        (S::Engaged, T::Engaged) => Err(Refused("he is engaged already")),

        (S::Assessed | S::Engaged, T::Disengaged) => Ok(S::Disengaged),
        (S::Disengaged, T::Disengaged) => Err(Refused("he is disengaged already")),
        (S::Enforcement, T::Disengaged) => Err(Refused("enforcement is under way: record its steps, or mark him engaged if he engages again")),

        (S::Engaged | S::Enforcement, T::Completed) => Ok(S::Completed),
        (S::Assessed, T::Completed) => Err(Refused("he has not engaged yet: the work cannot be completed before it starts")),
        (S::Disengaged, T::Completed) => Err(Refused("he disengaged: mark him engaged again, or take enforcement steps, before completing")),

        (S::Assessed | S::Engaged | S::Disengaged | S::Enforcement, T::Enforcement) => Ok(S::Enforcement),
    }
}

/// The steps possible from `from`, in the order a page offers them.
pub fn allowed(from: Status) -> Vec<Step> {
    Step::ALL.iter().copied().filter(|s| next(from, *s).is_ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::{Status as S, Step as T, *};

    /// Every (status, step) pair and where it leads; None is refused.
    const TABLE: &[(S, T, Option<S>)] = &[
        (S::Referred, T::Assess, Some(S::Assessed)),
        (S::Referred, T::Engaged, None),
        (S::Referred, T::Disengaged, None),
        (S::Referred, T::Completed, None),
        (S::Referred, T::Enforcement, None),
        (S::Assessed, T::Assess, None),
        (S::Assessed, T::Engaged, Some(S::Engaged)),
        (S::Assessed, T::Disengaged, Some(S::Disengaged)),
        (S::Assessed, T::Completed, None),
        (S::Assessed, T::Enforcement, Some(S::Enforcement)),
        (S::Engaged, T::Assess, None),
        (S::Engaged, T::Engaged, None),
        (S::Engaged, T::Disengaged, Some(S::Disengaged)),
        (S::Engaged, T::Completed, Some(S::Completed)),
        (S::Engaged, T::Enforcement, Some(S::Enforcement)),
        (S::Disengaged, T::Assess, None),
        (S::Disengaged, T::Engaged, Some(S::Engaged)),
        (S::Disengaged, T::Disengaged, None),
        (S::Disengaged, T::Completed, None),
        (S::Disengaged, T::Enforcement, Some(S::Enforcement)),
        (S::Enforcement, T::Assess, None),
        (S::Enforcement, T::Engaged, Some(S::Engaged)),
        (S::Enforcement, T::Disengaged, None),
        (S::Enforcement, T::Completed, Some(S::Completed)),
        (S::Enforcement, T::Enforcement, Some(S::Enforcement)),
        (S::Completed, T::Assess, None),
        (S::Completed, T::Engaged, None),
        (S::Completed, T::Disengaged, None),
        (S::Completed, T::Completed, None),
        (S::Completed, T::Enforcement, None),
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
    fn a_case_moves_until_it_is_completed_and_never_leaves_completed() {
        for from in S::ALL {
            assert_eq!(allowed(*from).is_empty(), !from.is_open(), "{from}");
        }
        assert_eq!(allowed(S::Referred), vec![T::Assess]);
        assert_eq!(allowed(S::Disengaged), vec![T::Engaged, T::Enforcement]);
        let mut s = S::Referred;
        for step in [T::Assess, T::Engaged, T::Disengaged, T::Enforcement, T::Enforcement, T::Engaged, T::Completed] {
            s = next(s, step).unwrap_or_else(|e| panic!("{s} --{step}-->: {e}"));
        }
        assert_eq!(s, S::Completed);
    }

    #[test]
    fn the_advocate_is_told_of_engaged_disengaged_and_completed_by_the_service_itself() {
        let told: Vec<S> = S::ALL.iter().copied().filter(|s| s.engagement().is_some()).collect();
        assert_eq!(told, vec![S::Engaged, S::Disengaged, S::Completed]);
        assert_eq!(S::Disengaged.engagement(), Some(Engagement::Disengaged));
        for s in S::ALL {
            assert_ne!(s.progress(), Engagement::Unspecified, "{s}");
        }
    }

    #[test]
    fn codes_round_trip_and_are_tokens_and_every_proto_reason_has_one() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(all: &[T], code: fn(T) -> &'static str, parse: fn(&str) -> Option<T>) {
            for v in all {
                let c = code(*v);
                assert_eq!(parse(c), Some(*v));
                assert!(isp::clear::is_token(c), "{c}");
            }
            assert_eq!(parse("Engaged "), None);
        }
        check(S::ALL, S::code, S::parse);
        check(T::ALL, T::code, T::parse);
        check(Action::ALL, Action::code, Action::parse);
        check(Wishes::ALL, Wishes::code, Wishes::parse);
        check(Reason::ALL, Reason::code, Reason::parse);
        let mut n = 1;
        while let Ok(r) = ReferralReason::try_from(n) {
            let reason = Reason::of(r).unwrap_or_else(|| panic!("{r:?} has no code"));
            assert_eq!(format!("REFERRAL_REASON_{}", reason.code().to_uppercase()), r.as_str_name());
            n += 1;
        }
        assert_eq!(n as usize - 1, Reason::ALL.len());
        for a in Action::ALL {
            assert_eq!(format!("ENFORCEMENT_ACTION_{}", a.code().to_uppercase()), a.proto().as_str_name());
        }
    }
}
