//! Flags with a review date, on a person (`subject_ref`) or a property (`property_ref`): a
//! code from a fixed list ([`FLAG_CODES`]), read at a glance and counted, with an optional
//! note sealed to the agency's own key. Raising one sets its review deadline and enters the
//! person's chronology; clearing one meets the deadline. And `GET /people/{subject_ref}`,
//! a person's record here: the chronology, the flags in force and the deadlines open.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::{
    auth::Staff,
    chronology::{self, Entry, add, check_note, date_of, day_ms},
    ctx::Ctx,
    db::{Migration, Tx},
    error::{ApiError, clear_field, json_body},
};

pub fn migrations() -> Vec<Migration> {
    vec![Migration { version: 72, description: "flags", sql: include_str!("../migrations/0072_flags.sql") }]
}

/// What a flag says, from a fixed list: a flag is read at a glance and counted, never
/// free text (its note is separate, sealed).
pub const FLAG_CODES: &[(&str, &str)] = &[
    ("dva-survivor", "Domestic abuse survivor: handle with care"),
    ("perpetrator-at-address", "The perpetrator lives at or visits this address"),
    ("no-joint-visits", "Never visit or call with the other party present"),
    ("safe-contact-only", "Contact only by the safe route recorded"),
    ("address-withheld", "Do not disclose this address"),
    ("risk-to-staff", "Risk to staff: visit in pairs"),
    ("marac-case", "Heard at MARAC"),
    ("sanctuary-installed", "Sanctuary measures installed"),
    ("consent-withdrawn", "Consent to share was withdrawn: check before any disclosure"),
];

/// `POST /flags`: on a person (`subject_ref`) or a property (`property_ref`), with a code
/// from [`FLAG_CODES`], a review date and an optional note.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagInput {
    #[serde(default)]
    pub subject_ref: Option<String>,
    #[serde(default)]
    pub property_ref: Option<String>,
    pub code: String,
    /// YYYY-MM-DD: the flag is reviewed by then (a deadline; a missed review escalates).
    pub review_on: String,
    #[serde(default)]
    pub note: String,
}

/// Deadline code of a flag's review.
pub const FLAG_REVIEW: &str = "flag_review";

/// Records a flag (and its review deadline, and the chronology entry on a person).
pub async fn raise_flag(ctx: &Ctx, staff: &Staff, input: &FlagInput) -> Result<String, ApiError> {
    let (subject_ref, property_ref) = match (input.subject_ref.as_deref(), input.property_ref.as_deref()) {
        (Some(s), None) => {
            isp::clear::required("subject_ref", s, isp::clear::is_subject_ref, isp::clear::SUBJECT_REF).map_err(clear_field)?;
            (s.to_owned(), String::new())
        }
        (None, Some(p)) => {
            isp::clear::required("property_ref", p, isp::clear::is_case_ref, isp::clear::CASE_REF).map_err(clear_field)?;
            (String::new(), p.to_owned())
        }
        _ => return Err(ApiError::bad_request("a flag is on a person (subject_ref) or on a property (property_ref): name one")),
    };
    if !FLAG_CODES.iter().any(|(c, _)| *c == input.code) {
        return Err(ApiError::bad_request(format!(
            "code is one of {}",
            FLAG_CODES.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
        )));
    }
    check_note("note", &input.note)?;
    let review_ms = day_ms(&input.review_on).ok_or_else(|| ApiError::bad_request("review_on is a date, YYYY-MM-DD"))?;
    let now = ctx.config.clock.now_ms();
    if review_ms < now - 86_400_000 {
        return Err(ApiError::bad_request("review_on is in the past: a flag is reviewed from now on"));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let note = if input.note.is_empty() { String::new() } else { ctx.seal_at_rest(&input.note).map_err(ApiError::internal)? };
    let mut tx = ctx.pool.begin().await?;
    sqlx::query(
        "INSERT INTO flags (id, subject_ref, property_ref, code, review_on, note, raised_by, raised_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(&subject_ref)
    .bind(&property_ref)
    .bind(&input.code)
    .bind(&input.review_on)
    .bind(&note)
    .bind(&staff.id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    crate::deadlines::set(
        &mut tx,
        &crate::deadlines::Deadline { code: FLAG_REVIEW.into(), target: id.clone(), subject_ref: subject_ref.clone(), due_at_ms: review_ms + 86_400_000, ..Default::default() },
    )
    .await?;
    if !subject_ref.is_empty() {
        chronology::add(&mut tx, &Entry { subject_ref, event: "flag".into(), code: input.code.clone(), item_id: id.clone(), staff_id: staff.id.clone(), at_ms: now, ..Default::default() }).await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// Flags a person from within another piece of work (an IDVA case whose consent was
/// withdrawn): a review in `review_in_ms`, by nobody in particular.
pub async fn flag_in(tx: &mut Tx, subject_ref: &str, code: &str, now: i64, review_in_ms: i64) -> sqlx::Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO flags (id, subject_ref, property_ref, code, review_on, note, raised_by, raised_at_ms) VALUES ($1, $2, '', $3, $4, '', '', $5)",
    )
    .bind(&id)
    .bind(subject_ref)
    .bind(code)
    .bind(date_of(now + review_in_ms))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    crate::deadlines::set(
        tx,
        &crate::deadlines::Deadline { code: FLAG_REVIEW.into(), target: id.clone(), subject_ref: subject_ref.into(), due_at_ms: now + review_in_ms, ..Default::default() },
    )
    .await?;
    add(tx, &Entry { subject_ref: subject_ref.into(), event: "flag".into(), code: code.into(), item_id: id.clone(), at_ms: now, ..Default::default() }).await?;
    Ok(id)
}

/// `GET /flags?subject_ref=` or `?property_ref=`: the flags in force (not cleared), notes opened.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagQuery {
    pub subject_ref: Option<String>,
    pub property_ref: Option<String>,
}

/// The flags in force on a person or a property.
pub async fn flags(ctx: &Ctx, column: &str, value: &str) -> Result<Vec<Value>, ApiError> {
    let column = if column == "property_ref" { "property_ref" } else { "subject_ref" };
    let rows = sqlx::query(&format!(
        "SELECT id, subject_ref, property_ref, code, review_on, note, raised_by, raised_at_ms FROM flags WHERE {column} = $1 AND cleared_at_ms IS NULL ORDER BY raised_at_ms"
    ))
    .bind(value)
    .fetch_all(&ctx.pool)
    .await?;
    let keys = &ctx.isp().keys;
    rows.iter()
        .map(|r| {
            let mut v = crate::query::row_json(r, &["id", "subject_ref", "property_ref", "code", "review_on", "raised_by"], &["raised_at_ms"], &[]);
            let stored: String = r.try_get("note")?;
            v["note"] = json!(if stored.is_empty() { String::new() } else { keys.open_at_rest(&stored).map_err(ApiError::internal)? });
            v["meaning"] = json!(FLAG_CODES.iter().find(|(c, _)| *c == v["code"]).map_or("", |(_, m)| *m));
            Ok(v)
        })
        .collect()
}

async fn list_flags(State(ctx): State<Ctx>, Query(q): Query<FlagQuery>) -> Result<Json<Value>, ApiError> {
    let (column, value) = match (q.subject_ref, q.property_ref) {
        (Some(s), None) => {
            isp::clear::required("subject_ref", &s, isp::clear::is_subject_ref, isp::clear::SUBJECT_REF).map_err(clear_field)?;
            ("subject_ref", s)
        }
        (None, Some(p)) => {
            isp::clear::required("property_ref", &p, isp::clear::is_case_ref, isp::clear::CASE_REF).map_err(clear_field)?;
            ("property_ref", p)
        }
        _ => return Err(ApiError::bad_request("name a subject_ref or a property_ref")),
    };
    Ok(Json(Value::Array(flags(&ctx, column, &value).await?)))
}

async fn post_flag(State(ctx): State<Ctx>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: FlagInput = json_body(&body)?;
    let id = raise_flag(&ctx, &staff, &input).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))))
}

