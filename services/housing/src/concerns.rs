//! Early detectors: staff who hold no cases (caretakers, repairs, neighbourhood officers) are
//! trained to notice abuse and need a quick, safe way to raise a concern that reaches the
//! domestic abuse team.
//!
//! A concern names the property (its reference, or the address, sealed), what was seen or
//! heard from a fixed list of indicators, and an optional note (sealed). It lands in the
//! team's queue with a `concern_triage` deadline (the policy's `concern_triage_hours`): left
//! untriaged it escalates and the miss goes to the ledger. Triage records the decision and
//! meets the deadline. The detector can raise concerns but not read the queue.

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
    chronology, deadlines,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::{common, common::codes};

/// The deadline code of a concern's triage.
pub const CONCERN_TRIAGE: &str = "concern_triage";

codes!(
    /// What an early detector saw or heard.
    Indicator {
        InjuriesSeen = "injuries_seen": "Injuries seen on someone at the address",
        ShoutingOrViolenceHeard = "shouting_or_violence_heard": "Shouting, screaming or violence heard",
        DamageToProperty = "damage_to_property": "Damage to doors, walls or windows",
        FrightenedOfPartner = "frightened_of_partner": "Someone seemed frightened of their partner",
        ControllingBehaviour = "controlling_behaviour": "A partner answering for someone or not leaving them alone",
        IsolatedOrNotSeen = "isolated_or_not_seen": "Someone kept isolated or no longer seen",
        ChildrenDistressed = "children_distressed": "Children distressed or frightened",
        BarredPersonSeen = "barred_person_seen": "Someone barred from the address seen there",
        PoliceAttendance = "police_attendance": "Police called to the address",
        Other = "other": "Something else (in the note)",
    }
);

codes!(
    /// What triage decided.
    TriageDecision {
        NoFurtherAction = "no_further_action": "No further action",
        OpenCase = "open_case": "Open a domestic abuse case",
        ReferIdva = "refer_idva": "Refer to the IDVA service",
        Safeguarding = "safeguarding": "Safeguarding referral",
    }
);

codes!(
    /// Where a concern stands (`concerns.status`).
    ConcernStatus {
        Open = "open": "Open: to triage",
        Triaged = "triaged": "Triaged",
    }
);

/// `POST /concerns`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcernInput {
    #[serde(default)]
    pub property_ref: String,
    /// The address, when the property's reference is not to hand (sealed).
    #[serde(default)]
    pub address: String,
    pub indicators: Vec<String>,
    #[serde(default)]
    pub note: String,
}

/// `POST /concerns/{id}/triage`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageInput {
    pub decision: String,
    #[serde(default)]
    pub note: String,
    /// The survivor, when triage knows who it is (the concern then goes in their chronology).
    #[serde(default)]
    pub subject: Option<SubjectIdentity>,
    #[serde(default)]
    pub subject_ref: Option<String>,
    #[serde(default)]
    pub case_ref: String,
}

impl std::fmt::Debug for ConcernInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcernInput").field("property_ref", &self.property_ref).field("indicators", &self.indicators).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TriageInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriageInput").field("decision", &self.decision).field("case_ref", &self.case_ref).finish_non_exhaustive()
    }
}

/// The indicators of a concern, parsed: at least one, each from the list, none twice.
pub fn indicators(given: &[String]) -> Result<Vec<Indicator>, String> {
    let mut out = Vec::new();
    for g in given {
        let i = Indicator::parse(g).ok_or_else(|| format!("indicators: each is one of {}", Indicator::codes()))?;
        if !out.contains(&i) {
            out.push(i);
        }
    }
    if out.is_empty() {
        return Err("indicators: say what you saw or heard (at least one)".into());
    }
    Ok(out)
}

