CREATE TABLE pathway_cases (
    envelope_id TEXT PRIMARY KEY,
    subject_ref TEXT NOT NULL,
    referrer TEXT NOT NULL,
    pathway TEXT NOT NULL,
    report_engagement_to TEXT NOT NULL,
    status TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