/// Clears a flag (reviewed and no longer needed); its review deadline is met.
pub async fn clear_flag(ctx: &Ctx, staff: &Staff, id: &str) -> Result<(), ApiError> {
    isp::clear::required("id", id, isp::clear::is_envelope_id, isp::clear::ENVELOPE_ID).map_err(clear_field)?;
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let row = sqlx::query("SELECT subject_ref, code FROM flags WHERE id = $1 AND cleared_at_ms IS NULL").bind(id).fetch_optional(&mut *tx).await?;
    let Some(row) = row else { return Err(ApiError::not_found("flag in force")) };
    sqlx::query("UPDATE flags SET cleared_at_ms = $1, cleared_by = $2 WHERE id = $3").bind(now).bind(&staff.id).bind(id).execute(&mut *tx).await?;
    crate::deadlines::meet(&mut tx, FLAG_REVIEW, id, crate::deadlines::Resolution::Met, now).await?;
    let subject_ref: String = row.try_get("subject_ref")?;
    if !subject_ref.is_empty() {
        chronology::add(&mut tx, &Entry { subject_ref, event: "flag_cleared".into(), code: row.try_get("code")?, item_id: id.into(), staff_id: staff.id.clone(), at_ms: now, ..Default::default() }).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn post_clear(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    clear_flag(&ctx, &staff, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /people/{subject_ref}`: the chronology, the flags in force and the deadlines open.
async fn person(State(ctx): State<Ctx>, Path(subject_ref): Path<String>) -> Result<Json<Value>, ApiError> {
    isp::clear::required("subject_ref", &subject_ref, isp::clear::is_subject_ref, isp::clear::SUBJECT_REF).map_err(clear_field)?;
    let chronology = chronology::of_subject(&ctx, &subject_ref).await?;
    let flags = flags(&ctx, "subject_ref", &subject_ref).await?;
    let deadlines: Vec<Value> = crate::deadlines::of_subject(&ctx, "open", &subject_ref).await?;
    Ok(Json(json!({"subject_ref": subject_ref, "chronology": chronology, "flags": flags, "deadlines": deadlines})))
}

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/people/{subject_ref}", get(person))
        .route("/flags", get(list_flags).post(post_flag))
        .route("/flags/{id}/clear", post(post_clear))
}
