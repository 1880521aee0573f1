//! A broker node dies mid-burst: the partnership runs on a 3-node JetStream cluster (every
//! stream with a replica on each node), housing sends a burst of referrals to the IDVA, and
//! the node leading the hub's stream is killed with SIGKILL while the burst is under way. The
//! other two elect a new leader and the hub carries on; the node is started again on its own
//! store and ports and catches up while more referrals arrive. Every referral is delivered exactly once, the ledger holds
//! every one and verifies, and no agency quarantined anything (a redelivery or a re-publish
//! after the failover is recognised, never taken for a bad envelope). On SQLite and on
//! PostgreSQL.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use hub::cluster::{placement, wait_replicas_current};
use runtime::transport::{AUDIT_CONSUMER, STREAM};
use serde_json::{Value, json};
use tests::{Backend, Partnership, eventually, inbox_counts, send_referrals};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const REFERRAL: &str = "housing.idva_referral";
const NODES: usize = 3;
/// Referrals in the burst, and how many are in flight at once.
const BURST: usize = 2000;
/// Sent from the moment the killed node starts again, so it always catches up while referrals
/// still flow (however fast the rest of the burst was delivered with it down).
const AFTER_RESTART: usize = 500;
const TOTAL: usize = BURST + AFTER_RESTART;
const PARALLEL: usize = 8;
/// A bound for a failing run, not a timing a passing run depends on.
const PATIENCE: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stream_leader_killed_mid_burst_loses_and_duplicates_nothing_sqlite() -> anyhow::Result<()> {
    leader_killed_mid_burst(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stream_leader_killed_mid_burst_loses_and_duplicates_nothing_postgres() -> anyhow::Result<()> {
    leader_killed_mid_burst(Backend::Postgres).await
}

async fn leader_killed_mid_burst(backend: Backend) -> anyhow::Result<()> {
    let started = Instant::now();
    // A short ack wait: what the dead node's consumers had handed out is redelivered soon.
    let mut p = Partnership::start_cluster(backend, NODES, Some(Duration::from_secs(3))).await?;
    let broker = p.broker().await?;
    let js = async_nats::jetstream::new(broker.clone());
    // Every stream of the partnership has a replica on each node, all current.
    for config in hub::cluster::partnership_streams(NODES) {
        let info = js.get_stream(&config.name).await?.cached_info().clone();
        assert_eq!(info.config.num_replicas, NODES, "the stream {} is not replicated on every node", config.name);
        wait_replicas_current(&broker, &config.name, NODES, PATIENCE).await?;
    }

    let sent = Arc::new(AtomicUsize::new(0));
    let caseworker = p.caseworker(HOUSING).await?;
    let burst = tokio::spawn(send_referrals(caseworker.clone(), p.url(HOUSING), 0, BURST, PARALLEL, sent.clone()));
    let burst_started = Instant::now();

    // Part of the burst through, the node leading the hub's stream dies.
    eventually("a tenth of the burst answered", PATIENCE, || async { Ok((sent.load(Ordering::SeqCst) >= BURST / 10).then_some(())) }).await?;
    let leader = placement(&broker, STREAM).await?.leader.context("the stream has no leader")?;
    let node = p.hub.cluster.as_ref().context("no cluster")?.node_named(&leader).with_context(|| format!("no node named {leader}"))?;
    let idva_db = p.database_url(IDVA).await?;
    p.hub.cluster.as_mut().context("no cluster")?.kill(node).await?;
    let killed_at = Instant::now();
    let answered_at_kill = sent.load(Ordering::SeqCst);
    let received_at_kill = inbox_counts(&idva_db).await?.0;

    // The other two elect a new leader, and referrals keep arriving with the node down.
    let new_leader = eventually("a new leader of the hub's stream", PATIENCE, || async {
        Ok(placement(&broker, STREAM).await?.leader.filter(|l| *l != leader))
    })
    .await?;
    let leader_change = killed_at.elapsed();
    let on_stream_at_election = js.get_stream(STREAM).await?.cached_info().state.last_sequence;
    eventually("referrals published and delivered with the node down", PATIENCE, || async {
        let published = js.get_stream(STREAM).await?.cached_info().state.last_sequence >= on_stream_at_election + (BURST / 10) as u64;
        Ok((published && inbox_counts(&idva_db).await?.0 >= received_at_kill + (BURST / 10) as i64).then_some(()))
    })
    .await?;
    let down_for = killed_at.elapsed();
    let received_at_restart = inbox_counts(&idva_db).await?.0;
    // Back on its own store and ports (healthy once its replicas have caught up), with more
    // referrals on their way as it does.
    let more = tokio::spawn(send_referrals(caseworker, p.url(HOUSING), BURST, AFTER_RESTART, PARALLEL, sent.clone()));
    let restarting = Instant::now();
    p.hub.cluster.as_mut().context("no cluster")?.restart(node).await?;
    wait_replicas_current(&broker, STREAM, NODES, PATIENCE).await?;
    let catch_up = restarting.elapsed();

    let mut answered = burst.await??;
    answered.extend(more.await??);
    let burst_time = burst_started.elapsed();
    assert!(answered_at_kill < BURST, "the node was killed after the burst was answered ({answered_at_kill} answered)");
    assert!(received_at_restart < TOTAL as i64, "the node came back after every referral was delivered ({received_at_restart} received)");
    let answered_ids: BTreeSet<String> = answered.iter().cloned().collect();
    assert_eq!(answered_ids.len(), TOTAL, "housing answered with one envelope id twice");

    // Exactly once at the IDVA: its inbox holds every referral answered, once, and nothing else.
    eventually("every referral in the IDVA's inbox", PATIENCE, || async { Ok((inbox_counts(&idva_db).await?.0 >= TOTAL as i64).then_some(())) }).await?;
    let inbox: Vec<String> = p.list(IDVA, "/inbox", "stream_seq").await?.iter().map(|e| text(e, "envelope_id")).collect();
    assert_eq!(inbox.len(), TOTAL, "the IDVA's inbox holds a referral twice, or one never sent");
    assert_eq!(inbox.into_iter().collect::<BTreeSet<_>>(), answered_ids, "the IDVA's inbox differs from what housing answered");
    assert_eq!(inbox_counts(&idva_db).await?, (TOTAL as i64, TOTAL as i64), "an inbox row appeared twice");
    let agencies: Vec<String> = p.hub.services.keys().cloned().collect();
    for agency in &agencies {
        assert_eq!(p.get(agency, "/quarantine").await?, json!([]), "{agency} quarantined something after the failover");
    }

    // The ledger is whole: every message on the stream once, every referral, and it verifies.
    let (ledger, on_stream) = eventually("every message on the stream in the ledger", PATIENCE, || async {
        let on_stream = js.get_stream(STREAM).await?.cached_info().state.last_sequence;
        let ledger = p.ledger().await?;
        Ok((ledger.len() as u64 >= on_stream).then_some((ledger, on_stream)))
    })
    .await?;
    let mut stream_seqs: Vec<u64> = ledger.iter().map(|e| e["stream_seq"].as_u64().unwrap_or_default()).collect();
    stream_seqs.sort_unstable();
    assert!(stream_seqs.into_iter().eq(1..=on_stream), "the ledger does not hold every message on the stream (1..{on_stream}) exactly once");
    let logged: Vec<String> = ledger.iter().filter(|e| e["entry_type"] == "disclosure" && e["kind"] == REFERRAL).map(|e| text(e, "entry_id")).collect();
    assert_eq!(logged.len(), TOTAL, "the ledger does not hold {TOTAL} referrals");
    assert_eq!(logged.into_iter().collect::<BTreeSet<_>>(), answered_ids, "the ledger's referrals differ from what housing answered");
    let verified = p.get("audit", "/verify").await?;
    assert_eq!(verified["ok"], true, "the ledger does not verify: {verified}");

    // Figures: deliveries beyond one per message are redeliveries (a consumer's sequence
    // counts every delivery).
    let stream = js.get_stream(STREAM).await?;
    let idva = stream.consumer_info(format!("agency-{IDVA}")).await?;
    let audit = stream.consumer_info(AUDIT_CONSUMER).await?;
    eprintln!(
        "cluster {backend:?}: {TOTAL} referrals in {burst_time:.1?}; killed {leader} (leader) at {answered_at_kill} answered, new leader {new_leader} after {leader_change:.1?}, \
         restarted after {down_for:.1?} down, back and current in {catch_up:.1?}; redeliveries: IDVA {}, audit {}; {on_stream} messages on the stream; test {:.1?}",
        idva.delivered.consumer_sequence.saturating_sub(TOTAL as u64),
        audit.delivered.consumer_sequence.saturating_sub(on_stream),
        started.elapsed(),
    );
    Ok(())
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_owned()
}
