//! Consent records: what a survivor agreed to, kept as partnership-wide state and owned by
//! the agency that took consent.
//!
//! A record says given / refused / not-sought (with a reason code) / withdrawn / expired, to
//! whom (recipient roles or agencies) and for what (purposes), who recorded it (a staff id),
//! when, and until when. It holds the pseudonymous subject ref and codes only: never a name
//! or free text about the survivor, because every agency (and the broker) can read it.
//!
//! Each revision is signed by the owning agency ([`sign`], which [`crate::Isp::sign_consent`]
//! calls) over the exact JSON bytes of the record. A reader accepts a value only if the owner
//! named by the key signed it and the record names that same owner and id ([`verify`]); the
//! current state is the verified revision with the highest signed revision number, and a
//! withdrawal is final ([`current`]). So a value written by anyone else is ignored, and an
//! old "given" replayed over a withdrawal loses to it. When nothing verifies, there is no
//! consent ([`check`] refuses): a record that cannot be trusted is treated as absent, never
//! as given.
//!
//! Below [`crate::seal`]: this module imports the clear grammars, the codes, the directory,
//! the policy and the signature check, never the sealing that uses it.

use ed25519_dalek::Signer;
use proto::v1::{ConsentState, ConsentTag};
use serde::{Deserialize, Serialize};

use crate::{AgencyKeys, Denial, Directory, IspError, Policy, Role};

/// Domain separation of consent-record signatures from envelope and event signatures.
pub const CONSENT_CONTEXT: &[u8] = b"hub.v1.consent\0";

/// The rule name consent refusals carry (they come from the consent record, not a policy rule).
pub const RULE: &str = "consent-record";

/// The state of a consent record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Given,
    Refused,
    NotSought,
    Withdrawn,
    Expired,
}

impl State {
    pub fn to_proto(self) -> ConsentState {
        match self {
            State::Given => ConsentState::Given,
            State::Refused => ConsentState::Refused,
            State::NotSought => ConsentState::NotSought,
            State::Withdrawn => ConsentState::Withdrawn,
            State::Expired => ConsentState::Expired,
        }
    }

    pub fn name(self) -> &'static str {
        crate::codes::consent_name(self.to_proto())
    }

    pub fn parse(name: &str) -> Option<State> {
        [State::Given, State::Refused, State::NotSought, State::Withdrawn, State::Expired].into_iter().find(|s| s.name() == name)
    }
}

/// To whom and for what consent was given. A recipient is in scope if its role or its agency
/// id is listed; the purpose must be listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub agencies: Vec<String>,
    #[serde(default)]
    pub purposes: Vec<String>,
}

/// One revision of a consent record, exactly as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRecord {
    pub consent_id: String,
    /// The agency that took consent and owns the record.
    pub agency: String,
    /// 1 when recorded, one more with every change. Signed, so a replayed older revision loses.
    pub revision: u64,
    pub subject_ref: String,
    pub state: State,
    /// For not-sought or refused: a code from the policy's `[rationales]` (why not asked).
    /// For a withdrawal: optionally a code too. Never free text.
    #[serde(default)]
    pub reason: String,
    pub scope: Scope,
    /// The staff id of who recorded this revision (a member of the owner's staff, not a
    /// survivor detail).
    pub recorded_by: String,
    pub recorded_at_ms: i64,
    /// When the first revision was recorded.
    pub created_at_ms: i64,
    /// After this moment the consent no longer covers a disclosure.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

impl ConsentRecord {
    /// The state as of `at_ms`: a given consent past its expiry is expired.
    pub fn state_at(&self, at_ms: i64) -> State {
        match (self.state, self.expires_at_ms) {
            (State::Given, Some(expiry)) if at_ms >= expiry => State::Expired,
            (state, _) => state,
        }
    }

    /// The key of the record in the partnership's consent bucket.
    pub fn key(&self) -> String {
        key(&self.agency, &self.consent_id)
    }

