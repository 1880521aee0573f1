use std::sync::Arc;

use ed25519_dalek::Signer;
use prost::Message;
use proto::v1::{ConsentState, ConsentTag, Envelope, Header, IdvaReferral, Payload, Person, PerpetratorReferral, RiskLevel, payload::Body};
use sha2::{Digest, Sha256};

use super::{ENVELOPE_CONTEXT, verify_event};
use crate::{IspError, Kind, OpenError, Policy, Schema, directory::{DEMO_AGENCIES, generate_partnership}, seal::{Isp, Outgoing}};

struct Partnership {
    isps: Vec<Isp>,
}

impl Partnership {
    fn new() -> Partnership {
        let schema = Arc::new(Schema::load().unwrap());
        let policy = Arc::new(Policy::from_toml(crate::policy::DEMO_POLICY, &schema).unwrap());
        let (directory, keys) = generate_partnership("test", &DEMO_AGENCIES).unwrap();
        let directory = Arc::new(directory);
        let isps = keys
            .into_iter()
            .map(|k| Isp::new(k, directory.clone(), policy.clone(), schema.clone()).unwrap())
            .collect();
        Partnership { isps }
    }
    fn get(&self, id: &str) -> &Isp {
        self.isps.iter().find(|i| i.agency() == id).unwrap()
    }

    /// Housing's IDVA referral at high risk, proved by a DASH summary housing signed.
    fn idva_referral(&self) -> Outgoing {
        self.proved(unproved_referral())
    }

    /// `out` with a high DASH summary housing signed in its payload.
    fn proved(&self, mut out: Outgoing) -> Outgoing {
        let mut summary = proto::v1::DashAssessment {
            checklist_version: "safelives-dash-2024".into(),
            assessed_on: "2026-11-27".into(),
            score: 16,
            risk: RiskLevel::High as i32,
            assessment_id: "0193a0c4-7b1e-7000-8000-000000000042".into(),
            assessor: "hsg.staff-7".into(),
            ..Default::default()
        };
        crate::risk::sign_summary(&self.get("housing-northbridge").keys, &mut summary);
        *crate::risk::summary_slot(&mut out.payload).unwrap() = Some(summary);
        out
    }
}

const NAME: &str = "Zephyrine Quillfeather";
const ADDRESS: &str = "17 Synthetic Lane";

fn survivor() -> Person {
    Person { full_name: NAME.into(), date_of_birth: "1991-04-05".into(), address: ADDRESS.into(), phone: "07000 000001".into(), ..Default::default() }
}

fn unproved_referral() -> Outgoing {
    Outgoing {
        recipient: "idva-northbridge".into(),
        kind: Kind::IdvaReferral,
        purpose: "safeguarding".into(),
        lawful_basis: "uk-gdpr-6-1-a".into(),
        consent: Some(ConsentTag { consent_id: "CON-1".into(), state: ConsentState::Given as i32, recorded_by: "housing-northbridge".into() }),
        risk: RiskLevel::High,
        subject_ref: SUBJECT.into(),
        case_ref: "HSG-1".into(),
        in_reply_to: String::new(),
        payload: Payload { body: Some(Body::IdvaReferral(IdvaReferral { survivor: Some(survivor()), reason: "x".into(), ..Default::default() })) },
        justification: None,
    }
}

const SUBJECT: &str = "s-5f3c0e7a1d2b4c6e8f9a0b1c2d3e4f5a";

/// Housing's record of consent given for "CON-1" to the IDVA role for safeguarding.
fn given(housing: &Isp) -> crate::consent::Verified {
    let record = crate::consent::ConsentRecord {
        consent_id: "CON-1".into(),
        agency: housing.agency().into(),
        revision: 1,
        subject_ref: SUBJECT.into(),
        state: crate::consent::State::Given,
        reason: String::new(),
        scope: crate::consent::Scope { roles: vec![crate::Role::Idva], agencies: vec![], purposes: vec!["safeguarding".into()] },
        recorded_by: "hsg.staff-7".into(),
        recorded_at_ms: 1,
        created_at_ms: 1,
        expires_at_ms: None,
    };
    let bytes = housing.sign_consent(&record).unwrap();
    crate::consent::verify(&housing.directory, housing.agency(), "CON-1", &bytes).unwrap()
}

