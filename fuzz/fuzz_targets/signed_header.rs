//! A partner whose key is valid but who is malicious (or whose key was stolen) signs whatever
//! header it likes. The input is an envelope; the target re-signs its header, as whatever
//! agency of the directory it names as sender, with the payload digest made to match, so
//! every mutation of the header reaches past the signature: the recipient's re-decision,
//! the without-consent justification, the declared categories, decryption and the payload
//! checks (`hub_fuzz::receive`), and the audit service's classification of the same message.
//!
//! The seeds are the `open` target's real envelopes, whose ciphertexts stay decryptable.
#![no_main]

use ed25519_dalek::Signer as _;
use hub_fuzz::Partnership;
use isp::seal::ENVELOPE_CONTEXT;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use proto::v1::{Envelope, Header};
use sha2::{Digest as _, Sha256};

fuzz_target!(|data: &[u8]| {
    let Ok(mut envelope) = Envelope::decode(data) else { return };
    let Ok(mut header) = Header::decode(envelope.header.as_slice()) else { return };
    let p = Partnership::get();
    let Some(sender) = p.isp(&header.sender) else { return };
    header.payload_digest = Sha256::digest(&envelope.sealed_payload).to_vec();
    header.signing_key_id = sender.keys.signing_key_id();
    envelope.header = header.encode_to_vec();
    envelope.signature = sender.keys.signing.sign(&[ENVELOPE_CONTEXT, &envelope.header].concat()).to_bytes().to_vec();
    let bytes = envelope.encode_to_vec();
    let recipient = p.isp(&header.recipient).unwrap_or(&p.isps[0]);
    hub_fuzz::receive(recipient, &bytes);
    let subject = runtime::transport::message_subject(&header.sender, &header.recipient, header.kind());
    let entry = audit::ledger::classify(&p.directory, &subject, &bytes, 1);
    let _ = serde_json::to_string(&entry);
});
