//! Housing casework, on real nats-server and both storage backends: the universal assessment
//! saved in versions and carried section by section in referrals (never to a perpetrator
//! pathway), a refuge referral and the route it serves, a sanctuary scheme refused while the
//! person causing harm lives at the address, flexible funding approved by another manager and
//! never overspent, the points panel's decisions, and early detectors' concerns that escalate
//! when nobody triages them.

use std::time::Duration;

use serde_json::{Value, json};
use tests::{Backend, Partnership, Role, eventually};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const MARAC: &str = "marac-northbridge";
const PATHWAY: &str = "perpetrator-pathways";
const NAME: &str = "Synthetic Casework Person";
const DOB: &str = "1987-04-05";
const SITUATION: &str = "Synthetic words about a shared flat";
const MONEY: &str = "Synthetic words about debts";

fn subject() -> Value {
    json!({"full_name": NAME, "date_of_birth": DOB})
}

fn survivor() -> Value {
    json!({"fullName": NAME, "dateOfBirth": DOB})
}

fn today() -> String {
    runtime::chronology::date_of(isp::now_ms())
}

fn in_days(days: i64) -> String {
    runtime::chronology::date_of(isp::now_ms() + days * 86_400_000)
}

/// The received envelope `id` at `agency`, once it has arrived.
async fn received(p: &Partnership, agency: &str, id: &str) -> anyhow::Result<Value> {
    eventually(&format!("{id} at {agency}"), Duration::from_secs(30), || async { Ok(p.get(agency, &format!("/inbox/{id}")).await.ok()) }).await
}

async fn sent(p: &Partnership, body: Value) -> anyhow::Result<String> {
    let (status, v) = p.post(HOUSING, "/disclosures", &body).await?;
    assert_eq!(status, 201, "{v}");
    Ok(v["envelope_id"].as_str().unwrap().to_owned())
}

