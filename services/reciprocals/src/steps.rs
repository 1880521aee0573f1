//! What the coordinator does, each step one transaction: check the reference's grammar and the
//! input (400), find the application (404), ask the state machine (409), then change it
//! through [`crate::casework`]. The JSON API and the console both call these, so a page can do
//! nothing the API would refuse.

use axum::http::StatusCode;
use isp::{Kind, Outgoing, clear};
use proto::v1::{Household, Payload, ReciprocalPropertyRequest, payload::Body};
use runtime::{
    Ctx, Tx,
    api::{ApiError, clear_field},
    auth::Staff,
    codes,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    casework::{self, Change, ChangedMeanwhile, Ending},
    notify,
    scheme::{self, Areas, Event, Readiness, Reason, Status},
    store::{self, Application, Circulation, CompletionOutcome, Landlord, OfferOutcome},
};

/// The most named leads a landlord may have on record.
pub const MAX_NAMED_LEADS: usize = 20;

/// An application reference from a path (`ARC-01-26`).
pub fn check_reference(reference: &str) -> Result<(), ApiError> {
    clear::required("reference", reference, clear::is_case_ref, clear::CASE_REF).map_err(clear_field)
}

/// An error of the casework as an answer: 409 when the application changed meanwhile.
pub fn failed(e: anyhow::Error) -> ApiError {
    if e.is::<ChangedMeanwhile>() {
        ApiError::conflict("the application changed meanwhile (a message arrived or another member of staff acted on it): reload it and try again")
    } else {
        ApiError::internal(format!("{e:#}"))
    }
}

/// 409: the step is not possible from the application's status, saying why and what is.
pub fn invalid(app: &Application, event: Event, why: Reason, ready: Readiness) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        body: json!({
            "error": "invalid_transition",
            "detail": format!("{}: {}", not_now(event), why.label().to_lowercase()),
            "reason": why.code(),
            "status": app.status.code(),
            "allowed": scheme::allowed(app.status, ready).iter().map(|e| e.code()).collect::<Vec<_>>(),
        }),
    }
}

/// What cannot be done, in words.
fn not_now(event: Event) -> &'static str {
    match event {
        Event::Circulate => "the application cannot be circulated now",
        Event::Accept | Event::RefuseOffer => "no decision on an offer can be recorded now",
        _ => "that is not possible on this application now",
    }
}

async fn load(tx: &mut Tx, reference: &str) -> Result<Application, ApiError> {
    store::get(&mut **tx, reference).await?.ok_or_else(|| ApiError::not_found("application"))
}

/// What the application's next step depends on.
pub fn readiness(app: &Application, areas: &Areas) -> Readiness {
    Readiness { areas_needed: areas.needed(), approved: app.approved() }
}

// ---------------------------------------------------------------- circulation

/// `POST /applications/{reference}/circulate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CirculateInput {
    /// Landlords (agency ids) to send the property request to; left out: every landlord of the
    /// scheme with stock in the areas of choice (or whose stock is not on record).
    #[serde(default)]
    pub landlords: Option<Vec<String>>,
    /// The date landlords reply by (YYYY-MM-DD); left out: two weeks from now.
    #[serde(default)]
    pub reply_by: String,
}

const DAY_MS: i64 = 24 * 3_600_000;

/// The end of the reply-by day, if one was given: after now, and within 90 days.
fn reply_by(date: &str, now: i64) -> Result<Option<i64>, ApiError> {
    if date.is_empty() {
        return Ok(None);
    }
    match runtime::chronology::day_ms(date).map(|d| d + DAY_MS - 1) {
        Some(end) if end > now && end <= now + scheme::REPLY_BY_AT_MOST_MS => Ok(Some(end)),
        _ => Err(ApiError::bad_request("reply_by is a date (YYYY-MM-DD) from today, within 90 days")),
    }
}

/// The landlords a property request goes to: those named (each checked), or every landlord of
/// the scheme it fits; never the applicant's current landlord, never one whose stock is only in
/// excluded areas or nowhere in the areas of choice, never one it went to already.
async fn recipients(ctx: &Ctx, tx: &mut Tx, app: &Application, areas: &Areas, named: Option<&[String]>) -> Result<Vec<String>, ApiError> {
    let isp = ctx.isp();
    let on_record = store::landlords(&mut **tx).await?;
    let stock = |l: &str| on_record.iter().find(|r| r.landlord == l).map(|r| r.stock_areas.clone()).unwrap_or_default();
    let already: Vec<String> = store::circulations(&mut **tx, &app.reference).await?.into_iter().map(|c| c.landlord).collect();
    let chosen: Vec<String> = match named {
        Some([]) => return Err(ApiError::bad_request("landlords: name at least one landlord, or leave landlords out to send to every landlord the request fits")),
        Some(list) => {
            let mut chosen = Vec::new();
            for (i, l) in list.iter().enumerate() {
                if !clear::is_agency_id(l) {
                    return Err(ApiError::bad_request(format!("landlords[{i}] is not {}", clear::AGENCY_ID)));
                }
                if !scheme::is_landlord(&isp.directory, l) {
                    return Err(ApiError::bad_request(format!("landlords[{i}] is not a landlord of the scheme (an active member of the partnership with the housing role)")));
                }
                if *l == app.current_landlord {
                    return Err(ApiError::bad_request(format!("landlords[{i}] is the applicant's current landlord: the scheme is a central pot, not a swap")));
                }
                scheme::stock_fits(&stock(l), areas).map_err(|why| ApiError::bad_request(format!("landlords[{i}] {why}")))?;
                if !chosen.contains(l) {
                    chosen.push(l.clone());
                }
            }
            chosen
        }
        None => isp
            .directory
            .active()
            .filter(|a| scheme::is_landlord(&isp.directory, &a.id) && a.id != app.current_landlord && scheme::stock_fits(&stock(&a.id), areas).is_ok())
            .map(|a| a.id.clone())
            .collect(),
    };
    let fresh: Vec<String> = chosen.into_iter().filter(|l| !already.contains(l)).collect();
    if fresh.is_empty() {
        return Err(ApiError::conflict(if named.is_some() {
            "the property request went to every landlord named already"
        } else {
            "no landlord of the scheme that the request fits is left to send it to"
        }));
    }
    Ok(fresh)
}

