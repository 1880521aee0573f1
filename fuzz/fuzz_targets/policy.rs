//! The policy file: `hub policy check` (`Policy::check_draft`, every problem with its line),
//! `hub policy explain` on a policy that passes, and a service taking up a newly signed policy
//! (`isp::signed::verify` of its `.sig` against the directory, then `Policy::from_toml`, which
//! must accept exactly what `hub policy check` passes).
//!
//! Input: the policy text, then optionally 0xFF and the signature file's text.
#![no_main]

use std::collections::BTreeSet;

use hub_fuzz::{Partnership, split, text};
use isp::{Policy, kind, policy::Request};
use libfuzzer_sys::fuzz_target;
use proto::v1::{ConsentState, RiskLevel};

fuzz_target!(|data: &[u8]| {
    let (policy_text, sig) = split(data);
    let Some(policy_text) = text(policy_text) else { return };
    let sig = sig.and_then(text);
    let p = Partnership::get();
    let draft = Policy::check_draft(policy_text, &p.schema);
    // What `hub policy check` passes, a service loads, and the reverse.
    assert_eq!(draft.is_ok(), Policy::from_toml(policy_text, &p.schema).is_ok(), "hub policy check and the service loader disagree");
    match draft {
        Ok(policy) => explain_every_rule(&policy, p),
        // What `hub policy check` prints.
        Err(problems) => {
            for (line, problem) in &problems {
                let _ = format!("policy.toml:{line}: {problem}");
            }
        }
    }
    let _ = isp::signed::verify(policy_text, sig, &p.directory);
});

/// `hub policy explain` and `decide` for the first sender and recipient of each rule.
fn explain_every_rule(policy: &Policy, p: &Partnership) {
    let categories = BTreeSet::new();
    for rule in policy.rules.iter().take(32) {
        let (Some(from), Some(to)) = (rule.from.first(), rule.to.first()) else { continue };
        for kind in rule.kinds.iter().take(8).filter_map(|k| kind::parse(k)) {
            for consent in [ConsentState::Given, ConsentState::NotSought] {
                let request = Request {
                    from: *from,
                    to: *to,
                    kind,
                    purpose: rule.purposes.first().map_or("", String::as_str),
                    lawful_basis: rule.lawful_bases.last().map_or("", String::as_str),
                    consent,
                    risk: RiskLevel::High,
                    categories: &categories,
                };
                let _ = policy.explain(&p.schema, &request);
                let _ = policy.defaults_for(*from, *to, kind);
            }
        }
    }
}
