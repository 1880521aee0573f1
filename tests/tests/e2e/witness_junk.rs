//! Witnesses read every checkpoint: junk published on the checkpoint subject right after each
//! real checkpoint note (not a note; a note signed by another agency, of its own origin or of
//! the IG office's; the real note with its tree size changed, whose signature no longer
//! verifies; the JSON of another agency's checkpoint) hides none of them. Every witness
//! accepts every real checkpoint, raises no alert, and counts what it ignored.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, atomic::{AtomicUsize, Ordering}},
    time::Duration,
};

use futures::StreamExt as _;
use isp::checkpoint::{CHECKPOINT_SUBJECT, Checkpoint};
use sqlx::Connection as _;
use tests::{Backend, Partnership, eventually, send_referrals};

const HOUSING: &str = "housing-northbridge";
const DEADLINE: Duration = Duration::from_secs(60);
/// The junk messages published after each real checkpoint.
const JUNK_PER_CHECKPOINT: usize = 5;

async fn junk_after_every_checkpoint_hides_none(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let directory = isp::Directory::load(&hub::partnership::directory_path(p.data()))?;
    let housing = isp::AgencyKeys::load(&p.data().join("keys").join(format!("{HOUSING}.toml")))?;
    let broker = p.broker().await?;
    let js = async_nats::jetstream::new(broker.clone());
    let mut checkpoints = broker.subscribe(CHECKPOINT_SUBJECT).await?;
    broker.flush().await?;
    // The real checkpoints seen, and the junk published after each.
    let real = Arc::new(Mutex::new(BTreeSet::new()));
    let junk = Arc::new(AtomicUsize::new(0));
    let junk_task = tokio::spawn({
        let (real, junk, directory) = (real.clone(), junk.clone(), directory.clone());
        async move {
            while let Some(m) = checkpoints.next().await {
                let Some(c) = std::str::from_utf8(&m.payload).ok().and_then(|note| Checkpoint::from_note(note, &directory).ok()) else {
                    continue; // our own junk, coming back
                };
                real.lock().unwrap().insert(c.tree_size);
                let by_housing = Checkpoint::sign(&housing, c.tree_size + 1, &[1; 32], isp::now_ms());
                let mut impostor = housing.clone();
                impostor.agency = "ig-northbridge".into();
                let under_ig_origin = Checkpoint::sign(&impostor, c.tree_size + 2, &[1; 32], isp::now_ms());
                let bad_signature = c.note.replacen(&format!("\n{}\n", c.tree_size), &format!("\n{}\n", c.tree_size + 100), 1);
                for body in [
                    b"not a checkpoint {".to_vec(),
                    by_housing.note.clone().into_bytes(),
                    under_ig_origin.note.into_bytes(),
                    bad_signature.into_bytes(),
                    serde_json::to_vec(&by_housing)?,
                ] {
                    js.publish(CHECKPOINT_SUBJECT, body.into()).await?.await?;
                    junk.fetch_add(1, Ordering::SeqCst);
                }
            }
            anyhow::Ok(())
        }
    });

    // Several rounds, each ending in a real checkpoint every witness has accepted.
    let sent = Arc::new(AtomicUsize::new(0));
    for round in 0..3 {
        send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), round, 1, 1, sent.clone()).await?;
        let size = eventually("the ledger settled", DEADLINE, || async {
            let n = p.ledger().await?.len() as u64;
            let latest = p.get("audit", "/checkpoints/latest").await?["tree_size"].as_u64();
            Ok((n >= 3 * (round as u64 + 1) && latest == Some(n) && real.lock().unwrap().contains(&n)).then_some(n))
        })
        .await?;
        for agency in p.hub.services.keys() {
            eventually(&format!("{agency}'s witness at {size}"), DEADLINE, || async {
                Ok((p.get(agency, "/witness").await?["last_accepted"]["tree_size"].as_u64() >= Some(size)).then_some(()))
            })
            .await?;
        }
    }
    let published = junk.load(Ordering::SeqCst);
    let real: BTreeSet<u64> = real.lock().unwrap().clone();
    assert!(real.len() >= 3 && published == JUNK_PER_CHECKPOINT * real.len(), "junk after each of {real:?}: {published}");
    for agency in p.hub.services.keys() {
        let w = eventually(&format!("{agency}'s witness counting the junk"), DEADLINE, || async {
            let w = p.get(agency, "/witness").await?;
            Ok((w["ignored"].as_u64() == Some(published as u64)).then_some(w))
        })
        .await?;
        assert_eq!(w["alerts"], serde_json::json!([]), "{agency}: junk raised an alert: {w}");
        let mut db = sqlx::AnyConnection::connect(&p.database_url(agency).await?).await?;
        let witnessed: Vec<(i64,)> = sqlx::query_as("SELECT tree_size FROM witnessed_checkpoint").fetch_all(&mut db).await?;
        let witnessed: BTreeSet<u64> = witnessed.into_iter().map(|(s,)| s as u64).collect();
        assert!(real.is_subset(&witnessed), "{agency} accepted {witnessed:?}, not every real checkpoint {real:?}");
    }
    junk_task.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn junk_after_every_checkpoint_hides_none_sqlite() -> anyhow::Result<()> {
    junk_after_every_checkpoint_hides_none(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn junk_after_every_checkpoint_hides_none_postgres() -> anyhow::Result<()> {
    junk_after_every_checkpoint_hides_none(Backend::Postgres).await
}
