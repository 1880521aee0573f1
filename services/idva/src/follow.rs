//! A case follows its referral. A `housing.idva_referral` received opens a case awaiting
//! triage, with its contact deadline (due the policy's `idva_contact_hours` after receipt,
//! targeted at the referral's envelope id); the referrer's `disclosure.revoke` of that referral
//! closes the case (`referral_revoked`) and cancels what was owed on it; and the consent the
//! referral relied on is checked on every tick of the service: once withdrawn, the case is
//! marked and the person flagged `consent-withdrawn`, once.
//!
//! The first two run inside the inbox transaction (they commit with the envelope, or neither
//! does); the consent check reads the partnership's consent records, so it runs outside it,
//! a bounded number of cases a tick, those checked longest ago first.

use std::collections::HashMap;

use isp::consent::State;
use proto::v1::{DisclosureRevoke, Header};
use runtime::{
    ArrivalRows, Ctx, Tx,
    chronology::{self, Entry},
    deadlines::{self, Deadline},
};

use crate::{
    case::{Outcome, Status},
    store::{self, Change, NewCase},
};

/// The flag a person gets when the consent a referral about them relied on is withdrawn.
pub const CONSENT_WITHDRAWN_FLAG: &str = "consent-withdrawn";
/// When that flag is reviewed: within a week.
pub const CONSENT_FLAG_REVIEW_MS: i64 = 7 * 24 * 3_600_000;
/// How many cases' consent one tick checks (each a read of the partnership's consent bucket
/// for a record not read already in the tick).
pub const CONSENT_CHECKS_PER_TICK: i64 = 64;

/// Opens the cases received referrals ask for (stored together in one inbox transaction) in
/// one statement, and adds each one's contact deadline and chronology entry to `rows` (which
/// the inbox writes with its own).
pub async fn referrals_received(ctx: &Ctx, tx: &mut Tx, headers: &[&Header], rows: &mut ArrivalRows) -> anyhow::Result<()> {
    if headers.is_empty() {
        return Ok(());
    }
    let now = ctx.config.clock.now_ms();
    let isp = ctx.isp();
    let within = &isp.policy.deadlines;
    let consents: Vec<_> = headers.iter().map(|h| h.consent.clone().unwrap_or_default()).collect();
    let cases: Vec<NewCase> = headers
        .iter()
        .zip(&consents)
        .map(|(h, consent)| NewCase {
            id: &h.envelope_id,
            subject_ref: &h.subject_ref,
            case_ref: &h.case_ref,
            referrer: &h.sender,
            risk: isp::policy::risk_name(h.risk()),
            consent_id: &consent.consent_id,
            consent_recorded_by: match (consent.consent_id.is_empty(), consent.recorded_by.is_empty()) {
                (true, _) => "",
                (false, true) => h.sender.as_str(),
                (false, false) => consent.recorded_by.as_str(),
            },
            received_at_ms: now,
            triage_due_ms: now + isp::policy::Deadlines::ms(within.acknowledge_hours),
            contact_due_ms: now + isp::policy::Deadlines::ms(within.idva_contact_hours),
        })
        .collect();
    let opened = store::open_many(tx, &cases).await?;
    for (h, case) in headers.iter().zip(&cases).filter(|(h, _)| opened.contains(&h.envelope_id)) {
        rows.deadlines.push(Deadline {
            code: deadlines::IDVA_CONTACT.into(),
            target: h.envelope_id.clone(),
            subject_ref: h.subject_ref.clone(),
            case_ref: h.case_ref.clone(),
            counterpart: h.sender.clone(),
            due_at_ms: case.contact_due_ms,
        });
        if !h.subject_ref.is_empty() {
            rows.chronology.push(Entry {
                subject_ref: h.subject_ref.clone(),
                case_ref: h.case_ref.clone(),
                event: "case_opened".into(),
                code: case.risk.into(),
                item_id: h.envelope_id.clone(),
                counterpart: h.sender.clone(),
                at_ms: now,
                ..Default::default()
            });
        }
        tracing::info!(case_id = %h.envelope_id, subject_ref = %h.subject_ref, "IDVA case opened, awaiting triage");
    }
    Ok(())
}

