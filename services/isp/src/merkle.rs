//! Merkle trees hashed as in RFC 6962 / RFC 9162 (leaf `SHA-256(0x00 || data)`, node
//! `SHA-256(0x01 || left || right)`): tree heads, inclusion and consistency proofs, and
//! their verification. The disclosure ledger is such a tree; agencies verify its
//! checkpoints' consistency with these functions, and anyone can check an inclusion proof
//! offline.
//!
//! The algorithms are written once over a [`Nodes`] source of perfect subtree roots (the
//! root of leaves `idx*2^level .. (idx+1)*2^level`): a [`MemoryTree`], or the audit
//! service's stored nodes.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(data: &[u8]) -> Hash {
    Sha256::new().chain_update([0u8]).chain_update(data).finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new().chain_update([1u8]).chain_update(left).chain_update(right).finalize().into()
}

/// The root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Where perfect subtree roots come from.
pub trait Nodes {
    /// The root of the perfect subtree of leaves `idx*2^level .. (idx+1)*2^level`.
    fn perfect(&self, level: u32, idx: u64) -> Hash;
}

/// The largest power of two strictly less than `n` (n >= 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH of leaves `start .. start+n` (n >= 1). Every range the RFC's recursions ask for
/// starts at a multiple of its largest power-of-two part, so it decomposes into stored
/// perfect subtrees.
pub fn range_root(nodes: &dyn Nodes, start: u64, n: u64) -> Hash {
    if n.is_power_of_two() && start % n == 0 {
        return nodes.perfect(n.trailing_zeros(), start / n);
    }
    let k = split(n);
    node_hash(&range_root(nodes, start, k), &range_root(nodes, start + k, n - k))
}

/// The tree head (root) of the first `size` leaves.
pub fn root(nodes: &dyn Nodes, size: u64) -> Hash {
    if size == 0 { empty_root() } else { range_root(nodes, 0, size) }
}

/// The inclusion proof (audit path) of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof(nodes: &dyn Nodes, index: u64, size: u64) -> Vec<Hash> {
    fn path(nodes: &dyn Nodes, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) {
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            path(nodes, m, start, k, out);
            out.push(range_root(nodes, start + k, n - k));
        } else {
            path(nodes, m - k, start + k, n - k, out);
            out.push(range_root(nodes, start, k));
        }
    }
    let mut out = Vec::new();
    path(nodes, index, 0, size, &mut out);
    out
}

/// The consistency proof between the trees of `first` and `second` leaves.
pub fn consistency_proof(nodes: &dyn Nodes, first: u64, second: u64) -> Vec<Hash> {
    fn subproof(nodes: &dyn Nodes, m: u64, start: u64, n: u64, complete: bool, out: &mut Vec<Hash>) {
        if m == n {
            if !complete {
                out.push(range_root(nodes, start, n));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            subproof(nodes, m, start, k, complete, out);
            out.push(range_root(nodes, start + k, n - k));
        } else {
            subproof(nodes, m - k, start + k, n - k, false, out);
            out.push(range_root(nodes, start, k));
        }
    }
    let mut out = Vec::new();
    if first > 0 && first < second {
        subproof(nodes, first, 0, second, true, &mut out);
    }
    out
}

/// RFC 9162 §2.1.3.2: does `proof` show leaf `leaf` at `index` in the tree `(size, root)`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: is the tree `(second, second_root)` an append-only extension of
/// `(first, first_root)`?
pub fn verify_consistency(first: u64, second: u64, first_root: &Hash, second_root: &Hash, proof: &[Hash]) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((head, rest)) = path.split_first() else { return false };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && fr == *first_root && sr == *second_root
}

/// A whole tree in memory, built leaf by leaf: what `hub audit verify` recomputes from the
/// entries. `levels[l][i]` is the perfect subtree root at (l, i).
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            let idx = self.levels[level].len() - 1;
            if idx % 2 == 0 {
                break;
            }
            hash = node_hash(&self.levels[level][idx - 1], &hash);
            level += 1;
        }
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    pub fn root(&self) -> Hash {
        root(self, self.size())
    }
}

impl Nodes for MemoryTree {
    fn perfect(&self, level: u32, idx: u64) -> Hash {
        self.levels[level as usize][idx as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Roots and proofs for every size to 70 are checked against CT's published vectors and
    // an independent naive implementation in tests/merkle_rfc6962.rs.

    #[test]
    fn empty_and_single_leaf_roots_follow_rfc_6962() {
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        // RFC 6962's leaf hash of the empty string.
        assert_eq!(hex::encode(leaf_hash(b"")), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    }
}
