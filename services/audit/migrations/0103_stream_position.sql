-- Where on the stream each entry came from: the stream's incarnation (its creation time, in
-- nanoseconds since 1970; 0 on entries recorded before it was kept), the first stream position
-- an entry covers (an aggregate of unverifiable messages, a gap; 0 when it covers only
-- `stream_seq`), how many messages it stands for, and the subject it came on (a replay, a
-- misroute, an aggregate).
ALTER TABLE ledger ADD COLUMN stream_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN stream_first BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN message_count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE ledger ADD COLUMN subject TEXT NOT NULL DEFAULT '';
-- Stream positions restart at 1 when the stream is recreated: unique within an incarnation.
DROP INDEX ledger_stream_seq;
CREATE UNIQUE INDEX ledger_stream_position ON ledger (stream_epoch, stream_seq);

-- How far the ledger has read the stream: the last position it recorded or absorbed into a
-- pending aggregate. One row (id 1), written in the same transaction as what it covers.
CREATE TABLE ledger_cursor (
    id BIGINT PRIMARY KEY,
    stream_epoch BIGINT NOT NULL,
    stream_seq BIGINT NOT NULL
);

-- Unverifiable messages absorbed but not yet written as one aggregate entry, per subject and
-- reason: positions, count, a running digest over their bodies (never a body).
CREATE TABLE ledger_pending (
    subject TEXT NOT NULL,
    reason TEXT NOT NULL,
    stream_epoch BIGINT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    digest BYTEA NOT NULL,
    first_at_ms BIGINT NOT NULL,
    PRIMARY KEY (subject, reason)
);
