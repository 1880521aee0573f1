//! The names the policy, the APIs, the databases and the ledger give to the protocol's consent
//! states and risk levels (`not-sought`, `high`), and back.
//!
//! They live in their own module, below [`crate::policy`], [`crate::consent`] and
//! [`crate::risk`], so that each of those can name a state or a level without importing the
//! others. It imports no other isp module. [`crate::policy`] re-exports them.

use proto::v1::{ConsentState, RiskLevel};

/// The name of a consent state as the policy and APIs write it.
pub fn consent_name(state: ConsentState) -> &'static str {
    match state {
        ConsentState::Unspecified => "unspecified",
        ConsentState::Given => "given",
        ConsentState::Refused => "refused",
        ConsentState::NotSought => "not-sought",
        ConsentState::Withdrawn => "withdrawn",
        ConsentState::Expired => "expired",
    }
}

pub fn parse_consent(name: &str) -> Option<ConsentState> {
    [ConsentState::Given, ConsentState::Refused, ConsentState::NotSought, ConsentState::Withdrawn, ConsentState::Expired]
        .into_iter()
        .find(|s| consent_name(*s) == name)
}

pub fn risk_name(risk: RiskLevel) -> &'static str {
    match risk {
        RiskLevel::Unspecified => "unspecified",
        RiskLevel::Standard => "standard",
        RiskLevel::Medium => "medium",
        RiskLevel::High => "high",
    }
}

pub fn parse_risk(name: &str) -> Option<RiskLevel> {
    [RiskLevel::Standard, RiskLevel::Medium, RiskLevel::High].into_iter().find(|r| risk_name(*r) == name)
}
