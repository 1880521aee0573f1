"""RFC 9162 Merkle trees: the ledger's tree (SPEC.md §12.1), inclusion (§12.2) and
consistency (§12.3) proofs, computed and verified as RFC 9162 §2.1 writes them."""

from .common import sha256


def leaf_hash(entry_hash: bytes) -> bytes:
    """§12.1: a leaf is SHA-256(0x00 || entry.hash)."""
    return sha256(b"\x00" + entry_hash)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root(leaves: list[bytes]) -> bytes:
    """MTH (RFC 9162 §2.1.1) over leaf *hashes*; the empty tree's is SHA-256 of nothing."""
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(root(leaves[:k]), root(leaves[k:]))


def inclusion_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, over leaf hashes."""
    n = len(leaves)
    if n <= 1:
        return []
    k = _split(n)
    if index < k:
        return inclusion_path(index, leaves[:k]) + [root(leaves[k:])]
    return inclusion_path(index - k, leaves[k:]) + [root(leaves[:k])]


def consistency_proof(m: int, leaves: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1."""

    def subproof(m, d, complete):
        n = len(d)
        if m == n:
            return [] if complete else [root(d)]
        k = _split(n)
        if m <= k:
            return subproof(m, d[:k], complete) + [root(d[k:])]
        return subproof(m - k, d[k:], False) + [root(d[:k])]

    if not 0 < m <= len(leaves):
        raise ValueError("a consistency proof is between 0 < m <= n")
    return subproof(m, leaves, True)


def verify_inclusion(leaf: bytes, index: int, tree_size: int, path: list[bytes], expected_root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if index >= tree_size:
        return False
    fn, sn = index, tree_size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, step by step."""
    if first > second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return False  # RFC 9162: there is no proof from the empty tree
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree's root is the first node
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
