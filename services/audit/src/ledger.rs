//! The hash-chained disclosure ledger.
//!
//! Each entry's hash is SHA-256 over a domain tag, the previous entry's hash and the entry's
//! content in a fixed, length-prefixed encoding. Changing any stored field, deleting,
//! inserting or reordering an entry breaks the chain at that entry, and [`crate::verify`]
//! names it. This module is the entry and its making from a stream message, without I/O
//! beyond reads of whole entries; [`crate::store`] writes them.

use std::collections::BTreeSet;

use isp::{Directory, Kind, kind, policy, seal};
use prost::Message;
use proto::v1::{Envelope, EventKind, RiskLevel};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row, any::AnyRow};

use isp::merkle;
use runtime::transport;

/// What a ledger entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: i64,
    pub stream_seq: i64,
    pub entry_type: EntryType,
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
            seq: 0, stream_seq: 0, entry_type: EntryType::default(), entry_id: String::new(), recorded_by: String::new(), sender: String::new(),
            recipient: String::new(), kind: String::new(), purpose: String::new(), lawful_basis: String::new(), consent_id: String::new(),
            consent_state: String::new(), risk: String::new(), subject_ref: String::new(), case_ref: String::new(), categories: String::new(),
            forbidden: String::new(), policy_version: String::new(), rule: String::new(), reason: String::new(), without_consent: false,
            in_reply_to: String::new(), staff_id: String::new(), occurred_at_ms: 0, recorded_at_ms: 0, verified: false, stream_epoch: 0,
            stream_first: 0, message_count: 1, subject: String::new(), signed: Vec::new(), prev_hash: Vec::new(), hash: Vec::new(),
        }
    }
}

/// What a ledger entry records: the first copy of a signed envelope or event (a disclosure, or
/// the event's kind), or what the ledger's reading of the stream made of the rest. Stored and
/// hashed as its snake_case name ([`EntryType::as_str`]); the same name in JSON and queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryType {
    /// A signed envelope: one agency shared something with another.
    Disclosure,
    /// A send the sender's ISP refused (a signed `send_denied` event).
    NearMiss,
    /// An envelope its recipient refused on receipt.
    Rejected,
    /// A recipient found an envelope breaking the policy.
    Violation,
    ConsentChanged,
    /// A staff member read or tried to read something (an `accessed` event).
    Accessed,
    /// A staff member acknowledged a referral.
    Acknowledged,
    DeadlineMissed,
    /// Messages that do not verify, kept as an aggregate (the default: an entry claims
    /// nothing until it is shown to be more).
    #[default]
    Unverifiable,
    /// One more copy of a recorded envelope or event, on the subject it was recorded from.
    Replay,
    /// A signed envelope or event on a subject that does not name its signed sender,
    /// recipient or kind.
    Misroute,
    /// Stream positions the ledger never saw because the stream no longer holds them.
    StreamGap,
    /// The stream was recreated (its identity changed): positions start again.
    StreamReset,
}

/// A stored entry type that is none of [`EntryType`]'s (a row written by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a ledger entry type ({names})", names = EntryType::ALL.map(EntryType::as_str).join(", "))]
pub struct UnknownEntryType(pub String);

impl EntryType {
    pub const ALL: [EntryType; 13] = [
        EntryType::Disclosure, EntryType::NearMiss, EntryType::Rejected, EntryType::Violation, EntryType::ConsentChanged,
        EntryType::Accessed, EntryType::Acknowledged, EntryType::DeadlineMissed, EntryType::Unverifiable, EntryType::Replay,
        EntryType::Misroute, EntryType::StreamGap, EntryType::StreamReset,
    ];

