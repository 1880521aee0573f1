//! The broker enforces each identity's rights (issue #11): with the IDVA's real credentials
//! against the partnership's real nats-server, every action beyond the IDVA's need is refused
//! by the broker itself, and has no effect (checked as the administrator afterwards; neither an
//! agency nor the audit service can write the partnership's signed files into the bucket
//! every service follows); what the IDVA needs still works, and so does the whole demo case
//! afterwards. Nobody connects without credentials, over plain TCP, or with a key the broker
//! does not know.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{self, consumer::PullConsumer};
use runtime::transport::{self, STREAM};
use tests::{Backend, Partnership, eventually};

const IDVA: &str = "idva-northbridge";
const HOUSING: &str = "housing-northbridge";
/// A checkpoint note another agency has no right to publish (its signature is zeros: what
/// counts here is that the broker refuses it, before any witness would).
const FORGED_CHECKPOINT: &str = "referral-hub/ig-northbridge/ledger\n1000000\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} referral-hub/ig-northbridge/ledger AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

/// A broker connection as one identity that keeps every error the server sends it.
struct Probe {
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Probe {
    async fn connect(p: &Partnership, identity: &str) -> anyhow::Result<Probe> {
        let auth = hub::broker::auth(p.data(), identity);
        let seed = std::fs::read_to_string(auth.nkey_file.as_ref().expect("a seed file"))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = errors.clone();
        let client = async_nats::ConnectOptions::new()
            .nkey(seed.trim().to_owned())
            .add_root_certificates(auth.ca_file.clone().expect("the CA"))
            .require_tls(true)
            .custom_inbox_prefix(transport::inbox_prefix(identity))
            .event_callback(move |event| {
                let seen = seen.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        seen.lock().unwrap().push(e.to_string());
                    }
                }
            })
            .connect(&p.hub.nats_url)
            .await?;
        Ok(Probe { client, errors })
    }

    /// Waits for the broker's refusal of `what` on `subject`.
    async fn refused(&self, what: &str, subject: &str) -> anyhow::Result<()> {
        self.client.flush().await?;
        let errors = self.errors.clone();
        eventually(&format!("the broker refusing {what} ({subject})"), Duration::from_secs(10), || {
            let errors = errors.clone();
            async move {
                let errors = errors.lock().unwrap();
                Ok(errors.iter().any(|e| e.to_lowercase().contains("permissions violation") && e.contains(subject)).then_some(()))
            }
        })
        .await
    }

    async fn publish_refused(&self, what: &str, subject: &str, body: &str) -> anyhow::Result<()> {
        self.client.publish(subject.to_owned(), body.to_owned().into()).await?;
        self.refused(what, subject).await
    }

    async fn subscribe_refused(&self, what: &str, subject: &str) -> anyhow::Result<()> {
        let _subscription = self.client.subscribe(subject.to_owned()).await?;
        self.refused(what, subject).await
    }
}