fn perpetrator_referral(with_survivor_address: bool) -> Outgoing {
    let mut s = survivor();
    if !with_survivor_address {
        s.address.clear();
        s.phone.clear();
    }
    Outgoing {
        recipient: "perpetrator-pathways".into(),
        kind: Kind::PerpetratorReferral,
        purpose: "perpetrator-intervention".into(),
        lawful_basis: "cda-1998-s115".into(),
        risk: RiskLevel::High,
        payload: Payload {
            body: Some(Body::PerpetratorReferral(PerpetratorReferral {
                perpetrator: Some(Person { full_name: "Synthetic Harm".into(), ..Default::default() }),
                survivor: Some(s),
                reason: "free text that never reaches the pathway".into(),
                ..Default::default()
            })),
        },
        ..Default::default()
    }
}

#[test]
fn seal_then_open_round_trips_and_hides_the_payload() {
    let p = Partnership::new();
    let sealed = p.get("housing-northbridge").seal(&p.idva_referral(), Some(&given(p.get("housing-northbridge")))).unwrap();
    assert!(!String::from_utf8_lossy(&sealed.envelope).contains(NAME));
    assert_eq!(sealed.decision.rule, "idva-referral");
    let opened = p.get("idva-northbridge").open(&sealed.envelope).unwrap();
    let Some(Body::IdvaReferral(r)) = opened.payload.body else { panic!() };
    assert_eq!(r.survivor.unwrap().full_name, NAME);
    assert_eq!(opened.header.data_categories, ["referral.narrative", "risk.dash", "survivor.address", "survivor.contact", "survivor.identity"]);
}

#[test]
fn never_fields_to_a_perpetrator_pathway_are_refused_whole() {
    let p = Partnership::new();
    let housing = p.get("housing-northbridge");
    let Err(IspError::Denied(denial)) = housing.seal(&perpetrator_referral(true), None) else { panic!("not denied") };
    assert_eq!(denial.reason, "never_allowed_field");
    assert_eq!(denial.forbidden, ["survivor.address", "survivor.contact"]);
    assert!(!denial.to_string().contains(ADDRESS));
    let (event, bytes) = housing.denial_event(&perpetrator_referral(true), &denial);
    assert_eq!(verify_event(&housing.directory, &bytes).unwrap(), event);
    assert!(!String::from_utf8_lossy(&bytes).contains(ADDRESS));

    let sealed = housing.seal(&perpetrator_referral(false), None).unwrap();
    assert_eq!(sealed.removed.iter().collect::<Vec<_>>(), ["referral.narrative"]);
    let opened = p.get("perpetrator-pathways").open(&sealed.envelope).unwrap();
    let Some(Body::PerpetratorReferral(r)) = opened.payload.body else { panic!() };
    assert!(r.reason.is_empty(), "narrative is not receivable by a pathway");
    assert_eq!(r.survivor.unwrap().full_name, NAME);
}

fn tampered(envelope: &[u8], f: impl FnOnce(&mut Envelope)) -> Vec<u8> {
    let mut e = Envelope::decode(envelope).unwrap();
    f(&mut e);
    e.encode_to_vec()
}

#[test]
fn every_kind_of_bad_envelope_is_refused_specifically() {
    let p = Partnership::new();
    let housing = p.get("housing-northbridge");
    let idva = p.get("idva-northbridge");
    let good = housing.seal(&p.idva_referral(), Some(&given(housing))).unwrap().envelope;

    let bad_header = tampered(&good, |e| {
        let mut h = Header::decode(e.header.as_slice()).unwrap();
        h.risk = RiskLevel::Standard as i32;
        e.header = h.encode_to_vec();
    });
    assert_eq!(idva.open(&bad_header).unwrap_err().1, OpenError::BadSignature("housing-northbridge".into()));

    let bad_cipher = tampered(&good, |e| {
        let last = e.sealed_payload.len() - 1;
        e.sealed_payload[last] ^= 1;
    });
    assert_eq!(idva.open(&bad_cipher).unwrap_err().1, OpenError::PayloadDigestMismatch);

    let forged = tampered(&good, |e| {
        e.signature = p.get("riverside-homes").keys.signing.sign(&[ENVELOPE_CONTEXT, &e.header].concat()).to_bytes().to_vec();
    });
    assert_eq!(idva.open(&forged).unwrap_err().1, OpenError::BadSignature("housing-northbridge".into()));

    let unknown = tampered(&good, |e| {
        let mut h = Header::decode(e.header.as_slice()).unwrap();
        h.sender = "stranger".into();
        e.header = h.encode_to_vec();
    });
    assert_eq!(idva.open(&unknown).unwrap_err().1, OpenError::UnknownSender("stranger".into()));

    let (_, err) = p.get("marac-northbridge").open(&good).unwrap_err();
    assert_eq!(err, OpenError::NotAddressedToUs("idva-northbridge".into()));

    assert!(matches!(idva.open(b"\xff\xff\xff not protobuf").unwrap_err().1, OpenError::Malformed(_)));
}

