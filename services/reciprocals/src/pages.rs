//! The coordinator's console pages: the board (applications by status, time to offer, each
//! landlord's balance, escalated deadlines, messages set aside), one application (everything on
//! it, with the form for circulation and for the applicant's decision where its status allows),
//! and the landlords of the scheme (where their stock is, who their named leads are). Forms
//! post to routes beside the page, which call [`crate::steps`] as the API does; a refused form
//! comes back with the error summary and what was chosen kept. No JavaScript.

use axum::{
    Form, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
    routing::{get, post},
};
use runtime::{
    Ctx,
    api::ApiError,
    console::{Markup, Nav, PageError, Step as TimelineStep, Viewer, error_summary, form::Fields, html, see_other, summary, timeline, when},
};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    api::status_filter,
    casework, report,
    scheme::{self, Event, Reason, Status},
    steps::{self, CirculateInput, Decision, DecisionInput, LandlordInput},
    store,
};

pub const BOARD: &str = "/console/scheme";
pub const LANDLORDS: &str = "/console/scheme/landlords";

/// The coordinator's pages in the navigation.
pub const NAV: &[Nav] = &[Nav { href: BOARD, label: "Reciprocal scheme" }, Nav { href: LANDLORDS, label: "Landlords" }];

/// How many applications the board lists; the JSON API pages through all.
const SHOWN: i64 = 300;

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route(BOARD, get(board))
        .route("/console/scheme/applications/{reference}", get(application))
        .route("/console/scheme/applications/{reference}/circulate", post(post_circulate))
        .route("/console/scheme/applications/{reference}/offer-decision", post(post_decision))
        .route(LANDLORDS, get(landlords).post(post_landlord))
}

type Posted = Form<Vec<(String, String)>>;

fn coloured(colour: &str, label: &str) -> Markup {
    html! { strong class=(format!("tag tag-{colour}")) { (label) } }
}

pub fn status_tag(s: Status) -> Markup {
    let colour = match s {
        Status::NeedsMoreAreas | Status::AwaitingApproval => "yellow",
        Status::Approved | Status::Circulated | Status::Offered => "blue",
        Status::Accepted | Status::Moved => "green",
        Status::NotApproved | Status::OfferRefused | Status::NotAccepted => "red",
        Status::Withdrawn | Status::NoLongerNeeded => "grey",
    };
    coloured(colour, s.label())
}

fn reason_text(code: &str) -> &'static str {
    Reason::parse(code).map(Reason::label).unwrap_or("")
}

fn agency_name(ctx: &Ctx, id: &str) -> String {
    ctx.isp().directory.get(id).map(|a| a.name.clone()).unwrap_or_else(|| id.to_owned())
}

fn deadline_label(code: &str) -> &'static str {
    match code {
        scheme::DEADLINE_APPROVE => "The named lead's approval",
        scheme::DEADLINE_CIRCULATE => "Circulation to landlords",
        scheme::DEADLINE_REPLY => "Landlords' replies (reply-by date)",
        scheme::DEADLINE_DECIDE => "The applicant's decision on the offer",
        runtime::deadlines::ACKNOWLEDGE => "Answering the request (accept, decline or close in the inbox)",
        _ => "A deadline",
    }
}

