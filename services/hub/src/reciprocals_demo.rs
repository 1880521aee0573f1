//! `hub demo --scenario reciprocal-scheme`: a managed reciprocal move played through the
//! scheme's every check, through the services' HTTP APIs as staff would, with synthetic data;
//! it exits 0 only if every check holds.
//!
//! Housing (the applicant's current landlord) asks for a move naming four areas: the scheme
//! answers "needs more areas", and housing sends five. Circulation waits for the named lead,
//! whose approval comes from their own login, by staff id. The coordinator circulates the
//! anonymised request to the landlord with stock in the areas (never to the current landlord).
//! An offer in an excluded area is declined to its landlord with the reason; a good one is
//! held; a second offer is declined (one per application). The applicant accepts; the move
//! completion is sent twice and counted once; the balances move by one each way, and the
//! referrer has seen every status.


use anyhow::{Context as _, ensure};
use serde_json::{Value, json};

use crate::{
    demo::{Checks, Script, until},
    local::LocalHub,
    staff::Logins,
};

const HOUSING: &str = "housing-northbridge";
const LANDLORD: &str = "riverside-homes";
const SCHEME: &str = "reciprocals-scheme";
const APPLICANT: &str = "Wilhelmina Synthetic-Mover";
const APPLICANT_DOB: &str = "1988-02-14";

/// Housing's view of the application its request `request` opened, once it is at `status`.
async fn at_housing(s: &Script<'_>, request: &str, status: &str) -> anyhow::Result<Value> {
    until(&format!("housing seeing its application {status}"), || async {
        let apps = s.list(HOUSING, "/reciprocal-applications", "application_ref").await?;
        Ok(apps.as_array().into_iter().flatten().find(|a| a["request_envelope_id"] == request && a["status"] == status).cloned())
    })
    .await
}

/// The coordinator's view of an application, once it is at `status`.
async fn at_scheme(s: &Script<'_>, reference: &str, status: &str) -> anyhow::Result<Value> {
    until(&format!("the scheme holding {reference} {status}"), || async {
        let app = s.get(SCHEME, &format!("/applications/{reference}")).await?;
        Ok((app["status"] == status).then_some(app))
    })
    .await
}

/// The landlord's answer from the scheme to its offer `offer`, opened.
async fn answer_to(s: &Script<'_>, offer: &str) -> anyhow::Result<Value> {
    until("the landlord receiving the answer to its offer", || async {
        let inbox = s.list(LANDLORD, "/inbox", "stream_seq").await?;
        let Some(id) = inbox.as_array().into_iter().flatten().find(|e| e["kind"] == "reciprocal.offer_response" && e["in_reply_to"] == offer).and_then(|e| e["envelope_id"].as_str()) else {
            return Ok(None);
        };
        Ok(Some(s.get(LANDLORD, &format!("/inbox/{id}")).await?["payload"]["reciprocalOfferResponse"].clone()))
    })
    .await
}

/// Each landlord's balance, by id.
async fn balances(s: &Script<'_>) -> anyhow::Result<Vec<(String, i64)>> {
    let v = s.get(SCHEME, "/fairness").await?;
    Ok(v.as_array().into_iter().flatten().map(|b| (b["landlord"].as_str().unwrap_or_default().to_owned(), b["balance"].as_i64().unwrap_or_default())).collect())
}

fn balance(all: &[(String, i64)], landlord: &str) -> i64 {
    all.iter().find(|(l, _)| l == landlord).map(|(_, b)| *b).unwrap_or_default()
}

fn offer(reference: &str, property: &str, area: &str) -> Value {
    json!({"to": SCHEME, "purpose": "rehousing", "lawful_basis": "uk-gdpr-6-1-e", "case_ref": reference,
        "payload": {"reciprocalOffer": {"applicationRef": reference, "propertyRef": property, "area": area, "bedrooms": 2, "availableFrom": "2027-01-04", "landlord": LANDLORD}}})
}

