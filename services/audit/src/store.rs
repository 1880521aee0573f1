//! The ledger's own tables (`ledger`, `merkle_node`, `ledger_cursor`, `ledger_pending`, and
//! the `checkpoint` rows verification reads) over concrete backends: PostgreSQL with its native
//! arrays (a batch of entries is one `INSERT ... SELECT FROM UNNEST`, a list of ids one array
//! parameter), SQLite with its own connection handling (write transactions begin IMMEDIATE, so
//! a writer never fails to upgrade a read lock) and cached prepared statements (statements of
//! a few fixed shapes). The rest of the service reads through the `Any` pool; only here are the
//! ledger's rows written, and here alone is their column list written out for writing.
//!
//! Migrations stay where they were (run on the `Any` pool by [`crate::open_ledger`]): the
//! tables are those every earlier version made, so nothing moves on upgrade.

use std::{
    collections::{BTreeMap, BTreeSet},
    str::FromStr as _,
    time::Duration,
};

use anyhow::Context as _;
use isp::merkle::{self, Hash};
use runtime::db::Cells;
use sqlx::{
    PgPool, Postgres, Row as _, Sqlite, SqlitePool,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::{
    intake::{Aggregate, Intake},
    ledger::{self, Entry, EntryType},
    tree,
};

/// The ledger's database, on the engine its URL names.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A write transaction of either engine.
enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// Runs `$body` with `$c` bound to the engine's own connection (or pool): the same SQL text,
/// type-checked for each engine.
macro_rules! on {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

macro_rules! on_pool {
    ($store:expr, $c:ident => $body:expr) => {
        match $store {
            Store::Sqlite($c) => $body,
            Store::Postgres($c) => $body,
        }
    };
}

/// Reads a whole entry from a row of [`ledger::COLUMNS`], by position, with the row's own
/// getter (`try_get` for sqlx, `get` for rusqlite).
macro_rules! entry_of {
    ($r:expr, $entry_type:expr, $get:ident) => {{
        let r = $r;
        Entry {
            seq: r.$get(0)?,
            stream_seq: r.$get(1)?,
            entry_type: $entry_type,
            entry_id: r.$get(3)?,
            recorded_by: r.$get(4)?,
            sender: r.$get(5)?,
            recipient: r.$get(6)?,
            kind: r.$get(7)?,
            purpose: r.$get(8)?,
            lawful_basis: r.$get(9)?,
            consent_id: r.$get(10)?,
            consent_state: r.$get(11)?,
            risk: r.$get(12)?,
            subject_ref: r.$get(13)?,
            case_ref: r.$get(14)?,
            categories: r.$get(15)?,
            forbidden: r.$get(16)?,
            policy_version: r.$get(17)?,
            rule: r.$get(18)?,
            reason: r.$get(19)?,
            without_consent: { let v: i64 = r.$get(20)?; v != 0 },
            in_reply_to: r.$get(21)?,
            staff_id: r.$get(22)?,
            occurred_at_ms: r.$get(23)?,
            recorded_at_ms: r.$get(24)?,
            verified: { let v: i64 = r.$get(25)?; v != 0 },
            stream_epoch: r.$get(26)?,
            stream_first: r.$get(27)?,
            message_count: r.$get(28)?,
            subject: r.$get(29)?,
            signed: r.$get(30)?,
            prev_hash: r.$get(31)?,
            hash: r.$get(32)?,
        }
    }};
}

/// A ledger row as read: an entry, or a row whose entry type is none the ledger records (a
/// row changed by hand), which verification names rather than failing on.
// Nearly every row is an entry: boxing it would cost an allocation a row.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Read {
    Entry(Entry),
    UnknownType { seq: i64, stored: String },
}

/// Rows per multi-row statement on SQLite: a batch is cut into these sizes, largest first, so
/// only these few statements are ever prepared (and each is cached on its connection).
const SQLITE_ENTRY_ROWS: [usize; 4] = [64, 16, 4, 1];
const SQLITE_NODE_ROWS: [usize; 5] = [256, 64, 16, 4, 1];

/// Connections of a SQLite store: one writes at a time (IMMEDIATE transactions), the others
/// let a verification read the ledger in parallel ranges while it does.
const SQLITE_CONNECTIONS: u32 = 3;

/// What the intake's `ledger_pending` rows are read as.
type PendingRow = (String, String, i64, i64, i64, i64, Vec<u8>, i64);

impl Store {
    /// Connects to the ledger's database (migrated already: see [`crate::open_ledger`]).
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        if runtime::db::is_sqlite(url) {
            anyhow::ensure!(
                !url.contains(":memory:"),
                "the ledger needs a database file or server: an in-memory SQLite database is another database on each connection"
            );
            let options = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("reading the database URL {}", runtime::config::redact_url(url)))?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                // Rows come from SQLite's thread in runs this long, not a handful at a time.
                .row_buffer_size(4096)
                .statement_cache_capacity(64);
            let pool = SqlitePoolOptions::new()
                .max_connections(SQLITE_CONNECTIONS)
                .acquire_timeout(Duration::from_secs(30))
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .with_context(|| format!("connecting to the ledger database {}", runtime::config::redact_url(url)))?;
            Ok(Store::Sqlite(pool))
        } else {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
                .await
                .with_context(|| format!("connecting to the ledger database {}", runtime::config::redact_url(url)))?;
            Ok(Store::Postgres(pool))
        }
    }

    /// Closes its connections.
    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }

    /// The store of the database an `Any` pool is open on.
    pub async fn of(pool: &sqlx::AnyPool) -> anyhow::Result<Store> {
        Store::connect(pool.connect_options().database_url.as_str()).await
    }

    async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Store::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Store::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Where the ledger is on the stream, as last committed; a ledger from before the intake
    /// was kept starts after its last entry.
    pub async fn load_intake(&self) -> Result<Intake, sqlx::Error> {
        const CURSOR: &str = "SELECT stream_epoch, stream_seq FROM ledger_cursor WHERE id = 1";
        const LAST: &str = "SELECT stream_epoch, stream_seq FROM ledger ORDER BY seq DESC LIMIT 1";
        const PENDING: &str = "SELECT subject, reason, stream_epoch, first_seq, last_seq, messages, digest, first_at_ms FROM ledger_pending";
        type Position = Option<(i64, i64)>;
        let (cursor, last, pending): (Position, Position, Vec<PendingRow>) = on_pool!(self, p => {
            let cursor = sqlx::query_as(CURSOR).fetch_optional(p).await?;
            let last = if cursor.is_none() { sqlx::query_as(LAST).fetch_optional(p).await? } else { None };
            (cursor, last, sqlx::query_as(PENDING).fetch_all(p).await?)
        });
        let (epoch, seq) = cursor.or(last).map_or((0, 0), |(epoch, seq)| (epoch, seq.max(0) as u64));
        let pending = pending
            .into_iter()
            .map(|(subject, reason, epoch, first_seq, last_seq, messages, digest, first_at_ms)| {
                ((subject, reason), Aggregate { epoch, first_seq: first_seq as u64, last_seq: last_seq as u64, messages, digest, first_at_ms })
            })
            .collect();
        Ok(Intake { epoch, seq, pending })
    }

    /// Commits a batch: its entries (redeliveries of positions held dropped, copies of
    /// recorded envelopes and events told apart as replays) and, given, the intake after
    /// them, in one transaction. Returns the entries appended.
    pub async fn commit(&self, entries: Vec<Entry>, intake: Option<&Intake>) -> Result<usize, sqlx::Error> {
        let mut tx = self.begin().await?;
        let n = append(&mut tx, entries).await?;
        if let Some(intake) = intake {
            store_intake(&mut tx, intake).await?;
        }
        match tx {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(n)
    }

    /// Appends entries in order (see [`Store::commit`]) in a transaction of their own.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<usize, sqlx::Error> {
        self.commit(entries, None).await
    }

    /// Builds the Merkle nodes of entries recorded before the tree existed (a ledger made by
    /// an earlier version), so every entry is a leaf. A no-op on an up-to-date ledger.
    pub async fn backfill_tree(&self) -> Result<u64, sqlx::Error> {
        let mut tx = self.begin().await?;
        let stored = stored_size(&mut tx).await?;
        let hashes: Vec<Vec<u8>> = on!(&mut tx, c => sqlx::query_scalar("SELECT hash FROM ledger WHERE seq > $1 ORDER BY seq").bind(stored as i64).fetch_all(c).await?);
        let leaves: Vec<Hash> = hashes.iter().map(|h| merkle::leaf_hash(h)).collect();
        append_leaves(&mut tx, stored, &leaves).await?;
        match tx {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(leaves.len() as u64)
    }

    /// The lowest and highest `seq` in the ledger (None when it is empty).
    pub async fn seq_bounds(&self) -> Result<Option<(i64, i64)>, sqlx::Error> {
        let (low, high): (Option<i64>, Option<i64>) = on_pool!(self, p => sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM ledger").fetch_one(p).await?);
        Ok(low.zip(high))
    }

    /// A reader of whole entries in ledger order (for verification), on a connection of its
    /// own where that is cheaper.
    pub fn range_reader(&self) -> RangeReader {
        match self {
            Store::Sqlite(p) => RangeReader::Sqlite { path: p.connect_options().get_filename().to_owned(), conn: None },
            Store::Postgres(p) => RangeReader::Postgres(p.clone()),
        }
    }

    /// The stored checkpoints' JSON bodies, smallest tree first.
    pub async fn checkpoint_bodies(&self) -> Result<Vec<String>, sqlx::Error> {
        on_pool!(self, p => sqlx::query_scalar("SELECT body FROM checkpoint ORDER BY tree_size").fetch_all(p).await)
    }

    /// The stored leaves (index, hash) below `size`, in order.
    pub async fn stored_leaves(&self, size: u64) -> Result<Vec<(i64, Vec<u8>)>, sqlx::Error> {
        on_pool!(self, p => sqlx::query_as("SELECT idx, hash FROM merkle_node WHERE level = 0 AND idx < $1 ORDER BY idx").bind(size as i64).fetch_all(p).await)
    }
}

/// Reads whole entries in ledger order. On SQLite it is a read-only connection of its own
/// through rusqlite, whose rows are read in place: sqlx's driver copies every column of every
/// row with SQLite's allocator (under its lock) on its worker thread, and the copies are freed
/// on another thread, which was most of a verification's CPU (malloc, free and their locks
/// were ~45 % of its samples in `perf`).
pub enum RangeReader {
    Sqlite { path: std::path::PathBuf, conn: Option<rusqlite::Connection> },
    Postgres(PgPool),
}

impl RangeReader {
    /// At most `limit` whole entries with `after < seq <= until`, in ledger order.
    pub async fn entries_between(&mut self, after: i64, until: i64, limit: i64) -> anyhow::Result<Vec<Read>> {
        match self {
            RangeReader::Postgres(p) => {
                let rows = sqlx::query(entries_between_sql()).bind(after).bind(until).bind(limit).fetch_all(&*p).await?;
                let read = |r: &sqlx::postgres::PgRow| -> Result<Read, sqlx::Error> {
                    let stored: &str = r.try_get(2)?;
                    Ok(match EntryType::from_str(stored) {
                        Ok(entry_type) => Read::Entry(entry_of!(r, entry_type, try_get)),
                        Err(_) => Read::UnknownType { seq: r.try_get(0)?, stored: stored.to_owned() },
                    })
                };
                Ok(rows.iter().map(read).collect::<Result<_, _>>()?)
            }
            RangeReader::Sqlite { path, conn } => {
                let (path, held) = (path.clone(), conn.take());
                let (held, rows) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                    let c = match held {
                        Some(c) => c,
                        None => runtime::db::open_read_only(&path).context("opening the ledger database to read")?,
                    };
                    let rows = sqlite_entries_between(&c, after, until, limit)?;
                    Ok((c, rows))
                })
                .await??;
                *conn = Some(held);
                Ok(rows)
            }
        }
    }
}