#[test]
fn an_envelope_naming_a_recipient_key_the_recipient_never_had_is_refused() {
    let p = Partnership::new();
    let housing = p.get("housing-northbridge");
    let idva = p.get("idva-northbridge");
    let good = housing.seal(&p.idva_referral(), Some(&given(housing))).unwrap().envelope;
    assert!(idva.open(&good).is_ok());
    // Signed honestly by housing, but naming a key that is not the IDVA's (here, MARAC's).
    let marac_key = p.get("marac-northbridge").directory.require("marac-northbridge").unwrap().age_key_id();
    let wrong = resigned(&good, &housing.keys, |h| h.recipient_key_id = marac_key.clone());
    assert_eq!(idva.open(&wrong).unwrap_err().1, OpenError::UnknownRecipientKey);
    let empty = resigned(&good, &housing.keys, |h| h.recipient_key_id.clear());
    assert_eq!(idva.open(&empty).unwrap_err().1, OpenError::BadClearField("recipient_key_id"));
    // A key the IDVA rotated away from still counts: it keeps the identity.
    let new_keys = idva.keys.rotated();
    let directory = std::sync::Arc::new(idva.directory.rotated(&new_keys, crate::now_ms()).unwrap());
    let rotated = crate::Isp::new(new_keys, directory, idva.policy.clone(), idva.schema.clone()).unwrap();
    assert!(rotated.open(&good).is_ok(), "sealed to the IDVA's key before it rotated");
}

/// A sender that lies about what it carries: it declares only allowed categories and signs
/// honestly, but the sealed payload holds the survivor's address. The pathway catches it.
#[test]
fn a_smuggled_survivor_address_is_caught_on_open() {
    let p = Partnership::new();
    let housing = p.get("housing-northbridge");
    let perpetrator = p.get("perpetrator-pathways");
    let honest = housing.seal(&perpetrator_referral(false), None).unwrap();
    let Some(Body::PerpetratorReferral(mut body)) = perpetrator_referral(true).payload.body else { panic!() };
    body.reason.clear();
    let smuggled = Payload { body: Some(Body::PerpetratorReferral(body)) }.encode_to_vec();
    let recipient = housing.directory.get("perpetrator-pathways").unwrap().recipient().unwrap();
    let sealed_payload = age::encrypt(&recipient, &smuggled).unwrap();
    let mut header = honest.header.clone();
    header.payload_digest = Sha256::digest(&sealed_payload).to_vec();
    let header_bytes = header.encode_to_vec();
    let signature = housing.keys.signing.sign(&[ENVELOPE_CONTEXT, &header_bytes].concat());
    let envelope = Envelope { header: header_bytes, sealed_payload, signature: signature.to_bytes().to_vec() }.encode_to_vec();

    let (h, err) = perpetrator.open(&envelope).unwrap_err();
    assert_eq!(err, OpenError::UndeclaredCategories(vec!["survivor.address".into(), "survivor.contact".into()]));
    assert!(err.is_violation());
    let (event, _) = perpetrator.rejection_event(h.as_ref(), &err, 7);
    assert_eq!(event.reason, "undeclared_categories");
    assert_eq!(event.kind, proto::v1::EventKind::Violation as i32);
    assert!(!format!("{event:?}").contains(ADDRESS));
}

#[test]
fn a_body_that_does_not_match_the_kind_is_refused_at_seal() {
    let p = Partnership::new();
    let mut out = p.idva_referral();
    out.kind = Kind::MaracReferral;
    out.recipient = "marac-northbridge".into();
    let err = p.get("housing-northbridge").seal(&out, None).unwrap_err();
    assert!(matches!(err, IspError::BadPayload { .. }), "{err}");
}

fn marac_without_consent() -> Outgoing {
    Outgoing {
        recipient: "marac-northbridge".into(),
        kind: Kind::MaracReferral,
        purpose: "marac".into(),
        lawful_basis: "uk-gdpr-9-2-g-dpa-s1-p18".into(),
        consent: Some(ConsentTag { consent_id: String::new(), state: ConsentState::NotSought as i32, recorded_by: "housing-northbridge".into() }),
        risk: RiskLevel::High,
        subject_ref: SUBJECT.into(),
        payload: Payload { body: Some(Body::MaracReferral(proto::v1::MaracReferral { survivor: Some(survivor()), ..Default::default() })) },
        ..Default::default()
    }
}

