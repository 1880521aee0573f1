//! A perpetrator pathway that moves, survivor-led, on real components and both storage
//! backends. What users found wrong, each tested here: pathway cases stayed `new` forever
//! (now a state machine, every step with who and when, a step out of order refused with the
//! steps that are possible); disengagement raised nothing (now an alert on the survivor's IDVA
//! case in the update's own transaction, escalated on the dashboard until the safety plan is
//! reviewed); `report_engagement_to` was not enforced (the service sends the updates itself,
//! only there; a progress update elsewhere is refused, and one sent elsewhere through the
//! generic API is revoked); the reason for referral never reached the pathway (now codes and a
//! summary it may receive, her location never); and there was no enforcement step and no
//! reference for the man himself (enforcement requests to housing, led by what she wants; a
//! pseudonym of the pathway's own, so a repeat is known and his subject access answered).
//! Plus the `perpetrator` demo scenario.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use tests::{Backend, Partnership, Role, eventually};

const HOUSING: &str = "housing-northbridge";
const LANDLORD: &str = "riverside-homes";
const IDVA: &str = "idva-northbridge";
const PATHWAY: &str = "perpetrator-pathways";
const ADDRESS: &str = "17 Synthetic Lane, Northbridge NB1 9ZZ";
const PHONE: &str = "07700 900123";
const WAIT: Duration = Duration::from_secs(30);

fn survivor(n: usize) -> Value {
    json!({"full_name": format!("Synthetic Pathway Survivor {n}"), "date_of_birth": "1990-03-04"})
}

fn him(name: &str) -> Value {
    json!({"fullName": name, "dateOfBirth": "1985-06-07", "address": "4 Invented Road, Northbridge", "relationship": "ex-partner"})
}

/// Housing refers survivor `n` to the IDVA (consent given, a high DASH checklist) and the
/// IDVA accepts: her case is open there. Returns (IDVA case id, her subject ref, assessment id).
async fn idva_case(p: &Partnership, n: usize) -> anyhow::Result<(String, String, String)> {
    let subject = survivor(n);
    let assessment = tests::dash_assessment(p, HOUSING, &subject, 15).await?;
    let (status, consent) = p.post(HOUSING, "/consents", &json!({"subject": subject, "state": "given", "scope": {"roles": ["idva"], "purposes": ["safeguarding"]}})).await?;
    anyhow::ensure!(status == 201, "{consent}");
    let (status, sent) = p
        .post(HOUSING, "/disclosures", &json!({"to": IDVA, "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a", "consent": {"id": consent["consent_id"], "state": "given"},
            "assessment_id": assessment, "subject": subject, "case_ref": format!("HSG-2027-{n:04}"),
            "payload": {"idvaReferral": {"survivor": {"fullName": subject["full_name"], "dateOfBirth": subject["date_of_birth"]}, "reason": "Test", "survivorAware": true}}}))
        .await?;
    anyhow::ensure!(status == 201, "{sent}");
    let id = sent["envelope_id"].as_str().context("envelope id")?.to_owned();
    eventually("the IDVA case", WAIT, || async { Ok(p.get(IDVA, &format!("/cases/{id}")).await.ok()) }).await?;
    let subject_ref = p.get(HOUSING, "/dash-assessments").await?.as_array().into_iter().flatten().find(|a| a["id"] == assessment.as_str()).and_then(|a| a["subject_ref"].as_str().map(str::to_owned)).context("her ref")?;
    Ok((id, subject_ref, assessment))
}

/// A perpetrator referral of `from` about survivor `n`, reporting engagement to the IDVA.
fn referral(n: usize, perpetrator: Value, assessment: Option<&str>) -> Value {
    let subject = survivor(n);
    let mut r = json!({"to": PATHWAY, "purpose": "perpetrator-intervention", "lawful_basis": "cda-1998-s115", "subject": subject, "case_ref": format!("HSG-2027-{n:04}"),
        "payload": {"perpetratorReferral": {"perpetrator": perpetrator, "pathway": "PATHWAY_HIGH_HARM", "reportEngagementTo": IDVA,
            "survivor": {"fullName": subject["full_name"], "dateOfBirth": subject["date_of_birth"]},
            "reasons": ["REFERRAL_REASON_PHYSICAL_VIOLENCE", "REFERRAL_REASON_THREATS_TO_KILL"],
            "reasonSummary": "Assaults and threats to kill since the separation",
            "reason": format!("Lives at {ADDRESS}; call {PHONE} after 10:00")}}});
    if let Some(a) = assessment {
        r["assessment_id"] = json!(a);
    }
    r
}

