//! The managed reciprocal scheme coordinator's service (Pan-London Housing Reciprocal model).
//!
//! Receives `reciprocal.request` (assigns an application reference such as `ARC-01-26`; the
//! policy has already removed the applicant's current address), `reciprocal.offer` (at most
//! one offer per application is kept), `reciprocal.move_completed` (updates the fairness
//! ledger: the rehousing landlord is owed one property, the vacating landlord owes one).
//! Sends anonymised `reciprocal.property_request`s to landlords with stock in the chosen
//! areas (`POST /applications/{ref}/circulate`) and `reciprocal.offer_response`.

use runtime::auth::{Allow, Role, Rule, content, rule};
use axum::{Json, Router, body::Bytes, extract::{Path, Query, State}, http::StatusCode, routing::{get, post}};
use runtime::api::Page;
use isp::{Kind, Opened, Outgoing};
use proto::v1::{Household, Payload, ReciprocalPropertyRequest, payload::Body};
use runtime::{Agency, Ctx, Migration, Tx, api::{ApiError, json_body, row_json}};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;

/// A request must name at least this many areas of choice.
pub const MIN_AREAS: usize = 5;

pub struct Reciprocals;

impl Agency for Reciprocals {
    fn migrations(&self) -> Vec<Migration> {
        vec![Migration { version: 100, description: "reciprocals", sql: include_str!("../migrations/0100_reciprocals.sql") }]
    }

