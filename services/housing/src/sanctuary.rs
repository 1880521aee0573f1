//! Sanctuary schemes: extra security so a survivor can stay in their home, "only when the
//! perpetrator no longer lives there", with the survivor's agreement, and where installing
//! breaches no tenancy or property right.
//!
//! A scheme is requested (the survivor's agreement recorded, whether the person causing harm
//! lives at the address stated), surveyed (the measures, the rights checked, the address
//! checked again), then installed or refused. Installing is refused while the scheme says the
//! person causing harm lives there or a `perpetrator-at-address` flag is in force on the
//! property; installing raises a `sanctuary-installed` flag on it, reviewed like any flag.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
};
use runtime::{
    Ctx,
    api::{ApiError, SubjectIdentity, json_body, row_json},
    auth::Staff,
    chronology,
    flags::FlagInput,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::{common, common::codes};

codes!(
    /// Where a scheme has got to.
    Status {
        Requested = "requested": "Requested",
        Surveyed = "surveyed": "Surveyed",
        Installed = "installed": "Installed",
        Refused = "refused": "Refused",
    }
);

codes!(
    /// The measures a survey may recommend.
    Measure {
        DoorReinforcement = "door_reinforcement": "Reinforced doors and frames",
        DoorViewer = "door_viewer": "Door viewer and chain",
        WindowLocks = "window_locks": "Window locks",
        FireSafeLetterbox = "fire_safe_letterbox": "Fire-safe letterbox",
        SmokeAlarms = "smoke_alarms": "Smoke alarms",
        MonitoredAlarm = "monitored_alarm": "Alarm linked to a monitoring centre or the police",
        Camera = "camera": "Doorbell camera or CCTV",
        SafeRoom = "safe_room": "Safe room",
        Lighting = "lighting": "External lighting",
        Other = "other": "Other (in the note)",
    }
);

/// The flag codes this module reads and raises (from the runtime's `FLAG_CODES`).
pub const PERPETRATOR_FLAG: &str = "perpetrator-at-address";
pub const INSTALLED_FLAG: &str = "sanctuary-installed";

/// A `sanctuary-installed` flag is reviewed this long after installation unless a day is given.
const REVIEW_AFTER_MS: i64 = 182 * 86_400_000;

/// `POST /sanctuary-schemes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    #[serde(default)]
    pub case_ref: String,
    #[serde(default)]
    pub subject: Option<SubjectIdentity>,
    #[serde(default)]
    pub subject_ref: Option<String>,
    pub property_ref: String,
    /// The survivor agreed to the scheme: nothing is requested without it.
    pub survivor_agreed: bool,
    /// Whether the person causing harm lives at the address now, as known at the request.
    pub perpetrator_at_address: bool,
    #[serde(default)]
    pub note: String,
}

/// `POST /sanctuary-schemes/{id}/survey`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyInput {
    pub measures: Vec<String>,
    /// Whether the person causing harm lives at the address, as found at the survey.
    pub perpetrator_at_address: bool,
    /// Installing breaches no tenancy or property right (the landlord's or owner's permission
    /// where it is needed).
    pub rights_checked: bool,
    #[serde(default)]
    pub note: String,
}

/// `POST /sanctuary-schemes/{id}/install`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallInput {
    /// When the `sanctuary-installed` flag is reviewed (YYYY-MM-DD); in six months if not given.
    #[serde(default)]
    pub review_on: Option<String>,
}

/// `POST /sanctuary-schemes/{id}/refuse`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefuseInput {
    pub reason: String,
}

macro_rules! debug_without_text {
    ($($t:ty),+) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t)).finish_non_exhaustive()
            }
        }
    )+};
}
debug_without_text!(RequestInput, SurveyInput, RefuseInput);

/// A scheme's clear facts.
struct Scheme {
    subject_ref: String,
    case_ref: String,
    property_ref: String,
    status: Status,
    perpetrator_at_address: bool,
    rights_checked: bool,
}

async fn scheme(ctx: &Ctx, id: &str) -> Result<Scheme, ApiError> {
    common::id(id)?;
    let r = sqlx::query("SELECT subject_ref, case_ref, property_ref, status, perpetrator_at_address, rights_checked FROM sanctuary_schemes WHERE id = $1")
        .bind(id)
        .fetch_optional(&ctx.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("sanctuary scheme"))?;
    let status: String = r.try_get("status")?;
    Ok(Scheme {
        subject_ref: r.try_get("subject_ref")?,
        case_ref: r.try_get("case_ref")?,
        property_ref: r.try_get("property_ref")?,
        status: Status::parse(&status).ok_or_else(|| ApiError::internal("a sanctuary scheme of an unknown status"))?,
        perpetrator_at_address: r.try_get::<i64, _>("perpetrator_at_address")? != 0,
        rights_checked: r.try_get::<i64, _>("rights_checked")? != 0,
    })
}

