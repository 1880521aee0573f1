//! The JetStream side: one stream that is the log of record, subjects that name sender and
//! recipient, one durable pull consumer per agency and one for audit.
//!
//! Subjects: `hub.v1.msg.{sender}.{recipient}.{kind}` for envelopes and
//! `hub.v1.evt.{agency}.{event kind}` for signed events (near misses, quarantines). They carry
//! agency ids and kinds only; nothing identifying ever appears in a subject or a NATS header.

use std::time::Duration;

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
        EventKind::Unspecified => "unspecified",
    };
    format!("hub.v1.evt.{agency}.{token}")
}

/// What a message subject says: (sender, recipient), or None for an event or a stray subject.
pub fn parse_message_subject(subject: &str) -> Option<(&str, &str)> {
    let mut parts = subject.strip_prefix("hub.v1.msg.")?.split('.');
    let sender = parts.next()?;
    let recipient = parts.next()?;
    parts.next()?;
    parts.next().is_none().then_some((sender, recipient))
}

/// Connects to NATS under the agency's name (seen in server monitoring, not in messages).
/// `url` may list several servers of one cluster, comma-separated: the client picks one and
/// moves to another when it goes.
pub async fn connect(url: &str, name: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name(format!("hub-{name}"))
        .connection_timeout(Duration::from_secs(5))
        .connect(server_list(url))
        .await
        .with_context(|| format!("connecting to NATS at {} (is nats-server running?)", crate::config::redact_url(url)))
}

/// The servers of a comma-separated `NATS_URL` (one URL is a list of one).
pub fn server_list(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
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

/// The stream's configuration. Deny delete and deny purge: once a disclosure or a refusal is
/// on the stream, nobody can remove it through the broker's API, so the audit service reads
/// every one. The duplicate window makes a re-published envelope id a no-op for an hour.
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
    stream::Config {
        num_replicas: replicas,
        name: format!("KV_{CONSENT_BUCKET}"),
        subjects: vec![format!("$KV.{CONSENT_BUCKET}.>")],
        storage: stream::StorageType::File,
        max_messages_per_subject: CONSENT_HISTORY,
        discard: stream::DiscardPolicy::Old,
        allow_direct: true,
        allow_rollup: false,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

/// Creates the consent bucket if it does not exist, and returns it with its stream.
pub async fn ensure_consent_bucket(js: &jetstream::Context) -> anyhow::Result<(jetstream::kv::Store, stream::Stream)> {
    let stream = js.get_or_create_stream(consent_stream_config()).await.context("creating the consent bucket")?;
    let store = js.get_key_value(CONSENT_BUCKET).await.context("opening the consent bucket")?;
    Ok((store, stream))
}

/// The durable pull consumer of an agency: every envelope addressed to it, acked explicitly.
pub async fn agency_consumer(js: &jetstream::Context, agency: &str, ack_wait: Duration) -> anyhow::Result<PullConsumer> {
    let stream = ensure_stream(js).await?;
    let name = format!("agency-{agency}");
    stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
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

/// The durable pull consumer of the audit service: everything on the stream.
pub async fn audit_consumer(js: &jetstream::Context, ack_wait: Duration) -> anyhow::Result<PullConsumer> {
    let stream = ensure_stream(js).await?;
    stream
        .get_or_create_consumer(
            AUDIT_CONSUMER,
            pull::Config {
                durable_name: Some(AUDIT_CONSUMER.into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait,
                max_ack_pending: 512, // one fetch batch; stream order is kept by the audit service itself (what follows a gap is handed back)
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
}
