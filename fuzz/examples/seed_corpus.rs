//! Writes the fuzz partnership (`fuzz/keys/`) and the seed corpus (`fuzz/corpus/<target>/`)
//! from real traffic: the demo case's requests (services/hub/src/demo.rs) sent through the
//! same code the services run (`runtime::api::outgoing`, `Isp::seal`), the envelopes and
//! events they make, the ledger the audit service would build of them with its checkpoint,
//! proofs and a subject access bundle, the repository's policy and a signed directory.
//!
//! Run after changing the proto schema, the policy or an input format of a target:
//!
//! ```sh
//! cd fuzz && cargo run --example seed_corpus
//! ```
//!
//! Every run makes new keys, so it rewrites both directories whole.

use std::{collections::BTreeMap, error::Error, fs, path::Path};

use audit::{checkpoints::InclusionProof, ledger::Entry, subject_access::Bundle};
use hub_fuzz::{NOW_MS, SEP};
use isp::{
    AgencyKeys, Denial, Directory, Isp, IspError, Policy, Schema,
    checkpoint::Checkpoint,
    consent::{ConsentRecord, State, Verified},
    directory::{DEMO_AGENCIES, generate_partnership},
    kind, merkle,
};
use prost::Message as _;
use proto::v1::{EventKind, Header};
use runtime::transport::{event_subject, message_subject};
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const PARTNERSHIP: &str = "Northbridge Domestic Abuse Partnership (fuzz)";
const SURVIVOR_NAME: &str = "Zephyrine Quillfeather-Demo";
const SURVIVOR_DOB: &str = "1991-04-05";
const HOUSING: &str = "housing-northbridge";
/// The staff member the seeds act as (from the login, in the services).
const STAFF: &str = "hsg.staff-0142";
const LANDLORD: &str = "riverside-homes";

/// One message on the stream, as the audit service would see it.
struct Message {
    subject: String,
    body: Vec<u8>,
}

struct Seeds {
    root: std::path::PathBuf,
    count: usize,
    per_target: BTreeMap<String, usize>,
}

impl Seeds {
    fn write(&mut self, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir)?;
        self.count += 1;
        let n = self.per_target.entry(target.to_owned()).or_default();
        *n += 1;
        fs::write(dir.join(format!("{n:02}-{name}")), bytes)?;
        Ok(())
    }
}

fn joined(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&SEP)
}

