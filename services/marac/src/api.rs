//! The MARAC's JSON API: cases and the coordinator's decisions on them, meetings with their
//! agenda, attendance and minutes, research outstanding, actions, the board and the quarter's
//! figures. Each handler parses, then calls the module that does the work. Errors name the
//! field and what it takes, never what was sent.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{get, post},
};
use runtime::{
    Ctx,
    api::{ApiError, Page, json_body},
    auth::Staff,
    chronology::date_of,
    deadlines,
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{
    case::Status,
    casework::{self, CloseInput, DeferInput, ListInput, ScreenInput},
    figures,
    follow::{ACTION_DUE, RESEARCH_REPLY},
    hearing::{self, HearingInput, StandaloneAction},
    meetings::{self, AttendanceInput, MeetingInput},
    research::{self, ResearchInput},
    store::{self, Action, Case, case_json},
};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/cases", get(list_cases))
        .route("/cases/{id}", get(one_case))
        .route("/cases/{id}/screen", post(screen))
        .route("/cases/{id}/list", post(list))
        .route("/cases/{id}/defer", post(defer))
        .route("/cases/{id}/research", post(research))
        .route("/cases/{id}/hearing", post(hear))
        .route("/cases/{id}/close", post(close))
        .route("/meetings", get(list_meetings).post(create_meeting))
        .route("/meetings/{id}", get(one_meeting))
        .route("/meetings/{id}/attendance", post(attendance))
        .route("/meetings/{id}/minutes", post(minutes))
        .route("/research", get(list_research))
        .route("/actions", get(list_actions).post(record_action))
        .route("/board", get(board_json))
        .route("/figures", get(figures_json))
}

/// An action as the API gives it, its description and note opened.
pub fn action_json(ctx: &Ctx, a: &Action, now: i64) -> Result<Value, ApiError> {
    let open = |s: &str| if s.is_empty() { Ok(String::new()) } else { ctx.isp().keys.open_at_rest(s).map_err(ApiError::internal) };
    Ok(json!({
        "action_id": a.action_id, "owner_agency": a.owner_agency, "status": a.status.code(), "case_id": a.case_id, "subject_ref": a.subject_ref,
        "meeting_on": a.meeting_on, "description": open(&a.description)?, "due_on": a.due_on, "envelope_id": a.envelope_id, "note": open(&a.note)?,
        "agreed_by": a.agreed_by, "agreed_at_ms": a.agreed_at_ms, "updated_at_ms": a.updated_at_ms, "overdue": a.overdue(now),
    }))
}

/// A case with everything on it: criteria and evidence, research, hearing, actions, the
/// deadlines on it (its referral's acknowledgement, each research reply and action due date)
/// and the minutes sent.
pub async fn case_detail(ctx: &Ctx, id: &str) -> Result<Value, ApiError> {
    let case = casework::find(ctx, id).await?;
    let now = ctx.config.clock.now_ms();
    let keys = ctx.isp().keys.clone();
    let mut v = case_json(&case);
    let research = store::research_of(&ctx.pool, id).await?;
    let actions = store::actions_of(&ctx.pool, id).await?;
    v["research"] = json!(research.iter().map(|r| research::json(ctx, r, now, true)).collect::<Result<Vec<_>, _>>()?);
    v["actions"] = json!(actions.iter().map(|a| action_json(ctx, a, now)).collect::<Result<Vec<_>, _>>()?);
    v["hearing"] = match store::hearing(&ctx.pool, id).await? {
        Some(h) => json!({
            "meeting_id": h.meeting_id, "outcome": h.outcome.code(), "heard_by": h.heard_by, "heard_at_ms": h.heard_at_ms,
            "discussion": keys.open_at_rest(&h.discussion).map_err(ApiError::internal)?, "risks": keys.open_at_rest(&h.risks).map_err(ApiError::internal)?,
        }),
        None => Value::Null,
    };
    v["meeting"] = match store::meeting(&ctx.pool, &case.meeting_id).await? {
        Some(m) => meetings::json(&m),
        None => Value::Null,
    };
    let mut on_case = deadlines::query(ctx, "all", Some(id)).await?;
    for target in research.iter().map(|r| &r.request_id).chain(actions.iter().map(|a| &a.action_id)) {
        on_case.extend(deadlines::query(ctx, "all", Some(target)).await?);
    }
    v["escalations"] = json!(on_case.iter().filter(|d| d["state"] == "escalated").cloned().collect::<Vec<_>>());
    v["deadlines"] = json!(on_case);
    v["minutes"] = json!(minutes_sent(ctx, &case).await?);
    Ok(v)
}

