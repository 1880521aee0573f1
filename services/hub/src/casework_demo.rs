//! `hub demo --scenario casework`: a housing-and-IDVA case played through every capability
//! of the casework issue, through the services' HTTP APIs as staff would, with synthetic
//! data; it exits 0 only if every check holds.
//!
//! Housing records a DASH checklist (high: the IDVA and MARAC referrals become tasks) and
//! refers to the IDVA service naming it; the IDVA accepts, triages, tries to reach the
//! survivor, engages her and writes two versions of a safety plan. A second referral nobody
//! at the IDVA answers is escalated when the clock passes its acknowledgement target, and
//! the ledger holds the signed `deadline_missed` entry; the IG report measures time to the
//! staff acknowledgement. The person's chronology holds every step; a flag stays at the
//! agency that raised it.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};

use crate::demo::until;
use crate::{
    demo::{SURVIVOR_DOB, SURVIVOR_NAME, Script, dash_answers},
    local::LocalHub,
    staff::Logins,
};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const MARAC: &str = "marac-northbridge";

/// What the casework scenario did, for its summary.
#[derive(Debug, Default)]
pub struct Casework {
    pub checks: Vec<String>,
    pub subject_ref: String,
}

impl Casework {
    fn check(&mut self, print: bool, what: impl Into<String>) {
        let what = what.into();
        if print {
            println!("  ok  {what}");
        }
        self.checks.push(what);
    }
}