/// Plays the reciprocal scheme scenario on a running partnership: the checks that held.
pub async fn play(hub: &LocalHub, logins: &Logins, print: bool) -> anyhow::Result<Vec<String>> {
    let mut s = Script { hub, logins, report: Default::default(), print: false, before: Default::default(), near_misses_before: 0 };
    let mut c = Checks { held: Vec::new(), print };

    // ---------------------------------------------------------------- the scheme's landlords
    let (status, v) = s.post(SCHEME, &format!("/landlords/{LANDLORD}"), json!({"stock_areas": ["Eastvale", "Southmoor", "Northbridge"]})).await?;
    ensure!(status == 200, "recording the landlord's stock: {status} {v}");
    let (status, v) = s.post(SCHEME, &format!("/landlords/{HOUSING}"), json!({"stock_areas": ["Northbridge"], "named_leads": ["demo.team-manager"]})).await?;
    ensure!(status == 200 && v["named_leads"] == json!(["demo.team-manager"]), "recording the named lead: {status} {v}");
    let (status, v) = s.post(SCHEME, "/landlords/idva-northbridge", json!({"stock_areas": ["Eastvale"]})).await?;
    ensure!(status == 400, "an IDVA service is no landlord of the scheme: {status} {v}");
    c.ok("the coordinator records each landlord's stock and named leads (staff ids); an IDVA service cannot be made a landlord");
    let before = balances(&s).await?;

    // ---------------------------------------------------------------- too few areas, then fixed
    let subject = json!({"full_name": APPLICANT, "date_of_birth": APPLICANT_DOB});
    let (status, consent) = s.post(HOUSING, "/consents", json!({"subject": subject, "state": "given", "scope": {"roles": ["reciprocals"], "purposes": ["rehousing"]}})).await?;
    ensure!(status == 201, "recording consent: {consent}");
    let case = format!("HSG-2026-{:04}", rand::random::<u16>() % 10_000);
    let request = s
        .disclose(HOUSING, json!({"to": SCHEME, "purpose": "rehousing", "lawful_basis": "uk-gdpr-6-1-a", "consent": {"id": consent["consent_id"], "state": "given"},
            "subject": subject, "case_ref": case,
            "payload": {"reciprocalRequest": {"applicant": {"fullName": APPLICANT, "dateOfBirth": APPLICANT_DOB}, "currentLandlord": HOUSING, "tenure": "secure",
                "household": {"adults": 1, "children": 1, "bedroomsNeeded": 2},
                "areasOfChoice": ["Eastvale", "Southmoor", "Westbrook", "Northbridge", "Highcross"], "excludedAreas": ["Northbridge"],
                "reason": "At risk at her current home"}}}), false)
        .await?;
    let first = at_housing(&s, &request, "needs_more_areas").await?;
    let reference = first["application_ref"].as_str().context("the application's reference")?.to_owned();
    ensure!(first["areas_needed"] == 1, "one more area of choice is needed: {first}");
    c.ok(format!("a request naming five areas, one of them excluded, is {reference}: housing sees \"needs more areas\" (one more), not \"received\""));
    let (status, v) = s.post(SCHEME, &format!("/applications/{reference}/circulate"), json!({})).await?;
    ensure!(status == 409 && v["reason"] == "fewer_than_five_areas", "an application short of areas is never circulated: {status} {v}");
    let (status, v) = s
        .post(HOUSING, &format!("/reciprocal-applications/{reference}/areas"), json!({"areas_of_choice": ["Eastvale", "Southmoor", "Westbrook", "Highcross", "Riverside"], "excluded_areas": ["Northbridge"]}))
        .await?;
    ensure!(status == 201, "sending the new areas: {status} {v}");
    at_housing(&s, &request, "awaiting_approval").await?;
    c.ok("circulation is refused while it is short of areas (409); housing sends five areas and the application waits for the named lead");

    // ---------------------------------------------------------------- the named lead
    let (status, v) = s.post(SCHEME, &format!("/applications/{reference}/circulate"), json!({})).await?;
    ensure!(status == 409 && v["reason"] == "awaiting_approval", "nothing is circulated before the named lead approves: {status} {v}");
    let (status, approval) = s.post(HOUSING, &format!("/reciprocal-applications/{reference}/approval"), json!({"decision": "approved"})).await?;
    ensure!(status == 201 && approval["staff_id"] == "demo.team-manager", "the named lead's approval: {status} {approval}");
    let approved = at_scheme(&s, &reference, "approved").await?;
    ensure!(
        approved["approval"]["named_lead"] == "demo.team-manager" && approved["approval"]["envelope_id"] == approval["envelope_id"] && approved["approval"]["landlord"] == HOUSING,
        "the coordinator sees who approved, for which landlord, in which signed message: {approved}"
    );
    at_housing(&s, &request, "approved").await?;
    c.ok("the named lead approves from their own login: the coordinator holds their staff id and the landlord's signed message, and housing sees \"approved\"");

    // ---------------------------------------------------------------- circulation
    let (status, circulated) = s.post(SCHEME, &format!("/applications/{reference}/circulate"), json!({})).await?;
    ensure!(status == 201 && circulated["landlords"] == json!([LANDLORD]), "circulated to the landlord with stock in the areas, not the current landlord: {status} {circulated}");
    let property_request = circulated["sent"][0]["envelope_id"].as_str().context("the property request")?.to_owned();
    let held = until("the landlord holding the property request", || async {
        let requests = s.list(LANDLORD, "/property-requests", "envelope_id").await?;
        Ok(requests.as_array().into_iter().flatten().find(|r| r["envelope_id"] == property_request.as_str()).cloned())
    })
    .await?;
    ensure!(held["areas"].as_array().is_some_and(|a| a.len() == 5 && !a.contains(&json!("Northbridge"))), "the request carries the areas of choice, never the excluded one: {held}");
    let opened = s.get(LANDLORD, &format!("/inbox/{property_request}")).await?;
    ensure!(opened["subject_ref"] == "" && !opened.to_string().contains(APPLICANT), "the circulated request names nobody: {opened}");
    at_housing(&s, &request, "circulated").await?;
    c.ok("the coordinator circulates the anonymised request to riverside-homes only (housing is the current landlord); it carries no name and not the excluded area");

    // ---------------------------------------------------------------- offers
    let excluded = s.disclose(LANDLORD, offer(&reference, "RH-PROP-1001", "Northbridge"), false).await?;
    let answer = answer_to(&s, &excluded).await?;
    ensure!(answer["accepted"] != json!(true) && answer["reason"] == "area_excluded", "an offer in an excluded area is declined with the reason: {answer}");
    let still = s.get(SCHEME, &format!("/applications/{reference}")).await?;
    ensure!(still["status"] == "circulated", "the declined offer is not held: {still}");
    c.ok("an offer in the excluded area is refused: riverside-homes gets reciprocal.offer_response declined, reason area_excluded");
    s.disclose(LANDLORD, offer(&reference, "RH-PROP-2291", "Eastvale"), false).await?;
    let offered = at_scheme(&s, &reference, "offered").await?;
    at_housing(&s, &request, "offered").await?;
    c.ok(format!("a good offer in Eastvale is held ({} days from circulation); housing sees \"offered\"", offered["time_to_offer_days"]));
    let second = s.disclose(LANDLORD, offer(&reference, "RH-PROP-3003", "Southmoor"), false).await?;
    let answer = answer_to(&s, &second).await?;
    ensure!(answer["accepted"] != json!(true) && answer["reason"] == "already_offered", "a second offer gets a clear decline: {answer}");
    c.ok("a second offer is declined to its landlord: reason already_offered (one offer per application)");

    // ---------------------------------------------------------------- acceptance and the move
    let (status, decided) = s.post(SCHEME, &format!("/applications/{reference}/offer-decision"), json!({"decision": "accepted"})).await?;
    ensure!(status == 200 && decided["status"] == "accepted", "recording the acceptance: {status} {decided}");
    let good = offered["offers"].as_array().into_iter().flatten().find(|o| o["outcome"] == "held").and_then(|o| o["envelope_id"].as_str()).context("the offer held")?.to_owned();
    let answer = answer_to(&s, &good).await?;
    ensure!(answer["accepted"] == true, "the landlord is told its offer is accepted: {answer}");
    at_housing(&s, &request, "accepted").await?;
    c.ok("the applicant accepts: riverside-homes is told, housing sees \"accepted\"");
    let completion = json!({"to": SCHEME, "purpose": "rehousing", "lawful_basis": "uk-gdpr-6-1-e", "case_ref": reference,
        "payload": {"reciprocalMoveCompleted": {"applicationRef": reference, "propertyRef": "RH-PROP-2291", "movedOn": "2027-01-11", "rehousingLandlord": LANDLORD, "vacatingLandlord": HOUSING}}});
    let once = s.disclose(LANDLORD, completion.clone(), false).await?;
    let twice = s.disclose(LANDLORD, completion, false).await?;
    let moved = at_scheme(&s, &reference, "moved").await?;
    let duplicate = until("the second completion set aside", || async {
        let v = s.get(SCHEME, &format!("/applications/{reference}")).await?;
        Ok(v["set_aside"].as_array().into_iter().flatten().find(|x| x["envelope_id"] == twice.as_str()).cloned())
    })
    .await?;
    let counted: Vec<&Value> = moved["completions"].as_array().into_iter().flatten().filter(|x| x["outcome"] == "counted").collect();
    ensure!(counted.len() == 1 && counted[0]["envelope_id"] == once.as_str() && duplicate["reason"] == "duplicate_completion", "counted once: {moved}");
    c.ok("the move completion is sent twice: counted once, the second set aside as a duplicate");

    // ---------------------------------------------------------------- balances and statuses
    let after = balances(&s).await?;
    ensure!(balance(&after, LANDLORD) == balance(&before, LANDLORD) + 1, "riverside-homes is owed one property more: {after:?}");
    ensure!(balance(&after, HOUSING) == balance(&before, HOUSING) - 1, "housing-northbridge owes one property more: {after:?}");
    ensure!(!after.iter().any(|(l, _)| l.starts_with("idva")), "no IDVA service in the ledger: {after:?}");
    c.ok(format!("balances: riverside-homes {:+}, housing-northbridge {:+} (one each way)", balance(&after, LANDLORD), balance(&after, HOUSING)));
    let seen = at_housing(&s, &request, "moved").await?;
    let statuses: Vec<&str> = seen["statuses"].as_array().into_iter().flatten().filter_map(|x| x["status"].as_str()).collect();
    for expected in ["needs_more_areas", "awaiting_approval", "approved", "circulated", "offered", "accepted", "moved"] {
        ensure!(statuses.contains(&expected), "housing never saw {expected}: {statuses:?}");
    }
    c.ok(format!("housing saw every status of its application: {}", statuses.join(" -> ")));
    let board = s.get(SCHEME, "/board").await?;
    let moved_count = board["by_status"].as_array().into_iter().flatten().find(|x| x["status"] == "moved").and_then(|x| x["count"].as_i64()).unwrap_or_default();
    ensure!(moved_count >= 1 && board["time_to_offer"]["offers"].as_i64() >= Some(1), "the board counts it: {board}");
    c.ok(format!("the coordinator's board: {moved_count} moved, median time to offer {} days", board["time_to_offer"]["median_days"]));
    Ok(c.held)
}
