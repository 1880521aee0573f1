//! What `hub audit verify-proof FILE` parses and checks, in its order: a subject access
//! bundle (`audit::subject_access::verify`), else an inclusion proof
//! (`audit::checkpoints::verify_proof`). Also what a witness reads: a message of the
//! checkpoint stream (a C2SP checkpoint note, `Checkpoint::from_note`, or the legacy JSON,
//! `Checkpoint::verify`), and the audit service's consistency proof between two checkpoint
//! sizes (`merkle::verify_consistency`), whose sender is the very operator the witness
//! watches. A note that verifies must verify as its JSON view too, take a witness's
//! cosignature that verifies, and still be read with it appended.
//!
//! Input: the file's text (JSON, or a checkpoint note).
#![no_main]

use audit::{checkpoints::InclusionProof, subject_access::Bundle};
use hub_fuzz::{NOW_MS, Partnership, text};
use isp::{
    checkpoint::{self, Checkpoint},
    merkle,
};
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
        return;
    }
    if let Ok(read) = Checkpoint::from_note(file, &p.directory) {
        assert_eq!(read.verify(&p.directory).ok(), read.root_bytes().ok(), "a note that reads does not verify as its JSON view");
        let witness = &p.isp("idva-northbridge").expect("the fuzz partnership has an IDVA").keys;
        let time = NOW_MS as u64 / 1000;
        let line = checkpoint::cosign(witness, file, time).expect("a note that reads can be cosigned");
        assert_eq!(checkpoint::verify_cosignature(file, &line, &witness.agency, &witness.signing.verifying_key()), Ok(time));
        if let Err(e) = Checkpoint::from_note(&format!("{file}{line}"), &p.directory) {
            // Only a limit may refuse the note once cosigned.
            assert!(e.to_string().contains("more than the") || e.to_string().contains("larger than"), "a cosigned note does not read: {e}");
        }
    }
});
