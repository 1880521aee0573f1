//! Consent records: signing, verifying, the current revision, and the check a disclosure
//! relying on consent must pass.

use std::sync::Arc;

use proto::v1::{ConsentState, ConsentTag};

use super::*;
use crate::{Isp, Policy, Role, Schema, directory::{DEMO_AGENCIES, generate_partnership}};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const SUBJECT: &str = "s-5f3c0e7a1d2b4c6e8f9a0b1c2d3e4f5a";
const OTHER_SUBJECT: &str = "s-00000000000000000000000000000001";

fn isps() -> Vec<Isp> {
    let schema = Arc::new(Schema::load().unwrap());
    let policy = Arc::new(Policy::from_toml(crate::policy::DEMO_POLICY, &schema).unwrap());
    let (directory, keys) = generate_partnership("test", &DEMO_AGENCIES).unwrap();
    let directory = Arc::new(directory);
    keys.into_iter().map(|k| Isp::new(k, directory.clone(), policy.clone(), schema.clone()).unwrap()).collect()
}

fn get<'a>(isps: &'a [Isp], id: &str) -> &'a Isp {
    isps.iter().find(|i| i.agency() == id).unwrap()
}

fn record(state: State, revision: u64) -> ConsentRecord {
    ConsentRecord {
        consent_id: "CON-1".into(),
        agency: HOUSING.into(),
        revision,
        subject_ref: SUBJECT.into(),
        state,
        reason: String::new(),
        scope: Scope { roles: vec![Role::Idva], agencies: vec!["marac-northbridge".into()], purposes: vec!["safeguarding".into(), "marac".into()] },
        recorded_by: "hsg.staff-7".into(),
        recorded_at_ms: 1_000,
        created_at_ms: 1_000,
        expires_at_ms: Some(10_000),
    }
}

fn tag(state: ConsentState) -> ConsentTag {
    ConsentTag { consent_id: "CON-1".into(), state: state as i32, recorded_by: HOUSING.into() }
}

fn use_at<'a>(recipient: &'a str, role: Role, purpose: &'a str, at: i64) -> Use<'a> {
    Use { recipient, recipient_role: role, purpose, subject_ref: SUBJECT, expiry_at_ms: at }
}

#[test]
fn the_owner_signs_and_anyone_verifies() {
    let isps = isps();
    let housing = get(&isps, HOUSING);
    let bytes = housing.sign_consent(&record(State::Given, 1)).unwrap();
    let v = verify(&housing.directory, HOUSING, "CON-1", &bytes).unwrap();
    assert_eq!(v.record().state, State::Given);
    // The stored value holds codes and refs only: no room for a name or free text.
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains(SUBJECT) && text.contains("hsg.staff-7"));
}

#[test]
fn a_record_written_by_another_agency_is_rejected_on_read() {
    let isps = isps();
    let (housing, idva) = (get(&isps, HOUSING), get(&isps, IDVA));
    // IDVA cannot sign a record in housing's name...
    assert!(matches!(idva.sign_consent(&record(State::Given, 2)), Err(IspError::Invalid { .. })));
    // ...and a value IDVA signed with its own key under housing's key is not housing's.
    let mut forged = record(State::Given, 2);
    forged.agency = IDVA.into();
    let idva_bytes = idva.sign_consent(&forged).unwrap();
    assert_eq!(verify(&housing.directory, HOUSING, "CON-1", &idva_bytes), Err(RecordError::NotSignedByOwner(HOUSING.into())));
    // A value altered after signing fails too.
    let good = housing.sign_consent(&record(State::Withdrawn, 2)).unwrap();
    let altered = String::from_utf8(good.clone()).unwrap().replace("withdrawn", "given");
    assert!(verify(&housing.directory, HOUSING, "CON-1", altered.as_bytes()).is_err());
    // Housing's own record of another id cannot be moved to this key.
    assert_eq!(verify(&housing.directory, HOUSING, "c-2", &good), Err(RecordError::WrongKey));
}

