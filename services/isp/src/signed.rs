//! The partnership's two signed files. The policy (`policy.toml`) is the protocol; the
//! directory (`directory.toml`) says who the agencies are and which keys are theirs. Each is
//! signed (`<file>.sig`, beside it) with the partnership IG key over its exact bytes.
//! Services refuse either file unsigned, signed by anyone but an `ig` agency of the
//! directory they already trust, or changed after signing, and keep running on the last good
//! one. A directory update (an agency rotating its keys) is trusted only if signed by the IG
//! key of the directory in force.
//!
//! Each signature carries a sequence number, signed with the text: `hub` signs every new
//! version of a file with the next number. A service refuses a signed file older than the one
//! it runs (a lower sequence, or the same with a different text; see [`check_not_older`]), so
//! an old directory put back cannot bring a retired key back, nor an old policy an old
//! protocol. Signatures made before sequences existed count as sequence 0.

use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{AgencyKeys, Directory, IspError, Role, signature::check_signature};

/// Domain separation of policy signatures.
pub const POLICY_CONTEXT: &[u8] = b"hub.v1.policy\0";
/// Domain separation of directory signatures.
pub const DIRECTORY_CONTEXT: &[u8] = b"hub.v1.directory\0";
/// Domain separation of sequenced policy signatures: context, sequence (8 bytes, big-endian),
/// text. Unlike the unsequenced prefix, so neither kind passes for the other.
pub const POLICY_SEQ_CONTEXT: &[u8] = b"hub.v1.policy.seq\0";
/// Domain separation of sequenced directory signatures (see [`POLICY_SEQ_CONTEXT`]).
pub const DIRECTORY_SEQ_CONTEXT: &[u8] = b"hub.v1.directory.seq\0";

/// The signature file's content (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySignature {
    /// The signed file's version, for people reading the file: the policy's `version`, or
    /// for the directory its digest (16 hex digits of the SHA-256 of its text). Not signed.
    /// Written as `policy_version` before 0.2 (for both files), which is still read.
    #[serde(alias = "policy_version")]
    pub version: String,
    /// The file's place among the versions the IG office signed, each new one higher; signed
    /// with the text. 0: signed before sequences existed.
    #[serde(default)]
    pub sequence: u64,
    /// SHA-256 of the policy file's bytes, hex.
    pub sha256: String,
    pub signer: String,
    pub key_id: String,
    pub signature: String,
}

fn invalid(detail: impl Into<String>) -> IspError {
    IspError::Invalid { what: "the signature".into(), detail: detail.into() }
}

/// Signs a policy file's text with the IG agency's keys, as version `sequence` (see
/// [`next_sequence`]).
pub fn sign(keys: &AgencyKeys, policy_version: &str, sequence: u64, text: &str) -> PolicySignature {
    sign_with(keys, Kind::Policy, policy_version, sequence, text)
}

/// Signs a directory file's text with the IG agency's keys (those of the directory in force),
/// as version `sequence`.
pub fn sign_directory(keys: &AgencyKeys, sequence: u64, text: &str) -> PolicySignature {
    sign_with(keys, Kind::Directory, &hex::encode(&Sha256::digest(text.as_bytes())[..8]), sequence, text)
}

/// The sequence to sign the next version of a file with: one more than that of its signature
/// file now (`sig_text`, the `.sig` file's text, if any), 1 for the first.
pub fn next_sequence(sig_text: Option<&str>) -> u64 {
    sig_text.and_then(|t| serde_json::from_str::<PolicySignature>(t).ok()).map_or(0, |s| s.sequence) + 1
}

#[derive(Clone, Copy)]
enum Kind {
    Policy,
    Directory,
}

/// What is signed: the file's context, its sequence, its text.
fn message(kind: Kind, sequence: u64, text: &str) -> Vec<u8> {
    match (kind, sequence) {
        // Signatures from before sequences: unchanged, so they still verify (as sequence 0).
        (Kind::Policy, 0) => [POLICY_CONTEXT, text.as_bytes()].concat(),
        (Kind::Directory, 0) => [DIRECTORY_CONTEXT, text.as_bytes()].concat(),
        (Kind::Policy, n) => [POLICY_SEQ_CONTEXT, &n.to_be_bytes(), text.as_bytes()].concat(),
        (Kind::Directory, n) => [DIRECTORY_SEQ_CONTEXT, &n.to_be_bytes(), text.as_bytes()].concat(),
    }
}

fn sign_with(keys: &AgencyKeys, kind: Kind, version: &str, sequence: u64, text: &str) -> PolicySignature {
    let signature = keys.signing.sign(&message(kind, sequence, text));
    PolicySignature {
        version: version.to_owned(),
        sequence,
        sha256: hex::encode(Sha256::digest(text.as_bytes())),
        signer: keys.agency.clone(),
        key_id: keys.signing_key_id(),
        signature: hex::encode(signature.to_bytes()),
    }
}

/// Refuses a newly read signed file (`new`) that is older than the one in force (`sequence`,
/// `sha256` of its text): a lower sequence, or the same sequence with another text. `what`
/// names the file ("policy", "directory").
pub fn check_not_older(what: &str, in_force_sequence: u64, in_force_sha256: &str, new: &PolicySignature) -> Result<(), IspError> {
    if new.sequence < in_force_sequence {
        return Err(IspError::Invalid {
            what: format!("the {what}"),
            detail: format!(
                "it is signed as sequence {}, older than sequence {in_force_sequence} in force: an old {what} put back is refused; the IG office signs every new version with a higher sequence",
                new.sequence
            ),
        });
    }
    if new.sequence == in_force_sequence && new.sha256 != in_force_sha256 {
        return Err(IspError::Invalid {
            what: format!("the {what}"),
            detail: format!("it is signed as sequence {}, the same as the {what} in force, but its text differs: a new version needs a higher sequence", new.sequence),
        });
    }
    Ok(())
}

