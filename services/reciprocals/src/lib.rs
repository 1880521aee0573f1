//! The managed reciprocal scheme coordinator's service (Pan-London Housing Reciprocal model):
//! fair by construction.
//!
//! - [`scheme`]: the rules, pure: an application's state machine, at least five areas of choice
//!   once the excluded ones are out, the judgement of an offer (one per application, never in an
//!   excluded area) and of a move completion (counted once, only from the landlord whose offer
//!   was accepted, only against a landlord of the scheme). Its time targets.
//! - [`store`]: the tables, the one place their columns are written; [`casework`]: each change
//!   of an application (saved from the version read, in the applicant's chronology, told to its
//!   parties); [`notify`]: what the coordinator sends besides property requests.
//! - [`receive`]: each message received, in the inbox transaction; [`steps`]: what the
//!   coordinator does (circulate, record the applicant's decision, record a landlord's stock
//!   and named leads); [`report`]: applications, the fairness ledger and the board.
//! - [`api`]: the JSON routes; [`pages`]: the console's board, application and landlord pages.
//!
//! Receives `reciprocal.request` (an application with its reference, `ARC-01-26`; the policy
//! has removed the applicant's current address), `reciprocal.approval` (the current landlord's
//! named lead, by staff id), `reciprocal.update` (the referrer's new areas, withdrawal, or "no
//! longer needed"), `reciprocal.offer`, `reciprocal.move_completed`. Sends anonymised
//! `reciprocal.property_request`s, `reciprocal.offer_response` (every declined offer is
//! answered, with its reason) and `reciprocal.status` (every change, to the referrer and the
//! current landlord; the end of an application to the landlords it was circulated to).
//!
//! Why a kind of its own for the status, not `referral.ack` with an outcome: an ack moves the
//! referrer's record of one envelope through the fixed receipt statuses (received, accepted,
//! declined, closed), and its staff acknowledgement is what the IG report times. The scheme's
//! statuses are an application's (with its own reference, reason codes, the areas still
//! needed, who approved) and go to the current landlord as well as the referrer; carried as an
//! ack's free outcome string they would be untyped, and "moved" would read as "closed".

pub mod api;
pub mod casework;
pub mod notify;
pub mod pages;
pub mod receive;
pub mod report;
pub mod scheme;
pub mod steps;
pub mod store;

use isp::Opened;
use proto::v1::payload::Body;
use runtime::{
    Agency, Ctx, Migration, Tx,
    auth::{Allow, Role, Rule, content, rule},
    console::Nav,
};

/// A request must name at least this many areas of choice.
pub use scheme::MIN_AREAS;

pub struct Reciprocals;

/// The coordinator runs the scheme; a team manager reads it.
const COORDINATOR: Allow = Allow::Roles(&[Role::ReciprocalsCoordinator]);
const READERS: Allow = Allow::Roles(&[Role::ReciprocalsCoordinator, Role::TeamManager]);

/// Who may call each route of [`api::routes`] and [`pages::routes`].
pub const RULES: &[Rule] = &[
    content("GET", "/applications", READERS),
    content("GET", "/applications/{reference}", READERS),
    rule("POST", "/applications/{reference}/circulate", COORDINATOR),
    rule("POST", "/applications/{reference}/offer-decision", COORDINATOR),
    rule("GET", "/fairness", Allow::Roles(&[Role::ReciprocalsCoordinator, Role::TeamManager, Role::IgLead])),
    rule("GET", "/board", READERS),
    rule("GET", "/landlords", READERS),
    rule("POST", "/landlords/{landlord}", COORDINATOR),
    rule("GET", "/set-aside", READERS),
    rule("GET", pages::BOARD, READERS),
    content("GET", "/console/scheme/applications/{reference}", READERS),
    rule("POST", "/console/scheme/applications/{reference}/circulate", COORDINATOR),
    rule("POST", "/console/scheme/applications/{reference}/offer-decision", COORDINATOR),
    rule("GET", pages::LANDLORDS, READERS),
    rule("POST", pages::LANDLORDS, COORDINATOR),
];

impl Agency for Reciprocals {
    fn migrations(&self) -> Vec<Migration> {
        vec![
            Migration { version: 100, description: "reciprocals", sql: include_str!("../migrations/0100_reciprocals.sql") },
            Migration { version: 101, description: "reciprocal scheme", sql: include_str!("../migrations/0101_scheme.sql") },
        ]
    }

    async fn on_receive(&self, ctx: &Ctx, tx: &mut Tx, opened: &Opened) -> anyhow::Result<()> {
        let h = &opened.header;
        match &opened.payload.body {
            Some(Body::ReciprocalRequest(r)) => receive::request(ctx, tx, h, r).await,
            Some(Body::ReciprocalApproval(a)) => receive::approval(ctx, tx, h, a).await,
            Some(Body::ReciprocalUpdate(u)) => receive::update(ctx, tx, h, u).await,
            Some(Body::ReciprocalOffer(o)) => receive::offer(ctx, tx, h, o).await,
            Some(Body::ReciprocalMoveCompleted(m)) => receive::completion(ctx, tx, h, m).await,
            _ => Ok(()),
        }
    }

    fn routes(&self) -> axum::Router<Ctx> {
        api::routes().merge(pages::routes())
    }

    fn rules(&self) -> &'static [Rule] {
        RULES
    }

    fn nav(&self) -> &'static [Nav] {
        pages::NAV
    }
}
