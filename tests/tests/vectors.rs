//! The test vectors of SPEC.md (`tests/vectors/*.json`): what an implementation in another
//! language checks itself against. Each is made here from fixed inputs (seeds, texts) by the
//! hub's own code, and this test checks, on every run, that the code still makes exactly
//! what the files say: a change to any construction of the wire format fails here until the
//! spec, the vectors and the second implementation (`tests/conformance/`) follow it.
//!
//! `HUB_WRITE_VECTORS=1 cargo test -p tests --test vectors` writes them afresh. Only the age
//! ciphertext of `envelope.json` is random (age encryption is); a rewrite keeps the one in
//! the file while it still opens to the vector payload, so the files change only when a
//! construction (or the payload) does. `ledger.json` and `checkpoint.json` are made from the
//! stored `envelope.json`: after a change to the envelope, write twice.

use std::{path::PathBuf, sync::Arc};

use audit::ledger::{self, Entry, EntryType};
use ed25519_dalek::Signer as _;
use isp::{
    Agency, AgencyKeys, Directory, Isp, Policy, Role, Schema,
    consent::{self, ConsentRecord, Scope, State},
    merkle::{self, MemoryTree},
    seal::{ENVELOPE_CONTEXT, check_header},
    signed,
};
use prost::Message as _;
use proto::v1::{
    AckStatus, ConsentState, ConsentTag, DashAnswer, DashAssessment, DashItem, Envelope, Event, EventKind, Header, IdvaReferral, Kind,
    MaracReferral, Payload, Person, PerpetratorReferral, ReferralAck, RiskLevel, payload::Body,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The partnership every vector is made in: its agencies, with the seed of their signing key
/// and their age identity. Test keys: published here, never used for anything real.
const AGENCIES: [(&str, &str, Role, u8, &str); 4] = [
    ("ig-vector", "Vector IG Office", Role::Ig, 0x01, "AGE-SECRET-KEY-1ZQG3YYC5Z5TPQYGJZV2P29SSZYFPX9Q4ZCGPZYSNZS23VYQ3ZGFS26XT3H"),
    ("housing-vector", "Vector Housing", Role::Housing, 0x02, "AGE-SECRET-KEY-1YQSJYGEYY5NZQGFZYVJZ2F3QYY3ZXFP9YCSZZG3RYSJJVGPPYG3S5CLEAN"),
    ("idva-vector", "Vector IDVA", Role::Idva, 0x03, "AGE-SECRET-KEY-1XQCNYVE5X5MRQVFJXV6R2D3SXYERXDP4XCCRZV3NXS6NVVP3XGES2L2WPL"),
    ("pathway-vector", "Vector Perpetrator Pathway", Role::Perpetrator, 0x04, "AGE-SECRET-KEY-1GPQ5YS6YG4RYQS2ZGDZY23JQG9PYX3Z9GEQYZSJRG3Z5VSZPGFPSWH2NEX"),
];
/// Housing's keys before it rotated (retired at [`RETIRED_AT_MS`]).
const HOUSING_OLD: (u8, &str) = (0x06, "AGE-SECRET-KEY-12PG4Y56524T9Q52J2D2924JS29F9X4Z42EG9Z5JN2324V5Z32FFSSSLY92");
const RETIRED_AT_MS: i64 = 1_790_000_000_000;
const SUBJECT_KEY: [u8; 32] = [0x5a; 32];
/// When the vector envelope, event and consent record were made.
const AT_MS: i64 = 1_795_000_000_000;
/// The vector disclosure: housing's high-risk referral to the IDVA.
const ENVELOPE_ID: &str = "01937a4e-7a00-7000-8000-00000000c0de";
/// The IDVA's `received` receipt for it (SPEC.md 6.4).
const RECEIPT_ID: &str = "01937a4e-7a00-7000-8000-0000000ac0de";
const PARTNERSHIP: &str = "Vector Partnership";

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn writing() -> bool {
    std::env::var_os("HUB_WRITE_VECTORS").is_some()
}

fn stored(name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(vectors_dir().join(name)).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("tests/vectors/{name} is not JSON: {e}")))
}

/// Writes the vector file (HUB_WRITE_VECTORS) or checks the stored one is exactly `made`.
fn write_or_check(name: &str, made: Value) {
    if writing() {
        // Whole or not at all: the tests run in parallel, and some read what others write.
        std::fs::create_dir_all(vectors_dir()).unwrap();
        let partial = vectors_dir().join(format!(".{name}.partial"));
        std::fs::write(&partial, serde_json::to_string_pretty(&made).unwrap() + "\n").unwrap();
        std::fs::rename(&partial, vectors_dir().join(name)).unwrap();
        return;
    }
    let stored = stored(name).unwrap_or_else(|| panic!("tests/vectors/{name} is missing: HUB_WRITE_VECTORS=1 cargo test -p tests --test vectors"));
    assert!(
        stored == made,
        "tests/vectors/{name} is not what the code makes now: a wire construction changed. If that is meant, change SPEC.md, rewrite the vectors \
         (HUB_WRITE_VECTORS=1) and make tests/conformance follow.\nstored: {}\nmade:   {}",
        serde_json::to_string(&stored).unwrap(),
        serde_json::to_string(&made).unwrap()
    );
}

fn key_file(agency: &str, seed: u8, age: &str, subject_key: bool) -> AgencyKeys {
    let mut text = format!("agency = \"{agency}\"\nage_identity = \"{age}\"\nsigning_key = \"{}\"\n", hex::encode([seed; 32]));
    if subject_key {
        text += &format!("subject_key = \"{}\"\n", hex::encode(SUBJECT_KEY));
    }
    AgencyKeys::from_toml(&text).unwrap()
}

struct Fixture {
    schema: Arc<Schema>,
    policy: Arc<Policy>,
    directory: Arc<Directory>,
    keys: Vec<AgencyKeys>,
    housing_old: AgencyKeys,
}

impl Fixture {
    fn new() -> Fixture {
        let schema = Arc::new(Schema::load().unwrap());
        let policy = Arc::new(Policy::from_toml(isp::policy::DEMO_POLICY, &schema).unwrap());
        let keys: Vec<AgencyKeys> =
            AGENCIES.iter().map(|(id, _, role, seed, age)| key_file(id, *seed, age, policy.holds_subject_key(*role))).collect();
        let housing_old = key_file("housing-vector", HOUSING_OLD.0, HOUSING_OLD.1, true);
        let agencies = AGENCIES.iter().zip(&keys).map(|((_, name, role, _, _), k)| k.public(name, *role)).collect();
        let mut directory = Directory::new(PARTNERSHIP, agencies).unwrap();
        // Housing rotated once: its old keys are retired keys of the directory.
        let old = housing_old.public("", Role::Housing);
        let current = keys[1].public("", Role::Housing);
        let before = Directory::new(
            PARTNERSHIP,
            directory.agencies.iter().map(|a| if a.id == "housing-vector" { Agency { age_recipient: old.age_recipient.clone(), signing_key: old.signing_key.clone(), ..a.clone() } } else { a.clone() }).collect(),
        )
        .unwrap();
        directory = before.rotated_to("housing-vector", &current.age_recipient, &current.signing_key, RETIRED_AT_MS).unwrap();
        Fixture { schema, policy, directory: Arc::new(directory), keys, housing_old }
    }

    fn keys(&self, agency: &str) -> &AgencyKeys {
        self.keys.iter().find(|k| k.agency == agency).unwrap()
    }

    fn isp(&self, agency: &str) -> Isp {
        Isp::new(self.keys(agency).clone(), self.directory.clone(), self.policy.clone(), self.schema.clone()).unwrap()
    }
}