fn sqlite_entries_between(c: &rusqlite::Connection, after: i64, until: i64, limit: i64) -> rusqlite::Result<Vec<Read>> {
    let mut statement = c.prepare_cached(entries_between_sql())?;
    let mut rows = statement.query((after, until, limit))?;
    let mut out = Vec::with_capacity(usize::try_from(limit).unwrap_or(0).min(1 << 16));
    while let Some(r) = rows.next()? {
        let r = Cells(r);
        let stored = r.0.get_ref(2)?.as_str()?;
        out.push(match EntryType::from_str(stored) {
            Ok(entry_type) => Read::Entry(entry_of!(&r, entry_type, get)),
            Err(_) => Read::UnknownType { seq: r.get(0)?, stored: stored.to_owned() },
        });
    }
    Ok(out)
}

fn entries_between_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| format!("SELECT {} FROM ledger WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3", ledger::COLUMNS))
}

/// Appends entries in order after the last, skipping the stream positions the ledger holds
/// already (redeliveries) and marking copies of recorded records as replays; grows the tree.
async fn append(tx: &mut Tx, entries: Vec<Entry>) -> Result<usize, sqlx::Error> {
    if entries.is_empty() {
        return Ok(0);
    }
    let held = held_positions(tx, &entries).await?;
    let mut seen = BTreeSet::new();
    let mut fresh: Vec<Entry> = entries.into_iter().filter(|e| !held.contains(&(e.stream_epoch, e.stream_seq)) && seen.insert((e.stream_epoch, e.stream_seq))).collect();
    let known = recorded_ids(tx, &ledger::replay_candidates(&fresh)).await?;
    ledger::mark_replays(&mut fresh, known);
    let last: Option<(i64, Vec<u8>)> = on!(tx, c => sqlx::query_as("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetch_optional(c).await?);
    let leaves = ledger::link(last, &mut fresh);
    insert_entries(tx, &fresh).await?;
    let stored = stored_size(tx).await?;
    append_leaves(tx, stored, &leaves).await?;
    Ok(fresh.len())
}

/// The stream positions (epoch, seq) of `entries` the ledger holds already.
async fn held_positions(tx: &mut Tx, entries: &[Entry]) -> Result<BTreeSet<(i64, i64)>, sqlx::Error> {
    let mut ranges: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for e in entries {
        let r = ranges.entry(e.stream_epoch).or_insert((e.stream_seq, e.stream_seq));
        *r = (r.0.min(e.stream_seq), r.1.max(e.stream_seq));
    }
    let mut held = BTreeSet::new();
    for (epoch, (low, high)) in ranges {
        const SQL: &str = "SELECT stream_seq FROM ledger WHERE stream_epoch = $1 AND stream_seq BETWEEN $2 AND $3";
        let seqs: Vec<i64> = on!(tx, c => sqlx::query_scalar(SQL).bind(epoch).bind(low).bind(high).fetch_all(c).await?);
        held.extend(seqs.into_iter().map(|s| (epoch, s)));
    }
    Ok(held)
}

/// Which of `ids` the ledger records as the first copy of a verified record.
async fn recorded_ids(tx: &mut Tx, ids: &[&str]) -> Result<BTreeSet<String>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(BTreeSet::new());
    }
    let not_first = [EntryType::Replay, EntryType::Misroute, EntryType::Unverifiable].map(EntryType::as_str);
    let found: Vec<String> = match tx {
        Tx::Sqlite(t) => {
            const SQL: &str = "SELECT entry_id FROM ledger WHERE entry_id IN (SELECT value FROM json_each($1)) \
                AND entry_type NOT IN ($2, $3, $4) AND verified = 1";
            let list = serde_json::to_string(ids).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sqlx::query_scalar(SQL).bind(list).bind(not_first[0]).bind(not_first[1]).bind(not_first[2]).fetch_all(&mut **t).await?
        }
        Tx::Postgres(t) => {
            const SQL: &str = "SELECT entry_id FROM ledger WHERE entry_id = ANY($1) AND entry_type NOT IN ($2, $3, $4) AND verified = 1";
            sqlx::query_scalar(SQL).bind(ids).bind(not_first[0]).bind(not_first[1]).bind(not_first[2]).fetch_all(&mut **t).await?
        }
    };
    Ok(found.into_iter().collect())
}

