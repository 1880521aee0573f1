//! The MARAC's tables: the one place that writes their column lists. A case is known by the
//! envelope id of the referral that opened it. A case's status changes only from the status
//! it was read in (`WHERE status = $from`), so two coordinators acting on one case at once
//! cannot both move it. Free text arrives here sealed already and leaves sealed.

use runtime::status::Arrival;
use runtime::{Tx, chronology, db::comma_list as list};
use serde_json::{Value, json};
use sqlx::{Row as _, any::AnyRow};

use crate::{
    case::{ActionStatus, CloseReason, Decision, Outcome, Status},
    criteria::{self, Class, Criterion, Dash, Facts, Previous},
};

fn decode_error(column: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.into(), source: format!("not a code this service knows in {column}").into() }
}

/// An optional code column: '' is none.
fn code<T>(r: &AnyRow, column: &str, parse: fn(&str) -> Option<T>) -> sqlx::Result<Option<T>> {
    match r.try_get::<String, _>(column)?.as_str() {
        "" => Ok(None),
        c => parse(c).map(Some).ok_or_else(|| decode_error(column)),
    }
}

// ---------------------------------------------------------------- cases

/// One case, as stored.
#[derive(Debug, Clone)]
pub struct Case {
    /// The envelope id of the referral that opened it.
    pub id: String,
    pub subject_ref: String,
    /// The agency that referred, and its case reference.
    pub referrer: String,
    pub case_ref: String,
    /// This MARAC's own reference (`MARAC-2026-0007`): what its sends about the case carry.
    pub marac_ref: String,
    /// The band the referral's header carried (proved by its DASH summary when high).
    pub risk: String,
    pub status: Status,
    pub received_at_ms: i64,
    pub claimed: Vec<Criterion>,
    /// The latest earlier MARAC elsewhere the referral names (YYYY-MM-DD), or empty.
    pub named_previous_on: String,
    pub dash: Option<Dash>,
    pub class: Class,
    pub screening: Option<Decision>,
    pub meeting_id: String,
    pub listed_at_ms: Option<i64>,
    pub close_reason: Option<CloseReason>,
    pub revoked_at_ms: Option<i64>,
    pub inbox_status: String,
    pub updated_at_ms: i64,
}

const CASE_COLUMNS: &str = "envelope_id, subject_ref, referrer, case_ref, marac_ref, risk, status, received_at_ms, claimed, named_previous_on, \
    dash_assessment_id, dash_assessed_by, dash_score, dash_high, dash_judgement, judgement_officer, duplicate_of, repeat_of, previous_marac_on, \
    incidents_12m, screening, meeting_id, listed_at_ms, close_reason, revoked_at_ms, inbox_status, updated_at_ms";

impl Case {
    fn from_row(r: &AnyRow) -> sqlx::Result<Case> {
        let status = Status::parse(&r.try_get::<String, _>("status")?).ok_or_else(|| decode_error("status"))?;
        // A claim of no criterion this service knows (an older version's "unspecified") is no claim.
        let claimed = list(&r.try_get::<String, _>("claimed")?).iter().filter_map(|c| Criterion::parse(c)).collect();
        let dash = match r.try_get::<Option<i64>, _>("dash_score")? {
            Some(score) => Some(Dash {
                assessment_id: r.try_get("dash_assessment_id")?,
                assessed_by: r.try_get("dash_assessed_by")?,
                score: score as u32,
                high: r.try_get::<i64, _>("dash_high")? != 0,
                judgement: r.try_get::<i64, _>("dash_judgement")? != 0,
                judgement_officer: r.try_get("judgement_officer")?,
            }),
            None => None,
        };
        let (duplicate_of, repeat_of, previous_on): (String, String, String) = (r.try_get("duplicate_of")?, r.try_get("repeat_of")?, r.try_get("previous_marac_on")?);
        let class = Class {
            duplicate_of: (!duplicate_of.is_empty()).then_some(duplicate_of),
            repeat_of: (!repeat_of.is_empty()).then(|| Previous { case_id: repeat_of, marac_at_ms: chronology::day_ms(&previous_on).unwrap_or_default() }),
            incidents_12m: r.try_get::<i64, _>("incidents_12m")? as u32,
        };
        Ok(Case {
            id: r.try_get("envelope_id")?,
            subject_ref: r.try_get("subject_ref")?,
            referrer: r.try_get("referrer")?,
            case_ref: r.try_get("case_ref")?,
            marac_ref: r.try_get("marac_ref")?,
            risk: r.try_get("risk")?,
            status,
            received_at_ms: r.try_get("received_at_ms")?,
            claimed,
            named_previous_on: r.try_get("named_previous_on")?,
            dash,
            class,
            screening: code(r, "screening", Decision::parse)?,
            meeting_id: r.try_get("meeting_id")?,
            listed_at_ms: r.try_get("listed_at_ms")?,
            close_reason: code(r, "close_reason", CloseReason::parse)?,
            revoked_at_ms: r.try_get("revoked_at_ms")?,
            inbox_status: r.try_get("inbox_status")?,
            updated_at_ms: r.try_get("updated_at_ms")?,
        })
    }

