//! The perpetrator pathways service: behaviour-change programmes, high-harm case management,
//! housing enforcement.
//!
//! Receives `perpetrator.referral` (opens a pathway case; the policy guarantees it never
//! holds where the survivor lives or is moving to, how to contact them, a refuge, or the
//! fact of a MARAC referral or reciprocal move; why he is referred arrives as reason codes
//! and a short summary written for the pathway) and `referral.ack` (a housing provider's
//! answer to an enforcement request). Sends `perpetrator.engagement_update` to the survivor's
//! advocate the referral named, by itself when a case moves to engaged, disengaged or
//! completed, and to no other agency; `perpetrator.enforcement_request` to a housing provider
//! for an action the survivor wants; acknowledgements.
//!
//! - [`case`]: the case's state machine (referred, assessed, engaged, disengaged, completed,
//!   enforcement) and the fixed lists of codes its steps take. Pure.
//! - [`store`]: the service's tables, the one place their columns are written.
//! - [`refs`]: the pathway's own pseudonym of a man, so a repeat is known and his subject
//!   access request answered without the partnership's subject key.
//! - [`intake`]: a referral opens a case; a provider's answer is recorded on its step.
//! - [`casework`]: each step staff take, one transaction each with what it sends; progress
//!   updates; the check that no engagement update went elsewhere (revoked when one did).
//! - [`api`]: the JSON routes; [`pages`]: the caseload, case and his-records pages.
//!
//! Every route is for caseworkers and team managers ([`RULES`]); reads of case content are
//! recorded in the access log and the ledger.

pub mod api;
pub mod case;
pub mod casework;
pub mod intake;
pub mod pages;
pub mod refs;
pub mod store;

use isp::Opened;
use proto::v1::payload::Body;
use runtime::{
    Agency, Ctx, Migration, Tx,
    auth::{Allow, Role, Rule, content, rule},
    console::Nav,
};

pub struct Perpetrator;

/// Who works pathway cases.
const CASEWORK: &[Role] = &[Role::Caseworker, Role::TeamManager];

/// The rule of every route of [`api::routes`] and [`pages::routes`].
pub const RULES: &[Rule] = &[
    content("GET", "/cases", Allow::Roles(CASEWORK)),
    content("GET", "/cases/{id}", Allow::Roles(CASEWORK)),
    rule("POST", "/cases/{id}/assess", Allow::Roles(CASEWORK)),
    rule("POST", "/cases/{id}/engaged", Allow::Roles(CASEWORK)),
    rule("POST", "/cases/{id}/disengaged", Allow::Roles(CASEWORK)),
    rule("POST", "/cases/{id}/completed", Allow::Roles(CASEWORK)),
    rule("POST", "/cases/{id}/enforcement", Allow::Roles(CASEWORK)),
    rule("POST", "/cases/{id}/engagement-updates", Allow::Roles(CASEWORK)),
    content("POST", "/perpetrators", Allow::Roles(CASEWORK)),
    content("GET", "/perpetrators/{ref}", Allow::Roles(CASEWORK)),
    rule("GET", "/console/cases", Allow::Roles(CASEWORK)),
    content("GET", "/console/cases/{id}", Allow::Roles(CASEWORK)),
    rule("POST", "/console/cases/{id}/assess", Allow::Roles(CASEWORK)),
    rule("POST", "/console/cases/{id}/engaged", Allow::Roles(CASEWORK)),
    rule("POST", "/console/cases/{id}/disengaged", Allow::Roles(CASEWORK)),
    rule("POST", "/console/cases/{id}/completed", Allow::Roles(CASEWORK)),
    rule("POST", "/console/cases/{id}/enforcement", Allow::Roles(CASEWORK)),
    rule("POST", "/console/cases/{id}/engagement-updates", Allow::Roles(CASEWORK)),
    rule("GET", "/console/perpetrators", Allow::Roles(CASEWORK)),
    content("POST", "/console/perpetrators", Allow::Roles(CASEWORK)),
    content("GET", "/console/perpetrators/{ref}", Allow::Roles(CASEWORK)),
];

impl Agency for Perpetrator {
    fn migrations(&self) -> Vec<Migration> {
        vec![
            Migration { version: 100, description: "perpetrator", sql: include_str!("../migrations/0100_perpetrator.sql") },
            Migration { version: 101, description: "pathway casework", sql: include_str!("../migrations/0101_pathway.sql") },
            Migration { version: 102, description: "pathway check scan", sql: include_str!("../migrations/0102_pathway_scan.sql") },
        ]
    }

    async fn on_receive(&self, ctx: &Ctx, tx: &mut Tx, opened: &Opened) -> anyhow::Result<()> {
        match &opened.payload.body {
            Some(Body::PerpetratorReferral(r)) => intake::referral_received(ctx, tx, opened, r).await,
            Some(Body::ReferralAck(ack)) => intake::answer_received(ctx, tx, opened, ack).await,
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

    async fn on_tick(&self, ctx: &Ctx) -> anyhow::Result<()> {
        casework::check_sent(ctx).await?;
        Ok(())
    }
}
