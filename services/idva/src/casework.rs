//! What staff do on a case, each step one transaction: check the case id's grammar and the
//! input's codes (400), find the case (404), ask the transition table (409), then change the
//! case, meet or cancel its contact deadline and add the step to the person's chronology with
//! the staff id. Notes and plans are sealed to the agency's key before they are stored. The
//! JSON API and the console both call these, so a page can do nothing the API would refuse.

use axum::http::StatusCode;
use runtime::{
    Ctx, Tx,
    api::ApiError,
    auth::Staff,
    chronology::{self, Entry},
    deadlines,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    case::{self, Method, Outcome, Priority, Reach, Refused, Step, check_id},
    store::{self, Attempt, Case, Change, PlanVersion},
};

/// The longest note taken (characters): a note says what happened, not a transcript.
pub const NOTE_MAX: usize = 10_000;
/// The longest safety plan section taken (characters).
pub const SECTION_MAX: usize = 20_000;

/// `POST /cases/{id}/triage`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TriageInput {
    pub priority: String,
    #[serde(default)]
    pub note: String,
}

/// `POST /cases/{id}/contact-attempts`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AttemptInput {
    pub method: String,
    pub outcome: String,
    #[serde(default)]
    pub note: String,
}

/// `POST /cases/{id}/engaged` and `/not-reached` (the body may be empty).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NoteInput {
    #[serde(default)]
    pub note: String,
}

/// `POST /cases/{id}/close`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CloseInput {
    pub outcome: String,
    #[serde(default)]
    pub note: String,
}

/// `POST /cases/{id}/safety-plan`: the whole plan, saved as a new version.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    pub sections: Sections,
    /// The version the plan was changed from: when another was saved since, the save is
    /// refused (409) rather than silently replacing it. None saves on top of whatever is latest.
    #[serde(default)]
    pub based_on_version: Option<i64>,
}

/// The sections of a safety plan. Sealed at rest, as one JSON document per version.
#[derive(Serialize, Deserialize, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Sections {
    #[serde(default)]
    pub immediate_safety: String,
    #[serde(default)]
    pub contact_arrangements: String,
    #[serde(default)]
    pub children: String,
    #[serde(default)]
    pub housing: String,
    #[serde(default)]
    pub legal_options: String,
    #[serde(default)]
    pub agreed_actions: String,
}

impl Sections {
    /// Each section's field name, label and hint, in the order a page shows them.
    pub const FIELDS: [(&'static str, &'static str, &'static str); 6] = [
        ("immediate_safety", "Immediate safety", "What keeps the survivor safe now: escape plan, safe places, emergency numbers"),
        ("contact_arrangements", "Contact arrangements", "How and when it is safe to contact them, and who must never be told"),
        ("children", "Children", "Children's safety, school and contact arrangements"),
        ("housing", "Housing", "Staying put with sanctuary measures, refuge, a move, a reciprocal"),
        ("legal_options", "Legal options", "Protective orders, police, civil and criminal options discussed"),
        ("agreed_actions", "Agreed actions", "Who does what, by when"),
    ];

    pub fn get(&self, field: &str) -> &str {
        match field {
            "immediate_safety" => &self.immediate_safety,
            "contact_arrangements" => &self.contact_arrangements,
            "children" => &self.children,
            "housing" => &self.housing,
            "legal_options" => &self.legal_options,
            "agreed_actions" => &self.agreed_actions,
            _ => "",
        }
    }

    /// The sections from a posted form's fields (named as [`Sections::FIELDS`]).
    pub fn from_fields(get: impl Fn(&str) -> String) -> Sections {
        Sections {
            immediate_safety: get("immediate_safety"),
            contact_arrangements: get("contact_arrangements"),
            children: get("children"),
            housing: get("housing"),
            legal_options: get("legal_options"),
            agreed_actions: get("agreed_actions"),
        }
    }

    fn is_empty(&self) -> bool {
        Sections::FIELDS.iter().all(|(f, ..)| self.get(f).trim().is_empty())
    }
}

/// Free text is never printed: only its length.
fn chars(text: &str) -> String {
    format!("<{} chars>", text.chars().count())
}

impl std::fmt::Debug for TriageInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriageInput").field("priority", &self.priority).field("note", &chars(&self.note)).finish()
    }
}

impl std::fmt::Debug for AttemptInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptInput").field("method", &self.method).field("outcome", &self.outcome).field("note", &chars(&self.note)).finish()
    }
}

impl std::fmt::Debug for NoteInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteInput").field("note", &chars(&self.note)).finish()
    }
}

impl std::fmt::Debug for CloseInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloseInput").field("outcome", &self.outcome).field("note", &chars(&self.note)).finish()
    }
}

