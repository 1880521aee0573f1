//! What staff do on a pathway case, each step one transaction: check the case id's grammar
//! and the input (400), find the case (404), ask the transition table (409, naming the steps
//! that are possible), then move the case, record the step with who and when, add it to the
//! chronology and send what the step owes, in the same transaction:
//!
//! - engaged, disengaged, completed: an engagement update to the agency the referral named
//!   (`report_engagement_to`), sent by the service itself and to nobody else;
//! - an enforcement step: a `perpetrator.enforcement_request` to the housing provider, only
//!   when the survivor wants the action (her advocate confirmed it).
//!
//! A progress update staff send goes only to that agency too. An engagement update sent
//! through the generic `POST /disclosures` (which this crate cannot stop) is checked on every
//! tick: one to any other agency is revoked at once ([`check_sent`]). The JSON API and the
//! console both call these, so a page can do nothing the API would refuse.

use axum::http::StatusCode;
use isp::{Kind, Outgoing};
use proto::v1::{DisclosureRevoke, Payload, PerpetratorEngagementUpdate, PerpetratorEnforcementRequest, payload::Body};
use runtime::{
    Ctx, SendError, SendOutcome, Tx,
    api::{ApiError, clear_field},
    auth::Staff,
    chronology::{self, Entry},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    case::{self, Action, Refused, Status, Step, Verdict, Wishes},
    refs,
    store::{self, Case, Enforcement, StepRow, Update},
};

/// The longest note or grounds taken (characters).
pub const NOTE_MAX: usize = 10_000;
/// How many engagement updates sent through any route one tick checks.
pub const CHECKS_PER_TICK: usize = 64;
/// Why the service revokes an engagement update sent to an agency no referral named.
pub const MISDIRECTED: &str = "Engagement updates about this case go only to the agency its referral named; sent elsewhere, this one is withdrawn";

/// `POST /cases/{id}/assess`, `/engaged`, `/disengaged`, `/completed` (the body may be empty).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NoteInput {
    #[serde(default)]
    pub note: String,
}

/// `POST /cases/{id}/enforcement`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EnforcementInput {
    pub action: String,
    /// The housing provider asked to act (an agency id); the referrer when it is one.
    #[serde(default)]
    pub housing_provider: Option<String>,
    /// What the survivor wants, as her advocate confirmed (`supports`, `opposes`, `not_known`).
    pub survivor_wishes: String,
    /// His conduct that grounds the action.
    pub grounds: String,
}

/// `POST /cases/{id}/engagement-updates`: a progress update to the survivor's advocate.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateInput {
    pub note: String,
    /// The agency to send it to: only the one the referral named is taken (it is the default).
    #[serde(default)]
    pub to: Option<String>,
}

fn chars(text: &str) -> String {
    format!("<{} chars>", text.chars().count())
}

impl std::fmt::Debug for NoteInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteInput").field("note", &chars(&self.note)).finish()
    }
}

impl std::fmt::Debug for EnforcementInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnforcementInput")
            .field("action", &self.action)
            .field("housing_provider", &self.housing_provider)
            .field("survivor_wishes", &self.survivor_wishes)
            .field("grounds", &chars(&self.grounds))
            .finish()
    }
}

impl std::fmt::Debug for UpdateInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateInput").field("note", &chars(&self.note)).field("to", &self.to).finish()
    }
}

/// A case id from a path: the envelope id of its referral.
pub fn check_id(id: &str) -> Result<(), ApiError> {
    isp::clear::required("id", id, isp::clear::is_envelope_id, isp::clear::ENVELOPE_ID).map_err(clear_field)
}

/// Free text, trimmed, within [`NOTE_MAX`].
fn text<'a>(field: &str, text: &'a str) -> Result<&'a str, ApiError> {
    let text = text.trim();
    if text.chars().count() > NOTE_MAX {
        return Err(ApiError::bad_request(format!("{field} is longer than {NOTE_MAX} characters")));
    }
    Ok(text)
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
    ApiError::conflict("the case changed meanwhile (another member of staff acted on it): reload it and try again")
}

