-- Where the witness is in the checkpoint stream: the next stream sequence to read (it reads
-- every message on the checkpoint subject, in order), and how many messages it ignored there
-- because they were not a checkpoint signed by the partnership's IG office.
CREATE TABLE witness_position (
    id BIGINT PRIMARY KEY,
    next_seq BIGINT NOT NULL,
    ignored BIGINT NOT NULL,
    last_ignored_reason TEXT NOT NULL,
    last_ignored_at_ms BIGINT NOT NULL
);
