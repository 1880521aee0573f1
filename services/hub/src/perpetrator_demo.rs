//! `hub demo --scenario perpetrator`: a perpetrator pathway that moves, led by what the
//! survivor wants, played through the services' HTTP APIs as staff would, with synthetic
//! data; every check is `ensure!`d.
//!
//! Housing records a high DASH checklist, refers the survivor to the IDVA and the man who
//! harms her to a pathway naming the assessment, with the reasons for referral the pathway may
//! see (her address and phone refused whole, the referrer's own narrative minimised away).
//! The pathway assesses him; he engages and the IDVA's case is told by the pathway's service
//! itself, and a progress update to any other agency is refused. A housing association refers
//! the same man: the pathway knows him for a repeat, and finds his cases by name and date of
//! birth for his subject access request. He disengages: the IDVA's case carries the alert at
//! once and the dashboard escalates it until the IDVA records the safety plan's review. The
//! survivor (through her advocate) wants an injunction: the pathway asks housing, which
//! accepts, and the answer is on the pathway's case.


use anyhow::{Context as _, ensure};
use serde_json::{Value, json};

use crate::demo::{Checks, until};
use crate::{
    demo::{Script, dash_answers},
    local::LocalHub,
    staff::Logins,
};

const HOUSING: &str = "housing-northbridge";
const LANDLORD: &str = "riverside-homes";
const IDVA: &str = "idva-northbridge";
const PATHWAY: &str = "perpetrator-pathways";

/// The synthetic man; his date of birth differs per run (a kept data directory may hold
/// earlier runs, which would otherwise be his "repeats").
const HIS_NAME: &str = "Barnaby Synthetic-Harmer";
const SURVIVOR_ADDRESS: &str = "17 Synthetic Lane, Northbridge NB1 9ZZ";
const SURVIVOR_PHONE: &str = "07700 900123";

/// A console page as a browser gets it: status and HTML.
async fn page(s: &Script<'_>, agency: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let base = s.hub.url(agency);
    let http = s.logins.for_request(agency, base, "GET", path).await?;
    let response = http.get(format!("{base}{path}")).send().await?;
    Ok((response.status().as_u16(), response.text().await?))
}

