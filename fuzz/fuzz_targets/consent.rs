//! Consent records from the partnership's bucket: every stored value of one key, written by
//! anyone with access to the bucket. `isp::consent::current` (which runs `verify` on each
//! value), then what a send or a receipt does with the record it picked: `consent::check`
//! against a disclosure to every agency, the record's problems, and its JSON.
//!
//! Input: the bucket key `{owner}.{consent_id}`, then each value preceded by 0xFF.
#![no_main]

use hub_fuzz::{Partnership, SEP, text};
use isp::consent;
use libfuzzer_sys::fuzz_target;
use proto::v1::{ConsentState, ConsentTag};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == SEP);
    let Some(key) = parts.next().and_then(text) else { return };
    let Some((owner, consent_id)) = key.split_once('.') else { return };
    let values: Vec<&[u8]> = parts.collect();
    let p = Partnership::get();
    let (current, _rejected) = consent::current(&p.directory, owner, consent_id, values.iter().copied());
    let Some(verified) = current else { return };
    let record = verified.record();
    let _ = record.problems(&p.policy, &p.directory);
    let _ = serde_json::to_value(record);
    for state in [ConsentState::Given, record.state.to_proto()] {
        let tag = ConsentTag { consent_id: consent_id.to_owned(), state: state as i32, recorded_by: owner.to_owned() };
        for isp in &p.isps {
            let purpose = record.scope.purposes.first().map_or("safeguarding", String::as_str);
            let use_ = isp.consent_use(isp.agency(), isp.role, purpose, &record.subject_ref, record.recorded_at_ms.saturating_add(1));
            let _ = consent::check(Some(&tag), Some(&verified), use_);
        }
    }
});
