-- Every event on a person's case in time order (see src/chronology.rs). Free text (a note)
-- is sealed to the agency's own key; everything else is ids and codes.
CREATE TABLE chronology (
    id TEXT PRIMARY KEY,
    subject_ref TEXT NOT NULL,
    case_ref TEXT NOT NULL DEFAULT '',
    at_ms BIGINT NOT NULL,
    event TEXT NOT NULL,
    code TEXT NOT NULL DEFAULT '',
    item_id TEXT NOT NULL DEFAULT '',
    counterpart TEXT NOT NULL DEFAULT '',
    staff_id TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX chronology_subject ON chronology (subject_ref, at_ms);
CREATE INDEX chronology_case ON chronology (case_ref, at_ms);
