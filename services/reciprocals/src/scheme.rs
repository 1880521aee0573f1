//! The scheme's rules as pure functions: an application's state machine, its areas (at least
//! five of choice once the excluded ones are taken out), and the judgement of an offer and of
//! a move completion. No I/O: the receiving code and the coordinator's routes both ask here
//! before they change anything, and the whole table is tested below.
//!
//! ```text
//! needs_more_areas <--areas--> awaiting_approval --approve--> approved --circulate--> circulated
//!        |  (approval kept)          |                                                   |
//!        +------approve / refuse-----+--refuse--> not_approved                         offer
//!                                                                                        v
//!                      moved <--move completed-- accepted <--accept-- offered --refuse--> offer_refused
//! any open status --withdraw--> withdrawn;  --no longer needed--> no_longer_needed
//! a request whose current landlord is no landlord of the scheme: not_accepted
//! ```
//!
//! One offer per application: once one is held, any other is declined (`already_offered`),
//! and the applicant's refusal of it closes the application. A move completion counts once,
//! only from the landlord whose offer was accepted, only with the application's current
//! landlord (a landlord of the scheme) as the one that vacated; one that arrives before the
//! acceptance is held until then.

use std::fmt;

use proto::v1::ReciprocalStage;
use runtime::codes;

/// A request must name at least this many areas of choice that are not excluded.
pub const MIN_AREAS: usize = 5;
/// The most areas a list takes, and the longest name of one (characters).
pub const MAX_AREAS: usize = 40;
pub const AREA_MAX_CHARS: usize = 80;

const DAY_MS: i64 = 24 * 3_600_000;
/// Time targets of the scheme: the named lead answers within two weeks of a complete request;
/// the coordinator circulates within a week of approval ("normally within a week"); landlords
/// reply by the reply-by date, two weeks after circulation unless the coordinator sets
/// another; the applicant decides on an offer within a week.
pub const APPROVE_WITHIN_MS: i64 = 14 * DAY_MS;
pub const CIRCULATE_WITHIN_MS: i64 = 7 * DAY_MS;
pub const REPLY_WITHIN_MS: i64 = 14 * DAY_MS;
pub const REPLY_BY_AT_MOST_MS: i64 = 90 * DAY_MS;
pub const DECIDE_WITHIN_MS: i64 = 7 * DAY_MS;

/// The deadline codes (targets: the application reference).
pub const DEADLINE_APPROVE: &str = "reciprocal_approve";
pub const DEADLINE_CIRCULATE: &str = "reciprocal_circulate";
pub const DEADLINE_REPLY: &str = "reciprocal_reply";
pub const DEADLINE_DECIDE: &str = "reciprocal_decide";

codes!(
    /// Where an application stands.
    Status {
        NeedsMoreAreas = "needs_more_areas": "Needs more areas of choice",
        AwaitingApproval = "awaiting_approval": "Awaiting the named lead's approval",
        Approved = "approved": "Approved: to circulate",
        NotApproved = "not_approved": "Not approved by the named lead",
        Circulated = "circulated": "Circulated to landlords",
        Offered = "offered": "Offer held",
        Accepted = "accepted": "Offer accepted",
        OfferRefused = "offer_refused": "Offer refused",
        Moved = "moved": "Moved",
        Withdrawn = "withdrawn": "Withdrawn",
        NoLongerNeeded = "no_longer_needed": "Move no longer needed",
        NotAccepted = "not_accepted": "Not accepted by the scheme",
    }
);