    /// Everything wrong with a record before it is signed, each as a sentence naming the field.
    /// Values are never echoed: a misplaced name must not end up in an error message.
    pub fn problems(&self, policy: &Policy, directory: &Directory) -> Vec<String> {
        let mut problems = Vec::new();
        if !crate::clear::is_consent_id(&self.consent_id) {
            problems.push(format!("consent_id must be {}", crate::clear::CONSENT_ID));
        }
        if !crate::clear::is_staff_id(&self.recorded_by) {
            problems.push(format!("recorded_by must be {}, not a name", crate::clear::STAFF_ID));
        }
        if !valid_subject_ref(&self.subject_ref) {
            problems.push("the subject must be given as subject {full_name, date_of_birth} or a subject_ref (s- and 32 lowercase hex digits)".into());
        }
        if self.revision == 0 {
            problems.push("revision starts at 1".into());
        }
        match self.state {
            State::Given => {
                if self.scope.roles.is_empty() && self.scope.agencies.is_empty() {
                    problems.push("scope must name the recipient roles or agencies consent was given for".into());
                }
                if self.scope.purposes.is_empty() {
                    problems.push("scope.purposes must name the purposes consent was given for".into());
                }
            }
            State::NotSought if self.reason.is_empty() => {
                problems.push("not-sought needs a reason code from the policy's [rationales]".into());
            }
            _ => {}
        }
        if !self.reason.is_empty() && !policy.rationales.contains_key(&self.reason) {
            problems.push(format!("the reason is not a code in the policy's [rationales] ({})", codes(policy)));
        }
        for p in &self.scope.purposes {
            if !policy.purposes.contains_key(p) {
                problems.push(format!("scope.purposes: unknown purpose (one of {})", policy.purposes.keys().cloned().collect::<Vec<_>>().join(", ")));
            }
        }
        for a in &self.scope.agencies {
            if directory.get(a).is_none() {
                problems.push("scope.agencies: an agency is not in the partnership directory".into());
            }
        }
        if self.state == State::Given && self.expires_at_ms.is_some_and(|expiry| expiry <= self.recorded_at_ms) {
            problems.push("expires_at is not after the time of recording".into());
        }
        problems
    }
}

fn codes(policy: &Policy) -> String {
    policy.rationales.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// A subject ref as [`crate::AgencyKeys::subject_ref`] makes them: `s-` and 32 lowercase hex
/// digits (a consent record is about a person, never a link token).
pub fn valid_subject_ref(s: &str) -> bool {
    s.starts_with("s-") && crate::clear::is_subject_ref(s)
}

/// `{agency}.{consent_id}`.
pub fn key(agency: &str, consent_id: &str) -> String {
    format!("{agency}.{consent_id}")
}

/// What is stored in the bucket: the record's JSON as signed, and the signature over it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedConsent {
    pub record: String,
    /// ed25519 over [`CONSENT_CONTEXT`] || record, hex.
    pub signature: String,
    pub signing_key_id: String,
}

/// A record whose signature verified against its owner's key. Only [`verify`] makes one, so
/// [`check`] and [`crate::Isp::seal`] cannot be handed a record nobody checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified(ConsentRecord);

impl Verified {
    pub fn record(&self) -> &ConsentRecord {
        &self.0
    }
}

/// Why a stored value is not a record of its key's owner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a signed consent record")]
    Malformed,
    #[error("the owner {0:?} is not in the partnership directory")]
    UnknownOwner(String),
    #[error("not signed by the owner {0:?}: written by someone else or altered")]
    NotSignedByOwner(String),
    #[error("the signed record names another owner or id than its key")]
    WrongKey,
}

