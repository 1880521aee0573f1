//! The scheme's tables: the one place that writes their column lists. An application is
//! changed only from the version it was read at (`status_seq`, which is also the number of its
//! last status message), so two changes at once cannot both apply: the second is told the
//! application changed meanwhile (a message is redelivered and judged again). What says where
//! she would live (areas, household needs, the property offered) arrives here sealed already.

use runtime::{Tx, codes};
use sqlx::{Row as _, any::AnyRow};

use crate::scheme::{Reason, Status};

/// One application, as stored.
#[derive(Debug, Clone)]
pub struct Application {
    pub reference: String,
    /// The envelope id of the request it came from.
    pub request_envelope_id: String,
    pub referrer: String,
    pub subject_ref: String,
    /// The referrer's own case reference.
    pub case_ref: String,
    pub current_landlord: String,
    /// Comma lists, sealed at rest.
    pub sealed_areas: String,
    pub sealed_excluded: String,
    pub adults: i64,
    pub children: i64,
    pub bedrooms_needed: i64,
    pub sealed_accessibility: String,
    pub status: Status,
    /// A [`Reason`] code, or empty.
    pub reason: String,
    /// The named lead who approved (a staff id of the current landlord).
    pub approved_by: String,
    pub approved_at_ms: Option<i64>,
    pub approval_envelope_id: String,
    pub status_seq: i64,
    pub received_at_ms: i64,
    pub circulated_at_ms: Option<i64>,
    pub reply_by_ms: Option<i64>,
    pub offered_at_ms: Option<i64>,
    pub decided_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

const COLUMNS: &str = "application_ref, envelope_id, referrer, subject_ref, case_ref, current_landlord, areas, excluded_areas, adults, children, \
    bedrooms_needed, accessibility_needs, status, reason, approved_by, approved_at_ms, approval_envelope_id, status_seq, received_at_ms, \
    circulated_at_ms, reply_by_ms, offered_at_ms, decided_at_ms, closed_at_ms, updated_at_ms";

fn decode_error(column: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.into(), source: format!("not a code this service knows in {column}").into() }
}

impl Application {
    fn from_row(r: &AnyRow) -> sqlx::Result<Application> {
        let status: String = r.try_get("status")?;
        Ok(Application {
            reference: r.try_get("application_ref")?,
            request_envelope_id: r.try_get("envelope_id")?,
            referrer: r.try_get("referrer")?,
            subject_ref: r.try_get("subject_ref")?,
            case_ref: r.try_get("case_ref")?,
            current_landlord: r.try_get("current_landlord")?,
            sealed_areas: r.try_get("areas")?,
            sealed_excluded: r.try_get("excluded_areas")?,
            adults: r.try_get("adults")?,
            children: r.try_get("children")?,
            bedrooms_needed: r.try_get("bedrooms_needed")?,
            sealed_accessibility: r.try_get("accessibility_needs")?,
            status: Status::parse_stored(&status).ok_or_else(|| decode_error("status"))?,
            reason: r.try_get("reason")?,
            approved_by: r.try_get("approved_by")?,
            approved_at_ms: r.try_get("approved_at_ms")?,
            approval_envelope_id: r.try_get("approval_envelope_id")?,
            status_seq: r.try_get("status_seq")?,
            received_at_ms: r.try_get("received_at_ms")?,
            circulated_at_ms: r.try_get("circulated_at_ms")?,
            reply_by_ms: r.try_get("reply_by_ms")?,
            offered_at_ms: r.try_get("offered_at_ms")?,
            decided_at_ms: r.try_get("decided_at_ms")?,
            closed_at_ms: r.try_get("closed_at_ms")?,
            updated_at_ms: r.try_get("updated_at_ms")?,
        })
    }

    /// Whether its named lead has approved it.
    pub fn approved(&self) -> bool {
        self.approved_at_ms.is_some()
    }

    /// Sets its status and reason.
    pub fn set(&mut self, status: Status, reason: Option<Reason>) {
        self.status = status;
        self.reason = reason.map(|r| r.code().to_owned()).unwrap_or_default();
    }
}

/// The reference of the next application received in the year `year` (e.g. `ARC-01-26`).
pub async fn next_reference(tx: &mut Tx, year: i64) -> sqlx::Result<String> {
    let suffix = format!("-{:02}", year % 100);
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM applications WHERE application_ref LIKE $1").bind(format!("ARC-%{suffix}")).fetch_one(&mut **tx).await?;
    let mut n = count + 1;
    // References of earlier versions were numbered over every year: step past one taken.
    loop {
        let reference = format!("ARC-{n:02}{suffix}");
        if get(&mut **tx, &reference).await?.is_none() {
            return Ok(reference);
        }
        n += 1;
    }
}

