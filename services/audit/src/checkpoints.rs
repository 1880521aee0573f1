//! Signed checkpoints of the ledger's Merkle tree, and the proofs behind them.
//!
//! While entries arrive, the audit service signs a checkpoint (tree size and root, a C2SP
//! signed note: see [`isp::checkpoint`]) with the partnership IG key at least every
//! `checkpoint_every`, stores it (its JSON view: the note and the time it was made), and
//! publishes the note itself on the `HUB_CHECKPOINTS` stream, where every agency's witness
//! reads it (as could any transparency-log witness given the IG office's vkey). A witness asks
//! for a consistency proof from its last checkpoint to the new one on [`CONSISTENCY_SUBJECT`];
//! the answer is computed from the stored tree, so an operator who rewrote history cannot give
//! one that verifies.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use futures::StreamExt as _;
use isp::{
    AgencyKeys,
    checkpoint::{CHECKPOINT_SUBJECT, CONSISTENCY_SUBJECT, Checkpoint},
    merkle::{self, Hash},
};
use serde::Deserialize;
use serde_json::json;
use sqlx::{AnyPool, Row as _};
use tokio_util::sync::CancellationToken;

use crate::tree;

/// The current tree head of the stored tree: size and root.
pub async fn tree_head(pool: &AnyPool) -> Result<(u64, Hash), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let size = tree::stored_size(&mut conn).await?;
    let root = tree::with_stored(&mut conn, |nodes| merkle::root(nodes, size)).await?;
    Ok((size, root))
}

pub async fn inclusion_proof(pool: &AnyPool, index: u64, size: u64) -> Result<Vec<Hash>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    tree::with_stored(&mut conn, |nodes| merkle::inclusion_proof(nodes, index, size)).await
}

pub async fn consistency_proof(pool: &AnyPool, first: u64, second: u64) -> Result<Vec<Hash>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    tree::with_stored(&mut conn, |nodes| merkle::consistency_proof(nodes, first, second)).await
}

/// Every stored checkpoint, oldest first.
pub async fn all(pool: &AnyPool) -> anyhow::Result<Vec<Checkpoint>> {
    let rows = sqlx::query("SELECT body FROM checkpoint ORDER BY tree_size").fetch_all(pool).await?;
    rows.iter().map(|r| Ok(serde_json::from_str(&r.try_get::<String, _>("body")?)?)).collect()
}

/// The checkpoints of tree sizes above `after`, smallest first, at most `limit`.
pub async fn page(pool: &AnyPool, after: i64, limit: i64) -> anyhow::Result<Vec<Checkpoint>> {
    let rows = sqlx::query("SELECT body FROM checkpoint WHERE tree_size > $1 ORDER BY tree_size LIMIT $2").bind(after).bind(limit).fetch_all(pool).await?;
    rows.iter().map(|r| Ok(serde_json::from_str(&r.try_get::<String, _>("body")?)?)).collect()
}

pub async fn latest(pool: &AnyPool) -> anyhow::Result<Option<Checkpoint>> {
    let row = sqlx::query("SELECT body FROM checkpoint ORDER BY tree_size DESC LIMIT 1").fetch_optional(pool).await?;
    row.map(|r| Ok(serde_json::from_str(&r.try_get::<String, _>("body")?)?)).transpose()
}

/// The latest checkpoint covering at least `size` entries.
pub async fn covering(pool: &AnyPool, size: u64) -> anyhow::Result<Option<Checkpoint>> {
    let row = sqlx::query("SELECT body FROM checkpoint WHERE tree_size >= $1 ORDER BY tree_size DESC LIMIT 1")
        .bind(size as i64)
        .fetch_optional(pool)
        .await?;
    row.map(|r| Ok(serde_json::from_str(&r.try_get::<String, _>("body")?)?)).transpose()
}

/// Signs and stores a checkpoint of the current tree if it grew since the last one. Its
/// origin is the ledger of the IG office whose keys sign it.
pub async fn make(pool: &AnyPool, keys: &AgencyKeys) -> anyhow::Result<Option<Checkpoint>> {
    let (size, root) = tree_head(pool).await?;
    let last = latest(pool).await?;
    if size == 0 || last.as_ref().is_some_and(|l| l.tree_size >= size) {
        return Ok(None);
    }
    let checkpoint = Checkpoint::sign(keys, size, &root, isp::now_ms());
    sqlx::query("INSERT INTO checkpoint (tree_size, root, at_ms, body) VALUES ($1, $2, $3, $4)")
        .bind(size as i64)
        .bind(&checkpoint.root)
        .bind(checkpoint.at_ms)
        .bind(serde_json::to_string(&checkpoint)?)
        .execute(pool)
        .await?;
    Ok(Some(checkpoint))
}