/// Plays the perpetrator pathway scenario on a running partnership; the checks that held.
pub async fn play(hub: &LocalHub, logins: &Logins, print: bool) -> anyhow::Result<Vec<String>> {
    let mut s = Script { hub, logins, report: Default::default(), print, before: Default::default(), near_misses_before: 0 };
    let mut c = Checks { print, held: Vec::new() };
    let run = rand::random::<u16>();
    let his_dob = format!("19{}-{:02}-{:02}", 70 + run % 25, 1 + run % 12, 1 + run % 28);
    let her_name = format!("Synthetic Pathway Survivor {}", ["Ada", "Bea", "Cleo", "Dora", "Edie", "Faye"][usize::from(run % 6)]);
    let her_dob = format!("19{}-{:02}-{:02}", 80 + run % 15, 1 + (run / 7) % 12, 1 + (run / 3) % 28);
    let subject = json!({"full_name": her_name, "date_of_birth": her_dob});
    let case_ref = format!("HSG-2027-{:04}", run % 10_000);

    // ---------------------------------------------------------------- the survivor's advocate
    let (status, dash) = s.post(HOUSING, "/dash-assessments", json!({"case_ref": case_ref, "subject": subject, "answers": dash_answers(16)})).await?;
    ensure!(status == 201 && dash["risk"] == "high", "recording the DASH checklist: {status} {dash}");
    let assessment = dash["id"].as_str().context("assessment id")?.to_owned();
    let (status, consent) = s.post(HOUSING, "/consents", json!({"subject": subject, "state": "given", "scope": {"roles": ["idva"], "purposes": ["safeguarding"]}})).await?;
    ensure!(status == 201, "recording consent: {consent}");
    let idva_referral = s
        .disclose(HOUSING, json!({"to": IDVA, "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a", "consent": {"id": consent["consent_id"], "state": "given"},
            "assessment_id": assessment, "subject": subject, "case_ref": case_ref,
            "payload": {"idvaReferral": {"survivor": {"fullName": her_name, "dateOfBirth": her_dob}, "reason": "Disclosed escalating abuse", "survivorAware": true}}}), false)
        .await?;
    s.ack(IDVA, &idva_referral, "accepted", "").await?;
    let idva_case = format!("/cases/{idva_referral}");
    ensure!(s.get(IDVA, &idva_case).await?["status"] == "awaiting_triage", "the IDVA opened her case");
    c.ok("housing records a high DASH checklist and refers the survivor to the IDVA, which opens her case");

    // ---------------------------------------------------------------- the referral, and why
    let him = json!({"fullName": HIS_NAME, "dateOfBirth": his_dob, "address": "4 Invented Road, Northbridge", "relationship": "ex-partner"});
    let mut referral = json!({"to": PATHWAY, "purpose": "perpetrator-intervention", "lawful_basis": "cda-1998-s115", "assessment_id": assessment,
        "subject": subject, "case_ref": case_ref,
        "payload": {"perpetratorReferral": {"perpetrator": him, "pathway": "PATHWAY_HIGH_HARM", "reportEngagementTo": IDVA,
            "survivor": {"fullName": her_name, "dateOfBirth": her_dob, "address": SURVIVOR_ADDRESS, "phone": SURVIVOR_PHONE},
            "reasons": ["REFERRAL_REASON_PHYSICAL_VIOLENCE", "REFERRAL_REASON_THREATS_TO_KILL", "REFERRAL_REASON_TENANCY_BREACH"],
            "reasonSummary": "Assaults and threats to kill since the separation; noise and damage reported by neighbours",
            "reason": format!("She lives at {SURVIVOR_ADDRESS} and asks us to call {SURVIVOR_PHONE}")}}});
    let (status, v) = s.post(HOUSING, "/disclosures", referral.clone()).await?;
    ensure!(status == 403 && v["rule"] == "roles.perpetrator.never", "the referral carrying her address and phone is refused whole: {status} {v}");
    referral["payload"]["perpetratorReferral"]["survivor"] = json!({"fullName": her_name, "dateOfBirth": her_dob});
    let (status, sent) = s.post(HOUSING, "/disclosures", referral.clone()).await?;
    ensure!(status == 201, "the referral without them: {status} {sent}");
    let removed: Vec<&str> = sent["removed"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    ensure!(removed.contains(&"referral.narrative") && !removed.contains(&"referral.reason"), "the narrative is minimised away, the reasons travel: {sent}");
    let first = sent["envelope_id"].as_str().context("envelope id")?.to_owned();
    s.report.delivered.insert(first.clone(), PATHWAY.to_owned());
    c.ok("housing refers him naming the high DASH assessment: with her address and phone the send is refused whole (a near miss); without them it goes, the referrer's narrative minimised away and the reasons kept");

    let case_path = format!("/cases/{first}");
    let case = until("the pathway case", || async { Ok(s.call(reqwest::Method::GET, PATHWAY, &case_path, None).await.ok().filter(|(st, _)| *st == 200).map(|(_, v)| v)) }).await?;
    ensure!(case["status"] == "referred" && case["risk"] == "high" && case["report_engagement_to"] == IDVA, "the pathway case: {case}");
    ensure!(case["reasons"] == json!(["physical_violence", "threats_to_kill", "tenancy_breach"]) && case["reason_summary"].as_str().is_some_and(|t| t.contains("threats to kill")), "the reasons: {case}");
    let his_ref = case["perpetrator_ref"].as_str().unwrap_or_default().to_owned();
    ensure!(his_ref.starts_with("p-"), "the pathway's reference of him: {case}");
    let at_pathway = s.get(PATHWAY, &format!("/inbox/{first}")).await?.to_string();
    ensure!(!at_pathway.contains(SURVIVOR_ADDRESS) && !at_pathway.contains(SURVIVOR_PHONE) && !at_pathway.contains("asks us to call"), "nothing locating her reached the pathway");
    s.ack(PATHWAY, &first, "accepted", "").await?;
    c.ok("the pathway's case opens `referred`, high risk proved, with the reason codes and the summary; nothing that locates her reached it");

    // ---------------------------------------------------------------- a case that moves
    let (status, v) = s.post(PATHWAY, &format!("{case_path}/engaged"), json!({})).await?;
    ensure!(status == 409 && v["allowed_steps"] == json!(["assess"]), "engaging him before assessment is refused: {status} {v}");
    let (status, v) = s.post(PATHWAY, &format!("{case_path}/assess"), json!({"note": "Suitable for high-harm case management"})).await?;
    ensure!(status == 200 && v["status"] == "assessed", "assessing: {status} {v}");
    let (status, v) = s.post(PATHWAY, &format!("{case_path}/engaged"), json!({"note": "Attended the first two sessions"})).await?;
    ensure!(status == 200 && v["status"] == "engaged", "engaging: {status} {v}");
    let told = until("the IDVA told he engaged", || async {
        let v = s.get(IDVA, &idva_case).await?;
        Ok(v["engagement_updates"].as_array().into_iter().flatten().find(|u| u["engagement"] == "ENGAGEMENT_ENGAGED").cloned())
    })
    .await?;
    ensure!(told["pathway_agency"] == PATHWAY && told["note"] == "Attended the first two sessions" && told["alert"] == false, "the update at the IDVA: {told}");
    c.ok("engaging him before the assessment is refused (409, naming assess); assessed, then engaged: the pathway's service itself tells her IDVA case");

    let (status, v) = s.post(PATHWAY, &format!("{case_path}/engagement-updates"), json!({"note": "Attending well", "to": LANDLORD})).await?;
    ensure!(status == 409 && v["error"] == "not_named_at_referral", "an update to another agency is refused: {status} {v}");
    let (status, v) = s.post(PATHWAY, &format!("{case_path}/engagement-updates"), json!({"note": "Attending well"})).await?;
    ensure!(status == 201 && v["recipient"] == IDVA, "a progress update to the named advocate: {status} {v}");
    c.ok("a progress update goes to the advocate named at referral; to any other agency it is refused (409)");

    // ---------------------------------------------------------------- a repeat
    let (status, again) = s
        .post(LANDLORD, "/disclosures", json!({"to": PATHWAY, "purpose": "perpetrator-intervention", "lawful_basis": "uk-gdpr-6-1-e", "case_ref": "RHA-2027-0007",
            "subject": {"full_name": "Synthetic Second Partner", "date_of_birth": "1995-02-03"},
            "payload": {"perpetratorReferral": {"perpetrator": {"fullName": HIS_NAME.to_uppercase(), "dateOfBirth": his_dob}, "pathway": "PATHWAY_BEHAVIOUR_CHANGE",
                "reasons": ["REFERRAL_REASON_COERCIVE_CONTROL"], "reasonSummary": "Controlling behaviour towards a new partner"}}}))
        .await?;
    ensure!(status == 201, "the housing association's referral: {status} {again}");
    let second = again["envelope_id"].as_str().context("envelope id")?.to_owned();
    let repeat = until("the second case", || async { Ok(s.call(reqwest::Method::GET, PATHWAY, &format!("/cases/{second}"), None).await.ok().filter(|(st, _)| *st == 200).map(|(_, v)| v)) }).await?;
    ensure!(repeat["repeat"] == true && repeat["perpetrator_ref"] == his_ref.as_str() && repeat["other_referrals"][0]["id"] == first.as_str(), "the repeat is recognised: {repeat}");
    let (status, html) = page(&s, PATHWAY, &format!("/console/cases/{second}")).await?;
    ensure!(status == 200 && html.contains("Known to this pathway before"), "the case page shows the repeat");
    let his = s.get(PATHWAY, &format!("/perpetrators/{his_ref}")).await?;
    ensure!(his["cases"].as_array().map(Vec::len) == Some(2), "his cases: {his}");
    let (status, found) = s.post(PATHWAY, "/perpetrators", json!({"full_name": format!("  {}", HIS_NAME.to_lowercase()), "date_of_birth": his_dob})).await?;
    ensure!(status == 200 && found["perpetrator_ref"] == his_ref.as_str(), "his records by name and date of birth: {status} {found}");
    ensure!(!his.to_string().contains("\"l-"), "his records carry no survivor's link token: {his}");
    c.ok(format!("{LANDLORD} refers the same man: the pathway knows him for a repeat (its own reference of him, {his_ref}), and his subject access request finds both cases"));

    // ---------------------------------------------------------------- he disengages
    let (status, v) = s.post(PATHWAY, &format!("{case_path}/disengaged"), json!({"note": "Missed three sessions; said he would 'sort her out'"})).await?;
    ensure!(status == 200 && v["status"] == "disengaged", "disengaging: {status} {v}");
    let alert = until("the disengagement alert at the IDVA", || async {
        let v = s.get(IDVA, &idva_case).await?;
        Ok(v["perpetrator_alerts"].as_array().and_then(|a| a.first()).cloned())
    })
    .await?;
    ensure!(alert["engagement"] == "ENGAGEMENT_DISENGAGED", "the alert: {alert}");
    let update_id = alert["envelope_id"].as_str().unwrap_or_default().to_owned();
    let (_, html) = page(&s, IDVA, &format!("/console/cases/{idva_referral}")).await?;
    ensure!(html.contains("The perpetrator disengaged") && html.contains("Record that the safety plan was reviewed"), "the IDVA case page shows the alert");
    until("the escalation on the IDVA's dashboard", || async {
        let escalated = s.get(IDVA, "/deadlines?state=escalated").await?;
        let on = escalated.as_array().into_iter().flatten().any(|d| d["code"] == "perpetrator_disengaged" && d["target"] == update_id.as_str());
        Ok(on.then_some(()))
    })
    .await?;
    let (_, dashboard) = page(&s, IDVA, "/console").await?;
    ensure!(dashboard.contains("Review the safety plan: the perpetrator disengaged"), "the dashboard lists the escalation");
    c.ok("he disengages: the IDVA case carries the alert at once (in the update's own transaction), and the dashboard escalates it");

    // ---------------------------------------------------------------- enforcement, survivor-led
    let enforcement = |wishes: &str| json!({"action": "injunction", "housing_provider": HOUSING, "survivor_wishes": wishes,
        "grounds": "Threats to kill and damage at the property since the separation"});
    let (status, v) = s.post(PATHWAY, &format!("{case_path}/enforcement"), enforcement("not_known")).await?;
    ensure!(status == 409 && v["error"] == "survivor_led", "enforcement nobody asked her about is refused: {status} {v}");
    let (status, step) = s.post(PATHWAY, &format!("{case_path}/enforcement"), enforcement("supports")).await?;
    ensure!(status == 201 && step["case"]["status"] == "enforcement", "the enforcement step: {status} {step}");
    let request = step["envelope_id"].as_str().context("the request's envelope id")?.to_owned();
    let at_housing = until("the request at housing", || async {
        Ok(s.call(reqwest::Method::GET, HOUSING, &format!("/inbox/{request}"), None).await.ok().filter(|(st, _)| *st == 200).map(|(_, v)| v))
    })
    .await?;
    let asked = &at_housing["payload"]["perpetratorEnforcementRequest"];
    ensure!(asked["action"] == "ENFORCEMENT_ACTION_INJUNCTION" && asked["survivorWantsAction"] == true && asked["perpetrator"]["fullName"] == HIS_NAME, "the request: {at_housing}");
    ensure!(!at_housing.to_string().contains(&her_name), "the request says nothing of her");
    let (status, v) = s.post(HOUSING, &format!("/inbox/{request}/ack"), json!({"status": "accepted", "reason": ""})).await?;
    ensure!(status == 201 || status == 200, "housing accepts: {status} {v}");
    until("housing's answer on the pathway's case", || async {
        let v = s.get(PATHWAY, &case_path).await?;
        Ok((v["enforcement"][0]["answer"] == "accepted").then_some(()))
    })
    .await?;
    c.ok("enforcement is led by her: refused until her advocate confirms she wants it; the injunction request reaches housing (his details, nothing of her), which accepts, and the answer is on the pathway's case");

    // ---------------------------------------------------------------- the IDVA reviews
    let (status, v) = s.post(IDVA, &format!("{idva_case}/safety-plan-reviewed"), json!({"note": "Reviewed with her by phone; police marker requested"})).await?;
    ensure!(status == 200 && v["alerts_resolved"] == 1, "the review: {status} {v}");
    let escalated = s.get(IDVA, "/deadlines?state=escalated").await?;
    ensure!(!escalated.as_array().into_iter().flatten().any(|d| d["target"] == update_id.as_str()), "the review resolves the escalation: {escalated}");
    let record = s.get(IDVA, &format!("/people/{}", dash["subject_ref"].as_str().unwrap_or_default())).await?;
    let events: Vec<&str> = record["chronology"].as_array().into_iter().flatten().filter_map(|e| e["event"].as_str()).collect();
    ensure!(events.contains(&"perpetrator_engagement") && events.contains(&"safety_plan_reviewed"), "her chronology at the IDVA: {events:?}");
    let (status, v) = s.post(PATHWAY, &format!("{case_path}/completed"), json!({"note": "Injunction granted; programme resumed and completed"})).await?;
    ensure!(status == 200 && v["status"] == "completed", "completing: {status} {v}");
    let done = s.get(PATHWAY, &case_path).await?;
    let sent: Vec<&str> = done["engagement_updates"].as_array().into_iter().flatten().filter_map(|u| u["engagement"].as_str()).collect();
    ensure!(sent == ["ENGAGEMENT_ENGAGED", "ENGAGEMENT_ENGAGED", "ENGAGEMENT_DISENGAGED", "ENGAGEMENT_COMPLETED"], "the updates sent: {sent:?}");
    ensure!(done["steps"].as_array().is_some_and(|st| st.iter().all(|x| x["staff_id"].as_str().is_some_and(|id| !id.is_empty()) && x["at_ms"].as_i64().is_some())), "every step with who and when: {done}");
    c.ok("the IDVA records the safety plan's review (the escalation resolves, her chronology holds both); the pathway completes, every step with who and when, every update to her advocate");
    Ok(c.held)
}
