//! Meetings on the coordinator's schedule: each on a day, with a list cut-off (cases are
//! listed until the end of that day) and a reply-by day for research. At the meeting the
//! coordinator records who attended and that the confidentiality statement was agreed, hears
//! each case on the agenda (or takes it off), then sends the minutes: for every case heard, a
//! `marac.minutes` to every member agency the protocol lets receive them, each copy minimised
//! by the ISP to what that member's role may see, in one transaction.

use proto::v1::{MaracAction, MaracMinutes, Payload, payload::Body};
use runtime::{
    Ctx,
    api::{ApiError, clear_field},
    auth::Staff,
    chronology::{self, date_of, day_ms},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    case::{ActionStatus, Status},
    casework::check_id,
    follow, members,
    research::{people, risk_of},
    store::{self, Action, Meeting},
};

/// How many days before the meeting research is asked to be answered by default.
pub const REPLY_DAYS_BEFORE: i64 = 2;

/// `POST /meetings`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MeetingInput {
    /// YYYY-MM-DD.
    pub meets_on: String,
    /// The last day a case can be listed (YYYY-MM-DD), on or before the meeting.
    pub list_closes_on: String,
    /// The day research is to be answered by; two days before the meeting by default (not
    /// before the list closes).
    #[serde(default)]
    pub reply_by: Option<String>,
}

/// `POST /meetings/{id}/attendance`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AttendanceInput {
    /// The agencies present (agency ids).
    pub agencies: Vec<String>,
    pub confidentiality_agreed: bool,
}

/// A meeting as the API gives it.
pub fn json(m: &Meeting) -> Value {
    json!({
        "id": m.id, "meets_on": m.meets_on, "list_closes_on": m.list_closes_on, "reply_by": m.reply_by, "attendance": m.attendance,
        "confidentiality_agreed": m.confidentiality_agreed, "created_by": m.created_by, "created_at_ms": m.created_at_ms,
        "minuted_by": m.minuted_by, "minuted_at_ms": m.minuted_at_ms,
    })
}

fn date(field: &str, value: &str) -> Result<i64, ApiError> {
    day_ms(value).ok_or_else(|| ApiError::bad_request(format!("{field} is a date, YYYY-MM-DD")))
}

/// Puts a meeting on the schedule.
pub async fn create(ctx: &Ctx, staff: &Staff, input: &MeetingInput) -> Result<Meeting, ApiError> {
    let now = ctx.config.clock.now_ms();
    let today = date_of(now);
    let meets = date("meets_on", &input.meets_on)?;
    date("list_closes_on", &input.list_closes_on)?;
    if input.meets_on < today {
        return Err(ApiError::bad_request("meets_on is in the past: a meeting is scheduled from today on"));
    }
    if input.list_closes_on > input.meets_on {
        return Err(ApiError::bad_request("list_closes_on is after the meeting: the list closes on or before the day it meets"));
    }
    if input.list_closes_on < today {
        return Err(ApiError::bad_request("list_closes_on is in the past: no case could be listed"));
    }
    let reply_by = match input.reply_by.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => {
            date("reply_by", r)?;
            r.to_owned()
        }
        None => date_of(meets - REPLY_DAYS_BEFORE * 86_400_000).max(input.list_closes_on.clone()),
    };
    if reply_by > input.meets_on || reply_by < today {
        return Err(ApiError::bad_request("reply_by is between today and the meeting: members answer before it"));
    }
    let meeting = Meeting {
        id: uuid::Uuid::now_v7().to_string(),
        meets_on: input.meets_on.clone(),
        list_closes_on: input.list_closes_on.clone(),
        reply_by,
        attendance: Vec::new(),
        confidentiality_agreed: false,
        created_by: staff.id.clone(),
        created_at_ms: now,
        minuted_by: String::new(),
        minuted_at_ms: None,
    };
    let mut tx = ctx.pool.begin().await?;
    if !store::add_meeting(&mut tx, &meeting).await? {
        return Err(ApiError::conflict(format!("a meeting is on the schedule for {} already", meeting.meets_on)));
    }
    tx.commit().await?;
    tracing::info!(meeting_id = %meeting.id, meets_on = %meeting.meets_on, "MARAC meeting scheduled");
    Ok(meeting)
}

