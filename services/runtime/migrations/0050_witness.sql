-- This agency's witness of the audit ledger: the signed checkpoints it has seen and checked
-- (each consistent with the one before), and the alerts it raised when one was not.
CREATE TABLE witnessed_checkpoint (
    tree_size BIGINT PRIMARY KEY,
    root TEXT NOT NULL,
    body TEXT NOT NULL,
    checked_at_ms BIGINT NOT NULL
);

CREATE TABLE witness_alert (
    id BIGINT PRIMARY KEY,
    raised_at_ms BIGINT NOT NULL,
    tree_size BIGINT NOT NULL,
    what TEXT NOT NULL,
    checkpoint TEXT NOT NULL
);
