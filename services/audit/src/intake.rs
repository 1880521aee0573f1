//! How the stream becomes ledger entries, in stream order: where the ledger is on the stream
//! (the stream's incarnation and the last position taken, [`Intake`]); unverifiable messages
//! absorbed into one [`Aggregate`] per subject and reason rather than an entry each; positions
//! the stream no longer holds recorded as a `stream_gap`, a recreated stream as a
//! `stream_reset`. [`plan`] decides, without I/O; [`crate::store`] keeps the intake in the
//! same transaction as the entries it goes with, so what is acknowledged is on the ledger or
//! durably in a pending aggregate.

use std::collections::{BTreeMap, BTreeSet};

use isp::Directory;
use runtime::transport;
use sha2::{Digest as _, Sha256};

use crate::ledger::{self, Entry, EntryType};

/// An aggregate of unverifiable messages becomes an entry once it holds this many messages...
pub const AGGREGATE_MAX_MESSAGES: i64 = 1000;
/// ...or once its first message is this old (checked at every fetch, so also when the flood
/// stops), or when anything else goes on the ledger (an entry keeps stream order).
pub const AGGREGATE_MAX_AGE_MS: i64 = 60_000;

const DIGEST_TAG: &[u8] = b"hub.v1.unverifiable-aggregate\0";

/// What the audit service knows of the stream when it places a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// The stream's identity: its creation time (ns since 1970). A recreated stream (deleted
    /// and made again, or a broker that lost its store) has another.
    pub epoch: i64,
    /// The first position the stream still holds (positions before it are gone).
    pub first_seq: u64,
    /// Positions removed from the middle of the stream, when asked for (they are listed only
    /// on request: see [`Plan::needs_detail`]).
    pub deleted: Option<BTreeSet<u64>>,
}

impl StreamState {
    pub fn of(info: &async_nats::jetstream::stream::Info) -> StreamState {
        StreamState {
            epoch: info.created.unix_timestamp_nanos() as i64,
            first_seq: info.state.first_sequence,
            deleted: info.state.deleted.as_ref().map(|d| d.iter().copied().collect()),
        }
    }

    /// Whether every position from `from` to `to` (inclusive) is gone from the stream; None
    /// when that cannot be told without the list of deleted positions.
    fn all_gone(&self, from: u64, to: u64) -> Option<bool> {
        let below_first = self.first_seq.saturating_sub(from).min(to + 1 - from);
        if below_first == to + 1 - from {
            return Some(true);
        }
        let deleted = self.deleted.as_ref()?;
        let inside = deleted.range(from.max(self.first_seq)..=to).count() as u64;
        Some(below_first + inside == to + 1 - from)
    }
}

/// Unverifiable messages of one subject and reason, absorbed but not yet an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub epoch: i64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub messages: i64,
    /// SHA-256 chained over the positions and body digests of the messages, in order.
    pub digest: Vec<u8>,
    pub first_at_ms: i64,
}

/// Where the ledger is on the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intake {
    /// The incarnation of the stream the ledger reads (0 before it has seen one).
    pub epoch: i64,
    /// The last position taken: on the ledger, in a pending aggregate, or recorded as gone.
    pub seq: u64,
    /// (subject, reason) -> the aggregate pending for it.
    pub pending: BTreeMap<(String, String), Aggregate>,
}

/// What a fetched batch does to the ledger.
pub struct Plan<'m, M> {
    /// Entries to append, in stream order (replays not yet told apart: see
    /// [`ledger::mark_replays`]).
    pub entries: Vec<Entry>,
    /// Where the ledger will be once they are committed.
    pub intake: Intake,
    /// Messages to acknowledge once committed: those taken, and redeliveries of ones taken before.
    pub recorded: Vec<&'m M>,
    /// Messages after a gap that may yet be filled (an earlier message awaiting redelivery):
    /// handed back, so the ledger stays in stream order.
    pub later: Vec<&'m M>,
    /// Messages without a stream position: neither recorded nor acknowledged.
    pub unplaced: usize,
    /// A gap was met that the list of deleted positions would explain: plan again with it.
    pub needs_detail: bool,
}

