-- What a perpetrator pathway tells the survivor's advocate (see src/perpetrator.rs): each
-- engagement update filed under the IDVA case of the survivor it is about, its note sealed to
-- the agency's own key; a `disengaged` one is an alert on that case until the IDVA records
-- that it reviewed the safety plan.
ALTER TABLE engagement_updates ADD COLUMN case_id TEXT NOT NULL DEFAULT '';
ALTER TABLE engagement_updates ADD COLUMN as_of TEXT NOT NULL DEFAULT '';
ALTER TABLE engagement_updates ADD COLUMN note TEXT NOT NULL DEFAULT '';
ALTER TABLE engagement_updates ADD COLUMN reviewed_at_ms BIGINT;
ALTER TABLE engagement_updates ADD COLUMN reviewed_by TEXT NOT NULL DEFAULT '';
CREATE INDEX engagement_updates_case ON engagement_updates (case_id, received_at_ms);
