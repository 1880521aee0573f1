-- DASH checklists recorded by this agency: answers and score, no names (the case ref links
-- them to the agency's own case system).
CREATE TABLE dash_assessments (
    id TEXT PRIMARY KEY,
    case_ref TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    checklist_version TEXT NOT NULL,
    answers TEXT NOT NULL,
    score BIGINT NOT NULL,
    risk TEXT NOT NULL,
    professional_judgement BIGINT NOT NULL,
    assessed_at_ms BIGINT NOT NULL
);

-- Anonymised property requests circulated by a reciprocal scheme to this landlord.
CREATE TABLE property_requests (
    application_ref TEXT PRIMARY KEY,
    envelope_id TEXT NOT NULL,
    coordinator TEXT NOT NULL,
    areas TEXT NOT NULL,
    bedrooms_needed BIGINT NOT NULL,
    status TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