/// What is published of a checkpoint: the signed note's text, what a transparency-log witness
/// reads. A checkpoint stored before notes existed (only the latest is published again, at
/// start) goes out in the JSON form it had, which the agencies' witnesses still read.
fn published_form(checkpoint: &Checkpoint) -> serde_json::Result<Vec<u8>> {
    match checkpoint.is_legacy() {
        false => Ok(checkpoint.note.clone().into_bytes()),
        true => serde_json::to_vec(checkpoint),
    }
}

async fn publish(js: &jetstream::Context, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    let body = published_form(checkpoint)?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("checkpoint-{}", checkpoint.tree_size).as_str());
    js.publish_with_headers(CHECKPOINT_SUBJECT, headers, body.into()).await?.await?;
    Ok(())
}

/// Makes and publishes checkpoints every `every` while the tree grows, signed with the key in
/// `keys_path`. The latest is
/// (re)published at start, so a checkpoint stored while the broker was away still goes out.
pub async fn checkpoint_loop(
    pool: AnyPool,
    js: jetstream::Context,
    keys_path: std::path::PathBuf,
    every: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut unpublished = latest(&pool).await?;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        // Read each time: the IG office may have rotated its key.
        let keys = match AgencyKeys::load(&keys_path) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the checkpoint key; no checkpoint this time");
                continue;
            }
        };
        match make(&pool, &keys).await {
            Ok(Some(c)) => {
                tracing::info!(tree_size = c.tree_size, root = %c.root, "ledger checkpoint signed");
                unpublished = Some(c);
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not make a ledger checkpoint"),
        }
        if let Some(c) = &unpublished {
            match publish(&js, c).await {
                Ok(()) => unpublished = None,
                Err(e) => tracing::warn!(error = %e, tree_size = c.tree_size, "could not publish the checkpoint; will retry"),
            }
        }
    }
}

#[derive(Deserialize)]
struct ConsistencyRequest {
    first: u64,
    second: u64,
}

/// Answers witnesses' consistency-proof requests.
pub async fn serve_consistency(client: async_nats::Client, pool: AnyPool, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut requests = client.subscribe(CONSISTENCY_SUBJECT).await?;
    loop {
        let request = tokio::select! {
            r = requests.next() => match r { Some(r) => r, None => return Ok(()) },
            _ = shutdown.cancelled() => return Ok(()),
        };
        let Some(reply) = request.reply else { continue };
        let answer = match serde_json::from_slice::<ConsistencyRequest>(&request.payload) {
            Err(e) => json!({"error": format!("bad request: {e}")}),
            Ok(r) => match tree_head(&pool).await {
                Err(e) => json!({"error": format!("cannot read the tree: {e}")}),
                Ok((size, _)) if r.first > r.second || r.second > size => {
                    json!({"error": format!("sizes {} -> {} are outside the tree of {size}", r.first, r.second)})
                }
                Ok(_) => match consistency_proof(&pool, r.first, r.second).await {
                    Ok(proof) => json!({"proof": proof.iter().map(hex::encode).collect::<Vec<_>>()}),
                    Err(e) => json!({"error": format!("cannot read the tree: {e}")}),
                },
            },
        };
        if let Err(e) = client.publish(reply, serde_json::to_vec(&answer)?.into()).await {
            tracing::warn!(error = %e, "could not answer a consistency request");
        }
    }
}

/// Proof that one ledger entry is in the tree a signed checkpoint commits to: checkable
/// offline with only the partnership directory (`hub audit verify-proof`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InclusionProof {
    pub entry: crate::ledger::Entry,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// The audit path, leaf to root, hex.
    pub path: Vec<String>,
    pub checkpoint: Checkpoint,
}

/// The inclusion proof of entry `seq` against the latest checkpoint that covers it.
pub async fn prove_entry(pool: &AnyPool, seq: i64) -> anyhow::Result<InclusionProof> {
    let sql = format!("SELECT {} FROM ledger WHERE seq = $1", crate::ledger::COLUMNS);
    let row = sqlx::query(&sql).bind(seq).fetch_optional(pool).await?;
    let entry = crate::ledger::from_row(&row.with_context(|| format!("the ledger has no entry {seq}"))?)?;
    let checkpoint = covering(pool, seq as u64)
        .await?
        .with_context(|| format!("no checkpoint covers entry {seq} yet; the next is signed within the checkpoint interval"))?;
    prove_at(pool, entry, checkpoint).await
}

/// The inclusion proof of a ledger entry against a given checkpoint that covers it.
pub async fn prove_at(pool: &AnyPool, entry: crate::ledger::Entry, checkpoint: Checkpoint) -> anyhow::Result<InclusionProof> {
    let index = entry.seq as u64 - 1;
    anyhow::ensure!(index < checkpoint.tree_size, "checkpoint {} does not cover entry {}", checkpoint.tree_size, entry.seq);
    let path = inclusion_proof(pool, index, checkpoint.tree_size).await?;
    Ok(InclusionProof { entry, leaf_index: index, tree_size: checkpoint.tree_size, path: path.iter().map(hex::encode).collect(), checkpoint })
}