impl std::fmt::Debug for Sections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Sections");
        for (field, ..) in Sections::FIELDS {
            d.field(field, &chars(self.get(field)));
        }
        d.finish()
    }
}

impl std::fmt::Debug for PlanInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanInput").field("sections", &self.sections).field("based_on_version", &self.based_on_version).finish()
    }
}

fn unknown(field: &str, codes: String) -> ApiError {
    ApiError::bad_request(format!("{field} is one of {codes}"))
}

/// A note, trimmed, within [`NOTE_MAX`].
fn note(text: &str) -> Result<&str, ApiError> {
    let text = text.trim();
    if text.chars().count() > NOTE_MAX {
        return Err(ApiError::bad_request(format!("note is longer than {NOTE_MAX} characters")));
    }
    Ok(text)
}

/// 409: the step is not possible from the case's status, saying why and what is.
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

/// The case `id` in `tx`, or 404.
async fn load(tx: &mut Tx, id: &str) -> Result<Case, ApiError> {
    store::get(&mut **tx, id).await?.ok_or_else(|| ApiError::not_found("IDVA case"))
}

/// A chronology entry of a step on `case` by `staff`.
fn entry(case: &Case, step: Step, code: &str, staff: &Staff, now: i64) -> Entry {
    Entry {
        subject_ref: case.subject_ref.clone(),
        case_ref: case.case_ref.clone(),
        event: store::event_of(step).into(),
        code: code.into(),
        item_id: case.id.clone(),
        counterpart: case.referrer.clone(),
        staff_id: staff.id.clone(),
        at_ms: now,
        ..Default::default()
    }
}

/// One step taken on a case: what it writes besides the status, the chronology's code for
/// it and the note (sealed when stored).
struct Taken<'a> {
    step: Step,
    change: Change<'a>,
    code: &'a str,
    note: &'a str,
}

/// Takes a step on `case` in `tx`: the status change, and the step in the chronology with
/// its note. Returns the case as it is now.
async fn apply(ctx: &Ctx, tx: &mut Tx, case: &Case, taken: Taken<'_>, staff: &Staff, now: i64) -> Result<Case, ApiError> {
    let Taken { step, change, code, note } = taken;
    let to = case::next(case.status, step).map_err(|why| invalid(case, step, why))?;
    if !store::change(tx, &case.id, case.status, to, change, now).await? {
        return Err(changed_meanwhile());
    }
    chronology::add_note(ctx, tx, entry(case, step, code, staff, now), note).await?;
    tracing::info!(case_id = %case.id, step = step.code(), from = case.status.code(), to = to.code(), "IDVA case moved");
    load(tx, &case.id).await
}

/// Triages a case awaiting triage: its priority, by `staff`.
pub async fn triage(ctx: &Ctx, staff: &Staff, id: &str, input: &TriageInput) -> Result<Case, ApiError> {
    check_id(id)?;
    let priority = Priority::parse(&input.priority).ok_or_else(|| unknown("priority", Priority::codes()))?;
    let note = note(&input.note)?;
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let case = load(&mut tx, id).await?;
    let case = apply(ctx, &mut tx, &case, Taken { step: Step::Triage, change: Change::Triaged { priority, by: &staff.id }, code: priority.code(), note }, staff, now).await?;
    tx.commit().await?;
    Ok(case)
}

/// Logs a contact attempt; the first one meets the case's contact deadline. Returns the
/// attempt's id and the case.
pub async fn attempt(ctx: &Ctx, staff: &Staff, id: &str, input: &AttemptInput) -> Result<(String, Case), ApiError> {
    check_id(id)?;
    let method = Method::parse(&input.method).ok_or_else(|| unknown("method", Method::codes()))?;
    let reach = Reach::parse(&input.outcome).ok_or_else(|| unknown("outcome", Reach::codes()))?;
    let note = note(&input.note)?;
    let sealed_note = if note.is_empty() { String::new() } else { ctx.seal_at_rest(note).map_err(ApiError::internal)? };
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let case = load(&mut tx, id).await?;
    let attempt = Attempt {
        id: uuid::Uuid::now_v7().to_string(),
        case_id: case.id.clone(),
        method: method.code().into(),
        outcome: reach.code().into(),
        sealed_note,
        attempted_by: staff.id.clone(),
        attempted_at_ms: now,
    };
    // The chronology says what came of it; the note stays with the attempt.
    let moved = apply(ctx, &mut tx, &case, Taken { step: Step::ContactAttempt, change: Change::Attempted, code: reach.code(), note: "" }, staff, now).await?;
    store::add_attempt(&mut tx, &attempt).await?;
    deadlines::meet(&mut tx, deadlines::IDVA_CONTACT, &case.id, runtime::deadlines::Resolution::Met, now).await?;
    tx.commit().await?;
    Ok((attempt.id, moved))
}

