//! Consent records as partnership state: recorded and withdrawn by the agency that took
//! consent, read by any agency before a disclosure that relies on one.
//!
//! The bucket (`hub-consent`, key `{agency}.{consent_id}`) holds every signed revision; the
//! isp picks the owner's current one ([`isp::consent::current`]). Reads of another agency's
//! records go through direct gets of the key's history, so a read right after a withdrawal
//! sees it. The owner keeps its own revisions in its database (table `consents`), written in
//! the same transaction as the outbox row that publishes them: recording or withdrawing
//! consent works while the broker is down, and the owner reads its own records locally
//! (only it can sign them, so its copy is the latest). After a write the service publishes
//! at once, so the partnership sees a withdrawal before the request returns when the broker
//! is up (`shared: true` in the answer).
//!
//! Nobody with the broker's rights can turn a record back: a reader keeps, per record, the
//! highest signed revision and any withdrawal it has seen (table `consent_seen`) and reads
//! them with the bucket, so a replayed older revision, a "given" after a withdrawal, or a
//! purged key never replaces what it saw. The owner checks every [`REPUBLISH_EVERY`] and at
//! start that the bucket's latest value of each of its records is its own latest revision,
//! and republishes (through the outbox) those missing or behind.
//!
//! HTTP: `POST /consents` records one, `GET /consents/{id}[?recorded_by=AGENCY]` reads one,
//! `POST /consents/{id}/withdraw` withdraws one of this agency's own.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::stream::DirectGetErrorKind;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{get, post},
};
use isp::{
    Role,
    consent::{self, ConsentRecord, Scope, Verified},
};
use serde::Deserialize;
use serde_json::{Value, json};

pub use crate::consent_read::{ConsentReads, valid_id};
use crate::{
    auth::Staff,
    ctx::Ctx,
    error::{ApiError, json_body},
    query::SubjectIdentity,
    transport::CONSENT_BUCKET,
};

/// How often an agency checks that the partnership's bucket holds the latest revision of
/// each of its own records (and once at start).
pub const REPUBLISH_EVERY: Duration = Duration::from_secs(30);

/// How many of its own records an agency checks in one pass: an agency with thousands of
/// records checks them in turn (the next pass goes on after the last key checked), so a pass
/// costs the broker at most this many direct gets.
pub const REPUBLISH_PER_PASS: i64 = 256;