async fn the_broker_refuses_what_an_agency_does_not_need(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let admin = jetstream::new(p.broker().await?);
    // Disclosures on the stream, consent records in the bucket, checkpoints: the demo case.
    hub::demo::play(&p.hub, &p.logins, false).await?;
    let stream_before = admin.get_stream(STREAM).await?.info().await?.config.clone();
    let housing_consumer: PullConsumer = admin.get_consumer_from_stream(transport::agency_consumer_name(HOUSING), STREAM).await?;
    let housing_consumer_before = housing_consumer.cached_info().config.clone();
    let checkpoints_before = admin.get_stream(isp::checkpoint::CHECKPOINT_STREAM).await?.info().await?.state.messages;

    // --- Each service's credentials are its own file, readable by its owner only ---
    for identity in hub::broker::service_identities(&p.hub.directory).into_iter().chain([hub::broker::ADMIN.to_owned()]) {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(hub::broker::seed_path(p.data(), &identity))?.permissions().mode() & 0o777;
        anyhow::ensure!(mode == 0o600, "{identity}'s seed file has mode {mode:o}");
    }

    // --- Who may connect at all ---
    let ca = hub::broker::auth(p.data(), IDVA).ca_file.expect("the CA");
    let anonymous = async_nats::ConnectOptions::new().add_root_certificates(ca.clone()).require_tls(true).connect(&p.hub.nats_url).await;
    anyhow::ensure!(anonymous.is_err(), "an anonymous client was let in");
    let stranger = async_nats::ConnectOptions::new()
        .nkey(nkeys::KeyPair::new_user().seed()?)
        .add_root_certificates(ca.clone())
        .require_tls(true)
        .connect(&p.hub.nats_url)
        .await;
    anyhow::ensure!(stranger.is_err(), "a key the broker does not know was let in");
    let plain = async_nats::ConnectOptions::new().connect(&p.hub.nats_url).await;
    anyhow::ensure!(plain.is_err(), "a client that does not trust the partnership's CA (or speaks plain TCP) was let in");

    // --- What the IDVA's credentials may not do ---
    let idva = Probe::connect(&p, IDVA).await?;
    let mut refused = 0;
    for (what, subject) in [
        ("reading everything", ">"),
        ("reading what is addressed to housing", &format!("hub.v1.msg.*.{HOUSING}.>")),
        ("reading every event", "hub.v1.evt.>"),
        ("reading other identities' replies", "_INBOX.>"),
        ("reading housing's replies", &format!("{}.>", transport::inbox_prefix(HOUSING))),
    ] {
        idva.subscribe_refused(what, subject).await?;
        refused += 1;
    }
    for (what, subject, body) in [
        ("publishing a disclosure as housing", format!("hub.v1.msg.{HOUSING}.marac-northbridge.marac_referral"), "forged"),
        ("publishing an event as housing", format!("hub.v1.evt.{HOUSING}.consent_changed"), "forged"),
        ("writing housing's consent record", format!("$KV.hub-consent.{HOUSING}.0190c2f6-0000-7000-8000-000000000000"), "forged"),
        ("publishing a checkpoint", isp::checkpoint::CHECKPOINT_SUBJECT.to_owned(), FORGED_CHECKPOINT),
        ("redefining housing's consumer", format!("$JS.API.CONSUMER.DURABLE.CREATE.HUB.agency-{HOUSING}"), r#"{"stream_name":"HUB","config":{"durable_name":"agency-housing-northbridge","filter_subject":"hub.v1.msg.nobody.>","ack_policy":"explicit"}}"#),
        ("creating a consumer on housing's messages", format!("$JS.API.CONSUMER.CREATE.HUB.spy.hub.v1.msg.*.{HOUSING}.>"), r#"{"stream_name":"HUB","config":{"name":"spy","ack_policy":"none"}}"#),
        ("deleting housing's consumer", format!("$JS.API.CONSUMER.DELETE.HUB.agency-{HOUSING}"), ""),
        ("deleting its own consumer", format!("$JS.API.CONSUMER.DELETE.HUB.agency-{IDVA}"), ""),
        ("fetching housing's messages", format!("$JS.API.CONSUMER.MSG.NEXT.HUB.agency-{HOUSING}"), r#"{"batch":10}"#),
        ("acknowledging for housing", format!("$JS.ACK.HUB.agency-{HOUSING}.1.1.1.1.0"), ""),
        ("changing the stream's limits", "$JS.API.STREAM.UPDATE.HUB".to_owned(), r#"{"name":"HUB","subjects":["hub.v1.msg.>","hub.v1.evt.>"],"max_msgs":1,"storage":"file"}"#),
        ("purging the stream", "$JS.API.STREAM.PURGE.HUB".to_owned(), "{}"),
        ("deleting the stream", "$JS.API.STREAM.DELETE.HUB".to_owned(), ""),
        ("deleting a message", "$JS.API.STREAM.MSG.DELETE.HUB".to_owned(), r#"{"seq":1}"#),
        ("reading a message's clear header", "$JS.API.STREAM.MSG.GET.HUB".to_owned(), r#"{"seq":1}"#),
        ("reading a message directly", "$JS.API.DIRECT.GET.HUB".to_owned(), r#"{"seq":1}"#),
        ("reading the stream's traffic by subject", "$JS.API.STREAM.INFO.HUB".to_owned(), r#"{"subjects_filter":">"}"#),
        ("shortening the consent bucket's history", "$JS.API.STREAM.UPDATE.KV_hub-consent".to_owned(), r#"{"name":"KV_hub-consent","max_msgs_per_subject":1}"#),
        ("creating a stream", "$JS.API.STREAM.CREATE.COPY".to_owned(), r#"{"name":"COPY","subjects":["copy.>"]}"#),
        ("writing the partnership's directory", "$KV.hub-partnership.directory".to_owned(), r#"{"text":"forged","signature":"forged"}"#),
        ("writing the partnership's policy", "$KV.hub-partnership.policy".to_owned(), r#"{"text":"forged","signature":"forged"}"#),
    ] {
        idva.publish_refused(what, &subject, body).await?;
        refused += 1;
    }
    // The audit service reads everything, but may write no disclosure and no consent record.
    let audit = Probe::connect(&p, audit::AUDIT_IDENTITY).await?;
    audit.publish_refused("the audit service publishing a disclosure", &format!("hub.v1.msg.{HOUSING}.{IDVA}.idva_referral"), "forged").await?;
    audit.publish_refused("the audit service writing a consent record", &format!("$KV.hub-consent.{HOUSING}.x"), "forged").await?;
    audit.publish_refused("the audit service writing the partnership's directory", "$KV.hub-partnership.directory", "forged").await?;
    refused += 3;
    println!("the broker refused {refused} actions");
    anyhow::ensure!(refused >= 12);

    // --- Nothing of it happened (as the administrator sees it) ---
    let stream = admin.get_stream(STREAM).await?.info().await?.clone();
    anyhow::ensure!(stream.config.max_messages == stream_before.max_messages && stream.config.deny_delete && stream.config.deny_purge, "the stream's limits changed");
    let housing_now = admin.get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(transport::agency_consumer_name(HOUSING), STREAM).await?;
    anyhow::ensure!(housing_now.cached_info().config.filter_subject == housing_consumer_before.filter_subject, "housing's consumer was redefined");
    admin.get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(transport::agency_consumer_name(IDVA), STREAM).await?;
    anyhow::ensure!(admin.get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>("spy", STREAM).await.is_err(), "a spy consumer exists");
    anyhow::ensure!(admin.get_stream("COPY").await.is_err(), "a stream was created");
    let consent = admin.get_stream("KV_hub-consent").await?.info().await?.config.max_messages_per_subject;
    anyhow::ensure!(consent == transport::CONSENT_HISTORY, "the consent bucket keeps {consent} revisions");
    let checkpoints = admin.get_stream(isp::checkpoint::CHECKPOINT_STREAM).await?.info().await?.state.messages;
    let checkpoint_subjects = admin
        .get_stream(isp::checkpoint::CHECKPOINT_STREAM)
        .await?
        .get_last_raw_message_by_subject(isp::checkpoint::CHECKPOINT_SUBJECT)
        .await
        .map(|m| m.payload.to_vec())
        .unwrap_or_default();
    anyhow::ensure!(checkpoints >= checkpoints_before && checkpoint_subjects != FORGED_CHECKPOINT.as_bytes(), "a checkpoint was forged");
    let partnership_bucket = admin.get_stream(format!("KV_{}", transport::PARTNERSHIP_BUCKET)).await?.info().await?.state.messages;
    anyhow::ensure!(partnership_bucket == 0, "{partnership_bucket} values were written into the partnership bucket");

    // --- What the IDVA needs still works, through the same credentials ---
    let js = jetstream::new(idva.client.clone());
    let own: PullConsumer = js.get_consumer_from_stream(transport::agency_consumer_name(IDVA), STREAM).await?;
    anyhow::ensure!(own.cached_info().config.filter_subject == format!("hub.v1.msg.*.{IDVA}.>"));
    let bucket = transport::bind_consent_stream(&js).await?;
    let _ = bucket.direct_get_next_for_subject(format!("$KV.hub-consent.{HOUSING}.>"), None).await;
    let partnership = js.get_stream_no_info(format!("KV_{}", transport::PARTNERSHIP_BUCKET)).await?;
    let _ = partnership.direct_get_last_for_subject(format!("$KV.{}.directory", transport::PARTNERSHIP_BUCKET)).await;
    let errors_before = idva.errors.lock().unwrap().len();
    idva.client.flush().await?;
    // And the partnership's whole demo case still plays through again, every disclosure
    // delivered once, the ledger verifying and witnessed (`play` checks all of it).
    let report = hub::demo::play(&p.hub, &p.logins, false).await?;
    anyhow::ensure!(!report.delivered.is_empty());
    anyhow::ensure!(idva.errors.lock().unwrap().len() == errors_before, "a legitimate action was refused: {:?}", idva.errors.lock().unwrap());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_rights_on_sqlite() -> anyhow::Result<()> {
    the_broker_refuses_what_an_agency_does_not_need(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_rights_on_postgres() -> anyhow::Result<()> {
    the_broker_refuses_what_an_agency_does_not_need(Backend::Postgres).await
}
