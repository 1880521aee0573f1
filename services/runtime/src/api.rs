//! The HTTP JSON API every agency service has. Payloads use the protobuf JSON mapping of
//! hub.v1 (camelCase field names, enum names). Error answers name what was wrong, never
//! echo what was sent: a rejected field's value could be a survivor's address.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use isp::{Outgoing, clear, kind, policy};
use proto::v1::{AckStatus, ConsentTag, RiskLevel};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{Row, any::AnyRow};

use crate::{auth::Staff, ctx::Ctx, inbox, status::Arrival};

pub use crate::{
    error::{ApiError, clear_field, json_body, redact_quoted},
    query::{PAGE_DEFAULT, PAGE_MAX, Page, SubjectIdentity, opened_list, row_json, subject_ref_of},
};

/// `without_consent` of `POST /disclosures`: why sharing without consent is necessary. The
/// officer who decided is the logged-in staff member, never a field of the body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithoutConsentInput {
    pub rationale_code: String,
    pub rationale: String,
}

impl std::fmt::Debug for WithoutConsentInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithoutConsentInput").field("rationale_code", &self.rationale_code).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    /// The consent record relied on; none when sharing without consent with no record.
    #[serde(default)]
    pub id: String,
    pub state: String,
    #[serde(default)]
    pub recorded_by: Option<String>,
}

/// `POST /disclosures`. Unknown fields are refused: a misspelt `case_ref` must not be
/// silently dropped.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub to: String,
    #[serde(default)]
    pub kind: Option<String>,
    pub purpose: String,
    pub lawful_basis: String,
    #[serde(default)]
    pub consent: Option<ConsentInput>,
    /// Only as a check of what the named assessment gives: the risk of a disclosure comes
    /// from a recorded DASH assessment (`assessment_id`), never from the request.
    #[serde(default)]
    pub risk: Option<String>,
    /// A DASH assessment recorded at this agency (`POST /dash-assessments`): the service puts
    /// its signed summary in the payload and its band in the header.
    #[serde(default)]
    pub assessment_id: Option<String>,
    #[serde(default)]
    pub subject: Option<SubjectIdentity>,
    #[serde(default)]
    pub subject_ref: Option<String>,
    #[serde(default)]
    pub case_ref: String,
    #[serde(default)]
    pub in_reply_to: String,
    #[serde(default)]
    pub without_consent: Option<WithoutConsentInput>,
    pub payload: Value,
}

impl Ctx {
    /// Turns an API request of `staff` into an [`Outgoing`], checking every clear field; the
    /// officer of a share without consent is the staff member.
    pub fn outgoing_by(&self, request: SendRequest, staff: &Staff) -> Result<Outgoing, ApiError> {
        let mut out = outgoing(&self.isp(), request)?;
        if let Some(j) = &mut out.justification {
            j.officer = staff.id.clone();
        }
        Ok(out)
    }
}

