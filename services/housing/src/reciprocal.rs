//! The reciprocal scheme from a landlord's side.
//!
//! - Its move applications: every `reciprocal.status` the coordinator sends about one it
//!   referred, or one of its tenants' (as the current landlord), kept in order; an
//!   application's state is its latest status, so the referrer sees each one (needs more areas,
//!   approved, circulated, offered, accepted, moved, withdrawn...).
//! - What it sends the coordinator: its named lead's approval (a team manager, by the staff id
//!   of their own login, never a name, and never the one who made the request), and as the
//!   referrer new areas, a withdrawal or word that the move is no longer needed.
//! - The property requests circulated to it, the answers to its offers (a decline with its
//!   reason) and the end of a request it was sent.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{get, post},
};
use isp::{Kind, Outgoing, clear};
use proto::v1::{Header, Payload, ReciprocalApproval, ReciprocalChange, ReciprocalOfferResponse, ReciprocalPropertyRequest, ReciprocalStage, ReciprocalStatus, ReciprocalUpdate, payload::Body};
use runtime::{
    Ctx, SendError, Tx,
    api::{ApiError, Page, clear_field, json_body},
    auth::Staff,
    chronology::{self, Entry},
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::common::{codes, now, refusal};

/// A request must name at least this many areas of choice that are not excluded (the scheme's
/// coordinator checks again).
pub const MIN_AREAS: usize = 5;
pub const MAX_AREAS: usize = 40;
pub const AREA_MAX_CHARS: usize = 80;

codes!(
    /// Where an application stands at the scheme (the coordinator's `reciprocal.status`).
    Stage {
        NeedsMoreAreas = "needs_more_areas": "Needs more areas of choice",
        AwaitingApproval = "awaiting_approval": "Awaiting the named lead's approval",
        Approved = "approved": "Approved",
        NotApproved = "not_approved": "Not approved by the named lead",
        Circulated = "circulated": "Circulated to landlords",
        Offered = "offered": "A property is offered",
        Accepted = "accepted": "Offer accepted",
        OfferRefused = "offer_refused": "Offer refused",
        Moved = "moved": "Moved",
        Withdrawn = "withdrawn": "Withdrawn",
        NoLongerNeeded = "no_longer_needed": "Move no longer needed",
        NotAccepted = "not_accepted": "Not accepted by the scheme",
    }
);

codes!(
    /// Where a property request circulated to this landlord stands (`property_requests.status`).
    RequestStatus {
        Open = "open": "Open",
        OfferAccepted = "offer_accepted": "Our offer accepted",
        OfferRefused = "offer_refused": "Our offer refused",
        Filled = "filled": "Filled",
        Closed = "closed": "Closed",
    }
);

impl Stage {
    pub fn of(stage: ReciprocalStage) -> Option<Stage> {
        use ReciprocalStage as P;
        Some(match stage {
            P::Unspecified => return None,
            P::NeedsMoreAreas => Stage::NeedsMoreAreas,
            P::AwaitingApproval => Stage::AwaitingApproval,
            P::Approved => Stage::Approved,
            P::NotApproved => Stage::NotApproved,
            P::Circulated => Stage::Circulated,
            P::Offered => Stage::Offered,
            P::Accepted => Stage::Accepted,
            P::OfferRefused => Stage::OfferRefused,
            P::Moved => Stage::Moved,
            P::Withdrawn => Stage::Withdrawn,
            P::NoLongerNeeded => Stage::NoLongerNeeded,
            P::NotAccepted => Stage::NotAccepted,
        })
    }

    pub fn is_open(self) -> bool {
        !matches!(self, Stage::NotApproved | Stage::OfferRefused | Stage::Moved | Stage::Withdrawn | Stage::NoLongerNeeded | Stage::NotAccepted)
    }

    /// Whether the areas may still change (it has not been circulated).
    pub fn before_circulation(self) -> bool {
        matches!(self, Stage::NeedsMoreAreas | Stage::AwaitingApproval | Stage::Approved)
    }

    /// Whether the named lead may answer now.
    pub fn awaits_lead(self) -> bool {
        matches!(self, Stage::NeedsMoreAreas | Stage::AwaitingApproval)
    }
}

codes!(
    /// The named lead's answer.
    Approval {
        Approved = "approved": "Approve the move",
        NotApproved = "not_approved": "Do not approve it",
    }
);

codes!(
    /// Why a named lead does not approve.
    NotApprovedReason {
        RiskManagedInPlace = "risk_managed_in_place": "The risk can be managed where the tenant lives",
        NotASecureTenant = "not_a_secure_tenant": "The applicant is not a secure tenant of this landlord",
        OtherOptionAgreed = "other_option_agreed": "Another housing option was agreed",
        InsufficientInformation = "insufficient_information": "There is not enough information to approve it",
    }
);

codes!(
    /// How the referrer ends an application.
    Ending {
        Withdrawn = "withdrawn": "Withdraw the application",
        NoLongerNeeded = "no_longer_needed": "The move is no longer needed",
    }
);

/// Labels of the scheme's reason codes, for people (the coordinator's list).
pub fn reason_label(code: &str) -> &'static str {
    match code {
        "fewer_than_five_areas" => "Fewer than five areas of choice once the excluded areas are taken out",
        "current_landlord_not_a_landlord" => "The current landlord named is not a landlord of the scheme",
        "not_a_named_lead" => "The approver is not a named lead this landlord has on record with the scheme",
        "named_lead_not_a_staff_id" => "The approval did not name its lead by a staff id",
        "not_approved_by_lead" => "The named lead did not approve the application",
        "already_circulated" => "The application was circulated already: the change was not made",
        "application_closed" => "The application is closed",
        "area_excluded" => "The property is in an area the applicant must not go to",
        "area_not_chosen" => "The property is not in one of the applicant's areas of choice",
        "already_offered" => "The application holds an offer already: one offer per application",
        "too_few_bedrooms" => "The property has fewer bedrooms than the household needs",
        "not_circulated_to_landlord" => "The property request was not circulated to this landlord",
        "not_circulated" => "The application has not been circulated",
        "unknown_application" => "The scheme has no application of that reference",
        "applicant_refused" => "The applicant refused the offer",
        "application_withdrawn" => "The application was withdrawn",
        "move_no_longer_needed" => "The move is no longer needed",
        "landlord_mismatch" => "The offer named another landlord",
        _ => "",
    }
}