/// Sends a referral and waits for the pathway's case; returns the case.
async fn refer(p: &Partnership, from: &str, body: &Value) -> anyhow::Result<Value> {
    let (status, sent) = p.post(from, "/disclosures", body).await?;
    anyhow::ensure!(status == 201, "the referral: {status} {sent}");
    let id = sent["envelope_id"].as_str().context("envelope id")?.to_owned();
    eventually("the pathway case", WAIT, || async { Ok(p.get(PATHWAY, &format!("/cases/{id}")).await.ok()) }).await
}

async fn step(p: &Partnership, id: &str, step: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    p.post(PATHWAY, &format!("/cases/{id}/{step}"), &body).await
}

/// GET as the least powerful allowed role: status and JSON, whatever the status.
async fn get(p: &Partnership, agency: &str, path: &str) -> anyhow::Result<(u16, Value)> {
    let response = p.client(agency, "GET", path).await?.get(format!("{}{path}", p.url(agency))).send().await?;
    Ok((response.status().as_u16(), response.json().await.unwrap_or(Value::Null)))
}

/// A console page as a browser asks for it (redirects followed): status, where it ended, HTML.
async fn page(p: &Partnership, agency: &str, path: &str, form: Option<&[(&str, &str)]>) -> anyhow::Result<(u16, String, String)> {
    let http = p.as_role(agency, Role::Caseworker).await?;
    let url = format!("{}{path}", p.url(agency));
    let response = match form {
        Some(f) => http.post(url).form(f).send().await?,
        None => http.get(url).send().await?,
    };
    let (status, at) = (response.status().as_u16(), response.url().path().to_owned());
    Ok((status, at, response.text().await?))
}

/// The updates the IDVA filed under its case `id`.
async fn at_idva(p: &Partnership, id: &str) -> anyhow::Result<Vec<Value>> {
    Ok(p.get(IDVA, &format!("/cases/{id}")).await?["engagement_updates"].as_array().cloned().unwrap_or_default())
}

// ---------------------------------------------------------------- moves, reasons, the named advocate

