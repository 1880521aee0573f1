//! The pathway's tables, and the one place their columns are written: cases, the steps taken
//! on them (who and when), enforcement steps with housing providers, and the engagement
//! updates sent. Codes and ids in clear; notes, grounds and the reason summary sealed to the
//! agency's own key before they get here.

use runtime::Tx;
use serde_json::{Value, json};
use sqlx::{Row as _, any::AnyRow};

use crate::case::{Reason, Status, Verdict};

/// A pathway case: the referral that opened it, where it is, and about whom.
#[derive(Debug, Clone)]
pub struct Case {
    /// The envelope id of the referral.
    pub id: String,
    /// The survivor's link token for this pathway (never her subject ref).
    pub subject_ref: String,
    /// The referrer's case reference.
    pub case_ref: String,
    pub referrer: String,
    /// The pathway asked for, as the proto names it (`PATHWAY_HIGH_HARM`).
    pub pathway: String,
    /// The agency the referral named to report engagement to; '' when it named none.
    pub report_engagement_to: String,
    pub status: Status,
    /// The risk the referral proved (`high`, `medium`, `standard`, or '').
    pub risk: String,
    pub reasons: Vec<Reason>,
    /// The reason summary, sealed.
    pub sealed_summary: String,
    /// The pathway's own pseudonym of him; '' when the referral gave no name and date of birth.
    pub perpetrator_ref: String,
    pub received_at_ms: i64,
    pub updated_at_ms: i64,
}

const COLUMNS: &str = "envelope_id, subject_ref, case_ref, referrer, pathway, report_engagement_to, status, risk, reasons, reason_summary, perpetrator_ref, received_at_ms, updated_at_ms";

fn decode_error(column: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.into(), source: format!("not a code this service knows in {column}").into() }
}

impl Case {
    fn from_row(r: &AnyRow) -> sqlx::Result<Case> {
        let status = Status::parse(&r.try_get::<String, _>("status")?).ok_or_else(|| decode_error("status"))?;
        let reasons = r.try_get::<String, _>("reasons")?;
        let reasons = reasons.split(',').filter(|c| !c.is_empty()).map(|c| Reason::parse(c).ok_or_else(|| decode_error("reasons"))).collect::<Result<_, _>>()?;
        Ok(Case {
            id: r.try_get("envelope_id")?,
            subject_ref: r.try_get("subject_ref")?,
            case_ref: r.try_get("case_ref")?,
            referrer: r.try_get("referrer")?,
            pathway: r.try_get("pathway")?,
            report_engagement_to: r.try_get("report_engagement_to")?,
            status,
            risk: r.try_get("risk")?,
            reasons,
            sealed_summary: r.try_get("reason_summary")?,
            perpetrator_ref: r.try_get("perpetrator_ref")?,
            received_at_ms: r.try_get("received_at_ms")?,
            updated_at_ms: r.try_get("updated_at_ms")?,
        })
    }

    /// The case as the API gives it (ids and codes; the summary only when given, opened).
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "envelope_id": self.id,
            "subject_ref": self.subject_ref,
            "case_ref": self.case_ref,
            "referrer": self.referrer,
            "pathway": self.pathway,
            "report_engagement_to": self.report_engagement_to,
            "status": self.status.code(),
            "risk": self.risk,
            "reasons": self.reasons.iter().map(|r| r.code()).collect::<Vec<_>>(),
            "perpetrator_ref": self.perpetrator_ref,
            "received_at_ms": self.received_at_ms,
            "updated_at_ms": self.updated_at_ms,
            "allowed_steps": crate::case::allowed(self.status).iter().map(|s| s.code()).collect::<Vec<_>>(),
        })
    }
}

/// Opens a case; false when it is open already (a redelivered referral).
pub async fn open(tx: &mut Tx, c: &Case) -> sqlx::Result<bool> {
    let done = sqlx::query(&format!("INSERT INTO pathway_cases ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING"))
        .bind(&c.id)
        .bind(&c.subject_ref)
        .bind(&c.case_ref)
        .bind(&c.referrer)
        .bind(&c.pathway)
        .bind(&c.report_engagement_to)
        .bind(c.status.code())
        .bind(&c.risk)
        .bind(c.reasons.iter().map(|r| r.code()).collect::<Vec<_>>().join(","))
        .bind(&c.sealed_summary)
        .bind(&c.perpetrator_ref)
        .bind(c.received_at_ms)
        .bind(c.updated_at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// One case, if there is one of that id.
pub async fn get<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, id: &str) -> sqlx::Result<Option<Case>> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM pathway_cases WHERE envelope_id = $1")).bind(id).fetch_optional(e).await?.as_ref().map(Case::from_row).transpose()
}