/// Adds the scheme's step to the survivor's chronology.
async fn step(tx: &mut runtime::Tx, s: &Scheme, id: &str, code: &str, staff: &Staff, now: i64) -> Result<(), ApiError> {
    let entry = chronology::Entry {
        subject_ref: s.subject_ref.clone(),
        case_ref: s.case_ref.clone(),
        event: "sanctuary".into(),
        code: code.into(),
        item_id: id.into(),
        staff_id: staff.id.clone(),
        at_ms: now,
        ..Default::default()
    };
    chronology::add(tx, &entry).await?;
    Ok(())
}

/// Records a request for a scheme, with the survivor's agreement.
pub async fn request(ctx: &Ctx, staff: &Staff, input: &RequestInput) -> Result<Value, ApiError> {
    let subject_ref = common::subject_of(ctx, input.subject.as_ref(), input.subject_ref.as_deref())?;
    common::case_ref(&input.case_ref)?;
    common::property_ref(&input.property_ref)?;
    if !input.survivor_agreed {
        return Err(ApiError::bad_request("survivor_agreed: a sanctuary scheme is requested only with the survivor's agreement"));
    }
    let now = common::now(ctx);
    let id = uuid::Uuid::now_v7().to_string();
    let s = Scheme {
        subject_ref: subject_ref.clone(),
        case_ref: input.case_ref.clone(),
        property_ref: input.property_ref.clone(),
        status: Status::Requested,
        perpetrator_at_address: input.perpetrator_at_address,
        rights_checked: false,
    };
    let mut tx = ctx.pool.begin().await?;
    sqlx::query(
        "INSERT INTO sanctuary_schemes (id, subject_ref, case_ref, property_ref, status, survivor_agreed_by, survivor_agreed_at_ms, perpetrator_at_address, \
         note, requested_by, requested_at_ms, updated_by, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&id)
    .bind(&s.subject_ref)
    .bind(&s.case_ref)
    .bind(&s.property_ref)
    .bind(s.status.code())
    .bind(&staff.id)
    .bind(now)
    .bind(i64::from(s.perpetrator_at_address))
    .bind(common::seal(ctx, &input.note)?)
    .bind(&staff.id)
    .bind(now)
    .bind(&staff.id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    step(&mut tx, &s, &id, Status::Requested.code(), staff, now).await?;
    tx.commit().await?;
    Ok(json!({"id": id, "subject_ref": subject_ref, "status": s.status.code(), "perpetrator_at_address": s.perpetrator_at_address}))
}

/// Records the survey: the measures, the rights checked and the address checked again.
pub async fn survey(ctx: &Ctx, staff: &Staff, id: &str, input: &SurveyInput) -> Result<Value, ApiError> {
    let mut s = scheme(ctx, id).await?;
    if !matches!(s.status, Status::Requested | Status::Surveyed) {
        return Err(ApiError::conflict(format!("this scheme is {}: only a requested or surveyed scheme is surveyed", s.status.code())));
    }
    let measures: Vec<Measure> = input
        .measures
        .iter()
        .map(|m| Measure::parse(m).ok_or_else(|| ApiError::bad_request(format!("measures: each is one of {}", Measure::codes()))))
        .collect::<Result<_, _>>()?;
    if measures.is_empty() {
        return Err(ApiError::bad_request("measures: name at least one measure the survey recommends"));
    }
    if measures.contains(&Measure::Other) && input.note.trim().is_empty() {
        return Err(ApiError::bad_request("note: say what the other measure is"));
    }
    let now = common::now(ctx);
    let mut tx = ctx.pool.begin().await?;
    let done = sqlx::query(
        "UPDATE sanctuary_schemes SET status = $1, measures = $2, perpetrator_at_address = $3, rights_checked = $4, note = CASE WHEN $5 = '' THEN note ELSE $5 END, \
         updated_by = $6, updated_at_ms = $7 WHERE id = $8 AND status IN ($9, $10)",
    )
    .bind(Status::Surveyed.code())
    .bind(measures.iter().map(|m| m.code()).collect::<Vec<_>>().join(","))
    .bind(i64::from(input.perpetrator_at_address))
    .bind(i64::from(input.rights_checked))
    .bind(common::seal(ctx, &input.note)?)
    .bind(&staff.id)
    .bind(now)
    .bind(id)
    .bind(Status::Requested.code())
    .bind(Status::Surveyed.code())
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::conflict("this scheme changed meanwhile: reload it"));
    }
    s.status = Status::Surveyed;
    step(&mut tx, &s, id, Status::Surveyed.code(), staff, now).await?;
    tx.commit().await?;
    Ok(json!({"id": id, "status": s.status.code()}))
}

