-- Receivers that cannot be turned back (issue #11).

-- The highest revision of each other agency's consent record this service has seen, and
-- whether it saw a withdrawal: a reader never goes back to a lower revision, nor to "given"
-- after a withdrawal, whatever the bucket holds later (a broker that republishes an old
-- revision until the withdrawal falls out of the history, or purges the key). `value` is
-- the owner's signed revision, verified again on every read.
CREATE TABLE consent_seen (
    record_key TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    withdrawn BIGINT NOT NULL,
    value BYTEA NOT NULL,
    seen_at_ms BIGINT NOT NULL
);

-- Which stream a delivery came from: the stream's creation time (ns since the epoch, from
-- its info). A stream recreated after its store was lost numbers its messages from 1 again;
-- with its identity beside the sequence, none of them is skipped as one already seen. 0 on
-- rows from before this migration.
ALTER TABLE inbox ADD COLUMN stream_id BIGINT NOT NULL DEFAULT 0;
DROP INDEX inbox_stream_seq;
CREATE INDEX inbox_stream_seq ON inbox (stream_seq);

-- The quarantine keeps a refused body's SHA-256 and its first 64 bytes, not the body: a
-- refused envelope may be anything, of any size, from anyone with broker rights. Rows are
-- keyed by the stream's identity and sequence. Rows from before keep their first 64 bytes;
-- their digest is left empty (the body is in the ledger's stream).
CREATE TABLE quarantine_v2 (
    stream_id BIGINT NOT NULL,
    stream_seq BIGINT NOT NULL,
    subject TEXT NOT NULL,
    envelope_id TEXT NOT NULL,
    claimed_sender TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    violation BIGINT NOT NULL,
    body_sha256 TEXT NOT NULL,
    body_prefix BYTEA NOT NULL,
    body_bytes BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (stream_id, stream_seq)
);
INSERT INTO quarantine_v2 (stream_id, stream_seq, subject, envelope_id, claimed_sender, reason, detail, violation, body_sha256, body_prefix, body_bytes, received_at_ms)
    SELECT 0, stream_seq, subject, envelope_id, claimed_sender, reason, detail, violation, '', substr(body, 1, 64), length(body), received_at_ms FROM quarantine;
DROP TABLE quarantine;
ALTER TABLE quarantine_v2 RENAME TO quarantine;
CREATE INDEX quarantine_stream_seq ON quarantine (stream_seq);
