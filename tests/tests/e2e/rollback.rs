//! No rollback of signed state: once a service runs a newly signed directory or policy, the
//! old signed file put back (text and signature, both genuine) is refused by every service,
//! which says why in `GET /health` and keeps the newer one, so a retired key stays retired;
//! and a service that was down when the old file came back refuses it at start.

use std::time::Duration;

use isp::{Isp, Kind};
use prost::Message as _;
use proto::v1::{Envelope, Header};
use tests::{Backend, Partnership, eventually};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const DEADLINE: Duration = Duration::from_secs(60);

/// A receipt from housing to the IDVA, sealed and signed by `isp` now.
fn sealed_ack(isp: &Isp) -> anyhow::Result<Vec<u8>> {
    tests::sealed_ack(isp, IDVA, "HSG-R-1")
}

/// A signed file and its signature, as they are on disk.
struct Signed {
    path: std::path::PathBuf,
    text: Vec<u8>,
    sig: Vec<u8>,
}

impl Signed {
    fn read(path: std::path::PathBuf) -> anyhow::Result<Signed> {
        Ok(Signed { text: std::fs::read(&path)?, sig: std::fs::read(runtime::config::signature_path(&path))?, path })
    }

    /// Puts it back as it was: the text, then its signature.
    fn put_back(&self) -> anyhow::Result<()> {
        std::fs::write(&self.path, &self.text)?;
        std::fs::write(runtime::config::signature_path(&self.path), &self.sig)?;
        Ok(())
    }
}

/// Waits until each of `services` reports in `GET /health` that it refused the files on disk
/// for a reason containing `reason`; returns each health answer.
async fn every_service_refuses(p: &Partnership, services: &[&str], reason: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut all = Vec::new();
    for service in services {
        let health = eventually(&format!("{service} refusing the old file ({reason})"), DEADLINE, || async {
            let h = p.get(service, "/health").await?;
            Ok(h["files_refused"]["reason"].as_str().is_some_and(|r| r.contains(reason)).then_some(h))
        })
        .await?;
        all.push(health);
    }
    Ok(all)
}

async fn old_signed_files_put_back_are_refused(backend: Backend) -> anyhow::Result<()> {
    let mut p = Partnership::start(backend).await?;
    let partnership = runtime::config::partnership_dir(p.data());
    let old_directory = Signed::read(partnership.join("directory.toml"))?;
    let old_policy = Signed::read(partnership.join("policy.toml"))?;
    let housing_before = runtime::Config::embedded(p.data(), HOUSING, &p.hub.nats_url).load_isp()?;
    let agency_ids: Vec<String> = p.hub.services.keys().cloned().collect();
    let agencies: Vec<&str> = agency_ids.iter().map(String::as_str).collect();
    let services: Vec<&str> = std::iter::once("audit").chain(agencies.iter().copied()).collect();
    assert_eq!(services.len(), 7, "the audit service and the six agency services");

    // Housing rotates its keys: every service runs the newly signed directory.
    hub::partnership::rotate(p.data(), HOUSING)?;
    let new_directory = Signed::read(partnership.join("directory.toml"))?;
    let digest = isp::Directory::load(&new_directory.path)?.digest();
    for service in &services {
        eventually("the directory update in force", DEADLINE, || async { Ok((p.get(service, "/health").await?["directory"] == digest.as_str()).then_some(())) }).await?;
    }

    // The old directory put back, genuinely signed by the IG office: every service refuses it
    // as older, and keeps the new one.
    old_directory.put_back()?;
    for health in every_service_refuses(&p, &services, "older than sequence 2").await? {
        assert_eq!(health["directory"], digest.as_str(), "{health}");
    }
    // So housing's retired key stays retired: an envelope it signs now is refused.
    let late = sealed_ack(&housing_before)?;
    let late_id = Header::decode(Envelope::decode(late.as_slice())?.header.as_slice())?.envelope_id;
    let js = async_nats::jetstream::new(p.broker().await?);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", late_id.as_str());
    js.publish_with_headers(runtime::transport::message_subject(HOUSING, IDVA, Kind::ReferralAck), headers, late.into()).await?.await?;
    let q = eventually("the envelope signed with the retired key quarantined", DEADLINE, || async {
        Ok(p.get(IDVA, "/quarantine").await?.as_array().and_then(|q| q.iter().find(|e| e["reason"] == "retired_signing_key").cloned()))
    })
    .await?;
    assert!(q["detail"].as_str().unwrap_or_default().contains("retired"), "{q}");
    let inbox = p.list(IDVA, "/inbox", "envelope_id").await?;
    assert!(!inbox.iter().any(|e| e["envelope_id"] == late_id.as_str()), "the envelope signed with the retired key was stored");
    // The audit service down while the old directory is on disk refuses it at start too.
    p.hub.kill_audit().await;
    let refused = p.hub.restart_audit().await.expect_err("the audit service started on a directory older than the one it ran");
    let why = format!("{refused:#}");
    assert!(why.contains("refusing the directory") && why.contains("older than sequence 2"), "{why}");

    // The new directory back; then a new policy, signed with the next sequence.
    new_directory.put_back()?;
    p.hub.restart_audit().await?;
    for service in &services {
        eventually("the refusal cleared", DEADLINE, || async { Ok(p.get(service, "/health").await?["files_refused"].is_null().then_some(())) }).await?;
    }
    let old_text = String::from_utf8(old_policy.text.clone())?;
    let old_version = isp::Policy::from_toml(&old_text, &isp::Schema::load()?)?.version;
    let new_text = old_text.replacen(&format!("version = \"{old_version}\""), "version = \"2026-12-rollback.2\"", 1);
    assert_ne!(new_text, old_text, "the fixture's version line moved");
    let ig = isp::AgencyKeys::load(&p.data().join("keys").join("ig-northbridge.toml"))?;
    let sequence = hub::partnership::next_sequence(&old_policy.path);
    assert_eq!(sequence, 2);
    std::fs::write(&old_policy.path, &new_text)?;
    std::fs::write(runtime::config::signature_path(&old_policy.path), serde_json::to_string(&isp::signed::sign(&ig, "2026-12-rollback.2", sequence, &new_text))?)?;
    for service in &agencies {
        eventually("the new policy in force", DEADLINE, || async {
            Ok((p.get(service, "/health").await?["policy_version"] == "2026-12-rollback.2").then_some(()))
        })
        .await?;
    }
    // The old policy put back: refused by every agency service, which keeps the new one.
    old_policy.put_back()?;
    for health in every_service_refuses(&p, &agencies, "older than sequence 2").await? {
        assert_eq!(health["policy_version"], "2026-12-rollback.2", "{health}");
    }

    // Housing down while the old policy is on disk: it refuses it at start, saying why.
    p.hub.kill(HOUSING).await;
    let refused = p.hub.restart(HOUSING).await.expect_err("housing started on a policy older than the one it ran");
    let why = format!("{refused:#}");
    assert!(why.contains("refusing the policy") && why.contains("older than sequence 2"), "{why}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_signed_files_put_back_are_refused_sqlite() -> anyhow::Result<()> {
    old_signed_files_put_back_are_refused(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_signed_files_put_back_are_refused_postgres() -> anyhow::Result<()> {
    old_signed_files_put_back_are_refused(Backend::Postgres).await
}
