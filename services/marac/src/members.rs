//! The member agencies of the MARAC: every agency of the partnership directory, taking part
//! now, that the protocol lets receive a kind from this MARAC (research requests, actions,
//! minutes), with the purpose and lawful basis of the rule that allows it. Nothing here names
//! a role: a partnership that adds police or health agencies (role `partner`) and gives them
//! a rule makes them members, and a role the policy never lets receive MARAC kinds (a
//! perpetrator pathway) is never one.

use std::collections::BTreeSet;

use isp::{Isp, Kind, Role, policy::Request};
use proto::v1::{ConsentState, RiskLevel};

/// A member agency, for one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub purpose: String,
    pub lawful_basis: String,
}

/// The members that may receive `kind` from this agency, in directory order.
pub fn members(isp: &Isp, kind: Kind) -> Vec<Member> {
    of(&isp.policy, isp.directory.active().map(|a| (a.id.as_str(), a.name.as_str(), a.role)), isp.agency(), isp.role, kind)
}

/// [`members`] from a policy and a list of (agency id, name, role).
pub fn of<'a>(policy: &isp::Policy, agencies: impl Iterator<Item = (&'a str, &'a str, Role)>, own: &str, own_role: Role, kind: Kind) -> Vec<Member> {
    let none = BTreeSet::new();
    agencies
        .filter(|(id, ..)| *id != own)
        .filter_map(|(id, name, role)| {
            let (purpose, basis) = policy.defaults_for(own_role, role, kind)?;
            let request = Request { from: own_role, to: role, kind, purpose, lawful_basis: basis, consent: ConsentState::Unspecified, risk: RiskLevel::Unspecified, categories: &none };
            policy.decide(&request).ok()?;
            Some(Member { id: id.to_owned(), name: name.to_owned(), role, purpose: purpose.to_owned(), lawful_basis: basis.to_owned() })
        })
        .collect()
}

/// The member of `id` for `kind`, if it is one.
pub fn member(isp: &Isp, kind: Kind, id: &str) -> Option<Member> {
    members(isp, kind).into_iter().find(|m| m.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_whom_the_policy_lets_receive_the_kind() {
        let policy = isp::Policy::from_toml(isp::policy::DEMO_POLICY, &isp::Schema::load().unwrap()).unwrap();
        let agencies = [
            ("housing-northbridge", "Housing", Role::Housing),
            ("idva-northbridge", "IDVA", Role::Idva),
            ("marac-northbridge", "MARAC", Role::Marac),
            ("reciprocals-scheme", "Reciprocals", Role::Reciprocals),
            ("perpetrator-pathways", "Pathways", Role::Perpetrator),
            ("police-northbridge", "Police", Role::Partner),
            ("ig-northbridge", "IG", Role::Ig),
        ];
        for kind in [Kind::MaracResearchRequest, Kind::MaracAction, Kind::MaracMinutes] {
            let got = of(&policy, agencies.iter().copied(), "marac-northbridge", Role::Marac, kind);
            let ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
            assert_eq!(ids, ["housing-northbridge", "idva-northbridge", "police-northbridge"], "{}", isp::kind::name(kind));
            assert!(got.iter().all(|m| m.purpose == "marac"));
        }
    }
}
