//! Errors a caller can act on. None carries payload content: only ids, kinds, rules,
//! categories and reason codes, so any of them may be logged or returned to an API caller.

use std::fmt;

/// Why the protocol refused a disclosure: the rule that decided, a stable reason code and a
/// sentence for the person who tried.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Denial {
    pub rule: String,
    pub reason: &'static str,
    pub detail: String,
    /// Categories that broke a never-rule (empty for other denials).
    pub forbidden: Vec<String>,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rule {}): {}", self.reason, self.rule, self.detail)
    }
}

/// Errors at the sending side and in loading partnership material.
#[derive(Debug, thiserror::Error)]
pub enum IspError {
    #[error("disclosure refused by the information-sharing protocol: {0}")]
    Denied(Denial),
    #[error("unknown agency {0:?}: not in the partnership directory")]
    UnknownAgency(String),
    /// The agency is suspended from (or removed from) the partnership: nothing is sealed to
    /// it, and, when it is this agency, nothing is sealed by it.
    #[error("{agency:?} is {status} from the partnership: nothing is sent to or by it")]
    Inactive { agency: String, status: &'static str },
    #[error("the payload does not match kind {kind}: {detail}")]
    BadPayload { kind: &'static str, detail: String },
    /// Shared without consent, but without the deciding officer, a rationale code from the
    /// policy or the rationale itself.
    #[error("sharing without consent must be justified: {0}")]
    Unjustified(String),
    #[error("encryption failed: {0}")]
    Encrypt(String),
    #[error("{what} is invalid: {detail}")]
    Invalid { what: String, detail: String },
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Why a received envelope was refused. Each is permanent: the envelope is quarantined,
/// acknowledged to the broker and recorded in the ledger; it is never stored as a referral.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("unknown sender {0:?}: not in the partnership directory")]
    UnknownSender(String),
    #[error("unknown signing key {key_id:?} for sender {sender:?}")]
    UnknownSigningKey { sender: String, key_id: String },
    #[error("signed by {sender:?} with key {key_id}, which was retired before this was made")]
    RetiredKey { sender: String, key_id: String, retired_at_ms: i64 },
    /// The sender was suspended from (or removed from) the partnership before the broker took
    /// this in: none of its keys counts from then on.
    #[error("{sender:?} is suspended from the partnership since {since_ms} (ms); nothing it sends from then on counts")]
    Suspended { sender: String, since_ms: i64 },
    #[error("signature does not verify: the header was altered or not signed by {0:?}")]
    BadSignature(String),
    #[error("addressed to {0:?}, not to this agency")]
    NotAddressedToUs(String),
    /// The signed header names a recipient age key that is none of this agency's (current or
    /// retired): the sender sealed to a key it should not have used. The id is not repeated:
    /// whoever signed the header chose its text.
    #[error("the header names a recipient key that is not one of this agency's age keys")]
    UnknownRecipientKey,
    #[error("sealed payload does not match the signed digest: the ciphertext was altered")]
    PayloadDigestMismatch,
    #[error("cannot decrypt the payload with this agency's keys: {0}")]
    Decrypt(String),
    #[error("the payload is not a valid {0} message")]
    MalformedPayload(&'static str),
    #[error("the payload body is {body}, but the signed header says {header}")]
    KindMismatch { header: &'static str, body: &'static str },
    #[error("the payload carries undeclared categories {0:?}")]
    UndeclaredCategories(Vec<String>),
    /// The header says the payload travels unencrypted, and it is not a content-free receipt
    /// (SPEC.md 6.4): whatever else it holds crossed the broker in clear. Nothing of it is
    /// repeated.
    #[error("a payload sent unencrypted is not a content-free receipt")]
    ContentInClear,
    #[error("refused on receipt by the information-sharing protocol: {0}")]
    Denied(Denial),
    /// The consent the envelope relies on no longer holds at receipt (withdrawn since it was
    /// sent, or its record is unknown). Not a violation: a withdrawal can race a send.
    #[error("refused on receipt: {0}")]
    Consent(Denial),
    #[error("envelope {0} was already received under another stream sequence: a replay")]
    Replayed(String),
    #[error("the subject does not match the signed header: {0}")]
    Misrouted(String),
    /// Handling the message panicked (a defect of the receiving service, or an input it did not
    /// expect): kept in quarantine for review instead of being redelivered into the same panic.
    #[error("handling this message panicked; it is kept in quarantine for review")]
    HandlerPanic,
    /// A clear header field is not of its grammar ([`crate::clear`]): it could carry a
    /// survivor's details, so nothing of the header is kept.
    #[error("the clear field {0} of the header is not of its grammar")]
    BadClearField(&'static str),
    /// The creation time the signed header claims is further from when the broker took the
    /// message in than the receiver allows (`HUB_CLOCK_SKEW_SECS`): backdated, postdated, or
    /// held back for longer than the window.
    #[error("the header claims a creation time {skew_secs} s from when the broker received it, more than the {window_secs} s allowed")]
    ClockSkew { skew_secs: i64, window_secs: i64 },
    /// A ledger checkpoint (a signed note, or its JSON view) that is not of the C2SP grammar,
    /// not signed by the partnership's IG office, or whose JSON fields disagree with its note.
    /// The reason is fixed text: anyone who may publish on the checkpoint subject chose the
    /// note's content, so none of it is repeated.
    #[error("not a valid ledger checkpoint: {0}")]
    BadCheckpoint(String),
}

impl OpenError {
    /// A stable code for ledger events and API answers.
    pub fn code(&self) -> &'static str {
        match self {
            OpenError::Malformed(_) => "malformed",
            OpenError::UnknownSender(_) => "unknown_sender",
            OpenError::UnknownSigningKey { .. } => "unknown_signing_key",
            OpenError::RetiredKey { .. } => "retired_signing_key",
            OpenError::Suspended { .. } => "suspended_sender",
            OpenError::BadSignature(_) => "bad_signature",
            OpenError::NotAddressedToUs(_) => "not_addressed_to_us",
            OpenError::UnknownRecipientKey => "unknown_recipient_key",
            OpenError::PayloadDigestMismatch => "payload_digest_mismatch",
            OpenError::Decrypt(_) => "decrypt_failed",
            OpenError::MalformedPayload(_) => "malformed_payload",
            OpenError::KindMismatch { .. } => "kind_mismatch",
            OpenError::UndeclaredCategories(_) => "undeclared_categories",
            OpenError::ContentInClear => "content_in_clear",
            OpenError::Denied(d) | OpenError::Consent(d) => d.reason,
            OpenError::Replayed(_) => "replayed",
            OpenError::Misrouted(_) => "misrouted",
            OpenError::HandlerPanic => "handler_panic",
            OpenError::BadClearField(_) => "bad_clear_field",
            OpenError::ClockSkew { .. } => "clock_skew",
            OpenError::BadCheckpoint(_) => "bad_checkpoint",
        }
    }

    /// The policy rule behind the refusal, or the layer that refused before the policy.
    pub fn rule(&self) -> String {
        match self {
            OpenError::Denied(d) | OpenError::Consent(d) => d.rule.clone(),
            OpenError::Malformed(_) | OpenError::MalformedPayload(_) | OpenError::BadClearField(_) | OpenError::ContentInClear => "wire".into(),
            OpenError::Replayed(_) | OpenError::Misrouted(_) | OpenError::ClockSkew { .. } => "transport".into(),
            OpenError::HandlerPanic => "receiver".into(),
            OpenError::Suspended { .. } => "directory".into(),
            OpenError::UndeclaredCategories(_) | OpenError::KindMismatch { .. } => "declared-categories".into(),
            _ => "crypto".into(),
        }
    }

    /// A violation is a payload that broke the protocol after passing the crypto: the IG lead
    /// must hear of it, not only the ledger.
    pub fn is_violation(&self) -> bool {
        matches!(
            self,
            OpenError::UndeclaredCategories(_)
                | OpenError::KindMismatch { .. }
                | OpenError::Denied(_)
                | OpenError::BadClearField(_)
                | OpenError::ContentInClear
        )
    }
}
