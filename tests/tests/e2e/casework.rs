//! Casework every agency shares (issue #13): a risk that can be proved, the referrals a high
//! DASH result calls for, acknowledgement deadlines that only staff can meet and that fire
//! when missed (with a clock the test moves), the IG report measuring staff
//! acknowledgements, and a person's chronology and flags.

use std::time::Duration;

use serde_json::{Value, json};
use tests::{Backend, Partnership, dash_assessment, eventually};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const MARAC: &str = "marac-northbridge";

fn subject() -> Value {
    json!({"full_name": "Casework Person", "date_of_birth": "1989-07-14"})
}

fn idva_referral(extra: Value) -> Value {
    let mut body = json!({"to": IDVA, "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a", "subject": subject(), "case_ref": "HSG-2026-0500",
        "payload": {"idvaReferral": {"survivor": {"fullName": "Casework Person", "dateOfBirth": "1989-07-14"}, "reason": "Test", "survivorAware": true}}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    body
}

async fn consent(p: &Partnership) -> anyhow::Result<Value> {
    let (status, v) = p.post(HOUSING, "/consents", &json!({"subject": subject(), "state": "given", "scope": {"roles": ["idva", "marac"], "purposes": ["safeguarding", "marac"]}})).await?;
    anyhow::ensure!(status == 201, "{v}");
    Ok(json!({"id": v["consent_id"], "state": "given"}))
}

async fn in_inbox(p: &Partnership, agency: &str, id: &str) -> anyhow::Result<Value> {
    eventually("the referral in the recipient's inbox", Duration::from_secs(60), || async {
        Ok(p.list(agency, "/inbox", "stream_seq").await?.into_iter().find(|e| e["envelope_id"] == id))
    })
    .await
}

async fn deadlines(p: &Partnership, agency: &str, state: &str) -> anyhow::Result<Vec<Value>> {
    Ok(p.get(agency, &format!("/deadlines?state={state}")).await?.as_array().cloned().unwrap_or_default())
}

async fn risk_is_proved_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let consent = consent(&p).await?;
    // A risk the request asserts is refused, with what to do instead; so is a DASH summary
    // the caller wrote itself.
    let (status, v) = p.post(HOUSING, "/disclosures", &idva_referral(json!({"consent": consent, "risk": "high"}))).await?;
    assert_eq!(status, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("assessment_id"), "{v}");
    let mut invented = idva_referral(json!({"consent": consent}));
    invented["payload"]["idvaReferral"]["dash"] = json!({"checklistVersion": "made-up-v9", "score": 20, "risk": "RISK_LEVEL_HIGH"});
    let (status, v) = p.post(HOUSING, "/disclosures", &invented).await?;
    assert_eq!(status, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("filled in by the service"), "{v}");
    // Sharing without consent on the ground of high risk needs the assessment too.
    let marac = json!({"to": MARAC, "purpose": "marac", "lawful_basis": "uk-gdpr-9-2-g-dpa-s1-p18", "consent": {"state": "not-sought"}, "subject": subject(),
        "without_consent": {"rationale_code": "asking-would-increase-risk", "rationale": "He reads her messages"},
        "payload": {"maracReferral": {"survivor": {"fullName": "Casework Person"}, "criteria": ["MARAC_CRITERION_VISIBLE_HIGH_RISK"]}}});
    let (status, v) = p.post(HOUSING, "/disclosures", &marac).await?;
    assert_eq!((status, v["reason"].as_str()), (403, Some("consent_required")), "without an assessment the risk is not high: {v}");
    // A standard result proves no more than standard.
    let low = dash_assessment(&p, HOUSING, &subject(), 4).await?;
    let mut low_marac = marac.clone();
    low_marac["assessment_id"] = json!(low);
    let (status, v) = p.post(HOUSING, "/disclosures", &low_marac).await?;
    assert_eq!(status, 403, "a standard assessment does not allow sharing without consent: {v}");
    // A high result: the referrals it calls for are tasks (deadlines) until sent.
    let (status, high) = p
        .post(HOUSING, "/dash-assessments", &json!({"case_ref": "HSG-2026-0500", "subject": subject(), "answers": (0..24).map(|i| if i < 16 { "yes" } else { "no" }).collect::<Vec<_>>()}))
        .await?;
    assert_eq!(status, 201, "{high}");
    assert_eq!((high["risk"].as_str(), high["score"].as_u64()), (Some("high"), Some(16)));
    let id = high["id"].as_str().unwrap().to_owned();
    let tasks: Vec<String> = deadlines(&p, HOUSING, "open").await?.iter().filter(|d| d["target"] == id.as_str()).map(|d| d["code"].as_str().unwrap().to_owned()).collect();
    assert_eq!(tasks, ["refer_idva", "refer_marac"], "a high result sets the IDVA and MARAC referrals as tasks");
    // Naming it: the risk and the signed summary come from the record.
    let (status, sent) = p.post(HOUSING, "/disclosures", &idva_referral(json!({"consent": consent, "assessment_id": id}))).await?;
    assert_eq!(status, 201, "{sent}");
    let envelope = sent["envelope_id"].as_str().unwrap().to_owned();
    let mut marac = marac.clone();
    marac["assessment_id"] = json!(id);
    let (status, v) = p.post(HOUSING, "/disclosures", &marac).await?;
    assert_eq!(status, 201, "with the high assessment it is shared without consent: {v}");
    let open: Vec<Value> = deadlines(&p, HOUSING, "open").await?.into_iter().filter(|d| d["target"] == id.as_str()).collect();
    assert!(open.is_empty(), "both referral tasks are met once sent: {open:?}");
    // The recipient holds the proof: the summary checked on receipt, the score recomputed
    // from the answers that flowed to it.
    in_inbox(&p, IDVA, &envelope).await?;
    let item = p.get(IDVA, &format!("/inbox/{envelope}")).await?;
    assert_eq!(item["risk"], "high", "{item}");
    let dash = &item["payload"]["idvaReferral"]["dash"];
    assert_eq!((dash["score"].as_u64(), dash["assessedBy"].as_str(), dash["assessmentId"].as_str()), (Some(16), Some(HOUSING), Some(id.as_str())), "{dash}");
    assert_eq!(dash["items"].as_array().map(Vec::len), Some(24));
    assert!(!dash["signature"].as_str().unwrap_or_default().is_empty());
    // Another agency's assessment cannot be named.
    let (status, v) = p.post(IDVA, "/disclosures", &json!({"to": MARAC, "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e", "assessment_id": id, "subject": subject(),
        "payload": {"maracReferral": {"survivor": {"fullName": "Casework Person"}}}})).await?;
    assert_eq!(status, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("no DASH assessment"), "{v}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_risk_comes_from_a_recorded_assessment_on_sqlite() -> anyhow::Result<()> {
    risk_is_proved_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_risk_comes_from_a_recorded_assessment_on_postgres() -> anyhow::Result<()> {
    risk_is_proved_on(Backend::Postgres).await
}

async fn deadlines_fire_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let consent = consent(&p).await?;
    let mut ids = Vec::new();
    for case in ["HSG-2026-0601", "HSG-2026-0602"] {
        let (status, sent) = p.post(HOUSING, "/disclosures", &idva_referral(json!({"consent": consent, "case_ref": case}))).await?;
        assert_eq!(status, 201, "{sent}");
        ids.push(sent["envelope_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        in_inbox(&p, IDVA, id).await?;
    }
    // The automatic `received` receipt reaches housing, but acknowledges nothing: both
    // referrals still wait for a person at the IDVA.
    eventually("the automatic receipts at housing", Duration::from_secs(60), || async {
        let sent = p.list(HOUSING, "/disclosures", "envelope_id").await?;
        Ok(ids.iter().all(|id| sent.iter().any(|s| s["envelope_id"] == id.as_str() && s["status"] == "received")).then_some(()))
    })
    .await?;
    let waiting: Vec<Value> = deadlines(&p, IDVA, "open").await?.into_iter().filter(|d| d["code"] == "acknowledge").collect();
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    assert!(deadlines(&p, IDVA, "escalated").await?.is_empty());
    // One is accepted by a caseworker inside the target; the other is left.
    let (status, v) = p.post(IDVA, &format!("/inbox/{}/ack", ids[0]), &json!({"status": "accepted"})).await?;
    assert_eq!(status, 201, "{v}");
    // Two days and an hour later, the one nobody answered is escalated.
    p.clock().advance(Duration::from_secs(49 * 3600));
    let escalated = eventually("the unanswered referral escalated", Duration::from_secs(30), || async {
        // (The IDVA service's own first-contact deadlines for both referrals pass too.)
        Ok(Some(deadlines(&p, IDVA, "escalated").await?.into_iter().filter(|d| d["code"] == "acknowledge").collect::<Vec<_>>()).filter(|e| !e.is_empty()))
    })
    .await?;
    assert_eq!(escalated.len(), 1, "{escalated:?}");
    assert_eq!((escalated[0]["code"].as_str(), escalated[0]["target"].as_str(), escalated[0]["counterpart"].as_str()), (Some("acknowledge"), Some(ids[1].as_str()), Some(HOUSING)));
    // The ledger holds a signed deadline_missed entry and the staff acknowledgement.
    let ledger = eventually("deadline_missed and acknowledged in the ledger", Duration::from_secs(60), || async {
        let l = p.ledger().await?;
        let missed = l.iter().any(|e| e["entry_type"] == "deadline_missed" && e["in_reply_to"] == ids[1].as_str() && e["recorded_by"] == IDVA && e["rule"] == "acknowledge");
        let acked = l.iter().any(|e| e["entry_type"] == "acknowledged" && e["in_reply_to"] == ids[0].as_str() && e["reason"] == "accepted");
        Ok((missed && acked).then_some(l))
    })
    .await?;
    assert!(!ledger.iter().any(|e| e["entry_type"] == "acknowledged" && e["in_reply_to"] == ids[1].as_str()), "an automatic receipt is never an acknowledgement");
    // Answering late resolves the escalation (it stays in the ledger).
    let (status, v) = p.post(IDVA, &format!("/inbox/{}/ack", ids[1]), &json!({"status": "accepted"})).await?;
    assert_eq!(status, 201, "{v}");
    let acknowledge = |d: &Vec<Value>| d.iter().filter(|d| d["code"] == "acknowledge").count();
    assert_eq!(acknowledge(&deadlines(&p, IDVA, "escalated").await?), 0);
    assert_eq!(acknowledge(&deadlines(&p, IDVA, "missed").await?), 1);
    // The IG report measures time to a staff acknowledgement, and counts the missed deadline.
    let today = runtime::chronology::date_of(isp::now_ms());
    let report = eventually("both acknowledgements in the report", Duration::from_secs(60), || async {
        let r: Value = p.ig_lead().await?.get(format!("{}/report?since={today}&until={today}", p.url("audit"))).send().await?.json().await?;
        Ok((r["acknowledgement"][IDVA][0] == 2).then_some(r))
    })
    .await?;
    assert!(report["deadlines_missed"].as_array().unwrap().contains(&json!([IDVA, "acknowledge", 1])), "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_staff_acknowledge_and_a_missed_deadline_escalates_on_sqlite() -> anyhow::Result<()> {
    deadlines_fire_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_staff_acknowledge_and_a_missed_deadline_escalates_on_postgres() -> anyhow::Result<()> {
    deadlines_fire_on(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_persons_record_holds_their_chronology_and_flags() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let consent = consent(&p).await?;
    let assessment = dash_assessment(&p, HOUSING, &subject(), 15).await?;
    let (status, sent) = p.post(HOUSING, "/disclosures", &idva_referral(json!({"consent": consent, "assessment_id": assessment}))).await?;
    assert_eq!(status, 201, "{sent}");
    let subject_ref = p.get(HOUSING, &format!("/disclosures/{}", sent["envelope_id"].as_str().unwrap())).await?["subject_ref"].as_str().unwrap().to_owned();
    let (status, v) = p.post(HOUSING, "/flags", &json!({"subject_ref": subject_ref, "code": "safe-contact-only", "review_on": "2027-01-31", "note": "Only the work mobile"})).await?;
    assert_eq!(status, 201, "{v}");
    let (status, v) = p.post(HOUSING, &format!("/people/{subject_ref}/notes"), &json!({"text": "Met at the housing options desk"})).await?;
    assert_eq!(status, 201, "{v}");
    // Free text in a flag's code, a date that is not one, or no person at all: refused.
    for (bad, needle) in [
        (json!({"subject_ref": subject_ref, "code": "Jane is scared", "review_on": "2027-01-31"}), "code is one of"),
        (json!({"subject_ref": subject_ref, "code": "safe-contact-only", "review_on": "next week"}), "YYYY-MM-DD"),
        (json!({"code": "safe-contact-only", "review_on": "2027-01-31"}), "on a person"),
        (json!({"property_ref": "12 Acacia Avenue", "code": "perpetrator-at-address", "review_on": "2027-01-31"}), "property_ref"),
        (json!({"subject_ref": subject_ref, "code": "safe-contact-only", "review_on": "2027-01-31", "note": "Jane ".repeat(2_001)}), "longer than 10000"),
    ] {
        let (status, v) = p.post(HOUSING, "/flags", &bad).await?;
        assert_eq!(status, 400, "{v}");
        assert!(v["detail"].as_str().unwrap().contains(needle), "{v}");
        assert!(!v.to_string().contains("Jane") && !v.to_string().contains("Acacia"), "the error never repeats the value: {v}");
    }
    let record = p.get(HOUSING, &format!("/people/{subject_ref}")).await?;
    let events: Vec<&str> = record["chronology"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["assessment", "disclosure_sent", "flag", "note"], "{record}");
    assert_eq!(record["chronology"][3]["detail"], "Met at the housing options desk");
    assert_eq!(record["flags"][0]["code"], "safe-contact-only");
    assert_eq!(record["flags"][0]["note"], "Only the work mobile");
    // The note and the flag's note are sealed at rest: not in the database file in clear.
    let found = tests::files_containing(p.data(), b"Met at the housing options desk")?;
    assert!(found.is_empty(), "a note in clear in {found:?}");
    // The IDVA's record of the same person starts when the referral arrives.
    eventually("the referral in the IDVA's chronology of her", Duration::from_secs(60), || async {
        let r = p.get(IDVA, &format!("/people/{subject_ref}")).await?;
        Ok(r["chronology"].as_array().unwrap().iter().any(|e| e["event"] == "disclosure_received" && e["counterpart"] == HOUSING).then_some(()))
    })
    .await?;
    Ok(())
}