/// Checks that `signature` (the `.sig` file's text; None when there is none) is a valid
/// signature of `text` by an `ig` agency of the directory. The error says what is wrong.
pub fn verify(text: &str, signature: Option<&str>, directory: &Directory) -> Result<PolicySignature, IspError> {
    let sig_text = signature.ok_or_else(|| invalid("the policy is not signed (no policy.toml.sig beside it); the IG lead signs it with `hub policy sign`"))?;
    verify_with(Kind::Policy, "policy", text, sig_text, directory)
}

/// Checks a directory file against its signature, by an `ig` agency of `trusted` (the
/// directory in force; for the first load, the file's own).
pub fn verify_directory(text: &str, signature: Option<&str>, trusted: &Directory) -> Result<PolicySignature, IspError> {
    let sig_text = signature.ok_or_else(|| invalid("the directory is not signed (no directory.toml.sig beside it); `hub keys rotate` signs updates"))?;
    verify_with(Kind::Directory, "directory", text, sig_text, trusted)
}

fn verify_with(kind: Kind, what: &str, text: &str, sig_text: &str, directory: &Directory) -> Result<PolicySignature, IspError> {
    let sig: PolicySignature = serde_json::from_str(sig_text).map_err(|_| invalid(format!("{what}.toml.sig is not a signature file")))?;
    let signer = directory.get(&sig.signer).ok_or_else(|| invalid(format!("signed by {:?}, who is not in the partnership directory", sig.signer)))?;
    if signer.role != Role::Ig {
        return Err(invalid(format!("signed by {:?}, which is not the partnership's IG office", sig.signer)));
    }
    if sig.sha256 != hex::encode(Sha256::digest(text.as_bytes())) {
        return Err(invalid(format!("the {what} file changed after it was signed")));
    }
    let bytes = hex::decode(&sig.signature).map_err(|_| invalid("the signature is not hex"))?;
    let message = message(kind, sig.sequence, text);
    check_signature(signer, &sig.key_id, &[], &message, &bytes)
        .map_err(|e| invalid(format!("the signature does not verify: {e}")))?;
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::generate_partnership;

    #[test]
    fn only_the_ig_key_over_the_exact_text_verifies() {
        let (directory, keys) = generate_partnership("P", &[("ig-p", "IG", Role::Ig), ("housing-p", "Housing", Role::Housing)]).unwrap();
        let text = "version = \"1\"\n";
        let good = serde_json::to_string(&sign(&keys[0], "1", 1, text)).unwrap();
        assert_eq!(verify(text, Some(&good), &directory).unwrap().signer, "ig-p");
        let err = |t: &str, s: Option<&str>| verify(t, s, &directory).unwrap_err().to_string();
        assert!(err(text, None).contains("not signed"));
        assert!(err("version = \"2\"\n", Some(&good)).contains("changed after it was signed"));
        let by_housing = serde_json::to_string(&sign(&keys[1], "1", 1, text)).unwrap();
        assert!(err(text, Some(&by_housing)).contains("not the partnership's IG office"));
        let mut forged = sign(&keys[0], "1", 1, text);
        forged.signature = hex::encode([1u8; 64]);
        assert!(err(text, Some(&serde_json::to_string(&forged).unwrap())).contains("does not verify"));
        assert!(err(text, Some("garbage")).contains("not a signature file"));
        // A policy signature does not pass for a directory's, nor the reverse.
        assert!(verify_directory(text, Some(&good), &directory).is_err());
        let dir_sig = serde_json::to_string(&sign_directory(&keys[0], 1, text)).unwrap();
        assert!(verify_directory(text, Some(&dir_sig), &directory).is_ok());
        assert!(verify(text, Some(&dir_sig), &directory).is_err());
    }

    #[test]
    fn the_sequence_is_signed_and_an_older_file_is_refused() {
        let (directory, keys) = generate_partnership("P", &[("ig-p", "IG", Role::Ig)]).unwrap();
        let text = "version = \"1\"\n";
        let second = sign(&keys[0], "1", 2, text);
        assert!(verify(text, Some(&serde_json::to_string(&second).unwrap()), &directory).is_ok());
        // Lowering the sequence beside a valid signature breaks it.
        let lowered = PolicySignature { sequence: 1, ..second.clone() };
        assert!(verify(text, Some(&serde_json::to_string(&lowered).unwrap()), &directory).unwrap_err().to_string().contains("does not verify"));
        // A signature from before sequences still verifies, as sequence 0.
        let legacy = keys[0].signing.sign(&[POLICY_CONTEXT, text.as_bytes()].concat());
        let legacy = format!(
            r#"{{"policy_version":"1","sha256":"{}","signer":"ig-p","key_id":"{}","signature":"{}"}}"#,
            second.sha256,
            second.key_id,
            hex::encode(legacy.to_bytes())
        );
        assert_eq!(verify(text, Some(&legacy), &directory).unwrap().sequence, 0);
        assert_eq!(next_sequence(Some(&legacy)), 1);
        assert_eq!(next_sequence(Some(&serde_json::to_string(&second).unwrap())), 3);
        assert_eq!(next_sequence(None), 1);
        // Older, or as old with another text: refused. As old with the same text, or newer: fine.
        assert!(check_not_older("policy", 3, &second.sha256, &second).unwrap_err().to_string().contains("older than sequence 3"));
        assert!(check_not_older("policy", 2, "other", &second).unwrap_err().to_string().contains("its text differs"));
        assert!(check_not_older("policy", 2, &second.sha256, &second).is_ok());
        assert!(check_not_older("policy", 1, "other", &second).is_ok());
    }
}
