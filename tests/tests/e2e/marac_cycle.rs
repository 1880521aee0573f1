//! The MARAC meeting cycle on real components and both storage backends, as a coordinator
//! runs it, and the bugs users found in it:
//!
//! - two referrals of one incident on the same day are one incident, not a repeat;
//! - a revoked referral counts for nothing towards repeats;
//! - a case screened out and then accepted follows the decision (through the case's route and
//!   through the generic inbox answer alike), never stuck at criteria not met;
//! - professional judgement that raised a DASH result to high meets the criteria;
//! - meetings, agenda, research tracked per member against its reply-by date (a reminder, then
//!   an escalation for the member that did not answer), a hearing with actions (one done, one
//!   overdue and escalated), minutes minimised per member, a repeat measured from the last
//!   MARAC, the quarter's figures and the console pages.
//!
//! Plus the `hub demo --scenario marac` scenario, every check of it holding.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use tests::{Backend, Partnership, Role, eventually};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const MARAC: &str = "marac-northbridge";
const RIVERSIDE: &str = "riverside-homes";
const DAY: Duration = Duration::from_secs(24 * 3600);
/// Free text that must never be stored in clear at MARAC.
const SECRET: &str = "Synthetic Secret Phrase 4417";

fn name(n: usize) -> String {
    format!("Synthetic Marac Person {n}")
}

fn subject(n: usize) -> Value {
    json!({"full_name": name(n), "date_of_birth": "1990-02-03"})
}

/// A DASH checklist of `yes` Yes answers at `agency`, raised to high by judgement when asked.
async fn dash(p: &Partnership, agency: &str, n: usize, yes: usize, judgement: bool) -> anyhow::Result<Value> {
    let answers: Vec<&str> = (0..24).map(|i| if i < yes { "yes" } else { "no" }).collect();
    let mut body = json!({"case_ref": format!("DASH-2026-{n:04}"), "subject": subject(n), "answers": answers});
    if judgement {
        body["professional_judgement"] = json!("high");
        body["judgement_reason"] = json!("Stalking is escalating since the separation");
    }
    let (status, v) = p.post(agency, "/dash-assessments", &body).await?;
    anyhow::ensure!(status == 201, "DASH {n} at {agency}: {status} {v}");
    Ok(v)
}

/// A MARAC referral of person `n` from `from` (consent recorded there first) claiming visible
/// high risk, naming an assessment when given. Returns its envelope id, once the case is open
/// at MARAC.
async fn refer(p: &Partnership, from: &str, n: usize, case_ref: &str, assessment: Option<&str>) -> anyhow::Result<String> {
    refer_claiming(p, from, n, case_ref, assessment, &["MARAC_CRITERION_VISIBLE_HIGH_RISK"]).await
}

/// [`refer`], naming the criteria `claims`.
async fn refer_claiming(p: &Partnership, from: &str, n: usize, case_ref: &str, assessment: Option<&str>, claims: &[&str]) -> anyhow::Result<String> {
    let (status, consent) = p.post(from, "/consents", &json!({"subject": subject(n), "state": "given", "scope": {"roles": ["marac"], "purposes": ["marac"]}})).await?;
    anyhow::ensure!(status == 201, "consent {n} at {from}: {status} {consent}");
    let mut body = json!({
        "to": MARAC, "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-a", "consent": {"id": consent["consent_id"], "state": "given"},
        "subject": subject(n), "case_ref": case_ref,
        "payload": {"maracReferral": {
            "survivor": {"fullName": name(n), "dateOfBirth": "1990-02-03", "address": "9 Synthetic Close", "phone": "07700 900456"},
            "perpetrators": [{"fullName": "Synthetic Harmer", "dateOfBirth": "1985-01-01"}],
            "children": [{"fullName": "Synthetic Child", "dateOfBirth": "2018-05-05", "school": "Synthetic Primary School"}],
            "criteria": claims, "survivorAware": true, "consentGiven": true}},
    });
    if let Some(a) = assessment {
        body["assessment_id"] = json!(a);
    }
    let (status, sent) = p.post(from, "/disclosures", &body).await?;
    anyhow::ensure!(status == 201, "referral {n} from {from}: {status} {sent}");
    let id = sent["envelope_id"].as_str().context("no envelope id")?.to_owned();
    eventually("the referral opening a MARAC case", Duration::from_secs(60), || async { Ok(p.get(MARAC, &format!("/cases/{id}")).await.ok()) }).await?;
    Ok(id)
}