    /// The name it is stored, hashed and shown under.
    pub const fn as_str(self) -> &'static str {
        match self {
            EntryType::Disclosure => "disclosure",
            EntryType::NearMiss => "near_miss",
            EntryType::Rejected => "rejected",
            EntryType::Violation => "violation",
            EntryType::ConsentChanged => "consent_changed",
            EntryType::Accessed => "accessed",
            EntryType::Acknowledged => "acknowledged",
            EntryType::DeadlineMissed => "deadline_missed",
            EntryType::Unverifiable => "unverifiable",
            EntryType::Replay => "replay",
            EntryType::Misroute => "misroute",
            EntryType::StreamGap => "stream_gap",
            EntryType::StreamReset => "stream_reset",
        }
    }

    /// Whether an entry of this type is the first record of a signed envelope or event, the
    /// one that counts.
    pub const fn is_first_copy(self) -> bool {
        !matches!(self, EntryType::Replay | EntryType::Misroute | EntryType::Unverifiable | EntryType::StreamGap | EntryType::StreamReset)
    }
}

impl std::str::FromStr for EntryType {
    type Err = UnknownEntryType;

    fn from_str(s: &str) -> Result<EntryType, UnknownEntryType> {
        EntryType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownEntryType(s.to_owned()))
    }
}

