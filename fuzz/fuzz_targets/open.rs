//! `Isp::open` on arbitrary envelope bytes, as the recipient's inbox consumer calls it, and
//! what the consumer does next (`hub_fuzz::receive`).
//!
//! The seeds are real envelopes of every kind, sealed to the keys in fuzz/keys, so mutations
//! of the clear parts start past the signature. A header signed by a malicious partner is
//! the `signed_header` target's; payload bytes past signature and decryption the `payload`
//! target's.
#![no_main]

use hub_fuzz::Partnership;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use proto::v1::{Envelope, Header};

fuzz_target!(|data: &[u8]| {
    let p = Partnership::get();
    // The broker delivers an envelope to the consumer of the agency its subject names, which
    // the sender chose: the recipient the header claims stands for that.
    let claimed = Envelope::decode(data).ok().and_then(|e| Header::decode(e.header.as_slice()).ok()).map(|h| h.recipient);
    let isp = claimed.as_deref().and_then(|r| p.isp(r)).unwrap_or(&p.isps[0]);
    hub_fuzz::receive(isp, data);
});
