-- The scheme's casework (see src/scheme.rs): named-lead approval, circulation, one offer per
-- application, move completions counted once, and what was set aside and why.

-- The application's approval (a staff id of the current landlord and the signed message that
-- carried it), the referrer's case reference, its reason code, its times, and the number of
-- its last status message (also its version: every change is made from the one read).
ALTER TABLE applications ADD COLUMN case_ref TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN approved_by TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN approved_at_ms BIGINT;
ALTER TABLE applications ADD COLUMN approval_envelope_id TEXT NOT NULL DEFAULT '';
ALTER TABLE applications ADD COLUMN status_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE applications ADD COLUMN circulated_at_ms BIGINT;
ALTER TABLE applications ADD COLUMN reply_by_ms BIGINT;
ALTER TABLE applications ADD COLUMN offered_at_ms BIGINT;
ALTER TABLE applications ADD COLUMN decided_at_ms BIGINT;
ALTER TABLE applications ADD COLUMN closed_at_ms BIGINT;
ALTER TABLE applications ADD COLUMN updated_at_ms BIGINT NOT NULL DEFAULT 0;
-- v0.1.0's statuses: a received request now waits for its named lead.
UPDATE applications SET status = 'awaiting_approval' WHERE status = 'received';
UPDATE applications SET status = 'offered' WHERE status = 'offer_received';
CREATE INDEX applications_by_status ON applications (status, application_ref);

-- Each landlord the property request of an application went to.
CREATE TABLE circulations (
    application_ref TEXT NOT NULL,
    landlord TEXT NOT NULL,
    envelope_id TEXT NOT NULL,
    sent_by TEXT NOT NULL,
    sent_at_ms BIGINT NOT NULL,
    PRIMARY KEY (application_ref, landlord)
);

-- Every offer received, held or declined, with the answer sent. The property and its area say
-- where she would live: sealed at rest. (v0.1.0's `offers` table stays as it was.)
CREATE TABLE scheme_offers (
    envelope_id TEXT PRIMARY KEY,
    application_ref TEXT NOT NULL,
    landlord TEXT NOT NULL,
    property_ref TEXT NOT NULL,
    area TEXT NOT NULL,
    bedrooms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    answer_envelope_id TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    answered_at_ms BIGINT
);
CREATE INDEX scheme_offers_by_application ON scheme_offers (application_ref);
-- One offer held (or accepted) per application.
CREATE UNIQUE INDEX scheme_offers_one_held ON scheme_offers (application_ref) WHERE outcome IN ('held', 'accepted');

-- Move completions counted (or held until the acceptance). The fairness ledger is derived from
-- the counted ones: one owed to the rehousing landlord, one owing by the vacating landlord.
CREATE TABLE completions (
    envelope_id TEXT PRIMARY KEY,
    application_ref TEXT NOT NULL,
    rehousing_landlord TEXT NOT NULL,
    vacating_landlord TEXT NOT NULL,
    property_ref TEXT NOT NULL,
    moved_on TEXT NOT NULL,
    outcome TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    counted_at_ms BIGINT
);
-- A move counts once, however often its completion is sent.
CREATE UNIQUE INDEX completions_counted_once ON completions (application_ref) WHERE outcome = 'counted';

-- Messages the scheme did not act on, and why (a code): a completion for an application that
-- does not exist or from the wrong landlord, a duplicate, an approval not from a named lead...
CREATE TABLE set_aside (
    envelope_id TEXT PRIMARY KEY,
    application_ref TEXT NOT NULL,
    kind TEXT NOT NULL,
    sender TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX set_aside_by_time ON set_aside (at_ms);

-- What the coordinator records of each landlord of the scheme: where its stock is, and its
-- named leads (staff ids) who approve its tenants' applications.
CREATE TABLE landlords (
    landlord TEXT PRIMARY KEY,
    stock_areas TEXT NOT NULL,
    named_leads TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- v0.1.0's `fairness` counter stays as each landlord's opening balance; nothing adds to it now.