    async fn on_receive(&self, ctx: &Ctx, tx: &mut Tx, opened: &Opened) -> anyhow::Result<()> {
        let h = &opened.header;
        let now = isp::now_ms();
        match &opened.payload.body {
            Some(Body::ReciprocalRequest(r)) => {
                let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM applications").fetch_one(&mut **tx).await?.try_get("n")?;
                let year = 1970 + now / 31_556_952_000; // mean Gregorian year in ms
                let application_ref = format!("ARC-{:02}-{:02}", count + 1, year % 100);
                let household = r.household.clone().unwrap_or_default();
                let status = if r.areas_of_choice.len() < MIN_AREAS { "needs_more_areas" } else { "received" };
                sqlx::query(
                    "INSERT INTO applications (application_ref, envelope_id, referrer, subject_ref, current_landlord, areas, excluded_areas, \
                     adults, children, bedrooms_needed, accessibility_needs, status, received_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&application_ref)
                .bind(&h.envelope_id)
                .bind(&h.sender)
                .bind(&h.subject_ref)
                .bind(&r.current_landlord)
                // Where she would and would not live, and her household's needs: sealed at rest.
                .bind(ctx.seal_at_rest(&r.areas_of_choice.join(","))?)
                .bind(ctx.seal_at_rest(&r.excluded_areas.join(","))?)
                .bind(household.adults as i64)
                .bind(household.children as i64)
                .bind(household.bedrooms_needed as i64)
                .bind(ctx.seal_at_rest(&household.accessibility_needs)?)
                .bind(status)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            Some(Body::ReciprocalOffer(o)) => {
                sqlx::query(
                    "INSERT INTO offers (application_ref, landlord, property_ref, area, bedrooms, envelope_id, received_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(&o.application_ref)
                .bind(&h.sender)
                .bind(&o.property_ref)
                .bind(&o.area)
                .bind(o.bedrooms as i64)
                .bind(&h.envelope_id)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                sqlx::query("UPDATE applications SET status = 'offer_received' WHERE application_ref = $1 AND status = 'circulated'")
                    .bind(&o.application_ref)
                    .execute(&mut **tx)
                    .await?;
            }
            Some(Body::ReciprocalMoveCompleted(m)) => {
                for (landlord, delta) in [(&m.rehousing_landlord, 1i64), (&m.vacating_landlord, -1i64)] {
                    if landlord.is_empty() {
                        continue;
                    }
                    sqlx::query("INSERT INTO fairness (landlord, balance) VALUES ($1, 0) ON CONFLICT DO NOTHING").bind(landlord).execute(&mut **tx).await?;
                    sqlx::query("UPDATE fairness SET balance = balance + $1 WHERE landlord = $2").bind(delta).bind(landlord).execute(&mut **tx).await?;
                }
                sqlx::query("UPDATE applications SET status = 'moved' WHERE application_ref = $1").bind(&m.application_ref).execute(&mut **tx).await?;
            }
            _ => {}
        }
        Ok(())
    }

    fn routes(&self) -> Router<Ctx> {
        Router::new()
            .route("/applications", get(applications))
            .route("/applications/{reference}/circulate", post(circulate))
            .route("/fairness", get(fairness))
    }

    fn rules(&self) -> &'static [Rule] {
        const RULES: &[Rule] = &[
            content("GET", "/applications", Allow::Roles(&[Role::ReciprocalsCoordinator, Role::TeamManager])),
            rule("POST", "/applications/{reference}/circulate", Allow::Roles(&[Role::ReciprocalsCoordinator])),
            rule("GET", "/fairness", Allow::Roles(&[Role::ReciprocalsCoordinator, Role::TeamManager, Role::IgLead])),
        ];
        RULES
    }
}

/// `GET /applications`, paged by `application_ref` (a page holds whole applications with their offers).
async fn applications(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = sqlx::query(
        "SELECT a.application_ref, a.envelope_id, a.referrer, a.subject_ref, a.current_landlord, a.areas, a.bedrooms_needed, a.status, a.received_at_ms, \
         o.landlord AS offer_landlord, o.property_ref AS offer_property \
         FROM (SELECT * FROM applications WHERE application_ref > $1 ORDER BY application_ref LIMIT $2) a \
         LEFT JOIN offers o ON o.application_ref = a.application_ref ORDER BY a.application_ref",
    )
    .bind(page.after())
    .bind(page.limit()?)
    .fetch_all(&ctx.pool)
    .await?;
    let items = rows
        .iter()
        .map(|r| {
            let mut v = row_json(
                r,
                &["application_ref", "envelope_id", "referrer", "subject_ref", "current_landlord", "status", "offer_landlord", "offer_property"],
                &["bedrooms_needed", "received_at_ms"],
                &[],
            );
            v["areas"] = runtime::api::opened_list(&ctx, r, "areas")?;
            Ok(v)
        })
        .collect::<Result<Vec<Value>, ApiError>>()?;
    Ok(Json(Value::Array(items)))
}

#[derive(Debug, Deserialize)]
struct CirculateInput {
    /// Landlords (agency ids) with stock in the chosen areas.
    landlords: Vec<String>,
    #[serde(default)]
    reply_by: String,
}

/// `POST /applications/{ref}/circulate`: sends the anonymised property request (reference,
/// household size and needs, areas; never a name or an address) to each landlord, and marks
/// the application circulated, in one transaction.
async fn circulate(State(ctx): State<Ctx>, Path(reference): Path<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: CirculateInput = json_body(&body)?;
    let row = sqlx::query("SELECT current_landlord, areas, adults, children, bedrooms_needed, accessibility_needs, status FROM applications WHERE application_ref = $1")
        .bind(&reference)
        .fetch_optional(&ctx.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("application"))?;
    let status: String = row.try_get("status")?;
    if status != "received" && status != "circulated" {
        return Err(ApiError::conflict(format!("the application is {status}; only received applications are circulated")));
    }
    let current_landlord: String = row.try_get("current_landlord")?;
    if input.landlords.iter().any(|l| *l == current_landlord) {
        return Err(ApiError::bad_request("a property request is not circulated to the applicant's current landlord"));
    }
    let keys = &ctx.isp().keys;
    let areas = keys.open_at_rest(&row.try_get::<String, _>("areas")?).map_err(ApiError::internal)?;
    let request = ReciprocalPropertyRequest {
        application_ref: reference.clone(),
        household: Some(Household {
            adults: row.try_get::<i64, _>("adults")? as u32,
            children: row.try_get::<i64, _>("children")? as u32,
            bedrooms_needed: row.try_get::<i64, _>("bedrooms_needed")? as u32,
            accessibility_needs: keys.open_at_rest(&row.try_get::<String, _>("accessibility_needs")?).map_err(ApiError::internal)?,
            pets: false,
        }),
        areas: areas.split(',').filter(|a| !a.is_empty()).map(str::to_owned).collect(),
        reply_by: input.reply_by,
    };
    let mut tx = ctx.pool.begin().await?;
    let mut sent = Vec::new();
    for landlord in &input.landlords {
        let isp = ctx.isp();
        let role = isp.directory.require(landlord).map_err(|e| ApiError::bad_request(e.to_string()))?.role;
        let (purpose, basis) = isp
            .policy
            .defaults_for(isp.role, role, Kind::ReciprocalPropertyRequest)
            .ok_or_else(|| ApiError::bad_request(format!("the policy lets no property request go to {landlord}")))?;
        let out = Outgoing {
            recipient: landlord.clone(),
            kind: Kind::ReciprocalPropertyRequest,
            purpose: purpose.to_owned(),
            lawful_basis: basis.to_owned(),
            case_ref: reference.clone(),
            payload: Payload { body: Some(Body::ReciprocalPropertyRequest(request.clone())) },
            ..Default::default()
        };
        sent.push(ctx.send_in(&mut tx, &out).await?);
    }
    sqlx::query("UPDATE applications SET status = 'circulated' WHERE application_ref = $1").bind(&reference).execute(&mut *tx).await?;
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    Ok((StatusCode::CREATED, Json(json!({"application_ref": reference, "sent": sent}))))
}

async fn fairness(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let rows = sqlx::query("SELECT landlord, balance FROM fairness ORDER BY landlord").fetch_all(&ctx.pool).await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|r| {
                let balance: i64 = r.try_get("balance").unwrap_or_default();
                json!({"landlord": r.try_get::<String, _>("landlord").unwrap_or_default(), "balance": balance,
                       "meaning": if balance > 0 { "is owed properties by the scheme" } else if balance < 0 { "owes properties to the scheme" } else { "even" }})
            })
            .collect(),
    )))
}