/// The one place the ledger's rows are written.
async fn insert_entries(tx: &mut Tx, entries: &[Entry]) -> Result<(), sqlx::Error> {
    match tx {
        Tx::Sqlite(t) => {
            let mut rest = entries;
            for size in sizes(entries.len(), &SQLITE_ENTRY_ROWS) {
                let (chunk, after) = rest.split_at(size);
                rest = after;
                let sql = insert_sql(size);
                let mut q = sqlx::query(sql);
                for e in chunk {
                    q = q
                        .bind(e.seq)
                        .bind(e.stream_seq)
                        .bind(e.entry_type.as_str())
                        .bind(e.entry_id.as_str())
                        .bind(e.recorded_by.as_str())
                        .bind(e.sender.as_str())
                        .bind(e.recipient.as_str())
                        .bind(e.kind.as_str())
                        .bind(e.purpose.as_str())
                        .bind(e.lawful_basis.as_str())
                        .bind(e.consent_id.as_str())
                        .bind(e.consent_state.as_str())
                        .bind(e.risk.as_str())
                        .bind(e.subject_ref.as_str())
                        .bind(e.case_ref.as_str())
                        .bind(e.categories.as_str())
                        .bind(e.forbidden.as_str())
                        .bind(e.policy_version.as_str())
                        .bind(e.rule.as_str())
                        .bind(e.reason.as_str())
                        .bind(e.without_consent as i64)
                        .bind(e.in_reply_to.as_str())
                        .bind(e.staff_id.as_str())
                        .bind(e.occurred_at_ms)
                        .bind(e.recorded_at_ms)
                        .bind(e.verified as i64)
                        .bind(e.stream_epoch)
                        .bind(e.stream_first)
                        .bind(e.message_count)
                        .bind(e.subject.as_str())
                        .bind(e.signed.as_slice())
                        .bind(e.prev_hash.as_slice())
                        .bind(e.hash.as_slice());
                }
                q.execute(&mut **t).await?;
            }
        }
        Tx::Postgres(t) => {
            // One statement: a column at a time, as arrays.
            let ints = |f: fn(&Entry) -> i64| entries.iter().map(f).collect::<Vec<i64>>();
            let texts = |f: for<'a> fn(&'a Entry) -> &'a str| entries.iter().map(f).collect::<Vec<&str>>();
            let bytes = |f: for<'a> fn(&'a Entry) -> &'a [u8]| entries.iter().map(f).collect::<Vec<&[u8]>>();
            sqlx::query(insert_unnest_sql())
                .bind(ints(|e| e.seq))
                .bind(ints(|e| e.stream_seq))
                .bind(texts(|e| e.entry_type.as_str()))
                .bind(texts(|e| &e.entry_id))
                .bind(texts(|e| &e.recorded_by))
                .bind(texts(|e| &e.sender))
                .bind(texts(|e| &e.recipient))
                .bind(texts(|e| &e.kind))
                .bind(texts(|e| &e.purpose))
                .bind(texts(|e| &e.lawful_basis))
                .bind(texts(|e| &e.consent_id))
                .bind(texts(|e| &e.consent_state))
                .bind(texts(|e| &e.risk))
                .bind(texts(|e| &e.subject_ref))
                .bind(texts(|e| &e.case_ref))
                .bind(texts(|e| &e.categories))
                .bind(texts(|e| &e.forbidden))
                .bind(texts(|e| &e.policy_version))
                .bind(texts(|e| &e.rule))
                .bind(texts(|e| &e.reason))
                .bind(ints(|e| e.without_consent as i64))
                .bind(texts(|e| &e.in_reply_to))
                .bind(texts(|e| &e.staff_id))
                .bind(ints(|e| e.occurred_at_ms))
                .bind(ints(|e| e.recorded_at_ms))
                .bind(ints(|e| e.verified as i64))
                .bind(ints(|e| e.stream_epoch))
                .bind(ints(|e| e.stream_first))
                .bind(ints(|e| e.message_count))
                .bind(texts(|e| &e.subject))
                .bind(bytes(|e| &e.signed))
                .bind(bytes(|e| &e.prev_hash))
                .bind(bytes(|e| &e.hash))
                .execute(&mut **t)
                .await?;
        }
    }
    Ok(())
}