/// Closes the case of a referral its sender revoked (`referral_revoked`), and cancels every
/// deadline still open on it. A revocation by anyone but the referrer, or of a case closed
/// already, changes nothing.
pub async fn referral_revoked(ctx: &Ctx, tx: &mut Tx, h: &Header, revoke: &DisclosureRevoke) -> anyhow::Result<()> {
    let Some(case) = store::get(&mut **tx, &revoke.envelope_id).await? else { return Ok(()) };
    if case.referrer != h.sender || !case.status.is_open() {
        return Ok(());
    }
    let now = ctx.config.clock.now_ms();
    let outcome = Outcome::ReferralRevoked;
    if !store::change(tx, &case.id, case.status, Status::Closed, Change::Closed { outcome, by: "" }, now).await? {
        anyhow::bail!("the case changed while its referral's revocation was applied");
    }
    deadlines::cancel_all(tx, &case.id, now).await?;
    let closed = Entry {
        subject_ref: case.subject_ref.clone(),
        case_ref: case.case_ref.clone(),
        event: store::event_of(crate::case::Step::Close).into(),
        code: outcome.code().into(),
        item_id: case.id.clone(),
        counterpart: case.referrer.clone(),
        at_ms: now,
        ..Default::default()
    };
    chronology::add(tx, &closed).await?;
    tracing::info!(case_id = %case.id, "the referrer revoked the referral: IDVA case closed");
    Ok(())
}

/// Checks the consent open cases rely on (at most [`CONSENT_CHECKS_PER_TICK`]); marks and
/// flags those whose consent is now withdrawn. How many were newly marked. A record that
/// cannot be read now is checked again next time.
pub async fn check_consents(ctx: &Ctx) -> anyhow::Result<usize> {
    let due = store::consent_to_check(&ctx.pool, CONSENT_CHECKS_PER_TICK).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let mut withdrawn: HashMap<(String, String), bool> = HashMap::new();
    let mut checked = Vec::with_capacity(due.len());
    let mut marked = 0;
    for (case_id, subject_ref, consent_id, recorded_by) in due {
        let key = (recorded_by.clone(), consent_id.clone());
        let is_withdrawn = match withdrawn.get(&key) {
            Some(w) => *w,
            None => match ctx.consent_record(&recorded_by, &consent_id).await {
                Ok(record) => {
                    let w = record.is_some_and(|r| r.record().state == State::Withdrawn);
                    withdrawn.insert(key, w);
                    w
                }
                Err(e) => {
                    tracing::warn!(case_id = %case_id, error = %format!("{e:#}"), "the consent an IDVA case relies on cannot be read now; checking again later");
                    continue;
                }
            },
        };
        if is_withdrawn && mark_withdrawn(ctx, &case_id, &subject_ref, &recorded_by).await? {
            marked += 1;
        }
        checked.push(case_id);
    }
    store::consent_checked(&ctx.pool, &checked, ctx.config.clock.now_ms()).await?;
    Ok(marked)
}

/// Marks a case whose consent was withdrawn, and flags the person unless a
/// `consent-withdrawn` flag is in force on them already; both once.
async fn mark_withdrawn(ctx: &Ctx, case_id: &str, subject_ref: &str, recorded_by: &str) -> anyhow::Result<bool> {
    let flagged = subject_ref.is_empty()
        || runtime::flags::flags(ctx, "subject_ref", subject_ref).await.map_err(|e| anyhow::anyhow!("reading flags: {}", e.body))?.iter().any(|f| f["code"] == CONSENT_WITHDRAWN_FLAG);
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    if !store::consent_withdrawn(&mut tx, case_id, now).await? {
        return Ok(false);
    }
    if !flagged {
        runtime::flags::flag_in(&mut tx, subject_ref, CONSENT_WITHDRAWN_FLAG, now, CONSENT_FLAG_REVIEW_MS).await?;
    }
    if !subject_ref.is_empty() {
        let seen = Entry {
            subject_ref: subject_ref.into(),
            event: "consent_withdrawn".into(),
            item_id: case_id.into(),
            counterpart: recorded_by.into(),
            at_ms: now,
            ..Default::default()
        };
        chronology::add(&mut tx, &seen).await?;
    }
    tx.commit().await?;
    tracing::warn!(case_id = %case_id, subject_ref = %subject_ref, "the consent an open IDVA case relied on was withdrawn: case marked, person flagged");
    Ok(true)
}
