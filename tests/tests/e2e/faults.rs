//! Faults: the broker stopped while a service sends. Nothing is lost and nothing arrives
//! twice. (Services killed mid-burst, each its own process: `services/hub/tests/crash.rs`.)

use std::{
    collections::BTreeSet,
    sync::{Arc, atomic::{AtomicUsize, Ordering}},
    time::Duration,
};

use tests::{Backend, Partnership, eventually, inbox_counts, send_referrals};

const IDVA: &str = "idva-northbridge";

/// The IDVA's inbox and the ledger hold exactly `sent`, once each.
async fn assert_delivered_once(p: &Partnership, sent: &[String]) -> anyhow::Result<()> {
    let want: BTreeSet<&str> = sent.iter().map(String::as_str).collect();
    assert_eq!(want.len(), sent.len(), "the sender handed out duplicate envelope ids");
    let idva_db = p.database_url(IDVA).await?;
    eventually("every referral in the IDVA's inbox", Duration::from_secs(120), || {
        let idva_db = idva_db.clone();
        async move { Ok((inbox_counts(&idva_db).await?.0 >= sent.len() as i64).then_some(())) }
    })
    .await?;
    let inbox = serde_json::Value::Array(p.list(IDVA, "/inbox", "stream_seq").await?);
    let got: Vec<&str> = inbox.as_array().unwrap().iter().map(|e| e["envelope_id"].as_str().unwrap()).collect();
    assert_eq!(got.len(), sent.len(), "the inbox holds a referral twice, or one that was never sent");
    assert_eq!(got.iter().copied().collect::<BTreeSet<_>>(), want);
    let quarantined = p.get(IDVA, "/quarantine").await?;
    assert_eq!(quarantined, serde_json::json!([]), "a redelivery was mistaken for a bad envelope");

    let ledger = eventually("every referral in the ledger", Duration::from_secs(60), || async {
        let ledger = p.ledger().await?;
        let n = ledger.iter().filter(|e| e["entry_type"] == "disclosure" && e["kind"] == "housing.idva_referral").count();
        Ok((n >= sent.len()).then_some(ledger))
    })
    .await?;
    let logged: Vec<&str> = ledger
        .iter()
        .filter(|e| e["entry_type"] == "disclosure" && e["kind"] == "housing.idva_referral")
        .map(|e| e["entry_id"].as_str().unwrap())
        .collect();
    assert_eq!(logged.len(), sent.len(), "the ledger records a disclosure twice");
    assert_eq!(logged.into_iter().collect::<BTreeSet<_>>(), want);
    assert_eq!(p.get("audit", "/verify").await?["ok"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_outage_while_sending_then_the_outbox_drains() -> anyhow::Result<()> {
    let mut p = Partnership::start_with(Backend::Sqlite, Some(Duration::from_secs(2))).await?;
    let sent = Arc::new(AtomicUsize::new(0));
    let burst = tokio::spawn(send_referrals(p.caseworker("housing-northbridge").await?, p.url("housing-northbridge"), 0, 500, 4, sent.clone()));
    eventually("part of the burst sent", Duration::from_secs(60), || {
        let sent = sent.clone();
        async move { Ok((sent.load(Ordering::SeqCst) >= 40).then_some(())) }
    })
    .await?;
    let nats = p.hub.nats.as_mut().expect("the test partnership runs its own nats-server");
    nats.stop().await?;
    let sent_at_stop = sent.load(Ordering::SeqCst);
    // Sending goes on while the broker is down: the disclosures wait in housing's outbox.
    eventually("more sends accepted during the outage", Duration::from_secs(60), || {
        let sent = sent.clone();
        async move { Ok((sent.load(Ordering::SeqCst) >= 120).then_some(())) }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.hub.nats.as_mut().unwrap().restart().await?;
    let ids = burst.await??;
    assert!(sent_at_stop < 500, "the outage came after the burst ended");
    assert_eq!(ids.len(), 500);
    assert_delivered_once(&p, &ids).await
}
