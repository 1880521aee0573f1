-- Flags on a person (subject_ref) or a property (property_ref), each with a review date (see
-- src/chronology.rs). The code is from a fixed list; the note is sealed to the agency's key.
CREATE TABLE flags (
    id TEXT PRIMARY KEY,
    subject_ref TEXT NOT NULL DEFAULT '',
    property_ref TEXT NOT NULL DEFAULT '',
    code TEXT NOT NULL,
    review_on TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    raised_by TEXT NOT NULL DEFAULT '',
    raised_at_ms BIGINT NOT NULL,
    cleared_at_ms BIGINT,
    cleared_by TEXT
);
CREATE INDEX flags_subject ON flags (subject_ref);
CREATE INDEX flags_property ON flags (property_ref);
