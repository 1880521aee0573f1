-- DASH assessments are the runtime's now (risk_assessments, migration 73), each with a
-- signed summary. Those recorded before have none and cannot prove a risk: they are kept,
-- under a name that says so, and a referral names an assessment recorded since.
ALTER TABLE dash_assessments RENAME TO dash_assessments_unsigned;