/// A page of cases in id order after `after`, of one status when given.
pub async fn page(pool: &sqlx::AnyPool, status: Option<Status>, after: &str, limit: i64) -> sqlx::Result<Vec<Case>> {
    let rows = match status {
        Some(s) => {
            sqlx::query(&format!("SELECT {COLUMNS} FROM pathway_cases WHERE status = $1 AND {}", runtime::api::Page::clause("envelope_id", 2)))
                .bind(s.code())
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
        None => sqlx::query(&format!("SELECT {COLUMNS} FROM pathway_cases WHERE {}", runtime::api::Page::clause("envelope_id", 1))).bind(after).bind(limit).fetch_all(pool).await?,
    };
    rows.iter().map(Case::from_row).collect()
}

/// The caseload a page shows: open cases (or those of one status), disengaged first, then
/// newest first; completed ones last.
pub async fn caseload(pool: &sqlx::AnyPool, status: Option<Status>, open_only: bool, limit: i64) -> sqlx::Result<Vec<Case>> {
    // The codes are the enum's own (static identifiers), written into the ordering.
    let (disengaged, completed) = (Status::Disengaged.code(), Status::Completed.code());
    let order = format!("ORDER BY CASE status WHEN '{disengaged}' THEN 0 WHEN '{completed}' THEN 2 ELSE 1 END, received_at_ms DESC, envelope_id");
    let rows = match (status, open_only) {
        (Some(s), _) => sqlx::query(&format!("SELECT {COLUMNS} FROM pathway_cases WHERE status = $1 {order} LIMIT $2")).bind(s.code()).bind(limit).fetch_all(pool).await?,
        (None, true) => sqlx::query(&format!("SELECT {COLUMNS} FROM pathway_cases WHERE status <> $1 {order} LIMIT $2")).bind(completed).bind(limit).fetch_all(pool).await?,
        (None, false) => sqlx::query(&format!("SELECT {COLUMNS} FROM pathway_cases {order} LIMIT $1")).bind(limit).fetch_all(pool).await?,
    };
    rows.iter().map(Case::from_row).collect()
}

/// Every case of one man at this pathway (by its pseudonym of him), oldest first.
pub async fn of_perpetrator(pool: &sqlx::AnyPool, perpetrator_ref: &str) -> sqlx::Result<Vec<Case>> {
    if perpetrator_ref.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM pathway_cases WHERE perpetrator_ref = $1 ORDER BY received_at_ms, envelope_id LIMIT 500"))
        .bind(perpetrator_ref)
        .fetch_all(pool)
        .await?;
    rows.iter().map(Case::from_row).collect()
}

/// How many cases of each man in `refs` this pathway holds (for the caseload's repeat marker).
pub async fn counts(pool: &sqlx::AnyPool, refs: &[&str]) -> sqlx::Result<std::collections::HashMap<String, i64>> {
    let refs: Vec<&str> = refs.iter().copied().filter(|r| !r.is_empty()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    if refs.is_empty() {
        return Ok(Default::default());
    }
    let sql = format!(
        "SELECT perpetrator_ref, COUNT(*) AS n FROM pathway_cases WHERE perpetrator_ref IN ({}) GROUP BY perpetrator_ref",
        runtime::db::numbered(1, refs.len())
    );
    let mut q = sqlx::query(&sql);
    for r in &refs {
        q = q.bind(*r);
    }
    q.fetch_all(pool).await?.iter().map(|r| Ok((r.try_get("perpetrator_ref")?, r.try_get("n")?))).collect()
}

/// Whether a case about this survivor (by her link token) named `agency` to report engagement to.
pub async fn named_for(tx: &mut Tx, subject_ref: &str, agency: &str) -> sqlx::Result<bool> {
    if subject_ref.is_empty() || agency.is_empty() {
        return Ok(false);
    }
    let row = sqlx::query("SELECT envelope_id FROM pathway_cases WHERE subject_ref = $1 AND report_engagement_to = $2 LIMIT 1")
        .bind(subject_ref)
        .bind(agency)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}

/// Moves case `id` from `from` to `to` at `now`; false when it was no longer in `from`.
pub async fn change(tx: &mut Tx, id: &str, from: Status, to: Status, now: i64) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE pathway_cases SET status = $1, updated_at_ms = $2 WHERE envelope_id = $3 AND status = $4")
        .bind(to.code())
        .bind(now)
        .bind(id)
        .bind(from.code())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// One step taken on a case: who and when, its note sealed.
#[derive(Debug, Clone)]
pub struct StepRow {
    pub id: String,
    pub case_id: String,
    pub step: String,
    pub from_status: String,
    pub to_status: String,
    pub staff_id: String,
    pub at_ms: i64,
    pub sealed_note: String,
}

pub async fn add_step(tx: &mut Tx, s: &StepRow) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO pathway_steps (id, case_id, step, from_status, to_status, staff_id, at_ms, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&s.id)
        .bind(&s.case_id)
        .bind(&s.step)
        .bind(&s.from_status)
        .bind(&s.to_status)
        .bind(&s.staff_id)
        .bind(s.at_ms)
        .bind(&s.sealed_note)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A case's steps, oldest first.
pub async fn steps<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, case_id: &str) -> sqlx::Result<Vec<StepRow>> {
    let rows = sqlx::query("SELECT id, case_id, step, from_status, to_status, staff_id, at_ms, note FROM pathway_steps WHERE case_id = $1 ORDER BY at_ms, id")
        .bind(case_id)
        .fetch_all(e)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(StepRow {
                id: r.try_get("id")?,
                case_id: r.try_get("case_id")?,
                step: r.try_get("step")?,
                from_status: r.try_get("from_status")?,
                to_status: r.try_get("to_status")?,
                staff_id: r.try_get("staff_id")?,
                at_ms: r.try_get("at_ms")?,
                sealed_note: r.try_get("note")?,
            })
        })
        .collect()
}

