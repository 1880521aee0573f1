//! Sending: seal, then write the envelope to the outbox in the caller's transaction; a
//! publisher drains the outbox to JetStream with the envelope id as the message id.
//!
//! A refused send publishes nothing: its near-miss event goes through the same outbox, so the
//! ledger learns of it even if the broker is down when it happens.
//!
//! Consent is checked twice at the sender: when sealing, and again by the publisher just
//! before a disclosure leaves. One whose consent was withdrawn (or expired) while it waited
//! is stopped: never published, marked `stopped` in `sent` and the outbox, and a signed near
//! miss naming it goes to the ledger instead.
//!
//! A message the broker will never take is set aside rather than retried for ever ahead of
//! everything queued after it: at once when the broker refuses it outright (larger than it
//! carries, an envelope that does not decode), after [`MAX_ATTEMPTS`] failed publishes
//! otherwise (counted only while other messages go through, so a broker outage sets nothing
//! aside). It keeps its outbox row (`set_aside_at_ms`, `set_aside_reason`); its `sent` row
//! says `set_aside` and why; an error line is logged.

use std::time::Duration;

use futures::StreamExt as _;
use anyhow::Context as _;
use async_nats::jetstream::message::PublishMessage as Publish;
use isp::{Denial, IspError, Outgoing, kind, policy};
use prost::Message as _;
use proto::v1::{Envelope, EventKind, Header};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use crate::send::{SendError, SendOutcome};
use crate::{
    consent_read::ConsentReads,
    ctx::Ctx,
    db::{Migration, Tx},
    send::{AskedBy, Pending},
    status::Disclosure,
    transport,
};

pub fn migrations() -> Vec<Migration> {
    vec![Migration { version: 41, description: "outbox set aside", sql: include_str!("../migrations/0041_outbox_set_aside.sql") }]
}

/// Failed publishes of one outbox message (while others went through) before it is set aside.
pub const MAX_ATTEMPTS: i64 = 10;

fn consent_state_name(out: &Outgoing) -> &'static str {
    policy::consent_name(out.consent.as_ref().map(|c| c.state()).unwrap_or_default())
}

/// How many waiting sends one transaction takes at most.
const SEND_BATCH: usize = 64;

impl Ctx {
    /// Seals and queues one disclosure. Sends that arrive while others are being written go
    /// together: their consent records are read once each, they are sealed outside the
    /// transaction, and one commit keeps them all; each still gets its own answer. If the
    /// batch cannot be written whole, each is sent again on its own.
    pub async fn send(&self, out: &Outgoing) -> Result<SendOutcome, SendError> {
        self.send_batched(out, None).await
    }

    /// As [`Ctx::send`], asked for by staff member `staff_id`: the `sent` row names them as
    /// its sender and the send enters the person's chronology, both in the send's own
    /// transaction (what the API's `POST /disclosures` does).
    pub async fn send_as(&self, out: &Outgoing, staff_id: &str) -> Result<SendOutcome, SendError> {
        self.send_batched(out, Some(&AskedBy { staff_id: staff_id.to_owned(), chronicled: true })).await
    }

    async fn send_batched(&self, out: &Outgoing, by: Option<&AskedBy>) -> Result<SendOutcome, SendError> {
        let (reply, answer) = oneshot::channel();
        if self.sends.send((out.clone(), by.cloned(), reply)).await.is_ok() {
            if let Ok(result) = answer.await {
                return result;
            }
        }
        // The sender task has stopped (the service is shutting down): send it alone.
        self.send_alone(out, by).await
    }

    /// Seals and queues one disclosure in its own transaction.
    async fn send_alone(&self, out: &Outgoing, by: Option<&AskedBy>) -> Result<SendOutcome, SendError> {
        let mut tx = self.pool.begin().await?;
        let result = self.send_in_by(&mut tx, out, by).await;
        if matches!(result, Ok(_) | Err(SendError::Denied { .. })) {
            tx.commit().await?;
            self.outbox_ready.notify_one();
        }
        result
    }

