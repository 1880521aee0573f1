//! What arrives moves the cycle on, inside the inbox transaction (it commits with the
//! envelope, or neither does):
//!
//! - a `marac.referral` opens a case awaiting screening, with the facts of its signed DASH
//!   summary and the criteria its referrer named, and the person's referrals are classified
//!   again ([`reclassify`]: duplicates, repeats, incidents in 12 months);
//! - the referrer's `disclosure.revoke` of a referral takes it out of repeat counting and
//!   closes its case unless it was heard;
//! - a member's `marac.research_response` naming a request (`in_reply_to`) answers it and meets
//!   its reply-by deadline;
//! - an owner's `marac.action_update` records the action's status, and `done` meets its due
//!   date.
//!
//! And on every tick, a referral answered through the generic inbox route (accepted, declined
//! or closed) moves its case as the same decision taken on the case would ([`follow_inbox`]).

use isp::Opened;
use proto::v1::{DisclosureRevoke, Header, MaracActionUpdate, MaracReferral, MaracResearchResponse};
use runtime::{
    Ctx, Tx,
    chronology::{self, Entry},
    deadlines,
};

use crate::{
    case::{self, ActionStatus, CloseReason, Decision, Status, Step},
    criteria::{Class, Criterion, Dash},
    store::{self, Change, NewCase},
};

/// Deadline code of a research request's reply-by date (target: the request's envelope id).
pub const RESEARCH_REPLY: &str = "marac_research_reply";
/// Deadline code of an action's due date (target: the action id).
pub const ACTION_DUE: &str = "marac_action_due";

/// An entry of a case in the person's chronology.
pub fn entry(c: &store::Case, event: &str, code: &str, staff_id: &str, now: i64) -> Entry {
    Entry {
        subject_ref: c.subject_ref.clone(),
        case_ref: c.marac_ref.clone(),
        event: event.into(),
        code: code.into(),
        item_id: c.id.clone(),
        counterpart: c.referrer.clone(),
        staff_id: staff_id.into(),
        at_ms: now,
        ..Default::default()
    }
}

/// Opens the case a received referral asks for.
pub async fn referral_received(ctx: &Ctx, tx: &mut Tx, opened: &Opened, r: &MaracReferral) -> anyhow::Result<()> {
    let h = &opened.header;
    let now = ctx.config.clock.now_ms();
    let dash = isp::risk::summary_of(&opened.payload).map(Dash::of);
    let mut claimed: Vec<Criterion> = r.criteria().filter_map(Criterion::from_proto).collect();
    claimed.sort_by_key(|c| c.code());
    claimed.dedup();
    let named_previous = r.previous_maracs.iter().filter_map(|p| chronology::day_ms(&p.date)).filter(|d| *d <= now).max().map(chronology::date_of).unwrap_or_default();
    let marac_ref = store::next_marac_ref(tx, &chronology::date_of(now)[..4]).await?;
    let case = NewCase {
        id: &h.envelope_id,
        subject_ref: &h.subject_ref,
        referrer: &h.sender,
        case_ref: &h.case_ref,
        marac_ref: &marac_ref,
        risk: isp::policy::risk_name(h.risk()),
        claimed: &claimed,
        named_previous_on: &named_previous,
        dash: dash.as_ref(),
        received_at_ms: now,
    };
    if !store::open(tx, &case).await? {
        return Ok(());
    }
    if !h.subject_ref.is_empty() {
        let opened = Entry {
            subject_ref: h.subject_ref.clone(),
            case_ref: marac_ref.clone(),
            event: "marac_case_opened".into(),
            code: Status::Received.code().into(),
            item_id: h.envelope_id.clone(),
            counterpart: h.sender.clone(),
            at_ms: now,
            ..Default::default()
        };
        chronology::add(tx, &opened).await?;
    }
    reclassify(tx, &h.subject_ref, &h.envelope_id, now).await?;
    tracing::info!(case_id = %h.envelope_id, subject_ref = %h.subject_ref, marac_ref = %marac_ref, "MARAC case opened, awaiting screening");
    Ok(())
}

fn same(a: &Class, b: &Class) -> bool {
    let previous = |c: &Class| c.repeat_of.as_ref().map(|p| (p.case_id.clone(), chronology::date_of(p.marac_at_ms)));
    a.duplicate_of == b.duplicate_of && previous(a) == previous(b) && a.incidents_12m == b.incidents_12m
}

/// Classifies every referral of the person again (one of them arrived, was revoked,
/// screened, heard or closed) and keeps what changed; `case_id`'s criteria are kept whether or
/// not its class changed. A referral without a subject ref is judged alone.
pub async fn reclassify(tx: &mut Tx, subject_ref: &str, case_id: &str, now: i64) -> sqlx::Result<()> {
    let cases = if subject_ref.is_empty() {
        store::get(&mut **tx, case_id).await?.map(|c| vec![(c, None)]).unwrap_or_default()
    } else {
        store::of_subject(tx, subject_ref).await?
    };
    let referrals: Vec<_> = cases.iter().map(|(c, heard)| c.referral(*heard)).collect();
    let classes = crate::criteria::classify(&referrals);
    for ((case, _), class) in cases.iter().zip(&classes) {
        if case.id == case_id || !same(&case.class, class) {
            store::save_class(tx, case, class, now).await?;
        }
    }
    Ok(())
}

