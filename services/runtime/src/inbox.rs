//! Receiving: the durable consumer loop. Each message takes four hops: verify and open with
//! the isp -> one transaction (inbox row, receipt bookkeeping, the service's domain change)
//! -> commit -> ack. A refused envelope is quarantined and its refusal queued for the ledger
//! in one transaction, then acked. A storage failure acks nothing: the broker redelivers.
//!
//! What was handled already is recognised by the envelope's signed id (inbox) or the body's
//! SHA-256 (quarantine) together with the stream's identity (its creation time) and the
//! stream sequence, never the sequence alone: a stream recreated after its store was lost
//! numbers its messages from 1 again, and none of them is skipped as seen. The broker's own
//! timestamp of each message is the time a retired signing key is judged at, and an envelope
//! claiming a creation time further from it than `HUB_CLOCK_SKEW_SECS` is quarantined
//! `clock_skew` ([`isp::Isp::open_at`]).

use std::{collections::HashSet, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream::{AckKind, consumer::PullConsumer, message::Message};
use futures::{FutureExt as _, StreamExt};
use isp::{Kind, OpenError, Opened, kind, policy};
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use proto::v1::{Envelope, EventKind, Header, RiskLevel};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::{agency::Agency, consent_read::ConsentReads, ctx::Ctx, outbox, transport};

/// After this many deliveries, a message whose domain handling keeps failing is stored in
/// the inbox without the domain change (and the failure logged), rather than retried forever.
const MAX_DOMAIN_ATTEMPTS: i64 = 5;

/// Where a batch of deliveries came from: the stream's identity, its creation time in ns
/// since the epoch (from its info, read at start and whenever the consumer is re-got).
type StreamId = i64;

/// The identity of the stream the consumer reads, as the administrator wrote it into the
/// consumer's description when provisioning it ([`transport::stream_identity`]): an agency
/// may not ask the broker about the stream itself (its state would show every agency's
/// traffic).
async fn stream_identity(consumer: &mut PullConsumer) -> anyhow::Result<StreamId> {
    let info = consumer.info().await.context("reading the consumer's info")?;
    Ok(transport::stream_identity(info))
}

/// The agency's durable consumer, looked up by name, never created (provisioning creates it;
/// an agency's broker rights do not), with the identity of the stream it reads.
async fn reget(ctx: &Ctx, name: &str) -> anyhow::Result<(PullConsumer, StreamId)> {
    let mut consumer: PullConsumer = ctx.jetstream.get_consumer_from_stream(name, transport::STREAM).await.with_context(|| format!("looking up the consumer {name}"))?;
    let id = stream_identity(&mut consumer).await?;
    Ok((consumer, id))
}

pub async fn consume_loop<A: Agency>(ctx: Ctx, consumer: PullConsumer, agency: Arc<A>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let name = consumer.cached_info().name.clone();
    let mut consumer = Some(consumer);
    let mut stream = None;
    loop {
        // At start, and after the pull failed or was interrupted (the broker restarted, the
        // consumer or the whole stream was deleted and provisioned again): the consumer by its
        // name and the stream's identity as they are now.
        let (current, stream_id) = match (consumer.take(), stream) {
            (Some(c), Some(id)) => (c, id),
            (c, _) => {
                let got = match c {
                    Some(mut c) => stream_identity(&mut c).await.map(|id| (c, id)),
                    None => reget(&ctx, &name).await,
                };
                match got {
                    Ok((c, id)) => {
                        if stream.is_some_and(|old| old != id) {
                            tracing::warn!(consumer = %name, "the stream was recreated since the last pull; its messages are told apart from the old ones'");
                        }
                        stream = Some(id);
                        (c, id)
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot reach the consumer; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.cancelled() => return Ok(()),
                        }
                        continue;
                    }
                }
            }
        };
        let messages = current
            .stream()
            .max_messages_per_batch(64)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut healthy = true;
        match messages {
            // What has arrived together is handled together (one inbox transaction).
            Ok(messages) => {
                let mut batches = messages.ready_chunks(64);
                loop {
                    let next = tokio::select! {
                        next = batches.next() => next,
                        _ = shutdown.cancelled() => return Ok(()),
                    };
                    let Some(batch) = next else { break };
                    let mut good = Vec::with_capacity(batch.len());
                    let mut interrupted = false;
                    for item in batch {
                        match item {
                            Ok(message) => good.push(message),
                            Err(e) => {
                                tracing::warn!(error = %e, "consumer stream interrupted; resubscribing");
                                interrupted = true;
                            }
                        }
                    }
                    match good.len() {
                        0 => {}
                        1 => handle(&ctx, &*agency, stream_id, good.pop().expect("one")).await,
                        _ => receive_batch(&ctx, &*agency, stream_id, good).await,
                    }
                    if interrupted {
                        healthy = false;
                        break;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot pull from the consumer; retrying");
                healthy = false;
            }
        }
        if healthy {
            consumer = Some(current);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// The JetStream facts of one delivery.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    seq: u64,
    delivered: i64,
    /// The broker's timestamp of the message (ms since the epoch).
    published_ms: i64,
}

fn delivery(message: &Message) -> Option<Delivery> {
    match message.info() {
        Ok(info) => Some(Delivery {
            seq: info.stream_sequence,
            delivered: info.delivered,
            published_ms: i64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
        }),
        Err(e) => {
            tracing::error!(error = %e, "message without JetStream metadata; leaving it for redelivery");
            None
        }
    }
}

async fn handle<A: Agency>(ctx: &Ctx, agency: &A, stream: StreamId, message: Message) {
    let Some(d) = delivery(&message) else { return };
    let seq = d.seq;
    let (subject, body) = (message.subject.as_str(), &message.payload[..]);
    let outcome = match AssertUnwindSafe(receive(ctx, agency, subject, body, stream, d)).catch_unwind().await {
        Ok(outcome) => outcome,
        // Redelivered, it would panic again (and again): quarantined after the first panic.
        Err(_) => quarantine_panicked(ctx, subject, body, stream, seq).await,
    };
    match outcome {
        Ok(()) => ack(&message, seq).await,
        Err(e) => {
            tracing::error!(stream_seq = seq, error = %e, "could not store a received message; it will be redelivered");
            let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        }
    }
}

/// Quarantines a delivery whose handling panicked (reason `handler_panic`) and queues the
/// refusal for the ledger, naming the envelope when its signed header verifies. The panic's
/// own message is not kept: it may hold anything.
async fn quarantine_panicked(ctx: &Ctx, subject: &str, body: &[u8], stream: StreamId, seq: u64) -> anyhow::Result<()> {
    let isp = ctx.isp();
    let header = std::panic::catch_unwind(|| isp::seal::verify_envelope(&isp.directory, body).ok().map(|(h, _)| h)).ok().flatten();
    tracing::error!(stream_seq = seq, envelope_id = header.as_ref().map(|h| h.envelope_id.as_str()).unwrap_or_default(),
        "handling a received message panicked; quarantining it (handler_panic)");
    quarantine(ctx, subject, body, stream, seq, header.as_ref(), &OpenError::HandlerPanic).await
}

/// What opening an envelope gives: the opened envelope, or the header if it decoded and why not.
type OpenResult = Result<Opened, (Option<Header>, OpenError)>;

/// What the checks before storing found for one delivery.
enum Prepared {
    /// Handled already (a redelivery) or refused and quarantined: ack it.
    Done,
    /// Verified, opened and allowed: store it.
    Store(Box<Opened>),
}

/// What the inbox already holds of a batch of deliveries, read in one statement for the
/// whole batch rather than two for each delivery.
#[derive(Default)]
struct Known {
    /// Stream sequences (of this batch's stream) already stored or quarantined: redeliveries.
    seqs: HashSet<u64>,
    /// Envelope ids already stored under another stream sequence or stream (replays).
    envelope_ids: HashSet<String>,
}

/// The SHA-256 of a body, in hex: what the quarantine keeps to know a body again.
fn digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// How much of a refused body the quarantine keeps, beside its digest and length.
pub const QUARANTINE_PREFIX_BYTES: usize = 64;

impl Known {
    /// `deliveries`: (stream sequence, body) of each delivery from stream `stream`. A
    /// delivery was handled already when the inbox holds its envelope id under the same
    /// stream and sequence, or the quarantine holds its body's digest there. (Rows from
    /// before streams had an identity (0) match on the sequence, and for the quarantine on
    /// the first bytes and length of the body.)
    async fn read(ctx: &Ctx, stream: StreamId, deliveries: &[(u64, &[u8])]) -> Result<Known, sqlx::Error> {
        let mut known = Known::default();
        if deliveries.is_empty() {
            return Ok(known);
        }
        // The envelope ids the headers claim (an envelope that does not decode is refused
        // when opened, and needs none).
        let ids: Vec<(u64, String)> = deliveries
            .iter()
            .filter_map(|(seq, body)| {
                Envelope::decode(*body).ok().and_then(|e| Header::decode(e.header.as_slice()).ok()).map(|h| (*seq, h.envelope_id))
            })
            .collect();
        let seqs = crate::db::numbered(1, deliveries.len());
        let mut sql = format!(
            "SELECT stream_id, stream_seq, '' AS envelope_id, body_sha256, body_prefix, body_bytes FROM quarantine WHERE stream_seq IN ({seqs})"
        );
        if !ids.is_empty() {
            let list = crate::db::numbered(deliveries.len() + 1, ids.len());
            sql.push_str(&format!(
                " UNION ALL SELECT stream_id, stream_seq, envelope_id, '' AS body_sha256, substr(envelope, 1, 0) AS body_prefix, 0 AS body_bytes FROM inbox WHERE envelope_id IN ({list})"
            ));
        }
        let values: Vec<crate::db::Value> =
            deliveries.iter().map(|(seq, _)| crate::db::Value::Int(*seq as i64)).chain(ids.iter().map(|(_, id)| crate::db::Value::from(id))).collect();
        let rows: Vec<(i64, i64, String, String, Vec<u8>, i64)> = crate::db::read_rows(&ctx.pool, &ctx.reads, &sql, &values).await?;
        let same_stream = |row_stream: i64| row_stream == stream || row_stream == 0;
        for (row_stream, row_seq, envelope_id, sha256, prefix, bytes) in rows {
            if envelope_id.is_empty() {
                // A quarantine row: the same body, refused under this stream and sequence.
                let same = deliveries.iter().find(|(seq, body)| {
                    *seq as i64 == row_seq
                        && same_stream(row_stream)
                        && if sha256.is_empty() {
                            row_stream == 0 && bytes == body.len() as i64 && prefix == body[..body.len().min(QUARANTINE_PREFIX_BYTES)]
                        } else {
                            sha256 == digest(body)
                        }
                });
                if let Some((seq, _)) = same {
                    known.seqs.insert(*seq);
                }
                continue;
            }
            // An inbox row: stored under this very stream and sequence (a redelivery), or
            // under another (a replay).
            match ids.iter().find(|(seq, id)| *id == envelope_id && *seq as i64 == row_seq && same_stream(row_stream)) {
                Some((seq, _)) => {
                    known.seqs.insert(*seq);
                }
                None => {
                    known.envelope_ids.insert(envelope_id);
                }
            }
        }
        Ok(known)
    }
}

/// Everything before the inbox transaction: redelivery, verify and open, routing, consent,
/// replay. A refusal is quarantined here (its own transaction). `known` is what the inbox
/// held of the batch when it arrived; `opened` is what opening the envelope gave, when done
/// already (a batch opens on every core).
#[allow(clippy::too_many_arguments)]
async fn prepare(
    ctx: &Ctx,
    reads: &ConsentReads,
    known: &Known,
    subject: &str,
    body: &[u8],
    stream: StreamId,
    d: Delivery,
    opened: Option<OpenResult>,
) -> anyhow::Result<Prepared> {
    let seq = d.seq;
    if known.seqs.contains(&seq) {
        tracing::debug!(stream_seq = seq, "redelivery of a message already handled");
        return Ok(Prepared::Done);
    }
    let refuse = |header: Option<Header>, error: OpenError| async move {
        quarantine(ctx, subject, body, stream, seq, header.as_ref(), &error).await.map(|()| Prepared::Done)
    };
    // Opened as the broker took it in: keys judged at the broker's time, and a claimed
    // creation time further from it than the configured window refused.
    let opened = match opened.unwrap_or_else(|| ctx.isp().open_at(body, d.published_ms, skew_ms(ctx))) {
        Ok(opened) => opened,
        Err((header, error)) => return refuse(header, error).await,
    };
    let h = &opened.header;
    if let Some(why) = transport::subject_mismatch(subject, &h.sender, &h.recipient, h.kind()) {
        return refuse(Some(h.clone()), OpenError::Misrouted(why.to_owned())).await;
    }
    // Consent is re-checked against the record as it is now: a withdrawal since the send
    // stops the disclosure here too. Expiry is judged at the envelope's creation. A bucket
    // that cannot be read is transient (redelivered), never a pass.
    if h.consent.as_ref().is_some_and(|c| !c.consent_id.is_empty() || c.state() == proto::v1::ConsentState::Given) {
        let record = reads.get(ctx, h.consent.as_ref()).await?;
        if let Err(denial) = ctx.isp().recheck_consent(h, record.as_ref(), h.created_at_ms) {
            return refuse(Some(h.clone()), OpenError::Consent(denial)).await;
        }
    }
    if known.envelope_ids.contains(&h.envelope_id) {
        return refuse(Some(h.clone()), OpenError::Replayed(h.envelope_id.clone())).await;
    }
    Ok(Prepared::Store(Box::new(opened)))
}

/// The configured window (`HUB_CLOCK_SKEW_SECS`) between an envelope's claimed creation time
/// and the broker's timestamp of it, in ms.
fn skew_ms(ctx: &Ctx) -> i64 {
    i64::try_from(ctx.config.clock_skew.as_millis()).unwrap_or(i64::MAX)
}

/// One delivery ready to store: opened, with its sealed bytes, stream sequence and how many
/// times it has been delivered.
struct Ready<'a> {
    opened: &'a Opened,
    body: &'a [u8],
    stream: StreamId,
    seq: u64,
    delivered: i64,
}

/// The inbox transaction's work for envelopes stored together: their rows (one statement),
/// receipts and revocations they carry, the automatic receipts they are due (one statement
/// per table), and the service's domain change for each.
async fn store_in<A: Agency>(ctx: &Ctx, agency: &A, tx: &mut crate::db::Tx, ready: &[Ready<'_>]) -> anyhow::Result<()> {
    use proto::v1::payload::Body;
    // The inbox rows and the automatic receipts' rows go together (one round trip on SQLite),
    // unless receipts or revocations in the batch must first find the rows they change.
    let mut batch = crate::db::Batch::on(tx);
    store(&mut batch, ready);
    let mut rows = record_arrivals(ctx, ready);
    let revoking = ready.iter().any(|r| matches!(r.opened.payload.body, Some(Body::DisclosureRevoke(_))));
    if revoking || ready.iter().any(|r| matches!(r.opened.payload.body, Some(Body::ReferralAck(_)))) {
        batch.run(tx).await?;
    }
    // A revocation cancels what is owed on the referral it revokes, which may have arrived in
    // this same batch: its deadlines must be written first.
    if revoking {
        rows.flush(tx).await?;
    }
    let opened: Vec<&Opened> = ready.iter().map(|r| r.opened).collect();
    crate::receipts::apply(tx, &opened).await?;
    for r in ready {
        crate::receipts::apply_revocation(ctx, tx, r.opened).await?;
    }
    let due: Vec<&Opened> = ready.iter().map(|r| r.opened).filter(|o| acknowledgeable(kind::name(o.header.kind()))).collect();
    if !due.is_empty() {
        crate::receipts::auto_receipts_into(ctx, &mut batch, &due, proto::v1::AckStatus::Received, "").await?;
    }
    // The service's own handling may read what the inbox now holds.
    batch.run(tx).await?;
    let mut domain = Vec::with_capacity(ready.len());
    for r in ready {
        if r.delivered <= MAX_DOMAIN_ATTEMPTS {
            domain.push(r.opened);
        } else {
            tracing::error!(envelope_id = %r.opened.header.envelope_id, stream_seq = r.seq, delivered = r.delivered,
                "domain handling failed repeatedly; storing the envelope without it");
        }
    }
    agency.on_receive_batch(ctx, tx, &domain, &mut rows).await.context("the service's handling of the message")?;
    rows.flush(tx).await?;
    Ok(())
}

/// What arriving envelopes start: a referral's acknowledgement deadline (met only by a
/// staff member's answer), and an entry in the person's chronology.
fn record_arrivals(ctx: &Ctx, ready: &[Ready<'_>]) -> crate::agency::ArrivalRows {
    let now = ctx.config.clock.now_ms();
    let within = isp::policy::Deadlines::ms(ctx.isp().policy.deadlines.acknowledge_hours);
    let (mut deadlines, mut entries) = (Vec::new(), Vec::new());
    for r in ready {
        let h = &r.opened.header;
        if acknowledgeable(kind::name(h.kind())) {
            deadlines.push(crate::deadlines::Deadline {
                code: crate::deadlines::ACKNOWLEDGE.into(),
                target: h.envelope_id.clone(),
                subject_ref: h.subject_ref.clone(),
                case_ref: h.case_ref.clone(),
                counterpart: h.sender.clone(),
                due_at_ms: now + within,
            });
        }
        if !h.subject_ref.is_empty() && h.kind() != isp::Kind::ReferralAck {
            entries.push(crate::chronology::Entry {
                subject_ref: h.subject_ref.clone(),
                case_ref: h.case_ref.clone(),
                event: "disclosure_received".into(),
                code: kind::name(h.kind()).into(),
                item_id: h.envelope_id.clone(),
                counterpart: h.sender.clone(),
                at_ms: now,
                ..Default::default()
            });
        }
    }
    crate::agency::ArrivalRows { deadlines, chronology: entries }
}

/// Counts and logs an envelope whose inbox transaction has committed. `committed_at_ms` is
/// stamped after the commit returned: the log line is when the recipient holds it durably
/// (what `hub bench` measures delivery latency to).
fn stored(ctx: &Ctx, opened: &Opened, committed_at_ms: i64) {
    let h = &opened.header;
    ctx.metrics.received.get_or_create(&crate::metrics::KindLabel { kind: kind::name(h.kind()) }).inc();
    tracing::info!(envelope_id = %h.envelope_id, kind = kind::name(h.kind()), sender = %h.sender,
        subject_ref = %h.subject_ref, rule = %h.policy_rule, committed_at_ms, "envelope received and stored");
}

/// Handles one delivery. Ok means it is durably dealt with (stored, quarantined, or already
/// done under this stream sequence) and may be acked.
async fn receive<A: Agency>(ctx: &Ctx, agency: &A, subject: &str, body: &[u8], stream: StreamId, d: Delivery) -> anyhow::Result<()> {
    let known = Known::read(ctx, stream, &[(d.seq, body)]).await?;
    let Prepared::Store(opened) = prepare(ctx, &ConsentReads::default(), &known, subject, body, stream, d, None).await? else { return Ok(()) };
    let mut tx = ctx.pool.begin().await?;
    store_in(ctx, agency, &mut tx, &[Ready { opened: &opened, body, stream, seq: d.seq, delivered: d.delivered }]).await?;
    tx.commit().await?;
    let committed_at_ms = isp::now_ms();
    ctx.outbox_ready.notify_one();
    stored(ctx, &opened, committed_at_ms);
    Ok(())
}

/// Handles the deliveries that arrived together in one inbox transaction (one commit instead
/// of one each). If the batch cannot be stored whole (a replay inside it, a domain failure,
/// storage), nothing of it is committed and each is handled on its own, so every one still
/// gets its own verdict.
async fn receive_batch<A: Agency>(ctx: &Ctx, agency: &A, stream: StreamId, messages: Vec<Message>) {
    let mut ready = Vec::with_capacity(messages.len());
    let messages: Vec<(Message, Delivery)> = messages.into_iter().filter_map(|message| delivery(&message).map(|d| (message, d))).collect();
    let deliveries: Vec<(u64, &[u8])> = messages.iter().map(|(m, d)| (d.seq, m.payload.as_ref())).collect();
    let known = match Known::read(ctx, stream, &deliveries).await {
        Ok(known) => known,
        Err(e) => {
            tracing::error!(error = %e, "could not read the inbox; the batch will be redelivered");
            for (message, _) in &messages {
                let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
            return;
        }
    };
    // Open (verify and decrypt) what is new on every core; then the checks (a consent lookup
    // on the broker for each record the batch relies on) overlap, their outcomes taken in
    // stream order.
    let isp = ctx.isp();
    let skew = skew_ms(ctx);
    let bodies: Vec<Option<(bytes::Bytes, i64)>> =
        messages.iter().map(|(m, d)| (!known.seqs.contains(&d.seq)).then(|| (m.payload.clone(), d.published_ms))).collect();
    // A panic while opening one (a defect, or an input nobody foresaw) refuses that one only.
    let opens = crate::ctx::on_cores(bodies, move |body| {
        body.map(|(b, at)| std::panic::catch_unwind(AssertUnwindSafe(|| isp.open_at(&b, at, skew))).unwrap_or(Err((None, OpenError::HandlerPanic))))
    })
    .await;
    let reads = ConsentReads::default();
    let (reads, known) = (&reads, &known);
    let checked: Vec<_> = futures::stream::iter(messages.into_iter().zip(opens))
        .map(|((message, d), opened)| async move {
            let (subject, body) = (message.subject.as_str(), &message.payload[..]);
            let outcome = match AssertUnwindSafe(prepare(ctx, reads, known, subject, body, stream, d, opened)).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(_) => quarantine_panicked(ctx, subject, body, stream, d.seq).await.map(|()| Prepared::Done),
            };
            (message, d, outcome)
        })
        .buffered(16)
        .collect()
        .await;
    for (message, d, outcome) in checked {
        match outcome {
            Ok(Prepared::Done) => ack(&message, d.seq).await,
            Ok(Prepared::Store(opened)) => ready.push((message, d, opened)),
            Err(e) => {
                tracing::error!(stream_seq = d.seq, error = %e, "could not check a received message; it will be redelivered");
                let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    let together = async {
        let mut tx = ctx.pool.begin().await?;
        let all: Vec<Ready> = ready
            .iter()
            .map(|(message, d, opened)| Ready { opened, body: &message.payload, stream, seq: d.seq, delivered: d.delivered })
            .collect();
        store_in(ctx, agency, &mut tx, &all).await?;
        tx.commit().await?;
        anyhow::Ok(isp::now_ms())
    };
    // A panic in the batch (one message's domain handling, say) rolls it back, and each is
    // then handled alone, so only the one that panics is quarantined.
    let together = AssertUnwindSafe(together).catch_unwind().map(|r| r.unwrap_or_else(|_| Err(anyhow::anyhow!("handling the batch panicked"))));
    match together.await {
        Ok(committed_at_ms) => {
            ctx.outbox_ready.notify_one();
            for (message, d, opened) in &ready {
                stored(ctx, opened, committed_at_ms);
                ack(message, d.seq).await;
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, messages = ready.len(), "the batch could not be stored whole; one at a time");
            for (message, _, _) in ready {
                handle(ctx, agency, stream, message).await;
            }
        }
    }
}

async fn ack(message: &Message, seq: u64) {
    if let Err(e) = message.ack().await {
        tracing::warn!(stream_seq = seq, error = %e, "ack failed; the message will be redelivered and recognised");
    }
}

fn store<'a>(batch: &mut crate::db::Batch<'a>, ready: &[Ready<'a>]) {
    let now = isp::now_ms();
    for chunk in ready.chunks(crate::db::ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO inbox (envelope_id, stream_id, stream_seq, sender, kind, purpose, lawful_basis, consent_state, risk, subject_ref, \
             case_ref, categories, rule, policy_version, in_reply_to, envelope, status, created_at_ms, received_at_ms) VALUES {}",
            crate::db::placeholders(batch.sqlite(), chunk.len(), 19)
        );
        let q = batch.statement(sql);
        for r in chunk {
            let h = &r.opened.header;
            let consent = h.consent.clone().unwrap_or_default();
            q.bind(h.envelope_id.as_str())
                .bind(r.stream)
                .bind(r.seq as i64)
                .bind(h.sender.as_str())
                .bind(kind::name(h.kind()))
                .bind(h.purpose.as_str())
                .bind(h.lawful_basis.as_str())
                .bind(policy::consent_name(consent.state()))
                .bind(policy::risk_name(RiskLevel::try_from(h.risk).unwrap_or_default()))
                .bind(h.subject_ref.as_str())
                .bind(h.case_ref.as_str())
                .bind(h.data_categories.join(","))
                .bind(h.policy_rule.as_str())
                .bind(h.policy_version.as_str())
                .bind(h.in_reply_to.as_str())
                .bind(r.body)
                .bind(crate::status::Arrival::New.code())
                .bind(h.created_at_ms)
                .bind(now);
        }
    }
}

/// How many refusals of junk (messages that verify as nobody's) on one subject a minute are
/// each reported to the ledger with a signed event.
const JUNK_REPORTS_PER_MINUTE: i64 = 10;

/// Keeps a refused envelope out of the inbox, and queues the signed refusal for the ledger,
/// in one transaction. The quarantine keeps the body's SHA-256, its length and its first
/// [`QUARANTINE_PREFIX_BYTES`] bytes, not the body: a refused body may be anything, of any
/// size, from anyone with broker rights (the stream, which the audit service reads, has it).
#[allow(clippy::too_many_arguments)]
async fn quarantine(ctx: &Ctx, subject: &str, body: &[u8], stream: StreamId, seq: u64, header: Option<&Header>, error: &OpenError) -> anyhow::Result<()> {
    let (event, event_bytes) = ctx.isp().rejection_event(header, error, seq);
    let event_kind = if error.is_violation() { EventKind::Violation } else { EventKind::ReceiveRejected };
    let mut tx = ctx.pool.begin().await?;
    // A message that verifies as nobody's (junk) is reported to the ledger one by one only up
    // to JUNK_REPORTS_PER_MINUTE a subject: beyond that a flood would write one signed event
    // per junk message; the audit service's aggregate of the junk it reads on the stream
    // stands for the rest, and the quarantine keeps each one's digest.
    let report = match header {
        Some(_) => true,
        None => {
            let (recent,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM quarantine WHERE subject = $1 AND envelope_id = '' AND received_at_ms > $2")
                .bind(subject)
                .bind(isp::now_ms() - 60_000)
                .fetch_one(&mut *tx)
                .await?;
            recent < JUNK_REPORTS_PER_MINUTE
        }
    };
    sqlx::query(
        "INSERT INTO quarantine (stream_id, stream_seq, subject, envelope_id, claimed_sender, reason, detail, violation, body_sha256, body_prefix, \
         body_bytes, received_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
    )
    .bind(stream)
    .bind(seq as i64)
    .bind(subject)
    .bind(header.map(|h| h.envelope_id.as_str()).unwrap_or_default())
    .bind(header.map(|h| h.sender.as_str()).unwrap_or_default())
    .bind(error.code())
    .bind(error.to_string())
    .bind(error.is_violation() as i64)
    .bind(digest(body))
    .bind(&body[..body.len().min(QUARANTINE_PREFIX_BYTES)])
    .bind(body.len() as i64)
    .bind(isp::now_ms())
    .execute(&mut *tx)
    .await?;
    if !report {
        tx.commit().await?;
        ctx.metrics.quarantined.get_or_create(&crate::metrics::ReasonLabel { reason: error.code() }).inc();
        tracing::debug!(stream_seq = seq, reason = error.code(), "junk quarantined; the audit service's aggregate reports it");
        return Ok(());
    }
    outbox::enqueue(&mut tx, &event.event_id, &transport::event_subject(ctx.agency(), event_kind), &event_bytes).await?;
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    ctx.metrics.quarantined.get_or_create(&crate::metrics::ReasonLabel { reason: error.code() }).inc();
    if error.is_violation() {
        tracing::error!(stream_seq = seq, reason = error.code(), claimed_sender = %event.counterpart, envelope_id = %event.envelope_id,
            "protocol VIOLATION: envelope quarantined and reported to the ledger");
    } else {
        tracing::warn!(stream_seq = seq, reason = error.code(), claimed_sender = %event.counterpart, envelope_id = %event.envelope_id,
            "envelope refused and quarantined");
    }
    Ok(())
}

/// The decrypted payload of a stored inbox envelope, re-verified.
pub async fn read(ctx: &Ctx, envelope_id: &str) -> anyhow::Result<Option<(Opened, String)>> {
    let row = sqlx::query("SELECT envelope, status FROM inbox WHERE envelope_id = $1")
        .bind(envelope_id)
        .fetch_optional(&ctx.pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let envelope: Vec<u8> = row.try_get("envelope")?;
    let status: String = row.try_get("status")?;
    let opened = ctx.isp().open(&envelope).map_err(|(_, e)| anyhow::anyhow!("stored envelope no longer opens: {e}"))?;
    Ok(Some((opened, status)))
}

/// The answers given in this agency's inbox (accepted, declined or closed) to those of
/// `envelope_ids` it holds: what an agency following its own records of them asks, so that it
/// never reads the inbox's table itself.
pub async fn answers(pool: &sqlx::AnyPool, envelope_ids: &[String]) -> sqlx::Result<Vec<(String, crate::status::Arrival)>> {
    use crate::status::Arrival;
    let mut found = Vec::new();
    for chunk in envelope_ids.chunks(ANSWERS_PER_QUERY) {
        let sql = format!("SELECT envelope_id, status FROM inbox WHERE status IN ($1, $2, $3) AND envelope_id IN ({})", crate::db::numbered(4, chunk.len()));
        let mut query = sqlx::query_as::<_, (String, String)>(&sql).bind(Arrival::Accepted.code()).bind(Arrival::Declined.code()).bind(Arrival::Closed.code());
        for id in chunk {
            query = query.bind(id);
        }
        found.extend(query.fetch_all(pool).await?.into_iter().filter_map(|(id, status)| Some((id, Arrival::parse(&status)?))));
    }
    Ok(found)
}

/// Envelope ids per query of [`answers`]: far below either engine's limit on parameters.
const ANSWERS_PER_QUERY: usize = 500;

/// Whether a kind is one staff acknowledge (accept, decline, close).
pub fn acknowledgeable(kind_name: &str) -> bool {
    isp::kind::parse(kind_name).is_some_and(kind::expects_ack) || kind_name == kind::name(Kind::PerpetratorEngagementUpdate)
}