#[test]
fn sharing_without_consent_needs_officer_rationale_code_and_rationale() {
    let p = Partnership::new();
    let housing = p.get("housing-northbridge");
    let mut out = p.proved(marac_without_consent());
    let err = housing.seal(&out, None).unwrap_err();
    assert!(matches!(err, IspError::Unjustified(_)), "{err}");
    assert!(err.to_string().contains("asking-would-increase-risk"), "the error lists the codes: {err}");
    for (officer, code, rationale, needle) in [
        ("Jane Smith", "asking-would-increase-risk", "because", "staff id"),
        ("hsg.staff-7", "felt-like-it", "because", "rationale code"),
        ("hsg.staff-7", "asking-would-increase-risk", "  ", "rationale"),
    ] {
        out.justification = Some(crate::Justification { officer: officer.into(), rationale_code: code.into(), rationale: rationale.into() });
        let err = housing.seal(&out, None).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains("Jane"), "{err}");
    }
    out.justification = Some(crate::Justification {
        officer: "hsg.staff-7".into(),
        rationale_code: "asking-would-increase-risk".into(),
        rationale: "He monitors her phone; asking would tell him".into(),
    });
    let sealed = housing.seal(&out, None).unwrap();
    assert!(sealed.header.shared_without_consent);
    assert_eq!(sealed.header.without_consent_officer, "hsg.staff-7");
    assert_eq!(sealed.header.without_consent_rationale, "asking-would-increase-risk");
    // The rationale in words never leaves the sender: not in the header, and not in the
    // debug output a careless log line would print.
    let header_bytes = sealed.header.encode_to_vec();
    assert!(!header_bytes.windows(8).any(|w| w == b"monitors"));
    assert!(!format!("{:?}", out.justification).contains("monitors"));
    p.get("marac-northbridge").open(&sealed.envelope).unwrap();
}

#[test]
fn an_envelope_shared_without_consent_but_no_officer_is_refused_on_receipt() {
    let p = Partnership::new();
    let housing = p.get("housing-northbridge");
    let mut out = p.proved(marac_without_consent());
    out.justification = Some(crate::Justification { officer: "hsg.staff-7".into(), rationale_code: "crime-prevention".into(), rationale: "x".into() });
    let sealed = housing.seal(&out, None).unwrap();
    // A sender that skips the check (re-signed by the sender's own key, so it verifies).
    let mut envelope = Envelope::decode(sealed.envelope.as_slice()).unwrap();
    let mut header = Header::decode(envelope.header.as_slice()).unwrap();
    header.without_consent_officer.clear();
    envelope.header = header.encode_to_vec();
    envelope.signature = housing.keys.signing.sign(&[ENVELOPE_CONTEXT, &envelope.header].concat()).to_bytes().to_vec();
    let (_, err) = p.get("marac-northbridge").open(&envelope.encode_to_vec()).unwrap_err();
    assert_eq!(err.code(), "without_consent_unjustified");
}

#[test]
fn consent_given_is_refused_unless_the_record_backs_it() {
    let p = Partnership::new();
    let housing = p.get("housing-northbridge");
    let Err(IspError::Denied(d)) = housing.seal(&p.idva_referral(), None) else { panic!("sealed without a consent record") };
    assert_eq!((d.rule.as_str(), d.reason), ("consent-record", "consent_unknown"));
    let mut out = p.idva_referral();
    out.purpose = "safeguarding".into();
    out.recipient = "reciprocals-scheme".into();
    out.kind = Kind::ReciprocalRequest;
    out.purpose = "rehousing".into();
    out.payload = Payload { body: Some(Body::ReciprocalRequest(proto::v1::ReciprocalRequest { applicant: Some(survivor()), ..Default::default() })) };
    let Err(IspError::Denied(d)) = housing.seal(&out, Some(&given(housing))) else { panic!("sealed out of scope") };
    assert_eq!(d.reason, "consent_out_of_scope");
}

