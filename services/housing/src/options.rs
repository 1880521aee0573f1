//! The housing route chosen with a survivor, from the Whole Housing Approach's options, and the
//! refuge referrals sent for them.
//!
//! A refuge referral is a message of its own (`housing.refuge_referral`, to the specialist
//! service that places refuge, an agency of the idva role), sent through the generic
//! `POST /disclosures` like every other; the refuge route names the one it relied on. The
//! sanctuary scheme ([`crate::sanctuary`]) and flexible funding ([`crate::funding`]) are
//! records of their own.

use axum::{
    Json,
    body::Bytes,
    extract::{Query, State},
    http::StatusCode,
};
use isp::Kind;
use runtime::{
    Ctx,
    api::{ApiError, SubjectIdentity, json_body, row_json},
    auth::Staff,
    chronology,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{common, common::codes, uaf::BySubject};

codes!(
    /// The housing routes of the Whole Housing Approach a survivor may take.
    Route {
        Social = "social": "Social housing",
        PrivateRented = "private_rented": "Private rented (deposit or guarantee)",
        HousingFirst = "housing_first": "Housing First",
        Supported = "supported": "Supported housing",
        StayPutSanctuary = "stay_put_sanctuary": "Staying put with a sanctuary scheme",
        Refuge = "refuge": "Refuge",
    }
);

/// `POST /housing-routes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteInput {
    #[serde(default)]
    pub case_ref: String,
    #[serde(default)]
    pub subject: Option<SubjectIdentity>,
    #[serde(default)]
    pub subject_ref: Option<String>,
    pub route: String,
    /// For the refuge route: the `housing.refuge_referral` sent for the survivor.
    #[serde(default)]
    pub envelope_id: String,
    #[serde(default)]
    pub note: String,
}

impl std::fmt::Debug for RouteInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteInput").field("route", &self.route).field("envelope_id", &self.envelope_id).finish_non_exhaustive()
    }
}

/// Records the route chosen; the newest stands, the earlier stay in the history.
pub async fn choose(ctx: &Ctx, staff: &Staff, input: &RouteInput) -> Result<Value, ApiError> {
    let subject_ref = common::subject_of(ctx, input.subject.as_ref(), input.subject_ref.as_deref())?;
    common::case_ref(&input.case_ref)?;
    let route = Route::parse(&input.route).ok_or_else(|| ApiError::bad_request(format!("route is one of {}", Route::codes())))?;
    if !input.envelope_id.is_empty() {
        if route != Route::Refuge {
            return Err(ApiError::bad_request("envelope_id names a refuge referral: only the refuge route takes one"));
        }
        refuge_referral_of(ctx, &input.envelope_id, &subject_ref).await?;
    }
    let now = common::now(ctx);
    let id = uuid::Uuid::now_v7().to_string();
    let mut tx = ctx.pool.begin().await?;
    sqlx::query(
        "INSERT INTO housing_routes (id, subject_ref, case_ref, route, envelope_id, note, chosen_by, chosen_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(&subject_ref)
    .bind(&input.case_ref)
    .bind(route.code())
    .bind(&input.envelope_id)
    .bind(common::seal(ctx, &input.note)?)
    .bind(&staff.id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let entry = chronology::Entry {
        subject_ref: subject_ref.clone(),
        case_ref: input.case_ref.clone(),
        event: "housing_route".into(),
        code: route.code().into(),
        item_id: if input.envelope_id.is_empty() { id.clone() } else { input.envelope_id.clone() },
        staff_id: staff.id.clone(),
        at_ms: now,
        ..Default::default()
    };
    chronology::add(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(json!({"id": id, "subject_ref": subject_ref, "route": route.code()}))
}

/// Checks `envelope_id` is a refuge referral this service sent about `subject_ref`.
async fn refuge_referral_of(ctx: &Ctx, envelope_id: &str, subject_ref: &str) -> Result<(), ApiError> {
    isp::clear::required("envelope_id", envelope_id, isp::clear::is_envelope_id, isp::clear::ENVELOPE_ID).map_err(runtime::api::clear_field)?;
    // One the protocol refused (a near miss), or stopped or set aside before publishing,
    // never reached anyone: it is no referral.
    let sent = runtime::sent::get(&ctx.pool, envelope_id).await?;
    let ours = sent.is_some_and(|s| s.kind == isp::kind::name(Kind::RefugeReferral) && s.subject_ref == subject_ref && !s.status.never_sent());
    if ours { Ok(()) } else { Err(ApiError::bad_request("envelope_id: no refuge referral about this survivor was sent with that id")) }
}

/// A person's routes, newest first, notes opened.
pub async fn routes_of(ctx: &Ctx, subject_ref: &str) -> Result<Vec<Value>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, subject_ref, case_ref, route, envelope_id, note, chosen_by, chosen_at_ms FROM housing_routes WHERE subject_ref = $1 ORDER BY chosen_at_ms DESC, id DESC LIMIT 200",
    )
    .bind(subject_ref)
    .fetch_all(&ctx.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let mut v = row_json(r, &["id", "subject_ref", "case_ref", "route", "envelope_id", "chosen_by"], &["chosen_at_ms"], &[]);
            v["note"] = json!(common::opened(ctx, r, "note")?);
            v["label"] = json!(Route::parse(v["route"].as_str().unwrap_or_default()).map_or("", Route::label));
            Ok(v)
        })
        .collect()
}

/// The refuge referrals sent about a person (not refused, not stopped), newest first, with
/// where each has got to.
pub async fn refuge_referrals(ctx: &Ctx, subject_ref: &str) -> Result<Vec<Value>, ApiError> {
    let sent = runtime::sent::about(&ctx.pool, Kind::RefugeReferral, subject_ref).await?;
    Ok(sent
        .iter()
        .map(|s| {
            json!({"envelope_id": s.envelope_id, "recipient": s.recipient, "case_ref": s.case_ref, "status": s.status.code(), "created_at_ms": s.created_at_ms, "updated_at_ms": s.updated_at_ms})
        })
        .collect())
}

pub async fn post_route(State(ctx): State<Ctx>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: RouteInput = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(choose(&ctx, &staff, &input).await?)))
}

/// `GET /housing-routes?subject_ref=`: the routes chosen, newest first, and the refuge
/// referrals sent.
pub async fn list_routes(State(ctx): State<Ctx>, Query(q): Query<BySubject>) -> Result<Json<Value>, ApiError> {
    let subject_ref = q.subject_ref.ok_or_else(|| ApiError::bad_request("name the survivor: ?subject_ref="))?;
    let subject_ref = common::subject_of(&ctx, None, Some(&subject_ref))?;
    Ok(Json(json!({"routes": routes_of(&ctx, &subject_ref).await?, "refuge_referrals": refuge_referrals(&ctx, &subject_ref).await?})))
}
