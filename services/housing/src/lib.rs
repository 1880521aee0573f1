//! The housing service: council housing solutions, landlord services and housing
//! associations.
//!
//! - DASH risk checklists are recorded by the runtime (`POST /dash-assessments`, the console's
//!   DASH page), as every agency that refers high-risk cases records them.
//! - [`uaf`]: the universal assessment form, asked once, saved in versions, carried in
//!   referrals section by section.
//! - [`options`]: the housing route chosen (Whole Housing Approach) and the refuge referrals
//!   sent; [`sanctuary`]: sanctuary schemes, never installed while the person causing harm
//!   lives at the address; [`funding`]: flexible funding, approved by another manager, never
//!   overspent.
//! - [`panel`]: the weekly domestic abuse points panel and its decisions.
//! - [`concerns`]: early detectors' concerns and their triage, against a deadline.
//! - [`reciprocal`]: the reciprocal scheme from a landlord's side: every status of its move
//!   applications, its named lead's approval, the referrer's new areas or withdrawal, and the
//!   property requests circulated to it with the answers to its offers.
//! - [`console`]: the pages for each; [`common`]: what they share.
//! - Sends: `housing.idva_referral`, `housing.refuge_referral`, `marac.referral`,
//!   `reciprocal.request`, `perpetrator.referral`, `marac.research_response`, `reciprocal.offer`,
//!   `reciprocal.move_completed` (through the generic `POST /disclosures`); `reciprocal.approval`
//!   and `reciprocal.update` ([`reciprocal`]).
//! - Receives: `marac.research_request`, `marac.action`, `reciprocal.property_request` (kept
//!   as open property requests a landlord can offer against), `reciprocal.offer_response`,
//!   `reciprocal.status`, `perpetrator.engagement_update`, `referral.ack`.

pub mod common;
pub mod concerns;
pub mod console;
pub mod funding;
pub mod options;
pub mod panel;
pub mod reciprocal;
pub mod sanctuary;
pub mod uaf;

use runtime::auth::{Allow, Role, Rule, content, rule};
use axum::{Json, Router, extract::{Query, State}, routing::{get, post}};
use runtime::api::Page;
use isp::Opened;
use proto::v1::payload::Body;
use runtime::{Agency, Ctx, Migration, Tx, api::ApiError};
use serde_json::Value;

pub struct Housing;

impl Agency for Housing {
    fn migrations(&self) -> Vec<Migration> {
        vec![
            Migration { version: 100, description: "housing", sql: include_str!("../migrations/0100_housing.sql") },
            Migration { version: 101, description: "dash to the runtime", sql: include_str!("../migrations/0101_dash_to_runtime.sql") },
            Migration { version: 102, description: "housing casework", sql: include_str!("../migrations/0102_casework.sql") },
            Migration { version: 121, description: "reciprocal scheme", sql: include_str!("../migrations/0121_reciprocal_scheme.sql") },
        ]
    }

    async fn on_receive(&self, ctx: &Ctx, tx: &mut Tx, opened: &Opened) -> anyhow::Result<()> {
        let h = &opened.header;
        match &opened.payload.body {
            Some(Body::ReciprocalPropertyRequest(p)) => reciprocal::property_request_received(ctx, tx, h, p).await,
            Some(Body::ReciprocalOfferResponse(r)) => reciprocal::offer_response_received(ctx, tx, h, r).await,
            Some(Body::ReciprocalStatus(s)) => reciprocal::status_received(ctx, tx, h, s).await,
            _ => Ok(()),
        }
    }

    fn routes(&self) -> Router<Ctx> {
        Router::new()
            .route("/property-requests", get(property_requests))
            .route("/universal-assessments", post(uaf::post).get(uaf::list))
            .route("/universal-assessments/{id}", get(uaf::one))
            .route("/housing-routes", post(options::post_route).get(options::list_routes))
            .route("/sanctuary-schemes", post(sanctuary::post).get(sanctuary::list))
            .route("/sanctuary-schemes/{id}/survey", post(sanctuary::post_survey))
            .route("/sanctuary-schemes/{id}/install", post(sanctuary::post_install))
            .route("/sanctuary-schemes/{id}/refuse", post(sanctuary::post_refuse))
            .route("/funding-requests", post(funding::post).get(funding::list))
            .route("/funding-requests/{id}/decision", post(funding::post_decision))
            .route("/funding-requests/{id}/spend", post(funding::post_spend))
            .route("/panel-meetings", post(panel::post_meeting).get(panel::list_meetings))
            .route("/panel-meetings/{id}", get(panel::get_meeting))
            .route("/panel-meetings/{id}/applications", post(panel::post_application))
            .route("/panel-applications/{id}/decision", post(panel::post_decision))
            .route("/concerns", post(concerns::post).get(concerns::list))
            .route("/concerns/{id}", get(concerns::get_one))
            .route("/concerns/{id}/triage", post(concerns::post_triage))
            .merge(reciprocal::routes())
            .merge(console::routes())
    }

    fn rules(&self) -> &'static [Rule] {
        RULES
    }

    fn nav(&self) -> &'static [runtime::console::Nav] {
        console::NAV
    }
}