/// The column types of [`ledger::COLUMNS`], in order (booleans are BIGINT 0/1 in every
/// version's schema).
const COLUMN_TYPES: [&str; 33] = [
    "BIGINT", "BIGINT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT",
    "TEXT", "TEXT", "TEXT", "TEXT", "BIGINT", "TEXT", "TEXT", "BIGINT", "BIGINT", "BIGINT", "BIGINT", "BIGINT", "BIGINT", "TEXT", "BYTEA",
    "BYTEA", "BYTEA",
];

fn insert_unnest_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let arrays = COLUMN_TYPES.iter().enumerate().map(|(i, t)| format!("${}::{t}[]", i + 1)).collect::<Vec<_>>().join(", ");
        format!("INSERT INTO ledger ({}) SELECT * FROM UNNEST({arrays})", ledger::COLUMNS)
    })
}

/// The SQLite insert of `rows` entries (one of [`SQLITE_ENTRY_ROWS`]).
fn insert_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<(usize, String)>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        SQLITE_ENTRY_ROWS
            .iter()
            .map(|&n| (n, format!("INSERT INTO ledger ({}) VALUES {}", ledger::COLUMNS, runtime::db::placeholders(true, n, COLUMN_TYPES.len()))))
            .collect()
    });
    all.iter().find(|(n, _)| *n == rows).map(|(_, s)| s.as_str()).expect("a size of SQLITE_ENTRY_ROWS")
}

