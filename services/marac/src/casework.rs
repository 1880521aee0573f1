//! The coordinator's decisions on a case, each one transaction: check the case id's grammar
//! and the input's codes (400), find the case (404), ask the transition table (409), then
//! change the case, record the step in the person's chronology with the staff id (its reason
//! sealed), and tell the referrer where that is owed. The JSON API and the console both call
//! these, so a page can do nothing the API would refuse.
//!
//! Screening is the coordinator's answer to the referral: screened in is `accepted`, criteria
//! not met is `declined` with its reason, and closing is `closed` with the reason code, each
//! sent back as a `referral.ack` in the same transaction, exactly as the inbox's own answer
//! would be (which a case also follows: [`crate::follow::follow_inbox`]).

use axum::http::StatusCode;
use proto::v1::AckStatus;
use runtime::{
    Ctx, Tx,
    api::{ApiError, clear_field},
    auth::Staff,
    chronology, deadlines,
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    case::{self, ActionStatus, CloseReason, Decision, Refused, Status, Step, event_of},
    follow::{self, ACTION_DUE},
    store::{self, Case, Change},
};

/// The longest reason or note taken (characters).
pub const NOTE_MAX: usize = 4_000;

/// Free text is never printed: only its length.
pub fn chars(text: &str) -> String {
    format!("<{} chars>", text.chars().count())
}

/// `POST /cases/{id}/screen`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScreenInput {
    pub decision: String,
    /// Why: required when the criteria are not met (the referrer is told it).
    #[serde(default)]
    pub reason: String,
}

/// `POST /cases/{id}/list`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListInput {
    pub meeting_id: String,
}

/// `POST /cases/{id}/defer` (the body may be empty).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeferInput {
    #[serde(default)]
    pub reason: String,
}

/// `POST /cases/{id}/close`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CloseInput {
    pub reason: String,
    #[serde(default)]
    pub note: String,
}

impl std::fmt::Debug for ScreenInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScreenInput").field("decision", &self.decision).field("reason", &chars(&self.reason)).finish()
    }
}

impl std::fmt::Debug for DeferInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferInput").field("reason", &chars(&self.reason)).finish()
    }
}

impl std::fmt::Debug for CloseInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloseInput").field("reason", &self.reason).field("note", &chars(&self.note)).finish()
    }
}

/// An id from a path: a case's (its referral's envelope id), a meeting's, an action's.
pub fn check_id(id: &str) -> Result<(), ApiError> {
    isp::clear::required("id", id, isp::clear::is_envelope_id, isp::clear::ENVELOPE_ID).map_err(clear_field)
}

pub fn unknown(field: &str, codes: String) -> ApiError {
    ApiError::bad_request(format!("{field} is one of {codes}"))
}

/// Free text, trimmed, within `max` characters.
pub fn text<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, ApiError> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(ApiError::bad_request(format!("{field} is longer than {max} characters")));
    }
    Ok(value)
}

/// 409: the step is not possible on the case, saying why and what is.
pub fn invalid(case: &Case, step: Step, why: Refused) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        body: json!({
            "error": "invalid_transition",
            "detail": format!("{} is not possible on this case: {why}", step.code()),
            "status": case.status.code(),
            "allowed_steps": case::allowed(case.status).iter().map(|s| s.code()).collect::<Vec<_>>(),
        }),
    }
}

fn changed_meanwhile() -> ApiError {
    ApiError::conflict("the case changed meanwhile (someone else acted on it): reload it and try again")
}

/// The case `id`, or 404.
pub async fn load(tx: &mut Tx, id: &str) -> Result<Case, ApiError> {
    store::get(&mut **tx, id).await?.ok_or_else(|| ApiError::not_found("MARAC case"))
}

/// The case `id` outside a transaction, or 404 (its id checked first).
pub async fn find(ctx: &Ctx, id: &str) -> Result<Case, ApiError> {
    check_id(id)?;
    store::get(&ctx.pool, id).await?.ok_or_else(|| ApiError::not_found("MARAC case"))
}

/// One step taken on a case: what it writes besides the status, the chronology's code for it
/// and the note (sealed when stored).
pub struct Taken<'a> {
    pub step: Step,
    pub change: Change<'a>,
    pub code: &'a str,
    pub note: &'a str,
}