#[test]
fn the_current_record_is_the_highest_verified_revision_and_withdrawal_is_final() {
    let isps = isps();
    let (housing, idva) = (get(&isps, HOUSING), get(&isps, IDVA));
    let given = housing.sign_consent(&record(State::Given, 1)).unwrap();
    let withdrawn = housing.sign_consent(&record(State::Withdrawn, 2)).unwrap();
    let mut forged = record(State::Given, 99);
    forged.agency = IDVA.into();
    let forged = idva.sign_consent(&forged).unwrap();
    // An old "given" replayed over the withdrawal, and a forged value on top: still withdrawn.
    let (current_record, rejected) =
        current(&housing.directory, HOUSING, "CON-1", [given.as_slice(), withdrawn.as_slice(), given.as_slice(), forged.as_slice()]);
    assert_eq!(current_record.unwrap().record().state, State::Withdrawn);
    assert_eq!(rejected, 1);
    // Nothing verifies: no record at all.
    let (none, rejected) = current(&housing.directory, HOUSING, "CON-1", [forged.as_slice(), b"garbage".as_slice()]);
    assert!(none.is_none());
    assert_eq!(rejected, 2);
}

#[test]
fn a_record_is_judged_against_the_directory_of_now_each_time_it_is_read() {
    let isps = isps();
    let housing = get(&isps, HOUSING);
    let given = housing.sign_consent(&record(State::Given, 1)).unwrap();
    // Read twice, it verifies twice.
    for _ in 0..2 {
        assert_eq!(verify(&housing.directory, HOUSING, "CON-1", &given).unwrap().record().state, State::Given);
    }
    // Housing suspended before the record was made (at 1,000 ms): refused, though it verified a moment ago.
    let suspended = housing.directory.suspended(HOUSING, 500, false).unwrap();
    assert_eq!(verify(&suspended, HOUSING, "CON-1", &given), Err(RecordError::NotSignedByOwner(HOUSING.into())));
    // Suspended after it was made: the record still stands.
    let later = housing.directory.suspended(HOUSING, 5_000, false).unwrap();
    assert!(verify(&later, HOUSING, "CON-1", &given).is_ok());
    // Another partnership's housing has other keys: the same bytes are not its record.
    let (elsewhere, _) = generate_partnership("elsewhere", &DEMO_AGENCIES).unwrap();
    assert_eq!(verify(&elsewhere, HOUSING, "CON-1", &given), Err(RecordError::NotSignedByOwner(HOUSING.into())));
    // A signature altered by one bit, read after the good one passed, fails every time.
    let mut signed: SignedConsent = serde_json::from_slice(&given).unwrap();
    let mut signature = hex::decode(&signed.signature).unwrap();
    signature[10] ^= 1;
    signed.signature = hex::encode(signature);
    let altered = serde_json::to_vec(&signed).unwrap();
    for _ in 0..2 {
        assert_eq!(verify(&housing.directory, HOUSING, "CON-1", &altered), Err(RecordError::NotSignedByOwner(HOUSING.into())));
    }
}

#[test]
fn a_record_with_names_or_missing_parts_is_refused_before_signing() {
    let isps = isps();
    let housing = get(&isps, HOUSING);
    let mut r = record(State::Given, 1);
    r.recorded_by = "Jane Smith".into();
    r.scope.purposes = vec!["gossip".into()];
    let err = housing.sign_consent(&r).unwrap_err().to_string();
    assert!(err.contains("staff id") && err.contains("unknown purpose"), "{err}");
    assert!(!err.contains("Jane"), "the error echoes the value: {err}");
    let mut r = record(State::NotSought, 1);
    r.reason.clear();
    assert!(housing.sign_consent(&r).unwrap_err().to_string().contains("not-sought needs a reason"));
    r.reason = "asking-would-increase-risk".into();
    housing.sign_consent(&r).unwrap();
    let mut r = record(State::Given, 1);
    r.scope = Scope { roles: vec![], agencies: vec![], purposes: vec!["safeguarding".into()] };
    assert!(housing.sign_consent(&r).unwrap_err().to_string().contains("recipient roles or agencies"));
}

