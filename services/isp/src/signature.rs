//! The one check of an agency's ed25519 signature: by a key the directory says is the
//! agency's, in force when the signed thing was made, behind the context that names what kind
//! of thing it is. Envelopes and events ([`crate::seal`]), consent records ([`crate::consent`]),
//! DASH summaries ([`crate::risk`]), the signed files ([`crate::signed`]) and checkpoints
//! ([`crate::checkpoint`]) all verify through it.
//!
//! It imports only the directory and the error type, so modules below sealing can check a
//! signature without reaching up into [`crate::seal`]. Signing stays with what is signed: each
//! module signs its own kind of thing with [`crate::AgencyKeys`].

use ed25519_dalek::Signature;

use crate::{Agency, OpenError};

/// Whether `signature` is the agency's over `context` || `signed`, judged now: by its current
/// key (a retired key vouches for nothing made now), and not after a suspension.
pub(crate) fn check_signature(agency: &Agency, key_id: &str, context: &[u8], signed: &[u8], signature: &[u8]) -> Result<(), OpenError> {
    check_signature_at(agency, key_id, i64::MAX, context, signed, signature)
}

/// As [`check_signature`], for something that says it was made at `at_ms`: a retired key of
/// the agency is accepted only for what was made before its retirement.
pub(crate) fn check_signature_at(agency: &Agency, key_id: &str, at_ms: i64, context: &[u8], signed: &[u8], signature: &[u8]) -> Result<(), OpenError> {
    agency.check_in_force(at_ms)?;
    let key = if key_id == agency.signing_key_id() {
        agency.verifying_key().map_err(|_| OpenError::BadSignature(agency.id.clone()))?
    } else {
        agency.verifying_key_at(key_id, at_ms)?
    };
    let signature = Signature::from_slice(signature).map_err(|_| OpenError::BadSignature(agency.id.clone()))?;
    key.verify_strict(&[context, signed].concat(), &signature)
        .map_err(|_| OpenError::BadSignature(agency.id.clone()))
}