/// [`Ctx::outgoing`] under a given protocol: no I/O, so the fuzz target calls it too.
pub fn outgoing(protocol: &isp::Isp, request: SendRequest) -> Result<Outgoing, ApiError> {
    let payload = protocol
        .schema
        .payload_from_json(&request.payload)
        .map_err(|e| ApiError::bad_request(format!("the payload does not match hub.v1.Payload: {}", redact_quoted(&e))))?;
    let body_kind = isp::seal::body_kind(&protocol.schema, &payload)
        .ok_or_else(|| ApiError::bad_request("the payload has no body (e.g. {\"idvaReferral\": {...}})"))?;
    if let Some(name) = &request.kind {
        let named = kind::parse(name).ok_or_else(|| ApiError::bad_request("kind: not a kind of message (e.g. housing.idva_referral)"))?;
        if named != body_kind {
            return Err(ApiError::bad_request(format!("kind {name} does not match the payload body {}", kind::name(body_kind))));
        }
    }
    let consent = request
        .consent
        .map(|c| {
            let state = policy::parse_consent(&c.state)
                .ok_or_else(|| ApiError::bad_request("consent.state: not a consent state (given, refused, not-sought, withdrawn, expired)"))?;
            clear::optional("consent.id", &c.id, clear::is_consent_id, clear::CONSENT_ID).map_err(clear_field)?;
            Ok::<_, ApiError>(ConsentTag {
                consent_id: c.id,
                state: state as i32,
                recorded_by: c.recorded_by.unwrap_or_else(|| protocol.agency().to_owned()),
            })
        })
        .transpose()?;
    let risk = match request.risk.as_deref() {
        None => Default::default(),
        Some(r) => policy::parse_risk(r).ok_or_else(|| ApiError::bad_request("risk: not a risk level (standard, medium, high)"))?,
    };
    if let Some(id) = &request.assessment_id {
        clear::required("assessment_id", id, clear::is_envelope_id, clear::ENVELOPE_ID).map_err(clear_field)?;
    } else {
        // A risk above standard unlocks sharing without consent: it is proved by a recorded
        // assessment, never asserted.
        if matches!(risk, RiskLevel::Medium | RiskLevel::High) {
            return Err(ApiError::bad_request(format!(
                "risk: a {} risk comes from a recorded DASH assessment, not from the request: record it (POST /dash-assessments) and name it with assessment_id",
                policy::risk_name(risk)
            )));
        }
        if isp::risk::summary_of(&payload).is_some() {
            return Err(ApiError::bad_request("dash: the DASH summary is filled in by the service from the assessment named by assessment_id, not sent in the payload"));
        }
    }
    let subject_ref = match (request.subject, request.subject_ref) {
        (Some(s), _) => protocol.keys.subject_ref(&s.full_name, &s.date_of_birth).map_err(|e| ApiError::bad_request(e.to_string()))?,
        (None, Some(r)) => r,
        (None, None) => String::new(),
    };
    // Fields that travel in clear: tokens of their grammars, never free text.
    clear::optional("subject_ref", &subject_ref, clear::is_subject_ref, clear::SUBJECT_REF).map_err(clear_field)?;
    clear::optional("case_ref", &request.case_ref, clear::is_case_ref, clear::CASE_REF).map_err(clear_field)?;
    clear::optional("in_reply_to", &request.in_reply_to, clear::is_envelope_id, clear::ENVELOPE_ID).map_err(clear_field)?;
    Ok(Outgoing {
        recipient: request.to,
        kind: body_kind,
        purpose: request.purpose,
        lawful_basis: request.lawful_basis,
        consent,
        risk,
        subject_ref,
        case_ref: request.case_ref,
        in_reply_to: request.in_reply_to,
        payload,
        justification: request.without_consent.map(|w| isp::Justification {
            // Filled in from the login by the handler ([`Ctx::outgoing_by`]).
            officer: String::new(),
            rationale_code: w.rationale_code,
            rationale: w.rationale,
        }),
    })
}

/// The generic routes plus the service's own.
pub fn router(service_routes: Router<Ctx>) -> Router<Ctx> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/disclosures", post(send).get(list_sent))
        .route("/disclosures/{id}", get(get_sent))
        .route("/disclosures/{id}/revoke", post(crate::receipts::revoke))
        .route("/inbox", get(list_inbox))
        .route("/inbox/{id}", get(read_inbox))
        .route("/inbox/{id}/ack", post(acknowledge))
        .route("/quarantine", get(list_quarantine))
        .merge(crate::consent::routes())
        .merge(service_routes)
}

/// `GET /metrics`: the service's counters, with the gauges read now.
async fn metrics(State(ctx): State<Ctx>) -> axum::response::Response {
    crate::metrics::exposition(ctx.metrics.scrape(&ctx.pool, &ctx.jetstream, ctx.agency()).await)
}

