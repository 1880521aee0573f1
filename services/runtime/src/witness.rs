//! The agency as a witness of the audit ledger. It reads each new signed checkpoint, checks
//! the IG signature, and asks the audit service for a consistency proof from the last
//! checkpoint it accepted. A checkpoint that shrinks the tree, forks it at the same size or
//! has no valid proof means the audit operator rewrote history: the witness keeps the
//! evidence, raises an alert (`GET /witness`, an error log line) and keeps its last good
//! checkpoint.

use std::time::Duration;

use anyhow::Context as _;
use axum::{Json, Router, extract::State, routing::get};
use isp::{
    checkpoint::{CHECKPOINT_STREAM, CHECKPOINT_SUBJECT, CONSISTENCY_SUBJECT, Checkpoint},
    merkle,
};
use serde_json::{Value, json};
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;

use crate::{Ctx, Migration, api::ApiError};

/// How often the witness looks for a new checkpoint.
const EVERY: Duration = Duration::from_secs(1);

pub fn migrations() -> Vec<Migration> {
    vec![Migration { version: 50, description: "witness", sql: include_str!("../migrations/0050_witness.sql") }]
}

pub fn routes() -> Router<Ctx> {
    Router::new().route("/witness", get(status))
}

/// What a check of the latest checkpoint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No checkpoint published yet, or the same one as last time.
    Nothing,
    /// The first checkpoint seen (trusted on first use), or one consistent with the last.
    Accepted(u64),
    /// An alert was raised.
    Alert(String),
}

pub async fn watch_loop(ctx: Ctx, shutdown: CancellationToken) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        if let Err(e) = check_latest(&ctx).await {
            tracing::debug!(error = %e, "witness check did not complete; retrying");
        }
    }
}

/// Checks the latest published checkpoint once.
pub async fn check_latest(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let Ok(stream) = ctx.jetstream.get_stream(CHECKPOINT_STREAM).await else { return Ok(Outcome::Nothing) };
    let Ok(message) = stream.get_last_raw_message_by_subject(CHECKPOINT_SUBJECT).await else { return Ok(Outcome::Nothing) };
    let body = String::from_utf8_lossy(&message.payload).into_owned();
    check(ctx, &body).await
}

/// Checks one checkpoint (its JSON) against the last accepted one.
pub async fn check(ctx: &Ctx, body: &str) -> anyhow::Result<Outcome> {
    let checkpoint: Checkpoint = match serde_json::from_str(body) {
        Ok(c) => c,
        Err(e) => return alert(ctx, 0, &format!("a published checkpoint is not readable: {e}"), body).await,
    };
    let size = checkpoint.tree_size;
    let new_root = match checkpoint.verify(&ctx.isp().directory) {
        Ok(r) => r,
        Err(e) => return alert(ctx, size, &format!("checkpoint at tree size {size} does not verify: {e}"), body).await,
    };
    let last = sqlx::query("SELECT tree_size, root FROM witnessed_checkpoint ORDER BY tree_size DESC LIMIT 1").fetch_optional(&ctx.pool).await?;
    let Some(last) = last else { return accept(ctx, &checkpoint, body).await };
    let last_size = last.try_get::<i64, _>("tree_size")? as u64;
    let last_root: String = last.try_get("root")?;
    if size == last_size {
        if checkpoint.root == last_root {
            return Ok(Outcome::Nothing);
        }
        return alert(ctx, size, &format!("FORK: a second checkpoint at tree size {size} with a different root"), body).await;
    }
    if size < last_size {
        return alert(ctx, size, &format!("ROLLBACK: checkpoint at tree size {size} after one at {last_size}"), body).await;
    }
    let request = json!({"first": last_size, "second": size}).to_string();
    let reply = ctx
        .jetstream
        .client()
        .request(CONSISTENCY_SUBJECT, request.into())
        .await
        .context("asking the audit service for a consistency proof")?;
    let answer: Value = serde_json::from_slice(&reply.payload).context("the consistency answer is not JSON")?;
    let proof: Option<Vec<merkle::Hash>> = answer["proof"]
        .as_array()
        .and_then(|a| a.iter().map(|h| h.as_str().and_then(|h| hex::decode(h).ok()).and_then(|b| b.try_into().ok())).collect());
    let last_root_bytes: Option<merkle::Hash> = hex::decode(&last_root).ok().and_then(|b| b.try_into().ok());
    let consistent = match (proof, last_root_bytes) {
        (Some(proof), Some(old)) => merkle::verify_consistency(last_size, size, &old, &new_root, &proof),
        _ => false,
    };
    if !consistent {
        let why = answer["error"].as_str().map(|e| format!(" (the audit service said: {e})")).unwrap_or_default();
        return alert(
            ctx,
            size,
            &format!("INCONSISTENT: checkpoint at tree size {size} is not an append-only extension of the one at {last_size}{why}"),
            body,
        )
        .await;
    }
    accept(ctx, &checkpoint, body).await
}