async fn assessment_travels_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;

    // Bad input is refused, saying what was wrong and never repeating it.
    for (body, what) in [
        (json!({"subject": subject(), "uaf": {}}), "at least one section"),
        (json!({"subject": subject(), "uaf": {"hosuing": {}}}), "UniversalAssessment"),
        (json!({"subject": subject(), "uaf": {"housing": {"tenure": "Synthetic Tenure Words"}}}), "UniversalAssessment"),
        (json!({"subject_ref": "Synthetic Casework Person", "uaf": {"housing": {"jointTenancy": true}}}), "subject ref"),
        (json!({"subject": subject(), "case_ref": "HSG 17 Synthetic Lane", "uaf": {"housing": {"jointTenancy": true}}}), "case reference"),
    ] {
        let (status, v) = p.post(HOUSING, "/universal-assessments", &body).await?;
        assert_eq!(status, 400, "{v}");
        assert!(v["detail"].as_str().unwrap().contains(what), "{what}: {v}");
        assert!(!v.to_string().contains("Synthetic"), "an error repeated what was sent: {v}");
    }

    // Saved twice: two versions, the second filled in from the first and changed.
    let first = json!({
        "housing": {"currentSituation": SITUATION, "tenure": "TENURE_COUNCIL", "perpetratorAtAddress": true, "wishes": "HOUSING_WISH_MOVE"},
        "finances": {"economicAbuse": true, "financesDetails": MONEY},
        "immigration": {"status": "IMMIGRATION_STATUS_SPOUSE_OR_PARTNER_VISA", "recourseToPublicFunds": "PUBLIC_FUNDS_NO_RECOURSE"},
    });
    let (status, v1) = p.post(HOUSING, "/universal-assessments", &json!({"subject": subject(), "case_ref": "HSG-2026-0101", "uaf": first})).await?;
    assert_eq!(status, 201, "{v1}");
    assert_eq!((v1["version"].as_i64(), v1["sections"].clone()), (Some(1), json!(["housing", "finances", "immigration"])));
    let subject_ref = v1["subject_ref"].as_str().unwrap().to_owned();
    let fetched = p.get(HOUSING, &format!("/universal-assessments/{}", v1["id"].as_str().unwrap())).await?;
    let mut second = fetched["uaf"].clone();
    second["supportNeeds"] = json!({"needs": ["SUPPORT_NEED_REFUGE", "SUPPORT_NEED_IMMIGRATION_ADVICE"]});
    let (status, v2) = p.post(HOUSING, "/universal-assessments", &json!({"subject_ref": subject_ref, "case_ref": "HSG-2026-0101", "uaf": second})).await?;
    assert_eq!(status, 201, "{v2}");
    assert_eq!(v2["version"], 2, "{v2}");
    let versions = p.get(HOUSING, &format!("/universal-assessments?subject_ref={subject_ref}")).await?;
    let numbers: Vec<i64> = versions.as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [2, 1], "every save is a version, newest first: {versions}");
    assert!(!versions.to_string().contains(SITUATION), "the list of versions carries no content: {versions}");
    let uaf = p.get(HOUSING, &format!("/universal-assessments/{}", v2["id"].as_str().unwrap())).await?["uaf"].clone();
    assert_eq!((uaf["version"].as_i64(), uaf["assessmentId"].as_str(), uaf["assessedBy"].as_str()), (Some(2), v2["id"].as_str(), Some(HOUSING)), "{uaf}");
    assert_eq!(uaf["housing"]["currentSituation"], SITUATION);
    let chronology = p.get(HOUSING, &format!("/people/{subject_ref}")).await?["chronology"].clone();
    assert_eq!(chronology.as_array().unwrap().iter().filter(|e| e["event"] == "universal_assessment").count(), 2, "{chronology}");

    // Consent to the IDVA service and MARAC; the assessment goes in the referral as it is.
    let (status, consent) = p
        .post(HOUSING, "/consents", &json!({"subject": subject(), "state": "given", "scope": {"roles": ["idva", "marac"], "purposes": ["safeguarding", "marac"]}}))
        .await?;
    assert_eq!(status, 201, "{consent}");
    let consent = json!({"id": consent["consent_id"], "state": "given"});
    let to_idva = sent(&p, json!({"to": IDVA, "kind": "housing.idva_referral", "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a", "consent": consent,
        "subject": subject(), "case_ref": "HSG-2026-0101",
        "payload": {"idvaReferral": {"survivor": survivor(), "reason": "Synthetic reason", "survivorAware": true, "uaf": uaf}}}))
    .await?;
    let at_idva = received(&p, IDVA, &to_idva).await?;
    let carried = &at_idva["payload"]["idvaReferral"]["uaf"];
    assert_eq!(carried["housing"]["currentSituation"], SITUATION, "{at_idva}");
    assert_eq!(carried["finances"]["financesDetails"], MONEY);
    assert_eq!(carried["immigration"]["recourseToPublicFunds"], "PUBLIC_FUNDS_NO_RECOURSE");
    assert_eq!(carried["supportNeeds"]["needs"], json!(["SUPPORT_NEED_REFUGE", "SUPPORT_NEED_IMMIGRATION_ADVICE"]));
    assert_eq!(carried["version"], 2);
    let categories = at_idva["categories"].as_array().unwrap();
    for c in ["uaf.housing", "uaf.finances", "uaf.immigration", "uaf.support_needs"] {
        assert!(categories.iter().any(|x| x == c), "{c} in the header: {categories:?}");
    }

    // MARAC takes every section but the money one.
    let to_marac = sent(&p, json!({"to": MARAC, "kind": "marac.referral", "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-a", "consent": consent,
        "subject": subject(), "case_ref": "HSG-2026-0101",
        "payload": {"maracReferral": {"survivor": survivor(), "criteria": ["MARAC_CRITERION_PROFESSIONAL_JUDGEMENT"], "survivorAware": true, "uaf": uaf}}}))
    .await?;
    let at_marac = received(&p, MARAC, &to_marac).await?;
    let carried = &at_marac["payload"]["maracReferral"]["uaf"];
    assert_eq!(carried["housing"]["currentSituation"], SITUATION, "{at_marac}");
    // (The protocol empties the section; an empty message may remain where it was.)
    let finances_empty = carried.get("finances").is_none_or(|f| f.as_object().is_some_and(|o| o.is_empty()));
    assert!(finances_empty && !at_marac.to_string().contains(MONEY), "the finances section reached MARAC: {at_marac}");
    assert!(!at_marac["categories"].as_array().unwrap().iter().any(|c| c == "uaf.finances"), "{at_marac}");
    let removed = p.get(HOUSING, &format!("/disclosures/{to_marac}")).await?["removed"].clone();
    assert!(removed.as_array().unwrap().iter().any(|c| c == "uaf.finances"), "{removed}");

    // A perpetrator pathway: a perpetrator referral has no place for the assessment, and a
    // referral that carries one cannot go there.
    let perpetrator = |payload: Value| json!({"to": PATHWAY, "purpose": "perpetrator-intervention", "lawful_basis": "cda-1998-s115", "subject": subject(), "payload": payload});
    let (status, v) = p.post(HOUSING, "/disclosures", &perpetrator(json!({"perpetratorReferral": {"perpetrator": {"fullName": "Synthetic Harmer"}, "uaf": uaf}}))).await?;
    assert_eq!(status, 400, "{v}");
    let plain = sent(&p, perpetrator(json!({"perpetratorReferral": {"perpetrator": {"fullName": "Synthetic Harmer"}, "survivor": {"fullName": NAME}, "pathway": "PATHWAY_HIGH_HARM"}}))).await?;
    let at_pathway = received(&p, PATHWAY, &plain).await?;
    let text = at_pathway.to_string();
    assert!(!text.contains("uaf") && !text.contains(SITUATION) && !text.contains(MONEY), "{at_pathway}");
    let (status, v) = p
        .post(HOUSING, "/disclosures", &json!({"to": PATHWAY, "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-e", "subject": subject(),
            "payload": {"idvaReferral": {"survivor": survivor(), "uaf": uaf}}}))
        .await?;
    assert_eq!((status, v["error"].as_str()), (403, Some("denied")), "{v}");

    // A refuge referral to the service that places refuge, with the assessment; never to a
    // perpetrator pathway. The refuge route names it.
    let refuge = sent(&p, json!({"to": IDVA, "kind": "housing.refuge_referral", "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a", "consent": consent,
        "subject": subject(), "case_ref": "HSG-2026-0101",
        "payload": {"refugeReferral": {"survivor": survivor(), "refugeType": "REFUGE_TYPE_SELF_CONTAINED", "areasToAvoid": ["Synthetic Ward"], "survivorAware": true, "uaf": uaf}}}))
    .await?;
    let at_idva = received(&p, IDVA, &refuge).await?;
    assert_eq!(at_idva["kind"], "housing.refuge_referral");
    assert_eq!(at_idva["payload"]["refugeReferral"]["uaf"]["housing"]["currentSituation"], SITUATION, "{at_idva}");
    assert_eq!(at_idva["payload"]["refugeReferral"]["refugeType"], "REFUGE_TYPE_SELF_CONTAINED");
    let (status, v) = p
        .post(HOUSING, "/disclosures", &json!({"to": PATHWAY, "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-e", "subject": subject(),
            "payload": {"refugeReferral": {"survivor": {"fullName": NAME}}}}))
        .await?;
    assert_eq!((status, v["reason"].as_str()), (403, Some("never_allowed_kind")), "{v}");
    let (status, v) = p.post(HOUSING, "/housing-routes", &json!({"subject_ref": subject_ref, "route": "refuge", "envelope_id": to_idva})).await?;
    assert_eq!(status, 400, "an IDVA referral is not a refuge referral: {v}");
    let (status, v) = p.post(HOUSING, "/housing-routes", &json!({"subject_ref": subject_ref, "route": "council_flat"})).await?;
    assert_eq!(status, 400, "{v}");
    let (status, v) = p.post(HOUSING, "/housing-routes", &json!({"subject_ref": subject_ref, "route": "refuge", "envelope_id": refuge, "note": "Synthetic note"})).await?;
    assert_eq!(status, 201, "{v}");
    let routes = p.get(HOUSING, &format!("/housing-routes?subject_ref={subject_ref}")).await?;
    assert_eq!((routes["routes"][0]["route"].as_str(), routes["routes"][0]["envelope_id"].as_str()), (Some("refuge"), Some(refuge.as_str())), "{routes}");
    assert_eq!(routes["refuge_referrals"][0]["envelope_id"], refuge.as_str(), "{routes}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_assessment_is_asked_once_and_travels_section_by_section_on_sqlite() -> anyhow::Result<()> {
    assessment_travels_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_assessment_is_asked_once_and_travels_section_by_section_on_postgres() -> anyhow::Result<()> {
    assessment_travels_on(Backend::Postgres).await
}

async fn post_as(p: &Partnership, role: Role, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let response = p.as_role(HOUSING, role).await?.post(format!("{}{path}", p.url(HOUSING))).json(body).send().await?;
    Ok((response.status().as_u16(), response.json().await.unwrap_or(Value::Null)))
}

async fn sanctuary(p: &Partnership) -> anyhow::Result<()> {
    let (status, flag) = p.post(HOUSING, "/flags", &json!({"property_ref": "PROP-1042", "code": "perpetrator-at-address", "review_on": in_days(30)})).await?;
    assert_eq!(status, 201, "{flag}");
    let (status, v) = p.post(HOUSING, "/sanctuary-schemes", &json!({"subject": subject(), "property_ref": "PROP-1042", "survivor_agreed": false, "perpetrator_at_address": false})).await?;
    assert_eq!(status, 400, "only with the survivor's agreement: {v}");
    let (status, v) = p.post(HOUSING, "/sanctuary-schemes", &json!({"subject": subject(), "property_ref": "17 Synthetic Lane", "survivor_agreed": true, "perpetrator_at_address": false})).await?;
    assert_eq!((status, v["field"].as_str()), (400, Some("property_ref")), "{v}");
    assert!(!v.to_string().contains("Synthetic"), "{v}");
    let (status, scheme) = p.post(HOUSING, "/sanctuary-schemes", &json!({"subject": subject(), "property_ref": "PROP-1042", "survivor_agreed": true, "perpetrator_at_address": false})).await?;
    assert_eq!(status, 201, "{scheme}");
    let id = scheme["id"].as_str().unwrap();
    let (status, v) = p.post(HOUSING, &format!("/sanctuary-schemes/{id}/install"), &json!({})).await?;
    assert_eq!(status, 409, "installed before its survey: {v}");
    let (status, v) = p.post(HOUSING, &format!("/sanctuary-schemes/{id}/survey"), &json!({"measures": ["door_reinforcement", "moat"], "perpetrator_at_address": false, "rights_checked": true})).await?;
    assert_eq!(status, 400, "{v}");
    let (status, v) = p
        .post(HOUSING, &format!("/sanctuary-schemes/{id}/survey"), &json!({"measures": ["door_reinforcement", "fire_safe_letterbox"], "perpetrator_at_address": false, "rights_checked": true}))
        .await?;
    assert_eq!(status, 200, "{v}");

    // Refused while the perpetrator-at-address flag is in force on the property.
    let (status, v) = p.post(HOUSING, &format!("/sanctuary-schemes/{id}/install"), &json!({})).await?;
    assert_eq!((status, v["error"].as_str()), (409, Some("perpetrator_at_address")), "{v}");
    let (status, _) = p.post(HOUSING, &format!("/flags/{}/clear", flag["id"].as_str().unwrap()), &json!({})).await?;
    assert_eq!(status, 204);
    let (status, installed) = p.post(HOUSING, &format!("/sanctuary-schemes/{id}/install"), &json!({})).await?;
    assert_eq!(status, 200, "allowed once the flag is cleared: {installed}");
    let flags = p.get(HOUSING, "/flags?property_ref=PROP-1042").await?;
    let codes: Vec<&str> = flags.as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["sanctuary-installed"], "{flags}");
    let schemes = p.get(HOUSING, "/sanctuary-schemes?property_ref=PROP-1042").await?;
    assert_eq!(schemes[0]["status"], "installed", "{schemes}");
    assert_eq!(schemes[0]["measures"], json!(["door_reinforcement", "fire_safe_letterbox"]));
    let subject_ref = scheme["subject_ref"].as_str().unwrap();
    let chronology = p.get(HOUSING, &format!("/people/{subject_ref}")).await?["chronology"].clone();
    let steps: Vec<&str> = chronology.as_array().unwrap().iter().filter(|e| e["event"] == "sanctuary").map(|e| e["code"].as_str().unwrap()).collect();
    assert_eq!(steps, ["requested", "surveyed", "install_refused", "installed"], "{chronology}");

    // A scheme where the survey finds him living there is refused too, whatever the flags.
    let (_, other) = p.post(HOUSING, "/sanctuary-schemes", &json!({"subject": subject(), "property_ref": "PROP-2042", "survivor_agreed": true, "perpetrator_at_address": true})).await?;
    let other = other["id"].as_str().unwrap();
    p.post(HOUSING, &format!("/sanctuary-schemes/{other}/survey"), &json!({"measures": ["window_locks"], "perpetrator_at_address": true, "rights_checked": true})).await?;
    let (status, v) = p.post(HOUSING, &format!("/sanctuary-schemes/{other}/install"), &json!({})).await?;
    assert_eq!((status, v["error"].as_str()), (409, Some("perpetrator_at_address")), "{v}");
    let (status, v) = p.post(HOUSING, &format!("/sanctuary-schemes/{other}/refuse"), &json!({"reason": "Synthetic reason"})).await?;
    assert_eq!((status, v["status"].as_str()), (200, Some("refused")), "{v}");
    Ok(())
}

