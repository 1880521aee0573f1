CREATE TABLE idva_cases (
    envelope_id TEXT PRIMARY KEY,
    subject_ref TEXT NOT NULL,
    referrer TEXT NOT NULL,
    risk TEXT NOT NULL,
    status TEXT NOT NULL,
    triage_due_ms BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL
);

CREATE TABLE engagement_updates (
    envelope_id TEXT PRIMARY KEY,
    subject_ref TEXT NOT NULL,
    pathway_agency TEXT NOT NULL,
    engagement TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
