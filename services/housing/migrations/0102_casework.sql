-- Housing casework (see src/uaf.rs, src/options.rs, src/panel.rs, src/concerns.rs). What a
-- survivor said, an address and every note are sealed to this agency's own key; the rest is
-- ids, codes, amounts and times.

-- The universal assessment form, one row per saved version of a person's assessment.
CREATE TABLE universal_assessments (
    id TEXT PRIMARY KEY,
    subject_ref TEXT NOT NULL,
    case_ref TEXT NOT NULL DEFAULT '',
    version BIGINT NOT NULL,
    -- The sections filled in, as a comma list of their names (housing, safety, ...).
    sections TEXT NOT NULL,
    -- The hub.v1.UniversalAssessment, encoded (hex), sealed.
    assessment TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    UNIQUE (subject_ref, version)
);

-- The housing route chosen with the survivor (Whole Housing Approach); the newest stands.
CREATE TABLE housing_routes (
    id TEXT PRIMARY KEY,
    subject_ref TEXT NOT NULL,
    case_ref TEXT NOT NULL DEFAULT '',
    route TEXT NOT NULL,
    -- For the refuge route: the housing.refuge_referral disclosure sent.
    envelope_id TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    chosen_by TEXT NOT NULL,
    chosen_at_ms BIGINT NOT NULL
);
CREATE INDEX housing_routes_subject ON housing_routes (subject_ref, chosen_at_ms);

-- Sanctuary schemes: requested -> surveyed -> installed | refused, per property.
CREATE TABLE sanctuary_schemes (
    id TEXT PRIMARY KEY,
    subject_ref TEXT NOT NULL,
    case_ref TEXT NOT NULL DEFAULT '',
    property_ref TEXT NOT NULL,
    status TEXT NOT NULL,
    survivor_agreed_by TEXT NOT NULL,
    survivor_agreed_at_ms BIGINT NOT NULL,
    perpetrator_at_address BIGINT NOT NULL,
    rights_checked BIGINT NOT NULL DEFAULT 0,
    -- Comma list of measure codes.
    measures TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    refused_reason TEXT NOT NULL DEFAULT '',
    flag_id TEXT NOT NULL DEFAULT '',
    requested_by TEXT NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX sanctuary_schemes_subject ON sanctuary_schemes (subject_ref);
CREATE INDEX sanctuary_schemes_property ON sanctuary_schemes (property_ref);

-- Flexible funding: requested -> approved | declined (by a team manager who is not the
-- requester); spends recorded against the approved amount, never beyond it.
CREATE TABLE funding_requests (
    id TEXT PRIMARY KEY,
    subject_ref TEXT NOT NULL,
    case_ref TEXT NOT NULL DEFAULT '',
    purpose TEXT NOT NULL,
    amount_pence BIGINT NOT NULL,
    spent_pence BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    requested_by TEXT NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    decided_by TEXT NOT NULL DEFAULT '',
    decided_at_ms BIGINT,
    decision_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX funding_requests_subject ON funding_requests (subject_ref);
CREATE INDEX funding_requests_status ON funding_requests (status);

CREATE TABLE funding_spends (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    amount_pence BIGINT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    spent_by TEXT NOT NULL,
    spent_at_ms BIGINT NOT NULL
);
CREATE INDEX funding_spends_request ON funding_spends (request_id);

-- The domestic abuse points panel: weekly meetings, applications listed to one, decisions.
CREATE TABLE panel_meetings (
    id TEXT PRIMARY KEY,
    meets_on TEXT NOT NULL UNIQUE,
    -- Comma list of staff ids.
    attendees TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE panel_applications (
    id TEXT PRIMARY KEY,
    meeting_id TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    case_ref TEXT NOT NULL DEFAULT '',
    application_ref TEXT NOT NULL DEFAULT '',
    listed_by TEXT NOT NULL,
    listed_at_ms BIGINT NOT NULL,
    decision TEXT NOT NULL,
    points BIGINT NOT NULL DEFAULT 0,
    reasons TEXT NOT NULL DEFAULT '',
    decided_by TEXT NOT NULL DEFAULT '',
    decided_at_ms BIGINT,
    UNIQUE (meeting_id, subject_ref)
);
CREATE INDEX panel_applications_subject ON panel_applications (subject_ref);

-- Early detectors' concerns, triaged by the domestic abuse team.
CREATE TABLE concerns (
    id TEXT PRIMARY KEY,
    property_ref TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',
    -- Comma list of indicator codes.
    indicators TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    raised_by TEXT NOT NULL,
    raised_at_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    decision TEXT NOT NULL DEFAULT '',
    triage_note TEXT NOT NULL DEFAULT '',
    subject_ref TEXT NOT NULL DEFAULT '',
    case_ref TEXT NOT NULL DEFAULT '',
    triaged_by TEXT NOT NULL DEFAULT '',
    triaged_at_ms BIGINT
);
CREATE INDEX concerns_status ON concerns (status, raised_at_ms);
