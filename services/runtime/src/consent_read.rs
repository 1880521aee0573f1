//! Reading consent records ([`crate::consent`] has the rest: recording, withdrawing,
//! republishing, the routes): this agency's own from its database, another's from the
//! partnership's bucket, never stepping back from what this service saw before; and
//! [`ConsentReads`], a batch's reads of each record once. The outbox and the inbox check
//! consent through here without importing the routes that write it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_nats::jetstream::stream::{DirectGetError, DirectGetErrorKind};
use isp::consent::{self, Verified};
use proto::v1::ConsentTag;
use sha2::{Digest as _, Sha256};

use crate::{ctx::Ctx, transport::CONSENT_BUCKET};

/// A consent id ([`isp::clear::is_consent_id`]): it becomes part of a bucket key and travels
/// in clear headers, so no dots, no wildcards and no free text.
pub fn valid_id(id: &str) -> bool {
    isp::clear::is_consent_id(id)
}

impl Ctx {
    /// The owner's current record of `{owner}.{consent_id}`, verified; None when there is
    /// none that verifies. An error means the bucket could not be read (retry later).
    pub async fn consent_record(&self, owner: &str, consent_id: &str) -> anyhow::Result<Option<Verified>> {
        self.consent_record_in(None, owner, consent_id).await
    }

    /// As [`Ctx::consent_record`], reading this agency's own records inside `tx` when given
    /// (a SQLite pool has one connection, which the caller's transaction holds).
    pub async fn consent_record_in(&self, tx: Option<&mut crate::db::Tx>, owner: &str, consent_id: &str) -> anyhow::Result<Option<Verified>> {
        if !valid_id(consent_id) || self.isp().directory.get(owner).is_none() {
            return Ok(None);
        }
        if owner == self.agency() {
            const SQL: &str = "SELECT value FROM consents WHERE record_key = $1 ORDER BY revision";
            let key = consent::key(owner, consent_id);
            // Inside a transaction, through it (it may have written the record); outside, in place.
            let rows: Vec<(Vec<u8>,)> = match tx {
                Some(tx) => sqlx::query_as(SQL).bind(&key).fetch_all(&mut **tx).await?,
                None => crate::db::read_rows(&self.pool, &self.reads, SQL, &[crate::db::Value::from(&key)]).await?,
            };
            return Ok(consent::current(&self.isp().directory, owner, consent_id, rows.iter().map(|r| r.0.as_slice())).0);
        }
        let key = consent::key(owner, consent_id);
        let subject = format!("$KV.{CONSENT_BUCKET}.{key}");
        // What this service saw of the record before counts with what the bucket holds now,
        // so the record never goes back (see `remember`); how far it read, so only what
        // came after is read again.
        let mut conn = tx.map(|tx| &mut **tx);
        let seen = seen_value(conn.as_deref_mut(), &self.pool, &self.reads, &key).await?;
        let (values, position) = self.bucket_history(&subject, seen.as_ref()).await?;
        let all: Vec<&[u8]> = seen.iter().map(|s| s.value.as_slice()).chain(values.iter().map(|v| v.as_ref())).collect();
        let (current, rejected) = consent::current_index(&self.isp().directory, owner, consent_id, all.iter().copied());
        if rejected > 0 {
            tracing::warn!(owner, consent_id, rejected, "values in the consent bucket not signed by the record's owner were ignored");
        }
        let Some((index, current)) = current else { return Ok(None) };
        // Index 0 is what was seen before, when there is one: nothing new to keep, unless the
        // reading went further.
        let moved = position.as_ref().is_some_and(|p| seen.as_ref().is_none_or(|s| (s.read_seq, s.read_digest.as_str()) != (p.0, p.1.as_str())));
        if seen.is_none() || index > 0 || moved {
            remember(conn, &self.pool, &key, &current, all[index], position).await?;
        }
        Ok(Some(current))
    }

    /// The values of `subject` in the consent bucket that `seen` does not already reflect,
    /// oldest first, and the position of the last one: (stream sequence, SHA-256 hex).
    /// One direct get when nothing changed (the subject's last message is the one read last
    /// time); otherwise the messages after the one read last, or the whole history when the
    /// stream no longer holds that message where it was.
    async fn bucket_history(&self, subject: &str, seen: Option<&Seen>) -> anyhow::Result<(Vec<bytes::Bytes>, Option<(u64, String)>)> {
        let read = |e: DirectGetError| anyhow::Error::new(e).context("reading the consent bucket");
        let last = match self.consent_stream.direct_get_last_for_subject(subject).await {
            Ok(message) => message,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok((Vec::new(), None)),
            Err(e) => return Err(read(e)),
        };
        let position = (last.sequence, hex::encode(Sha256::digest(&last.payload)));
        let from = match seen {
            Some(s) if (s.read_seq, s.read_digest.as_str()) == (position.0, position.1.as_str()) => return Ok((Vec::new(), Some(position))),
            Some(s) if s.read_seq > 0 && s.read_seq < last.sequence => match self.consent_stream.direct_get(s.read_seq).await {
                Ok(m) if m.subject.as_str() == subject && hex::encode(Sha256::digest(&m.payload)) == s.read_digest => s.read_seq + 1,
                Ok(_) => 1,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => 1,
                Err(e) => return Err(read(e)),
            },
            _ => 1,
        };
        let mut values = Vec::new();
        let mut next = from;
        while next < last.sequence {
            match self.consent_stream.direct_get_next_for_subject(subject, Some(next)).await {
                // The last message is already here; one published since is for the next read.
                Ok(m) if m.sequence >= last.sequence => break,
                Ok(m) => {
                    next = m.sequence + 1;
                    if !m.payload.is_empty() {
                        values.push(m.payload);
                    }
                }
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(read(e)),
            }
        }
        if !last.payload.is_empty() {
            values.push(last.payload);
        }
        Ok((values, Some(position)))
    }