impl<M> Plan<'_, M> {
    /// Whether there is anything to write.
    pub fn changes(&self, before: &Intake) -> bool {
        !self.entries.is_empty() || self.intake != *before
    }
}

/// Places a fetched batch after `before`, given the stream's state. `read` gives a message's
/// subject, body and stream position (None when it cannot be read); `broker_ms` the broker's
/// timestamp of it, when known (what its signing key is judged at).
pub fn plan<'m, M>(
    directory: &Directory,
    before: &Intake,
    stream: &StreamState,
    batch: &'m [M],
    read: impl Fn(&M) -> (&str, &[u8], Option<u64>),
    broker_ms: impl Fn(&M) -> Option<i64>,
    now_ms: i64,
) -> Plan<'m, M> {
    let classified = batch.iter().map(|m| classify(directory, read(m), broker_ms(m))).collect();
    plan_classified(before, stream, batch, read, classified, now_ms)
}

/// One message as a ledger entry (see [`ledger::classify_at`]); a message without a stream
/// position gets none.
pub fn classify(directory: &Directory, (subject, body, seq): (&str, &[u8], Option<u64>), broker_ms: Option<i64>) -> Option<Entry> {
    let seq = seq?;
    // A message that makes classification panic must not stop the ledger (it would be
    // redelivered into the same panic): it is recorded as unverifiable.
    Some(
        std::panic::catch_unwind(|| ledger::classify_at(directory, subject, body, seq, broker_ms))
            .unwrap_or_else(|_| ledger::unclassifiable(subject, body, seq, "audit_panic")),
    )
}

/// [`plan`] with every message classified already: `classified[i]` is `batch[i]`'s entry
/// (classification, a signature check each, is the costly part and may run on every core).
pub fn plan_classified<'m, M>(
    before: &Intake,
    stream: &StreamState,
    batch: &'m [M],
    read: impl Fn(&M) -> (&str, &[u8], Option<u64>),
    classified: Vec<Option<Entry>>,
    now_ms: i64,
) -> Plan<'m, M> {
    debug_assert_eq!(classified.len(), batch.len());
    let mut p = Plan { entries: Vec::new(), intake: before.clone(), recorded: Vec::new(), later: Vec::new(), unplaced: 0, needs_detail: false };
    if p.intake.epoch == 0 {
        p.intake.epoch = stream.epoch;
    } else if p.intake.epoch != stream.epoch {
        flush(&mut p, now_ms);
        p.entries.push(reset_entry(p.intake.epoch, stream.epoch, now_ms));
        p.intake.epoch = stream.epoch;
        p.intake.seq = 0;
    }
    if stream.first_seq > p.intake.seq + 1 {
        gap(&mut p, stream.first_seq - 1, now_ms);
    }
    let mut positioned: Vec<(u64, &M, Entry)> = Vec::with_capacity(batch.len());
    for (m, entry) in batch.iter().zip(classified) {
        match (read(m).2, entry) {
            (Some(seq), Some(entry)) => positioned.push((seq, m, entry)),
            _ => p.unplaced += 1,
        }
    }
    positioned.sort_by_key(|(seq, _, _)| *seq);
    for (seq, m, entry) in positioned {
        let next = p.intake.seq + 1;
        if seq < next {
            p.recorded.push(m); // taken already, or twice in this batch
            continue;
        }
        if seq > next {
            match stream.all_gone(next, seq - 1) {
                Some(true) => gap(&mut p, seq - 1, now_ms),
                gone => {
                    p.needs_detail |= gone.is_none();
                    p.later.push(m);
                    continue;
                }
            }
        }
        let (subject, body, _) = read(m);
        if entry.entry_type == EntryType::Unverifiable {
            absorb(&mut p, subject, &entry.reason, body, seq, now_ms);
        } else {
            flush(&mut p, now_ms);
            p.entries.push(Entry { stream_epoch: p.intake.epoch, ..entry });
        }
        p.intake.seq = seq;
        p.recorded.push(m);
    }
    if p.intake.pending.values().any(|a| now_ms - a.first_at_ms >= AGGREGATE_MAX_AGE_MS) {
        flush(&mut p, now_ms);
    }
    p
}

