//! `isp::merkle` checked against what it cannot have influenced: the Certificate
//! Transparency project's published test vectors, and a second, deliberately naive
//! implementation written here straight from RFC 6962 §2.1 (MTH, PATH, PROOF) and RFC 9162
//! §2.1.3.2 / §2.1.4.2 (verification) that shares no code with it, not even the hashing.
//! For every tree size to 70, each root, every inclusion proof and every consistency proof
//! must equal the naive one exactly, verify with both verifiers, and stop verifying when
//! anything in the claim is wrong.

use isp::merkle::{self, Hash, MemoryTree};
use sha2::{Digest, Sha256};

const MAX: u64 = 70;

/// The reference. Slow and obvious on purpose: slices of leaf hashes, recursion as the RFC
/// writes it, nothing cached.
mod naive {
    use super::*;

    pub fn leaf(data: &[u8]) -> Hash {
        let mut input = vec![0x00];
        input.extend_from_slice(data);
        Sha256::digest(&input).into()
    }

    pub fn node(left: &Hash, right: &Hash) -> Hash {
        let mut input = vec![0x01];
        input.extend_from_slice(left);
        input.extend_from_slice(right);
        Sha256::digest(&input).into()
    }

    /// "k is the largest power of two smaller than n" (n > 1).
    fn k(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// MTH(D[n]).
    pub fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => Sha256::digest(b"").into(),
            1 => d[0],
            n => node(&mth(&d[..k(n)]), &mth(&d[k(n)..])),
        }
    }

    /// PATH(m, D[n]).
    pub fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n <= 1 {
            return vec![];
        }
        let k = k(n);
        if m < k {
            [path(m, &d[..k]), vec![mth(&d[k..])]].concat()
        } else {
            [path(m - k, &d[k..]), vec![mth(&d[..k])]].concat()
        }
    }

    /// PROOF(m, D[n]) = SUBPROOF(m, D[n], true); empty when m = 0 too, as isp and CT define it.
    pub fn proof(m: usize, d: &[Hash]) -> Vec<Hash> {
        if m == 0 { vec![] } else { subproof(m, d, true) }
    }

    fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = k(n);
        if m <= k {
            [subproof(m, &d[..k], b), vec![mth(&d[k..])]].concat()
        } else {
            [subproof(m - k, &d[k..], false), vec![mth(&d[..k])]].concat()
        }
    }

    fn lsb(x: u64) -> bool {
        x % 2 == 1
    }

    /// RFC 9162 §2.1.3.2, step by step.
    pub fn verify_inclusion(leaf_index: u64, tree_size: u64, hash: &Hash, inclusion_path: &[Hash], root: &Hash) -> bool {
        if leaf_index >= tree_size {
            return false;
        }
        let (mut fnn, mut sn) = (leaf_index, tree_size - 1);
        let mut r = *hash;
        for p in inclusion_path {
            if sn == 0 {
                return false;
            }
            if lsb(fnn) || fnn == sn {
                r = node(p, &r);
                if !lsb(fnn) {
                    while !lsb(fnn) && fnn != 0 {
                        fnn /= 2;
                        sn /= 2;
                    }
                }
            } else {
                r = node(&r, p);
            }
            fnn /= 2;
            sn /= 2;
        }
        sn == 0 && r == *root
    }

    /// RFC 9162 §2.1.4.2, step by step, after the trivial cases as CT's verifier decides
    /// them: no proof is needed for a tree against itself or against the empty tree.
    pub fn verify_consistency(first: u64, second: u64, first_hash: &Hash, second_hash: &Hash, consistency_path: &[Hash]) -> bool {
        if first > second {
            return false;
        }
        if first == second {
            return consistency_path.is_empty() && first_hash == second_hash;
        }
        if first == 0 {
            return consistency_path.is_empty();
        }
        // 1.
        if consistency_path.is_empty() {
            return false;
        }
        // 2.
        let mut path = consistency_path.to_vec();
        let mut p = 1;
        while p < first {
            p *= 2;
        }
        if p == first {
            path.insert(0, *first_hash);
        }
        // 3, 4.
        let (mut fnn, mut sn) = (first - 1, second - 1);
        while lsb(fnn) {
            fnn /= 2;
            sn /= 2;
        }
        // 5.
        let (mut fr, mut sr) = (path[0], path[0]);
        // 6.
        for c in &path[1..] {
            if sn == 0 {
                return false;
            }
            if lsb(fnn) || fnn == sn {
                fr = node(c, &fr);
                sr = node(c, &sr);
                if !lsb(fnn) {
                    while !lsb(fnn) && fnn != 0 {
                        fnn /= 2;
                        sn /= 2;
                    }
                }
            } else {
                sr = node(&sr, c);
            }
            fnn /= 2;
            sn /= 2;
        }
        // 7.
        fr == *first_hash && sr == *second_hash && sn == 0
    }
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