    /// Seals one disclosure and queues it in the caller's transaction, so it is sent if and
    /// only if the caller's change commits. A denial queues the near-miss event instead and
    /// returns `SendError::Denied`; commit the transaction to keep that record.
    pub async fn send_in(&self, tx: &mut Tx, out: &Outgoing) -> Result<SendOutcome, SendError> {
        self.send_in_by(tx, out, None).await
    }

    /// As [`Ctx::send_in`], made for staff member `staff_id` by one of the service's own steps:
    /// the `sent` row names them (the step writes its own chronology entry).
    pub async fn send_in_as(&self, tx: &mut Tx, out: &Outgoing, staff_id: &str) -> Result<SendOutcome, SendError> {
        self.send_in_by(tx, out, Some(&AskedBy { staff_id: staff_id.to_owned(), chronicled: false })).await
    }

    async fn send_in_by(&self, tx: &mut Tx, out: &Outgoing, by: Option<&AskedBy>) -> Result<SendOutcome, SendError> {
        let consent = self.consent_for_in(Some(&mut *tx), out.consent.as_ref()).await.map_err(|e| SendError::ConsentUnavailable(format!("{e:#}")))?;
        let sealed = self.isp().seal(out, consent.as_ref());
        let result = self.queue_many_in(tx, vec![(out, by, sealed)]).await?.pop().expect("one answer per send");
        // Counted once written to the caller's transaction (which commits it, as a rule).
        self.metrics.count_send(out.kind, &result);
        result
    }

    /// Writes what sealing decided for each send, in the caller's transaction: the envelopes
    /// to the outbox and their `sent` rows (one statement for each table, however many), or
    /// for a denial the near miss. Answers in the order given; an error means nothing of the
    /// lot may be committed. A send asked for by a staff member (`by`) names them in its
    /// `sent` row, and once allowed enters the person's chronology.
    pub(crate) async fn queue_many_in(&self, tx: &mut Tx, sends: Vec<(&Outgoing, Option<&AskedBy>, Result<isp::Sealed, IspError>)>) -> Result<Vec<Result<SendOutcome, SendError>>, sqlx::Error> {
        let mut batch = crate::db::Batch::on(tx);
        let answers = self.queue_many_into(&mut batch, sends)?;
        batch.run(tx).await?;
        Ok(answers)
    }

