//! A person's case record at this agency: every event on it in time order (assessments,
//! disclosures sent and received, receipts, actions, contact attempts, notes, flags, missed
//! deadlines). Flags with a review date on a person or a property are [`crate::flags`].
//!
//! The record is keyed by the subject ref, the same pseudonym for the same person at every
//! agency, so a caseworker sees one chronology however many referrals there were. It never
//! leaves the agency: no message kind carries it (a flag is the agency's own knowledge, and
//! so can never flow to a perpetrator pathway). Free text (a note, a flag's note) is sealed
//! to the agency's own key at rest; the rest is ids and codes.

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    routing::post,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::{
    auth::Staff,
    ctx::Ctx,
    db::{Migration, Tx},
    error::{ApiError, clear_field, json_body},
};

pub fn migrations() -> Vec<Migration> {
    vec![
        Migration { version: 71, description: "chronology", sql: include_str!("../migrations/0071_chronology.sql") },
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
    let mut batch = crate::db::Batch::on(tx);
    add_many_into(&mut batch, entries);
    batch.run(tx).await
}

/// [`add_many`]'s statements, added to a batch of the same transaction.
pub fn add_many_into(batch: &mut crate::db::Batch<'_>, entries: &[Entry]) {
    for chunk in entries.chunks(crate::db::ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO chronology (id, subject_ref, case_ref, at_ms, event, code, item_id, counterpart, staff_id, detail) VALUES {}",
            crate::db::placeholders(batch.sqlite(), chunk.len(), 10)
        );
        let q = batch.statement(sql);
        for e in chunk {
            q.bind(uuid::Uuid::now_v7().to_string())
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
    }
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
            let mut v = crate::query::row_json(r, &["subject_ref", "case_ref", "event", "code", "item_id", "counterpart", "staff_id"], &["at_ms"], &[]);
            let stored: String = r.try_get("detail")?;
            v["detail"] = json!(if stored.is_empty() { String::new() } else { keys.open_at_rest(&stored).map_err(ApiError::internal)? });
            Ok(v)
        })
        .collect()
}

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

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/people/{subject_ref}/notes", post(post_note))
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