/// The referrer revoked the referral: it no longer counts towards repeats, and its case closes
/// (`referral_revoked`) unless it was heard, with whatever was owed on it cancelled. A
/// revocation by anyone but the referrer changes nothing.
pub async fn referral_revoked(ctx: &Ctx, tx: &mut Tx, h: &Header, revoke: &DisclosureRevoke) -> anyhow::Result<()> {
    let Some(case) = store::get(&mut **tx, &revoke.envelope_id).await? else { return Ok(()) };
    let now = ctx.config.clock.now_ms();
    if case.referrer != h.sender || !store::revoked(tx, &case.id, now).await? {
        return Ok(());
    }
    if !matches!(case.status, Status::Heard | Status::Closed) {
        if !store::change(tx, &case.id, case.status, Status::Closed, Change::Closed(CloseReason::ReferralRevoked), now).await? {
            anyhow::bail!("the case changed while its referral's revocation was applied");
        }
        for r in store::research_of(&mut **tx, &case.id).await? {
            deadlines::cancel_all(tx, &r.request_id, now).await?;
        }
    }
    if !case.subject_ref.is_empty() {
        chronology::add(tx, &entry(&case, "marac_case_closed", CloseReason::ReferralRevoked.code(), "", now)).await?;
    }
    reclassify(tx, &case.subject_ref, &case.id, now).await?;
    tracing::info!(case_id = %case.id, "the referrer revoked the referral: it counts for nothing now");
    Ok(())
}

/// A member's answer to a research request (`in_reply_to` names the request): the request is
/// answered and its reply-by deadline met, late or not. An answer naming no request of this
/// member's is kept in the inbox only.
pub async fn research_answered(ctx: &Ctx, tx: &mut Tx, h: &Header, response: &MaracResearchResponse) -> anyhow::Result<()> {
    if h.in_reply_to.is_empty() {
        return Ok(());
    }
    let now = ctx.config.clock.now_ms();
    if !store::research_answered(tx, &h.in_reply_to, &h.sender, &h.envelope_id, response.holds_information, now).await? {
        tracing::info!(envelope_id = %h.envelope_id, sender = %h.sender, "a research response that answers no open request of its sender");
        return Ok(());
    }
    deadlines::meet(tx, RESEARCH_REPLY, &h.in_reply_to, runtime::deadlines::Resolution::Met, now).await?;
    if !h.subject_ref.is_empty() {
        let answered = Entry {
            subject_ref: h.subject_ref.clone(),
            case_ref: h.case_ref.clone(),
            event: "research_answered".into(),
            code: if response.holds_information { "holds_information" } else { "holds_nothing" }.into(),
            item_id: h.in_reply_to.clone(),
            counterpart: h.sender.clone(),
            at_ms: now,
            ..Default::default()
        };
        chronology::add(tx, &answered).await?;
    }
    Ok(())
}

/// An owner's update of its action: the status and note (sealed) kept; `done` meets the
/// action's due date. An update from anyone but the owner changes nothing.
pub async fn action_updated(ctx: &Ctx, tx: &mut Tx, h: &Header, update: &MaracActionUpdate) -> anyhow::Result<()> {
    let Some(status) = ActionStatus::from_proto(update.status()) else {
        tracing::warn!(envelope_id = %h.envelope_id, "an action update without a status; kept in the inbox only");
        return Ok(());
    };
    let note = if update.note.trim().is_empty() { String::new() } else { ctx.seal_at_rest(update.note.trim())? };
    let now = ctx.config.clock.now_ms();
    let Some(action) = store::action_updated(tx, &update.action_id, &h.sender, status, &note, now).await? else {
        tracing::info!(envelope_id = %h.envelope_id, sender = %h.sender, "an action update for no action of its sender");
        return Ok(());
    };
    if status == ActionStatus::Done {
        deadlines::meet(tx, ACTION_DUE, &action.action_id, runtime::deadlines::Resolution::Met, now).await?;
    }
    if !action.subject_ref.is_empty() {
        let updated = Entry {
            subject_ref: action.subject_ref.clone(),
            case_ref: h.case_ref.clone(),
            event: "marac_action_update".into(),
            code: status.code().into(),
            item_id: action.action_id.clone(),
            counterpart: h.sender.clone(),
            at_ms: now,
            ..Default::default()
        };
        chronology::add(tx, &updated).await?;
    }
    Ok(())
}

/// How many inbox answers one tick follows.
const FOLLOW_PER_TICK: usize = 100;

/// Moves each case whose referral was answered through the generic inbox route as that
/// answer says: accepted screens it in, declined screens it out, closed closes it. An answer
/// the case's status does not allow (accepted again once listed) is noted and changes nothing.
/// How many cases moved.
pub async fn follow_inbox(ctx: &Ctx) -> anyhow::Result<usize> {
    let mut moved = 0;
    for (id, answer) in store::inbox_answers_to_follow(&ctx.pool, FOLLOW_PER_TICK).await? {
        let inbox_status = answer.code();
        let now = ctx.config.clock.now_ms();
        let mut tx = ctx.pool.begin().await?;
        let Some(case) = store::get(&mut *tx, &id).await? else { continue };
        let (step, change) = match answer {
            runtime::status::Arrival::Accepted => (Step::ScreenIn, Change::Screened(Decision::ScreenedIn)),
            runtime::status::Arrival::Declined => (Step::ScreenOut, Change::Screened(Decision::CriteriaNotMet)),
            _ => (Step::Close, Change::Closed(CloseReason::NoFurtherAction)),
        };
        if let Ok(to) = case::next(case.status, step) {
            if store::change(&mut tx, &case.id, case.status, to, change, now).await? {
                if !case.subject_ref.is_empty() {
                    chronology::add(&mut tx, &entry(&case, crate::case::event_of(step), &inbox_status, "", now)).await?;
                }
                reclassify(&mut tx, &case.subject_ref, &case.id, now).await?;
                moved += 1;
                tracing::info!(case_id = %case.id, from = case.status.code(), to = to.code(), "MARAC case follows the answer given in the inbox");
            }
        }
        store::followed(&mut tx, &case.id, &inbox_status).await?;
        tx.commit().await?;
    }
    Ok(moved)
}