/// Why a surveyed scheme may not be installed now, if it may not: the person causing harm
/// lives there (by the scheme, or a flag in force on the property), or rights are unchecked.
async fn why_not_install(ctx: &Ctx, s: &Scheme) -> Result<Option<ApiError>, ApiError> {
    if s.status != Status::Surveyed {
        return Ok(Some(ApiError::conflict(format!("this scheme is {}: a scheme is installed once it is surveyed", s.status.code()))));
    }
    if s.perpetrator_at_address {
        return Ok(Some(common::refusal(
            StatusCode::CONFLICT,
            "perpetrator_at_address",
            "the survey found the person causing harm lives at this address: a sanctuary scheme is installed only when he no longer does",
        )));
    }
    let flags = runtime::flags::flags(ctx, "property_ref", &s.property_ref).await?;
    if flags.iter().any(|f| f["code"] == PERPETRATOR_FLAG) {
        return Ok(Some(common::refusal(
            StatusCode::CONFLICT,
            "perpetrator_at_address",
            "a perpetrator-at-address flag is in force on this property: a sanctuary scheme is installed only when the person causing harm no longer lives there (review and clear the flag first)",
        )));
    }
    if !s.rights_checked {
        return Ok(Some(common::refusal(
            StatusCode::CONFLICT,
            "rights_not_checked",
            "the survey did not confirm installing breaches no tenancy or property right: survey again with rights_checked",
        )));
    }
    Ok(None)
}

/// Installs a surveyed scheme, unless the person causing harm lives at the address; raises
/// the `sanctuary-installed` flag on the property.
pub async fn install(ctx: &Ctx, staff: &Staff, id: &str, input: &InstallInput) -> Result<Value, ApiError> {
    let mut s = scheme(ctx, id).await?;
    let now = common::now(ctx);
    if let Some(refused) = why_not_install(ctx, &s).await? {
        if refused.status == StatusCode::CONFLICT && refused.body["error"] == "perpetrator_at_address" {
            // A near miss on the survivor's record: someone tried while it was not safe.
            let mut tx = ctx.pool.begin().await?;
            step(&mut tx, &s, id, "install_refused", staff, now).await?;
            tx.commit().await?;
        }
        return Err(refused);
    }
    let review_on = match &input.review_on {
        Some(day) => {
            common::day("review_on", day)?;
            day.clone()
        }
        None => chronology::date_of(now + REVIEW_AFTER_MS),
    };
    // The flag is raised in a transaction of its own (the runtime offers no property flag
    // within a caller's transaction): if the installation then cannot be recorded, it is
    // cleared again.
    let flag = FlagInput { subject_ref: None, property_ref: Some(s.property_ref.clone()), code: INSTALLED_FLAG.into(), review_on, note: String::new() };
    let flag_id = runtime::flags::raise_flag(ctx, staff, &flag).await?;
    let recorded = record_installed(ctx, staff, &s, id, &flag_id, now).await;
    if let Err(e) = &recorded {
        if let Err(undo) = runtime::flags::clear_flag(ctx, staff, &flag_id).await {
            tracing::error!(flag_id = %flag_id, error = ?undo.body, "a sanctuary-installed flag raised for an installation not recorded could not be cleared");
        }
        tracing::warn!(scheme = %id, status = %e.status, "an installation was not recorded; its flag was cleared");
    }
    recorded?;
    s.status = Status::Installed;
    Ok(json!({"id": id, "status": s.status.code(), "flag_id": flag_id}))
}

