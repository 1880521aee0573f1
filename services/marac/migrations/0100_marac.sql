CREATE TABLE marac_cases (
    envelope_id TEXT PRIMARY KEY,
    subject_ref TEXT NOT NULL,
    referrer TEXT NOT NULL,
    criteria TEXT NOT NULL,
    repeat_referral BIGINT NOT NULL,
    meets_criteria BIGINT NOT NULL,
    status TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX marac_cases_subject ON marac_cases (subject_ref, received_at_ms);

CREATE TABLE marac_actions (
    action_id TEXT PRIMARY KEY,
    owner_agency TEXT NOT NULL,
    status TEXT NOT NULL
);
