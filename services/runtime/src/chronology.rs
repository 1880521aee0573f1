//! A person's case record at this agency: every event on it in time order (assessments,
//! disclosures sent and received, receipts, actions, contact attempts, notes, flags, missed
//! deadlines), and flags with a review date on a person or on a property.
//!
//! The record is keyed by the subject ref, the same pseudonym for the same person at every
//! agency, so a caseworker sees one chronology however many referrals there were. It never
//! leaves the agency: no message kind carries it (a flag is the agency's own knowledge, and
//! so can never flow to a perpetrator pathway). Free text (a note, a flag's note) is sealed
//! to the agency's own key at rest; the rest is ids and codes.

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
    Ctx, Migration, Tx,
    error::{ApiError, clear_field, json_body},
    auth::Staff,
};

pub fn migrations() -> Vec<Migration> {
    vec![
        Migration { version: 71, description: "chronology", sql: include_str!("../migrations/0071_chronology.sql") },
        Migration { version: 72, description: "flags", sql: include_str!("../migrations/0072_flags.sql") },
    ]
}

/// One event on a person's case.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub subject_ref: String,
    pub case_ref: String,
    /// What happened, a code: `assessment`, `disclosure_sent`, `disclosure_received`,
    /// `receipt`, `action`, `contact_attempt`, `note`, `flag`, `deadline_missed`, ...
    pub event: String,
    /// A finer code (the kind of a disclosure, the outcome of a contact attempt, a flag's code).
    pub code: String,
    /// The record it is about (an envelope, an assessment, a case).
    pub item_id: String,
    /// The other agency, where there is one.
    pub counterpart: String,
    pub staff_id: String,
    /// Free text, sealed to the agency's key by [`add_note`]; empty otherwise.
    pub detail: String,
    pub at_ms: i64,
}

/// Adds an event to a person's chronology, in the transaction of the work it records.
pub async fn add(tx: &mut Tx, e: &Entry) -> sqlx::Result<()> {
    add_many(tx, std::slice::from_ref(e)).await
}

