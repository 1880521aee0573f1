//! The IDVA's tables: the one place that writes their column lists. A case is known by the
//! envelope id of the referral that opened it. Every change of a case's status is made only
//! from the status it was read in (`WHERE status = $from`), so two staff acting on one case
//! at once cannot both move it: the second is told the case changed meanwhile.
//! Free text arrives here sealed already and leaves sealed.

use runtime::Tx;
use serde_json::{Value, json};
use sqlx::{Row as _, any::AnyRow};

use crate::case::{Outcome, Priority, Status, Step};

/// One case, as stored.
#[derive(Debug, Clone)]
pub struct Case {
    /// The envelope id of the referral that opened it.
    pub id: String,
    pub subject_ref: String,
    /// The referrer's case reference.
    pub case_ref: String,
    /// The agency that referred.
    pub referrer: String,
    pub risk: String,
    pub status: Status,
    pub priority: Option<Priority>,
    pub triaged_by: String,
    pub triaged_at_ms: Option<i64>,
    pub received_at_ms: i64,
    /// When the referral is due to be reviewed (the policy's acknowledgement time).
    pub triage_due_ms: i64,
    /// When first contact with the survivor is due to have been attempted.
    pub contact_due_ms: i64,
    pub first_attempt_at_ms: Option<i64>,
    pub outcome: Option<Outcome>,
    pub closed_by: String,
    pub closed_at_ms: Option<i64>,
    /// The consent record the referral relied on (none when shared without consent).
    pub consent_id: String,
    pub consent_recorded_by: String,
    /// When this service saw that consent withdrawn.
    pub consent_withdrawn_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

const COLUMNS: &str = "envelope_id, subject_ref, case_ref, referrer, risk, status, priority, triaged_by, triaged_at_ms, received_at_ms, triage_due_ms, \
    contact_due_ms, first_attempt_at_ms, outcome, closed_by, closed_at_ms, consent_id, consent_recorded_by, consent_withdrawn_at_ms, updated_at_ms";

fn decode_error(column: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.into(), source: format!("not a code this service knows in {column}").into() }
}

impl Case {
    fn from_row(r: &AnyRow) -> sqlx::Result<Case> {
        let code = |column: &str| r.try_get::<String, _>(column);
        let status = Status::parse(&code("status")?).ok_or_else(|| decode_error("status"))?;
        let priority = match code("priority")?.as_str() {
            "" => None,
            p => Some(Priority::parse(p).ok_or_else(|| decode_error("priority"))?),
        };
        let outcome = match code("outcome")?.as_str() {
            "" => None,
            o => Some(Outcome::parse(o).ok_or_else(|| decode_error("outcome"))?),
        };
        Ok(Case {
            id: r.try_get("envelope_id")?,
            subject_ref: r.try_get("subject_ref")?,
            case_ref: r.try_get("case_ref")?,
            referrer: r.try_get("referrer")?,
            risk: r.try_get("risk")?,
            status,
            priority,
            triaged_by: r.try_get("triaged_by")?,
            triaged_at_ms: r.try_get("triaged_at_ms")?,
            received_at_ms: r.try_get("received_at_ms")?,
            triage_due_ms: r.try_get("triage_due_ms")?,
            contact_due_ms: r.try_get("contact_due_ms")?,
            first_attempt_at_ms: r.try_get("first_attempt_at_ms")?,
            outcome,
            closed_by: r.try_get("closed_by")?,
            closed_at_ms: r.try_get("closed_at_ms")?,
            consent_id: r.try_get("consent_id")?,
            consent_recorded_by: r.try_get("consent_recorded_by")?,
            consent_withdrawn_at_ms: r.try_get("consent_withdrawn_at_ms")?,
            updated_at_ms: r.try_get("updated_at_ms")?,
        })
    }