/// Free text in a clear field is refused at seal, and a header a sender signed with free
/// text anyway is refused on receipt (and by the audit service) with nothing of it kept.
#[test]
fn free_text_in_a_clear_field_is_refused_at_seal_and_on_receipt() {
    let p = Partnership::new();
    let housing = p.get("housing-northbridge");
    let record = given(housing);
    for (field, set) in [
        ("case_ref", (|o: &mut Outgoing| o.case_ref = ADDRESS.into()) as fn(&mut Outgoing)),
        ("subject_ref", |o| o.subject_ref = NAME.into()),
        ("in_reply_to", |o| o.in_reply_to = "07700 900123".into()),
        ("consent.id", |o| o.consent.as_mut().unwrap().consent_id = NAME.into()),
        // Not grammar tokens but policy ids: refused before a near miss could carry them.
        ("purpose", |o| o.purpose = NAME.into()),
        ("lawful_basis", |o| o.lawful_basis = ADDRESS.into()),
        ("consent.recorded_by", |o| o.consent.as_mut().unwrap().recorded_by = NAME.into()),
    ] {
        let mut out = p.idva_referral();
        set(&mut out);
        let Err(IspError::Invalid { what, detail }) = housing.seal(&out, Some(&record)) else { panic!("{field}: sealed") };
        assert_eq!(what, field);
        assert!(!detail.contains(NAME) && !detail.contains(ADDRESS) && !detail.contains("07700"), "{detail}");
    }
    // Signed by a sender that skipped the check: refused before anything of the header is used.
    let honest = housing.seal(&p.idva_referral(), Some(&record)).unwrap();
    let mut header = honest.header.clone();
    header.case_ref = ADDRESS.into();
    let envelope = tampered(&honest.envelope, |e| {
        e.header = header.encode_to_vec();
        e.signature = housing.keys.signing.sign(&[ENVELOPE_CONTEXT, &e.header].concat()).to_bytes().to_vec();
    });
    let (h, err) = p.get("idva-northbridge").open(&envelope).unwrap_err();
    assert_eq!((h, err.code()), (None, "bad_clear_field"), "the header was kept for the rejection record");
    assert!(err.is_violation() && !err.to_string().contains(ADDRESS));
    assert_eq!(super::verify_envelope(&housing.directory, &envelope).unwrap_err(), OpenError::BadClearField("case_ref"));
}

/// `envelope` with its header changed by `f` and signed again with `keys` (what the holder of
/// the sender's signing key, current or retired, can make).
fn resigned(envelope: &[u8], keys: &crate::AgencyKeys, f: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut e = Envelope::decode(envelope).unwrap();
    let mut header = Header::decode(e.header.as_slice()).unwrap();
    f(&mut header);
    e.header = header.encode_to_vec();
    e.signature = keys.signing.sign(&[ENVELOPE_CONTEXT, &e.header].concat()).to_bytes().to_vec();
    e.encode_to_vec()
}

const MINUTE_MS: i64 = 60_000;
const WINDOW_MS: i64 = 10 * MINUTE_MS;

#[test]
fn a_claimed_creation_time_far_from_the_brokers_is_refused_as_clock_skew() {
    let p = Partnership::new();
    let housing = p.get("housing-northbridge");
    let idva = p.get("idva-northbridge");
    let sealed = housing.seal(&p.idva_referral(), Some(&given(housing))).unwrap();
    let broker_ms = sealed.header.created_at_ms + 2_000;
    // Within the window either way: opened.
    assert!(idva.open_at(&sealed.envelope, broker_ms, WINDOW_MS).is_ok());
    let early = resigned(&sealed.envelope, &housing.keys, |h| h.created_at_ms = broker_ms - WINDOW_MS + 1_000);
    assert!(idva.open_at(&early, broker_ms, WINDOW_MS).is_ok());
    // Backdated twenty minutes, or postdated twenty: refused, the verified header kept.
    for shift in [-20 * MINUTE_MS, 20 * MINUTE_MS] {
        let skewed = resigned(&sealed.envelope, &housing.keys, |h| h.created_at_ms = broker_ms + shift);
        let (header, err) = idva.open_at(&skewed, broker_ms, WINDOW_MS).unwrap_err();
        assert_eq!(err, OpenError::ClockSkew { skew_secs: shift / 1000, window_secs: 600 });
        assert_eq!((err.code(), err.rule().as_str(), err.is_violation()), ("clock_skew", "transport", false));
        assert_eq!(header.unwrap().envelope_id, sealed.header.envelope_id);
        // Judged by the claimed time alone (a stored envelope read back), it opens.
        assert!(idva.open(&skewed).is_ok());
    }
    // A skewed header that does not verify is refused for its signature, not its time.
    let forged = resigned(&sealed.envelope, &idva.keys, |h| h.created_at_ms = broker_ms - 20 * MINUTE_MS);
    assert_eq!(idva.open_at(&forged, broker_ms, WINDOW_MS).unwrap_err().1.code(), "bad_signature");
}

