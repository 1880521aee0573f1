//! Verification of the whole ledger: the chain from the first entry, the Merkle tree
//! recomputed from the entries, every stored checkpoint (its signature against the directory,
//! and its root against the recomputed tree) and, at depth, every entry's signed record.
//!
//! The ledger is read in ranges of `seq`, two per core, each in large chunks of whole rows;
//! each chunk's hashes (and signatures) are computed on a blocking thread while the next is
//! read. What depends on order (links, positions, the tree) is then checked in one pass, so
//! the first entry at fault is named exactly as a sequential reading would name it.

use std::sync::Arc;

use isp::{Directory, checkpoint::Checkpoint, merkle};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::{
    ledger::{self, Entry, EntryType},
    store::{Read, Store},
};

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub entries: u64,
    pub checkpoints: u64,
    pub first_bad: Option<Problem>,
    /// What the ledger recorded of the stream itself that someone must look into: positions
    /// it never saw (removed from the stream, a store lost), the stream recreated. The chain
    /// may be intact and these still mean records are missing.
    pub alerts: Vec<Alert>,
}

/// A `stream_gap` or `stream_reset` entry, as an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// The ledger entry that records it.
    pub seq: i64,
    pub entry_type: EntryType,
    pub what: String,
    pub recorded_at_ms: i64,
}