fn conflict(error: &str, detail: String) -> ApiError {
    ApiError { status: StatusCode::CONFLICT, body: json!({"error": error, "detail": detail}) }
}

async fn load(tx: &mut Tx, id: &str) -> Result<Case, ApiError> {
    store::get(&mut **tx, id).await?.ok_or_else(|| ApiError::not_found("pathway case"))
}

/// A case found by id, or 404.
pub async fn find(ctx: &Ctx, id: &str) -> Result<Case, ApiError> {
    check_id(id)?;
    store::get(&ctx.pool, id).await?.ok_or_else(|| ApiError::not_found("pathway case"))
}

fn open(ctx: &Ctx, sealed: &str) -> Result<String, ApiError> {
    ctx.isp().keys.open_at_rest(sealed).map_err(ApiError::internal)
}

/// The purpose and lawful basis the policy's rule for `kind` to `recipient` names first.
fn basis(ctx: &Ctx, recipient: &str, kind: Kind) -> Result<(String, String), ApiError> {
    let isp = ctx.isp();
    let agency = isp.directory.get(recipient).filter(|a| a.is_active()).ok_or_else(|| {
        conflict("recipient_unavailable", format!("{recipient} is not an active agency of the partnership directory: nothing can be sent to it"))
    })?;
    isp.policy
        .defaults_for(isp.role, agency.role, kind)
        .map(|(p, b)| (p.to_owned(), b.to_owned()))
        .ok_or_else(|| conflict("no_rule", format!("the policy has no rule for sending {} to {recipient}", isp::kind::name(kind))))
}

/// The engagement update about `case` to the agency its referral named.
fn update_out(ctx: &Ctx, case: &Case, engagement: proto::v1::Engagement, note: &str, now: i64) -> Result<Outgoing, ApiError> {
    let (purpose, lawful_basis) = basis(ctx, &case.report_engagement_to, Kind::PerpetratorEngagementUpdate)?;
    Ok(Outgoing {
        recipient: case.report_engagement_to.clone(),
        kind: Kind::PerpetratorEngagementUpdate,
        purpose,
        lawful_basis,
        consent: None,
        risk: Default::default(),
        subject_ref: case.subject_ref.clone(),
        case_ref: case.case_ref.clone(),
        in_reply_to: case.id.clone(),
        justification: None,
        payload: Payload {
            body: Some(Body::PerpetratorEngagementUpdate(PerpetratorEngagementUpdate {
                engagement: engagement as i32,
                as_of: chronology::date_of(now),
                note: note.to_owned(),
                pathway: proto::v1::Pathway::from_str_name(&case.pathway).unwrap_or_default() as i32,
            })),
        },
    })
}