#[test]
fn a_retired_key_is_judged_at_the_brokers_time_not_the_claimed_one() {
    let p = Partnership::new();
    let housing = p.get("housing-northbridge");
    let idva = p.get("idva-northbridge");
    let sealed = housing.seal(&p.idva_referral(), Some(&given(housing))).unwrap();
    // Housing rotates a minute after sealing; the IDVA's directory says so.
    let retired_at = sealed.header.created_at_ms + MINUTE_MS;
    let directory = Arc::new(idva.directory.rotated(&housing.keys.rotated(), retired_at).unwrap());
    let idva = Isp::new(idva.keys.clone(), directory, idva.policy.clone(), idva.schema.clone()).unwrap();
    // Taken in by the broker before the retirement: good.
    assert!(idva.open_at(&sealed.envelope, retired_at - 1, WINDOW_MS).is_ok());
    // The old key, used two minutes after its retirement, on a header that claims the time
    // it was sealed (within the window): the claimed time would pass it, the broker's does not.
    let broker_ms = retired_at + 2 * MINUTE_MS;
    assert!(idva.open(&sealed.envelope).is_ok(), "judged at the claimed time the retired key passes");
    let (header, err) = idva.open_at(&sealed.envelope, broker_ms, WINDOW_MS).unwrap_err();
    assert_eq!((header, err.code()), (None, "retired_signing_key"));
}

#[test]
fn every_clear_header_field_is_of_its_grammar_and_an_unverified_one_is_never_repeated() {
    let p = Partnership::new();
    let housing = p.get("housing-northbridge");
    let idva = p.get("idva-northbridge");
    let good = housing.seal(&p.idva_referral(), Some(&given(housing))).unwrap().envelope;
    // Signed by a partner, but carrying free text where a token belongs: refused by name.
    type Edit = fn(&mut Header);
    let edits: [(&str, Edit); 6] = [
        ("purpose", |h| h.purpose = "Jane Smith".into()),
        ("lawful_basis", |h| h.lawful_basis = "17 Synthetic Lane".into()),
        ("policy_rule", |h| h.policy_rule = "called Jane".into()),
        ("policy_version", |h| h.policy_version = String::new()),
        ("data_categories", |h| h.data_categories.push("Jane Smith".into())),
        ("signing_key_id", |h| h.signing_key_id = "ed25519:ABC".into()),
    ];
    for (field, edit) in edits {
        let bad = resigned(&good, &housing.keys, edit);
        let err = idva.open(&bad).unwrap_err().1;
        // The signing key id is checked before the grammar: a made-up one is no key of the sender.
        if field == "signing_key_id" {
            assert!(matches!(&err, OpenError::UnknownSigningKey { key_id, .. } if !key_id.contains("ABC")), "{err:?}");
        } else {
            assert_eq!(err, OpenError::BadClearField(field), "{field}");
        }
    }
    // An unknown sender is named only when it is an agency id at all.
    let stranger = resigned(&good, &housing.keys, |h| h.sender = "Jane Smith".into());
    let err = idva.open(&stranger).unwrap_err().1;
    assert!(matches!(err, OpenError::UnknownSender(_)) && !err.to_string().contains("Jane"), "{err}");
}

#[test]
fn an_event_carrying_free_text_is_refused_though_signed() {
    let p = Partnership::new();
    let housing = p.get("housing-northbridge");
    let access = crate::access::Access { staff_id: "hsg.caseworker".into(), route: "GET /inbox/{id}".into(), target: "CON-2026-7".into(), outcome: "allowed".into(), at_ms: crate::now_ms() };
    let (event, bytes) = housing.access_event(&access);
    assert_eq!(verify_event(&housing.directory, &bytes).unwrap(), event, "a route is a rule an access event may name");
    type Edit = fn(&mut proto::v1::Event);
    let edits: [(&str, Edit); 5] = [
        ("rule", |e| e.rule = "asked about Jane Smith".into()),
        ("reason", |e| e.reason = "Jane Smith".into()),
        ("staff_id", |e| e.staff_id = "Jane Smith".into()),
        ("case_ref", |e| e.case_ref = "17 Synthetic Lane".into()),
        ("envelope_id", |e| e.envelope_id = "jane smith".into()),
    ];
    for (field, edit) in edits {
        let mut bad = event.clone();
        edit(&mut bad);
        let err = verify_event(&housing.directory, &housing.sign_event(&bad)).unwrap_err();
        assert_eq!(err, OpenError::BadClearField(field), "{field}");
    }
    // A consent revision's event names its revision where a case ref would be.
    let mut consent = event.clone();
    consent.kind = proto::v1::EventKind::ConsentChanged as i32;
    consent.rule = "consent-record".into();
    consent.case_ref = "revision-3".into();
    assert!(verify_event(&housing.directory, &housing.sign_event(&consent)).is_ok());
}