/// `n` cut into `allowed` sizes (largest first; the last allowed size is 1).
fn sizes(mut n: usize, allowed: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    for &size in allowed {
        while n >= size {
            out.push(size);
            n -= size;
        }
    }
    out
}

/// The number of leaves stored.
async fn stored_size(tx: &mut Tx) -> Result<u64, sqlx::Error> {
    let max: Option<i64> = on!(tx, c => sqlx::query_scalar("SELECT MAX(idx) FROM merkle_node WHERE level = 0").fetch_one(c).await?);
    Ok(max.map_or(0, |m| m as u64 + 1))
}

/// Appends leaves to a stored tree of `n` leaves: reads its right edge (by primary key), and
/// writes each leaf and each perfect subtree it completes.
async fn append_leaves(tx: &mut Tx, n: u64, leaves: &[Hash]) -> Result<(), sqlx::Error> {
    if leaves.is_empty() {
        return Ok(());
    }
    let wanted = tree::right_edge(n);
    let (levels, idxs): (Vec<i64>, Vec<i64>) = wanted.iter().map(|(l, i)| (*l as i64, *i as i64)).unzip();
    let rows: Vec<(i64, i64, Vec<u8>)> = match tx {
        Tx::Sqlite(t) => {
            const SQL: &str = "SELECT level, idx, hash FROM merkle_node WHERE (level, idx) IN \
                (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each($1))";
            let pairs: Vec<[i64; 2]> = levels.iter().zip(&idxs).map(|(l, i)| [*l, *i]).collect();
            let list = serde_json::to_string(&pairs).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sqlx::query_as(SQL).bind(list).fetch_all(&mut **t).await?
        }
        Tx::Postgres(t) => {
            const SQL: &str = "SELECT level, idx, hash FROM merkle_node WHERE (level, idx) IN (SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[]))";
            sqlx::query_as(SQL).bind(&levels).bind(&idxs).fetch_all(&mut **t).await?
        }
    };
    let edge = rows.into_iter().map(|(level, idx, hash)| (level as u32, (idx as u64, Hash::try_from(hash.as_slice()).unwrap_or([0; 32])))).collect();
    let nodes = tree::grow(n, edge, leaves);
    match tx {
        Tx::Sqlite(t) => {
            let mut rest = nodes.as_slice();
            for size in sizes(nodes.len(), &SQLITE_NODE_ROWS) {
                let (chunk, after) = rest.split_at(size);
                rest = after;
                let sql = format!("INSERT INTO merkle_node (level, idx, hash) VALUES {}", runtime::db::placeholders(true, size, 3));
                let mut q = sqlx::query(&sql);
                for (level, idx, hash) in chunk {
                    q = q.bind(*level as i64).bind(*idx as i64).bind(hash.as_slice());
                }
                q.execute(&mut **t).await?;
            }
        }
        Tx::Postgres(t) => {
            const SQL: &str = "INSERT INTO merkle_node (level, idx, hash) SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BYTEA[])";
            let levels: Vec<i64> = nodes.iter().map(|n| n.0 as i64).collect();
            let idxs: Vec<i64> = nodes.iter().map(|n| n.1 as i64).collect();
            let hashes: Vec<&[u8]> = nodes.iter().map(|n| n.2.as_slice()).collect();
            sqlx::query(SQL).bind(levels).bind(idxs).bind(hashes).execute(&mut **t).await?;
        }
    }
    Ok(())
}

