//! The decrypted payload bytes of an envelope whose signature verified: where a
//! signed-but-malicious partner's data lands. Calls exactly the last step of `Isp::open`
//! (`isp::seal::check_payload`: decode, body kind equals the header's, categories within the
//! declared ones), then what the recipient does with an accepted payload: serve it as JSON.
//!
//! Input: one byte choosing the header's kind, one byte choosing which of the kind's
//! categories the header declares (0: all), then the plaintext.
#![no_main]

use std::collections::BTreeSet;

use hub_fuzz::Partnership;
use isp::kind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [k, mask, plaintext @ ..] = data else { return };
    let p = Partnership::get();
    let header_kind = kind::ALL[*k as usize % kind::ALL.len()];
    let declared: BTreeSet<String> = p
        .schema
        .kind_categories(header_kind)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *mask == 0 || mask >> (i % 8) & 1 == 1)
        .map(|(_, c)| c)
        .collect();
    if let Ok(payload) = isp::seal::check_payload(&p.schema, header_kind, &declared, plaintext) {
        let _ = p.schema.payload_to_json(&payload);
    }
});