/// The ledger's record of a consent revision, to be signed by `agency` as an event
/// ([`crate::Isp::consent_event`]): the record's clear facts (id, state, reason code, subject
/// ref, who recorded it), never its scope details.
pub fn event(agency: &str, policy_version: &str, record: &ConsentRecord) -> proto::v1::Event {
    proto::v1::Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        agency: agency.to_owned(),
        kind: proto::v1::EventKind::ConsentChanged as i32,
        occurred_at_ms: record.recorded_at_ms,
        policy_version: policy_version.to_owned(),
        rule: "consent-record".into(),
        reason: record.reason.clone(),
        consent: Some(proto::v1::ConsentTag {
            consent_id: record.consent_id.clone(),
            state: record.state.to_proto() as i32,
            recorded_by: record.agency.clone(),
        }),
        subject_ref: record.subject_ref.clone(),
        case_ref: format!("revision-{}", record.revision),
        message_kind: proto::v1::Kind::ConsentChanged as i32,
        ..Default::default()
    }
}

/// Signs a revision of one of `keys`' agency's own consent records, after checking it
/// against the policy and the directory ([`crate::Isp::sign_consent`]).
pub fn sign(keys: &AgencyKeys, policy: &Policy, directory: &Directory, record: &ConsentRecord) -> Result<Vec<u8>, IspError> {
    if record.agency != keys.agency {
        return Err(IspError::Invalid { what: "the consent record".into(), detail: "an agency signs only its own consent records".into() });
    }
    let problems = record.problems(policy, directory);
    if !problems.is_empty() {
        return Err(IspError::Invalid { what: "the consent record".into(), detail: problems.join("; ") });
    }
    let text = serde_json::to_string(record).expect("a consent record serialises");
    let signature = keys.signing.sign(&[CONSENT_CONTEXT, text.as_bytes()].concat());
    let signed = SignedConsent { record: text, signature: hex::encode(signature.to_bytes()), signing_key_id: keys.signing_key_id() };
    Ok(serde_json::to_vec(&signed).expect("a signed consent serialises"))
}

/// Verifies one stored value of key `{owner}.{consent_id}`: signed by `owner`'s key in the
/// directory, and naming that owner and id.
pub fn verify(directory: &Directory, owner: &str, consent_id: &str, bytes: &[u8]) -> Result<Verified, RecordError> {
    let signed: SignedConsent = serde_json::from_slice(bytes).map_err(|_| RecordError::Malformed)?;
    let agency = directory.get(owner).ok_or_else(|| RecordError::UnknownOwner(owner.to_owned()))?;
    let not_owner = || RecordError::NotSignedByOwner(owner.to_owned());
    // The record says when it was made; a key the owner has since retired still vouches for
    // what it signed before its retirement, and for nothing after.
    let record: ConsentRecord = serde_json::from_str(&signed.record).map_err(|_| RecordError::Malformed)?;
    let signature = hex::decode(&signed.signature).map_err(|_| not_owner())?;
    crate::signature::check_signature_at(agency, &signed.signing_key_id, record.recorded_at_ms, CONSENT_CONTEXT, signed.record.as_bytes(), &signature)
        .map_err(|_| not_owner())?;
    if record.agency != owner || record.consent_id != consent_id {
        return Err(RecordError::WrongKey);
    }
    Ok(Verified(record))
}

/// The current record from every stored value of one key (oldest first, as the bucket's
/// history gives them): the verified revision with the highest revision number; a verified
/// withdrawal wins over any other revision. Also returns how many values did not verify
/// (someone other than the owner wrote to the key: worth a warning).
pub fn current<'a>(directory: &Directory, owner: &str, consent_id: &str, values: impl IntoIterator<Item = &'a [u8]>) -> (Option<Verified>, usize) {
    let (best, rejected) = current_index(directory, owner, consent_id, values);
    (best.map(|(_, v)| v), rejected)
}

