//! The signed record of an access to an agency's API: who read content, or tried something
//! and was refused. Ids and codes only: the staff member's login id, the route pattern, the
//! id of the item concerned and the outcome; never what was read.

use proto::v1::{Event, EventKind};

use crate::{AgencyKeys, Isp};

/// One access as the service that served or refused it saw it.
#[derive(Debug, Clone)]
pub struct Access {
    /// Who, by login id; empty when the attempt came with no valid login.
    pub staff_id: String,
    /// The route, e.g. `GET /inbox/{id}`.
    pub route: String,
    /// The id of the item the route names (an envelope, a consent record), when it has one.
    pub target: String,
    /// A stable code: allowed, not_found, gone, unauthenticated, forbidden, csrf, failed, login, login_failed, locked.
    pub outcome: String,
    pub at_ms: i64,
}

impl Isp {
    /// The signed `accessed` event of one access, for the ledger.
    pub fn access_event(&self, access: &Access) -> (Event, Vec<u8>) {
        access_event(&self.keys, &self.policy.version, access)
    }
}

/// The signed `accessed` event of one access by `keys`' agency, under `policy_version`.
pub fn access_event(keys: &AgencyKeys, policy_version: &str, access: &Access) -> (Event, Vec<u8>) {
    let event = Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        agency: keys.agency.clone(),
        kind: EventKind::Accessed as i32,
        occurred_at_ms: access.at_ms,
        policy_version: policy_version.to_owned(),
        rule: access.route.clone(),
        reason: access.outcome.clone(),
        envelope_id: access.target.clone(),
        staff_id: access.staff_id.clone(),
        ..Default::default()
    };
    let bytes = crate::seal::sign_event_as(keys, &event);
    (event, bytes)
}