    /// What the criteria are judged on.
    pub fn facts(&self) -> Facts {
        Facts {
            dash: self.dash.clone(),
            claimed: self.claimed.clone(),
            class: self.class.clone(),
            named_previous_ms: chronology::day_ms(&self.named_previous_on),
            received_at_ms: self.received_at_ms,
        }
    }

    /// The criteria the case meets, with their evidence.
    pub fn assessment(&self) -> criteria::Assessment {
        criteria::assess(&self.facts())
    }

    /// The referral as classification sees it; `heard_on_ms` from its hearing.
    pub fn referral(&self, heard_on_ms: Option<i64>) -> criteria::Referral {
        criteria::Referral {
            id: self.id.clone(),
            referrer: self.referrer.clone(),
            case_ref: self.case_ref.clone(),
            received_at_ms: self.received_at_ms,
            revoked: self.revoked_at_ms.is_some(),
            screened_out: self.screening == Some(Decision::CriteriaNotMet),
            closed_as_duplicate: self.close_reason == Some(CloseReason::Duplicate),
            heard_on_ms,
        }
    }
}

/// What a received referral opens.
#[derive(Debug, Clone)]
pub struct NewCase<'a> {
    pub id: &'a str,
    pub subject_ref: &'a str,
    pub referrer: &'a str,
    pub case_ref: &'a str,
    pub marac_ref: &'a str,
    pub risk: &'a str,
    pub claimed: &'a [Criterion],
    pub named_previous_on: &'a str,
    pub dash: Option<&'a Dash>,
    pub received_at_ms: i64,
}

/// Opens a case awaiting screening; false when it is open already (a redelivered referral).
pub async fn open(tx: &mut Tx, c: &NewCase<'_>) -> sqlx::Result<bool> {
    let claimed = c.claimed.iter().map(|x| x.code()).collect::<Vec<_>>().join(",");
    let dash = c.dash.cloned().unwrap_or_default();
    let done = sqlx::query(
        "INSERT INTO marac_cases (envelope_id, subject_ref, referrer, criteria, repeat_referral, meets_criteria, status, received_at_ms, case_ref, marac_ref, risk, claimed, \
         named_previous_on, dash_assessment_id, dash_assessed_by, dash_score, dash_high, dash_judgement, judgement_officer, updated_at_ms) \
         VALUES ($1, $2, $3, '', 0, 0, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $5) ON CONFLICT DO NOTHING",
    )
    .bind(c.id)
    .bind(c.subject_ref)
    .bind(c.referrer)
    .bind(Status::Received.code())
    .bind(c.received_at_ms)
    .bind(c.case_ref)
    .bind(c.marac_ref)
    .bind(c.risk)
    .bind(claimed)
    .bind(c.named_previous_on)
    .bind(dash.assessment_id)
    .bind(dash.assessed_by)
    .bind(c.dash.map(|d| i64::from(d.score)))
    .bind(i64::from(dash.high))
    .bind(i64::from(dash.judgement))
    .bind(dash.judgement_officer)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The next of this MARAC's own references of `year`: `MARAC-2026-0007`.
pub async fn next_marac_ref(tx: &mut Tx, year: &str) -> sqlx::Result<String> {
    let prefix = format!("MARAC-{year}-");
    let rows = sqlx::query("SELECT marac_ref FROM marac_cases WHERE marac_ref LIKE $1").bind(format!("{prefix}%")).fetch_all(&mut **tx).await?;
    let last = rows.iter().filter_map(|r| r.try_get::<String, _>("marac_ref").ok()).filter_map(|r| r[prefix.len()..].parse::<u32>().ok()).max().unwrap_or(0);
    Ok(format!("{prefix}{:04}", last + 1))
}

/// One case, if there is one of that id.
pub async fn get<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, id: &str) -> sqlx::Result<Option<Case>> {
    sqlx::query(&format!("SELECT {CASE_COLUMNS} FROM marac_cases WHERE envelope_id = $1")).bind(id).fetch_optional(e).await?.as_ref().map(Case::from_row).transpose()
}

