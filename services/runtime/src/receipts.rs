//! Receipts and revocation: the sender of a referral sees where it is.
//!
//! The recipient's service acknowledges on its own when a referral is stored (`received`,
//! i.e. delivered) and when someone first reads it (`opened`); staff accept, decline (with a
//! reason) or close it (with an outcome) through `POST /inbox/{id}/ack`. Each receipt is a
//! sealed `referral.ack` back to the sender, so every one is also in the ledger. The sender
//! can revoke a disclosure (`POST /disclosures/{id}/revoke`): a sealed `disclosure.revoke`
//! to the recipient, whose service then hides the content from its API and confirms with a
//! `revoked` receipt.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use bytes::Bytes;
use isp::{Isp, Kind, Opened, Outgoing};
use proto::v1::{AckStatus, DisclosureRevoke, Payload, ReferralAck, payload::Body};
use serde::Deserialize;
use serde_json::Value;
use sqlx::Row as _;

use crate::{
    auth::Staff,
    ctx::Ctx,
    db::Tx,
    error::{ApiError, json_body},
    send::SendError,
    status::Disclosure,
};

/// The status a receipt gives the sender's record.
pub fn status_of(status: AckStatus) -> Option<Disclosure> {
    Some(match status {
        AckStatus::Received => Disclosure::Received,
        AckStatus::Opened => Disclosure::Opened,
        AckStatus::Accepted => Disclosure::Accepted,
        AckStatus::Declined => Disclosure::Declined,
        AckStatus::Closed => Disclosure::Closed,
        AckStatus::Revoked => Disclosure::RevocationConfirmed,
        AckStatus::Unspecified => return None,
    })
}

/// The status an acknowledgement gives the recipient's own inbox row.
pub fn arrival_of(status: AckStatus) -> Option<crate::status::Arrival> {
    use crate::status::Arrival;
    Some(match status {
        AckStatus::Received => Arrival::Received,
        AckStatus::Opened => Arrival::Opened,
        AckStatus::Accepted => Arrival::Accepted,
        AckStatus::Declined => Arrival::Declined,
        AckStatus::Closed => Arrival::Closed,
        AckStatus::Revoked | AckStatus::Unspecified => return None,
    })
}

/// A receipt from the agency of `isp` for envelope `original` to its sender, as the policy
/// has it sent.
#[allow(clippy::too_many_arguments)]
pub fn receipt(
    isp: &Isp,
    original: &str,
    sender: &str,
    subject_ref: &str,
    case_ref: &str,
    status: AckStatus,
    reason: &str,
    outcome: &str,
    staff_id: &str,
) -> Result<Outgoing, SendError> {
    let sender_role = isp.directory.require(sender).map_err(SendError::Refused)?.role;
    let (purpose, basis) = isp.policy.defaults_for(isp.role, sender_role, Kind::ReferralAck).ok_or_else(|| {
        SendError::Refused(isp::IspError::Invalid { what: "the policy".into(), detail: format!("no rule lets a {} acknowledge to a {sender_role}", isp.role) })
    })?;
    Ok(Outgoing {
        recipient: sender.to_owned(),
        kind: Kind::ReferralAck,
        purpose: purpose.to_owned(),
        lawful_basis: basis.to_owned(),
        consent: None,
        risk: Default::default(),
        subject_ref: subject_ref.to_owned(),
        case_ref: case_ref.to_owned(),
        in_reply_to: original.to_owned(),
        justification: None,
        payload: Payload {
            body: Some(Body::ReferralAck(ReferralAck {
                envelope_id: original.to_owned(),
                status: status as i32,
                reason: reason.to_owned(),
                outcome: outcome.to_owned(),
                staff_id: staff_id.to_owned(),
            })),
        },
    })
}

/// The automatic receipts for envelopes stored together, queued in the caller's transaction
/// in one statement per table. One the policy refuses is logged (and is a near miss in the
/// ledger) but never stops the inbox.
/// `staff_id`: who caused it (the reader, for `opened`), empty for the service itself.
pub async fn auto_receipts(ctx: &Ctx, tx: &mut Tx, opened: &[&Opened], status: AckStatus, staff_id: &str) -> Result<(), sqlx::Error> {
    let mut batch = crate::db::Batch::on(tx);
    auto_receipts_into(ctx, &mut batch, opened, status, staff_id).await?;
    batch.run(tx).await
}

