//! Deadlines that fire. Work that has a time target (a referral to acknowledge, a survivor
//! an IDVA must try to reach, the referrals a high DASH result calls for, a flag to review)
//! sets a deadline in the same transaction as the work; meeting the target meets it. A
//! watcher (the agency's `tick_loop`) finds the ones that passed unmet and, for each, in one
//! transaction: marks it missed (an escalation on the case and the agency's dashboard), adds
//! it to the case's chronology and queues a signed `deadline_missed` event for the ledger.
//!
//! Times are judged by the service's [`Clock`], which a test moves forward.

use axum::{
    Json, Router,
    extract::{Query, State},
    routing::get,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::{
    ctx::Ctx,
    db::{Migration, Tx},
    error::ApiError,
};

pub use crate::config::{CHECK_EVERY, Clock};

/// A referral received is acknowledged by a staff member (accepted, declined or closed).
pub const ACKNOWLEDGE: &str = "acknowledge";
/// An IDVA attempts first contact with a survivor referred to the service.
pub const IDVA_CONTACT: &str = "idva_contact";
/// After a high DASH result, the referral to the IDVA service and to MARAC is sent.
pub const REFER_IDVA: &str = "refer_idva";
pub const REFER_MARAC: &str = "refer_marac";

/// One deadline, keyed by its code and the item it is about.
#[derive(Debug, Clone, Default)]
pub struct Deadline {
    /// What must happen, as a code (a token: `acknowledge`, `idva_contact`, ...).
    pub code: String,
    /// The item it is about: a referral's envelope id, a case or a record id.
    pub target: String,
    pub subject_ref: String,
    pub case_ref: String,
    /// The other agency concerned (a referral's sender), or empty.
    pub counterpart: String,
    pub due_at_ms: i64,
}

pub fn migrations() -> Vec<Migration> {
    vec![Migration { version: 70, description: "deadlines", sql: include_str!("../migrations/0070_deadlines.sql") }]
}

/// Sets a deadline, unless one of its code is already set on its target (the first stands).
pub async fn set(tx: &mut Tx, d: &Deadline) -> sqlx::Result<()> {
    set_many(tx, std::slice::from_ref(d)).await
}

/// Sets deadlines (of a batch of arrivals) in one statement per [`crate::db::ROWS_PER_INSERT`];
/// each one already set on its target is left as it is.
pub async fn set_many(tx: &mut Tx, deadlines: &[Deadline]) -> sqlx::Result<()> {
    let mut batch = crate::db::Batch::on(tx);
    set_many_into(&mut batch, deadlines);
    batch.run(tx).await
}

/// [`set_many`]'s statements, added to a batch of the same transaction.
pub fn set_many_into(batch: &mut crate::db::Batch<'_>, deadlines: &[Deadline]) {
    for chunk in deadlines.chunks(crate::db::ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO deadlines (code, target, subject_ref, case_ref, counterpart, due_at_ms) VALUES {} ON CONFLICT (code, target) DO NOTHING",
            crate::db::placeholders(batch.sqlite(), chunk.len(), 6)
        );
        let q = batch.statement(sql);
        for d in chunk {
            q.bind(&d.code).bind(&d.target).bind(&d.subject_ref).bind(&d.case_ref).bind(&d.counterpart).bind(d.due_at_ms);
        }
    }
}

crate::codes!(
    /// How a deadline stopped being watched (`deadlines.outcome`).
    Resolution {
        Met = "met": "Met",
        Cancelled = "cancelled": "Cancelled: the work went away"
    }
);

/// Meets a deadline (late or not): it stops being watched, and an escalation it raised is
/// resolved. `outcome` says how: met, or cancelled when the work went away (the referral
/// was revoked). Whether one was open.
pub async fn meet(tx: &mut Tx, code: &str, target: &str, outcome: Resolution, at_ms: i64) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE deadlines SET met_at_ms = $1, outcome = $2 WHERE code = $3 AND target = $4 AND met_at_ms IS NULL")
        .bind(at_ms)
        .bind(outcome.code())
        .bind(code)
        .bind(target)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Meets every open deadline on a target (its referral was revoked, its case closed).
pub async fn cancel_all(tx: &mut Tx, target: &str, at_ms: i64) -> sqlx::Result<u64> {
    let done = sqlx::query("UPDATE deadlines SET met_at_ms = $1, outcome = $2 WHERE target = $3 AND met_at_ms IS NULL")
        .bind(at_ms)
        .bind(Resolution::Cancelled.code())
        .bind(target)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}

/// The deadlines of `code` not met yet (open or missed), each as (target, due time): a
/// service's own list of what it set, e.g. when each open concern's triage is due.
pub async fn unmet_of_code(pool: &sqlx::AnyPool, code: &str) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT target, due_at_ms FROM deadlines WHERE code = $1 AND met_at_ms IS NULL").bind(code).fetch_all(pool).await
}