#[test]
fn key_ids() {
    let f = Fixture::new();
    let all = f.keys.iter().chain([&f.housing_old]);
    let ed25519: Vec<Value> = AGENCIES
        .iter()
        .map(|a| a.3)
        .chain([HOUSING_OLD.0])
        .zip(all.clone())
        .map(|(seed, k)| {
            let public = hex::encode(k.signing.verifying_key().as_bytes());
            json!({"seed": hex::encode([seed; 32]), "public": public, "key_id": isp::directory::key_id("ed25519", public.as_bytes())})
        })
        .collect();
    let age: Vec<Value> = all
        .map(|k| {
            use age::secrecy::ExposeSecret as _;
            let recipient = k.age_identity.to_public().to_string();
            json!({"identity": k.age_identity.to_string().expose_secret(), "recipient": recipient, "key_id": isp::directory::key_id("age", recipient.as_bytes())})
        })
        .collect();
    for v in &ed25519 {
        assert!(isp::clear::is_key_id(v["key_id"].as_str().unwrap()));
    }
    write_or_check(
        "key_ids.json",
        json!({"spec": "SPEC.md 3.2: key_id = scheme ':' hex(SHA-256(text form)[0..8])", "ed25519": ed25519, "age": age}),
    );
}

/// Names that fold in ways a careless implementation gets wrong: combining marks, Greek final
/// sigma, Turkish dotted capital I, German sharp s, ligatures, full-width letters, Roman
/// numerals, Unicode spaces, joiners, apostrophes, hyphens, emoji.
const NAMES: [&str; 18] = [
    "  Alice  O'Neil",
    "ALICE O\u{2019}NEIL",
    "Zoë Brontë",
    "Zoe\u{0308} Bronte\u{0308}",
    "ΟΔΥΣΣΕΑΣ",
    "Οδυσσέας",
    "ὈΔΥΣΣΕΎΣ",
    "Strauß",
    "STRAUẞ",
    "İpek Yılmaz",
    "IPEK YILMAZ",
    "Jean-Luc\tPicard\n",
    "ﬁona ＭＡＣＤＯＮＡＬＤ",
    "Anna\u{00a0}Maria\u{2003}Smith",
    "Ann\u{200d}e 👩 Lee",
    "Henry Ⅷ",
    "مُحَمَّد عَلِي",
    "김민준",
];

#[test]
fn subject_refs() {
    let f = Fixture::new();
    let housing = f.keys("housing-vector");
    let folding: Vec<Value> = NAMES.iter().map(|n| json!({"name": n, "folded": isp::directory::normalise_name(n)})).collect();
    let dobs = ["1990-01-02", "1990-01-02", "1985-12-31", "1985-12-31", "2000-02-29", "2000-02-29", "2000-02-29", "1971-06-30"];
    let refs: Vec<Value> = NAMES
        .iter()
        .zip(dobs.iter().cycle())
        .map(|(n, d)| json!({"full_name": n, "date_of_birth": d, "subject_ref": housing.subject_ref(n, d).unwrap()}))
        .collect();
    // Spellings of one person give one ref.
    assert_eq!(refs[0]["subject_ref"], refs[1]["subject_ref"]);
    assert_eq!(refs[2]["subject_ref"], refs[3]["subject_ref"]);
    assert_eq!(refs[4]["subject_ref"], refs[5]["subject_ref"]);
    let refused: Vec<Value> = [("", "1990-01-02"), ("-- ' --", "1990-01-02"), ("👩", "1990-01-02"), ("Alice", "02/01/1990"), ("Alice", "1990-02-30"), ("Alice", "1990-1-2"), ("Alice", "")]
        .iter()
        .map(|(n, d)| {
            assert!(housing.subject_ref(n, d).is_err(), "{n:?} {d:?}");
            json!({"full_name": n, "date_of_birth": d})
        })
        .collect();
    let padded = housing.subject_ref("Alice O'Neil", " 1990-01-02\n").unwrap();
    let links: Vec<Value> = refs
        .iter()
        .take(3)
        .map(|r| {
            let s = r["subject_ref"].as_str().unwrap();
            json!({"recipient": "pathway-vector", "subject_ref": s, "link_token": housing.link_ref("pathway-vector", s).unwrap()})
        })
        .collect();
    write_or_check(
        "subject_refs.json",
        json!({
            "spec": "SPEC.md 5",
            "subject_key": hex::encode(SUBJECT_KEY),
            "folding": folding,
            "subject_refs": refs,
            "date_of_birth_trimmed": {"full_name": "Alice O'Neil", "date_of_birth": " 1990-01-02\n", "subject_ref": padded},
            "refused": refused,
            "link_tokens": links,
        }),
    );
}

#[test]
fn signed_files() {
    let f = Fixture::new();
    let ig = f.keys("ig-vector");
    let directory_text = f.directory.to_toml();
    let policy_text = isp::policy::DEMO_POLICY;
    let directory_sig = signed::sign_directory(ig, 1, &directory_text);
    let policy_sig = signed::sign(ig, &f.policy.version, 2, policy_text);
    assert!(signed::verify_directory(&directory_text, Some(&serde_json::to_string(&directory_sig).unwrap()), &f.directory).is_ok());
    assert!(signed::verify(policy_text, Some(&serde_json::to_string(&policy_sig).unwrap()), &f.directory).is_ok());
    // From before sequences: the member was named policy_version and the prefix had no sequence.
    let legacy = ig.signing.sign(&[signed::POLICY_CONTEXT, policy_text.as_bytes()].concat());
    let legacy_sig = json!({
        "policy_version": f.policy.version, "sha256": policy_sig.sha256, "signer": "ig-vector", "key_id": ig.signing_key_id(),
        "signature": hex::encode(legacy.to_bytes()),
    });
    assert_eq!(signed::verify(policy_text, Some(&legacy_sig.to_string()), &f.directory).unwrap().sequence, 0);
    // Signed by an agency that is not the IG office, with its own valid key: refused.
    let by_housing = serde_json::to_value(signed::sign(f.keys("housing-vector"), &f.policy.version, 2, policy_text)).unwrap();
    assert!(signed::verify(policy_text, Some(&by_housing.to_string()), &f.directory).is_err());
    write_or_check(
        "signed_files.json",
        json!({
            "spec": "SPEC.md 4",
            "directory": {
                "text": directory_text,
                "digest": f.directory.digest(),
                "sig": directory_sig,
                "signed_message_prefix": hex::encode([signed::DIRECTORY_SEQ_CONTEXT, &1u64.to_be_bytes()].concat()),
            },
            "policy": {
                "text": policy_text,
                "sig": policy_sig,
                "signed_message_prefix": hex::encode([signed::POLICY_SEQ_CONTEXT, &2u64.to_be_bytes()].concat()),
            },
            "policy_legacy_sig": legacy_sig,
            "refused": [{"file": "policy", "why": "signed by a housing agency, not the IG office", "sig": by_housing}],
        }),
    );
}

fn person() -> Person {
    Person { full_name: "Zoë Ὀδυσσεύς-Smith".into(), date_of_birth: "1988-03-14".into(), address: "17 Synthetic Lane".into(), phone: "07000 000001".into(), ..Default::default() }
}

/// The vector disclosure's header, before its digest, key ids and signature.
fn header(f: &Fixture, subject_ref: &str) -> Header {
    Header {
        envelope_id: ENVELOPE_ID.into(),
        sender: "housing-vector".into(),
        recipient: "idva-vector".into(),
        kind: Kind::IdvaReferral as i32,
        purpose: "safeguarding".into(),
        lawful_basis: "uk-gdpr-6-1-a".into(),
        consent: Some(ConsentTag { consent_id: "CON-2026-7".into(), state: ConsentState::Given as i32, recorded_by: "housing-vector".into() }),
        risk: RiskLevel::High as i32,
        subject_ref: subject_ref.into(),
        case_ref: "HSG-2026-0042".into(),
        data_categories: Vec::new(),
        payload_digest: Vec::new(),
        policy_version: f.policy.version.clone(),
        policy_rule: "idva-referral".into(),
        created_at_ms: AT_MS,
        signing_key_id: f.keys("housing-vector").signing_key_id(),
        recipient_key_id: f.directory.require("idva-vector").unwrap().age_key_id(),
        in_reply_to: String::new(),
        shared_without_consent: false,
        without_consent_officer: String::new(),
        without_consent_rationale: String::new(),
        payload_in_clear: false,
    }
}

