//! The scripted synthetic case `hub demo` plays across the partnership, through each
//! service's HTTP API as staff and case systems would. Every name, address and phone number
//! in it is invented.
//!
//! It checks, as a user would: every expected disclosure was delivered and stored exactly
//! once at its recipient, no valid envelope was quarantined, the refused perpetrator referral
//! never left housing and is a near miss in the ledger, every referral was acknowledged,
//! and the ledger holds every disclosure and verifies.

use std::{collections::BTreeMap, time::{Duration, Instant}};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

use crate::{local::LocalHub, staff::Logins};

/// The synthetic survivor. The name is distinctive so tests can search the broker's store
/// and the wire for it and be sure it never appears in clear.
pub const SURVIVOR_NAME: &str = "Zephyrine Quillfeather-Demo";
pub const SURVIVOR_DOB: &str = "1991-04-05";
pub const SURVIVOR_ADDRESS: &str = "17 Synthetic Lane, Northbridge NB1 9ZZ";
pub const SURVIVOR_PHONE: &str = "07700 900123";
const PERPETRATOR_NAME: &str = "Barnaby Synthetic-Harmer";

/// One line of what happened.
#[derive(Debug, Clone)]
pub struct Step {
    pub from: String,
    pub to: String,
    pub kind: String,
    pub decision: String,
    pub rule: String,
    pub id: String,
    pub note: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub steps: Vec<Step>,
    /// Envelope id -> recipient of every allowed disclosure.
    pub delivered: BTreeMap<String, String>,
    pub near_misses: Vec<String>,
    pub ledger_entries: u64,
    /// Receipts the recipients' services sent on their own (delivered, opened), and the
    /// reciprocal scheme's status messages.
    pub automatic_receipts: usize,
    /// The tree size of the signed checkpoint every agency witnessed.
    pub checkpoint_size: u64,
    pub subject_ref: String,
}

pub(crate) struct Script<'a> {
    pub(crate) hub: &'a LocalHub,
    /// Each request goes as the demo staff member of the least powerful role its route allows.
    pub(crate) logins: &'a Logins,
    pub(crate) report: Report,
    pub(crate) print: bool,
    /// What a kept data directory held before this run: inbox ids and quarantine size per
    /// agency, and the ledger's near misses. The checks are about this run only.
    pub(crate) before: BTreeMap<String, (Vec<String>, usize)>,
    pub(crate) near_misses_before: usize,
}

pub(crate) fn dash_answers(yes: usize) -> Vec<&'static str> {
    (0..24).map(|i| if i < yes { "yes" } else if i % 5 == 0 { "dont_know" } else { "no" }).collect()
}

