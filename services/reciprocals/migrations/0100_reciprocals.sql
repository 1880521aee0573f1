-- Move applications: what the household needs and where it may go; never a name or the
-- address it is leaving (the policy removes that before it reaches the coordinator).
CREATE TABLE applications (
    application_ref TEXT PRIMARY KEY,
    envelope_id TEXT NOT NULL,
    referrer TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    current_landlord TEXT NOT NULL,
    areas TEXT NOT NULL,
    excluded_areas TEXT NOT NULL,
    adults BIGINT NOT NULL,
    children BIGINT NOT NULL,
    bedrooms_needed BIGINT NOT NULL,
    accessibility_needs TEXT NOT NULL,
    status TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);

-- At most one offer per application.
CREATE TABLE offers (
    application_ref TEXT PRIMARY KEY,
    landlord TEXT NOT NULL,
    property_ref TEXT NOT NULL,
    area TEXT NOT NULL,
    bedrooms BIGINT NOT NULL,
    envelope_id TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);

-- The central pot: positive = the scheme owes the landlord properties, negative = the
-- landlord owes the scheme.
CREATE TABLE fairness (
    landlord TEXT PRIMARY KEY,
    balance BIGINT NOT NULL
);