codes!(
    /// Why: a status's reason, an offer's decline, a message set aside. Codes, never free text.
    Reason {
        FewerThanFiveAreas = "fewer_than_five_areas": "Fewer than five areas of choice once the excluded areas are taken out",
        CurrentLandlordNotALandlord = "current_landlord_not_a_landlord": "The current landlord named is not a landlord of the scheme",
        AwaitingApproval = "awaiting_approval": "The named lead of the current landlord has not approved the application yet",
        NotTheCurrentLandlord = "not_the_current_landlord": "The approval did not come from the applicant's current landlord",
        NamedLeadNotAStaffId = "named_lead_not_a_staff_id": "The approval does not name its named lead by a staff id",
        NotANamedLead = "not_a_named_lead": "The approver is not a named lead the landlord has on record with the scheme",
        NotApprovedByLead = "not_approved_by_lead": "The named lead did not approve the application",
        NotTheReferrer = "not_the_referrer": "The change did not come from the referrer of the application",
        UnknownChange = "unknown_change": "The change is not one the scheme knows",
        AlreadyCirculated = "already_circulated": "The application was circulated already",
        ApplicationClosed = "application_closed": "The application is closed",
        UnknownApplication = "unknown_application": "There is no application of that reference",
        NotCirculated = "not_circulated": "The application has not been circulated",
        NotCirculatedToLandlord = "not_circulated_to_landlord": "The property request was not circulated to this landlord",
        LandlordMismatch = "landlord_mismatch": "The offer names another landlord than the one that sent it",
        AlreadyOffered = "already_offered": "The application holds an offer already: one offer per application",
        AreaExcluded = "area_excluded": "The property is in an area the applicant must not go to",
        AreaNotChosen = "area_not_chosen": "The property is not in one of the applicant's areas of choice",
        TooFewBedrooms = "too_few_bedrooms": "The property has fewer bedrooms than the household needs",
        NoOfferHeld = "no_offer_held": "The application holds no offer to decide on",
        ApplicantRefused = "applicant_refused": "The applicant refused the offer",
        ApplicationWithdrawn = "application_withdrawn": "The application was withdrawn",
        MoveNoLongerNeeded = "move_no_longer_needed": "The move is no longer needed",
        NoOfferAccepted = "no_offer_accepted": "No offer of the application was accepted",
        NotTheOfferingLandlord = "not_the_offering_landlord": "The completion did not come from the landlord whose offer was accepted",
        RehousingLandlordMismatch = "rehousing_landlord_mismatch": "The completion names another rehousing landlord than its sender",
        VacatingNotALandlord = "vacating_not_a_landlord": "The completion names as vacating landlord an agency that is not a landlord of the scheme",
        VacatingLandlordMismatch = "vacating_landlord_mismatch": "The completion names another vacating landlord than the applicant's current landlord",
        PropertyMismatch = "property_mismatch": "The completion names another property than the one accepted",
        DuplicateCompletion = "duplicate_completion": "The move was counted already",
        HeldUntilAccepted = "held_until_accepted": "The completion came before the acceptance: held until it",
    }
);

codes!(
    /// What happens to an application.
    Event {
        Areas = "areas": "Areas of choice changed",
        Approve = "approve": "Approved by the named lead",
        Refuse = "refuse": "Not approved by the named lead",
        Circulate = "circulate": "Circulated",
        Offer = "offer": "Offer received",
        Accept = "accept": "Offer accepted",
        RefuseOffer = "refuse_offer": "Offer refused",
        Complete = "complete": "Move completed",
        Withdraw = "withdraw": "Withdrawn",
        NoLongerNeeded = "no_longer_needed": "Move no longer needed",
    }
);

impl Status {
    /// Whether anything can still happen to it.
    pub fn is_open(self) -> bool {
        !matches!(self, Status::NotApproved | Status::OfferRefused | Status::Moved | Status::Withdrawn | Status::NoLongerNeeded | Status::NotAccepted)
    }

    /// The status as the proto names it.
    pub fn stage(self) -> ReciprocalStage {
        use ReciprocalStage as P;
        match self {
            Status::NeedsMoreAreas => P::NeedsMoreAreas,
            Status::AwaitingApproval => P::AwaitingApproval,
            Status::Approved => P::Approved,
            Status::NotApproved => P::NotApproved,
            Status::Circulated => P::Circulated,
            Status::Offered => P::Offered,
            Status::Accepted => P::Accepted,
            Status::OfferRefused => P::OfferRefused,
            Status::Moved => P::Moved,
            Status::Withdrawn => P::Withdrawn,
            Status::NoLongerNeeded => P::NoLongerNeeded,
            Status::NotAccepted => P::NotAccepted,
        }
    }

