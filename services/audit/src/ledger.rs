//! The hash-chained disclosure ledger.
//!
//! Each entry's hash is SHA-256 over a domain tag, the previous entry's hash and the entry's
//! content in a fixed, length-prefixed encoding. Changing any stored field, deleting,
//! inserting or reordering an entry breaks the chain at that entry, and [`verify`] names it.

use std::collections::BTreeSet;

use futures::TryStreamExt;
use isp::{Directory, Kind, kind, policy, seal};
use prost::Message;
use proto::v1::{Envelope, EventKind, RiskLevel};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row, any::AnyRow};

use isp::merkle;
use runtime::{Tx, transport};

use crate::tree;

/// What a ledger entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: i64,
    pub stream_seq: i64,
    /// disclosure, near_miss, rejected, violation, consent_changed, accessed, unverifiable;
    /// replay and misroute (a further copy of a recorded envelope or event, or one on a
    /// subject its signed header does not name); stream_gap and stream_reset (see
    /// [`EntryType`]).
    pub entry_type: String,
    pub entry_id: String,
    pub recorded_by: String,
    pub sender: String,
    pub recipient: String,
    pub kind: String,
    pub purpose: String,
    pub lawful_basis: String,
    pub consent_id: String,
    pub consent_state: String,
    pub risk: String,
    pub subject_ref: String,
    pub case_ref: String,
    pub categories: String,
    pub forbidden: String,
    pub policy_version: String,
    pub rule: String,
    pub reason: String,
    pub without_consent: bool,
    pub in_reply_to: String,
    /// For an `accessed` entry: the staff member (login id) at `sender`; empty otherwise.
    #[serde(default)]
    pub staff_id: String,
    pub occurred_at_ms: i64,
    pub recorded_at_ms: i64,
    /// The signature was checked against the directory when the entry was made.
    pub verified: bool,
    /// The incarnation of the stream the entry came from: its creation time in nanoseconds
    /// (0 on entries recorded before it was kept). Positions restart at 1 in a new one.
    #[serde(default)]
    pub stream_epoch: i64,
    /// The first stream position the entry covers when it covers several (an aggregate of
    /// unverifiable messages, a gap); 0 when it covers `stream_seq` only.
    #[serde(default)]
    pub stream_first: i64,
    /// How many messages of the stream the entry stands for (an aggregate, a gap: the
    /// missing ones; a reset: none).
    #[serde(default = "one")]
    pub message_count: i64,
    /// The subject the message came on (agency ids and a kind, nothing identifying); empty on
    /// entries recorded before it was kept, on gaps and on resets.
    #[serde(default)]
    pub subject: String,
    /// The signed header (envelope with its payload removed) or the signed event, so anyone
    /// with the directory can re-check the entry. Never a payload.
    #[serde(with = "hex_bytes")]
    pub signed: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub prev_hash: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
}

fn one() -> i64 {
    1
}

impl Default for Entry {
    fn default() -> Entry {
        Entry {
            seq: 0, stream_seq: 0, entry_type: String::new(), entry_id: String::new(), recorded_by: String::new(), sender: String::new(),
            recipient: String::new(), kind: String::new(), purpose: String::new(), lawful_basis: String::new(), consent_id: String::new(),
            consent_state: String::new(), risk: String::new(), subject_ref: String::new(), case_ref: String::new(), categories: String::new(),
            forbidden: String::new(), policy_version: String::new(), rule: String::new(), reason: String::new(), without_consent: false,
            in_reply_to: String::new(), staff_id: String::new(), occurred_at_ms: 0, recorded_at_ms: 0, verified: false, stream_epoch: 0,
            stream_first: 0, message_count: 1, subject: String::new(), signed: Vec::new(), prev_hash: Vec::new(), hash: Vec::new(),
        }
    }
}

/// The entry types the ledger's reading of the stream makes besides the first copies of
/// signed records.
pub struct EntryType;

impl EntryType {
    pub const DISCLOSURE: &'static str = "disclosure";
    pub const UNVERIFIABLE: &'static str = "unverifiable";
    /// One more copy of a recorded envelope or event, on the subject it was recorded from.
    pub const REPLAY: &'static str = "replay";
    /// A signed envelope or event on a subject that does not name its signed sender,
    /// recipient or kind.
    pub const MISROUTE: &'static str = "misroute";
    /// Stream positions the ledger never saw because the stream no longer holds them.
    pub const STREAM_GAP: &'static str = "stream_gap";
    /// The stream was recreated (its identity changed): positions start again.
    pub const STREAM_RESET: &'static str = "stream_reset";