/// Every case of a person, each with the day it was heard (start of day, ms) if it was.
pub async fn of_subject(tx: &mut Tx, subject_ref: &str) -> sqlx::Result<Vec<(Case, Option<i64>)>> {
    let columns = CASE_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", ");
    let rows = sqlx::query(&format!(
        "SELECT {columns}, m.meets_on AS heard_on FROM marac_cases c LEFT JOIN marac_hearings h ON h.case_id = c.envelope_id \
         LEFT JOIN marac_meetings m ON m.id = h.meeting_id WHERE c.subject_ref = $1 ORDER BY c.received_at_ms, c.envelope_id"
    ))
    .bind(subject_ref)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            let heard: Option<String> = r.try_get("heard_on")?;
            Ok((Case::from_row(r)?, heard.as_deref().and_then(chronology::day_ms)))
        })
        .collect()
}

/// Keeps what classification says of a case, and the criteria that follow (also in the
/// columns from before the cycle: `criteria`, `repeat_referral`, `meets_criteria`).
pub async fn save_class(tx: &mut Tx, case: &Case, class: &Class, now: i64) -> sqlx::Result<()> {
    let judged = Case { class: class.clone(), ..case.clone() };
    let assessment = judged.assessment();
    let previous = class.repeat_of.as_ref();
    sqlx::query(
        "UPDATE marac_cases SET duplicate_of = $1, repeat_of = $2, previous_marac_on = $3, incidents_12m = $4, criteria = $5, repeat_referral = $6, \
         meets_criteria = $7, updated_at_ms = $8 WHERE envelope_id = $9",
    )
    .bind(class.duplicate_of.clone().unwrap_or_default())
    .bind(previous.map(|p| p.case_id.clone()).unwrap_or_default())
    .bind(previous.map(|p| chronology::date_of(p.marac_at_ms)).unwrap_or_default())
    .bind(i64::from(class.incidents_12m))
    .bind(assessment.codes().join(","))
    .bind(i64::from(assessment.has(Criterion::Repeat)))
    .bind(i64::from(assessment.meets()))
    .bind(now)
    .bind(&case.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What a status change writes besides the status.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    Screened(Decision),
    Listed { meeting_id: &'a str },
    Deferred,
    Heard,
    Closed(CloseReason),
}

/// Moves case `id` from `from` to `to` at `now`; false when it was no longer in `from`.
/// A listing's time is `now`, or one millisecond after the meeting's latest listing when that
/// is not earlier: two cases listed within one millisecond keep the order they were listed in
/// on the agenda, instead of falling back to their envelope ids.
pub async fn change(tx: &mut Tx, id: &str, from: Status, to: Status, change: Change<'_>, now: i64) -> sqlx::Result<bool> {
    const MOVE: &str = "UPDATE marac_cases SET status = $1, updated_at_ms = $4";
    const WHERE: &str = "WHERE envelope_id = $2 AND status = $3";
    let q = match change {
        Change::Screened(_) => format!("{MOVE}, screening = $5 {WHERE}"),
        Change::Listed { .. } => format!(
            "{MOVE}, meeting_id = $5, listed_at_ms = (SELECT CASE WHEN MAX(o.listed_at_ms) >= $4 THEN MAX(o.listed_at_ms) + 1 ELSE $4 END \
             FROM marac_cases o WHERE o.meeting_id = $5) {WHERE}"
        ),
        Change::Deferred => format!("{MOVE}, meeting_id = '', listed_at_ms = NULL {WHERE}"),
        Change::Heard => format!("{MOVE} {WHERE}"),
        Change::Closed(_) => format!("{MOVE}, close_reason = $5 {WHERE}"),
    };
    let mut q = sqlx::query(&q).bind(to.code()).bind(id).bind(from.code()).bind(now);
    match change {
        Change::Screened(d) => q = q.bind(d.code()),
        Change::Listed { meeting_id } => q = q.bind(meeting_id),
        Change::Closed(r) => q = q.bind(r.code()),
        Change::Deferred | Change::Heard => {}
    }
    Ok(q.execute(&mut **tx).await?.rows_affected() == 1)
}

/// Marks a case's referral revoked by its referrer; false when it was already.
pub async fn revoked(tx: &mut Tx, id: &str, now: i64) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE marac_cases SET revoked_at_ms = $1, updated_at_ms = $1 WHERE envelope_id = $2 AND revoked_at_ms IS NULL").bind(now).bind(id).execute(&mut **tx).await?;
    Ok(done.rows_affected() == 1)
}

/// Notes the inbox answer a case has followed.
pub async fn followed(tx: &mut Tx, id: &str, inbox_status: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE marac_cases SET inbox_status = $1 WHERE envelope_id = $2").bind(inbox_status).bind(id).execute(&mut **tx).await?;
    Ok(())
}

/// A page of cases in id order after `after`, of one status when given.
pub async fn page(pool: &sqlx::AnyPool, status: Option<Status>, after: &str, limit: i64) -> sqlx::Result<Vec<Case>> {
    let rows = match status {
        Some(s) => {
            sqlx::query(&format!("SELECT {CASE_COLUMNS} FROM marac_cases WHERE status = $1 AND {}", runtime::api::Page::clause("envelope_id", 2)))
                .bind(s.code())
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
        None => sqlx::query(&format!("SELECT {CASE_COLUMNS} FROM marac_cases WHERE {}", runtime::api::Page::clause("envelope_id", 1))).bind(after).bind(limit).fetch_all(pool).await?,
    };
    rows.iter().map(Case::from_row).collect()
}

/// Cases of one status, oldest first, at most `limit`.
pub async fn with_status(pool: &sqlx::AnyPool, status: Status, limit: i64) -> sqlx::Result<Vec<Case>> {
    let rows = sqlx::query(&format!("SELECT {CASE_COLUMNS} FROM marac_cases WHERE status = $1 ORDER BY received_at_ms, envelope_id LIMIT $2"))
        .bind(status.code())
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(Case::from_row).collect()
}

/// The newest cases, whatever their status, at most `limit`.
pub async fn newest(pool: &sqlx::AnyPool, limit: i64) -> sqlx::Result<Vec<Case>> {
    let rows = sqlx::query(&format!("SELECT {CASE_COLUMNS} FROM marac_cases ORDER BY received_at_ms DESC, envelope_id LIMIT $1")).bind(limit).fetch_all(pool).await?;
    rows.iter().map(Case::from_row).collect()
}

/// The agenda of a meeting: the cases listed on it (heard or not), in the order listed.
pub async fn on_meeting<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, meeting_id: &str) -> sqlx::Result<Vec<Case>> {
    let rows = sqlx::query(&format!("SELECT {CASE_COLUMNS} FROM marac_cases WHERE meeting_id = $1 ORDER BY listed_at_ms, envelope_id")).bind(meeting_id).fetch_all(e).await?;
    rows.iter().map(Case::from_row).collect()
}

/// Cases received in `[from_ms, until_ms)`.
pub async fn received_between(pool: &sqlx::AnyPool, from_ms: i64, until_ms: i64) -> sqlx::Result<Vec<Case>> {
    let rows = sqlx::query(&format!("SELECT {CASE_COLUMNS} FROM marac_cases WHERE received_at_ms >= $1 AND received_at_ms < $2 ORDER BY received_at_ms"))
        .bind(from_ms)
        .bind(until_ms)
        .fetch_all(pool)
        .await?;
    rows.iter().map(Case::from_row).collect()
}

/// Cases an inbox answer can still move: open ones (a closed case takes no step, so following
/// an answer could change nothing on it) that have not followed a close there (the inbox
/// takes no answer after it; a decline can still be reconsidered). (case id, the inbox status
/// it last followed), oldest first. Read each tick, so bounded by the open cases, not by
/// every case the service ever had.
pub async fn following_inbox(pool: &sqlx::AnyPool) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as("SELECT envelope_id, inbox_status FROM marac_cases WHERE inbox_status <> $1 AND status <> $2 ORDER BY received_at_ms, envelope_id")
        .bind(Arrival::Closed.code())
        .bind(Status::Closed.code())
        .fetch_all(pool)
        .await
}

