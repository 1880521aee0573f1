//! The pathway's JSON API: the caseload and each case, the steps of its state machine, its
//! enforcement steps, progress updates to the survivor's advocate, and a man's cases by the
//! pathway's pseudonym of him (his subject access request). Each handler parses, then calls
//! [`crate::casework`]. Errors name the field and what it takes, never what was sent.

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
    case::{Status, Step},
    casework::{self, EnforcementInput, NoteInput, PersonInput, UpdateInput},
    store,
};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/cases", get(list))
        .route("/cases/{id}", get(one))
        .route("/cases/{id}/assess", post(assess))
        .route("/cases/{id}/engaged", post(engaged))
        .route("/cases/{id}/disengaged", post(disengaged))
        .route("/cases/{id}/completed", post(completed))
        .route("/cases/{id}/enforcement", post(enforcement))
        .route("/cases/{id}/engagement-updates", post(progress))
        .route("/perpetrators", post(lookup))
        .route("/perpetrators/{ref}", get(perpetrator))
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
    Ok(Json(Value::Array(cases.iter().map(store::Case::json).collect())))
}

async fn one(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(casework::detail(&ctx, &id).await?))
}

async fn take(ctx: &Ctx, staff: &Staff, id: &str, step: Step, body: &Bytes) -> Result<Json<Value>, ApiError> {
    let input: NoteInput = body_or_default(body)?;
    Ok(Json(casework::step(ctx, staff, id, step, &input).await?.json()))
}

async fn assess(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    take(&ctx, &staff, &id, Step::Assess, &body).await
}

async fn engaged(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    take(&ctx, &staff, &id, Step::Engaged, &body).await
}

async fn disengaged(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    take(&ctx, &staff, &id, Step::Disengaged, &body).await
}

async fn completed(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    take(&ctx, &staff, &id, Step::Completed, &body).await
}

async fn enforcement(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: EnforcementInput = json_body(&body)?;
    let (case, step) = casework::enforce(&ctx, &staff, &id, &input).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": step.id, "envelope_id": step.envelope_id, "housing_provider": step.housing_provider, "case": case.json()}))))
}

async fn progress(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: UpdateInput = json_body(&body)?;
    let update = casework::progress(&ctx, &staff, &id, &input).await?;
    Ok((StatusCode::CREATED, Json(json!({"envelope_id": update.envelope_id, "engagement": update.engagement, "recipient": update.recipient}))))
}

/// `POST /perpetrators`: a man's cases at this pathway found by his name and date of birth
/// (in the body, never a URL), with the pathway's pseudonym of him.
async fn lookup(State(ctx): State<Ctx>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: PersonInput = json_body(&body)?;
    let reference = casework::lookup(&ctx, &input).await?;
    Ok(Json(casework::of_perpetrator(&ctx, &reference).await?))
}

/// `GET /perpetrators/{ref}`: his cases at this pathway.
async fn perpetrator(State(ctx): State<Ctx>, Path(reference): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(casework::of_perpetrator(&ctx, &reference).await?))
}