    /// What a status of v0.1.0 is now (`received` waited for nothing; now it waits for the lead).
    pub fn parse_stored(code: &str) -> Option<Status> {
        match code {
            "received" => Some(Status::AwaitingApproval),
            "offer_received" => Some(Status::Offered),
            c => Status::parse(c),
        }
    }
}

/// Whether an agency is a landlord of the scheme: an active member of the partnership with the
/// housing role (a council's housing service, a housing association). An IDVA service, MARAC
/// or any other role never is, so never owes or is owed a property.
pub fn is_landlord(directory: &isp::Directory, agency: &str) -> bool {
    directory.get(agency).is_some_and(|a| a.role == isp::Role::Housing && a.is_active())
}

/// What the application's next status after its areas or approval change depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// How many more areas of choice it needs (0: enough).
    pub areas_needed: usize,
    /// Whether its named lead approved it.
    pub approved: bool,
}

/// Where an application waits before circulation.
pub fn waiting(r: Readiness) -> Status {
    match (r.areas_needed, r.approved) {
        (0, true) => Status::Approved,
        (0, false) => Status::AwaitingApproval,
        _ => Status::NeedsMoreAreas,
    }
}

/// The transition table: the status `event` takes an application in `from` to, or why not.
pub fn next(from: Status, event: Event, ready: Readiness) -> Result<Status, Reason> {
    use Event as E;
    use Status as S;
    if !from.is_open() {
        return Err(Reason::ApplicationClosed);
    }
    let before_circulation = matches!(from, S::NeedsMoreAreas | S::AwaitingApproval | S::Approved);
    match event {
        E::Withdraw => Ok(S::Withdrawn),
        E::NoLongerNeeded => Ok(S::NoLongerNeeded),
        E::Areas | E::Approve if before_circulation => Ok(waiting(Readiness { approved: ready.approved || event == E::Approve, ..ready })),
        E::Refuse if before_circulation => Ok(S::NotApproved),
        E::Areas | E::Approve | E::Refuse => Err(Reason::AlreadyCirculated),
        E::Circulate => match from {
            S::Approved | S::Circulated => Ok(S::Circulated),
            S::NeedsMoreAreas => Err(Reason::FewerThanFiveAreas),
            S::AwaitingApproval => Err(Reason::AwaitingApproval),
            _ => Err(Reason::AlreadyOffered),
        },
        E::Offer => match from {
            S::Circulated => Ok(S::Offered),
            S::Offered | S::Accepted => Err(Reason::AlreadyOffered),
            _ => Err(Reason::NotCirculated),
        },
        E::Accept | E::RefuseOffer => match from {
            S::Offered if event == E::Accept => Ok(S::Accepted),
            S::Offered => Ok(S::OfferRefused),
            _ => Err(Reason::NoOfferHeld),
        },
        E::Complete => match from {
            S::Accepted => Ok(S::Moved),
            S::Offered => Err(Reason::HeldUntilAccepted),
            _ => Err(Reason::NoOfferAccepted),
        },
    }
}

/// The events possible from `from` (with the areas and approval it has).
pub fn allowed(from: Status, ready: Readiness) -> Vec<Event> {
    Event::ALL.iter().copied().filter(|e| next(from, *e, ready).is_ok()).collect()
}