fn sign_envelope(key: &ed25519_dalek::SigningKey, header: &Header, sealed_payload: &[u8]) -> Vec<u8> {
    let header = header.encode_to_vec();
    let signature = key.sign(&[ENVELOPE_CONTEXT, &header].concat()).to_bytes().to_vec();
    Envelope { header, sealed_payload: sealed_payload.to_vec(), signature }.encode_to_vec()
}

#[test]
fn envelope() {
    let f = Fixture::new();
    let housing = f.isp("housing-vector");
    let idva = f.isp("idva-vector");
    let subject_ref = housing.keys.subject_ref(&person().full_name, &person().date_of_birth).unwrap();
    // A high-risk referral: its header's risk is what its signed DASH summary proves (SPEC.md 6.5).
    let full = Payload {
        body: Some(Body::IdvaReferral(IdvaReferral {
            survivor: Some(person()),
            dash: Some(dash_summary(&f)),
            reason: "Threats after separation".into(),
            survivor_aware: true,
            ..Default::default()
        })),
    };
    let (payload, removed) = f.schema.minimise(&full, &|c| f.policy.receivable(Role::Idva, c));
    assert!(removed.is_empty(), "an IDVA receives all of it: {removed:?}");
    let plaintext = payload.encode_to_vec();
    // The ciphertext is the one input a rewrite keeps (age encryption is random), while it
    // still opens to this payload; a changed payload is encrypted afresh.
    let opens_to_payload = |c: &[u8]| age::decrypt(&f.keys("idva-vector").age_identity, c).is_ok_and(|p| p == plaintext);
    let sealed_payload = match stored("envelope.json").map(|v| hex::decode(v["sealed_payload"].as_str().unwrap()).unwrap()) {
        Some(c) if opens_to_payload(&c) => c,
        Some(_) if !writing() => panic!(
            "tests/vectors/envelope.json: its sealed_payload no longer opens to the vector payload, which changed: HUB_WRITE_VECTORS=1 cargo test -p tests --test vectors"
        ),
        _ => age::encrypt(&f.directory.require("idva-vector").unwrap().recipient().unwrap(), &plaintext).unwrap(),
    };
    let mut h = header(&f, &subject_ref);
    h.data_categories = f.schema.present(&payload).into_iter().collect();
    h.payload_digest = Sha256::digest(&sealed_payload).to_vec();
    check_header(&h).unwrap();
    let housing_key = &housing.keys.signing;
    let envelope = sign_envelope(housing_key, &h, &sealed_payload);
    let subject = runtime::transport::message_subject("housing-vector", "idva-vector", Kind::IdvaReferral);
    let broker_ms = AT_MS + 1_500;
    let window_ms = 600_000;
    let opened = idva.open_at(&envelope, broker_ms, window_ms).unwrap_or_else(|(_, e)| panic!("the vector envelope does not open: {e}"));
    assert_eq!(opened.payload, payload);
    assert_eq!(opened.decision.rule, "idva-referral");

    // Each refusal of SPEC.md 8 that a single change makes, with its reason code.
    let resigned = |edit: &dyn Fn(&mut Header)| {
        let mut bad = h.clone();
        edit(&mut bad);
        sign_envelope(housing_key, &bad, &sealed_payload)
    };
    let mut flipped = Envelope::decode(envelope.as_slice()).unwrap();
    flipped.signature[0] ^= 1;
    let mut altered = Envelope::decode(envelope.as_slice()).unwrap();
    let last = altered.sealed_payload.len() - 1;
    altered.sealed_payload[last] ^= 1;
    let by_retired_key = {
        let mut old = h.clone();
        old.signing_key_id = f.housing_old.signing_key_id();
        sign_envelope(&f.housing_old.signing, &old, &sealed_payload)
    };
    let housing_age_key = f.directory.require("housing-vector").unwrap().age_key_id();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("the signature's first byte flipped", flipped.encode_to_vec(), "bad_signature"),
        ("the sealed payload's last byte flipped", altered.encode_to_vec(), "payload_digest_mismatch"),
        ("signed by the sender's key retired before the broker took it in", by_retired_key, "retired_signing_key"),
        ("a sender not in the directory", resigned(&|h| h.sender = "stranger-agency".into()), "unknown_sender"),
        ("free text in the purpose, re-signed by the sender", resigned(&|h| h.purpose = "Jane Smith".into()), "bad_clear_field"),
        ("created an hour before the broker took it in", resigned(&|h| h.created_at_ms = AT_MS - 3_600_000), "clock_skew"),
        ("addressed to another agency", resigned(&|h| h.recipient = "pathway-vector".into()), "not_addressed_to_us"),
        ("naming the sender's age key as the recipient key", resigned(&|h| h.recipient_key_id = housing_age_key.clone()), "unknown_recipient_key"),
        ("declaring a category the IDVA may not receive", resigned(&|h| h.data_categories.push("move.areas".into())), "not_receivable"),
        ("declaring fewer categories than the payload carries", resigned(&|h| h.data_categories.retain(|c| c != "survivor.address")), "undeclared_categories"),
        ("a kind the policy does not let housing send the IDVA", resigned(&|h| h.kind = Kind::ReciprocalOffer as i32), "no_flow"),
        ("the header's risk lowered to medium, against its signed DASH summary", resigned(&|h| h.risk = RiskLevel::Medium as i32), "unproven_risk"),
    ];
    let refused = refusals(&idva, cases, broker_ms, window_ms);
    let receipt = content_free_receipt(&f, &subject_ref, broker_ms, window_ms);
    write_or_check(
        "envelope.json",
        json!({
            "spec": "SPEC.md 6 and 8; the partnership of signed_files.json, keys of key_ids.json",
            "sender": "housing-vector",
            "recipient": "idva-vector",
            "recipient_age_identity": AGENCIES[2].4,
            "subject": subject,
            "broker_ms": broker_ms,
            "clock_skew_window_ms": window_ms,
            "payload": hex::encode(&plaintext),
            "payload_categories": h.data_categories,
            "header_fields": {
                "envelope_id": h.envelope_id, "sender": h.sender, "recipient": h.recipient, "kind": h.kind, "purpose": h.purpose,
                "lawful_basis": h.lawful_basis, "consent": {"consent_id": "CON-2026-7", "state": ConsentState::Given as i32, "recorded_by": "housing-vector"},
                "risk": h.risk, "subject_ref": h.subject_ref, "case_ref": h.case_ref, "data_categories": h.data_categories,
                "payload_digest": hex::encode(&h.payload_digest), "policy_version": h.policy_version, "policy_rule": h.policy_rule,
                "created_at_ms": h.created_at_ms, "signing_key_id": h.signing_key_id, "recipient_key_id": h.recipient_key_id,
            },
            "header": hex::encode(h.encode_to_vec()),
            "sealed_payload": hex::encode(&sealed_payload),
            "signed_message": hex::encode([ENVELOPE_CONTEXT, &h.encode_to_vec()].concat()),
            "signature": hex::encode(&Envelope::decode(envelope.as_slice()).unwrap().signature),
            "envelope": hex::encode(&envelope),
            "refused": refused,
            "content_free_receipt": receipt,
        }),
    );
}

/// Each (case, envelope, reason) opened by `receiver` at the broker's time: refused with that
/// reason, as the vector file lists it.
fn refusals(receiver: &Isp, cases: Vec<(&str, Vec<u8>, &str)>, broker_ms: i64, window_ms: i64) -> Vec<Value> {
    cases
        .into_iter()
        .map(|(case, bytes, reason)| {
            let (_, error) = receiver.open_at(&bytes, broker_ms, window_ms).expect_err(case);
            assert_eq!(error.code(), reason, "{case}: {error}");
            json!({"case": case, "envelope": hex::encode(&bytes), "reason": reason})
        })
        .collect()
}