/// Cases whose referral was answered in the inbox (accepted, declined, closed) differently
/// from what the case last followed, at most `limit`: (case id, the inbox's answer). The
/// inbox is the runtime's table, asked through [`runtime::inbox::answers`].
pub async fn inbox_answers_to_follow(pool: &sqlx::AnyPool, limit: usize) -> sqlx::Result<Vec<(String, Arrival)>> {
    let cases = following_inbox(pool).await?;
    let ids: Vec<String> = cases.iter().map(|(id, _)| id.clone()).collect();
    let answers: std::collections::HashMap<String, Arrival> = runtime::inbox::answers(pool, &ids).await?.into_iter().collect();
    Ok(cases
        .into_iter()
        .filter_map(|(id, followed)| answers.get(&id).filter(|a| a.code() != followed).map(|a| (id, *a)))
        .take(limit)
        .collect())
}

// ---------------------------------------------------------------- meetings

/// A meeting on the coordinator's schedule.
#[derive(Debug, Clone)]
pub struct Meeting {
    pub id: String,
    /// YYYY-MM-DD.
    pub meets_on: String,
    /// The last day a case can be listed for it.
    pub list_closes_on: String,
    /// The day research requests for it are to be answered by.
    pub reply_by: String,
    pub attendance: Vec<String>,
    pub confidentiality_agreed: bool,
    pub created_by: String,
    pub created_at_ms: i64,
    pub minuted_by: String,
    pub minuted_at_ms: Option<i64>,
}

