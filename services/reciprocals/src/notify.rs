//! What the coordinator sends besides the property requests: each status of an application to
//! its parties (the referrer, and the applicant's current landlord when that is another
//! landlord of the scheme), the end of an application to the landlords its property request
//! went to, and the answer to an offer. Everything in the caller's transaction: sent if and
//! only if the change commits.
//!
//! A landlord the request was circulated to learns the reference and the stage, never the
//! person (no subject ref), nor the applicant's current landlord (a direct swap could reveal
//! the address she left).

use isp::{Kind, Outgoing, kind};
use proto::v1::{Payload, ReciprocalOfferResponse, ReciprocalStatus, payload::Body};
use runtime::{Ctx, SendError, Tx};

use crate::{
    scheme::{self, Areas, Reason},
    store::{self, Application},
};

/// One message to send.
struct Message<'a> {
    to: &'a str,
    subject_ref: &'a str,
    case_ref: &'a str,
    in_reply_to: &'a str,
    kind: Kind,
    body: Body,
}

/// Sends one message under the policy's rule for it; its envelope id, or None when the
/// protocol refused it (logged, and a near miss in the ledger). Only a storage failure is an
/// error: the caller's transaction is then not committed.
async fn send(ctx: &Ctx, tx: &mut Tx, m: Message<'_>) -> sqlx::Result<Option<String>> {
    let isp = ctx.isp();
    let (to, kind) = (m.to, m.kind);
    let defaults = isp.directory.get(to).and_then(|a| isp.policy.defaults_for(isp.role, a.role, kind));
    let Some((purpose, basis)) = defaults else {
        tracing::warn!(recipient = to, kind = kind::name(kind), "the policy has no rule for this message to this agency: not sent");
        return Ok(None);
    };
    let out = Outgoing {
        recipient: to.to_owned(),
        kind,
        purpose: purpose.to_owned(),
        lawful_basis: basis.to_owned(),
        subject_ref: m.subject_ref.to_owned(),
        case_ref: m.case_ref.to_owned(),
        in_reply_to: m.in_reply_to.to_owned(),
        payload: Payload { body: Some(m.body) },
        ..Default::default()
    };
    match ctx.send_in(tx, &out).await {
        Ok(sent) => Ok(Some(sent.envelope_id)),
        Err(SendError::Storage(e)) => Err(e),
        Err(e) => {
            tracing::warn!(recipient = to, kind = kind::name(kind), case_ref = m.case_ref, error = %e, "a message of the scheme was not sent");
            Ok(None)
        }
    }
}

/// The parties of an application: its referrer, and its current landlord when that is a
/// landlord of the scheme other than the referrer.
pub fn parties(ctx: &Ctx, app: &Application) -> Vec<String> {
    let mut parties = vec![app.referrer.clone()];
    if app.current_landlord != app.referrer && scheme::is_landlord(&ctx.isp().directory, &app.current_landlord) {
        parties.push(app.current_landlord.clone());
    }
    parties
}

/// Tells the application's parties its status as saved (its number is `status_seq`).
pub async fn status(ctx: &Ctx, tx: &mut Tx, app: &Application, areas: &Areas) -> sqlx::Result<()> {
    for party in parties(ctx, app) {
        let to_referrer = party == app.referrer;
        let message = ReciprocalStatus {
            application_ref: app.reference.clone(),
            stage: app.status.stage() as i32,
            reason: app.reason.clone(),
            request_envelope_id: if to_referrer { app.request_envelope_id.clone() } else { String::new() },
            sequence: app.status_seq as u32,
            areas_needed: areas.needed() as u32,
            current_landlord: app.current_landlord.clone(),
            approved_by: app.approved_by.clone(),
        };
        let in_reply_to = if to_referrer { app.request_envelope_id.as_str() } else { "" };
        let body = Body::ReciprocalStatus(message);
        send(ctx, tx, Message { to: &party, subject_ref: &app.subject_ref, case_ref: &app.reference, in_reply_to, kind: Kind::ReciprocalStatus, body }).await?;
    }
    Ok(())
}