/// SPEC.md 6.4: the IDVA's `received` receipt for the vector referral, its payload signed in
/// clear, and the refusals of SPEC.md 8 a change to it makes.
fn content_free_receipt(f: &Fixture, subject_ref: &str, broker_ms: i64, window_ms: i64) -> Value {
    let idva = f.isp("idva-vector");
    let housing = f.isp("housing-vector");
    let (purpose, basis) = idva.policy.defaults_for(Role::Idva, Role::Housing, Kind::ReferralAck).unwrap();
    let out = isp::Outgoing {
        recipient: "housing-vector".into(),
        kind: Kind::ReferralAck,
        purpose: purpose.into(),
        lawful_basis: basis.into(),
        subject_ref: subject_ref.into(),
        case_ref: "IDVA-2026-0007".into(),
        in_reply_to: ENVELOPE_ID.into(),
        payload: Payload { body: Some(Body::ReferralAck(ReferralAck { envelope_id: ENVELOPE_ID.into(), status: AckStatus::Received as i32, ..Default::default() })) },
        ..Default::default()
    };
    // Sealed as the service seals it, then given the vector's fixed id and time (signed again).
    let sealed = idva.seal(&out, None).unwrap();
    let mut h = sealed.header.clone();
    h.envelope_id = RECEIPT_ID.into();
    h.created_at_ms = AT_MS;
    assert!(h.payload_in_clear && h.recipient_key_id.is_empty(), "a received receipt travels in clear");
    let payload = Envelope::decode(sealed.envelope.as_slice()).unwrap().sealed_payload;
    assert_eq!(payload, [&[0x72, 0x28, 0x0a, 0x24][..], ENVELOPE_ID.as_bytes(), &[0x10, 0x01]].concat(), "SPEC.md 6.4's 42 bytes");
    let idva_key = &idva.keys.signing;
    let envelope = sign_envelope(idva_key, &h, &payload);
    let subject = runtime::transport::message_subject("idva-vector", "housing-vector", Kind::ReferralAck);
    let opened = housing.open_at(&envelope, broker_ms, window_ms).unwrap_or_else(|(_, e)| panic!("the vector receipt does not open: {e}"));
    assert_eq!(opened.payload, out.payload);
    // Each refusal a single change makes, with its reason code.
    let declined = Payload {
        body: Some(Body::ReferralAck(ReferralAck {
            envelope_id: ENVELOPE_ID.into(),
            status: AckStatus::Declined as i32,
            reason: "Moved to 4 Elm Road".into(),
            ..Default::default()
        })),
    }
    .encode_to_vec();
    let with_payload = |bytes: &[u8], edit: &dyn Fn(&mut Header)| {
        let mut bad = h.clone();
        bad.payload_digest = Sha256::digest(bytes).to_vec();
        edit(&mut bad);
        sign_envelope(idva_key, &bad, bytes)
    };
    let housing_age_key = f.directory.require("housing-vector").unwrap().age_key_id();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a decline's reason sent in clear", with_payload(&declined, &|_| ()), "content_in_clear"),
        ("the receipt's bytes and one more field", with_payload(&[payload.as_slice(), &[0x98, 0x06, 0x01]].concat(), &|_| ()), "content_in_clear"),
        ("answering another envelope than its in_reply_to", with_payload(&payload, &|h| h.in_reply_to = RECEIPT_ID.into()), "content_in_clear"),
        ("in clear, but naming a recipient key", with_payload(&payload, &|h| h.recipient_key_id = housing_age_key.clone()), "bad_clear_field"),
        ("not marked in clear, so taken for a ciphertext", with_payload(&payload, &|h| {
            h.payload_in_clear = false;
            h.recipient_key_id = housing_age_key.clone();
        }), "decrypt_failed"),
    ];
    let refused = refusals(&housing, cases, broker_ms, window_ms);
    json!({
        "spec": "SPEC.md 6.4 and 8: the IDVA's received receipt for the envelope above, its payload signed in clear",
        "sender": "idva-vector",
        "recipient": "housing-vector",
        "subject": subject,
        "payload": hex::encode(&payload),
        "header": hex::encode(h.encode_to_vec()),
        "signature": hex::encode(&Envelope::decode(envelope.as_slice()).unwrap().signature),
        "envelope": hex::encode(&envelope),
        "refused": refused,
    })
}

/// The answers of a checklist of `questions` questions, `yes` of them Yes, spread over the
/// form (question q is Yes when 7q mod `questions` < `yes`; 7 is prime to 24 and 27), the
/// others No but every fifth Don't know, one from the police log.
fn answers(questions: u32, yes: u32) -> Vec<DashItem> {
    (1..=questions)
        .map(|q| DashItem {
            question: q,
            answer: if q * 7 % questions < yes {
                DashAnswer::Yes
            } else if q % 5 == 0 {
                DashAnswer::DontKnow
            } else {
                DashAnswer::No
            } as i32,
            source: if q == 18 { "police log".into() } else { String::new() },
        })
        .collect()
}

/// A summary of an assessment housing recorded, not yet signed.
fn summary(version: &str, questions: u32, yes: u32, risk: RiskLevel) -> DashAssessment {
    DashAssessment {
        checklist_version: version.into(),
        assessed_on: "2026-11-18".into(),
        score: yes,
        risk: risk as i32,
        items: answers(questions, yes),
        assessment_id: "01937a4e-7a00-7000-8000-0000000da5e5".into(),
        assessor: "hsg.caseworker".into(),
        ..Default::default()
    }
}

/// The vector DASH summary: a high result (15 Yes answers of the SafeLives checklist's 24),
/// recorded and signed by housing. The vector envelope carries it.
fn dash_summary(f: &Fixture) -> DashAssessment {
    let mut s = summary("safelives-dash-2024", 24, 15, RiskLevel::High);
    isp::risk::sign_summary(f.keys("housing-vector"), &mut s);
    s
}

/// What a summary's signature covers after its context (SPEC.md 6.5).
fn dash_signed_bytes(s: &DashAssessment) -> Vec<u8> {
    DashAssessment { items: Vec::new(), signature: Vec::new(), signing_key_id: String::new(), ..s.clone() }.encode_to_vec()
}

fn dash_fields(s: &DashAssessment) -> Value {
    json!({
        "checklist_version": s.checklist_version, "assessed_on": s.assessed_on, "score": s.score, "risk": s.risk,
        "professional_judgement": s.professional_judgement,
        "items": s.items.iter().map(|i| json!({"question": i.question, "answer": i.answer, "source": i.source})).collect::<Vec<_>>(),
        "assessment_id": s.assessment_id, "assessed_by": s.assessed_by, "assessor": s.assessor, "judgement_officer": s.judgement_officer,
        "signature": hex::encode(&s.signature), "signing_key_id": s.signing_key_id,
    })
}

