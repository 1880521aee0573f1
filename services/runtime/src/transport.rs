//! The JetStream side: one stream that is the log of record, subjects that name sender and
//! recipient, one durable pull consumer per agency and one for audit.
//!
//! Subjects: `hub.v1.msg.{sender}.{recipient}.{kind}` for envelopes and
//! `hub.v1.evt.{agency}.{event kind}` for signed events (near misses, quarantines). They carry
//! agency ids and kinds only; nothing identifying ever appears in a subject or a NATS header.

use std::{
    path::Path,
    time::Duration,
};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::{PullConsumer, pull}, stream};
use isp::{Kind, kind};
use proto::v1::EventKind;

/// The stream every disclosure and every ISP event goes through.
pub const STREAM: &str = "HUB";
/// The durable consumer of the audit service.
pub const AUDIT_CONSUMER: &str = "audit";

pub fn message_subject(sender: &str, recipient: &str, kind: Kind) -> String {
    format!("hub.v1.msg.{sender}.{recipient}.{}", kind::subject_token(kind))
}

pub fn event_subject(agency: &str, kind: EventKind) -> String {
    let token = match kind {
        EventKind::SendDenied => "send_denied",
        EventKind::ReceiveRejected => "receive_rejected",
        EventKind::Violation => "violation",
        EventKind::ConsentChanged => "consent_changed",
        EventKind::Accessed => "accessed",
        EventKind::Acknowledged => "acknowledged",
        EventKind::DeadlineMissed => "deadline_missed",
        EventKind::Unspecified => "unspecified",
    };
    format!("hub.v1.evt.{agency}.{token}")
}

/// Why `subject` is not the one an envelope whose signed header says `sender`, `recipient`
/// and `kind` travels on ([`message_subject`]), or None when it is. The subject's tokens are
/// not repeated: the publisher chose them.
pub fn subject_mismatch(subject: &str, sender: &str, recipient: &str, kind: Kind) -> Option<&'static str> {
    if subject == message_subject(sender, recipient, kind) {
        return None;
    }
    let tokens: Vec<&str> = subject.strip_prefix("hub.v1.msg.").map(|rest| rest.split('.').collect()).unwrap_or_default();
    Some(match tokens.as_slice() {
        [s, _, _] if *s != sender => "the subject's sender token is not the signed header's sender",
        [_, r, _] if *r != recipient => "the subject's recipient token is not the signed header's recipient",
        [_, _, _] => "the subject's kind token is not the signed header's kind (its name with '.' as '_')",
        _ => "the subject is not hub.v1.msg.SENDER.RECIPIENT.KIND",
    })
}

/// What a message subject says: (sender, recipient), or None for an event or a stray subject.
pub fn parse_message_subject(subject: &str) -> Option<(&str, &str)> {
    let mut parts = subject.strip_prefix("hub.v1.msg.")?.split('.');
    let sender = parts.next()?;
    let recipient = parts.next()?;
    parts.next()?;
    parts.next().is_none().then_some((sender, recipient))
}

pub use crate::config::{BrokerAuth, broker_dir};

/// The inbox prefix of an identity: replies to its requests (JetStream acks, fetched
/// messages, consistency proofs) come on `_INBOX_{identity}.>`, the only subjects its
/// credentials may subscribe to, so no identity can read another's replies.
pub fn inbox_prefix(identity: &str) -> String {
    format!("_INBOX_{identity}")
}

/// Reads an nkey seed file, refusing one that others may read (as ssh refuses a private key).
fn read_seed(path: &Path) -> anyhow::Result<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).with_context(|| format!("reading the broker credentials {}", path.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            anyhow::bail!("the broker credentials {} may be read by others (mode {:o}); chmod 600 it", path.display(), mode & 0o777);
        }
    }
    let seed = std::fs::read_to_string(path).with_context(|| format!("reading the broker credentials {}", path.display()))?;
    let seed = seed.trim();
    anyhow::ensure!(seed.starts_with("SU") && nkeys::KeyPair::from_seed(seed).is_ok(), "{} does not hold a user nkey seed", path.display());
    Ok(seed.to_owned())
}