// ---------------------------------------------------------------- received

/// `reciprocal.status`: kept when it is about an application this landlord referred or whose
/// applicant is its tenant; otherwise it ends a property request circulated to it.
pub async fn status_received(ctx: &Ctx, tx: &mut Tx, h: &Header, s: &ReciprocalStatus) -> anyhow::Result<()> {
    let Some(stage) = Stage::of(s.stage()) else { return Ok(()) };
    if !clear::is_case_ref(&s.application_ref) {
        tracing::warn!(envelope_id = %h.envelope_id, "a reciprocal status without a reference of the scheme: kept in the inbox only");
        return Ok(());
    }
    let at = now(ctx);
    let party = !s.request_envelope_id.is_empty() || s.current_landlord == ctx.agency();
    if party {
        sqlx::query(
            "INSERT INTO reciprocal_statuses (envelope_id, application_ref, coordinator, request_envelope_id, subject_ref, status, reason, sequence, areas_needed, \
             current_landlord, approved_by, received_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
        )
        .bind(&h.envelope_id)
        .bind(&s.application_ref)
        .bind(&h.sender)
        .bind(if clear::is_envelope_id(&s.request_envelope_id) { s.request_envelope_id.as_str() } else { "" })
        .bind(&h.subject_ref)
        .bind(stage.code())
        .bind(token(&s.reason))
        .bind(i64::from(s.sequence))
        .bind(i64::from(s.areas_needed))
        .bind(if clear::is_agency_id(&s.current_landlord) { s.current_landlord.as_str() } else { "" })
        .bind(if clear::is_staff_id(&s.approved_by) { s.approved_by.as_str() } else { "" })
        .bind(at)
        .execute(&mut **tx)
        .await?;
        if !h.subject_ref.is_empty() {
            let entry = Entry {
                subject_ref: h.subject_ref.clone(),
                case_ref: s.application_ref.clone(),
                event: "reciprocal_status".into(),
                code: stage.code().into(),
                item_id: h.envelope_id.clone(),
                counterpart: h.sender.clone(),
                at_ms: at,
                ..Default::default()
            };
            chronology::add(tx, &entry).await?;
        }
    }
    // A request circulated to this landlord that is filled or ended.
    if matches!(stage, Stage::Accepted) || !stage.is_open() {
        let status = if stage == Stage::Accepted { RequestStatus::Filled } else { RequestStatus::Closed };
        sqlx::query("UPDATE property_requests SET status = $1, reason = $2, updated_at_ms = $3 WHERE application_ref = $4 AND coordinator = $5 AND status <> $6")
            .bind(status.code())
            .bind(stage.code())
            .bind(at)
            .bind(&s.application_ref)
            .bind(&h.sender)
            .bind(RequestStatus::OfferAccepted.code())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// A reason code as kept: a token, or nothing.
fn token(code: &str) -> &str {
    if clear::is_token(code) { code } else { "" }
}

/// `reciprocal.property_request`: an open request this landlord can offer against.
pub async fn property_request_received(ctx: &Ctx, tx: &mut Tx, h: &Header, p: &ReciprocalPropertyRequest) -> anyhow::Result<()> {
    let household = p.household.clone().unwrap_or_default();
    let at = now(ctx);
    sqlx::query(
        "INSERT INTO property_requests (application_ref, envelope_id, coordinator, areas, bedrooms_needed, status, received_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT DO NOTHING",
    )
    .bind(&p.application_ref)
    .bind(&h.envelope_id)
    .bind(&h.sender)
    .bind(ctx.seal_at_rest(&p.areas.join(","))?)
    .bind(i64::from(household.bedrooms_needed))
    .bind(RequestStatus::Open.code())
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `reciprocal.offer_response`: the coordinator's answer to this landlord's offer (a decline
/// says why).
pub async fn offer_response_received(ctx: &Ctx, tx: &mut Tx, h: &Header, r: &ReciprocalOfferResponse) -> anyhow::Result<()> {
    sqlx::query("UPDATE property_requests SET status = $1, reason = $2, updated_at_ms = $3 WHERE application_ref = $4 AND coordinator = $5")
        .bind(if r.accepted { RequestStatus::OfferAccepted } else { RequestStatus::OfferRefused }.code())
        .bind(token(&r.reason))
        .bind(now(ctx))
        .bind(&r.application_ref)
        .bind(&h.sender)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- applications

/// One status received.
#[derive(Debug, Clone)]
pub struct Status {
    pub envelope_id: String,
    pub application_ref: String,
    pub coordinator: String,
    pub request_envelope_id: String,
    pub subject_ref: String,
    pub stage: Stage,
    pub reason: String,
    pub sequence: i64,
    pub areas_needed: i64,
    pub current_landlord: String,
    pub approved_by: String,
    pub received_at_ms: i64,
}

const STATUS_COLUMNS: &str =
    "envelope_id, application_ref, coordinator, request_envelope_id, subject_ref, status, reason, sequence, areas_needed, current_landlord, approved_by, received_at_ms";

impl Status {
    fn from_row(r: &sqlx::any::AnyRow) -> sqlx::Result<Status> {
        let stage: String = r.try_get("status")?;
        Ok(Status {
            envelope_id: r.try_get("envelope_id")?,
            application_ref: r.try_get("application_ref")?,
            coordinator: r.try_get("coordinator")?,
            request_envelope_id: r.try_get("request_envelope_id")?,
            subject_ref: r.try_get("subject_ref")?,
            stage: Stage::parse(&stage).ok_or_else(|| sqlx::Error::ColumnDecode { index: "status".into(), source: "not a stage this service knows".into() })?,
            reason: r.try_get("reason")?,
            sequence: r.try_get("sequence")?,
            areas_needed: r.try_get("areas_needed")?,
            current_landlord: r.try_get("current_landlord")?,
            approved_by: r.try_get("approved_by")?,
            received_at_ms: r.try_get("received_at_ms")?,
        })
    }
}

/// A move application as this landlord knows it: every status, in order; its state is the
/// latest.
#[derive(Debug, Clone)]
pub struct Application {
    pub statuses: Vec<Status>,
}

impl Application {
    pub fn latest(&self) -> &Status {
        self.statuses.last().expect("an application has a status")
    }

    /// The request it came from, when this landlord referred it.
    pub fn request_envelope_id(&self) -> &str {
        self.statuses.iter().map(|s| s.request_envelope_id.as_str()).find(|r| !r.is_empty()).unwrap_or_default()
    }

    pub fn we_referred(&self) -> bool {
        !self.request_envelope_id().is_empty()
    }

    pub fn subject_ref(&self) -> &str {
        self.statuses.iter().map(|s| s.subject_ref.as_str()).find(|r| !r.is_empty()).unwrap_or_default()
    }

    pub fn json(&self, agency: &str) -> Value {
        let l = self.latest();
        json!({
            "application_ref": l.application_ref,
            "coordinator": l.coordinator,
            "request_envelope_id": self.request_envelope_id(),
            "subject_ref": self.subject_ref(),
            "status": l.stage.code(),
            "status_label": l.stage.label(),
            "reason": l.reason,
            "reason_label": reason_label(&l.reason),
            "areas_needed": l.areas_needed,
            "current_landlord": l.current_landlord,
            "approved_by": l.approved_by,
            "referrer": self.we_referred(),
            "current_landlord_is_us": l.current_landlord == agency,
            "updated_at_ms": l.received_at_ms,
            "statuses": self.statuses.iter().map(|s| json!({"envelope_id": s.envelope_id, "status": s.stage.code(), "reason": s.reason, "sequence": s.sequence, "received_at_ms": s.received_at_ms})).collect::<Vec<_>>(),
        })
    }
}

/// The applications of these references (each with its statuses in order).
async fn applications_of(pool: &sqlx::AnyPool, references: &[String]) -> sqlx::Result<Vec<Application>> {
    if references.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {STATUS_COLUMNS} FROM reciprocal_statuses WHERE application_ref IN ({}) ORDER BY application_ref, sequence, received_at_ms",
        runtime::db::numbered(1, references.len())
    );
    let mut q = sqlx::query(&sql);
    for r in references {
        q = q.bind(r.as_str());
    }
    let mut out: Vec<Application> = Vec::new();
    for row in q.fetch_all(pool).await? {
        let s = Status::from_row(&row)?;
        match out.last_mut() {
            Some(a) if a.latest().application_ref == s.application_ref => a.statuses.push(s),
            _ => out.push(Application { statuses: vec![s] }),
        }
    }
    Ok(out)
}

/// A page of applications in reference order after `after`.
pub async fn page(pool: &sqlx::AnyPool, after: &str, limit: i64) -> sqlx::Result<Vec<Application>> {
    let refs: Vec<(String,)> = sqlx::query_as(&format!("SELECT DISTINCT application_ref FROM reciprocal_statuses WHERE {}", Page::clause("application_ref", 1)))
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    applications_of(pool, &refs.into_iter().map(|(r,)| r).collect::<Vec<_>>()).await
}

/// One application, if this landlord has heard of it.
pub async fn find(ctx: &Ctx, reference: &str) -> Result<Application, ApiError> {
    clear::required("reference", reference, clear::is_case_ref, clear::CASE_REF).map_err(clear_field)?;
    applications_of(&ctx.pool, &[reference.to_owned()]).await?.pop().ok_or_else(|| ApiError::not_found("reciprocal application"))
}

/// What this landlord sent the coordinator about an application: (envelope id, action, staff
/// id, at), oldest first.
pub async fn actions(pool: &sqlx::AnyPool, reference: &str) -> sqlx::Result<Vec<(String, String, String, i64)>> {
    sqlx::query_as("SELECT envelope_id, action, staff_id, at_ms FROM reciprocal_actions WHERE application_ref = $1 ORDER BY at_ms, envelope_id").bind(reference).fetch_all(pool).await
}

// ---------------------------------------------------------------- sent

/// Sends `body` about `app` to its coordinator and records the action, in one transaction.
async fn send(ctx: &Ctx, staff: &Staff, app: &Application, kind: Kind, action: &str, body: Body) -> Result<Value, ApiError> {
    let l = app.latest();
    let isp = ctx.isp();
    let role = isp.directory.require(&l.coordinator).map_err(ApiError::internal)?.role;
    let (purpose, basis) = isp
        .policy
        .defaults_for(isp.role, role, kind)
        .ok_or_else(|| refusal(StatusCode::CONFLICT, "no_rule", "the partnership's policy has no rule for this message to the scheme"))?;
    let out = Outgoing {
        recipient: l.coordinator.clone(),
        kind,
        purpose: purpose.to_owned(),
        lawful_basis: basis.to_owned(),
        subject_ref: app.subject_ref().to_owned(),
        case_ref: l.application_ref.clone(),
        in_reply_to: l.envelope_id.clone(),
        payload: Payload { body: Some(body) },
        ..Default::default()
    };
    let at = now(ctx);
    let mut tx = ctx.pool.begin().await?;
    let sent = match ctx.send_in(&mut tx, &out).await {
        Ok(sent) => sent,
        // The refusal is kept (a near miss in the ledger), and nothing else happens.
        Err(e @ SendError::Denied { .. }) => {
            tx.commit().await?;
            ctx.outbox_ready.notify_one();
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    sqlx::query("INSERT INTO reciprocal_actions (envelope_id, application_ref, action, staff_id, at_ms) VALUES ($1, $2, $3, $4, $5)")
        .bind(&sent.envelope_id)
        .bind(&l.application_ref)
        .bind(action)
        .bind(&staff.id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    if !app.subject_ref().is_empty() {
        let entry = Entry {
            subject_ref: app.subject_ref().to_owned(),
            case_ref: l.application_ref.clone(),
            event: format!("reciprocal_{}", isp::kind::name(kind).trim_start_matches("reciprocal.")),
            code: action.to_owned(),
            item_id: sent.envelope_id.clone(),
            counterpart: l.coordinator.clone(),
            staff_id: staff.id.clone(),
            at_ms: at,
            ..Default::default()
        };
        chronology::add(&mut tx, &entry).await?;
    }
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    tracing::info!(application_ref = %l.application_ref, action, envelope_id = %sent.envelope_id, "sent to the reciprocal scheme");
    Ok(json!({"application_ref": l.application_ref, "action": action, "envelope_id": sent.envelope_id, "staff_id": staff.id}))
}

fn conflict(detail: impl Into<String>) -> ApiError {
    ApiError::conflict(detail)
}

/// `POST /reciprocal-applications/{reference}/approval`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalInput {
    pub decision: String,
    /// Why not (a code), when not approved.
    #[serde(default)]
    pub reason: String,
}

/// The named lead's answer, from their own login: the applicant's current landlord only, while
/// the application waits for it, and never by the member of staff who made the request.
pub async fn approve(ctx: &Ctx, staff: &Staff, reference: &str, input: &ApprovalInput) -> Result<Value, ApiError> {
    let decision = Approval::parse(&input.decision).ok_or_else(|| ApiError::bad_request(format!("decision is one of {}", Approval::codes())))?;
    let reason = match (decision, input.reason.as_str()) {
        (Approval::Approved, "") => "",
        (Approval::Approved, _) => return Err(ApiError::bad_request("reason is only for an application not approved")),
        (Approval::NotApproved, r) => NotApprovedReason::parse(r).ok_or_else(|| ApiError::bad_request(format!("reason is one of {}", NotApprovedReason::codes())))?.code(),
    };
    if !clear::is_staff_id(&staff.id) {
        return Err(ApiError::bad_request(format!("your login id is not {}: the scheme records a named lead by staff id only", clear::STAFF_ID)));
    }
    let app = find(ctx, reference).await?;
    let l = app.latest();
    if l.current_landlord != ctx.agency() {
        return Err(conflict("only the named lead of the applicant's current landlord approves, and this landlord is not it"));
    }
    if !l.stage.awaits_lead() {
        return Err(conflict(format!("the application is {}: it does not wait for the named lead", l.stage.label().to_lowercase())));
    }
    let request = app.request_envelope_id();
    if !request.is_empty() && runtime::sent::get(&ctx.pool, request).await?.is_some_and(|s| s.sent_by == staff.id) {
        return Err(conflict("the named lead approves a request someone else made: you made this one"));
    }
    let body = ReciprocalApproval { application_ref: l.application_ref.clone(), approved: decision == Approval::Approved, named_lead: staff.id.clone(), reason: reason.to_owned() };
    send(ctx, staff, &app, Kind::ReciprocalApproval, decision.code(), Body::ReciprocalApproval(body)).await
}

/// `POST /reciprocal-applications/{reference}/areas`: the whole lists, again.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreasInput {
    pub areas_of_choice: Vec<String>,
    #[serde(default)]
    pub excluded_areas: Vec<String>,
}

fn key(area: &str) -> String {
    area.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// How many distinct areas of choice are not excluded.
pub fn usable_areas(choice: &[String], excluded: &[String]) -> usize {
    let excluded: Vec<String> = excluded.iter().map(|a| key(a)).collect();
    let mut seen: Vec<String> = Vec::new();
    for a in choice.iter().map(|a| key(a)).filter(|a| !a.is_empty() && !excluded.contains(a)) {
        if !seen.contains(&a) {
            seen.push(a);
        }
    }
    seen.len()
}

fn check_list(field: &str, list: &[String]) -> Result<(), ApiError> {
    if list.len() > MAX_AREAS {
        return Err(ApiError::bad_request(format!("{field}: at most {MAX_AREAS} areas")));
    }
    match list.iter().position(|a| a.chars().count() > AREA_MAX_CHARS || a.contains(',')) {
        Some(i) => Err(ApiError::bad_request(format!("{field}[{i}] is longer than {AREA_MAX_CHARS} characters or holds a comma"))),
        None => Ok(()),
    }
}

/// The referrer's new areas of choice and exclusions, before circulation.
pub async fn change_areas(ctx: &Ctx, staff: &Staff, reference: &str, input: &AreasInput) -> Result<Value, ApiError> {
    check_list("areas_of_choice", &input.areas_of_choice)?;
    check_list("excluded_areas", &input.excluded_areas)?;
    let usable = usable_areas(&input.areas_of_choice, &input.excluded_areas);
    if usable < MIN_AREAS {
        return Err(ApiError::bad_request(format!("areas_of_choice: at least {MIN_AREAS} areas of choice that are not excluded ({usable} given)")));
    }
    let app = find(ctx, reference).await?;
    let l = app.latest();
    if !app.we_referred() {
        return Err(conflict("only the referrer changes an application's areas"));
    }
    if !l.stage.before_circulation() {
        return Err(conflict(format!("the application is {}: its areas can no longer change", l.stage.label().to_lowercase())));
    }
    let body = ReciprocalUpdate {
        application_ref: l.application_ref.clone(),
        change: ReciprocalChange::Areas as i32,
        areas_of_choice: input.areas_of_choice.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect(),
        excluded_areas: input.excluded_areas.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect(),
    };
    send(ctx, staff, &app, Kind::ReciprocalUpdate, "areas", Body::ReciprocalUpdate(body)).await
}

/// `POST /reciprocal-applications/{reference}/withdraw`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawInput {
    pub reason: String,
}

/// The referrer ends an open application: withdrawn, or the move is no longer needed.
pub async fn withdraw(ctx: &Ctx, staff: &Staff, reference: &str, input: &WithdrawInput) -> Result<Value, ApiError> {
    let ending = Ending::parse(&input.reason).ok_or_else(|| ApiError::bad_request(format!("reason is one of {}", Ending::codes())))?;
    let app = find(ctx, reference).await?;
    let l = app.latest();
    if !app.we_referred() {
        return Err(conflict("only the referrer withdraws an application"));
    }
    if !l.stage.is_open() {
        return Err(conflict(format!("the application is {} already", l.stage.label().to_lowercase())));
    }
    let change = match ending {
        Ending::Withdrawn => ReciprocalChange::Withdrawn,
        Ending::NoLongerNeeded => ReciprocalChange::NoLongerNeeded,
    };
    let body = ReciprocalUpdate { application_ref: l.application_ref.clone(), change: change as i32, ..Default::default() };
    send(ctx, staff, &app, Kind::ReciprocalUpdate, ending.code(), Body::ReciprocalUpdate(body)).await
}

// ---------------------------------------------------------------- the JSON API

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/reciprocal-applications", get(list))
        .route("/reciprocal-applications/{reference}", get(one))
        .route("/reciprocal-applications/{reference}/approval", post(post_approval))
        .route("/reciprocal-applications/{reference}/areas", post(post_areas))
        .route("/reciprocal-applications/{reference}/withdraw", post(post_withdraw))
}

/// `GET /reciprocal-applications`, paged by `application_ref`.
async fn list(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let apps = page_of(&ctx, &page).await?;
    Ok(Json(Value::Array(apps.iter().map(|a| a.json(ctx.agency())).collect())))
}

async fn page_of(ctx: &Ctx, p: &Page) -> Result<Vec<Application>, ApiError> {
    Ok(page(&ctx.pool, &p.after(), p.limit()?).await?)
}

async fn one(State(ctx): State<Ctx>, Path(reference): Path<String>) -> Result<Json<Value>, ApiError> {
    let app = find(&ctx, &reference).await?;
    let mut v = app.json(ctx.agency());
    v["sent"] = json!(actions(&ctx.pool, &reference).await?.into_iter().map(|(e, a, s, at)| json!({"envelope_id": e, "action": a, "staff_id": s, "at_ms": at})).collect::<Vec<_>>());
    Ok(Json(v))
}

async fn post_approval(State(ctx): State<Ctx>, staff: Staff, Path(reference): Path<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: ApprovalInput = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(approve(&ctx, &staff, &reference, &input).await?)))
}

async fn post_areas(State(ctx): State<Ctx>, staff: Staff, Path(reference): Path<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: AreasInput = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(change_areas(&ctx, &staff, &reference, &input).await?)))
}

