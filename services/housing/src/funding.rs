//! Flexible funding: small sums for whatever stands between a survivor and a safe home (a
//! deposit, rent in advance, a car repair, school transport, removals, furniture).
//!
//! A caseworker requests an amount (in pence) for a purpose from a fixed list; a team manager
//! who is not the requester approves or declines it; spends are recorded against the approved
//! amount, and one that would go beyond it is refused (checked and added in one statement, so
//! two spends at once cannot both pass).

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
};
use runtime::{
    Ctx,
    api::{ApiError, SubjectIdentity, json_body, row_json},
    auth::Staff,
    chronology,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::{common, common::codes};

codes!(
    /// What a sum is for.
    Purpose {
        Deposit = "deposit": "Deposit",
        RentInAdvance = "rent_in_advance": "Rent in advance",
        CarRepairs = "car_repairs": "Car repairs",
        SchoolTransport = "school_transport": "School transport",
        Removals = "removals": "Removals",
        Furniture = "furniture": "Furniture",
        Other = "other": "Other (in the note)",
    }
);

codes!(
    /// Where a request has got to.
    Status {
        Requested = "requested": "Awaiting a decision",
        Approved = "approved": "Approved",
        Declined = "declined": "Declined",
    }
);

/// The largest sum taken: a guard against a mistyped amount, not a local limit (which the
/// approving manager applies).
pub const MAX_PENCE: i64 = 5_000_000;

/// `POST /funding-requests`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    #[serde(default)]
    pub case_ref: String,
    #[serde(default)]
    pub subject: Option<SubjectIdentity>,
    #[serde(default)]
    pub subject_ref: Option<String>,
    pub purpose: String,
    pub amount_pence: i64,
    #[serde(default)]
    pub note: String,
}

/// `POST /funding-requests/{id}/decision`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    /// approved or declined.
    pub decision: String,
    #[serde(default)]
    pub reason: String,
}

/// `POST /funding-requests/{id}/spend`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendInput {
    pub amount_pence: i64,
    #[serde(default)]
    pub note: String,
}

impl std::fmt::Debug for RequestInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestInput").field("purpose", &self.purpose).field("amount_pence", &self.amount_pence).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DecisionInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionInput").field("decision", &self.decision).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SpendInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpendInput").field("amount_pence", &self.amount_pence).finish_non_exhaustive()
    }
}

/// An amount in pence that can be requested or spent.
fn amount(field: &str, pence: i64) -> Result<i64, ApiError> {
    if (1..=MAX_PENCE).contains(&pence) {
        Ok(pence)
    } else {
        Err(ApiError::bad_request(format!("{field} is a whole number of pence, 1 to {MAX_PENCE} ({})", common::pounds(MAX_PENCE))))
    }
}

/// A request's clear facts.
struct Funding {
    subject_ref: String,
    case_ref: String,
    status: Status,
    requested_by: String,
    amount_pence: i64,
    spent_pence: i64,
}

async fn funding(ctx: &Ctx, id: &str) -> Result<Funding, ApiError> {
    common::id(id)?;
    let r = sqlx::query("SELECT subject_ref, case_ref, status, requested_by, amount_pence, spent_pence FROM funding_requests WHERE id = $1")
        .bind(id)
        .fetch_optional(&ctx.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("flexible funding request"))?;
    let status: String = r.try_get("status")?;
    Ok(Funding {
        subject_ref: r.try_get("subject_ref")?,
        case_ref: r.try_get("case_ref")?,
        status: Status::parse(&status).ok_or_else(|| ApiError::internal("a funding request of an unknown status"))?,
        requested_by: r.try_get("requested_by")?,
        amount_pence: r.try_get("amount_pence")?,
        spent_pence: r.try_get("spent_pence")?,
    })
}

async fn step(tx: &mut runtime::Tx, f: &Funding, id: &str, code: &str, staff: &Staff, now: i64) -> Result<(), ApiError> {
    let entry = chronology::Entry {
        subject_ref: f.subject_ref.clone(),
        case_ref: f.case_ref.clone(),
        event: "flexible_funding".into(),
        code: code.into(),
        item_id: id.into(),
        staff_id: staff.id.clone(),
        at_ms: now,
        ..Default::default()
    };
    chronology::add(tx, &entry).await?;
    Ok(())
}

