//! Message kinds: the proto enum, its dotted policy name and its subject token.

pub use proto::v1::Kind;

/// Every kind a payload can have, in proto order.
pub const ALL: [Kind; 22] = [
    Kind::IdvaReferral,
    Kind::MaracReferral,
    Kind::MaracResearchRequest,
    Kind::MaracResearchResponse,
    Kind::MaracAction,
    Kind::MaracActionUpdate,
    Kind::ReciprocalRequest,
    Kind::ReciprocalPropertyRequest,
    Kind::ReciprocalOffer,
    Kind::ReciprocalOfferResponse,
    Kind::ReciprocalMoveCompleted,
    Kind::PerpetratorReferral,
    Kind::PerpetratorEngagementUpdate,
    Kind::ReferralAck,
    Kind::DisclosureRevoke,
    Kind::ConsentChanged,
    Kind::RefugeReferral,
    Kind::MaracMinutes,
    Kind::ReciprocalStatus,
    Kind::ReciprocalApproval,
    Kind::ReciprocalUpdate,
    Kind::PerpetratorEnforcementRequest,
];

/// The name the policy file and the APIs use for a kind, e.g. `marac.research_request`.
pub fn name(kind: Kind) -> &'static str {
    match kind {
        Kind::Unspecified => "unspecified",
        Kind::IdvaReferral => "housing.idva_referral",
        Kind::MaracReferral => "marac.referral",
        Kind::MaracResearchRequest => "marac.research_request",
        Kind::MaracResearchResponse => "marac.research_response",
        Kind::MaracAction => "marac.action",
        Kind::MaracActionUpdate => "marac.action_update",
        Kind::ReciprocalRequest => "reciprocal.request",
        Kind::ReciprocalPropertyRequest => "reciprocal.property_request",
        Kind::ReciprocalOffer => "reciprocal.offer",
        Kind::ReciprocalOfferResponse => "reciprocal.offer_response",
        Kind::ReciprocalMoveCompleted => "reciprocal.move_completed",
        Kind::PerpetratorReferral => "perpetrator.referral",
        Kind::PerpetratorEngagementUpdate => "perpetrator.engagement_update",
        Kind::ReferralAck => "referral.ack",
        Kind::DisclosureRevoke => "disclosure.revoke",
        Kind::ConsentChanged => "consent.changed",
        Kind::RefugeReferral => "housing.refuge_referral",
        Kind::MaracMinutes => "marac.minutes",
        Kind::PerpetratorEnforcementRequest => "perpetrator.enforcement_request",
        Kind::ReciprocalStatus => "reciprocal.status",
        Kind::ReciprocalApproval => "reciprocal.approval",
        Kind::ReciprocalUpdate => "reciprocal.update",
    }
}

/// Parses a dotted kind name.
pub fn parse(name: &str) -> Option<Kind> {
    ALL.into_iter().find(|k| self::name(*k) == name)
}

/// The kind as one NATS subject token (dots would split it): `marac_research_request`.
pub fn subject_token(kind: Kind) -> String {
    name(kind).replace('.', "_")
}

/// Whether a kind opens a piece of work the recipient should acknowledge (a referral or
/// request), as opposed to a reply or a status message.
pub fn expects_ack(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::IdvaReferral
            | Kind::MaracReferral
            | Kind::MaracResearchRequest
            | Kind::ReciprocalRequest
            | Kind::ReciprocalPropertyRequest
            | Kind::PerpetratorReferral
            | Kind::RefugeReferral
            | Kind::PerpetratorEnforcementRequest
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_numbers_match_payload_members() {
        for kind in ALL {
            assert_eq!(parse(name(kind)), Some(kind));
            assert!(!subject_token(kind).contains('.'));
        }
        assert_eq!(parse("marac.nonsense"), None);
    }
}