const MEETING_COLUMNS: &str = "id, meets_on, list_closes_on, reply_by, attendance, confidentiality_agreed, created_by, created_at_ms, minuted_by, minuted_at_ms";

impl Meeting {
    fn from_row(r: &AnyRow) -> sqlx::Result<Meeting> {
        Ok(Meeting {
            id: r.try_get("id")?,
            meets_on: r.try_get("meets_on")?,
            list_closes_on: r.try_get("list_closes_on")?,
            reply_by: r.try_get("reply_by")?,
            attendance: list(&r.try_get::<String, _>("attendance")?),
            confidentiality_agreed: r.try_get::<i64, _>("confidentiality_agreed")? != 0,
            created_by: r.try_get("created_by")?,
            created_at_ms: r.try_get("created_at_ms")?,
            minuted_by: r.try_get("minuted_by")?,
            minuted_at_ms: r.try_get("minuted_at_ms")?,
        })
    }

    /// Whether a case may still be listed for it at `now` (until the end of the cut-off day).
    pub fn list_open(&self, now: i64) -> bool {
        self.minuted_at_ms.is_none() && chronology::day_ms(&self.list_closes_on).is_some_and(|d| now < d + 86_400_000)
    }

    /// Whether the meeting's day has come at `now`.
    pub fn has_met(&self, now: i64) -> bool {
        chronology::day_ms(&self.meets_on).is_some_and(|d| now >= d)
    }
}

/// Adds a meeting; false when one meets that day already.
pub async fn add_meeting(tx: &mut Tx, m: &Meeting) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO marac_meetings (id, meets_on, list_closes_on, reply_by, created_by, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&m.id)
    .bind(&m.meets_on)
    .bind(&m.list_closes_on)
    .bind(&m.reply_by)
    .bind(&m.created_by)
    .bind(m.created_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn meeting<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, id: &str) -> sqlx::Result<Option<Meeting>> {
    sqlx::query(&format!("SELECT {MEETING_COLUMNS} FROM marac_meetings WHERE id = $1")).bind(id).fetch_optional(e).await?.as_ref().map(Meeting::from_row).transpose()
}

/// Meetings in date order: from `from_day` on (YYYY-MM-DD; "" for all), at most `limit`.
pub async fn meetings(pool: &sqlx::AnyPool, from_day: &str, limit: i64) -> sqlx::Result<Vec<Meeting>> {
    let rows = sqlx::query(&format!("SELECT {MEETING_COLUMNS} FROM marac_meetings WHERE meets_on >= $1 ORDER BY meets_on LIMIT $2")).bind(from_day).bind(limit).fetch_all(pool).await?;
    rows.iter().map(Meeting::from_row).collect()
}

/// A page of meetings in date order after `after` (a YYYY-MM-DD).
pub async fn meetings_page(pool: &sqlx::AnyPool, after: &str, limit: i64) -> sqlx::Result<Vec<Meeting>> {
    let rows = sqlx::query(&format!("SELECT {MEETING_COLUMNS} FROM marac_meetings WHERE {}", runtime::api::Page::clause("meets_on", 1))).bind(after).bind(limit).fetch_all(pool).await?;
    rows.iter().map(Meeting::from_row).collect()
}

/// Meetings held between two days (inclusive, YYYY-MM-DD).
pub async fn meetings_between(pool: &sqlx::AnyPool, from_day: &str, until_day: &str) -> sqlx::Result<Vec<Meeting>> {
    let rows = sqlx::query(&format!("SELECT {MEETING_COLUMNS} FROM marac_meetings WHERE meets_on >= $1 AND meets_on <= $2 ORDER BY meets_on"))
        .bind(from_day)
        .bind(until_day)
        .fetch_all(pool)
        .await?;
    rows.iter().map(Meeting::from_row).collect()
}

pub async fn set_attendance(tx: &mut Tx, id: &str, agencies: &[String], agreed: bool) -> sqlx::Result<()> {
    sqlx::query("UPDATE marac_meetings SET attendance = $1, confidentiality_agreed = $2 WHERE id = $3").bind(agencies.join(",")).bind(i64::from(agreed)).bind(id).execute(&mut **tx).await?;
    Ok(())
}

/// Marks a meeting's minutes sent; false when they were already.
pub async fn minuted(tx: &mut Tx, id: &str, by: &str, now: i64) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE marac_meetings SET minuted_by = $1, minuted_at_ms = $2 WHERE id = $3 AND minuted_at_ms IS NULL").bind(by).bind(now).bind(id).execute(&mut **tx).await?;
    Ok(done.rows_affected() == 1)
}

// ---------------------------------------------------------------- research

