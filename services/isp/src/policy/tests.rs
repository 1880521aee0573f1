//! The policy as a decision table: (from, to, kind, purpose, basis, consent, risk, categories)
//! -> the decision and the rule that made it.

use std::collections::BTreeSet;

use proto::v1::{ConsentState as C, RiskLevel as R};

use super::*;
use crate::{Role::*, Schema};

fn policy() -> Policy {
    Policy::from_toml(DEMO_POLICY, &Schema::load().unwrap()).unwrap()
}

/// Ok(rule) or Err(reason).
type Expected = Result<&'static str, &'static str>;

#[allow(clippy::type_complexity)]
const CASES: &[(Role, Role, &str, &str, &str, C, R, &[&str], Expected)] = &[
    // consent given: the plain path
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-6-1-a", C::Given, R::High, &["survivor.identity"], Ok("idva-referral")),
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-6-1-a", C::Given, R::Standard, &["survivor.address"], Ok("idva-referral")),
    // without consent: only at high risk, only on the bases for that
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", C::Refused, R::High, &["survivor.identity"], Ok("idva-referral")),
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", C::Refused, R::Medium, &["survivor.identity"], Err("consent_required")),
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-6-1-e", C::NotSought, R::High, &["survivor.identity"], Err("basis_not_valid_without_consent")),
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", C::Withdrawn, R::Standard, &[], Err("consent_required")),
    (Housing, Marac, "marac.referral", "marac", "cda-1998-s115", C::NotSought, R::High, &["survivor.identity", "risk.dash"], Ok("marac-referral")),
    (Idva, Marac, "marac.referral", "marac", "uk-gdpr-6-1-a", C::Given, R::Medium, &["survivor.identity"], Ok("marac-referral")),
    (Idva, Marac, "marac.referral", "marac", "uk-gdpr-6-1-a", C::Expired, R::Medium, &["survivor.identity"], Err("consent_required")),
    // wrong purpose or basis for the rule
    (Housing, Idva, "housing.idva_referral", "rehousing", "uk-gdpr-6-1-a", C::Given, R::High, &[], Err("purpose_not_allowed")),
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-9-2-h", C::Given, R::High, &[], Err("lawful_basis_not_allowed")),
    // no flow at all
    (Perpetrator, Reciprocals, "reciprocal.request", "rehousing", "uk-gdpr-6-1-a", C::Given, R::High, &[], Err("no_flow")),
    (Idva, Housing, "marac.research_request", "marac", "uk-gdpr-6-1-e", C::Given, R::High, &[], Err("no_flow")),
    (Housing, Ig, "housing.idva_referral", "safeguarding", "uk-gdpr-6-1-a", C::Given, R::High, &[], Err("role_not_recipient")),
    // MARAC process: consent not the basis
    (Marac, Housing, "marac.research_request", "marac", "uk-gdpr-6-1-e", C::Refused, R::High, &["survivor.identity"], Ok("marac-to-members")),
    (Marac, Idva, "marac.action", "marac", "uk-gdpr-6-1-e", C::Unspecified, R::High, &["marac.action"], Ok("marac-to-members")),
    (Housing, Marac, "marac.research_response", "marac", "uk-gdpr-6-1-e", C::Unspecified, R::High, &["marac.research"], Ok("members-to-marac")),
    // reciprocals need consent
    (Housing, Reciprocals, "reciprocal.request", "rehousing", "uk-gdpr-6-1-a", C::Given, R::High, &["survivor.identity", "move.areas"], Ok("reciprocal-request")),
    (Housing, Reciprocals, "reciprocal.request", "rehousing", "uk-gdpr-6-1-e", C::NotSought, R::High, &["survivor.identity"], Err("consent_required")),
    (Reciprocals, Housing, "reciprocal.property_request", "rehousing", "uk-gdpr-6-1-e", C::Unspecified, R::Unspecified, &["move.areas", "household"], Ok("reciprocal-circulation")),
    (Housing, Reciprocals, "reciprocal.offer", "rehousing", "uk-gdpr-6-1-e", C::Unspecified, R::Unspecified, &["property"], Ok("reciprocal-offers")),
    // perpetrator pathways: never-rules no consent or basis overrides
    (Housing, Perpetrator, "perpetrator.referral", "perpetrator-intervention", "cda-1998-s115", C::Given, R::High, &["perpetrator.identity", "survivor.identity"], Ok("perpetrator-referral")),
    (Housing, Perpetrator, "perpetrator.referral", "perpetrator-intervention", "cda-1998-s115", C::Given, R::High, &["perpetrator.identity", "survivor.address"], Err("never_allowed_field")),
    (Idva, Perpetrator, "perpetrator.referral", "perpetrator-intervention", "cda-1998-s115", C::Given, R::High, &["survivor.new_address"], Err("never_allowed_field")),
    (Idva, Perpetrator, "perpetrator.referral", "perpetrator-intervention", "cda-1998-s115", C::Given, R::High, &["survivor.refuge"], Err("never_allowed_field")),
    (Idva, Perpetrator, "perpetrator.referral", "perpetrator-intervention", "cda-1998-s115", C::Given, R::High, &["survivor.contact"], Err("never_allowed_field")),
    (Housing, Perpetrator, "perpetrator.referral", "perpetrator-intervention", "cda-1998-s115", C::Given, R::High, &["marac.criteria"], Err("never_allowed_field")),
    (Marac, Perpetrator, "marac.action", "marac", "uk-gdpr-6-1-e", C::Given, R::High, &[], Err("never_allowed_kind")),
    (Reciprocals, Perpetrator, "reciprocal.property_request", "rehousing", "uk-gdpr-6-1-e", C::Given, R::High, &[], Err("never_allowed_kind")),
    (Perpetrator, Idva, "perpetrator.engagement_update", "safeguarding", "uk-gdpr-6-1-e", C::Unspecified, R::High, &["engagement"], Ok("perpetrator-engagement")),
    // acknowledgements flow both ways
    (Idva, Housing, "referral.ack", "case-coordination", "uk-gdpr-6-1-e", C::Unspecified, R::Unspecified, &["referral.status"], Ok("case-coordination")),
    (Perpetrator, Housing, "referral.ack", "case-coordination", "uk-gdpr-6-1-e", C::Unspecified, R::Unspecified, &["referral.status"], Ok("case-coordination")),
    // every consent state against a consent-required rule, at high risk (no way round it)
    (Idva, Reciprocals, "reciprocal.request", "rehousing", "uk-gdpr-6-1-a", C::Given, R::High, &["survivor.identity", "household"], Ok("reciprocal-request")),
    (Idva, Reciprocals, "reciprocal.request", "rehousing", "uk-gdpr-6-1-a", C::Refused, R::High, &["survivor.identity"], Err("consent_required")),
    (Idva, Reciprocals, "reciprocal.request", "rehousing", "uk-gdpr-6-1-a", C::Withdrawn, R::High, &["survivor.identity"], Err("consent_required")),
    (Idva, Reciprocals, "reciprocal.request", "rehousing", "uk-gdpr-6-1-a", C::Expired, R::High, &["survivor.identity"], Err("consent_required")),
    (Idva, Reciprocals, "reciprocal.request", "rehousing", "uk-gdpr-6-1-a", C::Unspecified, R::High, &["survivor.identity"], Err("consent_required")),
    (Housing, Reciprocals, "reciprocal.request", "rehousing", "uk-gdpr-6-1-a", C::Given, R::Standard, &["survivor.identity"], Ok("reciprocal-request")),
    // required-unless-high-risk: every consent state x risk level on the same flow
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", C::Given, R::Medium, &["survivor.identity"], Ok("idva-referral")),
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", C::NotSought, R::High, &["survivor.identity"], Ok("idva-referral")),
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", C::Withdrawn, R::High, &["survivor.identity"], Ok("idva-referral")),
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", C::Expired, R::High, &["survivor.identity"], Ok("idva-referral")),
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", C::Unspecified, R::High, &["survivor.identity"], Ok("idva-referral")),
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", C::NotSought, R::Standard, &["survivor.identity"], Err("consent_required")),
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", C::Refused, R::Unspecified, &["survivor.identity"], Err("consent_required")),
    (Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-6-1-a", C::Refused, R::High, &["survivor.identity"], Err("basis_not_valid_without_consent")),
    (Reciprocals, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-6-1-e", C::Given, R::Medium, &["survivor.identity"], Ok("idva-referral")),
    (Perpetrator, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", C::Refused, R::High, &["survivor.identity"], Ok("idva-referral")),
    (Idva, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-6-1-a", C::Given, R::High, &["survivor.identity"], Err("no_flow")),
    (Perpetrator, Marac, "marac.referral", "marac", "cda-1998-s115", C::Refused, R::High, &["perpetrator.identity"], Ok("marac-referral")),
    (Perpetrator, Marac, "marac.referral", "marac", "uk-gdpr-6-1-e", C::Refused, R::High, &["perpetrator.identity"], Err("basis_not_valid_without_consent")),
    (Partner, Marac, "marac.referral", "marac", "uk-gdpr-9-2-g-dpa-s1-p18", C::Withdrawn, R::Medium, &[], Err("consent_required")),
    (Marac, Marac, "marac.referral", "marac", "uk-gdpr-6-1-a", C::Given, R::High, &[], Err("no_flow")),
    // never-rules win over consent given and any basis, and over high risk
    (Idva, Perpetrator, "perpetrator.referral", "perpetrator-intervention", "uk-gdpr-6-1-e", C::Given, R::High, &["survivor.identity", "move.areas"], Err("never_allowed_field")),
    (Idva, Perpetrator, "perpetrator.referral", "perpetrator-intervention", "uk-gdpr-6-1-e", C::Given, R::Standard, &["household"], Err("never_allowed_field")),
    (Partner, Perpetrator, "perpetrator.referral", "perpetrator-intervention", "uk-gdpr-6-1-e", C::Given, R::High, &["children.school"], Err("never_allowed_field")),
    (Partner, Perpetrator, "perpetrator.referral", "perpetrator-intervention", "uk-gdpr-6-1-e", C::Refused, R::Standard, &["children.identity", "risk.level"], Ok("perpetrator-referral")),
    (Housing, Perpetrator, "reciprocal.move_completed", "rehousing", "uk-gdpr-6-1-e", C::Given, R::High, &[], Err("never_allowed_kind")),
    (Housing, Perpetrator, "marac.referral", "marac", "cda-1998-s115", C::Given, R::High, &[], Err("never_allowed_kind")),
    (Perpetrator, Housing, "perpetrator.engagement_update", "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", C::Unspecified, R::Medium, &["engagement"], Ok("perpetrator-engagement")),
    (Perpetrator, Housing, "perpetrator.engagement_update", "marac", "uk-gdpr-6-1-e", C::Unspecified, R::Medium, &["engagement"], Err("purpose_not_allowed")),
    // MARAC members, revocations and landlords
    (Marac, Partner, "marac.research_request", "marac", "cda-1998-s115", C::Unspecified, R::High, &["survivor.identity"], Ok("marac-to-members")),
    (Partner, Marac, "marac.action_update", "marac", "uk-gdpr-6-1-e", C::Unspecified, R::High, &["marac.action"], Ok("members-to-marac")),
    (Marac, Reciprocals, "marac.action", "marac", "uk-gdpr-6-1-e", C::Unspecified, R::High, &[], Err("no_flow")),
    (Housing, Idva, "disclosure.revoke", "case-coordination", "uk-gdpr-6-1-e", C::Withdrawn, R::Unspecified, &[], Ok("case-coordination")),
    (Housing, Idva, "disclosure.revoke", "case-coordination", "cda-1998-s115", C::Unspecified, R::Unspecified, &[], Err("lawful_basis_not_allowed")),
    (Reciprocals, Housing, "reciprocal.move_completed", "rehousing", "uk-gdpr-6-1-e", C::Unspecified, R::Unspecified, &["move.areas"], Ok("reciprocal-circulation")),
    (Reciprocals, Housing, "reciprocal.offer", "rehousing", "uk-gdpr-6-1-e", C::Unspecified, R::Unspecified, &[], Err("no_flow")),
    (Housing, Ig, "referral.ack", "case-coordination", "uk-gdpr-6-1-e", C::Unspecified, R::Unspecified, &[], Err("role_not_recipient")),
];

#[test]
fn decision_table() {
    assert!(CASES.len() >= 40, "the table has {} cases", CASES.len());
    let policy = policy();
    let mut failures = Vec::new();
    for (i, (from, to, kind, purpose, basis, consent, risk, categories, expected)) in CASES.iter().enumerate() {
        let categories: BTreeSet<String> = categories.iter().map(|c| c.to_string()).collect();
        let got = policy.decide(&Request {
            from: *from,
            to: *to,
            kind: crate::kind::parse(kind).unwrap(),
            purpose,
            lawful_basis: basis,
            consent: *consent,
            risk: *risk,
            categories: &categories,
        });
        let got: Result<&str, &str> = match &got {
            Ok(d) => Ok(d.rule.as_str()),
            Err(d) => Err(d.reason),
        };
        if got != *expected {
            failures.push(format!("case {i} ({from} -> {to} {kind}): expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn without_consent_is_flagged_and_names_the_version() {
    let policy = policy();
    let categories = BTreeSet::new();
    let d = policy
        .decide(&Request {
            from: Housing,
            to: Marac,
            kind: Kind::MaracReferral,
            purpose: "marac",
            lawful_basis: "cda-1998-s115",
            consent: C::Refused,
            risk: R::High,
            categories: &categories,
        })
        .unwrap();
    assert!(d.without_consent);
    assert_eq!(d.policy_version, "2026-11-demo.1");
}

#[test]
fn receivable_is_receives_minus_never() {
    let policy = policy();
    assert!(policy.receivable(Idva, "survivor.address"));
    assert!(!policy.receivable(Perpetrator, "survivor.address"));
    assert!(policy.receivable(Perpetrator, "perpetrator.address"));
    assert!(!policy.receivable(Reciprocals, "survivor.address"));
    assert!(!policy.receivable(Ig, "survivor.identity"));
}

#[test]
fn a_broken_draft_names_every_problem() {
    let schema = Schema::load().unwrap();
    let draft = DEMO_POLICY
        .replace("\"survivor.refuge\"", "\"survivor.refuj\"")
        .replace("kinds = [\"marac.referral\"]", "kinds = [\"marac.referal\"]")
        .replace("purposes = [\"rehousing\"]\nlawful_bases = [\"uk-gdpr-6-1-a\"", "purposes = [\"moving\"]\nlawful_bases = [\"uk-gdpr-6-1-a\"");
    let err = Policy::from_toml(&draft, &schema).unwrap_err().to_string();
    for needle in ["survivor.refuj", "marac.referal", "\"moving\""] {
        assert!(err.contains(needle), "{needle} not in {err}");
    }
}

#[test]
fn explain_names_what_flows_what_is_removed_and_what_is_refused() {
    let policy = policy();
    let schema = Schema::load().unwrap();
    let none = BTreeSet::new();
    let request = |from, to, kind, purpose, basis, consent, risk| Request {
        from,
        to,
        kind: crate::kind::parse(kind).unwrap(),
        purpose,
        lawful_basis: basis,
        consent,
        risk,
        categories: &none,
    };
    let e = policy.explain(&schema, &request(Housing, Reciprocals, "reciprocal.request", "rehousing", "uk-gdpr-6-1-a", C::Given, R::High));
    assert!(e.allowed && e.rule == "reciprocal-request" && e.policy_version == "2026-11-demo.1", "{e:?}");
    assert!(e.flows.contains(&"survivor.identity".to_string()) && e.flows.contains(&"move.areas".to_string()), "{e:?}");
    assert!(e.removed.contains(&"survivor.address".to_string()) && e.removed.contains(&"survivor.contact".to_string()), "{e:?}");
    assert!(e.refused.is_empty());

    let e = policy.explain(&schema, &request(Housing, Perpetrator, "perpetrator.referral", "perpetrator-intervention", "cda-1998-s115", C::Unspecified, R::High));
    assert!(e.allowed && e.rule == "perpetrator-referral", "{e:?}");
    for c in ["survivor.address", "survivor.contact", "survivor.refuge"] {
        assert!(e.refused.contains(&c.to_string()) && !e.flows.contains(&c.to_string()), "{c}: {e:?}");
    }
    assert!(e.flows.contains(&"perpetrator.identity".to_string()));

    let e = policy.explain(&schema, &request(Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-6-1-e", C::Refused, R::High));
    assert!(!e.allowed && e.reason == "basis_not_valid_without_consent" && e.flows.is_empty() && !e.removed.is_empty(), "{e:?}");
    let e = policy.explain(&schema, &request(Housing, Idva, "housing.idva_referral", "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", C::Refused, R::High));
    assert!(e.allowed && e.without_consent, "{e:?}");
}

#[test]
fn a_policy_that_allows_sharing_without_consent_needs_a_rationale_catalogue() {
    let schema = Schema::load().unwrap();
    let start = DEMO_POLICY.find("[rationales]").unwrap();
    let end = DEMO_POLICY[start..].find("# ----").unwrap() + start;
    let draft = format!("{}{}", &DEMO_POLICY[..start], &DEMO_POLICY[end..]);
    let err = Policy::from_toml(&draft, &schema).unwrap_err().to_string();
    assert!(err.contains("[rationales]"), "{err}");
}

#[test]
fn a_draft_check_names_the_line_of_each_problem() {
    let schema = Schema::load().unwrap();
    let line_of = |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    // A misspelt category in the housing role, and an unknown basis in the IDVA rule.
    let housing = DEMO_POLICY.find("[roles.housing]").unwrap();
    let mut draft = DEMO_POLICY.to_owned();
    let at = housing + draft[housing..].find("\"survivor.*\"").unwrap();
    draft.replace_range(at..at + "\"survivor.*\"".len(), "\"survivr.*\"");
    let draft = draft.replacen("lawful_bases = [\"uk-gdpr-6-1-a\", \"uk-gdpr-6-1-e\"", "lawful_bases = [\"uk-gdpr-6-1-a\", \"gdpr-made-up\"", 1);
    assert!(draft.contains("gdpr-made-up"), "the fixture no longer has the line this test edits");
    let problems = Policy::check_draft(&draft, &schema).unwrap_err();
    let find = |what: &str| problems.iter().find(|(_, p)| p.contains(what)).unwrap_or_else(|| panic!("no {what:?} in {problems:?}")).0;
    assert_eq!(find("survivr.*"), line_of(&draft, "\"survivr.*\""));
    assert_eq!(find("gdpr-made-up"), line_of(&draft, "gdpr-made-up"));
    // A syntax-level error is located by the parser.
    let broken = DEMO_POLICY.replacen("to = [\"idva\"]", "to = [\"idvaa\"]", 1);
    let problems = Policy::check_draft(&broken, &schema).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].0, line_of(&broken, "idvaa"));
    assert!(Policy::check_draft(DEMO_POLICY, &schema).is_ok());
}