/// Sends the anonymised property request (reference, household, areas of choice; never a
/// name, an address, the excluded areas or the current landlord) to each landlord it fits,
/// and marks the application circulated, with its reply-by deadline. Answers with each send's
/// outcome (`sent`: envelope id, rule, categories) as `POST /disclosures` does.
pub async fn circulate(ctx: &Ctx, staff: &Staff, reference: &str, input: &CirculateInput) -> Result<Value, ApiError> {
    check_reference(reference)?;
    let now = ctx.config.clock.now_ms();
    let given_reply_by = reply_by(&input.reply_by, now)?;
    let mut tx = ctx.pool.begin().await?;
    let mut app = load(&mut tx, reference).await?;
    let areas = casework::areas(ctx, &app).map_err(failed)?;
    let ready = readiness(&app, &areas);
    scheme::next(app.status, Event::Circulate, ready).map_err(|why| invalid(&app, Event::Circulate, why, ready))?;
    if areas.needed() > 0 {
        return Err(invalid(&app, Event::Circulate, Reason::FewerThanFiveAreas, ready));
    }
    let landlords = recipients(ctx, &mut tx, &app, &areas, input.landlords.as_deref()).await?;
    let reply_by_ms = given_reply_by.or(app.reply_by_ms).unwrap_or(now + scheme::REPLY_WITHIN_MS);
    let keys = &ctx.isp().keys;
    let request = ReciprocalPropertyRequest {
        application_ref: app.reference.clone(),
        household: Some(Household {
            adults: app.adults.try_into().unwrap_or_default(),
            children: app.children.try_into().unwrap_or_default(),
            bedrooms_needed: app.bedrooms_needed.try_into().unwrap_or_default(),
            accessibility_needs: keys.open_at_rest(&app.sealed_accessibility).map_err(ApiError::internal)?,
            pets: false,
        }),
        areas: areas.usable().into_iter().map(str::to_owned).collect(),
        reply_by: runtime::chronology::date_of(reply_by_ms),
    };
    let mut sent = Vec::new();
    for landlord in &landlords {
        let isp = ctx.isp();
        let role = isp.directory.require(landlord).map_err(ApiError::internal)?.role;
        let (purpose, basis) = isp.policy.defaults_for(isp.role, role, Kind::ReciprocalPropertyRequest).ok_or_else(|| ApiError::conflict("the policy lets no property request go to a landlord"))?;
        let out = Outgoing {
            recipient: landlord.clone(),
            kind: Kind::ReciprocalPropertyRequest,
            purpose: purpose.to_owned(),
            lawful_basis: basis.to_owned(),
            case_ref: app.reference.clone(),
            payload: Payload { body: Some(Body::ReciprocalPropertyRequest(request.clone())) },
            ..Default::default()
        };
        let outcome = ctx.send_in(&mut tx, &out).await?;
        store::add_circulation(&mut tx, &app.reference, &Circulation { landlord: landlord.clone(), envelope_id: outcome.envelope_id.clone(), sent_by: staff.id.clone(), sent_at_ms: now }).await?;
        sent.push(serde_json::to_value(outcome).map_err(ApiError::internal)?);
    }
    app.set(Status::Circulated, None);
    app.circulated_at_ms.get_or_insert(now);
    app.reply_by_ms = Some(reply_by_ms);
    casework::met(&mut tx, &app, scheme::DEADLINE_CIRCULATE, now).await?;
    casework::deadline(&mut tx, &app, scheme::DEADLINE_REPLY, "", reply_by_ms).await?;
    casework::record(ctx, &mut tx, &mut app, Change { event: "reciprocal_circulated", staff_id: &staff.id, ..Default::default() }, now).await.map_err(failed)?;
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    Ok(json!({"application_ref": app.reference, "status": app.status.code(), "landlords": landlords, "sent": sent, "reply_by_ms": reply_by_ms}))
}

// ---------------------------------------------------------------- the applicant's decision