    /// Where first contact stands at `now`: `met` (an attempt was made), `cancelled` (closed
    /// without one), `overdue`, or `due`.
    pub fn contact(&self, now: i64) -> &'static str {
        match (self.first_attempt_at_ms, self.status) {
            (Some(_), _) => "met",
            (None, Status::Closed) => "cancelled",
            (None, _) if now >= self.contact_due_ms => "overdue",
            _ => "due",
        }
    }

    /// The case as the API gives it (ids and codes only: no sealed text).
    pub fn json(&self, now: i64) -> Value {
        json!({
            "id": self.id,
            "envelope_id": self.id,
            "subject_ref": self.subject_ref,
            "case_ref": self.case_ref,
            "referrer": self.referrer,
            "risk": self.risk,
            "status": self.status.code(),
            "priority": self.priority.map(Priority::code),
            "triaged_by": self.triaged_by,
            "triaged_at_ms": self.triaged_at_ms,
            "received_at_ms": self.received_at_ms,
            "triage_due_ms": self.triage_due_ms,
            "contact_due_ms": self.contact_due_ms,
            "first_attempt_at_ms": self.first_attempt_at_ms,
            "contact": self.contact(now),
            "outcome": self.outcome.map(Outcome::code),
            "closed_by": self.closed_by,
            "closed_at_ms": self.closed_at_ms,
            "consent_id": self.consent_id,
            "consent_recorded_by": self.consent_recorded_by,
            "consent_withdrawn": self.consent_withdrawn_at_ms.is_some(),
            "consent_withdrawn_at_ms": self.consent_withdrawn_at_ms,
            "updated_at_ms": self.updated_at_ms,
            "allowed_steps": crate::case::allowed(self.status).iter().map(|s| s.code()).collect::<Vec<_>>(),
        })
    }
}

/// What a received referral opens.
#[derive(Debug, Clone)]
pub struct NewCase<'a> {
    pub id: &'a str,
    pub subject_ref: &'a str,
    pub case_ref: &'a str,
    pub referrer: &'a str,
    pub risk: &'a str,
    pub consent_id: &'a str,
    pub consent_recorded_by: &'a str,
    pub received_at_ms: i64,
    pub triage_due_ms: i64,
    pub contact_due_ms: i64,
}

/// Opens a case; false when it is open already (a redelivered referral).
pub async fn open(tx: &mut Tx, c: &NewCase<'_>) -> sqlx::Result<bool> {
    Ok(!open_many(tx, std::slice::from_ref(c)).await?.is_empty())
}

/// Opens cases (of referrals stored together) in one statement per
/// [`runtime::db::ROWS_PER_INSERT`]; the ids of those opened, leaving out any open already.
pub async fn open_many(tx: &mut Tx, cases: &[NewCase<'_>]) -> sqlx::Result<std::collections::HashSet<String>> {
    let sqlite = runtime::db::on_sqlite(tx);
    let mut opened = std::collections::HashSet::with_capacity(cases.len());
    for chunk in cases.chunks(runtime::db::ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO idva_cases (envelope_id, subject_ref, case_ref, referrer, risk, status, triage_due_ms, received_at_ms, contact_due_ms, \
             consent_id, consent_recorded_by, updated_at_ms) VALUES {} ON CONFLICT DO NOTHING RETURNING envelope_id",
            runtime::db::placeholders(sqlite, chunk.len(), 12)
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for c in chunk {
            q = q
                .bind(c.id)
                .bind(c.subject_ref)
                .bind(c.case_ref)
                .bind(c.referrer)
                .bind(c.risk)
                .bind(Status::AwaitingTriage.code())
                .bind(c.triage_due_ms)
                .bind(c.received_at_ms)
                .bind(c.contact_due_ms)
                .bind(c.consent_id)
                .bind(c.consent_recorded_by)
                .bind(c.received_at_ms);
        }
        opened.extend(q.fetch_all(&mut **tx).await?);
    }
    Ok(opened)
}

/// One case, if there is one of that id.
pub async fn get<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, id: &str) -> sqlx::Result<Option<Case>> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM idva_cases WHERE envelope_id = $1")).bind(id).fetch_optional(e).await?.as_ref().map(Case::from_row).transpose()
}

