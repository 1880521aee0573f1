//! IDVA casework on real components and both storage backends: a referral from housing
//! (consent recorded, DASH assessed) opens a case awaiting triage with a first-contact
//! deadline; the case walks triage, contact attempts, engaged, two safety plan versions and
//! closure, each step in the person's chronology with the staff member; invalid steps and bad
//! input are refused with what is wrong; notes and plans are sealed at rest; the deadline
//! missed escalates and reaches the ledger; a revoked referral closes its case; a withdrawn
//! consent flags the case once; the console shows the caseload and takes the forms.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use tests::{Backend, Partnership, Role, eventually};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
/// Free text that must never be stored in clear at the IDVA.
const SECRET: &str = "Synthetic Secret Phrase 7731";

fn subject(n: usize) -> Value {
    json!({"full_name": format!("Synthetic Casework Person {n}"), "date_of_birth": "1991-04-05"})
}

fn case_ref(n: usize) -> String {
    format!("HSG-2026-{:04}", 100 + n)
}

/// One referral from housing as a caseworker makes it: the survivor's consent recorded, a
/// DASH checklist (15 yes: high), then the referral naming both. Returns (envelope id, consent
/// id, subject ref).
async fn refer(p: &Partnership, n: usize) -> anyhow::Result<(String, String, String)> {
    let (status, consent) = p.post(HOUSING, "/consents", &json!({"subject": subject(n), "state": "given", "scope": {"roles": ["idva"], "purposes": ["safeguarding"]}})).await?;
    anyhow::ensure!(status == 201, "consent {n}: {status} {consent}");
    let consent_id = consent["consent_id"].as_str().context("no consent id")?.to_owned();
    let answers: Vec<&str> = (0..24).map(|i| if i < 15 { "yes" } else { "no" }).collect();
    let (status, dash) = p.post(HOUSING, "/dash-assessments", &json!({"case_ref": case_ref(n), "subject": subject(n), "answers": answers})).await?;
    anyhow::ensure!(status == 201 && dash["risk"] == "high", "assessment {n}: {status} {dash}");
    let referral = json!({
        "to": IDVA, "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a",
        "consent": {"id": consent_id, "state": "given"}, "assessment_id": dash["id"], "subject": subject(n), "case_ref": case_ref(n),
        "payload": {"idvaReferral": {"survivor": {"fullName": subject(n)["full_name"], "dateOfBirth": "1991-04-05"}, "reason": "Test referral", "survivorAware": true}}
    });
    let (status, sent) = p.post(HOUSING, "/disclosures", &referral).await?;
    anyhow::ensure!(status == 201, "referral {n}: {status} {sent}");
    Ok((sent["envelope_id"].as_str().context("no envelope id")?.to_owned(), consent_id, dash["subject_ref"].as_str().context("no subject ref")?.to_owned()))
}

async fn case(p: &Partnership, id: &str) -> anyhow::Result<Value> {
    p.get(IDVA, &format!("/cases/{id}")).await
}

async fn step(p: &Partnership, id: &str, step: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    p.post(IDVA, &format!("/cases/{id}/{step}"), &body).await
}

/// Every value of `column` in `table` of the IDVA's database, as stored.
async fn stored(p: &Partnership, sql: &str) -> anyhow::Result<Vec<String>> {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&p.database_url(IDVA).await?).await?;
    let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(&mut conn).await?;
    conn.close().await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

