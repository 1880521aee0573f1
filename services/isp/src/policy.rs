//! The partnership's information-sharing protocol as data, and the one function that
//! decides a disclosure.
//!
//! The file (deploy/isp/policy.toml) names purposes and lawful bases, what each recipient
//! role may receive and must never receive, and rules: which roles may send which kinds to
//! which roles, for what purposes, on which bases, under what consent rule. Every decision
//! names the rule that made it and the policy version.

use std::collections::{BTreeMap, BTreeSet};

use proto::v1::{ConsentState, RiskLevel};
use serde::{Deserialize, Serialize};

use crate::{Denial, IspError, Kind, Role, Schema, kind};
// The names of consent states and risk levels live in `codes`, below consent records and risk
// summaries; they stay reachable here, where the other crates have always found them.
pub use crate::codes::{consent_name, parse_consent, parse_risk, risk_name};

/// When consent is needed for a rule's disclosures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentRule {
    /// Only with consent given.
    Required,
    /// With consent given, or without it when the risk is high and the lawful basis is one
    /// of the rule's `bases_without_consent` (necessary and proportionate, recorded).
    RequiredUnlessHighRisk,
    /// Consent is not the basis (replies, actions and acknowledgements within a case).
    NotRequired,
}

/// What one recipient role may receive.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePolicy {
    /// Category patterns the role may receive ("survivor.*", "risk.dash"). Anything else is
    /// removed before sealing.
    #[serde(default)]
    pub receives: Vec<String>,
    /// Category patterns no consent or basis overrides. A send that carries one is refused.
    #[serde(default)]
    pub never: Vec<String>,
    /// Kind patterns the role must never receive, whatever a rule says ("marac.*").
    #[serde(default)]
    pub never_kinds: Vec<String>,
    /// Whether agencies of this role match people across agencies, and so hold the
    /// partnership's subject-ref key (default: yes). One that does not (the perpetrator
    /// pathway) gets no key, and what is sent to it carries a link token in place of the
    /// survivor's subject ref (see [`crate::AgencyKeys::link_ref`]).
    #[serde(default = "yes")]
    pub subject_key: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub from: Vec<Role>,
    pub to: Vec<Role>,
    pub kinds: Vec<String>,
    pub purposes: Vec<String>,
    pub lawful_bases: Vec<String>,
    pub consent: ConsentRule,
    #[serde(default)]
    pub bases_without_consent: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub version: String,
    pub partnership: String,
    pub purposes: BTreeMap<String, String>,
    pub lawful_bases: BTreeMap<String, String>,
    /// Codes for why consent was not sought or why sharing without it was necessary
    /// ("asking-would-increase-risk"). They travel in clear (a header field, a consent
    /// record); the reasoning in words stays with the agency that decided.
    #[serde(default)]
    pub rationales: BTreeMap<String, String>,
    pub roles: BTreeMap<Role, RolePolicy>,
    pub rules: Vec<Rule>,
    /// The partnership's time targets, which every service watches (a missed one is an
    /// escalation and a signed `deadline_missed` entry in the ledger).
    #[serde(default)]
    pub deadlines: Deadlines,
}

/// Time targets, in hours. A policy without `[deadlines]` gets these defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deadlines {
    /// A staff member acknowledges (accepts, declines or closes) a referral.
    pub acknowledge_hours: u32,
    /// An IDVA service attempts first contact with a survivor referred to it.
    pub idva_contact_hours: u32,
    /// After a high-risk DASH result, the IDVA and MARAC referrals are sent.
    pub high_risk_referral_hours: u32,
    /// Early detectors' concerns are triaged by the housing DA team.
    pub concern_triage_hours: u32,
}

impl Default for Deadlines {
    fn default() -> Deadlines {
        Deadlines { acknowledge_hours: 48, idva_contact_hours: 48, high_risk_referral_hours: 24, concern_triage_hours: 72 }
    }
}

impl Deadlines {
    pub fn ms(hours: u32) -> i64 {
        i64::from(hours) * 3_600_000
    }
}

/// What is being decided: the clear facts of a disclosure and the categories it carries.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub from: Role,
    pub to: Role,
    pub kind: Kind,
    pub purpose: &'a str,
    pub lawful_basis: &'a str,
    pub consent: ConsentState,
    pub risk: RiskLevel,
    pub categories: &'a BTreeSet<String>,
}

/// An allowed disclosure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub rule: String,
    pub policy_version: String,
    /// Shared without the survivor's consent, under one of the rule's bases for that.
    pub without_consent: bool,
}

