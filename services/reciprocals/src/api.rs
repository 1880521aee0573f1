//! The coordinator's JSON API: applications (by status) and each one, circulation, the
//! applicant's decision on an offer, the fairness ledger, the board, the landlords of the
//! scheme and the messages set aside. Each handler parses, then calls [`crate::steps`] or
//! [`crate::report`]. Errors name the field and what it takes, never what was sent.

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
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    report,
    scheme::{self, Status},
    steps::{self, CirculateInput, DecisionInput, LandlordInput},
    store,
};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/applications", get(list))
        .route("/applications/{reference}", get(one))
        .route("/applications/{reference}/circulate", post(circulate))
        .route("/applications/{reference}/offer-decision", post(decide))
        .route("/fairness", get(fairness))
        .route("/board", get(board))
        .route("/landlords", get(landlords))
        .route("/landlords/{landlord}", post(put_landlord))
        .route("/set-aside", get(set_aside))
}

/// `GET /applications?status=&limit=&after=`, paged by `application_ref`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<i64>,
    after: Option<String>,
    status: Option<String>,
}

/// A status from a query: one of the codes, or none.
pub fn status_filter(status: Option<&str>) -> Result<Option<Status>, ApiError> {
    match status {
        None | Some("") => Ok(None),
        Some(s) => Status::parse(s).map(Some).ok_or_else(|| ApiError::bad_request(format!("status is one of {}", Status::codes()))),
    }
}

async fn list(State(ctx): State<Ctx>, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    let status = status_filter(q.status.as_deref())?;
    let page = Page { limit: q.limit, after: q.after };
    let apps = store::page(&ctx.pool, status, &page.after(), page.limit()?).await?;
    Ok(Json(Value::Array(apps.iter().map(|a| report::summary(&ctx, a)).collect::<Result<_, _>>()?)))
}

async fn one(State(ctx): State<Ctx>, Path(reference): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(report::detail(&ctx, &reference).await?))
}

async fn circulate(State(ctx): State<Ctx>, staff: Staff, Path(reference): Path<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: CirculateInput = if body.iter().all(u8::is_ascii_whitespace) { CirculateInput::default() } else { json_body(&body)? };
    Ok((StatusCode::CREATED, Json(steps::circulate(&ctx, &staff, &reference, &input).await?)))
}

async fn decide(State(ctx): State<Ctx>, staff: Staff, Path(reference): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: DecisionInput = json_body(&body)?;
    Ok(Json(steps::decide(&ctx, &staff, &reference, &input).await?))
}

/// `GET /fairness`: each landlord's balance, derived from the moves counted.
async fn fairness(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    Ok(Json(Value::Array(report::balances(&ctx).await?.iter().map(report::Balance::json).collect())))
}

async fn board(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    Ok(Json(report::board(&ctx).await?))
}

/// `GET /landlords`: every landlord of the scheme, with what the coordinator records of it.
async fn landlords(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let isp = ctx.isp();
    let records = store::landlords(&ctx.pool).await?;
    let items = isp
        .directory
        .with_role(isp::Role::Housing)
        .map(|a| {
            let r = records.iter().find(|r| r.landlord == a.id);
            json!({"landlord": a.id, "name": a.name, "member": scheme::is_landlord(&isp.directory, &a.id),
                "stock_areas": r.map(|r| r.stock_areas.clone()).unwrap_or_default(), "named_leads": r.map(|r| r.named_leads.clone()).unwrap_or_default(),
                "updated_by": r.map(|r| r.updated_by.clone()), "updated_at_ms": r.map(|r| r.updated_at_ms)})
        })
        .collect();
    Ok(Json(Value::Array(items)))
}

async fn put_landlord(State(ctx): State<Ctx>, staff: Staff, Path(landlord): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: LandlordInput = json_body(&body)?;
    let r = steps::put_landlord(&ctx, &staff, &landlord, &input).await?;
    Ok(Json(json!({"landlord": r.landlord, "stock_areas": r.stock_areas, "named_leads": r.named_leads, "updated_by": r.updated_by, "updated_at_ms": r.updated_at_ms})))
}

/// `GET /set-aside?limit=`: the latest messages the scheme did not act on, and why.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetAsideQuery {
    limit: Option<i64>,
}

async fn set_aside(State(ctx): State<Ctx>, Query(q): Query<SetAsideQuery>) -> Result<Json<Value>, ApiError> {
    let limit = Page { limit: q.limit, after: None }.limit()?;
    Ok(Json(Value::Array(report::set_aside(&ctx, limit).await?)))
}
