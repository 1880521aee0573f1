//! Research before the meeting: for a listed case, a `marac.research_request` to every member
//! agency the protocol lets receive one ([`crate::members`]), each minimised by the ISP to
//! what that member may see, all sent through the runtime's send path in one transaction with
//! their tracking rows: sent if and only if the request is recorded. Each request is a
//! deadline (its reply-by day) met when that member's `marac.research_response` naming it
//! arrives ([`crate::follow::research_answered`]); a missed one escalates. The board shows a
//! reminder from [`REMINDER_MS`] before the reply-by time.

use proto::v1::{MaracResearchRequest, Payload, payload::Body};
use runtime::{
    Ctx,
    api::ApiError,
    auth::Staff,
    chronology::{self, day_ms},
    deadlines::{self, Deadline},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    casework::{self, check_id, text},
    case::Status,
    follow::{self, RESEARCH_REPLY},
    members,
    store::{self, Research},
};

/// How long before its reply-by time an unanswered request shows as a reminder.
pub const REMINDER_MS: i64 = 2 * 86_400_000;

/// The longest questions taken (characters).
pub const QUESTIONS_MAX: usize = 4_000;

/// `POST /cases/{id}/research`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ResearchInput {
    /// What the meeting asks members to check their records for.
    pub questions: String,
    /// YYYY-MM-DD; the meeting's reply-by day when absent.
    #[serde(default)]
    pub reply_by: Option<String>,
}

impl std::fmt::Debug for ResearchInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResearchInput").field("questions", &casework::chars(&self.questions)).field("reply_by", &self.reply_by).finish()
    }
}

/// Where an unanswered request stands at `now`.
pub fn state(r: &Research, now: i64) -> &'static str {
    match r.responded_at_ms {
        Some(at) if at > r.due_at_ms => "answered_late",
        Some(_) => "answered",
        None if now >= r.due_at_ms => "overdue",
        None if r.due_at_ms - now <= REMINDER_MS => "reminder",
        None => "outstanding",
    }
}

/// A request as the API gives it (the questions opened when `questions` is given).
pub fn json(ctx: &Ctx, r: &Research, now: i64, questions: bool) -> Result<Value, ApiError> {
    let mut v = json!({
        "request_id": r.request_id, "case_id": r.case_id, "meeting_id": r.meeting_id, "member": r.member, "reply_by": r.reply_by,
        "due_at_ms": r.due_at_ms, "sent_by": r.sent_by, "sent_at_ms": r.sent_at_ms, "response_id": r.response_id,
        "holds_information": r.holds_information, "responded_at_ms": r.responded_at_ms, "state": state(r, now),
    });
    if questions {
        v["questions"] = json!(ctx.isp().keys.open_at_rest(&r.questions).map_err(ApiError::internal)?);
    }
    Ok(v)
}

/// The referral's people (survivor, perpetrators, children), read back from the inbox; none
/// when the referrer revoked it (its content is gone).
pub async fn people(ctx: &Ctx, case: &store::Case) -> Result<(Option<proto::v1::Person>, Vec<proto::v1::Person>, Vec<proto::v1::Child>), ApiError> {
    if case.revoked_at_ms.is_some() {
        return Ok((None, Vec::new(), Vec::new()));
    }
    let Some((opened, _)) = runtime::inbox::read(ctx, &case.id).await? else { return Ok((None, Vec::new(), Vec::new())) };
    match opened.payload.body {
        Some(Body::MaracReferral(r)) => Ok((r.survivor, r.perpetrators, r.children)),
        _ => Ok((None, Vec::new(), Vec::new())),
    }
}

/// The risk a send about the case carries in its header: the band its referral proved.
pub fn risk_of(case: &store::Case) -> proto::v1::RiskLevel {
    isp::policy::parse_risk(&case.risk).unwrap_or_default()
}