/// As [`current`], with the position among `values` of the one it picked (so a reader can
/// keep those signed bytes as what it has seen).
pub fn current_index<'a>(directory: &Directory, owner: &str, consent_id: &str, values: impl IntoIterator<Item = &'a [u8]>) -> (Option<(usize, Verified)>, usize) {
    let mut best: Option<(usize, Verified)> = None;
    let mut rejected = 0;
    for (i, value) in values.into_iter().enumerate() {
        match verify(directory, owner, consent_id, value) {
            Ok(v) => {
                let better = match &best {
                    None => true,
                    Some((_, b)) if b.0.state == State::Withdrawn => false,
                    Some((_, b)) => v.0.state == State::Withdrawn || v.0.revision > b.0.revision,
                };
                if better {
                    best = Some((i, v));
                }
            }
            Err(_) => rejected += 1,
        }
    }
    (best, rejected)
}

/// The facts of a disclosure that consent must cover.
#[derive(Debug, Clone, Copy)]
pub struct Use<'a> {
    pub recipient: &'a str,
    pub recipient_role: Role,
    pub purpose: &'a str,
    pub subject_ref: &'a str,
    /// The moment to test expiry at: now when sending, the envelope's creation on receipt.
    pub expiry_at_ms: i64,
}

/// Whether the consent a disclosure claims is backed by its record.
///
/// A claim of consent given needs a verified record (`record`, found under the tag's
/// `recorded_by` and `consent_id`) that is given now, not expired at `use.expiry_at_ms`,
/// and whose scope covers the recipient and the purpose. Any claim that names a record must
/// be about the record's subject, and any other claimed state must match it (a disclosure cannot say "refused" when
/// the record says given, or the ledger would lie). A tag that claims nothing (no id, not
/// given) is left to the policy: sharing without consent has its own conditions.
pub fn check(tag: Option<&ConsentTag>, record: Option<&Verified>, use_: Use<'_>) -> Result<(), Denial> {
    let Some(tag) = tag else { return Ok(()) };
    let deny = |reason: &'static str, detail: String| Denial { rule: RULE.into(), reason, detail, forbidden: Vec::new() };
    let claimed = tag.state();
    if tag.consent_id.is_empty() {
        if claimed == ConsentState::Given {
            return Err(deny("consent_unknown", "consent given must name its consent record (consent.id)".into()));
        }
        return Ok(());
    }
    let Some(Verified(r)) = record else {
        return Err(deny(
            "consent_unknown",
            format!("no consent record {} recorded by {} that verifies; record consent first", tag.consent_id, tag.recorded_by),
        ));
    };
    // Whatever it claims, a disclosure naming a record must be about that record's subject:
    // "refused" or "not sought" from someone else's record would put a false reason on the
    // ledger for this person.
    if r.subject_ref != use_.subject_ref {
        return Err(deny("consent_subject_mismatch", format!("consent {} is about another subject", r.consent_id)));
    }
    let state = r.state_at(use_.expiry_at_ms);
    if claimed != ConsentState::Given {
        if state.to_proto() != claimed {
            return Err(deny(
                "consent_state_mismatch",
                format!("the disclosure says consent is {}, but record {} says {}", crate::codes::consent_name(claimed), r.consent_id, state.name()),
            ));
        }
        return Ok(());
    }
    match state {
        State::Given => {}
        State::Withdrawn => return Err(deny("consent_withdrawn", format!("consent {} was withdrawn", r.consent_id))),
        State::Expired => return Err(deny("consent_expired", format!("consent {} has expired", r.consent_id))),
        State::Refused | State::NotSought => {
            return Err(deny("consent_not_given", format!("consent record {} says {}", r.consent_id, state.name())));
        }
    }
    let recipient_covered = r.scope.roles.contains(&use_.recipient_role) || r.scope.agencies.iter().any(|a| a == use_.recipient);
    if !recipient_covered {
        return Err(deny(
            "consent_out_of_scope",
            format!("consent {} does not cover sharing with {} (a {} agency)", r.consent_id, use_.recipient, use_.recipient_role),
        ));
    }
    if !r.scope.purposes.iter().any(|p| p == use_.purpose) {
        return Err(deny("consent_out_of_scope", format!("consent {} does not cover the purpose {}", r.consent_id, use_.purpose)));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