/// An area's name as compared: trimmed, inner spaces collapsed, any case.
fn key(area: &str) -> String {
    area.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// An area's name as kept: trimmed, inner spaces collapsed, and no comma (lists are stored
/// comma-separated).
fn tidy(area: &str) -> String {
    area.replace(',', " ").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The areas of an application: of choice, and excluded (where the applicant is at risk).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Areas {
    pub choice: Vec<String>,
    pub excluded: Vec<String>,
}

impl fmt::Debug for Areas {
    // Where she would or would not live: counts only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Areas({} of choice, {} excluded)", self.choice.len(), self.excluded.len())
    }
}

impl Areas {
    /// Tidied, empty names and repeats (in any case) left out.
    pub fn new<S: AsRef<str>>(choice: &[S], excluded: &[S]) -> Areas {
        fn unique<S: AsRef<str>>(list: &[S]) -> Vec<String> {
            let mut seen = std::collections::BTreeSet::new();
            list.iter().map(|a| tidy(a.as_ref())).filter(|a| !a.is_empty() && seen.insert(key(a))).collect()
        }
        Areas { choice: unique(choice), excluded: unique(excluded) }
    }

    /// From the stored comma lists.
    pub fn from_stored(choice: &str, excluded: &str) -> Areas {
        let split = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        Areas::new(&split(choice), &split(excluded))
    }

    pub fn is_excluded(&self, area: &str) -> bool {
        self.excluded.iter().any(|e| key(e) == key(area))
    }

    /// The areas of choice that are not excluded.
    pub fn usable(&self) -> Vec<&str> {
        self.choice.iter().filter(|a| !self.is_excluded(a)).map(String::as_str).collect()
    }

    pub fn is_chosen(&self, area: &str) -> bool {
        self.usable().iter().any(|a| key(a) == key(area))
    }

    /// How many more areas of choice are needed.
    pub fn needed(&self) -> usize {
        MIN_AREAS.saturating_sub(self.usable().len())
    }

    /// Whether a list is within the limits a caller may send (too many areas, or one too long).
    pub fn check_limits<S: AsRef<str>>(field: &str, list: &[S]) -> Result<(), String> {
        if list.len() > MAX_AREAS {
            return Err(format!("{field}: at most {MAX_AREAS} areas"));
        }
        match list.iter().position(|a| a.as_ref().chars().count() > AREA_MAX_CHARS) {
            Some(i) => Err(format!("{field}[{i}] is longer than {AREA_MAX_CHARS} characters")),
            None => Ok(()),
        }
    }
}

/// Whether a landlord with stock in `stock` (empty: not on record) may be sent the property
/// request of an application with `areas`: never one whose stock is only in excluded areas,
/// nor one with no stock in an area of choice. Unknown stock is no reason to leave one out.
pub fn stock_fits(stock: &[String], areas: &Areas) -> Result<(), &'static str> {
    if stock.is_empty() {
        return Ok(());
    }
    if stock.iter().all(|s| areas.is_excluded(s)) {
        return Err("has stock only in areas the applicant must not go to");
    }
    if !stock.iter().any(|s| areas.is_chosen(s)) {
        return Err("has no stock in the applicant's areas of choice");
    }
    Ok(())
}

/// What an offer is judged on.
#[derive(Debug, Clone)]
pub struct OfferFacts<'a> {
    pub status: Status,
    /// Whether the property request was circulated to the offering landlord.
    pub circulated_to_sender: bool,
    pub sender: &'a str,
    /// The landlord the offer names (may be empty).
    pub named_landlord: &'a str,
    pub area: &'a str,
    pub bedrooms: u32,
    pub bedrooms_needed: u32,
    pub areas: &'a Areas,
}

/// Whether an offer is held, or why it is declined.
pub fn judge_offer(f: &OfferFacts<'_>) -> Result<(), Reason> {
    next(f.status, Event::Offer, Readiness { areas_needed: 0, approved: true })?;
    if !f.circulated_to_sender {
        return Err(Reason::NotCirculatedToLandlord);
    }
    if !f.named_landlord.is_empty() && f.named_landlord != f.sender {
        return Err(Reason::LandlordMismatch);
    }
    if f.areas.is_excluded(f.area) {
        return Err(Reason::AreaExcluded);
    }
    if !f.areas.is_chosen(f.area) {
        return Err(Reason::AreaNotChosen);
    }
    if f.bedrooms < f.bedrooms_needed {
        return Err(Reason::TooFewBedrooms);
    }
    Ok(())
}