/// Connects to NATS as `identity` (seen in server monitoring, not in messages), with its
/// nkey and the partnership's CA when `auth` names them. `url` may list several servers,
/// comma-separated (a cluster). A right the broker refuses is logged as an error: it means a
/// misconfigured deployment or a service doing what it should not.
pub async fn connect(url: &str, identity: &str, auth: &BrokerAuth) -> anyhow::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("hub-{identity}"))
        .custom_inbox_prefix(inbox_prefix(identity))
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::ServerError(e) => tracing::error!(error = %e, "the broker refused this service an action"),
                async_nats::Event::Disconnected => tracing::warn!("disconnected from the broker; reconnecting"),
                async_nats::Event::Connected => tracing::info!("connected to the broker"),
                _ => {}
            }
        });
    if let Some(path) = &auth.nkey_file {
        options = options.nkey(read_seed(path)?);
    }
    if let Some(ca) = &auth.ca_file {
        anyhow::ensure!(ca.is_file(), "the broker's CA certificate {} is missing", ca.display());
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    let servers: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>().with_context(|| format!("NATS_URL: {} is not a server address", crate::config::redact_url(u))))
        .collect::<anyhow::Result<_>>()?;
    options
        .connect(servers)
        .await
        .with_context(|| format!("connecting to NATS at {} as {identity} (is nats-server running, and are these its credentials?)", crate::config::redact_url(url)))
}

/// Room for the headers a published envelope carries (`Nats-Msg-Id`), which count towards
/// the broker's `max_payload`.
pub const PUBLISH_HEADER_ALLOWANCE: usize = 256;

/// The largest envelope the broker connected to carries in one message (its `max_payload`,
/// nats-server's default of 1 MiB until the server has said otherwise).
pub fn max_message_bytes(client: &async_nats::Client) -> usize {
    let max_payload = match client.server_info().max_payload {
        0 => crate::serve::BROKER_MAX_PAYLOAD,
        n => n,
    };
    max_payload.saturating_sub(PUBLISH_HEADER_ALLOWANCE)
}

/// The largest message the stream stores: nats-server's default `max_payload` (1 MiB). A
/// send whose sealed envelope is larger is refused at the API before it is queued.
pub const STREAM_MAX_MESSAGE_BYTES: i32 = 1024 * 1024;
/// What the stream holds at most (16 GiB) before it refuses new messages: it never drops
/// what a consumer has not read to make room (discard new), so a flood fills it and then
/// fails its publishers, and the outboxes keep what they could not publish until there is
/// room again.
pub const STREAM_MAX_BYTES: i64 = 16 * 1024 * 1024 * 1024;

/// The stream's configuration. Deny delete and deny purge: once a disclosure or a refusal is
/// on the stream, nobody can remove it through the broker's API, so the audit service reads
/// every one. The duplicate window makes a re-published envelope id a no-op for an hour.
/// Explicit limits: [`STREAM_MAX_MESSAGE_BYTES`] per message, [`STREAM_MAX_BYTES`] in all,
/// discarding nothing (new messages are refused when full); no age limit (the stream is the
/// log of record until every consumer has read it).
pub fn stream_config() -> stream::Config {
    stream_config_replicated(1)
}

