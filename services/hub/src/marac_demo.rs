//! `hub demo --scenario marac`: a MARAC meeting cycle as a coordinator runs it, through the
//! services' HTTP APIs as staff would, with synthetic data; it exits 0 only if every check
//! holds.
//!
//! Housing refers a survivor to MARAC naming a high DASH assessment; the coordinator screens
//! the case in, schedules a meeting and lists it; research requests go to every member agency
//! (each copy minimised to what that member may see); housing and the IDVA answer, Riverside
//! Homes does not and is escalated when the clock passes its reply-by date. At the meeting the
//! case is heard with two actions, the minutes go to every member minimised per member,
//! housing reports its action done and the IDVA's passes its due date and escalates. The
//! quarter's figures count it all.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};

use crate::demo::{Checks, until};
use crate::{
    demo::{Script, dash_answers},
    local::LocalHub,
    staff::Logins,
};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const MARAC: &str = "marac-northbridge";
const RIVERSIDE: &str = "riverside-homes";
const DAY_MS: i64 = 86_400_000;

/// Moves the partnership's clock to `at_ms` (and an hour past it), if it is not there yet.
fn move_clock_past(hub: &LocalHub, at_ms: i64) {
    let now = hub.clock.now_ms();
    if now <= at_ms {
        hub.clock.advance(Duration::from_millis((at_ms - now + 3_600_000) as u64));
    }
}

fn day_ms(day: &str) -> anyhow::Result<i64> {
    runtime::chronology::day_ms(day).with_context(|| format!("{day} is not a day"))
}

fn quarter_of(day: &str) -> String {
    format!("{}-Q{}", &day[..4], (day[5..7].parse::<u32>().unwrap_or(1) - 1) / 3 + 1)
}