/// One enforcement step with a housing provider, its grounds sealed.
#[derive(Debug, Clone)]
pub struct Enforcement {
    pub id: String,
    pub case_id: String,
    pub action: String,
    pub housing_provider: String,
    pub survivor_wishes: String,
    pub sealed_grounds: String,
    pub requested_by: String,
    pub requested_at_ms: i64,
    /// The request sent to the provider.
    pub envelope_id: String,
    /// The provider's answer (accepted, declined, closed), when it came.
    pub answer: String,
    pub answered_by: String,
    pub answered_at_ms: Option<i64>,
}

const ENFORCEMENT: &str = "id, case_id, action, housing_provider, survivor_wishes, grounds, requested_by, requested_at_ms, envelope_id, answer, answered_by, answered_at_ms";

impl Enforcement {
    fn from_row(r: &AnyRow) -> sqlx::Result<Enforcement> {
        Ok(Enforcement {
            id: r.try_get("id")?,
            case_id: r.try_get("case_id")?,
            action: r.try_get("action")?,
            housing_provider: r.try_get("housing_provider")?,
            survivor_wishes: r.try_get("survivor_wishes")?,
            sealed_grounds: r.try_get("grounds")?,
            requested_by: r.try_get("requested_by")?,
            requested_at_ms: r.try_get("requested_at_ms")?,
            envelope_id: r.try_get("envelope_id")?,
            answer: r.try_get("answer")?,
            answered_by: r.try_get("answered_by")?,
            answered_at_ms: r.try_get("answered_at_ms")?,
        })
    }
}

pub async fn add_enforcement(tx: &mut Tx, e: &Enforcement) -> sqlx::Result<()> {
    sqlx::query(&format!("INSERT INTO pathway_enforcement ({ENFORCEMENT}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"))
        .bind(&e.id)
        .bind(&e.case_id)
        .bind(&e.action)
        .bind(&e.housing_provider)
        .bind(&e.survivor_wishes)
        .bind(&e.sealed_grounds)
        .bind(&e.requested_by)
        .bind(e.requested_at_ms)
        .bind(&e.envelope_id)
        .bind(&e.answer)
        .bind(&e.answered_by)
        .bind(e.answered_at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A case's enforcement steps, oldest first.
pub async fn enforcement<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, case_id: &str) -> sqlx::Result<Vec<Enforcement>> {
    let rows = sqlx::query(&format!("SELECT {ENFORCEMENT} FROM pathway_enforcement WHERE case_id = $1 ORDER BY requested_at_ms, id")).bind(case_id).fetch_all(e).await?;
    rows.iter().map(Enforcement::from_row).collect()
}

/// The enforcement step whose request was `envelope_id`, sent to `provider`.
pub async fn enforcement_of(tx: &mut Tx, envelope_id: &str, provider: &str) -> sqlx::Result<Option<Enforcement>> {
    let row = sqlx::query(&format!("SELECT {ENFORCEMENT} FROM pathway_enforcement WHERE envelope_id = $1 AND housing_provider = $2"))
        .bind(envelope_id)
        .bind(provider)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(Enforcement::from_row).transpose()
}

/// Records the provider's answer to an enforcement request.
pub async fn answer_enforcement(tx: &mut Tx, id: &str, answer: &str, by: &str, at_ms: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE pathway_enforcement SET answer = $1, answered_by = $2, answered_at_ms = $3 WHERE id = $4")
        .bind(answer)
        .bind(by)
        .bind(at_ms)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An engagement update this service sent about a case.
#[derive(Debug, Clone)]
pub struct Update {
    pub envelope_id: String,
    pub case_id: String,
    /// As the proto names it (`ENGAGEMENT_DISENGAGED`).
    pub engagement: String,
    pub recipient: String,
    /// `automatic` (sent by the service on a change of state) or `progress` (staff sent it).
    pub how: String,
    pub sent_by: String,
    pub sent_at_ms: i64,
}

pub async fn add_update(tx: &mut Tx, u: &Update) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO pathway_updates (envelope_id, case_id, engagement, recipient, how, sent_by, sent_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(&u.envelope_id)
        .bind(&u.case_id)
        .bind(&u.engagement)
        .bind(&u.recipient)
        .bind(&u.how)
        .bind(&u.sent_by)
        .bind(u.sent_at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A case's engagement updates, oldest first.
pub async fn updates<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, case_id: &str) -> sqlx::Result<Vec<Update>> {
    let rows = sqlx::query("SELECT envelope_id, case_id, engagement, recipient, how, sent_by, sent_at_ms FROM pathway_updates WHERE case_id = $1 ORDER BY sent_at_ms, envelope_id")
        .bind(case_id)
        .fetch_all(e)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Update {
                envelope_id: r.try_get("envelope_id")?,
                case_id: r.try_get("case_id")?,
                engagement: r.try_get("engagement")?,
                recipient: r.try_get("recipient")?,
                how: r.try_get("how")?,
                sent_by: r.try_get("sent_by")?,
                sent_at_ms: r.try_get("sent_at_ms")?,
            })
        })
        .collect()
}

