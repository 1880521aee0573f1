-- The reciprocal scheme from a landlord's side (src/reciprocal.rs).

-- Every status the scheme's coordinator sent about an application this landlord referred, or
-- whose applicant is its tenant. An application's state is its latest status (by sequence).
CREATE TABLE reciprocal_statuses (
    envelope_id TEXT PRIMARY KEY,
    application_ref TEXT NOT NULL,
    coordinator TEXT NOT NULL,
    -- This landlord's request the application came from (when it referred it).
    request_envelope_id TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    areas_needed BIGINT NOT NULL,
    current_landlord TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX reciprocal_statuses_by_application ON reciprocal_statuses (application_ref, sequence);

-- What this landlord sent the coordinator about an application, and who: the named lead's
-- approval, the referrer's new areas or withdrawal.
CREATE TABLE reciprocal_actions (
    envelope_id TEXT PRIMARY KEY,
    application_ref TEXT NOT NULL,
    action TEXT NOT NULL,
    staff_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX reciprocal_actions_by_application ON reciprocal_actions (application_ref);

-- A property request circulated to this landlord: why an offer was declined, or why the
-- request ended (a reason code), and when it last changed.
ALTER TABLE property_requests ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE property_requests ADD COLUMN updated_at_ms BIGINT NOT NULL DEFAULT 0;
