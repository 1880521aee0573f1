//! At the meeting: a listed case is heard. The coordinator records the discussion summary and
//! the risks identified (both sealed at rest), the outcome, and the actions agreed, each with
//! its owning member agency and due date. Each action goes to its owner as a `marac.action` in
//! the same transaction, and its due date is a deadline met by the owner's update with status
//! done ([`crate::follow::action_updated`]); an overdue one escalates.

use proto::v1::{MaracAction, Payload, payload::Body};
use runtime::{
    Ctx, SendOutcome, Tx,
    api::{ApiError, clear_field},
    auth::Staff,
    chronology::day_ms,
    deadlines::{self, Deadline},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    case::{self, ActionStatus, Outcome, Step},
    casework::{self, check_id, text, unknown},
    follow::{self, ACTION_DUE},
    members::{self, Member},
    research::risk_of,
    store::{self, Action, Case, Change, Hearing},
};

/// The longest discussion summary or risks taken (characters).
pub const SUMMARY_MAX: usize = 20_000;
/// The longest action description taken (characters).
pub const ACTION_MAX: usize = 2_000;
/// The most actions one hearing agrees.
pub const ACTIONS_MAX: usize = 30;

/// One action agreed: `POST /cases/{id}/hearing`'s `actions`.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    pub owner_agency: String,
    pub description: String,
    /// YYYY-MM-DD, on or after the meeting.
    pub due_date: String,
}

/// `POST /cases/{id}/hearing`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HearingInput {
    pub discussion: String,
    pub risks: String,
    pub outcome: String,
    #[serde(default)]
    pub actions: Vec<ActionInput>,
}

impl std::fmt::Debug for ActionInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionInput").field("owner_agency", &self.owner_agency).field("description", &casework::chars(&self.description)).field("due_date", &self.due_date).finish()
    }
}

impl std::fmt::Debug for HearingInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HearingInput")
            .field("discussion", &casework::chars(&self.discussion))
            .field("risks", &casework::chars(&self.risks))
            .field("outcome", &self.outcome)
            .field("actions", &self.actions)
            .finish()
    }
}

/// An action checked: its owner (a member that may receive actions), its description and due day.
pub struct Agreed {
    pub owner: Member,
    pub description: String,
    pub due_on: String,
}

/// Checks one action (`field` names it in errors: `actions[2]`); due on or after `from_day`.
pub fn check_action(ctx: &Ctx, field: &str, a: &ActionInput, from_day: &str) -> Result<Agreed, ApiError> {
    let owner = members::member(&ctx.isp(), isp::Kind::MaracAction, &a.owner_agency)
        .ok_or_else(|| ApiError::bad_request(format!("{field}.owner_agency: not a member agency the protocol lets receive MARAC actions")))?;
    let description = text(&format!("{field}.description"), &a.description, ACTION_MAX)?;
    if description.is_empty() {
        return Err(ApiError::bad_request(format!("{field}.description: say what the agency will do")));
    }
    if day_ms(&a.due_date).is_none() {
        return Err(ApiError::bad_request(format!("{field}.due_date is a date, YYYY-MM-DD")));
    }
    if a.due_date.as_str() < from_day {
        return Err(ApiError::bad_request(format!("{field}.due_date is before the meeting ({from_day}): an action is due after it is agreed")));
    }
    Ok(Agreed { owner, description: description.to_owned(), due_on: a.due_date.clone() })
}

/// What an action is about: a case heard, or (for an action recorded on its own) a subject
/// and a case reference.
pub struct About<'a> {
    pub case_id: &'a str,
    pub subject_ref: &'a str,
    pub case_ref: &'a str,
    pub meeting_on: &'a str,
    pub risk: proto::v1::RiskLevel,
}

