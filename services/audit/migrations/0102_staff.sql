-- The staff member of an `accessed` entry (empty on every other entry, and on every entry
-- recorded before the access log existed: the entry hash covers it only when set).
ALTER TABLE ledger ADD COLUMN staff_id TEXT NOT NULL DEFAULT '';
CREATE INDEX ledger_staff ON ledger (staff_id);
