-- IDVA casework (see src/case.rs and src/store.rs): a case's state, triage, the contact it
-- owes the survivor, its outcome, the consent its referral relied on; the contact attempts
-- and the safety plan's versions. Codes and ids in clear; notes and plans sealed to the
-- agency's own key.
ALTER TABLE idva_cases ADD COLUMN case_ref TEXT NOT NULL DEFAULT '';
ALTER TABLE idva_cases ADD COLUMN priority TEXT NOT NULL DEFAULT '';
ALTER TABLE idva_cases ADD COLUMN triaged_by TEXT NOT NULL DEFAULT '';
ALTER TABLE idva_cases ADD COLUMN triaged_at_ms BIGINT;
ALTER TABLE idva_cases ADD COLUMN contact_due_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE idva_cases ADD COLUMN first_attempt_at_ms BIGINT;
ALTER TABLE idva_cases ADD COLUMN outcome TEXT NOT NULL DEFAULT '';
ALTER TABLE idva_cases ADD COLUMN closed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE idva_cases ADD COLUMN closed_at_ms BIGINT;
ALTER TABLE idva_cases ADD COLUMN consent_id TEXT NOT NULL DEFAULT '';
ALTER TABLE idva_cases ADD COLUMN consent_recorded_by TEXT NOT NULL DEFAULT '';
ALTER TABLE idva_cases ADD COLUMN consent_checked_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE idva_cases ADD COLUMN consent_withdrawn_at_ms BIGINT;
ALTER TABLE idva_cases ADD COLUMN updated_at_ms BIGINT NOT NULL DEFAULT 0;
-- Cases opened before casework: first contact was due when triage was, and their case
-- reference is the referral's.
UPDATE idva_cases SET contact_due_ms = triage_due_ms, updated_at_ms = received_at_ms;
UPDATE idva_cases SET case_ref = COALESCE((SELECT inbox.case_ref FROM inbox WHERE inbox.envelope_id = idva_cases.envelope_id), '');
CREATE INDEX idva_cases_status ON idva_cases (status, contact_due_ms);
CREATE INDEX idva_cases_consent ON idva_cases (consent_checked_at_ms);

CREATE TABLE idva_contact_attempts (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    method TEXT NOT NULL,
    outcome TEXT NOT NULL,
    -- Sealed to the agency's key; '' when none.
    note TEXT NOT NULL DEFAULT '',
    attempted_by TEXT NOT NULL,
    attempted_at_ms BIGINT NOT NULL
);
CREATE INDEX idva_contact_attempts_case ON idva_contact_attempts (case_id, attempted_at_ms);

CREATE TABLE idva_safety_plans (
    case_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    -- The plan's sections as JSON, sealed to the agency's key.
    sections TEXT NOT NULL,
    saved_by TEXT NOT NULL,
    saved_at_ms BIGINT NOT NULL,
    PRIMARY KEY (case_id, version)
);
