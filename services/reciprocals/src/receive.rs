//! What the coordinator does with each message it receives, inside the inbox transaction (it
//! commits with the envelope, or neither does and the message comes again). A message the
//! scheme cannot act on is never an error: it is set aside with its reason (and an offer is
//! answered), so the ledger of owed and owing properties only ever moves for a move that
//! counts.

use isp::clear;
use proto::v1::{Header, ReciprocalApproval, ReciprocalChange, ReciprocalMoveCompleted, ReciprocalOffer, ReciprocalRequest, ReciprocalUpdate};
use runtime::{Ctx, Tx};

use crate::{
    casework::{self, Change, Ending},
    notify,
    scheme::{self, Areas, CompletionFacts, Event, OfferFacts, Readiness, Reason, Status, Verdict},
    store::{self, Application, Completion, CompletionOutcome, Offer, OfferOutcome, SetAside},
};

/// A reference named in a payload, fit for a column or a log line: itself when it is of the
/// reference grammar (then it cannot carry free text), empty otherwise.
fn shown(reference: &str) -> &str {
    if clear::is_case_ref(reference) { reference } else { "" }
}

/// Records a message the scheme does not act on.
async fn set_aside(ctx: &Ctx, tx: &mut Tx, h: &Header, reference: &str, reason: Reason) -> anyhow::Result<()> {
    let kind = isp::kind::name(h.kind());
    let s = SetAside { envelope_id: h.envelope_id.clone(), reference: shown(reference).to_owned(), kind: kind.to_owned(), sender: h.sender.clone(), reason, at_ms: ctx.config.clock.now_ms() };
    store::set_aside(tx, &s).await?;
    tracing::warn!(envelope_id = %h.envelope_id, kind, sender = %h.sender, application_ref = shown(reference), reason = reason.code(), "a message of the scheme was set aside");
    Ok(())
}

/// Sets a message of a party aside and tells the parties why (the status stays).
async fn refuse(ctx: &Ctx, tx: &mut Tx, h: &Header, app: &mut Application, reason: Reason) -> anyhow::Result<()> {
    set_aside(ctx, tx, h, &app.reference.clone(), reason).await?;
    let status = app.status;
    app.set(status, Some(reason));
    casework::record(ctx, tx, app, Change { event: "reciprocal_refused", counterpart: &h.sender, item_id: &h.envelope_id, ..Default::default() }, ctx.config.clock.now_ms()).await
}

/// Before circulation: a deadline for what the application now waits for.
async fn wait_for(tx: &mut Tx, app: &Application, now: i64) -> sqlx::Result<()> {
    match app.status {
        Status::AwaitingApproval => casework::deadline(tx, app, scheme::DEADLINE_APPROVE, &app.current_landlord, now + scheme::APPROVE_WITHIN_MS).await,
        Status::Approved => casework::deadline(tx, app, scheme::DEADLINE_CIRCULATE, "", now + scheme::CIRCULATE_WITHIN_MS).await,
        _ => Ok(()),
    }
}

fn waiting_reason(status: Status) -> Option<Reason> {
    (status == Status::NeedsMoreAreas).then_some(Reason::FewerThanFiveAreas)
}

