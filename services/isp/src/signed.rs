//! The partnership's two signed files. The policy (`policy.toml`) is the protocol; the
//! directory (`directory.toml`) says who the agencies are and which keys are theirs. Each is
//! signed (`<file>.sig`, beside it) with the partnership IG key over its exact bytes.
//! Services refuse either file unsigned, signed by anyone but an `ig` agency of the
//! directory they already trust, or changed after signing, and keep running on the last good
//! one. A directory update (an agency rotating its keys) is trusted only if signed by the IG
//! key of the directory in force.

use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{AgencyKeys, Directory, IspError, Role, seal::check_signature};

/// Domain separation of policy signatures.
pub const POLICY_CONTEXT: &[u8] = b"hub.v1.policy\0";
/// Domain separation of directory signatures.
pub const DIRECTORY_CONTEXT: &[u8] = b"hub.v1.directory\0";

/// The signature file's content (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySignature {
    /// The signed file's version (the policy's `version`; the directory's digest), for people
    /// reading the file.
    pub policy_version: String,
    /// SHA-256 of the policy file's bytes, hex.
    pub sha256: String,
    pub signer: String,
    pub key_id: String,
    pub signature: String,
}

fn invalid(detail: impl Into<String>) -> IspError {
    IspError::Invalid { what: "the signature".into(), detail: detail.into() }
}

/// Signs a policy file's text with the IG agency's keys.
pub fn sign(keys: &AgencyKeys, policy_version: &str, text: &str) -> PolicySignature {
    sign_with(keys, POLICY_CONTEXT, policy_version, text)
}

/// Signs a directory file's text with the IG agency's keys (those of the directory in force).
pub fn sign_directory(keys: &AgencyKeys, text: &str) -> PolicySignature {
    sign_with(keys, DIRECTORY_CONTEXT, &hex::encode(&Sha256::digest(text.as_bytes())[..8]), text)
}

fn sign_with(keys: &AgencyKeys, context: &[u8], version: &str, text: &str) -> PolicySignature {
    let policy_version = version;
    let signature = keys.signing.sign(&[context, text.as_bytes()].concat());
    PolicySignature {
        policy_version: policy_version.to_owned(),
        sha256: hex::encode(Sha256::digest(text.as_bytes())),
        signer: keys.agency.clone(),
        key_id: keys.signing_key_id(),
        signature: hex::encode(signature.to_bytes()),
    }
}

/// Checks that `signature` (the `.sig` file's text; None when there is none) is a valid
/// signature of `text` by an `ig` agency of the directory. The error says what is wrong.
pub fn verify(text: &str, signature: Option<&str>, directory: &Directory) -> Result<PolicySignature, IspError> {
    let sig_text = signature.ok_or_else(|| invalid("the policy is not signed (no policy.toml.sig beside it); the IG lead signs it with `hub policy sign`"))?;
    verify_with(POLICY_CONTEXT, "policy", text, sig_text, directory)
}

/// Checks a directory file against its signature, by an `ig` agency of `trusted` (the
/// directory in force; for the first load, the file's own).
pub fn verify_directory(text: &str, signature: Option<&str>, trusted: &Directory) -> Result<PolicySignature, IspError> {
    let sig_text = signature.ok_or_else(|| invalid("the directory is not signed (no directory.toml.sig beside it); `hub keys rotate` signs updates"))?;
    verify_with(DIRECTORY_CONTEXT, "directory", text, sig_text, trusted)
}

fn verify_with(context: &[u8], what: &str, text: &str, sig_text: &str, directory: &Directory) -> Result<PolicySignature, IspError> {
    let sig: PolicySignature = serde_json::from_str(sig_text).map_err(|_| invalid(format!("{what}.toml.sig is not a signature file")))?;
    let signer = directory.get(&sig.signer).ok_or_else(|| invalid(format!("signed by {:?}, who is not in the partnership directory", sig.signer)))?;
    if signer.role != Role::Ig {
        return Err(invalid(format!("signed by {:?}, which is not the partnership's IG office", sig.signer)));
    }
    if sig.sha256 != hex::encode(Sha256::digest(text.as_bytes())) {
        return Err(invalid(format!("the {what} file changed after it was signed")));
    }
    let bytes = hex::decode(&sig.signature).map_err(|_| invalid("the signature is not hex"))?;
    check_signature(signer, &sig.key_id, context, text.as_bytes(), &bytes)
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
        let good = serde_json::to_string(&sign(&keys[0], "1", text)).unwrap();
        assert_eq!(verify(text, Some(&good), &directory).unwrap().signer, "ig-p");
        let err = |t: &str, s: Option<&str>| verify(t, s, &directory).unwrap_err().to_string();
        assert!(err(text, None).contains("not signed"));
        assert!(err("version = \"2\"\n", Some(&good)).contains("changed after it was signed"));
        let by_housing = serde_json::to_string(&sign(&keys[1], "1", text)).unwrap();
        assert!(err(text, Some(&by_housing)).contains("not the partnership's IG office"));
        let mut forged = sign(&keys[0], "1", text);
        forged.signature = hex::encode([1u8; 64]);
        assert!(err(text, Some(&serde_json::to_string(&forged).unwrap())).contains("does not verify"));
        assert!(err(text, Some("garbage")).contains("not a signature file"));
        // A policy signature does not pass for a directory's, nor the reverse.
        assert!(verify_directory(text, Some(&good), &directory).is_err());
        let dir_sig = serde_json::to_string(&sign_directory(&keys[0], text)).unwrap();
        assert!(verify_directory(text, Some(&dir_sig), &directory).is_ok());
        assert!(verify(text, Some(&dir_sig), &directory).is_err());
    }
}