    /// The record a consent tag names, if it names one.
    pub async fn consent_for(&self, tag: Option<&ConsentTag>) -> anyhow::Result<Option<Verified>> {
        self.consent_for_in(None, tag).await
    }

    pub async fn consent_for_in(&self, tx: Option<&mut crate::db::Tx>, tag: Option<&ConsentTag>) -> anyhow::Result<Option<Verified>> {
        match tag {
            Some(t) if !t.consent_id.is_empty() => self.consent_record_in(tx, &t.recorded_by, &t.consent_id).await,
            _ => Ok(None),
        }
    }
}

/// What this service saw of another agency's record: the signed revision that wins so far
/// (the highest, or a withdrawal), and the position in the bucket's stream up to which the
/// record's history is reflected in it (0 and "" when not known).
struct Seen {
    value: Vec<u8>,
    read_seq: u64,
    read_digest: String,
}

async fn seen_value(conn: Option<&mut sqlx::AnyConnection>, pool: &sqlx::AnyPool, in_place: &crate::db::InPlace, key: &str) -> anyhow::Result<Option<Seen>> {
    const SQL: &str = "SELECT value, read_seq, read_digest FROM consent_seen WHERE record_key = $1";
    // Inside a transaction, through it (it may have written the row); outside, in place.
    let row: Option<(Vec<u8>, i64, String)> = match conn {
        Some(conn) => sqlx::query_as(SQL).bind(key).fetch_optional(conn).await?,
        None => crate::db::read_rows(pool, in_place, SQL, &[crate::db::Value::from(key)]).await?.pop(),
    };
    Ok(row.map(|(value, read_seq, read_digest)| Seen { value, read_seq: u64::try_from(read_seq).unwrap_or(0), read_digest }))
}

/// Keeps `value` (the verified revision `record` of key `key`) as what this service has seen
/// of the record, durably, unless what it saw already wins: a withdrawal is never replaced,
/// and nor is a revision by a lower one (checked in the statement, so readers racing each
/// other cannot step it back either). A broker that republishes an old "given" until the
/// withdrawal falls out of the bucket's history, or purges the key, changes nothing here.
/// `position`, how far the bucket was read, is kept either way: whatever stands in `value`
/// is at least as good as what was read up to it. (A reader racing another may step the
/// position back, which only means reading more next time.)
async fn remember(conn: Option<&mut sqlx::AnyConnection>, pool: &sqlx::AnyPool, key: &str, record: &Verified, value: &[u8], position: Option<(u64, String)>) -> anyhow::Result<()> {
    let r = record.record();
    let (read_seq, read_digest) = position.map_or((0, String::new()), |(seq, digest)| (i64::try_from(seq).unwrap_or(0), digest));
    // Each kept column takes the new revision's value only when it wins: never over a
    // withdrawal, and only a withdrawal or a higher revision.
    macro_rules! if_it_wins {
        ($column:literal) => {
            concat!(
                $column,
                " = CASE WHEN consent_seen.withdrawn = 0 AND (excluded.withdrawn = 1 OR excluded.revision > consent_seen.revision) THEN excluded.",
                $column,
                " ELSE consent_seen.",
                $column,
                " END, "
            )
        };
    }
    let query = sqlx::query(concat!(
        "INSERT INTO consent_seen (record_key, revision, withdrawn, value, seen_at_ms, read_seq, read_digest) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (record_key) DO UPDATE SET ",
        if_it_wins!("revision"),
        if_it_wins!("value"),
        if_it_wins!("seen_at_ms"),
        if_it_wins!("withdrawn"),
        "read_seq = excluded.read_seq, read_digest = excluded.read_digest"
    ))
    .bind(key)
    .bind(r.revision as i64)
    .bind((r.state == consent::State::Withdrawn) as i64)
    .bind(value)
    .bind(isp::now_ms())
    .bind(read_seq)
    .bind(read_digest);
    match conn {
        Some(conn) => query.execute(conn).await?,
        None => query.execute(pool).await?,
    };
    Ok(())
}

/// Consent records read once per batch: the sends, publishes or deliveries handled together
/// that rely on one record look it up once, while the batch is handled (so a withdrawal is
/// seen exactly as promptly as with a lookup each), instead of once each. Concurrent asks for
/// the same record wait for the one lookup.
#[derive(Default)]
pub struct ConsentReads {
    cells: Mutex<HashMap<(String, String), ReadOnce>>,
}

/// One record's lookup, shared by everyone in the batch who asks for it.
type ReadOnce = Arc<tokio::sync::OnceCell<Option<Verified>>>;

impl ConsentReads {
    /// As [`Ctx::consent_for`], each record read at most once in the life of `self`.
    pub async fn get(&self, ctx: &Ctx, tag: Option<&ConsentTag>) -> anyhow::Result<Option<Verified>> {
        let Some(tag) = tag.filter(|t| !t.consent_id.is_empty()) else { return Ok(None) };
        let cell = self
            .cells
            .lock()
            .expect("the consent reads lock is never poisoned")
            .entry((tag.recorded_by.clone(), tag.consent_id.clone()))
            .or_default()
            .clone();
        cell.get_or_try_init(|| ctx.consent_record(&tag.recorded_by, &tag.consent_id)).await.cloned()
    }
}