/// Sends an agreed action to its owner in `tx` and records it with its due-date deadline.
pub async fn record_action_in(ctx: &Ctx, tx: &mut Tx, staff: &Staff, about: &About<'_>, agreed: &Agreed, purpose: (&str, &str), now: i64) -> Result<(String, SendOutcome), ApiError> {
    let action_id = uuid::Uuid::now_v7().to_string();
    let out = isp::Outgoing {
        recipient: agreed.owner.id.clone(),
        kind: isp::Kind::MaracAction,
        purpose: purpose.0.to_owned(),
        lawful_basis: purpose.1.to_owned(),
        consent: None,
        risk: about.risk,
        subject_ref: about.subject_ref.to_owned(),
        case_ref: about.case_ref.to_owned(),
        in_reply_to: String::new(),
        justification: None,
        payload: Payload {
            body: Some(Body::MaracAction(MaracAction {
                action_id: action_id.clone(),
                meeting_date: about.meeting_on.to_owned(),
                description: agreed.description.clone(),
                owner_agency: agreed.owner.id.clone(),
                due_date: agreed.due_on.clone(),
            })),
        },
    };
    let sent = ctx.send_in_as(tx, &out, &staff.id).await?;
    let action = Action {
        action_id: action_id.clone(),
        owner_agency: agreed.owner.id.clone(),
        status: ActionStatus::InProgress,
        case_id: about.case_id.to_owned(),
        subject_ref: about.subject_ref.to_owned(),
        meeting_on: about.meeting_on.to_owned(),
        description: ctx.seal_at_rest(&agreed.description).map_err(ApiError::internal)?,
        due_on: agreed.due_on.clone(),
        envelope_id: sent.envelope_id.clone(),
        note: String::new(),
        agreed_by: staff.id.clone(),
        agreed_at_ms: now,
        updated_at_ms: now,
    };
    store::add_action(tx, &action).await?;
    if let Some(due) = action.due_at_ms() {
        let deadline = Deadline {
            code: ACTION_DUE.into(),
            target: action_id.clone(),
            subject_ref: about.subject_ref.to_owned(),
            case_ref: about.case_ref.to_owned(),
            counterpart: agreed.owner.id.clone(),
            due_at_ms: due,
        };
        deadlines::set(tx, &deadline).await?;
    }
    Ok((action_id, sent))
}

/// Records the hearing of a listed case on or after its meeting's day; its actions are sent
/// to their owners. Returns the case and the actions sent.
pub async fn hear(ctx: &Ctx, staff: &Staff, id: &str, input: &HearingInput) -> Result<(Case, Vec<Value>), ApiError> {
    check_id(id)?;
    let outcome = Outcome::parse(&input.outcome).ok_or_else(|| unknown("outcome", Outcome::codes()))?;
    let discussion = text("discussion", &input.discussion, SUMMARY_MAX)?;
    let risks = text("risks", &input.risks, SUMMARY_MAX)?;
    if discussion.is_empty() {
        return Err(ApiError::bad_request("discussion: summarise what the meeting discussed"));
    }
    if risks.is_empty() {
        return Err(ApiError::bad_request("risks: say what risks the meeting identified"));
    }
    if input.actions.len() > ACTIONS_MAX {
        return Err(ApiError::bad_request(format!("actions: at most {ACTIONS_MAX} a hearing")));
    }
    if outcome == Outcome::ActionsAgreed && input.actions.is_empty() {
        return Err(ApiError::bad_request("actions: the outcome is actions agreed, so name at least one action with its owner and due date"));
    }
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let case = casework::load(&mut tx, id).await?;
    case::next(case.status, Step::Hear).map_err(|why| casework::invalid(&case, Step::Hear, why))?;
    let meeting = store::meeting(&mut *tx, &case.meeting_id).await?.ok_or_else(|| ApiError::internal("a listed case's meeting is missing"))?;
    if !meeting.has_met(now) {
        return Err(ApiError::conflict(format!("the meeting of {} has not taken place yet: record its hearings on or after that day", meeting.meets_on)));
    }
    let agreed = input.actions.iter().enumerate().map(|(i, a)| check_action(ctx, &format!("actions[{i}]"), a, &meeting.meets_on)).collect::<Result<Vec<_>, _>>()?;
    casework::apply(ctx, &mut tx, &case, casework::Taken { step: Step::Hear, change: Change::Heard, code: outcome.code(), note: "" }, staff, now).await?;
    let hearing = Hearing {
        case_id: case.id.clone(),
        meeting_id: meeting.id.clone(),
        outcome,
        discussion: ctx.seal_at_rest(discussion).map_err(ApiError::internal)?,
        risks: ctx.seal_at_rest(risks).map_err(ApiError::internal)?,
        heard_by: staff.id.clone(),
        heard_at_ms: now,
    };
    store::add_hearing(&mut tx, &hearing).await?;
    let about = About { case_id: &case.id, subject_ref: &case.subject_ref, case_ref: &case.marac_ref, meeting_on: &meeting.meets_on, risk: risk_of(&case) };
    let mut sent = Vec::with_capacity(agreed.len());
    for a in &agreed {
        let (action_id, outcome) = record_action_in(ctx, &mut tx, staff, &about, a, (&a.owner.purpose, &a.owner.lawful_basis), now).await?;
        sent.push(json!({"action_id": action_id, "owner_agency": a.owner.id, "due_date": a.due_on, "envelope_id": outcome.envelope_id}));
    }
    follow::reclassify(&mut tx, &case.subject_ref, &case.id, now).await?;
    let case = casework::load(&mut tx, id).await?;
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    tracing::info!(case_id = %case.id, outcome = outcome.code(), actions = sent.len(), "MARAC case heard");
    Ok((case, sent))
}