/// Records a request for a sum.
pub async fn request(ctx: &Ctx, staff: &Staff, input: &RequestInput) -> Result<Value, ApiError> {
    let subject_ref = common::subject_of(ctx, input.subject.as_ref(), input.subject_ref.as_deref())?;
    common::case_ref(&input.case_ref)?;
    let purpose = Purpose::parse(&input.purpose).ok_or_else(|| ApiError::bad_request(format!("purpose is one of {}", Purpose::codes())))?;
    let pence = amount("amount_pence", input.amount_pence)?;
    if purpose == Purpose::Other && input.note.trim().is_empty() {
        return Err(ApiError::bad_request("note: say what the sum is for when the purpose is other"));
    }
    let now = common::now(ctx);
    let id = uuid::Uuid::now_v7().to_string();
    let f = Funding { subject_ref: subject_ref.clone(), case_ref: input.case_ref.clone(), status: Status::Requested, requested_by: staff.id.clone(), amount_pence: pence, spent_pence: 0 };
    let mut tx = ctx.pool.begin().await?;
    sqlx::query(
        "INSERT INTO funding_requests (id, subject_ref, case_ref, purpose, amount_pence, status, note, requested_by, requested_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(&f.subject_ref)
    .bind(&f.case_ref)
    .bind(purpose.code())
    .bind(pence)
    .bind(f.status.code())
    .bind(common::seal(ctx, &input.note)?)
    .bind(&staff.id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    step(&mut tx, &f, &id, Status::Requested.code(), staff, now).await?;
    tx.commit().await?;
    Ok(json!({"id": id, "subject_ref": subject_ref, "status": f.status.code(), "amount_pence": pence}))
}

/// A team manager's decision on someone else's request.
pub async fn decide(ctx: &Ctx, staff: &Staff, id: &str, input: &DecisionInput) -> Result<Value, ApiError> {
    let mut f = funding(ctx, id).await?;
    let decision = match Status::parse(&input.decision) {
        Some(d @ (Status::Approved | Status::Declined)) => d,
        _ => return Err(ApiError::bad_request("decision is approved or declined")),
    };
    if f.requested_by == staff.id {
        return Err(common::refusal(StatusCode::FORBIDDEN, "own_request", "a request is decided by a team manager other than the one who made it"));
    }
    if decision == Status::Declined && input.reason.trim().is_empty() {
        return Err(ApiError::bad_request("reason: say why the request is declined"));
    }
    let now = common::now(ctx);
    let mut tx = ctx.pool.begin().await?;
    let done = sqlx::query(
        "UPDATE funding_requests SET status = $1, decided_by = $2, decided_at_ms = $3, decision_reason = $4 WHERE id = $5 AND status = $6 AND requested_by <> $2",
    )
    .bind(decision.code())
    .bind(&staff.id)
    .bind(now)
    .bind(common::seal(ctx, &input.reason)?)
    .bind(id)
    .bind(Status::Requested.code())
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::conflict(format!("this request is already {}", f.status.code())));
    }
    f.status = decision;
    step(&mut tx, &f, id, decision.code(), staff, now).await?;
    tx.commit().await?;
    Ok(json!({"id": id, "status": decision.code(), "decided_by": staff.id}))
}