impl std::fmt::Display for EntryType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
        self.encode(|bytes| out.extend_from_slice(bytes));
        out
    }

    /// Feeds [`Entry::canonical`] to `write` piece by piece (hashing needs no copy of it).
    fn encode(&self, mut write: impl FnMut(&[u8])) {
        let mut put = |bytes: &[u8]| {
            write(&(bytes.len() as u64).to_be_bytes());
            write(bytes);
        };
        put(&self.seq.to_be_bytes());
        put(&self.stream_seq.to_be_bytes());
        put(self.entry_type.as_str().as_bytes());
        for s in [
            &self.entry_id, &self.recorded_by, &self.sender, &self.recipient, &self.kind, &self.purpose,
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
    }

    fn has_stream_facts(&self) -> bool {
        self.stream_epoch != 0 || self.stream_first != 0 || self.message_count != 1 || !self.subject.is_empty()
    }

    pub fn compute_hash(&self, prev_hash: &[u8]) -> Vec<u8> {
        self.hash_after(prev_hash).to_vec()
    }

    /// The chain hash of this entry after `prev_hash`, without allocating.
    pub fn hash_after(&self, prev_hash: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(TAG);
        h.update(prev_hash);
        self.encode(|bytes| h.update(bytes));
        h.finalize().into()
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
        EventKind::SendDenied => (EntryType::NearMiss, ev.agency.clone(), ev.counterpart.clone()),
        EventKind::Violation => (EntryType::Violation, ev.counterpart.clone(), ev.agency.clone()),
        EventKind::ConsentChanged => (EntryType::ConsentChanged, ev.agency.clone(), String::new()),
        EventKind::Accessed => (EntryType::Accessed, ev.agency.clone(), String::new()),
        // The referral's sender and its recipient, who acknowledged it.
        EventKind::Acknowledged => (EntryType::Acknowledged, ev.counterpart.clone(), ev.agency.clone()),
        EventKind::DeadlineMissed => (EntryType::DeadlineMissed, ev.agency.clone(), ev.counterpart.clone()),
        _ => (EntryType::Rejected, ev.counterpart.clone(), ev.agency.clone()),
    };
    Entry {
        entry_type,
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
    e.entry_type = EntryType::Misroute;
    e.subject = subject.into();
    e.reason = "subject_mismatch".into();
}

/// The entry ids a batch must look up to tell its replays apart: those of its first copies
/// of signed records.
pub fn replay_candidates(entries: &[Entry]) -> Vec<&str> {
    entries.iter().filter(|e| e.verified && e.entry_type.is_first_copy()).map(|e| e.entry_id.as_str()).collect()
}

/// Marks the entries (in stream order) that are further copies of a signed envelope or event
/// the ledger records already (`known`: the ids of [`replay_candidates`] it holds as first
/// copies), or that an earlier entry of the same batch records, as `replay`: a copy counts
/// once, whatever the broker did with it.
pub fn mark_replays(entries: &mut [Entry], mut known: BTreeSet<String>) -> usize {
    let mut replays = 0;
    for e in entries.iter_mut().filter(|e| e.verified && e.entry_type.is_first_copy()) {
        if !known.insert(e.entry_id.clone()) {
            e.entry_type = EntryType::Replay;
            e.reason = "copy_of_recorded".into();
            replays += 1;
        }
    }
    replays
}

/// The entry of a verified disclosure, from its signed header.
fn disclosure_entry(h: &proto::v1::Header, signed: Vec<u8>, stream_seq: i64) -> Entry {
    let consent = h.consent.clone().unwrap_or_default();
    Entry {
        stream_seq,
        entry_type: EntryType::Disclosure,
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
    e.entry_type = EntryType::Unverifiable;
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

/// Links entries in order after the entry `last` ((seq, hash); None on an empty ledger):
/// numbers them and fills in their hashes. Returns their Merkle leaves.
pub fn link(last: Option<(i64, Vec<u8>)>, entries: &mut [Entry]) -> Vec<merkle::Hash> {
    let (mut seq, mut prev) = last.unwrap_or((0, GENESIS.to_vec()));
    let mut leaves = Vec::with_capacity(entries.len());
    for e in entries.iter_mut() {
        seq += 1;
        e.seq = seq;
        e.prev_hash = std::mem::take(&mut prev);
        e.hash = e.compute_hash(&e.prev_hash);
        leaves.push(merkle::leaf_hash(&e.hash));
        prev = e.hash.clone();
    }
    leaves
}

/// The hash the first entry links to.
pub const GENESIS_HASH: [u8; 32] = GENESIS;

/// The ledger's columns, in the order of [`Entry`]'s fields, for reading whole entries.
pub const COLUMNS: &str = "seq, stream_seq, entry_type, entry_id, recorded_by, sender, recipient, kind, purpose, lawful_basis, consent_id, \
    consent_state, risk, subject_ref, case_ref, categories, forbidden, policy_version, rule, reason, without_consent, in_reply_to, \
    staff_id, occurred_at_ms, recorded_at_ms, verified, stream_epoch, stream_first, message_count, subject, signed, prev_hash, hash";

pub fn from_row(r: &AnyRow) -> Result<Entry, sqlx::Error> {
    Ok(Entry {
        seq: r.try_get("seq")?,
        stream_seq: r.try_get("stream_seq")?,
        entry_type: r.try_get::<String, _>("entry_type")?.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
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

/// Whether the type of an entry of a signed record fits the subject it came on: a first copy
/// came on the subject its signer named, a misroute on another.
fn subject_mismatch(e: &Entry, expected: &str) -> Option<String> {
    let misroute = e.entry_type == EntryType::Misroute;
    let fits = e.subject.is_empty() || (e.subject == expected) != misroute;
    (!fits).then(|| format!("it is recorded as {} but came on {}", e.entry_type, e.subject))
}

/// Whether a verified entry's fields still match the signed header or event it holds: an
/// entry whose chain was rebuilt after an edit still cannot forge an agency's signature.
pub fn signed_mismatch(directory: &Directory, e: &Entry) -> Option<String> {
    if !e.verified {
        return None;
    }
    let mut stored = e.clone();
    let as_envelope = Envelope::decode(e.signed.as_slice()).ok().and_then(|env| seal::verify_header(directory, &env.header, &env.signature).ok().map(|h| (h, env)));
    let mut fresh = match (e.entry_type, as_envelope) {
        (_, Some((h, env))) => {
            let expected = transport::message_subject(&h.sender, &h.recipient, h.kind());
            if let Some(what) = subject_mismatch(e, &expected) {
                return Some(what);
            }
            disclosure_entry(&h, Envelope { sealed_payload: Vec::new(), ..env }.encode_to_vec(), e.stream_seq)
        }
        (EntryType::Disclosure, None) => return Some("the signed header it holds no longer verifies".into()),
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
    if !e.entry_type.is_first_copy() {
        fresh.entry_type = e.entry_type;
        fresh.reason = e.reason.clone();
    }
    stored.seq = 0;
    stored.prev_hash.clear();
    stored.hash.clear();
    (stored != fresh).then(|| "its fields no longer match the signed record it holds".into())
}
