//! Each change of an application, whether a message caused it ([`crate::receive`]) or the
//! coordinator did ([`crate::steps`]): saved from the version it was read at, added to the
//! applicant's chronology, and told to its parties; an application that ends releases the
//! offer it held and tells the landlords its property request went to. One transaction, the
//! caller's.

use runtime::{
    Ctx, Tx,
    chronology::{self, Entry},
    deadlines::{self, Deadline},
};

use crate::{
    notify,
    scheme::{Areas, Reason, Status},
    store::{self, Application, Completion, CompletionOutcome, OfferOutcome},
};

/// The application changed since it was read (another message or member of staff acted on
/// it): nothing was written. A message is redelivered and judged again; a person is asked to
/// reload.
#[derive(Debug)]
pub struct ChangedMeanwhile;

impl std::fmt::Display for ChangedMeanwhile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the application changed meanwhile")
    }
}

impl std::error::Error for ChangedMeanwhile {}

/// The areas of an application, opened.
pub fn areas(ctx: &Ctx, app: &Application) -> anyhow::Result<Areas> {
    let keys = &ctx.isp().keys;
    Ok(Areas::from_stored(&keys.open_at_rest(&app.sealed_areas)?, &keys.open_at_rest(&app.sealed_excluded)?))
}

/// Text sealed to this agency's key at rest.
pub fn seal(ctx: &Ctx, text: &str) -> anyhow::Result<String> {
    Ok(ctx.seal_at_rest(text)?)
}

pub fn open(ctx: &Ctx, stored: &str) -> anyhow::Result<String> {
    Ok(ctx.isp().keys.open_at_rest(stored)?)
}

/// What a change is, for the chronology.
#[derive(Debug, Clone, Copy, Default)]
pub struct Change<'a> {
    /// The chronology's event (`reciprocal_received`, `reciprocal_circulated`, ...).
    pub event: &'a str,
    /// Who did it: a staff id (of this service, or the named lead of a landlord).
    pub staff_id: &'a str,
    /// The other agency concerned.
    pub counterpart: &'a str,
    /// The record it is about (an envelope), or the application itself.
    pub item_id: &'a str,
}

/// Saves `app` as changed, records the change in the applicant's chronology and tells the
/// application's parties its new status.
pub async fn record(ctx: &Ctx, tx: &mut Tx, app: &mut Application, change: Change<'_>, now: i64) -> anyhow::Result<()> {
    if !store::save(tx, app, now).await? {
        return Err(ChangedMeanwhile.into());
    }
    chronicle(tx, app, change, app.status.code(), now).await?;
    notify::status(ctx, tx, app, &areas(ctx, app)?).await?;
    tracing::info!(application_ref = %app.reference, event = change.event, status = app.status.code(), reason = %app.reason, "reciprocal application changed");
    Ok(())
}

/// Adds an event of the application to the applicant's chronology (when the request named
/// the person).
pub async fn chronicle(tx: &mut Tx, app: &Application, change: Change<'_>, code: &str, now: i64) -> sqlx::Result<()> {
    if app.subject_ref.is_empty() {
        return Ok(());
    }
    let entry = Entry {
        subject_ref: app.subject_ref.clone(),
        case_ref: app.reference.clone(),
        event: change.event.into(),
        code: code.into(),
        item_id: if change.item_id.is_empty() { app.reference.clone() } else { change.item_id.to_owned() },
        counterpart: change.counterpart.into(),
        staff_id: change.staff_id.into(),
        at_ms: now,
        ..Default::default()
    };
    chronology::add(tx, &entry).await
}

/// Sets a deadline of the scheme on the application (the first one of a code stands).
pub async fn deadline(tx: &mut Tx, app: &Application, code: &str, counterpart: &str, due_at_ms: i64) -> sqlx::Result<()> {
    let d = Deadline { code: code.into(), target: app.reference.clone(), subject_ref: app.subject_ref.clone(), case_ref: app.reference.clone(), counterpart: counterpart.into(), due_at_ms };
    deadlines::set(tx, &d).await
}

/// Meets a deadline of the application, late or not.
pub async fn met(tx: &mut Tx, app: &Application, code: &str, now: i64) -> sqlx::Result<()> {
    deadlines::meet(tx, code, &app.reference, runtime::deadlines::Resolution::Met, now).await.map(|_| ())
}

/// How an application ends.
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    /// A closed status.
    pub status: Status,
    pub reason: Reason,
    /// What the offer it holds (if any) becomes: declined to its landlord with the reason.
    pub offer: OfferOutcome,
}

/// Ends an application: the offer it holds is answered, a completion held for it will never
/// count, its deadlines are cancelled, the landlords its request went to are told, and so are
/// its parties. The envelope id of the answer to the offer, if one was sent.
pub async fn close(ctx: &Ctx, tx: &mut Tx, app: &mut Application, ending: Ending, change: Change<'_>, now: i64) -> anyhow::Result<String> {
    let Ending { status: to, reason, offer: offer_outcome } = ending;
    let (mut offering, mut answered) = (String::new(), String::new());
    if let Some(offer) = store::standing_offer(tx, &app.reference).await? {
        let property = open(ctx, &offer.sealed_property_ref)?;
        let answer = notify::answer_offer(ctx, tx, &app.reference, &offer.envelope_id, &offer.landlord, &property, Some(reason)).await?;
        store::answer_offer(tx, &offer.envelope_id, offer_outcome, reason.code(), &answer, now).await?;
        (offering, answered) = (offer.landlord, answer);
    }
    for held in store::completions(&mut **tx, &app.reference).await?.iter().filter(|c| c.outcome == CompletionOutcome::Held) {
        store::drop_held(tx, &held.envelope_id).await?;
    }
    deadlines::cancel_all(tx, &app.reference, now).await?;
    app.set(to, Some(reason));
    app.closed_at_ms = Some(now);
    record(ctx, tx, app, change, now).await?;
    notify::ended_to_circulated(ctx, tx, app, &offering).await?;
    Ok(answered)
}

/// Counts a move: the completion (new, or held until now) counted once, and the application
/// moved. The rehousing landlord is owed one property; the vacating landlord owes one.
pub async fn count_move(ctx: &Ctx, tx: &mut Tx, app: &mut Application, completion: &Completion, change: Change<'_>, now: i64) -> anyhow::Result<()> {
    match completion.outcome {
        CompletionOutcome::Held => {
            if !store::count_held(tx, &completion.envelope_id, now).await? {
                return Err(ChangedMeanwhile.into());
            }
        }
        CompletionOutcome::Counted => store::add_completion(tx, completion).await?,
    }
    deadlines::cancel_all(tx, &app.reference, now).await?;
    app.set(Status::Moved, None);
    app.closed_at_ms = Some(now);
    record(ctx, tx, app, change, now).await?;
    tracing::info!(application_ref = %app.reference, rehousing = %completion.rehousing_landlord, vacating = %completion.vacating_landlord, "move counted in the fairness ledger");
    Ok(())
}