/// The DASH summary (SPEC.md 6.5): the signed vector summary with its exact signed bytes, the
/// bands, and the recipient's check on summaries that prove their risk and on each way one
/// does not (every refusal is `unproven_risk`; the case says which rule it breaks).
#[test]
fn dash() {
    let f = Fixture::new();
    let housing = f.keys("housing-vector");
    let signed = dash_summary(&f);
    let signed_bytes = dash_signed_bytes(&signed);
    let message = [isp::risk::DASH_CONTEXT, &signed_bytes].concat();
    let signature = ed25519_dalek::Signature::from_slice(&signed.signature).unwrap();
    assert!(housing.signing.verifying_key().verify_strict(&message, &signature).is_ok(), "the summary is signed over exactly these bytes");
    assert_eq!((signed.assessed_by.as_str(), signed.signing_key_id.clone()), ("housing-vector", housing.signing_key_id()));

    let subject_ref = vector_subject_ref(&f);
    let referral = |dash: Option<DashAssessment>| Payload {
        body: Some(Body::IdvaReferral(IdvaReferral { dash, reason: "Threats after separation".into(), ..Default::default() })),
    };
    let marac_referral = |dash: Option<DashAssessment>| Payload { body: Some(Body::MaracReferral(MaracReferral { dash, ..Default::default() })) };
    let at = |risk: RiskLevel| Header { risk: risk as i32, ..header(&f, &subject_ref) };
    let resigned = |keys: &AgencyKeys, edit: &dyn Fn(&mut DashAssessment)| {
        let mut s = signed.clone();
        edit(&mut s);
        isp::risk::sign_summary(keys, &mut s);
        s
    };
    let by_housing = |edit: &dyn Fn(&mut DashAssessment)| resigned(housing, edit);
    let altered = {
        let mut s = signed.clone();
        s.score = 16;
        let no = s.items.iter().position(|i| i.answer != DashAnswer::Yes as i32).unwrap();
        s.items[no].answer = DashAnswer::Yes as i32;
        s
    };
    let forged_by_idva = {
        let mut s = signed.clone();
        s.signature = f.keys("idva-vector").signing.sign(&[isp::risk::DASH_CONTEXT, &dash_signed_bytes(&s)].concat()).to_bytes().to_vec();
        s
    };
    let by_stranger = {
        let key = ed25519_dalek::SigningKey::from_bytes(&[0x09; 32]);
        let mut s = DashAssessment { assessed_by: "stranger-agency".into(), signature: Vec::new(), ..signed.clone() };
        s.signing_key_id = isp::directory::key_id("ed25519", hex::encode(key.verifying_key().as_bytes()).as_bytes());
        s.signature = key.sign(&[isp::risk::DASH_CONTEXT, &dash_signed_bytes(&s)].concat()).to_bytes().to_vec();
        s
    };
    let by_retired_key = resigned(&f.housing_old, &|_| {});
    let before_retirement = Header { created_at_ms: RETIRED_AT_MS - 60_000, ..at(RiskLevel::High) };
    let marac_high = Header { kind: Kind::MaracReferral as i32, ..at(RiskLevel::High) };
    let perpetrator_high = Header { kind: Kind::PerpetratorReferral as i32, ..at(RiskLevel::High) };
    let perpetrator_referral = Payload { body: Some(Body::PerpetratorReferral(PerpetratorReferral::default())) };
    let without_answers = DashAssessment { items: Vec::new(), ..signed.clone() };
    let judged = by_housing(&|s| {
        s.score = 6;
        s.items = answers(24, 6);
        s.professional_judgement = true;
        s.judgement_officer = "hsg.manager".into();
    });
    let police = by_housing(&|s| {
        *s = summary("police-dash-27", 27, 12, RiskLevel::Medium);
    });
    let (idva, marac, perpetrator) = (Role::Idva, Role::Marac, Role::Perpetrator);
    let cases: Vec<(&str, Header, Payload, Role, &str)> = vec![
        ("the signed summary: high, 15 of 24, with its answers", at(RiskLevel::High), referral(Some(signed.clone())), idva, ""),
        ("the same summary without its answers (they are not signed)", at(RiskLevel::High), referral(Some(without_answers)), idva, ""),
        ("professional judgement raising a score of 6 to high, naming its officer", at(RiskLevel::High), referral(Some(judged.clone())), idva, ""),
        ("the police checklist of 27 questions, medium, with its answers", at(RiskLevel::Medium), referral(Some(police)), idva, ""),
        ("signed with housing's retired key while it was in force", before_retirement, referral(Some(by_retired_key.clone())), idva, ""),
        ("a medium-risk header with no summary", at(RiskLevel::Medium), referral(None), idva, ""),
        ("a high-risk header with no summary, to a role that may not receive risk.dash", at(RiskLevel::High), referral(None), perpetrator, ""),
        ("a high-risk header on perpetrator.referral, a kind that carries no summary", perpetrator_high, perpetrator_referral, idva, ""),
        ("the score altered after signing (an answer changed to match)", at(RiskLevel::High), referral(Some(altered)), idva, "unproven_risk"),
        ("a band not from its score: 11 Yes answers signed as high", at(RiskLevel::High), referral(Some(by_housing(&|s| {
            s.score = 11;
            s.items = answers(24, 11);
        }))), idva, "unproven_risk"),
        ("professional judgement naming no officer", at(RiskLevel::High), referral(Some(by_housing(&|s| {
            s.score = 6;
            s.items = answers(24, 6);
            s.professional_judgement = true;
        }))), idva, "unproven_risk"),
        ("professional judgement that does not raise the band", at(RiskLevel::High), referral(Some(by_housing(&|s| {
            s.professional_judgement = true;
            s.judgement_officer = "hsg.manager".into();
        }))), idva, "unproven_risk"),
        ("a checklist version the partnership does not know", at(RiskLevel::High), referral(Some(by_housing(&|s| s.checklist_version = "safelives-dash-2009".into()))), idva, "unproven_risk"),
        ("answers that do not give the score: 13 Yes answers, score 15", at(RiskLevel::High), referral(Some(by_housing(&|s| s.items = answers(24, 13)))), idva, "unproven_risk"),
        ("23 answers to the 24 questions", at(RiskLevel::High), referral(Some(by_housing(&|s| {
            let no = s.items.iter().position(|i| i.answer != DashAnswer::Yes as i32).unwrap();
            s.items.remove(no);
        }))), idva, "unproven_risk"),
        ("a score of 25 on the 24 questions", at(RiskLevel::High), referral(Some(by_housing(&|s| {
            s.score = 25;
            s.items.clear();
        }))), idva, "unproven_risk"),
        ("a high-risk header with no summary", at(RiskLevel::High), referral(None), idva, "unproven_risk"),
        ("a high-risk marac.referral with no summary", marac_high, marac_referral(None), marac, "unproven_risk"),
        ("a medium-risk header on a high summary", at(RiskLevel::Medium), referral(Some(signed.clone())), idva, "unproven_risk"),
        ("a standard-risk header on a summary judgement raised to high", at(RiskLevel::Standard), referral(Some(judged)), idva, "unproven_risk"),
        ("signed by the IDVA, naming housing as the assessing agency", at(RiskLevel::High), referral(Some(forged_by_idva)), idva, "unproven_risk"),
        ("signed by an agency not in the directory", at(RiskLevel::High), referral(Some(by_stranger)), idva, "unproven_risk"),
        ("signed with housing's key retired before the header was made", at(RiskLevel::High), referral(Some(by_retired_key)), idva, "unproven_risk"),
        ("an empty summary (what minimisation leaves a role that may not receive risk.dash)", at(RiskLevel::Standard), referral(Some(DashAssessment::default())), idva, "unproven_risk"),
    ];
    let checks: Vec<Value> = cases
        .into_iter()
        .map(|(case, header, payload, role, reason)| {
            let got = isp::risk::check(&f.directory, &header, &payload, f.policy.receivable(role, "risk.dash"));
            match &got {
                Ok(()) => assert_eq!(reason, "", "{case}: accepted"),
                Err(e) => assert_eq!((e.code(), e.rule().as_str(), e.is_violation()), (reason, "risk", true), "{case}: {e}"),
            }
            json!({"case": case, "header": hex::encode(header.encode_to_vec()), "payload": hex::encode(payload.encode_to_vec()), "recipient_role": role.to_string(), "reason": reason})
        })
        .collect();
    let bands: Vec<Value> = (0..=27).map(|score| json!({"score": score, "band": isp::policy::risk_name(isp::risk::band_of_score(score))})).collect();
    let checklists: Vec<Value> = isp::risk::CHECKLISTS.iter().map(|c| json!({"version": c.version, "questions": c.questions.len()})).collect();
    write_or_check(
        "dash.json",
        json!({
            "spec": "SPEC.md 6.5; the partnership of signed_files.json, keys of key_ids.json",
            "checklists": checklists,
            "bands": bands,
            "assessed_by": "housing-vector",
            "summary_fields": dash_fields(&signed),
            "summary": hex::encode(signed.encode_to_vec()),
            "signed": hex::encode(&signed_bytes),
            "signed_message": hex::encode(&message),
            "signature": hex::encode(&signed.signature),
            "signing_key_id": signed.signing_key_id,
            "checks": checks,
        }),
    );
}