/// The answer of [`Policy::explain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub policy_version: String,
    pub allowed: bool,
    /// The rule that allowed it, or the rule (or never-rule) that refused it.
    pub rule: String,
    /// The refusal's reason code (empty when allowed).
    pub reason: String,
    pub detail: String,
    pub without_consent: bool,
    /// Categories that would reach the recipient (none when refused).
    pub flows: Vec<String>,
    /// Categories removed before sealing because the recipient's role may not receive them
    /// (all that could otherwise flow, when refused).
    pub removed: Vec<String>,
    /// Categories the recipient must never receive: a send carrying any is refused whole.
    pub refused: Vec<String>,
}

/// Whether a category or kind matches a pattern: exact, "prefix.*" or "*".
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// The line of `text` a problem sentence from [`Policy::problems`] is about: the section it
/// names (`roles.X`, `rule "ID"`, `rationales`), then the first line in that section holding
/// the first quoted value the sentence mentions.
fn locate(text: &str, problem: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let start = if let Some(rest) = problem.strip_prefix("rule \"") {
        let id = rest.split('"').next().unwrap_or_default();
        lines.iter().position(|l| l.replace(' ', "") == format!("id=\"{id}\""))
    } else if let Some(rest) = problem.strip_prefix("roles.") {
        let role = rest.split(['.', ':']).next().unwrap_or_default();
        lines.iter().position(|l| l.trim() == format!("[roles.{role}]"))
    } else {
        let section = problem.split([':', ' ']).next().unwrap_or_default();
        lines.iter().position(|l| l.trim() == format!("[{section}]"))
    };
    let Some(start) = start else { return 1 };
    let value = problem.split('"').nth(if problem.starts_with("rule \"") { 3 } else { 1 });
    let end = lines.iter().enumerate().skip(start + 1).find(|(_, l)| l.trim_start().starts_with('[')).map_or(lines.len(), |(i, _)| i);
    value
        .and_then(|v| (start..end).find(|&i| lines[i].contains(&format!("\"{v}\""))))
        .unwrap_or(start)
        + 1
}

fn any_match(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| matches(p, name))
}