/// Sends the research requests of a listed case to every member; their ids.
pub async fn request(ctx: &Ctx, staff: &Staff, id: &str, input: &ResearchInput) -> Result<Vec<Value>, ApiError> {
    check_id(id)?;
    let questions = text("questions", &input.questions, QUESTIONS_MAX)?;
    if questions.is_empty() {
        return Err(ApiError::bad_request("questions: say what members are asked to check their records for"));
    }
    let case = casework::find(ctx, id).await?;
    if case.status != Status::Listed {
        return Err(ApiError::conflict(format!("the case is {}: research is asked for a case listed for a meeting (it names the meeting)", case.status.label().to_lowercase())));
    }
    let meeting = store::meeting(&ctx.pool, &case.meeting_id).await?.ok_or_else(|| ApiError::internal("a listed case's meeting is missing"))?;
    let now = ctx.config.clock.now_ms();
    let reply_by = input.reply_by.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| meeting.reply_by.clone());
    let reply_ms = day_ms(&reply_by).ok_or_else(|| ApiError::bad_request("reply_by is a date, YYYY-MM-DD"))?;
    if reply_ms + 86_400_000 <= now {
        return Err(ApiError::bad_request("reply_by is in the past: members need time to answer"));
    }
    if reply_by > meeting.meets_on {
        return Err(ApiError::bad_request(format!("reply_by is after the meeting ({}): answers are needed before it", meeting.meets_on)));
    }
    let members = members::members(&ctx.isp(), isp::Kind::MaracResearchRequest);
    if members.is_empty() {
        return Err(ApiError::conflict("the protocol lets no member agency receive research requests"));
    }
    let (survivor, perpetrators, children) = people(ctx, &case).await?;
    let sealed = ctx.seal_at_rest(questions).map_err(ApiError::internal)?;
    let mut tx = ctx.pool.begin().await?;
    // Checked again in the transaction: two coordinators asking at once send one round.
    let current = casework::load(&mut tx, id).await?;
    if current.status != Status::Listed || current.meeting_id != meeting.id {
        return Err(ApiError::conflict("the case changed meanwhile (someone else acted on it): reload it and try again"));
    }
    if store::research_of(&mut *tx, id).await?.iter().any(|r| r.meeting_id == meeting.id) {
        return Err(ApiError::conflict(format!("research for this case was asked already for the meeting of {}: see its answers", meeting.meets_on)));
    }
    let payload = Payload {
        body: Some(Body::MaracResearchRequest(MaracResearchRequest {
            meeting_date: meeting.meets_on.clone(),
            survivor,
            perpetrators,
            children,
            questions: questions.to_owned(),
            reply_by: reply_by.clone(),
        })),
    };
    let mut sent = Vec::with_capacity(members.len());
    let due = reply_ms + 86_400_000;
    for m in &members {
        let out = isp::Outgoing {
            recipient: m.id.clone(),
            kind: isp::Kind::MaracResearchRequest,
            purpose: m.purpose.clone(),
            lawful_basis: m.lawful_basis.clone(),
            consent: None,
            risk: risk_of(&case),
            subject_ref: case.subject_ref.clone(),
            case_ref: case.marac_ref.clone(),
            in_reply_to: String::new(),
            justification: None,
            payload: payload.clone(),
        };
        let outcome = ctx.send_in_as(&mut tx, &out, &staff.id).await?;
        let row = Research {
            request_id: outcome.envelope_id.clone(),
            case_id: case.id.clone(),
            meeting_id: meeting.id.clone(),
            member: m.id.clone(),
            reply_by: reply_by.clone(),
            due_at_ms: due,
            questions: sealed.clone(),
            sent_by: staff.id.clone(),
            sent_at_ms: now,
            response_id: String::new(),
            holds_information: None,
            responded_at_ms: None,
        };
        store::add_research(&mut tx, &row).await?;
        let deadline = Deadline { code: RESEARCH_REPLY.into(), target: row.request_id.clone(), subject_ref: case.subject_ref.clone(), case_ref: case.marac_ref.clone(), counterpart: m.id.clone(), due_at_ms: due };
        deadlines::set(&mut tx, &deadline).await?;
        sent.push(json!({"member": m.id, "request_id": outcome.envelope_id, "removed": outcome.removed, "reply_by": reply_by}));
    }
    if !case.subject_ref.is_empty() {
        chronology::add(&mut tx, &follow::entry(&case, "research_requested", &members.len().to_string(), &staff.id, now)).await?;
    }
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    tracing::info!(case_id = %case.id, members = members.len(), "MARAC research requested");
    Ok(sent)
}

/// Research outstanding per member: for each member with requests not answered, how many, how
/// many are due soon (a reminder) and how many are overdue (escalated).
pub fn per_member(outstanding: &[Research], now: i64) -> Vec<Value> {
    let mut members: Vec<&str> = outstanding.iter().map(|r| r.member.as_str()).collect();
    members.sort_unstable();
    members.dedup();
    members
        .into_iter()
        .map(|m| {
            let mine: Vec<&Research> = outstanding.iter().filter(|r| r.member == m).collect();
            let count = |s: &str| mine.iter().filter(|r| state(r, now) == s).count();
            json!({"member": m, "outstanding": mine.len(), "reminder": count("reminder"), "overdue": count("overdue"),
                "next_due_at_ms": mine.iter().map(|r| r.due_at_ms).min()})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(member: &str, due: i64, responded: Option<i64>) -> Research {
        Research {
            request_id: format!("r-{member}-{due}"),
            case_id: "c".into(),
            meeting_id: "m".into(),
            member: member.into(),
            reply_by: "2026-12-01".into(),
            due_at_ms: due,
            questions: String::new(),
            sent_by: "demo.marac-coordinator".into(),
            sent_at_ms: 0,
            response_id: String::new(),
            holds_information: None,
            responded_at_ms: responded,
        }
    }

    #[test]
    fn a_request_shows_a_reminder_before_it_is_overdue() {
        let day = 86_400_000;
        let due = 10 * day;
        assert_eq!(state(&request("h", due, None), due - 3 * day), "outstanding");
        assert_eq!(state(&request("h", due, None), due - day), "reminder");
        assert_eq!(state(&request("h", due, None), due), "overdue");
        assert_eq!(state(&request("h", due, Some(due - 1)), due + day), "answered");
        assert_eq!(state(&request("h", due, Some(due + 1)), due + day), "answered_late");
        let board = per_member(&[request("a", due, None), request("a", 2 * due, None), request("b", due, None)], due + 1);
        assert_eq!(board[0], json!({"member": "a", "outstanding": 2, "reminder": 0, "overdue": 1, "next_due_at_ms": due}));
        assert_eq!(board[1]["member"], "b");
    }
}