    /// [`Ctx::queue_many_in`]'s writes (outbox, sent and chronology rows), added to a batch of
    /// the caller's transaction.
    pub(crate) fn queue_many_into(&self, batch: &mut crate::db::Batch<'_>, sends: Vec<(&Outgoing, Option<&AskedBy>, Result<isp::Sealed, IspError>)>) -> Result<Vec<Result<SendOutcome, SendError>>, sqlx::Error> {
        let now = isp::now_ms();
        let limit = transport::max_message_bytes(&self.jetstream.client());
        let mut answers = Vec::with_capacity(sends.len());
        let mut outbox = Vec::with_capacity(sends.len());
        let mut sent = Vec::with_capacity(sends.len());
        let mut chronology = Vec::new();
        for (out, by, sealed) in sends {
            match sealed {
                // Queued, it could never be published, and would hold up everything after it.
                Ok(sealed) if sealed.envelope.len() > limit => answers.push(Err(SendError::TooLarge { bytes: sealed.envelope.len(), limit })),
                Ok(sealed) => {
                    let h = sealed.header;
                    let outcome = SendOutcome {
                        envelope_id: h.envelope_id.clone(),
                        rule: sealed.decision.rule.clone(),
                        policy_version: sealed.decision.policy_version.clone(),
                        categories: h.data_categories.clone(),
                        removed: sealed.removed.iter().cloned().collect(),
                        without_consent: sealed.decision.without_consent,
                    };
                    tracing::info!(envelope_id = %outcome.envelope_id, kind = kind::name(out.kind), recipient = %out.recipient,
                        rule = %outcome.rule, removed = outcome.removed.len(), "disclosure sealed and queued");
                    if let Some(asked) = by.filter(|b| b.chronicled && !out.subject_ref.is_empty()) {
                        chronology.push(crate::chronology::Entry {
                            subject_ref: out.subject_ref.clone(),
                            case_ref: out.case_ref.clone(),
                            event: "disclosure_sent".into(),
                            code: kind::name(out.kind).into(),
                            item_id: h.envelope_id.clone(),
                            counterpart: out.recipient.clone(),
                            staff_id: asked.staff_id.clone(),
                            at_ms: self.config.clock.now_ms(),
                            ..Default::default()
                        });
                    }
                    outbox.push((h.envelope_id, transport::message_subject(&h.sender, &h.recipient, out.kind), sealed.envelope));
                    sent.push((out, outcome.clone(), Disclosure::Queued, "", by.map(|b| b.staff_id.as_str())));
                    answers.push(Ok(outcome));
                }
                Err(IspError::Denied(denial)) => {
                    let (event, bytes) = self.isp().denial_event(out, &denial);
                    let outcome = SendOutcome {
                        envelope_id: event.event_id.clone(),
                        rule: denial.rule.clone(),
                        policy_version: self.isp().policy.version.clone(),
                        categories: event.data_categories.clone(),
                        removed: Vec::new(),
                        without_consent: false,
                    };
                    tracing::warn!(near_miss_id = %event.event_id, kind = kind::name(out.kind), recipient = %out.recipient,
                        rule = %denial.rule, reason = denial.reason, "disclosure refused by the ISP (near miss recorded)");
                    outbox.push((event.event_id.clone(), transport::event_subject(self.agency(), EventKind::SendDenied), bytes));
                    sent.push((out, outcome, Disclosure::Denied, denial.reason, by.map(|b| b.staff_id.as_str())));
                    answers.push(Err(SendError::Denied { denial, near_miss_id: event.event_id }));
                }
                Err(other) => answers.push(Err(SendError::Refused(other))),
            }
        }
        enqueue_many(batch, outbox);
        for chunk in sent.chunks(crate::db::ROWS_PER_INSERT) {
            insert_sent(batch, &self.isp().keys, chunk, now)?;
        }
        crate::chronology::add_many_into(batch, &chronology);
        Ok(answers)
    }
}

/// Takes the sends of [`Ctx::send`] in batches until shutdown.
pub(crate) async fn send_loop(ctx: Ctx, mut pending: mpsc::Receiver<Pending>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(SEND_BATCH);
    loop {
        let taken = tokio::select! {
            taken = pending.recv_many(&mut batch, SEND_BATCH) => taken,
            _ = shutdown.cancelled() => return Ok(()),
        };
        if taken == 0 {
            return Ok(());
        }
        send_batch(&ctx, std::mem::take(&mut batch)).await;
    }
}

async fn send_batch(ctx: &Ctx, batch: Vec<Pending>) {
    // Consent first, outside the transaction (the publisher checks it again before anything
    // leaves); then the crypto, so the connection is held only for the writes.
    let reads = ConsentReads::default();
    let consents = futures::future::join_all(batch.iter().map(|(out, _, _)| reads.get(ctx, out.consent.as_ref()))).await;
    let mut to_seal = Vec::with_capacity(batch.len());
    for ((out, by, reply), consent) in batch.into_iter().zip(consents) {
        match consent {
            Ok(consent) => to_seal.push((out, by, reply, consent)),
            Err(e) => {
                let _ = reply.send(Err(SendError::ConsentUnavailable(format!("{e:#}"))));
            }
        }
    }
    if to_seal.is_empty() {
        return;
    }
    let isp = ctx.isp();
    let (waiting, sealed): (Vec<_>, Vec<_>) = crate::ctx::on_cores(to_seal, move |(out, by, reply, consent)| {
        let sealed = isp.seal(&out, consent.as_ref());
        ((out, by, reply), sealed)
    })
    .await
    .into_iter()
    .unzip();
    let together = async {
        let mut tx = ctx.pool.begin().await?;
        let results = ctx.queue_many_in(&mut tx, waiting.iter().zip(sealed).map(|((out, by, _), sealed)| (out, by.as_ref(), sealed)).collect()).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(results)
    };
    match together.await {
        Ok(results) => {
            ctx.outbox_ready.notify_one();
            for ((out, _, reply), result) in waiting.into_iter().zip(results) {
                ctx.metrics.count_send(out.kind, &result);
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, sends = waiting.len(), "a batch of sends could not be written whole; one at a time");
            for (out, by, reply) in waiting {
                let _ = reply.send(ctx.send_alone(&out, by.as_ref()).await);
            }
        }
    }
}

