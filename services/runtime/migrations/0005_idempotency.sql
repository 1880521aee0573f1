-- Idempotency-Key of POST /disclosures: a retry gets the first answer and sends nothing
-- again. A row is made (pending) before the send and completed with the answer after it.
CREATE TABLE idempotency (
    staff_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    -- 0 while the first request is in flight
    status BIGINT NOT NULL,
    answer TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (staff_id, idem_key)
);