/// The meeting `id`, or 404 (its id checked first).
pub async fn find(ctx: &Ctx, id: &str) -> Result<Meeting, ApiError> {
    check_id(id)?;
    store::meeting(&ctx.pool, id).await?.ok_or_else(|| ApiError::not_found("meeting"))
}

/// A meeting with its agenda: each case listed for it, whether heard, and its research.
pub async fn detail(ctx: &Ctx, id: &str) -> Result<Value, ApiError> {
    let meeting = find(ctx, id).await?;
    let now = ctx.config.clock.now_ms();
    let mut agenda = Vec::new();
    for c in store::on_meeting(&ctx.pool, id).await? {
        let research = store::research_of(&ctx.pool, &c.id).await?;
        let answered = research.iter().filter(|r| r.meeting_id == meeting.id && !r.response_id.is_empty()).count();
        let asked = research.iter().filter(|r| r.meeting_id == meeting.id).count();
        let mut v = crate::store::case_json(&c);
        v["research"] = json!({"asked": asked, "answered": answered});
        agenda.push(v);
    }
    let mut v = json(&meeting);
    v["list_open"] = json!(meeting.list_open(now));
    v["agenda"] = json!(agenda);
    Ok(v)
}

/// Records who attended and whether the confidentiality statement was agreed, at the meeting.
pub async fn attendance(ctx: &Ctx, id: &str, input: &AttendanceInput) -> Result<Meeting, ApiError> {
    let meeting = find(ctx, id).await?;
    let now = ctx.config.clock.now_ms();
    if meeting.minuted_at_ms.is_some() {
        return Err(ApiError::conflict("the meeting's minutes were sent: its record is closed"));
    }
    if !meeting.has_met(now) {
        return Err(ApiError::conflict(format!("the meeting of {} has not taken place yet: record who attended at the meeting", meeting.meets_on)));
    }
    let mut agencies = Vec::new();
    let isp = ctx.isp();
    for a in &input.agencies {
        isp::clear::required("agencies", a, isp::clear::is_agency_id, isp::clear::AGENCY_ID).map_err(clear_field)?;
        if isp.directory.get(a).is_none() {
            return Err(ApiError::bad_request("agencies: one is not an agency of the partnership directory"));
        }
        if !agencies.contains(a) {
            agencies.push(a.clone());
        }
    }
    if agencies.is_empty() {
        return Err(ApiError::bad_request("agencies: name the agencies present"));
    }
    let mut tx = ctx.pool.begin().await?;
    store::set_attendance(&mut tx, id, &agencies, input.confidentiality_agreed).await?;
    tx.commit().await?;
    Ok(Meeting { attendance: agencies, confidentiality_agreed: input.confidentiality_agreed, ..meeting })
}

fn proto_action(ctx: &Ctx, a: &Action) -> Result<MaracAction, ApiError> {
    let description = if a.description.is_empty() { String::new() } else { ctx.isp().keys.open_at_rest(&a.description).map_err(ApiError::internal)? };
    Ok(MaracAction { action_id: a.action_id.clone(), meeting_date: a.meeting_on.clone(), description, owner_agency: a.owner_agency.clone(), due_date: a.due_on.clone() })
}