async fn health(State(ctx): State<Ctx>) -> Json<Value> {
    use async_nats::connection::State;
    let isp = ctx.isp();
    let broker = match ctx.jetstream.client().connection_state() {
        State::Connected => "connected",
        State::Disconnected => "disconnected",
        State::Pending => "connecting",
    };
    Json(json!({"agency": ctx.agency(), "role": isp.role, "policy_version": isp.policy.version, "directory": isp.directory.digest(),
        "signing_key_id": isp.keys.signing_key_id(), "broker": broker, "files_refused": ctx.files_refused.load().as_deref().cloned(), "status": "ok"}))
}

/// `GET /ready`: whether the service can do its work now, for a load balancer's or an
/// orchestrator's readiness probe (`/health` says it is alive): 200 when its database answers
/// and the broker is connected, else 503 naming what is not. No login, like `/health`: it
/// says nothing but those two facts.
async fn ready(State(ctx): State<Ctx>) -> (StatusCode, Json<Value>) {
    readiness(&ctx.pool, &ctx.jetstream.client()).await
}

/// The readiness answer of a service with this database and broker client (the agency
/// services' `GET /ready`, and the audit service's).
pub async fn readiness(pool: &sqlx::AnyPool, broker: &async_nats::Client) -> (StatusCode, Json<Value>) {
    let database = matches!(tokio::time::timeout(std::time::Duration::from_secs(2), sqlx::query("SELECT 1").execute(pool)).await, Ok(Ok(_)));
    let broker = broker.connection_state() == async_nats::connection::State::Connected;
    let status = if database && broker { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"ready": database && broker, "database": database, "broker": broker})))
}

/// `POST /disclosures`; with an `Idempotency-Key`, a retry gets the first answer.
async fn send(State(ctx): State<Ctx>, staff: Staff, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Some(key) = crate::idempotency::key(&headers)? else { return send_once(&ctx, &staff, body).await };
    if let crate::idempotency::Claim::Answered(status, answer) = crate::idempotency::claim(&ctx, &staff.id, &key, &body).await? {
        return Ok((status, Json(answer)));
    }
    let answer = send_once(&ctx, &staff, body).await;
    let settled = match &answer {
        Ok((status, Json(v))) => Some((*status, v.clone())),
        Err(e) if e.status == StatusCode::FORBIDDEN => Some((e.status, e.body.clone())),
        Err(_) => None,
    };
    match settled {
        Some((status, v)) => crate::idempotency::complete(&ctx, &staff.id, &key, status, &v).await?,
        None => crate::idempotency::release(&ctx, &staff.id, &key).await?,
    }
    answer
}

pub(crate) async fn send_once(ctx: &Ctx, staff: &Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: SendRequest = json_body(&body)?;
    // A body may be a megabyte: not held while the send waits to be sealed and written.
    drop(body);
    let assessment = request.assessment_id.clone();
    let claimed = request.risk.clone();
    let mut out = ctx.outgoing_by(request, staff)?;
    if let Some(id) = &assessment {
        crate::assessments::fill(ctx, &mut out, id).await?;
        if let Some(claimed) = claimed.filter(|c| c != policy::risk_name(out.risk)) {
            return Err(ApiError::bad_request(format!(
                "risk: the request says {claimed}, the named assessment gives {}; the risk is the assessment's (leave risk out)",
                policy::risk_name(out.risk)
            )));
        }
    }
    // Who sent it and the person's chronology entry are written with the send itself.
    let outcome = ctx.send_as(&out, &staff.id).await?;
    // The send is committed: what follows is bookkeeping whose failure is logged, never an
    // error answer (a retry would send again).
    if let Some(id) = assessment.as_deref() {
        if let Err(e) = crate::assessments::referral_sent(ctx, id, out.kind).await {
            tracing::error!(envelope_id = %outcome.envelope_id, error = %e.body, "the assessment's referral task could not be marked done");
        }
    }
    Ok((StatusCode::CREATED, Json(serde_json::to_value(outcome).expect("serialisable"))))
}

