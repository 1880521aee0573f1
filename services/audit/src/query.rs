//! Questions an IG lead asks of the ledger: by pseudonymous subject, agency (as sender or
//! recipient), flow, kind, period, lawful basis, consent state, shared without consent,
//! entry type (near misses, refusals, violations). Answers as entries, a table or CSV.

use anyhow::{Context as _, bail};
use serde::Deserialize;
use sqlx::{AnyPool, Row as _};

use crate::ledger::{COLUMNS, Entry, EntryType, from_row};

/// A ledger query; every set field must match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub subject_ref: Option<String>,
    /// As sender or as recipient.
    pub agency: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    /// `housing.idva_referral`, ...
    pub kind: Option<String>,
    /// `disclosure`, `near_miss`, `rejected`, `violation`, `unverifiable`, `replay`,
    /// `misroute`, `stream_gap`, `stream_reset`, ...
    pub entry_type: Option<EntryType>,
    pub lawful_basis: Option<String>,
    pub consent_state: Option<String>,
    pub without_consent: Option<bool>,
    /// `accessed` entries of one staff member (a login id).
    pub staff_id: Option<String>,
    /// Entries about one envelope: the disclosure itself, its receipts, and every access to it.
    pub envelope_id: Option<String>,
    /// First day included, `YYYY-MM-DD` (UTC).
    pub since: Option<String>,
    /// Last day included, `YYYY-MM-DD` (UTC).
    pub until: Option<String>,
    /// Only entries after this one (its `seq`): the cursor of a paged listing.
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

/// How many entries `GET /ledger` answers when the query names no `limit`, and the most it
/// answers at once; further pages come with `after` = the last `seq` of the page before.
pub const PAGE_DEFAULT: i64 = 1000;
pub const PAGE_MAX: i64 = 10_000;

/// Milliseconds at the start of a `YYYY-MM-DD` day, UTC.
pub fn day_start_ms(day: &str) -> anyhow::Result<i64> {
    let date = time::Date::parse(day, time::macros::format_description!("[year]-[month]-[day]"))
        .with_context(|| format!("{day:?} is not a date (YYYY-MM-DD)"))?;
    Ok(date.midnight().assume_utc().unix_timestamp() * 1000)
}

enum Bind {
    Text(String),
    Int(i64),
}

