-- The MARAC meeting cycle (see src/store.rs): cases that follow the coordinator's decisions,
-- meetings, research requests tracked per member, hearings and actions with due dates.
-- Free text (a discussion summary, the risks identified, research questions, an action's
-- description or note) is sealed to this agency's own key; the rest is ids, codes and times.

-- A case is one referral received (its envelope id). What the criteria were judged on is kept
-- (the proved DASH summary's facts, the criteria the referrer named); what follows from the
-- person's other referrals (duplicate, repeat, incidents in 12 months) is worked out again
-- whenever one of them changes.
ALTER TABLE marac_cases ADD COLUMN case_ref TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN marac_ref TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN risk TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN claimed TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN named_previous_on TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN dash_assessment_id TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN dash_assessed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN dash_score BIGINT;
ALTER TABLE marac_cases ADD COLUMN dash_high BIGINT NOT NULL DEFAULT 0;
ALTER TABLE marac_cases ADD COLUMN dash_judgement BIGINT NOT NULL DEFAULT 0;
ALTER TABLE marac_cases ADD COLUMN judgement_officer TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN duplicate_of TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN repeat_of TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN previous_marac_on TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN incidents_12m BIGINT NOT NULL DEFAULT 0;
ALTER TABLE marac_cases ADD COLUMN screening TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN meeting_id TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN listed_at_ms BIGINT;
ALTER TABLE marac_cases ADD COLUMN close_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN revoked_at_ms BIGINT;
-- The last answer to the referral in the inbox this case followed (accepted, declined,
-- closed), so an answer given through the generic inbox route moves the case once.
ALTER TABLE marac_cases ADD COLUMN inbox_status TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_cases ADD COLUMN updated_at_ms BIGINT NOT NULL DEFAULT 0;
-- Before the cycle the criteria column held what the referrer named and the score implied, as
-- proto names: kept as claimed (a claim the coordinator weighs at screening, not a proof).
UPDATE marac_cases SET claimed = LOWER(REPLACE(criteria, 'MARAC_CRITERION_', '')) WHERE claimed = '';
-- Before the cycle a case's status was set on receipt, never by a person: every such case
-- waits for the coordinator's screening.
UPDATE marac_cases SET status = 'received' WHERE status IN ('listed', 'criteria_not_met');
UPDATE marac_cases SET updated_at_ms = received_at_ms;
CREATE INDEX marac_cases_meeting ON marac_cases (meeting_id);
CREATE INDEX marac_cases_status ON marac_cases (status, received_at_ms);

-- Meetings on the coordinator's schedule: one a day at most. Cases are listed until the list
-- closes (the cut-off day, inclusive); research is asked to be answered by `reply_by`.
CREATE TABLE marac_meetings (
    id TEXT PRIMARY KEY,
    meets_on TEXT NOT NULL UNIQUE,
    list_closes_on TEXT NOT NULL,
    reply_by TEXT NOT NULL,
    -- Comma list of the agency ids present; whether all agreed to the confidentiality statement.
    attendance TEXT NOT NULL DEFAULT '',
    confidentiality_agreed BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    minuted_by TEXT NOT NULL DEFAULT '',
    minuted_at_ms BIGINT
);

-- One research request: to one member agency about one case, for one meeting. Answered when
-- that member's marac.research_response naming the request (in_reply_to) arrives.
CREATE TABLE marac_research (
    request_id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    meeting_id TEXT NOT NULL,
    member TEXT NOT NULL,
    reply_by TEXT NOT NULL,
    due_at_ms BIGINT NOT NULL,
    questions TEXT NOT NULL,
    sent_by TEXT NOT NULL,
    sent_at_ms BIGINT NOT NULL,
    response_id TEXT NOT NULL DEFAULT '',
    holds_information BIGINT,
    responded_at_ms BIGINT
);
CREATE INDEX marac_research_case ON marac_research (case_id);
CREATE INDEX marac_research_member ON marac_research (member, responded_at_ms);

-- What the meeting recorded for a case it heard.
CREATE TABLE marac_hearings (
    case_id TEXT PRIMARY KEY,
    meeting_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    discussion TEXT NOT NULL,
    risks TEXT NOT NULL,
    heard_by TEXT NOT NULL,
    heard_at_ms BIGINT NOT NULL
);
CREATE INDEX marac_hearings_meeting ON marac_hearings (meeting_id);

-- Actions: each owned by an agency with a due date (a deadline met by an update with status
-- done). Rows from before the cycle keep an empty case and due date.
ALTER TABLE marac_actions ADD COLUMN case_id TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_actions ADD COLUMN subject_ref TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_actions ADD COLUMN meeting_on TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_actions ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_actions ADD COLUMN due_on TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_actions ADD COLUMN envelope_id TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_actions ADD COLUMN note TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_actions ADD COLUMN agreed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE marac_actions ADD COLUMN agreed_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE marac_actions ADD COLUMN updated_at_ms BIGINT NOT NULL DEFAULT 0;
UPDATE marac_actions SET status = 'in_progress' WHERE status = 'ACTION_STATUS_IN_PROGRESS';
UPDATE marac_actions SET status = 'done' WHERE status = 'ACTION_STATUS_DONE';
UPDATE marac_actions SET status = 'circumstances_changed' WHERE status = 'ACTION_STATUS_CIRCUMSTANCES_CHANGED';
UPDATE marac_actions SET status = 'not_done' WHERE status IN ('ACTION_STATUS_NOT_DONE', 'ACTION_STATUS_UNSPECIFIED');
CREATE INDEX marac_actions_case ON marac_actions (case_id);