impl Script<'_> {
    pub(crate) async fn call(&self, method: reqwest::Method, agency: &str, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        let base = if agency == "audit" { self.hub.audit_url.as_str() } else { self.hub.url(agency) };
        let http = self.logins.for_request(agency, base, method.as_str(), path).await?;
        let mut request = http.request(method, format!("{base}{path}"));
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.with_context(|| format!("calling {agency} {path}"))?;
        let status = response.status().as_u16();
        let value = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, value))
    }

    pub(crate) async fn get(&self, agency: &str, path: &str) -> anyhow::Result<Value> {
        let (status, v) = self.call(reqwest::Method::GET, agency, path, None).await?;
        ensure!(status == 200, "GET {agency}{path} answered {status}: {v}");
        Ok(v)
    }

    /// Every item of a paged list (a kept data directory grows with every run).
    pub(crate) async fn list(&self, agency: &str, path: &str, key: &str) -> anyhow::Result<Value> {
        let base = if agency == "audit" { self.hub.audit_url.as_str() } else { self.hub.url(agency) };
        let http = self.logins.for_request(agency, base, "GET", path).await?;
        Ok(Value::Array(crate::pages(&http, &format!("{base}{path}?"), key).await?))
    }

    pub(crate) async fn post(&self, agency: &str, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::POST, agency, path, Some(body)).await
    }

    pub(crate) fn say(&mut self, step: Step) {
        if self.print {
            let decision = if step.decision == "ALLOWED" { "allowed" } else { "DENIED " };
            println!(
                "  {:<22} -> {:<22} {:<30} {} rule={:<24} {}",
                step.from, step.to, step.kind, decision, step.rule, step.note
            );
        }
        self.report.steps.push(step);
    }

    /// Sends one disclosure and records it; `expect_denied` marks an attempt that must be refused.
    pub(crate) async fn disclose(&mut self, from: &str, body: Value, expect_denied: bool) -> anyhow::Result<String> {
        let to = body["to"].as_str().unwrap_or_default().to_owned();
        let kind = body["payload"].as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default();
        let (status, v) = self.post(from, "/disclosures", body).await?;
        self.outcome(from, &to, &kind, status, v, expect_denied)
    }

    pub(crate) fn outcome(&mut self, from: &str, to: &str, kind: &str, status: u16, v: Value, expect_denied: bool) -> anyhow::Result<String> {
        match (status, expect_denied) {
            (201, false) => {
                let id = v["envelope_id"].as_str().unwrap_or_default().to_owned();
                let removed: Vec<String> = v["removed"].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_owned)).collect();
                let mut note = format!("{} categories", v["categories"].as_array().map(|a| a.len()).unwrap_or(0));
                if !removed.is_empty() {
                    note.push_str(&format!("; minimised away: {}", removed.join(", ")));
                }
                if v["without_consent"] == json!(true) {
                    note.push_str("; SHARED WITHOUT CONSENT (high risk)");
                }
                self.report.delivered.insert(id.clone(), to.to_owned());
                self.say(Step { from: from.into(), to: to.into(), kind: kind.into(), decision: "ALLOWED".into(), rule: v["rule"].as_str().unwrap_or_default().into(), id: id.clone(), note });
                Ok(id)
            }
            (403, true) => {
                let id = v["near_miss_id"].as_str().unwrap_or_default().to_owned();
                let forbidden: Vec<&str> = v["forbidden"].as_array().into_iter().flatten().filter_map(|x| x.as_str()).collect();
                self.report.near_misses.push(id.clone());
                self.say(Step {
                    from: from.into(), to: to.into(), kind: kind.into(), decision: "DENIED".into(),
                    rule: v["rule"].as_str().unwrap_or_default().into(), id: id.clone(),
                    note: format!("near miss logged: {} ({})", v["reason"].as_str().unwrap_or_default(), forbidden.join(", ")),
                });
                Ok(id)
            }
            _ => bail!("{from} -> {to} {kind}: expected {}, got HTTP {status}: {v}", if expect_denied { "a denial" } else { "201" }),
        }
    }

    /// Waits until an envelope is in its recipient's inbox.
    pub(crate) async fn delivered(&self, id: &str) -> anyhow::Result<()> {
        let recipient = self.report.delivered.get(id).context("unknown envelope")?.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, _) = self.call(reqwest::Method::GET, &recipient, &format!("/inbox/{id}"), None).await?;
            if status == 200 {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "envelope {id} never reached {recipient}'s inbox");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the reciprocal scheme holds application `reference` at `status`.
    pub(crate) async fn scheme_status(&self, reference: &str, status: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let app = self.get("reciprocals-scheme", &format!("/applications/{reference}")).await?;
            if app["status"] == status {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "application {reference} never reached {status} (it is {})", app["status"]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn ack(&mut self, agency: &str, id: &str, status: &str, reason: &str) -> anyhow::Result<String> {
        self.delivered(id).await?;
        let sender = self.get(agency, &format!("/inbox/{id}")).await?["sender"].as_str().unwrap_or_default().to_owned();
        let (code, v) = self.post(agency, &format!("/inbox/{id}/ack"), json!({"status": status, "reason": reason})).await?;
        self.outcome(agency, &sender, &format!("referralAck ({status})"), code, v, false)
    }
}

/// Polls until `f` yields a value (the services work asynchronously), for up to a minute.
pub(crate) async fn until<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        ensure!(Instant::now() < deadline, "{what} did not happen within a minute");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The checks of a scenario that held, each printed with `ok` as it holds.
pub(crate) struct Checks {
    pub(crate) print: bool,
    pub(crate) held: Vec<String>,
}

impl Checks {
    pub(crate) fn ok(&mut self, what: impl Into<String>) {
        let what = what.into();
        if self.print {
            println!("  ok  {what}");
        }
        self.held.push(what);
    }
}

/// Plays the demo case on a running partnership and checks the outcome.
pub async fn play(hub: &LocalHub, logins: &Logins, print: bool) -> anyhow::Result<Report> {
    let mut s = Script { hub, logins, report: Report::default(), print, before: BTreeMap::new(), near_misses_before: 0 };
    let ig = logins.as_role("audit", &hub.audit_url, runtime::auth::Role::IgLead).await?;
    for agency in hub.services.keys() {
        let inbox = s.list(agency, "/inbox", "stream_seq").await?;
        let ids = inbox.as_array().into_iter().flatten().filter_map(|e| e["envelope_id"].as_str().map(str::to_owned)).collect();
        let quarantined = s.list(agency, "/quarantine", "stream_seq").await?.as_array().map(Vec::len).unwrap_or_default();
        s.before.insert(agency.clone(), (ids, quarantined));
    }
    let ledger = serde_json::Value::from(crate::ledger_pages(&ig, &hub.audit_url, "").await?);
    s.near_misses_before = ledger.as_array().into_iter().flatten().filter(|e| e["entry_type"] == json!("near_miss")).count();
    let survivor = json!({"fullName": SURVIVOR_NAME, "dateOfBirth": SURVIVOR_DOB, "address": SURVIVOR_ADDRESS, "phone": SURVIVOR_PHONE, "safeToCall": true, "safeTimes": "weekdays 10:00-12:00"});
    let subject = json!({"full_name": SURVIVOR_NAME, "date_of_birth": SURVIVOR_DOB});
    let perpetrator = json!({"fullName": PERPETRATOR_NAME, "dateOfBirth": "1987-09-30", "address": "4 Invented Road, Northbridge", "relationship": "ex-partner"});
    let referrer = json!({"name": "Demo Officer", "agency": "Northbridge Council Housing Solutions", "role": "Housing options officer"});
    let housing = "housing-northbridge";
    let landlord = "riverside-homes";

    // 1. Housing identifies abuse and records a DASH checklist: 15 Yes answers, high risk.
    let (status, dash) = s.post(housing, "/dash-assessments", json!({"case_ref": "HSG-2026-0042", "subject": subject, "answers": dash_answers(15)})).await?;
    ensure!(status == 201, "recording the DASH checklist failed: {dash}");
    ensure!(dash["score"] == json!(15) && dash["risk"] == json!("high"), "DASH scored {dash}");
    s.report.subject_ref = dash["subject_ref"].as_str().unwrap_or_default().to_owned();
    if print {
        println!("  housing-northbridge records a DASH checklist: score {} -> {} risk (MARAC criteria met)", dash["score"], dash["risk"].as_str().unwrap_or_default());
    }
    // The referrals name the recorded assessment: the service puts its signed summary in each
    // and its band in the header (a risk the request asserts is refused).
    let assessment = dash["id"].clone();
    ensure!(dash["tasks"].as_array().map(Vec::len) == Some(2), "a high result sets the IDVA and MARAC referrals as tasks: {dash}");

    // Housing records what the survivor agreed to: referral to an IDVA and a reciprocal move.
    // She was not asked about MARAC: asking would raise the risk (recorded with that reason).
    let (status, given) = s.post(housing, "/consents", json!({"subject": subject, "state": "given",
        "scope": {"roles": ["idva", "reciprocals"], "purposes": ["safeguarding", "rehousing"]}})).await?;
    ensure!(status == 201, "recording consent failed: {given}");
    let consent = json!({"id": given["consent_id"], "state": "given"});
    let (status, not_sought) = s.post(housing, "/consents", json!({"subject": subject, "state": "not-sought", "reason": "asking-would-increase-risk"})).await?;
    ensure!(status == 201, "recording consent not sought failed: {not_sought}");

    // 2. Housing refers to the IDVA service (consent given) and to MARAC (visible high risk;
    //    the survivor was not asked, so it is shared without consent on a safeguarding basis).
    let idva_referral = s
        .disclose(housing, json!({"to": "idva-northbridge", "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a", "consent": consent,
            "assessment_id": assessment, "subject": subject, "case_ref": "HSG-2026-0042",
            "payload": {"idvaReferral": {"referrer": referrer, "survivor": survivor, "perpetrators": [perpetrator],
                "reason": "Disclosed escalating abuse at a housing options interview", "survivorAware": true}}}), false)
        .await?;
    let marac_referral = s
        .disclose(housing, json!({"to": "marac-northbridge", "purpose": "marac", "lawful_basis": "uk-gdpr-9-2-g-dpa-s1-p18",
            "consent": {"id": not_sought["consent_id"], "state": "not-sought"}, "assessment_id": assessment, "subject": subject, "case_ref": "HSG-2026-0042",
            "without_consent": {"rationale_code": "asking-would-increase-risk",
                "rationale": "Visible high risk; the perpetrator monitors her phone, so asking could alert him"},
            "payload": {"maracReferral": {"referrer": referrer, "survivor": survivor, "perpetrators": [perpetrator],
                "criteria": ["MARAC_CRITERION_VISIBLE_HIGH_RISK"], "survivorAware": false, "reasonNoConsent": "Asking would raise the risk"}}}), false)
        .await?;
    s.ack("idva-northbridge", &idva_referral, "accepted", "").await?;
    s.ack("marac-northbridge", &marac_referral, "accepted", "").await?;

    // 3. MARAC researches the case with member agencies and records an action for housing.
    let sref = s.report.subject_ref.clone();
    for member in [housing, "idva-northbridge"] {
        let request = s
            .disclose("marac-northbridge", json!({"to": member, "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e", "subject_ref": sref,
                "case_ref": "MARAC-2026-11-07", "payload": {"maracResearchRequest": {"meetingDate": "2026-12-03", "survivor": {"fullName": SURVIVOR_NAME, "dateOfBirth": SURVIVOR_DOB},
                    "perpetrators": [{"fullName": PERPETRATOR_NAME, "dateOfBirth": "1987-09-30"}], "questions": "What do you hold on these people?", "replyBy": "2026-12-01"}}}), false)
            .await?;
        s.delivered(&request).await?;
        s.disclose(member, json!({"to": "marac-northbridge", "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e", "subject_ref": sref,
            "case_ref": "MARAC-2026-11-07", "in_reply_to": request,
            "payload": {"maracResearchResponse": {"holdsInformation": true, "summary": "Two prior reports of noise and damage at the tenancy"}}}), false)
            .await?;
    }
    let (status, action) = s.post("marac-northbridge", "/actions", json!({"owner_agency": housing, "description": "Fit additional security to the property (sanctuary scheme)",
        "due_date": "2026-12-10", "meeting_date": "2026-12-03", "subject_ref": sref, "case_ref": "MARAC-2026-11-07"})).await?;
    ensure!(status == 201, "recording the MARAC action failed: {action}");
    let action_id = action["action_id"].as_str().unwrap_or_default().to_owned();
    let action_envelope = s.outcome("marac-northbridge", housing, "maracAction", 201, action["disclosure"].clone(), false)?;
    s.delivered(&action_envelope).await?;
    s.disclose(housing, json!({"to": "marac-northbridge", "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e", "subject_ref": sref, "in_reply_to": action_envelope,
        "payload": {"maracActionUpdate": {"actionId": action_id, "status": "ACTION_STATUS_DONE", "note": "Sanctuary measures fitted"}}}), false)
        .await?;

    // 4. Housing asks the reciprocal scheme for a move (consent given). The coordinator may not
    //    receive the current address: the ISP removes it before sealing.
    let move_request = s
        .disclose(housing, json!({"to": "reciprocals-scheme", "purpose": "rehousing", "lawful_basis": "uk-gdpr-6-1-a", "consent": consent, "assessment_id": assessment,
            "subject": subject, "case_ref": "HSG-2026-0042",
            "payload": {"reciprocalRequest": {"referrer": referrer, "applicant": survivor, "currentLandlord": housing, "tenure": "secure",
                "household": {"adults": 1, "children": 2, "bedroomsNeeded": 2},
                "areasOfChoice": ["Eastvale", "Southmoor", "Westbrook", "Highcross", "Riverside"], "excludedAreas": ["Northbridge"]}}}), false)
        .await?;
    s.ack("reciprocals-scheme", &move_request, "accepted", "").await?;
    let applications = s.get("reciprocals-scheme", "/applications").await?;
    // The application this request opened (a kept data directory may hold earlier runs').
    let reference = applications
        .as_array()
        .and_then(|a| a.iter().find(|app| app["envelope_id"] == json!(move_request)))
        .and_then(|app| app["application_ref"].as_str())
        .context("no application reference assigned to the reciprocal request")?
        .to_owned();
    if print {
        println!("  reciprocals-scheme assigns application reference {reference}");
    }
    // Housing is the applicant's current landlord: its named lead approves, from their own
    // login, before anything is circulated.
    s.scheme_status(&reference, "awaiting_approval").await?;
    let (status, approval) = s.post(housing, &format!("/reciprocal-applications/{reference}/approval"), json!({"decision": "approved"})).await?;
    let approval = s.outcome(housing, "reciprocals-scheme", "reciprocalApproval (named lead)", status, approval, false)?;
    s.delivered(&approval).await?;
    s.scheme_status(&reference, "approved").await?;
    let (status, circulated) = s.post("reciprocals-scheme", &format!("/applications/{reference}/circulate"), json!({"landlords": [landlord]})).await?;
    ensure!(status == 201, "circulating the property request failed: {circulated}");
    for sent in circulated["sent"].as_array().into_iter().flatten() {
        let id = s.outcome("reciprocals-scheme", landlord, "reciprocalPropertyRequest (anonymised)", 201, sent.clone(), false)?;
        s.delivered(&id).await?;
        s.ack(landlord, &id, "received", "").await?;
    }
    let offer = s
        .disclose(landlord, json!({"to": "reciprocals-scheme", "purpose": "rehousing", "lawful_basis": "uk-gdpr-6-1-e", "case_ref": reference,
            "payload": {"reciprocalOffer": {"applicationRef": reference, "propertyRef": "RH-PROP-2291", "area": "Eastvale", "bedrooms": 2, "availableFrom": "2027-01-04", "landlord": landlord}}}), false)
        .await?;
    s.delivered(&offer).await?;
    // The applicant accepts; the coordinator records it and the landlord is answered.
    s.scheme_status(&reference, "offered").await?;
    let (status, decided) = s.post("reciprocals-scheme", &format!("/applications/{reference}/offer-decision"), json!({"decision": "accepted"})).await?;
    ensure!(status == 200, "recording the applicant's acceptance failed: {decided}");
    s.outcome("reciprocals-scheme", landlord, "reciprocalOfferResponse", 201, json!({"envelope_id": decided["answer_envelope_id"]}), false)?;
    let moved = s
        .disclose(landlord, json!({"to": "reciprocals-scheme", "purpose": "rehousing", "lawful_basis": "uk-gdpr-6-1-e", "case_ref": reference,
            "payload": {"reciprocalMoveCompleted": {"applicationRef": reference, "propertyRef": "RH-PROP-2291", "movedOn": "2027-01-11",
                "rehousingLandlord": landlord, "vacatingLandlord": housing}}}), false)
        .await?;
    s.delivered(&moved).await?;

    // 5. Housing refers the perpetrator to a pathway. The first attempt still carries the
    //    survivor's address and phone: the protocol refuses it whole (a near miss). The second,
    //    without them, goes.
    let mut perpetrator_referral = json!({"to": "perpetrator-pathways", "purpose": "perpetrator-intervention", "lawful_basis": "cda-1998-s115",
        "assessment_id": assessment, "subject": subject, "case_ref": "HSG-2026-0042",
        "payload": {"perpetratorReferral": {"referrer": referrer, "perpetrator": perpetrator, "survivor": survivor, "pathway": "PATHWAY_HIGH_HARM",
            "risk": "RISK_LEVEL_HIGH", "reportEngagementTo": "idva-northbridge", "reason": "Escalating abuse, breach of tenancy conditions"}}});
    s.disclose(housing, perpetrator_referral.clone(), true).await?;
    perpetrator_referral["payload"]["perpetratorReferral"]["survivor"] = json!({"fullName": SURVIVOR_NAME, "dateOfBirth": SURVIVOR_DOB});
    let pathway_referral = s.disclose(housing, perpetrator_referral, false).await?;
    s.ack("perpetrator-pathways", &pathway_referral, "accepted", "").await?;

    // 6. The pathway tells the survivor's advocate how the perpetrator is engaging. It holds no
    //    subject key: its case knows her by the link token housing's referral carried, which
    //    the IDVA matches to its own case.
    let link = s.get("perpetrator-pathways", &format!("/inbox/{pathway_referral}")).await?["subject_ref"].as_str().unwrap_or_default().to_owned();
    ensure!(link.starts_with("l-") && link != sref, "the pathway was given the survivor's subject ref: {link}");
    s.disclose("perpetrator-pathways", json!({"to": "idva-northbridge", "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-e",
        "subject_ref": link, "in_reply_to": pathway_referral,
        "payload": {"perpetratorEngagementUpdate": {"engagement": "ENGAGEMENT_ENGAGED", "asOf": "2027-01-20", "pathway": "PATHWAY_HIGH_HARM", "note": "Attended first two sessions"}}}), false)
        .await?;

    check(&mut s, &[&idva_referral, &marac_referral, &move_request, &pathway_referral]).await?;
    Ok(s.report)
}

/// The checks a user would make once the script has run.
async fn check(s: &mut Script<'_>, referrals: &[&str]) -> anyhow::Result<()> {
    // Every disclosure reached its recipient, exactly once, and nothing valid was quarantined.
    let ids: Vec<String> = s.report.delivered.keys().cloned().collect();
    for id in &ids {
        s.delivered(id).await?;
    }
    for agency in s.hub.services.keys() {
        let (before, quarantined_before) = s.before.get(agency).cloned().unwrap_or_default();
        let inbox = s.list(agency, "/inbox", "stream_seq").await?;
        let fresh: Vec<&Value> =
            inbox.as_array().into_iter().flatten().filter(|e| !before.iter().any(|b| e["envelope_id"].as_str() == Some(b.as_str()))).collect();
        // Receipts the services sent on their own (delivered, opened), and the reciprocal
        // scheme's status messages, are not the script's.
        let delivered = &s.report.delivered;
        let automatic = |e: &Value| {
            (e["kind"] == json!("referral.ack") || e["kind"] == json!("reciprocal.status")) && !delivered.contains_key(e["envelope_id"].as_str().unwrap_or_default())
        };
        let receipts = fresh.iter().filter(|e| automatic(e)).count();
        let mut mine: Vec<&str> = fresh.iter().filter(|e| !automatic(e)).filter_map(|e| e["envelope_id"].as_str()).collect();
        mine.sort();
        let mut expected: Vec<&str> = s.report.delivered.iter().filter(|(_, r)| *r == agency).map(|(id, _)| id.as_str()).collect();
        expected.sort();
        ensure!(mine == expected, "{agency} stored {} envelopes in this run, expected exactly {}", mine.len(), expected.len());
        s.report.automatic_receipts += receipts;
        let quarantined = s.list(agency, "/quarantine", "stream_seq").await?;
        let now = quarantined.as_array().map(Vec::len).unwrap_or_default();
        ensure!(now == quarantined_before, "{agency} quarantined {} valid envelopes: {quarantined}", now - quarantined_before);
    }
    // Every referral was acknowledged, and the sender sees it.
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in referrals {
        loop {
            let sent = s.get("housing-northbridge", &format!("/disclosures/{id}")).await?;
            if sent["status"] == json!("accepted") {
                // Who at the recipient opened and accepted it comes from their login.
                ensure!(
                    sent["opened_by"] == json!("demo.caseworker") && sent["status_by"] == json!("demo.caseworker"),
                    "referral {id}: the sender does not see who opened and accepted it: {sent}"
                );
                break;
            }
            ensure!(Instant::now() < deadline, "referral {id} is still {} at the sender", sent["status"]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The refused referral never left housing.
    let pathway_inbox = s.list("perpetrator-pathways", "/inbox", "stream_seq").await?;
    for entry in pathway_inbox.as_array().into_iter().flatten() {
        let payload = s.get("perpetrator-pathways", &format!("/inbox/{}", entry["envelope_id"].as_str().unwrap_or_default())).await?;
        let text = payload.to_string();
        ensure!(!text.contains(SURVIVOR_ADDRESS) && !text.contains(SURVIVOR_PHONE), "the pathway holds the survivor's address or phone");
    }
    // The ledger holds every disclosure and the near miss, and verifies.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ig = s.logins.as_role("audit", &s.hub.audit_url, runtime::auth::Role::IgLead).await?;
        let ledger = serde_json::Value::from(crate::ledger_pages(&ig, &s.hub.audit_url, "").await?);
        let ids: Vec<&str> = ledger.as_array().into_iter().flatten().filter_map(|e| e["entry_id"].as_str()).collect();
        let missing = s.report.delivered.keys().chain(&s.report.near_misses).filter(|id| !ids.contains(&id.as_str())).count();
        if missing == 0 {
            let near = ledger.as_array().into_iter().flatten().filter(|e| e["entry_type"] == json!("near_miss")).count();
            let expected = s.near_misses_before + s.report.near_misses.len();
            ensure!(near == expected, "the ledger has {near} near misses, expected {expected}");
            break;
        }
        ensure!(Instant::now() < deadline, "{missing} disclosures never reached the ledger");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let verify = s.get("audit", "/verify").await?;
    ensure!(verify["ok"] == json!(true), "the ledger does not verify: {verify}");
    s.report.ledger_entries = verify["entries"].as_u64().unwrap_or_default();

    // A signed checkpoint covers the whole case, and every agency's witness has checked it
    // (consistent with every earlier one it saw) without an alert.
    let entries = s.report.ledger_entries;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, latest) = s.call(reqwest::Method::GET, "audit", "/checkpoints/latest", None).await?;
        let size = if status == 200 { latest["tree_size"].as_u64().unwrap_or_default() } else { 0 };
        if size >= entries {
            s.report.checkpoint_size = size;
            break;
        }
        ensure!(Instant::now() < deadline, "no checkpoint covering the ledger's {entries} entries was signed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for agency in s.hub.services.keys() {
        loop {
            let witness = s.get(agency, "/witness").await?;
            ensure!(witness["alerts"].as_array().is_some_and(|a| a.is_empty()), "{agency}'s ledger witness raised an alert: {witness}");
            if witness["last_accepted"]["tree_size"].as_u64().unwrap_or_default() >= s.report.checkpoint_size {
                break;
            }
            ensure!(Instant::now() < deadline, "{agency} never witnessed the checkpoint of {} entries", s.report.checkpoint_size);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}
