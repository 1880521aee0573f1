//! Signed checkpoints of the disclosure ledger: the tree size and Merkle root (RFC 6962
//! hashing) at a moment, signed by the partnership's IG/audit key. Agencies keep the
//! checkpoints they see as witnesses; a later checkpoint that is not consistent with an
//! earlier one shows that the audit operator rewrote history.

use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};

use crate::{AgencyKeys, Directory, OpenError, Role, seal::check_signature_at};

/// The JetStream stream that keeps every published checkpoint (deny delete, deny purge).
pub const CHECKPOINT_STREAM: &str = "HUB_CHECKPOINTS";
/// The subject checkpoints are published on.
pub const CHECKPOINT_SUBJECT: &str = "hub.v1.checkpoint";
/// The audit service answers consistency-proof requests here: `{"first": n, "second": m}`
/// -> `{"proof": [hex, ...]}` or `{"error": "..."}`.
pub const CONSISTENCY_SUBJECT: &str = "hub.v1.audit.consistency";

/// Domain separation of checkpoint signatures from envelope and event signatures.
pub const CHECKPOINT_CONTEXT: &[u8] = b"hub.v1.checkpoint\0";

/// A signed statement "the ledger of `partnership` had `tree_size` entries with Merkle root
/// `root` at `at_ms`". Travels and is stored as JSON; hashes and signature in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub partnership: String,
    pub tree_size: u64,
    pub root: String,
    pub at_ms: i64,
    /// The directory id of the signer, an agency with the `ig` role.
    pub signer: String,
    pub key_id: String,
    pub signature: String,
}

impl Checkpoint {
    fn signed_bytes(partnership: &str, tree_size: u64, root: &str, at_ms: i64, signer: &str) -> Vec<u8> {
        let mut out = CHECKPOINT_CONTEXT.to_vec();
        for part in [partnership.as_bytes(), &tree_size.to_be_bytes(), root.as_bytes(), &at_ms.to_be_bytes(), signer.as_bytes()] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// Signs a checkpoint with the IG/audit agency's key.
    pub fn sign(keys: &AgencyKeys, partnership: &str, tree_size: u64, root: &[u8; 32], at_ms: i64) -> Checkpoint {
        let root = hex::encode(root);
        let signature = keys.signing.sign(&Checkpoint::signed_bytes(partnership, tree_size, &root, at_ms, &keys.agency));
        Checkpoint {
            partnership: partnership.to_owned(),
            tree_size,
            root,
            at_ms,
            signer: keys.agency.clone(),
            key_id: keys.signing_key_id(),
            signature: hex::encode(signature.to_bytes()),
        }
    }

    /// Checks the signature against the directory, and that the signer holds the `ig` role
    /// in this partnership.
    pub fn verify(&self, directory: &Directory) -> Result<[u8; 32], OpenError> {
        let signer = directory.get(&self.signer).ok_or_else(|| OpenError::UnknownSender(self.signer.clone()))?;
        if signer.role != Role::Ig || self.partnership != directory.partnership {
            return Err(OpenError::BadSignature(self.signer.clone()));
        }
        let signature = hex::decode(&self.signature).map_err(|_| OpenError::Malformed("the checkpoint signature is not hex".into()))?;
        let bytes = Checkpoint::signed_bytes(&self.partnership, self.tree_size, &self.root, self.at_ms, &self.signer);
        check_signature_at(signer, &self.key_id, self.at_ms, &[], &bytes, &signature)?;
        self.root_bytes()
    }

    /// The root hash as bytes.
    pub fn root_bytes(&self) -> Result<[u8; 32], OpenError> {
        hex::decode(&self.root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| OpenError::Malformed("the checkpoint root is not a 32-byte hex hash".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::generate_partnership;

    #[test]
    fn a_checkpoint_verifies_and_any_change_breaks_it() {
        let (directory, keys) = generate_partnership("P", &[("ig-p", "IG", Role::Ig), ("housing-p", "Housing", Role::Housing)]).unwrap();
        let c = Checkpoint::sign(&keys[0], "P", 42, &[7; 32], 1_700_000_000_000);
        assert_eq!(c.verify(&directory).unwrap(), [7; 32]);
        for forged in [
            Checkpoint { tree_size: 43, ..c.clone() },
            Checkpoint { root: hex::encode([8u8; 32]), ..c.clone() },
            Checkpoint { at_ms: 1, ..c.clone() },
        ] {
            assert!(matches!(forged.verify(&directory), Err(OpenError::BadSignature(_))), "{forged:?}");
        }
        // A non-IG agency cannot sign checkpoints, even with its own valid key.
        let by_housing = Checkpoint::sign(&keys[1], "P", 42, &[7; 32], 1);
        assert!(by_housing.verify(&directory).is_err());
    }
}