    /// Whether an entry of this type is the first record of a signed envelope or event, the
    /// one that counts.
    pub fn is_first_copy(entry_type: &str) -> bool {
        !matches!(entry_type, Self::REPLAY | Self::MISROUTE | Self::UNVERIFIABLE | Self::STREAM_GAP | Self::STREAM_RESET)
    }
}

/// Bytes as lowercase hex in JSON.
mod hex_bytes {
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(D::Error::custom)
    }
}

const GENESIS: [u8; 32] = [0; 32];
const TAG: &[u8] = b"hub.v1.ledger-entry\0";

impl Entry {
    /// The content in a fixed encoding: every field, length-prefixed, in declaration order.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.signed.len());
        let mut put = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        put(&self.seq.to_be_bytes());
        put(&self.stream_seq.to_be_bytes());
        for s in [
            &self.entry_type, &self.entry_id, &self.recorded_by, &self.sender, &self.recipient, &self.kind, &self.purpose,
            &self.lawful_basis, &self.consent_id, &self.consent_state, &self.risk, &self.subject_ref, &self.case_ref,
            &self.categories, &self.forbidden, &self.policy_version, &self.rule, &self.reason, &self.in_reply_to,
        ] {
            put(s.as_bytes());
        }
        put(&[self.without_consent as u8, self.verified as u8]);
        put(&self.occurred_at_ms.to_be_bytes());
        put(&self.recorded_at_ms.to_be_bytes());
        put(&self.signed);
        if self.has_stream_facts() {
            // The staff id always, so what follows cannot be taken for it; then the stream
            // facts, added with stream incarnations: absent on every entry recorded before.
            put(self.staff_id.as_bytes());
            put(b"stream");
            put(&self.stream_epoch.to_be_bytes());
            put(&self.stream_first.to_be_bytes());
            put(&self.message_count.to_be_bytes());
            put(self.subject.as_bytes());
        } else if !self.staff_id.is_empty() {
            // Added with the access log: absent (and so not hashed) on every earlier entry.
            put(self.staff_id.as_bytes());
        }
        out
    }

    fn has_stream_facts(&self) -> bool {
        self.stream_epoch != 0 || self.stream_first != 0 || self.message_count != 1 || !self.subject.is_empty()
    }

    pub fn compute_hash(&self, prev_hash: &[u8]) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(TAG);
        h.update(prev_hash);
        h.update(self.canonical());
        h.finalize().to_vec()
    }
}

/// Turns one stream message into an entry (without seq and hashes). Every message becomes an
/// entry, including ones that fail verification: those are recorded as `unverifiable`.
pub fn classify(directory: &Directory, subject: &str, body: &[u8], stream_seq: u64) -> Entry {
    classify_at(directory, subject, body, stream_seq, None)
}

/// As [`classify`], with an envelope's signing key judged at `broker_ms`, the broker's own
/// timestamp of the message, when known (as its recipient judges it, [`isp::Isp::open_at`]):
/// a backdated envelope signed with a retired key is unverifiable here too, not a disclosure.
pub fn classify_at(directory: &Directory, subject: &str, body: &[u8], stream_seq: u64, broker_ms: Option<i64>) -> Entry {
    let mut e = Entry { stream_seq: stream_seq as i64, recorded_at_ms: isp::now_ms(), ..Default::default() };
    if transport::parse_message_subject(subject).is_some() {
        let verified = match broker_ms {
            Some(at) => seal::verify_envelope_at(directory, body, at),
            None => seal::verify_envelope(directory, body),
        };
        match verified {
            Ok((h, envelope)) => {
                let signed = Envelope { header: envelope.header, sealed_payload: Vec::new(), signature: envelope.signature }.encode_to_vec();
                let mut d = Entry { recorded_at_ms: e.recorded_at_ms, ..disclosure_entry(&h, signed, e.stream_seq) };
                d.subject = subject.into();
                if subject != transport::message_subject(&h.sender, &h.recipient, h.kind()) {
                    misrouted(&mut d, subject);
                }
                return d;
            }
            Err(error) => unverifiable(&mut e, subject, body, error.code()),
        }
    } else {
        match seal::verify_event(directory, body) {
            Ok(ev) => {
                e = Entry { stream_seq: e.stream_seq, recorded_at_ms: e.recorded_at_ms, subject: subject.into(), ..event_entry(&ev, body) };
                if subject != transport::event_subject(&ev.agency, ev.kind()) {
                    misrouted(&mut e, subject);
                }
            }
            Err(error) => unverifiable(&mut e, subject, body, error.code()),
        }
    }
    e
}

