//! The MARAC coordinator's service.
//!
//! Receives `marac.referral`: checks the criteria (visible high risk: DASH 14+; professional
//! judgement; potential escalation; repeat) and detects repeats by the pseudonymous subject
//! ref: the same survivor referred again within 12 months of the last referral is a repeat,
//! whatever the local threshold. Receives `marac.research_response` and
//! `marac.action_update`. Sends `marac.research_request` and `marac.action` to members.

use runtime::auth::{Allow, Role, Rule, content, rule};
use axum::{Json, Router, extract::{Query, State}, routing::get};
use runtime::api::Page;
use isp::Opened;
use proto::v1::{MaracCriterion, payload::Body};
use runtime::{Agency, Ctx, Migration, Tx, api::ApiError};
use serde_json::Value;
use sqlx::Row;

/// The repeat window: 12 months.
pub const REPEAT_WITHIN_MS: i64 = 365 * 24 * 3600 * 1000;

pub struct Marac;

impl Agency for Marac {
    fn migrations(&self) -> Vec<Migration> {
        vec![Migration { version: 100, description: "marac", sql: include_str!("../migrations/0100_marac.sql") }]
    }

    async fn on_receive(&self, _ctx: &Ctx, tx: &mut Tx, opened: &Opened) -> anyhow::Result<()> {
        let h = &opened.header;
        let now = isp::now_ms();
        match &opened.payload.body {
            Some(Body::MaracReferral(r)) => {
                let previous = sqlx::query("SELECT MAX(received_at_ms) AS last FROM marac_cases WHERE subject_ref = $1")
                    .bind(&h.subject_ref)
                    .fetch_one(&mut **tx)
                    .await?;
                let last: Option<i64> = previous.try_get("last").ok().flatten();
                let repeat = !h.subject_ref.is_empty() && last.is_some_and(|t| now - t <= REPEAT_WITHIN_MS);
                let mut criteria: Vec<&str> = r.criteria().map(|c| c.as_str_name()).collect();
                let dash_high = r.dash.as_ref().is_some_and(|d| d.score >= 14);
                if dash_high && !r.criteria().any(|c| c == MaracCriterion::VisibleHighRisk) {
                    criteria.push(MaracCriterion::VisibleHighRisk.as_str_name());
                }
                if repeat {
                    criteria.push(MaracCriterion::Repeat.as_str_name());
                }
                let meets = !criteria.is_empty();
                sqlx::query(
                    "INSERT INTO marac_cases (envelope_id, subject_ref, referrer, criteria, repeat_referral, meets_criteria, status, received_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                )
                .bind(&h.envelope_id)
                .bind(&h.subject_ref)
                .bind(&h.sender)
                .bind(criteria.join(","))
                .bind(repeat as i64)
                .bind(meets as i64)
                .bind(if meets { "listed" } else { "criteria_not_met" })
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            Some(Body::MaracActionUpdate(u)) => {
                sqlx::query("UPDATE marac_actions SET status = $1 WHERE action_id = $2 AND owner_agency = $3")
                    .bind(u.status().as_str_name())
                    .bind(&u.action_id)
                    .bind(&h.sender)
                    .execute(&mut **tx)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    fn routes(&self) -> Router<Ctx> {
        Router::new().route("/cases", get(cases)).route("/actions", axum::routing::post(record_action).get(actions))
    }

    fn rules(&self) -> &'static [Rule] {
        const RULES: &[Rule] = &[
            content("GET", "/cases", Allow::Roles(&[Role::MaracCoordinator, Role::TeamManager])),
            rule("POST", "/actions", Allow::Roles(&[Role::MaracCoordinator])),
            content("GET", "/actions", Allow::Roles(&[Role::MaracCoordinator, Role::TeamManager])),
        ];
        RULES
    }
}

#[derive(Debug, serde::Deserialize)]
struct ActionInput {
    owner_agency: String,
    description: String,
    due_date: String,
    #[serde(default)]
    meeting_date: String,
    #[serde(default)]
    subject_ref: String,
    #[serde(default)]
    case_ref: String,
    /// Defaults to the policy's first purpose and basis for marac.action to the owner's role.
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    lawful_basis: Option<String>,
}

/// `POST /actions`: records an action agreed at the meeting and sends it to the owning
/// agency in the same transaction, so an action is never recorded without being sent.
async fn record_action(State(ctx): State<Ctx>, body: axum::body::Bytes) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let input: ActionInput = runtime::api::json_body(&body)?;
    let protocol = ctx.isp();
    let owner = protocol.directory.require(&input.owner_agency).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let defaults = protocol.policy.defaults_for(protocol.role, owner.role, isp::Kind::MaracAction);
    let (purpose, basis) = match (input.purpose, input.lawful_basis, defaults) {
        (Some(p), Some(b), _) => (p, b),
        (p, b, Some((dp, db))) => (p.unwrap_or_else(|| dp.to_owned()), b.unwrap_or_else(|| db.to_owned())),
        _ => return Err(ApiError::conflict("the policy has no rule for sending actions to this agency")),
    };
    let action_id = format!("ACT-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let out = isp::Outgoing {
        recipient: owner.id.clone(),
        kind: isp::Kind::MaracAction,
        purpose,
        lawful_basis: basis,
        consent: None,
        risk: proto::v1::RiskLevel::High,
        subject_ref: input.subject_ref,
        case_ref: input.case_ref,
        in_reply_to: String::new(),
        justification: None,
        payload: proto::v1::Payload {
            body: Some(Body::MaracAction(proto::v1::MaracAction {
                action_id: action_id.clone(),
                meeting_date: input.meeting_date,
                description: input.description,
                owner_agency: owner.id.clone(),
                due_date: input.due_date,
            })),
        },
    };
    let mut tx = ctx.pool.begin().await?;
    let sent = ctx.send_in(&mut tx, &out).await;
    if sent.is_ok() {
        sqlx::query("INSERT INTO marac_actions (action_id, owner_agency, status) VALUES ($1, $2, 'ACTION_STATUS_IN_PROGRESS')")
            .bind(&action_id)
            .bind(&owner.id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    let sent = sent?;
    Ok((axum::http::StatusCode::CREATED, Json(serde_json::json!({"action_id": action_id, "disclosure": sent}))))
}

/// `GET /actions`, paged by `action_id`.
async fn actions(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = page.rows(&ctx.pool, "SELECT action_id, owner_agency, status FROM marac_actions", "action_id").await?;
    Ok(Json(Value::Array(rows.iter().map(|r| runtime::api::row_json(r, &["action_id", "owner_agency", "status"], &[], &[])).collect())))
}

/// `GET /cases`, paged by `envelope_id`.
async fn cases(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let select = "SELECT envelope_id, subject_ref, referrer, criteria, repeat_referral, meets_criteria, status, received_at_ms FROM marac_cases";
    let rows = page.rows(&ctx.pool, select, "envelope_id").await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|r| {
                let mut v = runtime::api::row_json(r, &["envelope_id", "subject_ref", "referrer", "status"], &["received_at_ms"], &["criteria"]);
                v["repeat"] = Value::Bool(r.try_get::<i64, _>("repeat_referral").unwrap_or_default() != 0);
                v["meets_criteria"] = Value::Bool(r.try_get::<i64, _>("meets_criteria").unwrap_or_default() != 0);
                v
            })
            .collect(),
    )))
}
