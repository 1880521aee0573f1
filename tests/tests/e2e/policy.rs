//! The policy is the IG lead's signed protocol: a running partnership takes up a newly
//! signed version within seconds, refuses an unsigned or wrongly signed one with a clear
//! reason and keeps running on the last good one, and the ledger records which version
//! decided each disclosure.

use std::time::Duration;

use tests::{Backend, Partnership, eventually, send_referrals};

const AGENCIES: [&str; 3] = ["housing-northbridge", "idva-northbridge", "marac-northbridge"];

async fn versions(p: &Partnership) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for a in AGENCIES {
        out.push(p.get(a, "/health").await?["policy_version"].as_str().unwrap_or_default().to_owned());
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_a_policy_signed_by_the_ig_key_is_taken_up_and_the_ledger_names_its_version() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let old = isp::policy::DEMO_POLICY;
    let old_version = isp::Policy::from_toml(old, &isp::Schema::load()?)?.version;
    assert_eq!(versions(&p).await?, vec![old_version.clone(); 3]);

    let path = p.data().join("partnership").join("policy.toml");
    let sig_path = p.data().join("partnership").join("policy.toml.sig");
    let new_text = old.replacen(&format!("version = \"{old_version}\""), "version = \"2026-12-test.2\"", 1);
    assert_ne!(new_text, old, "the fixture's version line moved");
    let keys = |agency: &str| isp::AgencyKeys::load(&p.data().join("keys").join(format!("{agency}.toml")));

    // An edit with the old signature beside it: refused, at start-up with a clear reason,
    // and by the running services, which keep the signed version.
    std::fs::write(&path, &new_text)?;
    let config = runtime::Config::embedded(p.data(), "housing-northbridge", &p.hub.nats_url);
    let refused = format!("{:#}", config.load_isp().unwrap_err());
    assert!(refused.contains("changed after it was signed"), "{refused}");
    // Signed, but by an agency that is not the IG office.
    std::fs::write(&sig_path, serde_json::to_string(&isp::signed::sign(&keys("housing-northbridge")?, "2026-12-test.2", &new_text))?)?;
    let refused = format!("{:#}", config.load_isp().unwrap_err());
    assert!(refused.contains("not the partnership's IG office"), "{refused}");
    std::fs::remove_file(&sig_path)?;
    let refused = format!("{:#}", config.load_isp().unwrap_err());
    assert!(refused.contains("not signed"), "{refused}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(versions(&p).await?, vec![old_version.clone(); 3], "a service took up an unsigned policy");

    // Signed by the IG office: every service takes it up, and new disclosures carry it.
    std::fs::write(&sig_path, serde_json::to_string(&isp::signed::sign(&keys("ig-northbridge")?, "2026-12-test.2", &new_text))?)?;
    eventually("every service on the new policy", Duration::from_secs(30), || async {
        Ok((versions(&p).await? == vec!["2026-12-test.2".to_owned(); 3]).then_some(()))
    })
    .await?;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids = send_referrals(p.http.clone(), p.url("housing-northbridge"), 0, 1, 1, sent).await?;
    let entry = eventually("the disclosure in the ledger", Duration::from_secs(30), || async {
        Ok(p.ledger().await?.into_iter().find(|e| e["entry_id"] == ids[0].as_str()))
    })
    .await?;
    assert_eq!(entry["policy_version"], "2026-12-test.2");
    Ok(())
}