/// Raises a concern and sets its triage deadline.
pub async fn raise(ctx: &Ctx, staff: &Staff, input: &ConcernInput) -> Result<Value, ApiError> {
    if input.property_ref.is_empty() && input.address.trim().is_empty() {
        return Err(ApiError::bad_request("name the property: property_ref, or the address"));
    }
    if !input.property_ref.is_empty() {
        common::property_ref(&input.property_ref)?;
    }
    let found = indicators(&input.indicators).map_err(ApiError::bad_request)?;
    if found.contains(&Indicator::Other) && input.note.trim().is_empty() {
        return Err(ApiError::bad_request("note: say what else you saw or heard"));
    }
    let now = common::now(ctx);
    let id = uuid::Uuid::now_v7().to_string();
    let due = now + isp::policy::Deadlines::ms(ctx.isp().policy.deadlines.concern_triage_hours);
    let mut tx = ctx.pool.begin().await?;
    sqlx::query(
        "INSERT INTO concerns (id, property_ref, address, indicators, note, raised_by, raised_at_ms, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(&input.property_ref)
    .bind(common::seal(ctx, &input.address)?)
    .bind(found.iter().map(|i| i.code()).collect::<Vec<_>>().join(","))
    .bind(common::seal(ctx, &input.note)?)
    .bind(&staff.id)
    .bind(now)
    .bind(ConcernStatus::Open.code())
    .execute(&mut *tx)
    .await?;
    deadlines::set(&mut tx, &deadlines::Deadline { code: CONCERN_TRIAGE.into(), target: id.clone(), due_at_ms: due, ..Default::default() }).await?;
    tx.commit().await?;
    tracing::info!(concern = %id, "an early detector's concern was raised");
    Ok(json!({"id": id, "status": ConcernStatus::Open.code(), "triage_due_at_ms": due}))
}

/// Records triage of an open concern and meets its deadline.
pub async fn triage(ctx: &Ctx, staff: &Staff, id: &str, input: &TriageInput) -> Result<Value, ApiError> {
    common::id(id)?;
    let decision = TriageDecision::parse(&input.decision).ok_or_else(|| ApiError::bad_request(format!("decision is one of {}", TriageDecision::codes())))?;
    if decision == TriageDecision::NoFurtherAction && input.note.trim().is_empty() {
        return Err(ApiError::bad_request("note: say why no further action is needed"));
    }
    let subject_ref = match (&input.subject, &input.subject_ref) {
        (None, None) => String::new(),
        (s, r) => common::subject_of(ctx, s.as_ref(), r.as_deref())?,
    };
    common::case_ref(&input.case_ref)?;
    let exists = sqlx::query("SELECT status FROM concerns WHERE id = $1").bind(id).fetch_optional(&ctx.pool).await?;
    let Some(current) = exists else { return Err(ApiError::not_found("concern")) };
    let now = common::now(ctx);
    let mut tx = ctx.pool.begin().await?;
    let done = sqlx::query(
        "UPDATE concerns SET status = $1, decision = $2, triage_note = $3, subject_ref = $4, case_ref = $5, triaged_by = $6, triaged_at_ms = $7 \
         WHERE id = $8 AND status = $9",
    )
    .bind(ConcernStatus::Triaged.code())
    .bind(decision.code())
    .bind(common::seal(ctx, &input.note)?)
    .bind(&subject_ref)
    .bind(&input.case_ref)
    .bind(&staff.id)
    .bind(now)
    .bind(id)
    .bind(ConcernStatus::Open.code())
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::conflict(format!("this concern is {} already", current.try_get::<String, _>("status")?)));
    }
    deadlines::meet(&mut tx, CONCERN_TRIAGE, id, runtime::deadlines::Resolution::Met, now).await?;
    if !subject_ref.is_empty() {
        let entry = chronology::Entry {
            subject_ref: subject_ref.clone(),
            case_ref: input.case_ref.clone(),
            event: "concern".into(),
            code: decision.code().into(),
            item_id: id.into(),
            staff_id: staff.id.clone(),
            at_ms: now,
            ..Default::default()
        };
        chronology::add(&mut tx, &entry).await?;
    }
    tx.commit().await?;
    Ok(json!({"id": id, "status": ConcernStatus::Triaged.code(), "decision": decision.code()}))
}