/// The minutes of one case heard at `meeting`: everything the members may be told, before the
/// ISP minimises it for each of them.
async fn minutes_of(ctx: &Ctx, meeting: &Meeting, case: &store::Case, now: i64) -> Result<MaracMinutes, ApiError> {
    let hearing = store::hearing(&ctx.pool, &case.id).await?.ok_or_else(|| ApiError::internal("a heard case's hearing is missing"))?;
    let keys = &ctx.isp().keys;
    let (survivor, perpetrators, children) = people(ctx, case).await?;
    let actions = store::actions_of(&ctx.pool, &case.id).await?.iter().map(|a| proto_action(ctx, a)).collect::<Result<Vec<_>, _>>()?;
    let mut changed = Vec::new();
    let mut not_done = Vec::new();
    if !case.subject_ref.is_empty() {
        for a in store::actions_of_subject(&ctx.pool, &case.subject_ref).await?.iter().filter(|a| a.case_id != case.id) {
            match a.status {
                ActionStatus::CircumstancesChanged => changed.push(proto_action(ctx, a)?),
                ActionStatus::NotDone => not_done.push(proto_action(ctx, a)?),
                ActionStatus::InProgress if a.overdue(now) => not_done.push(proto_action(ctx, a)?),
                _ => {}
            }
        }
    }
    Ok(MaracMinutes {
        meeting_date: meeting.meets_on.clone(),
        attendance: meeting.attendance.clone(),
        confidentiality_agreed: meeting.confidentiality_agreed,
        survivor,
        perpetrators,
        children,
        discussion: keys.open_at_rest(&hearing.discussion).map_err(ApiError::internal)?,
        risks_identified: keys.open_at_rest(&hearing.risks).map_err(ApiError::internal)?,
        actions,
        outcome: hearing.outcome.to_proto() as i32,
        repeat: case.assessment().has(crate::criteria::Criterion::Repeat),
        outstanding_circumstances_changed: changed,
        outstanding_not_done: not_done,
    })
}

/// Sends the minutes of every case the meeting heard to every member, each copy minimised to
/// what that member may see, and closes the meeting's record. What was sent, per case and
/// member, with the categories the ISP removed.
pub async fn send_minutes(ctx: &Ctx, staff: &Staff, id: &str) -> Result<Vec<Value>, ApiError> {
    let meeting = find(ctx, id).await?;
    let now = ctx.config.clock.now_ms();
    if meeting.minuted_at_ms.is_some() {
        return Err(ApiError::conflict("the minutes of this meeting were sent already"));
    }
    if meeting.attendance.is_empty() || !meeting.confidentiality_agreed {
        return Err(ApiError::conflict("the minutes record who attended and the confidentiality agreement: record them first"));
    }
    let agenda = store::on_meeting(&ctx.pool, id).await?;
    let waiting = agenda.iter().filter(|c| c.status == Status::Listed).count();
    if waiting > 0 {
        return Err(ApiError::conflict(format!("{waiting} case(s) on the agenda are not heard yet: record their hearing or take them off the agenda")));
    }
    let mut heard = Vec::new();
    for c in agenda {
        if store::hearing(&ctx.pool, &c.id).await?.is_some_and(|h| h.meeting_id == meeting.id) {
            heard.push(c);
        }
    }
    if heard.is_empty() {
        return Err(ApiError::conflict("no case on the agenda was heard: there are no minutes to send"));
    }
    let members = members::members(&ctx.isp(), isp::Kind::MaracMinutes);
    let mut minutes = Vec::with_capacity(heard.len());
    for c in &heard {
        minutes.push(minutes_of(ctx, &meeting, c, now).await?);
    }
    let mut tx = ctx.pool.begin().await?;
    if !store::minuted(&mut tx, id, &staff.id, now).await? {
        return Err(ApiError::conflict("the minutes of this meeting were sent already"));
    }
    let mut sent = Vec::new();
    for (c, m) in heard.iter().zip(minutes) {
        let payload = Payload { body: Some(Body::MaracMinutes(m)) };
        for member in &members {
            let out = isp::Outgoing {
                recipient: member.id.clone(),
                kind: isp::Kind::MaracMinutes,
                purpose: member.purpose.clone(),
                lawful_basis: member.lawful_basis.clone(),
                consent: None,
                risk: risk_of(c),
                subject_ref: c.subject_ref.clone(),
                case_ref: c.marac_ref.clone(),
                in_reply_to: String::new(),
                justification: None,
                payload: payload.clone(),
            };
            let outcome = ctx.send_in_as(&mut tx, &out, &staff.id).await?;
            sent.push(json!({"case_id": c.id, "member": member.id, "envelope_id": outcome.envelope_id, "categories": outcome.categories, "removed": outcome.removed}));
        }
        if !c.subject_ref.is_empty() {
            chronology::add(&mut tx, &follow::entry(c, "marac_minutes_sent", &members.len().to_string(), &staff.id, now)).await?;
        }
    }
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    tracing::info!(meeting_id = %meeting.id, cases = heard.len(), members = members.len(), "MARAC minutes sent");
    Ok(sent)
}
