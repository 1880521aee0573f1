//! The policy is the IG lead's signed protocol: a running partnership takes up a newly
//! signed version within seconds, refuses an unsigned or wrongly signed one with a clear
//! reason and keeps running on the last good one, and the ledger records which version
//! decided each disclosure.

use std::time::Duration;

use tests::{Backend, Partnership, eventually, send_referrals};

/// Each agency service's policy version in force and why it last refused the files on disk.
async fn states(p: &Partnership) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for a in p.hub.services.keys() {
        let health = p.get(a, "/health").await?;
        let refused = health["files_refused"]["reason"].as_str().unwrap_or_default().to_owned();
        out.push((health["policy_version"].as_str().unwrap_or_default().to_owned(), refused));
    }
    Ok(out)
}

/// Waits until every service says it refused the files on disk for `reason`, and checks each
/// still runs `version`.
async fn every_service_refuses(p: &Partnership, reason: &str, version: &str) -> anyhow::Result<()> {
    let seen = eventually(&format!("every service refusing the policy ({reason})"), Duration::from_secs(30), || async {
        let s = states(p).await?;
        Ok(s.iter().all(|(_, refused)| refused.contains(reason)).then_some(s))
    })
    .await?;
    assert!(seen.iter().all(|(v, _)| v == version), "a service left the last good policy: {seen:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_a_policy_signed_by_the_ig_key_is_taken_up_and_the_ledger_names_its_version() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let old = isp::policy::DEMO_POLICY;
    let old_version = isp::Policy::from_toml(old, &isp::Schema::load()?)?.version;
    assert_eq!(states(&p).await?, vec![(old_version.clone(), String::new()); p.hub.services.len()]);

    let path = p.data().join("partnership").join("policy.toml");
    let sig_path = p.data().join("partnership").join("policy.toml.sig");
    let new_text = old.replacen(&format!("version = \"{old_version}\""), "version = \"2026-12-test.2\"", 1);
    assert_ne!(new_text, old, "the fixture's version line moved");
    let keys = |agency: &str| isp::AgencyKeys::load(&p.data().join("keys").join(format!("{agency}.toml")));
    let config = runtime::Config::embedded(p.data(), "housing-northbridge", &p.hub.nats_url);

    // An edit with the old signature beside it: refused by every running service, which
    // keeps the signed version, and at start-up.
    std::fs::write(&path, &new_text)?;
    every_service_refuses(&p, "changed after it was signed", &old_version).await?;
    assert!(format!("{:#}", config.load_isp().unwrap_err()).contains("changed after it was signed"));
    // Signed, but by an agency that is not the IG office.
    std::fs::write(&sig_path, serde_json::to_string(&isp::signed::sign(&keys("housing-northbridge")?, "2026-12-test.2", 2, &new_text))?)?;
    every_service_refuses(&p, "not the partnership's IG office", &old_version).await?;
    assert!(format!("{:#}", config.load_isp().unwrap_err()).contains("not the partnership's IG office"));
    // Not signed at all.
    std::fs::remove_file(&sig_path)?;
    every_service_refuses(&p, "not signed", &old_version).await?;
    assert!(format!("{:#}", config.load_isp().unwrap_err()).contains("not signed"));

    // Signed by the IG office: every service takes it up, and new disclosures carry it.
    std::fs::write(&sig_path, serde_json::to_string(&isp::signed::sign(&keys("ig-northbridge")?, "2026-12-test.2", 2, &new_text))?)?;
    eventually("every service on the new policy", Duration::from_secs(30), || async {
        Ok((states(&p).await? == vec![("2026-12-test.2".to_owned(), String::new()); p.hub.services.len()]).then_some(()))
    })
    .await?;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids = send_referrals(p.caseworker("housing-northbridge").await?, p.url("housing-northbridge"), 0, 1, 1, sent).await?;
    let entry = eventually("the disclosure in the ledger", Duration::from_secs(30), || async {
        Ok(p.ledger().await?.into_iter().find(|e| e["entry_id"] == ids[0].as_str()))
    })
    .await?;
    assert_eq!(entry["policy_version"], "2026-12-test.2");
    Ok(())
}