/// Records a spend against an approved request, refused beyond what is left of it.
pub async fn spend(ctx: &Ctx, staff: &Staff, id: &str, input: &SpendInput) -> Result<Value, ApiError> {
    let f = funding(ctx, id).await?;
    let pence = amount("amount_pence", input.amount_pence)?;
    let now = common::now(ctx);
    let mut tx = ctx.pool.begin().await?;
    let done = sqlx::query("UPDATE funding_requests SET spent_pence = spent_pence + $1 WHERE id = $2 AND status = $3 AND spent_pence + $1 <= amount_pence")
        .bind(pence)
        .bind(id)
        .bind(Status::Approved.code())
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(if f.status != Status::Approved {
            common::refusal(StatusCode::CONFLICT, "not_approved", format!("this request is {}: spends are recorded against an approved request only", f.status.code()))
        } else {
            let left = f.amount_pence - f.spent_pence;
            common::refusal(
                StatusCode::CONFLICT,
                "overspend",
                format!("{} is more than is left of the approved {} ({} left): request the difference separately", common::pounds(pence), common::pounds(f.amount_pence), common::pounds(left.max(0))),
            )
        });
    }
    let spend_id = uuid::Uuid::now_v7().to_string();
    sqlx::query("INSERT INTO funding_spends (id, request_id, amount_pence, note, spent_by, spent_at_ms) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&spend_id)
        .bind(id)
        .bind(pence)
        .bind(common::seal(ctx, &input.note)?)
        .bind(&staff.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    step(&mut tx, &f, id, "spent", staff, now).await?;
    let spent: i64 = sqlx::query("SELECT spent_pence FROM funding_requests WHERE id = $1").bind(id).fetch_one(&mut *tx).await?.try_get("spent_pence")?;
    tx.commit().await?;
    Ok(json!({"id": spend_id, "request_id": id, "amount_pence": pence, "spent_pence": spent, "left_pence": f.amount_pence - spent}))
}

/// Requests of a person, or of a status (`requested`: a manager's queue), newest first, with
/// their spends; notes and reasons opened.
pub async fn requests(ctx: &Ctx, column: &str, value: &str) -> Result<Vec<Value>, ApiError> {
    let column = if column == "status" { "status" } else { "subject_ref" };
    let rows = sqlx::query(&format!(
        "SELECT id, subject_ref, case_ref, purpose, amount_pence, spent_pence, status, note, requested_by, requested_at_ms, decided_by, decided_at_ms, decision_reason \
         FROM funding_requests WHERE {column} = $1 ORDER BY requested_at_ms DESC, id DESC LIMIT 200"
    ))
    .bind(value)
    .fetch_all(&ctx.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut v = row_json(
            r,
            &["id", "subject_ref", "case_ref", "purpose", "status", "requested_by", "decided_by"],
            &["amount_pence", "spent_pence", "requested_at_ms", "decided_at_ms"],
            &[],
        );
        v["left_pence"] = json!(v["amount_pence"].as_i64().unwrap_or_default() - v["spent_pence"].as_i64().unwrap_or_default());
        v["note"] = json!(common::opened(ctx, r, "note")?);
        v["decision_reason"] = json!(common::opened(ctx, r, "decision_reason")?);
        let spends = sqlx::query("SELECT id, amount_pence, note, spent_by, spent_at_ms FROM funding_spends WHERE request_id = $1 ORDER BY spent_at_ms, id")
            .bind(r.try_get::<String, _>("id")?)
            .fetch_all(&ctx.pool)
            .await?;
        v["spends"] = Value::Array(
            spends
                .iter()
                .map(|s| {
                    let mut w = row_json(s, &["id", "spent_by"], &["amount_pence", "spent_at_ms"], &[]);
                    w["note"] = json!(common::opened(ctx, s, "note")?);
                    Ok(w)
                })
                .collect::<Result<_, ApiError>>()?,
        );
        out.push(v);
    }
    Ok(out)
}

pub async fn post(State(ctx): State<Ctx>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: RequestInput = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(request(&ctx, &staff, &input).await?)))
}

pub async fn post_decision(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: DecisionInput = json_body(&body)?;
    Ok(Json(decide(&ctx, &staff, &id, &input).await?))
}

pub async fn post_spend(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: SpendInput = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(spend(&ctx, &staff, &id, &input).await?)))
}

/// `GET /funding-requests?subject_ref=` or `?status=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FundingQuery {
    pub subject_ref: Option<String>,
    pub status: Option<String>,
}

pub async fn list(State(ctx): State<Ctx>, Query(q): Query<FundingQuery>) -> Result<Json<Value>, ApiError> {
    let found = match (q.subject_ref, q.status) {
        (Some(s), None) => requests(&ctx, "subject_ref", &common::subject_of(&ctx, None, Some(&s))?).await?,
        (None, Some(s)) => {
            let status = Status::parse(&s).ok_or_else(|| ApiError::bad_request(format!("status is one of {}", Status::codes())))?;
            requests(&ctx, "status", status.code()).await?
        }
        _ => return Err(ApiError::bad_request("name a subject_ref or a status")),
    };
    Ok(Json(Value::Array(found)))
}
