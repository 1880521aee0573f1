//! The audit service's classification of a stream message (`audit::ledger::classify`): any
//! subject, any body, from anyone who can publish to the stream. Then what becomes of the
//! entry: it is hashed into the chain, served as JSON, and, when its signature verified,
//! proved: an inclusion proof of it (as `hub audit prove` writes, JSON) must pass
//! `hub audit verify-proof`, which re-checks the signed record against the entry's fields.
//!
//! Input: the subject, a newline, the body.
#![no_main]

use audit::checkpoints::InclusionProof;
use hub_fuzz::{NOW_MS, Partnership};
use isp::{checkpoint::Checkpoint, merkle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (subject, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let p = Partnership::get();
    let mut entry = audit::ledger::classify(&p.directory, &String::from_utf8_lossy(subject), body, 7);
    entry.seq = 1;
    entry.prev_hash = vec![0; 32];
    entry.hash = entry.compute_hash(&entry.prev_hash);
    let _ = serde_json::to_string(&entry);
    if entry.verified {
        let ig = p.isp("ig-northbridge").expect("the fuzz partnership has an IG office");
        let root = merkle::leaf_hash(&entry.hash);
        let checkpoint = Checkpoint::sign(&ig.keys, 1, &root, NOW_MS);
        let proof = InclusionProof { entry, leaf_index: 0, tree_size: 1, path: Vec::new(), checkpoint };
        let file: InclusionProof = serde_json::from_str(&serde_json::to_string(&proof).expect("a proof serialises")).expect("a proof reads back");
        if let Err(e) = audit::checkpoints::verify_proof(&file, &p.directory) {
            panic!("the proof of a verified {} entry does not verify: {e}", file.entry.entry_type);
        }
    }
});