/// (claimed state, record state, recipient, role, purpose, check time) -> Ok or reason.
#[test]
fn check_table() {
    let isps = isps();
    let housing = get(&isps, HOUSING);
    let v = |state: State| verify(&housing.directory, HOUSING, "CON-1", &housing.sign_consent(&record(state, 1)).unwrap()).unwrap();
    type Case = (ConsentState, Option<State>, &'static str, Role, &'static str, i64, Result<(), &'static str>);
    let cases: &[Case] = &[
        (ConsentState::Given, Some(State::Given), IDVA, Role::Idva, "safeguarding", 5_000, Ok(())),
        (ConsentState::Given, Some(State::Given), "marac-northbridge", Role::Marac, "marac", 5_000, Ok(())),
        (ConsentState::Given, Some(State::Given), IDVA, Role::Idva, "safeguarding", 10_000, Err("consent_expired")),
        (ConsentState::Given, Some(State::Given), "reciprocals-scheme", Role::Reciprocals, "safeguarding", 5_000, Err("consent_out_of_scope")),
        (ConsentState::Given, Some(State::Given), IDVA, Role::Idva, "rehousing", 5_000, Err("consent_out_of_scope")),
        (ConsentState::Given, Some(State::Withdrawn), IDVA, Role::Idva, "safeguarding", 5_000, Err("consent_withdrawn")),
        (ConsentState::Given, Some(State::Expired), IDVA, Role::Idva, "safeguarding", 5_000, Err("consent_expired")),
        (ConsentState::Given, Some(State::Refused), IDVA, Role::Idva, "safeguarding", 5_000, Err("consent_not_given")),
        (ConsentState::Given, None, IDVA, Role::Idva, "safeguarding", 5_000, Err("consent_unknown")),
        (ConsentState::Refused, Some(State::Refused), IDVA, Role::Idva, "safeguarding", 5_000, Ok(())),
        (ConsentState::Refused, Some(State::Given), IDVA, Role::Idva, "safeguarding", 5_000, Err("consent_state_mismatch")),
        (ConsentState::Withdrawn, Some(State::Withdrawn), IDVA, Role::Idva, "safeguarding", 5_000, Ok(())),
        (ConsentState::Expired, Some(State::Given), IDVA, Role::Idva, "safeguarding", 20_000, Ok(())),
        (ConsentState::NotSought, None, IDVA, Role::Idva, "safeguarding", 5_000, Err("consent_unknown")),
    ];
    for (i, (claimed, state, recipient, role, purpose, at, expected)) in cases.iter().enumerate() {
        let record = state.map(v);
        let got = check(Some(&tag(*claimed)), record.as_ref(), use_at(recipient, *role, purpose, *at)).map_err(|d| d.reason);
        assert_eq!(got, *expected, "case {i}");
    }
    // Consent about another person does not cover this one, nor explain this one's refusal,
    // withdrawal or consent not sought: every claim naming a record is checked against its subject.
    let other = Use { subject_ref: OTHER_SUBJECT, ..use_at(IDVA, Role::Idva, "safeguarding", 5_000) };
    for state in [State::Given, State::Refused, State::NotSought, State::Withdrawn] {
        let claimed = match state {
            State::Given => ConsentState::Given,
            State::Refused => ConsentState::Refused,
            State::NotSought => ConsentState::NotSought,
            _ => ConsentState::Withdrawn,
        };
        let mut r = record(state, 1);
        if state == State::NotSought {
            r.reason = "asking-would-increase-risk".into();
        }
        let r = verify(&housing.directory, HOUSING, "CON-1", &housing.sign_consent(&r).unwrap()).unwrap();
        assert_eq!(check(Some(&tag(claimed)), Some(&r), other).unwrap_err().reason, "consent_subject_mismatch", "{state:?}");
        assert_eq!(check(Some(&tag(claimed)), Some(&r), use_at(IDVA, Role::Idva, "safeguarding", 5_000)), Ok(()), "{state:?} about the same subject");
    }
    // Given with no record id; no tag; a not-sought claim with no record id (left to the policy).
    let no_id = ConsentTag { consent_id: String::new(), state: ConsentState::Given as i32, recorded_by: HOUSING.into() };
    assert_eq!(check(Some(&no_id), None, use_at(IDVA, Role::Idva, "safeguarding", 0)).unwrap_err().reason, "consent_unknown");
    assert_eq!(check(None, None, use_at(IDVA, Role::Idva, "safeguarding", 0)), Ok(()));
    let not_sought = ConsentTag { consent_id: String::new(), state: ConsentState::NotSought as i32, recorded_by: HOUSING.into() };
    assert_eq!(check(Some(&not_sought), None, use_at(IDVA, Role::Idva, "safeguarding", 0)), Ok(()));
}