async fn funding(p: &Partnership) -> anyhow::Result<()> {
    for (body, field) in [
        (json!({"subject": subject(), "purpose": "holiday", "amount_pence": 100}), "purpose"),
        (json!({"subject": subject(), "purpose": "deposit", "amount_pence": 0}), "amount_pence"),
        (json!({"subject": subject(), "purpose": "other", "amount_pence": 100}), "note"),
    ] {
        let (status, v) = p.post(HOUSING, "/funding-requests", &body).await?;
        assert_eq!(status, 400, "{v}");
        assert!(v["detail"].as_str().unwrap().starts_with(field), "{field}: {v}");
    }
    let (status, asked) = post_as(p, Role::Caseworker, "/funding-requests", &json!({"subject": subject(), "purpose": "deposit", "amount_pence": 50_000, "note": "Synthetic landlord"})).await?;
    assert_eq!(status, 201, "{asked}");
    let id = asked["id"].as_str().unwrap();
    let (status, v) = post_as(p, Role::Caseworker, &format!("/funding-requests/{id}/decision"), &json!({"decision": "approved"})).await?;
    assert_eq!((status, v["error"].as_str()), (403, Some("forbidden")), "a caseworker does not approve: {v}");
    let (status, v) = post_as(p, Role::Caseworker, &format!("/funding-requests/{id}/spend"), &json!({"amount_pence": 100})).await?;
    assert_eq!((status, v["error"].as_str()), (409, Some("not_approved")), "{v}");

    // A manager's own request waits for another manager.
    let (status, own) = post_as(p, Role::TeamManager, "/funding-requests", &json!({"subject": subject(), "purpose": "school_transport", "amount_pence": 8_000})).await?;
    assert_eq!(status, 201, "{own}");
    let (status, v) = post_as(p, Role::TeamManager, &format!("/funding-requests/{}/decision", own["id"].as_str().unwrap()), &json!({"decision": "approved"})).await?;
    assert_eq!((status, v["error"].as_str()), (403, Some("own_request")), "{v}");

    let (status, v) = post_as(p, Role::TeamManager, &format!("/funding-requests/{id}/decision"), &json!({"decision": "declined"})).await?;
    assert_eq!(status, 400, "a decline needs a reason: {v}");
    let (status, v) = post_as(p, Role::TeamManager, &format!("/funding-requests/{id}/decision"), &json!({"decision": "approved"})).await?;
    assert_eq!((status, v["decided_by"].as_str()), (200, Some("demo.team-manager")), "{v}");
    let (status, v) = post_as(p, Role::TeamManager, &format!("/funding-requests/{id}/decision"), &json!({"decision": "declined", "reason": "Changed mind"})).await?;
    assert_eq!(status, 409, "decided once: {v}");

    // Spends against the approved £500: never beyond it.
    let spend_path = format!("/funding-requests/{id}/spend");
    let spend = |pence: i64| {
        let path = spend_path.clone();
        async move { post_as(p, Role::Caseworker, &path, &json!({"amount_pence": pence})).await }
    };
    let (status, v) = spend(30_000).await?;
    assert_eq!((status, v["left_pence"].as_i64()), (201, Some(20_000)), "{v}");
    let (status, v) = spend(25_000).await?;
    assert_eq!((status, v["error"].as_str()), (409, Some("overspend")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("£200.00 left"), "{v}");
    let (status, v) = spend(20_000).await?;
    assert_eq!((status, v["left_pence"].as_i64()), (201, Some(0)), "{v}");
    let (status, _) = spend(1).await?;
    assert_eq!(status, 409);
    let subject_ref = asked["subject_ref"].as_str().unwrap();
    let listed = p.get(HOUSING, &format!("/funding-requests?subject_ref={subject_ref}")).await?;
    let approved = listed.as_array().unwrap().iter().find(|f| f["id"] == id).unwrap();
    assert_eq!((approved["spent_pence"].as_i64(), approved["spends"].as_array().map(Vec::len)), (Some(50_000), Some(2)), "{approved}");
    assert_eq!(approved["note"], "Synthetic landlord");
    let queue = p.get(HOUSING, "/funding-requests?status=requested").await?;
    assert_eq!(queue.as_array().unwrap().len(), 1, "the manager's own request still waits: {queue}");
    Ok(())
}

async fn panel(p: &Partnership) -> anyhow::Result<()> {
    let (status, v) = p.post(HOUSING, "/panel-meetings", &json!({"meets_on": "next Tuesday"})).await?;
    assert_eq!(status, 400, "{v}");
    let (status, meeting) = p.post(HOUSING, "/panel-meetings", &json!({"meets_on": today(), "attendees": ["a.allocations", "d.abuse-lead"]})).await?;
    assert_eq!(status, 201, "{meeting}");
    let (status, _) = p.post(HOUSING, "/panel-meetings", &json!({"meets_on": today()})).await?;
    assert_eq!(status, 409, "one meeting a day");
    let id = meeting["id"].as_str().unwrap();
    let (status, listed) = p.post(HOUSING, &format!("/panel-meetings/{id}/applications"), &json!({"subject": subject(), "application_ref": "ALLOC-2026-7"})).await?;
    assert_eq!(status, 201, "{listed}");
    let (status, _) = p.post(HOUSING, &format!("/panel-meetings/{id}/applications"), &json!({"subject": subject()})).await?;
    assert_eq!(status, 409, "listed once a meeting");
    let aid = listed["id"].as_str().unwrap();
    let decide_path = format!("/panel-applications/{aid}/decision");
    let decide = |body: Value| {
        let path = decide_path.clone();
        async move { p.post(HOUSING, &path, &body).await }
    };
    assert_eq!(decide(json!({"decision": "awarded", "points": 0, "reasons": "Synthetic reasons"})).await?.0, 400, "an award gives points");
    assert_eq!(decide(json!({"decision": "awarded", "points": 150, "reasons": " "})).await?.0, 400, "every decision has reasons");
    let (status, v) = decide(json!({"decision": "awarded", "points": 150, "reasons": "Synthetic reasons: risk under-valued at first assessment"})).await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(decide(json!({"decision": "not_awarded", "reasons": "again"})).await?.0, 409, "decided once");
    let m = p.get(HOUSING, &format!("/panel-meetings/{id}")).await?;
    let a = &m["applications"][0];
    assert_eq!((a["decision"].as_str(), a["points"].as_i64(), a["decided_by"].as_str()), (Some("awarded"), Some(150), Some("demo.caseworker")), "{m}");
    assert_eq!(a["reasons"], "Synthetic reasons: risk under-valued at first assessment");
    assert_eq!(m["attendees"], json!(["a.allocations", "d.abuse-lead"]));

    // A meeting next week decides nothing today.
    let (_, later) = p.post(HOUSING, "/panel-meetings", &json!({"meets_on": in_days(7)})).await?;
    let (_, listed) = p.post(HOUSING, &format!("/panel-meetings/{}/applications", later["id"].as_str().unwrap()), &json!({"subject": subject()})).await?;
    let (status, v) = p.post(HOUSING, &format!("/panel-applications/{}/decision", listed["id"].as_str().unwrap()), &json!({"decision": "deferred", "reasons": "Synthetic"})).await?;
    assert_eq!(status, 409, "{v}");
    Ok(())
}

/// Concerns, last: the clock moves past the triage deadline.
async fn concerns(p: &Partnership) -> anyhow::Result<()> {
    // An early detector holds no cases (no role of the hub is theirs: an agency admin stands in
    // for them here). They can raise a concern, not read the queue.
    let detector = Role::AgencyAdmin;
    let (status, v) = post_as(p, detector, "/concerns", &json!({"indicators": ["injuries_seen"]})).await?;
    assert_eq!(status, 400, "a concern names the property: {v}");
    let (status, v) = post_as(p, detector, "/concerns", &json!({"property_ref": "PROP-3042", "indicators": ["Synthetic bruises"]})).await?;
    assert_eq!(status, 400, "{v}");
    assert!(!v.to_string().contains("Synthetic"), "{v}");
    let (status, triaged) = post_as(p, detector, "/concerns", &json!({"property_ref": "PROP-3042", "indicators": ["shouting_or_violence_heard", "damage_to_property"], "note": "Synthetic note"})).await?;
    assert_eq!(status, 201, "{triaged}");
    let (status, waiting) = post_as(p, detector, "/concerns", &json!({"address": "17 Synthetic Lane", "indicators": ["injuries_seen"]})).await?;
    assert_eq!(status, 201, "{waiting}");
    let response = p.as_role(HOUSING, detector).await?.get(format!("{}/concerns", p.url(HOUSING))).send().await?;
    assert_eq!(response.status().as_u16(), 403, "the detector does not read the queue");

    let queue = p.get(HOUSING, "/concerns").await?;
    let ids: Vec<&str> = queue.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [triaged["id"].as_str().unwrap(), waiting["id"].as_str().unwrap()], "the queue, oldest first: {queue}");
    assert_eq!(queue[1]["address"], "17 Synthetic Lane");
    assert_eq!(queue[0]["indicators"], json!(["shouting_or_violence_heard", "damage_to_property"]));
    let tid = triaged["id"].as_str().unwrap();
    let (status, v) = p.post(HOUSING, &format!("/concerns/{tid}/triage"), &json!({"decision": "no_further_action"})).await?;
    assert_eq!(status, 400, "no further action says why: {v}");
    let (status, v) = p.post(HOUSING, &format!("/concerns/{tid}/triage"), &json!({"decision": "open_case", "subject": subject(), "case_ref": "HSG-2026-0102"})).await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(p.post(HOUSING, &format!("/concerns/{tid}/triage"), &json!({"decision": "refer_idva"})).await?.0, 409, "triaged once");
    let open = p.get(HOUSING, "/deadlines?state=open").await?;
    assert!(!open.as_array().unwrap().iter().any(|d| d["target"] == tid), "a triaged concern's deadline is met: {open}");

    // The other is left: past 72 hours it escalates, and the miss is in the ledger.
    let wid = waiting["id"].as_str().unwrap();
    let escalated = p.get(HOUSING, "/deadlines?state=escalated").await?;
    assert!(!escalated.as_array().unwrap().iter().any(|d| d["target"] == wid), "{escalated}");
    p.clock().advance(Duration::from_secs(73 * 3600));
    let missed = eventually("the concern's triage deadline escalated", Duration::from_secs(30), || async {
        let escalated = p.get(HOUSING, "/deadlines?state=escalated").await?;
        Ok(escalated.as_array().unwrap().iter().find(|d| d["target"] == wid && d["code"] == "concern_triage").cloned())
    })
    .await?;
    assert!(missed["missed_at_ms"].as_i64().is_some(), "{missed}");
    eventually("the missed triage in the ledger", Duration::from_secs(60), || async {
        Ok(p.ledger().await?.into_iter().find(|e| e["entry_type"] == "deadline_missed" && e["rule"] == "concern_triage"))
    })
    .await?;
    let (status, v) = p.post(HOUSING, &format!("/concerns/{wid}/triage"), &json!({"decision": "safeguarding"})).await?;
    assert_eq!(status, 200, "late, but triaged: {v}");
    let escalated = p.get(HOUSING, "/deadlines?state=escalated").await?;
    assert!(!escalated.as_array().unwrap().iter().any(|d| d["target"] == wid), "{escalated}");
    Ok(())
}

