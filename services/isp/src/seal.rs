//! Sealing and opening envelopes, and signing events.
//!
//! Seal = decide -> minimise to the recipient role -> encode -> age-encrypt to the recipient
//! (except a content-free receipt, [`in_clear`]) -> sign the header (which carries the
//! ciphertext's digest).
//! Open = verify the signature against the directory -> check it is ours -> check the digest
//! -> re-decide under our policy -> decrypt -> decode -> check the body is the signed kind and
//! carries only the declared categories.

use std::{collections::BTreeSet, sync::Arc};

use ed25519_dalek::Signer;
use prost::Message;
use proto::v1::{AckStatus, ConsentTag, Envelope, Event, EventKind, Header, Payload, ReferralAck, RiskLevel, SignedEvent, payload::Body};
use sha2::{Digest, Sha256};

use crate::{
    AgencyKeys, Denial, Directory, IspError, Kind, OpenError, Policy, Role, Schema, consent, kind,
    policy::{Decision, Request},
    signature::check_signature_at,
};

/// Domain separation of envelope-header signatures from event signatures.
pub const ENVELOPE_CONTEXT: &[u8] = b"hub.v1.envelope\0";
/// Domain separation of signed-event signatures.
pub const EVENT_CONTEXT: &[u8] = b"hub.v1.event\0";

/// One agency's view of the protocol: its keys, the directory, the policy and the schema.
#[derive(Debug, Clone)]
pub struct Isp {
    pub keys: AgencyKeys,
    pub role: Role,
    pub directory: Arc<Directory>,
    pub policy: Arc<Policy>,
    pub schema: Arc<Schema>,
}

/// A disclosure an agency wants to make.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub recipient: String,
    pub kind: Kind,
    pub purpose: String,
    pub lawful_basis: String,
    pub consent: Option<ConsentTag>,
    pub risk: RiskLevel,
    pub subject_ref: String,
    pub case_ref: String,
    pub in_reply_to: String,
    pub payload: Payload,
    /// Why this is shared without consent, when the policy allows that: required then.
    pub justification: Option<Justification>,
}

/// The record of a decision to share without consent (DOMAIN.md: who decided, and why).
/// The officer's staff id and the rationale code travel in the signed clear header; the
/// rationale in words stays in the sender's database.
#[derive(Clone, Default)]
pub struct Justification {
    /// Staff id of the deciding officer (not a name).
    pub officer: String,
    /// A code from the policy's `[rationales]`.
    pub rationale_code: String,
    /// The reasoning, in words. Free text: never logged, never sent in clear.
    pub rationale: String,
}

impl std::fmt::Debug for Justification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Justification")
            .field("officer", &self.officer)
            .field("rationale_code", &self.rationale_code)
            .field("rationale", &format_args!("<{} chars>", self.rationale.chars().count()))
            .finish()
    }
}

/// A sealed envelope, ready for the outbox.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub header: Header,
    /// The encoded `Envelope`.
    pub envelope: Vec<u8>,
    pub decision: Decision,
    /// Categories the payload carried that the recipient's role may not receive.
    pub removed: BTreeSet<String>,
}

/// An envelope that passed every check.
#[derive(Debug, Clone)]
pub struct Opened {
    pub header: Header,
    pub payload: Payload,
    pub decision: Decision,
}

/// The kind a payload body is, from its oneof member number (which equals the kind).
/// The answer of [`Isp::preview`].
#[derive(Debug, Clone)]
pub struct Preview {
    /// The rule that would allow it, or the refusal (a near miss if sent).
    pub decision: Result<Decision, Denial>,
    /// Categories that would reach the recipient.
    pub flows: Vec<String>,
    /// Categories that would be removed before sealing.
    pub removed: Vec<String>,
}

pub fn body_kind(schema: &Schema, payload: &Payload) -> Option<Kind> {
    let dynamic = schema.to_dynamic(payload);
    let (field, _) = dynamic.fields().next()?;
    Kind::try_from(field.number() as i32).ok()
}

impl Isp {
    pub fn new(keys: AgencyKeys, directory: Arc<Directory>, policy: Arc<Policy>, schema: Arc<Schema>) -> Result<Isp, IspError> {
        let me = directory.require(&keys.agency)?;
        if me.signing_key != hex::encode(keys.signing.verifying_key().as_bytes()) {
            return Err(IspError::Invalid {
                what: format!("the keys of {}", keys.agency),
                detail: "the signing key does not match the directory".into(),
            });
        }
        Ok(Isp { role: me.role, keys, directory, policy, schema })
    }

    pub fn agency(&self) -> &str {
        &self.keys.agency
    }

