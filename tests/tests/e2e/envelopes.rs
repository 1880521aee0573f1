//! Bad input on the wire. Hand-built envelopes published straight to JetStream on the IDVA's
//! subject: each is refused with its specific reason, quarantined, recorded in the ledger,
//! never stored as a referral, and the valid envelopes around them still arrive.

use std::time::Duration;

use ed25519_dalek::Signer as _;
use isp::{Isp, Kind, Outgoing};
use prost::Message as _;
use proto::v1::{ConsentState, ConsentTag, Envelope, Header, IdvaReferral, MaracReferral, Payload, Person, RiskLevel, payload::Body};
use runtime::transport;
use serde_json::Value;
use tests::{Backend, Partnership, eventually};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";

fn person() -> Option<Person> {
    Some(Person { full_name: "Synthetic Envelope Person".into(), date_of_birth: "1990-01-01".into(), ..Default::default() })
}

const SUBJECT: &str = "s-5f3c0e7a1d2b4c6e8f9a0b1c2d3e4f5a";

/// Housing's consent record "CON-E-1" (given, to the IDVA and MARAC), written to the
/// partnership's consent bucket as housing's service would.
async fn record_consent(isp: &Isp, js: &async_nats::jetstream::Context) -> anyhow::Result<isp::consent::Verified> {
    use isp::consent::{ConsentRecord, Scope, State};
    let record = ConsentRecord {
        consent_id: "CON-E-1".into(),
        agency: HOUSING.into(),
        revision: 1,
        subject_ref: SUBJECT.into(),
        state: State::Given,
        reason: String::new(),
        scope: Scope { roles: vec![isp::Role::Idva, isp::Role::Marac], agencies: vec![], purposes: vec!["safeguarding".into(), "marac".into()] },
        recorded_by: "hsg.staff-1".into(),
        recorded_at_ms: isp::now_ms(),
        created_at_ms: isp::now_ms(),
        expires_at_ms: None,
    };
    let bytes = isp.sign_consent(&record)?;
    let (store, _) = transport::ensure_consent_bucket(js).await?;
    store.put(record.key(), bytes.clone().into()).await?;
    Ok(isp::consent::verify(&isp.directory, HOUSING, "CON-E-1", &bytes)?)
}

/// A valid, consented referral from housing to the IDVA, sealed by housing's ISP.
fn referral(isp: &Isp, consent: &isp::consent::Verified) -> anyhow::Result<Vec<u8>> {
    let body = Body::IdvaReferral(IdvaReferral { survivor: person(), reason: "Test".into(), survivor_aware: true, ..Default::default() });
    seal(isp, consent, IDVA, Kind::IdvaReferral, "safeguarding", body)
}

fn seal(isp: &Isp, consent: &isp::consent::Verified, to: &str, kind: Kind, purpose: &str, body: Body) -> anyhow::Result<Vec<u8>> {
    let out = Outgoing {
        recipient: to.into(),
        kind,
        purpose: purpose.into(),
        lawful_basis: "uk-gdpr-6-1-a".into(),
        consent: Some(ConsentTag { consent_id: "CON-E-1".into(), state: ConsentState::Given as i32, recorded_by: HOUSING.into() }),
        risk: RiskLevel::Medium,
        subject_ref: SUBJECT.into(),
        case_ref: "HSG-E-1".into(),
        in_reply_to: String::new(),
        payload: Payload { body: Some(body) },
        justification: None,
    };
    Ok(isp.seal(&out, Some(consent))?.envelope)
}

/// Decodes an envelope, lets `edit` change its header, and re-encodes it (re-signing with
/// `key` when given, otherwise keeping the old signature).
fn with_header(bytes: &[u8], key: Option<&ed25519_dalek::SigningKey>, edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut envelope = Envelope::decode(bytes).unwrap();
    let mut header = Header::decode(envelope.header.as_slice()).unwrap();
    edit(&mut header);
    envelope.header = header.encode_to_vec();
    if let Some(key) = key {
        envelope.signature = key.sign(&[isp::seal::ENVELOPE_CONTEXT, &envelope.header].concat()).to_bytes().to_vec();
    }
    envelope.encode_to_vec()
}

async fn publish(js: &async_nats::jetstream::Context, subject: String, id: &str, body: Vec<u8>) -> anyhow::Result<()> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    js.publish_with_headers(subject, headers, body.into()).await?.await?;
    Ok(())
}

