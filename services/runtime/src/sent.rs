//! What this agency sent, as the agency crates ask about it: typed questions over the
//! runtime's `sent` table, so no agency crate writes SQL against a table it does not own.
//! Each answer is a [`Sent`] with its status as the enum ([`Disclosure`]), never a string to
//! compare against a literal.

use isp::Kind;
use sqlx::{AnyPool, Row as _, any::AnyRow};

use crate::status::Disclosure;

/// One disclosure this agency made, as its `sent` row keeps it (ids, codes and times; no
/// content, no free text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub envelope_id: String,
    pub recipient: String,
    /// The message kind's name (`isp::kind::name`).
    pub kind: String,
    pub subject_ref: String,
    pub case_ref: String,
    pub status: Disclosure,
    /// Categories the sealed payload carried, and those the protocol removed.
    pub categories: Vec<String>,
    pub removed: Vec<String>,
    /// The staff member the send was made for ("" for the service's own step).
    pub sent_by: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const COLUMNS: &str = "envelope_id, recipient, kind, subject_ref, case_ref, status, categories, removed, sent_by, created_at_ms, updated_at_ms";

/// How many rows one question answers at most.
pub const MAX_ROWS: i64 = 200;

impl Sent {
    fn from_row(r: &AnyRow) -> sqlx::Result<Sent> {
        let list = |column: &str| -> sqlx::Result<Vec<String>> { Ok(crate::db::comma_list(&r.try_get::<String, _>(column)?)) };
        let status: String = r.try_get("status")?;
        Ok(Sent {
            envelope_id: r.try_get("envelope_id")?,
            recipient: r.try_get("recipient")?,
            kind: r.try_get("kind")?,
            subject_ref: r.try_get("subject_ref")?,
            case_ref: r.try_get("case_ref")?,
            status: Disclosure::parse(&status)
                .ok_or_else(|| sqlx::Error::ColumnDecode { index: "status".into(), source: "not a disclosure status this service knows".into() })?,
            categories: list("categories")?,
            removed: list("removed")?,
            sent_by: r.try_get::<Option<String>, _>("sent_by")?.unwrap_or_default(),
            created_at_ms: r.try_get("created_at_ms")?,
            updated_at_ms: r.try_get("updated_at_ms")?,
        })
    }
}

/// The disclosure sent with `envelope_id`, if this agency sent one.
pub async fn get(pool: &AnyPool, envelope_id: &str) -> sqlx::Result<Option<Sent>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sent WHERE envelope_id = $1")).bind(envelope_id).fetch_optional(pool).await?;
    row.as_ref().map(Sent::from_row).transpose()
}

/// The disclosures of `kind` about one person that left this agency (not refused by the
/// protocol, stopped or set aside before publishing), newest first, at most [`MAX_ROWS`].
pub async fn about(pool: &AnyPool, kind: Kind, subject_ref: &str) -> sqlx::Result<Vec<Sent>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM sent WHERE subject_ref = $1 AND kind = $2 AND status NOT IN ($3, $4, $5) ORDER BY created_at_ms DESC, envelope_id DESC LIMIT $6"
    ))
    .bind(subject_ref)
    .bind(isp::kind::name(kind))
    .bind(Disclosure::Denied.code())
    .bind(Disclosure::Stopped.code())
    .bind(Disclosure::SetAside.code())
    .bind(MAX_ROWS)
    .fetch_all(pool)
    .await?;
    rows.iter().map(Sent::from_row).collect()
}

/// The disclosures of `kind` made after the one created at `after_ms` with id `after_id`
/// (whatever became of them), in creation order, at most [`MAX_ROWS`]: a reader that follows
/// every send of a kind pages through them with the last row's time and id.
pub async fn of_kind_after(pool: &AnyPool, kind: Kind, after_ms: i64, after_id: &str) -> sqlx::Result<Vec<Sent>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM sent WHERE kind = $1 AND (created_at_ms > $2 OR (created_at_ms = $2 AND envelope_id > $3)) \
         ORDER BY created_at_ms, envelope_id LIMIT $4"
    ))
    .bind(isp::kind::name(kind))
    .bind(after_ms)
    .bind(after_id)
    .bind(MAX_ROWS)
    .fetch_all(pool)
    .await?;
    rows.iter().map(Sent::from_row).collect()
}

/// Every disclosure of `kind` made on a case (`case_ref`), whatever became of it, oldest
/// first and by recipient, at most [`MAX_ROWS`].
pub async fn on_case(pool: &AnyPool, kind: Kind, case_ref: &str) -> sqlx::Result<Vec<Sent>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM sent WHERE kind = $1 AND case_ref = $2 ORDER BY created_at_ms, recipient LIMIT $3"))
        .bind(isp::kind::name(kind))
        .bind(case_ref)
        .bind(MAX_ROWS)
        .fetch_all(pool)
        .await?;
    rows.iter().map(Sent::from_row).collect()
}