fn main() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let keys_dir = root.join("keys");
    for dir in [&keys_dir, &root.join("corpus")] {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
    }
    fs::create_dir_all(keys_dir.join("consents"))?;
    let mut seeds = Seeds { root: root.join("corpus"), count: 0, per_target: BTreeMap::new() };

    // The partnership: the demo's agencies with fresh (synthetic) keys.
    let (directory, keys) = generate_partnership(PARTNERSHIP, &DEMO_AGENCIES)?;
    let ig = keys.iter().find(|k| k.agency == "ig-northbridge").ok_or("no ig agency")?.clone();
    let directory_text = directory.to_toml();
    let directory_sig = serde_json::to_string_pretty(&isp::signed::sign_directory(&ig, 1, &directory_text))?;
    fs::write(keys_dir.join("directory.toml"), &directory_text)?;
    for k in &keys {
        fs::write(keys_dir.join(format!("{}.toml", k.agency)), k.to_toml())?;
    }
    let schema = std::sync::Arc::new(Schema::load()?);
    let policy = std::sync::Arc::new(Policy::from_toml(isp::policy::DEMO_POLICY, &schema)?);
    let directory = std::sync::Arc::new(directory);
    let isps: Vec<Isp> = keys.iter().map(|k| Isp::new(k.clone(), directory.clone(), policy.clone(), schema.clone())).collect::<std::result::Result<_, _>>()?;
    let by_id = |id: &str| isps.iter().find(|i| i.agency() == id).expect("a demo agency");
    let index = |id: &str| isps.iter().position(|i| i.agency() == id).expect("a demo agency") as u8;
    let housing = by_id(HOUSING);
    let subject = json!({"full_name": SURVIVOR_NAME, "date_of_birth": SURVIVOR_DOB});
    let subject_ref = housing.keys.subject_ref(SURVIVOR_NAME, SURVIVOR_DOB)?;

    // Files: the policy and directory with their signatures, and a directory after a rotation.
    let policy_sig = serde_json::to_string_pretty(&isp::signed::sign(&ig, &policy.version, 1, isp::policy::DEMO_POLICY))?;
    seeds.write("policy", "policy-signed", &joined(&[isp::policy::DEMO_POLICY.as_bytes(), policy_sig.as_bytes()]))?;
    seeds.write("policy", "policy", isp::policy::DEMO_POLICY.as_bytes())?;
    seeds.write("directory", "directory-signed", &joined(&[directory_text.as_bytes(), directory_sig.as_bytes()]))?;
    let rotated = directory.rotated(&housing.keys.rotated(), NOW_MS)?;
    let rotated_text = rotated.to_toml();
    let rotated_sig = serde_json::to_string_pretty(&isp::signed::sign_directory(&ig, 2, &rotated_text))?;
    seeds.write("directory", "directory-rotated", &joined(&[rotated_text.as_bytes(), rotated_sig.as_bytes()]))?;

    // Consent records, recorded through POST /consents and withdrawn as the handler does.
    let mut stream: Vec<Message> = Vec::new();
    let mut consents: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let housing_ix = index(HOUSING);
    let bodies = [
        json!({"consent_id": "CON-1", "subject": subject, "state": "given",
            "scope": {"roles": ["idva", "reciprocals"], "purposes": ["safeguarding", "rehousing"]}}),
        json!({"consent_id": "CON-2", "subject": subject, "state": "not-sought", "reason": "asking-would-increase-risk"}),
        json!({"consent_id": "CON-3", "subject_ref": subject_ref, "state": "given",
            "scope": {"agencies": ["idva-northbridge"], "purposes": ["safeguarding"]}, "expires_at_ms": NOW_MS + 86_400_000}),
    ];
    for body in &bodies {
        seeds.write("http_bodies", "post-consents", &[&[1, housing_ix][..], &serde_json::to_vec(body)?].concat())?;
        let mut record = runtime::consent::new_record(housing, serde_json::from_value(body.clone())?, NOW_MS).map_err(|e| e.body.to_string())?;
        // Who recorded it comes from the login, as the handler sets it.
        record.recorded_by = STAFF.into();
        record_revision(housing, &record, &mut consents, &mut stream)?;
    }
    let withdraw = json!({"reason": "cannot-contact-safely"});
    seeds.write("http_bodies", "post-consents-withdraw", &[&[2, housing_ix][..], &serde_json::to_vec(&withdraw)?].concat())?;
    let last = consents["housing-northbridge.CON-3"].last().cloned().ok_or("no record")?;
    let mut record = isp::consent::verify(&directory, HOUSING, "CON-3", &last)?.record().clone();
    record.revision += 1;
    record.state = State::Withdrawn;
    record.reason = "cannot-contact-safely".into();
    record.recorded_at_ms = NOW_MS + 1000;
    record_revision(housing, &record, &mut consents, &mut stream)?;
    for (key, values) in &consents {
        fs::write(keys_dir.join("consents").join(format!("{key}.json")), values.last().ok_or("no value")?)?;
        let parts: Vec<&[u8]> = std::iter::once(key.as_bytes()).chain(values.iter().map(Vec::as_slice)).collect();
        seeds.write("consent", key, &joined(&parts))?;
    }
    let verified: BTreeMap<String, Verified> = consents
        .iter()
        .map(|(key, values)| {
            let (owner, id) = key.split_once('.').expect("a bucket key");
            (key.clone(), isp::consent::current(&directory, owner, id, values.iter().map(Vec::as_slice)).0.expect("verifies"))
        })
        .collect();

    // The demo case's disclosures, sent as the services send them.
    let mut sender = Sender { isps: &isps, consents: &verified, stream: &mut stream, seeds: &mut seeds, sealed: Vec::new(), summary: None };
    let survivor = json!({"fullName": SURVIVOR_NAME, "dateOfBirth": SURVIVOR_DOB, "address": "17 Synthetic Lane, Northbridge NB1 9ZZ", "phone": "07700 900123", "safeToCall": true, "safeTimes": "weekdays 10:00-12:00"});
    let perpetrator = json!({"fullName": "Barnaby Synthetic-Harmer", "dateOfBirth": "1987-09-30", "address": "4 Invented Road, Northbridge", "relationship": "ex-partner"});
    let referrer = json!({"name": "Demo Officer", "agency": "Northbridge Council Housing Solutions", "role": "Housing options officer"});
    let answers: Vec<&str> = (0..24).map(|i| if i < 15 { "yes" } else if i % 5 == 0 { "dont_know" } else { "no" }).collect();
    let dash_body = json!({"case_ref": "HSG-2026-0042", "subject": subject, "answers": answers});
    sender.seeds.write("http_bodies", "post-dash-assessments", &[&[5, housing_ix][..], &serde_json::to_vec(&dash_body)?].concat())?;
    // The assessment as housing's service records and signs it; its sends carry it as the
    // service fills it in from `assessment_id`.
    let mut assessment = runtime::assessments::assess(&serde_json::from_value(dash_body)?, "2026-01-01", STAFF)?;
    assessment.assessment_id = "0193a0c4-7b1e-7000-8000-000000000042".into();
    let items = std::mem::take(&mut assessment.items);
    isp::risk::sign_summary(&isps[housing_ix as usize].keys, &mut assessment);
    assessment.items = items;
    sender.summary = Some(assessment);

    let idva_referral = sender.send(HOUSING, json!({"to": "idva-northbridge", "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a",
        "consent": {"id": "CON-1", "state": "given"}, "risk": "high", "subject": subject, "case_ref": "HSG-2026-0042",
        "payload": {"idvaReferral": {"referrer": referrer, "survivor": survivor, "perpetrators": [perpetrator],
            "reason": "Disclosed escalating abuse at a housing options interview", "survivorAware": true}}}))?;
    let marac_referral = sender.send(HOUSING, json!({"to": "marac-northbridge", "purpose": "marac", "lawful_basis": "uk-gdpr-9-2-g-dpa-s1-p18",
        "consent": {"id": "CON-2", "state": "not-sought"}, "risk": "high", "subject": subject, "case_ref": "HSG-2026-0042",
        "without_consent": {"rationale_code": "asking-would-increase-risk",
            "rationale": "Visible high risk; the perpetrator monitors her phone, so asking could alert him"},
        "payload": {"maracReferral": {"referrer": referrer, "survivor": survivor, "perpetrators": [perpetrator],
            "criteria": ["MARAC_CRITERION_VISIBLE_HIGH_RISK"], "survivorAware": false, "reasonNoConsent": "Asking would raise the risk"}}}))?;
    for (by, envelope) in [("idva-northbridge", &idva_referral), ("marac-northbridge", &marac_referral)] {
        sender.send(by, json!({"to": HOUSING, "purpose": "case-coordination", "lawful_basis": "uk-gdpr-6-1-e", "subject_ref": subject_ref,
            "in_reply_to": envelope, "payload": {"referralAck": {"envelopeId": envelope, "status": "ACK_STATUS_ACCEPTED"}}}))?;
    }
    for member in [HOUSING, "idva-northbridge"] {
        let request = sender.send("marac-northbridge", json!({"to": member, "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e", "risk": "high",
            "subject_ref": subject_ref, "case_ref": "MARAC-2026-11-07", "payload": {"maracResearchRequest": {"meetingDate": "2026-12-03",
                "survivor": {"fullName": SURVIVOR_NAME, "dateOfBirth": SURVIVOR_DOB}, "perpetrators": [{"fullName": "Barnaby Synthetic-Harmer", "dateOfBirth": "1987-09-30"}],
                "questions": "What do you hold on these people?", "replyBy": "2026-12-01"}}}))?;
        sender.send(member, json!({"to": "marac-northbridge", "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e", "subject_ref": subject_ref,
            "case_ref": "MARAC-2026-11-07", "in_reply_to": request,
            "payload": {"maracResearchResponse": {"holdsInformation": true, "summary": "Two prior reports of noise and damage at the tenancy"}}}))?;
    }
    let action = sender.send("marac-northbridge", json!({"to": HOUSING, "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e", "risk": "high",
        "subject_ref": subject_ref, "case_ref": "MARAC-2026-11-07", "payload": {"maracAction": {"actionId": "ACT-0001", "meetingDate": "2026-12-03",
            "description": "Fit additional security to the property (sanctuary scheme)", "ownerAgency": HOUSING, "dueDate": "2026-12-10"}}}))?;
    sender.send(HOUSING, json!({"to": "marac-northbridge", "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e", "subject_ref": subject_ref, "in_reply_to": action,
        "payload": {"maracActionUpdate": {"actionId": "ACT-0001", "status": "ACTION_STATUS_DONE", "note": "Sanctuary measures fitted"}}}))?;
    sender.send(HOUSING, json!({"to": "reciprocals-scheme", "purpose": "rehousing", "lawful_basis": "uk-gdpr-6-1-a",
        "consent": {"id": "CON-1", "state": "given"}, "risk": "high", "subject": subject, "case_ref": "HSG-2026-0042",
        "payload": {"reciprocalRequest": {"referrer": referrer, "applicant": survivor, "currentLandlord": HOUSING, "tenure": "secure",
            "household": {"adults": 1, "children": 2, "bedroomsNeeded": 2},
            "areasOfChoice": ["Eastvale", "Southmoor", "Westbrook", "Highcross", "Riverside"], "excludedAreas": ["Northbridge"],
            "approvedBy": "Demo Landlord Lead"}}}))?;
    let reference = "ARC-01-26";
    sender.send("reciprocals-scheme", json!({"to": LANDLORD, "purpose": "rehousing", "lawful_basis": "uk-gdpr-6-1-e", "case_ref": reference,
        "payload": {"reciprocalPropertyRequest": {"applicationRef": reference, "household": {"adults": 1, "children": 2, "bedroomsNeeded": 2},
            "areas": ["Eastvale", "Southmoor"], "replyBy": "2026-12-15"}}}))?;
    let offer = sender.send(LANDLORD, json!({"to": "reciprocals-scheme", "purpose": "rehousing", "lawful_basis": "uk-gdpr-6-1-e", "case_ref": reference,
        "payload": {"reciprocalOffer": {"applicationRef": reference, "propertyRef": "RH-PROP-2291", "area": "Eastvale", "bedrooms": 2, "availableFrom": "2027-01-04", "landlord": LANDLORD}}}))?;
    sender.send("reciprocals-scheme", json!({"to": LANDLORD, "purpose": "rehousing", "lawful_basis": "uk-gdpr-6-1-e", "case_ref": reference, "in_reply_to": offer,
        "payload": {"reciprocalOfferResponse": {"applicationRef": reference, "propertyRef": "RH-PROP-2291", "accepted": true}}}))?;
    sender.send(LANDLORD, json!({"to": "reciprocals-scheme", "purpose": "rehousing", "lawful_basis": "uk-gdpr-6-1-e", "case_ref": reference,
        "payload": {"reciprocalMoveCompleted": {"applicationRef": reference, "propertyRef": "RH-PROP-2291", "movedOn": "2027-01-11",
            "rehousingLandlord": LANDLORD, "vacatingLandlord": HOUSING}}}))?;
    // The perpetrator referral still carrying the survivor's address is refused (a near miss);
    // the one without it goes.
    let mut perpetrator_referral = json!({"to": "perpetrator-pathways", "purpose": "perpetrator-intervention", "lawful_basis": "cda-1998-s115",
        "risk": "high", "subject": subject, "case_ref": "HSG-2026-0042",
        "payload": {"perpetratorReferral": {"referrer": referrer, "perpetrator": perpetrator, "survivor": survivor, "pathway": "PATHWAY_HIGH_HARM",
            "risk": "RISK_LEVEL_HIGH", "reportEngagementTo": "idva-northbridge", "reason": "Escalating abuse, breach of tenancy conditions"}}});
    sender.send(HOUSING, perpetrator_referral.clone())?;
    perpetrator_referral["payload"]["perpetratorReferral"]["survivor"] = json!({"fullName": SURVIVOR_NAME, "dateOfBirth": SURVIVOR_DOB});
    let pathway = sender.send(HOUSING, perpetrator_referral)?;
    sender.send("perpetrator-pathways", json!({"to": "idva-northbridge", "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-e", "risk": "high",
        "subject_ref": subject_ref, "in_reply_to": pathway,
        "payload": {"perpetratorEngagementUpdate": {"engagement": "ENGAGEMENT_ENGAGED", "asOf": "2027-01-20", "pathway": "PATHWAY_HIGH_HARM", "note": "Attended first two sessions"}}}))?;
    sender.send(HOUSING, json!({"to": "idva-northbridge", "purpose": "case-coordination", "lawful_basis": "uk-gdpr-6-1-e", "subject_ref": subject_ref,
        "in_reply_to": idva_referral, "payload": {"disclosureRevoke": {"envelopeId": idva_referral, "reason": "sent in error"}}}))?;
    let sealed = std::mem::take(&mut sender.sealed);

    // Every envelope as its recipient opens it, and its payload as decrypted there.
    for (header, envelope) in &sealed {
        let recipient = by_id(&header.recipient);
        let opened = recipient.open(envelope).map_err(|(_, e)| format!("a seed envelope does not open: {e}"))?;
        let name = kind::name(opened.header.kind());
        seeds.write("open", name, envelope)?;
        seeds.write("signed_header", name, envelope)?;
        let k = kind::ALL.iter().position(|k| *k == opened.header.kind()).ok_or("no kind")? as u8;
        seeds.write("payload", name, &[&[k, 0][..], &opened.payload.encode_to_vec()].concat())?;
    }
    // Refusals on receipt, and a disclosure stopped in the outbox after a withdrawal.
    let (idva_header, idva_envelope) = &sealed[0];
    let mut tampered = proto::v1::Envelope::decode(idva_envelope.as_slice())?;
    tampered.sealed_payload[40] ^= 1;
    let tampered = tampered.encode_to_vec();
    seeds.write("open", "tampered-payload", &tampered)?;
    let idva = by_id("idva-northbridge");
    for (isp, bytes) in [(idva, &tampered), (idva, &sealed[1].1)] {
        let (header, error) = isp.open(bytes).err().ok_or("a bad envelope opened")?;
        let (_, event) = isp.rejection_event(header.as_ref(), &error, 3);
        stream.push(Message { subject: event_subject(isp.agency(), EventKind::ReceiveRejected), body: event });
    }
    let withdrawn = Denial { rule: "consent-record".into(), reason: "consent_withdrawn", detail: "consent CON-1 was withdrawn".into(), forbidden: Vec::new() };
    let (_, stopped) = housing.stopped_event(idva_header, &withdrawn);
    stream.push(Message { subject: event_subject(HOUSING, EventKind::SendDenied), body: stopped });
    stream.push(Message { subject: "hub.v1.msg.housing-northbridge.idva-northbridge.housing_idva_referral".into(), body: tampered });

    // The audit service's view: every message classified, in stream order.
    for m in &stream {
        seeds.write("classify", m.subject.rsplit('.').next().unwrap_or("message"), &[m.subject.as_bytes(), b"\n", &m.body].concat())?;
    }
    write_ledger_seeds(&mut seeds, &directory, &ig, &idva.keys, &stream, &subject_ref)?;

    // Acknowledgement and revocation bodies.
    for (name, body) in [
        ("ack-accepted", json!({"status": "accepted"})),
        ("ack-declined", json!({"status": "declined", "reason": "No capacity this month", "outcome": "signposted"})),
    ] {
        seeds.write("http_bodies", name, &[&[3, index("idva-northbridge")][..], &serde_json::to_vec(&body)?].concat())?;
    }
    seeds.write("http_bodies", "revoke", &[&[4, housing_ix][..], &serde_json::to_vec(&json!({"reason": "sent in error"}))?].concat())?;
    println!("wrote {} seeds under {} and the partnership under {}", seeds.count, seeds.root.display(), keys_dir.display());
    Ok(())
}