pub(crate) const SENT_COLUMNS: &str = "envelope_id, recipient, kind, purpose, lawful_basis, consent_state, risk, subject_ref, case_ref, \
    categories, removed, rule, reason, policy_version, without_consent, in_reply_to, status, status_reason, created_at_ms, updated_at_ms, \
    consent_id, consent_recorded_by, officer, rationale_code, rationale, sent_by, opened_by, status_by";

fn sent_json(row: &AnyRow) -> Value {
    let mut v = row_json(
        row,
        &["envelope_id", "recipient", "kind", "purpose", "lawful_basis", "consent_state", "risk", "subject_ref", "case_ref", "rule", "reason", "policy_version", "in_reply_to", "status", "status_reason",
          "consent_id", "consent_recorded_by", "officer", "rationale_code", "rationale", "sent_by", "opened_by", "status_by"],
        &["created_at_ms", "updated_at_ms"],
        &["categories", "removed"],
    );
    v["without_consent"] = json!(row.try_get::<i64, _>("without_consent").unwrap_or_default() != 0);
    v
}

/// A disclosure as JSON, its rationale opened with the agency's key.
pub(crate) fn sent_json_opened(ctx: &Ctx, row: &AnyRow) -> Result<Value, ApiError> {
    let mut v = sent_json(row);
    let stored: String = row.try_get("rationale").unwrap_or_default();
    v["rationale"] = json!(ctx.isp().keys.open_at_rest(&stored).map_err(ApiError::internal)?);
    Ok(v)
}

/// `GET /disclosures`, paged by `envelope_id`.
async fn list_sent(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = page.rows(&ctx.pool, &format!("SELECT {SENT_COLUMNS} FROM sent"), "envelope_id").await?;
    Ok(Json(Value::Array(rows.iter().map(|r| sent_json_opened(&ctx, r)).collect::<Result<_, _>>()?)))
}

async fn get_sent(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let row = sqlx::query(&format!("SELECT {SENT_COLUMNS} FROM sent WHERE envelope_id = $1"))
        .bind(&id)
        .fetch_optional(&ctx.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("disclosure"))?;
    Ok(Json(sent_json_opened(&ctx, &row)?))
}

pub(crate) const INBOX_COLUMNS: &str = "envelope_id, stream_seq, sender, kind, purpose, lawful_basis, consent_state, risk, subject_ref, case_ref, \
    categories, rule, policy_version, in_reply_to, status, created_at_ms, received_at_ms, opened_at_ms, revoked_at_ms, revoked_reason, opened_by, status_by";

pub(crate) fn inbox_json(row: &AnyRow) -> Value {
    row_json(
        row,
        &["envelope_id", "sender", "kind", "purpose", "lawful_basis", "consent_state", "risk", "subject_ref", "case_ref", "rule", "policy_version", "in_reply_to", "status", "revoked_reason",
          "opened_by", "status_by"],
        &["stream_seq", "created_at_ms", "received_at_ms", "opened_at_ms", "revoked_at_ms"],
        &["categories"],
    )
}

/// `GET /inbox`, paged by `stream_seq`.
async fn list_inbox(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = page.rows_by_number(&ctx.pool, &format!("SELECT {INBOX_COLUMNS} FROM inbox"), "stream_seq").await?;
    Ok(Json(Value::Array(rows.iter().map(inbox_json).collect())))
}

/// Reading an envelope opens it with the agency's key; the first read marks it opened.
async fn read_inbox(State(ctx): State<Ctx>, Path(id): Path<String>, staff: Staff) -> Result<Json<Value>, ApiError> {
    let (mut v, opened) = open_inbox(&ctx, &id, &staff).await?;
    v["payload"] = ctx.isp().schema.payload_to_json(&opened.payload);
    Ok(Json(v))
}

