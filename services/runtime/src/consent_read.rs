//! Reading consent records ([`crate::consent`] has the rest: recording, withdrawing,
//! republishing, the routes): this agency's own from its database, another's from the
//! partnership's bucket, never stepping back from what this service saw before; and
//! [`ConsentReads`], a batch's reads of each record once. The outbox and the inbox check
//! consent through here without importing the routes that write it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_nats::jetstream::stream::DirectGetErrorKind;
use isp::consent::{self, Verified};
use proto::v1::ConsentTag;

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
            let query = sqlx::query_as("SELECT value FROM consents WHERE record_key = $1 ORDER BY revision").bind(consent::key(owner, consent_id));
            let rows: Vec<(Vec<u8>,)> = match tx {
                Some(tx) => query.fetch_all(&mut **tx).await?,
                None => query.fetch_all(&self.pool).await?,
            };
            return Ok(consent::current(&self.isp().directory, owner, consent_id, rows.iter().map(|r| r.0.as_slice())).0);
        }
        let key = consent::key(owner, consent_id);
        let subject = format!("$KV.{CONSENT_BUCKET}.{key}");
        let mut values = Vec::new();
        let mut next = 1;
        loop {
            match self.consent_stream.direct_get_next_for_subject(subject.as_str(), Some(next)).await {
                Ok(message) => {
                    next = message.sequence + 1;
                    if !message.payload.is_empty() {
                        values.push(message.payload);
                    }
                }
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(anyhow::Error::new(e).context("reading the consent bucket")),
            }
        }
        // What this service saw of the record before counts with what the bucket holds now,
        // so the record never goes back (see [`remember`]).
        let mut conn = tx.map(|tx| &mut **tx);
        let seen = seen_value(conn.as_deref_mut(), &self.pool, &key).await?;
        let all: Vec<&[u8]> = seen.iter().map(Vec::as_slice).chain(values.iter().map(|v| v.as_ref())).collect();
        let (current, rejected) = consent::current_index(&self.isp().directory, owner, consent_id, all.iter().copied());
        if rejected > 0 {
            tracing::warn!(owner, consent_id, rejected, "values in the consent bucket not signed by the record's owner were ignored");
        }
        let Some((index, current)) = current else { return Ok(None) };
        // Index 0 is what was seen before, when there is one: nothing new to keep.
        if seen.is_none() || index > 0 {
            remember(conn, &self.pool, &key, &current, all[index]).await?;
        }
        Ok(Some(current))
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

/// The signed revision of another agency's record this service saw last (the highest, or
/// a withdrawal), if any.
async fn seen_value(conn: Option<&mut sqlx::AnyConnection>, pool: &sqlx::AnyPool, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let query = sqlx::query_as::<_, (Vec<u8>,)>("SELECT value FROM consent_seen WHERE record_key = $1").bind(key);
    let row = match conn {
        Some(conn) => query.fetch_optional(conn).await?,
        None => query.fetch_optional(pool).await?,
    };
    Ok(row.map(|r| r.0))
}

/// Keeps `value` (the verified revision `record` of key `key`) as what this service has seen
/// of the record, durably, unless what it saw already wins: a withdrawal is never replaced,
/// and nor is a revision by a lower one (checked in the statement, so readers racing each
/// other cannot step it back either). A broker that republishes an old "given" until the
/// withdrawal falls out of the bucket's history, or purges the key, changes nothing here.
async fn remember(conn: Option<&mut sqlx::AnyConnection>, pool: &sqlx::AnyPool, key: &str, record: &Verified, value: &[u8]) -> anyhow::Result<()> {
    let r = record.record();
    let query = sqlx::query(
        "INSERT INTO consent_seen (record_key, revision, withdrawn, value, seen_at_ms) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (record_key) DO UPDATE SET revision = excluded.revision, withdrawn = excluded.withdrawn, value = excluded.value, \
         seen_at_ms = excluded.seen_at_ms \
         WHERE consent_seen.withdrawn = 0 AND (excluded.withdrawn = 1 OR excluded.revision > consent_seen.revision)",
    )
    .bind(key)
    .bind(r.revision as i64)
    .bind((r.state == consent::State::Withdrawn) as i64)
    .bind(value)
    .bind(isp::now_ms());
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

