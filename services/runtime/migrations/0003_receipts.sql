-- Revocation: the sender withdrew a disclosure it made; the recipient keeps its record of
-- having received it but no longer shows the content.
ALTER TABLE inbox ADD COLUMN revoked_at_ms BIGINT;
ALTER TABLE inbox ADD COLUMN revoked_reason TEXT;