/// `sent` rows: the send as asked, what the ISP decided, its status and why.
/// The rationale for sharing without consent is stored sealed to the agency's own key.
fn insert_sent(batch: &mut crate::db::Batch<'_>, keys: &isp::AgencyKeys, rows: &[(&Outgoing, SendOutcome, Disclosure, &str, Option<&str>)], now: i64) -> Result<(), sqlx::Error> {
    let rationales = rows
        .iter()
        .map(|(out, o, _, _, _)| keys.seal_at_rest(out.justification.as_ref().filter(|_| o.without_consent).map(|j| j.rationale.as_str()).unwrap_or_default()))
        .collect::<Result<Vec<String>, _>>()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let sql = format!(
        "INSERT INTO sent (envelope_id, recipient, kind, purpose, lawful_basis, consent_state, risk, subject_ref, case_ref, \
         categories, removed, rule, reason, policy_version, without_consent, in_reply_to, status, status_reason, created_at_ms, updated_at_ms, \
         consent_id, consent_recorded_by, officer, rationale_code, rationale, sent_by) VALUES {}",
        crate::db::placeholders(batch.sqlite(), rows.len(), 26)
    );
    let q = batch.statement(sql);
    for ((out, o, status, reason, by), rationale) in rows.iter().zip(rationales) {
        // Who decided to share without consent and why stay only with a disclosure that was.
        let justification = out.justification.as_ref().filter(|_| o.without_consent);
        q.bind(o.envelope_id.as_str())
            .bind(out.recipient.as_str())
            .bind(kind::name(out.kind))
            .bind(out.purpose.as_str())
            .bind(out.lawful_basis.as_str())
            .bind(consent_state_name(out))
            .bind(policy::risk_name(out.risk))
            .bind(out.subject_ref.as_str())
            .bind(out.case_ref.as_str())
            .bind(o.categories.join(","))
            .bind(o.removed.join(","))
            .bind(o.rule.as_str())
            .bind(*reason)
            .bind(o.policy_version.as_str())
            .bind(o.without_consent as i64)
            .bind(out.in_reply_to.as_str())
            .bind(status.code())
            .bind("")
            .bind(now)
            .bind(now)
            .bind(out.consent.as_ref().map(|c| c.consent_id.as_str()).unwrap_or_default())
            .bind(out.consent.as_ref().map(|c| c.recorded_by.as_str()).unwrap_or_default())
            .bind(justification.map(|j| j.officer.as_str()).unwrap_or_default())
            .bind(justification.map(|j| j.rationale_code.as_str()).unwrap_or_default())
            .bind(rationale)
            .bind(*by);
    }
    Ok(())
}

/// Queues one message for publishing.
pub async fn enqueue(tx: &mut Tx, id: &str, subject: &str, body: &[u8]) -> Result<(), sqlx::Error> {
    let mut batch = crate::db::Batch::on(tx);
    enqueue_many(&mut batch, vec![(id.to_owned(), subject.to_owned(), body.to_vec())]);
    batch.run(tx).await
}

