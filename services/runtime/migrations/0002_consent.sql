-- Consent and sharing without consent (issue #3).

-- Which consent record a disclosure relied on, and, when it was shared without consent, who
-- decided and why: the rationale code travels in the signed header, the rationale in words
-- stays here, in the sender's own database.
ALTER TABLE sent ADD COLUMN consent_id TEXT NOT NULL DEFAULT '';
ALTER TABLE sent ADD COLUMN consent_recorded_by TEXT NOT NULL DEFAULT '';
ALTER TABLE sent ADD COLUMN officer TEXT NOT NULL DEFAULT '';
ALTER TABLE sent ADD COLUMN rationale_code TEXT NOT NULL DEFAULT '';
ALTER TABLE sent ADD COLUMN rationale TEXT NOT NULL DEFAULT '';

-- A sealed disclosure stopped before publishing because the consent it relied on no longer
-- holds (withdrawn while it waited). It stays, never published; sent.status = 'stopped'.
ALTER TABLE outbox ADD COLUMN stopped_at_ms BIGINT;
ALTER TABLE outbox ADD COLUMN stop_reason TEXT NOT NULL DEFAULT '';

-- Every revision of this agency's own consent records, as signed. The bucket in the broker
-- is the partnership's copy; this is the owner's, written in the same transaction as the
-- outbox row that publishes it, so recording consent works while the broker is down.
CREATE TABLE consents (
    record_key TEXT NOT NULL,
    revision BIGINT NOT NULL,
    consent_id TEXT NOT NULL,
    value BYTEA NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    PRIMARY KEY (record_key, revision)
);