/// Stores the intake, in the transaction of the entries it follows.
async fn store_intake(tx: &mut Tx, intake: &Intake) -> Result<(), sqlx::Error> {
    const CURSOR: &str = "INSERT INTO ledger_cursor (id, stream_epoch, stream_seq) VALUES (1, $1, $2) \
        ON CONFLICT (id) DO UPDATE SET stream_epoch = excluded.stream_epoch, stream_seq = excluded.stream_seq";
    const PENDING: &str =
        "INSERT INTO ledger_pending (subject, reason, stream_epoch, first_seq, last_seq, messages, digest, first_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    on!(tx, c => sqlx::query(CURSOR).bind(intake.epoch).bind(intake.seq as i64).execute(&mut *c).await.map(drop)?);
    on!(tx, c => sqlx::query("DELETE FROM ledger_pending").execute(&mut *c).await.map(drop)?);
    for ((subject, reason), a) in &intake.pending {
        on!(tx, c => sqlx::query(PENDING)
            .bind(subject.as_str())
            .bind(reason.as_str())
            .bind(a.epoch)
            .bind(a.first_seq as i64)
            .bind(a.last_seq as i64)
            .bind(a.messages)
            .bind(a.digest.as_slice())
            .bind(a.first_at_ms)
            .execute(&mut *c)
            .await
            .map(drop)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_cut_into_the_few_statement_sizes() {
        assert_eq!(sizes(512, &SQLITE_ENTRY_ROWS), [64; 8]);
        assert_eq!(sizes(87, &SQLITE_ENTRY_ROWS), [64, 16, 4, 1, 1, 1]);
        assert_eq!(sizes(0, &SQLITE_NODE_ROWS), Vec::<usize>::new());
    }

    /// A SQLite ledger in a temporary directory holding `n` entries, with a pool to alter it.
    async fn sqlite_ledger_of(n: u64) -> (tempfile::TempDir, sqlx::AnyPool, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = runtime::config::sqlite_url(dir.path(), "audit");
        let pool = crate::open_ledger(&url).await.unwrap();
        let store = Store::connect(&url).await.unwrap();
        store.append((1..=n).map(|seq| ledger::unclassifiable("hub.v1.msg.x.y.z", b"junk", seq, "test")).collect()).await.unwrap();
        (dir, pool, store)
    }

    /// Verification reads SQLite through rusqlite, not sqlx: a cell whose type an operator
    /// changed is still read as sqlx read it, so a rewrite is named as an altered entry, not
    /// turned into a failure to read.
    #[tokio::test]
    async fn verification_reads_a_retyped_cell_and_names_the_entry_rewritten_in_it() {
        let (_dir, pool, store) = sqlite_ledger_of(20).await;
        let mut reader = store.range_reader();
        let read = reader.entries_between(5, 20, 4).await.unwrap();
        let seqs: Vec<i64> = read.iter().map(|r| match r { Read::Entry(e) => e.seq, Read::UnknownType { seq, .. } => *seq }).collect();
        assert_eq!(seqs, [6, 7, 8, 9], "a range is read in order, from after its start, at most its limit");
        let report = crate::verify::verify(&store, None).await.unwrap();
        assert!(report.ok() && report.entries == 20, "{report:?}");

        // The same bytes stored as text: the same content, the ledger still verifies.
        sqlx::query("UPDATE ledger SET signed = CAST(signed AS TEXT), hash = CAST(hash AS TEXT) WHERE seq = 7").execute(&pool).await.unwrap();
        let typed: (String,) = sqlx::query_as("SELECT typeof(hash) FROM ledger WHERE seq = 7").fetch_one(&pool).await.unwrap();
        assert_eq!(typed.0, "text");
        let report = crate::verify::verify(&store, None).await.unwrap();
        assert!(report.ok(), "{report:?}");

        // Other bytes, as text: entry 12 is named as altered.
        sqlx::query("UPDATE ledger SET signed = 'rewritten' WHERE seq = 12").execute(&pool).await.unwrap();
        let report = crate::verify::verify(&store, None).await.unwrap();
        let bad = report.first_bad.expect("the rewrite is found");
        assert_eq!(bad.seq, 12);
        assert!(bad.what.contains("altered"), "{}", bad.what);
    }

    /// An entry type rewritten as free text is named as an alteration at its entry without
    /// being repeated in the report (which reaches the IG console, the CLI and the logs); a
    /// token-shaped one is shown, so the IG lead sees what was written.
    #[tokio::test]
    async fn an_entry_type_rewritten_as_free_text_is_named_but_not_repeated() {
        let (_dir, pool, store) = sqlite_ledger_of(10).await;
        sqlx::query("UPDATE ledger SET entry_type = 'Jane Doe, 4 Mill Lane' WHERE seq = 6").execute(&pool).await.unwrap();
        let bad = crate::verify::verify(&store, None).await.unwrap().first_bad.expect("the rewrite is found");
        assert_eq!(bad.seq, 6);
        assert!(bad.what.contains("altered") && !bad.what.contains("Jane") && !bad.what.contains("Mill"), "{}", bad.what);
        sqlx::query("UPDATE ledger SET entry_type = 'renamed_kind' WHERE seq = 6").execute(&pool).await.unwrap();
        let bad = crate::verify::verify(&store, None).await.unwrap().first_bad.expect("the rewrite is found");
        assert!(bad.seq == 6 && bad.what.contains("\"renamed_kind\""), "{}", bad.what);
    }
}