/// Stores a new application (its first status message is number 1).
pub async fn insert(tx: &mut Tx, a: &Application) -> sqlx::Result<()> {
    sqlx::query(&format!("INSERT INTO applications ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)"))
        .bind(&a.reference)
        .bind(&a.request_envelope_id)
        .bind(&a.referrer)
        .bind(&a.subject_ref)
        .bind(&a.case_ref)
        .bind(&a.current_landlord)
        .bind(&a.sealed_areas)
        .bind(&a.sealed_excluded)
        .bind(a.adults)
        .bind(a.children)
        .bind(a.bedrooms_needed)
        .bind(&a.sealed_accessibility)
        .bind(a.status.code())
        .bind(&a.reason)
        .bind(&a.approved_by)
        .bind(a.approved_at_ms)
        .bind(&a.approval_envelope_id)
        .bind(a.status_seq)
        .bind(a.received_at_ms)
        .bind(a.circulated_at_ms)
        .bind(a.reply_by_ms)
        .bind(a.offered_at_ms)
        .bind(a.decided_at_ms)
        .bind(a.closed_at_ms)
        .bind(a.updated_at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Writes what changed on `a` (read at version `a.status_seq`) and moves it to the next
/// version, `a.status_seq + 1`; false when it had changed meanwhile.
pub async fn save(tx: &mut Tx, a: &mut Application, now: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE applications SET areas = $1, excluded_areas = $2, status = $3, reason = $4, approved_by = $5, approved_at_ms = $6, approval_envelope_id = $7, \
         circulated_at_ms = $8, reply_by_ms = $9, offered_at_ms = $10, decided_at_ms = $11, closed_at_ms = $12, updated_at_ms = $13, status_seq = status_seq + 1 \
         WHERE application_ref = $14 AND status_seq = $15",
    )
    .bind(&a.sealed_areas)
    .bind(&a.sealed_excluded)
    .bind(a.status.code())
    .bind(&a.reason)
    .bind(&a.approved_by)
    .bind(a.approved_at_ms)
    .bind(&a.approval_envelope_id)
    .bind(a.circulated_at_ms)
    .bind(a.reply_by_ms)
    .bind(a.offered_at_ms)
    .bind(a.decided_at_ms)
    .bind(a.closed_at_ms)
    .bind(now)
    .bind(&a.reference)
    .bind(a.status_seq)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    a.status_seq += 1;
    a.updated_at_ms = now;
    Ok(true)
}

/// One application, if there is one of that reference.
pub async fn get<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, reference: &str) -> sqlx::Result<Option<Application>> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM applications WHERE application_ref = $1")).bind(reference).fetch_optional(e).await?.as_ref().map(Application::from_row).transpose()
}

