//! The perpetrator pathways service: behaviour-change programmes, high-harm case
//! management, housing enforcement.
//!
//! Receives `perpetrator.referral` (opens a pathway case; the policy guarantees it never
//! holds where the survivor lives or is moving to, how to contact them, a refuge, or the
//! fact of a MARAC referral or reciprocal move) and `referral.ack`. Sends
//! `perpetrator.engagement_update` to the survivor's advocate, and acknowledgements.

use runtime::auth::{Allow, Role, Rule, content};
use axum::{Json, Router, extract::{Query, State}, routing::get};
use runtime::api::Page;
use isp::Opened;
use proto::v1::payload::Body;
use runtime::{Agency, Ctx, Migration, Tx, api::ApiError};
use serde_json::Value;

pub struct Perpetrator;

impl Agency for Perpetrator {
    fn migrations(&self) -> Vec<Migration> {
        vec![Migration { version: 100, description: "perpetrator", sql: include_str!("../migrations/0100_perpetrator.sql") }]
    }

    async fn on_receive(&self, _ctx: &Ctx, tx: &mut Tx, opened: &Opened) -> anyhow::Result<()> {
        let h = &opened.header;
        if let Some(Body::PerpetratorReferral(r)) = &opened.payload.body {
            sqlx::query(
                "INSERT INTO pathway_cases (envelope_id, subject_ref, referrer, pathway, report_engagement_to, status, received_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, 'new', $6) ON CONFLICT DO NOTHING",
            )
            .bind(&h.envelope_id)
            .bind(&h.subject_ref)
            .bind(&h.sender)
            .bind(r.pathway().as_str_name())
            .bind(&r.report_engagement_to)
            .bind(isp::now_ms())
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    fn routes(&self) -> Router<Ctx> {
        Router::new().route("/cases", get(cases))
    }

    fn rules(&self) -> &'static [Rule] {
        const RULES: &[Rule] = &[content("GET", "/cases", Allow::Roles(&[Role::Caseworker, Role::TeamManager]))];
        RULES
    }
}

/// `GET /cases`, paged by `envelope_id`.
async fn cases(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = page.rows(&ctx.pool, "SELECT envelope_id, subject_ref, referrer, pathway, report_engagement_to, status, received_at_ms FROM pathway_cases", "envelope_id").await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|r| runtime::api::row_json(r, &["envelope_id", "subject_ref", "referrer", "pathway", "report_engagement_to", "status"], &["received_at_ms"], &[]))
            .collect(),
    )))
}