/// What a move completion is judged on.
#[derive(Debug, Clone)]
pub struct CompletionFacts<'a> {
    pub status: Status,
    pub current_landlord: &'a str,
    /// The offer held or accepted: (landlord, property ref).
    pub offer: Option<(&'a str, &'a str)>,
    pub sender: &'a str,
    /// As the completion names them (may be empty: then the sender, and the current landlord).
    pub rehousing_landlord: &'a str,
    pub vacating_landlord: &'a str,
    pub property_ref: &'a str,
    /// Whether the vacating landlord (as named, or the current one) is a landlord of the scheme.
    pub vacating_is_landlord: bool,
}

/// What becomes of a move completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The move counts: one owed to the rehousing landlord, one owing by the vacating one.
    Count,
    /// It came before the acceptance: held, and counted once the acceptance is recorded.
    Hold,
    /// The move was counted already.
    Duplicate,
    /// Not counted, ever.
    SetAside(Reason),
}

/// Judges a completion of the application `f` describes (None: there is no such application).
pub fn judge_completion(f: Option<&CompletionFacts<'_>>) -> Verdict {
    let Some(f) = f else { return Verdict::SetAside(Reason::UnknownApplication) };
    if !f.status.is_open() && f.status != Status::Moved {
        return Verdict::SetAside(Reason::ApplicationClosed);
    }
    let Some((landlord, property)) = f.offer else { return Verdict::SetAside(Reason::NoOfferAccepted) };
    if f.sender != landlord {
        return Verdict::SetAside(Reason::NotTheOfferingLandlord);
    }
    if !f.rehousing_landlord.is_empty() && f.rehousing_landlord != f.sender {
        return Verdict::SetAside(Reason::RehousingLandlordMismatch);
    }
    if !f.vacating_is_landlord {
        return Verdict::SetAside(Reason::VacatingNotALandlord);
    }
    if !f.vacating_landlord.is_empty() && f.vacating_landlord != f.current_landlord {
        return Verdict::SetAside(Reason::VacatingLandlordMismatch);
    }
    if !f.property_ref.is_empty() && f.property_ref != property {
        return Verdict::SetAside(Reason::PropertyMismatch);
    }
    if f.status == Status::Moved {
        return Verdict::Duplicate;
    }
    match next(f.status, Event::Complete, Readiness { areas_needed: 0, approved: true }) {
        Ok(_) => Verdict::Count,
        Err(Reason::HeldUntilAccepted) => Verdict::Hold,
        Err(r) => Verdict::SetAside(r),
    }
}

#[cfg(test)]
mod tests {
    use super::{Event as E, Status as S, *};

    const READY: Readiness = Readiness { areas_needed: 0, approved: false };