/// Checks an inclusion proof offline: the checkpoint's signature, the entry's own hash and
/// signed record, and the audit path to the checkpoint's root. The error says which failed.
pub fn verify_proof(proof: &InclusionProof, directory: &isp::Directory) -> Result<(), String> {
    let root = proof.checkpoint.verify(directory).map_err(|e| format!("the checkpoint does not verify: {e}"))?;
    if proof.tree_size != proof.checkpoint.tree_size {
        return Err(format!("the proof is for tree size {}, the checkpoint for {}", proof.tree_size, proof.checkpoint.tree_size));
    }
    let e = &proof.entry;
    if e.seq < 1 || proof.leaf_index != e.seq as u64 - 1 {
        return Err(format!("entry {} cannot be leaf {}", e.seq, proof.leaf_index));
    }
    if e.compute_hash(&e.prev_hash) != e.hash {
        return Err(format!("entry {}'s content does not match its hash: it was changed", e.seq));
    }
    if let Some(what) = crate::ledger::signed_mismatch(directory, e) {
        return Err(format!("entry {}: {what}", e.seq));
    }
    let path: Vec<Hash> = proof
        .path
        .iter()
        .map(|h| hex::decode(h).ok().and_then(|b| Hash::try_from(b.as_slice()).ok()))
        .collect::<Option<_>>()
        .ok_or("the audit path is not a list of 32-byte hex hashes")?;
    if !merkle::verify_inclusion(proof.leaf_index, proof.tree_size, &merkle::leaf_hash(&e.hash), &path, &root) {
        return Err(format!("entry {} is not in the tree of checkpoint {}", e.seq, proof.tree_size));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use isp::Role;

    use super::*;

    /// A fresh ledger (a SQLite file in `dir`) of `n` entries.
    async fn ledger_of(dir: &tempfile::TempDir, n: u64) -> (AnyPool, crate::store::Store) {
        let url = runtime::config::sqlite_url(dir.path(), "audit");
        let pool = crate::open_ledger(&url).await.unwrap();
        let store = crate::store::Store::connect(&url).await.unwrap();
        let entries = (1..=n).map(|seq| crate::ledger::unclassifiable("hub.v1.msg.x.y.z", b"junk", seq, "test")).collect();
        store.append(entries).await.unwrap();
        (pool, store)
    }

    #[tokio::test]
    async fn a_checkpoint_is_a_note_of_the_stored_tree_that_proofs_and_verification_use() {
        let (directory, keys) = isp::directory::generate_partnership("P", &[("ig-p", "IG", Role::Ig)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (pool, store) = ledger_of(&dir, 5).await;
        let made = make(&pool, &keys[0]).await.unwrap().expect("the tree grew");
        let (size, root) = tree_head(&pool).await.unwrap();
        assert_eq!(made.verify(&directory).unwrap(), root);
        assert_eq!(made.tree_size, size);
        assert!(made.note.starts_with(&format!("referral-hub/ig-p/ledger\n{size}\n")), "{}", made.note);
        // Published as the bare note; stored as its JSON view, which reads back the same.
        assert_eq!(published_form(&made).unwrap(), made.note.as_bytes());
        assert_eq!(Checkpoint::from_note(&made.note, &directory).unwrap(), Checkpoint { at_ms: 0, ..made.clone() });
        assert_eq!(latest(&pool).await.unwrap(), Some(made.clone()));
        assert!(make(&pool, &keys[0]).await.unwrap().is_none(), "nothing new, no checkpoint");
        let proof = prove_entry(&pool, 3).await.unwrap();
        assert_eq!(proof.checkpoint, made);
        verify_proof(&proof, &directory).unwrap();
        let report = crate::verify::verify(&store, Some(&directory)).await.unwrap();
        assert!(report.first_bad.is_none() && report.checkpoints == 1, "{report:?}");
        // The stored note rewritten to another root: verification names the checkpoint.
        let forged = Checkpoint::sign(&keys[0], size, &[9; 32], made.at_ms);
        sqlx::query("UPDATE checkpoint SET body = $1").bind(serde_json::to_string(&forged).unwrap()).execute(&pool).await.unwrap();
        let report = crate::verify::verify(&store, Some(&directory)).await.unwrap();
        assert_eq!(report.first_bad.map(|p| p.checkpoint), Some(Some(size)));
    }

    #[test]
    fn a_legacy_checkpoint_is_published_in_the_json_form_it_had() {
        let legacy: Checkpoint = serde_json::from_str(r#"{"partnership":"P","tree_size":3,"root":"00","at_ms":1,"signer":"ig-p","key_id":"k","signature":"00"}"#).unwrap();
        let published = published_form(&legacy).unwrap();
        assert_eq!(serde_json::from_slice::<Checkpoint>(&published).unwrap(), legacy);
        assert!(published.starts_with(b"{"));
    }
}
