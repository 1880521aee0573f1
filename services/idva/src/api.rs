//! The IDVA's JSON API: the caseload and each case, the steps of its state machine, its
//! safety plan, and the perpetrator pathways' engagement updates. Each handler parses, then
//! calls [`crate::casework`]. Errors name the field and what it takes, never what was sent.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{get, post},
};
use runtime::{
    Ctx,
    api::{ApiError, Page, json_body},
    auth::Staff,
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{
    case::Status,
    casework::{self, AttemptInput, CloseInput, NoteInput, PlanInput, TriageInput},
    perpetrator::ReviewInput,
    store,
};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/cases", get(list))
        .route("/cases/{id}", get(one))
        .route("/cases/{id}/triage", post(triage))
        .route("/cases/{id}/contact-attempts", post(attempt))
        .route("/cases/{id}/engaged", post(engaged))
        .route("/cases/{id}/not-reached", post(not_reached))
        .route("/cases/{id}/close", post(close))
        .route("/cases/{id}/safety-plan", get(plan).post(save_plan))
        .route("/cases/{id}/safety-plan-reviewed", post(plan_reviewed))
        .route("/engagement", get(engagement))
}

/// `GET /cases?status=&limit=&after=`, paged by `envelope_id`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseQuery {
    limit: Option<i64>,
    after: Option<String>,
    status: Option<String>,
}

/// A body that may be empty (every field optional).
fn body_or_default<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { json_body(body) }
}

async fn list(State(ctx): State<Ctx>, Query(q): Query<CaseQuery>) -> Result<Json<Value>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| ApiError::bad_request(format!("status is one of {}", Status::codes())))?),
    };
    let page = Page { limit: q.limit, after: q.after };
    let cases = store::page(&ctx.pool, status, &page.after(), page.limit()?).await?;
    let now = ctx.config.clock.now_ms();
    Ok(Json(Value::Array(cases.iter().map(|c| c.json(now)).collect())))
}

async fn one(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(casework::detail(&ctx, &id).await?))
}

fn case_answer(ctx: &Ctx, case: &store::Case) -> Json<Value> {
    Json(case.json(ctx.config.clock.now_ms()))
}

async fn triage(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: TriageInput = json_body(&body)?;
    Ok(case_answer(&ctx, &casework::triage(&ctx, &staff, &id, &input).await?))
}

async fn attempt(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: AttemptInput = json_body(&body)?;
    let (attempt_id, case) = casework::attempt(&ctx, &staff, &id, &input).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": attempt_id, "case": case.json(ctx.config.clock.now_ms())}))))
}

async fn engaged(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: NoteInput = body_or_default(&body)?;
    Ok(case_answer(&ctx, &casework::engaged(&ctx, &staff, &id, &input).await?))
}

async fn not_reached(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: NoteInput = body_or_default(&body)?;
    Ok(case_answer(&ctx, &casework::not_reached(&ctx, &staff, &id, &input).await?))
}

async fn close(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: CloseInput = json_body(&body)?;
    Ok(case_answer(&ctx, &casework::close(&ctx, &staff, &id, &input).await?))
}

/// `GET /cases/{id}/safety-plan`: every version, oldest first, sections opened.
async fn plan(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let case = casework::find(&ctx, &id).await?;
    Ok(Json(json!({"case_id": case.id, "versions": casework::plan_versions(&ctx, &id).await?})))
}

async fn save_plan(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: PlanInput = json_body(&body)?;
    let version = casework::save_plan(&ctx, &staff, &id, &input).await?;
    Ok((StatusCode::CREATED, Json(json!({"case_id": id, "version": version, "saved_by": staff.id}))))
}

/// `POST /cases/{id}/safety-plan-reviewed`: the plan was reviewed after the perpetrator
/// disengaged from his pathway; resolves the case's alerts.
async fn plan_reviewed(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: ReviewInput = body_or_default(&body)?;
    let resolved = crate::perpetrator::review(&ctx, &staff, &id, &input).await?;
    Ok(Json(json!({"case_id": id, "alerts_resolved": resolved, "reviewed_by": staff.id})))
}

/// `GET /engagement`, paged by `envelope_id`.
async fn engagement(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = page.rows(&ctx.pool, "SELECT envelope_id, subject_ref, pathway_agency, engagement, received_at_ms, case_id, as_of, reviewed_at_ms FROM engagement_updates", "envelope_id").await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|r| runtime::api::row_json(r, &["envelope_id", "subject_ref", "pathway_agency", "engagement", "case_id", "as_of"], &["received_at_ms", "reviewed_at_ms"], &[]))
            .collect(),
    )))
}
