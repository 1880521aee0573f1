//! The partnership's signed files travel over the broker. The IG office, on a host of its own
//! (here a scratch copy of the partnership's files and keys), signs a directory update and
//! publishes it to the `hub-partnership` bucket as the broker's administrator; nobody copies a
//! file to any service. Every service, the audit service too, writes it to its own files and
//! runs it within seconds; the IDVA runs here with partnership files of its own, in a folder
//! nothing but its own service writes, as it would on its own host.
//!
//! Then whoever holds the broker's administrator rights puts into the bucket what the IG
//! office did not sign as it stands: a genuine but older directory, one naming a new key of the
//! IG office's and signed with it, one signed by an agency that is not the IG office, a genuine
//! one with a key swapped in its text, something that is no signed file, and a policy signed
//! by an agency. Every service refuses each (counted in
//! `GET /metrics` by key and reason), writes nothing, keeps running what it ran, and a
//! referral still goes through; a genuine update published after them is taken up as before.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicUsize},
    time::{Duration, Instant},
};

use async_nats::jetstream;
use runtime::partnership_feed::{self, DIRECTORY_KEY, POLICY_KEY, SignedFile};
use tests::{Backend, Partnership, eventually, send_referrals};
use tokio_util::sync::CancellationToken;

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const PERPETRATOR: &str = "perpetrator-pathways";
/// How long a service may take to run what was published: the feed reads the bucket every
/// 5 s and the files are taken up within 2 s of being written; the rest is room for a loaded
/// machine.
const BOUND: Duration = Duration::from_secs(30);

/// A copy of `from`'s partnership files and key files in a new folder: the IG office's host.
fn office_copy(from: &Path) -> anyhow::Result<tempfile::TempDir> {
    let office = tempfile::Builder::new().prefix("ig-office").tempdir()?;
    for folder in ["partnership", "keys"] {
        std::fs::create_dir_all(office.path().join(folder))?;
        for entry in std::fs::read_dir(from.join(folder))? {
            let entry = entry?;
            std::fs::copy(entry.path(), office.path().join(folder).join(entry.file_name()))?;
        }
    }
    Ok(office)
}

fn directory_file(data: &Path) -> PathBuf {
    runtime::config::partnership_dir(data).join("directory.toml")
}

fn policy_file(data: &Path) -> PathBuf {
    runtime::config::partnership_dir(data).join("policy.toml")
}

/// An agency's new key file from the office's copy put where its service reads it (the
/// agency made its new keys on its own host; only the directory travels).
fn hand_keys_over(office: &Path, data: &Path, agency: &str) -> anyhow::Result<()> {
    let file = format!("keys/{agency}.toml");
    std::fs::copy(office.join(&file), data.join(&file))?;
    Ok(())
}

/// Puts raw bytes under a key of the bucket, as the broker's administrator may.
async fn put(admin: &jetstream::Context, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
    admin.publish(partnership_feed::subject(key), value.into()).await?.await?;
    Ok(())
}

/// How many values of `key` a service refused for `reason`, from its `GET /metrics`.
async fn refusals(p: &Partnership, service: &str, key: &str, reason: &str) -> anyhow::Result<f64> {
    let http = p.client(service, "GET", "/metrics").await?;
    let text = http.get(format!("{}/metrics", p.url(service))).send().await?.error_for_status()?.text().await?;
    let prefix = if service == "audit" { "audit" } else { "hub" };
    let series = format!("{prefix}_partnership_values_refused_total{{key=\"{key}\",reason=\"{reason}\"}} ");
    Ok(text.lines().find_map(|l| l.strip_prefix(series.as_str())).map(str::parse).transpose()?.unwrap_or(0.0))
}

/// Waits until every service runs the directory of `digest` with no files refused.
async fn every_service_runs(p: &Partnership, services: &[String], digest: &str) -> anyhow::Result<()> {
    for service in services {
        eventually(&format!("{service} running directory {digest}"), BOUND, || async {
            let health = p.get(service, "/health").await?;
            Ok((health["directory"] == digest && health["files_refused"].is_null()).then_some(()))
        })
        .await?;
    }
    Ok(())
}