/// The entry of a verified event (without stream position), from the signed event `body`.
fn event_entry(ev: &proto::v1::Event, body: &[u8]) -> Entry {
    let consent = ev.consent.clone().unwrap_or_default();
    let (entry_type, sender, recipient) = match ev.kind() {
        EventKind::SendDenied => ("near_miss", ev.agency.clone(), ev.counterpart.clone()),
        EventKind::Violation => ("violation", ev.counterpart.clone(), ev.agency.clone()),
        EventKind::ConsentChanged => ("consent_changed", ev.agency.clone(), String::new()),
        EventKind::Accessed => ("accessed", ev.agency.clone(), String::new()),
        // The referral's sender and its recipient, who acknowledged it.
        EventKind::Acknowledged => ("acknowledged", ev.counterpart.clone(), ev.agency.clone()),
        EventKind::DeadlineMissed => ("deadline_missed", ev.agency.clone(), ev.counterpart.clone()),
        _ => ("rejected", ev.counterpart.clone(), ev.agency.clone()),
    };
    Entry {
        entry_type: entry_type.into(),
        entry_id: ev.event_id.clone(),
        recorded_by: ev.agency.clone(),
        sender,
        recipient,
        kind: Kind::try_from(ev.message_kind).map(kind::name).unwrap_or("unspecified").into(),
        purpose: ev.purpose.clone(),
        lawful_basis: ev.lawful_basis.clone(),
        consent_id: consent.consent_id.clone(),
        consent_state: policy::consent_name(consent.state()).into(),
        risk: policy::risk_name(RiskLevel::try_from(ev.risk).unwrap_or_default()).into(),
        subject_ref: ev.subject_ref.clone(),
        case_ref: ev.case_ref.clone(),
        categories: ev.data_categories.join(","),
        forbidden: ev.forbidden_categories.join(","),
        policy_version: ev.policy_version.clone(),
        rule: ev.rule.clone(),
        reason: ev.reason.clone(),
        in_reply_to: ev.envelope_id.clone(),
        staff_id: ev.staff_id.clone(),
        occurred_at_ms: ev.occurred_at_ms,
        verified: true,
        signed: body.to_vec(),
        ..Default::default()
    }
}

/// A signed envelope or event that came on a subject other than the one its signed sender,
/// recipient and kind make: recorded as what it is, never as the disclosure it copies.
fn misrouted(e: &mut Entry, subject: &str) {
    e.entry_type = EntryType::MISROUTE.into();
    e.subject = subject.into();
    e.reason = "subject_mismatch".into();
}

/// Marks the entries (in stream order) that are further copies of a signed envelope or event
/// the ledger records already, or that an earlier entry of the same batch records, as
/// `replay`: a copy counts once, whatever the broker did with it.
pub async fn mark_replays(tx: &mut Tx, entries: &mut [Entry]) -> Result<usize, sqlx::Error> {
    let ids: Vec<&str> = entries.iter().filter(|e| e.verified && EntryType::is_first_copy(&e.entry_type)).map(|e| e.entry_id.as_str()).collect();
    let mut known: BTreeSet<String> = BTreeSet::new();
    for chunk in ids.chunks(500) {
        let marks = runtime::db::numbered(1, chunk.len());
        let sql = format!(
            "SELECT entry_id FROM ledger WHERE entry_id IN ({marks}) AND entry_type NOT IN ('{}', '{}', '{}') AND verified = 1",
            EntryType::REPLAY, EntryType::MISROUTE, EntryType::UNVERIFIABLE
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut **tx).await? {
            known.insert(r.try_get("entry_id")?);
        }
    }
    let mut replays = 0;
    for e in entries.iter_mut().filter(|e| e.verified && EntryType::is_first_copy(&e.entry_type)) {
        if !known.insert(e.entry_id.clone()) {
            e.entry_type = EntryType::REPLAY.into();
            e.reason = "copy_of_recorded".into();
            replays += 1;
        }
    }
    Ok(replays)
}