    /// An open status, and where each event takes it (Err: the reason it is refused).
    type Row = (S, &'static [(E, Result<S, Reason>)]);

    #[rustfmt::skip]
    const TABLE: &[Row] = &[
        (S::NeedsMoreAreas, &[(E::Areas, Ok(S::AwaitingApproval)), (E::Approve, Ok(S::Approved)), (E::Refuse, Ok(S::NotApproved)),
            (E::Circulate, Err(Reason::FewerThanFiveAreas)), (E::Offer, Err(Reason::NotCirculated)), (E::Accept, Err(Reason::NoOfferHeld)),
            (E::RefuseOffer, Err(Reason::NoOfferHeld)), (E::Complete, Err(Reason::NoOfferAccepted)), (E::Withdraw, Ok(S::Withdrawn)), (E::NoLongerNeeded, Ok(S::NoLongerNeeded))]),
        (S::AwaitingApproval, &[(E::Areas, Ok(S::AwaitingApproval)), (E::Approve, Ok(S::Approved)), (E::Refuse, Ok(S::NotApproved)),
            (E::Circulate, Err(Reason::AwaitingApproval)), (E::Offer, Err(Reason::NotCirculated)), (E::Accept, Err(Reason::NoOfferHeld)),
            (E::RefuseOffer, Err(Reason::NoOfferHeld)), (E::Complete, Err(Reason::NoOfferAccepted)), (E::Withdraw, Ok(S::Withdrawn)), (E::NoLongerNeeded, Ok(S::NoLongerNeeded))]),
        (S::Approved, &[(E::Areas, Ok(S::AwaitingApproval)), (E::Approve, Ok(S::Approved)), (E::Refuse, Ok(S::NotApproved)),
            (E::Circulate, Ok(S::Circulated)), (E::Offer, Err(Reason::NotCirculated)), (E::Accept, Err(Reason::NoOfferHeld)),
            (E::RefuseOffer, Err(Reason::NoOfferHeld)), (E::Complete, Err(Reason::NoOfferAccepted)), (E::Withdraw, Ok(S::Withdrawn)), (E::NoLongerNeeded, Ok(S::NoLongerNeeded))]),
        (S::Circulated, &[(E::Areas, Err(Reason::AlreadyCirculated)), (E::Approve, Err(Reason::AlreadyCirculated)), (E::Refuse, Err(Reason::AlreadyCirculated)),
            (E::Circulate, Ok(S::Circulated)), (E::Offer, Ok(S::Offered)), (E::Accept, Err(Reason::NoOfferHeld)),
            (E::RefuseOffer, Err(Reason::NoOfferHeld)), (E::Complete, Err(Reason::NoOfferAccepted)), (E::Withdraw, Ok(S::Withdrawn)), (E::NoLongerNeeded, Ok(S::NoLongerNeeded))]),
        (S::Offered, &[(E::Areas, Err(Reason::AlreadyCirculated)), (E::Approve, Err(Reason::AlreadyCirculated)), (E::Refuse, Err(Reason::AlreadyCirculated)),
            (E::Circulate, Err(Reason::AlreadyOffered)), (E::Offer, Err(Reason::AlreadyOffered)), (E::Accept, Ok(S::Accepted)),
            (E::RefuseOffer, Ok(S::OfferRefused)), (E::Complete, Err(Reason::HeldUntilAccepted)), (E::Withdraw, Ok(S::Withdrawn)), (E::NoLongerNeeded, Ok(S::NoLongerNeeded))]),
        (S::Accepted, &[(E::Areas, Err(Reason::AlreadyCirculated)), (E::Approve, Err(Reason::AlreadyCirculated)), (E::Refuse, Err(Reason::AlreadyCirculated)),
            (E::Circulate, Err(Reason::AlreadyOffered)), (E::Offer, Err(Reason::AlreadyOffered)), (E::Accept, Err(Reason::NoOfferHeld)),
            (E::RefuseOffer, Err(Reason::NoOfferHeld)), (E::Complete, Ok(S::Moved)), (E::Withdraw, Ok(S::Withdrawn)), (E::NoLongerNeeded, Ok(S::NoLongerNeeded))]),
    ];

    #[test]
    fn the_transition_table() {
        let open: Vec<S> = S::ALL.iter().copied().filter(|s| s.is_open()).collect();
        assert_eq!(TABLE.iter().map(|(s, _)| *s).collect::<Vec<_>>(), open, "every open status is in the table");
        for (from, row) in TABLE {
            assert_eq!(row.len(), E::ALL.len(), "every event from {from}");
            for (event, to) in *row {
                assert_eq!(next(*from, *event, READY), *to, "{from} --{event}-->");
            }
        }
    }

    #[test]
    fn a_closed_application_takes_nothing_more() {
        for from in S::ALL.iter().filter(|s| !s.is_open()) {
            assert!(allowed(*from, READY).is_empty(), "{from}");
            assert_eq!(next(*from, E::Complete, READY), Err(Reason::ApplicationClosed));
        }
    }

    #[test]
    fn before_circulation_the_status_follows_the_areas_and_the_approval() {
        let short = Readiness { areas_needed: 2, approved: false };
        assert_eq!(next(S::AwaitingApproval, E::Areas, short), Ok(S::NeedsMoreAreas));
        assert_eq!(next(S::NeedsMoreAreas, E::Approve, short), Ok(S::NeedsMoreAreas), "approved, still short of areas");
        assert_eq!(next(S::NeedsMoreAreas, E::Areas, Readiness { areas_needed: 0, approved: true }), Ok(S::Approved), "the approval stands");
        assert_eq!(waiting(Readiness { areas_needed: 0, approved: true }), S::Approved);
    }

    #[test]
    fn areas_are_tidied_compared_in_any_case_and_exclusions_do_not_count() {
        let a = Areas::new(&[" Eastvale ", "eastvale", "South  moor", "", "North,bridge"], &["NORTHBRIDGE", "north bridge"]);
        assert_eq!(a.choice, ["Eastvale", "South moor", "North bridge"]);
        assert_eq!(a.usable(), ["Eastvale", "South moor"], "an area both chosen and excluded is excluded");
        assert_eq!(a.needed(), 3);
        assert!(a.is_excluded("north   BRIDGE") && a.is_chosen("eastvale") && !a.is_chosen("Westbrook"));
        let stored = Areas::from_stored(&a.choice.join(","), &a.excluded.join(","));
        assert_eq!(stored, a);
        let five = Areas::new(&["Eastvale", "Southmoor", "Westbrook", "Highcross", "Riverside", "Northbridge"], &["Northbridge"]);
        assert_eq!(five.needed(), 0);
        assert!(format!("{five:?}").contains("6 of choice") && !format!("{five:?}").contains("Eastvale"), "no area in a log line");
        assert!(Areas::check_limits("areas", &["x".repeat(AREA_MAX_CHARS + 1)]).is_err());
        assert!(Areas::check_limits("areas", &vec!["x"; MAX_AREAS + 1]).is_err());
    }

    #[test]
    fn a_landlord_whose_stock_is_only_in_excluded_areas_is_never_sent_the_request() {
        let a = Areas::new(&["Eastvale", "Southmoor", "Westbrook", "Highcross", "Riverside"], &["Northbridge", "Oldtown"]);
        let stock = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(stock_fits(&[], &a).is_ok(), "stock not on record");
        assert!(stock_fits(&stock(&["eastvale", "Northbridge"]), &a).is_ok());
        assert!(stock_fits(&stock(&["Northbridge", "oldtown"]), &a).is_err());
        assert!(stock_fits(&stock(&["Faraway"]), &a).is_err());
    }

    fn offer<'a>(areas: &'a Areas, status: S, area: &'a str) -> OfferFacts<'a> {
        OfferFacts { status, circulated_to_sender: true, sender: "riverside-homes", named_landlord: "", area, bedrooms: 2, bedrooms_needed: 2, areas }
    }

    #[test]
    fn an_offer_is_held_only_when_it_fits() {
        let a = Areas::new(&["Eastvale", "Southmoor", "Westbrook", "Highcross", "Riverside"], &["Northbridge"]);
        assert_eq!(judge_offer(&offer(&a, S::Circulated, "Eastvale")), Ok(()));
        assert_eq!(judge_offer(&offer(&a, S::Circulated, "northbridge")), Err(Reason::AreaExcluded));
        assert_eq!(judge_offer(&offer(&a, S::Circulated, "Faraway")), Err(Reason::AreaNotChosen));
        assert_eq!(judge_offer(&offer(&a, S::Offered, "Eastvale")), Err(Reason::AlreadyOffered), "one offer per application");
        assert_eq!(judge_offer(&offer(&a, S::Accepted, "Eastvale")), Err(Reason::AlreadyOffered));
        assert_eq!(judge_offer(&offer(&a, S::Approved, "Eastvale")), Err(Reason::NotCirculated));
        assert_eq!(judge_offer(&offer(&a, S::Withdrawn, "Eastvale")), Err(Reason::ApplicationClosed));
        assert_eq!(judge_offer(&OfferFacts { circulated_to_sender: false, ..offer(&a, S::Circulated, "Eastvale") }), Err(Reason::NotCirculatedToLandlord));
        assert_eq!(judge_offer(&OfferFacts { named_landlord: "other-homes", ..offer(&a, S::Circulated, "Eastvale") }), Err(Reason::LandlordMismatch));
        assert_eq!(judge_offer(&OfferFacts { bedrooms: 1, ..offer(&a, S::Circulated, "Eastvale") }), Err(Reason::TooFewBedrooms));
    }

    fn completion(status: S) -> CompletionFacts<'static> {
        CompletionFacts {
            status,
            current_landlord: "housing-northbridge",
            offer: Some(("riverside-homes", "RH-1")),
            sender: "riverside-homes",
            rehousing_landlord: "riverside-homes",
            vacating_landlord: "housing-northbridge",
            property_ref: "RH-1",
            vacating_is_landlord: true,
        }
    }