impl Policy {
    /// Parses and checks a policy against the schema's categories and the known kinds.
    pub fn from_toml(text: &str, schema: &Schema) -> Result<Policy, IspError> {
        let policy: Policy =
            toml::from_str(text).map_err(|e| IspError::Invalid { what: "the policy".into(), detail: e.to_string() })?;
        let problems = policy.problems(schema);
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(IspError::Invalid { what: format!("policy {}", policy.version), detail: problems.join("; ") })
        }
    }

    /// Checks a draft: every problem with the 1-based line it is on in `text` (the line of the
    /// offending value, or of the section it is in). A TOML syntax or type error is one
    /// problem at the line the parser names.
    pub fn check_draft(text: &str, schema: &Schema) -> Result<Policy, Vec<(usize, String)>> {
        let policy: Policy = match toml::from_str(text) {
            Ok(p) => p,
            Err(e) => {
                let line = e.span().map_or(1, |span| text[..span.start.min(text.len())].matches('\n').count() + 1);
                return Err(vec![(line, e.message().to_owned())]);
            }
        };
        let problems = policy.problems(schema);
        if problems.is_empty() {
            return Ok(policy);
        }
        Err(problems.into_iter().map(|p| (locate(text, &p), p)).collect())
    }

    pub fn load(path: &std::path::Path, schema: &Schema) -> Result<Policy, IspError> {
        Policy::from_toml(&crate::directory::read(path)?, schema)
    }

    /// Everything wrong with the policy, each as a sentence naming where.
    pub fn problems(&self, schema: &Schema) -> Vec<String> {
        let mut problems = Vec::new();
        let categories = schema.categories();
        for (role, rp) in &self.roles {
            for pattern in rp.receives.iter().chain(&rp.never) {
                if !categories.iter().any(|c| matches(pattern, c)) {
                    problems.push(format!("roles.{role}: category pattern {pattern:?} matches no payload field"));
                }
            }
            for pattern in &rp.never_kinds {
                if !kind::ALL.iter().any(|k| matches(pattern, kind::name(*k))) {
                    problems.push(format!("roles.{role}.never_kinds: {pattern:?} matches no kind"));
                }
            }
        }
        // What travels in clear headers is a policy token (crate::clear::is_token).
        let named = std::iter::once(("version", &self.version))
            .chain(self.purposes.keys().map(|k| ("purposes", k)))
            .chain(self.lawful_bases.keys().map(|k| ("lawful_bases", k)))
            .chain(self.rules.iter().map(|r| ("rules", &r.id)));
        for (section, v) in named.filter(|(_, v)| !crate::clear::is_token(v)) {
            problems.push(format!("{section}: {v:?} must be 1-64 letters, digits, '-', '_' or '.' (it travels in clear headers)"));
        }
        for code in self.rationales.keys() {
            if !crate::clear::is_token(code) {
                problems.push(format!("rationales: code {code:?} must be letters, digits, '-', '_' or '.' (it travels in clear)"));
            }
        }
        let mut ids = BTreeSet::new();
        for rule in &self.rules {
            let at = format!("rule {:?}", rule.id);
            if !ids.insert(&rule.id) {
                problems.push(format!("{at}: the id is used twice"));
            }
            for k in &rule.kinds {
                if kind::parse(k).is_none() {
                    problems.push(format!("{at}: unknown kind {k:?}"));
                }
            }
            for p in &rule.purposes {
                if !self.purposes.contains_key(p) {
                    problems.push(format!("{at}: purpose {p:?} is not in [purposes]"));
                }
            }
            for b in rule.lawful_bases.iter().chain(&rule.bases_without_consent) {
                if !self.lawful_bases.contains_key(b) {
                    problems.push(format!("{at}: lawful basis {b:?} is not in [lawful_bases]"));
                }
            }
            for b in &rule.bases_without_consent {
                if !rule.lawful_bases.contains(b) {
                    problems.push(format!("{at}: basis without consent {b:?} is not among the rule's lawful_bases"));
                }
            }
            if rule.consent == ConsentRule::RequiredUnlessHighRisk && rule.bases_without_consent.is_empty() {
                problems.push(format!("{at}: consent = \"required-unless-high-risk\" needs bases_without_consent"));
            }
            if !rule.bases_without_consent.is_empty() && self.rationales.is_empty() {
                problems.push(format!("{at}: sharing without consent needs a [rationales] catalogue to record why"));
            }
            for to in &rule.to {
                if !self.roles.contains_key(to) {
                    problems.push(format!("{at}: recipient role {to} has no [roles.{to}] section"));
                }
                if *to == Role::Ig {
                    problems.push(format!("{at}: the ig role is never a recipient of case content"));
                }
            }
        }
        problems
    }

    /// Whether agencies of `role` hold the subject-ref key and see subject refs in clear
    /// headers (every role the policy does not say otherwise of).
    pub fn holds_subject_key(&self, role: Role) -> bool {
        self.roles.get(&role).is_none_or(|rp| rp.subject_key)
    }

    /// What the role may receive: allowed by `receives` and not by `never`.
    pub fn receivable(&self, role: Role, category: &str) -> bool {
        self.roles
            .get(&role)
            .is_some_and(|rp| any_match(&rp.receives, category) && !any_match(&rp.never, category))
    }

    /// Decides a disclosure. `request.categories` are the categories the payload carries
    /// before minimisation: any that breaks a never-rule refuses the whole send (a near miss),
    /// the others the role may not receive are removed by the caller with [`Self::receivable`].
    pub fn decide(&self, request: &Request<'_>) -> Result<Decision, Denial> {
        let kind_name = kind::name(request.kind);
        let deny = |rule: &str, reason: &'static str, detail: String| Denial {
            rule: rule.to_owned(),
            reason,
            detail,
            forbidden: Vec::new(),
        };
        let role_rule = format!("roles.{}", request.to);
        let Some(rp) = self.roles.get(&request.to) else {
            return Err(deny(&role_rule, "role_not_recipient", format!("role {} receives nothing under this policy", request.to)));
        };
        if any_match(&rp.never_kinds, kind_name) {
            return Err(deny(
                &format!("{role_rule}.never_kinds"),
                "never_allowed_kind",
                format!("{kind_name} must never reach a {} agency", request.to),
            ));
        }
        let forbidden: Vec<String> = request.categories.iter().filter(|c| any_match(&rp.never, c)).cloned().collect();
        if !forbidden.is_empty() {
            return Err(Denial {
                rule: format!("{role_rule}.never"),
                reason: "never_allowed_field",
                detail: format!("{} must never reach a {} agency; remove them and send again", forbidden.join(", "), request.to),
                forbidden,
            });
        }
        let mut candidates = self.rules.iter().filter(|r| {
            r.from.contains(&request.from) && r.to.contains(&request.to) && r.kinds.iter().any(|k| k == kind_name)
        });
        let Some(first) = candidates.next() else {
            return Err(deny(
                "no-rule",
                "no_flow",
                format!("no rule lets {} send {kind_name} to {}", request.from, request.to),
            ));
        };
        let mut first_denial = None;
        for rule in std::iter::once(first).chain(candidates) {
            match self.check_rule(rule, request) {
                Ok(decision) => return Ok(decision),
                Err(denial) => {
                    first_denial.get_or_insert(denial);
                }
            }
        }
        Err(first_denial.expect("at least one candidate rule was checked"))
    }

    /// What `hub policy explain` prints: the decision for a kind of disclosure between two
    /// roles, and which of the categories that kind can carry would flow, be removed before
    /// sealing, or refuse the whole send (never-rules). The decision is taken as if the
    /// payload carried every category the recipient may hold, so a never-rule on one field
    /// does not hide what the rule itself says.
    pub fn explain(&self, schema: &Schema, request: &Request<'_>) -> Explanation {
        let all = schema.kind_categories(request.kind);
        let never = |c: &String| self.roles.get(&request.to).is_some_and(|rp| any_match(&rp.never, c));
        let refused: Vec<String> = all.iter().filter(|c| never(c)).cloned().collect();
        let flows: Vec<String> = all.iter().filter(|c| self.receivable(request.to, c)).cloned().collect();
        let removed: Vec<String> = all.iter().filter(|c| !never(c) && !self.receivable(request.to, c)).cloned().collect();
        let carried: BTreeSet<String> = flows.iter().cloned().collect();
        let decision = self.decide(&Request { categories: &carried, ..request.clone() });
        let (allowed, rule, reason, detail, without_consent) = match decision {
            Ok(d) => (true, d.rule, String::new(), String::new(), d.without_consent),
            Err(d) => (false, d.rule, d.reason.to_owned(), d.detail, false),
        };
        let (flows, removed) = if allowed { (flows, removed) } else { (Vec::new(), all.iter().filter(|c| !never(c)).cloned().collect()) };
        Explanation { policy_version: self.version.clone(), allowed, rule, reason, detail, without_consent, flows, removed, refused }
    }

    /// The first purpose and lawful basis of the first rule that lets `from` send `kind` to
    /// `to`: what the runtime uses for messages staff do not compose (acknowledgements).
    pub fn defaults_for(&self, from: Role, to: Role, kind: Kind) -> Option<(&str, &str)> {
        let name = kind::name(kind);
        self.rules
            .iter()
            .find(|r| r.from.contains(&from) && r.to.contains(&to) && r.kinds.iter().any(|k| k == name))
            .and_then(|r| Some((r.purposes.first()?.as_str(), r.lawful_bases.first()?.as_str())))
    }

    fn check_rule(&self, rule: &Rule, request: &Request<'_>) -> Result<Decision, Denial> {
        let deny = |reason: &'static str, detail: String| Denial { rule: rule.id.clone(), reason, detail, forbidden: Vec::new() };
        if !rule.purposes.iter().any(|p| p == request.purpose) {
            return Err(deny("purpose_not_allowed", format!("purpose {:?} is not one of {:?}", request.purpose, rule.purposes)));
        }
        if !rule.lawful_bases.iter().any(|b| b == request.lawful_basis) {
            return Err(deny(
                "lawful_basis_not_allowed",
                format!("lawful basis {:?} is not one of {:?}", request.lawful_basis, rule.lawful_bases),
            ));
        }
        let given = request.consent == ConsentState::Given;
        let without_consent = match rule.consent {
            ConsentRule::NotRequired => false,
            ConsentRule::Required if given => false,
            ConsentRule::Required => {
                return Err(deny("consent_required", format!("consent is {}; this rule needs consent given", consent_name(request.consent))));
            }
            ConsentRule::RequiredUnlessHighRisk if given => false,
            ConsentRule::RequiredUnlessHighRisk => {
                if request.risk != RiskLevel::High {
                    return Err(deny(
                        "consent_required",
                        format!("consent is {}; without consent this rule needs high risk", consent_name(request.consent)),
                    ));
                }
                if !rule.bases_without_consent.iter().any(|b| b == request.lawful_basis) {
                    return Err(deny(
                        "basis_not_valid_without_consent",
                        format!("without consent the lawful basis must be one of {:?}", rule.bases_without_consent),
                    ));
                }
                true
            }
        };
        Ok(Decision { rule: rule.id.clone(), policy_version: self.version.clone(), without_consent })
    }
}

/// The partnership policy shipped with the hub (deploy/isp/policy.toml), used by the demo.
pub const DEMO_POLICY: &str = include_str!("../../../deploy/isp/policy.toml");

#[cfg(test)]
mod tests;
