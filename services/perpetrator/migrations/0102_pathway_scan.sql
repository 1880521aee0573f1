-- How far the check of engagement updates sent (src/casework.rs, check_sent) has examined
-- the runtime's `sent` table, by creation time: it asks that table through runtime::sent
-- instead of joining it, and starts each pass a margin before this point.
CREATE TABLE pathway_sends_scanned (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    scanned_to_ms BIGINT NOT NULL
);