/// Adds one unverifiable message to the aggregate of its subject and reason; writes every
/// aggregate out when this one is full.
fn absorb<M>(p: &mut Plan<'_, M>, subject: &str, reason: &str, body: &[u8], seq: u64, now_ms: i64) {
    let epoch = p.intake.epoch;
    let a = p.intake.pending.entry((subject.to_owned(), reason.to_owned())).or_insert_with(|| Aggregate {
        epoch,
        first_seq: seq,
        last_seq: seq,
        messages: 0,
        digest: vec![0; 32],
        first_at_ms: now_ms,
    });
    let mut h = Sha256::new();
    h.update(DIGEST_TAG);
    h.update(&a.digest);
    h.update(seq.to_be_bytes());
    h.update(Sha256::digest(body));
    a.digest = h.finalize().to_vec();
    a.last_seq = seq;
    a.messages += 1;
    if a.messages >= AGGREGATE_MAX_MESSAGES {
        flush(p, now_ms);
    }
}

/// Writes every pending aggregate out as an entry, in the order of their last positions (all
/// before whatever is placed next, so the ledger stays in stream order).
fn flush<M>(p: &mut Plan<'_, M>, now_ms: i64) {
    let mut pending: Vec<((String, String), Aggregate)> = std::mem::take(&mut p.intake.pending).into_iter().collect();
    pending.sort_by_key(|(_, a)| a.last_seq);
    for ((subject, reason), a) in pending {
        p.entries.push(aggregate_entry(&subject, &reason, a, now_ms));
    }
}

fn aggregate_entry(subject: &str, reason: &str, a: Aggregate, now_ms: i64) -> Entry {
    let (sender, recipient) = transport::parse_message_subject(subject).unwrap_or_default();
    Entry {
        stream_seq: a.last_seq as i64,
        stream_first: a.first_seq as i64,
        stream_epoch: a.epoch,
        message_count: a.messages,
        entry_type: EntryType::Unverifiable,
        entry_id: if a.messages == 1 { format!("stream-{}", a.last_seq) } else { format!("stream-{}-{}", a.first_seq, a.last_seq) },
        sender: sender.into(),
        recipient: recipient.into(),
        subject: subject.into(),
        reason: reason.into(),
        rule: "crypto".into(),
        occurred_at_ms: a.first_at_ms,
        recorded_at_ms: now_ms,
        signed: a.digest,
        ..Default::default()
    }
}

/// Records positions from the one after the last taken to `last` as gone from the stream.
fn gap<M>(p: &mut Plan<'_, M>, last: u64, now_ms: i64) {
    flush(p, now_ms);
    let first = p.intake.seq + 1;
    tracing::warn!(first, last, "stream positions gone before the ledger read them: recorded as a gap");
    p.entries.push(Entry {
        stream_seq: last as i64,
        stream_first: first as i64,
        stream_epoch: p.intake.epoch,
        message_count: (last + 1 - first) as i64,
        entry_type: EntryType::StreamGap,
        entry_id: format!("gap-{}-{first}-{last}", p.intake.epoch),
        recorded_by: "audit".into(),
        reason: "gone_from_stream".into(),
        occurred_at_ms: now_ms,
        recorded_at_ms: now_ms,
        ..Default::default()
    });
    p.intake.seq = last;
}

