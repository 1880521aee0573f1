//! The JSON bodies of the HTTP routes, through `runtime::api::json_body` (the parse every route
//! uses, with its redacted error) and then the pure steps that follow in each handler, as far
//! as they go without a database or a broker:
//!
//! - 0 `POST /disclosures`: `runtime::api::outgoing` (payload JSON, kind, consent, risk, subject)
//!   then `Isp::seal` with the consent record the tag names (decide, consent check,
//!   justification, minimise, encrypt, sign), or the near-miss event of a refusal; what seals
//!   must open at the recipient;
//! - 1 `POST /consents`: `runtime::consent::new_record`, then `Isp::sign_consent` and reading
//!   the signed value back;
//! - 2 `POST /consents/{id}/withdraw`: the new revision the handler makes of a stored record;
//! - 3 `POST /inbox/{id}/ack`: the status and reason checks of the handler;
//! - 4 `POST /disclosures/{id}/revoke`: the reason check;
//! - 5 `POST /dash-assessments`: `runtime::assessments::assess`.
//!
//! Input: one byte choosing the route, one byte choosing the agency serving it, then the body.
//! (marac's `POST /actions` and reciprocals' `POST /applications/{ref}/circulate` parse
//! private types into an `Outgoing` built from stored rows; their sends go through `seal`
//! as route 0 does.)
#![no_main]

use bytes::Bytes;
use hub_fuzz::{NOW_MS, Partnership};
use isp::{IspError, consent};
use libfuzzer_sys::fuzz_target;
use runtime::api::{AckRequest, SendRequest, json_body};

fuzz_target!(|data: &[u8]| {
    let [route, agency, body @ ..] = data else { return };
    let p = Partnership::get();
    let isp = &p.isps[*agency as usize % p.isps.len()];
    let body = Bytes::copy_from_slice(body);
    match route % 6 {
        0 => {
            let Ok(request) = json_body::<SendRequest>(&body) else { return };
            let Ok(out) = runtime::api::outgoing(isp, request) else { return };
            match isp.seal(&out, p.consent_for(out.consent.as_ref())) {
                // What the sender's protocol lets out, the recipient's (the same policy) opens:
                // otherwise a permitted send would be quarantined as a violation on arrival.
                Ok(sealed) => {
                    let recipient = p.isp(&sealed.header.recipient).expect("seal names an agency of the directory");
                    if let Err((_, e)) = recipient.open(&sealed.envelope) {
                        panic!("sealed by {} under rule {}, refused by {}: {e}", isp.agency(), sealed.decision.rule, recipient.agency());
                    }
                }
                Err(IspError::Denied(denial)) => {
                    let _ = isp.denial_event(&out, &denial);
                }
                Err(_) => {}
            }
        }
        1 => {
            let Ok(request) = json_body(&body) else { return };
            let Ok(mut record) = runtime::consent::new_record(isp, request, NOW_MS) else { return };
            // Who recorded it comes from the login: the handler sets it.
            record.recorded_by = "fuzz.staff".into();
            if let Ok(value) = isp.sign_consent(&record) {
                consent::verify(&isp.directory, isp.agency(), &record.consent_id, &value).expect("a record the agency signed verifies");
            }
        }
        2 => {
            let Ok(request) = json_body::<runtime::consent::WithdrawRequest>(&body) else { return };
            let Some(current) = p.consents.values().find(|c| c.record().agency == isp.agency()) else { return };
            let mut record = current.record().clone();
            record.revision += 1;
            record.state = consent::State::Withdrawn;
            record.reason = request.reason;
            record.recorded_by = "fuzz.staff".into();
            record.recorded_at_ms = NOW_MS;
            let _ = isp.sign_consent(&record);
        }
        3 => {
            let Ok(request) = json_body::<AckRequest>(&body) else { return };
            let known = matches!(request.status.as_str(), "received" | "accepted" | "declined" | "closed");
            let _ = known && !(request.status == "declined" && request.reason.trim().is_empty());
        }
        4 => {
            let Ok(request) = json_body::<runtime::receipts::RevokeRequest>(&body) else { return };
            let _ = request.reason.trim().is_empty();
        }
        _ => {
            let Ok(input) = json_body::<runtime::assessments::DashInput>(&body) else { return };
            let _ = runtime::assessments::assess(&input, "2026-01-01", "fuzz");
        }
    }
});