/// [`auto_receipts`], its writes added to a batch of the caller's transaction.
pub(crate) async fn auto_receipts_into(ctx: &Ctx, batch: &mut crate::db::Batch<'_>, opened: &[&Opened], status: AckStatus, staff_id: &str) -> Result<(), sqlx::Error> {
    let isp = ctx.isp();
    let mut outs = Vec::with_capacity(opened.len());
    for o in opened {
        let h = &o.header;
        match receipt(&isp, &h.envelope_id, &h.sender, &h.subject_ref, &h.case_ref, status, "", "", staff_id) {
            Ok(out) => outs.push(out),
            Err(e) => tracing::warn!(envelope_id = %h.envelope_id, error = %e, "no automatic receipt sent"),
        }
    }
    // A receipt relies on no consent record: nothing to look up before sealing, on every core.
    let (outs, sealed): (Vec<_>, Vec<_>) = crate::ctx::on_cores(outs, move |out| {
        let sealed = isp.seal(&out, None);
        (out, sealed)
    })
    .await
    .into_iter()
    .unzip();
    for (answer, out) in ctx.queue_many_into(batch, outs.iter().zip(sealed).map(|(out, sealed)| (out, None, sealed)).collect())?.into_iter().zip(&outs) {
        if let Err(e) = answer {
            tracing::warn!(envelope_id = %out.in_reply_to, error = %e, "no automatic receipt sent");
        }
    }
    Ok(())
}

/// The automatic receipt for one envelope, where one is due.
pub async fn auto_receipt(ctx: &Ctx, tx: &mut Tx, opened: &Opened, status: AckStatus, staff_id: &str) -> Result<(), sqlx::Error> {
    auto_receipts(ctx, tx, &[opened], status, staff_id).await
}

/// What a receipt changes at the sender: (status, detail, recipient, the recipient's staff member).
type Change<'a> = (Disclosure, &'a str, &'a str, &'a str);