/// Opens a received envelope for `staff`: its row as JSON and the opened envelope. The first
/// read marks it opened and tells the sender; a revoked one is gone.
pub(crate) async fn open_inbox(ctx: &Ctx, id: &str, staff: &Staff) -> Result<(Value, isp::Opened), ApiError> {
    let id = id.to_owned();
    let row = sqlx::query(&format!("SELECT {INBOX_COLUMNS} FROM inbox WHERE envelope_id = $1"))
        .bind(&id)
        .fetch_optional(&ctx.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("inbox envelope"))?;
    if let Ok(Some(at)) = row.try_get::<Option<i64>, _>("revoked_at_ms") {
        return Err(ApiError {
            status: StatusCode::GONE,
            body: json!({"error": "revoked", "detail": "the sender revoked this disclosure; its content is no longer available",
                "revoked_at_ms": at, "envelope_id": id}),
        });
    }
    let (opened, _) = inbox::read(ctx, &id).await?.ok_or_else(|| ApiError::not_found("inbox envelope"))?;
    // The first read marks it opened and tells the sender, in one transaction.
    let mut tx = ctx.pool.begin().await?;
    let first = sqlx::query(
        "UPDATE inbox SET opened_at_ms = $1, opened_by = $2, status = CASE WHEN status = $3 THEN $4 ELSE status END WHERE envelope_id = $5 AND opened_at_ms IS NULL",
    )
    .bind(isp::now_ms())
    .bind(&staff.id)
    .bind(Arrival::New.code())
    .bind(Arrival::Opened.code())
    .bind(&id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if first && inbox::acknowledgeable(kind::name(opened.header.kind())) {
        crate::receipts::auto_receipt(ctx, &mut tx, &opened, AckStatus::Opened, &staff.id).await?;
    }
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    let row = sqlx::query(&format!("SELECT {INBOX_COLUMNS} FROM inbox WHERE envelope_id = $1")).bind(&id).fetch_one(&ctx.pool).await?;
    Ok((inbox_json(&row), opened))
}

/// `POST /inbox/{id}/ack`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// accepted, declined, closed (or received).
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub outcome: String,
}

/// Accepts, declines or closes a received referral: updates the inbox and sends a
/// `referral.ack` back to the sender under the policy's rule for acknowledgements.
pub(crate) async fn acknowledge(State(ctx): State<Ctx>, Path(id): Path<String>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: AckRequest = json_body(&body)?;
    let (status, arrival) = match Arrival::parse(&request.status) {
        Some(Arrival::Received) => (AckStatus::Received, Arrival::Received),
        Some(Arrival::Accepted) => (AckStatus::Accepted, Arrival::Accepted),
        Some(Arrival::Declined) => (AckStatus::Declined, Arrival::Declined),
        Some(Arrival::Closed) => (AckStatus::Closed, Arrival::Closed),
        _ => return Err(ApiError::bad_request("status: not an acknowledgement (received, accepted, declined, closed)")),
    };
    if status == AckStatus::Declined && request.reason.trim().is_empty() {
        return Err(ApiError::bad_request("a decline needs a reason"));
    }
    let row = sqlx::query("SELECT sender, kind, subject_ref, case_ref, status FROM inbox WHERE envelope_id = $1")
        .bind(&id)
        .fetch_optional(&ctx.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("inbox envelope"))?;
    let sender: String = row.try_get("sender")?;
    let kind_name: String = row.try_get("kind")?;
    let current = Arrival::parse(row.try_get("status")?);
    if !inbox::acknowledgeable(&kind_name) {
        return Err(ApiError::bad_request(format!("{kind_name} is not acknowledged")));
    }
    if current == Some(Arrival::Closed) {
        return Err(ApiError::conflict("this referral is already closed"));
    }
    if current == Some(Arrival::Revoked) {
        return Err(ApiError::conflict("the sender revoked this disclosure"));
    }
    let sender: String = sender;
    let (subject_ref, case_ref): (String, String) = (row.try_get("subject_ref")?, row.try_get("case_ref")?);
    let mut tx = ctx.pool.begin().await?;
    let outcome =
        match crate::receipts::receipt(&ctx.isp(), &id, &sender, &subject_ref, &case_ref, status, &request.reason, &request.outcome, &staff.id) {
            Ok(out) => ctx.send_in(&mut tx, &out).await,
            Err(e) => Err(e),
        };
    if outcome.is_ok() {
        crate::status::answer_arrival(&mut tx, &id, arrival, &staff.id).await?;
        staff_acknowledged(&ctx, &mut tx, &id, &sender, &kind_name, arrival.code(), &staff.id, &subject_ref, &case_ref).await?;
    }
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    let outcome = outcome?;
    Ok((StatusCode::CREATED, Json(serde_json::to_value(outcome).expect("serialisable"))))
}

