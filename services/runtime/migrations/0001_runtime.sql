-- Portable SQL: runs on SQLite and PostgreSQL alike. Times are ms since the epoch.

-- Messages waiting to be published, written in the same transaction as the change that
-- caused them. The id is the envelope or event id, which is also the JetStream message id.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL,
    published_at_ms BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox (published_at_ms, id);

-- Every disclosure this agency made or tried to make, and where it stands.
-- status: queued, published, received, accepted, declined, closed, denied.
CREATE TABLE sent (
    envelope_id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    kind TEXT NOT NULL,
    purpose TEXT NOT NULL,
    lawful_basis TEXT NOT NULL,
    consent_state TEXT NOT NULL,
    risk TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    case_ref TEXT NOT NULL,
    categories TEXT NOT NULL,
    removed TEXT NOT NULL,
    rule TEXT NOT NULL,
    reason TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    without_consent BIGINT NOT NULL,
    in_reply_to TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX sent_status ON sent (status);

-- Envelopes received and accepted by the ISP. The envelope is kept sealed: it is opened
-- with this agency's key when a member of staff reads it.
-- status: new, opened, accepted, declined, closed.
CREATE TABLE inbox (
    envelope_id TEXT PRIMARY KEY,
    stream_seq BIGINT NOT NULL,
    sender TEXT NOT NULL,
    kind TEXT NOT NULL,
    purpose TEXT NOT NULL,
    lawful_basis TEXT NOT NULL,
    consent_state TEXT NOT NULL,
    risk TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    case_ref TEXT NOT NULL,
    categories TEXT NOT NULL,
    rule TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    in_reply_to TEXT NOT NULL,
    envelope BYTEA NOT NULL,
    status TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    opened_at_ms BIGINT
);
CREATE UNIQUE INDEX inbox_stream_seq ON inbox (stream_seq);
CREATE INDEX inbox_subject ON inbox (subject_ref);

-- Envelopes refused on receipt. Kept (never stored as referrals) for the IG lead; the
-- refusal is also in the ledger.
CREATE TABLE quarantine (
    stream_seq BIGINT PRIMARY KEY,
    subject TEXT NOT NULL,
    envelope_id TEXT NOT NULL,
    claimed_sender TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    violation BIGINT NOT NULL,
    body BYTEA NOT NULL,
    received_at_ms BIGINT NOT NULL
);
