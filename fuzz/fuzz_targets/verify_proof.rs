//! What `hub audit verify-proof FILE` parses and checks, in its order: a subject access
//! bundle (`audit::subject_access::verify`), else an inclusion proof
//! (`audit::checkpoints::verify_proof`). Also what a witness reads: a checkpoint from the
//! checkpoint stream (`Checkpoint::verify`), and the audit service's consistency proof
//! between two checkpoint sizes (`merkle::verify_consistency`), whose sender is the very
//! operator the witness watches.
//!
//! Input: the file's text (JSON).
#![no_main]

use audit::{checkpoints::InclusionProof, subject_access::Bundle};
use hub_fuzz::{Partnership, text};
use isp::{checkpoint::Checkpoint, merkle};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// A witness's question and the answer it got: the two signed checkpoints' sizes and roots,
/// and the proof (hex hashes) the audit service sent.
#[derive(Deserialize)]
struct Consistency {
    first: u64,
    second: u64,
    first_root: String,
    second_root: String,
    proof: Vec<String>,
}

fn hash(h: &str) -> Option<merkle::Hash> {
    hex::decode(h).ok()?.try_into().ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(file) = text(data) else { return };
    let p = Partnership::get();
    if let Ok(bundle) = serde_json::from_str::<Bundle>(file) {
        let _ = audit::subject_access::verify(&bundle, &p.directory);
        return;
    }
    if let Ok(proof) = serde_json::from_str::<InclusionProof>(file) {
        let _ = audit::checkpoints::verify_proof(&proof, &p.directory);
        return;
    }
    if let Ok(checkpoint) = serde_json::from_str::<Checkpoint>(file) {
        let _ = checkpoint.verify(&p.directory);
        return;
    }
    if let Ok(c) = serde_json::from_str::<Consistency>(file) {
        let proof: Option<Vec<merkle::Hash>> = c.proof.iter().map(|h| hash(h)).collect();
        if let (Some(proof), Some(a), Some(b)) = (proof, hash(&c.first_root), hash(&c.second_root)) {
            let _ = merkle::verify_consistency(c.first, c.second, &a, &b, &proof);
        }
    }
});
