-- Counting recent refusals of junk on one subject (inbox::quarantine) reads this index, not the table.
CREATE INDEX quarantine_subject_time ON quarantine (subject, received_at_ms);