async fn bad_envelopes_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let isp = runtime::Config::embedded(p.data(), HOUSING, &p.hub.nats_url).load_isp()?;
    let js = async_nats::jetstream::new(p.broker().await?);
    let subject = transport::message_subject(HOUSING, IDVA, Kind::IdvaReferral);
    let stranger = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);

    let consent = record_consent(&isp, &js).await?;
    let valid = referral(&isp, &consent)?;
    let mut tampered_ciphertext = Envelope::decode(valid.as_slice())?;
    let last = tampered_ciphertext.sealed_payload.len() - 1;
    tampered_ciphertext.sealed_payload[last] ^= 0x01;
    let valid_after = referral(&isp, &consent)?;
    let to_marac = seal(&isp, &consent, "marac-northbridge", Kind::MaracReferral, "marac",
        Body::MaracReferral(MaracReferral { survivor: person(), survivor_aware: true, consent_given: true, ..Default::default() }))?;
    let id_of = |b: &[u8]| Header::decode(Envelope::decode(b).unwrap().header.as_slice()).unwrap().envelope_id;

    // Signed honestly by housing, but naming MARAC's age key as the one it sealed to.
    let marac_key = isp.directory.require("marac-northbridge")?.age_key_id();
    let wrong_key = with_header(&referral(&isp, &consent)?, Some(&isp.keys.signing), |h| h.recipient_key_id = marac_key);
    let other_kind_subject = transport::message_subject(HOUSING, IDVA, Kind::ReferralAck);
    let on_other_kind = referral(&isp, &consent)?;

    // (what, subject, body, the reason the IDVA must give)
    let s = || subject.clone();
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        ("valid", s(), valid.clone(), ""),
        ("tampered header", s(), with_header(&valid, None, |h| h.purpose = "marac".into()), "bad_signature"),
        ("tampered ciphertext", s(), tampered_ciphertext.encode_to_vec(), "payload_digest_mismatch"),
        ("wrong signature", s(), with_header(&valid, Some(&stranger), |_| {}), "bad_signature"),
        ("unknown sender", s(), with_header(&valid, Some(&stranger), |h| h.sender = "stranger-agency".into()), "unknown_sender"),
        ("addressed to MARAC", s(), to_marac, "not_addressed_to_us"),
        ("replay of the valid envelope", s(), valid.clone(), "replayed"),
        ("malformed protobuf", s(), b"\xff\xff\xff not a protobuf envelope".to_vec(), "malformed"),
        ("sealed to a key the IDVA never had", s(), wrong_key, "unknown_recipient_key"),
        ("a referral on the receipt kind's subject", other_kind_subject, on_other_kind, "misrouted"),
        ("valid after the bad ones", s(), valid_after.clone(), ""),
    ];
    for (i, (_, subject, body, _)) in cases.iter().enumerate() {
        // A distinct JetStream message id each, so the broker's deduplication does not hide
        // the replay: the recipient must catch it itself.
        publish(&js, subject.clone(), &format!("test-{i}"), body.clone()).await?;
    }

    let expected_refusals: Vec<&str> = cases.iter().map(|c| c.3).filter(|r| !r.is_empty()).collect();
    let quarantined: Vec<Value> = eventually("the IDVA quarantines every bad envelope", Duration::from_secs(30), || async {
        let q = p.get(IDVA, "/quarantine").await?;
        Ok(q.as_array().filter(|q| q.len() >= expected_refusals.len()).cloned())
    })
    .await?;
    let reasons: Vec<&str> = quarantined.iter().map(|q| q["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, expected_refusals, "quarantine reasons in arrival order");
    for q in &quarantined {
        assert!(!q["detail"].as_str().unwrap().is_empty(), "a refusal without a readable detail: {q}");
    }
    // The misrouted one says what was wrong: the kind, not the sender or recipient.
    let misrouted = quarantined.iter().find(|q| q["reason"] == "misrouted").expect("misrouted");
    assert!(misrouted["detail"].as_str().unwrap().contains("kind token"), "{misrouted}");

    // Only the two valid envelopes are stored as referrals, once each.
    let inbox = eventually("the valid envelope after the bad ones arrives", Duration::from_secs(30), || async {
        let inbox = p.get(IDVA, "/inbox").await?;
        Ok(inbox.as_array().filter(|i| i.len() >= 2).cloned())
    })
    .await?;
    let ids: Vec<&str> = inbox.iter().map(|e| e["envelope_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![id_of(&valid), id_of(&valid_after)]);

    // Every refusal is in the ledger, recorded by the IDVA with its reason.
    let ledger = eventually("the ledger records every refusal", Duration::from_secs(30), || async {
        let ledger = p.ledger().await?;
        let n = ledger.iter().filter(|e| e["entry_type"] == "rejected" && e["recorded_by"] == IDVA).count();
        Ok((n >= expected_refusals.len()).then_some(ledger))
    })
    .await?;
    let mut logged: Vec<&str> = ledger
        .iter()
        .filter(|e| e["entry_type"] == "rejected" && e["recorded_by"] == IDVA)
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    let mut want = expected_refusals.clone();
    logged.sort();
    want.sort();
    assert_eq!(logged, want);
    // The ledger also holds what arrived that cannot be verified at all.
    assert!(ledger.iter().any(|e| e["entry_type"] == "unverifiable" && e["reason"] == "malformed"));
    let verify = p.get("audit", "/verify").await?;
    assert_eq!(verify["ok"], true, "{verify}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_envelopes_are_quarantined_and_logged_on_sqlite() -> anyhow::Result<()> {
    bad_envelopes_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_envelopes_are_quarantined_and_logged_on_postgres() -> anyhow::Result<()> {
    bad_envelopes_on(Backend::Postgres).await
}

/// A hand-built envelope from housing to the perpetrator pathway that declares only allowed
/// categories in its signed header but carries the survivor's address and phone inside:
/// caught on open, quarantined as a violation, in the ledger as one, never stored; the
/// address is nowhere in the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_smuggled_survivor_address_is_caught_as_a_violation() -> anyhow::Result<()> {
    use proto::v1::PerpetratorReferral;
    use sha2::Digest as _;
    const PATHWAY: &str = "perpetrator-pathways";
    const ADDRESS: &str = "9 Smuggled Close, Northbridge";
    let p = Partnership::start(Backend::Sqlite).await?;
    let isp = runtime::Config::embedded(p.data(), HOUSING, &p.hub.nats_url).load_isp()?;
    let referral = |survivor: Person| Outgoing {
        recipient: PATHWAY.into(),
        kind: Kind::PerpetratorReferral,
        purpose: "perpetrator-intervention".into(),
        lawful_basis: "cda-1998-s115".into(),
        consent: None,
        risk: RiskLevel::High,
        subject_ref: String::new(),
        case_ref: "HSG-S-1".into(),
        in_reply_to: String::new(),
        justification: None,
        payload: Payload {
            body: Some(Body::PerpetratorReferral(PerpetratorReferral {
                perpetrator: Some(Person { full_name: "Synthetic Harmer".into(), ..Default::default() }),
                survivor: Some(survivor),
                ..Default::default()
            })),
        },
    };
    // The honest envelope (no address) gives a header that declares allowed categories only.
    let honest = isp.seal(&referral(Person { full_name: "Synthetic Survivor".into(), ..Default::default() }), None)?;
    assert!(!honest.header.data_categories.iter().any(|c| c.contains("address")));
    // The same header over a payload that carries the address and phone, re-signed by housing.
    let smuggled = Payload {
        body: referral(Person { full_name: "Synthetic Survivor".into(), address: ADDRESS.into(), phone: "07700 900555".into(), ..Default::default() }).payload.body,
    }
    .encode_to_vec();
    let recipient = isp.directory.get(PATHWAY).unwrap().recipient()?;
    let sealed_payload = age::encrypt(&recipient, &smuggled)?;
    let mut header = honest.header.clone();
    header.envelope_id = uuid::Uuid::now_v7().to_string();
    header.payload_digest = sha2::Sha256::digest(&sealed_payload).to_vec();
    let header_bytes = header.encode_to_vec();
    let signature = isp.keys.signing.sign(&[isp::seal::ENVELOPE_CONTEXT, &header_bytes].concat());
    let envelope = Envelope { header: header_bytes, sealed_payload, signature: signature.to_bytes().to_vec() }.encode_to_vec();
    let js = async_nats::jetstream::new(p.broker().await?);
    publish(&js, transport::message_subject(HOUSING, PATHWAY, Kind::PerpetratorReferral), &header.envelope_id, envelope).await?;

    let q = eventually("the violation quarantined", Duration::from_secs(30), || async {
        Ok(p.get(PATHWAY, "/quarantine").await?.as_array().and_then(|q| q.first().cloned()))
    })
    .await?;
    assert_eq!(q["reason"], "undeclared_categories");
    assert_eq!(q["violation"], true);
    assert!(!q.to_string().contains(ADDRESS), "the refusal repeats the smuggled address: {q}");
    assert_eq!(p.get(PATHWAY, "/inbox").await?, serde_json::json!([]), "the smuggled referral was stored");
    let entry = eventually("the violation in the ledger", Duration::from_secs(30), || async {
        Ok(p.ledger().await?.into_iter().find(|e| e["entry_type"] == "violation"))
    })
    .await?;
    assert_eq!((entry["sender"].as_str(), entry["recipient"].as_str(), entry["reason"].as_str()), (Some(HOUSING), Some(PATHWAY), Some("undeclared_categories")));
    assert!(entry["categories"].as_str().unwrap().split(',').all(|c| !c.contains("address")), "{entry}");
    assert!(!entry.to_string().contains(ADDRESS));
    Ok(())
}