async fn marac_ref_of(p: &Partnership, id: &str) -> anyhow::Result<String> {
    Ok(case(p, id).await?["marac_ref"].as_str().context("no MARAC reference")?.to_owned())
}

async fn case(p: &Partnership, id: &str) -> anyhow::Result<Value> {
    p.get(MARAC, &format!("/cases/{id}")).await
}

async fn step(p: &Partnership, id: &str, step: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    p.post(MARAC, &format!("/cases/{id}/{step}"), &body).await
}

/// Every value of a query's first column in MARAC's database, as stored.
async fn stored(p: &Partnership, sql: &str) -> anyhow::Result<Vec<String>> {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&p.database_url(MARAC).await?).await?;
    let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(&mut conn).await?;
    conn.close().await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

fn day(offset: i64) -> String {
    runtime::chronology::date_of(isp::now_ms() + offset * 86_400_000)
}

/// Today by the partnership's clock, plus `offset` days.
fn clock_day(p: &Partnership, offset: i64) -> String {
    runtime::chronology::date_of(p.clock().now_ms() + offset * 86_400_000)
}

/// The bugs users found, each on people of its own; returns a case screened in (person 3).
async fn the_bugs(p: &Partnership) -> anyhow::Result<String> {
    // ------------------------------------------------------------ one incident, referred twice the same day
    let first = refer(p, HOUSING, 1, "HSG-2026-0201", None).await?;
    let again = refer(p, IDVA, 1, "IDV-2026-0201", None).await?;
    let resent = refer(p, HOUSING, 1, "HSG-2026-0201", None).await?;
    let a = case(p, &first).await?;
    assert_eq!((a["repeat"].as_bool(), a["duplicate_of"].as_str(), a["incidents_12m"].as_u64()), (Some(false), None, Some(1)), "{a}");
    for id in [&again, &resent] {
        let c = case(p, id).await?;
        assert_eq!((c["repeat"].as_bool(), c["duplicate_of"].as_str(), c["incidents_12m"].as_u64()), (Some(false), Some(first.as_str()), Some(0)), "a second referral of one incident is not a repeat: {c}");
    }
    assert_eq!(a["assessment"]["unproved"], json!(["visible_high_risk"]), "claimed without a signed DASH summary: {a}");
    assert_eq!(a["meets_criteria"], false);

    // ------------------------------------------------------------ professional judgement raises to high
    let judged = dash(p, HOUSING, 5, 4, true).await?;
    assert_eq!((judged["risk"].as_str(), judged["professional_judgement"].as_bool(), judged["marac_criteria_met"].as_bool()), (Some("high"), Some(true), Some(true)), "{judged}");
    // The referrer names no criterion: the signed summary alone proves it.
    let j = refer_claiming(p, HOUSING, 5, "HSG-2026-0205", judged["id"].as_str(), &[]).await?;
    let c = case(p, &j).await?;
    assert_eq!((c["meets_criteria"].as_bool(), c["criteria"].clone(), c["risk"].as_str()), (Some(true), json!(["professional_judgement"]), Some("high")), "{c}");
    let evidence = &c["assessment"]["met"][0];
    assert_eq!((evidence["source"].as_str(), evidence["evidence"]["score"].as_u64()), (Some("dash_summary"), Some(4)), "{c}");
    assert_eq!(evidence["evidence"]["judgement_officer"], hub::staff::demo_id(Role::Caseworker), "the officer who raised it: {c}");
    assert_eq!(evidence["evidence"]["assessment_id"], judged["id"]);

    // ------------------------------------------------------------ declined, then accepted: the case follows
    let d = refer(p, HOUSING, 3, "HSG-2026-0203", None).await?;
    let (status, v) = step(p, &d, "screen", json!({"decision": "criteria_not_met"})).await?;
    assert_eq!((status, v["detail"].as_str().map(|s| s.contains("reason"))), (400, Some(true)), "a screening out needs its reason: {v}");
    let (status, v) = step(p, &d, "screen", json!({"decision": "maybe", "reason": "x"})).await?;
    assert_eq!((status, v["detail"].as_str()), (400, Some("decision is one of screened_in, criteria_not_met")), "{v}");
    let (status, v) = step(p, &d, "screen", json!({"decision": "criteria_not_met", "reason": format!("No DASH, no incident history {SECRET}")})).await?;
    assert_eq!((status, v["status"].as_str(), v["screening"].as_str()), (200, Some("criteria_not_met"), Some("criteria_not_met")), "{v}");
    let (status, v) = step(p, &d, "screen", json!({"decision": "screened_in", "reason": "Police log shows three call-outs"})).await?;
    assert_eq!((status, v["status"].as_str(), v["allowed_steps"].clone()), (200, Some("screened_in"), json!(["screen_out", "list", "close"])), "reconsidered: {v}");
    let told = eventually("housing told the referral was accepted", Duration::from_secs(60), || async {
        let s = p.get(HOUSING, &format!("/disclosures/{d}")).await?;
        Ok((s["status"] == "accepted").then_some(s))
    })
    .await?;
    assert_eq!(told["status_by"], hub::staff::demo_id(Role::MaracCoordinator));
    // Through the generic inbox answer: declined, then accepted.
    let g = refer(p, HOUSING, 4, "HSG-2026-0204", None).await?;
    let (status, v) = p.post(MARAC, &format!("/inbox/{g}/ack"), &json!({"status": "declined", "reason": "Below threshold"})).await?;
    assert_eq!(status, 201, "{v}");
    eventually("the case follows the inbox's decline", Duration::from_secs(30), || async { Ok((case(p, &g).await?["status"] == "criteria_not_met").then_some(())) }).await?;
    let (status, v) = p.post(MARAC, &format!("/inbox/{g}/ack"), &json!({"status": "accepted"})).await?;
    assert_eq!(status, 201, "{v}");
    eventually("the case follows the inbox's acceptance", Duration::from_secs(30), || async { Ok((case(p, &g).await?["status"] == "screened_in").then_some(())) }).await?;

    // ------------------------------------------------------------ a revoked referral counts for nothing
    let r1 = refer(p, HOUSING, 2, "HSG-2026-0202", None).await?;
    p.clock().advance(DAY + Duration::from_secs(3600));
    let r2 = refer(p, IDVA, 2, "IDV-2026-0202", None).await?;
    let c2 = case(p, &r2).await?;
    assert_eq!((c2["repeat"].as_bool(), c2["repeat_of"].as_str(), c2["duplicate_of"].as_str()), (Some(true), Some(r1.as_str()), None), "a further incident within 12 months: {c2}");
    let (status, v) = p.post(HOUSING, &format!("/disclosures/{r1}/revoke"), &json!({"reason": "sent about the wrong person"})).await?;
    assert_eq!(status, 201, "{v}");
    let c2 = eventually("the revoked referral no longer counts", Duration::from_secs(60), || async {
        let c = case(p, &r2).await?;
        Ok((c["repeat"] == false).then_some(c))
    })
    .await?;
    assert_eq!((c2["repeat_of"].as_str(), c2["incidents_12m"].as_u64()), (None, Some(1)), "{c2}");
    let c1 = case(p, &r1).await?;
    assert_eq!((c1["status"].as_str(), c1["close_reason"].as_str(), c1["revoked"].as_bool()), (Some("closed"), Some("referral_revoked"), Some(true)), "{c1}");
    Ok(d)
}