/// A page of cases in id order after `after`, of one status when given.
pub async fn page(pool: &sqlx::AnyPool, status: Option<Status>, after: &str, limit: i64) -> sqlx::Result<Vec<Case>> {
    let rows = match status {
        Some(s) => {
            sqlx::query(&format!("SELECT {COLUMNS} FROM idva_cases WHERE status = $1 AND {}", runtime::api::Page::clause("envelope_id", 2)))
                .bind(s.code())
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
        None => sqlx::query(&format!("SELECT {COLUMNS} FROM idva_cases WHERE {}", runtime::api::Page::clause("envelope_id", 1))).bind(after).bind(limit).fetch_all(pool).await?,
    };
    rows.iter().map(Case::from_row).collect()
}

/// The caseload a page shows: open cases (or those of one status), first contact due
/// soonest first, then closed ones newest first.
pub async fn caseload(pool: &sqlx::AnyPool, status: Option<Status>, open_only: bool, limit: i64) -> sqlx::Result<Vec<Case>> {
    // The code is the enum's own (a static identifier), written into the ordering.
    let closed = Status::Closed.code();
    let order = format!("ORDER BY CASE WHEN status = '{closed}' THEN 1 ELSE 0 END, CASE WHEN status = '{closed}' THEN -closed_at_ms ELSE contact_due_ms END, envelope_id");
    let rows = match (status, open_only) {
        (Some(s), _) => sqlx::query(&format!("SELECT {COLUMNS} FROM idva_cases WHERE status = $1 {order} LIMIT $2")).bind(s.code()).bind(limit).fetch_all(pool).await?,
        (None, true) => sqlx::query(&format!("SELECT {COLUMNS} FROM idva_cases WHERE status <> $1 {order} LIMIT $2")).bind(closed).bind(limit).fetch_all(pool).await?,
        (None, false) => sqlx::query(&format!("SELECT {COLUMNS} FROM idva_cases {order} LIMIT $1")).bind(limit).fetch_all(pool).await?,
    };
    rows.iter().map(Case::from_row).collect()
}

/// What a status change writes besides the status.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    Triaged { priority: Priority, by: &'a str },
    /// A contact attempt: the first one's time is kept.
    Attempted,
    Moved,
    Closed { outcome: Outcome, by: &'a str },
}

/// Moves case `id` from `from` to `to` at `now`; false when it was no longer in `from`.
pub async fn change(tx: &mut Tx, id: &str, from: Status, to: Status, change: Change<'_>, now: i64) -> sqlx::Result<bool> {
    const MOVE: &str = "UPDATE idva_cases SET status = $1, updated_at_ms = $4";
    const WHERE: &str = "WHERE envelope_id = $2 AND status = $3";
    let q = match change {
        Change::Triaged { .. } => format!("{MOVE}, triaged_at_ms = $4, priority = $5, triaged_by = $6 {WHERE}"),
        Change::Attempted => format!("{MOVE}, first_attempt_at_ms = COALESCE(first_attempt_at_ms, $4) {WHERE}"),
        Change::Moved => format!("{MOVE} {WHERE}"),
        Change::Closed { .. } => format!("{MOVE}, closed_at_ms = $4, outcome = $5, closed_by = $6 {WHERE}"),
    };
    let mut q = sqlx::query(&q).bind(to.code()).bind(id).bind(from.code()).bind(now);
    match change {
        Change::Triaged { priority, by } => q = q.bind(priority.code()).bind(by),
        Change::Closed { outcome, by } => q = q.bind(outcome.code()).bind(by),
        Change::Attempted | Change::Moved => {}
    }
    Ok(q.execute(&mut **tx).await?.rows_affected() == 1)
}

/// Notes that case `id` changed at `now` without a change of status (a new plan version).
pub async fn touch(tx: &mut Tx, id: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE idva_cases SET updated_at_ms = $1 WHERE envelope_id = $2").bind(now).bind(id).execute(&mut **tx).await?;
    Ok(())
}

/// Marks that the consent case `id` relied on was seen withdrawn; false when it was already.
pub async fn consent_withdrawn(tx: &mut Tx, id: &str, now: i64) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE idva_cases SET consent_withdrawn_at_ms = $1, updated_at_ms = $1 WHERE envelope_id = $2 AND consent_withdrawn_at_ms IS NULL")
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Open cases relying on a consent record not yet seen withdrawn, checked longest ago first:
/// (case id, subject ref, consent id, recorded by).
pub async fn consent_to_check(pool: &sqlx::AnyPool, limit: i64) -> sqlx::Result<Vec<(String, String, String, String)>> {
    sqlx::query_as(
        "SELECT envelope_id, subject_ref, consent_id, consent_recorded_by FROM idva_cases \
         WHERE status <> $1 AND consent_id <> '' AND consent_withdrawn_at_ms IS NULL ORDER BY consent_checked_at_ms, envelope_id LIMIT $2",
    )
    .bind(Status::Closed.code())
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Notes that the consent of these cases was checked at `now`.
pub async fn consent_checked(pool: &sqlx::AnyPool, ids: &[String], now: i64) -> sqlx::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!("UPDATE idva_cases SET consent_checked_at_ms = $1 WHERE envelope_id IN ({})", runtime::db::numbered(2, ids.len()));
    let mut q = sqlx::query(&sql).bind(now);
    for id in ids {
        q = q.bind(id.as_str());
    }
    q.execute(pool).await?;
    Ok(())
}

/// One contact attempt, its note sealed.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: String,
    pub case_id: String,
    pub method: String,
    pub outcome: String,
    pub sealed_note: String,
    pub attempted_by: String,
    pub attempted_at_ms: i64,
}

