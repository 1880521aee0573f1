//! A message whose handling panics cannot take an agency off the partnership: it is
//! quarantined (`handler_panic`) and recorded in the ledger after the first panic, never
//! redelivered into the same panic, and the service and the messages beside it carry on.

use std::{
    sync::{Arc, atomic::{AtomicUsize, Ordering}},
    time::Duration,
};

use runtime::{Ctx, Tx};
use tests::{Backend, Partnership, eventually, send_referrals};

const IDVA: &str = "idva-northbridge";
const POISON: &str = "HSG-T-00002";

/// The IDVA service with a defect: its domain code panics on one referral.
struct Fragile {
    panics: Arc<AtomicUsize>,
}

impl runtime::Agency for Fragile {
    fn migrations(&self) -> Vec<runtime::Migration> {
        idva::Idva.migrations()
    }

    async fn on_receive(&self, ctx: &Ctx, tx: &mut Tx, opened: &isp::Opened) -> anyhow::Result<()> {
        if opened.header.case_ref == POISON {
            self.panics.fetch_add(1, Ordering::SeqCst);
            panic!("a defect in the domain code");
        }
        idva::Idva.on_receive(ctx, tx, opened).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_whose_handling_panics_is_quarantined_once_and_the_service_carries_on() -> anyhow::Result<()> {
    let mut p = Partnership::start_with(Backend::Sqlite, Some(Duration::from_secs(2))).await?;
    // The IDVA's service is replaced by the fragile one, on the same database and consumer
    // (which redelivers after 2 s: the partnership's broker was provisioned so).
    p.hub.kill(IDVA).await;
    let mut config = runtime::Config::embedded(p.data(), IDVA, &p.hub.nats_url);
    config.database_url = p.database_url(IDVA).await?;
    let panics = Arc::new(AtomicUsize::new(0));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = runtime::start(config, Fragile { panics: panics.clone() }, shutdown.clone()).await?;
    let idva = format!("http://{}", running.addr);
    // The same database as the partnership's IDVA service, so its staff log in here too.
    let staff = p.logins.as_role(IDVA, &idva, tests::Role::TeamManager).await?;
    let get = |path: &str| {
        let (http, url) = (staff.clone(), format!("{idva}{path}"));
        async move { anyhow::Ok(http.get(url).send().await?.error_for_status()?.json::<serde_json::Value>().await?) }
    };

    // Five referrals sent together (so they may arrive as one batch), the third poisonous.
    let sent = Arc::new(AtomicUsize::new(0));
    let ids = send_referrals(p.caseworker("housing-northbridge").await?, p.url("housing-northbridge"), 0, 5, 5, sent.clone()).await?;
    let poison_id = eventually("the poisonous referral's id", Duration::from_secs(10), || async {
        let sent = p.get("housing-northbridge", "/disclosures").await?;
        Ok(sent.as_array().unwrap().iter().find(|d| d["case_ref"] == POISON).map(|d| d["envelope_id"].as_str().unwrap().to_owned()))
    })
    .await?;
    let q = eventually("the poisonous referral quarantined", Duration::from_secs(30), || async {
        Ok(get("/quarantine").await?.as_array().and_then(|q| q.first().cloned()))
    })
    .await?;
    assert_eq!((q["reason"].as_str(), q["envelope_id"].as_str()), (Some("handler_panic"), Some(poison_id.as_str())), "{q}");

    // The four others are stored, once each.
    let inbox = eventually("the other four in the inbox", Duration::from_secs(30), || async {
        let inbox = get("/inbox").await?;
        Ok((inbox.as_array().unwrap().len() >= 4).then_some(inbox))
    })
    .await?;
    let mut stored: Vec<&str> = inbox.as_array().unwrap().iter().map(|e| e["envelope_id"].as_str().unwrap()).collect();
    stored.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).filter(|id| *id != poison_id).collect();
    want.sort();
    assert_eq!(stored, want);

    // Nothing is left for the broker to redeliver: the panic happened within the first
    // delivery (in the batch, then alone), and never again.
    let js = async_nats::jetstream::new(p.broker().await?);
    let stream = js.get_stream("HUB").await?;
    eventually("every delivery to the IDVA acknowledged", Duration::from_secs(30), || async {
        let info = stream.consumer_info(format!("agency-{IDVA}")).await?;
        Ok((info.num_ack_pending == 0 && info.num_pending == 0).then_some(()))
    })
    .await?;
    let seen = panics.load(Ordering::SeqCst);
    assert!((1..=2).contains(&seen), "the handler panicked {seen} times");
    assert_eq!(get("/quarantine").await?.as_array().unwrap().len(), 1);

    // The refusal is in the ledger, and the service still takes referrals.
    let entry = eventually("the refusal in the ledger", Duration::from_secs(30), || async {
        Ok(p.ledger().await?.into_iter().find(|e| e["entry_type"] == "rejected" && e["reason"] == "handler_panic"))
    })
    .await?;
    assert_eq!((entry["recorded_by"].as_str(), entry["in_reply_to"].as_str()), (Some(IDVA), Some(poison_id.as_str())), "{entry}");
    let later = send_referrals(p.caseworker("housing-northbridge").await?, p.url("housing-northbridge"), 5, 1, 1, sent).await?.remove(0);
    eventually("a later referral stored", Duration::from_secs(30), || async {
        Ok(get("/inbox").await?.as_array().unwrap().iter().any(|e| e["envelope_id"] == later.as_str()).then_some(()))
    })
    .await?;
    assert_eq!(get("/health").await?["status"], "ok");
    shutdown.cancel();
    let _ = running.task.await;
    Ok(())
}
