-- The disclosure ledger: one entry per message on the stream (a disclosure, a near miss, a
-- refusal on receipt), in stream order, hash-chained. Entries hold the clear facts and the
-- signed header or event (never a payload), so every entry can be re-verified later.
-- Entries are never updated or deleted.
CREATE TABLE ledger (
    seq BIGINT PRIMARY KEY,
    stream_seq BIGINT NOT NULL,
    entry_type TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    kind TEXT NOT NULL,
    purpose TEXT NOT NULL,
    lawful_basis TEXT NOT NULL,
    consent_id TEXT NOT NULL,
    consent_state TEXT NOT NULL,
    risk TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    case_ref TEXT NOT NULL,
    categories TEXT NOT NULL,
    forbidden TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    rule TEXT NOT NULL,
    reason TEXT NOT NULL,
    without_consent BIGINT NOT NULL,
    in_reply_to TEXT NOT NULL,
    occurred_at_ms BIGINT NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    verified BIGINT NOT NULL,
    signed BYTEA NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE UNIQUE INDEX ledger_stream_seq ON ledger (stream_seq);
CREATE INDEX ledger_subject ON ledger (subject_ref);
CREATE INDEX ledger_entry_id ON ledger (entry_id);