fn unhex(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn altered(h: &Hash) -> Hash {
    let mut h = *h;
    h[0] ^= 1;
    h
}

/// The implementation's tree over leaves hashed by the implementation.
fn memory_tree(data: &[Vec<u8>]) -> MemoryTree {
    let mut t = MemoryTree::default();
    data.iter().for_each(|d| t.push(merkle::leaf_hash(d)));
    t
}

/// Leaf data for every size under test (one extra, so that a claim about size n + 1 has a
/// true root to be checked against), the naive leaf hashes and the naive roots of every prefix.
struct Reference {
    data: Vec<Vec<u8>>,
    leaves: Vec<Hash>,
    roots: Vec<Hash>,
}

fn reference() -> Reference {
    let data: Vec<Vec<u8>> = (0..=MAX).map(|i| format!("disclosure {i}").into_bytes()).collect();
    let leaves: Vec<Hash> = data.iter().map(|d| naive::leaf(d)).collect();
    let roots = (0..=leaves.len()).map(|n| naive::mth(&leaves[..n])).collect();
    Reference { data, leaves, roots }
}

#[derive(Clone)]
struct Inclusion {
    index: u64,
    size: u64,
    leaf: Hash,
    proof: Vec<Hash>,
    root: Hash,
}

impl Inclusion {
    fn by_isp(&self) -> bool {
        merkle::verify_inclusion(self.index, self.size, &self.leaf, &self.proof, &self.root)
    }
    fn by_naive(&self) -> bool {
        naive::verify_inclusion(self.index, self.size, &self.leaf, &self.proof, &self.root)
    }
}

#[derive(Clone)]
struct Consistency {
    first: u64,
    second: u64,
    first_root: Hash,
    second_root: Hash,
    proof: Vec<Hash>,
}

impl Consistency {
    fn by_isp(&self) -> bool {
        merkle::verify_consistency(self.first, self.second, &self.first_root, &self.second_root, &self.proof)
    }
    fn by_naive(&self) -> bool {
        naive::verify_consistency(self.first, self.second, &self.first_root, &self.second_root, &self.proof)
    }
}

fn with(proof: &[Hash], before: &[Hash], after: &[Hash]) -> Vec<Hash> {
    [before, proof, after].concat()
}

/// Every way the good claim can be wrong: the leaf, the index, the tree, the proof.
fn wrong_inclusions(good: &Inclusion, r: &Reference) -> Vec<(String, Inclusion)> {
    let (m, n) = (good.index, good.size);
    let g = || good.clone();
    let mut out = vec![
        ("a forged leaf".to_string(), Inclusion { leaf: naive::leaf(b"forged"), ..g() }),
        ("index + 1".into(), Inclusion { index: m + 1, ..g() }),
        ("index ^ 2".into(), Inclusion { index: m ^ 2, ..g() }),
        ("size + 1, against that tree's root".into(), Inclusion { size: n + 1, root: r.roots[n as usize + 1], ..g() }),
        ("size * 2".into(), Inclusion { size: n * 2, ..g() }),
        ("size / 2".into(), Inclusion { size: n / 2, ..g() }),
        ("an altered root".into(), Inclusion { root: altered(&good.root), ..g() }),
        ("the empty tree's root".into(), Inclusion { root: r.roots[0], ..g() }),
        ("the root appended".into(), Inclusion { proof: with(&good.proof, &[], &[good.root]), ..g() }),
        ("a zero hash appended".into(), Inclusion { proof: with(&good.proof, &[], &[[0; 32]]), ..g() }),
        ("a zero hash prepended".into(), Inclusion { proof: with(&good.proof, &[[0; 32]], &[]), ..g() }),
    ];
    if m > 0 {
        out.push(("index - 1".into(), Inclusion { index: m - 1, ..g() }));
    }
    if n > 1 {
        out.push(("the next leaf".into(), Inclusion { leaf: r.leaves[((m + 1) % n) as usize], ..g() }));
    }
    if n - 1 > m {
        out.push(("size - 1, against that tree's root".into(), Inclusion { size: n - 1, root: r.roots[n as usize - 1], ..g() }));
    }
    if let Some((_, init)) = good.proof.split_last() {
        out.push(("the last hash removed".into(), Inclusion { proof: init.to_vec(), ..g() }));
        out.push(("the first hash removed".into(), Inclusion { proof: good.proof[1..].to_vec(), ..g() }));
    }
    for i in 0..good.proof.len() {
        let mut proof = good.proof.clone();
        proof[i] = altered(&proof[i]);
        out.push((format!("hash {i} altered"), Inclusion { proof, ..g() }));
    }
    out
}

/// Every way the good claim can be wrong: a forked first tree, the sizes, the roots, the proof.
fn wrong_consistencies(good: &Consistency, r: &Reference) -> Vec<(String, Consistency)> {
    let (m, n) = (good.first as usize, good.second as usize);
    let g = || good.clone();
    let mut out = vec![
        ("the second root appended".to_string(), Consistency { proof: with(&good.proof, &[], &[r.roots[n]]), ..g() }),
        ("a zero hash prepended".into(), Consistency { proof: with(&good.proof, &[[0; 32]], &[]), ..g() }),
    ];
    if m == 0 {
        // Every tree extends the empty one, whatever the roots: nothing else can be wrong.
        return out;
    }
    let mut forks = vec![0, m / 2, m - 1];
    forks.dedup();
    for at in forks {
        let mut forked = r.leaves[..m].to_vec();
        forked[at] = naive::leaf(b"rewritten");
        out.push((format!("first tree forked at leaf {at}"), Consistency { first_root: naive::mth(&forked), ..g() }));
    }
    out.push(("an altered first root".into(), Consistency { first_root: altered(&good.first_root), ..g() }));
    out.push(("an altered second root".into(), Consistency { second_root: altered(&good.second_root), ..g() }));
    if m == n {
        return out;
    }
    let p = &good.proof;
    out.extend([
        ("first - 1, with its root".into(), Consistency { first: good.first - 1, first_root: r.roots[m - 1], ..g() }),
        ("first + 1, with its root".into(), Consistency { first: good.first + 1, first_root: r.roots[m + 1], ..g() }),
        ("second - 1, with its root".into(), Consistency { second: good.second - 1, second_root: r.roots[n - 1], ..g() }),
        ("second + 1, with its root".into(), Consistency { second: good.second + 1, second_root: r.roots[n + 1], ..g() }),
        ("second * 2".into(), Consistency { second: good.second * 2, ..g() }),
        ("second / 2".into(), Consistency { second: good.second / 2, ..g() }),
        ("swapped roots".into(), Consistency { first_root: good.second_root, second_root: good.first_root, ..g() }),
        ("no proof".into(), Consistency { proof: vec![], ..g() }),
        ("the last hash removed".into(), Consistency { proof: p[..p.len() - 1].to_vec(), ..g() }),
        ("the first hash removed".into(), Consistency { proof: p[1..].to_vec(), ..g() }),
        ("the last hash repeated".into(), Consistency { proof: with(p, &[], &[p[p.len() - 1]]), ..g() }),
        ("the first root prepended".into(), Consistency { proof: with(p, &[good.first_root], &[]), ..g() }),
    ]);
    for i in 0..p.len() {
        let mut proof = p.clone();
        proof[i] = altered(&proof[i]);
        out.push((format!("hash {i} altered"), Consistency { proof, ..g() }));
    }
    out
}

#[test]
fn leaf_and_node_hashes_equal_the_naive_ones() {
    let r = reference();
    for (d, want) in r.data.iter().zip(&r.leaves) {
        assert_eq!(merkle::leaf_hash(d), *want);
    }
    for pair in r.leaves.windows(2) {
        assert_eq!(merkle::node_hash(&pair[0], &pair[1]), naive::node(&pair[0], &pair[1]));
    }
    assert_eq!(merkle::empty_root(), naive::mth(&[]));
}

#[test]
fn roots_equal_the_naive_mth_for_every_size_to_70() {
    let r = reference();
    let n_max = MAX as usize;
    let whole = memory_tree(&r.data[..n_max]);
    for n in 0..=n_max {
        let want = hex::encode(r.roots[n]);
        let t = memory_tree(&r.data[..n]);
        assert_eq!(t.size(), n as u64);
        assert_eq!(hex::encode(t.root()), want, "MemoryTree of {n} leaves");
        assert_eq!(hex::encode(merkle::root(&t, n as u64)), want, "root(tree of {n}, {n})");
        assert_eq!(hex::encode(merkle::root(&whole, n as u64)), want, "root(tree of {MAX}, {n})");
    }
}

#[test]
fn inclusion_proofs_equal_the_naive_path_and_only_they_verify_for_every_size_to_70() {
    let r = reference();
    let whole = memory_tree(&r.data[..MAX as usize]);
    let (mut proofs, mut refused) = (0, 0);
    for n in 0..=MAX {
        let d = &r.leaves[..n as usize];
        let t = memory_tree(&r.data[..n as usize]);
        for m in 0..n {
            let proof = merkle::inclusion_proof(&t, m, n);
            assert_eq!(hexes(&proof), hexes(&naive::path(m as usize, d)), "PATH({m}, D[{n}])");
            assert_eq!(proof, merkle::inclusion_proof(&whole, m, n), "PATH({m}, D[{n}]) from the tree of {MAX}");
            let good = Inclusion { index: m, size: n, leaf: d[m as usize], proof, root: r.roots[n as usize] };
            assert!(good.by_isp(), "isp rejects its proof of leaf {m} of {n}");
            assert!(good.by_naive(), "RFC 9162 rejects isp's proof of leaf {m} of {n}");
            proofs += 1;
            for (what, bad) in wrong_inclusions(&good, &r) {
                assert!(!bad.by_isp(), "isp accepts leaf {m} of {n} with {what}");
                assert!(!bad.by_naive(), "the naive verifier accepts leaf {m} of {n} with {what}");
                refused += 1;
            }
        }
    }
    assert_eq!(proofs, MAX * (MAX + 1) / 2, "every leaf of every size");
    assert!(refused > 10 * proofs, "{refused} wrong claims");
}

#[test]
fn consistency_proofs_equal_the_naive_proof_and_only_they_verify_for_every_size_to_70() {
    let r = reference();
    let whole = memory_tree(&r.data[..MAX as usize]);
    let (mut proofs, mut refused) = (0, 0);
    for n in 0..=MAX {
        let d = &r.leaves[..n as usize];
        let t = memory_tree(&r.data[..n as usize]);
        for m in 0..=n {
            let proof = merkle::consistency_proof(&t, m, n);
            assert_eq!(hexes(&proof), hexes(&naive::proof(m as usize, d)), "PROOF({m}, D[{n}])");
            assert_eq!(proof, merkle::consistency_proof(&whole, m, n), "PROOF({m}, D[{n}]) from the tree of {MAX}");
            let good = Consistency { first: m, second: n, first_root: r.roots[m as usize], second_root: r.roots[n as usize], proof };
            assert!(good.by_isp(), "isp rejects its proof {m} -> {n}");
            assert!(good.by_naive(), "RFC 9162 rejects isp's proof {m} -> {n}");
            proofs += 1;
            for (what, bad) in wrong_consistencies(&good, &r) {
                assert!(!bad.by_isp(), "isp accepts {m} -> {n} with {what}");
                assert!(!bad.by_naive(), "the naive verifier accepts {m} -> {n} with {what}");
                refused += 1;
            }
        }
    }
    assert_eq!(proofs, (MAX + 1) * (MAX + 2) / 2, "every pair of sizes");
    assert!(refused > 10 * proofs, "{refused} wrong claims");
}

/// Certificate Transparency's reference tree, as published in
/// google/certificate-transparency cpp/merkletree/merkle_tree_test.cc and
/// transparency-dev/merkle proof/verify_test.go and testonly/constants.go.
mod ct {
    pub const LEAVES: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

    /// Roots of the first 0..=8 leaves.
    pub const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// Perfect subtree roots of the 8-leaf tree, `[level][index]` (testonly/constants.go).
    pub const NODES: [&[&str]; 4] = [
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        &[
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        &[
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    ];

    /// (leaf index, tree size, audit path). CT numbers leaves from 1; these are from 0.
    pub const PATHS: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    /// (first size, second size, consistency proof).
    pub const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    pub fn data() -> Vec<Vec<u8>> {
        LEAVES.iter().map(|l| hex::decode(l).unwrap()).collect()
    }
}

#[test]
fn the_published_ct_roots_and_subtree_hashes_are_reproduced() {
    let data = ct::data();
    let mut t = MemoryTree::default();
    assert_eq!(hex::encode(t.root()), ct::ROOTS[0]);
    for (i, d) in data.iter().enumerate() {
        t.push(merkle::leaf_hash(d));
        assert_eq!(hex::encode(t.root()), ct::ROOTS[i + 1], "after {} leaves", i + 1);
    }
    let naive_leaves: Vec<Hash> = data.iter().map(|d| naive::leaf(d)).collect();
    for (n, want) in ct::ROOTS.iter().enumerate() {
        assert_eq!(hex::encode(merkle::root(&t, n as u64)), *want, "root(tree of 8, {n})");
        assert_eq!(hex::encode(naive::mth(&naive_leaves[..n])), *want, "the naive MTH of {n}");
    }
    for (level, hashes) in ct::NODES.iter().enumerate() {
        for (idx, want) in hashes.iter().enumerate() {
            let width = 1u64 << level;
            assert_eq!(hex::encode(merkle::range_root(&t, idx as u64 * width, width)), *want, "node ({level}, {idx})");
        }
    }
}

#[test]
fn the_published_ct_inclusion_proofs_are_reproduced_and_verify() {
    let data = ct::data();
    let t = memory_tree(&data);
    let naive_leaves: Vec<Hash> = data.iter().map(|d| naive::leaf(d)).collect();
    for (index, size, want) in ct::PATHS {
        let proof = merkle::inclusion_proof(&t, index, size);
        assert_eq!(hexes(&proof), want, "leaf {index} of {size}");
        assert_eq!(hexes(&naive::path(index as usize, &naive_leaves[..size as usize])), want);
        let root = unhex(ct::ROOTS[size as usize]);
        assert!(merkle::verify_inclusion(index, size, &merkle::leaf_hash(&data[index as usize]), &proof, &root));
    }
    // CT's invalid probes: no leaf is in the empty tree, nor beyond the end of a tree.
    let (some, empty) = (naive::leaf(b"some"), unhex(ct::ROOTS[0]));
    for (index, size) in [(0, 0), (1, 0), (1, 1), (2, 1)] {
        assert!(!merkle::verify_inclusion(index, size, &some, &[], &empty), "leaf {index} of {size}");
        assert!(!merkle::verify_inclusion(index, size, &some, &[], &some), "leaf {index} of {size}");
    }
}

#[test]
fn the_published_ct_consistency_proofs_are_reproduced_and_verify() {
    let data = ct::data();
    let t = memory_tree(&data);
    let naive_leaves: Vec<Hash> = data.iter().map(|d| naive::leaf(d)).collect();
    for (first, second, want) in ct::CONSISTENCY {
        let proof = merkle::consistency_proof(&t, first, second);
        assert_eq!(hexes(&proof), want, "{first} -> {second}");
        assert_eq!(hexes(&naive::proof(first as usize, &naive_leaves[..second as usize])), want);
        let (r1, r2) = (unhex(ct::ROOTS[first as usize]), unhex(ct::ROOTS[second as usize]));
        assert!(merkle::verify_consistency(first, second, &r1, &r2, &proof), "{first} -> {second}");
    }
}

/// CT's verifier tests pin how the trivial cases are decided; isp decides them the same way.
#[test]
fn trivial_consistency_claims_are_decided_as_ct_decides_them() {
    let (a, b, empty) = (naive::leaf(b"a"), naive::leaf(b"b"), unhex(ct::ROOTS[0]));
    // Always consistent, with no proof.
    assert!(merkle::verify_consistency(0, 0, &a, &a, &[]));
    assert!(merkle::verify_consistency(0, 1, &a, &b, &[]));
    assert!(merkle::verify_consistency(1, 1, &b, &b, &[]));
    // Time travel to the past.
    assert!(!merkle::verify_consistency(1, 0, &a, &b, &[]));
    assert!(!merkle::verify_consistency(2, 1, &a, &b, &[]));
    // A real extension needs a proof.
    assert!(!merkle::verify_consistency(1, 2, &a, &b, &[]));
    // Equal sizes, different roots.
    assert!(!merkle::verify_consistency(0, 0, &empty, &b, &[]));
    assert!(!merkle::verify_consistency(1, 1, &empty, &b, &[]));
    // Roots match but the proof is not empty.
    for (first, second) in [(0, 0), (0, 1), (1, 1)] {
        assert!(!merkle::verify_consistency(first, second, &empty, &empty, &[empty]), "{first} -> {second}");
    }
}