/// The entry of a verified disclosure, from its signed header.
fn disclosure_entry(h: &proto::v1::Header, signed: Vec<u8>, stream_seq: i64) -> Entry {
    let consent = h.consent.clone().unwrap_or_default();
    Entry {
        stream_seq,
        entry_type: "disclosure".into(),
        entry_id: h.envelope_id.clone(),
        recorded_by: h.sender.clone(),
        sender: h.sender.clone(),
        recipient: h.recipient.clone(),
        kind: kind::name(h.kind()).into(),
        purpose: h.purpose.clone(),
        lawful_basis: h.lawful_basis.clone(),
        consent_id: consent.consent_id.clone(),
        consent_state: policy::consent_name(consent.state()).into(),
        risk: policy::risk_name(h.risk()).into(),
        subject_ref: h.subject_ref.clone(),
        case_ref: h.case_ref.clone(),
        categories: h.data_categories.join(","),
        policy_version: h.policy_version.clone(),
        rule: h.policy_rule.clone(),
        without_consent: h.shared_without_consent,
        in_reply_to: h.in_reply_to.clone(),
        occurred_at_ms: h.created_at_ms,
        verified: true,
        signed,
        ..Default::default()
    }
}

/// The entry of a message that could not be classified at all (classifying it panicked): it
/// is recorded as `unverifiable` with `reason`, like one that does not verify.
pub fn unclassifiable(subject: &str, body: &[u8], stream_seq: u64, reason: &str) -> Entry {
    let mut e = Entry { stream_seq: stream_seq as i64, recorded_at_ms: isp::now_ms(), ..Default::default() };
    unverifiable(&mut e, subject, body, reason);
    e
}

/// A message that does not verify is still recorded: what arrived, on which subject, and
/// why it does not verify; its bytes are kept only as a digest.
fn unverifiable(e: &mut Entry, subject: &str, body: &[u8], reason: &str) {
    e.entry_type = "unverifiable".into();
    e.entry_id = format!("stream-{}", e.stream_seq);
    if let Some((sender, recipient)) = transport::parse_message_subject(subject) {
        e.sender = sender.into();
        e.recipient = recipient.into();
    }
    e.subject = subject.into();
    e.reason = reason.into();
    e.rule = "crypto".into();
    e.occurred_at_ms = e.recorded_at_ms;
    e.signed = Sha256::digest(body).to_vec();
}

/// The stream incarnation and position of the ledger's last entry ((0, 0) when empty): the
/// ledger is in stream order, so the next message it takes is the one after.
pub async fn last_position(pool: &AnyPool) -> Result<(i64, u64), sqlx::Error> {
    let last: Option<(i64, i64)> = sqlx::query_as("SELECT stream_epoch, stream_seq FROM ledger ORDER BY seq DESC LIMIT 1").fetch_optional(pool).await?;
    Ok(last.map_or((0, 0), |(epoch, s)| (epoch, s.max(0) as u64)))
}

