-- An outbox message the broker will never take (too large, refused, or failing again and
-- again while others go through) is set aside rather than retried for ever, so what was
-- queued behind it goes on. Its `sent` row, if any, gets status `set_aside` with the reason.
ALTER TABLE outbox ADD COLUMN set_aside_at_ms BIGINT;
ALTER TABLE outbox ADD COLUMN set_aside_reason TEXT NOT NULL DEFAULT '';