fn reset_entry(old: i64, new: i64, now_ms: i64) -> Entry {
    let at = |ns: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_else(|| ns.to_string())
    };
    tracing::warn!("the stream was recreated: recorded as a reset; reading the new one from its start");
    Entry {
        stream_seq: 0,
        stream_epoch: new,
        message_count: 0,
        entry_type: EntryType::StreamReset,
        entry_id: format!("reset-{new}"),
        recorded_by: "audit".into(),
        reason: format!("the stream created at {} was replaced by one created at {}; positions start again at 1", at(old), at(new)),
        occurred_at_ms: now_ms,
        recorded_at_ms: now_ms,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Msg = (String, Vec<u8>, Option<u64>);

    fn read(m: &Msg) -> (&str, &[u8], Option<u64>) {
        (m.0.as_str(), &m.1[..], m.2)
    }

    fn setup() -> (Directory, String) {
        let (directory, _) = isp::directory::generate_partnership("P", &[("ig-p", "IG", isp::Role::Ig), ("housing-p", "Housing", isp::Role::Housing)]).unwrap();
        (directory, transport::message_subject("housing-p", "ig-p", isp::Kind::IdvaReferral))
    }

    fn junk(subject: &str, seqs: impl IntoIterator<Item = Option<u64>>) -> Vec<Msg> {
        seqs.into_iter().map(|seq| (subject.to_owned(), format!("junk {seq:?}").into_bytes(), seq)).collect()
    }

    fn stream(epoch: i64, first_seq: u64, deleted: Option<&[u64]>) -> StreamState {
        StreamState { epoch, first_seq, deleted: deleted.map(|d| d.iter().copied().collect()) }
    }

    #[test]
    fn the_ledger_takes_the_unbroken_run_after_its_last_position_and_hands_back_the_rest() {
        let (directory, subject) = setup();
        // Last taken: 4. Arrived: a redelivery (3), 5 to 7 out of order, 9 after a gap that
        // may yet be filled, and one without a stream position.
        let batch = junk(&subject, [Some(7), Some(5), Some(3), Some(9), None, Some(6)]);
        let before = Intake { epoch: 10, seq: 4, pending: BTreeMap::new() };
        let p = plan(&directory, &before, &stream(10, 1, Some(&[])), &batch, read, |_| None, 1_000);
        assert!(p.entries.is_empty(), "unverifiable messages wait in an aggregate: {:?}", p.entries);
        let a = &p.intake.pending[&(subject.clone(), "malformed".to_owned())];
        assert_eq!((a.first_seq, a.last_seq, a.messages), (5, 7, 3));
        assert_eq!(p.intake.seq, 7);
        assert_eq!(p.recorded.iter().map(|m| m.2).collect::<Vec<_>>(), [Some(3), Some(5), Some(6), Some(7)], "only what the ledger holds is acknowledged");
        assert_eq!(p.later.iter().map(|m| m.2).collect::<Vec<_>>(), [Some(9)], "8 is still on the stream: 9 is handed back");
        assert_eq!(p.unplaced, 1);
        assert!(!p.needs_detail);
    }

    #[test]
    fn junk_becomes_one_entry_per_subject_and_reason_when_full_old_or_followed() {
        let (directory, subject) = setup();
        let other = transport::message_subject("housing-p", "ig-p", isp::Kind::MaracReferral);
        let mut batch = junk(&subject, (1..=AGGREGATE_MAX_MESSAGES as u64 - 1).map(Some));
        batch.extend(junk(&other, [Some(AGGREGATE_MAX_MESSAGES as u64)]));
        let p = plan(&directory, &Intake::default(), &stream(10, 1, None), &batch, read, |_| None, 1_000);
        assert!(p.entries.is_empty());
        assert_eq!(p.intake.pending.len(), 2);
        // One more: the first aggregate is full, and both are written, in stream order.
        let more = junk(&subject, [Some(AGGREGATE_MAX_MESSAGES as u64 + 1)]);
        let q = plan(&directory, &p.intake, &stream(10, 1, None), &more, read, |_| None, 2_000);
        let got: Vec<_> = q.entries.iter().map(|e| (e.subject.as_str(), e.stream_first, e.stream_seq, e.message_count)).collect();
        assert_eq!(got, [(other.as_str(), 1000, 1000, 1), (subject.as_str(), 1, 1001, 1000)]);
        assert!(q.entries.iter().all(|e| e.entry_type == EntryType::Unverifiable && e.signed.len() == 32 && e.stream_epoch == 10));
        assert!(q.intake.pending.is_empty());
        // A lone junk message waits until it is a minute old.
        let lone = junk(&subject, [Some(1002)]);
        let r = plan(&directory, &q.intake, &stream(10, 1, None), &lone, read, |_| None, 3_000);
        assert!(r.entries.is_empty());
        let s = plan(&directory, &r.intake, &stream(10, 1, None), &[] as &[Msg], read, |_| None, 3_000 + AGGREGATE_MAX_AGE_MS);
        assert_eq!(s.entries.iter().map(|e| (e.stream_seq, e.message_count)).collect::<Vec<_>>(), [(1002, 1)]);
        // The digest covers the bodies: another body, another digest.
        let mut changed = junk(&subject, [Some(1002)]);
        changed[0].1.push(b'!');
        let r2 = plan(&directory, &q.intake, &stream(10, 1, None), &changed, read, |_| None, 3_000);
        let key = (subject.clone(), "malformed".to_owned());
        assert_ne!(r.intake.pending[&key].digest, r2.intake.pending[&key].digest);
    }

    #[test]
    fn positions_gone_from_the_stream_become_a_gap_and_a_new_stream_a_reset() {
        let (directory, subject) = setup();
        let before = Intake { epoch: 10, seq: 4, pending: BTreeMap::new() };
        // 5 to 7 deleted from the middle: unknown until the deleted positions are listed.
        let batch = junk(&subject, [Some(8)]);
        let p = plan(&directory, &before, &stream(10, 1, None), &batch, read, |_| None, 1_000);
        assert!(p.needs_detail && p.entries.is_empty() && p.later.len() == 1);
        let p = plan(&directory, &before, &stream(10, 1, Some(&[5, 6, 7])), &batch, read, |_| None, 1_000);
        let gap = &p.entries[0];
        assert_eq!((gap.entry_type, gap.stream_first, gap.stream_seq, gap.message_count), (EntryType::StreamGap, 5, 7, 3));
        assert_eq!(p.intake.seq, 8);
        // Only 5 and 7 deleted: 6 may still come, so 8 waits.
        let p = plan(&directory, &before, &stream(10, 1, Some(&[5, 7])), &batch, read, |_| None, 1_000);
        assert!(p.entries.is_empty() && p.later.len() == 1);
        // The stream's head moved past the ledger (old messages dropped): a gap, even with no message.
        let p = plan(&directory, &before, &stream(10, 9, None), &[] as &[Msg], read, |_| None, 1_000);
        assert_eq!(p.entries.iter().map(|e| (e.entry_type, e.stream_first, e.stream_seq)).collect::<Vec<_>>(), [(EntryType::StreamGap, 5, 8)]);
        // Another incarnation: pending junk of the old one written out, a reset, then the new
        // stream from position 1.
        let mut with_pending = before.clone();
        with_pending.pending.insert((subject.clone(), "malformed".into()), Aggregate { epoch: 10, first_seq: 3, last_seq: 4, messages: 2, digest: vec![0; 32], first_at_ms: 0 });
        let batch = junk(&subject, [Some(1), Some(2)]);
        let p = plan(&directory, &with_pending, &stream(20, 1, None), &batch, read, |_| None, 1_000);
        let got: Vec<_> = p.entries.iter().map(|e| (e.entry_type, e.stream_epoch, e.stream_seq)).collect();
        assert_eq!(got, [(EntryType::Unverifiable, 10, 4), (EntryType::StreamReset, 20, 0)]);
        assert_eq!((p.intake.epoch, p.intake.seq, p.recorded.len()), (20, 2, 2), "nothing of the new stream is skipped as taken");
    }
}