/// Appends entries in order, linking each to the last. Entries whose stream position
/// (incarnation and sequence) is already in the ledger (redeliveries) are skipped. Returns
/// how many were appended.
pub async fn append(tx: &mut Tx, entries: Vec<Entry>) -> Result<usize, sqlx::Error> {
    if entries.is_empty() {
        return Ok(0);
    }
    let last = sqlx::query("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetch_optional(&mut **tx).await?;
    let (mut seq, mut prev): (i64, Vec<u8>) = match last {
        Some(r) => (r.try_get("seq")?, r.try_get("hash")?),
        None => (0, GENESIS.to_vec()),
    };
    let mut seen: BTreeSet<(i64, i64)> = BTreeSet::new();
    let epochs: BTreeSet<i64> = entries.iter().map(|e| e.stream_epoch).collect();
    for epoch in epochs {
        let list = entries.iter().filter(|e| e.stream_epoch == epoch).map(|e| e.stream_seq.to_string()).collect::<Vec<_>>().join(",");
        let rows = sqlx::query(&format!("SELECT stream_seq FROM ledger WHERE stream_epoch = $1 AND stream_seq IN ({list})")).bind(epoch).fetch_all(&mut **tx).await?;
        for r in rows {
            seen.insert((epoch, r.try_get("stream_seq")?));
        }
    }
    let mut leaves = Vec::with_capacity(entries.len());
    let mut fresh = Vec::with_capacity(entries.len());
    for mut e in entries {
        if !seen.insert((e.stream_epoch, e.stream_seq)) {
            continue;
        }
        seq += 1;
        e.seq = seq;
        e.prev_hash = std::mem::take(&mut prev);
        e.hash = e.compute_hash(&e.prev_hash);
        leaves.push(merkle::leaf_hash(&e.hash));
        prev = e.hash.clone();
        fresh.push(e);
    }
    insert_all(tx, &fresh).await?;
    tree::append_leaves(tx, &leaves).await?;
    Ok(leaves.len())
}

/// Builds the Merkle nodes of entries recorded before the tree existed (a ledger made by
/// an earlier version), so every entry is a leaf. A no-op on an up-to-date ledger.
pub async fn backfill_tree(pool: &AnyPool) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let stored = tree::stored_size(&mut *tx).await?;
    let rows = sqlx::query("SELECT hash FROM ledger WHERE seq > $1 ORDER BY seq").bind(stored as i64).fetch_all(&mut *tx).await?;
    let leaves: Vec<merkle::Hash> = rows.iter().map(|r| r.try_get::<Vec<u8>, _>("hash").map(|h| merkle::leaf_hash(&h))).collect::<Result<_, _>>()?;
    tree::append_leaves(&mut tx, &leaves).await?;
    tx.commit().await?;
    Ok(leaves.len() as u64)
}

