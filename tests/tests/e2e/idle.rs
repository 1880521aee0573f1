//! Light traffic is taken in batches, and a partnership at rest leaves the broker alone: what
//! an operator on call sees as CPU when the partnership is quiet, which is most of the time.
//! The audit service's pull waits at the broker for its batch to fill (up to 250 ms); it once
//! used a pull the broker answered at once with whatever was pending, so under light traffic
//! it took a batch of a message or two at a time, each with a stream-info request, a read of
//! its intake and a commit (1.6 ms of the audit's CPU per disclosure at 200/s in `hub bench`,
//! now 0.3-0.4).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, atomic::AtomicUsize},
    time::Duration,
};

use futures::StreamExt as _;
use tests::{Backend, Partnership, eventually, send_referrals};

/// The JetStream API requests made while `during` runs, by subject after `$JS.API.` (every
/// request any client makes is an ordinary message there: the admin identity sees them all).
pub(crate) async fn requests_while(p: &Partnership, during: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<BTreeMap<String, usize>> {
    let broker = p.broker().await?;
    let mut requests = broker.subscribe("$JS.API.>").await?;
    broker.flush().await?;
    let by_kind = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let counting = tokio::spawn({
        let by_kind = by_kind.clone();
        async move {
            while let Some(m) = requests.next().await {
                // `$JS.API.CONSUMER.MSG.NEXT.HUB.audit` -> `CONSUMER.MSG.NEXT.HUB.audit`.
                let kind = m.subject.split('.').skip(2).collect::<Vec<_>>().join(".");
                *by_kind.lock().unwrap().entry(kind).or_default() += 1;
            }
        }
    });
    let done = during.await;
    // What the broker delivered before now has been counted once a round trip comes back.
    broker.flush().await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    counting.abort();
    done?;
    Ok(by_kind.lock().unwrap().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn light_traffic_is_taken_in_batches_and_rest_never_spins() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let http = p.caseworker("housing-northbridge").await?;
    let url = p.url("housing-northbridge");
    let sent = Arc::new(AtomicUsize::new(0));
    send_referrals(http.clone(), url.clone(), 0, 2, 1, sent.clone()).await?;
    eventually("the ledger holding the first referrals, their consents and receipts", Duration::from_secs(60), || async {
        Ok((p.ledger().await?.len() >= 6).then_some(()))
    })
    .await?;

    // Light traffic: a consent and a referral every 100 ms for 4 s (each with its receipt:
    // about 30 messages a second for the ledger, arriving one or two at a time).
    let light = requests_while(&p, async {
        for n in 2..42 {
            send_referrals(http.clone(), url.clone(), n, 1, 1, sent.clone()).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    })
    .await?;
    let pulls = |by_kind: &BTreeMap<String, usize>| by_kind.get("CONSUMER.MSG.NEXT.HUB.audit").copied().unwrap_or_default();
    // At most four pulls a second, however the messages trickle in (one per message or two
    // before, and a stream-info request with each).
    assert!((2..=30).contains(&pulls(&light)), "the audit's pulls under light traffic: {light:?}");
    eventually("the ledger holding all 42 referrals, their consents and receipts", Duration::from_secs(60), || async {
        Ok((p.ledger().await?.len() >= 126).then_some(()))
    })
    .await?;

    // Rest.
    let rest = requests_while(&p, async { tokio::time::sleep(Duration::from_secs(4)).await; Ok(()) }).await?;
    assert!((4..=24).contains(&pulls(&rest)), "the audit's pulls at rest (it is still pulling): {rest:?}");
    assert!(rest.get("STREAM.INFO.HUB").copied().unwrap_or_default() <= 24, "stream-info requests at rest: {rest:?}");
    // Everything else is clock-driven too, on the test harness's fast clocks: deadlines are
    // checked every 200 ms (not 30 s), and at each check the IDVA re-reads the consent of up
    // to 64 open cases; witnesses read the checkpoint stream. Nothing may spin: a loop that
    // did made thousands.
    let consent = |kind: &str| kind.starts_with("DIRECT.GET.KV_hub-consent");
    let others: usize = rest.iter().filter(|(kind, _)| !consent(kind)).map(|(_, n)| n).sum();
    assert!(others <= 120, "{others} JetStream API requests in 4 s of rest, besides the IDVA's consent re-checks: {rest:?}");
    // A re-check of a record that has not changed is one direct get of the record's last
    // message (`DIRECT.GET.KV_hub-consent.<its subject>`); its history is read again only when
    // something came after what was read before (`DIRECT.GET.KV_hub-consent`, a request by
    // sequence). It used to read the whole history every time: two direct gets or more.
    assert!(rest.keys().any(|kind| consent(kind)), "the IDVA re-checks its open cases' consent: {rest:?}");
    assert_eq!(rest.get("DIRECT.GET.KV_hub-consent"), None, "histories read again with nothing new: {rest:?}");
    Ok(())
}