async fn options_panel_and_concerns_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    sanctuary(&p).await?;
    funding(&p).await?;
    panel(&p).await?;
    concerns(&p).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sanctuary_funding_panel_and_concerns_on_sqlite() -> anyhow::Result<()> {
    options_panel_and_concerns_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sanctuary_funding_panel_and_concerns_on_postgres() -> anyhow::Result<()> {
    options_panel_and_concerns_on(Backend::Postgres).await
}

/// A console page, as a browser would ask for it (redirects followed): the status, where it
/// ended and its HTML. `form` is posted when given.
async fn page(p: &Partnership, role: Role, path: &str, form: Option<&[(String, String)]>) -> anyhow::Result<(u16, String, String)> {
    let http = p.as_role(HOUSING, role).await?;
    let url = format!("{}{path}", p.url(HOUSING));
    let response = match form {
        Some(f) => http.post(url).form(f).send().await?,
        None => http.get(url).send().await?,
    };
    let (status, at) = (response.status().as_u16(), response.url().path().to_owned());
    Ok((status, at, response.text().await?))
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The hidden inputs of the first form of `html` that posts to `action`.
fn hidden_inputs(html: &str, action: &str) -> Vec<(String, String)> {
    let start = html.find(&format!("action=\"{action}\"")).expect("the form");
    let form = &html[start..start + html[start..].find("</form>").expect("its end")];
    let unescape = |s: &str| s.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'").replace("&amp;", "&");
    form.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|i| {
            let name = i.strip_prefix("name=\"")?.split('"').next()?;
            let value = i.split("value=\"").nth(1)?.split('"').next()?;
            Some((unescape(name), unescape(value)))
        })
        .filter(|(name, _)| name != "csrf_token")
        .collect()
}

async fn console_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let cw = Role::Caseworker;

    // Find the survivor by name and date of birth: the page is addressed by the subject ref.
    let (status, at, _) = page(&p, cw, "/console/housing", Some(&fields(&[("subject_name", NAME), ("subject_dob", DOB)]))).await?;
    assert_eq!(status, 200);
    let subject_ref = at.strip_prefix("/console/housing/").expect("the survivor's page").to_owned();
    assert!(subject_ref.starts_with("s-") && !at.contains("Synthetic"), "{at}");
    let (status, _, html) = page(&p, cw, &format!("/console/housing/{subject_ref}/uaf"), None).await?;
    assert_eq!(status, 200);
    assert!(html.contains("name=\"p.uaf.housing.currentSituation\"") && html.contains("category: uaf.immigration"), "the form by section and category");

    // Saving with someone else's name is refused beside the field; then saved as version 1.
    let mut form = fields(&[
        ("case_ref", "HSG-2026-0201"),
        ("p.uaf.housing.currentSituation", SITUATION),
        ("p.uaf.immigration.recourseToPublicFunds", "PUBLIC_FUNDS_NO_RECOURSE"),
        ("p.uaf.supportNeeds.needs", "SUPPORT_NEED_REFUGE"),
        ("p.uaf.supportNeeds.needs", "SUPPORT_NEED_ADVOCACY"),
        ("p.uaf.finances.financesDetails", MONEY),
        ("subject_name", "Synthetic Someone Else"),
        ("subject_dob", DOB),
    ]);
    let (status, _, html) = page(&p, cw, &format!("/console/housing/{subject_ref}/uaf"), Some(&form)).await?;
    assert_eq!(status, 400);
    assert!(html.contains("There is a problem") && html.contains("href=\"#subject_name\"") && html.contains(SITUATION), "the form again, as typed");
    form.retain(|(k, _)| k != "subject_name");
    form.push(("subject_name".into(), NAME.into()));
    let (status, _, html) = page(&p, cw, &format!("/console/housing/{subject_ref}/uaf"), Some(&form)).await?;
    assert_eq!(status, 200);
    assert!(html.contains("Version 1 of the universal assessment was saved"), "{html}");
    let carried = hidden_inputs(&html, "/console/compose/form");
    assert!(carried.contains(&("kind".into(), "housing.idva_referral".into())), "{carried:?}");
    assert!(carried.contains(&("p.uaf.housing.currentSituation".into(), SITUATION.into())), "{carried:?}");
    assert!(carried.contains(&("p.survivor.fullName".into(), NAME.into())), "{carried:?}");

    // The button opens the referral's form with the assessment in it; sent, the IDVA has it.
    let mut compose = carried.clone();
    compose.push(("to".into(), IDVA.into()));
    let (status, _, html) = page(&p, cw, "/console/compose/form", Some(&compose)).await?;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("id=\"p-uaf-housing-currentSituation\" name=\"p.uaf.housing.currentSituation\" value=\"{SITUATION}\"")), "nobody asks again");
    compose.extend(fields(&[("purpose", "safeguarding"), ("lawful_basis", "uk-gdpr-6-1-a"), ("consent", "record")]));
    let (status, at, _) = page(&p, cw, "/console/compose/send", Some(&compose)).await?;
    assert_eq!(status, 200);
    let envelope = at.strip_prefix("/console/sent/").expect("the sent referral's page").to_owned();
    let at_idva = received(&p, IDVA, &envelope).await?;
    assert_eq!(at_idva["payload"]["idvaReferral"]["uaf"]["housing"]["currentSituation"], SITUATION, "{at_idva}");
    assert_eq!(at_idva["payload"]["idvaReferral"]["uaf"]["supportNeeds"]["needs"], json!(["SUPPORT_NEED_REFUGE", "SUPPORT_NEED_ADVOCACY"]));
    let (_, _, html) = page(&p, cw, &format!("/console/housing/{subject_ref}/uaf"), None).await?;
    assert!(html.contains(SITUATION) && html.contains("Save as version 2"), "the next version starts from the last");

    // Funding through the pages: requested in pounds, decided by a manager, not overspent.
    let (status, at, html) = page(&p, cw, &format!("/console/housing/{subject_ref}/funding"), Some(&fields(&[("funding-purpose", "removals"), ("funding-amount", "£120.50")]))).await?;
    assert_eq!((status, at.as_str()), (200, format!("/console/housing/{subject_ref}").as_str()));
    assert!(html.contains("Awaiting a team manager") && html.contains("£120.50"), "{html}");
    let id = p.get(HOUSING, &format!("/funding-requests?subject_ref={subject_ref}")).await?[0]["id"].as_str().unwrap().to_owned();
    let decided = fields(&[("subject_ref", &subject_ref), (&format!("f-{id}-decision"), "approved")]);
    let (status, _, html) = page(&p, Role::TeamManager, &format!("/console/funding/{id}/decision"), Some(&decided)).await?;
    assert_eq!(status, 200);
    assert!(html.contains("The decision on the funding request was recorded"), "{html}");
    let over = fields(&[("subject_ref", &subject_ref), (&format!("f-{id}-amount"), "200")]);
    let (status, _, html) = page(&p, cw, &format!("/console/funding/{id}/spend"), Some(&over)).await?;
    assert_eq!(status, 400);
    assert!(html.contains("is more than is left") && html.contains(&format!("href=\"#f-{id}-amount\"")), "{html}");
    let (status, _, html) = page(&p, cw, &format!("/console/housing/{subject_ref}/sanctuary"), Some(&fields(&[("sanctuary-property_ref", "PROP-1042"), ("sanctuary-perpetrator", "no")]))).await?;
    assert_eq!(status, 400);
    assert!(html.contains("href=\"#sanctuary-agreed\""), "the survivor's agreement first");

    // The panel: a meeting, an application, a decision with its reasons.
    let (status, at, _) = page(&p, cw, "/console/panel", Some(&fields(&[("meets_on", &today())]))).await?;
    assert_eq!(status, 200);
    let meeting = at.strip_prefix("/console/panel/").expect("the meeting's page").to_owned();
    let (status, _, html) = page(&p, cw, &format!("/console/panel/{meeting}/applications"), Some(&fields(&[("subject_ref", &subject_ref)]))).await?;
    assert_eq!(status, 200);
    let application = html.split("/console/panel-applications/").nth(1).and_then(|s| s.split('/').next()).expect("a decision form").to_owned();
    let decision = fields(&[("meeting_id", &meeting), (&format!("a-{application}-decision"), "awarded"), (&format!("a-{application}-points"), "120"), (&format!("a-{application}-reasons"), "Synthetic panel reasons")]);
    let (status, _, html) = page(&p, cw, &format!("/console/panel-applications/{application}/decision"), Some(&decision)).await?;
    assert_eq!(status, 200);
    assert!(html.contains("The panel&#39;s decision was recorded") || html.contains("The panel's decision was recorded"), "{html}");
    assert!(html.contains("Synthetic panel reasons") && html.contains(">120<"), "{html}");

    // An early detector: the form in their navigation, not the queue; the team triages.
    let detector = Role::AgencyAdmin;
    let (_, _, html) = page(&p, detector, "/console", None).await?;
    assert!(html.contains("href=\"/console/concerns/new\"") && !html.contains("href=\"/console/housing\"") && !html.contains("href=\"/console/concerns\""), "{html}");
    let (status, _, html) = page(&p, detector, "/console/concerns/new", Some(&fields(&[("property_ref", "PROP-3042")]))).await?;
    assert_eq!(status, 400);
    assert!(html.contains("href=\"#indicators\""), "{html}");
    let (status, _, html) = page(&p, detector, "/console/concerns/new", Some(&fields(&[("property_ref", "PROP-3042"), ("indicators", "damage_to_property"), ("indicators", "children_distressed")]))).await?;
    assert_eq!(status, 200);
    assert!(html.contains("Your concern has reached the domestic abuse team"), "{html}");
    let (status, _, _) = page(&p, detector, "/console/concerns", None).await?;
    assert_eq!(status, 403);
    let (status, _, html) = page(&p, cw, "/console/concerns", None).await?;
    assert_eq!(status, 200);
    let concern = html.split("href=\"/console/concerns/").skip(1).filter_map(|s| s.split('"').next()).find(|s| *s != "new").expect("the concern in the queue").to_owned();
    assert!(html.contains("Children distressed or frightened"), "{html}");
    let (status, at, html) = page(&p, cw, &format!("/console/concerns/{concern}/triage"), Some(&fields(&[("decision", "refer_idva"), ("subject_name", NAME), ("subject_dob", DOB)]))).await?;
    assert_eq!((status, at.as_str()), (200, "/console/concerns"));
    assert!(html.contains("The concern was triaged"), "{html}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_pages_do_the_casework_on_sqlite() -> anyhow::Result<()> {
    console_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_pages_do_the_casework_on_postgres() -> anyhow::Result<()> {
    console_on(Backend::Postgres).await
}