/// Plays the casework scenario on a running partnership.
pub async fn play(hub: &LocalHub, logins: &Logins, print: bool) -> anyhow::Result<Casework> {
    let mut s = Script { hub, logins, report: Default::default(), print, before: Default::default(), near_misses_before: 0 };
    let mut c = Casework::default();
    let subject = json!({"full_name": SURVIVOR_NAME, "date_of_birth": SURVIVOR_DOB});
    let survivor = json!({"fullName": SURVIVOR_NAME, "dateOfBirth": SURVIVOR_DOB, "phone": "07700 900123", "safeToCall": true, "safeTimes": "weekdays 10:00-12:00"});
    // Case references differ per run: a kept data directory may hold earlier runs.
    let case = format!("HSG-2026-{:04}", rand::random::<u16>() % 10_000);

    // ---------------------------------------------------------------- a risk that can be proved
    let (status, v) = s
        .post(HOUSING, "/disclosures", json!({"to": IDVA, "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a", "risk": "high", "subject": subject,
            "payload": {"idvaReferral": {"survivor": survivor, "reason": "Asserted high risk"}}}))
        .await?;
    ensure!(status == 400 && v["detail"].as_str().unwrap_or_default().contains("assessment_id"), "a risk the request asserts is refused: {status} {v}");
    c.check(print, "a referral asserting high risk without an assessment is refused (400), naming what to do");
    let (status, dash) = s.post(HOUSING, "/dash-assessments", json!({"case_ref": case, "subject": subject, "answers": dash_answers(16)})).await?;
    ensure!(status == 201 && dash["risk"] == "high", "recording the DASH checklist: {status} {dash}");
    let assessment = dash["id"].as_str().context("assessment id")?.to_owned();
    c.subject_ref = dash["subject_ref"].as_str().unwrap_or_default().to_owned();
    let tasks: Vec<String> = s.get(HOUSING, "/deadlines?state=open").await?.as_array().into_iter().flatten().filter(|d| d["target"] == assessment.as_str()).filter_map(|d| d["code"].as_str().map(str::to_owned)).collect();
    ensure!(tasks == ["refer_idva", "refer_marac"], "a high result sets the IDVA and MARAC referrals as tasks: {tasks:?}");
    c.check(print, format!("housing records a DASH checklist: score {} -> high; the IDVA and MARAC referrals become tasks", dash["score"]));

    // ---------------------------------------------------------------- one assessment
    let uaf = json!({
        "housing": {"currentSituation": "Joint council tenancy; wants to stay if made safe", "tenure": "TENURE_COUNCIL", "perpetratorAtAddress": false, "wishes": "HOUSING_WISH_STAY_PUT"},
        "supportNeeds": {"needs": ["SUPPORT_NEED_REFUGE"]},
    });
    let (status, saved) = s.post(HOUSING, "/universal-assessments", json!({"subject": subject, "case_ref": case, "uaf": uaf})).await?;
    ensure!(status == 201, "saving the universal assessment form: {status} {saved}");
    let (status, again) = s.post(HOUSING, "/universal-assessments", json!({"subject": subject, "case_ref": case, "uaf": uaf})).await?;
    ensure!(status == 201 && again["version"].as_i64() > saved["version"].as_i64(), "a second save is a new version: {again}");
    c.check(print, format!("housing saves the universal assessment form (version {}, then {}); its sections go into the referrals", saved["version"], again["version"]));

    let (status, consent) = s.post(HOUSING, "/consents", json!({"subject": subject, "state": "given", "scope": {"roles": ["idva"], "purposes": ["safeguarding"]}})).await?;
    ensure!(status == 201, "recording consent: {consent}");
    let consent = json!({"id": consent["consent_id"], "state": "given"});
    let referral = |case_ref: &str| {
        json!({"to": IDVA, "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a", "consent": consent, "assessment_id": assessment, "subject": subject, "case_ref": case_ref,
            "payload": {"idvaReferral": {"survivor": survivor, "reason": "Disclosed escalating abuse at a housing options interview", "survivorAware": true, "uaf": uaf}}})
    };
    let first = s.disclose(HOUSING, referral(&case), false).await?;
    let (status, not_sought) = s.post(HOUSING, "/consents", json!({"subject": subject, "state": "not-sought", "reason": "asking-would-increase-risk"})).await?;
    ensure!(status == 201, "{not_sought}");
    s.disclose(HOUSING, json!({"to": MARAC, "purpose": "marac", "lawful_basis": "uk-gdpr-9-2-g-dpa-s1-p18", "consent": {"id": not_sought["consent_id"], "state": "not-sought"},
        "assessment_id": assessment, "subject": subject, "case_ref": case,
        "without_consent": {"rationale_code": "asking-would-increase-risk", "rationale": "The perpetrator monitors her phone"},
        "payload": {"maracReferral": {"survivor": {"fullName": SURVIVOR_NAME, "dateOfBirth": SURVIVOR_DOB}, "criteria": ["MARAC_CRITERION_VISIBLE_HIGH_RISK"], "survivorAware": false}}}), false)
        .await?;
    let open: Vec<Value> = s.get(HOUSING, "/deadlines?state=open").await?.as_array().cloned().unwrap_or_default().into_iter().filter(|d| d["target"] == assessment.as_str()).collect();
    ensure!(open.is_empty(), "both referral tasks are met once sent: {open:?}");
    c.check(print, "the IDVA and MARAC referrals name the assessment; both tasks are met");
    s.delivered(&first).await?;
    let item = s.get(IDVA, &format!("/inbox/{first}")).await?;
    let proof = &item["payload"]["idvaReferral"]["dash"];
    ensure!(item["risk"] == "high" && proof["assessedBy"] == HOUSING && proof["assessmentId"] == assessment.as_str() && proof["items"].as_array().map(Vec::len) == Some(24),
        "the IDVA holds the signed summary and the answers: {proof}");
    ensure!(item["payload"]["idvaReferral"]["uaf"]["housing"]["wishes"] == "HOUSING_WISH_STAY_PUT", "the IDVA holds the assessment's sections: {item}");
    c.check(print, "the IDVA received high risk with housing's signed DASH summary (checked on receipt, score recomputed from the 24 answers)");

    // ---------------------------------------------------------------- IDVA casework
    s.ack(IDVA, &first, "accepted", "").await?;
    let case_path = format!("/cases/{first}");
    let opened = s.get(IDVA, &case_path).await?;
    ensure!(opened["case"]["status"] == "awaiting_triage" || opened["status"] == "awaiting_triage", "the IDVA case opens awaiting triage: {opened}");
    for (step, body) in [
        ("triage", json!({"priority": "urgent", "note": "High DASH, recent separation"})),
        ("contact-attempts", json!({"method": "phone", "outcome": "no_answer"})),
        ("contact-attempts", json!({"method": "phone", "outcome": "reached", "note": "Safe to talk after 10:00"})),
        ("engaged", json!({})),
    ] {
        let (status, v) = s.post(IDVA, &format!("{case_path}/{step}"), body).await?;
        ensure!(status == 200 || status == 201, "IDVA {step}: {status} {v}");
    }
    let (status, v) = s.post(IDVA, &format!("{case_path}/triage"), json!({"priority": "standard"})).await?;
    ensure!(status == 409, "triage twice is refused: {status} {v}");
    for (version, actions) in [(1, "Safety plan agreed: safe word with her sister"), (2, "Sanctuary measures requested; non-molestation order discussed")] {
        let (status, v) = s
            .post(IDVA, &format!("{case_path}/safety-plan"), json!({"sections": {"immediate_safety": "Keeps her phone charged; knows to call 999 and press 55", "agreed_actions": actions}}))
            .await?;
        ensure!(status == 201, "safety plan version {version}: {status} {v}");
    }
    let plan = s.get(IDVA, &format!("{case_path}/safety-plan")).await?;
    let versions = plan.as_array().map(Vec::len).or_else(|| plan["versions"].as_array().map(Vec::len)).unwrap_or_default();
    ensure!(versions == 2, "two versions of the safety plan: {plan}");
    c.check(print, "the IDVA accepts, triages (urgent), tries twice to reach her, engages her, writes two versions of a safety plan; a second triage is refused");

    // ---------------------------------------------------------------- housing options
    let refuge = s
        .disclose(HOUSING, json!({"to": IDVA, "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a", "consent": consent, "subject": subject, "case_ref": case,
            "payload": {"refugeReferral": {"survivor": survivor, "refugeType": "REFUGE_TYPE_SELF_CONTAINED", "survivorAware": true, "uaf": uaf}}}), false)
        .await?;
    s.delivered(&refuge).await?;
    let (status, v) = s.post(HOUSING, "/housing-routes", json!({"subject": subject, "case_ref": case, "route": "stay_put_sanctuary"})).await?;
    ensure!(status == 201, "recording the route chosen: {status} {v}");
    let property = format!("PROP-{:04}", rand::random::<u16>() % 10_000);
    let review = runtime::chronology::date_of(isp::now_ms() + 30 * 86_400_000);
    let (status, flag) = s.post(HOUSING, "/flags", json!({"property_ref": property, "code": "perpetrator-at-address", "review_on": review})).await?;
    ensure!(status == 201, "flagging the property: {flag}");
    let (status, scheme) = s.post(HOUSING, "/sanctuary-schemes", json!({"subject": subject, "case_ref": case, "property_ref": property, "survivor_agreed": true, "perpetrator_at_address": false})).await?;
    ensure!(status == 201, "requesting a sanctuary scheme: {status} {scheme}");
    let scheme = scheme["id"].as_str().context("scheme id")?.to_owned();
    let (status, v) = s.post(HOUSING, &format!("/sanctuary-schemes/{scheme}/survey"), json!({"measures": ["door_reinforcement", "fire_safe_letterbox"], "perpetrator_at_address": false, "rights_checked": true})).await?;
    ensure!(status == 200 || status == 201, "the survey: {status} {v}");
    let (status, v) = s.post(HOUSING, &format!("/sanctuary-schemes/{scheme}/install"), json!({})).await?;
    ensure!(status == 409, "installation is refused while the perpetrator-at-address flag is in force: {status} {v}");
    let (status, v) = s.post(HOUSING, &format!("/flags/{}/clear", flag["id"].as_str().unwrap_or_default()), json!({})).await?;
    ensure!(status == 204, "clearing the flag after review: {status} {v}");
    let (status, v) = s.post(HOUSING, &format!("/sanctuary-schemes/{scheme}/install"), json!({})).await?;
    ensure!(status == 200 || status == 201, "installing once he no longer lives there: {status} {v}");
    let flags = s.get(HOUSING, &format!("/flags?property_ref={property}")).await?;
    ensure!(flags.as_array().into_iter().flatten().any(|f| f["code"] == "sanctuary-installed"), "the property is flagged sanctuary-installed: {flags}");
    c.check(print, "a refuge referral goes to the IDVA service; the route chosen is recorded; sanctuary installation is refused while the perpetrator lives at the address and done once the flag is reviewed");
    let (status, asked) = s.post(HOUSING, "/funding-requests", json!({"subject": subject, "case_ref": case, "purpose": "deposit", "amount_pence": 50_000})).await?;
    ensure!(status == 201, "a flexible funding request: {status} {asked}");
    let fund = asked["id"].as_str().context("funding request id")?.to_owned();
    let (status, v) = s.post(HOUSING, &format!("/funding-requests/{fund}/decision"), json!({"decision": "approved"})).await?;
    ensure!(status == 200 || status == 201, "a team manager approves: {status} {v}");
    let (status, v) = s.post(HOUSING, &format!("/funding-requests/{fund}/spend"), json!({"amount_pence": 45_000})).await?;
    ensure!(status == 200 || status == 201, "the spend: {status} {v}");
    let (status, v) = s.post(HOUSING, &format!("/funding-requests/{fund}/spend"), json!({"amount_pence": 10_000})).await?;
    ensure!(status == 409, "spending beyond the approved amount is refused: {status} {v}");
    c.check(print, "flexible funding: a deposit of £500 requested, approved by a team manager, £450 spent, an overspend refused");
    let today = runtime::chronology::date_of(isp::now_ms());
    let (status, meeting) = s.post(HOUSING, "/panel-meetings", json!({"meets_on": today})).await?;
    let meeting = if status == 201 {
        meeting["id"].as_str().unwrap_or_default().to_owned()
    } else {
        // A kept data directory already holds today's meeting.
        let all = s.get(HOUSING, "/panel-meetings").await?;
        all.as_array().into_iter().flatten().find(|m| m["meets_on"] == today.as_str()).and_then(|m| m["id"].as_str()).context("today's panel meeting")?.to_owned()
    };
    let (status, listed) = s.post(HOUSING, &format!("/panel-meetings/{meeting}/applications"), json!({"subject": subject, "case_ref": case})).await?;
    ensure!(status == 201, "listing the application to the panel: {status} {listed}");
    let (status, v) = s
        .post(HOUSING, &format!("/panel-applications/{}/decision", listed["id"].as_str().unwrap_or_default()), json!({"decision": "awarded", "points": 150, "reasons": "Risk from a high DASH result and the need to move out of area"}))
        .await?;
    ensure!(status == 200 || status == 201, "the panel's decision: {status} {v}");
    c.check(print, "the DV points panel meets, hears the application and awards Group D points with its reasons");
    let (status, concern) = s.post(HOUSING, "/concerns", json!({"property_ref": property, "indicators": ["shouting_or_violence_heard", "damage_to_property"]})).await?;
    ensure!(status == 201, "an early detector's concern: {status} {concern}");
    let concern = concern["id"].as_str().context("concern id")?.to_owned();

    // ---------------------------------------------------------------- deadlines that fire
    let second = s.disclose(HOUSING, referral(&format!("{case}-B")), false).await?;
    s.delivered(&second).await?;
    let due = s.get(IDVA, "/deadlines?state=open").await?;
    ensure!(due.as_array().into_iter().flatten().any(|d| d["code"] == "acknowledge" && d["target"] == second.as_str()), "the second referral waits for a person's answer: {due}");
    hub.clock.advance(Duration::from_secs(49 * 3600));
    let escalated = until("the unanswered referral escalated", || async {
        let e = s.get(IDVA, "/deadlines?state=escalated").await?;
        Ok(e.as_array().into_iter().flatten().any(|d| d["code"] == "acknowledge" && d["target"] == second.as_str()).then_some(e))
    })
    .await?;
    ensure!(!escalated.as_array().into_iter().flatten().any(|d| d["target"] == first.as_str() && d["code"] == "acknowledge"), "the answered referral is not escalated: {escalated}");
    c.check(print, "49 hours on, the referral nobody at the IDVA answered is escalated (its automatic receipt counted for nothing)");
    let ig = logins.as_role("audit", &hub.audit_url, runtime::auth::Role::IgLead).await?;
    let ledger = until("deadline_missed and acknowledged in the ledger", || async {
        let l = crate::ledger_pages(&ig, &hub.audit_url, "").await?;
        let missed = l.iter().any(|e| e["entry_type"] == "deadline_missed" && e["in_reply_to"] == second.as_str());
        let acked = l.iter().any(|e| e["entry_type"] == "acknowledged" && e["in_reply_to"] == first.as_str());
        Ok((missed && acked).then_some(l))
    })
    .await?;
    ensure!(!Value::from(ledger).to_string().contains(SURVIVOR_NAME), "the ledger holds no name");
    c.check(print, "the ledger holds the signed deadline_missed entry and the staff acknowledgement, and no name");
    s.ack(IDVA, &second, "accepted", "").await?;
    let still = s.get(IDVA, "/deadlines?state=escalated").await?;
    ensure!(!still.as_array().into_iter().flatten().any(|d| d["code"] == "acknowledge" && d["target"] == second.as_str()), "answering resolves the escalation: {still}");
    // The answer reaches the ledger through the outbox, the broker and the audit's next batch
    // (which waits up to 250 ms to fill): the report counts it once it is there.
    until("the report measuring both staff acknowledgements", || async {
        let report = s.get("audit", &format!("/report?since={today}&until={today}")).await?;
        Ok((report["acknowledgement"][IDVA][0].as_u64().unwrap_or_default() >= 2).then_some(()))
    })
    .await?;
    c.check(print, "a late answer resolves the escalation; the IG report measures time to the staff acknowledgements");
    hub.clock.advance(Duration::from_secs(24 * 3600));
    until("the untriaged concern escalated", || async {
        let e = s.get(HOUSING, "/deadlines?state=escalated").await?;
        Ok(e.as_array().into_iter().flatten().any(|d| d["code"] == "concern_triage" && d["target"] == concern.as_str()).then_some(()))
    })
    .await?;
    let (status, v) = s.post(HOUSING, &format!("/concerns/{concern}/triage"), json!({"decision": "open_case", "subject": subject, "case_ref": case})).await?;
    ensure!(status == 200 || status == 201, "triaging the concern: {status} {v}");
    let still = s.get(HOUSING, "/deadlines?state=escalated").await?;
    ensure!(!still.as_array().into_iter().flatten().any(|d| d["target"] == concern.as_str()), "triage resolves the escalation: {still}");
    c.check(print, "a caretaker's concern lands in the housing DA team's queue, escalates when not triaged within 72 hours, and is triaged");

    // ---------------------------------------------------------------- the person's record
    let (status, v) = s.post(HOUSING, "/flags", json!({"subject_ref": c.subject_ref, "code": "safe-contact-only", "review_on": runtime::chronology::date_of(isp::now_ms() + 30 * 86_400_000)})).await?;
    ensure!(status == 201, "raising a flag: {v}");
    let record = s.get(HOUSING, &format!("/people/{}", c.subject_ref)).await?;
    let events: Vec<&str> = record["chronology"].as_array().into_iter().flatten().filter_map(|e| e["event"].as_str()).collect();
    for expected in ["assessment", "disclosure_sent", "flag"] {
        ensure!(events.contains(&expected), "housing's chronology lacks {expected}: {events:?}");
    }
    let idva_record = s.get(IDVA, &format!("/people/{}", c.subject_ref)).await?;
    let idva_events: Vec<&str> = idva_record["chronology"].as_array().into_iter().flatten().filter_map(|e| e["event"].as_str()).collect();
    ensure!(idva_events.contains(&"disclosure_received") && idva_events.contains(&"acknowledged"), "the IDVA's chronology: {idva_events:?}");
    ensure!(idva_record["flags"].as_array().is_none_or(|f| f.is_empty()), "a flag stays at the agency that raised it: {idva_record}");
    c.check(print, format!("housing's chronology of her holds {} events, the IDVA's {}; the flag stays at housing", events.len(), idva_events.len()));
    Ok(c)
}
