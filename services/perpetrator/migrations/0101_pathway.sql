-- Pathway casework (see src/case.rs and src/store.rs): a case's state, the referrer's case
-- reference, the risk the referral proved, the reasons for referral (codes; the summary sealed
-- to the agency's own key), and the pathway's own pseudonym of the man (src/refs.rs); each
-- step with who and when; enforcement steps with the housing provider; the engagement updates
-- sent; the pathway's pseudonym key, sealed.
ALTER TABLE pathway_cases ADD COLUMN case_ref TEXT NOT NULL DEFAULT '';
ALTER TABLE pathway_cases ADD COLUMN risk TEXT NOT NULL DEFAULT '';
ALTER TABLE pathway_cases ADD COLUMN reasons TEXT NOT NULL DEFAULT '';
ALTER TABLE pathway_cases ADD COLUMN reason_summary TEXT NOT NULL DEFAULT '';
ALTER TABLE pathway_cases ADD COLUMN perpetrator_ref TEXT NOT NULL DEFAULT '';
ALTER TABLE pathway_cases ADD COLUMN updated_at_ms BIGINT NOT NULL DEFAULT 0;
-- Cases from before casework stayed `new` forever: they are referred, awaiting assessment.
UPDATE pathway_cases SET status = 'referred' WHERE status = 'new';
UPDATE pathway_cases SET updated_at_ms = received_at_ms;
CREATE INDEX pathway_cases_perpetrator ON pathway_cases (perpetrator_ref);
CREATE INDEX pathway_cases_subject ON pathway_cases (subject_ref);

CREATE TABLE pathway_steps (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    step TEXT NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    staff_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    -- Sealed to the agency's key; '' when none.
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX pathway_steps_case ON pathway_steps (case_id, at_ms);

CREATE TABLE pathway_enforcement (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    action TEXT NOT NULL,
    housing_provider TEXT NOT NULL,
    survivor_wishes TEXT NOT NULL,
    -- Sealed to the agency's key.
    grounds TEXT NOT NULL DEFAULT '',
    requested_by TEXT NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    -- The perpetrator.enforcement_request sent to the provider.
    envelope_id TEXT NOT NULL,
    -- The provider's answer (accepted, declined, closed), when it came.
    answer TEXT NOT NULL DEFAULT '',
    answered_by TEXT NOT NULL DEFAULT '',
    answered_at_ms BIGINT
);
CREATE INDEX pathway_enforcement_case ON pathway_enforcement (case_id, requested_at_ms);
CREATE INDEX pathway_enforcement_envelope ON pathway_enforcement (envelope_id);

CREATE TABLE pathway_updates (
    envelope_id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    engagement TEXT NOT NULL,
    recipient TEXT NOT NULL,
    -- 'automatic' (a change of state) or 'progress' (staff sent it)
    how TEXT NOT NULL,
    sent_by TEXT NOT NULL,
    sent_at_ms BIGINT NOT NULL
);
CREATE INDEX pathway_updates_case ON pathway_updates (case_id, sent_at_ms);

-- The key of the pathway's own pseudonym of a man (isp::directory::own_ref), sealed to the
-- agency's own key: one row, made on first use.
CREATE TABLE pathway_ref_key (
    id BIGINT PRIMARY KEY,
    sealed_key TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Engagement updates this service sent that it has checked went to the agency the referral
-- named (those sent through the generic disclosure API included): 'named', 'revoked',
-- 'revocation_refused' (the protocol would not carry the revocation), 'not_sent' (refused or
-- stopped before it left), or 'before_check' (sent before this check existed).
CREATE TABLE pathway_sends_checked (
    envelope_id TEXT PRIMARY KEY,
    verdict TEXT NOT NULL,
    checked_at_ms BIGINT NOT NULL
);
-- Updates sent before this check existed are not judged by it after the fact.
INSERT INTO pathway_sends_checked (envelope_id, verdict, checked_at_ms)
    SELECT envelope_id, 'before_check', created_at_ms FROM sent WHERE kind = 'perpetrator.engagement_update';