pub async fn add_attempt(tx: &mut Tx, a: &Attempt) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO idva_contact_attempts (id, case_id, method, outcome, note, attempted_by, attempted_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(&a.id)
        .bind(&a.case_id)
        .bind(&a.method)
        .bind(&a.outcome)
        .bind(&a.sealed_note)
        .bind(&a.attempted_by)
        .bind(a.attempted_at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A case's attempts, oldest first.
pub async fn attempts<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, case_id: &str) -> sqlx::Result<Vec<Attempt>> {
    let rows = sqlx::query("SELECT id, case_id, method, outcome, note, attempted_by, attempted_at_ms FROM idva_contact_attempts WHERE case_id = $1 ORDER BY attempted_at_ms, id")
        .bind(case_id)
        .fetch_all(e)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Attempt {
                id: r.try_get("id")?,
                case_id: r.try_get("case_id")?,
                method: r.try_get("method")?,
                outcome: r.try_get("outcome")?,
                sealed_note: r.try_get("note")?,
                attempted_by: r.try_get("attempted_by")?,
                attempted_at_ms: r.try_get("attempted_at_ms")?,
            })
        })
        .collect()
}

/// One version of a case's safety plan, its sections sealed.
#[derive(Debug, Clone)]
pub struct PlanVersion {
    pub case_id: String,
    pub version: i64,
    pub sealed_sections: String,
    pub saved_by: String,
    pub saved_at_ms: i64,
}

/// The newest version number of a case's plan (0 when it has none).
pub async fn latest_plan_version(tx: &mut Tx, case_id: &str) -> sqlx::Result<i64> {
    let (n,): (Option<i64>,) = sqlx::query_as("SELECT MAX(version) FROM idva_safety_plans WHERE case_id = $1").bind(case_id).fetch_one(&mut **tx).await?;
    Ok(n.unwrap_or(0))
}

/// Adds a version; false when that version number was taken meanwhile.
pub async fn add_plan_version(tx: &mut Tx, p: &PlanVersion) -> sqlx::Result<bool> {
    let done = sqlx::query("INSERT INTO idva_safety_plans (case_id, version, sections, saved_by, saved_at_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
        .bind(&p.case_id)
        .bind(p.version)
        .bind(&p.sealed_sections)
        .bind(&p.saved_by)
        .bind(p.saved_at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Every version of a case's plan, oldest first.
pub async fn plan_versions<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, case_id: &str) -> sqlx::Result<Vec<PlanVersion>> {
    let rows = sqlx::query("SELECT case_id, version, sections, saved_by, saved_at_ms FROM idva_safety_plans WHERE case_id = $1 ORDER BY version")
        .bind(case_id)
        .fetch_all(e)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(PlanVersion {
                case_id: r.try_get("case_id")?,
                version: r.try_get("version")?,
                sealed_sections: r.try_get("sections")?,
                saved_by: r.try_get("saved_by")?,
                saved_at_ms: r.try_get("saved_at_ms")?,
            })
        })
        .collect()
}

/// The step names as the chronology records them.
pub fn event_of(step: Step) -> &'static str {
    match step {
        Step::Triage => "case_triaged",
        Step::ContactAttempt => "contact_attempt",
        Step::Engaged => "case_engaged",
        Step::NotReached => "case_not_reached",
        Step::Close => "case_closed",
    }
}