/// The minutes sent about a case: to whom, when, and what the ISP removed for each.
pub async fn minutes_sent(ctx: &Ctx, case: &Case) -> Result<Vec<Value>, ApiError> {
    if case.marac_ref.is_empty() {
        return Ok(Vec::new());
    }
    let sent = runtime::sent::on_case(&ctx.pool, isp::Kind::MaracMinutes, &case.marac_ref).await?;
    Ok(sent
        .iter()
        .map(|s| json!({"envelope_id": s.envelope_id, "recipient": s.recipient, "status": s.status.code(), "created_at_ms": s.created_at_ms, "categories": s.categories, "removed": s.removed}))
        .collect())
}

/// A body that may be empty (every field optional).
fn body_or_default<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { json_body(body) }
}

/// `GET /cases?status=&limit=&after=`, paged by `envelope_id`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseQuery {
    limit: Option<i64>,
    after: Option<String>,
    status: Option<String>,
}

async fn list_cases(State(ctx): State<Ctx>, Query(q): Query<CaseQuery>) -> Result<Json<Value>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| casework::unknown("status", Status::codes()))?),
    };
    let page = Page { limit: q.limit, after: q.after };
    let cases = store::page(&ctx.pool, status, &page.after(), page.limit()?).await?;
    Ok(Json(Value::Array(cases.iter().map(case_json).collect())))
}

async fn one_case(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(case_detail(&ctx, &id).await?))
}

fn answer(case: &Case) -> Json<Value> {
    Json(case_json(case))
}

async fn screen(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: ScreenInput = json_body(&body)?;
    Ok(answer(&casework::screen(&ctx, &staff, &id, &input).await?))
}

async fn list(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: ListInput = json_body(&body)?;
    Ok(answer(&casework::list(&ctx, &staff, &id, &input).await?))
}

async fn defer(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: DeferInput = body_or_default(&body)?;
    Ok(answer(&casework::defer(&ctx, &staff, &id, &input).await?))
}

async fn close(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: CloseInput = json_body(&body)?;
    Ok(answer(&casework::close(&ctx, &staff, &id, &input).await?))
}

async fn research(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: ResearchInput = json_body(&body)?;
    let sent = research::request(&ctx, &staff, &id, &input).await?;
    Ok((StatusCode::CREATED, Json(json!({"case_id": id, "requests": sent}))))
}

async fn hear(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: HearingInput = json_body(&body)?;
    let (case, actions) = hearing::hear(&ctx, &staff, &id, &input).await?;
    Ok((StatusCode::CREATED, Json(json!({"case": case_json(&case), "actions": actions}))))
}

/// `GET /meetings`, paged by `meets_on`.
async fn list_meetings(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = store::meetings_page(&ctx.pool, &page.after(), page.limit()?).await?;
    Ok(Json(Value::Array(rows.iter().map(meetings::json).collect())))
}

async fn create_meeting(State(ctx): State<Ctx>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: MeetingInput = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(meetings::json(&meetings::create(&ctx, &staff, &input).await?))))
}

async fn one_meeting(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(meetings::detail(&ctx, &id).await?))
}

async fn attendance(State(ctx): State<Ctx>, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: AttendanceInput = json_body(&body)?;
    Ok(Json(meetings::json(&meetings::attendance(&ctx, &id, &input).await?)))
}

async fn minutes(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let sent = meetings::send_minutes(&ctx, &staff, &id).await?;
    Ok((StatusCode::CREATED, Json(json!({"meeting_id": id, "sent": sent}))))
}