/// `reciprocal.request`: an application with its reference. It needs five areas of choice
/// that are not excluded, and a current landlord that is a landlord of the scheme. The
/// request's `approved_by` is not relied on (anyone typing a request could fill it in): only
/// the current landlord's own signed `reciprocal.approval` approves.
pub async fn request(ctx: &Ctx, tx: &mut Tx, h: &Header, r: &ReciprocalRequest) -> anyhow::Result<()> {
    let now = ctx.config.clock.now_ms();
    let areas = Areas::new(&r.areas_of_choice, &r.excluded_areas);
    let (status, reason) = if scheme::is_landlord(&ctx.isp().directory, &r.current_landlord) {
        let status = scheme::waiting(Readiness { areas_needed: areas.needed(), approved: false });
        (status, waiting_reason(status))
    } else {
        (Status::NotAccepted, Some(Reason::CurrentLandlordNotALandlord))
    };
    let household = r.household.clone().unwrap_or_default();
    let year = 1970 + now / 31_556_952_000; // the mean Gregorian year in ms
    let mut app = Application {
        reference: store::next_reference(tx, year).await?,
        request_envelope_id: h.envelope_id.clone(),
        referrer: h.sender.clone(),
        subject_ref: h.subject_ref.clone(),
        case_ref: h.case_ref.clone(),
        // An agency id, or payload text that names none: kept only when it is one.
        current_landlord: if clear::is_agency_id(&r.current_landlord) { r.current_landlord.clone() } else { String::new() },
        sealed_areas: casework::seal(ctx, &areas.choice.join(","))?,
        sealed_excluded: casework::seal(ctx, &areas.excluded.join(","))?,
        adults: household.adults.into(),
        children: household.children.into(),
        bedrooms_needed: household.bedrooms_needed.into(),
        sealed_accessibility: casework::seal(ctx, &household.accessibility_needs)?,
        status,
        reason: String::new(),
        approved_by: String::new(),
        approved_at_ms: None,
        approval_envelope_id: String::new(),
        status_seq: 0,
        received_at_ms: now,
        circulated_at_ms: None,
        reply_by_ms: None,
        offered_at_ms: None,
        decided_at_ms: None,
        closed_at_ms: (!status.is_open()).then_some(now),
        updated_at_ms: now,
    };
    app.set(status, reason);
    store::insert(tx, &app).await?;
    wait_for(tx, &app, now).await?;
    casework::record(ctx, tx, &mut app, Change { event: "reciprocal_received", counterpart: &h.sender, item_id: &h.envelope_id, ..Default::default() }, now).await
}

/// `reciprocal.approval`: the named lead of the applicant's current landlord approves (or does
/// not), by staff id, from the landlord's own signed message.
pub async fn approval(ctx: &Ctx, tx: &mut Tx, h: &Header, a: &ReciprocalApproval) -> anyhow::Result<()> {
    let Some(mut app) = store::get(&mut **tx, &a.application_ref).await? else { return set_aside(ctx, tx, h, &a.application_ref, Reason::UnknownApplication).await };
    if h.sender != app.current_landlord {
        return set_aside(ctx, tx, h, &app.reference, Reason::NotTheCurrentLandlord).await;
    }
    if !clear::is_staff_id(&a.named_lead) {
        return refuse(ctx, tx, h, &mut app, Reason::NamedLeadNotAStaffId).await;
    }
    let leads = store::landlord(&mut **tx, &h.sender).await?.map(|l| l.named_leads).unwrap_or_default();
    if !leads.is_empty() && !leads.contains(&a.named_lead) {
        return refuse(ctx, tx, h, &mut app, Reason::NotANamedLead).await;
    }
    let event = if a.approved { Event::Approve } else { Event::Refuse };
    let areas = casework::areas(ctx, &app)?;
    let to = match scheme::next(app.status, event, Readiness { areas_needed: areas.needed(), approved: app.approved() }) {
        Ok(to) => to,
        Err(reason) => return refuse(ctx, tx, h, &mut app, reason).await,
    };
    let now = ctx.config.clock.now_ms();
    let change = Change { event: "reciprocal_approval", staff_id: &a.named_lead, counterpart: &h.sender, item_id: &h.envelope_id };
    casework::met(tx, &app, scheme::DEADLINE_APPROVE, now).await?;
    if !a.approved {
        let ending = Ending { status: to, reason: Reason::NotApprovedByLead, offer: OfferOutcome::Released };
        return casework::close(ctx, tx, &mut app, ending, change, now).await.map(|_| ());
    }
    app.approved_by = a.named_lead.clone();
    app.approved_at_ms = Some(now);
    app.approval_envelope_id = h.envelope_id.clone();
    app.set(to, waiting_reason(to));
    wait_for(tx, &app, now).await?;
    casework::record(ctx, tx, &mut app, change, now).await
}

