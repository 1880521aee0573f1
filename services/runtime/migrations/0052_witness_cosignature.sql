-- The witness's cosignature (C2SP cosignature/v1, its signature line) of each checkpoint it
-- accepted: appended to the note, it makes the cosigned checkpoint `GET /witness` shows.
-- Empty for a checkpoint of the legacy JSON form, which has no note to cosign.
ALTER TABLE witnessed_checkpoint ADD COLUMN cosignature TEXT NOT NULL DEFAULT '';