/// `GET /research?state=outstanding|all`: research requests, with where each stands; the
/// outstanding ones due soonest first (the default), or every one newest first (at most 1,000).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResearchQuery {
    state: Option<String>,
}

async fn list_research(State(ctx): State<Ctx>, Query(q): Query<ResearchQuery>) -> Result<Json<Value>, ApiError> {
    let rows = match q.state.as_deref().unwrap_or("outstanding") {
        "outstanding" => store::research_outstanding(&ctx.pool).await?,
        "all" => store::research_all(&ctx.pool, 1000).await?,
        _ => return Err(ApiError::bad_request("state is outstanding or all")),
    };
    let now = ctx.config.clock.now_ms();
    Ok(Json(Value::Array(rows.iter().map(|r| research::json(&ctx, r, now, false)).collect::<Result<_, _>>()?)))
}

/// `GET /actions`, paged by `action_id`.
async fn list_actions(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = store::actions_page(&ctx.pool, &page.after(), page.limit()?).await?;
    let now = ctx.config.clock.now_ms();
    Ok(Json(Value::Array(rows.iter().map(|a| action_json(&ctx, a, now)).collect::<Result<_, _>>()?)))
}

/// `POST /actions`: records an action and sends it to the owning agency in the same
/// transaction, so an action is never recorded without being sent.
async fn record_action(State(ctx): State<Ctx>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: StandaloneAction = json_body(&body)?;
    let (action_id, sent) = hearing::standalone(&ctx, &staff, input).await?;
    Ok((StatusCode::CREATED, Json(json!({"action_id": action_id, "disclosure": sent}))))
}

/// The coordinator's board: cases awaiting screening, the meetings to come with their agenda,
/// research outstanding per member, actions overdue, and what has escalated.
pub async fn board(ctx: &Ctx) -> Result<Value, ApiError> {
    let now = ctx.config.clock.now_ms();
    let awaiting = store::with_status(&ctx.pool, Status::Received, 200).await?;
    let mut meetings = Vec::new();
    for m in store::meetings(&ctx.pool, &date_of(now), 20).await? {
        let agenda = store::on_meeting(&ctx.pool, &m.id).await?;
        let mut v = meetings::json(&m);
        v["list_open"] = json!(m.list_open(now));
        v["listed"] = json!(agenda.iter().filter(|c| c.status == Status::Listed).count());
        v["heard"] = json!(agenda.iter().filter(|c| c.status != Status::Listed).count());
        meetings.push(v);
    }
    let outstanding = store::research_outstanding(&ctx.pool).await?;
    let overdue: Vec<Action> = store::actions_open(&ctx.pool).await?.into_iter().filter(|a| a.overdue(now)).collect();
    let escalated: Vec<Value> =
        deadlines::query(ctx, "escalated", None).await?.into_iter().filter(|d| d["code"] == RESEARCH_REPLY || d["code"] == ACTION_DUE || d["code"] == deadlines::ACKNOWLEDGE).collect();
    Ok(json!({
        "awaiting_screening": awaiting.iter().map(case_json).collect::<Vec<_>>(),
        "screened_in": store::with_status(&ctx.pool, Status::ScreenedIn, 200).await?.iter().map(case_json).collect::<Vec<_>>(),
        "meetings": meetings,
        "research_outstanding": research::per_member(&outstanding, now),
        "actions_overdue": overdue.iter().map(|a| action_json(ctx, a, now)).collect::<Result<Vec<_>, _>>()?,
        "escalations": escalated,
    }))
}

async fn board_json(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    Ok(Json(board(&ctx).await?))
}

/// `GET /figures?quarter=2026-Q4` (the current quarter when absent).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiguresQuery {
    pub quarter: Option<String>,
}

async fn figures_json(State(ctx): State<Ctx>, Query(q): Query<FiguresQuery>) -> Result<Json<Value>, ApiError> {
    let quarter = figures::quarter(&ctx, q.quarter.as_deref())?;
    Ok(Json(figures::figures(&ctx, quarter).await?))
}