    /// Decides, minimises, encrypts and signs one disclosure. A refusal is
    /// `IspError::Denied`: nothing is sealed, and the caller records a near miss with
    /// [`Isp::denial_event`].
    ///
    /// `record` is the verified consent record the disclosure's consent tag names (found by the
    /// caller under `recorded_by` and `consent_id`), or None when there is none: a claim of
    /// consent given is refused unless that record is given, in scope and unexpired
    /// ([`consent::check`]). A disclosure the policy allows only without consent must carry
    /// a [`Justification`] (`IspError::Unjustified` otherwise).
    pub fn seal(&self, out: &Outgoing, record: Option<&consent::Verified>) -> Result<Sealed, IspError> {
        check_outgoing(out).map_err(|e| IspError::Invalid { what: e.field.into(), detail: e.to_string() })?;
        // The agency holding the consent record travels in clear too: an agency of the directory.
        if out.consent.as_ref().is_some_and(|c| !c.recorded_by.is_empty() && self.directory.get(&c.recorded_by).is_none()) {
            return Err(IspError::Invalid { what: "consent.recorded_by".into(), detail: "not an agency of the partnership directory; the value is not repeated here".into() });
        }
        // Purpose and basis travel in clear too (and into a near miss): ids of the policy only.
        if !self.policy.purposes.contains_key(&out.purpose) {
            return Err(IspError::Invalid { what: "purpose".into(), detail: "not a purpose of the policy; the value is not repeated here".into() });
        }
        if !self.policy.lawful_bases.contains_key(&out.lawful_basis) {
            return Err(IspError::Invalid { what: "lawful_basis".into(), detail: "not a lawful basis of the policy; the value is not repeated here".into() });
        }
        let recipient = self.directory.require(&out.recipient)?;
        for agency in [recipient, self.directory.require(&self.keys.agency)?] {
            if !agency.is_active() {
                return Err(IspError::Inactive { agency: agency.id.clone(), status: agency.status() });
            }
        }
        let body = body_kind(&self.schema, &out.payload);
        if body != Some(out.kind) {
            return Err(IspError::BadPayload {
                kind: kind::name(out.kind),
                detail: match body {
                    Some(b) => format!("the body is {}", kind::name(b)),
                    None => "the payload has no body".into(),
                },
            });
        }
        let present = self.schema.present(&out.payload);
        let consent = out.consent.clone().unwrap_or_default();
        let decision = self.policy.decide(&self.request(out, recipient.role, &present)).map_err(IspError::Denied)?;
        consent::check(out.consent.as_ref(), record, self.consent_use(recipient.id.as_str(), recipient.role, &out.purpose, &out.subject_ref, crate::now_ms()))
            .map_err(IspError::Denied)?;
        let (officer, rationale_code) = match (&out.justification, decision.without_consent) {
            (_, false) => (String::new(), String::new()),
            (None, true) => {
                return Err(IspError::Unjustified(format!(
                    "rule {} allows this only without consent: give the deciding officer's staff id, a rationale code ({}) and the rationale",
                    decision.rule,
                    self.policy.rationales.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            (Some(j), true) => {
                self.check_justification(&j.officer, &j.rationale_code).map_err(IspError::Unjustified)?;
                if j.rationale.trim().is_empty() {
                    return Err(IspError::Unjustified("the rationale (why sharing without consent is necessary and proportionate) is empty".into()));
                }
                (j.officer.clone(), j.rationale_code.clone())
            }
        };
        let (payload, removed) = self.schema.minimise(&out.payload, &|c| self.policy.receivable(recipient.role, c));
        let categories = self.schema.present(&payload);
        let plaintext = payload.encode_to_vec();
        // Decided from the payload itself, never asked for: only a content-free receipt.
        let clear = in_clear(out.kind, &out.in_reply_to, &payload);
        let sealed_payload = if clear {
            plaintext
        } else {
            age::encrypt(&recipient.recipient()?, &plaintext).map_err(|e| IspError::Encrypt(e.to_string()))?
        };
        let subject_ref = self.header_subject_ref(recipient, &out.subject_ref)?;
        let header = Header {
            envelope_id: uuid::Uuid::now_v7().to_string(),
            sender: self.keys.agency.clone(),
            recipient: recipient.id.clone(),
            kind: out.kind as i32,
            purpose: out.purpose.clone(),
            lawful_basis: out.lawful_basis.clone(),
            consent: Some(consent),
            risk: out.risk as i32,
            subject_ref,
            case_ref: out.case_ref.clone(),
            data_categories: categories.into_iter().collect(),
            payload_digest: Sha256::digest(&sealed_payload).to_vec(),
            policy_version: decision.policy_version.clone(),
            policy_rule: decision.rule.clone(),
            created_at_ms: crate::now_ms(),
            signing_key_id: self.keys.signing_key_id(),
            recipient_key_id: if clear { String::new() } else { recipient.age_key_id() },
            in_reply_to: out.in_reply_to.clone(),
            shared_without_consent: decision.without_consent,
            without_consent_officer: officer,
            without_consent_rationale: rationale_code,
            payload_in_clear: clear,
        };
        // The recipient's own check of the risk, made first here: a risk nothing recorded
        // proves is a near miss, never a message the recipient has to refuse.
        crate::risk::check(&self.directory, &header, &payload, self.policy.receivable(recipient.role, "risk.dash")).map_err(|e| match e {
            OpenError::Denied(d) => IspError::Denied(d),
            other => IspError::Invalid { what: "DASH summary".into(), detail: other.to_string() },
        })?;
        let header_bytes = header.encode_to_vec();
        let signature = self.keys.signing.sign(&[ENVELOPE_CONTEXT, &header_bytes].concat());
        let envelope = Envelope { header: header_bytes, sealed_payload, signature: signature.to_bytes().to_vec() };
        Ok(Sealed { header, envelope: envelope.encode_to_vec(), decision, removed })
    }

    /// The policy's question for `out` to an agency of role `to`, carrying `present`.
    fn request<'a>(&self, out: &'a Outgoing, to: Role, present: &'a BTreeSet<String>) -> Request<'a> {
        Request {
            from: self.role,
            to,
            kind: out.kind,
            purpose: &out.purpose,
            lawful_basis: &out.lawful_basis,
            consent: out.consent.as_ref().map(|c| c.state()).unwrap_or_default(),
            risk: out.risk,
            categories: present,
        }
    }

    /// What [`Isp::seal`] would decide for `out`, without sealing anything: the console's
    /// preview before a send. Which categories of this payload would reach the recipient,
    /// which would be removed first, and which would refuse the whole send. The consent
    /// record and the justification are checked at the send itself, not here.
    pub fn preview(&self, out: &Outgoing) -> Result<Preview, IspError> {
        let recipient = self.directory.require(&out.recipient)?;
        let present = self.schema.present(&out.payload);
        Ok(match self.policy.decide(&self.request(out, recipient.role, &present)) {
            Ok(decision) => {
                let (_, removed) = self.schema.minimise(&out.payload, &|c| self.policy.receivable(recipient.role, c));
                let flows = present.iter().filter(|c| !removed.contains(*c)).cloned().collect();
                Preview { decision: Ok(decision), flows, removed: removed.into_iter().collect() }
            }
            Err(denial) => Preview { decision: Err(denial), flows: Vec::new(), removed: Vec::new() },
        })
    }

    /// The same envelope (id, sealed payload, every header field) signed again with the time
    /// it is put on the wire: what an outbox does with an envelope that waited (the broker
    /// away) long enough that a recipient would judge its claimed creation time too far from
    /// the broker's (`clock_skew`), or after this agency's signing key was rotated. Only this
    /// agency's own envelopes, whose signature verifies, are stamped again.
    pub fn restamp(&self, envelope: &[u8], now_ms: i64) -> Result<Vec<u8>, IspError> {
        let invalid = |detail: &str| IspError::Invalid { what: "queued envelope".into(), detail: detail.into() };
        let decoded = Envelope::decode(envelope).map_err(|_| invalid("does not decode"))?;
        let mut header = Header::decode(decoded.header.as_slice()).map_err(|_| invalid("its header does not decode"))?;
        if header.sender != self.keys.agency {
            return Err(invalid("not this agency's envelope"));
        }
        if header.payload_digest != Sha256::digest(&decoded.sealed_payload).to_vec() {
            return Err(invalid("its payload does not match its header"));
        }
        header.created_at_ms = now_ms;
        header.signing_key_id = self.keys.signing_key_id();
        let header_bytes = header.encode_to_vec();
        let signature = self.keys.signing.sign(&[ENVELOPE_CONTEXT, &header_bytes].concat());
        Ok(Envelope { header: header_bytes, sealed_payload: decoded.sealed_payload, signature: signature.to_bytes().to_vec() }.encode_to_vec())
    }

    /// The subject ref the clear header carries to `recipient`: the subject ref itself, or for
    /// an agency whose role the policy keeps out of matching (it holds no subject key), the
    /// link token that stands for it there ([`AgencyKeys::link_ref`]).
    pub fn header_subject_ref(&self, recipient: &crate::Agency, subject_ref: &str) -> Result<String, IspError> {
        if subject_ref.starts_with("s-") && !self.policy.holds_subject_key(recipient.role) {
            return self.keys.link_ref(&recipient.id, subject_ref);
        }
        Ok(subject_ref.to_owned())
    }

    /// The facts consent must cover for a disclosure to `recipient`.
    pub fn consent_use<'a>(&self, recipient: &'a str, role: Role, purpose: &'a str, subject_ref: &'a str, expiry_at_ms: i64) -> consent::Use<'a> {
        consent::Use { recipient, recipient_role: role, purpose, subject_ref, expiry_at_ms }
    }

    /// Whether an officer id and rationale code may stand for a decision to share without
    /// consent. The error names what is wrong, never the value given.
    pub fn check_justification(&self, officer: &str, rationale_code: &str) -> Result<(), String> {
        if !crate::clear::is_staff_id(officer) {
            return Err(format!("the deciding officer must be {}, not a name", crate::clear::STAFF_ID));
        }
        if !self.policy.rationales.contains_key(rationale_code) {
            return Err(format!(
                "the rationale code is not in the policy's [rationales] ({})",
                self.policy.rationales.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(())
    }

    /// Re-checks, just before publishing or on receipt, that the consent an envelope relies
    /// on still holds. `record` is what the consent bucket says now; `expiry_at_ms` the
    /// moment expiry is judged at. The recipient's role comes from the directory.
    pub fn recheck_consent(&self, header: &Header, record: Option<&consent::Verified>, expiry_at_ms: i64) -> Result<(), Denial> {
        let role = self.directory.get(&header.recipient).map(|a| a.role).unwrap_or(Role::Ig);
        // A header to an agency without the subject key carries a link token: the record's
        // subject is checked through its link where this agency can compute it (the sender);
        // the recipient, holding no key, cannot, and relies on the sender's check.
        let subject = match record {
            Some(v) if header.subject_ref.starts_with("l-") => match self.keys.link_ref(&header.recipient, &v.record().subject_ref) {
                Ok(link) if link == header.subject_ref => v.record().subject_ref.clone(),
                Ok(_) => header.subject_ref.clone(),
                Err(_) => v.record().subject_ref.clone(),
            },
            _ => header.subject_ref.clone(),
        };
        consent::check(header.consent.as_ref(), record, self.consent_use(&header.recipient, role, &header.purpose, &subject, expiry_at_ms))
    }

    /// The record of a sealed disclosure stopped before it was published (its consent was
    /// withdrawn while it waited in the outbox): a signed near miss naming the envelope.
    pub fn stopped_event(&self, header: &Header, denial: &Denial) -> (Event, Vec<u8>) {
        let event = Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            agency: self.keys.agency.clone(),
            kind: EventKind::SendDenied as i32,
            occurred_at_ms: crate::now_ms(),
            policy_version: self.policy.version.clone(),
            rule: denial.rule.clone(),
            reason: denial.reason.to_owned(),
            envelope_id: header.envelope_id.clone(),
            counterpart: header.recipient.clone(),
            message_kind: header.kind,
            purpose: header.purpose.clone(),
            lawful_basis: header.lawful_basis.clone(),
            consent: header.consent.clone(),
            risk: header.risk,
            subject_ref: header.subject_ref.clone(),
            case_ref: header.case_ref.clone(),
            data_categories: header.data_categories.clone(),
            stream_sequence: 0,
            forbidden_categories: Vec::new(),
            staff_id: String::new(),
        };
        let bytes = self.sign_event(&event);
        (event, bytes)
    }

    /// The near-miss record of a refused send. It holds only the clear facts of the attempt.
    pub fn denial_event(&self, out: &Outgoing, denial: &Denial) -> (Event, Vec<u8>) {
        let present = self.schema.present(&out.payload);
        let event = Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            agency: self.keys.agency.clone(),
            kind: EventKind::SendDenied as i32,
            occurred_at_ms: crate::now_ms(),
            policy_version: self.policy.version.clone(),
            rule: denial.rule.clone(),
            reason: denial.reason.to_owned(),
            envelope_id: String::new(),
            counterpart: out.recipient.clone(),
            message_kind: out.kind as i32,
            purpose: out.purpose.clone(),
            lawful_basis: out.lawful_basis.clone(),
            consent: out.consent.clone(),
            risk: out.risk as i32,
            subject_ref: out.subject_ref.clone(),
            case_ref: out.case_ref.clone(),
            data_categories: present.into_iter().collect(),
            stream_sequence: 0,
            forbidden_categories: denial.forbidden.clone(),
            staff_id: String::new(),
        };
        let bytes = self.sign_event(&event);
        (event, bytes)
    }

    /// The record of an envelope refused on receipt (quarantined). `header` is what could be
    /// read of it, if anything.
    pub fn rejection_event(&self, header: Option<&Header>, error: &OpenError, stream_sequence: u64) -> (Event, Vec<u8>) {
        let h = header.cloned().unwrap_or_default();
        let event = Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            agency: self.keys.agency.clone(),
            kind: if error.is_violation() { EventKind::Violation } else { EventKind::ReceiveRejected } as i32,
            occurred_at_ms: crate::now_ms(),
            policy_version: self.policy.version.clone(),
            rule: error.rule(),
            reason: error.code().to_owned(),
            envelope_id: h.envelope_id,
            counterpart: h.sender,
            message_kind: h.kind,
            purpose: h.purpose,
            lawful_basis: h.lawful_basis,
            consent: h.consent,
            risk: h.risk,
            subject_ref: h.subject_ref,
            case_ref: h.case_ref,
            data_categories: h.data_categories,
            stream_sequence,
            forbidden_categories: match error {
                OpenError::UndeclaredCategories(c) => c.clone(),
                OpenError::Denied(d) => d.forbidden.clone(),
                _ => Vec::new(),
            },
            staff_id: String::new(),
        };
        let bytes = self.sign_event(&event);
        (event, bytes)
    }

    /// The ledger's record of a consent revision ([`consent::event`]), signed by this agency.
    pub fn consent_event(&self, record: &consent::ConsentRecord) -> (Event, Vec<u8>) {
        let event = consent::event(&self.keys.agency, &self.policy.version, record);
        let bytes = self.sign_event(&event);
        (event, bytes)
    }

    /// Signs a revision of one of this agency's own consent records, after checking it
    /// ([`consent::sign`]).
    pub fn sign_consent(&self, record: &consent::ConsentRecord) -> Result<Vec<u8>, IspError> {
        consent::sign(&self.keys, &self.policy, &self.directory, record)
    }

    /// Encodes and signs an event as a `SignedEvent`.
    pub fn sign_event(&self, event: &Event) -> Vec<u8> {
        sign_event_as(&self.keys, event)
    }

    /// Verifies, re-decides and opens an envelope addressed to this agency. On refusal it
    /// returns the header when one could be read and verified, for the rejection record.
    ///
    /// A retired signing key is judged at the creation time the header claims: use this for
    /// an envelope received and checked already (read back from the inbox), and
    /// [`Isp::open_at`] for one arriving from the broker.
    pub fn open(&self, bytes: &[u8]) -> Result<Opened, (Option<Header>, OpenError)> {
        let (header, envelope) = verify_envelope(&self.directory, bytes).map_err(|e| (None, e))?;
        // Read back, it is judged by the rules it arrived under: a referral received before
        // risk had to be proved (SPEC.md section 6.5) still opens.
        self.open_verified(header, envelope, false)
    }

    /// As [`Isp::open`], for an envelope the broker took in at `broker_ms` (its own clock, not
    /// the sender's): a retired signing key is judged at that time, not at the creation time
    /// the header claims (which the holder of a stolen retired key could backdate), and a
    /// header whose claimed creation time is more than `max_skew_ms` from it is refused
    /// ([`OpenError::ClockSkew`]) once its signature verifies.
    pub fn open_at(&self, bytes: &[u8], broker_ms: i64, max_skew_ms: i64) -> Result<Opened, (Option<Header>, OpenError)> {
        let (header, envelope) = verify_envelope_at(&self.directory, bytes, broker_ms).map_err(|e| (None, e))?;
        let skew_ms = header.created_at_ms.saturating_sub(broker_ms);
        if skew_ms.unsigned_abs() > max_skew_ms.unsigned_abs() {
            let error = OpenError::ClockSkew { skew_secs: skew_ms / 1000, window_secs: max_skew_ms / 1000 };
            return Err((Some(header), error));
        }
        self.open_verified(header, envelope, true)
    }

    /// The checks of [`Isp::open`] after the signature and digest; `arriving`: also the
    /// checks an envelope meets when it arrives (its risk proved).
    fn open_verified(&self, header: Header, envelope: Envelope, arriving: bool) -> Result<Opened, (Option<Header>, OpenError)> {
        let fail = |e: OpenError| (Some(header.clone()), e);
        if header.recipient != self.keys.agency {
            return Err(fail(OpenError::NotAddressedToUs(header.recipient.clone())));
        }
        let own_key = |i: &age::x25519::Identity| crate::directory::key_id("age", i.to_public().to_string().as_bytes()) == header.recipient_key_id;
        if !header.payload_in_clear && !self.keys.age_identities().any(own_key) {
            return Err(fail(OpenError::UnknownRecipientKey));
        }
        let sender = self.directory.get(&header.sender).expect("verify_envelope checked the sender");
        let header_kind = Kind::try_from(header.kind).unwrap_or(Kind::Unspecified);
        let declared: BTreeSet<String> = header.data_categories.iter().cloned().collect();
        let undeclarable: Vec<String> =
            declared.iter().filter(|c| !self.policy.receivable(self.role, c)).cloned().collect();
        let decision = self
            .policy
            .decide(&Request {
                from: sender.role,
                to: self.role,
                kind: header_kind,
                purpose: &header.purpose,
                lawful_basis: &header.lawful_basis,
                consent: header.consent.clone().unwrap_or_default().state(),
                risk: RiskLevel::try_from(header.risk).unwrap_or(RiskLevel::Unspecified),
                categories: &declared,
            })
            .map_err(|d| fail(OpenError::Denied(d)))?;
        if header.shared_without_consent {
            self.check_justification(&header.without_consent_officer, &header.without_consent_rationale).map_err(|detail| {
                fail(OpenError::Denied(Denial { rule: decision.rule.clone(), reason: "without_consent_unjustified", detail, forbidden: Vec::new() }))
            })?;
        }
        if !undeclarable.is_empty() {
            return Err(fail(OpenError::Denied(Denial {
                rule: format!("roles.{}.receives", self.role),
                reason: "not_receivable",
                detail: format!("a {} agency may not receive {}", self.role, undeclarable.join(", ")),
                forbidden: undeclarable,
            })));
        }
        let plaintext = if header.payload_in_clear {
            envelope.sealed_payload
        } else {
            decrypt(&self.keys, &envelope.sealed_payload).map_err(|e| fail(OpenError::Decrypt(e)))?
        };
        let payload = check_payload(&self.schema, header_kind, &declared, &plaintext).map_err(fail)?;
        // Sent in clear, it must be exactly a content-free receipt's bytes: not one more
        // field, which a decoder would drop but the broker has seen.
        if header.payload_in_clear && !(in_clear(header_kind, &header.in_reply_to, &payload) && payload.encode_to_vec() == plaintext) {
            return Err(fail(OpenError::ContentInClear));
        }
        if arriving {
            crate::risk::check(&self.directory, &header, &payload, self.policy.receivable(self.role, "risk.dash")).map_err(fail)?;
        }
        Ok(Opened { header, payload, decision })
    }
}

/// Whether a payload travels signed but unencrypted (SPEC.md 6.4): a content-free receipt, a
/// `referral.ack` saying only that envelope `in_reply_to` was received or opened, by nobody
/// named. Its encoding is then 42 fixed bytes but for the id and the status; everything else,
/// an `opened` receipt naming its reader included, is sealed.
pub fn in_clear(kind: Kind, in_reply_to: &str, payload: &Payload) -> bool {
    let content_free = |status: AckStatus| Payload {
        body: Some(Body::ReferralAck(ReferralAck { envelope_id: in_reply_to.to_owned(), status: status as i32, ..Default::default() })),
    };
    kind == Kind::ReferralAck
        && crate::clear::is_envelope_id(in_reply_to)
        && [AckStatus::Received, AckStatus::Opened].into_iter().any(|status| *payload == content_free(status))
}

/// The last step of [`Isp::open`], on the decrypted bytes: they decode as a `Payload` whose
/// body is the kind the signed header names and which carries only the categories the header
/// declared. A partner whose signature is valid controls these bytes entirely.
pub fn check_payload(schema: &Schema, header_kind: Kind, declared: &BTreeSet<String>, plaintext: &[u8]) -> Result<Payload, OpenError> {
    let payload = Payload::decode(plaintext).map_err(|_| OpenError::MalformedPayload(kind::name(header_kind)))?;
    let body = body_kind(schema, &payload).unwrap_or(Kind::Unspecified);
    if body != header_kind {
        return Err(OpenError::KindMismatch { header: kind::name(header_kind), body: kind::name(body) });
    }
    let undeclared: Vec<String> = schema.present(&payload).difference(declared).cloned().collect();
    if !undeclared.is_empty() {
        return Err(OpenError::UndeclaredCategories(undeclared));
    }
    Ok(payload)
}

/// Decrypts with the agency's current identity or any it rotated away from.
///
/// The header is read through `Decryptor::new_buffered` (a byte slice is a `BufRead`): age's
/// unbuffered reader grows its buffer by what the parser says it lacks and parses again from
/// the start each time, which cost as much CPU as the X25519 operation itself (`perf` on the
/// IDVA in `hub bench`); the buffered one reads the header a line at a time.
pub(crate) fn decrypt(keys: &AgencyKeys, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let decryptor = age::Decryptor::new_buffered(ciphertext).map_err(|e| e.to_string())?;
    let mut reader = decryptor.decrypt(keys.age_identities().map(|i| i as &dyn age::Identity)).map_err(|e| e.to_string())?;
    // The plaintext is shorter than the ciphertext: one allocation.
    let mut plaintext = Vec::with_capacity(ciphertext.len());
    reader.read_to_end(&mut plaintext).map_err(|e| e.to_string())?;
    Ok(plaintext)
}

/// Decodes an envelope and verifies its signature and payload digest against the directory,
/// without decrypting: what the audit service and the recipient both check first.
pub fn verify_envelope(directory: &Directory, bytes: &[u8]) -> Result<(Header, Envelope), OpenError> {
    verify_envelope_judged(directory, bytes, None)
}

/// As [`verify_envelope`], a retired signing key judged at `at_ms` (the broker's time the
/// envelope was taken in) instead of the creation time the header claims.
pub fn verify_envelope_at(directory: &Directory, bytes: &[u8], at_ms: i64) -> Result<(Header, Envelope), OpenError> {
    verify_envelope_judged(directory, bytes, Some(at_ms))
}

fn verify_envelope_judged(directory: &Directory, bytes: &[u8], at_ms: Option<i64>) -> Result<(Header, Envelope), OpenError> {
    let envelope = Envelope::decode(bytes).map_err(|_| OpenError::Malformed("not a hub.v1.Envelope".into()))?;
    let header = Header::decode(envelope.header.as_slice()).map_err(|_| OpenError::Malformed("the header is not a hub.v1.Header".into()))?;
    if header.envelope_id.is_empty() || header.sender.is_empty() || header.recipient.is_empty() {
        return Err(OpenError::Malformed("the header lacks an envelope id, sender or recipient".into()));
    }
    let sender = directory.get(&header.sender).ok_or_else(|| OpenError::UnknownSender(crate::clear::shown(&header.sender, crate::clear::is_agency_id)))?;
    check_signature_at(sender, &header.signing_key_id, at_ms.unwrap_or(header.created_at_ms), ENVELOPE_CONTEXT, &envelope.header, &envelope.signature)?;
    if Sha256::digest(&envelope.sealed_payload).as_slice() != header.payload_digest.as_slice() {
        return Err(OpenError::PayloadDigestMismatch);
    }
    check_header(&header).map_err(|e| OpenError::BadClearField(e.field))?;
    if header.consent.as_ref().is_some_and(|c| !c.recorded_by.is_empty() && directory.get(&c.recorded_by).is_none()) {
        return Err(OpenError::BadClearField("consent.recorded_by"));
    }
    Ok((header, envelope))
}

/// Every clear field of a header is of its grammar ([`crate::clear`]).
pub fn check_header(h: &Header) -> Result<(), crate::clear::ClearFieldError> {
    use crate::clear::*;
    required("envelope_id", &h.envelope_id, is_envelope_id, ENVELOPE_ID)?;
    required("sender", &h.sender, is_agency_id, AGENCY_ID)?;
    required("recipient", &h.recipient, is_agency_id, AGENCY_ID)?;
    required("signing_key_id", &h.signing_key_id, is_key_id, KEY_ID)?;
    // Empty exactly when the payload travels in clear: it was sealed to no key.
    if h.payload_in_clear {
        if !h.recipient_key_id.is_empty() {
            return Err(ClearFieldError { field: "recipient_key_id", grammar: "empty: a payload in clear is sealed to no key" });
        }
    } else {
        required("recipient_key_id", &h.recipient_key_id, is_key_id, KEY_ID)?;
    }
    required("purpose", &h.purpose, is_token, TOKEN)?;
    required("lawful_basis", &h.lawful_basis, is_token, TOKEN)?;
    required("policy_version", &h.policy_version, is_token, TOKEN)?;
    required("policy_rule", &h.policy_rule, is_token, TOKEN)?;
    optional("without_consent_rationale", &h.without_consent_rationale, is_token, TOKEN)?;
    if h.data_categories.iter().any(|c| !is_token(c)) {
        return Err(ClearFieldError { field: "data_categories", grammar: TOKEN });
    }
    optional("subject_ref", &h.subject_ref, is_subject_ref, SUBJECT_REF)?;
    optional("case_ref", &h.case_ref, is_case_ref, CASE_REF)?;
    optional("in_reply_to", &h.in_reply_to, is_envelope_id, ENVELOPE_ID)?;
    if let Some(c) = &h.consent {
        optional("consent.id", &c.consent_id, is_consent_id, CONSENT_ID)?;
        optional("consent.recorded_by", &c.recorded_by, is_agency_id, AGENCY_ID)?;
    }
    optional("without_consent_officer", &h.without_consent_officer, is_staff_id, STAFF_ID)
}

/// Every clear field of a send is of its grammar; checked again here whatever the caller
/// checked, since these fields go into the signed header in clear.
pub fn check_outgoing(out: &Outgoing) -> Result<(), crate::clear::ClearFieldError> {
    use crate::clear::*;
    optional("subject_ref", &out.subject_ref, is_subject_ref, SUBJECT_REF)?;
    optional("case_ref", &out.case_ref, is_case_ref, CASE_REF)?;
    optional("in_reply_to", &out.in_reply_to, is_envelope_id, ENVELOPE_ID)?;
    if let Some(c) = &out.consent {
        optional("consent.id", &c.consent_id, is_consent_id, CONSENT_ID)?;
    }
    Ok(())
}

/// Verifies a signed header on its own (the payload gone, as the ledger keeps it).
pub fn verify_header(directory: &Directory, header_bytes: &[u8], signature: &[u8]) -> Result<Header, OpenError> {
    let header = Header::decode(header_bytes).map_err(|_| OpenError::Malformed("the header is not a hub.v1.Header".into()))?;
    let sender = directory.get(&header.sender).ok_or_else(|| OpenError::UnknownSender(crate::clear::shown(&header.sender, crate::clear::is_agency_id)))?;
    check_signature_at(sender, &header.signing_key_id, header.created_at_ms, ENVELOPE_CONTEXT, header_bytes, signature)?;
    Ok(header)
}

/// Decodes a signed event and verifies it was signed by the agency it names.
/// Encodes and signs an event as a `SignedEvent` with an agency's keys (the audit service
/// signs its own access records with the IG office's).
pub fn sign_event_as(keys: &crate::AgencyKeys, event: &Event) -> Vec<u8> {
    let event_bytes = event.encode_to_vec();
    let signature = keys.signing.sign(&[EVENT_CONTEXT, &event_bytes].concat());
    SignedEvent { event: event_bytes, signature: signature.to_bytes().to_vec(), signing_key_id: keys.signing_key_id() }.encode_to_vec()
}

pub fn verify_event(directory: &Directory, bytes: &[u8]) -> Result<Event, OpenError> {
    let signed = SignedEvent::decode(bytes).map_err(|_| OpenError::Malformed("not a hub.v1.SignedEvent".into()))?;
    let event = Event::decode(signed.event.as_slice()).map_err(|_| OpenError::Malformed("not a hub.v1.Event".into()))?;
    let agency = directory.get(&event.agency).ok_or_else(|| OpenError::UnknownSender(crate::clear::shown(&event.agency, crate::clear::is_agency_id)))?;
    check_signature_at(agency, &signed.signing_key_id, event.occurred_at_ms, EVENT_CONTEXT, &signed.event, &signed.signature)?;
    check_event(&event).map_err(|e| OpenError::BadClearField(e.field))?;
    Ok(event)
}

/// Every clear field of an event is of its grammar ([`crate::clear`]), as a header's are: an
/// agency's signature does not make its free text fit for the ledger.
pub fn check_event(e: &Event) -> Result<(), crate::clear::ClearFieldError> {
    use crate::clear::*;
    required("event_id", &e.event_id, is_envelope_id, ENVELOPE_ID)?;
    optional("counterpart", &e.counterpart, is_agency_id, AGENCY_ID)?;
    for (field, value) in [("policy_version", &e.policy_version), ("reason", &e.reason), ("purpose", &e.purpose), ("lawful_basis", &e.lawful_basis)] {
        optional(field, value, is_token, TOKEN)?;
    }
    // The rule that decided, or for an access the route.
    if !(e.rule.is_empty() || is_token(&e.rule) || is_route(&e.rule)) {
        return Err(ClearFieldError { field: "rule", grammar: TOKEN });
    }
    // The envelope concerned, or for an access the consent record a route names.
    optional("envelope_id", &e.envelope_id, is_consent_id, CONSENT_ID)?;
    optional("subject_ref", &e.subject_ref, is_subject_ref, SUBJECT_REF)?;
    let consent_changed = e.kind == proto::v1::EventKind::ConsentChanged as i32;
    optional("case_ref", &e.case_ref, if consent_changed { is_revision } else { is_case_ref }, CASE_REF)?;
    if let Some(c) = &e.consent {
        optional("consent.id", &c.consent_id, is_consent_id, CONSENT_ID)?;
        optional("consent.recorded_by", &c.recorded_by, is_agency_id, AGENCY_ID)?;
    }
    if e.data_categories.iter().chain(&e.forbidden_categories).any(|c| !is_token(c)) {
        return Err(ClearFieldError { field: "data_categories", grammar: TOKEN });
    }
    optional("staff_id", &e.staff_id, is_staff_id, STAFF_ID)
}

#[cfg(test)]
mod tests;