/// Republishes this agency's own records the bucket has lost (purged by the broker's
/// operator, or pushed out of the key's history) or holds behind the owner's latest (an old
/// revision republished over it), every [`REPUBLISH_EVERY`] and at start, up to
/// [`REPUBLISH_PER_PASS`] records a pass, in key order, round and round.
pub async fn republish_loop(ctx: Ctx, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut after = String::new();
    loop {
        match republish_missing(&ctx, &after, REPUBLISH_PER_PASS).await {
            Ok((0, next)) => after = next,
            Ok((n, next)) => {
                tracing::warn!(records = n, "own consent records missing from the partnership's bucket, or behind there: republished");
                after = next;
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not check the consent bucket; checking again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(REPUBLISH_EVERY) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// One pass of [`republish_loop`]: queues the owner's latest revision, through the outbox
/// (as [`put`] does), of every own record whose key the bucket lacks or whose latest value
/// there is not a revision as recent, signed by this agency, among at most `limit` records
/// whose keys come after `after` (from the first when none do). Returns how many it queued
/// and the key to go on after next time ("" to start again).
pub async fn republish_missing(ctx: &Ctx, after: &str, limit: i64) -> anyhow::Result<(usize, String)> {
    let latest: Vec<(String, i64, String, Vec<u8>)> = sqlx::query_as(
        "SELECT c.record_key, c.revision, c.consent_id, c.value FROM consents c \
         JOIN (SELECT record_key, MAX(revision) AS revision FROM consents WHERE record_key > $1 GROUP BY record_key ORDER BY record_key LIMIT $2) m \
         ON c.record_key = m.record_key AND c.revision = m.revision ORDER BY c.record_key",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&ctx.pool)
    .await?;
    let next = match latest.last() {
        Some((key, ..)) if latest.len() as i64 == limit => key.clone(),
        _ => String::new(),
    };
    if latest.is_empty() {
        return Ok((0, next));
    }
    // A revision still waiting in the outbox is on its way already.
    let waiting: std::collections::HashSet<String> =
        sqlx::query_as::<_, (String,)>("SELECT subject FROM outbox WHERE subject LIKE '$KV.%' AND published_at_ms IS NULL AND stopped_at_ms IS NULL AND set_aside_at_ms IS NULL")
            .fetch_all(&ctx.pool)
            .await?
            .into_iter()
            .map(|r| r.0)
            .collect();
    let isp = ctx.isp();
    let (isp, waiting) = (&isp, &waiting);
    type Due = Option<(String, Vec<u8>)>;
    let checks: Vec<anyhow::Result<Due>> = futures::stream::iter(latest)
        .map(|(key, revision, consent_id, value)| async move {
            let subject = format!("$KV.{CONSENT_BUCKET}.{key}");
            if waiting.contains(&subject) {
                return Ok(None);
            }
            let behind = match ctx.consent_stream.direct_get_last_for_subject(subject.as_str()).await {
                Ok(message) => consent::verify(&isp.directory, ctx.agency(), &consent_id, &message.payload)
                    .map_or(true, |there| (there.record().revision as i64) < revision),
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => true,
                Err(e) => return Err(anyhow::Error::new(e).context("reading the consent bucket")),
            };
            Ok(behind.then_some((subject, value)))
        })
        .buffered(16)
        .collect()
        .await;
    let mut due = Vec::new();
    for check in checks {
        due.extend(check?);
    }
    if due.is_empty() {
        return Ok((0, next));
    }
    let mut tx = ctx.pool.begin().await?;
    for (subject, value) in &due {
        crate::outbox::enqueue(&mut tx, &uuid::Uuid::now_v7().to_string(), subject, value).await?;
    }
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    Ok((due.len(), next))
}

/// `POST /consents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordRequest {
    /// Optional; a fresh id is made when absent.
    #[serde(default)]
    pub consent_id: Option<String>,
    #[serde(default)]
    pub subject: Option<SubjectIdentity>,
    #[serde(default)]
    pub subject_ref: Option<String>,
    /// given, refused or not-sought.
    pub state: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub scope: ScopeInput,
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeInput {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub agencies: Vec<String>,
    #[serde(default)]
    pub purposes: Vec<String>,
}

/// `POST /consents/{id}/withdraw`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Deserialize)]
pub struct ReadQuery {
    #[serde(default)]
    pub recorded_by: Option<String>,
}

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/consents", post(record))
        .route("/consents/{id}", get(read))
        .route("/consents/{id}/withdraw", post(withdraw))
}

fn record_json(v: &Verified) -> Value {
    let r = v.record();
    let mut value = serde_json::to_value(r).expect("a record serialises");
    value["current_state"] = json!(r.state_at(isp::now_ms()).name());
    value
}

/// Signs and stores one revision of an own record, queues it for the bucket, and publishes
/// at once. Returns whether the partnership's bucket has it already.
async fn put(ctx: &Ctx, record: &ConsentRecord) -> Result<bool, ApiError> {
    let bytes = ctx.isp().sign_consent(record).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let key = record.key();
    let mut tx = ctx.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO consents (record_key, revision, consent_id, value, recorded_at_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(&key)
    .bind(record.revision as i64)
    .bind(&record.consent_id)
    .bind(&bytes)
    .bind(record.recorded_at_ms)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict(if record.revision == 1 {
            "a consent record with this id already exists"
        } else {
            "the record changed meanwhile; read it and try again"
        }));
    }
    let subject = format!("$KV.{CONSENT_BUCKET}.{key}");
    let row_id = uuid::Uuid::now_v7().to_string();
    crate::outbox::enqueue(&mut tx, &row_id, &subject, &bytes).await?;
    // The ledger records every revision (a withdrawal above all), through the same outbox.
    let (event, event_bytes) = ctx.isp().consent_event(record);
    let event_subject = crate::transport::event_subject(ctx.agency(), proto::v1::EventKind::ConsentChanged);
    crate::outbox::enqueue(&mut tx, &event.event_id, &event_subject, &event_bytes).await?;
    tx.commit().await?;
    // Publish this row at once when the broker is there (the publisher would too, a moment
    // later; the message id makes a second publish a no-op), so a withdrawal reaches every
    // agency before the request returns. While the broker is away the outbox keeps it.
    let connected = ctx.jetstream.client().connection_state() == async_nats::connection::State::Connected;
    let published = connected
        && matches!(tokio::time::timeout(Duration::from_secs(3), publish_now(ctx, &row_id, &subject, bytes)).await, Ok(Ok(())));
    if !published {
        ctx.outbox_ready.notify_one();
        tracing::warn!(consent_id = %record.consent_id, "consent stored; the partnership gets it when the broker is back");
    }
    Ok(published)
}

async fn publish_now(ctx: &Ctx, row_id: &str, subject: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
    use async_nats::jetstream::message::PublishMessage as Publish;
    ctx.jetstream.send_publish(subject.to_owned(), Publish::build().payload(bytes.into()).message_id(row_id)).await?.await?;
    crate::outbox::mark_published(ctx, row_id).await
}

/// Whether the partnership's bucket holds revision `revision` of an own record.
fn answer(v: &Verified, shared: bool) -> Json<Value> {
    let mut value = record_json(v);
    value["shared"] = json!(shared);
    Json(value)
}

pub(crate) async fn record(State(ctx): State<Ctx>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: RecordRequest = json_body(&body)?;
    let mut record = new_record(&ctx.isp(), request, isp::now_ms())?;
    record.recorded_by = staff.id;
    let shared = put(&ctx, &record).await?;
    tracing::info!(consent_id = %record.consent_id, state = record.state.name(), subject_ref = %record.subject_ref, shared, "consent recorded");
    let verified = ctx.consent_record(ctx.agency(), &record.consent_id).await?.context("the consent record just written does not read back")?;
    Ok((StatusCode::CREATED, answer(&verified, shared)))
}

/// The first revision of a record `POST /consents` asks for, by this agency at `now_ms`: no
/// I/O, so the fuzz target calls it too. [`Isp::sign_consent`](isp::Isp::sign_consent) checks
/// the rest.
pub fn new_record(protocol: &isp::Isp, request: RecordRequest, now_ms: i64) -> Result<ConsentRecord, ApiError> {
    let state = match consent::State::parse(&request.state) {
        Some(s @ (consent::State::Given | consent::State::Refused | consent::State::NotSought)) => s,
        Some(_) => return Err(ApiError::bad_request("a record starts as given, refused or not-sought; withdraw with POST /consents/{id}/withdraw")),
        None => return Err(ApiError::bad_request("unknown consent state (given, refused, not-sought)")),
    };
    let consent_id = request.consent_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    if !valid_id(&consent_id) {
        return Err(crate::error::clear_field(isp::clear::ClearFieldError { field: "consent_id", grammar: isp::clear::CONSENT_ID }));
    }
    let subject_ref = match (request.subject, request.subject_ref) {
        (Some(s), _) => protocol.keys.subject_ref(&s.full_name, &s.date_of_birth).map_err(|e| ApiError::bad_request(e.to_string()))?,
        (None, Some(r)) => r,
        (None, None) => return Err(ApiError::bad_request("the record needs subject {full_name, date_of_birth} or subject_ref")),
    };
    if !isp::consent::valid_subject_ref(&subject_ref) {
        return Err(crate::error::clear_field(isp::clear::ClearFieldError { field: "subject_ref", grammar: isp::clear::SUBJECT_REF }));
    }
    let mut roles = Vec::new();
    for r in &request.scope.roles {
        roles.push(r.parse::<Role>().map_err(|_| ApiError::bad_request("scope.roles: unknown role (housing, idva, marac, reciprocals, perpetrator, partner)"))?);
    }
    Ok(ConsentRecord {
        consent_id,
        agency: protocol.agency().to_owned(),
        revision: 1,
        subject_ref,
        state,
        reason: request.reason,
        scope: Scope { roles, agencies: request.scope.agencies, purposes: request.scope.purposes },
        // The logged-in staff member: the handler sets it.
        recorded_by: String::new(),
        recorded_at_ms: now_ms,
        created_at_ms: now_ms,
        expires_at_ms: request.expires_at_ms,
    })
}

async fn read(State(ctx): State<Ctx>, Path(id): Path<String>, Query(q): Query<ReadQuery>) -> Result<Json<Value>, ApiError> {
    let owner = q.recorded_by.unwrap_or_else(|| ctx.agency().to_owned());
    if ctx.isp().directory.get(&owner).is_none() {
        return Err(ApiError::bad_request("recorded_by is not an agency in the partnership directory"));
    }
    let found = ctx.consent_record(&owner, &id).await?.ok_or_else(|| ApiError::not_found("consent record"))?;
    Ok(Json(record_json(&found)))
}

/// Withdraws one of this agency's records: a new signed revision in state withdrawn. Every
/// later disclosure relying on it is refused, at every agency, including those still in an
/// outbox. What was already shared stays, and so do the earlier revisions.
pub(crate) async fn withdraw(State(ctx): State<Ctx>, Path(id): Path<String>, staff: Staff, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: WithdrawRequest = json_body(&body)?;
    let current = ctx.consent_record(ctx.agency(), &id).await?.ok_or_else(|| {
        ApiError::not_found("consent record of this agency (only the agency that recorded consent can withdraw it)")
    })?;
    let mut record = current.record().clone();
    if record.state == consent::State::Withdrawn {
        return Err(ApiError::conflict("this consent was already withdrawn"));
    }
    record.revision += 1;
    record.state = consent::State::Withdrawn;
    record.reason = request.reason;
    record.recorded_by = staff.id;
    record.recorded_at_ms = isp::now_ms();
    let shared = put(&ctx, &record).await?;
    tracing::info!(consent_id = %record.consent_id, subject_ref = %record.subject_ref, shared, "consent withdrawn");
    let verified = ctx.consent_record(ctx.agency(), &id).await?.context("the withdrawal does not read back")?;
    Ok(answer(&verified, shared))
}
