//! The scripted demo case, on each storage backend: every disclosure delivered and stored
//! exactly once, the near miss refused, every referral acknowledged, the ledger verifies.

use std::collections::BTreeMap;

use tests::{Backend, Partnership};

async fn demo_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let report = hub::demo::play(&p.hub, &p.logins, false).await?;
    assert_eq!(report.delivered.len(), 21, "the script makes 21 allowed disclosures");
    assert_eq!(report.near_misses.len(), 1, "the perpetrator referral with the survivor's address is refused once");

    // Exactly once, counted independently of the script: every recipient's inbox holds each
    // of its envelopes once and nothing else but the receipts services send on their own (and
    // the reciprocal scheme's status messages).
    let mut expected: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, to) in &report.delivered {
        expected.entry(to.as_str()).or_default().push(id.as_str());
    }
    for (agency, ids) in &expected {
        let inbox = p.get(agency, "/inbox").await?;
        let automatic = |e: &&serde_json::Value| (e["kind"] == "referral.ack" || e["kind"] == "reciprocal.status") && !report.delivered.contains_key(e["envelope_id"].as_str().unwrap());
        let mut got: Vec<&str> = inbox.as_array().unwrap().iter().filter(|e| !automatic(e)).map(|e| e["envelope_id"].as_str().unwrap()).collect();
        got.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(got, want, "{agency}'s inbox");
    }

    // The ledger: every delivered envelope once, each automatic receipt, one near miss, and
    // it verifies.
    let ledger = p.ledger().await?;
    let disclosures: Vec<&str> =
        ledger.iter().filter(|e| e["entry_type"] == "disclosure").map(|e| e["entry_id"].as_str().unwrap()).collect();
    for id in report.delivered.keys() {
        assert_eq!(disclosures.iter().filter(|d| **d == id.as_str()).count(), 1, "ledger lacks {id} or holds it twice");
    }
    assert_eq!(disclosures.len(), 21 + report.automatic_receipts, "every other disclosure entry is an automatic receipt or status");
    assert!(report.automatic_receipts >= 14, "a delivered and an opened receipt per referral: {}", report.automatic_receipts);
    let near: Vec<&serde_json::Value> = ledger.iter().filter(|e| e["entry_type"] == "near_miss").collect();
    assert_eq!(near.len(), 1);
    assert_eq!(near[0]["rule"], "roles.perpetrator.never");
    assert_eq!(near[0]["forbidden"], "survivor.address,survivor.contact");
    let marac = ledger.iter().find(|e| e["kind"] == "marac.referral").unwrap();
    assert_eq!(marac["without_consent"], true, "the MARAC referral was shared without consent and says so");
    let verify = p.get("audit", "/verify").await?;
    assert_eq!(verify["ok"], true, "{verify}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_case_on_sqlite() -> anyhow::Result<()> {
    demo_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_case_on_postgres() -> anyhow::Result<()> {
    demo_on(Backend::Postgres).await
}

/// `hub demo --scenario casework`: a housing and IDVA case through a proved risk, IDVA
/// casework, deadlines that fire and the person's record; every check of the scenario holds.
async fn casework_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let c = hub::casework_demo::play(&p.hub, &p.logins, false).await?;
    assert!(c.checks.len() >= 14, "the scenario's checks: {:?}", c.checks);
    assert!(c.subject_ref.starts_with("s-"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn casework_scenario_on_sqlite() -> anyhow::Result<()> {
    casework_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn casework_scenario_on_postgres() -> anyhow::Result<()> {
    casework_on(Backend::Postgres).await
}