/// `reciprocal.update`: the referrer's new areas (before circulation), withdrawal, or word that
/// the move is no longer needed.
pub async fn update(ctx: &Ctx, tx: &mut Tx, h: &Header, u: &ReciprocalUpdate) -> anyhow::Result<()> {
    let Some(mut app) = store::get(&mut **tx, &u.application_ref).await? else { return set_aside(ctx, tx, h, &u.application_ref, Reason::UnknownApplication).await };
    if h.sender != app.referrer {
        return set_aside(ctx, tx, h, &app.reference, Reason::NotTheReferrer).await;
    }
    let now = ctx.config.clock.now_ms();
    let change = Change { event: "reciprocal_update", counterpart: &h.sender, item_id: &h.envelope_id, ..Default::default() };
    let (event, ending) = match u.change() {
        ReciprocalChange::Areas => (Event::Areas, None),
        ReciprocalChange::Withdrawn => (Event::Withdraw, Some((Status::Withdrawn, Reason::ApplicationWithdrawn))),
        ReciprocalChange::NoLongerNeeded => (Event::NoLongerNeeded, Some((Status::NoLongerNeeded, Reason::MoveNoLongerNeeded))),
        ReciprocalChange::Unspecified => return set_aside(ctx, tx, h, &app.reference, Reason::UnknownChange).await,
    };
    let areas = if event == Event::Areas { Areas::new(&u.areas_of_choice, &u.excluded_areas) } else { casework::areas(ctx, &app)? };
    let to = match scheme::next(app.status, event, Readiness { areas_needed: areas.needed(), approved: app.approved() }) {
        Ok(to) => to,
        Err(reason) if app.status.is_open() => return refuse(ctx, tx, h, &mut app, reason).await,
        Err(reason) => return set_aside(ctx, tx, h, &app.reference, reason).await,
    };
    if let Some((status, reason)) = ending {
        return casework::close(ctx, tx, &mut app, Ending { status, reason, offer: OfferOutcome::Released }, change, now).await.map(|_| ());
    }
    app.sealed_areas = casework::seal(ctx, &areas.choice.join(","))?;
    app.sealed_excluded = casework::seal(ctx, &areas.excluded.join(","))?;
    app.set(to, waiting_reason(to));
    wait_for(tx, &app, now).await?;
    casework::record(ctx, tx, &mut app, change, now).await
}

/// `reciprocal.offer`: held when it fits (one per application); otherwise declined to its
/// landlord with the reason, there and then.
pub async fn offer(ctx: &Ctx, tx: &mut Tx, h: &Header, o: &ReciprocalOffer) -> anyhow::Result<()> {
    let now = ctx.config.clock.now_ms();
    let app = store::get(&mut **tx, &o.application_ref).await?;
    let verdict = match &app {
        None => Err(Reason::UnknownApplication),
        Some(app) => {
            let circulated_to_sender = store::circulations(&mut **tx, &app.reference).await?.iter().any(|c| c.landlord == h.sender);
            let areas = casework::areas(ctx, app)?;
            let facts = OfferFacts {
                status: app.status,
                circulated_to_sender,
                sender: &h.sender,
                named_landlord: &o.landlord,
                area: &o.area,
                bedrooms: o.bedrooms,
                bedrooms_needed: app.bedrooms_needed.try_into().unwrap_or(u32::MAX),
                areas: &areas,
            };
            scheme::judge_offer(&facts)
        }
    };
    let offer = Offer {
        envelope_id: h.envelope_id.clone(),
        reference: shown(&o.application_ref).to_owned(),
        landlord: h.sender.clone(),
        sealed_property_ref: casework::seal(ctx, &o.property_ref)?,
        sealed_area: casework::seal(ctx, &o.area)?,
        bedrooms: o.bedrooms.into(),
        outcome: if verdict.is_ok() { OfferOutcome::Held } else { OfferOutcome::Declined },
        reason: verdict.err().map(|r| r.code().to_owned()).unwrap_or_default(),
        answer_envelope_id: String::new(),
        received_at_ms: now,
        answered_at_ms: None,
    };
    if !store::add_offer(tx, &offer).await? {
        return Ok(());
    }
    let change = Change { counterpart: &h.sender, item_id: &h.envelope_id, ..Default::default() };
    match (verdict, app) {
        (Ok(()), Some(mut app)) => {
            app.set(Status::Offered, None);
            app.offered_at_ms = Some(now);
            casework::met(tx, &app, scheme::DEADLINE_REPLY, now).await?;
            casework::deadline(tx, &app, scheme::DEADLINE_DECIDE, &h.sender, now + scheme::DECIDE_WITHIN_MS).await?;
            casework::record(ctx, tx, &mut app, Change { event: "reciprocal_offered", ..change }, now).await
        }
        (verdict, app) => {
            let reason = verdict.err().unwrap_or(Reason::UnknownApplication);
            let answer = notify::answer_offer(ctx, tx, &o.application_ref, &h.envelope_id, &h.sender, &o.property_ref, Some(reason)).await?;
            store::answer_offer(tx, &h.envelope_id, OfferOutcome::Declined, reason.code(), &answer, now).await?;
            if let Some(app) = app {
                casework::chronicle(tx, &app, Change { event: "reciprocal_offer_declined", ..change }, reason.code(), now).await?;
            }
            tracing::info!(envelope_id = %h.envelope_id, landlord = %h.sender, application_ref = shown(&o.application_ref), reason = reason.code(), "offer declined");
            Ok(())
        }
    }
}