/// Sends in `tx` for `staff` (the `sent` row names them). A refusal by the protocol keeps its
/// near miss: the transaction is committed with that alone (nothing of the step), and the
/// refusal is the answer.
async fn send_or_refuse(ctx: &Ctx, mut tx: Tx, out: &Outgoing, staff: &Staff) -> Result<(Tx, SendOutcome), ApiError> {
    match ctx.send_in_as(&mut tx, out, &staff.id).await {
        Ok(sent) => Ok((tx, sent)),
        Err(e @ SendError::Denied { .. }) => {
            tx.commit().await?;
            ctx.outbox_ready.notify_one();
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}


/// A chronology entry about the case's survivor (by her link token), if it has one.
async fn record(tx: &mut Tx, case: &Case, event: &str, code: &str, item_id: &str, staff: &Staff, now: i64) -> sqlx::Result<()> {
    if case.subject_ref.is_empty() {
        return Ok(());
    }
    let entry = Entry {
        subject_ref: case.subject_ref.clone(),
        case_ref: case.case_ref.clone(),
        event: event.into(),
        code: code.into(),
        item_id: item_id.into(),
        counterpart: case.referrer.clone(),
        staff_id: staff.id.clone(),
        at_ms: now,
        ..Default::default()
    };
    chronology::add(tx, &entry).await
}

/// A step as it moves a case: to where, with what note.
struct Move<'a> {
    step: Step,
    to: Status,
    note: &'a str,
}

/// Moves `case` in `tx` and records the step with who and when; returns the step's id.
async fn move_case(ctx: &Ctx, tx: &mut Tx, case: &Case, Move { step, to, note }: Move<'_>, staff: &Staff, now: i64) -> Result<String, ApiError> {
    if !store::change(tx, &case.id, case.status, to, now).await? {
        return Err(changed_meanwhile());
    }
    let row = StepRow {
        id: uuid::Uuid::now_v7().to_string(),
        case_id: case.id.clone(),
        step: step.code().into(),
        from_status: case.status.code().into(),
        to_status: to.code().into(),
        staff_id: staff.id.clone(),
        at_ms: now,
        sealed_note: if note.is_empty() { String::new() } else { ctx.seal_at_rest(note).map_err(ApiError::internal)? },
    };
    store::add_step(tx, &row).await?;
    record(tx, case, &format!("pathway_{}", to.code()), step.code(), &case.id, staff, now).await?;
    tracing::info!(case_id = %case.id, step = step.code(), from = case.status.code(), to = to.code(), "pathway case moved");
    Ok(row.id)
}

/// Takes one of the steps that need nothing but a note (assess, engaged, disengaged,
/// completed). Engaged, disengaged and completed send the engagement update to the agency the
/// referral named, in the same transaction: the case moves if and only if it is sent.
pub async fn step(ctx: &Ctx, staff: &Staff, id: &str, step: Step, input: &NoteInput) -> Result<Case, ApiError> {
    check_id(id)?;
    if step == Step::Enforcement {
        return Err(ApiError::bad_request("an enforcement step names its action, the housing provider and the survivor's wishes: POST /cases/{id}/enforcement"));
    }
    let note = text("note", &input.note)?;
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let case = load(&mut tx, id).await?;
    let to = case::next(case.status, step).map_err(|why| invalid(&case, step, why))?;
    let mut sent = None;
    if let Some(engagement) = to.engagement().filter(|_| !case.report_engagement_to.is_empty()) {
        let out = update_out(ctx, &case, engagement, note, now)?;
        let (back, outcome) = send_or_refuse(ctx, tx, &out, staff).await?;
        tx = back;
        sent = Some((outcome, engagement));
    }
    move_case(ctx, &mut tx, &case, Move { step, to, note }, staff, now).await?;
    if let Some((outcome, engagement)) = sent {
        let update = Update {
            envelope_id: outcome.envelope_id.clone(),
            case_id: case.id.clone(),
            engagement: engagement.as_str_name().into(),
            recipient: case.report_engagement_to.clone(),
            how: "automatic".into(),
            sent_by: staff.id.clone(),
            sent_at_ms: now,
        };
        store::add_update(&mut tx, &update).await?;
        store::checked(&mut tx, &outcome.envelope_id, Verdict::Named, now).await?;
        record(&mut tx, &case, "engagement_update_sent", engagement.as_str_name(), &outcome.envelope_id, staff, now).await?;
        tracing::info!(case_id = %case.id, envelope_id = %outcome.envelope_id, recipient = %case.report_engagement_to, "engagement update sent to the agency the referral named");
    }
    let case = load(&mut tx, id).await?;
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    Ok(case)
}

/// The housing provider an enforcement step is with: the one given (a housing provider of
/// the directory), or the referrer when it is one.
fn provider(ctx: &Ctx, case: &Case, given: Option<&str>) -> Result<String, ApiError> {
    let isp = ctx.isp();
    let is_housing = |id: &str| isp.directory.get(id).is_some_and(|a| a.role == isp::Role::Housing && a.is_active());
    match given.filter(|g| !g.is_empty()) {
        Some(g) => {
            isp::clear::required("housing_provider", g, isp::clear::is_agency_id, isp::clear::AGENCY_ID).map_err(clear_field)?;
            if !is_housing(g) {
                return Err(ApiError::bad_request("housing_provider: not an active housing provider of the partnership directory"));
            }
            Ok(g.to_owned())
        }
        None if is_housing(&case.referrer) => Ok(case.referrer.clone()),
        None => Err(ApiError::bad_request("housing_provider: name the housing provider asked to act (an agency id); the referrer is not one")),
    }
}

/// His identity as the referral gave it to this pathway, for the provider's request.
async fn perpetrator_of(ctx: &Ctx, case: &Case) -> Result<proto::v1::Person, ApiError> {
    let (opened, status) = runtime::inbox::read(ctx, &case.id).await?.ok_or_else(|| ApiError::not_found("referral of this case"))?;
    if status == "revoked" {
        return Err(conflict("referral_revoked", "the referrer revoked the referral of this case: nothing of it can be sent on".into()));
    }
    match opened.payload.body {
        Some(Body::PerpetratorReferral(r)) => Ok(r.perpetrator.unwrap_or_default()),
        _ => Err(ApiError::internal("the case's referral is not a perpetrator referral")),
    }
}

/// Records an enforcement step: the request to the housing provider is sent in the same
/// transaction. Led by the survivor: refused (409 `survivor_led`) unless she wants the action.
pub async fn enforce(ctx: &Ctx, staff: &Staff, id: &str, input: &EnforcementInput) -> Result<(Case, Enforcement), ApiError> {
    check_id(id)?;
    let action = Action::parse(&input.action).ok_or_else(|| ApiError::bad_request(format!("action is one of {}", Action::codes())))?;
    let wishes = Wishes::parse(&input.survivor_wishes).ok_or_else(|| ApiError::bad_request(format!("survivor_wishes is one of {}", Wishes::codes())))?;
    let grounds = text("grounds", &input.grounds)?;
    if grounds.is_empty() {
        return Err(ApiError::bad_request("grounds: say what he did that grounds the action (kept here sealed, and sent to the housing provider)"));
    }
    let case = find(ctx, id).await?;
    case::next(case.status, Step::Enforcement).map_err(|why| invalid(&case, Step::Enforcement, why))?;
    match wishes {
        Wishes::Supports => {}
        Wishes::Opposes => {
            return Err(conflict("survivor_led", "enforcement is led by what the survivor wants: her advocate confirmed she does not want this action, so it is not taken".into()));
        }
        Wishes::NotKnown => {
            return Err(conflict("survivor_led", "enforcement is led by what the survivor wants: ask her advocate to confirm she wants this action first".into()));
        }
    }
    let housing = provider(ctx, &case, input.housing_provider.as_deref())?;
    let perpetrator = perpetrator_of(ctx, &case).await?;
    let (purpose, lawful_basis) = basis(ctx, &housing, Kind::PerpetratorEnforcementRequest)?;
    let out = Outgoing {
        recipient: housing.clone(),
        kind: Kind::PerpetratorEnforcementRequest,
        purpose,
        lawful_basis,
        consent: None,
        risk: Default::default(),
        subject_ref: case.subject_ref.clone(),
        case_ref: case.case_ref.clone(),
        in_reply_to: String::new(),
        justification: None,
        payload: Payload {
            body: Some(Body::PerpetratorEnforcementRequest(PerpetratorEnforcementRequest {
                action: action.proto() as i32,
                perpetrator: Some(perpetrator),
                grounds: grounds.to_owned(),
                survivor_wants_action: true,
                pathway: proto::v1::Pathway::from_str_name(&case.pathway).unwrap_or_default() as i32,
                pathway_case: case.id.clone(),
            })),
        },
    };
    let now = ctx.config.clock.now_ms();
    let sealed_grounds = ctx.seal_at_rest(grounds).map_err(ApiError::internal)?;
    let mut tx = ctx.pool.begin().await?;
    let case = load(&mut tx, id).await?;
    let to = case::next(case.status, Step::Enforcement).map_err(|why| invalid(&case, Step::Enforcement, why))?;
    let (back, outcome) = send_or_refuse(ctx, tx, &out, staff).await?;
    tx = back;
    move_case(ctx, &mut tx, &case, Move { step: Step::Enforcement, to, note: "" }, staff, now).await?;
    let step = Enforcement {
        id: uuid::Uuid::now_v7().to_string(),
        case_id: case.id.clone(),
        action: action.code().into(),
        housing_provider: housing.clone(),
        survivor_wishes: wishes.code().into(),
        sealed_grounds,
        requested_by: staff.id.clone(),
        requested_at_ms: now,
        envelope_id: outcome.envelope_id.clone(),
        answer: String::new(),
        answered_by: String::new(),
        answered_at_ms: None,
    };
    store::add_enforcement(&mut tx, &step).await?;
    record(&mut tx, &case, "enforcement_requested", action.code(), &outcome.envelope_id, staff, now).await?;
    let case = load(&mut tx, id).await?;
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    tracing::info!(case_id = %case.id, action = action.code(), provider = %housing, "enforcement step recorded and sent to the housing provider");
    Ok((case, step))
}

/// Sends a progress update about a case to the agency its referral named: to no other (409
/// `not_named_at_referral`), and never when the referral named none.
pub async fn progress(ctx: &Ctx, staff: &Staff, id: &str, input: &UpdateInput) -> Result<Update, ApiError> {
    check_id(id)?;
    let note = text("note", &input.note)?;
    if note.is_empty() {
        return Err(ApiError::bad_request("note: say how he is engaging (it goes to the survivor's advocate)"));
    }
    if let Some(to) = input.to.as_deref().filter(|t| !t.is_empty()) {
        isp::clear::required("to", to, isp::clear::is_agency_id, isp::clear::AGENCY_ID).map_err(clear_field)?;
    }
    let case = find(ctx, id).await?;
    if case.report_engagement_to.is_empty() {
        return Err(conflict("not_named_at_referral", "the referral of this case named no agency to report engagement to: no update can be sent about it".into()));
    }
    if input.to.as_deref().is_some_and(|t| !t.is_empty() && t != case.report_engagement_to) {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            body: json!({
                "error": "not_named_at_referral",
                "detail": format!("engagement updates about this case go only to the agency its referral named ({}), and to no other", case.report_engagement_to),
                "report_engagement_to": case.report_engagement_to,
            }),
        });
    }
    let now = ctx.config.clock.now_ms();
    let engagement = case.status.progress();
    let out = update_out(ctx, &case, engagement, note, now)?;
    let tx = ctx.pool.begin().await?;
    let (mut tx, outcome) = send_or_refuse(ctx, tx, &out, staff).await?;
    let update = Update {
        envelope_id: outcome.envelope_id.clone(),
        case_id: case.id.clone(),
        engagement: engagement.as_str_name().into(),
        recipient: case.report_engagement_to.clone(),
        how: "progress".into(),
        sent_by: staff.id.clone(),
        sent_at_ms: now,
    };
    store::add_update(&mut tx, &update).await?;
    store::checked(&mut tx, &outcome.envelope_id, Verdict::Named, now).await?;
    record(&mut tx, &case, "engagement_update_sent", engagement.as_str_name(), &outcome.envelope_id, staff, now).await?;
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    Ok(update)
}

