-- How far into the consent bucket's stream a reader has read each record's history (issue
-- #19): the stream sequence of the last message it took into account, and that message's
-- SHA-256 (hex). Every message of the record up to it is reflected in `value` (the winner so
-- far), so the next read starts after it, once a direct get of the record's last message
-- shows something new, and still at the beginning when the stream no longer holds that
-- message there (history dropped, stream recreated). 0 and '' on rows from before: read
-- from the beginning once.
ALTER TABLE consent_seen ADD COLUMN read_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE consent_seen ADD COLUMN read_digest TEXT NOT NULL DEFAULT '';
