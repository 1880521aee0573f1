//! The fields that travel in clear (in the signed header, the broker's store, the ledger and
//! log lines) are tokens with a strict grammar, never free text: a survivor's name, address
//! or phone number cannot be put in one. Each is parsed where it enters (the API, and again
//! in [`crate::Isp::seal`] and [`crate::Isp::open`]); a refusal names the field and its
//! grammar and never repeats the value.
//!
//! | field | grammar | e.g. |
//! |---|---|---|
//! | subject ref | `s-` (a subject ref) or `l-` (a link token), then 32 lowercase hex digits | `s-3f2a…` |
//! | case ref | 2-8 capital letters, then 1-4 `-`-separated groups of 1-12 digits or 1-3 capital letters, at least one group of digits; 32 characters at most | `HSG-2026-0042`, `MARAC-2026-11-07`, `HSG-T-00001` |
//! | envelope id, `in_reply_to` | a UUID, lowercase, hyphenated | `0192f3c4-…` |
//! | consent id | a UUID, or a case ref | `CON-T-7` |
//! | staff id | 2-64 of lowercase letters, digits, `.`, `_`, `-`, starting with a letter or digit | `j.bloggs` |
//! | agency id (sender, recipient, `consent.recorded_by`) | 1-64 of lowercase letters, digits, `-` | `idva-northbridge` |
//! | key id (`signing_key_id`, `recipient_key_id`) | `ed25519:` or `age:`, then 16 lowercase hex digits | `ed25519:9f86d081884c7d65` |
//! | policy token (purpose, lawful basis, policy version, rule, rationale code, data category) | 1-64 of ASCII letters, digits, `.`, `_`, `-` | `uk-gdpr-6-1-e` |
//!
//! A case ref of capital letters and digits can still spell a short surname in its prefix
//! (`SMITH-1`); agencies' case systems make these references, and the README's security
//! model says so.
//!
//! This module is the bottom of the crate: it imports no other isp module, so the directory,
//! the policy, consent records and sealing can all check clear fields without a circle.

use std::fmt;

/// A clear field that is not of its grammar. Its text names the field and the grammar only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is not {grammar}; the value is not repeated here")]
pub struct ClearFieldError {
    pub field: &'static str,
    pub grammar: &'static str,
}

fn refuse(field: &'static str, grammar: &'static str) -> ClearFieldError {
    ClearFieldError { field, grammar }
}

pub const SUBJECT_REF: &str = "a subject ref: s- (or l- for a link token) and 32 lowercase hex digits";
pub const CASE_REF: &str = "a case reference: 2-8 capital letters, then 1-4 '-'-separated groups of 1-12 digits or 1-3 capital letters, at least one of digits, 32 characters at most (e.g. HSG-2026-0042)";
pub const ENVELOPE_ID: &str = "an envelope id: a lowercase hyphenated UUID";
pub const CONSENT_ID: &str = "a consent id: a lowercase hyphenated UUID or a reference like a case reference (e.g. CON-2026-7)";
pub const STAFF_ID: &str = "a staff id: 2-64 of lowercase letters, digits, '.', '_' or '-', starting with a letter or digit";
pub const AGENCY_ID: &str = "an agency id: 1-64 of lowercase letters, digits and '-'";
pub const KEY_ID: &str = "a key id: ed25519: or age: and 16 lowercase hex digits";
pub const TOKEN: &str = "a policy token: 1-64 of ASCII letters, digits, '.', '_' or '-'";

pub const ROUTE: &str = "a route: an HTTP method in capitals, a space and a path pattern of letters, digits, '/', '{', '}', '_', '.' or '-'";

/// The route pattern an `accessed` event names as its rule, e.g. `GET /inbox/{id}`.
pub fn is_route(s: &str) -> bool {
    let Some((method, path)) = s.split_once(' ') else { return false };
    s.len() <= 128
        && (3..=7).contains(&method.len())
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && path.starts_with('/')
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/{}_.-".contains(&b))
}