async fn post_withdraw(State(ctx): State<Ctx>, staff: Staff, Path(reference): Path<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: WithdrawInput = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(withdraw(&ctx, &staff, &reference, &input).await?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_of_the_proto_has_its_code() {
        let mut seen = std::collections::BTreeSet::new();
        for n in 1..=12 {
            let stage = Stage::of(ReciprocalStage::try_from(n).expect("a stage")).expect("known");
            assert!(seen.insert(stage.code()));
        }
        assert_eq!(seen.len(), Stage::ALL.len());
        assert_eq!(Stage::of(ReciprocalStage::Unspecified), None);
    }

    #[test]
    fn areas_are_counted_once_in_any_case_and_without_the_excluded() {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(usable_areas(&s(&["Eastvale", "eastvale ", "South  moor", "Northbridge", ""]), &s(&["NORTHBRIDGE"])), 2);
        assert_eq!(usable_areas(&s(&["A1", "B1", "C1", "D1", "E1"]), &[]), 5);
    }

    #[test]
    fn every_reason_the_scheme_sends_reads_in_words() {
        for code in ["fewer_than_five_areas", "area_excluded", "already_offered", "not_a_named_lead", "application_withdrawn"] {
            assert!(!reason_label(code).is_empty(), "{code}");
        }
    }
}