/// What a staff member's acknowledgement does besides its receipt: it meets the referral's
/// acknowledgement deadline (the automatic `received` receipt never does), goes in the
/// chronology, and is recorded in the ledger as a signed `acknowledged` event, which the IG
/// report measures time to acknowledge by.
#[allow(clippy::too_many_arguments)]
async fn staff_acknowledged(ctx: &Ctx, tx: &mut crate::db::Tx, id: &str, sender: &str, kind_name: &str, status: &str, staff_id: &str, subject_ref: &str, case_ref: &str) -> Result<(), ApiError> {
    let now = ctx.config.clock.now_ms();
    crate::deadlines::meet(tx, crate::deadlines::ACKNOWLEDGE, id, crate::deadlines::Resolution::Met, now).await?;
    let isp = ctx.isp();
    let ack = isp::access::Acknowledgement { envelope_id: id, referrer: sender, kind: kind::parse(kind_name).unwrap_or_default(), status, staff_id, at_ms: isp::now_ms() };
    let (event, bytes) = isp::access::acknowledged_event(&isp.keys, &isp.policy.version, &ack);
    crate::outbox::enqueue(tx, &event.event_id, &crate::transport::event_subject(ctx.agency(), proto::v1::EventKind::Acknowledged), &bytes).await?;
    if !subject_ref.is_empty() {
        crate::chronology::add(
            tx,
            &crate::chronology::Entry { subject_ref: subject_ref.into(), case_ref: case_ref.into(), event: "acknowledged".into(), code: status.into(), item_id: id.into(), counterpart: sender.into(), staff_id: staff_id.into(), at_ms: now, ..Default::default() },
        )
        .await?;
    }
    Ok(())
}

/// `GET /quarantine`, paged by `stream_seq`.
async fn list_quarantine(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = page
        .rows_by_number(
            &ctx.pool,
            "SELECT stream_seq, subject, envelope_id, claimed_sender, reason, detail, violation, body_sha256, body_prefix, body_bytes, received_at_ms FROM quarantine",
            "stream_seq",
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| {
            let mut v = row_json(r, &["subject", "envelope_id", "claimed_sender", "reason", "detail", "body_sha256"], &["stream_seq", "body_bytes", "received_at_ms"], &[]);
            v["violation"] = json!(r.try_get::<i64, _>("violation").unwrap_or_default() != 0);
            // What the quarantine keeps of the body: its digest, length and first bytes (hex).
            v["body_prefix"] = json!(hex::encode(r.try_get::<Vec<u8>, _>("body_prefix").unwrap_or_default()));
            v
        })
        .collect();
    Ok(Json(Value::Array(items)))
}

#[cfg(test)]
mod tests {
    use super::redact_quoted;

    #[test]
    fn quoted_values_are_redacted() {
        assert_eq!(redact_quoted(r#"invalid type: string "17 Synthetic Lane", expected u32"#), "invalid type: string \"…\", expected u32");
        assert_eq!(redact_quoted("no quotes"), "no quotes");
        assert_eq!(redact_quoted("unknown field `cas_ref`, expected one of `to`"), "unknown field `cas_ref`, expected one of `to`");
        assert_eq!(redact_quoted("unknown field `Jane Smith`, expected `to`"), "unknown field `…`, expected `to`");
        assert_eq!(redact_quoted("cut \"17 Synthetic"), "cut \"…");
        assert_eq!(redact_quoted("invalid value 'Jane Smith' for enum hub.v1.Pathway; don't"), "invalid value '…' for enum hub.v1.Pathway; don't");
    }
}