/// One research request to one member about one case.
#[derive(Debug, Clone)]
pub struct Research {
    pub request_id: String,
    pub case_id: String,
    pub meeting_id: String,
    pub member: String,
    pub reply_by: String,
    pub due_at_ms: i64,
    /// Sealed.
    pub questions: String,
    pub sent_by: String,
    pub sent_at_ms: i64,
    pub response_id: String,
    pub holds_information: Option<bool>,
    pub responded_at_ms: Option<i64>,
}

const RESEARCH_COLUMNS: &str = "request_id, case_id, meeting_id, member, reply_by, due_at_ms, questions, sent_by, sent_at_ms, response_id, holds_information, responded_at_ms";

impl Research {
    fn from_row(r: &AnyRow) -> sqlx::Result<Research> {
        Ok(Research {
            request_id: r.try_get("request_id")?,
            case_id: r.try_get("case_id")?,
            meeting_id: r.try_get("meeting_id")?,
            member: r.try_get("member")?,
            reply_by: r.try_get("reply_by")?,
            due_at_ms: r.try_get("due_at_ms")?,
            questions: r.try_get("questions")?,
            sent_by: r.try_get("sent_by")?,
            sent_at_ms: r.try_get("sent_at_ms")?,
            response_id: r.try_get("response_id")?,
            holds_information: r.try_get::<Option<i64>, _>("holds_information")?.map(|h| h != 0),
            responded_at_ms: r.try_get("responded_at_ms")?,
        })
    }
}

