//! The domestic abuse points panel: allocations and domestic abuse staff meet weekly to decide
//! applications for the allocation scheme's violence-and-harassment priority (Group D points),
//! because officers without domestic abuse expertise tend to under-value the risk.
//!
//! A meeting is held on a day (one a day; the panel meets weekly, so the console proposes the
//! next week's); applications are listed to a meeting; each decision (awarded, not awarded,
//! deferred to a later meeting) records the points awarded, the reasons (sealed) and who
//! decided, on or after the meeting's day, and goes in the survivor's chronology.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use runtime::{
    Ctx,
    api::{ApiError, SubjectIdentity, clear_field, json_body, row_json},
    auth::Staff,
    chronology,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::{common, common::codes};

codes!(
    /// A panel's decision on an application.
    Decision {
        Pending = "pending": "Not yet decided",
        Awarded = "awarded": "Points awarded",
        NotAwarded = "not_awarded": "Not awarded",
        Deferred = "deferred": "Deferred to a later meeting",
    }
);

/// The most points one decision awards: a guard against a mistyped figure.
pub const MAX_POINTS: i64 = 10_000;

/// `POST /panel-meetings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeetingInput {
    /// The day the panel meets, YYYY-MM-DD.
    pub meets_on: String,
    /// Staff ids of the allocations and domestic abuse staff who sit on it.
    #[serde(default)]
    pub attendees: Vec<String>,
}

/// `POST /panel-meetings/{id}/applications`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingInput {
    #[serde(default)]
    pub case_ref: String,
    #[serde(default)]
    pub subject: Option<SubjectIdentity>,
    #[serde(default)]
    pub subject_ref: Option<String>,
    /// The allocation scheme's application reference (PANEL-2026-0042), when it has one.
    #[serde(default)]
    pub application_ref: String,
}

/// `POST /panel-applications/{id}/decision`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    /// awarded, not_awarded or deferred.
    pub decision: String,
    /// Group D points awarded: more than none with an award, none otherwise.
    #[serde(default)]
    pub points: i64,
    pub reasons: String,
}

impl std::fmt::Debug for ListingInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListingInput").field("case_ref", &self.case_ref).field("application_ref", &self.application_ref).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DecisionInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionInput").field("decision", &self.decision).field("points", &self.points).finish_non_exhaustive()
    }
}

/// Whether a decision and its points go together: points with an award, none otherwise.
pub fn check_points(decision: Decision, points: i64) -> Result<(), String> {
    match decision {
        Decision::Pending => Err("decision is awarded, not_awarded or deferred".into()),
        Decision::Awarded if !(1..=MAX_POINTS).contains(&points) => Err(format!("points: an award gives 1 to {MAX_POINTS} Group D points")),
        Decision::NotAwarded | Decision::Deferred if points != 0 => Err("points: only an award gives points".into()),
        _ => Ok(()),
    }
}

