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

/// A staff member's acknowledgement of a referral this agency received.
#[derive(Debug, Clone)]
pub struct Acknowledgement<'a> {
    /// The referral, its sender and its kind.
    pub envelope_id: &'a str,
    pub referrer: &'a str,
    pub kind: proto::v1::Kind,
    /// accepted, declined or closed.
    pub status: &'a str,
    pub staff_id: &'a str,
    pub at_ms: i64,
}

/// The signed `acknowledged` event of a staff acknowledgement, for the ledger: what the IG
/// report measures time to acknowledge by (the automatic receipts are not acknowledgements).
pub fn acknowledged_event(keys: &AgencyKeys, policy_version: &str, ack: &Acknowledgement) -> (Event, Vec<u8>) {
    let event = Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        agency: keys.agency.clone(),
        kind: EventKind::Acknowledged as i32,
        occurred_at_ms: ack.at_ms,
        policy_version: policy_version.to_owned(),
        reason: ack.status.to_owned(),
        envelope_id: ack.envelope_id.to_owned(),
        counterpart: ack.referrer.to_owned(),
        message_kind: ack.kind as i32,
        staff_id: ack.staff_id.to_owned(),
        ..Default::default()
    };
    let bytes = crate::seal::sign_event_as(keys, &event);
    (event, bytes)
}

/// A deadline that passed unmet.
#[derive(Debug, Clone)]
pub struct Missed<'a> {
    /// The deadline's code, e.g. `acknowledge`, `idva_contact`.
    pub code: &'a str,
    /// The item it is about (a referral, a case, a record), its case and subject.
    pub target: &'a str,
    pub case_ref: &'a str,
    pub subject_ref: &'a str,
    /// The other agency concerned (a referral's sender), if any.
    pub counterpart: &'a str,
    pub at_ms: i64,
}

/// The signed `deadline_missed` event, for the ledger.
pub fn deadline_missed_event(keys: &AgencyKeys, policy_version: &str, missed: &Missed) -> (Event, Vec<u8>) {
    let event = Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        agency: keys.agency.clone(),
        kind: EventKind::DeadlineMissed as i32,
        occurred_at_ms: missed.at_ms,
        policy_version: policy_version.to_owned(),
        rule: missed.code.to_owned(),
        reason: "missed".into(),
        envelope_id: missed.target.to_owned(),
        case_ref: missed.case_ref.to_owned(),
        subject_ref: missed.subject_ref.to_owned(),
        counterpart: missed.counterpart.to_owned(),
        ..Default::default()
    };
    let bytes = crate::seal::sign_event_as(keys, &event);
    (event, bytes)
}