/// Marks the survivor engaged: possible once an attempt has reached them.
pub async fn engaged(ctx: &Ctx, staff: &Staff, id: &str, input: &NoteInput) -> Result<Case, ApiError> {
    check_id(id)?;
    let note = note(&input.note)?;
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let case = load(&mut tx, id).await?;
    if case::next(case.status, Step::Engaged).is_ok() && !store::attempts(&mut *tx, id).await?.iter().any(|a| a.outcome == Reach::Reached.code()) {
        return Err(invalid(&case, Step::Engaged, Refused("no contact attempt has reached the survivor yet: log an attempt whose outcome is reached first")));
    }
    let case = apply(ctx, &mut tx, &case, Taken { step: Step::Engaged, change: Change::Moved, code: "", note }, staff, now).await?;
    tx.commit().await?;
    Ok(case)
}

/// Marks the survivor not reached after the attempts so far (more may follow).
pub async fn not_reached(ctx: &Ctx, staff: &Staff, id: &str, input: &NoteInput) -> Result<Case, ApiError> {
    check_id(id)?;
    let note = note(&input.note)?;
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let case = load(&mut tx, id).await?;
    let case = apply(ctx, &mut tx, &case, Taken { step: Step::NotReached, change: Change::Moved, code: "", note }, staff, now).await?;
    tx.commit().await?;
    Ok(case)
}

/// Closes a case with an outcome staff choose; a contact deadline still open is cancelled.
pub async fn close(ctx: &Ctx, staff: &Staff, id: &str, input: &CloseInput) -> Result<Case, ApiError> {
    check_id(id)?;
    let outcome = Outcome::parse(&input.outcome).filter(|o| o.chosen_by_staff()).ok_or_else(|| {
        let codes = Outcome::for_staff().map(Outcome::code).collect::<Vec<_>>().join(", ");
        if input.outcome == Outcome::ReferralRevoked.code() {
            ApiError::bad_request(format!("referral_revoked is recorded by the service when the referrer revokes the referral; outcome is one of {codes}"))
        } else {
            unknown("outcome", codes)
        }
    })?;
    let note = note(&input.note)?;
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let case = load(&mut tx, id).await?;
    let case = apply(ctx, &mut tx, &case, Taken { step: Step::Close, change: Change::Closed { outcome, by: &staff.id }, code: outcome.code(), note }, staff, now).await?;
    deadlines::meet(&mut tx, deadlines::IDVA_CONTACT, &case.id, runtime::deadlines::Resolution::Cancelled, now).await?;
    tx.commit().await?;
    Ok(case)
}

/// Saves a new version of a case's safety plan; its number.
pub async fn save_plan(ctx: &Ctx, staff: &Staff, id: &str, input: &PlanInput) -> Result<i64, ApiError> {
    check_id(id)?;
    if input.sections.is_empty() {
        return Err(ApiError::bad_request("sections: a safety plan needs at least one section filled in"));
    }
    if let Some((field, ..)) = Sections::FIELDS.iter().find(|(f, ..)| input.sections.get(f).chars().count() > SECTION_MAX) {
        return Err(ApiError::bad_request(format!("sections.{field} is longer than {SECTION_MAX} characters")));
    }
    let sealed = ctx.seal_at_rest(&serde_json::to_string(&input.sections).map_err(ApiError::internal)?).map_err(ApiError::internal)?;
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let case = load(&mut tx, id).await?;
    if !case.status.is_open() {
        return Err(ApiError::conflict("the case is closed: its safety plan can no longer change"));
    }
    let latest = store::latest_plan_version(&mut tx, id).await?;
    if let Some(base) = input.based_on_version.filter(|b| *b != latest) {
        return Err(ApiError::conflict(format!(
            "the plan was changed from version {base}, but version {latest} is the latest now: reload it and make your changes again"
        )));
    }
    let version = latest + 1;
    let plan = PlanVersion { case_id: case.id.clone(), version, sealed_sections: sealed, saved_by: staff.id.clone(), saved_at_ms: now };
    if !store::add_plan_version(&mut tx, &plan).await? {
        return Err(ApiError::conflict("another version of the plan was saved at the same moment: reload it and try again"));
    }
    let saved = Entry {
        subject_ref: case.subject_ref.clone(),
        case_ref: case.case_ref.clone(),
        event: "safety_plan_saved".into(),
        code: format!("v{version}"),
        item_id: case.id.clone(),
        staff_id: staff.id.clone(),
        at_ms: now,
        ..Default::default()
    };
    chronology::add(&mut tx, &saved).await?;
    store::touch(&mut tx, id, now).await?;
    // A new version is a review of the plan: it answers a perpetrator's disengagement.
    crate::perpetrator::resolve(&mut tx, id, &staff.id, now).await?;
    tx.commit().await?;
    tracing::info!(case_id = %id, version, "IDVA safety plan saved");
    Ok(version)
}