const COLUMNS: &str = "id, property_ref, address, indicators, note, raised_by, raised_at_ms, status, decision, triage_note, subject_ref, case_ref, triaged_by, triaged_at_ms";

fn concern_json(ctx: &Ctx, r: &sqlx::any::AnyRow) -> Result<Value, ApiError> {
    let mut v = row_json(r, &["id", "property_ref", "raised_by", "status", "decision", "subject_ref", "case_ref", "triaged_by"], &["raised_at_ms", "triaged_at_ms"], &["indicators"]);
    v["address"] = json!(common::opened(ctx, r, "address")?);
    v["note"] = json!(common::opened(ctx, r, "note")?);
    v["triage_note"] = json!(common::opened(ctx, r, "triage_note")?);
    Ok(v)
}

/// The concerns of a state (`open`, the queue, oldest first; `triaged`, newest first; `all`).
pub async fn concerns(ctx: &Ctx, state: &str) -> Result<Vec<Value>, ApiError> {
    let (status, order) = match state {
        "open" => (Some(ConcernStatus::Open), "raised_at_ms, id"),
        "triaged" => (Some(ConcernStatus::Triaged), "triaged_at_ms DESC, id DESC"),
        "all" => (None, "raised_at_ms DESC, id DESC"),
        _ => return Err(ApiError::bad_request("state is open, triaged or all")),
    };
    let rows = match status {
        Some(s) => sqlx::query(&format!("SELECT {COLUMNS} FROM concerns WHERE status = $1 ORDER BY {order} LIMIT 500")).bind(s.code()).fetch_all(&ctx.pool).await?,
        None => sqlx::query(&format!("SELECT {COLUMNS} FROM concerns ORDER BY {order} LIMIT 500")).fetch_all(&ctx.pool).await?,
    };
    let due = due_times(ctx).await?;
    rows.iter()
        .map(|r| {
            let mut v = concern_json(ctx, r)?;
            v["triage_due_at_ms"] = json!(due.get(v["id"].as_str().unwrap_or_default()));
            Ok(v)
        })
        .collect()
}

/// When each open concern's triage is due (from the deadlines it set).
async fn due_times(ctx: &Ctx) -> Result<std::collections::HashMap<String, i64>, ApiError> {
    Ok(runtime::deadlines::unmet_of_code(&ctx.pool, CONCERN_TRIAGE).await?.into_iter().collect())
}

pub async fn concern(ctx: &Ctx, id: &str) -> Result<Value, ApiError> {
    common::id(id)?;
    let r = sqlx::query(&format!("SELECT {COLUMNS} FROM concerns WHERE id = $1")).bind(id).fetch_optional(&ctx.pool).await?.ok_or_else(|| ApiError::not_found("concern"))?;
    concern_json(ctx, &r)
}

pub async fn post(State(ctx): State<Ctx>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: ConcernInput = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(raise(&ctx, &staff, &input).await?)))
}

/// `GET /concerns?state=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcernQuery {
    pub state: Option<String>,
}

pub async fn list(State(ctx): State<Ctx>, Query(q): Query<ConcernQuery>) -> Result<Json<Value>, ApiError> {
    Ok(Json(Value::Array(concerns(&ctx, q.state.as_deref().unwrap_or("open")).await?)))
}

pub async fn get_one(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(concern(&ctx, &id).await?))
}

pub async fn post_triage(State(ctx): State<Ctx>, staff: Staff, Path(id): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let input: TriageInput = json_body(&body)?;
    Ok(Json(triage(&ctx, &staff, &id, &input).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indicators_come_from_the_list_once_each() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(indicators(&s(&["injuries_seen", "injuries_seen", "damage_to_property"])), Ok(vec![Indicator::InjuriesSeen, Indicator::DamageToProperty]));
        assert!(indicators(&s(&[])).is_err(), "at least one");
        let e = indicators(&s(&["Synthetic Person hit her"])).unwrap_err();
        assert!(!e.contains("Synthetic"), "the value is not repeated: {e}");
    }
}