fn escalations(items: &[Value]) -> Markup {
    html! {
        @if !items.is_empty() {
            div.refused role="alert" {
                h2 { "Escalated" }
                ul {
                    @for d in items {
                        li {
                            a.mono href=(format!("/console/scheme/applications/{}", d["target"].as_str().unwrap_or_default())) { (d["target"].as_str().unwrap_or_default()) }
                            ": " (deadline_label(d["code"].as_str().unwrap_or_default())) " was due " (when(d["due_at_ms"].as_i64().unwrap_or_default())) " and is not done."
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- the board

#[derive(Deserialize, Default)]
struct BoardQuery {
    #[serde(default)]
    status: String,
}

async fn board(State(ctx): State<Ctx>, viewer: Viewer, Query(q): Query<BoardQuery>) -> Response {
    match board_body(&ctx, &q).await {
        Ok(body) => viewer.page("Reciprocal scheme", BOARD, body),
        Err(e) => PageError::from(e).page(&viewer),
    }
}

async fn board_body(ctx: &Ctx, q: &BoardQuery) -> Result<Markup, ApiError> {
    let (status, problem) = match status_filter(Some(&q.status)) {
        Ok(s) => (s, None),
        Err(_) => (None, Some(("status".to_owned(), "Choose which applications to show from the list".to_owned()))),
    };
    let board = report::board(ctx).await?;
    let apps = store::page(&ctx.pool, status, "", SHOWN).await?;
    let escalated: Vec<Value> = board["escalated"].as_array().cloned().unwrap_or_default();
    let escalated_refs: Vec<&str> = escalated.iter().filter_map(|d| d["target"].as_str()).collect();
    let chosen = status.map(Status::code).unwrap_or_default();
    let offer = &board["time_to_offer"];
    let by_status = board["by_status"].as_array().cloned().unwrap_or_default();
    Ok(html! {
        (error_summary(&problem.into_iter().collect::<Vec<_>>()))
        (escalations(&escalated))
        h2 { "Applications by status" }
        table {
            thead { tr { th scope="col" { "Status" } th.number scope="col" { "Applications" } } }
            tbody {
                @for s in &by_status {
                    tr {
                        th scope="row" { a href=(format!("{BOARD}?status={}", s["status"].as_str().unwrap_or_default())) { (s["label"].as_str().unwrap_or_default()) } }
                        td.number { (s["count"]) }
                    }
                }
            }
        }
        p {
            "Time to offer (circulation to an offer held): "
            @match offer["median_days"].as_f64() {
                Some(m) => { "median " (m) " days, longest " (offer["longest_days"].as_f64().unwrap_or_default()) " days, over " (offer["offers"]) " applications." }
                None => { "no offer held yet." }
            }
        }
        h2 #applications tabindex="-1" { "Applications" }
        form method="get" action=(BOARD) {
            div.field {
                label for="status" { "Show" }
                select #status name="status" {
                    option value="" selected[chosen.is_empty()] { "Every application" }
                    @for s in Status::ALL {
                        option value=(s.code()) selected[chosen == s.code()] { (s.label()) }
                    }
                }
            }
            button.secondary type="submit" { "Show applications" }
        }
        @if apps.is_empty() {
            p { "No applications to show." }
        } @else {
            table {
                caption.visually-hidden { "Applications in reference order" }
                thead { tr {
                    th scope="col" { "Reference" } th scope="col" { "Received" } th scope="col" { "Referred by" } th scope="col" { "Status" }
                    th scope="col" { "Reply by" } th.number scope="col" { "Days to offer" } th scope="col" { "Escalated" }
                } }
                tbody {
                    @for a in &apps {
                        tr {
                            td { a.mono href=(format!("/console/scheme/applications/{}", a.reference)) { (a.reference) } }
                            td { (when(a.received_at_ms)) }
                            td { (agency_name(ctx, &a.referrer)) }
                            td { (status_tag(a.status)) @if !a.reason.is_empty() { br; span.hint { (reason_text(&a.reason)) } } }
                            td { (when(a.reply_by_ms.unwrap_or_default())) }
                            td.number { @if let (Some(c), Some(o)) = (a.circulated_at_ms, a.offered_at_ms) { (format!("{:.1}", (o - c) as f64 / 86_400_000.0)) } @else { "–" } }
                            td { @if escalated_refs.contains(&a.reference.as_str()) { (coloured("red", "overdue")) } }
                        }
                    }
                }
            }
        }
        h2 { "Fairness ledger" }
        p.hint { "The scheme is a central pot: a landlord that rehoused a household is owed one property; the landlord whose home was vacated owes one. Derived from the moves counted, each once." }
        (balances_table(board["balances"].as_array().map(Vec::as_slice).unwrap_or_default()))
        h2 { "Messages set aside" }
        p.hint { (format!("Messages the scheme did not act on, newest first. Move completions held until their acceptance: {}.", board["held_completions"])) }
        (set_aside_table(board["set_aside"].as_array().map(Vec::as_slice).unwrap_or_default()))
    })
}

fn balances_table(balances: &[Value]) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "Landlord" } th.number scope="col" { "Owed" } th.number scope="col" { "Owes" } th.number scope="col" { "Balance" } th scope="col" { "Meaning" } } }
            tbody {
                @for b in balances {
                    tr {
                        th scope="row" { (b["name"].as_str().unwrap_or_default()) " " span.mono { "(" (b["landlord"].as_str().unwrap_or_default()) ")" } }
                        td.number { (b["owed"]) }
                        td.number { (b["owes"]) }
                        td.number { (b["balance"]) }
                        td { (b["meaning"].as_str().unwrap_or_default()) }
                    }
                }
            }
        }
    }
}

