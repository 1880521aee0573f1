//! The IDVA service: Independent Domestic Violence Advocates for high-risk survivors.
//!
//! Receives `housing.idva_referral` (opens a case with a triage deadline: referrals are
//! reviewed within 48 hours), `perpetrator.engagement_update` (kept against the case: a
//! disengaging perpetrator is a safety signal), `marac.research_request`, `marac.action`,
//! `referral.ack`. Sends `marac.referral`, `reciprocal.request`, `perpetrator.referral`,
//! acknowledgements and research responses through the generic API.
//!
//! - [`case`]: the case's state machine and the fixed lists of codes its steps take. Pure.

pub mod case;

use runtime::auth::{Allow, Role, Rule, content};
use axum::{Json, Router, extract::{Query, State}, routing::get};
use runtime::api::Page;
use sqlx::Row as _;
use isp::Opened;
use proto::v1::payload::Body;
use runtime::{Agency, Ctx, Migration, Tx, api::ApiError};
use serde_json::Value;

/// Triage deadline after a referral arrives.
pub const TRIAGE_WITHIN_MS: i64 = 48 * 3600 * 1000;

pub struct Idva;

impl Agency for Idva {
    fn migrations(&self) -> Vec<Migration> {
        vec![Migration { version: 100, description: "idva", sql: include_str!("../migrations/0100_idva.sql") }]
    }

    async fn on_receive(&self, ctx: &Ctx, tx: &mut Tx, opened: &Opened) -> anyhow::Result<()> {
        let h = &opened.header;
        let now = isp::now_ms();
        match &opened.payload.body {
            Some(Body::IdvaReferral(_)) => {
                sqlx::query(
                    "INSERT INTO idva_cases (envelope_id, subject_ref, referrer, risk, status, triage_due_ms, received_at_ms) \
                     VALUES ($1, $2, $3, $4, 'awaiting_triage', $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(&h.envelope_id)
                .bind(&h.subject_ref)
                .bind(&h.sender)
                .bind(isp::policy::risk_name(h.risk()))
                .bind(now + TRIAGE_WITHIN_MS)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            Some(Body::PerpetratorEngagementUpdate(u)) => {
                let subject_ref = own_subject(ctx, tx, &h.sender, &h.subject_ref).await?;
                sqlx::query(
                    "INSERT INTO engagement_updates (envelope_id, subject_ref, pathway_agency, engagement, received_at_ms) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&h.envelope_id)
                .bind(&subject_ref)
                .bind(&h.sender)
                .bind(u.engagement().as_str_name())
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            _ => {}
        }
        Ok(())
    }

    fn routes(&self) -> Router<Ctx> {
        Router::new().route("/cases", get(cases)).route("/engagement", get(engagement))
    }

    fn rules(&self) -> &'static [Rule] {
        const RULES: &[Rule] = &[
            content("GET", "/cases", Allow::Roles(&[Role::Caseworker, Role::TeamManager])),
            content("GET", "/engagement", Allow::Roles(&[Role::Caseworker, Role::TeamManager])),
        ];
        RULES
    }
}

/// The survivor's subject ref behind what an agency without the subject key (a perpetrator
/// pathway) calls her: the link token it was given for her, matched against this service's
/// cases. A token that matches none stays as it is.
async fn own_subject(ctx: &Ctx, tx: &mut Tx, pathway: &str, reference: &str) -> anyhow::Result<String> {
    if !reference.starts_with("l-") {
        return Ok(reference.to_owned());
    }
    let keys = &ctx.isp().keys;
    let subjects = sqlx::query("SELECT DISTINCT subject_ref FROM idva_cases").fetch_all(&mut **tx).await?;
    for row in subjects {
        let subject: String = row.try_get("subject_ref")?;
        if keys.link_ref(pathway, &subject).is_ok_and(|link| link == reference) {
            return Ok(subject);
        }
    }
    Ok(reference.to_owned())
}

/// `GET /cases`, paged by `envelope_id`.
async fn cases(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = page.rows(&ctx.pool, "SELECT envelope_id, subject_ref, referrer, risk, status, triage_due_ms, received_at_ms FROM idva_cases", "envelope_id").await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|r| runtime::api::row_json(r, &["envelope_id", "subject_ref", "referrer", "risk", "status"], &["triage_due_ms", "received_at_ms"], &[]))
            .collect(),
    )))
}

/// `GET /engagement`, paged by `envelope_id`.
async fn engagement(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = page.rows(&ctx.pool, "SELECT envelope_id, subject_ref, pathway_agency, engagement, received_at_ms FROM engagement_updates", "envelope_id").await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|r| runtime::api::row_json(r, &["envelope_id", "subject_ref", "pathway_agency", "engagement"], &["received_at_ms"], &[]))
            .collect(),
    )))
}