/// Signs and keeps one revision of a consent record, with its ledger event.
fn record_revision(isp: &Isp, record: &ConsentRecord, consents: &mut BTreeMap<String, Vec<Vec<u8>>>, stream: &mut Vec<Message>) -> Result<()> {
    let value = isp.sign_consent(record)?;
    consents.entry(record.key()).or_default().push(value);
    let (_, event) = isp.consent_event(record);
    stream.push(Message { subject: event_subject(isp.agency(), EventKind::ConsentChanged), body: event });
    Ok(())
}

/// Sends requests as `POST /disclosures` does, keeping the envelopes and near misses.
struct Sender<'a> {
    isps: &'a [Isp],
    consents: &'a BTreeMap<String, Verified>,
    stream: &'a mut Vec<Message>,
    seeds: &'a mut Seeds,
    sealed: Vec<(Header, Vec<u8>)>,
    /// Housing's signed DASH summary: a high risk housing sends is proved by it, as the
    /// service fills it in from the assessment a request names.
    summary: Option<proto::v1::DashAssessment>,
}

impl Sender<'_> {
    /// The envelope id, or empty for a refused send.
    fn send(&mut self, from: &str, mut body: Value) -> Result<String> {
        let ix = self.isps.iter().position(|i| i.agency() == from).ok_or("unknown sender")?;
        let isp = &self.isps[ix];
        // A high risk is never asserted in a request: it comes from the assessment named.
        let high = body.as_object_mut().and_then(|o| o.remove("risk")).is_some_and(|r| r == "high");
        let proved = high && from == HOUSING && self.summary.is_some();
        if proved {
            body["assessment_id"] = json!(self.summary.as_ref().map(|s| s.assessment_id.clone()));
        }
        self.seeds.write("http_bodies", "post-disclosures", &[&[0, ix as u8][..], &serde_json::to_vec(&body)?].concat())?;
        if let Some(o) = body.as_object_mut() {
            o.remove("assessment_id");
        }
        let mut out = runtime::api::outgoing(isp, serde_json::from_value(body)?).map_err(|e| e.body.to_string())?;
        if proved {
            out.risk = proto::v1::RiskLevel::High;
            if let Some(slot) = isp::risk::summary_slot(&mut out.payload) {
                *slot = self.summary.clone();
            }
        }
        // The officer of a share without consent is the logged-in staff member, as the handler sets it.
        if let Some(j) = &mut out.justification {
            j.officer = STAFF.into();
        }
        let record = out.consent.as_ref().and_then(|t| self.consents.get(&isp::consent::key(&t.recorded_by, &t.consent_id)));
        match isp.seal(&out, record) {
            Ok(sealed) => {
                let id = sealed.header.envelope_id.clone();
                self.stream.push(Message { subject: message_subject(from, &out.recipient, out.kind), body: sealed.envelope.clone() });
                self.sealed.push((sealed.header, sealed.envelope));
                Ok(id)
            }
            Err(IspError::Denied(denial)) => {
                let (_, event) = isp.denial_event(&out, &denial);
                self.stream.push(Message { subject: event_subject(from, EventKind::SendDenied), body: event });
                Ok(String::new())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The ledger the audit service would make of `stream`, a checkpoint over it signed by the IG
/// office (its JSON view, its note, the note cosigned by `witness`), inclusion proofs, a subject
/// access bundle, and a witness's consistency check.
fn write_ledger_seeds(seeds: &mut Seeds, directory: &Directory, ig: &AgencyKeys, witness: &AgencyKeys, stream: &[Message], subject_ref: &str) -> Result<()> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut tree = merkle::MemoryTree::default();
    let mut prev = vec![0u8; 32];
    for (i, m) in stream.iter().enumerate() {
        let mut e = audit::ledger::classify(directory, &m.subject, &m.body, i as u64 + 1);
        e.recorded_at_ms = NOW_MS;
        e.seq = i as i64 + 1;
        e.prev_hash = prev;
        e.hash = e.compute_hash(&e.prev_hash);
        prev = e.hash.clone();
        tree.push(merkle::leaf_hash(&e.hash));
        entries.push(e);
    }
    let size = tree.size();
    let checkpoint = Checkpoint::sign(ig, size, &tree.root(), NOW_MS);
    seeds.write("verify_proof", "checkpoint", serde_json::to_string_pretty(&checkpoint)?.as_bytes())?;
    // What a witness reads off the stream: the note, alone and with a witness's cosignature.
    seeds.write("verify_proof", "checkpoint-note", checkpoint.note.as_bytes())?;
    let cosigned = format!("{}{}", checkpoint.note, isp::checkpoint::cosign(witness, &checkpoint.note, (NOW_MS / 1000) as u64)?);
    seeds.write("verify_proof", "checkpoint-cosigned", cosigned.as_bytes())?;
    let prove = |e: &Entry| InclusionProof {
        entry: e.clone(),
        leaf_index: e.seq as u64 - 1,
        tree_size: size,
        path: merkle::inclusion_proof(&tree, e.seq as u64 - 1, size).iter().map(hex::encode).collect(),
        checkpoint: checkpoint.clone(),
    };
    let mut kinds_proved = std::collections::BTreeSet::new();
    for e in &entries {
        if kinds_proved.insert(e.entry_type.clone()) {
            let proof = prove(e);
            audit::checkpoints::verify_proof(&proof, directory)?;
            seeds.write("verify_proof", &format!("proof-{}", e.entry_type), serde_json::to_string_pretty(&proof)?.as_bytes())?;
        }
    }
    let about: Vec<InclusionProof> = entries.iter().filter(|e| e.subject_ref == subject_ref).take(4).map(prove).collect();
    let bundle = Bundle {
        partnership: directory.partnership.clone(),
        subject_ref: subject_ref.to_owned(),
        link_refs: Vec::new(),
        generated_at_ms: NOW_MS,
        checkpoint: checkpoint.clone(),
        entries: about,
        summary: "The ledger holds records about you.".into(),
    };
    audit::subject_access::verify(&bundle, directory)?;
    seeds.write("verify_proof", "subject-access-bundle", serde_json::to_string(&bundle)?.as_bytes())?;
    let first = size / 2;
    let consistency = json!({
        "first": first,
        "second": size,
        "first_root": hex::encode(merkle::root(&tree, first)),
        "second_root": hex::encode(tree.root()),
        "proof": merkle::consistency_proof(&tree, first, size).iter().map(hex::encode).collect::<Vec<_>>(),
    });
    seeds.write("verify_proof", "witness-consistency", serde_json::to_string_pretty(&consistency)?.as_bytes())?;
    Ok(())
}