fn set_aside_table(items: &[Value]) -> Markup {
    html! {
        @if items.is_empty() {
            p { "None." }
        } @else {
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Message" } th scope="col" { "From" } th scope="col" { "Application" } th scope="col" { "Why" } } }
                tbody {
                    @for s in items {
                        tr {
                            td { (when(s["at_ms"].as_i64().unwrap_or_default())) }
                            td { (runtime::console::form::kind_label(s["kind"].as_str().unwrap_or_default())) }
                            td.mono { (s["sender"].as_str().unwrap_or_default()) }
                            td.mono { (s["application_ref"].as_str().unwrap_or_default()) }
                            td { (s["reason_label"].as_str().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- one application

#[derive(Deserialize, Default)]
struct Notice {
    #[serde(default)]
    done: String,
}

fn notice(done: &str) -> Markup {
    let text = match done {
        "circulated" => "The property request was sent to the landlords; the referrer has been told.",
        "accepted" => "The acceptance was recorded; the landlord and the referrer have been told, and the other landlords that the request is filled.",
        "refused" => "The refusal was recorded; the landlord and the referrer have been told. The application is closed.",
        _ => return html! {},
    };
    html! { div.notice role="status" { h2 { "Done" } p { (text) } } }
}

/// A form that was refused: which one, the field to go to, why, and what was chosen.
struct Problem {
    form: Event,
    field: String,
    message: String,
    values: Fields,
}

async fn application(State(ctx): State<Ctx>, viewer: Viewer, Path(reference): Path<String>, Query(n): Query<Notice>) -> Response {
    render(&ctx, &viewer, &reference, &n.done, None, StatusCode::OK).await
}

async fn render(ctx: &Ctx, viewer: &Viewer, reference: &str, done: &str, problem: Option<Problem>, status: StatusCode) -> Response {
    match application_body(ctx, viewer, reference, done, problem.as_ref()).await {
        Ok(body) => {
            let mut response = viewer.page(&format!("Application {reference}"), BOARD, body);
            *response.status_mut() = status;
            response
        }
        Err(e) => PageError::from(e).page(viewer),
    }
}

fn list_cell(items: &Value) -> Markup {
    let items: Vec<&str> = items.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    html! { @if items.is_empty() { "None" } @else { (items.join(", ")) } }
}

async fn application_body(ctx: &Ctx, viewer: &Viewer, reference: &str, done: &str, problem: Option<&Problem>) -> Result<Markup, ApiError> {
    let d = report::detail(ctx, reference).await?;
    let app = store::get(&ctx.pool, reference).await?.ok_or_else(|| ApiError::not_found("application"))?;
    let chronology = if app.subject_ref.is_empty() { Vec::new() } else { runtime::chronology::of_subject(ctx, &app.subject_ref).await? };
    let allowed: Vec<&str> = d["allowed"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let problems: Vec<(String, String)> = problem.map(|p| vec![(p.field.clone(), p.message.clone())]).unwrap_or_default();
    let escalated: Vec<Value> = d["escalations"].as_array().cloned().unwrap_or_default();
    let h = &d["household"];
    let approval = &d["approval"];
    Ok(html! {
        (notice(done))
        (error_summary(&problems))
        (escalations(&escalated))
        (summary(&[
            ("Status", html! { (status_tag(app.status)) @if !app.reason.is_empty() { " " (reason_text(&app.reason)) } }),
            ("Referred by", html! { (agency_name(ctx, &app.referrer)) ", their reference " span.mono { (app.case_ref) } ", received " (when(app.received_at_ms)) }),
            ("Current landlord", html! { @if app.current_landlord.is_empty() { "Not a landlord of the scheme" } @else { (agency_name(ctx, &app.current_landlord)) } }),
            ("Named lead's approval", html! {
                @if app.approved() {
                    "Approved by " span.mono { (approval["named_lead"].as_str().unwrap_or_default()) } " of " (agency_name(ctx, &app.current_landlord)) ", "
                    (when(app.approved_at_ms.unwrap_or_default())) ", in their signed message " span.mono { (app.approval_envelope_id) }
                } @else { "Not given" }
            }),
            ("Areas of choice", html! { (list_cell(&d["areas"])) @if d["areas_needed"].as_u64().unwrap_or(0) > 0 { " " (coloured("yellow", &format!("{} more needed", d["areas_needed"]))) } }),
            ("Excluded areas", list_cell(&d["excluded_areas"])),
            ("Household", html! { (h["adults"]) " adults, " (h["children"]) " children, " (h["bedrooms_needed"]) " bedrooms needed"
                @if let Some(n) = h["accessibility_needs"].as_str().filter(|n| !n.is_empty()) { ". Accessibility: " (n) } }),
            ("Circulated", html! { @match app.circulated_at_ms { Some(at) => { (when(at)) ", landlords reply by " (when(app.reply_by_ms.unwrap_or_default())) } None => { "Not yet" } } }),
            ("Person (pseudonym)", html! { span.mono { (app.subject_ref) } }),
        ]))
        @if allowed.contains(&Event::Circulate.code()) { (circulate_form(ctx, viewer, &app, problem).await?) }
        @if allowed.contains(&Event::Accept.code()) { (decision_form(viewer, &app, &d, problem)) }
        h2 { "Circulated to" }
        @let circulated = d["circulated_to"].as_array().cloned().unwrap_or_default();
        @if circulated.is_empty() { p { "Nobody yet." } } @else {
            table {
                thead { tr { th scope="col" { "Landlord" } th scope="col" { "Sent" } th scope="col" { "By" } } }
                tbody { @for c in &circulated { tr { td { (agency_name(ctx, c["landlord"].as_str().unwrap_or_default())) } td { (when(c["sent_at_ms"].as_i64().unwrap_or_default())) } td.mono { (c["sent_by"].as_str().unwrap_or_default()) } } } }
            }
        }
        h2 { "Offers" }
        @let offers = d["offers"].as_array().cloned().unwrap_or_default();
        @if offers.is_empty() { p { "None yet." } } @else {
            table {
                thead { tr { th scope="col" { "Received" } th scope="col" { "Landlord" } th scope="col" { "Property" } th scope="col" { "Area" } th.number scope="col" { "Bedrooms" } th scope="col" { "Outcome" } } }
                tbody {
                    @for o in &offers {
                        tr {
                            td { (when(o["received_at_ms"].as_i64().unwrap_or_default())) }
                            td { (agency_name(ctx, o["landlord"].as_str().unwrap_or_default())) }
                            td.mono { (o["property_ref"].as_str().unwrap_or_default()) }
                            td { (o["area"].as_str().unwrap_or_default()) }
                            td.number { (o["bedrooms"]) }
                            td { (store::OfferOutcome::parse(o["outcome"].as_str().unwrap_or_default()).map(store::OfferOutcome::label).unwrap_or_default())
                                @if let Some(r) = o["reason"].as_str().filter(|r| !r.is_empty()) { ": " (reason_text(r)) } }
                        }
                    }
                }
            }
        }
        h2 { "Move completions" }
        @let completions = d["completions"].as_array().cloned().unwrap_or_default();
        @if completions.is_empty() { p { "None yet." } } @else {
            ul { @for c in &completions { li {
                (store::CompletionOutcome::parse(c["outcome"].as_str().unwrap_or_default()).map(store::CompletionOutcome::label).unwrap_or_default())
                ": " (agency_name(ctx, c["rehousing_landlord"].as_str().unwrap_or_default())) " rehoused the household from " (agency_name(ctx, c["vacating_landlord"].as_str().unwrap_or_default()))
                @if let Some(on) = c["moved_on"].as_str().filter(|m| !m.is_empty()) { " on " (on) }
            } } }
        }
        h2 { "Messages set aside" }
        (set_aside_table(d["set_aside"].as_array().map(Vec::as_slice).unwrap_or_default()))
        h2 { "Chronology" }
        p.hint { "Everything this service has recorded about the applicant, oldest first." }
        (timeline(&chronology.iter().map(chronology_step).collect::<Vec<_>>()))
    })
}

async fn circulate_form(ctx: &Ctx, viewer: &Viewer, app: &store::Application, problem: Option<&Problem>) -> Result<Markup, ApiError> {
    let areas = casework::areas(ctx, app).map_err(steps::failed)?;
    let records = store::landlords(&ctx.pool).await?;
    let already: Vec<String> = store::circulations(&ctx.pool, &app.reference).await?.into_iter().map(|c| c.landlord).collect();
    let isp = ctx.isp();
    // (id, name, whether the request fits it, why not)
    let candidates: Vec<(String, String, Result<(), &str>)> = isp
        .directory
        .active()
        .filter(|a| scheme::is_landlord(&isp.directory, &a.id) && a.id != app.current_landlord && !already.contains(&a.id))
        .map(|a| {
            let stock = records.iter().find(|r| r.landlord == a.id).map(|r| r.stock_areas.clone()).unwrap_or_default();
            (a.id.clone(), a.name.clone(), scheme::stock_fits(&stock, &areas))
        })
        .collect();
    let mine = problem.filter(|p| p.form == Event::Circulate);
    let error = mine.map(|p| p.message.as_str());
    let checked = |id: &str, fits: bool| match mine {
        Some(p) => p.values.all("landlords").contains(&id),
        None => fits,
    };
    Ok(html! {
        h2 #circulate tabindex="-1" { "Circulate the property request" }
        p.hint { "Landlords receive the reference, the household and the areas of choice: never a name, an address, the excluded areas or the current landlord." }
        @if candidates.is_empty() {
            p { "Every landlord of the scheme has it already, or none is left." }
        } @else {
            form method="post" action=(format!("/console/scheme/applications/{}/circulate", app.reference)) novalidate {
                (viewer.csrf_field())
                div.field.error[error.is_some()] {
                    fieldset {
                        legend { "Landlords to send it to" }
                        @if let Some(e) = error { span.field-error id="circulate-error" { span.visually-hidden { "Error: " } (e) } }
                        div.choices {
                            @for (id, name, fits) in &candidates {
                                @let input_id = format!("landlord-{id}");
                                div.choice {
                                    input type="checkbox" id=(input_id) name="landlords" value=(id) checked[checked(id, fits.is_ok())] disabled[fits.is_err()];
                                    label for=(input_id) { (name) @if let Err(why) = fits { " (" (why) ")" } }
                                }
                            }
                        }
                    }
                }
                div.field {
                    label for="reply_by" { "Reply by (optional)" }
                    span.hint id="reply_by-hint" { "A date, YYYY-MM-DD, within 90 days. Left empty: two weeks from today." }
                    input.short type="text" id="reply_by" name="reply_by" aria-describedby="reply_by-hint" value=(mine.map(|p| p.values.get("reply_by")).unwrap_or_default()) autocomplete="off";
                }
                button type="submit" { "Circulate" }
            }
        }
    })
}

fn decision_form(viewer: &Viewer, app: &store::Application, d: &Value, problem: Option<&Problem>) -> Markup {
    let mine = problem.filter(|p| p.form == Event::Accept);
    let chosen = mine.map(|p| p.values.get("decision")).unwrap_or_default();
    let held = d["offers"].as_array().into_iter().flatten().find(|o| o["outcome"] == "held");
    html! {
        h2 #decision tabindex="-1" { "The applicant's decision" }
        @if let Some(o) = held {
            p { "Offer of " span.mono { (o["property_ref"].as_str().unwrap_or_default()) } " in " (o["area"].as_str().unwrap_or_default()) ", " (o["bedrooms"]) " bedrooms. One offer per application: a refusal closes the application." }
        }
        form method="post" action=(format!("/console/scheme/applications/{}/offer-decision", app.reference)) novalidate {
            (viewer.csrf_field())
            div.field.error[mine.is_some()] {
                fieldset {
                    legend { "What did the applicant decide?" }
                    @if let Some(p) = mine { span.field-error { span.visually-hidden { "Error: " } (p.message) } }
                    div.choices {
                        @for d in Decision::ALL {
                            @let id = format!("decision-{}", d.code());
                            div.choice {
                                input type="radio" id=(id) name="decision" value=(d.code()) checked[chosen == d.code()];
                                label for=(id) { (d.label()) }
                            }
                        }
                    }
                }
            }
            button type="submit" { "Record the decision" }
        }
    }
}

fn chronology_step(e: &Value) -> TimelineStep {
    let code = e["code"].as_str().unwrap_or_default();
    let status = || Status::parse(code).map_or(code.to_owned(), |s| s.label().to_owned());
    let what = match e["event"].as_str().unwrap_or_default() {
        "disclosure_received" => format!("Received: {}", runtime::console::form::kind_label(code)),
        "disclosure_sent" => format!("Sent: {}", runtime::console::form::kind_label(code)),
        "reciprocal_received" => format!("Application received: {}", status()),
        "reciprocal_approval" => format!("Named lead's answer: {}", status()),
        "reciprocal_update" => format!("Referrer's change: {}", status()),
        "reciprocal_refused" => format!("A change was set aside: {}", status()),
        "reciprocal_circulated" => "Circulated to landlords".to_owned(),
        "reciprocal_offered" => "Offer held".to_owned(),
        "reciprocal_offer_declined" => format!("Offer declined: {}", reason_text(code)),
        "reciprocal_decision" => format!("Applicant's decision: {}", status()),
        "reciprocal_move_held" => "Move completion held until the acceptance".to_owned(),
        "reciprocal_moved" => "Moved".to_owned(),
        "deadline_missed" => format!("Missed: {}", deadline_label(code)),
        "acknowledged" => format!("Request answered: {code}"),
        other => runtime::console::form::humanise(other),
    };
    let by = e["staff_id"].as_str().filter(|s| !s.is_empty()).map(|s| format!("by {s}")).unwrap_or_default();
    TimelineStep { at_ms: e["at_ms"].as_i64().unwrap_or_default(), what, detail: by }
}

// ---------------------------------------------------------------- forms of an application

/// A form as posted: which one, the field its errors link to, and what was chosen.
struct Sent {
    form: Event,
    field: String,
    values: Fields,
}

/// After a form: back to the application with a notice, or the page again with the problem.
async fn answer<T>(ctx: &Ctx, viewer: &Viewer, reference: &str, done: &str, result: Result<T, ApiError>, sent: Sent) -> Response {
    match result {
        Ok(_) => see_other(&format!("/console/scheme/applications/{reference}?done={done}")),
        Err(e) if e.status == StatusCode::NOT_FOUND || e.body["error"] == "bad_clear_field" => PageError::from(e).page(viewer),
        Err(e) => {
            let status = e.status;
            let message = capitalise(&PageError::from(e).detail);
            let Sent { form, field, values } = sent;
            render(ctx, viewer, reference, "", Some(Problem { form, field, message, values }), status).await
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

async fn post_circulate(State(ctx): State<Ctx>, viewer: Viewer, Path(reference): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let chosen: Vec<String> = f.all("landlords").into_iter().map(str::to_owned).collect();
    let field = chosen.first().map(|l| format!("landlord-{l}")).unwrap_or_else(|| "circulate".into());
    if chosen.is_empty() {
        if let Err(e) = steps::check_reference(&reference) {
            return PageError::from(e).page(&viewer);
        }
        let problem = Problem { form: Event::Circulate, field: "circulate".into(), message: "Choose at least one landlord to send the property request to".into(), values: f };
        return render(&ctx, &viewer, &reference, "", Some(problem), StatusCode::BAD_REQUEST).await;
    }
    let input = CirculateInput { landlords: Some(chosen), reply_by: f.get("reply_by").trim().to_owned() };
    let result = steps::circulate(&ctx, &viewer.staff, &reference, &input).await;
    answer(&ctx, &viewer, &reference, "circulated", result, Sent { form: Event::Circulate, field, values: f }).await
}

async fn post_decision(State(ctx): State<Ctx>, viewer: Viewer, Path(reference): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let Some(decision) = Decision::parse(f.get("decision")) else {
        if let Err(e) = steps::check_reference(&reference) {
            return PageError::from(e).page(&viewer);
        }
        let problem = Problem { form: Event::Accept, field: "decision-accepted".into(), message: "Choose what the applicant decided".into(), values: f };
        return render(&ctx, &viewer, &reference, "", Some(problem), StatusCode::BAD_REQUEST).await;
    };
    let result = steps::decide(&ctx, &viewer.staff, &reference, &DecisionInput { decision: decision.code().to_owned() }).await;
    answer(&ctx, &viewer, &reference, decision.code(), result, Sent { form: Event::Accept, field: "decision-accepted".into(), values: f }).await
}

// ---------------------------------------------------------------- landlords

async fn landlords(State(ctx): State<Ctx>, viewer: Viewer, Query(n): Query<Notice>) -> Response {
    landlords_page(&ctx, &viewer, n.done == "saved", Vec::new(), Fields::default(), StatusCode::OK).await
}

async fn landlords_page(ctx: &Ctx, viewer: &Viewer, saved: bool, problems: Vec<(String, String)>, values: Fields, status: StatusCode) -> Response {
    let records = match store::landlords(&ctx.pool).await {
        Ok(r) => r,
        Err(e) => return PageError::from(e).page(viewer),
    };
    let balances = match report::balances(ctx).await {
        Ok(b) => b,
        Err(e) => return PageError::from(e).page(viewer),
    };
    let isp = ctx.isp();
    let members: Vec<&isp::Agency> = isp.directory.with_role(isp::Role::Housing).collect();
    let may_edit = viewer.shell.may(&viewer.staff, "POST", LANDLORDS);
    let error = |field: &str| problems.iter().find(|(f, _)| f == field).map(|(_, m)| m.clone());
    let body = html! {
        @if saved { div.notice role="status" { h2 { "Done" } p { "The landlord's record was saved." } } }
        (error_summary(&problems))
        table {
            caption.visually-hidden { "Landlords of the scheme" }
            thead { tr { th scope="col" { "Landlord" } th scope="col" { "Stock in" } th scope="col" { "Named leads" } th.number scope="col" { "Balance" } } }
            tbody {
                @for a in &members {
                    @let r = records.iter().find(|r| r.landlord == a.id);
                    tr {
                        th scope="row" { (a.name) " " span.mono { "(" (a.id) ")" } @if !a.is_active() { " " (coloured("grey", "not active")) } }
                        td { @match r.filter(|r| !r.stock_areas.is_empty()) { Some(r) => { (r.stock_areas.join(", ")) } None => { "Not on record" } } }
                        td.mono { @match r.filter(|r| !r.named_leads.is_empty()) { Some(r) => { (r.named_leads.join(", ")) } None => { "Not on record (any team manager's approval is taken)" } } }
                        td.number { (balances.iter().find(|b| b.landlord == a.id).map(|b| b.balance()).unwrap_or_default()) }
                    }
                }
            }
        }
        @if may_edit {
            h2 { "Record a landlord's stock and named leads" }
            form method="post" action=(LANDLORDS) novalidate {
                (viewer.csrf_field())
                div.field.error[error("landlord").is_some()] {
                    label for="landlord" { "Landlord" }
                    @if let Some(e) = error("landlord") { span.field-error { span.visually-hidden { "Error: " } (e) } }
                    select #landlord name="landlord" {
                        @for a in members.iter().filter(|a| a.is_active()) { option value=(a.id) selected[values.get("landlord") == a.id] { (a.name) } }
                    }
                }
                div.field.error[error("stock_areas").is_some()] {
                    label for="stock_areas" { "Areas where it has stock" }
                    span.hint id="stock_areas-hint" { "One area a line. A property request never goes to a landlord whose stock is only in areas an applicant must not go to." }
                    @if let Some(e) = error("stock_areas") { span.field-error { span.visually-hidden { "Error: " } (e) } }
                    textarea #stock_areas name="stock_areas" rows="5" aria-describedby="stock_areas-hint" { (values.get("stock_areas")) }
                }
                div.field.error[error("named_leads").is_some()] {
                    label for="named_leads" { "Named leads" }
                    span.hint id="named_leads-hint" { "Their staff ids at the landlord (e.g. j.bloggs), separated by spaces or commas: never names. Only their approval is taken." }
                    @if let Some(e) = error("named_leads") { span.field-error { span.visually-hidden { "Error: " } (e) } }
                    input #named_leads type="text" name="named_leads" aria-describedby="named_leads-hint" value=(values.get("named_leads")) autocomplete="off";
                }
                button type="submit" { "Save" }
            }
        }
    };
    let mut response = viewer.page("Landlords of the scheme", LANDLORDS, body);
    *response.status_mut() = status;
    response
}

async fn post_landlord(State(ctx): State<Ctx>, viewer: Viewer, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let input = LandlordInput {
        stock_areas: f.get("stock_areas").lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect(),
        named_leads: f.get("named_leads").split([',', ' ', '\n']).map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect(),
    };
    match steps::put_landlord(&ctx, &viewer.staff, f.get("landlord"), &input).await {
        Ok(_) => see_other(&format!("{LANDLORDS}?done=saved")),
        Err(e) => {
            let status = e.status;
            let detail = PageError::from(e).detail;
            let field = ["stock_areas", "named_leads"].into_iter().find(|f| detail.starts_with(f)).unwrap_or("landlord");
            landlords_page(&ctx, &viewer, false, vec![(field.to_owned(), capitalise(&detail))], f, status).await
        }
    }
}