/// `reciprocal.move_completed`: counted once, from the landlord whose offer was accepted, with
/// the application's current landlord (a landlord of the scheme) as the one that vacated; held
/// when it comes before the acceptance; set aside otherwise.
pub async fn completion(ctx: &Ctx, tx: &mut Tx, h: &Header, m: &ReciprocalMoveCompleted) -> anyhow::Result<()> {
    let now = ctx.config.clock.now_ms();
    let Some(mut app) = store::get(&mut **tx, &m.application_ref).await? else {
        return set_aside(ctx, tx, h, &m.application_ref, Reason::UnknownApplication).await;
    };
    let offer = store::standing_offer(tx, &app.reference).await?;
    let property = match &offer {
        Some(o) => casework::open(ctx, &o.sealed_property_ref)?,
        None => String::new(),
    };
    let vacating = if m.vacating_landlord.is_empty() { app.current_landlord.as_str() } else { m.vacating_landlord.as_str() };
    let facts = CompletionFacts {
        status: app.status,
        current_landlord: &app.current_landlord,
        offer: offer.as_ref().map(|o| (o.landlord.as_str(), property.as_str())),
        sender: &h.sender,
        rehousing_landlord: &m.rehousing_landlord,
        vacating_landlord: &m.vacating_landlord,
        property_ref: &m.property_ref,
        vacating_is_landlord: scheme::is_landlord(&ctx.isp().directory, vacating),
    };
    let mut verdict = scheme::judge_completion(Some(&facts));
    let kept = store::completions(&mut **tx, &app.reference).await?;
    if verdict == Verdict::Hold && kept.iter().any(|c| c.outcome == CompletionOutcome::Held) {
        verdict = Verdict::Duplicate;
    }
    let completion = |outcome| -> anyhow::Result<Completion> {
        Ok(Completion {
            envelope_id: h.envelope_id.clone(),
            reference: app.reference.clone(),
            rehousing_landlord: h.sender.clone(),
            vacating_landlord: app.current_landlord.clone(),
            sealed_property_ref: casework::seal(ctx, &property)?,
            moved_on: if runtime::chronology::day_ms(&m.moved_on).is_some() { m.moved_on.clone() } else { String::new() },
            outcome,
            received_at_ms: now,
            counted_at_ms: (outcome == CompletionOutcome::Counted).then_some(now),
        })
    };
    let change = Change { event: "reciprocal_moved", counterpart: &h.sender, item_id: &h.envelope_id, ..Default::default() };
    match verdict {
        Verdict::Count => {
            let c = completion(CompletionOutcome::Counted)?;
            casework::count_move(ctx, tx, &mut app, &c, change, now).await
        }
        Verdict::Hold => {
            store::add_completion(tx, &completion(CompletionOutcome::Held)?).await?;
            casework::chronicle(tx, &app, Change { event: "reciprocal_move_held", ..change }, Reason::HeldUntilAccepted.code(), now).await?;
            tracing::info!(envelope_id = %h.envelope_id, application_ref = %app.reference, "a move completion came before the acceptance: held until it");
            Ok(())
        }
        Verdict::Duplicate => set_aside(ctx, tx, h, &app.reference, Reason::DuplicateCompletion).await,
        Verdict::SetAside(reason) => set_aside(ctx, tx, h, &app.reference, reason).await,
    }
}