/// Schedules a meeting of the panel.
pub async fn schedule(ctx: &Ctx, staff: &Staff, input: &MeetingInput) -> Result<Value, ApiError> {
    common::day("meets_on", &input.meets_on)?;
    for a in &input.attendees {
        isp::clear::required("attendees", a, isp::clear::is_staff_id, isp::clear::STAFF_ID).map_err(clear_field)?;
    }
    let id = uuid::Uuid::now_v7().to_string();
    let inserted = sqlx::query("INSERT INTO panel_meetings (id, meets_on, attendees, created_by, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
        .bind(&id)
        .bind(&input.meets_on)
        .bind(input.attendees.join(","))
        .bind(&staff.id)
        .bind(common::now(ctx))
        .execute(&ctx.pool)
        .await;
    match inserted {
        Err(e) if common::is_duplicate(&e) => return Err(ApiError::conflict("the panel already meets that day")),
        other => other?,
    };
    Ok(json!({"id": id, "meets_on": input.meets_on}))
}

/// The meetings, newest first, with how many applications each has and how many are decided.
pub async fn meetings(ctx: &Ctx) -> Result<Vec<Value>, ApiError> {
    let rows = sqlx::query(
        "SELECT m.id, m.meets_on, m.attendees, m.created_by, m.created_at_ms, \
         (SELECT COUNT(*) FROM panel_applications a WHERE a.meeting_id = m.id) AS listed, \
         (SELECT COUNT(*) FROM panel_applications a WHERE a.meeting_id = m.id AND a.decision <> $1) AS decided \
         FROM panel_meetings m ORDER BY m.meets_on DESC LIMIT 200",
    )
    .bind(Decision::Pending.code())
    .fetch_all(&ctx.pool)
    .await?;
    Ok(rows.iter().map(|r| row_json(r, &["id", "meets_on", "created_by"], &["created_at_ms", "listed", "decided"], &["attendees"])).collect())
}

/// One meeting and its applications, reasons opened.
pub async fn meeting(ctx: &Ctx, id: &str) -> Result<Value, ApiError> {
    common::id(id)?;
    let m = sqlx::query("SELECT id, meets_on, attendees, created_by, created_at_ms FROM panel_meetings WHERE id = $1")
        .bind(id)
        .fetch_optional(&ctx.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("panel meeting"))?;
    let mut v = row_json(&m, &["id", "meets_on", "created_by"], &["created_at_ms"], &["attendees"]);
    let rows = sqlx::query(
        "SELECT id, subject_ref, case_ref, application_ref, listed_by, listed_at_ms, decision, points, reasons, decided_by, decided_at_ms \
         FROM panel_applications WHERE meeting_id = $1 ORDER BY listed_at_ms, id",
    )
    .bind(id)
    .fetch_all(&ctx.pool)
    .await?;
    v["applications"] = Value::Array(
        rows.iter()
            .map(|r| {
                let mut a = row_json(r, &["id", "subject_ref", "case_ref", "application_ref", "listed_by", "decision", "decided_by"], &["listed_at_ms", "points", "decided_at_ms"], &[]);
                a["reasons"] = json!(common::opened(ctx, r, "reasons")?);
                Ok(a)
            })
            .collect::<Result<_, ApiError>>()?,
    );
    Ok(v)
}

/// Lists a survivor's application to a meeting.
pub async fn list_application(ctx: &Ctx, staff: &Staff, meeting_id: &str, input: &ListingInput) -> Result<Value, ApiError> {
    common::id(meeting_id)?;
    let subject_ref = common::subject_of(ctx, input.subject.as_ref(), input.subject_ref.as_deref())?;
    common::case_ref(&input.case_ref)?;
    isp::clear::optional("application_ref", &input.application_ref, isp::clear::is_case_ref, isp::clear::CASE_REF).map_err(clear_field)?;
    let exists = sqlx::query("SELECT id FROM panel_meetings WHERE id = $1").bind(meeting_id).fetch_optional(&ctx.pool).await?;
    if exists.is_none() {
        return Err(ApiError::not_found("panel meeting"));
    }
    let now = common::now(ctx);
    let id = uuid::Uuid::now_v7().to_string();
    let mut tx = ctx.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO panel_applications (id, meeting_id, subject_ref, case_ref, application_ref, listed_by, listed_at_ms, decision) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(meeting_id)
    .bind(&subject_ref)
    .bind(&input.case_ref)
    .bind(&input.application_ref)
    .bind(&staff.id)
    .bind(now)
    .bind(Decision::Pending.code())
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if common::is_duplicate(&e) => return Err(ApiError::conflict("this survivor's application is already listed at that meeting")),
        other => other?,
    };
    let entry = chronology::Entry {
        subject_ref: subject_ref.clone(),
        case_ref: input.case_ref.clone(),
        event: "points_panel".into(),
        code: "listed".into(),
        item_id: id.clone(),
        staff_id: staff.id.clone(),
        at_ms: now,
        ..Default::default()
    };
    chronology::add(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(json!({"id": id, "meeting_id": meeting_id, "subject_ref": subject_ref, "decision": Decision::Pending.code()}))
}

/// Records the panel's decision on an application, once, from the day the panel meets.
pub async fn decide(ctx: &Ctx, staff: &Staff, id: &str, input: &DecisionInput) -> Result<Value, ApiError> {
    common::id(id)?;
    let decision = Decision::parse(&input.decision).ok_or_else(|| ApiError::bad_request("decision is awarded, not_awarded or deferred"))?;
    check_points(decision, input.points).map_err(ApiError::bad_request)?;
    if input.reasons.trim().is_empty() {
        return Err(ApiError::bad_request("reasons: every panel decision records its reasons"));
    }
    let r = sqlx::query(
        "SELECT a.subject_ref, a.case_ref, a.decision, m.meets_on FROM panel_applications a JOIN panel_meetings m ON m.id = a.meeting_id WHERE a.id = $1",
    )
    .bind(id)
    .fetch_optional(&ctx.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("panel application"))?;
    let meets_on: String = r.try_get("meets_on")?;
    let now = common::now(ctx);
    if chronology::day_ms(&meets_on).is_some_and(|day| now < day) {
        return Err(ApiError::conflict(format!("the panel meets on {meets_on}: its decisions are recorded from that day")));
    }
    let mut tx = ctx.pool.begin().await?;
    let done = sqlx::query("UPDATE panel_applications SET decision = $1, points = $2, reasons = $3, decided_by = $4, decided_at_ms = $5 WHERE id = $6 AND decision = $7")
        .bind(decision.code())
        .bind(input.points)
        .bind(common::seal(ctx, &input.reasons)?)
        .bind(&staff.id)
        .bind(now)
        .bind(id)
        .bind(Decision::Pending.code())
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::conflict(format!("this application was decided already ({}): list it at another meeting to decide again", r.try_get::<String, _>("decision")?)));
    }
    let entry = chronology::Entry {
        subject_ref: r.try_get("subject_ref")?,
        case_ref: r.try_get("case_ref")?,
        event: "points_panel".into(),
        code: decision.code().into(),
        item_id: id.into(),
        staff_id: staff.id.clone(),
        at_ms: now,
        ..Default::default()
    };
    chronology::add(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(json!({"id": id, "decision": decision.code(), "points": input.points, "decided_by": staff.id}))
}

pub async fn post_meeting(State(ctx): State<Ctx>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: MeetingInput = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(schedule(&ctx, &staff, &input).await?)))
}

/// `GET /panel-meetings`: the newest 200.
pub async fn list_meetings(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    Ok(Json(Value::Array(meetings(&ctx).await?)))
}

pub async fn get_meeting(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(meeting(&ctx, &id).await?))
}

pub async fn post_application(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: ListingInput = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(list_application(&ctx, &staff, &id, &input).await?)))
}

pub async fn post_decision(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: DecisionInput = json_body(&body)?;
    Ok(Json(decide(&ctx, &staff, &id, &input).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_go_with_an_award_only() {
        for (decision, points, ok) in [
            (Decision::Awarded, 50, true),
            (Decision::Awarded, 0, false),
            (Decision::Awarded, MAX_POINTS + 1, false),
            (Decision::Awarded, -5, false),
            (Decision::NotAwarded, 0, true),
            (Decision::NotAwarded, 10, false),
            (Decision::Deferred, 0, true),
            (Decision::Pending, 0, false),
        ] {
            assert_eq!(check_points(decision, points).is_ok(), ok, "{decision:?} with {points}");
        }
    }
}