/// What a `consent_changed` event carries in `case_ref`: `revision-` and the revision number.
pub fn is_revision(s: &str) -> bool {
    s.strip_prefix("revision-").is_some_and(|n| (1..=20).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Agency ids also become NATS subject tokens and database keys.
pub fn is_agency_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A key id as [`crate::directory::key_id`] makes them.
pub fn is_key_id(s: &str) -> bool {
    let hex = s.strip_prefix("ed25519:").or_else(|| s.strip_prefix("age:"));
    hex.is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// An id from the policy's catalogues (purposes, lawful bases, rules, rationales), its version
/// or a data category.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// An agency id or key id an unverified header named, fit for an error message: the value
/// when it is of its grammar (then it cannot carry free text), otherwise a placeholder.
pub fn shown(value: &str, valid: fn(&str) -> bool) -> String {
    if valid(value) { value.to_owned() } else { "(not of its grammar; not repeated)".to_owned() }
}

/// `s-` or `l-` and 32 lowercase hex digits.
pub fn is_subject_ref(s: &str) -> bool {
    (s.starts_with("s-") || s.starts_with("l-")) && s.len() == 34 && s[2..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn is_case_ref(s: &str) -> bool {
    if s.len() > 32 {
        return false;
    }
    let mut parts = s.split('-');
    let prefix = parts.next().unwrap_or_default();
    if !(2..=8).contains(&prefix.len()) || !prefix.bytes().all(|b| b.is_ascii_uppercase()) {
        return false;
    }
    let groups: Vec<&str> = parts.collect();
    let digits = |g: &str| (1..=12).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit());
    let letters = |g: &str| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_uppercase());
    (1..=4).contains(&groups.len()) && groups.iter().all(|g| digits(g) || letters(g)) && groups.iter().any(|g| digits(g))
}

pub fn is_envelope_id(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.hyphenated().to_string() == s)
}

pub fn is_consent_id(s: &str) -> bool {
    is_envelope_id(s) || is_case_ref(s)
}

pub fn is_staff_id(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-')
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

/// Checks a field that may be empty (not given) against its grammar.
pub fn optional(field: &'static str, value: &str, valid: fn(&str) -> bool, grammar: &'static str) -> Result<(), ClearFieldError> {
    if value.is_empty() || valid(value) { Ok(()) } else { Err(refuse(field, grammar)) }
}

/// Checks a field that must be given against its grammar.
pub fn required(field: &'static str, value: &str, valid: fn(&str) -> bool, grammar: &'static str) -> Result<(), ClearFieldError> {
    if valid(value) { Ok(()) } else { Err(refuse(field, grammar)) }
}

macro_rules! token {
    ($(#[$doc:meta])* $name:ident, $valid:path, $grammar:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Parses `value` as field `field`; the error names the field, never the value.
            pub fn parse(field: &'static str, value: &str) -> Result<$name, ClearFieldError> {
                required(field, value, $valid, $grammar).map(|()| $name(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

token!(
    /// A pseudonymous subject ref (`s-…`) or a link token (`l-…`).
    SubjectRef, is_subject_ref, SUBJECT_REF
);
token!(
    /// An agency's case reference.
    CaseRef, is_case_ref, CASE_REF
);
token!(
    /// An envelope id (also what `in_reply_to` names).
    EnvelopeId, is_envelope_id, ENVELOPE_ID
);
token!(
    /// A consent record's id.
    ConsentId, is_consent_id, CONSENT_ID
);
token!(
    /// A staff member's login id.
    StaffId, is_staff_id, STAFF_ID
);

#[cfg(test)]
mod tests {
    use super::*;

    /// What a careless or malicious caller might put in a clear field.
    pub const PERSONAL: [&str; 6] = ["Jane Smith", "17 Synthetic Lane", "07700 900123", "07700900123", "jane.smith@example.org", "NB1 9ZZ"];

    #[test]
    fn each_grammar_takes_its_tokens_and_no_personal_detail() {
        for ok in ["HSG-2026-0042", "HSG-T-00001", "MARAC-2026-11-07", "ARC-12-26", "BENCH-1", "QR-1"] {
            assert!(is_case_ref(ok), "{ok}");
            assert!(is_consent_id(ok), "{ok}");
        }
        for bad in ["jane-smith", "SMITH", "HSG 2026", "HSG-2026-", "Q-1", "HSG-ABCD-1", "HSG-1-2-3-4-5", "hsg-1", &format!("HSG-{}", "1".repeat(40))] {
            assert!(!is_case_ref(bad), "{bad}");
        }
        let id = uuid::Uuid::now_v7().to_string();
        assert!(is_envelope_id(&id) && is_consent_id(&id));
        assert!(!is_envelope_id(&id.to_uppercase()) && !is_envelope_id(&id.replace('-', "")));
        assert!(is_subject_ref(&format!("s-{}", "0a".repeat(16))) && is_subject_ref(&format!("l-{}", "f".repeat(32))));
        assert!(!is_subject_ref(&format!("s-{}", "A".repeat(32))) && !is_subject_ref("s-12"));
        for ok in ["hsg.caseworker", "j.bloggs", "demo.ig-lead", "a1"] {
            assert!(is_staff_id(ok), "{ok}");
        }
        for bad in PERSONAL {
            for (name, valid) in [("case ref", is_case_ref as fn(&str) -> bool), ("subject ref", is_subject_ref), ("envelope id", is_envelope_id), ("consent id", is_consent_id)] {
                assert!(!valid(bad), "{bad:?} passed as a {name}");
            }
        }
        for bad in ["Jane Smith", "17 Synthetic Lane", "07700 900123", "jane.smith@example.org", ".x", "J.BLOGGS"] {
            assert!(!is_staff_id(bad), "{bad:?} passed as a staff id");
        }
    }

    #[test]
    fn a_refusal_names_the_field_and_never_the_value() {
        let e = CaseRef::parse("case_ref", "17 Synthetic Lane").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("case_ref is not a case reference") && !text.contains("Synthetic"), "{text}");
        assert_eq!(CaseRef::parse("case_ref", "HSG-2026-0042").unwrap().as_str(), "HSG-2026-0042");
    }
}
