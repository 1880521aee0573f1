//! The ledger's Merkle tree in the database (RFC 6962 hashing, see [`isp::merkle`]).
//!
//! A leaf's data is the entry's chain hash, which already commits to the entry's content,
//! position and predecessor. The tree is stored as its perfect subtrees
//! (`merkle_node(level, idx)`), written in the same transaction as the entries; any tree
//! head or proof is then O(log² n) node reads: a computation is run once to record which
//! nodes it needs, the nodes are read level by level, and it is run again for real. Growing
//! the tree ([`grow`]) is computed here and written by [`crate::store`].

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
};

use isp::merkle::{Hash, Nodes, node_hash};
use sqlx::Row as _;


/// Records which nodes a computation asks for (answering zeros), so they can be read from
/// the database in one query before the real computation.
struct Recorder(RefCell<BTreeSet<(u32, u64)>>);

impl Nodes for Recorder {
    fn perfect(&self, level: u32, idx: u64) -> Hash {
        self.0.borrow_mut().insert((level, idx));
        [0; 32]
    }
}

struct Fetched(BTreeMap<(u32, u64), Hash>);

impl Nodes for Fetched {
    fn perfect(&self, level: u32, idx: u64) -> Hash {
        self.0.get(&(level, idx)).copied().unwrap_or([0; 32])
    }
}

/// Runs `compute` over the stored tree: once to learn the nodes it needs, once for real.
pub async fn with_stored<T>(
    conn: &mut sqlx::AnyConnection,
    compute: impl Fn(&dyn Nodes) -> T,
) -> Result<T, sqlx::Error> {
    let recorder = Recorder(RefCell::new(BTreeSet::new()));
    compute(&recorder);
    let wanted = recorder.0.into_inner();
    let mut fetched = BTreeMap::new();
    // Nodes are read level by level, each level as one IN list.
    let mut by_level: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (level, idx) in wanted {
        by_level.entry(level).or_default().push(idx);
    }
    for (level, idxs) in by_level {
        let list = idxs.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let rows = sqlx::query(&format!("SELECT idx, hash FROM merkle_node WHERE level = $1 AND idx IN ({list})"))
            .bind(level as i64)
            .fetch_all(&mut *conn)
            .await?;
        for r in rows {
            let idx: i64 = r.try_get("idx")?;
            let hash: Vec<u8> = r.try_get("hash")?;
            if let Ok(h) = Hash::try_from(hash.as_slice()) {
                fetched.insert((level, idx as u64), h);
            }
        }
    }
    Ok(compute(&Fetched(fetched)))
}

/// The number of leaves stored.
pub async fn stored_size(conn: &mut sqlx::AnyConnection) -> Result<u64, sqlx::Error> {
    let n: Option<i64> = sqlx::query("SELECT MAX(idx) AS m FROM merkle_node WHERE level = 0").fetch_one(&mut *conn).await?.try_get("m")?;
    Ok(n.map_or(0, |m| m as u64 + 1))
}

/// The nodes a tree of `n` leaves needs to grow: with n leaves stored, the perfect subtrees
/// a new leaf can combine with are (l, (n >> l) - 1) for every set bit l of n.
pub fn right_edge(n: u64) -> Vec<(u32, u64)> {
    (0..64u32).filter(|l| n >> l & 1 == 1).map(|l| (l, (n >> l) - 1)).collect()
}

/// The nodes to store when `leaves` are appended to a tree of `n` leaves whose right edge
/// ([`right_edge`]) is `edge` (level -> (idx, hash)): each leaf, and each perfect subtree it
/// completes.
pub fn grow(n: u64, mut edge: BTreeMap<u32, (u64, Hash)>, leaves: &[Hash]) -> Vec<(u32, u64, Hash)> {
    let mut new_nodes: Vec<(u32, u64, Hash)> = Vec::with_capacity(leaves.len() * 2);
    for (position, leaf) in (n..).zip(leaves) {
        let (mut level, mut idx, mut hash) = (0u32, position, *leaf);
        loop {
            new_nodes.push((level, idx, hash));
            let left = if idx % 2 == 1 { edge.get(&level).filter(|(i, _)| *i == idx - 1).map(|(_, h)| *h) } else { None };
            edge.insert(level, (idx, hash));
            match left {
                Some(l) => {
                    hash = node_hash(&l, &hash);
                    idx /= 2;
                    level += 1;
                }
                None => break,
            }
        }
    }
    new_nodes
}