/// A page of applications in reference order after `after`, of one status when given.
pub async fn page(pool: &sqlx::AnyPool, status: Option<Status>, after: &str, limit: i64) -> sqlx::Result<Vec<Application>> {
    let rows = match status {
        Some(s) => {
            sqlx::query(&format!("SELECT {COLUMNS} FROM applications WHERE status = $1 AND {}", runtime::api::Page::clause("application_ref", 2)))
                .bind(s.code())
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
        None => sqlx::query(&format!("SELECT {COLUMNS} FROM applications WHERE {}", runtime::api::Page::clause("application_ref", 1))).bind(after).bind(limit).fetch_all(pool).await?,
    };
    rows.iter().map(Application::from_row).collect()
}

/// How many applications have each status (v0.1.0's codes counted as today's).
pub async fn count_by_status(pool: &sqlx::AnyPool) -> sqlx::Result<Vec<(Status, i64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT status, COUNT(*) FROM applications GROUP BY status").fetch_all(pool).await?;
    let mut counts: Vec<(Status, i64)> = Status::ALL.iter().map(|s| (*s, 0)).collect();
    for (code, n) in rows {
        if let Some(s) = Status::parse_stored(&code) {
            if let Some(c) = counts.iter_mut().find(|(st, _)| *st == s) {
                c.1 += n;
            }
        }
    }
    Ok(counts)
}

/// (circulated, offered) times of every application that had an offer held: time to offer.
pub async fn offer_times(pool: &sqlx::AnyPool) -> sqlx::Result<Vec<(String, i64, i64)>> {
    sqlx::query_as("SELECT application_ref, circulated_at_ms, offered_at_ms FROM applications WHERE circulated_at_ms IS NOT NULL AND offered_at_ms IS NOT NULL ORDER BY application_ref")
        .fetch_all(pool)
        .await
}

// ---------------------------------------------------------------- circulations

/// One landlord a property request went to.
#[derive(Debug, Clone)]
pub struct Circulation {
    pub landlord: String,
    pub envelope_id: String,
    pub sent_by: String,
    pub sent_at_ms: i64,
}

pub async fn add_circulation(tx: &mut Tx, reference: &str, c: &Circulation) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO circulations (application_ref, landlord, envelope_id, sent_by, sent_at_ms) VALUES ($1, $2, $3, $4, $5)")
        .bind(reference)
        .bind(&c.landlord)
        .bind(&c.envelope_id)
        .bind(&c.sent_by)
        .bind(c.sent_at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The landlords an application's property request went to, in the order it went.
pub async fn circulations<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, reference: &str) -> sqlx::Result<Vec<Circulation>> {
    let rows = sqlx::query("SELECT landlord, envelope_id, sent_by, sent_at_ms FROM circulations WHERE application_ref = $1 ORDER BY sent_at_ms, landlord")
        .bind(reference)
        .fetch_all(e)
        .await?;
    rows.iter()
        .map(|r| Ok(Circulation { landlord: r.try_get("landlord")?, envelope_id: r.try_get("envelope_id")?, sent_by: r.try_get("sent_by")?, sent_at_ms: r.try_get("sent_at_ms")? }))
        .collect()
}

// ---------------------------------------------------------------- offers

codes!(
    /// What came of an offer.
    OfferOutcome {
        Held = "held": "Held for the applicant's decision",
        Declined = "declined": "Declined",
        Accepted = "accepted": "Accepted by the applicant",
        Refused = "refused": "Refused by the applicant",
        Released = "released": "Released: the application ended",
    }
);

/// One offer received.
#[derive(Debug, Clone)]
pub struct Offer {
    pub envelope_id: String,
    pub reference: String,
    pub landlord: String,
    /// Sealed at rest.
    pub sealed_property_ref: String,
    pub sealed_area: String,
    pub bedrooms: i64,
    pub outcome: OfferOutcome,
    pub reason: String,
    pub answer_envelope_id: String,
    pub received_at_ms: i64,
    pub answered_at_ms: Option<i64>,
}

const OFFER_COLUMNS: &str = "envelope_id, application_ref, landlord, property_ref, area, bedrooms, outcome, reason, answer_envelope_id, received_at_ms, answered_at_ms";

impl Offer {
    fn from_row(r: &AnyRow) -> sqlx::Result<Offer> {
        let outcome: String = r.try_get("outcome")?;
        Ok(Offer {
            envelope_id: r.try_get("envelope_id")?,
            reference: r.try_get("application_ref")?,
            landlord: r.try_get("landlord")?,
            sealed_property_ref: r.try_get("property_ref")?,
            sealed_area: r.try_get("area")?,
            bedrooms: r.try_get("bedrooms")?,
            outcome: OfferOutcome::parse(&outcome).ok_or_else(|| decode_error("outcome"))?,
            reason: r.try_get("reason")?,
            answer_envelope_id: r.try_get("answer_envelope_id")?,
            received_at_ms: r.try_get("received_at_ms")?,
            answered_at_ms: r.try_get("answered_at_ms")?,
        })
    }
}

/// Stores an offer received; false when that envelope was stored already.
pub async fn add_offer(tx: &mut Tx, o: &Offer) -> sqlx::Result<bool> {
    let done = sqlx::query(&format!("INSERT INTO scheme_offers ({OFFER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING"))
        .bind(&o.envelope_id)
        .bind(&o.reference)
        .bind(&o.landlord)
        .bind(&o.sealed_property_ref)
        .bind(&o.sealed_area)
        .bind(o.bedrooms)
        .bind(o.outcome.code())
        .bind(&o.reason)
        .bind(&o.answer_envelope_id)
        .bind(o.received_at_ms)
        .bind(o.answered_at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Records what came of an offer and the answer sent to its landlord.
pub async fn answer_offer(tx: &mut Tx, envelope_id: &str, outcome: OfferOutcome, reason: &str, answer_envelope_id: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE scheme_offers SET outcome = $1, reason = $2, answer_envelope_id = $3, answered_at_ms = $4 WHERE envelope_id = $5")
        .bind(outcome.code())
        .bind(reason)
        .bind(answer_envelope_id)
        .bind(now)
        .bind(envelope_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Every offer of an application, oldest first.
pub async fn offers<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, reference: &str) -> sqlx::Result<Vec<Offer>> {
    let rows = sqlx::query(&format!("SELECT {OFFER_COLUMNS} FROM scheme_offers WHERE application_ref = $1 ORDER BY received_at_ms, envelope_id")).bind(reference).fetch_all(e).await?;
    rows.iter().map(Offer::from_row).collect()
}

/// The offer an application holds (held or accepted), if any.
pub async fn standing_offer(tx: &mut Tx, reference: &str) -> sqlx::Result<Option<Offer>> {
    let row = sqlx::query(&format!("SELECT {OFFER_COLUMNS} FROM scheme_offers WHERE application_ref = $1 AND outcome IN ($2, $3)"))
        .bind(reference)
        .bind(OfferOutcome::Held.code())
        .bind(OfferOutcome::Accepted.code())
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(Offer::from_row).transpose()
}

// ---------------------------------------------------------------- completions

codes!(
    /// A completion kept: counted, or held until the acceptance.
    CompletionOutcome {
        Counted = "counted": "Counted",
        Held = "held": "Held until the acceptance",
    }
);

/// A move completion kept.
#[derive(Debug, Clone)]
pub struct Completion {
    pub envelope_id: String,
    pub reference: String,
    pub rehousing_landlord: String,
    pub vacating_landlord: String,
    /// Sealed at rest.
    pub sealed_property_ref: String,
    pub moved_on: String,
    pub outcome: CompletionOutcome,
    pub received_at_ms: i64,
    pub counted_at_ms: Option<i64>,
}

const COMPLETION_COLUMNS: &str = "envelope_id, application_ref, rehousing_landlord, vacating_landlord, property_ref, moved_on, outcome, received_at_ms, counted_at_ms";

impl Completion {
    fn from_row(r: &AnyRow) -> sqlx::Result<Completion> {
        let outcome: String = r.try_get("outcome")?;
        Ok(Completion {
            envelope_id: r.try_get("envelope_id")?,
            reference: r.try_get("application_ref")?,
            rehousing_landlord: r.try_get("rehousing_landlord")?,
            vacating_landlord: r.try_get("vacating_landlord")?,
            sealed_property_ref: r.try_get("property_ref")?,
            moved_on: r.try_get("moved_on")?,
            outcome: CompletionOutcome::parse(&outcome).ok_or_else(|| decode_error("outcome"))?,
            received_at_ms: r.try_get("received_at_ms")?,
            counted_at_ms: r.try_get("counted_at_ms")?,
        })
    }
}

pub async fn add_completion(tx: &mut Tx, c: &Completion) -> sqlx::Result<()> {
    sqlx::query(&format!("INSERT INTO completions ({COMPLETION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
        .bind(&c.envelope_id)
        .bind(&c.reference)
        .bind(&c.rehousing_landlord)
        .bind(&c.vacating_landlord)
        .bind(&c.sealed_property_ref)
        .bind(&c.moved_on)
        .bind(c.outcome.code())
        .bind(c.received_at_ms)
        .bind(c.counted_at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Counts a held completion (the acceptance came); false when there was none to count.
pub async fn count_held(tx: &mut Tx, envelope_id: &str, now: i64) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE completions SET outcome = $1, counted_at_ms = $2 WHERE envelope_id = $3 AND outcome = $4")
        .bind(CompletionOutcome::Counted.code())
        .bind(now)
        .bind(envelope_id)
        .bind(CompletionOutcome::Held.code())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes a held completion that will never count (the application ended first).
pub async fn drop_held(tx: &mut Tx, envelope_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM completions WHERE envelope_id = $1 AND outcome = $2").bind(envelope_id).bind(CompletionOutcome::Held.code()).execute(&mut **tx).await?;
    Ok(())
}

/// An application's completions kept, oldest first.
pub async fn completions<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, reference: &str) -> sqlx::Result<Vec<Completion>> {
    let rows = sqlx::query(&format!("SELECT {COMPLETION_COLUMNS} FROM completions WHERE application_ref = $1 ORDER BY received_at_ms, envelope_id")).bind(reference).fetch_all(e).await?;
    rows.iter().map(Completion::from_row).collect()
}

/// How many completions are held until their acceptance.
pub async fn held_count(pool: &sqlx::AnyPool) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM completions WHERE outcome = $1").bind(CompletionOutcome::Held.code()).fetch_one(pool).await?;
    Ok(n)
}

/// (rehousing landlord, vacating landlord) of every move counted.
pub async fn counted_moves(pool: &sqlx::AnyPool) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as("SELECT rehousing_landlord, vacating_landlord FROM completions WHERE outcome = $1").bind(CompletionOutcome::Counted.code()).fetch_all(pool).await
}

/// v0.1.0's balances, kept as opening balances.
pub async fn opening_balances(pool: &sqlx::AnyPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT landlord, balance FROM fairness").fetch_all(pool).await
}

// ---------------------------------------------------------------- set aside

/// A message the scheme did not act on, and why.
#[derive(Debug, Clone)]
pub struct SetAside {
    pub envelope_id: String,
    pub reference: String,
    pub kind: String,
    pub sender: String,
    pub reason: Reason,
    pub at_ms: i64,
}

pub async fn set_aside(tx: &mut Tx, s: &SetAside) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO set_aside (envelope_id, application_ref, kind, sender, reason, at_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")
        .bind(&s.envelope_id)
        .bind(&s.reference)
        .bind(&s.kind)
        .bind(&s.sender)
        .bind(s.reason.code())
        .bind(s.at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The latest messages set aside (of one application when given), newest first, as rows
/// (envelope id, reference, kind, sender, reason code, at).
pub async fn set_asides(pool: &sqlx::AnyPool, reference: Option<&str>, limit: i64) -> sqlx::Result<Vec<(String, String, String, String, String, i64)>> {
    match reference {
        Some(r) => {
            sqlx::query_as("SELECT envelope_id, application_ref, kind, sender, reason, at_ms FROM set_aside WHERE application_ref = $1 ORDER BY at_ms DESC, envelope_id LIMIT $2")
                .bind(r)
                .bind(limit)
                .fetch_all(pool)
                .await
        }
        None => sqlx::query_as("SELECT envelope_id, application_ref, kind, sender, reason, at_ms FROM set_aside ORDER BY at_ms DESC, envelope_id LIMIT $1").bind(limit).fetch_all(pool).await,
    }
}

// ---------------------------------------------------------------- landlords

/// What the coordinator records of a landlord.
#[derive(Debug, Clone, Default)]
pub struct Landlord {
    pub landlord: String,
    pub stock_areas: Vec<String>,
    /// Staff ids of its named leads.
    pub named_leads: Vec<String>,
    pub updated_by: String,
    pub updated_at_ms: i64,
}

fn list(s: &str) -> Vec<String> {
    s.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect()
}

impl Landlord {
    fn from_row(r: &AnyRow) -> sqlx::Result<Landlord> {
        Ok(Landlord {
            landlord: r.try_get("landlord")?,
            stock_areas: list(&r.try_get::<String, _>("stock_areas")?),
            named_leads: list(&r.try_get::<String, _>("named_leads")?),
            updated_by: r.try_get("updated_by")?,
            updated_at_ms: r.try_get("updated_at_ms")?,
        })
    }
}

pub async fn put_landlord(pool: &sqlx::AnyPool, l: &Landlord) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO landlords (landlord, stock_areas, named_leads, updated_by, updated_at_ms) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (landlord) DO UPDATE SET stock_areas = excluded.stock_areas, named_leads = excluded.named_leads, updated_by = excluded.updated_by, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(&l.landlord)
    .bind(l.stock_areas.join(","))
    .bind(l.named_leads.join(","))
    .bind(&l.updated_by)
    .bind(l.updated_at_ms)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn landlord<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, landlord: &str) -> sqlx::Result<Option<Landlord>> {
    let row = sqlx::query("SELECT landlord, stock_areas, named_leads, updated_by, updated_at_ms FROM landlords WHERE landlord = $1").bind(landlord).fetch_optional(e).await?;
    row.as_ref().map(Landlord::from_row).transpose()
}

pub async fn landlords<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E) -> sqlx::Result<Vec<Landlord>> {
    let rows = sqlx::query("SELECT landlord, stock_areas, named_leads, updated_by, updated_at_ms FROM landlords ORDER BY landlord").fetch_all(e).await?;
    rows.iter().map(Landlord::from_row).collect()
}
