//! The access log: every read of content and every refused or failed attempt, as a row in
//! the service's database and a signed `accessed` event for the ledger, written together.
//! `GET /access-log` answers an agency's IG lead; the ledger answers the partnership's
//! (`hub audit query --type accessed --staff ID`).

use std::future::Future;
use std::pin::Pin;

use axum::{
    Json, Router,
    extract::{Query, State},
    routing::get,
};
use isp::access::Access;
use proto::v1::EventKind;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use super::Gate;
use crate::{ctx::Ctx, db::Tx, error::ApiError};

/// Where a service records accesses: always in its own database, and in the ledger when
/// `ledger`. A failure means the access is not served.
pub trait AccessSink: Send + Sync + 'static {
    fn record(&self, access: Access, ledger: bool) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + '_>>;
}

/// Writes the row of an access, in the caller's transaction.
pub async fn insert(tx: &mut Tx, event_id: &str, access: &Access) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO access_log (event_id, at_ms, staff_id, route, target, outcome) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(event_id)
        .bind(access.at_ms)
        .bind(&access.staff_id)
        .bind(&access.route)
        .bind(&access.target)
        .bind(&access.outcome)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An agency service's access log: the row and the signed event through the outbox, in one
/// transaction, so the ledger gets every record the service kept.
pub struct Outboxed(pub Ctx);

impl AccessSink for Outboxed {
    fn record(&self, access: Access, ledger: bool) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            let ctx = &self.0;
            let (event, bytes) = ctx.isp().access_event(&access);
            let mut tx = ctx.pool.begin().await?;
            insert(&mut tx, &event.event_id, &access).await?;
            if ledger {
                crate::outbox::enqueue(&mut tx, &event.event_id, &crate::transport::event_subject(ctx.agency(), EventKind::Accessed), &bytes).await?;
            }
            tx.commit().await?;
            ctx.outbox_ready.notify_one();
            Ok(())
        })
    }
}

/// `GET /access-log`: newest last, `limit` (default 100, at most 1,000), `after` = the last
/// `event_id` of the page before; `staff` and `target` filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    pub staff: Option<String>,
    pub target: Option<String>,
    pub after: Option<String>,
    pub limit: Option<i64>,
}

pub const PAGE_DEFAULT: i64 = 100;
pub const PAGE_MAX: i64 = 1000;

pub fn routes() -> Router<Gate> {
    Router::new().route("/access-log", get(list))
}

async fn list(State(gate): State<Gate>, Query(q): Query<LogQuery>) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit is 1 to {PAGE_MAX}")));
    }
    let rows = sqlx::query(
        "SELECT event_id, at_ms, staff_id, route, target, outcome FROM access_log \
         WHERE ($1 = '' OR staff_id = $1) AND ($2 = '' OR target = $2) AND event_id > $3 ORDER BY event_id LIMIT $4",
    )
    .bind(q.staff.unwrap_or_default())
    .bind(q.target.unwrap_or_default())
    .bind(q.after.unwrap_or_default())
    .bind(limit)
    .fetch_all(&gate.pool)
    .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"event_id": r.get::<String, _>("event_id"), "at_ms": r.get::<i64, _>("at_ms"), "staff_id": r.get::<String, _>("staff_id"),
                "route": r.get::<String, _>("route"), "target": r.get::<String, _>("target"), "outcome": r.get::<String, _>("outcome")})
        })
        .collect();
    Ok(Json(Value::Array(items)))
}