/// Takes a step on `case` in `tx`: the status change, and the step in the chronology with its
/// note. Returns the status it moved to.
pub async fn apply(ctx: &Ctx, tx: &mut Tx, case: &Case, taken: Taken<'_>, staff: &Staff, now: i64) -> Result<Status, ApiError> {
    let Taken { step, change, code, note } = taken;
    let to = case::next(case.status, step).map_err(|why| invalid(case, step, why))?;
    if !store::change(tx, &case.id, case.status, to, change, now).await? {
        return Err(changed_meanwhile());
    }
    if !case.subject_ref.is_empty() {
        chronology::add_note(ctx, tx, follow::entry(case, event_of(step), code, &staff.id, now), note).await?;
    }
    tracing::info!(case_id = %case.id, step = step.code(), from = case.status.code(), to = to.code(), "MARAC case moved");
    Ok(to)
}

/// The coordinator's answer to the referral, as the inbox's own acknowledgement gives it: a
/// `referral.ack` to the referrer in `tx`, the inbox row's status, the acknowledgement deadline
/// met, a signed `acknowledged` event for the ledger and the person's chronology. Nothing is
/// sent for a revoked referral (its referrer withdrew it) or one closed in the inbox already.
async fn acknowledge_in(ctx: &Ctx, tx: &mut Tx, case: &Case, (status, reason, outcome): (AckStatus, &str, &str), staff: &Staff, now: i64) -> Result<(), ApiError> {
    if case.revoked_at_ms.is_some() || case.inbox_status == runtime::status::Arrival::Closed.code() {
        return Ok(());
    }
    let arrival = runtime::receipts::arrival_of(status).unwrap_or(runtime::status::Arrival::Received);
    let name = arrival.code();
    let isp = ctx.isp();
    let out = runtime::receipts::receipt(&isp, &case.id, &case.referrer, &case.subject_ref, &case.case_ref, status, reason, outcome, &staff.id)?;
    ctx.send_in(tx, &out).await?;
    runtime::status::answer_arrival(tx, &case.id, arrival, &staff.id).await?;
    store::followed(tx, &case.id, name).await?;
    deadlines::meet(tx, deadlines::ACKNOWLEDGE, &case.id, runtime::deadlines::Resolution::Met, now).await?;
    let ack = isp::access::Acknowledgement { envelope_id: &case.id, referrer: &case.referrer, kind: isp::Kind::MaracReferral, status: name, staff_id: &staff.id, at_ms: isp::now_ms() };
    let (event, bytes) = isp::access::acknowledged_event(&isp.keys, &isp.policy.version, &ack);
    runtime::outbox::enqueue(tx, &event.event_id, &runtime::transport::event_subject(ctx.agency(), proto::v1::EventKind::Acknowledged), &bytes).await?;
    if !case.subject_ref.is_empty() {
        let mut e = follow::entry(case, "acknowledged", name, &staff.id, now);
        e.case_ref = case.case_ref.clone();
        chronology::add(tx, &e).await?;
    }
    Ok(())
}

/// Screens a case: in (the criteria are met, the referrer is told it is accepted) or out
/// (not met, with the reason the referrer is told). A decision may be taken back until the
/// case is on an agenda.
pub async fn screen(ctx: &Ctx, staff: &Staff, id: &str, input: &ScreenInput) -> Result<Case, ApiError> {
    check_id(id)?;
    let decision = Decision::parse(&input.decision).ok_or_else(|| unknown("decision", Decision::codes()))?;
    let reason = text("reason", &input.reason, NOTE_MAX)?;
    if decision == Decision::CriteriaNotMet && reason.is_empty() {
        return Err(ApiError::bad_request("reason: a case screened out needs the reason the criteria are not met (the referrer is told it)"));
    }
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let case = load(&mut tx, id).await?;
    apply(ctx, &mut tx, &case, Taken { step: decision.step(), change: Change::Screened(decision), code: decision.code(), note: reason }, staff, now).await?;
    let ack = if decision == Decision::ScreenedIn { AckStatus::Accepted } else { AckStatus::Declined };
    acknowledge_in(ctx, &mut tx, &case, (ack, reason, ""), staff, now).await?;
    follow::reclassify(&mut tx, &case.subject_ref, &case.id, now).await?;
    let case = load(&mut tx, id).await?;
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    Ok(case)
}