/// Plays the MARAC scenario on a running partnership; the checks that held.
pub async fn play(hub: &LocalHub, logins: &Logins, print: bool) -> anyhow::Result<Vec<String>> {
    let mut s = Script { hub, logins, report: Default::default(), print, before: Default::default(), near_misses_before: 0 };
    let mut c = Checks { print, held: Vec::new() };
    // A person and references of this run's own: a kept data directory may hold earlier runs.
    let run = rand::random::<u16>() % 10_000;
    let name = format!("Marisol Synthetic-Demo {run:04}");
    let subject = json!({"full_name": name, "date_of_birth": "1988-06-14"});
    let case_ref = format!("HSG-2026-{run:04}");
    let referrer = json!({"name": "Demo Housing Officer", "agency": HOUSING, "role": "Housing options officer"});
    let survivor = json!({"fullName": name, "dateOfBirth": "1988-06-14", "address": "4 Synthetic Row, Northbridge NB2 8ZZ", "phone": "07700 900321", "safeToCall": false});
    let child = json!({"fullName": "Synthetic Child-Demo", "dateOfBirth": "2017-03-01", "relationshipToSurvivor": "daughter", "school": "Synthetic Primary School"});

    // ---------------------------------------------------------------- a referral with a proved risk
    let (status, dash) = s.post(HOUSING, "/dash-assessments", json!({"case_ref": case_ref, "subject": subject, "answers": dash_answers(15)})).await?;
    ensure!(status == 201 && dash["risk"] == "high", "recording the DASH checklist: {status} {dash}");
    let assessment = dash["id"].as_str().context("assessment id")?.to_owned();
    let (status, not_sought) = s.post(HOUSING, "/consents", json!({"subject": subject, "state": "not-sought", "reason": "asking-would-increase-risk"})).await?;
    ensure!(status == 201, "recording consent not sought: {not_sought}");
    let referral = s
        .disclose(HOUSING, json!({"to": MARAC, "purpose": "marac", "lawful_basis": "uk-gdpr-9-2-g-dpa-s1-p18",
            "consent": {"id": not_sought["consent_id"], "state": "not-sought"}, "assessment_id": assessment, "subject": subject, "case_ref": case_ref,
            "without_consent": {"rationale_code": "asking-would-increase-risk", "rationale": "He reads her messages; asking her could alert him"},
            "payload": {"maracReferral": {"referrer": referrer, "survivor": survivor, "perpetrators": [{"fullName": "Synthetic Harmer-Demo", "dateOfBirth": "1984-02-02", "relationship": "ex-partner"}],
                "children": [child], "criteria": ["MARAC_CRITERION_VISIBLE_HIGH_RISK"], "survivorAware": false, "reasonNoConsent": "Asking would raise the risk"}}}), false)
        .await?;
    let case_path = format!("/cases/{referral}");
    let case = until("the MARAC case opened", || async { Ok(s.call(reqwest::Method::GET, MARAC, &case_path, None).await.ok().filter(|(st, _)| *st == 200).map(|(_, v)| v)) }).await?;
    ensure!(case["status"] == "received" && case["criteria"] == json!(["visible_high_risk"]), "the case awaits screening with its criterion: {case}");
    let evidence = &case["assessment"]["met"][0]["evidence"];
    ensure!(evidence["assessment_id"] == assessment.as_str() && evidence["score"] == 15 && evidence["assessed_by"] == HOUSING, "the criterion's evidence is housing's signed summary: {case}");
    let marac_ref = case["marac_ref"].as_str().unwrap_or_default().to_owned();
    let subject_ref = case["subject_ref"].as_str().unwrap_or_default().to_owned();
    ensure!(marac_ref.starts_with("MARAC-"), "the case has MARAC's own reference: {case}");
    c.ok(format!("housing refers to MARAC naming its DASH assessment; case {marac_ref} awaits screening, visible high risk proved by the signed summary (score 15)"));

    // ---------------------------------------------------------------- screening
    let (status, v) = s.post(MARAC, &format!("{case_path}/screen"), json!({"decision": "screened_in"})).await?;
    ensure!(status == 200 && v["status"] == "screened_in", "screening in: {status} {v}");
    until("housing told the referral is accepted", || async { Ok((s.get(HOUSING, &format!("/disclosures/{referral}")).await?["status"] == "accepted").then_some(())) }).await?;
    c.ok("the coordinator screens the case in; housing's record of the referral says accepted");

    // ---------------------------------------------------------------- a meeting and its agenda
    let today = hub.clock.now_ms();
    let mut meeting = Value::Null;
    for offset in 7..60 {
        let meets_on = runtime::chronology::date_of(today + offset * DAY_MS);
        let list_closes_on = runtime::chronology::date_of(today + (offset - 4) * DAY_MS);
        let (status, v) = s.post(MARAC, "/meetings", json!({"meets_on": meets_on, "list_closes_on": list_closes_on})).await?;
        if status == 201 {
            meeting = v;
            break;
        }
        ensure!(status == 409, "scheduling a meeting: {status} {v}");
    }
    let meeting_id = meeting["id"].as_str().context("no free day for a meeting in the next two months")?.to_owned();
    let meets_on = meeting["meets_on"].as_str().unwrap_or_default().to_owned();
    let reply_by = meeting["reply_by"].as_str().unwrap_or_default().to_owned();
    let (status, v) = s.post(MARAC, &format!("{case_path}/list"), json!({"meeting_id": meeting_id})).await?;
    ensure!(status == 200 && v["status"] == "listed", "listing the case: {status} {v}");
    let agenda = s.get(MARAC, &format!("/meetings/{meeting_id}")).await?;
    ensure!(agenda["agenda"].as_array().is_some_and(|a| a.iter().any(|x| x["id"] == referral.as_str())), "the agenda holds the case: {agenda}");
    c.ok(format!("a meeting is scheduled for {meets_on} (list closes {}, research by {reply_by}); the case is on its agenda", meeting["list_closes_on"].as_str().unwrap_or_default()));

    // ---------------------------------------------------------------- research before the meeting
    let (status, research) = s.post(MARAC, &format!("{case_path}/research"), json!({"questions": "What does your agency hold on the survivor, the person causing harm and the child?"})).await?;
    ensure!(status == 201, "sending the research requests: {status} {research}");
    let requests = research["requests"].as_array().cloned().unwrap_or_default();
    let members: Vec<&str> = requests.iter().filter_map(|r| r["member"].as_str()).collect();
    ensure!(members == [HOUSING, IDVA, RIVERSIDE], "every member the protocol lets receive research, never the perpetrator pathway: {members:?}");
    let request_to = |member: &str| requests.iter().find(|r| r["member"] == member).and_then(|r| r["request_id"].as_str()).unwrap_or_default().to_owned();
    ensure!(requests[0]["removed"].to_string().contains("children.school"), "housing's copy is minimised (no child's school): {research}");
    for r in &requests {
        s.report.delivered.insert(r["request_id"].as_str().unwrap_or_default().to_owned(), r["member"].as_str().unwrap_or_default().to_owned());
    }
    c.ok("research requests go to housing, the IDVA and Riverside Homes, each minimised by the protocol (housing's without the child's school)");
    for (member, holds) in [(HOUSING, false), (IDVA, true)] {
        let request = request_to(member);
        s.delivered(&request).await?;
        let got = s.get(member, &format!("/inbox/{request}")).await?;
        ensure!(got["payload"]["maracResearchRequest"]["replyBy"] == reply_by.as_str(), "{member} sees the reply-by date: {got}");
        s.disclose(member, json!({"to": MARAC, "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e", "subject_ref": got["subject_ref"], "case_ref": marac_ref, "in_reply_to": request,
            "payload": {"maracResearchResponse": {"holdsInformation": holds, "summary": if holds { "Supported her after a 2025 incident" } else { "No record beyond the referral" }}}}), false)
            .await?;
    }
    let late = request_to(RIVERSIDE);
    until("two of three members answered", || async {
        let outstanding = s.get(MARAC, "/research").await?;
        let mine: Vec<&Value> = outstanding.as_array().into_iter().flatten().filter(|r| r["case_id"] == referral.as_str()).collect();
        Ok((mine.len() == 1 && mine[0]["member"] == RIVERSIDE).then_some(()))
    })
    .await?;
    c.ok("housing and the IDVA answer (each answer names its request and meets its deadline); Riverside Homes has not");
    move_clock_past(hub, day_ms(&reply_by)? + DAY_MS);
    let escalated = until("the late member escalated", || async {
        let e = s.get(MARAC, "/deadlines?state=escalated").await?;
        Ok(e.as_array().into_iter().flatten().find(|d| d["code"] == "marac_research_reply" && d["target"] == late.as_str()).cloned())
    })
    .await?;
    ensure!(escalated["counterpart"] == RIVERSIDE, "the escalation names the late member: {escalated}");
    let board = s.get(MARAC, "/board").await?;
    ensure!(board["research_outstanding"].as_array().into_iter().flatten().any(|m| m["member"] == RIVERSIDE && m["overdue"] == 1), "the board shows it overdue: {board}");
    let ig = logins.as_role("audit", &hub.audit_url, runtime::auth::Role::IgLead).await?;
    until("deadline_missed in the ledger", || async {
        let l = crate::ledger_pages(&ig, &hub.audit_url, "").await?;
        Ok(l.iter().any(|e| e["entry_type"] == "deadline_missed" && e["rule"] == "marac_research_reply" && e["in_reply_to"] == late.as_str()).then_some(()))
    })
    .await?;
    c.ok(format!("the clock passes {reply_by}: Riverside Homes' research is escalated on the board and a signed deadline_missed entry is in the ledger"));

    // ---------------------------------------------------------------- the meeting
    move_clock_past(hub, day_ms(&meets_on)?);
    let (status, v) = s.post(MARAC, &format!("/meetings/{meeting_id}/attendance"), json!({"agencies": [HOUSING, IDVA, MARAC], "confidentiality_agreed": true})).await?;
    ensure!(status == 200, "recording attendance: {status} {v}");
    let housing_due = runtime::chronology::date_of(day_ms(&meets_on)? + 14 * DAY_MS);
    let idva_due = runtime::chronology::date_of(day_ms(&meets_on)? + 3 * DAY_MS);
    let (status, heard) = s
        .post(MARAC, &format!("{case_path}/hearing"), json!({
            "discussion": "Separation in the summer; stalking is escalating and he has threatened to take the child.",
            "risks": "Stalking; threats to kill; risk to the child at handovers",
            "outcome": "actions_agreed",
            "actions": [{"owner_agency": HOUSING, "description": "Fit sanctuary measures to the property", "due_date": housing_due},
                        {"owner_agency": IDVA, "description": "Review the safety plan with the survivor", "due_date": idva_due}]}))
        .await?;
    ensure!(status == 201 && heard["case"]["status"] == "heard", "recording the hearing: {status} {heard}");
    let actions = heard["actions"].as_array().cloned().unwrap_or_default();
    ensure!(actions.len() == 2, "two actions agreed: {heard}");
    let action = |owner: &str| actions.iter().find(|a| a["owner_agency"] == owner).cloned().unwrap_or_default();
    for a in &actions {
        s.report.delivered.insert(a["envelope_id"].as_str().unwrap_or_default().to_owned(), a["owner_agency"].as_str().unwrap_or_default().to_owned());
    }
    c.ok(format!("at the meeting of {meets_on}: attendance and the confidentiality agreement recorded; the case heard with two actions sent to their owners (due {housing_due} and {idva_due})"));

    // ---------------------------------------------------------------- the minutes
    let (status, minutes) = s.post(MARAC, &format!("/meetings/{meeting_id}/minutes"), json!({})).await?;
    ensure!(status == 201, "sending the minutes: {status} {minutes}");
    let sent = minutes["sent"].as_array().cloned().unwrap_or_default();
    ensure!(sent.len() == 3, "the case's minutes to each of three members: {minutes}");
    let minutes_to = |member: &str| sent.iter().find(|m| m["member"] == member).and_then(|m| m["envelope_id"].as_str()).unwrap_or_default().to_owned();
    for m in &sent {
        s.report.delivered.insert(m["envelope_id"].as_str().unwrap_or_default().to_owned(), m["member"].as_str().unwrap_or_default().to_owned());
    }
    s.delivered(&minutes_to(HOUSING)).await?;
    s.delivered(&minutes_to(IDVA)).await?;
    let at_housing = s.get(HOUSING, &format!("/inbox/{}", minutes_to(HOUSING))).await?;
    let at_idva = s.get(IDVA, &format!("/inbox/{}", minutes_to(IDVA))).await?;
    let (mh, mi) = (&at_housing["payload"]["maracMinutes"], &at_idva["payload"]["maracMinutes"]);
    ensure!(mh["discussion"].as_str().is_some_and(|d| d.contains("stalking")) && mh["actions"].as_array().map(Vec::len) == Some(2), "housing's minutes: {mh}");
    ensure!(mh["children"][0]["school"].is_null() && mi["children"][0]["school"] == "Synthetic Primary School", "each copy minimised for its member: {mh} / {mi}");
    c.ok("the minutes go to every member: housing's copy carries the discussion, risks and both actions but not the child's school, the IDVA's carries it");

    // ---------------------------------------------------------------- actions: done, and overdue
    let done = action(HOUSING);
    let envelope = done["envelope_id"].as_str().unwrap_or_default().to_owned();
    s.delivered(&envelope).await?;
    s.disclose(HOUSING, json!({"to": MARAC, "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e", "subject_ref": subject_ref, "case_ref": marac_ref, "in_reply_to": envelope,
        "payload": {"maracActionUpdate": {"actionId": done["action_id"], "status": "ACTION_STATUS_DONE", "note": "Door and window locks fitted"}}}), false)
        .await?;
    until("housing's action done", || async {
        let case = s.get(MARAC, &case_path).await?;
        Ok(case["actions"].as_array().into_iter().flatten().any(|a| a["action_id"] == done["action_id"] && a["status"] == "done").then_some(()))
    })
    .await?;
    c.ok("housing reports its action done: its due date is met");
    let overdue = action(IDVA)["action_id"].as_str().unwrap_or_default().to_owned();
    move_clock_past(hub, day_ms(&idva_due)? + DAY_MS);
    until("the IDVA's action escalated", || async {
        let e = s.get(MARAC, "/deadlines?state=escalated").await?;
        Ok(e.as_array().into_iter().flatten().any(|d| d["code"] == "marac_action_due" && d["target"] == overdue.as_str()).then_some(()))
    })
    .await?;
    let board = s.get(MARAC, "/board").await?;
    ensure!(board["actions_overdue"].as_array().into_iter().flatten().any(|a| a["action_id"] == overdue.as_str()), "the board lists the overdue action: {board}");
    ensure!(!board["actions_overdue"].as_array().into_iter().flatten().any(|a| a["action_id"] == done["action_id"]), "the done action is not overdue: {board}");
    c.ok(format!("the clock passes {idva_due}: the IDVA's action is overdue, escalated and on the coordinator's board"));

    // ---------------------------------------------------------------- the quarter's figures
    let heard_in = quarter_of(&meets_on);
    let figures = s.get(MARAC, &format!("/figures?quarter={heard_in}")).await?;
    ensure!(figures["cases_heard"].as_u64().unwrap_or_default() >= 1 && figures["cases_with_idva"].as_u64().unwrap_or_default() >= 1, "the quarter's figures count the case heard, with an IDVA: {figures}");
    let received_in = quarter_of(&case["received_at_ms"].as_i64().map(runtime::chronology::date_of).unwrap_or_default());
    let referrals = s.get(MARAC, &format!("/figures?quarter={received_in}")).await?;
    ensure!(referrals["referrals_by_agency"].as_array().into_iter().flatten().any(|a| a["agency"] == HOUSING && a["referrals"].as_u64().unwrap_or_default() >= 1), "referrals by agency count housing's: {referrals}");
    c.ok(format!(
        "{heard_in} figures: {} case(s) heard, {} repeat(s) ({}%), {} with an IDVA; referrals by referring agency counted for {received_in}",
        figures["cases_heard"], figures["repeats"], figures["repeat_rate_percent"], figures["cases_with_idva"]
    ));
    let l = crate::ledger_pages(&ig, &hub.audit_url, "").await?;
    ensure!(!Value::from(l).to_string().contains(&name), "the ledger holds no name");
    c.ok("the ledger holds every step and no name");
    Ok(c.held)
}
