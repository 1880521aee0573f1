//! The MARAC coordinator's service: the meeting cycle of a Multi-Agency Risk Assessment
//! Conference, from referral to the quarter's figures.
//!
//! Receives `marac.referral` (opens a case awaiting screening, with the criteria it meets and
//! their evidence), `disclosure.revoke` (a revoked referral counts for nothing and its case
//! closes unless heard), `marac.research_response` (answers the request it names) and
//! `marac.action_update` (an action's status; done meets its due date). Sends
//! `referral.ack` (screening and closing), `marac.research_request`, `marac.action` and
//! `marac.minutes`, each to the member agencies the protocol lets receive it, through the
//! runtime's send path in the transaction of the work that sends it.
//!
//! - [`case`]: the case's state machine (awaiting screening, screened in or criteria not met,
//!   listed, heard, closed) and its fixed lists of codes. Pure.
//! - [`criteria`]: the referral criteria with their evidence, and the repeat rule (duplicates
//!   of one incident count once, revoked referrals not at all). Pure.
//! - [`members`]: who the member agencies are, for each kind, by the protocol.
//! - [`store`]: the service's tables, the one place their columns are written.
//! - [`follow`]: what arrives moves the cycle on (inside the inbox transaction); a referral
//!   answered in the generic inbox moves its case on the next tick.
//! - [`casework`]: the coordinator's decisions on a case: screen, list, take off the agenda,
//!   close.
//! - [`research`]: research requests to every member, tracked against their reply-by date.
//! - [`meetings`]: the schedule, attendance and the minutes.
//! - [`hearing`]: a case heard: discussion, risks, outcome, actions with owners and due dates.
//! - [`figures`]: the figures a MARAC reports each quarter.
//! - [`api`]: the JSON routes; [`pages`]: the coordinator's board, case, meeting and figures
//!   pages of the console.
//!
//! Every route is the coordinator's; team managers read ([`RULES`]). Reads of case content
//! are recorded in the access log and the ledger.

pub mod api;
pub mod case;
pub mod casework;
pub mod criteria;
pub mod figures;
pub mod follow;
pub mod hearing;
pub mod meetings;
pub mod members;
pub mod pages;
pub mod research;
pub mod store;

use isp::Opened;
use proto::v1::payload::Body;
use runtime::{
    Agency, Ctx, Migration, Tx,
    auth::{Allow, Role, Rule, content, rule},
    console::Nav,
};

pub use criteria::REPEAT_WITHIN_MS;

pub struct Marac;

/// Who runs the cycle, and who may read it.
const COORDINATOR: &[Role] = &[Role::MaracCoordinator];
const READERS: &[Role] = &[Role::MaracCoordinator, Role::TeamManager];

/// The rule of every route of [`api::routes`] and [`pages::routes`].
pub const RULES: &[Rule] = &[
    content("GET", "/cases", Allow::Roles(READERS)),
    content("GET", "/cases/{id}", Allow::Roles(READERS)),
    rule("POST", "/cases/{id}/screen", Allow::Roles(COORDINATOR)),
    rule("POST", "/cases/{id}/list", Allow::Roles(COORDINATOR)),
    rule("POST", "/cases/{id}/defer", Allow::Roles(COORDINATOR)),
    rule("POST", "/cases/{id}/research", Allow::Roles(COORDINATOR)),
    rule("POST", "/cases/{id}/hearing", Allow::Roles(COORDINATOR)),
    rule("POST", "/cases/{id}/close", Allow::Roles(COORDINATOR)),
    content("GET", "/meetings", Allow::Roles(READERS)),
    rule("POST", "/meetings", Allow::Roles(COORDINATOR)),
    content("GET", "/meetings/{id}", Allow::Roles(READERS)),
    rule("POST", "/meetings/{id}/attendance", Allow::Roles(COORDINATOR)),
    rule("POST", "/meetings/{id}/minutes", Allow::Roles(COORDINATOR)),
    content("GET", "/research", Allow::Roles(READERS)),
    content("GET", "/actions", Allow::Roles(READERS)),
    rule("POST", "/actions", Allow::Roles(COORDINATOR)),
    content("GET", "/board", Allow::Roles(READERS)),
    content("GET", "/figures", Allow::Roles(READERS)),
    content("GET", "/console/board", Allow::Roles(READERS)),
    rule("POST", "/console/meetings", Allow::Roles(COORDINATOR)),
    content("GET", "/console/cases/{id}", Allow::Roles(READERS)),
    rule("POST", "/console/cases/{id}/screen", Allow::Roles(COORDINATOR)),
    rule("POST", "/console/cases/{id}/list", Allow::Roles(COORDINATOR)),
    rule("POST", "/console/cases/{id}/defer", Allow::Roles(COORDINATOR)),
    rule("POST", "/console/cases/{id}/research", Allow::Roles(COORDINATOR)),
    rule("POST", "/console/cases/{id}/hearing", Allow::Roles(COORDINATOR)),
    rule("POST", "/console/cases/{id}/close", Allow::Roles(COORDINATOR)),
    content("GET", "/console/meetings/{id}", Allow::Roles(READERS)),
    rule("POST", "/console/meetings/{id}/attendance", Allow::Roles(COORDINATOR)),
    rule("POST", "/console/meetings/{id}/minutes", Allow::Roles(COORDINATOR)),
    content("GET", "/console/figures", Allow::Roles(READERS)),
];

impl Agency for Marac {
    fn migrations(&self) -> Vec<Migration> {
        vec![
            Migration { version: 100, description: "marac", sql: include_str!("../migrations/0100_marac.sql") },
            Migration { version: 101, description: "marac meeting cycle", sql: include_str!("../migrations/0101_marac_cycle.sql") },
        ]
    }

    async fn on_receive(&self, ctx: &Ctx, tx: &mut Tx, opened: &Opened) -> anyhow::Result<()> {
        let h = &opened.header;
        match &opened.payload.body {
            Some(Body::MaracReferral(r)) => follow::referral_received(ctx, tx, opened, r).await?,
            Some(Body::DisclosureRevoke(revoke)) => follow::referral_revoked(ctx, tx, h, revoke).await?,
            Some(Body::MaracResearchResponse(r)) => follow::research_answered(ctx, tx, h, r).await?,
            Some(Body::MaracActionUpdate(u)) => follow::action_updated(ctx, tx, h, u).await?,
            _ => {}
        }
        Ok(())
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

    async fn on_tick(&self, ctx: &Ctx) -> anyhow::Result<()> {
        follow::follow_inbox(ctx).await?;
        Ok(())
    }
}