/// Marks every deadline that has passed unmet as missed: an escalation, a chronology entry
/// and a signed `deadline_missed` event for the ledger, each deadline in one transaction.
/// How many were missed.
pub async fn fire(ctx: &Ctx) -> anyhow::Result<usize> {
    let now = ctx.config.clock.now_ms();
    let due = sqlx::query(
        "SELECT code, target, subject_ref, case_ref, counterpart FROM deadlines \
         WHERE met_at_ms IS NULL AND missed_at_ms IS NULL AND due_at_ms <= $1 ORDER BY due_at_ms, code, target LIMIT 500",
    )
    .bind(now)
    .fetch_all(&ctx.pool)
    .await?;
    let mut missed = 0;
    for row in due {
        let (code, target, subject_ref, case_ref, counterpart): (String, String, String, String, String) =
            (row.try_get("code")?, row.try_get("target")?, row.try_get("subject_ref")?, row.try_get("case_ref")?, row.try_get("counterpart")?);
        let isp = ctx.isp();
        let (event, bytes) = isp::access::deadline_missed_event(
            &isp.keys,
            &isp.policy.version,
            &isp::access::Missed { code: &code, target: &target, case_ref: &case_ref, subject_ref: &subject_ref, counterpart: &counterpart, at_ms: isp::now_ms() },
        );
        let mut tx = ctx.pool.begin().await?;
        let marked = sqlx::query("UPDATE deadlines SET missed_at_ms = $1, event_id = $2 WHERE code = $3 AND target = $4 AND missed_at_ms IS NULL AND met_at_ms IS NULL")
            .bind(now)
            .bind(&event.event_id)
            .bind(&code)
            .bind(&target)
            .execute(&mut *tx)
            .await?;
        if marked.rows_affected() == 0 {
            continue;
        }
        crate::outbox::enqueue(&mut tx, &event.event_id, &crate::transport::event_subject(ctx.agency(), proto::v1::EventKind::DeadlineMissed), &bytes).await?;
        if !subject_ref.is_empty() {
            crate::chronology::add(
                &mut tx,
                &crate::chronology::Entry { subject_ref: subject_ref.clone(), case_ref: case_ref.clone(), event: "deadline_missed".into(), item_id: target.clone(), code: code.clone(), at_ms: now, ..Default::default() },
            )
            .await?;
        }
        tx.commit().await?;
        ctx.metrics.deadlines_missed.inc();
        tracing::warn!(deadline = %code, target = %target, "a deadline was missed: escalated");
        missed += 1;
    }
    if missed > 0 {
        ctx.outbox_ready.notify_one();
    }
    Ok(missed)
}

/// `GET /deadlines?state=`: `open` (not yet met, due soonest first; the default),
/// `escalated` (missed and still not met), `missed` (every one missed, met since or not),
/// `all`. At most 1,000.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlineQuery {
    pub state: Option<String>,
    pub target: Option<String>,
}

pub fn routes() -> Router<Ctx> {
    Router::new().route("/deadlines", get(list))
}

/// The deadlines of a state (see [`DeadlineQuery`]), as JSON: all, or those of one target.
pub async fn query(ctx: &Ctx, state: &str, target: Option<&str>) -> Result<Vec<Value>, ApiError> {
    query_where(ctx, state, target.map(|t| ("target", t))).await
}

/// The deadlines of a state about one person.
pub async fn of_subject(ctx: &Ctx, state: &str, subject_ref: &str) -> Result<Vec<Value>, ApiError> {
    query_where(ctx, state, Some(("subject_ref", subject_ref))).await
}

/// The deadlines of a state, narrowed (by the database) to one value of `target` or
/// `subject_ref` when given: soonest due first, and deadlines due at one instant (a high
/// DASH result's two referral tasks) by code, then target, so a list reads the same each time.
async fn query_where(ctx: &Ctx, state: &str, narrow: Option<(&'static str, &str)>) -> Result<Vec<Value>, ApiError> {
    let filter = match state {
        "open" => "met_at_ms IS NULL",
        "escalated" => "met_at_ms IS NULL AND missed_at_ms IS NOT NULL",
        "missed" => "missed_at_ms IS NOT NULL",
        "all" => "1 = 1",
        _ => return Err(ApiError::bad_request("state is open, escalated, missed or all")),
    };
    let target_filter = narrow.map(|(column, _)| format!(" AND {column} = $1")).unwrap_or_default();
    let sql = format!(
        "SELECT code, target, subject_ref, case_ref, counterpart, due_at_ms, met_at_ms, missed_at_ms, outcome FROM deadlines WHERE {filter}{target_filter} ORDER BY due_at_ms, code, target LIMIT 1000"
    );
    let mut q = sqlx::query(&sql);
    if let Some((_, value)) = narrow {
        q = q.bind(value.to_owned());
    }
    let now = ctx.config.clock.now_ms();
    Ok(q.fetch_all(&ctx.pool)
        .await?
        .iter()
        .map(|r| {
            let mut v = crate::query::row_json(r, &["code", "target", "subject_ref", "case_ref", "counterpart", "outcome"], &["due_at_ms", "met_at_ms", "missed_at_ms"], &[]);
            let (met, missed) = (!v["met_at_ms"].is_null(), !v["missed_at_ms"].is_null());
            v["state"] = json!(match (met, missed) {
                (true, _) => "met",
                (false, true) => "escalated",
                (false, false) if r.try_get::<i64, _>("due_at_ms").unwrap_or(i64::MAX) <= now => "due",
                _ => "open",
            });
            v
        })
        .collect())
}

async fn list(State(ctx): State<Ctx>, Query(q): Query<DeadlineQuery>) -> Result<Json<Value>, ApiError> {
    if let Some(t) = &q.target {
        isp::clear::optional("target", t, isp::clear::is_consent_id, isp::clear::CONSENT_ID).map_err(crate::error::clear_field)?;
    }
    Ok(Json(Value::Array(query(&ctx, q.state.as_deref().unwrap_or("open"), q.target.as_deref()).await?)))
}