/// Inserts entries with multi-row statements (64 rows a statement), in order.
async fn insert_all(tx: &mut Tx, entries: &[Entry]) -> Result<(), sqlx::Error> {
    let sqlite = runtime::db::on_sqlite(tx);
    for chunk in entries.chunks(64) {
        let sql = format!("INSERT INTO ledger ({COLUMNS}) VALUES {}", runtime::db::placeholders(sqlite, chunk.len(), 33));
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(e.seq)
                .bind(e.stream_seq)
                .bind(e.entry_type.clone())
                .bind(e.entry_id.clone())
                .bind(e.recorded_by.clone())
                .bind(e.sender.clone())
                .bind(e.recipient.clone())
                .bind(e.kind.clone())
                .bind(e.purpose.clone())
                .bind(e.lawful_basis.clone())
                .bind(e.consent_id.clone())
                .bind(e.consent_state.clone())
                .bind(e.risk.clone())
                .bind(e.subject_ref.clone())
                .bind(e.case_ref.clone())
                .bind(e.categories.clone())
                .bind(e.forbidden.clone())
                .bind(e.policy_version.clone())
                .bind(e.rule.clone())
                .bind(e.reason.clone())
                .bind(e.without_consent as i64)
                .bind(e.in_reply_to.clone())
                .bind(e.staff_id.clone())
                .bind(e.occurred_at_ms)
                .bind(e.recorded_at_ms)
                .bind(e.verified as i64)
                .bind(e.stream_epoch)
                .bind(e.stream_first)
                .bind(e.message_count)
                .bind(e.subject.clone())
                .bind(e.signed.clone())
                .bind(e.prev_hash.clone())
                .bind(e.hash.clone());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

pub const COLUMNS: &str = "seq, stream_seq, entry_type, entry_id, recorded_by, sender, recipient, kind, purpose, lawful_basis, consent_id, \
    consent_state, risk, subject_ref, case_ref, categories, forbidden, policy_version, rule, reason, without_consent, in_reply_to, \
    staff_id, occurred_at_ms, recorded_at_ms, verified, stream_epoch, stream_first, message_count, subject, signed, prev_hash, hash";

pub fn from_row(r: &AnyRow) -> Result<Entry, sqlx::Error> {
    Ok(Entry {
        seq: r.try_get("seq")?,
        stream_seq: r.try_get("stream_seq")?,
        entry_type: r.try_get("entry_type")?,
        entry_id: r.try_get("entry_id")?,
        recorded_by: r.try_get("recorded_by")?,
        sender: r.try_get("sender")?,
        recipient: r.try_get("recipient")?,
        kind: r.try_get("kind")?,
        purpose: r.try_get("purpose")?,
        lawful_basis: r.try_get("lawful_basis")?,
        consent_id: r.try_get("consent_id")?,
        consent_state: r.try_get("consent_state")?,
        risk: r.try_get("risk")?,
        subject_ref: r.try_get("subject_ref")?,
        case_ref: r.try_get("case_ref")?,
        categories: r.try_get("categories")?,
        forbidden: r.try_get("forbidden")?,
        policy_version: r.try_get("policy_version")?,
        rule: r.try_get("rule")?,
        reason: r.try_get("reason")?,
        without_consent: r.try_get::<i64, _>("without_consent")? != 0,
        in_reply_to: r.try_get("in_reply_to")?,
        staff_id: r.try_get("staff_id")?,
        occurred_at_ms: r.try_get("occurred_at_ms")?,
        recorded_at_ms: r.try_get("recorded_at_ms")?,
        verified: r.try_get::<i64, _>("verified")? != 0,
        stream_epoch: r.try_get("stream_epoch")?,
        stream_first: r.try_get("stream_first")?,
        message_count: r.try_get("message_count")?,
        subject: r.try_get("subject")?,
        signed: r.try_get("signed")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

/// Entries in ledger order, optionally only those about one subject.
pub async fn list(pool: &AnyPool, subject_ref: Option<&str>) -> Result<Vec<Entry>, sqlx::Error> {
    let rows = match subject_ref {
        Some(s) => sqlx::query(&format!("SELECT {COLUMNS} FROM ledger WHERE subject_ref = $1 ORDER BY seq")).bind(s).fetch_all(pool).await?,
        None => sqlx::query(&format!("SELECT {COLUMNS} FROM ledger ORDER BY seq")).fetch_all(pool).await?,
    };
    rows.iter().map(from_row).collect()
}

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
    pub entry_type: String,
    pub what: String,
    pub recorded_at_ms: i64,
}

impl Alert {
    fn of(e: &Entry) -> Option<Alert> {
        let what = match e.entry_type.as_str() {
            EntryType::STREAM_GAP => format!(
                "STREAM GAP: stream positions {} to {} ({} messages) were gone from the stream before the ledger read them",
                e.stream_first, e.stream_seq, e.message_count
            ),
            EntryType::STREAM_RESET => format!("STREAM RESET: {}", e.reason),
            _ => return None,
        };
        Some(Alert { seq: e.seq, entry_type: e.entry_type.clone(), what, recorded_at_ms: e.recorded_at_ms })
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
pub async fn verify(pool: &AnyPool, directory: Option<&Directory>) -> anyhow::Result<Report> {
    verify_with(pool, directory, Depth { signatures: directory.is_some() }).await
}

/// Recomputes the chain from the first entry and the Merkle tree from the entries, stopping
/// at the first entry whose content or link was altered, or where an entry is missing,
/// inserted or out of order; then checks every stored checkpoint (signature, given a
/// directory, and root) against the recomputed tree. A checkpoint that does not match means
/// the entries were rewritten consistently after it was signed; the first entry whose leaf
/// differs from the stored tree is then named when the stored tree still shows it.
pub async fn verify_with(pool: &AnyPool, directory: Option<&Directory>, depth: Depth) -> anyhow::Result<Report> {
    let sql = format!("SELECT {COLUMNS} FROM ledger ORDER BY seq");
    let mut rows = sqlx::query(&sql).fetch(pool);
    let mut prev = GENESIS.to_vec();
    let mut expected_seq = 1i64;
    let mut last_stream_seq = 0i64;
    let mut epoch = 0i64;
    let mut entries = 0u64;
    let mut alerts = Vec::new();
    let mut tree = merkle::MemoryTree::default();
    while let Some(row) = rows.try_next().await? {
        let e = from_row(&row)?;
        entries += 1;
        if e.entry_type == EntryType::STREAM_RESET {
            // A new incarnation of the stream: its positions start again.
            last_stream_seq = -1;
            epoch = e.stream_epoch;
        }
        let problem = if e.seq != expected_seq {
            Some(format!("expected entry {expected_seq} here: an entry was deleted or inserted"))
        } else if e.prev_hash != prev {
            Some("its link to the previous entry is broken: an entry before it was removed, inserted or reordered".into())
        } else if e.compute_hash(&prev) != e.hash {
            Some("its content was altered after it was recorded".into())
        } else if e.stream_seq <= last_stream_seq {
            Some("it is out of stream order".into())
        } else if epoch != 0 && e.stream_epoch != epoch {
            Some("it names another incarnation of the stream, with no reset recorded before it".into())
        } else if depth.signatures {
            directory.and_then(|d| signed_mismatch(d, &e))
        } else {
            None
        };
        if let Some(what) = problem {
            return Ok(Report { entries, checkpoints: 0, first_bad: Some(Problem { seq: e.seq, checkpoint: None, what }), alerts });
        }
        if let Some(alert) = Alert::of(&e) {
            alerts.push(alert);
        }
        tree.push(merkle::leaf_hash(&e.hash));
        epoch = e.stream_epoch;
        prev = e.hash;
        expected_seq += 1;
        last_stream_seq = e.stream_seq;
    }
    drop(rows);
    let checkpoints = crate::checkpoints::all(pool).await?;
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
            let first_changed = first_changed_leaf(pool, &tree, c.tree_size).await?;
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

/// The first leaf (0-based) below `size` where the recomputed tree and the stored one differ.
async fn first_changed_leaf(pool: &AnyPool, tree: &merkle::MemoryTree, size: u64) -> anyhow::Result<Option<u64>> {
    use merkle::Nodes as _;
    let rows = sqlx::query("SELECT idx, hash FROM merkle_node WHERE level = 0 AND idx < $1 ORDER BY idx").bind(size as i64).fetch_all(pool).await?;
    for r in rows {
        let idx: i64 = r.try_get("idx")?;
        let stored: Vec<u8> = r.try_get("hash")?;
        if stored.as_slice() != tree.perfect(0, idx as u64).as_slice() {
            return Ok(Some(idx as u64));
        }
    }
    Ok(None)
}

/// Whether the type of an entry of a signed record fits the subject it came on: a first copy
/// came on the subject its signer named, a misroute on another.
fn subject_mismatch(e: &Entry, expected: &str) -> Option<String> {
    let misroute = e.entry_type == EntryType::MISROUTE;
    let fits = e.subject.is_empty() || (e.subject == expected) != misroute;
    (!fits).then(|| format!("it is recorded as {} but came on {}", e.entry_type, e.subject))
}

/// Whether a verified entry's fields still match the signed header or event it holds: an
/// entry whose chain was rebuilt after an edit still cannot forge an agency's signature.
pub(crate) fn signed_mismatch(directory: &Directory, e: &Entry) -> Option<String> {
    if !e.verified {
        return None;
    }
    let mut stored = e.clone();
    let as_envelope = Envelope::decode(e.signed.as_slice()).ok().and_then(|env| seal::verify_header(directory, &env.header, &env.signature).ok().map(|h| (h, env)));
    let mut fresh = match (e.entry_type.as_str(), as_envelope) {
        (_, Some((h, env))) => {
            let expected = transport::message_subject(&h.sender, &h.recipient, h.kind());
            if let Some(what) = subject_mismatch(e, &expected) {
                return Some(what);
            }
            disclosure_entry(&h, Envelope { sealed_payload: Vec::new(), ..env }.encode_to_vec(), e.stream_seq)
        }
        (EntryType::DISCLOSURE, None) => return Some("the signed header it holds no longer verifies".into()),
        (_, None) => match seal::verify_event(directory, &e.signed) {
            Ok(ev) => {
                if let Some(what) = subject_mismatch(e, &transport::event_subject(&ev.agency, ev.kind())) {
                    return Some(what);
                }
                Entry { stream_seq: e.stream_seq, ..event_entry(&ev, &e.signed) }
            }
            Err(_) => return Some("the signed event it holds no longer verifies".into()),
        },
    };
    // What the stream said, not the signer: where it came from, and what a copy is.
    fresh.recorded_at_ms = e.recorded_at_ms;
    fresh.stream_epoch = e.stream_epoch;
    fresh.stream_first = e.stream_first;
    fresh.message_count = e.message_count;
    fresh.subject = e.subject.clone();
    if !EntryType::is_first_copy(&e.entry_type) {
        fresh.entry_type = e.entry_type.clone();
        fresh.reason = e.reason.clone();
    }
    stored.seq = 0;
    stored.prev_hash.clear();
    stored.hash.clear();
    (stored != fresh).then(|| "its fields no longer match the signed record it holds".into())
}