/// Receipts arriving at the sender: each moves its record of the disclosure forward, if it
/// comes from that disclosure's recipient. Receipts of the same status and detail from the
/// same recipient (a batch of `received`, typically) take one statement.
pub async fn apply(tx: &mut Tx, opened: &[&Opened]) -> Result<(), sqlx::Error> {
    let receipts: Vec<(Change, &str)> = opened
        .iter()
        .filter_map(|o| {
            let Some(Body::ReferralAck(ack)) = &o.payload.body else { return None };
            let next = status_of(ack.status())?;
            let detail = if ack.reason.is_empty() { ack.outcome.as_str() } else { ack.reason.as_str() };
            Some(((next, detail, o.header.sender.as_str(), ack.staff_id.as_str()), ack.envelope_id.as_str()))
        })
        .collect();
    // Two receipts for one disclosure in the batch (accepted, then declined) must apply in
    // their order: then each goes alone, in stream order.
    let distinct = receipts.iter().map(|(_, id)| *id).collect::<std::collections::HashSet<_>>().len() == receipts.len();
    let mut groups: Vec<(Change, Vec<&str>)> = Vec::new();
    for (key, id) in receipts {
        match groups.iter_mut().find(|(k, _)| distinct && *k == key) {
            Some((_, ids)) => ids.push(id),
            None => groups.push((key, vec![id])),
        }
    }
    let now = isp::now_ms();
    for ((next, detail, recipient, staff_id), ids) in groups {
        // Who at the recipient first opened it, whatever the status now.
        if next == Disclosure::Opened && !staff_id.is_empty() {
            for chunk in ids.chunks(200) {
                let sql = format!(
                    "UPDATE sent SET opened_by = $1 WHERE recipient = $2 AND opened_by IS NULL AND envelope_id IN ({})",
                    crate::db::numbered(3, chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(staff_id).bind(recipient);
                for id in chunk {
                    query = query.bind(*id);
                }
                query.execute(&mut **tx).await?;
            }
        }
        // The update applies only from a status the receipt moves forward.
        let from: Vec<&str> = Disclosure::ALL.iter().filter(|current| current.moves_to(next)).map(|s| s.code()).collect();
        if from.is_empty() {
            continue;
        }
        for chunk in ids.chunks(200) {
            let sql = format!(
                "UPDATE sent SET status = $1, status_reason = $2, updated_at_ms = $3, status_by = $4 WHERE recipient = $5 AND status IN ({}) AND envelope_id IN ({})",
                crate::db::numbered(6, from.len()),
                crate::db::numbered(6 + from.len(), chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(next.code()).bind(detail).bind(now).bind(staff_id).bind(recipient);
            for status in &from {
                query = query.bind(*status);
            }
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// A revocation arriving at the recipient: hides the revoked disclosure (only one from the
/// same sender) and queues the confirmation, in the inbox transaction.
pub async fn apply_revocation(ctx: &Ctx, tx: &mut Tx, opened: &Opened) -> Result<(), sqlx::Error> {
    let Some(Body::DisclosureRevoke(revoke)) = &opened.payload.body else { return Ok(()) };
    let h = &opened.header;
    let hidden = sqlx::query(
        "UPDATE inbox SET status = $1, revoked_at_ms = $2, revoked_reason = $3 WHERE envelope_id = $4 AND sender = $5 AND revoked_at_ms IS NULL",
    )
    .bind(crate::status::Arrival::Revoked.code())
    .bind(isp::now_ms())
    .bind(&revoke.reason)
    .bind(&revoke.envelope_id)
    .bind(&h.sender)
    .execute(&mut **tx)
    .await?;
    if hidden.rows_affected() == 0 {
        tracing::warn!(envelope_id = %revoke.envelope_id, sender = %h.sender, "a revocation for a disclosure this agency does not hold from that sender");
        return Ok(());
    }
    tracing::info!(envelope_id = %revoke.envelope_id, sender = %h.sender, "disclosure revoked by its sender; content hidden");
    // Nothing is owed on a revoked referral any more.
    crate::deadlines::cancel_all(tx, &revoke.envelope_id, ctx.config.clock.now_ms()).await?;
    let confirmed = match receipt(&ctx.isp(), &revoke.envelope_id, &h.sender, &h.subject_ref, &h.case_ref, AckStatus::Revoked, "", "content hidden", "") {
        Ok(out) => ctx.send_in(tx, &out).await,
        Err(e) => Err(e),
    };
    match confirmed {
        Ok(_) => Ok(()),
        Err(SendError::Storage(e)) => Err(e),
        Err(e) => {
            tracing::warn!(envelope_id = %revoke.envelope_id, error = %e, "revocation applied but not confirmed");
            Ok(())
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Why (a short code or sentence; it travels sealed, never in clear).
    pub reason: String,
}

/// `POST /disclosures/{id}/revoke`: the sender withdraws a disclosure it made.
pub async fn revoke(State(ctx): State<Ctx>, Path(id): Path<String>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: RevokeRequest = json_body(&body)?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_request("a revocation needs a reason"));
    }
    let row = sqlx::query("SELECT recipient, subject_ref, case_ref, status FROM sent WHERE envelope_id = $1")
        .bind(&id)
        .fetch_optional(&ctx.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("disclosure"))?;
    let status = Disclosure::parse(row.try_get("status")?).ok_or_else(|| ApiError::internal("a disclosure's status is not one this service knows"))?;
    if status.is_revoked() {
        return Err(ApiError::conflict("this disclosure is already revoked"));
    }
    if status.never_sent() {
        return Err(ApiError::conflict("this disclosure was never sent (refused, stopped or set aside); there is nothing to revoke"));
    }
    let recipient: String = row.try_get("recipient")?;
    let isp = ctx.isp();
    let recipient_role = isp.directory.require(&recipient).map_err(|e| ApiError::internal(e))?.role;
    let (purpose, basis) = isp
        .policy
        .defaults_for(isp.role, recipient_role, Kind::DisclosureRevoke)
        .ok_or_else(|| ApiError::conflict("the policy has no rule for revoking a disclosure to this recipient"))?;
    let out = Outgoing {
        recipient,
        kind: Kind::DisclosureRevoke,
        purpose: purpose.to_owned(),
        lawful_basis: basis.to_owned(),
        consent: None,
        risk: Default::default(),
        subject_ref: row.try_get("subject_ref")?,
        case_ref: row.try_get("case_ref")?,
        in_reply_to: id.clone(),
        justification: None,
        payload: Payload { body: Some(Body::DisclosureRevoke(DisclosureRevoke { envelope_id: id.clone(), reason: request.reason.clone() })) },
    };
    let mut tx = ctx.pool.begin().await?;
    let outcome = ctx.send_in(&mut tx, &out).await;
    if outcome.is_ok() {
        crate::status::revoke_sent(&mut tx, &id, &request.reason, &staff.id, isp::now_ms()).await?;
    }
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    Ok((StatusCode::CREATED, Json(serde_json::to_value(outcome?).expect("serialisable"))))
}

#[cfg(test)]
mod tests {
    use super::status_of;
    use crate::status::Disclosure;
    use proto::v1::AckStatus;

    #[test]
    fn every_receipt_moves_a_delivered_disclosure_or_confirms_a_revocation() {
        for status in [AckStatus::Received, AckStatus::Opened, AckStatus::Accepted, AckStatus::Declined, AckStatus::Closed] {
            let next = status_of(status).unwrap();
            assert!(Disclosure::Published.moves_to(next), "{next}");
        }
        assert!(Disclosure::Revoked.moves_to(status_of(AckStatus::Revoked).unwrap()));
        assert_eq!(status_of(AckStatus::Unspecified), None);
    }
}
