//! What arrives: a `perpetrator.referral` opens a case (`referred`), with the risk its
//! referrer proved, the reasons it gives (codes, and the short summary sealed at rest) and the
//! pathway's own pseudonym of the man, so a second referral of him, from anyone, is known for
//! a repeat; a housing provider's `referral.ack` of an enforcement request records its answer
//! on the enforcement step. Both run inside the inbox transaction: they commit with the
//! envelope, or neither does.

use isp::Opened;
use proto::v1::{AckStatus, PerpetratorReferral, ReferralAck};
use runtime::{
    Ctx, Tx,
    chronology::{self, Entry},
};

use crate::{
    case::{Reason, Status},
    refs,
    store::{self, Case},
};

/// Opens the case a referral asks for. A referral opened already (a redelivery) changes nothing.
pub async fn referral_received(ctx: &Ctx, tx: &mut Tx, opened: &Opened, r: &PerpetratorReferral) -> anyhow::Result<()> {
    let h = &opened.header;
    let now = ctx.config.clock.now_ms();
    let mut reasons: Vec<Reason> = Vec::new();
    for reason in r.reasons().filter_map(Reason::of) {
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
    let perpetrator_ref = match &r.perpetrator {
        Some(p) => refs::of(&refs::key(ctx, tx).await?, &p.full_name, &p.date_of_birth).unwrap_or_default(),
        None => String::new(),
    };
    // Only an agency id is kept: anything else could never be sent to.
    let report_to = if isp::clear::is_agency_id(&r.report_engagement_to) { r.report_engagement_to.clone() } else { String::new() };
    let case = Case {
        id: h.envelope_id.clone(),
        subject_ref: h.subject_ref.clone(),
        case_ref: h.case_ref.clone(),
        referrer: h.sender.clone(),
        pathway: r.pathway().as_str_name().to_owned(),
        report_engagement_to: report_to,
        status: Status::Referred,
        risk: isp::policy::risk_name(h.risk()).to_owned(),
        reasons,
        sealed_summary: ctx.seal_at_rest(r.reason_summary.trim())?,
        perpetrator_ref,
        received_at_ms: now,
        updated_at_ms: now,
    };
    if !store::open(tx, &case).await? {
        return Ok(());
    }
    if !case.subject_ref.is_empty() {
        let entry = Entry {
            subject_ref: case.subject_ref.clone(),
            case_ref: case.case_ref.clone(),
            event: "pathway_case_opened".into(),
            code: case.risk.clone(),
            item_id: case.id.clone(),
            counterpart: case.referrer.clone(),
            at_ms: now,
            ..Default::default()
        };
        chronology::add(tx, &entry).await?;
    }
    tracing::info!(case_id = %case.id, referrer = %case.referrer, repeat_known = !case.perpetrator_ref.is_empty(), "pathway case opened, referred");
    Ok(())
}

/// A housing provider's answer to an enforcement request (accepted, declined or closed),
/// recorded on its enforcement step; receipts that are not an answer, or answer anything
/// else, change nothing here.
pub async fn answer_received(ctx: &Ctx, tx: &mut Tx, opened: &Opened, ack: &ReferralAck) -> anyhow::Result<()> {
    let answer = match ack.status() {
        AckStatus::Accepted => "accepted",
        AckStatus::Declined => "declined",
        AckStatus::Closed => "closed",
        _ => return Ok(()),
    };
    let h = &opened.header;
    let Some(step) = store::enforcement_of(tx, &ack.envelope_id, &h.sender).await? else { return Ok(()) };
    let now = ctx.config.clock.now_ms();
    let by = if isp::clear::is_staff_id(&ack.staff_id) { ack.staff_id.as_str() } else { "" };
    store::answer_enforcement(tx, &step.id, answer, by, now).await?;
    if let Some(case) = store::get(&mut **tx, &step.case_id).await? {
        if !case.subject_ref.is_empty() {
            let entry = Entry {
                subject_ref: case.subject_ref.clone(),
                case_ref: case.case_ref.clone(),
                event: "enforcement_answered".into(),
                code: answer.into(),
                item_id: step.envelope_id.clone(),
                counterpart: h.sender.clone(),
                at_ms: now,
                ..Default::default()
            };
            chronology::add(tx, &entry).await?;
        }
    }
    tracing::info!(case_id = %step.case_id, provider = %h.sender, answer, "the housing provider answered an enforcement request");
    Ok(())
}