fn vector_event() -> Event {
    Event {
        event_id: "01937a4e-7a00-7000-8000-0000000e7e47".into(),
        agency: "housing-vector".into(),
        kind: EventKind::SendDenied as i32,
        occurred_at_ms: AT_MS,
        policy_version: "2026-11-demo.1".into(),
        rule: "roles.perpetrator.never".into(),
        reason: "never_allowed_field".into(),
        counterpart: "pathway-vector".into(),
        message_kind: Kind::PerpetratorReferral as i32,
        purpose: "perpetrator-engagement".into(),
        lawful_basis: "uk-gdpr-6-1-e".into(),
        risk: RiskLevel::High as i32,
        subject_ref: "s-5f3c0e7a1d2b4c6e8f9a0b1c2d3e4f5a".into(),
        case_ref: "HSG-2026-0042".into(),
        data_categories: vec!["survivor.address".into(), "perpetrator.identity".into()],
        forbidden_categories: vec!["survivor.address".into()],
        ..Default::default()
    }
}

/// The IDVA's events about the vector referral, as the hub makes them ([`isp::access`]), with
/// fixed event ids: a staff member accepted it an hour after it was sent, and the IDVA's
/// first contact with the survivor was not made within the 48 hours of the policy.
fn vector_idva_events(f: &Fixture) -> Vec<Event> {
    let idva = f.keys("idva-vector");
    let acknowledgement = isp::access::Acknowledgement {
        envelope_id: ENVELOPE_ID,
        referrer: "housing-vector",
        kind: Kind::IdvaReferral,
        status: "accepted",
        staff_id: "idva.advocate",
        at_ms: AT_MS + 3_600_000,
    };
    let (mut acknowledged, _) = isp::access::acknowledged_event(idva, &f.policy.version, &acknowledgement);
    acknowledged.event_id = "01937a4e-7a00-7000-8000-0000000ac6ed".into();
    let subject_ref = vector_subject_ref(f);
    let contact_within = isp::policy::Deadlines::ms(f.policy.deadlines.idva_contact_hours);
    let missed = isp::access::Missed {
        code: "idva_contact",
        target: ENVELOPE_ID,
        case_ref: "HSG-2026-0042",
        subject_ref: &subject_ref,
        counterpart: "housing-vector",
        at_ms: AT_MS + contact_within,
    };
    let (mut deadline_missed, _) = isp::access::deadline_missed_event(idva, &f.policy.version, &missed);
    deadline_missed.event_id = "01937a4e-7a00-7000-8000-00000000dead".into();
    vec![acknowledged, deadline_missed]
}

#[test]
fn events() {
    let f = Fixture::new();
    let event = vector_event();
    let signed = isp::seal::sign_event_as(f.keys("housing-vector"), &event);
    assert_eq!(isp::seal::verify_event(&f.directory, &signed).unwrap(), event);
    let decoded = proto::v1::SignedEvent::decode(signed.as_slice()).unwrap();
    // Signed by the agency, but with free text where a token belongs: refused by name.
    let refused: Vec<Value> = [
        ("free text as the rule", Event { rule: "asked about Jane Smith".into(), ..vector_event() }, "rule"),
        ("a name as the staff id", Event { staff_id: "Jane Smith".into(), ..vector_event() }, "staff_id"),
        ("an address as the case ref", Event { case_ref: "17 Synthetic Lane".into(), ..vector_event() }, "case_ref"),
    ]
    .into_iter()
    .map(|(case, event, field)| {
        let bytes = isp::seal::sign_event_as(f.keys("housing-vector"), &event);
        assert_eq!(isp::seal::verify_event(&f.directory, &bytes), Err(isp::OpenError::BadClearField(field)), "{case}");
        json!({"case": case, "signed_event": hex::encode(&bytes), "reason": "bad_clear_field", "field": field})
    })
    .collect();
    // Other kinds, each with the ledger entry type it gives (SPEC.md 10 and 11.1).
    let idva = f.keys("idva-vector");
    let other_kinds: Vec<Value> = vector_idva_events(&f)
        .into_iter()
        .map(|event| {
            let kind = EventKind::try_from(event.kind).unwrap();
            let signed = isp::seal::sign_event_as(idva, &event);
            assert_eq!(isp::seal::verify_event(&f.directory, &signed).unwrap(), event);
            let subject = runtime::transport::event_subject(&event.agency, kind);
            let entry = ledger::classify_at(&f.directory, &subject, &signed, 1, None);
            assert!(entry.verified, "{kind:?}");
            let token = subject.rsplit('.').next().unwrap().to_owned();
            json!({
                "kind": event.kind, "token": token, "entry_type": entry.entry_type, "agency": event.agency, "subject": subject,
                "event": hex::encode(event.encode_to_vec()), "signing_key_id": idva.signing_key_id(), "signed_event": hex::encode(&signed),
            })
        })
        .collect();
    assert_eq!(other_kinds.iter().map(|k| k["entry_type"].as_str().unwrap()).collect::<Vec<_>>(), ["acknowledged", "deadline_missed"]);
    write_or_check(
        "events.json",
        json!({
            "spec": "SPEC.md 10",
            "agency": "housing-vector",
            "subject": runtime::transport::event_subject("housing-vector", EventKind::SendDenied),
            "event": hex::encode(&decoded.event),
            "signed_message": hex::encode([isp::seal::EVENT_CONTEXT, &decoded.event].concat()),
            "signature": hex::encode(&decoded.signature),
            "signing_key_id": decoded.signing_key_id,
            "signed_event": hex::encode(&signed),
            "refused": refused,
            "other_kinds": other_kinds,
        }),
    );
}

/// The subject ref of the vector envelope's survivor: the consent record is about them.
fn vector_subject_ref(f: &Fixture) -> String {
    f.keys("housing-vector").subject_ref(&person().full_name, &person().date_of_birth).unwrap()
}

fn record(f: &Fixture, revision: u64, state: State, recorded_at_ms: i64) -> ConsentRecord {
    ConsentRecord {
        consent_id: "CON-2026-7".into(),
        agency: "housing-vector".into(),
        revision,
        subject_ref: vector_subject_ref(f),
        state,
        reason: String::new(),
        scope: Scope { roles: vec![Role::Idva], agencies: vec![], purposes: vec!["safeguarding".into()] },
        recorded_by: "hsg.caseworker".into(),
        recorded_at_ms,
        created_at_ms: AT_MS - 10_000,
        expires_at_ms: Some(AT_MS + 86_400_000),
    }
}

