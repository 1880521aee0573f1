-- Deadlines set with the work they time (see src/deadlines.rs). Ids and codes only.
CREATE TABLE deadlines (
    code TEXT NOT NULL,
    target TEXT NOT NULL,
    subject_ref TEXT NOT NULL DEFAULT '',
    case_ref TEXT NOT NULL DEFAULT '',
    counterpart TEXT NOT NULL DEFAULT '',
    due_at_ms BIGINT NOT NULL,
    -- Met (or cancelled: the work went away), late or not.
    met_at_ms BIGINT,
    outcome TEXT,
    -- Passed unmet: an escalation until met; event_id is the signed deadline_missed event.
    missed_at_ms BIGINT,
    event_id TEXT,
    PRIMARY KEY (code, target)
);
CREATE INDEX deadlines_due ON deadlines (due_at_ms);
CREATE INDEX deadlines_target ON deadlines (target);