/// The housing domestic abuse team: caseworkers and their managers.
const DA_TEAM: Allow = Allow::Roles(&[Role::Caseworker, Role::TeamManager]);

/// Who may call each of the service's own routes and pages.
pub const RULES: &[Rule] = &[
    content("GET", "/property-requests", Allow::Roles(&[Role::Caseworker, Role::TeamManager, Role::ReciprocalsCoordinator])),
    rule("POST", "/universal-assessments", DA_TEAM),
    content("GET", "/universal-assessments", DA_TEAM),
    content("GET", "/universal-assessments/{id}", DA_TEAM),
    rule("POST", "/housing-routes", DA_TEAM),
    content("GET", "/housing-routes", DA_TEAM),
    rule("POST", "/sanctuary-schemes", DA_TEAM),
    content("GET", "/sanctuary-schemes", DA_TEAM),
    rule("POST", "/sanctuary-schemes/{id}/survey", DA_TEAM),
    rule("POST", "/sanctuary-schemes/{id}/install", DA_TEAM),
    rule("POST", "/sanctuary-schemes/{id}/refuse", DA_TEAM),
    rule("POST", "/funding-requests", DA_TEAM),
    content("GET", "/funding-requests", DA_TEAM),
    // Approval by a manager, never the one who asked (checked in funding::decide).
    rule("POST", "/funding-requests/{id}/decision", Allow::Roles(&[Role::TeamManager])),
    rule("POST", "/funding-requests/{id}/spend", DA_TEAM),
    rule("POST", "/panel-meetings", DA_TEAM),
    rule("GET", "/panel-meetings", DA_TEAM),
    content("GET", "/panel-meetings/{id}", DA_TEAM),
    rule("POST", "/panel-meetings/{id}/applications", DA_TEAM),
    rule("POST", "/panel-applications/{id}/decision", DA_TEAM),
    // Early detectors hold no cases and have no role of their own: any staff member of the
    // service may raise a concern; only the domestic abuse team reads them.
    rule("POST", "/concerns", Allow::AnyStaff),
    content("GET", "/concerns", DA_TEAM),
    content("GET", "/concerns/{id}", DA_TEAM),
    rule("POST", "/concerns/{id}/triage", DA_TEAM),
    rule("GET", console::CONCERN_FORM, Allow::AnyStaff),
    rule("POST", console::CONCERN_FORM, Allow::AnyStaff),
    rule("GET", "/console/concerns", DA_TEAM),
    content("GET", "/console/concerns/{id}", DA_TEAM),
    rule("POST", "/console/concerns/{id}/triage", DA_TEAM),
    rule("GET", "/console/housing", DA_TEAM),
    rule("POST", "/console/housing", DA_TEAM),
    content("GET", "/console/housing/{subject_ref}", DA_TEAM),
    content("GET", "/console/housing/{subject_ref}/uaf", DA_TEAM),
    rule("POST", "/console/housing/{subject_ref}/uaf", DA_TEAM),
    rule("POST", "/console/housing/{subject_ref}/route", DA_TEAM),
    rule("POST", "/console/housing/{subject_ref}/sanctuary", DA_TEAM),
    rule("POST", "/console/housing/{subject_ref}/funding", DA_TEAM),
    content("GET", "/console/universal-assessments/{id}", DA_TEAM),
    rule("POST", "/console/sanctuary/{id}", DA_TEAM),
    rule("POST", "/console/funding/{id}/spend", DA_TEAM),
    rule("POST", "/console/funding/{id}/decision", Allow::Roles(&[Role::TeamManager])),
    rule("GET", "/console/panel", DA_TEAM),
    rule("POST", "/console/panel", DA_TEAM),
    content("GET", "/console/panel/{id}", DA_TEAM),
    rule("POST", "/console/panel/{id}/applications", DA_TEAM),
    rule("POST", "/console/panel-applications/{id}/decision", DA_TEAM),
    // The reciprocal scheme: the named lead who approves a tenant's move is a team manager,
    // acting from their own login.
    content("GET", "/reciprocal-applications", DA_TEAM),
    content("GET", "/reciprocal-applications/{reference}", DA_TEAM),
    rule("POST", "/reciprocal-applications/{reference}/approval", Allow::Roles(&[Role::TeamManager])),
    rule("POST", "/reciprocal-applications/{reference}/areas", DA_TEAM),
    rule("POST", "/reciprocal-applications/{reference}/withdraw", DA_TEAM),
    rule("GET", "/console/reciprocals", DA_TEAM),
    content("GET", "/console/reciprocals/{reference}", DA_TEAM),
    rule("POST", "/console/reciprocals/{reference}/approval", Allow::Roles(&[Role::TeamManager])),
    rule("POST", "/console/reciprocals/{reference}/areas", DA_TEAM),
    rule("POST", "/console/reciprocals/{reference}/withdraw", DA_TEAM),
];