#[test]
fn a_high_risk_nothing_proves_is_refused_at_seal_and_a_forged_summary_too() {
    let p = Partnership::new();
    let housing = p.get("housing-northbridge");
    let record = given(housing);
    let Err(IspError::Denied(d)) = housing.seal(&unproved_referral(), Some(&record)) else { panic!("sealed a high risk without a summary") };
    assert_eq!((d.rule.as_str(), d.reason), ("risk", "unproven_risk"));
    // A summary whose score was raised after signing no longer verifies.
    let mut forged = p.idva_referral();
    if let Some(Body::IdvaReferral(r)) = &mut forged.payload.body {
        r.dash.as_mut().unwrap().score = 20;
    }
    let Err(IspError::Denied(d)) = housing.seal(&forged, Some(&record)) else { panic!("sealed a forged summary") };
    assert!(d.detail.contains("signature"), "{}", d.detail);
    // A header risk other than the summary's band.
    let mut medium = p.idva_referral();
    medium.risk = RiskLevel::Medium;
    let Err(IspError::Denied(d)) = housing.seal(&medium, Some(&record)) else { panic!("sealed a risk the summary does not give") };
    assert!(d.detail.contains("the header says medium"), "{}", d.detail);
    // Signed by an agency that is not the one it names.
    let mut borrowed = p.idva_referral();
    if let Some(Body::IdvaReferral(r)) = &mut borrowed.payload.body {
        r.dash.as_mut().unwrap().assessed_by = "riverside-homes".into();
    }
    assert!(matches!(housing.seal(&borrowed, Some(&record)), Err(IspError::Denied(_))));
    // A medium or standard risk without a summary is not refused: only high unlocks sharing without consent.
    let mut unassessed = unproved_referral();
    unassessed.risk = RiskLevel::Unspecified;
    let sealed = housing.seal(&unassessed, Some(&record)).unwrap();
    p.get("idva-northbridge").open(&sealed.envelope).unwrap();
}

/// The IDVA's receipt for envelope `original` from housing, as its service sends it.
fn ack(idva: &Isp, original: &str, status: proto::v1::AckStatus, reason: &str, staff_id: &str) -> Outgoing {
    let (purpose, basis) = idva.policy.defaults_for(idva.role, crate::Role::Housing, Kind::ReferralAck).unwrap();
    Outgoing {
        recipient: "housing-northbridge".into(),
        kind: Kind::ReferralAck,
        purpose: purpose.into(),
        lawful_basis: basis.into(),
        subject_ref: SUBJECT.into(),
        case_ref: "IDVA-7".into(),
        in_reply_to: original.into(),
        payload: Payload {
            body: Some(Body::ReferralAck(proto::v1::ReferralAck {
                envelope_id: original.into(),
                status: status as i32,
                reason: reason.into(),
                staff_id: staff_id.into(),
                ..Default::default()
            })),
        },
        ..Default::default()
    }
}

const ORIGINAL: &str = "0193a0c4-7b1e-7000-8000-00000000beef";