/// [`stream_config`] with `replicas` copies, one per node of a JetStream cluster (3 in a
/// partnership's deployment: any one node can go without losing a message or the stream).
pub fn stream_config_replicated(replicas: usize) -> stream::Config {
    stream::Config {
        num_replicas: replicas,
        name: STREAM.into(),
        subjects: vec!["hub.v1.msg.>".into(), "hub.v1.evt.>".into()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::New,
        max_bytes: STREAM_MAX_BYTES,
        max_message_size: STREAM_MAX_MESSAGE_BYTES,
        deny_delete: true,
        deny_purge: true,
        duplicate_window: Duration::from_secs(3600),
        ..Default::default()
    }
}

/// Creates the stream if it does not exist, and returns it.
pub async fn ensure_stream(js: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    js.get_or_create_stream(stream_config()).await.context("creating the JetStream stream HUB")
}

/// The partnership's consent records: a JetStream key-value bucket, key
/// `{agency}.{consent_id}`, each value signed by the agency that owns the record.
pub const CONSENT_BUCKET: &str = "hub-consent";
/// How many revisions of a record the bucket keeps (the reader picks the owner's latest).
pub const CONSENT_HISTORY: i64 = 64;

/// The bucket's stream configuration, written out rather than through `create_key_value`
/// (which asks the server for account details Debian's nats-server 2.9 answers in a form
/// async-nats 0.51 cannot parse). Deny delete, deny purge and no roll-up: a record's history
/// cannot be erased through the broker's API.
pub fn consent_stream_config() -> stream::Config {
    consent_stream_config_replicated(1)
}

/// [`consent_stream_config`] with `replicas` copies (see [`stream_config_replicated`]).
pub fn consent_stream_config_replicated(replicas: usize) -> stream::Config {
    // A signed consent record is well under a kilobyte.
    kv_stream_config(CONSENT_BUCKET, CONSENT_HISTORY, 64 * 1024, replicas)
}

/// A key-value bucket's stream, written out: deny delete, deny purge and no roll-up, so
/// what was put cannot be erased through the broker's API; direct gets for readers.
fn kv_stream_config(bucket: &str, history: i64, max_message_size: i32, replicas: usize) -> stream::Config {
    stream::Config {
        num_replicas: replicas,
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        storage: stream::StorageType::File,
        max_messages_per_subject: history,
        max_message_size,
        discard: stream::DiscardPolicy::Old,
        allow_direct: true,
        allow_rollup: false,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

/// The partnership's signed public files, as the IG office publishes them for every service
/// to follow (see [`crate::partnership_feed`]): keys `directory` and `policy`, each value the
/// file's text with its signature. Only the broker's administrator writes it.
pub const PARTNERSHIP_BUCKET: &str = "hub-partnership";
/// How many revisions of each file the bucket keeps (a service reads only the latest; the
/// few before it are for whoever investigates what was published).
pub const PARTNERSHIP_HISTORY: i64 = 8;
/// The largest value the bucket's publisher puts or a service reads: a file with its
/// signature, as JSON. The partnership's files are a few kilobytes; anything near this is not
/// one of them.
pub const PARTNERSHIP_MAX_VALUE_BYTES: usize = 256 * 1024;

/// The partnership bucket's stream configuration (written out, as [`consent_stream_config`]
/// is). Deny delete, deny purge and no roll-up: what the IG office published stays visible.
pub fn partnership_stream_config() -> stream::Config {
    partnership_stream_config_replicated(1)
}

/// [`partnership_stream_config`] with `replicas` copies (see [`stream_config_replicated`]).
pub fn partnership_stream_config_replicated(replicas: usize) -> stream::Config {
    // The publisher refuses a value over this; room left for headers.
    kv_stream_config(PARTNERSHIP_BUCKET, PARTNERSHIP_HISTORY, (PARTNERSHIP_MAX_VALUE_BYTES + 4096) as i32, replicas)
}

/// Creates the consent bucket if it does not exist, and returns it with its stream.
pub async fn ensure_consent_bucket(js: &jetstream::Context) -> anyhow::Result<(jetstream::kv::Store, stream::Stream)> {
    let stream = js.get_or_create_stream(consent_stream_config()).await.context("creating the consent bucket")?;
    let store = js.get_key_value(CONSENT_BUCKET).await.context("opening the consent bucket")?;
    Ok((store, stream))
}

/// The stream of the partnership's consent bucket, as a service reads it: direct gets only,
/// without asking the broker for the stream's details (no service may).
pub async fn bind_consent_stream(js: &jetstream::Context) -> anyhow::Result<stream::Stream<()>> {
    js.get_stream_no_info(format!("KV_{CONSENT_BUCKET}")).await.context("naming the consent bucket's stream")
}

/// The checkpoint stream's configuration: the audit service publishes the IG office's signed
/// checkpoints on it, every witness reads them (direct gets), nobody removes one.
pub fn checkpoint_stream_config() -> stream::Config {
    stream::Config {
        name: isp::checkpoint::CHECKPOINT_STREAM.into(),
        subjects: vec![isp::checkpoint::CHECKPOINT_SUBJECT.into()],
        storage: stream::StorageType::File,
        allow_direct: true,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

/// Everything on the broker the partnership needs, made by its administrator (services have
/// no right to create, change or delete a stream or a consumer): the `HUB` stream, the
/// consent bucket, the partnership bucket, the checkpoint stream, a durable consumer for each
/// agency in `agencies` and the audit service's. It may run at every start and after a broker
/// lost its store (`hub broker provision`): what is missing is made, a stream that exists is
/// brought to the current settings (see [`ensure_current`]), a consumer that exists is left
/// as it is.
pub async fn provision(js: &jetstream::Context, agencies: &[String], ack_wait: Duration) -> anyhow::Result<()> {
    for config in [stream_config(), consent_stream_config(), partnership_stream_config(), checkpoint_stream_config()] {
        ensure_current(js, config).await?;
    }
    audit_consumer(js, ack_wait).await?;
    for agency in agencies {
        agency_consumer(js, agency, ack_wait).await?;
    }
    Ok(())
}

/// Creates a stream, or brings one that exists to `config`, keeping its replicas and its
/// messages. A broker provisioned by an earlier version keeps its streams through an upgrade,
/// with that version's settings: v0.1.0 made the checkpoint stream without direct gets, which
/// every witness now reads it with (the broker grants agencies nothing else on it), so no
/// checkpoint after the upgrade would ever be witnessed. The server leaves a stream whose
/// settings are unchanged as it is.
async fn ensure_current(js: &jetstream::Context, config: stream::Config) -> anyhow::Result<()> {
    let name = config.name.clone();
    let stream = js.get_or_create_stream(config.clone()).await.with_context(|| format!("creating the stream {name}"))?;
    let replicas = stream.cached_info().config.num_replicas;
    js.update_stream(stream::Config { num_replicas: replicas, ..config })
        .await
        .with_context(|| format!("bringing the stream {name} to the current settings"))?;
    Ok(())
}

/// The name of an agency's durable consumer.
pub fn agency_consumer_name(agency: &str) -> String {
    format!("agency-{agency}")
}

/// An agency's durable consumer, as the agency's service binds to it: it must exist already
/// (the administrator provisions it); the service may only fetch from it and acknowledge.
pub async fn bind_agency_consumer(js: &jetstream::Context, agency: &str) -> anyhow::Result<PullConsumer> {
    let name = agency_consumer_name(agency);
    js.get_consumer_from_stream(&name, STREAM)
        .await
        .with_context(|| format!("the broker has no consumer {name} on the stream {STREAM}: provision the broker first (`hub broker provision`)"))
}

/// The audit service's durable consumer, which must exist already (see [`provision`]).
pub async fn bind_audit_consumer(js: &jetstream::Context) -> anyhow::Result<PullConsumer> {
    js.get_consumer_from_stream(AUDIT_CONSUMER, STREAM)
        .await
        .with_context(|| format!("the broker has no consumer {AUDIT_CONSUMER} on the stream {STREAM}: provision the broker first (`hub broker provision`)"))
}

/// What the administrator writes into a consumer's description: the identity of the stream
/// it reads (the stream's creation time), which the consumer's reader may see while it may
/// not ask about the stream.
fn stream_description(stream: &stream::Info) -> String {
    format!("{STREAM_IDENTITY_PREFIX}{}", stream.created.unix_timestamp_nanos())
}

const STREAM_IDENTITY_PREFIX: &str = "stream created ns ";

/// The identity of the stream a consumer reads: the creation time (ns) of the stream, from
/// the consumer's description, or the consumer's own creation time when it has none (a
/// consumer made by hand).
pub fn stream_identity(consumer: &jetstream::consumer::Info) -> i64 {
    consumer
        .config
        .description
        .as_deref()
        .and_then(|d| d.strip_prefix(STREAM_IDENTITY_PREFIX))
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or_else(|| i64::try_from(consumer.created.unix_timestamp_nanos()).unwrap_or(i64::MAX))
}

/// The durable pull consumer of an agency: every envelope addressed to it, acked explicitly.
/// Created by the administrator ([`provision`]).
pub async fn agency_consumer(js: &jetstream::Context, agency: &str, ack_wait: Duration) -> anyhow::Result<PullConsumer> {
    let stream = ensure_stream(js).await?;
    let name = agency_consumer_name(agency);
    stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                description: Some(stream_description(stream.cached_info())),
                filter_subject: format!("hub.v1.msg.*.{agency}.>"),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait,
                max_ack_pending: 1024,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("creating the consumer {name}"))
}

/// The durable pull consumer of the audit service: everything on the stream. Created by the
/// administrator ([`provision`]).
pub async fn audit_consumer(js: &jetstream::Context, ack_wait: Duration) -> anyhow::Result<PullConsumer> {
    let stream = ensure_stream(js).await?;
    stream
        .get_or_create_consumer(
            AUDIT_CONSUMER,
            pull::Config {
                durable_name: Some(AUDIT_CONSUMER.into()),
                description: Some(stream_description(stream.cached_info())),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait,
                // two fetch batches: one committing while the next is fetched; stream order is kept by
                // the audit service itself (what follows a gap is handed back)
                max_ack_pending: 1024,
                ..Default::default()
            },
        )
        .await
        .context("creating the audit consumer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_sender_and_recipient_only() {
        let s = message_subject("housing-a", "idva-b", Kind::MaracResearchRequest);
        assert_eq!(s, "hub.v1.msg.housing-a.idva-b.marac_research_request");
        assert_eq!(parse_message_subject(&s), Some(("housing-a", "idva-b")));
        assert_eq!(parse_message_subject("hub.v1.evt.housing-a.send_denied"), None);
        assert_eq!(parse_message_subject("hub.v1.msg.a.b.c.d"), None);
    }

    #[test]
    fn a_subject_that_is_not_the_headers_says_which_token_is_wrong() {
        let kind = Kind::IdvaReferral;
        assert_eq!(subject_mismatch(&message_subject("h", "i", kind), "h", "i", kind), None);
        let why = |subject: &str| subject_mismatch(subject, "h", "i", kind).unwrap();
        assert!(why(&message_subject("x", "i", kind)).contains("sender token"));
        assert!(why(&message_subject("h", "x", kind)).contains("recipient token"));
        assert!(why(&message_subject("h", "i", Kind::ReferralAck)).contains("kind token"));
        assert!(why("hub.v1.msg.h.i.housing_idva_referral.extra").contains("not hub.v1.msg.SENDER.RECIPIENT.KIND"));
        assert!(why("hub.v1.evt.h.send_denied").contains("not hub.v1.msg"));
    }
}