/// Adds events (of the same work: a batch of arrivals or sends) in one statement per
/// [`crate::db::ROWS_PER_INSERT`].
pub async fn add_many(tx: &mut Tx, entries: &[Entry]) -> sqlx::Result<()> {
    let sqlite = crate::db::on_sqlite(tx);
    for chunk in entries.chunks(crate::db::ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO chronology (id, subject_ref, case_ref, at_ms, event, code, item_id, counterpart, staff_id, detail) VALUES {}",
            crate::db::placeholders(sqlite, chunk.len(), 10)
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&e.subject_ref)
                .bind(&e.case_ref)
                .bind(e.at_ms)
                .bind(&e.event)
                .bind(&e.code)
                .bind(&e.item_id)
                .bind(&e.counterpart)
                .bind(&e.staff_id)
                .bind(&e.detail);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The most characters a note (a chronology note, a flag's note, a judgement's reason) holds:
/// room for what happened, not for a pasted document.
pub const NOTE_MAX: usize = 10_000;

/// Refuses a note longer than [`NOTE_MAX`], naming the field, never repeating the text.
pub fn check_note(field: &str, text: &str) -> Result<(), ApiError> {
    if text.chars().count() > NOTE_MAX {
        return Err(ApiError::bad_request(format!("{field} is longer than {NOTE_MAX} characters")));
    }
    Ok(())
}

/// Adds an event whose free text is sealed to the agency's key first.
pub async fn add_note(ctx: &Ctx, tx: &mut Tx, mut e: Entry, text: &str) -> Result<(), ApiError> {
    check_note("note", text)?;
    e.detail = if text.is_empty() { String::new() } else { ctx.seal_at_rest(text).map_err(ApiError::internal)? };
    add(tx, &e).await?;
    Ok(())
}

/// A person's chronology, oldest first, notes opened.
pub async fn of_subject(ctx: &Ctx, subject_ref: &str) -> Result<Vec<Value>, ApiError> {
    let rows = sqlx::query(
        "SELECT subject_ref, case_ref, at_ms, event, code, item_id, counterpart, staff_id, detail FROM chronology WHERE subject_ref = $1 ORDER BY at_ms, id LIMIT 5000",
    )
    .bind(subject_ref)
    .fetch_all(&ctx.pool)
    .await?;
    let keys = &ctx.isp().keys;
    rows.iter()
        .map(|r| {
            let mut v = crate::api::row_json(r, &["subject_ref", "case_ref", "event", "code", "item_id", "counterpart", "staff_id"], &["at_ms"], &[]);
            let stored: String = r.try_get("detail")?;
            v["detail"] = json!(if stored.is_empty() { String::new() } else { keys.open_at_rest(&stored).map_err(ApiError::internal)? });
            Ok(v)
        })
        .collect()
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

/// Milliseconds at the start of a YYYY-MM-DD day (UTC), or None.
pub fn day_ms(date: &str) -> Option<i64> {
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (date[..4].parse().ok()?, date[5..7].parse().ok()?, date[8..].parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1900..=2200).contains(&y) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400_000)
}

/// The YYYY-MM-DD day of a time in milliseconds (UTC).
pub fn date_of(ms: i64) -> String {
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

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
        add(&mut tx, &Entry { subject_ref, event: "flag".into(), code: input.code.clone(), item_id: id.clone(), staff_id: staff.id.clone(), at_ms: now, ..Default::default() }).await?;
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
            let mut v = crate::api::row_json(r, &["id", "subject_ref", "property_ref", "code", "review_on", "raised_by"], &["raised_at_ms"], &[]);
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
    crate::deadlines::meet(&mut tx, FLAG_REVIEW, id, "met", now).await?;
    let subject_ref: String = row.try_get("subject_ref")?;
    if !subject_ref.is_empty() {
        add(&mut tx, &Entry { subject_ref, event: "flag_cleared".into(), code: row.try_get("code")?, item_id: id.into(), staff_id: staff.id.clone(), at_ms: now, ..Default::default() }).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn post_clear(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    clear_flag(&ctx, &staff, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /people/{subject_ref}/notes`: `{"text": ...}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteInput {
    text: String,
}

async fn post_note(State(ctx): State<Ctx>, staff: Staff, Path(subject_ref): Path<String>, body: Bytes) -> Result<StatusCode, ApiError> {
    isp::clear::required("subject_ref", &subject_ref, isp::clear::is_subject_ref, isp::clear::SUBJECT_REF).map_err(clear_field)?;
    let input: NoteInput = json_body(&body)?;
    if input.text.trim().is_empty() {
        return Err(ApiError::bad_request("text is empty"));
    }
    let mut tx = ctx.pool.begin().await?;
    add_note(&ctx, &mut tx, Entry { subject_ref, event: "note".into(), staff_id: staff.id.clone(), at_ms: ctx.config.clock.now_ms(), ..Default::default() }, &input.text).await?;
    tx.commit().await?;
    Ok(StatusCode::CREATED)
}

/// `GET /people/{subject_ref}`: the chronology, the flags in force and the deadlines open.
async fn person(State(ctx): State<Ctx>, Path(subject_ref): Path<String>) -> Result<Json<Value>, ApiError> {
    isp::clear::required("subject_ref", &subject_ref, isp::clear::is_subject_ref, isp::clear::SUBJECT_REF).map_err(clear_field)?;
    let chronology = of_subject(&ctx, &subject_ref).await?;
    let flags = flags(&ctx, "subject_ref", &subject_ref).await?;
    let deadlines: Vec<Value> = crate::deadlines::of_subject(&ctx, "open", &subject_ref).await?;
    Ok(Json(json!({"subject_ref": subject_ref, "chronology": chronology, "flags": flags, "deadlines": deadlines})))
}

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/people/{subject_ref}", get(person))
        .route("/people/{subject_ref}/notes", post(post_note))
        .route("/flags", get(list_flags).post(post_flag))
        .route("/flags/{id}/clear", post(post_clear))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        for d in ["1970-01-01", "2026-11-27", "2024-02-29", "2100-12-31"] {
            assert_eq!(date_of(day_ms(d).unwrap()), d);
        }
        assert_eq!(day_ms("2026-13-01"), None);
        assert_eq!(day_ms("27/11/2026"), None);
    }
}