/// Lists a screened-in case for a meeting whose list is still open (until the end of its
/// cut-off day); a listed case moves to another meeting the same way.
pub async fn list(ctx: &Ctx, staff: &Staff, id: &str, input: &ListInput) -> Result<Case, ApiError> {
    check_id(id)?;
    isp::clear::required("meeting_id", &input.meeting_id, isp::clear::is_envelope_id, isp::clear::ENVELOPE_ID).map_err(clear_field)?;
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let case = load(&mut tx, id).await?;
    let meeting = store::meeting(&mut *tx, &input.meeting_id).await?.ok_or_else(|| ApiError::bad_request("meeting_id: no meeting of that id is on the schedule"))?;
    if case.meeting_id == meeting.id {
        return Err(ApiError::conflict("the case is on that meeting's agenda already"));
    }
    if !meeting.list_open(now) {
        return Err(ApiError::conflict(format!(
            "the list for the meeting of {} closed at the end of {}: list the case for a later meeting",
            meeting.meets_on, meeting.list_closes_on
        )));
    }
    apply(ctx, &mut tx, &case, Taken { step: Step::List, change: Change::Listed { meeting_id: &meeting.id }, code: &meeting.meets_on, note: "" }, staff, now).await?;
    let case = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(case)
}

/// Takes a listed case off its meeting's agenda (back to screened in, to be listed again).
pub async fn defer(ctx: &Ctx, staff: &Staff, id: &str, input: &DeferInput) -> Result<Case, ApiError> {
    check_id(id)?;
    let reason = text("reason", &input.reason, NOTE_MAX)?;
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let case = load(&mut tx, id).await?;
    apply(ctx, &mut tx, &case, Taken { step: Step::Defer, change: Change::Deferred, code: "", note: reason }, staff, now).await?;
    let case = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(case)
}

/// Closes a case with a reason the coordinator chooses; the referrer is told. `actions_complete`
/// needs every action of the case done; closing for another reason cancels what is still owed
/// on the case (research replies, action due dates).
pub async fn close(ctx: &Ctx, staff: &Staff, id: &str, input: &CloseInput) -> Result<Case, ApiError> {
    check_id(id)?;
    let reason = CloseReason::parse(&input.reason).filter(|r| r.chosen_by_staff()).ok_or_else(|| {
        let codes = CloseReason::for_staff().map(CloseReason::code).collect::<Vec<_>>().join(", ");
        if input.reason == CloseReason::ReferralRevoked.code() {
            ApiError::bad_request(format!("referral_revoked is recorded by the service when the referrer revokes the referral; reason is one of {codes}"))
        } else {
            unknown("reason", codes)
        }
    })?;
    let note = text("note", &input.note, NOTE_MAX)?;
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let case = load(&mut tx, id).await?;
    let actions = store::actions_of(&mut *tx, id).await?;
    let open = actions.iter().filter(|a| a.status != ActionStatus::Done).count();
    if reason == CloseReason::ActionsComplete && open > 0 && case.status.is_open() {
        return Err(ApiError::conflict(format!("{open} of the case's actions are not done: close it for another reason, or when they are")));
    }
    apply(ctx, &mut tx, &case, Taken { step: Step::Close, change: Change::Closed(reason), code: reason.code(), note }, staff, now).await?;
    for r in store::research_of(&mut *tx, id).await? {
        deadlines::cancel_all(&mut tx, &r.request_id, now).await?;
    }
    for a in &actions {
        deadlines::meet(&mut tx, ACTION_DUE, &a.action_id, runtime::deadlines::Resolution::Cancelled, now).await?;
    }
    acknowledge_in(ctx, &mut tx, &case, (AckStatus::Closed, "", reason.code()), staff, now).await?;
    follow::reclassify(&mut tx, &case.subject_ref, &case.id, now).await?;
    let case = load(&mut tx, id).await?;
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    Ok(case)
}