/// Queues messages (id, subject, body) for publishing, in one statement per
/// [`crate::db::ROWS_PER_INSERT`], added to a batch of the caller's transaction.
fn enqueue_many(batch: &mut crate::db::Batch<'_>, messages: Vec<(String, String, Vec<u8>)>) {
    let now = isp::now_ms();
    let mut messages = messages.into_iter().peekable();
    while messages.peek().is_some() {
        let chunk: Vec<_> = messages.by_ref().take(crate::db::ROWS_PER_INSERT).collect();
        let sql = format!("INSERT INTO outbox (id, subject, body, created_at_ms, attempts) VALUES {}", crate::db::placeholders(batch.sqlite(), chunk.len(), 5));
        let q = batch.statement(sql);
        for (id, subject, body) in chunk {
            q.bind(id).bind(subject).bind(body).bind(now).bind(0i64);
        }
    }
}

/// Drains the outbox until shutdown. Broker outages delay; they never lose or double a
/// message: a row is marked published only after JetStream acknowledged it, and a re-publish
/// of the same id is de-duplicated by the stream.
pub async fn publish_loop(ctx: Ctx, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        match publish_pending(&ctx).await {
            // What was pending is dealt with; a commit since then has left a wake-up behind.
            Ok(false) => {
                backoff = Duration::from_millis(100);
                tokio::select! {
                    _ = ctx.outbox_ready.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
            Ok(true) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "outbox publish failed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The envelope as it goes on the wire: as sealed, or, when it has waited in the outbox for
/// more than half the partnership's clock window (the broker was away), signed again with
/// the time it is published ([`isp::Isp::restamp`]: same id, same sealed payload), so its
/// recipient does not refuse it as `clock_skew`. Anything but a disclosure goes as it is.
fn stamped(ctx: &Ctx, subject: &str, body: Vec<u8>) -> Result<Vec<u8>, IspError> {
    // What the broker will not carry is set aside for that, whatever its age.
    if !subject.starts_with("hub.v1.msg.") || body.len() > transport::max_message_bytes(&ctx.jetstream.client()) {
        return Ok(body);
    }
    let created = Envelope::decode(body.as_slice()).ok().and_then(|e| Header::decode(e.header.as_slice()).ok()).map(|h| h.created_at_ms);
    let now = isp::now_ms();
    let waited_too_long = created.is_some_and(|c| now.saturating_sub(c) > i64::try_from(ctx.config.clock_skew.as_millis() / 2).unwrap_or(i64::MAX));
    if !waited_too_long {
        return Ok(body);
    }
    let restamped = ctx.isp().restamp(&body, now)?;
    tracing::info!(waited_ms = now - created.unwrap_or(now), "a disclosure that waited in the outbox is signed again with the time it is published");
    Ok(restamped)
}

/// How many outbox rows one pass takes at most.
const PUBLISH_BATCH: usize = 256;
/// How many bytes of envelopes one pass takes (and at least one row): a pass holds each
/// several times over (the row, the message, the client's buffer), and an outbox that filled
/// while the broker was down may hold hundreds of envelopes of up to a megabyte.
const PUBLISH_BYTES: i64 = 4 << 20;

/// Publishes up to one batch of pending rows, acks in flight together. Returns whether rows
/// may be left pending (a full batch, or some not acknowledged): then the publisher looks
/// again at once rather than waiting for the next commit.
pub async fn publish_pending(ctx: &Ctx) -> anyhow::Result<bool> {
    // The rows in order while the bytes before each stay under PUBLISH_BYTES; LENGTH reads a
    // body's size, not the body.
    let rows: Vec<(String, String, Vec<u8>)> = crate::db::read_rows(
        &ctx.pool,
        &ctx.reads,
        "SELECT id, subject, body FROM outbox WHERE id IN (\
            SELECT id FROM (\
                SELECT id, SUM(LENGTH(body)) OVER (ORDER BY id) - LENGTH(body) AS before FROM outbox \
                WHERE published_at_ms IS NULL AND stopped_at_ms IS NULL AND set_aside_at_ms IS NULL ORDER BY id LIMIT $1\
            ) AS pending WHERE before < $2\
        ) ORDER BY id",
        &[crate::db::Value::Int(PUBLISH_BATCH as i64), crate::db::Value::Int(PUBLISH_BYTES)],
    )
    .await
    .context("reading the outbox")?;
    if rows.is_empty() {
        return Ok(false);
    }
    // While disconnected the client would buffer publishes and send them on reconnect,
    // after consent may have been withdrawn: wait for the broker, then re-check and publish.
    anyhow::ensure!(
        ctx.jetstream.client().connection_state() == async_nats::connection::State::Connected,
        "not connected to the broker"
    );
    let mut acks = Vec::with_capacity(rows.len());
    // Rows dealt with outside the batch of acks: stopped disclosures and consent writes.
    let mut stopped = 0;
    // The consent re-checks (a lookup on the broker each) overlap; publishing stays in order.
    let full = rows.len() == PUBLISH_BATCH || rows.iter().map(|(_, _, body)| body.len() as i64).sum::<i64>() >= PUBLISH_BYTES;
    let reads = ConsentReads::default();
    let checks: Vec<_> = rows.iter().map(|(_, subject, body)| consent_lapsed(ctx, &reads, subject, body)).collect();
    let lapsed: Vec<anyhow::Result<Lapse>> = futures::stream::iter(checks).buffered(32).collect().await;
    // Messages that failed, and a failure that must stop this pass (a consent write the
    // broker could not take now: what follows may rely on it).
    let mut failed: Vec<(String, Failure)> = Vec::new();
    let mut halt = None;
    for ((id, subject, body), lapsed) in rows.into_iter().zip(lapsed) {
        match lapsed? {
            Lapse::Holds => {}
            Lapse::Lapsed(denial) => {
                stop(ctx, &id, &body, &denial).await?;
                stopped += 1;
                continue;
            }
            Lapse::Undecodable => {
                failed.push((id, Failure::Never("the queued envelope does not decode".into())));
                continue;
            }
        }
        let body = match stamped(ctx, &subject, body) {
            Ok(body) => body,
            Err(e) => {
                failed.push((id, Failure::Never(format!("the queued envelope cannot be signed again: {e}"))));
                continue;
            }
        };
        let consent_write = subject.starts_with("$KV.");
        let bytes = body.len();
        let ack = match ctx.jetstream.send_publish(subject, Publish::build().payload(body.into()).message_id(&id)).await {
            Ok(ack) => ack,
            Err(e) => {
                failed.push((id, Failure::of_publish(ctx, &e, bytes)));
                continue;
            }
        };
        if consent_write {
            // A consent record must be in the bucket before any later disclosure relying on
            // it is re-checked and published: wait for it here.
            match ack.await {
                Ok(_) => {
                    mark_published(ctx, &id).await?;
                    stopped += 1;
                }
                Err(e) => match Failure::of_ack(&e) {
                    Failure::Transient(_) => {
                        halt = Some(anyhow::Error::new(e).context("writing a consent record to the bucket"));
                        break;
                    }
                    refused => failed.push((id, refused)),
                },
            }
            continue;
        }
        acks.push((id, ack));
    }
    let mut published = Vec::with_capacity(acks.len());
    for (id, ack) in acks {
        match ack.await {
            Ok(_) => published.push(id),
            Err(e) => failed.push((id, Failure::of_ack(&e))),
        }
    }
    let now = isp::now_ms();
    // Two statements for the whole batch, not two per row, sent together: each statement is a
    // round trip to the database (for SQLite, a hop to its worker thread and back).
    if !published.is_empty() {
        let mut tx = ctx.pool.begin().await?;
        let mut batch = crate::db::Batch::on(&mut tx);
        for chunk in published.chunks(200) {
            let q = batch.statement(format!("UPDATE outbox SET published_at_ms = $1, attempts = attempts + 1 WHERE id IN ({})", crate::db::numbered(2, chunk.len())));
            q.bind(now);
            for id in chunk {
                q.bind(id);
            }
            let q = batch.statement(format!("UPDATE sent SET status = $2, updated_at_ms = $1 WHERE status = $3 AND envelope_id IN ({})", crate::db::numbered(4, chunk.len())));
            q.bind(now).bind(Disclosure::Published.code()).bind(Disclosure::Queued.code());
            for id in chunk {
                q.bind(id);
            }
        }
        batch.run(&mut tx).await?;
        tx.commit().await?;
    }
    // With other messages going through, a message that fails is the message's problem, not
    // the broker's: count it.
    let broker_working = !published.is_empty() || stopped > 0;
    let mut set_aside = 0;
    let mut transient = None;
    for (id, failure) in failed {
        let reason = match failure {
            Failure::Never(reason) => Some(reason),
            Failure::Refused(reason) => counted(ctx, &id, &reason).await?,
            Failure::Transient(reason) if broker_working => counted(ctx, &id, &reason).await?,
            Failure::Transient(reason) => {
                transient.get_or_insert(reason);
                None
            }
        };
        if let Some(reason) = reason {
            set_aside += set_aside_row(ctx, &id, &reason).await? as usize;
        }
    }
    if let Some(e) = halt {
        return Err(e);
    }
    match transient {
        Some(reason) if !broker_working && set_aside == 0 => Err(anyhow::anyhow!("waiting for JetStream to acknowledge: {reason}")),
        transient => Ok(full || transient.is_some() || set_aside > 0),
    }
}

/// Why one outbox message was not published.
enum Failure {
    /// The broker will never take it: set aside now.
    Never(String),
    /// The broker refused it: counted towards [`MAX_ATTEMPTS`].
    Refused(String),
    /// Timed out, connection trouble: counted only while other messages go through.
    Transient(String),
}

impl Failure {
    /// A publish the client would not send.
    fn of_publish(ctx: &Ctx, e: &async_nats::jetstream::context::PublishError, bytes: usize) -> Failure {
        use async_nats::jetstream::context::PublishErrorKind as K;
        match e.kind() {
            K::MaxPayloadExceeded => Failure::Never(format!(
                "the message is {bytes} bytes, more than the {} the broker carries in one message",
                transport::max_message_bytes(&ctx.jetstream.client())
            )),
            K::TimedOut | K::BrokenPipe | K::MaxAckPending => Failure::Transient(e.to_string()),
            _ => Failure::Refused(format!("the broker client refused it: {e}")),
        }
    }

    /// A publish the broker did not acknowledge.
    fn of_ack(e: &async_nats::jetstream::context::PublishError) -> Failure {
        use async_nats::jetstream::{ErrorCode, context::PublishErrorKind as K};
        let api = std::error::Error::source(e).and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>());
        match (e.kind(), api) {
            (_, Some(api)) if api.error_code() == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM => {
                Failure::Never(format!("the stream refused it: {api}"))
            }
            // The stream is full (it refuses new messages rather than drop unread ones): wait.
            (_, Some(api)) if api.error_code() == ErrorCode::STREAM_STORE_FAILED => Failure::Transient(api.to_string()),
            (_, Some(api)) => Failure::Refused(format!("the stream refused it: {api}")),
            (K::Other | K::WrongLastMessageId | K::WrongLastSequence, None) => Failure::Refused(format!("the broker refused it: {e}")),
            _ => Failure::Transient(e.to_string()),
        }
    }
}

/// Counts one more failed publish of an outbox message; the reason to set it aside once it
/// has failed [`MAX_ATTEMPTS`] times.
async fn counted(ctx: &Ctx, id: &str, reason: &str) -> anyhow::Result<Option<String>> {
    sqlx::query("UPDATE outbox SET attempts = attempts + 1 WHERE id = $1").bind(id).execute(&ctx.pool).await?;
    let attempts: i64 = sqlx::query("SELECT attempts FROM outbox WHERE id = $1").bind(id).fetch_one(&ctx.pool).await?.try_get("attempts")?;
    tracing::warn!(outbox_id = %id, attempts, reason, "an outbox message was not published; will retry");
    Ok((attempts >= MAX_ATTEMPTS).then(|| format!("{reason} (failed {attempts} times)")))
}

/// Sets one outbox message aside: never retried; its `sent` row says so and why. Returns
/// whether it was still pending.
async fn set_aside_row(ctx: &Ctx, id: &str, reason: &str) -> anyhow::Result<bool> {
    let now = isp::now_ms();
    let mut tx = ctx.pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE outbox SET set_aside_at_ms = $1, set_aside_reason = $2 WHERE id = $3 AND published_at_ms IS NULL AND stopped_at_ms IS NULL AND set_aside_at_ms IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("UPDATE sent SET status = $1, status_reason = $2, updated_at_ms = $3 WHERE envelope_id = $4 AND status = $5")
        .bind(Disclosure::SetAside.code())
        .bind(reason)
        .bind(now)
        .bind(id)
        .bind(Disclosure::Queued.code())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::error!(outbox_id = %id, reason, "an outbox message the broker will not take was set aside; what was queued after it goes on");
    Ok(true)
}

pub(crate) async fn mark_published(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    sqlx::query("UPDATE outbox SET published_at_ms = $1, attempts = attempts + 1 WHERE id = $2").bind(isp::now_ms()).bind(id).execute(&ctx.pool).await?;
    Ok(())
}

/// What the publisher finds of a queued message's consent.
enum Lapse {
    /// Events, disclosures that rely on no consent record, and those whose consent holds.
    Holds,
    /// The consent a disclosure relies on stopped holding since it was sealed.
    Lapsed(Denial),
    /// The queued envelope does not decode: it can never be checked, nor should it leave.
    Undecodable,
}

/// Whether the consent a queued disclosure relies on has stopped holding since it was sealed.
async fn consent_lapsed(ctx: &Ctx, reads: &ConsentReads, subject: &str, body: &[u8]) -> anyhow::Result<Lapse> {
    if transport::parse_message_subject(subject).is_none() {
        return Ok(Lapse::Holds);
    }
    let Some(header) = Envelope::decode(body).ok().and_then(|e| Header::decode(e.header.as_slice()).ok()) else { return Ok(Lapse::Undecodable) };
    if header.consent.as_ref().is_none_or(|c| c.consent_id.is_empty()) {
        return Ok(Lapse::Holds);
    }
    let record = reads.get(ctx, header.consent.as_ref()).await?;
    Ok(ctx.isp().recheck_consent(&header, record.as_ref(), isp::now_ms()).err().map_or(Lapse::Holds, Lapse::Lapsed))
}

/// Stops one queued disclosure: never published; the signed near miss goes out instead.
async fn stop(ctx: &Ctx, id: &str, body: &[u8], denial: &Denial) -> anyhow::Result<()> {
    let header = Envelope::decode(body).ok().and_then(|e| Header::decode(e.header.as_slice()).ok()).context("an outbox envelope does not decode")?;
    let (event, bytes) = ctx.isp().stopped_event(&header, denial);
    let now = isp::now_ms();
    let mut tx = ctx.pool.begin().await?;
    let stopped = sqlx::query("UPDATE outbox SET stopped_at_ms = $1, stop_reason = $2 WHERE id = $3 AND published_at_ms IS NULL AND stopped_at_ms IS NULL")
        .bind(now)
        .bind(denial.reason)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if stopped.rows_affected() == 0 {
        return Ok(()); // another publisher pass stopped or published it meanwhile
    }
    sqlx::query("UPDATE sent SET status = $1, status_reason = $2, updated_at_ms = $3 WHERE envelope_id = $4")
        .bind(Disclosure::Stopped.code())
        .bind(denial.reason)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    enqueue(&mut tx, &event.event_id, &transport::event_subject(ctx.agency(), EventKind::SendDenied), &bytes).await?;
    tx.commit().await?;
    ctx.outbox_ready.notify_one(); // the near miss goes out on the next pass
    tracing::warn!(envelope_id = %id, near_miss_id = %event.event_id, kind = kind::name(header.kind()), recipient = %header.recipient,
        reason = denial.reason, "queued disclosure stopped before publishing: its consent no longer holds (near miss recorded)");
    Ok(())
}