/// Checks the engagement updates this service sent, through any route, since the last tick
/// (at most [`CHECKS_PER_TICK`]): one to an agency no referral about that survivor named is
/// revoked at once, with the reason, and recorded. How many were revoked.
pub async fn check_sent(ctx: &Ctx) -> anyhow::Result<usize> {
    let mut revoked = 0;
    let (unchecked, examined_to) = store::unchecked(&ctx.pool, CHECKS_PER_TICK).await?;
    for runtime::sent::Sent { envelope_id, recipient, subject_ref, case_ref, status, .. } in unchecked {
        let now = ctx.config.clock.now_ms();
        let mut tx = ctx.pool.begin().await?;
        let verdict = match status {
            s if s.never_sent() => Verdict::NotSent,
            s if s.is_revoked() => Verdict::Revoked,
            _ if store::named_for(&mut tx, &subject_ref, &recipient).await? => Verdict::Named,
            _ => match withdraw(ctx, &mut tx, &envelope_id, &recipient, &subject_ref, &case_ref, now).await {
                Ok(()) => {
                    revoked += 1;
                    Verdict::Revoked
                }
                // The protocol will not carry the revocation: recorded, and logged below.
                Err(SendError::Denied { .. } | SendError::Refused(_)) => Verdict::RevocationRefused,
                Err(e) => return Err(e.into()),
            },
        };
        store::checked(&mut tx, &envelope_id, verdict, now).await?;
        tx.commit().await?;
        if !matches!(verdict, Verdict::Named | Verdict::NotSent) {
            tracing::warn!(envelope_id = %envelope_id, recipient = %recipient, verdict = verdict.code(), "an engagement update went to an agency no referral named");
        }
    }
    if let Some(to) = examined_to {
        store::scanned(&ctx.pool, to).await?;
    }
    if revoked > 0 {
        ctx.outbox_ready.notify_one();
    }
    Ok(revoked)
}

