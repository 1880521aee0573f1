//! The housing service: council housing solutions, landlord services and housing
//! associations.
//!
//! - DASH risk checklists are recorded by the runtime (`POST /dash-assessments`, the console's
//!   DASH page), as every agency that refers high-risk cases records them.
//! - Sends: `housing.idva_referral`, `marac.referral`, `reciprocal.request`,
//!   `perpetrator.referral`, `marac.research_response`, `reciprocal.offer` (through the generic
//!   `POST /disclosures`).
//! - Receives: `marac.research_request`, `marac.action`, `reciprocal.property_request` (kept
//!   as open property requests a landlord can offer against), `reciprocal.offer_response`,
//!   `perpetrator.engagement_update`, `referral.ack`.

use runtime::auth::{Allow, Role, Rule, content};
use axum::{Json, Router, extract::{Query, State}, routing::get};
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
        ]
    }

    async fn on_receive(&self, ctx: &Ctx, tx: &mut Tx, opened: &Opened) -> anyhow::Result<()> {
        let h = &opened.header;
        match &opened.payload.body {
            Some(Body::ReciprocalPropertyRequest(p)) => {
                let household = p.household.clone().unwrap_or_default();
                sqlx::query(
                    "INSERT INTO property_requests (application_ref, envelope_id, coordinator, areas, bedrooms_needed, status, received_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, 'open', $6) ON CONFLICT DO NOTHING",
                )
                .bind(&p.application_ref)
                .bind(&h.envelope_id)
                .bind(&h.sender)
                .bind(ctx.seal_at_rest(&p.areas.join(","))?)
                .bind(household.bedrooms_needed as i64)
                .bind(isp::now_ms())
                .execute(&mut **tx)
                .await?;
            }
            Some(Body::ReciprocalOfferResponse(r)) => {
                sqlx::query("UPDATE property_requests SET status = $1 WHERE application_ref = $2")
                    .bind(if r.accepted { "offer_accepted" } else { "offer_refused" })
                    .bind(&r.application_ref)
                    .execute(&mut **tx)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    fn routes(&self) -> Router<Ctx> {
        Router::new()
            .route("/property-requests", get(property_requests))
    }

    fn rules(&self) -> &'static [Rule] {
        const RULES: &[Rule] = &[
            content("GET", "/property-requests", Allow::Roles(&[Role::Caseworker, Role::TeamManager, Role::ReciprocalsCoordinator])),
        ];
        RULES
    }
}

/// `GET /property-requests`, paged by `envelope_id`.
async fn property_requests(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = page.rows(&ctx.pool, "SELECT application_ref, envelope_id, coordinator, areas, bedrooms_needed, status, received_at_ms FROM property_requests", "envelope_id").await?;
    let items = rows
        .iter()
        .map(|r| {
            let mut v = runtime::api::row_json(r, &["application_ref", "envelope_id", "coordinator", "status"], &["bedrooms_needed", "received_at_ms"], &[]);
            v["areas"] = runtime::api::opened_list(&ctx, r, "areas")?;
            Ok(v)
        })
        .collect::<Result<Vec<Value>, ApiError>>()?;
    Ok(Json(Value::Array(items)))
}