async fn record_installed(ctx: &Ctx, staff: &Staff, s: &Scheme, id: &str, flag_id: &str, now: i64) -> Result<(), ApiError> {
    let mut tx = ctx.pool.begin().await?;
    let done = sqlx::query(
        "UPDATE sanctuary_schemes SET status = $1, flag_id = $2, updated_by = $3, updated_at_ms = $4 \
         WHERE id = $5 AND status = $6 AND perpetrator_at_address = 0 AND rights_checked = 1",
    )
    .bind(Status::Installed.code())
    .bind(flag_id)
    .bind(&staff.id)
    .bind(now)
    .bind(id)
    .bind(Status::Surveyed.code())
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::conflict("this scheme changed meanwhile: reload it"));
    }
    step(&mut tx, s, id, Status::Installed.code(), staff, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Refuses a scheme not yet installed, with the reason (sealed).
pub async fn refuse(ctx: &Ctx, staff: &Staff, id: &str, input: &RefuseInput) -> Result<Value, ApiError> {
    let mut s = scheme(ctx, id).await?;
    if input.reason.trim().is_empty() {
        return Err(ApiError::bad_request("reason: say why the scheme is refused"));
    }
    let now = common::now(ctx);
    let mut tx = ctx.pool.begin().await?;
    let done = sqlx::query(
        "UPDATE sanctuary_schemes SET status = $1, refused_reason = $2, updated_by = $3, updated_at_ms = $4 WHERE id = $5 AND status IN ($6, $7)",
    )
    .bind(Status::Refused.code())
    .bind(common::seal(ctx, &input.reason)?)
    .bind(&staff.id)
    .bind(now)
    .bind(id)
    .bind(Status::Requested.code())
    .bind(Status::Surveyed.code())
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::conflict(format!("this scheme is {}: only a requested or surveyed scheme is refused", s.status.code())));
    }
    s.status = Status::Refused;
    step(&mut tx, &s, id, Status::Refused.code(), staff, now).await?;
    tx.commit().await?;
    Ok(json!({"id": id, "status": s.status.code()}))
}

/// The schemes of a person or on a property, newest first, notes opened.
pub async fn schemes(ctx: &Ctx, column: &str, value: &str) -> Result<Vec<Value>, ApiError> {
    let column = if column == "property_ref" { "property_ref" } else { "subject_ref" };
    let rows = sqlx::query(&format!(
        "SELECT id, subject_ref, case_ref, property_ref, status, survivor_agreed_by, survivor_agreed_at_ms, perpetrator_at_address, rights_checked, measures, note, \
         refused_reason, flag_id, requested_by, requested_at_ms, updated_by, updated_at_ms FROM sanctuary_schemes WHERE {column} = $1 ORDER BY requested_at_ms DESC, id DESC LIMIT 200"
    ))
    .bind(value)
    .fetch_all(&ctx.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let mut v = row_json(
                r,
                &["id", "subject_ref", "case_ref", "property_ref", "status", "survivor_agreed_by", "flag_id", "requested_by", "updated_by"],
                &["survivor_agreed_at_ms", "requested_at_ms", "updated_at_ms"],
                &["measures"],
            );
            v["perpetrator_at_address"] = json!(r.try_get::<i64, _>("perpetrator_at_address")? != 0);
            v["rights_checked"] = json!(r.try_get::<i64, _>("rights_checked")? != 0);
            v["note"] = json!(common::opened(ctx, r, "note")?);
            v["refused_reason"] = json!(common::opened(ctx, r, "refused_reason")?);
            Ok(v)
        })
        .collect()
}

pub async fn post(State(ctx): State<Ctx>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: RequestInput = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(request(&ctx, &staff, &input).await?)))
}

pub async fn post_survey(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: SurveyInput = json_body(&body)?;
    Ok(Json(survey(&ctx, &staff, &id, &input).await?))
}

pub async fn post_install(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: InstallInput = if body.is_empty() { InstallInput::default() } else { json_body(&body)? };
    Ok(Json(install(&ctx, &staff, &id, &input).await?))
}

pub async fn post_refuse(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: RefuseInput = json_body(&body)?;
    Ok(Json(refuse(&ctx, &staff, &id, &input).await?))
}

/// `GET /sanctuary-schemes?subject_ref=` or `?property_ref=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemeQuery {
    pub subject_ref: Option<String>,
    pub property_ref: Option<String>,
}

pub async fn list(State(ctx): State<Ctx>, Query(q): Query<SchemeQuery>) -> Result<Json<Value>, ApiError> {
    let found = match (q.subject_ref, q.property_ref) {
        (Some(s), None) => schemes(&ctx, "subject_ref", &common::subject_of(&ctx, None, Some(&s))?).await?,
        (None, Some(p)) => {
            common::property_ref(&p)?;
            schemes(&ctx, "property_ref", &p).await?
        }
        _ => return Err(ApiError::bad_request("name a subject_ref or a property_ref")),
    };
    Ok(Json(Value::Array(found)))
}
