-- Staff accounts (local logins), sessions and the access log of this service.
CREATE TABLE staff (
    staff_id TEXT PRIMARY KEY,
    -- comma list of role names
    roles TEXT NOT NULL,
    -- argon2id, PHC string
    password_hash TEXT NOT NULL,
    disabled BIGINT NOT NULL,
    -- wrong passwords in a row
    failures BIGINT NOT NULL,
    locked_until_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    password_set_at_ms BIGINT NOT NULL
);

-- A session is known by the SHA-256 of its cookie token only. `via` is `local` (roles read
-- from `staff` on every request) or `oidc` (roles from the identity provider, kept here).
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    staff_id TEXT NOT NULL,
    via TEXT NOT NULL,
    roles TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX sessions_staff ON sessions (staff_id);

-- Every read of content and every refused or failed attempt: ids and codes only. The same
-- record goes to the ledger as a signed `accessed` event (event_id).
CREATE TABLE access_log (
    event_id TEXT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    staff_id TEXT NOT NULL,
    route TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX access_log_staff ON access_log (staff_id);
CREATE INDEX access_log_target ON access_log (target);

-- Browser logins through the identity provider in flight: the state, nonce and PKCE verifier
-- of each, for a few minutes.
CREATE TABLE oidc_pending (
    state TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    verifier TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