/// Tells each landlord the property request went to (but `except`) that the application is
/// filled or ended: its stage and reason only.
pub async fn ended_to_circulated(ctx: &Ctx, tx: &mut Tx, app: &Application, except: &str) -> sqlx::Result<()> {
    for c in store::circulations(&mut **tx, &app.reference).await? {
        if c.landlord == except {
            continue;
        }
        let message = ReciprocalStatus {
            application_ref: app.reference.clone(),
            stage: app.status.stage() as i32,
            reason: app.reason.clone(),
            sequence: app.status_seq as u32,
            ..Default::default()
        };
        let body = Body::ReciprocalStatus(message);
        send(ctx, tx, Message { to: &c.landlord, subject_ref: "", case_ref: &app.reference, in_reply_to: &c.envelope_id, kind: Kind::ReciprocalStatus, body }).await?;
    }
    Ok(())
}

/// Answers an offer: accepted, or declined with its reason. The answer's envelope id, or ""
/// when it could not be sent.
pub async fn answer_offer(ctx: &Ctx, tx: &mut Tx, reference: &str, offer_envelope: &str, landlord: &str, property_ref: &str, decline: Option<Reason>) -> sqlx::Result<String> {
    let message = ReciprocalOfferResponse {
        application_ref: reference.to_owned(),
        property_ref: property_ref.to_owned(),
        accepted: decline.is_none(),
        reason: decline.map(|r| r.code().to_owned()).unwrap_or_default(),
    };
    // The reference an unknown application's offer named is payload text: it goes back sealed,
    // and in the clear header only when it is a reference at all.
    let case_ref = if isp::clear::is_case_ref(reference) { reference } else { "" };
    let body = Body::ReciprocalOfferResponse(message);
    let sent = send(ctx, tx, Message { to: landlord, subject_ref: "", case_ref, in_reply_to: offer_envelope, kind: Kind::ReciprocalOfferResponse, body }).await?;
    Ok(sent.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use isp::{Policy, Role, Schema, policy::Request};
    use proto::v1::{ConsentState as C, RiskLevel as R};

    /// The kind of each message this module sends.
    const KINDS: [isp::Kind; 2] = [isp::Kind::ReciprocalStatus, isp::Kind::ReciprocalOfferResponse];

    fn shipped() -> (Policy, Schema) {
        let schema = Schema::load().expect("schema");
        (Policy::from_toml(isp::policy::DEMO_POLICY, &schema).expect("the shipped policy"), schema)
    }

    fn decide(policy: &Policy, from: Role, to: Role, kind: isp::Kind, carried: &[&str]) -> Result<String, &'static str> {
        let categories: BTreeSet<String> = carried.iter().map(|c| c.to_string()).collect();
        let request = Request { from, to, kind, purpose: "rehousing", lawful_basis: "uk-gdpr-6-1-e", consent: C::Unspecified, risk: R::Unspecified, categories: &categories };
        policy.decide(&request).map(|d| d.rule).map_err(|d| d.reason)
    }

    #[test]
    fn the_scheme_s_messages_go_where_the_policy_says_and_never_to_a_pathway() {
        let (policy, _) = shipped();
        for kind in KINDS {
            assert!(decide(&policy, Role::Reciprocals, Role::Housing, kind, &["move.reference"]).is_ok(), "{kind:?} to a landlord");
            assert_eq!(decide(&policy, Role::Reciprocals, Role::Perpetrator, kind, &[]), Err("never_allowed_kind"), "{kind:?}");
        }
        assert_eq!(decide(&policy, Role::Reciprocals, Role::Idva, isp::Kind::ReciprocalStatus, &["move.reference", "move.status"]), Ok("reciprocal-status".into()));
        assert_eq!(decide(&policy, Role::Housing, Role::Reciprocals, isp::Kind::ReciprocalApproval, &["move.reference", "move.approval"]), Ok("reciprocal-approval".into()));
        assert!(decide(&policy, Role::Idva, Role::Reciprocals, isp::Kind::ReciprocalApproval, &[]).is_err(), "only a landlord approves");
        for from in [Role::Housing, Role::Idva] {
            assert_eq!(decide(&policy, from, Role::Reciprocals, isp::Kind::ReciprocalUpdate, &["move.areas", "move.status"]), Ok("reciprocal-update".into()));
        }
        assert!(policy.receivable(Role::Idva, "move.status") && !policy.receivable(Role::Idva, "move.areas"), "an IDVA referrer learns the status, not the areas");
        assert!(!policy.receivable(Role::Perpetrator, "move.status") && !policy.receivable(Role::Partner, "move.status"));
    }
}