async fn moves_reasons_and_the_named_advocate_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let (idva_id, her_ref, assessment) = idva_case(&p, 1).await?;

    // Her address and contact never reach the pathway: a referral carrying them is refused whole.
    let mut carrying = referral(1, him("Barnaby Synthetic-Harmer"), Some(&assessment));
    carrying["payload"]["perpetratorReferral"]["survivor"]["address"] = json!(ADDRESS);
    carrying["payload"]["perpetratorReferral"]["survivor"]["phone"] = json!(PHONE);
    let (status, v) = p.post(HOUSING, "/disclosures", &carrying).await?;
    assert_eq!((status, v["rule"].as_str()), (403, Some("roles.perpetrator.never")), "{v}");
    let forbidden: Vec<&str> = v["forbidden"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert!(forbidden.contains(&"survivor.address") && forbidden.contains(&"survivor.contact"), "{v}");

    // The reason travels as codes and a summary; the referrer's narrative (which names where
    // she lives) is minimised away.
    let (status, sent) = p.post(HOUSING, "/disclosures", &referral(1, him("Barnaby Synthetic-Harmer"), Some(&assessment))).await?;
    assert_eq!(status, 201, "{sent}");
    let removed: Vec<&str> = sent["removed"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let categories: Vec<&str> = sent["categories"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert!(removed.contains(&"referral.narrative"), "{sent}");
    assert!(categories.contains(&"referral.reason") && categories.contains(&"referral.reason_summary"), "{sent}");
    let id = sent["envelope_id"].as_str().unwrap().to_owned();
    let case = eventually("the pathway case", WAIT, || async { Ok(p.get(PATHWAY, &format!("/cases/{id}")).await.ok()) }).await?;

    // Bug: cases stayed `new`. Now referred, with the risk proved and the reasons.
    assert_eq!(case["status"], "referred", "{case}");
    assert_eq!(case["risk"], "high", "{case}");
    assert_eq!(case["reasons"], json!(["physical_violence", "threats_to_kill"]), "{case}");
    assert_eq!(case["reason_summary"], "Assaults and threats to kill since the separation", "{case}");
    assert_eq!(case["allowed_steps"], json!(["assess"]), "{case}");
    let link = case["subject_ref"].as_str().unwrap().to_owned();
    assert!(link.starts_with("l-") && link != her_ref, "{case}");
    let inbox = p.get(PATHWAY, &format!("/inbox/{id}")).await?;
    let everything = format!("{inbox}{case}");
    for secret in [ADDRESS, PHONE, "after 10:00"] {
        assert!(!everything.contains(secret), "the pathway holds {secret:?}: {everything}");
    }
    assert!(inbox["payload"]["perpetratorReferral"].get("reason").is_none(), "{inbox}");
    // The summary is sealed at rest.
    {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let mut db = sqlx::AnyConnection::connect(&p.database_url(PATHWAY).await?).await?;
        let (stored,): (String,) = sqlx::query_as("SELECT reason_summary FROM pathway_cases WHERE envelope_id = $1").bind(&id).fetch_one(&mut db).await?;
        assert!(!stored.contains("threats") && !stored.is_empty(), "the summary is stored in clear");
    }

    // Out of order: refused with the steps that are possible.
    for out_of_order in ["engaged", "disengaged", "completed"] {
        let (status, v) = step(&p, &id, out_of_order, json!({})).await?;
        assert_eq!((status, v["error"].as_str(), &v["allowed_steps"]), (409, Some("invalid_transition"), &json!(["assess"])), "{out_of_order}: {v}");
    }
    let (status, v) = step(&p, &id, "enforcement", json!({"action": "injunction", "survivor_wishes": "supports", "grounds": "x"})).await?;
    assert_eq!((status, v["error"].as_str()), (409, Some("invalid_transition")), "{v}");
    let (status, v) = step(&p, "not-an-id", "assess", json!({})).await?;
    assert_eq!((status, v["error"].as_str()), (400, Some("bad_clear_field")), "{v}");
    assert!(!v.to_string().contains("not-an-id"), "{v}");
    let (status, v) = step(&p, &id, "assess", json!({"note": "Suitable", "colour": "red"})).await?;
    assert_eq!(status, 400, "{v}");

    // Assessed, engaged: the engagement update goes by itself to the advocate named at
    // referral, filed under her case there.
    let (status, v) = step(&p, &id, "assess", json!({"note": "Suitable for case management"})).await?;
    assert_eq!((status, v["status"].as_str()), (200, Some("assessed")), "{v}");
    let (status, v) = step(&p, &id, "assess", json!({})).await?;
    assert_eq!((status, &v["allowed_steps"]), (409, &json!(["engaged", "disengaged", "enforcement"])), "{v}");
    let (status, v) = step(&p, &id, "engaged", json!({"note": "Came to the first session"})).await?;
    assert_eq!((status, v["status"].as_str()), (200, Some("engaged")), "{v}");
    let told = eventually("the IDVA told he engaged", WAIT, || async { Ok(at_idva(&p, &idva_id).await?.first().cloned()) }).await?;
    assert_eq!((told["engagement"].as_str(), told["pathway_agency"].as_str(), told["note"].as_str()), (Some("ENGAGEMENT_ENGAGED"), Some(PATHWAY), Some("Came to the first session")), "{told}");
    let engagement = p.get(IDVA, "/engagement").await?;
    let filed = engagement.as_array().unwrap().iter().find(|e| e["envelope_id"] == told["envelope_id"]).cloned().unwrap();
    assert_eq!((filed["subject_ref"].as_str(), filed["case_id"].as_str()), (Some(her_ref.as_str()), Some(idva_id.as_str())), "{filed}");

    // A progress update goes only there: to another agency it is refused.
    let (status, v) = step(&p, &id, "engagement-updates", json!({"note": "Attending", "to": LANDLORD})).await?;
    assert_eq!((status, v["error"].as_str(), v["report_engagement_to"].as_str()), (409, Some("not_named_at_referral"), Some(IDVA)), "{v}");
    let (status, v) = step(&p, &id, "engagement-updates", json!({"note": "Attending", "to": "Not An Agency!"})).await?;
    assert_eq!((status, v["error"].as_str()), (400, Some("bad_clear_field")), "{v}");
    assert!(!v.to_string().contains("Not An Agency"), "{v}");
    let (status, v) = step(&p, &id, "engagement-updates", json!({"note": ""})).await?;
    assert_eq!(status, 400, "{v}");
    let (status, v) = step(&p, &id, "engagement-updates", json!({"note": "Attending well", "to": IDVA})).await?;
    assert_eq!((status, v["recipient"].as_str()), (201, Some(IDVA)), "{v}");

    // Sent elsewhere through the generic API (which the pathway cannot stop), it is revoked by
    // the service at once; sent to the named advocate, it stands.
    let generic = |to: &str| json!({"to": to, "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-e", "subject_ref": link, "in_reply_to": id,
        "payload": {"perpetratorEngagementUpdate": {"engagement": "ENGAGEMENT_ENGAGED", "asOf": "2027-01-20", "pathway": "PATHWAY_HIGH_HARM", "note": "Sent by hand"}}});
    let (status, elsewhere) = p.post(PATHWAY, "/disclosures", &generic(LANDLORD)).await?;
    assert_eq!(status, 201, "{elsewhere}");
    let elsewhere = elsewhere["envelope_id"].as_str().unwrap().to_owned();
    let (status, named) = p.post(PATHWAY, "/disclosures", &generic(IDVA)).await?;
    assert_eq!(status, 201, "{named}");
    let named = named["envelope_id"].as_str().unwrap().to_owned();
    eventually("the misdirected update revoked", WAIT, || async {
        let v = p.get(PATHWAY, &format!("/disclosures/{elsewhere}")).await?;
        Ok(["revoked", "revocation_confirmed"].contains(&v["status"].as_str().unwrap_or_default()).then_some(v))
    })
    .await?;
    eventually("the landlord no longer serves it", WAIT, || async { Ok((get(&p, LANDLORD, &format!("/inbox/{elsewhere}")).await?.0 == 410).then_some(())) }).await?;
    let chronology = p.get(PATHWAY, &format!("/people/{link}")).await?;
    assert!(chronology["chronology"].as_array().unwrap().iter().any(|e| e["event"] == "engagement_update_withdrawn" && e["item_id"] == elsewhere.as_str()), "{chronology}");
    let kept = p.get(PATHWAY, &format!("/disclosures/{named}")).await?;
    assert!(!["revoked", "revocation_confirmed"].contains(&kept["status"].as_str().unwrap_or_default()), "{kept}");

    // Every step with who and when; completed is the end.
    let (status, v) = step(&p, &id, "completed", json!({"note": "Programme completed"})).await?;
    assert_eq!((status, v["status"].as_str(), &v["allowed_steps"]), (200, Some("completed"), &json!([])), "{v}");
    let (status, v) = step(&p, &id, "engaged", json!({})).await?;
    assert_eq!(status, 409, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("completed"), "{v}");
    let done = p.get(PATHWAY, &format!("/cases/{id}")).await?;
    let steps: Vec<(&str, &str, &str)> = done["steps"].as_array().unwrap().iter().map(|s| (s["step"].as_str().unwrap(), s["to"].as_str().unwrap(), s["staff_id"].as_str().unwrap())).collect();
    assert_eq!(steps, vec![("assess", "assessed", "demo.caseworker"), ("engaged", "engaged", "demo.caseworker"), ("completed", "completed", "demo.caseworker")], "{done}");
    assert!(done["steps"].as_array().unwrap().iter().all(|s| s["at_ms"].as_i64().unwrap() > 0));
    let updates: Vec<(&str, &str, &str)> = done["engagement_updates"].as_array().unwrap().iter()
        .map(|u| (u["engagement"].as_str().unwrap(), u["recipient"].as_str().unwrap(), u["how"].as_str().unwrap())).collect();
    assert_eq!(updates, vec![("ENGAGEMENT_ENGAGED", IDVA, "automatic"), ("ENGAGEMENT_ENGAGED", IDVA, "progress"), ("ENGAGEMENT_COMPLETED", IDVA, "automatic")], "{done}");
    eventually("the IDVA told he completed", WAIT, || async { Ok(at_idva(&p, &idva_id).await?.iter().any(|u| u["engagement"] == "ENGAGEMENT_COMPLETED").then_some(())) }).await?;
    // Who sent each update is the member of staff who took the step.
    let sent_row = p.get(PATHWAY, &format!("/disclosures/{}", done["engagement_updates"][0]["envelope_id"].as_str().unwrap())).await?;
    assert_eq!(sent_row["sent_by"], "demo.caseworker", "{sent_row}");

    // The console: the caseload, a case with the forms its status allows, a step taken by form.
    let second = refer(&p, HOUSING, &referral(2, him("Cuthbert Synthetic-Harmer"), None)).await?;
    let second = second["id"].as_str().unwrap().to_owned();
    let (status, _, html) = page(&p, PATHWAY, "/console/cases", None).await?;
    assert!(status == 200 && html.contains(&format!("/console/cases/{second}")) && !html.contains(&format!("/console/cases/{id}\"")), "open cases only: {html}");
    let (status, _, html) = page(&p, PATHWAY, &format!("/console/cases/{second}"), None).await?;
    assert!(status == 200 && html.contains("Physical violence") && html.contains("Assaults and threats") && html.contains(&format!("action=\"/console/cases/{second}/assess\"")), "{html}");
    assert!(!html.contains(&format!("action=\"/console/cases/{second}/engaged\"")), "a form for a step the case cannot take");
    let (status, at, html) = page(&p, PATHWAY, &format!("/console/cases/{second}/engaged"), Some(&[("note", "")])).await?;
    assert!(status == 409 && html.contains("There is a problem") && html.contains("not been assessed"), "{status} {at}");
    let (status, at, html) = page(&p, PATHWAY, &format!("/console/cases/{second}/assess"), Some(&[("note", "Assessed from the console")])).await?;
    assert!(status == 200 && at.ends_with(&second) && html.contains("The assessment was recorded.") && html.contains("Assessed from the console"), "{status} {at}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moves_reasons_and_the_named_advocate_on_sqlite() -> anyhow::Result<()> {
    moves_reasons_and_the_named_advocate_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moves_reasons_and_the_named_advocate_on_postgres() -> anyhow::Result<()> {
    moves_reasons_and_the_named_advocate_on(Backend::Postgres).await
}

// ---------------------------------------------------------------- disengagement

async fn disengagement_alerts_her_case_at_once_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let (idva_id, her_ref, assessment) = idva_case(&p, 3).await?;
    let case = refer(&p, HOUSING, &referral(3, him("Desmond Synthetic-Harmer"), Some(&assessment))).await?;
    let id = case["id"].as_str().unwrap().to_owned();
    step(&p, &id, "assess", json!({})).await?;
    let (status, v) = step(&p, &id, "disengaged", json!({"note": "Refused to start; said he would find her"})).await?;
    assert_eq!((status, v["status"].as_str()), (200, Some("disengaged")), "{v}");
    let update = p.get(PATHWAY, &format!("/cases/{id}")).await?["engagement_updates"][0]["envelope_id"].as_str().unwrap().to_owned();

    // The moment the update is in the IDVA's inbox, the alert is on her case: one transaction.
    eventually("the update at the IDVA", WAIT, || async { Ok((get(&p, IDVA, &format!("/inbox/{update}")).await?.0 == 200).then_some(())) }).await?;
    let at = p.get(IDVA, &format!("/cases/{idva_id}")).await?;
    let alerts = at["perpetrator_alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{at}");
    assert_eq!((alerts[0]["envelope_id"].as_str(), alerts[0]["note"].as_str()), (Some(update.as_str()), Some("Refused to start; said he would find her")), "{at}");
    let deadline = p.get(IDVA, &format!("/deadlines?state=all&target={update}")).await?;
    assert_eq!((deadline[0]["code"].as_str(), deadline[0]["subject_ref"].as_str()), (Some("perpetrator_disengaged"), Some(her_ref.as_str())), "{deadline}");
    assert!(deadline[0]["due_at_ms"].as_i64().unwrap() <= at["updated_at_ms"].as_i64().unwrap(), "due at once: {deadline} {at}");
    let person = p.get(IDVA, &format!("/people/{her_ref}")).await?;
    assert!(person["chronology"].as_array().unwrap().iter().any(|e| e["event"] == "perpetrator_engagement" && e["code"] == "ENGAGEMENT_DISENGAGED" && e["counterpart"] == PATHWAY), "{person}");

    // Escalated at the watcher's next look: on the dashboard, the case page and the caseload.
    eventually("the escalation", WAIT, || async {
        let e = p.get(IDVA, "/deadlines?state=escalated").await?;
        Ok(e.as_array().unwrap().iter().any(|d| d["target"] == update.as_str() && d["code"] == "perpetrator_disengaged").then_some(()))
    })
    .await?;
    let (_, _, dashboard) = page(&p, IDVA, "/console", None).await?;
    assert!(dashboard.contains("Review the safety plan: the perpetrator disengaged"), "the dashboard: {dashboard}");
    let (_, _, html) = page(&p, IDVA, &format!("/console/cases/{idva_id}"), None).await?;
    assert!(html.contains("The perpetrator disengaged") && html.contains("Reviewing the safety plan: the perpetrator disengaged") && html.contains("safety-plan-reviewed"), "{html}");
    let (_, _, caseload) = page(&p, IDVA, "/console/cases", None).await?;
    assert!(caseload.contains("perpetrator disengaged"), "{caseload}");
    let ledger = eventually("the escalation in the ledger", WAIT, || async {
        let l = p.ledger().await?;
        Ok(l.iter().any(|e| e["entry_type"] == "deadline_missed" && e["in_reply_to"] == update.as_str()).then_some(l))
    })
    .await?;
    assert!(!Value::from(ledger).to_string().contains("find her"), "the note stays sealed");

    // Recording the review resolves it (by the console's form); once, then there is nothing.
    let (status, at, html) = page(&p, IDVA, &format!("/console/cases/{idva_id}/safety-plan-reviewed"), Some(&[("note", "Reviewed with her by phone")])).await?;
    assert!(status == 200 && at.ends_with(&idva_id) && html.contains("the disengagement alert is resolved") && !html.contains("The perpetrator disengaged</h2>"), "{status} {html}");
    let (status, v) = p.post(IDVA, &format!("/cases/{idva_id}/safety-plan-reviewed"), &json!({})).await?;
    assert_eq!((status, v["error"].as_str()), (409, Some("no_alert")), "{v}");
    let escalated = p.get(IDVA, "/deadlines?state=escalated").await?;
    assert!(!escalated.as_array().unwrap().iter().any(|d| d["target"] == update.as_str()), "{escalated}");
    let person = p.get(IDVA, &format!("/people/{her_ref}")).await?;
    assert!(person["chronology"].as_array().unwrap().iter().any(|e| e["event"] == "safety_plan_reviewed" && e["staff_id"] == "demo.caseworker" && e["detail"] == "Reviewed with her by phone"), "{person}");

    // He engages again, then disengages again: a new alert; a new version of the plan answers it.
    step(&p, &id, "engaged", json!({})).await?;
    step(&p, &id, "disengaged", json!({})).await?;
    eventually("the second alert", WAIT, || async { Ok(p.get(IDVA, &format!("/cases/{idva_id}")).await?["perpetrator_alerts"].as_array().is_some_and(|a| a.len() == 1).then_some(())) }).await?;
    let (status, v) = p.post(IDVA, &format!("/cases/{idva_id}/safety-plan"), &json!({"sections": {"immediate_safety": "Police marker on the address"}})).await?;
    assert_eq!(status, 201, "{v}");
    let at = p.get(IDVA, &format!("/cases/{idva_id}")).await?;
    assert!(at["perpetrator_alerts"].as_array().unwrap().is_empty(), "{at}");
    let kinds: Vec<&str> = at["engagement_updates"].as_array().unwrap().iter().map(|u| u["engagement"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ENGAGEMENT_DISENGAGED", "ENGAGEMENT_ENGAGED", "ENGAGEMENT_DISENGAGED"], "{at}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disengagement_alerts_her_case_at_once_on_sqlite() -> anyhow::Result<()> {
    disengagement_alerts_her_case_at_once_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disengagement_alerts_her_case_at_once_on_postgres() -> anyhow::Result<()> {
    disengagement_alerts_her_case_at_once_on(Backend::Postgres).await
}

// ---------------------------------------------------------------- repeats, his records, enforcement

async fn repeats_his_records_and_enforcement_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    // The same man referred by housing and by a housing association, spelt differently, about
    // two survivors; another man; and a referral without his date of birth.
    let first = refer(&p, HOUSING, &referral(4, him("Edmund Synthetic-Harmer"), None)).await?;
    let mut by_landlord = referral(5, json!({"fullName": "EDMUND  SYNTHETIC-HARMER", "dateOfBirth": "1985-06-07"}), None);
    by_landlord["lawful_basis"] = json!("uk-gdpr-6-1-e");
    let second = refer(&p, LANDLORD, &by_landlord).await?;
    let other = refer(&p, HOUSING, &referral(6, him("Fergus Synthetic-Harmer"), None)).await?;
    let unknown = refer(&p, HOUSING, &referral(7, json!({"fullName": "Edmund Synthetic-Harmer"}), None)).await?;
    let his = first["perpetrator_ref"].as_str().unwrap().to_owned();
    assert!(his.starts_with("p-") && his.len() == 34, "{first}");
    assert_eq!(second["perpetrator_ref"], his.as_str(), "{second}");
    assert_eq!((second["repeat"].as_bool(), second["other_referrals"][0]["id"].as_str(), second["other_referrals"][0]["referrer"].as_str()), (Some(true), first["id"].as_str(), Some(HOUSING)), "{second}");
    assert_eq!((other["repeat"].as_bool(), unknown["repeat"].as_bool(), unknown["perpetrator_ref"].as_str()), (Some(false), Some(false), Some("")), "{other} {unknown}");
    assert_ne!(first["subject_ref"], second["subject_ref"], "two survivors");

    // His subject access request: his cases here, by the reference or by name and date of birth.
    let records = p.get(PATHWAY, &format!("/perpetrators/{his}")).await?;
    let ids: Vec<&str> = records["cases"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first["id"].as_str().unwrap(), second["id"].as_str().unwrap()], "{records}");
    assert!(!records.to_string().contains("\"l-"), "his records carry a survivor's link token: {records}");
    let (status, found) = p.post(PATHWAY, "/perpetrators", &json!({"full_name": "edmund synthetic-harmer", "date_of_birth": " 1985-06-07 "})).await?;
    assert_eq!((status, found["perpetrator_ref"].as_str()), (200, Some(his.as_str())), "{found}");
    let (status, v) = p.post(PATHWAY, "/perpetrators", &json!({"full_name": "Edmund Synthetic-Harmer", "date_of_birth": "07/06/1985"})).await?;
    assert!(status == 400 && !v.to_string().contains("07/06") && v["detail"].as_str().unwrap().contains("date_of_birth"), "{v}");
    let (status, v) = get(&p, PATHWAY, "/perpetrators/Edmund").await?;
    assert!(status == 400 && !v.to_string().contains("Edmund"), "{v}");
    let (status, v) = get(&p, PATHWAY, "/perpetrators/p-00000000000000000000000000000000").await?;
    assert_eq!((status, v["cases"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
    // The console: found by a posted form, addressed by the reference, never the name.
    let (status, at, html) = page(&p, PATHWAY, "/console/perpetrators", Some(&[("full_name", "Edmund Synthetic-Harmer"), ("date_of_birth", "1985-06-07")])).await?;
    assert!(status == 200 && at == format!("/console/perpetrators/{his}") && html.contains("HSG-2027-0004") && html.contains("HSG-2027-0005"), "{status} {at}");
    let (_, _, html) = page(&p, PATHWAY, &format!("/console/cases/{}", second["id"].as_str().unwrap()), None).await?;
    assert!(html.contains("Known to this pathway before") && html.contains("His other referrals here"), "{html}");
    let (_, _, caseload) = page(&p, PATHWAY, "/console/cases", None).await?;
    assert!(caseload.contains("repeat: 2 referrals"), "{caseload}");

    // Enforcement, led by what the survivor wants.
    let id = first["id"].as_str().unwrap().to_owned();
    let enforce = |wishes: &str, action: &str| json!({"action": action, "survivor_wishes": wishes, "grounds": "Damage and threats at the property"});
    step(&p, &id, "assess", json!({})).await?;
    for (wishes, error) in [("opposes", "survivor_led"), ("not_known", "survivor_led")] {
        let (status, v) = step(&p, &id, "enforcement", enforce(wishes, "injunction")).await?;
        assert_eq!((status, v["error"].as_str()), (409, Some(error)), "{v}");
    }
    let (status, v) = step(&p, &id, "enforcement", enforce("maybe", "injunction")).await?;
    assert!(status == 400 && v["detail"].as_str().unwrap().contains("supports, opposes, not_known"), "{v}");
    let (status, v) = step(&p, &id, "enforcement", enforce("supports", "eviction")).await?;
    assert!(status == 400 && v["detail"].as_str().unwrap().contains("injunction, possession_proceedings, tenancy_action"), "{v}");
    let (status, v) = step(&p, &id, "enforcement", json!({"action": "injunction", "survivor_wishes": "supports", "grounds": " "})).await?;
    assert_eq!(status, 400, "{v}");
    let (status, v) = step(&p, &id, "enforcement", json!({"action": "injunction", "survivor_wishes": "supports", "grounds": "x", "housing_provider": IDVA})).await?;
    assert_eq!(status, 400, "an IDVA is no housing provider: {v}");
    let (status, v) = step(&p, &id, "enforcement", enforce("supports", "injunction")).await?;
    assert_eq!((status, v["case"]["status"].as_str(), v["housing_provider"].as_str()), (201, Some("enforcement"), Some(HOUSING)), "the referrer by default: {v}");
    let request = v["envelope_id"].as_str().unwrap().to_owned();
    let at_housing = eventually("the request at housing", WAIT, || async { Ok(p.get(HOUSING, &format!("/inbox/{request}")).await.ok()) }).await?;
    assert_eq!((at_housing["kind"].as_str(), at_housing["rule"].as_str()), (Some("perpetrator.enforcement_request"), Some("perpetrator-enforcement")), "{at_housing}");
    let asked = &at_housing["payload"]["perpetratorEnforcementRequest"];
    assert_eq!((asked["action"].as_str(), asked["survivorWantsAction"].as_bool(), asked["perpetrator"]["fullName"].as_str(), asked["pathwayCase"].as_str()),
        (Some("ENFORCEMENT_ACTION_INJUNCTION"), Some(true), Some("Edmund Synthetic-Harmer"), Some(id.as_str())), "{at_housing}");
    assert!(!at_housing.to_string().contains("Synthetic Pathway Survivor"), "the request names her: {at_housing}");
    let owed = p.get(HOUSING, "/deadlines?state=open").await?;
    assert!(owed.as_array().unwrap().iter().any(|d| d["code"] == "acknowledge" && d["target"] == request.as_str()), "housing owes an answer: {owed}");
    let (status, v) = p.post(HOUSING, &format!("/inbox/{request}/ack"), &json!({"status": "declined", "reason": "He is not our tenant"})).await?;
    assert!(status == 200 || status == 201, "{v}");
    let answered = eventually("housing's answer at the pathway", WAIT, || async {
        let c = p.get(PATHWAY, &format!("/cases/{id}")).await?;
        Ok((c["enforcement"][0]["answer"] == "declined").then_some(c))
    })
    .await?;
    assert_eq!((answered["enforcement"][0]["answered_by"].as_str(), answered["enforcement"][0]["grounds"].as_str()), (Some("demo.caseworker"), Some("Damage and threats at the property")), "{answered}");
    // Another step while enforcement is under way, with the landlord, by the console's form.
    let (status, at, html) = page(&p, PATHWAY, &format!("/console/cases/{id}/enforcement"),
        Some(&[("action", "possession_proceedings"), ("housing_provider", LANDLORD), ("survivor_wishes", "supports"), ("grounds", "Breach of tenancy: threats to neighbours")])).await?;
    assert!(status == 200 && at.ends_with(&id) && html.contains("sent to the housing provider") && html.contains("Possession proceedings"), "{status} {html}");
    let (status, _, html) = page(&p, PATHWAY, &format!("/console/cases/{id}/enforcement"), Some(&[("action", "injunction"), ("survivor_wishes", "opposes"), ("grounds", "x")])).await?;
    assert!(status == 409 && html.contains("led by what the survivor wants"), "{status}");
    let c = p.get(PATHWAY, &format!("/cases/{id}")).await?;
    let steps: Vec<&str> = c["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!((c["status"].as_str(), steps), (Some("enforcement"), vec!["assess", "enforcement", "enforcement"]), "{c}");
    let providers: Vec<&str> = c["enforcement"].as_array().unwrap().iter().map(|e| e["housing_provider"].as_str().unwrap()).collect();
    assert_eq!(providers, [HOUSING, LANDLORD], "{c}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeats_his_records_and_enforcement_on_sqlite() -> anyhow::Result<()> {
    repeats_his_records_and_enforcement_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeats_his_records_and_enforcement_on_postgres() -> anyhow::Result<()> {
    repeats_his_records_and_enforcement_on(Backend::Postgres).await
}

// ---------------------------------------------------------------- the demo scenario

async fn the_demo_scenario_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let checks = hub::perpetrator_demo::play(&p.hub, &p.logins, false).await?;
    assert_eq!(checks.len(), 9, "{checks:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_scenario_on_sqlite() -> anyhow::Result<()> {
    the_demo_scenario_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_scenario_on_postgres() -> anyhow::Result<()> {
    the_demo_scenario_on(Backend::Postgres).await
}