async fn cycle_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let other = the_bugs(&p).await?;

    // ------------------------------------------------------------ a meeting on the schedule
    let (status, v) = p.post(MARAC, "/meetings", &json!({"meets_on": clock_day(&p, -1), "list_closes_on": clock_day(&p, -2)})).await?;
    assert_eq!((status, v["detail"].as_str()), (400, Some("meets_on is in the past: a meeting is scheduled from today on")), "{v}");
    let (status, v) = p.post(MARAC, "/meetings", &json!({"meets_on": clock_day(&p, 7), "list_closes_on": clock_day(&p, 8)})).await?;
    assert_eq!(status, 400, "the list closes after the meeting: {v}");
    let (status, v) = p.post(MARAC, "/meetings", &json!({"meets_on": "07/12/2026", "list_closes_on": clock_day(&p, 2)})).await?;
    assert_eq!((status, v["detail"].as_str()), (400, Some("meets_on is a date, YYYY-MM-DD")), "{v}");
    let (status, meeting) = p.post(MARAC, "/meetings", &json!({"meets_on": clock_day(&p, 7), "list_closes_on": clock_day(&p, 3)})).await?;
    assert_eq!(status, 201, "{meeting}");
    assert_eq!(meeting["reply_by"], clock_day(&p, 5), "research is due two days before the meeting: {meeting}");
    let meeting_id = meeting["id"].as_str().unwrap().to_owned();
    let meets_on = meeting["meets_on"].as_str().unwrap().to_owned();
    let (status, v) = p.post(MARAC, "/meetings", &json!({"meets_on": meets_on, "list_closes_on": clock_day(&p, 3)})).await?;
    assert_eq!(status, 409, "one meeting a day: {v}");

    // ------------------------------------------------------------ the main case: screened in, listed
    let high = dash(&p, HOUSING, 6, 16, false).await?;
    let main = refer(&p, HOUSING, 6, "HSG-2026-0206", high["id"].as_str()).await?;
    let c = case(&p, &main).await?;
    assert_eq!((c["criteria"].clone(), c["status"].as_str()), (json!(["visible_high_risk"]), Some("received")), "{c}");
    assert_eq!(c["assessment"]["met"][0]["evidence"]["score"], 16);
    let marac_ref = c["marac_ref"].as_str().unwrap().to_owned();
    assert!(marac_ref.starts_with("MARAC-"), "{c}");
    let (status, v) = step(&p, &main, "list", json!({"meeting_id": meeting_id})).await?;
    assert_eq!((status, v["error"].as_str()), (409, Some("invalid_transition")), "awaiting screening: {v}");
    let (status, v) = step(&p, &main, "screen", json!({"decision": "screened_in"})).await?;
    assert_eq!(status, 200, "{v}");
    let (status, v) = step(&p, &main, "research", json!({"questions": "What do you hold?"})).await?;
    assert_eq!(status, 409, "research needs a meeting: {v}");
    let (status, v) = step(&p, &main, "list", json!({"meeting_id": meeting_id})).await?;
    assert_eq!((status, v["status"].as_str(), v["meeting_id"].as_str()), (200, Some("listed"), Some(meeting_id.as_str())), "{v}");
    let (status, v) = step(&p, &other, "list", json!({"meeting_id": meeting_id})).await?;
    assert_eq!(status, 200, "{v}");
    let agenda = p.get(MARAC, &format!("/meetings/{meeting_id}")).await?;
    let on: Vec<&str> = agenda["agenda"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(on, [main.as_str(), other.as_str()], "the agenda, in the order listed: {agenda}");

    // ------------------------------------------------------------ research, tracked per member
    let (status, v) = step(&p, &main, "research", json!({"questions": format!("What do you hold on these people? {SECRET}"), "reply_by": clock_day(&p, 9)})).await?;
    assert_eq!(status, 400, "a reply after the meeting: {v}");
    let (status, research) = step(&p, &main, "research", json!({"questions": format!("What do you hold on these people? {SECRET}")})).await?;
    assert_eq!(status, 201, "{research}");
    let requests = research["requests"].as_array().unwrap();
    let to: Vec<&str> = requests.iter().map(|r| r["member"].as_str().unwrap()).collect();
    assert_eq!(to, [HOUSING, IDVA, RIVERSIDE], "every member the protocol lets receive it, never the perpetrator pathway: {research}");
    let housing_removed = requests[0]["removed"].to_string();
    assert!(housing_removed.contains("children.school"), "housing may not see the child's school: {research}");
    assert!(!requests[1]["removed"].to_string().contains("children.school"), "the IDVA may: {research}");
    let (status, v) = step(&p, &main, "research", json!({"questions": "again"})).await?;
    assert_eq!(status, 409, "one round a meeting: {v}");
    let request_to = |member: &str| requests.iter().find(|r| r["member"] == member).unwrap()["request_id"].as_str().unwrap().to_owned();
    for member in [HOUSING, IDVA] {
        let request = request_to(member);
        eventually("the research request delivered", Duration::from_secs(60), || async { Ok(p.get(member, &format!("/inbox/{request}")).await.ok()) }).await?;
        let got = p.get(member, &format!("/inbox/{request}")).await?;
        assert_eq!(got["payload"]["maracResearchRequest"]["meetingDate"], meets_on.as_str(), "{got}");
        let sref = got["subject_ref"].as_str().unwrap().to_owned();
        let (status, v) = p
            .post(member, "/disclosures", &json!({"to": MARAC, "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e", "subject_ref": sref, "case_ref": marac_ref, "in_reply_to": request,
                "payload": {"maracResearchResponse": {"holdsInformation": member == IDVA, "summary": "Two calls last year"}}}))
            .await?;
        assert_eq!(status, 201, "{v}");
    }
    eventually("two of three answered", Duration::from_secs(60), || async {
        let outstanding = p.get(MARAC, "/research").await?;
        Ok((outstanding.as_array().unwrap().iter().filter(|r| r["case_id"] == main.as_str()).count() == 1).then_some(()))
    })
    .await?;
    let board = p.get(MARAC, "/board").await?;
    let late = board["research_outstanding"].as_array().unwrap().iter().find(|m| m["member"] == RIVERSIDE).cloned().context("riverside outstanding")?;
    assert_eq!((late["outstanding"].as_u64(), late["reminder"].as_u64(), late["overdue"].as_u64()), (Some(1), Some(0), Some(0)), "{board}");
    let riverside_request = request_to(RIVERSIDE);
    p.clock().advance(4 * DAY);
    let board = p.get(MARAC, "/board").await?;
    let late = board["research_outstanding"].as_array().unwrap().iter().find(|m| m["member"] == RIVERSIDE).cloned().unwrap();
    assert_eq!(late["reminder"], 1, "within two days of its reply-by date, a reminder: {board}");
    let (status, v) = step(&p, &other, "defer", json!({})).await?;
    assert_eq!(status, 200, "{v}");
    let (status, v) = step(&p, &other, "list", json!({"meeting_id": meeting_id})).await?;
    assert_eq!((status, v["detail"].as_str().map(|d| d.contains("closed at the end of"))), (409, Some(true)), "the list has closed: {v}");
    p.clock().advance(2 * DAY);
    let escalated = eventually("the late member's research escalated", Duration::from_secs(30), || async {
        let all = p.get(MARAC, "/deadlines?state=escalated").await?;
        Ok(all.as_array().unwrap().iter().find(|d| d["code"] == "marac_research_reply" && d["target"] == riverside_request.as_str()).cloned())
    })
    .await?;
    assert_eq!((escalated["counterpart"].as_str(), escalated["case_ref"].as_str()), (Some(RIVERSIDE), Some(marac_ref.as_str())), "{escalated}");
    let answered = p.get(MARAC, "/deadlines?state=all").await?;
    for member in [HOUSING, IDVA] {
        let d = answered.as_array().unwrap().iter().find(|d| d["target"] == request_to(member).as_str()).cloned().unwrap();
        assert_eq!((d["state"].as_str(), d["outcome"].as_str()), (Some("met"), Some("met")), "{d}");
    }
    eventually("the missed research reply in the ledger", Duration::from_secs(60), || async {
        Ok(p.ledger().await?.into_iter().find(|e| e["entry_type"] == "deadline_missed" && e["rule"] == "marac_research_reply" && e["in_reply_to"] == riverside_request.as_str()))
    })
    .await?;

    // ------------------------------------------------------------ the hearing
    let hearing = json!({"discussion": format!("Escalating stalking; children at risk {SECRET}"), "risks": "Stalking, threats to kill", "outcome": "actions_agreed",
        "actions": [{"owner_agency": HOUSING, "description": "Fit sanctuary measures", "due_date": clock_day(&p, 8)},
                    {"owner_agency": IDVA, "description": "Safety plan review with the survivor", "due_date": clock_day(&p, 4)}]});
    let (status, v) = step(&p, &main, "hearing", hearing.clone()).await?;
    assert_eq!((status, v["detail"].as_str().map(|d| d.contains("has not taken place yet"))), (409, Some(true)), "before the meeting's day: {v}");
    p.clock().advance(DAY);
    let mut bad = hearing.clone();
    bad["actions"] = json!([]);
    let (status, v) = step(&p, &main, "hearing", bad).await?;
    assert_eq!(status, 400, "actions agreed, but none named: {v}");
    let mut bad = hearing.clone();
    bad["actions"][0]["owner_agency"] = json!("perpetrator-pathways");
    let (status, v) = step(&p, &main, "hearing", bad).await?;
    assert_eq!((status, v["detail"].as_str()), (400, Some("actions[0].owner_agency: not a member agency the protocol lets receive MARAC actions")), "{v}");
    let mut bad = hearing.clone();
    bad["actions"][1]["due_date"] = json!(clock_day(&p, -3));
    let (status, v) = step(&p, &main, "hearing", bad).await?;
    assert_eq!(status, 400, "due before the meeting: {v}");
    let (status, heard) = step(&p, &main, "hearing", hearing).await?;
    assert_eq!((status, heard["case"]["status"].as_str()), (201, Some("heard")), "{heard}");
    let actions = heard["actions"].as_array().unwrap().clone();
    assert_eq!(actions.len(), 2);

    // ------------------------------------------------------------ the minutes
    let (status, v) = p.post(MARAC, &format!("/meetings/{meeting_id}/minutes"), &json!({})).await?;
    assert_eq!(status, 409, "attendance first: {v}");
    let (status, v) = p.post(MARAC, &format!("/meetings/{meeting_id}/attendance"), &json!({"agencies": [HOUSING, IDVA, MARAC, "nobody-here"], "confidentiality_agreed": true})).await?;
    assert_eq!(status, 400, "an agency not in the directory: {v}");
    let (status, v) = p.post(MARAC, &format!("/meetings/{meeting_id}/attendance"), &json!({"agencies": [HOUSING, IDVA, MARAC], "confidentiality_agreed": true})).await?;
    assert_eq!(status, 200, "{v}");
    let (status, minutes) = p.post(MARAC, &format!("/meetings/{meeting_id}/minutes"), &json!({})).await?;
    assert_eq!(status, 201, "{minutes}");
    let sent = minutes["sent"].as_array().unwrap();
    assert_eq!(sent.len(), 3, "one case heard, three members: {minutes}");
    let to_housing = sent.iter().find(|s| s["member"] == HOUSING).unwrap();
    assert!(to_housing["removed"].to_string().contains("children.school"), "{minutes}");
    let (status, v) = p.post(MARAC, &format!("/meetings/{meeting_id}/minutes"), &json!({})).await?;
    assert_eq!(status, 409, "sent once: {v}");
    // The case shows the minutes sent about it (read through the runtime's typed `sent`
    // questions): one to each member, with what the protocol removed for each.
    let detail = case(&p, &main).await?;
    let on_case = detail["minutes"].as_array().unwrap();
    assert_eq!(on_case.len(), 3, "{detail}");
    let housing_row = on_case.iter().find(|m| m["recipient"] == HOUSING).unwrap();
    assert_eq!(housing_row["envelope_id"], to_housing["envelope_id"], "{detail}");
    assert!(housing_row["removed"].as_array().unwrap().iter().any(|c| c == "children.school"), "{detail}");
    assert!(on_case.iter().all(|m| m["status"].is_string() && m["created_at_ms"].as_i64().unwrap() > 0), "{detail}");
    let housing_minutes = to_housing["envelope_id"].as_str().unwrap().to_owned();
    eventually("the minutes delivered", Duration::from_secs(60), || async { Ok(p.get(HOUSING, &format!("/inbox/{housing_minutes}")).await.ok()) }).await?;
    let at_housing = p.get(HOUSING, &format!("/inbox/{housing_minutes}")).await?;
    let m = &at_housing["payload"]["maracMinutes"];
    assert_eq!((at_housing["kind"].as_str(), m["meetingDate"].as_str(), m["confidentialityAgreed"].as_bool()), (Some("marac.minutes"), Some(meets_on.as_str()), Some(true)), "{at_housing}");
    assert_eq!((m["actions"].as_array().map(Vec::len), m["outcome"].as_str()), (Some(2), Some("MARAC_OUTCOME_ACTIONS_AGREED")), "{m}");
    assert!(m["discussion"].as_str().unwrap().contains("Escalating stalking") && m["risksIdentified"] == "Stalking, threats to kill", "{m}");
    assert!(m["children"][0]["school"].is_null() && m["children"][0]["fullName"] == "Synthetic Child", "minimised for housing: {m}");
    let idva_minutes = sent.iter().find(|s| s["member"] == IDVA).unwrap()["envelope_id"].as_str().unwrap().to_owned();
    eventually("the IDVA's minutes delivered", Duration::from_secs(60), || async { Ok(p.get(IDVA, &format!("/inbox/{idva_minutes}")).await.ok()) }).await?;
    assert_eq!(p.get(IDVA, &format!("/inbox/{idva_minutes}")).await?["payload"]["maracMinutes"]["children"][0]["school"], "Synthetic Primary School");

    // ------------------------------------------------------------ actions: one done, one overdue
    let housing_action = actions.iter().find(|a| a["owner_agency"] == HOUSING).unwrap();
    let envelope = housing_action["envelope_id"].as_str().unwrap().to_owned();
    eventually("the action delivered", Duration::from_secs(60), || async { Ok(p.get(HOUSING, &format!("/inbox/{envelope}")).await.ok()) }).await?;
    let (status, v) = p
        .post(HOUSING, "/disclosures", &json!({"to": MARAC, "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e", "in_reply_to": envelope,
            "payload": {"maracActionUpdate": {"actionId": housing_action["action_id"], "status": "ACTION_STATUS_DONE", "note": "Fitted"}}}))
        .await?;
    assert_eq!(status, 201, "{v}");
    let done = eventually("the action done", Duration::from_secs(60), || async {
        let c = case(&p, &main).await?;
        Ok(c["actions"].as_array().unwrap().iter().find(|a| a["owner_agency"] == HOUSING && a["status"] == "done").cloned())
    })
    .await?;
    assert_eq!(done["note"], "Fitted");
    p.clock().advance(4 * DAY);
    let idva_action = actions.iter().find(|a| a["owner_agency"] == IDVA).unwrap()["action_id"].as_str().unwrap().to_owned();
    eventually("the overdue action escalated", Duration::from_secs(30), || async {
        let all = p.get(MARAC, "/deadlines?state=escalated").await?;
        Ok(all.as_array().unwrap().iter().any(|d| d["code"] == "marac_action_due" && d["target"] == idva_action.as_str()).then_some(()))
    })
    .await?;
    let board = p.get(MARAC, "/board").await?;
    let overdue: Vec<&str> = board["actions_overdue"].as_array().unwrap().iter().map(|a| a["action_id"].as_str().unwrap()).collect();
    assert_eq!(overdue, [idva_action.as_str()], "{board}");
    let (status, v) = step(&p, &main, "close", json!({"reason": "actions_complete"})).await?;
    assert_eq!(status, 409, "an action is not done: {v}");

    // ------------------------------------------------------------ a repeat, measured from the MARAC
    let repeat = refer(&p, IDVA, 6, "IDV-2026-0206", None).await?;
    let c = case(&p, &repeat).await?;
    assert_eq!((c["repeat"].as_bool(), c["repeat_of"].as_str(), c["previous_marac_on"].as_str()), (Some(true), Some(main.as_str()), Some(meets_on.as_str())), "{c}");

    // ------------------------------------------------------------ the quarter's figures
    let quarter = |d: &str| format!("{}-Q{}", &d[..4], (d[5..7].parse::<u32>().unwrap() - 1) / 3 + 1);
    let f = p.get(MARAC, &format!("/figures?quarter={}", quarter(&meets_on))).await?;
    assert_eq!((f["cases_heard"].as_u64(), f["repeats"].as_u64(), f["cases_with_idva"].as_u64(), f["meetings_held"].as_u64()), (Some(1), Some(0), Some(1), Some(1)), "{f}");
    let mut referrals = 0;
    let mut duplicates = 0;
    for q in [quarter(&day(0)), quarter(&clock_day(&p, 0))].into_iter().collect::<std::collections::BTreeSet<_>>() {
        let f = p.get(MARAC, &format!("/figures?quarter={q}")).await?;
        referrals += f["referrals"].as_u64().unwrap();
        duplicates += f["duplicates"].as_u64().unwrap();
    }
    assert_eq!((referrals, duplicates), (7, 2), "each incident once; the revoked one apart");
    let response = p.client(MARAC, "GET", "/figures").await?.get(format!("{}/figures?quarter=2026-Q5", p.url(MARAC))).send().await?;
    assert_eq!(response.status().as_u16(), 400);

    // ------------------------------------------------------------ free text is sealed at rest
    for sql in ["SELECT discussion FROM marac_hearings", "SELECT questions FROM marac_research", "SELECT description FROM marac_actions", "SELECT detail FROM chronology"] {
        for value in stored(&p, sql).await? {
            assert!(!value.contains("Synthetic Secret") && !value.contains("Fit sanctuary"), "{sql} holds free text in clear");
        }
    }

    // ------------------------------------------------------------ the console
    let http = p.as_role(MARAC, Role::MaracCoordinator).await?;
    let url = p.url(MARAC);
    let page = http.get(format!("{url}/console/board")).send().await?.text().await?;
    assert!(page.contains("Research outstanding, by member") && page.contains("Actions overdue") && page.contains(&meets_on), "{page}");
    let page = http.get(format!("{url}/console/cases/{main}")).send().await?.text().await?;
    assert!(page.contains(&marac_ref) && page.contains("Visible high risk") && page.contains("DASH score 16") && page.contains("Escalating stalking"), "{page}");
    let page = http.get(format!("{url}/console/meetings/{meeting_id}")).send().await?.text().await?;
    assert!(page.contains("Agenda") && page.contains("Sent by"), "{page}");
    let page = http.get(format!("{url}/console/figures?quarter={}", quarter(&meets_on))).send().await?.text().await?;
    assert!(page.contains("Cases heard") && page.contains("Referrals by referring agency"), "{page}");
    // A form: a new meeting, a refusal shown on the board with what was typed kept.
    let r = http.post(format!("{url}/console/meetings")).form(&[("meets_on", "not a date"), ("list_closes_on", "")]).send().await?;
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text().await?;
    assert!(text.contains("There is a problem") && text.contains("Meets_on is a date") && text.contains("value=\"not a date\""), "{text}");
    let r = http.post(format!("{url}/console/meetings")).form(&[("meets_on", clock_day(&p, 14).as_str()), ("list_closes_on", clock_day(&p, 10).as_str())]).send().await?;
    assert!(r.url().path().starts_with("/console/meetings/"), "to the new meeting: {}", r.url());
    assert!(r.text().await?.contains("The meeting is on the schedule."));
    // A decision from the case page: refused without its reason (what was typed kept), then taken.
    let page = http.get(format!("{url}/console/cases/{other}")).send().await?.text().await?;
    assert!(page.contains(&format!("action=\"/console/cases/{other}/screen\"")) && page.contains(&format!("action=\"/console/cases/{other}/close\"")), "the coordinator's forms: {page}");
    let r = http.post(format!("{url}/console/cases/{other}/screen")).form(&[("decision", "criteria_not_met"), ("reason", "")]).send().await?;
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text().await?;
    assert!(text.contains("There is a problem") && text.contains("needs the reason") && text.contains("href=\"#screen-decision-criteria_not_met\"") && text.contains("id=\"screen-decision-criteria_not_met\""), "{text}");
    let r = http.post(format!("{url}/console/cases/{other}/screen")).form(&[("decision", "criteria_not_met"), ("reason", "Risk now managed by the IDVA")]).send().await?;
    assert!(r.text().await?.contains("The case was screened out; the referrer has been told why."));
    assert_eq!(case(&p, &other).await?["status"], "criteria_not_met");
    // A team manager reads, but decides nothing: no forms on the page, and the API refuses.
    let manager = p.as_role(MARAC, Role::TeamManager).await?;
    let page = manager.get(format!("{url}/console/cases/{other}")).send().await?.text().await?;
    assert!(page.contains(&marac_ref_of(&p, &other).await?) && !page.contains("<form method=\"post\" action=\"/console/cases/"), "{page}");
    assert_eq!(manager.get(format!("{url}/board")).send().await?.status().as_u16(), 200);
    assert_eq!(manager.post(format!("{url}/cases/{other}/screen")).json(&json!({"decision": "screened_in"})).send().await?.status().as_u16(), 403);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn marac_cycle_on_sqlite() -> anyhow::Result<()> {
    cycle_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn marac_cycle_on_postgres() -> anyhow::Result<()> {
    cycle_on(Backend::Postgres).await
}

/// `hub demo --scenario marac`: every check of the scenario holds.
async fn demo_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let checks = hub::marac_demo::play(&p.hub, &p.logins, false).await?;
    assert!(checks.len() >= 12, "the scenario's checks: {checks:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn marac_scenario_on_sqlite() -> anyhow::Result<()> {
    demo_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn marac_scenario_on_postgres() -> anyhow::Result<()> {
    demo_on(Backend::Postgres).await
}