codes!(
    /// The applicant's answer to the offer the application holds.
    Decision {
        Accepted = "accepted": "The applicant accepts the offer",
        Refused = "refused": "The applicant refuses the offer",
    }
);

/// `POST /applications/{reference}/offer-decision`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    pub decision: String,
}

/// Records the applicant's answer to the offer held: the landlord is answered; an acceptance
/// tells the other landlords the request is filled (and counts a completion that came
/// first), a refusal closes the application (one offer per application).
pub async fn decide(ctx: &Ctx, staff: &Staff, reference: &str, input: &DecisionInput) -> Result<Value, ApiError> {
    check_reference(reference)?;
    let decision = Decision::parse(&input.decision).ok_or_else(|| ApiError::bad_request(format!("decision is one of {}", Decision::codes())))?;
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let mut app = load(&mut tx, reference).await?;
    let ready = Readiness { areas_needed: 0, approved: app.approved() };
    let event = if decision == Decision::Accepted { Event::Accept } else { Event::RefuseOffer };
    let to = scheme::next(app.status, event, ready).map_err(|why| invalid(&app, event, why, ready))?;
    let offer = store::standing_offer(&mut tx, reference).await?.ok_or_else(|| invalid(&app, event, Reason::NoOfferHeld, ready))?;
    let change = Change { event: "reciprocal_decision", staff_id: &staff.id, counterpart: &offer.landlord, item_id: &offer.envelope_id };
    casework::met(&mut tx, &app, scheme::DEADLINE_DECIDE, now).await?;
    app.decided_at_ms = Some(now);
    let answer = match decision {
        Decision::Accepted => {
            let property = casework::open(ctx, &offer.sealed_property_ref).map_err(failed)?;
            let answer = notify::answer_offer(ctx, &mut tx, reference, &offer.envelope_id, &offer.landlord, &property, None).await?;
            store::answer_offer(&mut tx, &offer.envelope_id, OfferOutcome::Accepted, "", &answer, now).await?;
            app.set(to, None);
            casework::record(ctx, &mut tx, &mut app, change, now).await.map_err(failed)?;
            notify::ended_to_circulated(ctx, &mut tx, &app, &offer.landlord).await?;
            // A completion that came before the acceptance counts now.
            let held = store::completions(&mut *tx, reference).await?.into_iter().find(|c| c.outcome == CompletionOutcome::Held);
            if let Some(held) = held {
                let moved = Change { event: "reciprocal_moved", counterpart: &offer.landlord, item_id: &held.envelope_id, ..Default::default() };
                casework::count_move(ctx, &mut tx, &mut app, &held, moved, now).await.map_err(failed)?;
            }
            answer
        }
        Decision::Refused => {
            let ending = Ending { status: to, reason: Reason::ApplicantRefused, offer: OfferOutcome::Refused };
            casework::close(ctx, &mut tx, &mut app, ending, change, now).await.map_err(failed)?
        }
    };
    tx.commit().await?;
    ctx.outbox_ready.notify_one();
    Ok(json!({"application_ref": app.reference, "decision": decision.code(), "status": app.status.code(), "answer_envelope_id": answer}))
}

// ---------------------------------------------------------------- landlords

/// `POST /landlords/{landlord}`: where a landlord's stock is and who its named leads are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandlordInput {
    #[serde(default)]
    pub stock_areas: Vec<String>,
    /// Staff ids of the landlord's named leads, who approve its tenants' applications.
    #[serde(default)]
    pub named_leads: Vec<String>,
}

/// Records what the scheme knows of a landlord (replacing what it knew).
pub async fn put_landlord(ctx: &Ctx, staff: &Staff, landlord: &str, input: &LandlordInput) -> Result<Landlord, ApiError> {
    clear::required("landlord", landlord, clear::is_agency_id, clear::AGENCY_ID).map_err(clear_field)?;
    if !scheme::is_landlord(&ctx.isp().directory, landlord) {
        return Err(ApiError::bad_request("landlord: not a landlord of the scheme (an active member of the partnership with the housing role)"));
    }
    Areas::check_limits("stock_areas", &input.stock_areas).map_err(ApiError::bad_request)?;
    if input.named_leads.len() > MAX_NAMED_LEADS {
        return Err(ApiError::bad_request(format!("named_leads: at most {MAX_NAMED_LEADS}")));
    }
    if let Some(i) = input.named_leads.iter().position(|l| !clear::is_staff_id(l)) {
        return Err(ApiError::bad_request(format!("named_leads[{i}] is not {}", clear::STAFF_ID)));
    }
    let mut leads = input.named_leads.clone();
    leads.sort();
    leads.dedup();
    let record = Landlord {
        landlord: landlord.to_owned(),
        stock_areas: Areas::new(&input.stock_areas, &[] as &[String]).choice,
        named_leads: leads,
        updated_by: staff.id.clone(),
        updated_at_ms: ctx.config.clock.now_ms(),
    };
    store::put_landlord(&ctx.pool, &record).await?;
    tracing::info!(landlord, stock_areas = record.stock_areas.len(), named_leads = record.named_leads.len(), "a landlord's record at the scheme was updated");
    Ok(record)
}