/// Revokes a misdirected engagement update, in `tx`, and records it.
async fn withdraw(ctx: &Ctx, tx: &mut Tx, envelope_id: &str, recipient: &str, subject_ref: &str, case_ref: &str, now: i64) -> Result<(), SendError> {
    let isp = ctx.isp();
    let role = isp.directory.get(recipient).map(|a| a.role);
    let Some((purpose, lawful_basis)) = role.and_then(|r| isp.policy.defaults_for(isp.role, r, Kind::DisclosureRevoke)) else {
        return Err(SendError::Refused(isp::IspError::Invalid { what: "the revocation".into(), detail: "the policy has no rule for revoking to this recipient".into() }));
    };
    let out = Outgoing {
        recipient: recipient.to_owned(),
        kind: Kind::DisclosureRevoke,
        purpose: purpose.to_owned(),
        lawful_basis: lawful_basis.to_owned(),
        consent: None,
        risk: Default::default(),
        subject_ref: subject_ref.to_owned(),
        case_ref: case_ref.to_owned(),
        in_reply_to: envelope_id.to_owned(),
        justification: None,
        payload: Payload { body: Some(Body::DisclosureRevoke(DisclosureRevoke { envelope_id: envelope_id.to_owned(), reason: MISDIRECTED.into() })) },
    };
    ctx.send_in(tx, &out).await?;
    runtime::status::revoke_sent(tx, envelope_id, MISDIRECTED, "", now).await?;
    if !subject_ref.is_empty() {
        let entry = Entry {
            subject_ref: subject_ref.into(),
            case_ref: case_ref.into(),
            event: "engagement_update_withdrawn".into(),
            code: "not_named_at_referral".into(),
            item_id: envelope_id.into(),
            counterpart: recipient.into(),
            at_ms: now,
            ..Default::default()
        };
        chronology::add(tx, &entry).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- reading

/// A case with everything on it: its steps (who and when, notes opened), its enforcement
/// steps, the engagement updates sent, the reason summary, and the other cases of the same
/// man at this pathway (a repeat).
pub async fn detail(ctx: &Ctx, id: &str) -> Result<Value, ApiError> {
    let case = find(ctx, id).await?;
    let mut v = case.json();
    v["reason_summary"] = json!(open(ctx, &case.sealed_summary)?);
    v["steps"] = json!(steps(ctx, id).await?);
    v["enforcement"] = json!(enforcement(ctx, id).await?);
    v["engagement_updates"] = json!(store::updates(&ctx.pool, id).await?.iter().map(update_json).collect::<Vec<_>>());
    let others: Vec<Value> = store::of_perpetrator(&ctx.pool, &case.perpetrator_ref).await?.iter().filter(|c| c.id != case.id).map(brief).collect();
    v["repeat"] = json!(!others.is_empty());
    v["other_referrals"] = json!(others);
    Ok(v)
}

/// A case in a list of his cases: what it is, not what it says about the survivor.
fn brief(c: &Case) -> Value {
    json!({"id": c.id, "case_ref": c.case_ref, "referrer": c.referrer, "pathway": c.pathway, "status": c.status.code(), "risk": c.risk,
        "reasons": c.reasons.iter().map(|r| r.code()).collect::<Vec<_>>(), "received_at_ms": c.received_at_ms})
}

fn update_json(u: &Update) -> Value {
    json!({"envelope_id": u.envelope_id, "engagement": u.engagement, "recipient": u.recipient, "how": u.how, "sent_by": u.sent_by, "sent_at_ms": u.sent_at_ms})
}

/// A case's steps, notes opened, oldest first.
pub async fn steps(ctx: &Ctx, id: &str) -> Result<Vec<Value>, ApiError> {
    store::steps(&ctx.pool, id)
        .await?
        .iter()
        .map(|s| Ok(json!({"step": s.step, "from": s.from_status, "to": s.to_status, "staff_id": s.staff_id, "at_ms": s.at_ms, "note": open(ctx, &s.sealed_note)?})))
        .collect()
}

/// A case's enforcement steps, grounds opened, oldest first.
pub async fn enforcement(ctx: &Ctx, id: &str) -> Result<Vec<Value>, ApiError> {
    store::enforcement(&ctx.pool, id).await?.iter().map(|e| enforcement_json(ctx, e)).collect()
}

fn enforcement_json(ctx: &Ctx, e: &Enforcement) -> Result<Value, ApiError> {
    Ok(json!({"id": e.id, "action": e.action, "housing_provider": e.housing_provider, "survivor_wishes": e.survivor_wishes,
        "grounds": open(ctx, &e.sealed_grounds)?, "requested_by": e.requested_by, "requested_at_ms": e.requested_at_ms,
        "envelope_id": e.envelope_id, "answer": e.answer, "answered_by": e.answered_by, "answered_at_ms": e.answered_at_ms}))
}

/// His cases at this pathway, for his subject access request: each with its steps and
/// enforcement steps; the survivor's link token is not among them. Staff read what is
/// about other people before giving him any of it.
pub async fn of_perpetrator(ctx: &Ctx, perpetrator_ref: &str) -> Result<Value, ApiError> {
    if !refs::is_ref(perpetrator_ref) {
        return Err(ApiError::bad_request(format!("ref is {}", refs::GRAMMAR)));
    }
    let mut cases = Vec::new();
    for c in store::of_perpetrator(&ctx.pool, perpetrator_ref).await? {
        let mut v = brief(&c);
        v["reason_summary"] = json!(open(ctx, &c.sealed_summary)?);
        v["steps"] = json!(store::steps(&ctx.pool, &c.id).await?.iter().map(|s| json!({"step": s.step, "to": s.to_status, "staff_id": s.staff_id, "at_ms": s.at_ms})).collect::<Vec<_>>());
        v["enforcement"] = json!(store::enforcement(&ctx.pool, &c.id).await?.iter().map(|e| json!({"action": e.action, "housing_provider": e.housing_provider,
            "requested_at_ms": e.requested_at_ms, "answer": e.answer})).collect::<Vec<_>>());
        cases.push(v);
    }
    Ok(json!({"perpetrator_ref": perpetrator_ref, "cases": cases}))
}

/// `POST /perpetrators`: his name and date of birth, in a body (never a URL).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonInput {
    pub full_name: String,
    pub date_of_birth: String,
}

impl std::fmt::Debug for PersonInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonInput").finish_non_exhaustive()
    }
}

/// His pseudonym at this pathway, from his name and date of birth (400 when they cannot make
/// one, without repeating them).
pub async fn lookup(ctx: &Ctx, input: &PersonInput) -> Result<String, ApiError> {
    let mut tx = ctx.pool.begin().await?;
    let key = refs::key(ctx, &mut tx).await?;
    tx.commit().await?;
    isp::directory::own_ref(&key, &input.full_name, &input.date_of_birth).map_err(|e| ApiError::bad_request(e.to_string()))
}