/// Checks that both copies of the partnership files (the IDVA's own, everyone else's) are
/// exactly `directory` and `policy`.
fn on_disk_are(folders: &[&Path], directory: &SignedFile, policy: &SignedFile) -> anyhow::Result<()> {
    for data in folders {
        anyhow::ensure!(&SignedFile::read(&directory_file(data))? == directory, "the directory in {} is not the one expected", data.display());
        anyhow::ensure!(&SignedFile::read(&policy_file(data))? == policy, "the policy in {} is not the one expected", data.display());
    }
    Ok(())
}

async fn signed_updates_reach_every_service_through_the_broker(backend: Backend) -> anyhow::Result<()> {
    let mut p = Partnership::start(backend).await?;
    let shared = p.data().to_owned();
    let original_directory = SignedFile::read(&directory_file(&shared))?;
    let original_policy = SignedFile::read(&policy_file(&shared))?;

    // --- The IDVA on a host of its own: its partnership files in a folder of its own ---
    let idva_host = tempfile::Builder::new().prefix("idva-host").tempdir()?;
    let own = idva_host.path().to_owned();
    std::fs::create_dir_all(runtime::config::partnership_dir(&own))?;
    for file in [directory_file(&shared), policy_file(&shared)] {
        let name = file.file_name().unwrap().to_owned();
        std::fs::copy(&file, runtime::config::partnership_dir(&own).join(&name))?;
        std::fs::copy(runtime::config::signature_path(&file), runtime::config::signature_path(&runtime::config::partnership_dir(&own).join(&name)))?;
    }
    p.hub.kill(IDVA).await;
    let mut config = runtime::Config::embedded(&shared, IDVA, &p.hub.nats_url);
    config.database_url = p.database_url(IDVA).await?;
    config.directory_path = directory_file(&own);
    config.policy_path = policy_file(&own);
    let idva_shutdown = CancellationToken::new();
    let idva = hub::local::start_agency(isp::Role::Idva, config, idva_shutdown.clone()).await?;
    p.hub.services.get_mut(IDVA).expect("the IDVA").url = format!("http://{}", idva.addr);

    let services: Vec<String> = std::iter::once("audit".to_owned()).chain(p.hub.services.keys().cloned()).collect();
    assert_eq!(services.len(), 7, "the audit service and the six agency services");
    let original_digest = isp::Directory::from_toml(&original_directory.text)?.digest();
    every_service_runs(&p, &services, &original_digest).await?;

    // --- The IG office signs housing's new keys into the directory and publishes it ---
    let office = office_copy(&shared)?;
    let (_, housing_keys) = hub::partnership::rotate(office.path(), HOUSING)?;
    hand_keys_over(office.path(), &shared, HOUSING)?;
    let admin = jetstream::new(p.broker().await?);
    let published = Instant::now();
    partnership_feed::publish(&admin, &directory_file(office.path()), &policy_file(office.path())).await?;
    let directory = SignedFile::read(&directory_file(office.path()))?;
    assert_eq!(directory.sequence(), Some(2));
    let digest = isp::Directory::from_toml(&directory.text)?.digest();
    assert_ne!(digest, original_digest);
    every_service_runs(&p, &services, &digest).await?;
    println!("every service ran the published directory {:.1} s after it was published", published.elapsed().as_secs_f64());
    on_disk_are(&[&own, &shared], &directory, &original_policy)?;
    assert_eq!(p.get(HOUSING, "/health").await?["signing_key_id"], housing_keys.signing_key_id().as_str());

    // --- What the IG office did not sign as it stands, put into the bucket by the administrator ---
    // A genuine update of the directory (perpetrator's keys rotated, sequence 3), kept back.
    let next = office_copy(office.path())?;
    let (_, perpetrator_keys) = hub::partnership::rotate(next.path(), PERPETRATOR)?;
    let genuine = SignedFile::read(&directory_file(next.path()))?;
    assert_eq!(genuine.sequence(), Some(3));
    // Whoever would take the IG office's place: a directory naming a new key of the IG
    // office's, signed with that key (it verifies against itself, not against the one in force).
    let ig = p.hub.directory.with_role(isp::Role::Ig).next().expect("an IG office").id.clone();
    let usurper = isp::AgencyKeys::load(&office.path().join(format!("keys/{ig}.toml")))?.rotated();
    let usurped = isp::Directory::from_toml(&genuine.text)?.rotated(&usurper, isp::now_ms())?.to_toml();
    let by_usurper = SignedFile { text: usurped.clone(), signature: serde_json::to_string(&isp::signed::sign_directory(&usurper, 3, &usurped))? };
    let by_housing = SignedFile { text: genuine.text.clone(), signature: serde_json::to_string(&isp::signed::sign_directory(&housing_keys, 3, &genuine.text))? };
    let stranger = hex::encode(perpetrator_keys.rotated().signing.verifying_key().as_bytes());
    let swapped = genuine.text.replace(&hex::encode(perpetrator_keys.signing.verifying_key().as_bytes()), &stranger);
    assert_ne!(swapped, genuine.text);
    let tampered = SignedFile { text: swapped, signature: genuine.signature.clone() };
    let amended = format!("{}\n# amended\n", original_policy.text);
    let policy_by_housing = SignedFile { text: amended.clone(), signature: serde_json::to_string(&isp::signed::sign(&housing_keys, "amended", 2, &amended))? };
    let refused: [(&str, &str, &str, Vec<u8>); 6] = [
        ("the original directory, genuinely signed but older", DIRECTORY_KEY, "not_newer", original_directory.encode(DIRECTORY_KEY)?),
        ("a directory naming a new IG key, signed with it", DIRECTORY_KEY, "signature", by_usurper.encode(DIRECTORY_KEY)?),
        ("a directory signed by housing", DIRECTORY_KEY, "signature", by_housing.encode(DIRECTORY_KEY)?),
        ("a genuine directory with a key swapped in its text", DIRECTORY_KEY, "signature", tampered.encode(DIRECTORY_KEY)?),
        ("no signed file at all", DIRECTORY_KEY, "malformed", b"{\"text\": 1}".to_vec()),
        ("a policy signed by housing", POLICY_KEY, "signature", policy_by_housing.encode(POLICY_KEY)?),
    ];
    for (what, key, reason, value) in refused {
        let mut before = Vec::new();
        for service in &services {
            before.push(refusals(&p, service, key, reason).await?);
        }
        put(&admin, key, value).await?;
        for (service, before) in services.iter().zip(before) {
            eventually(&format!("{service} refusing {what} ({key}, {reason})"), BOUND, || async {
                Ok((refusals(&p, service, key, reason).await? > before).then_some(()))
            })
            .await?;
        }
        // Nothing written, nothing taken up: every service runs the published directory still.
        on_disk_are(&[&own, &shared], &directory, &original_policy).map_err(|e| e.context(format!("after {what}")))?;
        for service in &services {
            let health = p.get(service, "/health").await?;
            anyhow::ensure!(health["directory"] == digest.as_str() && health["files_refused"].is_null(), "{service} after {what}: {health}");
        }
    }

    // --- The partnership keeps working: a referral from housing (new keys) to the IDVA ---
    let sent = Arc::new(AtomicUsize::new(0));
    let referral = send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 0, 1, 1, sent).await?.remove(0);
    let read = eventually("the referral readable at the IDVA", BOUND, || async { Ok(p.get(IDVA, &format!("/inbox/{referral}")).await.ok()) }).await?;
    assert!(read["payload"]["idvaReferral"]["survivor"]["fullName"].is_string(), "{read}");
    assert!(p.get(IDVA, "/quarantine").await?.as_array().is_some_and(|q| q.is_empty()), "the IDVA quarantined something");

    // --- A genuine update after the refused ones is taken up as before ---
    hand_keys_over(next.path(), &shared, PERPETRATOR)?;
    partnership_feed::publish(&admin, &directory_file(next.path()), &policy_file(next.path())).await?;
    let next_digest = isp::Directory::from_toml(&genuine.text)?.digest();
    every_service_runs(&p, &services, &next_digest).await?;
    on_disk_are(&[&own, &shared], &genuine, &original_policy)?;
    assert_eq!(p.get(PERPETRATOR, "/health").await?["signing_key_id"], perpetrator_keys.signing_key_id().as_str());

    idva_shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), idva.task).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partnership_feed_on_sqlite() -> anyhow::Result<()> {
    signed_updates_reach_every_service_through_the_broker(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partnership_feed_on_postgres() -> anyhow::Result<()> {
    signed_updates_reach_every_service_through_the_broker(Backend::Postgres).await
}