async fn accept(ctx: &Ctx, checkpoint: &Checkpoint, body: &str) -> anyhow::Result<Outcome> {
    sqlx::query("INSERT INTO witnessed_checkpoint (tree_size, root, body, checked_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
        .bind(checkpoint.tree_size as i64)
        .bind(&checkpoint.root)
        .bind(body)
        .bind(isp::now_ms())
        .execute(&ctx.pool)
        .await?;
    tracing::debug!(tree_size = checkpoint.tree_size, "ledger checkpoint witnessed");
    Ok(Outcome::Accepted(checkpoint.tree_size))
}

async fn alert(ctx: &Ctx, tree_size: u64, what: &str, body: &str) -> anyhow::Result<Outcome> {
    // The same evidence is recorded once, however often the witness looks at it.
    let seen = sqlx::query("SELECT 1 AS one FROM witness_alert WHERE tree_size = $1 AND checkpoint = $2")
        .bind(tree_size as i64)
        .bind(body)
        .fetch_optional(&ctx.pool)
        .await?;
    if seen.is_none() {
        let next: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 AS n FROM witness_alert").fetch_one(&ctx.pool).await?.try_get("n")?;
        sqlx::query("INSERT INTO witness_alert (id, raised_at_ms, tree_size, what, checkpoint) VALUES ($1, $2, $3, $4, $5)")
            .bind(next)
            .bind(isp::now_ms())
            .bind(tree_size as i64)
            .bind(what)
            .bind(body)
            .execute(&ctx.pool)
            .await?;
        tracing::error!(tree_size, alert = what, "LEDGER WITNESS ALERT: the audit ledger's history was rewritten or its checkpoint is forged");
    }
    Ok(Outcome::Alert(what.to_owned()))
}

async fn status(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let last = sqlx::query("SELECT tree_size, root, checked_at_ms FROM witnessed_checkpoint ORDER BY tree_size DESC LIMIT 1")
        .fetch_optional(&ctx.pool)
        .await?;
    let last = match last {
        Some(r) => json!({"tree_size": r.try_get::<i64, _>("tree_size")?, "root": r.try_get::<String, _>("root")?, "checked_at_ms": r.try_get::<i64, _>("checked_at_ms")?}),
        None => Value::Null,
    };
    let alerts = sqlx::query("SELECT id, raised_at_ms, tree_size, what, checkpoint FROM witness_alert ORDER BY id").fetch_all(&ctx.pool).await?;
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|r| {
            Ok::<_, sqlx::Error>(json!({
                "id": r.try_get::<i64, _>("id")?, "raised_at_ms": r.try_get::<i64, _>("raised_at_ms")?,
                "tree_size": r.try_get::<i64, _>("tree_size")?, "what": r.try_get::<String, _>("what")?,
                "checkpoint": serde_json::from_str::<Value>(&r.try_get::<String, _>("checkpoint")?).unwrap_or(Value::Null),
            }))
        })
        .collect::<Result<_, _>>()?;
    Ok(Json(json!({"last_accepted": last, "alerts": alerts})))
}