#[test]
fn consent_records() {
    let f = Fixture::new();
    let housing = f.isp("housing-vector");
    let idva = f.isp("idva-vector");
    let sign = |r: &ConsentRecord| String::from_utf8(housing.sign_consent(r).unwrap()).unwrap();
    let given = sign(&record(&f, 1, State::Given, AT_MS - 10_000));
    let widened = sign(&ConsentRecord { scope: Scope { roles: vec![Role::Idva, Role::Marac], ..record(&f, 2, State::Given, AT_MS - 5_000).scope }, ..record(&f, 2, State::Given, AT_MS - 5_000) });
    let withdrawn = sign(&record(&f, 3, State::Withdrawn, AT_MS - 1_000));
    // A later revision "given" after the withdrawal: a withdrawal is final, this loses.
    let after = sign(&record(&f, 4, State::Given, AT_MS));
    // The IDVA signing a value under housing's key: not signed by the owner, ignored.
    let forged = {
        let text = serde_json::to_string(&record(&f, 9, State::Given, AT_MS)).unwrap();
        let signature = idva.keys.signing.sign(&[consent::CONSENT_CONTEXT, text.as_bytes()].concat());
        json!({"record": text, "signature": hex::encode(signature.to_bytes()), "signing_key_id": idva.keys.signing_key_id()}).to_string()
    };
    let values = [&given, &widened, &withdrawn, &after, &forged];
    let (current, rejected) = consent::current(&f.directory, "housing-vector", "CON-2026-7", values.iter().map(|v| v.as_bytes()));
    let current = current.unwrap();
    assert_eq!((current.record().revision, current.record().state, rejected), (3, State::Withdrawn, 1));
    let (first, _) = consent::current(&f.directory, "housing-vector", "CON-2026-7", [given.as_bytes()]);
    let tag = ConsentTag { consent_id: "CON-2026-7".into(), state: ConsentState::Given as i32, recorded_by: "housing-vector".into() };
    let subject_ref = vector_subject_ref(&f);
    let use_ = |purpose, at| consent::Use { recipient: "idva-vector", recipient_role: Role::Idva, purpose, subject_ref: &subject_ref, expiry_at_ms: at };
    let checks: Vec<Value> = [
        ("the given revision, in scope", vec![&given], "safeguarding", AT_MS, ""),
        ("the given revision, for a purpose it does not name", vec![&given], "marac", AT_MS, "consent_out_of_scope"),
        ("the given revision, after it expired", vec![&given], "safeguarding", AT_MS + 86_400_000, "consent_expired"),
        ("every revision: the withdrawal is current", values.to_vec(), "safeguarding", AT_MS, "consent_withdrawn"),
        ("only the forged value: no consent", vec![&forged], "safeguarding", AT_MS, "consent_unknown"),
    ]
    .into_iter()
    .map(|(case, vals, purpose, at, reason)| {
        let (current, _) = consent::current(&f.directory, "housing-vector", "CON-2026-7", vals.iter().map(|v| v.as_bytes()));
        let got = consent::check(Some(&tag), current.as_ref(), use_(purpose, at)).err().map(|d| d.reason).unwrap_or("");
        assert_eq!(got, reason, "{case}");
        json!({"case": case, "values": vals.iter().map(|v| values.iter().position(|x| x == v).unwrap()).collect::<Vec<_>>(), "purpose": purpose, "judged_at_ms": at, "reason": reason})
    })
    .collect();
    assert!(first.is_some());
    // The vector envelope relies on this record: covered by the given revision alone, refused
    // once the withdrawal is in the bucket (SPEC.md 8, step 12).
    if let Some(v) = stored("envelope.json") {
        let header = Header::decode(hex::decode(v["header"].as_str().unwrap()).unwrap().as_slice()).unwrap();
        assert!(idva.recheck_consent(&header, first.as_ref(), header.created_at_ms).is_ok());
        let (now, _) = consent::current(&f.directory, "housing-vector", "CON-2026-7", values.iter().map(|v| v.as_bytes()));
        assert_eq!(idva.recheck_consent(&header, now.as_ref(), header.created_at_ms).unwrap_err().reason, "consent_withdrawn");
    }
    write_or_check(
        "consent.json",
        json!({
            "spec": "SPEC.md 13",
            "owner": "housing-vector",
            "key": consent::key("housing-vector", "CON-2026-7"),
            "values": values,
            "current": {"index": 2, "revision": 3, "state": "withdrawn", "rejected": 1},
            "tag": {"consent_id": "CON-2026-7", "state": "given", "recorded_by": "housing-vector"},
            "recipient": "idva-vector",
            "recipient_role": "idva",
            "subject_ref": subject_ref,
            "checks": checks,
        }),
    );
}

/// The entries of `ledger.json`, chained: the vector envelope and events as the audit service
/// records them (recorded_at_ms fixed), after two of the shapes of older ledgers (without
/// stream facts, with and without a staff id). None while the vectors are first written.
fn vector_entries(f: &Fixture) -> Option<Vec<Entry>> {
    let envelope = match stored("envelope.json") {
        Some(v) => hex::decode(v["envelope"].as_str().unwrap()).unwrap(),
        None if writing() => return None, // written by `envelope` first; run the writer again
        None => panic!("tests/vectors/envelope.json is missing"),
    };
    let subject = runtime::transport::message_subject("housing-vector", "idva-vector", Kind::IdvaReferral);
    let event = isp::seal::sign_event_as(f.keys("housing-vector"), &vector_event());
    let mut disclosure = ledger::classify_at(&f.directory, &subject, &envelope, 41, Some(AT_MS + 1_500));
    disclosure.recorded_at_ms = AT_MS + 2_000;
    disclosure.stream_epoch = 1_794_999_000_000_000_000;
    let mut near_miss = ledger::classify_at(&f.directory, &runtime::transport::event_subject("housing-vector", EventKind::SendDenied), &event, 42, None);
    near_miss.recorded_at_ms = AT_MS + 2_100;
    near_miss.stream_epoch = disclosure.stream_epoch;
    let old_access = Entry {
        stream_seq: 7, entry_type: EntryType::Accessed, entry_id: "01937a4e-7a00-7000-8000-0000000acce5".into(), recorded_by: "ig-vector".into(),
        sender: "ig-vector".into(), rule: "GET /ledger".into(), reason: "allowed".into(), staff_id: "ig.lead".into(),
        occurred_at_ms: AT_MS - 90_000, recorded_at_ms: AT_MS - 89_000, verified: false, signed: vec![0xaa; 4], ..Default::default()
    };
    let oldest = Entry {
        stream_seq: 3, entry_type: EntryType::Unverifiable, entry_id: "stream-3".into(), reason: "bad_signature".into(), rule: "crypto".into(),
        occurred_at_ms: AT_MS - 100_000, recorded_at_ms: AT_MS - 100_000, signed: Sha256::digest(b"junk").to_vec(), ..Default::default()
    };
    let idva_entries: Vec<Entry> = vector_idva_events(f)
        .into_iter()
        .zip(43..)
        .map(|(event, stream_seq)| {
            let kind = EventKind::try_from(event.kind).unwrap();
            let signed = isp::seal::sign_event_as(f.keys("idva-vector"), &event);
            let mut e = ledger::classify_at(&f.directory, &runtime::transport::event_subject("idva-vector", kind), &signed, stream_seq, None);
            e.recorded_at_ms = event.occurred_at_ms + 100;
            e.stream_epoch = disclosure.stream_epoch;
            e
        })
        .collect();
    let [acknowledged, deadline_missed]: [Entry; 2] = idva_entries.try_into().expect("two IDVA events");
    let mut prev = vec![0u8; 32];
    Some(
        [oldest, old_access, disclosure, near_miss, acknowledged, deadline_missed]
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e.seq = i as i64 + 1;
                e.prev_hash = std::mem::take(&mut prev);
                e.hash = e.compute_hash(&e.prev_hash);
                prev = e.hash.clone();
                e
            })
            .collect(),
    )
}

#[test]
fn ledger_entries() {
    let f = Fixture::new();
    let Some(entries) = vector_entries(&f) else { return };
    assert_eq!(entries[2].entry_type, EntryType::Disclosure);
    assert_eq!(entries[3].entry_type, EntryType::NearMiss);
    // The referral's sender and the IDVA that acknowledged it; the IDVA that missed its
    // deadline and the agency concerned.
    let parties = |e: &Entry| (e.entry_type, e.sender.clone(), e.recipient.clone());
    assert_eq!(parties(&entries[4]), (EntryType::Acknowledged, "housing-vector".into(), "idva-vector".into()));
    assert_eq!(parties(&entries[5]), (EntryType::DeadlineMissed, "idva-vector".into(), "housing-vector".into()));
    let entries: Vec<Value> = entries.iter().map(|e| json!({"entry": e, "canonical": hex::encode(e.canonical())})).collect();
    write_or_check(
        "ledger.json",
        json!({"spec": "SPEC.md 11; the envelope of envelope.json, then the events of events.json (event, other_kinds)", "entries": entries}),
    );
}

