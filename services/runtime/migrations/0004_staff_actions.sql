-- Who did it, from the login: the staff member who sent a disclosure; at the recipient, who
-- first opened it and who set its current status (from the recipient's receipts).
ALTER TABLE sent ADD COLUMN sent_by TEXT;
ALTER TABLE sent ADD COLUMN opened_by TEXT;
ALTER TABLE sent ADD COLUMN status_by TEXT;
-- At the recipient: who first opened an envelope and who last answered it.
ALTER TABLE inbox ADD COLUMN opened_by TEXT;
ALTER TABLE inbox ADD COLUMN status_by TEXT;