    #[test]
    fn a_completion_counts_once_from_the_offering_landlord_after_the_acceptance() {
        assert_eq!(judge_completion(Some(&completion(S::Accepted))), Verdict::Count);
        assert_eq!(judge_completion(Some(&completion(S::Moved))), Verdict::Duplicate, "sent twice: counted once");
        assert_eq!(judge_completion(Some(&completion(S::Offered))), Verdict::Hold, "before the acceptance: held");
        assert_eq!(judge_completion(None), Verdict::SetAside(Reason::UnknownApplication));
        assert_eq!(judge_completion(Some(&CompletionFacts { offer: None, ..completion(S::Circulated) })), Verdict::SetAside(Reason::NoOfferAccepted));
        assert_eq!(judge_completion(Some(&CompletionFacts { sender: "housing-northbridge", ..completion(S::Accepted) })), Verdict::SetAside(Reason::NotTheOfferingLandlord));
        assert_eq!(judge_completion(Some(&CompletionFacts { rehousing_landlord: "other-homes", ..completion(S::Accepted) })), Verdict::SetAside(Reason::RehousingLandlordMismatch));
        assert_eq!(
            judge_completion(Some(&CompletionFacts { vacating_landlord: "idva-northbridge", vacating_is_landlord: false, ..completion(S::Accepted) })),
            Verdict::SetAside(Reason::VacatingNotALandlord),
            "an IDVA service never owes a property"
        );
        assert_eq!(judge_completion(Some(&CompletionFacts { vacating_landlord: "other-homes", ..completion(S::Accepted) })), Verdict::SetAside(Reason::VacatingLandlordMismatch));
        assert_eq!(judge_completion(Some(&CompletionFacts { property_ref: "RH-2", ..completion(S::Accepted) })), Verdict::SetAside(Reason::PropertyMismatch));
        assert_eq!(judge_completion(Some(&completion(S::Withdrawn))), Verdict::SetAside(Reason::ApplicationClosed));
        assert_eq!(judge_completion(Some(&CompletionFacts { offer: None, ..completion(S::Withdrawn) })), Verdict::SetAside(Reason::ApplicationClosed), "its offer released");
        assert_eq!(judge_completion(Some(&CompletionFacts { rehousing_landlord: "", vacating_landlord: "", property_ref: "", ..completion(S::Accepted) })), Verdict::Count, "unnamed: the sender and the current landlord");
    }

    #[test]
    fn only_a_housing_member_of_the_partnership_is_a_landlord() {
        let (directory, _) = isp::directory::generate_partnership("P", &isp::directory::DEMO_AGENCIES).expect("a partnership");
        assert!(is_landlord(&directory, "housing-northbridge") && is_landlord(&directory, "riverside-homes"));
        for other in ["idva-northbridge", "marac-northbridge", "reciprocals-scheme", "perpetrator-pathways", "ig-northbridge", "nobody-homes", ""] {
            assert!(!is_landlord(&directory, other), "{other}");
        }
    }

    #[test]
    fn codes_are_tokens_and_every_status_has_its_stage() {
        let mut stages = std::collections::BTreeSet::new();
        for s in S::ALL {
            assert!(isp::clear::is_token(s.code()));
            assert_eq!(S::parse_stored(s.code()), Some(*s));
            assert!(stages.insert(s.stage() as i32), "{s} has a stage of its own");
        }
        assert_eq!(S::parse_stored("received"), Some(S::AwaitingApproval));
        for r in Reason::ALL {
            assert!(isp::clear::is_token(r.code()) && r.label().len() > 20, "{r:?}");
        }
    }
}
