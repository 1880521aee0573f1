//! Consent as partnership state, on real nats-server and both storage backends: a withdrawal
//! stops every later disclosure relying on it (at another agency, in the sender's outbox, on
//! receipt), another agency cannot overwrite a record, and sharing without consent needs an
//! officer, a rationale code and the rationale.

use std::time::Duration;

use serde_json::{Value, json};
use tests::{Backend, Partnership, eventually};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const MARAC: &str = "marac-northbridge";
const NAME: &str = "Synthetic Consent Person";

fn subject() -> Value {
    json!({"full_name": NAME, "date_of_birth": "1988-02-03"})
}

/// Consent given by the survivor, taken by housing, to the IDVA and MARAC roles.
async fn record_given(p: &Partnership) -> anyhow::Result<String> {
    let (status, v) = p
        .post(HOUSING, "/consents", &json!({"subject": subject(), "state": "given", "scope": {"roles": ["idva", "marac"], "purposes": ["safeguarding", "marac"]}}))
        .await?;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["shared"], true, "the record reached the partnership's bucket: {v}");
    assert!(!v.to_string().contains(NAME), "the record holds the subject ref, never the name: {v}");
    Ok(v["consent_id"].as_str().unwrap().to_owned())
}

fn idva_referral(consent_id: &str) -> Value {
    json!({"to": IDVA, "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a",
        "consent": {"id": consent_id, "state": "given", "recorded_by": HOUSING}, "subject": subject(),
        "payload": {"idvaReferral": {"survivor": {"fullName": NAME, "dateOfBirth": "1988-02-03"}, "reason": "Test", "survivorAware": true}}})
}

/// MARAC's research request to the IDVA, relying on housing's record of consent.
fn marac_request(consent_id: &str, subject_ref: &str) -> Value {
    json!({"to": IDVA, "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e",
        "consent": {"id": consent_id, "state": "given", "recorded_by": HOUSING}, "subject_ref": subject_ref,
        "payload": {"maracResearchRequest": {"meetingDate": "2026-12-03", "questions": "What do you hold?"}}})
}

/// Ledger near misses (refused sends, including stopped ones) and receive rejections.
async fn ledger_entries(p: &Partnership, entry_type: &str) -> anyhow::Result<Vec<Value>> {
    Ok(p.ledger().await?.into_iter().filter(|e| e["entry_type"] == entry_type).collect())
}

