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
//! HTTP: `POST /consents` records one, `GET /consents/{id}[?recorded_by=AGENCY]` reads one,
//! `POST /consents/{id}/withdraw` withdraws one of this agency's own.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use async_nats::jetstream::stream::DirectGetErrorKind;
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
use proto::v1::ConsentTag;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    auth::Staff,
    Ctx,
    api::{ApiError, SubjectIdentity, json_body},
    transport::CONSENT_BUCKET,
};

/// A consent id ([`isp::clear::is_consent_id`]): it becomes part of a bucket key and travels
/// in clear headers, so no dots, no wildcards and no free text.
pub fn valid_id(id: &str) -> bool {
    isp::clear::is_consent_id(id)
}

impl Ctx {
    /// The owner's current record of `{owner}.{consent_id}`, verified; None when there is
    /// none that verifies. An error means the bucket could not be read (retry later).
    pub async fn consent_record(&self, owner: &str, consent_id: &str) -> anyhow::Result<Option<Verified>> {
        self.consent_record_in(None, owner, consent_id).await
    }

    /// As [`Ctx::consent_record`], reading this agency's own records inside `tx` when given
    /// (a SQLite pool has one connection, which the caller's transaction holds).
    pub async fn consent_record_in(&self, tx: Option<&mut crate::Tx>, owner: &str, consent_id: &str) -> anyhow::Result<Option<Verified>> {
        if !valid_id(consent_id) || self.isp().directory.get(owner).is_none() {
            return Ok(None);
        }
        if owner == self.agency() {
            let query = sqlx::query_as("SELECT value FROM consents WHERE record_key = $1 ORDER BY revision").bind(consent::key(owner, consent_id));
            let rows: Vec<(Vec<u8>,)> = match tx {
                Some(tx) => query.fetch_all(&mut **tx).await?,
                None => query.fetch_all(&self.pool).await?,
            };
            return Ok(consent::current(&self.isp().directory, owner, consent_id, rows.iter().map(|r| r.0.as_slice())).0);
        }
        let subject = format!("$KV.{CONSENT_BUCKET}.{}", consent::key(owner, consent_id));
        let mut values = Vec::new();
        let mut next = 1;
        loop {
            match self.consent_stream.direct_get_next_for_subject(subject.as_str(), Some(next)).await {
                Ok(message) => {
                    next = message.sequence + 1;
                    if !message.payload.is_empty() {
                        values.push(message.payload);
                    }
                }
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(anyhow::Error::new(e).context("reading the consent bucket")),
            }
        }
        let (current, rejected) = consent::current(&self.isp().directory, owner, consent_id, values.iter().map(|v| v.as_ref()));
        if rejected > 0 {
            tracing::warn!(owner, consent_id, rejected, "values in the consent bucket not signed by the record's owner were ignored");
        }
        Ok(current)
    }

    /// The record a consent tag names, if it names one.
    pub async fn consent_for(&self, tag: Option<&ConsentTag>) -> anyhow::Result<Option<Verified>> {
        self.consent_for_in(None, tag).await
    }

    pub async fn consent_for_in(&self, tx: Option<&mut crate::Tx>, tag: Option<&ConsentTag>) -> anyhow::Result<Option<Verified>> {
        match tag {
            Some(t) if !t.consent_id.is_empty() => self.consent_record_in(tx, &t.recorded_by, &t.consent_id).await,
            _ => Ok(None),
        }
    }
}

/// Consent records read once per batch: the sends, publishes or deliveries handled together
/// that rely on one record look it up once, while the batch is handled (so a withdrawal is
/// seen exactly as promptly as with a lookup each), instead of once each. Concurrent asks for
/// the same record wait for the one lookup.
#[derive(Default)]
pub struct ConsentReads {
    cells: Mutex<HashMap<(String, String), ReadOnce>>,
}

/// One record's lookup, shared by everyone in the batch who asks for it.
type ReadOnce = Arc<tokio::sync::OnceCell<Option<Verified>>>;

impl ConsentReads {
    /// As [`Ctx::consent_for`], each record read at most once in the life of `self`.
    pub async fn get(&self, ctx: &Ctx, tag: Option<&ConsentTag>) -> anyhow::Result<Option<Verified>> {
        let Some(tag) = tag.filter(|t| !t.consent_id.is_empty()) else { return Ok(None) };
        let cell = self
            .cells
            .lock()
            .expect("the consent reads lock is never poisoned")
            .entry((tag.recorded_by.clone(), tag.consent_id.clone()))
            .or_default()
            .clone();
        cell.get_or_try_init(|| ctx.consent_record(&tag.recorded_by, &tag.consent_id)).await.cloned()
    }
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

async fn record(State(ctx): State<Ctx>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
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
        return Err(crate::api::clear_field(isp::clear::ClearFieldError { field: "consent_id", grammar: isp::clear::CONSENT_ID }));
    }
    let subject_ref = match (request.subject, request.subject_ref) {
        (Some(s), _) => protocol.keys.subject_ref(&s.full_name, &s.date_of_birth).map_err(|e| ApiError::bad_request(e.to_string()))?,
        (None, Some(r)) => r,
        (None, None) => return Err(ApiError::bad_request("the record needs subject {full_name, date_of_birth} or subject_ref")),
    };
    if !isp::consent::valid_subject_ref(&subject_ref) {
        return Err(crate::api::clear_field(isp::clear::ClearFieldError { field: "subject_ref", grammar: isp::clear::SUBJECT_REF }));
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
async fn withdraw(State(ctx): State<Ctx>, Path(id): Path<String>, staff: Staff, body: Bytes) -> Result<Json<Value>, ApiError> {
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
