//! The IDVA service: Independent Domestic Violence Advocates for high-risk survivors.
//!
//! Receives `housing.idva_referral` (opens a case awaiting triage, with a deadline for the
//! first contact attempt), `disclosure.revoke` (the referrer's revocation of a referral closes
//! its case), `perpetrator.engagement_update` (filed under the survivor's case: a disengaging
//! perpetrator is a safety signal, an alert on the case and an escalation at once),
//! `marac.research_request`, `marac.action`, `referral.ack`.
//! Sends `marac.referral`, `reciprocal.request`, `perpetrator.referral`, acknowledgements and
//! research responses through the generic API.
//!
//! - [`case`]: the case's state machine (awaiting triage, triaged, contact attempted, engaged
//!   or not reached, closed) and the fixed lists of codes its steps take. Pure.
//! - [`store`]: the service's tables, the one place their columns are written.
//! - [`casework`]: each step staff take on a case, one transaction each, recorded in the
//!   person's chronology; contact attempts; the versioned safety plan, sealed at rest.
//! - [`follow`]: the case follows its referral: opened on receipt, closed on revocation,
//!   marked and flagged when the consent it relied on is withdrawn (checked every tick).
//! - [`perpetrator`]: what a perpetrator pathway reports, filed under the survivor's case; a
//!   disengagement alert until the safety plan is reviewed.
//! - [`api`]: the JSON routes; [`pages`]: the caseload and case pages of the console.
//!
//! Every route is for caseworkers and team managers ([`RULES`]); reads of case content are
//! recorded in the access log and the ledger.

pub mod api;
pub mod case;
pub mod casework;
pub mod follow;
pub mod pages;
pub mod perpetrator;
pub mod store;

use isp::Opened;
use proto::v1::payload::Body;
use runtime::{
    Agency, ArrivalRows, Ctx, Migration, Tx,
    auth::{Allow, Role, Rule, content, rule},
    console::Nav,
};

pub struct Idva;

/// Who works IDVA cases.
const CASEWORK: &[Role] = &[Role::Caseworker, Role::TeamManager];

/// The rule of every route of [`api::routes`] and [`pages::routes`].
pub const RULES: &[Rule] = &[
    content("GET", "/cases", Allow::Roles(CASEWORK)),
    content("GET", "/cases/{id}", Allow::Roles(CASEWORK)),
    rule("POST", "/cases/{id}/triage", Allow::Roles(CASEWORK)),
    rule("POST", "/cases/{id}/contact-attempts", Allow::Roles(CASEWORK)),
    rule("POST", "/cases/{id}/engaged", Allow::Roles(CASEWORK)),
    rule("POST", "/cases/{id}/not-reached", Allow::Roles(CASEWORK)),
    rule("POST", "/cases/{id}/close", Allow::Roles(CASEWORK)),
    content("GET", "/cases/{id}/safety-plan", Allow::Roles(CASEWORK)),
    rule("POST", "/cases/{id}/safety-plan", Allow::Roles(CASEWORK)),
    rule("POST", "/cases/{id}/safety-plan-reviewed", Allow::Roles(CASEWORK)),
    content("GET", "/engagement", Allow::Roles(CASEWORK)),
    rule("GET", "/console/cases", Allow::Roles(CASEWORK)),
    content("GET", "/console/cases/{id}", Allow::Roles(CASEWORK)),
    rule("POST", "/console/cases/{id}/triage", Allow::Roles(CASEWORK)),
    rule("POST", "/console/cases/{id}/contact-attempts", Allow::Roles(CASEWORK)),
    rule("POST", "/console/cases/{id}/engaged", Allow::Roles(CASEWORK)),
    rule("POST", "/console/cases/{id}/not-reached", Allow::Roles(CASEWORK)),
    rule("POST", "/console/cases/{id}/close", Allow::Roles(CASEWORK)),
    rule("POST", "/console/cases/{id}/safety-plan", Allow::Roles(CASEWORK)),
    rule("POST", "/console/cases/{id}/safety-plan-reviewed", Allow::Roles(CASEWORK)),
];

impl Agency for Idva {
    fn migrations(&self) -> Vec<Migration> {
        vec![
            Migration { version: 100, description: "idva", sql: include_str!("../migrations/0100_idva.sql") },
            Migration { version: 101, description: "idva casework", sql: include_str!("../migrations/0101_casework.sql") },
            Migration { version: 102, description: "idva perpetrator alerts", sql: include_str!("../migrations/0102_perpetrator_alerts.sql") },
        ]
    }

    /// One envelope is a batch of one.
    async fn on_receive(&self, ctx: &Ctx, tx: &mut Tx, opened: &Opened) -> anyhow::Result<()> {
        let mut rows = ArrivalRows::default();
        self.on_receive_batch(ctx, tx, &[opened], &mut rows).await?;
        Ok(rows.flush(tx).await?)
    }

    /// Referrals arriving together open their cases together; anything else between them
    /// (a revocation, a perpetrator programme's update) is handled in its place, in stream
    /// order, after what came before it is written.
    async fn on_receive_batch(&self, ctx: &Ctx, tx: &mut Tx, opened: &[&Opened], rows: &mut ArrivalRows) -> anyhow::Result<()> {
        let mut referrals = Vec::new();
        for o in opened {
            let h = &o.header;
            if matches!(o.payload.body, Some(Body::IdvaReferral(_))) {
                referrals.push(h);
                continue;
            }
            follow::referrals_received(ctx, tx, &referrals, rows).await?;
            referrals.clear();
            rows.flush(tx).await?;
            match &o.payload.body {
                Some(Body::DisclosureRevoke(revoke)) => follow::referral_revoked(ctx, tx, h, revoke).await?,
                Some(Body::PerpetratorEngagementUpdate(u)) => perpetrator::update_received(ctx, tx, h, u).await?,
                _ => {}
            }
        }
        follow::referrals_received(ctx, tx, &referrals, rows).await
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
        follow::check_consents(ctx).await?;
        Ok(())
    }
}
