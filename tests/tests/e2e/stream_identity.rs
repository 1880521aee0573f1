//! Inboxes know which stream they read, and judge envelopes at the broker's time (issue #11),
//! on real nats-server: after the JetStream store is lost and the stream provisioned again
//! (numbering its messages from 1 again), every new referral reaches the IDVA exactly once;
//! an envelope whose header claims a creation time twenty minutes before the broker took it
//! in is quarantined `clock_skew`, one signed with a retired key and backdated into the key's
//! validity is refused, while a normal referral beside them is stored; the quarantine keeps a
//! refused body's digest and first bytes, not the body.

use std::{
    sync::{Arc, atomic::AtomicUsize},
    time::Duration,
};

use async_nats::jetstream;
use ed25519_dalek::Signer as _;
use isp::{Isp, Kind};
use prost::Message as _;
use proto::v1::{Envelope, Header};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tests::{Backend, Partnership, eventually, files_containing, inbox_counts, send_referrals};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";

async fn recreated_stream_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let sent = Arc::new(AtomicUsize::new(0));
    send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 0, 5, 5, sent.clone()).await?;
    let idva_db = p.database_url(IDVA).await?;
    eventually("the first five referrals stored", Duration::from_secs(30), || async {
        Ok((inbox_counts(&idva_db).await? == (5, 5)).then_some(()))
    })
    .await?;

    // The store is lost: the operator deletes the stream and provisions it again, with every
    // consumer. The new stream numbers its messages from 1, as the old one did.
    let js = jetstream::new(p.broker().await?);
    js.delete_stream(runtime::transport::STREAM).await?;
    runtime::transport::ensure_stream(&js).await?;
    let ack_wait = p.options.ack_wait.unwrap_or(Duration::from_secs(10));
    for agency in p.hub.services.keys() {
        runtime::transport::agency_consumer(&js, agency, ack_wait).await?;
    }
    runtime::transport::audit_consumer(&js, ack_wait).await?;

    let after = send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 5, 20, 4, sent).await?;
    eventually("the twenty referrals sent after the stream was recreated stored", Duration::from_secs(60), || async {
        Ok((inbox_counts(&idva_db).await? == (25, 25)).then_some(()))
    })
    .await?;
    let inbox = p.list(IDVA, "/inbox", "stream_seq").await?;
    for id in &after {
        assert_eq!(inbox.iter().filter(|e| e["envelope_id"] == id.as_str()).count(), 1, "{id} is in the IDVA's inbox once");
    }
    assert_eq!(p.get(IDVA, "/quarantine").await?, Value::Array(Vec::new()), "nothing was refused as a replay");
    assert_eq!(inbox_counts(&idva_db).await?, (25, 25), "nothing arrived twice");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recreated_stream_is_read_from_its_start_on_sqlite() -> anyhow::Result<()> {
    recreated_stream_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recreated_stream_is_read_from_its_start_on_postgres() -> anyhow::Result<()> {
    recreated_stream_on(Backend::Postgres).await
}

/// A receipt from housing to the IDVA, sealed by `isp`, its header then given `created_at_ms`
/// and signed again with `isp`'s signing key (what the holder of that key can make).
fn ack_created_at(isp: &Isp, created_at_ms: i64) -> anyhow::Result<Vec<u8>> {
    let mut envelope = Envelope::decode(tests::sealed_ack(isp, IDVA, "HSG-S-1")?.as_slice())?;
    let mut header = Header::decode(envelope.header.as_slice())?;
    header.created_at_ms = created_at_ms;
    envelope.header = header.encode_to_vec();
    envelope.signature = isp.keys.signing.sign(&[isp::seal::ENVELOPE_CONTEXT, &envelope.header].concat()).to_bytes().to_vec();
    Ok(envelope.encode_to_vec())
}

fn envelope_id(bytes: &[u8]) -> String {
    Header::decode(Envelope::decode(bytes).unwrap().header.as_slice()).unwrap().envelope_id
}

/// Publishes straight to JetStream with the broker's rights.
async fn inject(p: &Partnership, body: &[u8]) -> anyhow::Result<()> {
    let js = jetstream::new(p.broker().await?);
    js.publish(runtime::transport::message_subject(HOUSING, IDVA, Kind::ReferralAck), body.to_vec().into()).await?.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn envelopes_are_judged_at_the_brokers_time() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let housing = runtime::Config::embedded(p.data(), HOUSING, &p.hub.nats_url).load_isp()?;

    // Backdated twenty minutes, signed with housing's key in force.
    let backdated = ack_created_at(&housing, isp::now_ms() - 20 * 60_000)?;
    inject(&p, &backdated).await?;

    // Housing rotates; then its old key signs a header claiming a moment before the rotation.
    hub::partnership::rotate(p.data(), HOUSING)?;
    let directory = isp::Directory::load(&hub::partnership::directory_path(p.data()))?;
    eventually("the IDVA has the rotation", Duration::from_secs(30), || async {
        Ok((p.get(IDVA, "/health").await?["directory"] == directory.digest().as_str()).then_some(()))
    })
    .await?;
    let retired_at = directory.get(HOUSING).unwrap().retired_keys.last().unwrap().retired_at_ms;
    let retired = ack_created_at(&housing, retired_at - 1_000)?;
    inject(&p, &retired).await?;

    // A normal referral beside them.
    let normal = send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 0, 1, 1, Arc::new(AtomicUsize::new(0))).await?.remove(0);
    eventually("the normal referral stored", Duration::from_secs(30), || async {
        Ok(p.get(IDVA, &format!("/inbox/{normal}")).await.ok())
    })
    .await?;
    let quarantined = eventually("both injected envelopes quarantined", Duration::from_secs(30), || async {
        let q = p.get(IDVA, "/quarantine").await?;
        Ok(q.as_array().filter(|q| q.len() == 2).cloned())
    })
    .await?;
    let reasons: Vec<(&str, &str)> = quarantined.iter().map(|q| (q["envelope_id"].as_str().unwrap(), q["reason"].as_str().unwrap())).collect();
    // The backdated header verifies (and is named); the retired key's does not, so nothing of
    // it is taken for true.
    let backdated_id = envelope_id(&backdated);
    assert_eq!(reasons, vec![(backdated_id.as_str(), "clock_skew"), ("", "retired_signing_key")]);
    let inbox = p.get(IDVA, "/inbox").await?;
    let stored: Vec<&str> = inbox.as_array().unwrap().iter().map(|e| e["envelope_id"].as_str().unwrap()).collect();
    assert_eq!(stored, vec![normal.as_str()], "only the normal referral is in the inbox");
    // The ledger judges the retired key at the broker's time too: no disclosure of it.
    let retired_id = envelope_id(&retired);
    let ledger = eventually("the normal referral on the ledger", Duration::from_secs(30), || async {
        let l = p.ledger().await?;
        Ok(l.iter().any(|e| e["entry_id"] == normal.as_str()).then_some(l))
    })
    .await?;
    assert!(!ledger.iter().any(|e| e["entry_id"] == retired_id.as_str() && e["entry_type"] == "disclosure"), "the backdated envelope by a retired key is a disclosure on the ledger");
    assert!(ledger.iter().any(|e| e["entry_type"] == "unverifiable"), "it is counted as unverifiable");

    // The quarantine keeps the body's digest, length and first 64 bytes, not the body.
    for (q, body) in quarantined.iter().zip([&backdated, &retired]) {
        assert_eq!(q["body_sha256"], hex::encode(Sha256::digest(body)));
        assert_eq!(q["body_bytes"], body.len());
        assert_eq!(q["body_prefix"], hex::encode(&body[..64]));
        assert!(body.len() > 300, "a body much longer than what is kept");
        let sealed = Envelope::decode(body.as_slice())?.sealed_payload;
        let middle = &sealed[sealed.len() / 2..sealed.len() / 2 + 48];
        let idva_files: Vec<_> = files_containing(&p.data().join("db"), middle)?.into_iter().filter(|f| f.to_string_lossy().contains(IDVA)).collect();
        assert_eq!(idva_files, Vec::<std::path::PathBuf>::new(), "the IDVA's database holds the refused body");
    }
    Ok(())
}

