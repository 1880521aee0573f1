-- DASH risk assessments recorded at this agency (see src/assessments.rs): the only source of
-- a disclosure's risk. The answers (with their sources) and the reason for a judgement are
-- sealed to the agency's key; `summary` is the signed DashAssessment (hex) without answers.
CREATE TABLE risk_assessments (
    id TEXT PRIMARY KEY,
    case_ref TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    checklist_version TEXT NOT NULL,
    answers TEXT NOT NULL,
    score BIGINT NOT NULL,
    risk TEXT NOT NULL,
    professional_judgement BIGINT NOT NULL,
    judgement_reason TEXT NOT NULL DEFAULT '',
    assessor TEXT NOT NULL,
    summary TEXT NOT NULL,
    assessed_at_ms BIGINT NOT NULL
);
CREATE INDEX risk_assessments_subject ON risk_assessments (subject_ref, assessed_at_ms);