pub async fn add_research(tx: &mut Tx, r: &Research) -> sqlx::Result<()> {
    sqlx::query(&format!("INSERT INTO marac_research ({RESEARCH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '', NULL, NULL)"))
        .bind(&r.request_id)
        .bind(&r.case_id)
        .bind(&r.meeting_id)
        .bind(&r.member)
        .bind(&r.reply_by)
        .bind(r.due_at_ms)
        .bind(&r.questions)
        .bind(&r.sent_by)
        .bind(r.sent_at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn research_of<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, case_id: &str) -> sqlx::Result<Vec<Research>> {
    let rows = sqlx::query(&format!("SELECT {RESEARCH_COLUMNS} FROM marac_research WHERE case_id = $1 ORDER BY sent_at_ms, member")).bind(case_id).fetch_all(e).await?;
    rows.iter().map(Research::from_row).collect()
}

/// Every research request not answered yet, due soonest first.
pub async fn research_outstanding(pool: &sqlx::AnyPool) -> sqlx::Result<Vec<Research>> {
    let rows = sqlx::query(&format!("SELECT {RESEARCH_COLUMNS} FROM marac_research WHERE response_id = '' ORDER BY due_at_ms, member LIMIT 5000")).fetch_all(pool).await?;
    rows.iter().map(Research::from_row).collect()
}

/// Every research request, answered or not, newest first (at most `limit`).
pub async fn research_all(pool: &sqlx::AnyPool, limit: i64) -> sqlx::Result<Vec<Research>> {
    let rows = sqlx::query(&format!("SELECT {RESEARCH_COLUMNS} FROM marac_research ORDER BY sent_at_ms DESC, member LIMIT $1")).bind(limit).fetch_all(pool).await?;
    rows.iter().map(Research::from_row).collect()
}

/// Records `member`'s answer `response_id` to request `request_id`; false when the request is
/// not one of this member's or was answered already.
pub async fn research_answered(tx: &mut Tx, request_id: &str, member: &str, response_id: &str, holds: bool, now: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE marac_research SET response_id = $1, holds_information = $2, responded_at_ms = $3 WHERE request_id = $4 AND member = $5 AND response_id = ''",
    )
    .bind(response_id)
    .bind(i64::from(holds))
    .bind(now)
    .bind(request_id)
    .bind(member)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

// ---------------------------------------------------------------- hearings

/// What the meeting recorded for a case.
#[derive(Debug, Clone)]
pub struct Hearing {
    pub case_id: String,
    pub meeting_id: String,
    pub outcome: Outcome,
    /// Sealed.
    pub discussion: String,
    /// Sealed.
    pub risks: String,
    pub heard_by: String,
    pub heard_at_ms: i64,
}

pub async fn add_hearing(tx: &mut Tx, h: &Hearing) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO marac_hearings (case_id, meeting_id, outcome, discussion, risks, heard_by, heard_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(&h.case_id)
        .bind(&h.meeting_id)
        .bind(h.outcome.code())
        .bind(&h.discussion)
        .bind(&h.risks)
        .bind(&h.heard_by)
        .bind(h.heard_at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn hearing<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, case_id: &str) -> sqlx::Result<Option<Hearing>> {
    let row = sqlx::query("SELECT case_id, meeting_id, outcome, discussion, risks, heard_by, heard_at_ms FROM marac_hearings WHERE case_id = $1").bind(case_id).fetch_optional(e).await?;
    row.map(|r| {
        Ok(Hearing {
            case_id: r.try_get("case_id")?,
            meeting_id: r.try_get("meeting_id")?,
            outcome: Outcome::parse(&r.try_get::<String, _>("outcome")?).ok_or_else(|| decode_error("outcome"))?,
            discussion: r.try_get("discussion")?,
            risks: r.try_get("risks")?,
            heard_by: r.try_get("heard_by")?,
            heard_at_ms: r.try_get("heard_at_ms")?,
        })
    })
    .transpose()
}

// ---------------------------------------------------------------- actions

/// An action agreed at a meeting.
#[derive(Debug, Clone)]
pub struct Action {
    pub action_id: String,
    pub owner_agency: String,
    pub status: ActionStatus,
    /// Empty for an action recorded before the cycle, or outside a hearing.
    pub case_id: String,
    pub subject_ref: String,
    pub meeting_on: String,
    /// Sealed.
    pub description: String,
    /// YYYY-MM-DD, or empty for an action from before the cycle.
    pub due_on: String,
    /// The `marac.action` sent to the owner.
    pub envelope_id: String,
    /// The owner's last note, sealed.
    pub note: String,
    pub agreed_by: String,
    pub agreed_at_ms: i64,
    pub updated_at_ms: i64,
}

const ACTION_COLUMNS: &str = "action_id, owner_agency, status, case_id, subject_ref, meeting_on, description, due_on, envelope_id, note, agreed_by, agreed_at_ms, updated_at_ms";

impl Action {
    fn from_row(r: &AnyRow) -> sqlx::Result<Action> {
        Ok(Action {
            action_id: r.try_get("action_id")?,
            owner_agency: r.try_get("owner_agency")?,
            status: ActionStatus::parse(&r.try_get::<String, _>("status")?).ok_or_else(|| decode_error("status"))?,
            case_id: r.try_get("case_id")?,
            subject_ref: r.try_get("subject_ref")?,
            meeting_on: r.try_get("meeting_on")?,
            description: r.try_get("description")?,
            due_on: r.try_get("due_on")?,
            envelope_id: r.try_get("envelope_id")?,
            note: r.try_get("note")?,
            agreed_by: r.try_get("agreed_by")?,
            agreed_at_ms: r.try_get("agreed_at_ms")?,
            updated_at_ms: r.try_get("updated_at_ms")?,
        })
    }

    /// The end of its due day (when it becomes overdue), if it has one.
    pub fn due_at_ms(&self) -> Option<i64> {
        chronology::day_ms(&self.due_on).map(|d| d + 86_400_000)
    }

    /// Open (not done) and past its due day at `now`.
    pub fn overdue(&self, now: i64) -> bool {
        self.status != ActionStatus::Done && self.due_at_ms().is_some_and(|d| now >= d)
    }
}

pub async fn add_action(tx: &mut Tx, a: &Action) -> sqlx::Result<()> {
    sqlx::query(&format!("INSERT INTO marac_actions ({ACTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"))
        .bind(&a.action_id)
        .bind(&a.owner_agency)
        .bind(a.status.code())
        .bind(&a.case_id)
        .bind(&a.subject_ref)
        .bind(&a.meeting_on)
        .bind(&a.description)
        .bind(&a.due_on)
        .bind(&a.envelope_id)
        .bind(&a.note)
        .bind(&a.agreed_by)
        .bind(a.agreed_at_ms)
        .bind(a.updated_at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn action<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, id: &str) -> sqlx::Result<Option<Action>> {
    sqlx::query(&format!("SELECT {ACTION_COLUMNS} FROM marac_actions WHERE action_id = $1")).bind(id).fetch_optional(e).await?.as_ref().map(Action::from_row).transpose()
}

pub async fn actions_of<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, case_id: &str) -> sqlx::Result<Vec<Action>> {
    let rows = sqlx::query(&format!("SELECT {ACTION_COLUMNS} FROM marac_actions WHERE case_id = $1 ORDER BY agreed_at_ms, action_id")).bind(case_id).fetch_all(e).await?;
    rows.iter().map(Action::from_row).collect()
}

/// The actions of every case of a person, oldest first.
pub async fn actions_of_subject<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, subject_ref: &str) -> sqlx::Result<Vec<Action>> {
    let rows = sqlx::query(&format!("SELECT {ACTION_COLUMNS} FROM marac_actions WHERE subject_ref = $1 ORDER BY agreed_at_ms, action_id")).bind(subject_ref).fetch_all(e).await?;
    rows.iter().map(Action::from_row).collect()
}

/// Actions not done with a due date, due soonest first.
pub async fn actions_open(pool: &sqlx::AnyPool) -> sqlx::Result<Vec<Action>> {
    let rows = sqlx::query(&format!("SELECT {ACTION_COLUMNS} FROM marac_actions WHERE status <> $1 AND due_on <> '' ORDER BY due_on, action_id LIMIT 5000")).bind(ActionStatus::Done.code()).fetch_all(pool).await?;
    rows.iter().map(Action::from_row).collect()
}

/// A page of actions in id order after `after`.
pub async fn actions_page(pool: &sqlx::AnyPool, after: &str, limit: i64) -> sqlx::Result<Vec<Action>> {
    let rows = sqlx::query(&format!("SELECT {ACTION_COLUMNS} FROM marac_actions WHERE {}", runtime::api::Page::clause("action_id", 1))).bind(after).bind(limit).fetch_all(pool).await?;
    rows.iter().map(Action::from_row).collect()
}

/// The owner's update of an action: its status and note (sealed). None when the action is not
/// that agency's.
pub async fn action_updated(tx: &mut Tx, id: &str, owner: &str, status: ActionStatus, note: &str, now: i64) -> sqlx::Result<Option<Action>> {
    let done = sqlx::query("UPDATE marac_actions SET status = $1, note = $2, updated_at_ms = $3 WHERE action_id = $4 AND owner_agency = $5")
        .bind(status.code())
        .bind(note)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    action(&mut **tx, id).await
}

/// A case as the API gives it: ids, codes, times and the criteria with their evidence (no
/// free text).
pub fn case_json(c: &Case) -> Value {
    let assessment = c.assessment();
    json!({
        "id": c.id,
        "envelope_id": c.id,
        "subject_ref": c.subject_ref,
        "referrer": c.referrer,
        "case_ref": c.case_ref,
        "marac_ref": c.marac_ref,
        "risk": c.risk,
        "status": c.status.code(),
        "received_at_ms": c.received_at_ms,
        "criteria": assessment.codes(),
        "meets_criteria": assessment.meets(),
        "repeat": assessment.has(Criterion::Repeat),
        "assessment": assessment.json(),
        "claimed": c.claimed.iter().map(|x| x.code()).collect::<Vec<_>>(),
        "duplicate_of": c.class.duplicate_of,
        "repeat_of": c.class.repeat_of.as_ref().map(|p| p.case_id.clone()),
        "previous_marac_on": c.class.repeat_of.as_ref().map(|p| chronology::date_of(p.marac_at_ms)),
        "incidents_12m": c.class.incidents_12m,
        "screening": c.screening.map(|d| d.code()),
        "meeting_id": c.meeting_id,
        "listed_at_ms": c.listed_at_ms,
        "close_reason": c.close_reason.map(|r| r.code()),
        "revoked": c.revoked_at_ms.is_some(),
        "revoked_at_ms": c.revoked_at_ms,
        "updated_at_ms": c.updated_at_ms,
        "allowed_steps": crate::case::allowed(c.status).iter().map(|s| s.code()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use runtime::Agency as _;

    use super::{Change, on_meeting};
    use crate::case::Status;

    /// Two cases listed on one meeting within one millisecond stay in the order they were listed,
    /// the later envelope id first here, and each keeps its own listing time.
    #[tokio::test]
    async fn cases_listed_in_one_millisecond_keep_their_order_on_the_agenda() {
        let dir = tempfile::tempdir().unwrap();
        let pool = runtime::db::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display())).await.unwrap();
        runtime::db::migrate(&pool, crate::Marac.migrations()).await.unwrap();
        for id in ["b-later", "a-earlier"] {
            sqlx::query("INSERT INTO marac_cases (envelope_id, subject_ref, referrer, criteria, repeat_referral, meets_criteria, status, received_at_ms) VALUES ($1, 's', 'r', '', 0, 1, $2, 1)")
                .bind(id)
                .bind(Status::ScreenedIn.code())
                .execute(&pool)
                .await
                .unwrap();
        }
        let now = 1_000;
        let mut tx = pool.begin().await.unwrap();
        for id in ["b-later", "a-earlier"] {
            assert!(super::change(&mut tx, id, Status::ScreenedIn, Status::Listed, Change::Listed { meeting_id: "m1" }, now).await.unwrap());
        }
        tx.commit().await.unwrap();
        let agenda: Vec<(String, Option<i64>)> = on_meeting(&pool, "m1").await.unwrap().into_iter().map(|c| (c.id, c.listed_at_ms)).collect();
        assert_eq!(agenda, [("b-later".to_owned(), Some(now)), ("a-earlier".to_owned(), Some(now + 1))]);
    }
}