async fn withdrawal_on(backend: Backend) -> anyhow::Result<()> {
    let mut p = Partnership::start(backend).await?;
    let consent_id = record_given(&p).await?;

    // Relying on it works, at housing and at MARAC.
    let (status, sent) = p.post(HOUSING, "/disclosures", &idva_referral(&consent_id)).await?;
    assert_eq!(status, 201, "{sent}");
    let subject_ref = p.get(HOUSING, &format!("/consents/{consent_id}")).await?["subject_ref"].as_str().unwrap().to_owned();
    let (status, v) = p.post(MARAC, "/disclosures", &marac_request(&consent_id, &subject_ref)).await?;
    assert_eq!(status, 201, "{v}");
    for (agency, id) in [(HOUSING, sent["envelope_id"].as_str().unwrap()), (MARAC, v["envelope_id"].as_str().unwrap())] {
        // Delivered, not only published: a recipient checks the consent again on receipt, so
        // one still on its way when the withdrawal reaches it is refused there (as it should be).
        eventually("the disclosures made before the withdrawal delivered", Duration::from_secs(60), || async {
            let status = p.get(agency, &format!("/disclosures/{id}")).await?["status"].as_str().unwrap_or_default().to_owned();
            Ok((!matches!(status.as_str(), "queued" | "published")).then_some(()))
        })
        .await?;
    }

    // A referral queued while the broker is down waits in housing's outbox. Housing knows
    // the broker is gone before the referral is made, so its publisher holds it back.
    p.hub.nats.as_mut().unwrap().stop().await?;
    eventually("housing seeing the broker gone", Duration::from_secs(30), || async {
        Ok((p.get(HOUSING, "/health").await?["broker"] != "connected").then_some(()))
    })
    .await?;
    let (status, queued) = p.post(HOUSING, "/disclosures", &idva_referral(&consent_id)).await?;
    assert_eq!(status, 201, "sending goes on while the broker is down: {queued}");
    let queued_id = queued["envelope_id"].as_str().unwrap().to_owned();
    // The survivor withdraws consent; housing records it (stored, shared when the broker is back).
    let (status, w) = p.post(HOUSING, &format!("/consents/{consent_id}/withdraw"), &json!({})).await?;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["current_state"], "withdrawn");
    assert_eq!(w["shared"], false, "the broker is down");
    // Any later send relying on it is refused at once, even before the broker is back.
    let (status, refused) = p.post(HOUSING, "/disclosures", &idva_referral(&consent_id)).await?;
    assert_eq!((status, refused["reason"].as_str()), (403, Some("consent_withdrawn")), "{refused}");
    assert_eq!(p.get(HOUSING, &format!("/disclosures/{queued_id}")).await?["status"], "queued");
    p.hub.nats.as_mut().unwrap().restart().await?;

    // The queued referral is stopped before publishing, not sent.
    let stopped = eventually("the queued referral stopped", Duration::from_secs(60), || async {
        let v = p.get(HOUSING, &format!("/disclosures/{queued_id}")).await?;
        Ok((v["status"] != "queued").then_some(v))
    })
    .await?;
    assert_eq!((stopped["status"].as_str(), stopped["status_reason"].as_str()), (Some("stopped"), Some("consent_withdrawn")), "{stopped}");

    // At MARAC, straight after the withdrawal reached the partnership: refused, near miss.
    eventually("the withdrawal in the partnership's bucket", Duration::from_secs(30), || async {
        let v = p.get(MARAC, &format!("/consents/{consent_id}?recorded_by={HOUSING}")).await?;
        Ok((v["current_state"] == "withdrawn").then_some(()))
    })
    .await?;
    let (status, v) = p.post(MARAC, "/disclosures", &marac_request(&consent_id, &subject_ref)).await?;
    assert_eq!((status, v["reason"].as_str(), v["rule"].as_str()), (403, Some("consent_withdrawn"), Some("consent-record")), "{v}");
    let marac_near_miss = v["near_miss_id"].as_str().unwrap().to_owned();

    // All three are near misses in the ledger, with their reason: the later send and the
    // stopped one at housing, the send at MARAC.
    let near = eventually("the consent near misses in the ledger", Duration::from_secs(60), || async {
        let near: Vec<Value> = ledger_entries(&p, "near_miss").await?.into_iter().filter(|e| e["reason"] == "consent_withdrawn").collect();
        Ok((near.len() >= 3).then_some(near))
    })
    .await?;
    assert_eq!(near.len(), 3, "{near:?}");
    assert!(near.iter().any(|e| e["entry_id"] == marac_near_miss.as_str() && e["recorded_by"] == MARAC), "{near:?}");
    assert!(near.iter().any(|e| e["in_reply_to"] == queued_id.as_str() && e["recorded_by"] == HOUSING), "the stopped referral is a near miss: {near:?}");
    assert_eq!(near.iter().filter(|e| e["recorded_by"] == HOUSING).count(), 2);
    // Never published, so never received or refused by the IDVA.
    assert_eq!(p.get(IDVA, "/quarantine").await?, json!([]));
    let ledger = p.ledger().await?;
    assert!(!ledger.iter().any(|e| e["entry_type"] == "disclosure" && e["entry_id"] == queued_id.as_str()), "the stopped referral was published");
    let inbox = p.get(IDVA, "/inbox").await?;
    let ids: Vec<&str> = inbox.as_array().unwrap().iter().map(|e| e["envelope_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&sent["envelope_id"].as_str().unwrap()), "what was shared before the withdrawal stays");
    assert!(!ids.contains(&queued_id.as_str()));
    assert_eq!(p.get("audit", "/verify").await?["ok"], true);

    // The ledger holds the record's history (given, then withdrawn), and the day's report
    // counts the withdrawal with every send it stopped.
    let changes = ledger_entries(&p, "consent_changed").await?;
    let states: Vec<&str> = changes.iter().filter(|e| e["consent_id"] == consent_id.as_str()).map(|e| e["consent_state"].as_str().unwrap()).collect();
    assert_eq!(states, vec!["given", "withdrawn"], "{changes:?}");
    assert!(changes.iter().all(|e| e["sender"] == HOUSING && e["subject_ref"] == subject_ref.as_str()), "{changes:?}");
    let today = time::OffsetDateTime::now_utc().date();
    let report = p.get("audit", &format!("/report?since={today}&until={today}")).await?;
    assert_eq!(report["withdrawals"], serde_json::json!([[HOUSING, consent_id, 3]]), "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn withdrawal_stops_later_and_queued_disclosures_on_sqlite() -> anyhow::Result<()> {
    withdrawal_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn withdrawal_stops_later_and_queued_disclosures_on_postgres() -> anyhow::Result<()> {
    withdrawal_on(Backend::Postgres).await
}

/// The recipient refuses an envelope whose consent was withdrawn between sealing and receipt:
/// published by the sender before the withdrawal reached it, caught at the IDVA.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_recipient_refuses_an_envelope_whose_consent_is_withdrawn_at_receipt() -> anyhow::Result<()> {
    use isp::consent::State;
    let p = Partnership::start(Backend::Sqlite).await?;
    let consent_id = record_given(&p).await?;
    let housing = runtime::Config::embedded(p.data(), HOUSING, &p.hub.nats_url).load_isp()?;
    let js = async_nats::jetstream::new(p.broker().await?);
    let record = p.get(HOUSING, &format!("/consents/{consent_id}")).await?;
    let mut record: isp::consent::ConsentRecord = serde_json::from_value({
        let mut r = record.clone();
        r.as_object_mut().unwrap().retain(|k, _| k != "current_state" && k != "shared");
        r
    })?;
    let given = isp::consent::verify(&housing.directory, HOUSING, &consent_id, &housing.sign_consent(&record)?)?;
    // Sealed while consent held...
    let out = isp::Outgoing {
        recipient: IDVA.into(),
        kind: isp::Kind::IdvaReferral,
        purpose: "safeguarding".into(),
        lawful_basis: "uk-gdpr-6-1-a".into(),
        consent: Some(proto::v1::ConsentTag { consent_id: consent_id.clone(), state: proto::v1::ConsentState::Given as i32, recorded_by: HOUSING.into() }),
        risk: proto::v1::RiskLevel::Medium,
        subject_ref: record.subject_ref.clone(),
        payload: proto::v1::Payload { body: Some(proto::v1::payload::Body::IdvaReferral(proto::v1::IdvaReferral { reason: "x".into(), ..Default::default() })) },
        ..Default::default()
    };
    let sealed = housing.seal(&out, Some(&given))?;
    // ...withdrawn in the partnership's bucket...
    record.revision += 1;
    record.state = State::Withdrawn;
    let (store, _) = runtime::transport::ensure_consent_bucket(&js).await?;
    store.put(record.key(), housing.sign_consent(&record)?.into()).await?;
    // ...then delivered.
    let subject = runtime::transport::message_subject(HOUSING, IDVA, isp::Kind::IdvaReferral);
    js.publish(subject, sealed.envelope.into()).await?.await?;
    let q = eventually("the envelope quarantined at the IDVA", Duration::from_secs(30), || async {
        let q = p.get(IDVA, "/quarantine").await?;
        Ok(q.as_array().and_then(|a| a.first().cloned()))
    })
    .await?;
    assert_eq!(q["reason"], "consent_withdrawn");
    assert_eq!(q["envelope_id"], sealed.header.envelope_id.as_str());
    assert_eq!(p.get(IDVA, "/inbox").await?, json!([]));
    let rejected = eventually("the rejection in the ledger", Duration::from_secs(30), || async {
        Ok(ledger_entries(&p, "rejected").await?.into_iter().find(|e| e["reason"] == "consent_withdrawn"))
    })
    .await?;
    assert_eq!(rejected["recorded_by"], IDVA);
    Ok(())
}

/// A consent revision signed with `keys` whatever agency it names (the service refuses to
/// sign another agency's record; an attacker holding a key does not ask it).
fn forge(keys: &isp::AgencyKeys, record: &isp::consent::ConsentRecord) -> Vec<u8> {
    use ed25519_dalek::Signer as _;
    let text = serde_json::to_string(record).unwrap();
    let signature = keys.signing.sign(&[isp::consent::CONSENT_CONTEXT, text.as_bytes()].concat());
    serde_json::to_vec(&isp::consent::SignedConsent { record: text, signature: hex::encode(signature.to_bytes()), signing_key_id: keys.signing_key_id() }).unwrap()
}

/// What every agency other than housing reads of housing's record: (state, revision, roles).
async fn seen_elsewhere(p: &Partnership, consent_id: &str) -> anyhow::Result<Vec<(String, u64, Value)>> {
    let mut seen = Vec::new();
    for agency in p.hub.services.keys().filter(|a| *a != HOUSING) {
        let v = p.get(agency, &format!("/consents/{consent_id}?recorded_by={HOUSING}")).await?;
        seen.push((v["current_state"].as_str().unwrap_or_default().to_owned(), v["revision"].as_u64().unwrap_or_default(), v["scope"]["roles"].clone()));
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_agency_cannot_overwrite_a_consent_record() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let consent_id = record_given(&p).await?;
    let subject_ref = p.get(HOUSING, &format!("/consents/{consent_id}")).await?["subject_ref"].as_str().unwrap().to_owned();
    let others = p.hub.services.len() - 1;
    assert!(others >= 5, "the demo partnership has at least five other agencies");
    let given = vec![(String::from("given"), 1, json!(["idva", "marac"])); others];
    assert_eq!(seen_elsewhere(&p, &consent_id).await?, given);

    // Through the API: the IDVA service can only withdraw its own records.
    let (status, v) = p.post(IDVA, &format!("/consents/{consent_id}/withdraw"), &json!({})).await?;
    assert_eq!(status, 404, "{v}");

    // Straight into the bucket, while the record says "given": the IDVA writes newer
    // revisions under housing's key, signed with its own key: one widening the scope in
    // housing's name, one withdrawing in its own name.
    let idva = runtime::Config::embedded(p.data(), IDVA, &p.hub.nats_url).load_isp()?;
    let js = async_nats::jetstream::new(p.broker().await?);
    let (store, stream) = runtime::transport::ensure_consent_bucket(&js).await?;
    let key = isp::consent::key(HOUSING, &consent_id);
    let first = stream.direct_get_first_for_subject(format!("$KV.hub-consent.{key}")).await?.payload;
    let original: isp::consent::ConsentRecord = {
        let signed: isp::consent::SignedConsent = serde_json::from_slice(&first)?;
        serde_json::from_str(&signed.record)?
    };
    let mut widened = original.clone();
    widened.revision = 98;
    widened.scope.roles.push(isp::Role::Reciprocals);
    store.put(&key, forge(&idva.keys, &widened).into()).await?;
    let mut withdrawn = original.clone();
    withdrawn.revision = 99;
    withdrawn.agency = IDVA.into();
    withdrawn.state = isp::consent::State::Withdrawn;
    store.put(&key, idva.sign_consent(&withdrawn)?.into()).await?;
    // Every agency still reads housing's own "given", and a send relying on it goes.
    assert_eq!(seen_elsewhere(&p, &consent_id).await?, given, "a forged revision was taken for housing's");
    let (status, v) = p.post(MARAC, "/disclosures", &marac_request(&consent_id, &subject_ref)).await?;
    assert_eq!(status, 201, "the forged withdrawal stopped a send: {v}");

    // Housing withdraws; replaying housing's own earlier "given" over it changes nothing.
    let (status, w) = p.post(HOUSING, &format!("/consents/{consent_id}/withdraw"), &json!({})).await?;
    assert_eq!((status, w["shared"].as_bool()), (200, Some(true)), "{w}");
    store.put(&key, first.clone()).await?;
    assert_eq!(seen_elsewhere(&p, &consent_id).await?, vec![(String::from("withdrawn"), 2, json!(["idva", "marac"])); others]);
    let (status, v) = p.post(MARAC, "/disclosures", &marac_request(&consent_id, &subject_ref)).await?;
    assert_eq!((status, v["reason"].as_str()), (403, Some("consent_withdrawn")), "{v}");

    // The IDVA's own, validly signed record copied under housing's key is not housing's.
    let (status, _) = p.post(IDVA, "/consents", &json!({"consent_id": "IDV-OWN-1", "subject": subject(), "state": "given",
        "scope": {"roles": ["marac"], "purposes": ["marac"]}})).await?;
    assert_eq!(status, 201);
    let idva_signed = stream.direct_get_first_for_subject(format!("$KV.hub-consent.{}", isp::consent::key(IDVA, "IDV-OWN-1"))).await?.payload;
    store.put(isp::consent::key(HOUSING, "IDV-OWN-1"), idva_signed).await?;
    let (status, v) = p.post(MARAC, "/disclosures", &marac_request("IDV-OWN-1", &subject_ref)).await?;
    assert_eq!((status, v["reason"].as_str()), (403, Some("consent_unknown")), "{v}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consent_out_of_scope_expired_or_unknown_is_refused_with_its_reason() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let consent_id = record_given(&p).await?;
    // Out of scope: consent covered the IDVA and MARAC, not a reciprocal move.
    let (status, v) = p
        .post(HOUSING, "/disclosures", &json!({"to": "reciprocals-scheme", "purpose": "rehousing", "lawful_basis": "uk-gdpr-6-1-a",
            "consent": {"id": consent_id, "state": "given"}, "subject": subject(),
            "payload": {"reciprocalRequest": {"applicant": {"fullName": NAME}, "areasOfChoice": ["A", "B", "C", "D", "E"]}}}))
        .await?;
    assert_eq!((status, v["reason"].as_str()), (403, Some("consent_out_of_scope")), "{v}");
    // Expired.
    let (status, e) = p
        .post(HOUSING, "/consents", &json!({"subject": subject(), "state": "given", "scope": {"roles": ["idva"], "purposes": ["safeguarding"]}, "expires_at_ms": isp::now_ms() + 300}))
        .await?;
    assert_eq!(status, 201, "{e}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, v) = p.post(HOUSING, "/disclosures", &idva_referral(e["consent_id"].as_str().unwrap())).await?;
    assert_eq!((status, v["reason"].as_str()), (403, Some("consent_expired")), "{v}");
    // Unknown.
    let (status, v) = p.post(HOUSING, "/disclosures", &idva_referral("CON-X-404")).await?;
    assert_eq!((status, v["reason"].as_str()), (403, Some("consent_unknown")), "{v}");
    // Bad records are refused with what is wrong, never echoing the value.
    // Who recorded it comes from the login: a body naming someone is refused.
    let (status, v) = p
        .post(HOUSING, "/consents", &json!({"subject": subject(), "state": "given", "recorded_by": "Jane Smith", "scope": {"roles": ["idva"], "purposes": ["safeguarding"]}}))
        .await?;
    assert_eq!(status, 400, "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("recorded_by") && !detail.contains("Jane"), "{detail}");
    let (status, v) = p.post(HOUSING, "/consents", &json!({"subject": subject(), "state": "given", "scope": {"purposes": ["safeguarding"]}})).await?;
    assert_eq!(status, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("recipient roles or agencies"), "{v}");
    let ledger = eventually("three near misses in the ledger", Duration::from_secs(30), || async {
        let near = ledger_entries(&p, "near_miss").await?;
        Ok((near.len() >= 3).then_some(near))
    })
    .await?;
    let reasons: Vec<&str> = ledger.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert_eq!(reasons, ["consent_out_of_scope", "consent_expired", "consent_unknown"]);
    Ok(())
}

async fn without_consent_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let assessment = tests::dash_assessment(&p, HOUSING, &subject(), 15).await?;
    let base = json!({"to": MARAC, "purpose": "marac", "lawful_basis": "uk-gdpr-9-2-g-dpa-s1-p18",
        "consent": {"state": "not-sought"}, "assessment_id": assessment, "subject": subject(),
        "payload": {"maracReferral": {"survivor": {"fullName": NAME}, "criteria": ["MARAC_CRITERION_VISIBLE_HIGH_RISK"]}}});
    let rationale = "He reads her messages; asking would alert him";
    // Without the officer and rationale: 400, nothing sent, nothing queued.
    let (status, v) = p.post(HOUSING, "/disclosures", &base).await?;
    assert_eq!((status, v["error"].as_str()), (400, Some("without_consent_unjustified")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("officer"), "{v}");
    for (without, needle) in [
        // The officer is whoever is logged in; a body naming one is refused.
        (json!({"officer": "Jane Smith", "rationale_code": "asking-would-increase-risk", "rationale": rationale}), "officer"),
        (json!({"rationale_code": "because", "rationale": rationale}), "rationale code"),
        (json!({"rationale_code": "asking-would-increase-risk", "rationale": ""}), "rationale"),
    ] {
        let mut body = base.clone();
        body["without_consent"] = without;
        let (status, v) = p.post(HOUSING, "/disclosures", &body).await?;
        assert_eq!(status, 400, "{v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains(needle) && !detail.contains("Jane") && !detail.contains("messages"), "{detail}");
    }
    assert_eq!(p.get(HOUSING, "/disclosures").await?, json!([]), "a refused request left a trace of a send");
    // On a basis the policy does not allow without consent: refused, near miss.
    let mut body = base.clone();
    body["lawful_basis"] = json!("uk-gdpr-6-1-e");
    body["without_consent"] = json!({"rationale_code": "asking-would-increase-risk", "rationale": rationale});
    let (status, v) = p.post(HOUSING, "/disclosures", &body).await?;
    assert_eq!((status, v["reason"].as_str()), (403, Some("basis_not_valid_without_consent")), "{v}");
    // With them: sent, flagged; officer and code in the clear header; the words stay home.
    body["lawful_basis"] = base["lawful_basis"].clone();
    let (status, v) = p.post(HOUSING, "/disclosures", &body).await?;
    assert_eq!((status, v["without_consent"].as_bool()), (201, Some(true)), "{v}");
    let id = v["envelope_id"].as_str().unwrap().to_owned();
    let mine = p.get(HOUSING, &format!("/disclosures/{id}")).await?;
    assert_eq!((mine["officer"].as_str(), mine["rationale_code"].as_str(), mine["rationale"].as_str()),
        (Some("demo.caseworker"), Some("asking-would-increase-risk"), Some(rationale)));
    let entry = eventually("the disclosure in the ledger", Duration::from_secs(30), || async {
        Ok(p.ledger().await?.into_iter().find(|e| e["entry_id"] == id.as_str()))
    })
    .await?;
    assert_eq!(entry["without_consent"], true);
    let header_b64 = entry.to_string();
    assert!(!header_b64.contains("messages"), "the rationale reached the ledger: {entry}");
    let inbox = eventually("the referral at MARAC", Duration::from_secs(30), || async {
        Ok(p.get(MARAC, "/inbox").await?.as_array().and_then(|a| a.first().cloned()))
    })
    .await?;
    assert_eq!(inbox["envelope_id"], id.as_str());
    // What MARAC staff see of it, decrypted: the referral, and not the rationale.
    let view = p.get(MARAC, &format!("/inbox/{id}")).await?;
    assert_eq!(view["payload"]["maracReferral"]["survivor"]["fullName"], NAME, "{view}");
    assert!(!view.to_string().contains("reads her messages"), "the rationale reached the recipient: {view}");
    // The officer and rationale code are in the signed header the recipient stored.
    let db = p.database_url(MARAC).await?;
    sqlx::any::install_default_drivers();
    use sqlx::Connection as _;
    let mut conn = sqlx::AnyConnection::connect(&db).await?;
    let (envelope,): (Vec<u8>,) = sqlx::query_as("SELECT envelope FROM inbox WHERE envelope_id = $1").bind(&id).fetch_one(&mut conn).await?;
    use prost::Message as _;
    let header = proto::v1::Header::decode(proto::v1::Envelope::decode(envelope.as_slice())?.header.as_slice())?;
    assert!(header.shared_without_consent);
    assert_eq!((header.without_consent_officer.as_str(), header.without_consent_rationale.as_str()), ("demo.caseworker", "asking-would-increase-risk"));
    assert!(!tests::contains(&envelope, b"messages"), "the rationale travelled with the envelope");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sharing_without_consent_requires_officer_and_rationale_on_sqlite() -> anyhow::Result<()> {
    without_consent_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sharing_without_consent_requires_officer_and_rationale_on_postgres() -> anyhow::Result<()> {
    without_consent_on(Backend::Postgres).await
}