/// `POST /actions`: an action recorded on its own (for a case heard, by `case_id`, or by a
/// subject and case reference), sent to its owner in the same transaction.
#[derive(Deserialize)]
pub struct StandaloneAction {
    pub owner_agency: String,
    pub description: String,
    pub due_date: String,
    #[serde(default)]
    pub case_id: String,
    #[serde(default)]
    pub meeting_date: String,
    #[serde(default)]
    pub subject_ref: String,
    #[serde(default)]
    pub case_ref: String,
    /// Default to the policy's first purpose and basis for marac.action to the owner's role.
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub lawful_basis: Option<String>,
}

impl std::fmt::Debug for StandaloneAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandaloneAction")
            .field("owner_agency", &self.owner_agency)
            .field("description", &casework::chars(&self.description))
            .field("due_date", &self.due_date)
            .field("case_id", &self.case_id)
            .finish_non_exhaustive()
    }
}

/// Records and sends an action on its own; a denial is kept as a near miss. The action id and
/// the disclosure.
pub async fn standalone(ctx: &Ctx, staff: &Staff, input: StandaloneAction) -> Result<(String, SendOutcome), ApiError> {
    let now = ctx.config.clock.now_ms();
    let (case, meeting_on) = if input.case_id.is_empty() {
        isp::clear::optional("subject_ref", &input.subject_ref, isp::clear::is_subject_ref, isp::clear::SUBJECT_REF).map_err(clear_field)?;
        isp::clear::optional("case_ref", &input.case_ref, isp::clear::is_case_ref, isp::clear::CASE_REF).map_err(clear_field)?;
        if !input.meeting_date.is_empty() && day_ms(&input.meeting_date).is_none() {
            return Err(ApiError::bad_request("meeting_date is a date, YYYY-MM-DD"));
        }
        (None, input.meeting_date.clone())
    } else {
        let case = casework::find(ctx, &input.case_id).await?;
        let hearing = store::hearing(&ctx.pool, &case.id).await?.ok_or_else(|| ApiError::conflict("the case has not been heard: its actions are agreed at its hearing"))?;
        let meeting = store::meeting(&ctx.pool, &hearing.meeting_id).await?.ok_or_else(|| ApiError::internal("a hearing's meeting is missing"))?;
        (Some(case), meeting.meets_on)
    };
    let agreed = check_action(ctx, "action", &ActionInput { owner_agency: input.owner_agency.clone(), description: input.description.clone(), due_date: input.due_date.clone() }, &meeting_on)?;
    let purpose = input.purpose.unwrap_or_else(|| agreed.owner.purpose.clone());
    let basis = input.lawful_basis.unwrap_or_else(|| agreed.owner.lawful_basis.clone());
    let about = match &case {
        Some(c) => About { case_id: &c.id, subject_ref: &c.subject_ref, case_ref: &c.marac_ref, meeting_on: &meeting_on, risk: risk_of(c) },
        None => About { case_id: "", subject_ref: &input.subject_ref, case_ref: &input.case_ref, meeting_on: &meeting_on, risk: Default::default() },
    };
    let mut tx = ctx.pool.begin().await?;
    let recorded = record_action_in(ctx, &mut tx, staff, &about, &agreed, (&purpose, &basis), now).await;
    // A denial keeps its near miss; anything else recorded nothing.
    if recorded.is_ok() || recorded.as_ref().is_err_and(|e| e.status == axum::http::StatusCode::FORBIDDEN) {
        tx.commit().await?;
        ctx.outbox_ready.notify_one();
    }
    recorded
}
