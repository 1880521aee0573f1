//! Key rotation through a signed directory update: new disclosures use the new keys at once,
//! what was sealed to the old key stays readable, something signed before the rotation still
//! verifies, and an envelope signed with a retired key after its retirement is refused.

use std::{sync::{Arc, atomic::AtomicUsize}, time::Duration};

use isp::{Isp, Kind};
use prost::Message as _;
use proto::v1::{Envelope, Header};
use sqlx::Connection as _;
use tests::{Backend, Partnership, eventually, send_referrals};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";

/// A receipt from housing to the IDVA, sealed and signed by `isp` now.
fn sealed_ack(isp: &Isp) -> anyhow::Result<Vec<u8>> {
    tests::sealed_ack(isp, IDVA, "HSG-K-1")
}

fn envelope_id(bytes: &[u8]) -> String {
    Header::decode(Envelope::decode(bytes).unwrap().header.as_slice()).unwrap().envelope_id
}

async fn publish(p: &Partnership, body: Vec<u8>) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(p.broker().await?);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", envelope_id(&body).as_str());
    js.publish_with_headers(runtime::transport::message_subject(HOUSING, IDVA, Kind::ReferralAck), headers, body.into()).await?.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotated_keys_take_effect_at_once_and_retired_ones_sign_nothing_new() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let housing_before = runtime::Config::embedded(p.data(), HOUSING, &p.hub.nats_url).load_isp()?;
    let idva_before = isp::AgencyKeys::load(&p.data().join("keys").join(format!("{IDVA}.toml")))?;
    let early = sealed_ack(&housing_before)?;
    let sent = Arc::new(AtomicUsize::new(0));
    let first = send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 0, 1, 1, sent.clone()).await?.remove(0);
    eventually("the first referral delivered", Duration::from_secs(30), || async {
        Ok(p.get(IDVA, "/inbox").await?.as_array().filter(|a| a.iter().any(|e| e["envelope_id"] == first.as_str())).map(|_| ()))
    })
    .await?;

    // Signed with housing's key before the rotation, and on the stream before it too (a
    // retired key is judged at the broker's time).
    publish(&p, early.clone()).await?;
    eventually("the envelope signed before the rotation stored", Duration::from_secs(30), || async {
        Ok(p.get(IDVA, "/inbox").await?.as_array().filter(|a| a.iter().any(|e| e["envelope_id"] == envelope_id(&early).as_str())).map(|_| ()))
    })
    .await?;

    // Both ends rotate; every service, the audit service too, takes up the signed update.
    hub::partnership::rotate(p.data(), IDVA)?;
    hub::partnership::rotate(p.data(), HOUSING)?;
    let directory = isp::Directory::load(&hub::partnership::directory_path(p.data()))?;
    let digest = directory.digest();
    let services: Vec<&str> = std::iter::once("audit").chain(p.hub.services.keys().map(String::as_str)).collect();
    assert_eq!(services.len(), 7, "the audit service and the six agency services");
    for service in services {
        eventually("the directory update in force", Duration::from_secs(30), || async {
            Ok((p.get(service, "/health").await?["directory"] == digest.as_str()).then_some(()))
        })
        .await?;
    }
    assert_eq!(p.get(HOUSING, "/health").await?["signing_key_id"], directory.get(HOUSING).unwrap().signing_key_id().as_str());

    // A new referral is sealed to the IDVA's new key: the old identity cannot open it.
    let second = send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 1, 1, 1, sent).await?.remove(0);
    let read = eventually("the second referral readable", Duration::from_secs(30), || async {
        Ok(p.get(IDVA, &format!("/inbox/{second}")).await.ok())
    })
    .await?;
    assert!(read["payload"]["idvaReferral"]["survivor"]["fullName"].is_string(), "{read}");
    let mut db = sqlx::AnyConnection::connect(&p.database_url(IDVA).await?).await?;
    let (stored,): (Vec<u8>,) = sqlx::query_as("SELECT envelope FROM inbox WHERE envelope_id = $1").bind(&second).fetch_one(&mut db).await?;
    let sealed = Envelope::decode(stored.as_slice())?.sealed_payload;
    assert!(age::decrypt(&idva_before.age_identity, &sealed).is_err(), "the new referral was sealed to the retired key");
    // What was sealed to the old key is still readable by the IDVA.
    let old = p.get(IDVA, &format!("/inbox/{first}")).await?;
    assert!(old["payload"]["idvaReferral"]["survivor"]["fullName"].is_string(), "{old}");

    // Signed with housing's old key and taken in by the broker before the rotation: still
    // valid when read back after it.
    let read = p.get(IDVA, &format!("/inbox/{}", envelope_id(&early))).await?;
    assert!(read["payload"]["referralAck"].is_object(), "{read}");
    // Signed with it after the rotation: refused, and in the ledger.
    let late = sealed_ack(&housing_before)?;
    publish(&p, late.clone()).await?;
    let q = eventually("the late envelope quarantined", Duration::from_secs(30), || async {
        Ok(p.get(IDVA, "/quarantine").await?.as_array().and_then(|q| q.iter().find(|e| e["stream_seq"].as_i64().is_some() && e["reason"] == "retired_signing_key").cloned()))
    })
    .await?;
    assert!(q["detail"].as_str().unwrap().contains("retired"), "{q}");
    eventually("the refusal in the ledger", Duration::from_secs(30), || async {
        Ok(p.ledger().await?.into_iter().find(|e| e["entry_type"] == "rejected" && e["reason"] == "retired_signing_key"))
    })
    .await?;
    assert_eq!(p.get("audit", "/verify").await?["ok"], true);
    Ok(())
}