/// A checkpoint of the tree of `ledger.json`'s first four entries, a witness's cosignature of it, an
/// inclusion proof of the disclosure as the audit service gives one, notes that must be
/// refused, and a checkpoint of the form before 0.2.
#[test]
fn checkpoints() {
    use isp::checkpoint::{self, Checkpoint};
    let f = Fixture::new();
    let Some(entries) = vector_entries(&f) else { return };
    let ig = f.keys("ig-vector");
    let housing = f.keys("housing-vector");
    let mut tree = MemoryTree::default();
    for e in &entries {
        tree.push(merkle::leaf_hash(&e.hash));
    }
    let root = merkle::root(&tree, 4);
    let made = Checkpoint::sign(ig, 4, &root, AT_MS + 5_000);
    assert_eq!(made.verify(&f.directory).unwrap(), root);
    let cosigned_at = (AT_MS / 1000 + 7) as u64;
    let cosignature = checkpoint::cosign(housing, &made.note, cosigned_at).unwrap();
    let housing_key = housing.signing.verifying_key();
    assert_eq!(checkpoint::verify_cosignature(&made.note, &cosignature, "housing-vector", &housing_key).unwrap(), cosigned_at);
    let cosigned = format!("{}{cosignature}", made.note);
    assert_eq!(Checkpoint::from_note(&cosigned, &f.directory).unwrap().tree_size, 4, "a cosignature line is ignored by the log's verifier");
    let proof = audit::checkpoints::InclusionProof {
        entry: entries[2].clone(),
        leaf_index: 2,
        tree_size: 4,
        path: merkle::inclusion_proof(&tree, 2, 4).iter().map(hex::encode).collect(),
        checkpoint: made.clone(),
    };
    audit::checkpoints::verify_proof(&proof, &f.directory).unwrap();
    // Refused: what anyone with publish rights could put on the checkpoint subject.
    let by_housing = Checkpoint::sign(housing, 4, &root, 0).note;
    let resized = made.note.replacen("\n4\n", "\n5\n", 1);
    let extended = made.note.replacen("=\n\n", "=\nextension\n\n", 1);
    let refused: Vec<Value> = [
        ("signed by a housing agency, under its own origin", by_housing),
        ("the tree size changed after signing", resized),
        ("an extension line added after signing", extended),
        ("no signature line", format!("{}\n", made.note.split("\n\n").next().unwrap())),
    ]
    .into_iter()
    .map(|(case, note)| {
        assert!(Checkpoint::from_note(&note, &f.directory).is_err(), "{case}");
        json!({"case": case, "note": note})
    })
    .collect();
    let legacy = {
        let root_hex = hex::encode(root);
        let mut signed = b"hub.v1.checkpoint\0".to_vec();
        for part in [PARTNERSHIP.as_bytes(), &4u64.to_be_bytes(), root_hex.as_bytes(), &AT_MS.to_be_bytes(), b"ig-vector"] {
            signed.extend_from_slice(&(part.len() as u64).to_be_bytes());
            signed.extend_from_slice(part);
        }
        json!({
            "partnership": PARTNERSHIP, "tree_size": 4, "root": root_hex, "at_ms": AT_MS, "signer": "ig-vector", "key_id": ig.signing_key_id(),
            "signature": hex::encode(ig.signing.sign(&signed).to_bytes()),
        })
    };
    let legacy_checkpoint: Checkpoint = serde_json::from_value(legacy.clone()).unwrap();
    assert_eq!(legacy_checkpoint.verify(&f.directory).unwrap(), root);
    write_or_check(
        "checkpoint.json",
        json!({
            "spec": "SPEC.md 12.4 (C2SP signed-note, tlog-checkpoint, tlog-cosignature) and 12.2; the tree of ledger.json's first 4 entries",
            "origin": checkpoint::origin("ig-vector"),
            "tree_size": 4,
            "root": hex::encode(root),
            "vkey": checkpoint::verifier_key(&made.origin, &ig.signing.verifying_key()),
            "checkpoint": made,
            "cosigner": "housing-vector",
            "cosigner_vkey": checkpoint::cosigner_verifier_key("housing-vector", &housing_key),
            "cosigned_at": cosigned_at,
            "cosignature": cosignature,
            "cosigned_note": cosigned,
            "inclusion_proof": proof,
            "refused": refused,
            "legacy_checkpoint": legacy,
        }),
    );
}

#[test]
fn merkle_proofs() {
    let leaves: Vec<Vec<u8>> = (0u8..7).map(|i| Sha256::digest([b'l', b'e', b'a', b'f', i]).to_vec()).collect();
    let mut tree = MemoryTree::default();
    let mut roots = vec![json!({"size": 0, "root": hex::encode(merkle::empty_root())})];
    for (n, leaf) in leaves.iter().enumerate() {
        tree.push(merkle::leaf_hash(leaf));
        roots.push(json!({"size": n + 1, "root": hex::encode(merkle::root(&tree, n as u64 + 1))}));
    }
    let root = |n: u64| merkle::root(&tree, n);
    let mut inclusion = Vec::new();
    let mut consistency = Vec::new();
    for size in 1..=7u64 {
        for index in 0..size {
            let proof = merkle::inclusion_proof(&tree, index, size);
            assert!(merkle::verify_inclusion(index, size, &merkle::leaf_hash(&leaves[index as usize]), &proof, &root(size)));
            inclusion.push(json!({"index": index, "size": size, "path": proof.iter().map(hex::encode).collect::<Vec<_>>()}));
        }
        for first in 1..=size {
            let proof = merkle::consistency_proof(&tree, first, size);
            assert!(merkle::verify_consistency(first, size, &root(first), &root(size), &proof));
            consistency.push(json!({"first": first, "second": size, "proof": proof.iter().map(hex::encode).collect::<Vec<_>>()}));
        }
    }
    write_or_check(
        "merkle.json",
        json!({
            "spec": "SPEC.md 12.1-12.3 (RFC 9162 2.1): a leaf's data is a ledger entry's hash",
            "leaves": leaves.iter().map(hex::encode).collect::<Vec<_>>(),
            "roots": roots,
            "inclusion": inclusion,
            "consistency": consistency,
        }),
    );
}

/// Ed25519 as the hub verifies it (SPEC.md 1: strict): what a lenient verifier accepts and the
/// hub refuses. A forgery with the identity point as key and as R, and S = 0, "verifies" for
/// every message under the cofactored or lenient equation; a signature with S + L (the group
/// order) added is the same signature in a second encoding.
#[test]
fn ed25519_strict() {
    use ed25519_dalek::{Signature, VerifyingKey};
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0x10,
    ];
    let f = Fixture::new();
    let key = &f.keys("housing-vector").signing;
    let message = [ENVELOPE_CONTEXT, b"an example header"].concat();
    let good = key.sign(&message).to_bytes();
    // S + L, little-endian.
    let mut malleated = good;
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = malleated[32 + i] as u16 + L[i] as u16 + carry;
        malleated[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut forged = [0u8; 64];
    forged[..32].copy_from_slice(&identity);
    let public = key.verifying_key().to_bytes();
    let cases = [
        ("a valid signature", public, good, true),
        ("S + L: a second encoding of the same signature", public, malleated, false),
        ("the identity point as key and as R, S = 0: a forgery lenient verifiers accept", identity, forged, false),
    ];
    let cases: Vec<Value> = cases
        .into_iter()
        .map(|(case, public, signature, valid)| {
            let verified = VerifyingKey::from_bytes(&public).is_ok_and(|k| k.verify_strict(&message, &Signature::from_bytes(&signature)).is_ok());
            assert_eq!(verified, valid, "{case}");
            json!({"case": case, "public": hex::encode(public), "message": hex::encode(&message), "signature": hex::encode(signature), "valid": valid})
        })
        .collect();
    write_or_check("ed25519.json", json!({"spec": "SPEC.md 1: Ed25519 verified strictly (RFC 8032, canonical S, no small-order key or R)", "cases": cases}));
}