impl Alert {
    fn of(e: &Entry) -> Option<Alert> {
        let what = match e.entry_type {
            EntryType::StreamGap => format!(
                "STREAM GAP: stream positions {} to {} ({} messages) were gone from the stream before the ledger read them",
                e.stream_first, e.stream_seq, e.message_count
            ),
            EntryType::StreamReset => format!("STREAM RESET: {}", e.reason),
            _ => return None,
        };
        Some(Alert { seq: e.seq, entry_type: e.entry_type, what, recorded_at_ms: e.recorded_at_ms })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The ledger position where verification fails (0 when only a checkpoint is at fault).
    pub seq: i64,
    /// The tree size of the checkpoint that fails, if it is a checkpoint.
    pub checkpoint: Option<u64>,
    pub what: String,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// What [`verify_with`] checks beyond the chain, the tree and the checkpoints.
#[derive(Debug, Clone, Copy, Default)]
pub struct Depth {
    /// Re-verify every entry's signed header or event against the directory and its
    /// fields (one ed25519 verification per entry: the slow part).
    pub signatures: bool,
}

/// Full verification: chain, tree, checkpoints and, given a directory, every signature.
pub async fn verify(store: &Store, directory: Option<&Directory>) -> anyhow::Result<Report> {
    verify_with(store, directory, Depth { signatures: directory.is_some() }).await
}

/// Rows a reader fetches at once. Each range holds up to four chunks (one read, two waiting,
/// one being checked), two ranges per core: at 8,192 rows a verification took ~210 MB at its
/// peak on 2 cores, at 2,048 ~70 MB, and was as fast (200,000 entries, SQLite and PostgreSQL).
const CHUNK: i64 = 2048;

/// A chunk of rows with what could be computed of each without the others.
struct Checked {
    rows: Vec<Read>,
    /// Per row: whether its stored hash is its content's hash after its stored link.
    hash_ok: Vec<bool>,
    /// Per row: its Merkle leaf (of its stored hash).
    leaves: Vec<merkle::Hash>,
    /// Per row, at depth: what is wrong with its signed record.
    signed: Vec<Option<String>>,
}

fn check(rows: Vec<Read>, directory: Option<&Directory>, depth: Depth) -> Checked {
    let mut c = Checked { hash_ok: Vec::with_capacity(rows.len()), leaves: Vec::with_capacity(rows.len()), signed: Vec::with_capacity(rows.len()), rows: Vec::new() };
    for r in &rows {
        let (ok, leaf, signed) = match r {
            Read::Entry(e) => (
                e.hash_after(&e.prev_hash).as_slice() == e.hash.as_slice(),
                merkle::leaf_hash(&e.hash),
                directory.filter(|_| depth.signatures).and_then(|d| ledger::signed_mismatch(d, e)),
            ),
            Read::UnknownType { .. } => (false, [0; 32], None),
        };
        c.hash_ok.push(ok);
        c.leaves.push(leaf);
        c.signed.push(signed);
    }
    c.rows = rows;
    c
}

/// Reads entries with `after < seq <= until` in chunks and hands them on in order, each to be
/// checked on a blocking thread while the next is read.
async fn read_range(store: Store, after: i64, until: i64, directory: Option<Arc<Directory>>, depth: Depth, out: mpsc::Sender<Pending>) {
    let mut reader = store.range_reader();
    let mut cursor = after;
    while cursor < until {
        let rows = match reader.entries_between(cursor, until, CHUNK).await {
            Ok(rows) => rows,
            Err(e) => {
                let _ = out.send(tokio::task::spawn_blocking(move || Err(e))).await;
                return;
            }
        };
        let Some(last) = rows.last() else { return };
        cursor = match last {
            Read::Entry(e) => e.seq,
            Read::UnknownType { seq, .. } => *seq,
        };
        let directory = directory.clone();
        let checking = tokio::task::spawn_blocking(move || Ok(check(rows, directory.as_deref(), depth)));
        if out.send(checking).await.is_err() {
            return; // verification stopped at a problem
        }
    }
}

/// A chunk being checked.
type Pending = tokio::task::JoinHandle<anyhow::Result<Checked>>;

/// Recomputes the chain from the first entry and the Merkle tree from the entries, stopping
/// at the first entry whose content or link was altered, or where an entry is missing,
/// inserted or out of order; then checks every stored checkpoint (signature, given a
/// directory, and root) against the recomputed tree. A checkpoint that does not match means
/// the entries were rewritten consistently after it was signed; the first entry whose leaf
/// differs from the stored tree is then named when the stored tree still shows it.
pub async fn verify_with(store: &Store, directory: Option<&Directory>, depth: Depth) -> anyhow::Result<Report> {
    // The checkpoints first: each then covers entries the ledger held before it is read.
    let checkpoints: Vec<Checkpoint> = store.checkpoint_bodies().await?.iter().map(|b| serde_json::from_str(b)).collect::<Result<_, _>>()?;
    let mut chain = Chain::default();
    if let Some((low, high)) = store.seq_bounds().await? {
        // Two ranges per core: while one range's chunk is read (on PostgreSQL, by the server
        // on the same cores) another's is checked (200,000 entries: 3.3-3.4 s against 3.8-4.2 s
        // with one per core on PostgreSQL; no change on SQLite).
        let parts = (2 * std::thread::available_parallelism().map_or(1, |n| n.get())).clamp(2, 16) as i64;
        let span = high - (low - 1);
        let bounds: Vec<i64> = (0..=parts).map(|k| low - 1 + (span as i128 * k as i128 / parts as i128) as i64).collect();
        let shared = directory.filter(|_| depth.signatures).map(|d| Arc::new(d.clone()));
        let mut ranges = Vec::new();
        for w in bounds.windows(2).filter(|w| w[1] > w[0]) {
            let (tx, rx) = mpsc::channel(2);
            tokio::spawn(read_range(store.clone(), w[0], w[1], shared.clone(), depth, tx));
            ranges.push(rx);
        }
        for mut rx in ranges {
            while let Some(checking) = rx.recv().await {
                if let Some(problem) = chain.take(checking.await??) {
                    return Ok(Report { entries: chain.entries, checkpoints: 0, first_bad: Some(problem), alerts: chain.alerts });
                }
            }
        }
    }
    let Chain { entries, alerts, tree, .. } = chain;
    let count = checkpoints.len() as u64;
    for c in &checkpoints {
        let at = Some(c.tree_size);
        let fail = |what: String| Ok(Report { entries, checkpoints: count, first_bad: Some(Problem { seq: 0, checkpoint: at, what }), alerts: alerts.clone() });
        if let Some(d) = directory {
            if let Err(e) = c.verify(d) {
                return fail(format!("checkpoint at tree size {}: {e}", c.tree_size));
            }
        }
        if c.tree_size > tree.size() {
            return fail(format!("checkpoint at tree size {} covers more entries than the ledger holds ({}): entries were deleted", c.tree_size, tree.size()));
        }
        if c.root_bytes().ok() != Some(merkle::root(&tree, c.tree_size)) {
            let first_changed = first_changed_leaf(store, &tree, c.tree_size).await?;
            let what = format!("checkpoint at tree size {} does not match the entries: they were rewritten after it was signed", c.tree_size);
            return Ok(Report {
                entries,
                checkpoints: count,
                first_bad: Some(Problem { seq: first_changed.map_or(0, |i| i as i64 + 1), checkpoint: at, what }),
                alerts,
            });
        }
    }
    Ok(Report { entries, checkpoints: count, first_bad: None, alerts })
}

/// What depends on order: the chain as read so far.
struct Chain {
    prev: Vec<u8>,
    expected_seq: i64,
    last_stream_seq: i64,
    epoch: i64,
    entries: u64,
    alerts: Vec<Alert>,
    tree: merkle::MemoryTree,
}

impl Default for Chain {
    fn default() -> Chain {
        Chain {
            prev: ledger::GENESIS_HASH.to_vec(),
            expected_seq: 1,
            last_stream_seq: 0,
            epoch: 0,
            entries: 0,
            alerts: Vec::new(),
            tree: merkle::MemoryTree::default(),
        }
    }
}

impl Chain {
    /// Takes the next chunk in order; the first problem in it, if any.
    fn take(&mut self, c: Checked) -> Option<Problem> {
        for (((row, hash_ok), leaf), signed) in c.rows.into_iter().zip(c.hash_ok).zip(c.leaves).zip(c.signed) {
            self.entries += 1;
            let mut e = match row {
                Read::Entry(e) => e,
                Read::UnknownType { seq, stored } => {
                    // What was stored is anyone's text: repeated only when it is a short token.
                    let stored = isp::clear::shown(&stored, isp::clear::is_token);
                    return Some(Problem { seq, checkpoint: None, what: format!("its entry type {stored:?} is none the ledger records: its content was altered") });
                }
            };
            if e.entry_type == EntryType::StreamReset {
                // A new incarnation of the stream: its positions start again.
                self.last_stream_seq = -1;
                self.epoch = e.stream_epoch;
            }
            let problem = if e.seq != self.expected_seq {
                Some(format!("expected entry {} here: an entry was deleted or inserted", self.expected_seq))
            } else if e.prev_hash != self.prev {
                Some("its link to the previous entry is broken: an entry before it was removed, inserted or reordered".into())
            } else if !hash_ok {
                Some("its content was altered after it was recorded".into())
            } else if e.stream_seq <= self.last_stream_seq {
                Some("it is out of stream order".into())
            } else if self.epoch != 0 && e.stream_epoch != self.epoch {
                Some("it names another incarnation of the stream, with no reset recorded before it".into())
            } else {
                signed
            };
            if let Some(what) = problem {
                return Some(Problem { seq: e.seq, checkpoint: None, what });
            }
            if let Some(alert) = Alert::of(&e) {
                self.alerts.push(alert);
            }
            self.tree.push(leaf);
            self.epoch = e.stream_epoch;
            self.prev = std::mem::take(&mut e.hash);
            self.expected_seq += 1;
            self.last_stream_seq = e.stream_seq;
        }
        None
    }
}

/// The first leaf (0-based) below `size` where the recomputed tree and the stored one differ.
async fn first_changed_leaf(store: &Store, tree: &merkle::MemoryTree, size: u64) -> anyhow::Result<Option<u64>> {
    use merkle::Nodes as _;
    for (idx, stored) in store.stored_leaves(size).await? {
        if stored.as_slice() != tree.perfect(0, idx as u64).as_slice() {
            return Ok(Some(idx as u64));
        }
    }
    Ok(None)
}