pub async fn run(pool: &AnyPool, filter: &Filter) -> anyhow::Result<Vec<Entry>> {
    let rows = rows(pool, filter, COLUMNS, Order::Ledger).await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// The newest entries the query matches (at most its `limit`), newest first: what a console
/// page of recent events shows, however long the ledger.
pub async fn newest(pool: &AnyPool, filter: &Filter) -> anyhow::Result<Vec<Entry>> {
    let rows = rows(pool, filter, COLUMNS, Order::NewestFirst).await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// The facts a report counts, without the signed records and hashes (a fraction of a row).
pub const SUMMARY_COLUMNS: &str =
    "seq, entry_type, entry_id, sender, recipient, kind, lawful_basis, consent_id, consent_state, rule, reason, without_consent, in_reply_to, occurred_at_ms, message_count";

/// Entries with only [`SUMMARY_COLUMNS`] filled in.
pub async fn run_summary(pool: &AnyPool, filter: &Filter) -> anyhow::Result<Vec<Entry>> {
    let rows = rows(pool, filter, SUMMARY_COLUMNS, Order::Ledger).await?;
    rows.iter()
        .map(|r| {
            Ok(Entry {
                seq: r.try_get("seq")?,
                entry_type: r.try_get::<String, _>("entry_type")?.parse()?,
                entry_id: r.try_get("entry_id")?,
                sender: r.try_get("sender")?,
                recipient: r.try_get("recipient")?,
                kind: r.try_get("kind")?,
                lawful_basis: r.try_get("lawful_basis")?,
                consent_id: r.try_get("consent_id")?,
                consent_state: r.try_get("consent_state")?,
                rule: r.try_get("rule")?,
                reason: r.try_get("reason")?,
                without_consent: r.try_get::<i64, _>("without_consent")? != 0,
                in_reply_to: r.try_get("in_reply_to")?,
                occurred_at_ms: r.try_get("occurred_at_ms")?,
                message_count: r.try_get("message_count")?,
                ..Default::default()
            })
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    Ledger,
    NewestFirst,
}

async fn rows(pool: &AnyPool, filter: &Filter, columns: &str, order: Order) -> anyhow::Result<Vec<sqlx::any::AnyRow>> {
    let mut clauses: Vec<String> = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    let mut add = |clause: &str, bind: Bind| {
        binds.push(bind);
        clauses.push(clause.replace('?', &format!("${}", binds.len())));
    };
    for (column, value) in [
        ("subject_ref", &filter.subject_ref),
        ("sender", &filter.sender),
        ("recipient", &filter.recipient),
        ("kind", &filter.kind),
        ("lawful_basis", &filter.lawful_basis),
        ("consent_state", &filter.consent_state),
        ("staff_id", &filter.staff_id),
    ] {
        if let Some(v) = value {
            add(&format!("{column} = ?"), Bind::Text(v.clone()));
        }
    }
    if let Some(t) = filter.entry_type {
        add("entry_type = ?", Bind::Text(t.as_str().into()));
    }
    if let Some(a) = &filter.agency {
        add("(sender = ? OR recipient = ?)", Bind::Text(a.clone()));
    }
    if let Some(id) = &filter.envelope_id {
        add("(entry_id = ? OR in_reply_to = ?)", Bind::Text(id.clone()));
    }
    if let Some(w) = filter.without_consent {
        add("without_consent = ?", Bind::Int(w as i64));
    }
    if let Some(day) = &filter.since {
        add("occurred_at_ms >= ?", Bind::Int(day_start_ms(day)?));
    }
    if let Some(day) = &filter.until {
        add("occurred_at_ms < ?", Bind::Int(day_start_ms(day)? + 86_400_000));
    }
    if let Some(after) = filter.after {
        add("seq > ?", Bind::Int(after));
    }
    let mut sql = format!("SELECT {columns} FROM ledger");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(if order == Order::NewestFirst { " ORDER BY seq DESC" } else { " ORDER BY seq" });
    match filter.limit {
        Some(limit) if limit <= 0 => bail!("limit must be positive"),
        Some(limit) => sql.push_str(&format!(" LIMIT {limit}")),
        None => {}
    }
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::Int(i) => q.bind(i),
        };
    }
    Ok(q.fetch_all(pool).await?)
}

const CSV_HEADER: [&str; 20] = [
    "seq", "entry_type", "occurred_at", "sender", "recipient", "kind", "purpose", "lawful_basis", "consent_id", "consent_state",
    "without_consent", "risk", "subject_ref", "case_ref", "categories", "forbidden", "rule", "reason", "policy_version", "entry_id",
];

fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn row(e: &Entry) -> [String; 20] {
    [
        e.seq.to_string(), e.entry_type.to_string(), iso(e.occurred_at_ms), e.sender.clone(), e.recipient.clone(), e.kind.clone(),
        e.purpose.clone(), e.lawful_basis.clone(), e.consent_id.clone(), e.consent_state.clone(), e.without_consent.to_string(),
        e.risk.clone(), e.subject_ref.clone(), e.case_ref.clone(), e.categories.clone(), e.forbidden.clone(), e.rule.clone(),
        e.reason.clone(), e.policy_version.clone(), e.entry_id.clone(),
    ]
}

/// Entries as CSV for a spreadsheet: one row each, the clear facts only.
pub fn to_csv(entries: &[Entry]) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER)?;
    for e in entries {
        w.write_record(row(e))?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// Entries as an aligned text table for a terminal.
pub fn to_table(entries: &[Entry]) -> String {
    let mut out = format!("{:>6} {:<12} {:<20} {:<22} {:<22} {:<30} {:<24} {}\n", "seq", "type", "when", "sender", "recipient", "kind", "rule", "basis/reason");
    for e in entries {
        let when = iso(e.occurred_at_ms).chars().take(19).collect::<String>();
        let why = if e.reason.is_empty() { &e.lawful_basis } else { &e.reason };
        let flag = if e.without_consent { " [without consent]" } else { "" };
        out.push_str(&format!(
            "{:>6} {:<12} {:<20} {:<22} {:<22} {:<30} {:<24} {why}{flag}\n",
            e.seq, e.entry_type, when, e.sender, e.recipient, e.kind, e.rule
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_midnights_and_bad_dates_are_named() {
        assert_eq!(day_start_ms("1970-01-02").unwrap(), 86_400_000);
        let e = day_start_ms("2026-13-01").unwrap_err();
        assert!(e.to_string().contains("2026-13-01"), "{e}");
    }
}