async fn casework_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let caseworker = hub::staff::demo_id(Role::Caseworker);
    // A walks the whole way, B is left alone (its deadline escalates), C is revoked, D's
    // consent is withdrawn.
    let (a, _, a_subject) = refer(&p, 1).await?;
    let (b, _, _) = refer(&p, 2).await?;
    let (c, _, _) = refer(&p, 3).await?;
    let (d, d_consent, d_subject) = refer(&p, 4).await?;

    // ------------------------------------------------------------ a case awaiting triage
    for id in [&a, &b, &c, &d] {
        eventually("the referral opening a case at the IDVA", Duration::from_secs(60), || async { Ok(case(&p, id).await.ok()) }).await?;
    }
    let opened = case(&p, &a).await?;
    assert_eq!((opened["status"].as_str(), opened["risk"].as_str(), opened["case_ref"].as_str()), (Some("awaiting_triage"), Some("high"), Some(case_ref(1).as_str())), "{opened}");
    assert_eq!(opened["subject_ref"], a_subject.as_str());
    assert_eq!(opened["contact"], "due");
    let due = opened["contact_due_ms"].as_i64().unwrap();
    assert_eq!(due - opened["received_at_ms"].as_i64().unwrap(), 48 * 3_600_000, "first contact is due 48 hours after receipt (the policy's idva_contact_hours)");
    let contact = opened["deadlines"].as_array().unwrap().iter().find(|d| d["code"] == "idva_contact").cloned().context("no contact deadline on the case")?;
    assert_eq!((contact["state"].as_str(), contact["due_at_ms"].as_i64(), contact["target"].as_str()), (Some("open"), Some(due), Some(a.as_str())), "{contact}");
    assert_eq!(opened["allowed_steps"], json!(["triage", "close"]));
    let listed = p.list(IDVA, "/cases?status=awaiting_triage", "envelope_id").await?;
    assert_eq!(listed.len(), 4, "{listed:?}");

    // ------------------------------------------------------------ refused: bad input, invalid steps
    let (status, v) = step(&p, &a, "contact-attempts", json!({"method": "phone", "outcome": "no_answer"})).await?;
    assert_eq!((status, v["error"].as_str(), v["status"].as_str()), (409, Some("invalid_transition"), Some("awaiting_triage")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("triage it before attempting contact"), "{v}");
    let (status, v) = step(&p, &a, "triage", json!({"priority": "very high"})).await?;
    assert_eq!((status, v["detail"].as_str()), (400, Some("priority is one of urgent, high, standard")), "{v}");
    let (status, v) = step(&p, &a, "triage", json!({"priority": "urgent", "colour": "red"})).await?;
    assert_eq!(status, 400, "an unknown field is refused: {v}");
    let (status, v) = step(&p, "not-a-case-id", "triage", json!({"priority": "urgent"})).await?;
    assert_eq!((status, v["error"].as_str(), v["field"].as_str()), (400, Some("bad_clear_field"), Some("id")), "{v}");
    let (status, v) = step(&p, "01900000-0000-7000-8000-000000000000", "triage", json!({"priority": "urgent"})).await?;
    assert_eq!(status, 404, "{v}");
    let (status, v) = p.get(IDVA, "/cases?status=lost").await.map(|v| (200, v)).unwrap_or((400, Value::Null));
    assert_eq!(status, 400, "an unknown status filter is refused: {v}");

    // ------------------------------------------------------------ the state machine, step by step
    let (status, v) = step(&p, &a, "triage", json!({"priority": "urgent", "note": format!("triage {SECRET}")})).await?;
    assert_eq!((status, v["status"].as_str(), v["priority"].as_str(), v["triaged_by"].as_str()), (200, Some("triaged"), Some("urgent"), Some(caseworker.as_str())), "{v}");
    let (status, v) = step(&p, &a, "triage", json!({"priority": "high"})).await?;
    assert_eq!((status, v["error"].as_str()), (409, Some("invalid_transition")), "triaged once: {v}");
    let (status, v) = step(&p, &a, "contact-attempts", json!({"method": "carrier pigeon", "outcome": "no_answer"})).await?;
    assert_eq!((status, v["detail"].as_str()), (400, Some("method is one of phone, text, email, in_person, letter, via_professional")), "{v}");
    let (status, v) = step(&p, &a, "contact-attempts", json!({"method": "phone", "outcome": "no_answer", "note": format!("rang twice {SECRET}")})).await?;
    assert_eq!((status, v["case"]["status"].as_str(), v["case"]["contact"].as_str()), (201, Some("contact_attempted"), Some("met")), "{v}");
    let (status, v) = step(&p, &a, "engaged", json!({})).await?;
    assert_eq!((status, v["error"].as_str()), (409, Some("invalid_transition")), "engaged needs an attempt that reached the survivor: {v}");
    assert!(v["detail"].as_str().unwrap().contains("reached"), "{v}");
    let (status, v) = step(&p, &a, "not-reached", json!({})).await?;
    assert_eq!((status, v["status"].as_str()), (200, Some("not_reached")), "{v}");
    let (status, v) = step(&p, &a, "engaged", json!({})).await?;
    assert_eq!(status, 409, "{v}");
    let (status, v) = step(&p, &a, "contact-attempts", json!({"method": "text", "outcome": "reached"})).await?;
    assert_eq!((status, v["case"]["status"].as_str()), (201, Some("contact_attempted")), "trying again: {v}");
    let (status, v) = step(&p, &a, "engaged", json!({"note": "agreed to weekly calls"})).await?;
    assert_eq!((status, v["status"].as_str()), (200, Some("engaged")), "{v}");

    // The safety plan: versions kept, a stale save refused.
    let plan = |version: i64, text: &str| json!({"sections": {"immediate_safety": format!("{text} {SECRET}"), "agreed_actions": "call weekly"}, "based_on_version": version});
    let (status, v) = step(&p, &a, "safety-plan", json!({"sections": {}})).await?;
    assert_eq!(status, 400, "an empty plan is refused: {v}");
    let (status, v) = step(&p, &a, "safety-plan", json!({"sections": {"immediate_safety": "x", "pets": "y"}})).await?;
    assert_eq!(status, 400, "an unknown section is refused: {v}");
    let (status, v) = step(&p, &a, "safety-plan", plan(0, "first plan")).await?;
    assert_eq!((status, v["version"].as_i64()), (201, Some(1)), "{v}");
    let (status, v) = step(&p, &a, "safety-plan", plan(1, "second plan")).await?;
    assert_eq!((status, v["version"].as_i64()), (201, Some(2)), "{v}");
    let (status, v) = step(&p, &a, "safety-plan", plan(1, "changed from the first")).await?;
    assert_eq!(status, 409, "a save based on an old version is refused, not lost silently: {v}");
    let versions = p.get(IDVA, &format!("/cases/{a}/safety-plan")).await?;
    let versions = versions["versions"].as_array().context("no versions")?;
    assert_eq!(versions.iter().map(|v| v["version"].as_i64().unwrap()).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(versions[0]["sections"]["immediate_safety"], format!("first plan {SECRET}"));
    assert_eq!(versions[1]["sections"]["immediate_safety"], format!("second plan {SECRET}"));
    assert!(versions.iter().all(|v| v["saved_by"] == caseworker.as_str()));

    // Closed with an outcome from the list; closed stays closed.
    let (status, v) = step(&p, &a, "close", json!({"outcome": "referral_revoked"})).await?;
    assert_eq!(status, 400, "referral_revoked is the service's own outcome: {v}");
    let (status, v) = step(&p, &a, "close", json!({"outcome": "all better"})).await?;
    assert_eq!(status, 400, "{v}");
    let (status, v) = step(&p, &a, "close", json!({"outcome": "risk_reduced", "note": format!("closing {SECRET}")})).await?;
    assert_eq!((status, v["status"].as_str(), v["outcome"].as_str(), v["closed_by"].as_str()), (200, Some("closed"), Some("risk_reduced"), Some(caseworker.as_str())), "{v}");
    for (s, body) in [("triage", json!({"priority": "high"})), ("contact-attempts", json!({"method": "phone", "outcome": "reached"})), ("close", json!({"outcome": "risk_reduced"}))] {
        let (status, v) = step(&p, &a, s, body).await?;
        assert_eq!((status, v["error"].as_str()), (409, Some("invalid_transition")), "{s} on a closed case: {v}");
    }
    let (status, v) = step(&p, &a, "safety-plan", plan(2, "after closing")).await?;
    assert_eq!(status, 409, "{v}");
    let whole = case(&p, &a).await?;
    assert_eq!(whole["attempts"].as_array().unwrap().len(), 2, "{whole}");
    assert_eq!(whole["attempts"][0]["note"], format!("rang twice {SECRET}"));
    assert_eq!(whole["safety_plan_versions"].as_array().unwrap().len(), 2);
    assert_eq!(whole["escalations"], json!([]));

    // Each step is in the person's chronology, with who took it.
    let person = p.get(IDVA, &format!("/people/{a_subject}")).await?;
    let steps: Vec<(String, String, String)> = person["chronology"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["item_id"] == a.as_str())
        .map(|e| (e["event"].as_str().unwrap().to_owned(), e["code"].as_str().unwrap().to_owned(), e["staff_id"].as_str().unwrap().to_owned()))
        .collect();
    let cw = caseworker.clone();
    let expected: Vec<(String, String, String)> = [
        ("disclosure_received", "housing.idva_referral", ""),
        ("case_opened", "high", ""),
        ("case_triaged", "urgent", &cw),
        ("contact_attempt", "no_answer", &cw),
        ("case_not_reached", "", &cw),
        ("contact_attempt", "reached", &cw),
        ("case_engaged", "", &cw),
        ("safety_plan_saved", "v1", &cw),
        ("safety_plan_saved", "v2", &cw),
        ("case_closed", "risk_reduced", &cw),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(steps, expected);
    let triaged = person["chronology"].as_array().unwrap().iter().find(|e| e["event"] == "case_triaged").unwrap();
    assert_eq!(triaged["detail"], format!("triage {SECRET}"), "the note is kept (sealed) and shown to staff");

    // Free text is sealed at rest: no note or plan in clear in the IDVA's database.
    for sql in ["SELECT note FROM idva_contact_attempts", "SELECT sections FROM idva_safety_plans", "SELECT detail FROM chronology"] {
        let values = stored(&p, sql).await?;
        assert!(!values.is_empty(), "{sql}");
        assert!(values.iter().all(|v| !v.contains("Synthetic Secret")), "{sql} holds free text in clear");
    }

    // ------------------------------------------------------------ a revoked referral closes its case
    let (status, v) = step(&p, &c, "triage", json!({"priority": "high"})).await?;
    assert_eq!(status, 200, "{v}");
    let (status, v) = p.post(HOUSING, &format!("/disclosures/{c}/revoke"), &json!({"reason": "sent to the wrong service"})).await?;
    assert_eq!(status, 201, "{v}");
    let revoked = eventually("the revoked referral's case closed", Duration::from_secs(60), || async {
        let v = case(&p, &c).await?;
        Ok((v["status"] == "closed").then_some(v))
    })
    .await?;
    assert_eq!((revoked["outcome"].as_str(), revoked["closed_by"].as_str(), revoked["contact"].as_str()), (Some("referral_revoked"), Some(""), Some("cancelled")), "{revoked}");
    let owed: Vec<&Value> = revoked["deadlines"].as_array().unwrap().iter().collect();
    assert!(!owed.is_empty() && owed.iter().all(|d| d["outcome"] == "cancelled"), "nothing is owed on a revoked referral: {owed:?}");

    // ------------------------------------------------------------ a withdrawn consent flags its case, once
    let (status, v) = p.post(HOUSING, &format!("/consents/{d_consent}/withdraw"), &json!({})).await?;
    assert_eq!(status, 200, "{v}");
    let marked = eventually("the withdrawn consent marked on its case", Duration::from_secs(60), || async {
        let v = case(&p, &d).await?;
        Ok((v["consent_withdrawn"] == true).then_some(v))
    })
    .await?;
    assert_eq!(marked["status"], "awaiting_triage", "the case stays open: the IDVA decides what to do");
    // Several ticks later, still one flag and one marker.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let flags = p.get(IDVA, &format!("/flags?subject_ref={d_subject}")).await?;
    let withdrawn: Vec<&Value> = flags.as_array().unwrap().iter().filter(|f| f["code"] == "consent-withdrawn").collect();
    assert_eq!(withdrawn.len(), 1, "{flags}");
    let person = p.get(IDVA, &format!("/people/{d_subject}")).await?;
    assert_eq!(person["chronology"].as_array().unwrap().iter().filter(|e| e["event"] == "consent_withdrawn").count(), 1, "{person}");
    assert_eq!(case(&p, &a).await?["consent_withdrawn"], false);

    // ------------------------------------------------------------ a missed contact deadline escalates
    assert_eq!(p.get(IDVA, "/deadlines?state=escalated").await?, json!([]));
    p.clock().advance(Duration::from_secs(49 * 3600));
    let escalated = eventually("the missed contact deadline escalated", Duration::from_secs(30), || async {
        let all = p.get(IDVA, "/deadlines?state=escalated").await?;
        let contact: Vec<Value> = all.as_array().unwrap().iter().filter(|d| d["code"] == "idva_contact").cloned().collect();
        Ok((contact.len() >= 2).then_some(contact))
    })
    .await?;
    let targets: Vec<&str> = escalated.iter().map(|d| d["target"].as_str().unwrap()).collect();
    assert!(targets.contains(&b.as_str()) && targets.contains(&d.as_str()), "{escalated:?}");
    assert!(!targets.contains(&a.as_str()) && !targets.contains(&c.as_str()), "met or cancelled deadlines never escalate: {escalated:?}");
    let late = case(&p, &b).await?;
    assert_eq!(late["contact"], "overdue");
    assert_eq!(late["escalations"].as_array().unwrap().iter().filter(|e| e["code"] == "idva_contact").count(), 1, "{late}");
    let missed = eventually("the missed deadline in the ledger", Duration::from_secs(60), || async {
        let entries = p.ledger().await?;
        Ok(entries.into_iter().find(|e| e["entry_type"] == "deadline_missed" && e["rule"] == "idva_contact" && e["in_reply_to"] == b.as_str()))
    })
    .await?;
    assert_eq!((missed["recorded_by"].as_str(), missed["recipient"].as_str()), (Some(IDVA), Some(HOUSING)), "{missed}");
    assert!(!missed.to_string().contains("Synthetic"), "{missed}");
    // The first attempt, late, resolves the escalation.
    step(&p, &b, "triage", json!({"priority": "standard"})).await?;
    let (status, v) = step(&p, &b, "contact-attempts", json!({"method": "letter", "outcome": "wrong_number"})).await?;
    assert_eq!(status, 201, "{v}");
    let escalated = p.get(IDVA, "/deadlines?state=escalated").await?;
    assert!(!escalated.as_array().unwrap().iter().any(|d| d["code"] == "idva_contact" && d["target"] == b.as_str()), "{escalated}");

    // ------------------------------------------------------------ the console
    let http = p.caseworker(IDVA).await?;
    let url = p.url(IDVA);
    let caseload = http.get(format!("{url}/console/cases")).send().await?;
    assert_eq!(caseload.status().as_u16(), 200);
    let caseload = caseload.text().await?;
    for text in [case_ref(2).as_str(), case_ref(4).as_str(), "consent withdrawn", "overdue"] {
        assert!(caseload.contains(text), "the caseload does not show {text}");
    }
    assert!(!caseload.contains(&case_ref(1)), "closed cases are not in the open caseload");
    assert!(!caseload.contains("Synthetic"), "the caseload shows a name");
    let all = http.get(format!("{url}/console/cases?status=all")).send().await?.text().await?;
    assert!(all.contains(&case_ref(1)) && all.contains(&case_ref(3)));
    let page = http.get(format!("{url}/console/cases/{d}")).send().await?.text().await?;
    assert!(page.contains(&format!("href=\"/console/inbox/{d}\"")), "the case page leads to the referral itself");
    for text in ["Consent withdrawn", "Escalated", "Record triage", "Close the case", "No safety plan yet", "IDVA case opened, awaiting triage"] {
        assert!(page.contains(text), "the case page does not show {text}");
    }
    // A form without its choice comes back saying what is missing, the note kept.
    let r = http.post(format!("{url}/console/cases/{d}/triage")).form(&[("note", "kept note")]).send().await?;
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text().await?;
    assert!(text.contains("There is a problem") && text.contains("Choose the priority of the case") && text.contains("kept note"), "{text}");
    let r = http.post(format!("{url}/console/cases/{d}/triage")).form(&[("priority", "urgent")]).send().await?;
    assert_eq!(r.status().as_u16(), 200, "the form leads back to the case");
    assert!(r.text().await?.contains("The case was triaged."));
    // A step the case cannot take from the console: refused, with the reason.
    let r = http.post(format!("{url}/console/cases/{d}/engaged")).form(&[("note", "")]).send().await?;
    assert_eq!(r.status().as_u16(), 409);
    let text = r.text().await?;
    assert!(text.contains("no contact has been attempted yet") && text.contains("href=\"#next-steps\""), "{text}");
    let r = http
        .post(format!("{url}/console/cases/{d}/safety-plan"))
        .form(&[("based_on_version", "0"), ("immediate_safety", "a plan from the console"), ("children", "")])
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await?;
    assert!(text.contains("A new version of the safety plan was saved.") && text.contains("a plan from the console") && text.contains("Save as version 2"), "{text}");
    assert_eq!(case(&p, &d).await?["priority"], "urgent");
    // Another role may not open the caseload.
    let admin = p.as_role(IDVA, Role::AgencyAdmin).await?;
    assert_eq!(admin.get(format!("{url}/console/cases")).send().await?.status().as_u16(), 403);
    assert_eq!(admin.get(format!("{url}/cases/{d}")).send().await?.status().as_u16(), 403);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idva_casework_on_sqlite() -> anyhow::Result<()> {
    casework_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idva_casework_on_postgres() -> anyhow::Result<()> {
    casework_on(Backend::Postgres).await
}