/// `GET /property-requests`, paged by `envelope_id`.
async fn property_requests(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = page
        .rows(&ctx.pool, "SELECT application_ref, envelope_id, coordinator, areas, bedrooms_needed, status, reason, received_at_ms, updated_at_ms FROM property_requests", "envelope_id")
        .await?;
    let items = rows
        .iter()
        .map(|r| {
            let mut v = runtime::api::row_json(r, &["application_ref", "envelope_id", "coordinator", "status", "reason"], &["bedrooms_needed", "received_at_ms", "updated_at_ms"], &[]);
            v["areas"] = runtime::api::opened_list(&ctx, r, "areas")?;
            Ok(v)
        })
        .collect::<Result<Vec<Value>, ApiError>>()?;
    Ok(Json(Value::Array(items)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use isp::{Kind, Policy, Role, Schema, policy::Request};
    use proto::v1::{ConsentState as C, RiskLevel as R};

    fn shipped() -> (Policy, Schema) {
        let schema = Schema::load().expect("schema");
        (Policy::from_toml(isp::policy::DEMO_POLICY, &schema).expect("the shipped policy"), schema)
    }

    fn request<'a>(to: Role, kind: Kind, purpose: &'a str, basis: &'a str, consent: C, risk: R, categories: &'a BTreeSet<String>) -> Request<'a> {
        Request { from: Role::Housing, to, kind, purpose, lawful_basis: basis, consent, risk, categories }
    }

    #[test]
    fn each_uaf_section_goes_only_where_the_policy_says() {
        let (policy, _) = shipped();
        for (section, _) in crate::uaf::SECTIONS {
            let category = format!("uaf.{section}");
            assert!(policy.receivable(Role::Idva, &category), "the IDVA service takes {category}");
            assert_eq!(policy.receivable(Role::Marac, &category), section != "finances", "MARAC and {category}");
            for role in [Role::Perpetrator, Role::Partner, Role::Reciprocals, Role::Housing, Role::Ig] {
                assert!(!policy.receivable(role, &category), "{role:?} takes {category}");
            }
        }
        assert!(policy.receivable(Role::Idva, "refuge.needs") && !policy.receivable(Role::Perpetrator, "refuge.needs"));
    }

    #[test]
    fn a_referral_carrying_the_assessment_keeps_its_sections_by_recipient() {
        let (policy, schema) = shipped();
        let none = BTreeSet::new();
        let idva = policy.explain(&schema, &request(Role::Idva, Kind::IdvaReferral, "safeguarding", "uk-gdpr-6-1-a", C::Given, R::Standard, &none));
        assert!(idva.allowed && !idva.removed.iter().any(|c| c.starts_with("uaf.")), "{idva:?}");
        let marac = policy.explain(&schema, &request(Role::Marac, Kind::MaracReferral, "marac", "uk-gdpr-6-1-a", C::Given, R::Standard, &none));
        assert!(marac.allowed && marac.removed == ["uaf.finances"], "only the finances section stays behind: {marac:?}");
    }

    #[test]
    fn nothing_of_the_assessment_or_a_refuge_ever_reaches_a_perpetrator_pathway() {
        let (policy, _) = shipped();
        for category in ["uaf.housing", "uaf.safety", "uaf.record", "refuge.needs"] {
            let carried = BTreeSet::from([category.to_owned(), "perpetrator.identity".to_owned()]);
            let refused = policy.decide(&request(Role::Perpetrator, Kind::PerpetratorReferral, "perpetrator-intervention", "cda-1998-s115", C::Given, R::High, &carried));
            assert_eq!(refused.map_err(|d| d.reason), Err("never_allowed_field"), "{category}");
        }
        let none = BTreeSet::new();
        let refuge = policy.decide(&request(Role::Perpetrator, Kind::RefugeReferral, "safeguarding", "uk-gdpr-6-1-a", C::Given, R::High, &none));
        assert_eq!(refuge.map_err(|d| d.reason), Err("never_allowed_kind"));
    }

    #[test]
    fn a_refuge_referral_needs_consent_unless_the_risk_is_high() {
        let (policy, _) = shipped();
        let carried = BTreeSet::from(["survivor.identity".to_owned(), "refuge.needs".to_owned(), "uaf.housing".to_owned()]);
        for (basis, consent, risk, expected) in [
            ("uk-gdpr-6-1-a", C::Given, R::Standard, Ok(("refuge-referral", false))),
            ("uk-gdpr-9-2-g-dpa-s1-p18", C::Refused, R::High, Ok(("refuge-referral", true))),
            ("uk-gdpr-9-2-g-dpa-s1-p18", C::NotSought, R::Medium, Err("consent_required")),
            ("uk-gdpr-6-1-e", C::NotSought, R::High, Err("basis_not_valid_without_consent")),
        ] {
            let decided = policy.decide(&request(Role::Idva, Kind::RefugeReferral, "safeguarding", basis, consent, risk, &carried));
            assert_eq!(decided.as_ref().map(|d| (d.rule.as_str(), d.without_consent)).map_err(|d| d.reason), expected, "{basis} {consent:?} {risk:?}");
        }
        let to_marac = policy.decide(&request(Role::Marac, Kind::RefugeReferral, "safeguarding", "uk-gdpr-6-1-a", C::Given, R::High, &carried));
        assert!(to_marac.is_err(), "a refuge referral goes to the service that places refuge only");
    }
}