/// Notes that an engagement update this service sent was checked, and what the check found.
pub async fn checked(tx: &mut Tx, envelope_id: &str, verdict: Verdict, now: i64) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO pathway_sends_checked (envelope_id, verdict, checked_at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(envelope_id)
        .bind(verdict.code())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// How far before the point examined last each pass starts again: a send whose transaction
/// committed after a later one's (so with an earlier creation time than rows examined
/// already) is still seen, if it committed within this long.
pub const LATE_COMMIT_MS: i64 = 10 * 60 * 1000;

/// Engagement updates sent (by any route) and not checked yet, oldest first, at most `limit`;
/// and the creation time before which every update has now been examined (to give
/// [`scanned`] once they are checked), None when nothing was found to examine. The `sent`
/// table is the runtime's, read through [`runtime::sent::of_kind_after`]; what was checked
/// is this crate's own table.
pub async fn unchecked(pool: &sqlx::AnyPool, limit: usize) -> sqlx::Result<(Vec<runtime::sent::Sent>, Option<i64>)> {
    let scanned: Option<i64> = sqlx::query_scalar("SELECT scanned_to_ms FROM pathway_sends_scanned WHERE id = 1").fetch_optional(pool).await?;
    let (mut after_ms, mut after_id) = (scanned.map_or(0, |ms| ms.saturating_sub(LATE_COMMIT_MS)), String::new());
    let mut found = Vec::new();
    loop {
        let page = runtime::sent::of_kind_after(pool, isp::Kind::PerpetratorEngagementUpdate, after_ms, &after_id).await?;
        let Some(last) = page.last() else { return Ok((found, scanned.map(|_| after_ms))) };
        (after_ms, after_id) = (last.created_at_ms, last.envelope_id.clone());
        let full = page.len() as i64 >= runtime::sent::MAX_ROWS;
        let checked = checked_among(pool, page.iter().map(|s| s.envelope_id.as_str())).await?;
        for sent in page.into_iter().filter(|s| !checked.contains(&s.envelope_id)) {
            let at = sent.created_at_ms;
            found.push(sent);
            if found.len() == limit {
                return Ok((found, Some(at)));
            }
        }
        if !full {
            return Ok((found, Some(after_ms)));
        }
    }
}

/// Which of `ids` this service has checked already.
async fn checked_among<'a>(pool: &sqlx::AnyPool, ids: impl Iterator<Item = &'a str>) -> sqlx::Result<std::collections::HashSet<String>> {
    let ids: Vec<&str> = ids.collect();
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let sql = format!("SELECT envelope_id FROM pathway_sends_checked WHERE envelope_id IN ({})", runtime::db::numbered(1, ids.len()));
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for id in ids {
        query = query.bind(id);
    }
    Ok(query.fetch_all(pool).await?.into_iter().collect())
}

/// Notes that every engagement update created before `to_ms` has been examined (a pass of
/// [`unchecked`] gave it, and what it found is checked): the next pass starts from there,
/// less [`LATE_COMMIT_MS`]. Never moves back.
pub async fn scanned(pool: &sqlx::AnyPool, to_ms: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO pathway_sends_scanned (id, scanned_to_ms) VALUES (1, $1) \
         ON CONFLICT (id) DO UPDATE SET scanned_to_ms = excluded.scanned_to_ms WHERE excluded.scanned_to_ms > pathway_sends_scanned.scanned_to_ms",
    )
    .bind(to_ms)
    .execute(pool)
    .await?;
    Ok(())
}