/// A case found by id, or 404.
pub async fn find(ctx: &Ctx, id: &str) -> Result<Case, ApiError> {
    check_id(id)?;
    store::get(&ctx.pool, id).await?.ok_or_else(|| ApiError::not_found("IDVA case"))
}

/// Opens sealed text ("" stays "").
fn open(ctx: &Ctx, sealed: &str) -> Result<String, ApiError> {
    if sealed.is_empty() { Ok(String::new()) } else { ctx.isp().keys.open_at_rest(sealed).map_err(ApiError::internal) }
}

/// A case's contact attempts, notes opened, oldest first.
pub async fn attempts(ctx: &Ctx, id: &str) -> Result<Vec<Value>, ApiError> {
    store::attempts(&ctx.pool, id)
        .await?
        .into_iter()
        .map(|a| {
            Ok(json!({"id": a.id, "method": a.method, "outcome": a.outcome, "note": open(ctx, &a.sealed_note)?,
                "attempted_by": a.attempted_by, "attempted_at_ms": a.attempted_at_ms}))
        })
        .collect()
}

/// One version of a plan as JSON, with its sections opened when `sections`.
fn plan_json(ctx: &Ctx, p: &PlanVersion, sections: bool) -> Result<Value, ApiError> {
    let mut v = json!({"version": p.version, "saved_by": p.saved_by, "saved_at_ms": p.saved_at_ms});
    if sections {
        let opened: Sections = serde_json::from_str(&open(ctx, &p.sealed_sections)?).map_err(ApiError::internal)?;
        v["sections"] = serde_json::to_value(&opened).map_err(ApiError::internal)?;
    }
    Ok(v)
}

/// Every version of a case's plan, oldest first, sections opened.
pub async fn plan_versions(ctx: &Ctx, id: &str) -> Result<Vec<Value>, ApiError> {
    store::plan_versions(&ctx.pool, id).await?.iter().map(|p| plan_json(ctx, p, true)).collect()
}

/// The newest version of a case's plan with its sections, if it has one.
pub async fn latest_plan(ctx: &Ctx, id: &str) -> Result<Option<(i64, Sections, String, i64)>, ApiError> {
    let Some(p) = store::plan_versions(&ctx.pool, id).await?.pop() else { return Ok(None) };
    let sections: Sections = serde_json::from_str(&open(ctx, &p.sealed_sections)?).map_err(ApiError::internal)?;
    Ok(Some((p.version, sections, p.saved_by, p.saved_at_ms)))
}

/// The deadlines on a case (its contact deadline, its referral's acknowledgement, the
/// reviews a perpetrator's disengagement calls for).
pub async fn deadlines_of(ctx: &Ctx, id: &str) -> Result<Vec<Value>, ApiError> {
    let mut all = deadlines::query(ctx, "all", Some(id)).await?;
    for update in crate::perpetrator::disengaged_updates(&ctx.pool, id).await? {
        all.extend(deadlines::query(ctx, "all", Some(&update)).await?);
    }
    Ok(all)
}

/// A case with everything on it: its attempts, its plan's versions (the latest with its
/// sections), what perpetrator pathways reported (and the disengagement alerts open), its
/// deadlines and the escalations among them (those missed, met since or not).
pub async fn detail(ctx: &Ctx, id: &str) -> Result<Value, ApiError> {
    let case = find(ctx, id).await?;
    let mut v = case.json(ctx.config.clock.now_ms());
    v["attempts"] = json!(attempts(ctx, id).await?);
    let versions = store::plan_versions(&ctx.pool, id).await?;
    v["safety_plan_versions"] = json!(versions.iter().map(|p| plan_json(ctx, p, false)).collect::<Result<Vec<_>, _>>()?);
    v["safety_plan"] = match versions.last() {
        Some(p) => plan_json(ctx, p, true)?,
        None => Value::Null,
    };
    let updates = crate::perpetrator::updates_of(ctx, id).await?;
    v["perpetrator_alerts"] = json!(updates.iter().filter(|u| u["alert"] == true).cloned().collect::<Vec<_>>());
    v["engagement_updates"] = json!(updates);
    let deadlines = deadlines_of(ctx, id).await?;
    v["escalations"] = json!(deadlines.iter().filter(|d| !d["missed_at_ms"].is_null()).cloned().collect::<Vec<_>>());
    v["deadlines"] = json!(deadlines);
    Ok(v)
}
