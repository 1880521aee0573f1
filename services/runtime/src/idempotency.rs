//! `Idempotency-Key` on `POST /disclosures`: a case system that retries after a timeout gets
//! the first answer, and nothing is sent twice. Answers are kept for [`KEPT`].
//!
//! The key is claimed (a pending row) before the send and completed with the answer after
//! it. A second request with the key gets the stored answer; one with a different body gets
//! 422; one while the first is still in flight gets 409. If the service stops between the
//! send and storing its answer, the key stays pending and every retry gets 409 naming
//! `GET /disclosures` to check: never a second send.

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;

use crate::{ctx::Ctx, error::ApiError};

pub const HEADER: &str = "idempotency-key";

/// The key of a request, if it names one: 1-64 letters, digits, '-' or '_'.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(HEADER) else { return Ok(None) };
    let key = value.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 64 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    key.map(|k| Some(k.to_owned())).ok_or_else(|| ApiError::bad_request("Idempotency-Key is 1-64 letters, digits, '-' or '_'"))
}

/// What came of claiming a key.
pub enum Claim {
    /// First use: go ahead, then [`complete`] or [`release`].
    Fresh,
    /// Answered before: this is the answer.
    Answered(StatusCode, Value),
}

fn digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// How long a key's answer is kept: a retry comes within minutes; a day is ample.
pub const KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

pub async fn claim(ctx: &Ctx, staff: &str, key: &str, body: &[u8]) -> Result<Claim, ApiError> {
    let hash = digest(body);
    // Keys and their answers do not pile up: a day's are kept (each staff member's own).
    sqlx::query("DELETE FROM idempotency WHERE staff_id = $1 AND created_at_ms < $2")
        .bind(staff)
        .bind(isp::now_ms() - KEPT.as_millis() as i64)
        .execute(&ctx.pool)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency (staff_id, idem_key, request_sha256, status, answer, created_at_ms) VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT DO NOTHING",
    )
    .bind(staff)
    .bind(key)
    .bind(&hash)
    .bind(isp::now_ms())
    .execute(&ctx.pool)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Fresh);
    }
    let row = sqlx::query("SELECT request_sha256, status, answer FROM idempotency WHERE staff_id = $1 AND idem_key = $2")
        .bind(staff)
        .bind(key)
        .fetch_one(&ctx.pool)
        .await?;
    if row.try_get::<String, _>("request_sha256")? != hash {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"error": "idempotency_key_reused", "detail": "this Idempotency-Key was used for a different request; use a new key for a new request"}),
        });
    }
    match row.try_get::<i64, _>("status")? {
        0 => Err(ApiError::conflict(
            "a request with this Idempotency-Key is in flight, or stopped before it answered; check GET /disclosures before sending again",
        )),
        status => {
            let status = StatusCode::from_u16(status as u16).map_err(ApiError::internal)?;
            let answer = serde_json::from_str(&row.try_get::<String, _>("answer")?).map_err(ApiError::internal)?;
            Ok(Claim::Answered(status, answer))
        }
    }
}

/// Stores the answer of a request that sent (201) or was refused by the protocol (403, a
/// near miss recorded): a retry gets the same.
pub async fn complete(ctx: &Ctx, staff: &str, key: &str, status: StatusCode, answer: &Value) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE idempotency SET status = $1, answer = $2 WHERE staff_id = $3 AND idem_key = $4")
        .bind(status.as_u16() as i64)
        .bind(answer.to_string())
        .bind(staff)
        .bind(key)
        .execute(&ctx.pool)
        .await?;
    Ok(())
}

/// Frees a key whose request changed nothing (refused as invalid, or failed before sending),
/// so the corrected request can use it.
pub async fn release(ctx: &Ctx, staff: &str, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM idempotency WHERE staff_id = $1 AND idem_key = $2 AND status = 0").bind(staff).bind(key).execute(&ctx.pool).await?;
    Ok(())
}
