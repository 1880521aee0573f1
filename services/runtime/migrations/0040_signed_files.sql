-- The highest version of each signed partnership file (policy, directory) this service ran:
-- its sequence and the SHA-256 of its text. A file older than this is refused, at start too,
-- so an old file put back while the service was down cannot bring an old key or protocol back.
CREATE TABLE signed_file (
    name TEXT PRIMARY KEY,
    sequence BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    in_force_since_ms BIGINT NOT NULL
);