/// An envelope that waited in its sender's outbox longer than the clock window allows (the
/// broker away for twenty minutes) is signed again with the time it is published, same id and
/// same sealed payload, and stored by its recipient: a broker outage never turns a queued
/// disclosure into a `clock_skew` refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disclosure_that_waited_in_the_outbox_is_signed_again_and_delivered() -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let p = Partnership::start(Backend::Sqlite).await?;
    let housing = runtime::Config::embedded(p.data(), HOUSING, &p.hub.nats_url).load_isp()?;
    // Sealed twenty minutes ago and queued then (as if the broker had been away since).
    let waited = ack_created_at(&housing, isp::now_ms() - 20 * 60_000)?;
    let id = envelope_id(&waited);
    let mut db = sqlx::AnyConnection::connect(&p.database_url(HOUSING).await?).await?;
    sqlx::query("INSERT INTO outbox (id, subject, body, created_at_ms, attempts) VALUES ($1, $2, $3, $4, 0)")
        .bind(&id)
        .bind(runtime::transport::message_subject(HOUSING, IDVA, Kind::ReferralAck))
        .bind(&waited)
        .bind(isp::now_ms() - 20 * 60_000)
        .execute(&mut db)
        .await?;
    // Anything sent now wakes the publisher, which takes the waiting row first.
    let normal = send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 0, 1, 1, Arc::new(AtomicUsize::new(0))).await?.remove(0);
    eventually("the referral sent after it stored", Duration::from_secs(30), || async { Ok(p.get(IDVA, &format!("/inbox/{normal}")).await.ok()) }).await?;
    eventually("the disclosure that waited, stored under its own id", Duration::from_secs(30), || async {
        Ok(p.list(IDVA, "/inbox", "envelope_id").await?.iter().any(|e| e["envelope_id"] == id.as_str()).then_some(()))
    })
    .await?;
    assert_eq!(p.get(IDVA, "/quarantine").await?, Value::Array(vec![]), "nothing refused as clock_skew");
    Ok(())
}