#[test]
fn a_content_free_receipt_travels_signed_in_clear_and_opens() {
    use proto::v1::AckStatus;
    let p = Partnership::new();
    let (idva, housing) = (p.get("idva-northbridge"), p.get("housing-northbridge"));
    let sealed = idva.seal(&ack(idva, ORIGINAL, AckStatus::Received, "", ""), None).unwrap();
    assert!(sealed.header.payload_in_clear);
    assert_eq!(sealed.header.recipient_key_id, "");
    // SPEC.md 6.4's 42 bytes, written out by hand.
    let expected = [&[0x72, 0x28, 0x0a, 0x24][..], ORIGINAL.as_bytes(), &[0x10, 0x01]].concat();
    assert_eq!(Envelope::decode(sealed.envelope.as_slice()).unwrap().sealed_payload, expected);
    // The audit's check and the sender's open both take it.
    super::verify_envelope(&housing.directory, &sealed.envelope).unwrap();
    let opened = housing.open(&sealed.envelope).unwrap();
    let Some(Body::ReferralAck(a)) = opened.payload.body else { panic!() };
    assert_eq!((a.envelope_id.as_str(), a.status), (ORIGINAL, AckStatus::Received as i32));
    // So does an `opened` receipt that names nobody.
    let sealed = idva.seal(&ack(idva, ORIGINAL, AckStatus::Opened, "", ""), None).unwrap();
    assert!(sealed.header.payload_in_clear);
    housing.open(&sealed.envelope).unwrap();
}

#[test]
fn a_receipt_with_any_content_is_sealed() {
    use proto::v1::AckStatus;
    let p = Partnership::new();
    let (idva, housing) = (p.get("idva-northbridge"), p.get("housing-northbridge"));
    let other = "0193a0c4-7b1e-7000-8000-00000000f00d";
    for (out, what) in [
        (ack(idva, ORIGINAL, AckStatus::Opened, "", "j.reader"), "an opened receipt naming its reader"),
        (ack(idva, ORIGINAL, AckStatus::Declined, "no capacity in the area", ""), "a decline with its reason"),
        (ack(idva, ORIGINAL, AckStatus::Accepted, "", ""), "an acceptance"),
        (ack(idva, ORIGINAL, AckStatus::Revoked, "", ""), "a revocation carried out"),
        (Outgoing { in_reply_to: other.into(), ..ack(idva, ORIGINAL, AckStatus::Received, "", "") }, "a receipt naming another envelope than it answers"),
    ] {
        let sealed = idva.seal(&out, None).unwrap();
        assert!(!sealed.header.payload_in_clear, "{what}");
        assert_eq!(sealed.header.recipient_key_id, housing.directory.require("housing-northbridge").unwrap().age_key_id(), "{what}");
        assert!(!String::from_utf8_lossy(&sealed.envelope).contains("capacity"), "{what}");
        housing.open(&sealed.envelope).unwrap();
    }
}

#[test]
fn content_sent_in_clear_is_refused_as_a_violation() {
    use proto::v1::AckStatus;
    let p = Partnership::new();
    let (idva, housing) = (p.get("idva-northbridge"), p.get("housing-northbridge"));
    let clear = idva.seal(&ack(idva, ORIGINAL, AckStatus::Received, "", ""), None).unwrap().envelope;
    // A signer that puts other bytes in clear: a decline's reason, or the receipt's own bytes
    // with one more field a reader's schema would drop.
    let reasoned = ack(idva, ORIGINAL, AckStatus::Declined, "she has moved to 4 Elm Road", "").payload.encode_to_vec();
    let padded = [Envelope::decode(clear.as_slice()).unwrap().sealed_payload, vec![0x98, 0x06, 0x01]].concat();
    for (plaintext, what) in [(reasoned, "a decline's reason"), (padded, "an unknown field after the receipt")] {
        let digest = Sha256::digest(&plaintext).to_vec();
        let forged = resigned(&tampered(&clear, |e| e.sealed_payload = plaintext), &idva.keys, |h| h.payload_digest = digest);
        let (header, err) = housing.open(&forged).unwrap_err();
        assert_eq!(err, OpenError::ContentInClear, "{what}");
        assert!(header.is_some() && err.is_violation() && err.code() == "content_in_clear", "{what}");
        assert!(!err.to_string().contains("Elm"), "{what}");
    }
    // In clear, no recipient key may be named; sealed, one must be.
    let keyed = resigned(&clear, &idva.keys, |h| h.recipient_key_id = housing.directory.require("housing-northbridge").unwrap().age_key_id());
    assert_eq!(housing.open(&keyed).unwrap_err().1, OpenError::BadClearField("recipient_key_id"));
    // A sealed payload whose header claims it is in clear does not decode as a receipt.
    let sealed = idva.seal(&ack(idva, ORIGINAL, AckStatus::Accepted, "", ""), None).unwrap().envelope;
    let claimed = resigned(&sealed, &idva.keys, |h| {
        h.payload_in_clear = true;
        h.recipient_key_id.clear();
    });
    assert!(matches!(housing.open(&claimed).unwrap_err().1, OpenError::MalformedPayload(_) | OpenError::ContentInClear));
}
