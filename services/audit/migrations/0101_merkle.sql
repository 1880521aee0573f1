-- The ledger as a Merkle tree (RFC 6962 hashing): every perfect subtree root, written in the
-- same transaction as the entries. Level 0 holds the leaves: leaf i = SHA-256(0x00 || hash of
-- entry i+1). Never updated or deleted.
CREATE TABLE merkle_node (
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

-- The signed checkpoints the audit service published: tree size, root, time, signature.
CREATE TABLE checkpoint (
    tree_size BIGINT PRIMARY KEY,
    root TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    body TEXT NOT NULL
);

-- Period queries and reports read by time.
CREATE INDEX ledger_occurred ON ledger (occurred_at_ms);
