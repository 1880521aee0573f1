//! The reciprocal scheme's pages at a landlord: its move applications with every status the
//! coordinator sent, the named lead's approval form, the referrer's forms for new areas and
//! for ending an application, and the property requests circulated to it.

use axum::{
    Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use runtime::{
    Ctx,
    api::ApiError,
    console::{Markup, PageError, Step as TimelineStep, Viewer, error_summary, form::Fields, html, see_other, summary, tag, timeline, when},
};
use sqlx::Row as _;

use super::{casework::Notice, choices, done, select, text_area};
use crate::reciprocal::{self, Application, Approval, ApprovalInput, AreasInput, Ending, NotApprovedReason, Stage, WithdrawInput, reason_label};

type Posted = Form<Vec<(String, String)>>;

pub const LIST: &str = "/console/reciprocals";

fn stage_tag(stage: Stage) -> Markup {
    let colour = match stage {
        Stage::NeedsMoreAreas | Stage::AwaitingApproval => "yellow",
        Stage::Approved | Stage::Circulated | Stage::Offered => "blue",
        Stage::Accepted | Stage::Moved => "green",
        Stage::NotApproved | Stage::OfferRefused | Stage::NotAccepted => "red",
        Stage::Withdrawn | Stage::NoLongerNeeded => "grey",
    };
    html! { strong class=(format!("tag tag-{colour}")) { (stage.label()) } }
}

fn part(app: &Application, agency: &str) -> &'static str {
    match (app.we_referred(), app.latest().current_landlord == agency) {
        (true, true) => "Referrer and current landlord",
        (true, false) => "Referrer",
        (false, true) => "Current landlord",
        (false, false) => "–",
    }
}

/// `GET /console/reciprocals`.
pub async fn list(State(ctx): State<Ctx>, viewer: Viewer) -> Response {
    match list_body(&ctx).await {
        Ok(body) => viewer.page("Reciprocal moves", LIST, body),
        Err(e) => PageError::from(e).page(&viewer),
    }
}

async fn list_body(ctx: &Ctx) -> Result<Markup, ApiError> {
    let apps = reciprocal::page(&ctx.pool, "", 300).await?;
    let requests = sqlx::query("SELECT application_ref, bedrooms_needed, status, reason, received_at_ms FROM property_requests ORDER BY received_at_ms DESC LIMIT 300").fetch_all(&ctx.pool).await?;
    Ok(html! {
        h2 { "Move applications" }
        p.hint { "Applications this service referred to the reciprocal scheme, or whose applicant is its tenant. Each status the scheme's coordinator sends is kept." }
        @if apps.is_empty() { p { "None yet." } } @else {
            table {
                thead { tr { th scope="col" { "Reference" } th scope="col" { "Our part" } th scope="col" { "Status" } th scope="col" { "Since" } } }
                tbody {
                    @for a in &apps {
                        @let l = a.latest();
                        tr {
                            td { a.mono href=(format!("{LIST}/{}", l.application_ref)) { (l.application_ref) } }
                            td { (part(a, ctx.agency())) }
                            td { (stage_tag(l.stage)) @if !l.reason.is_empty() { br; span.hint { (reason_label(&l.reason)) } } }
                            td { (when(l.received_at_ms)) }
                        }
                    }
                }
            }
        }
        h2 { "Property requests circulated to us" }
        p.hint { "Anonymised: a reference, the household and the areas, never the applicant. Offer through the inbox's compose page (a reciprocal offer naming the reference)." }
        @if requests.is_empty() { p { "None yet." } } @else {
            table {
                thead { tr { th scope="col" { "Reference" } th scope="col" { "Received" } th.number scope="col" { "Bedrooms" } th scope="col" { "Status" } } }
                tbody {
                    @for r in &requests {
                        @let reason: String = r.try_get("reason").unwrap_or_default();
                        tr {
                            td.mono { (r.try_get::<String, _>("application_ref").unwrap_or_default()) }
                            td { (when(r.try_get("received_at_ms").unwrap_or_default())) }
                            td.number { (r.try_get::<i64, _>("bedrooms_needed").unwrap_or_default()) }
                            td { (tag(&r.try_get::<String, _>("status").unwrap_or_default())) @if !reason.is_empty() { br; span.hint { (Stage::parse(&reason).map(Stage::label).unwrap_or(reason_label(&reason))) } } }
                        }
                    }
                }
            }
        }
    })
}

// ---------------------------------------------------------------- one application

/// Which form of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Approval,
    Areas,
    Withdraw,
}

struct Problem {
    form: Which,
    field: String,
    message: String,
    values: Fields,
}

/// `GET /console/reciprocals/{reference}`.
pub async fn application(State(ctx): State<Ctx>, viewer: Viewer, Path(reference): Path<String>, Query(n): Query<Notice>) -> Response {
    render(&ctx, &viewer, &reference, &n.done, None, StatusCode::OK).await
}

async fn render(ctx: &Ctx, viewer: &Viewer, reference: &str, done_code: &str, problem: Option<Problem>, status: StatusCode) -> Response {
    match body(ctx, viewer, reference, done_code, problem.as_ref()).await {
        Ok(body) => {
            let mut response = viewer.page(&format!("Move application {reference}"), LIST, body);
            *response.status_mut() = status;
            response
        }
        Err(e) => PageError::from(e).page(viewer),
    }
}

fn notice(code: &str) -> Markup {
    match code {
        "approved" => done("Your approval was sent to the scheme's coordinator, under your staff id."),
        "not_approved" => done("Your answer was sent to the scheme's coordinator: the application will not go ahead."),
        "areas" => done("The new areas were sent to the scheme's coordinator. Its answer will appear here."),
        "withdrawn" | "no_longer_needed" => done("The scheme's coordinator has been told. Its answer will appear here."),
        _ => html! {},
    }
}

async fn body(ctx: &Ctx, viewer: &Viewer, reference: &str, done_code: &str, problem: Option<&Problem>) -> Result<Markup, ApiError> {
    let app = reciprocal::find(ctx, reference).await?;
    let sent = reciprocal::actions(&ctx.pool, reference).await?;
    let l = app.latest();
    let problems: Vec<(String, String)> = problem.map(|p| vec![(p.field.clone(), p.message.clone())]).unwrap_or_default();
    let mine = |w: Which| problem.filter(|p| p.form == w);
    let may = |path: &str| viewer.shell.may(&viewer.staff, "POST", path);
    let steps: Vec<TimelineStep> = app
        .statuses
        .iter()
        .map(|s| TimelineStep { at_ms: s.received_at_ms, what: s.stage.label().to_owned(), detail: reason_label(&s.reason).to_owned() })
        .chain(sent.iter().map(|(_, action, staff, at)| TimelineStep { at_ms: *at, what: format!("Sent to the scheme: {}", action.replace('_', " ")), detail: format!("by {staff}") }))
        .collect();
    let mut steps = steps;
    steps.sort_by_key(|s| s.at_ms);
    Ok(html! {
        (notice(done_code))
        (error_summary(&problems))
        (summary(&[
            ("Status", html! { (stage_tag(l.stage)) @if !l.reason.is_empty() { " " (reason_label(&l.reason)) } }),
            ("Our part", html! { (part(&app, ctx.agency())) }),
            ("Current landlord", html! { span.mono { (l.current_landlord) } }),
            ("Named lead's approval", html! { @if l.approved_by.is_empty() { "Not given" } @else { "By " span.mono { (l.approved_by) } } }),
            ("Areas of choice", html! { @if l.areas_needed > 0 { (l.areas_needed) " more needed (at least five that are not excluded)" } @else { "Enough" } }),
            ("Person (pseudonym)", html! { span.mono { (app.subject_ref()) } }),
        ]))
        @if l.current_landlord == ctx.agency() && l.stage.awaits_lead() && may("/console/reciprocals/{reference}/approval") {
            (approval_form(viewer, reference, mine(Which::Approval)))
        }
        @if app.we_referred() && l.stage.before_circulation() {
            (areas_form(viewer, reference, mine(Which::Areas)))
        }
        @if app.we_referred() && l.stage.is_open() {
            (withdraw_form(viewer, reference, mine(Which::Withdraw)))
        }
        h2 { "Every status" }
        p.hint { "What the scheme's coordinator told this service, and what this service sent it, oldest first." }
        (timeline(&steps))
    })
}

fn approval_form(viewer: &Viewer, reference: &str, p: Option<&Problem>) -> Markup {
    let values = p.map(|p| p.values.clone()).unwrap_or_default();
    let problems: Vec<(String, String)> = p.map(|p| vec![(p.field.clone(), p.message.clone())]).unwrap_or_default();
    let decisions: Vec<(&str, &str)> = Approval::ALL.iter().map(|a| (a.code(), a.label())).collect();
    let mut reasons: Vec<(&str, &str)> = vec![("", "Not needed when approving")];
    reasons.extend(NotApprovedReason::ALL.iter().map(|r| (r.code(), r.label())));
    html! {
        h2 #approval-form tabindex="-1" { "The named lead's approval" }
        p { "You are answering as " span.mono { (viewer.staff.id) } ", this landlord's named lead. The scheme records your staff id, never your name, and circulates the application only once you approve." }
        form method="post" action=(format!("{LIST}/{reference}/approval")) novalidate {
            (viewer.csrf_field())
            (choices("decision", "Do you approve the move?", "", &decisions, &[values.get("decision")], false, &problems))
            (select("reason", "If not, why not", &reasons, values.get("reason"), &problems))
            button type="submit" { "Send the answer" }
        }
    }
}

fn areas_form(viewer: &Viewer, reference: &str, p: Option<&Problem>) -> Markup {
    let values = p.map(|p| p.values.clone()).unwrap_or_default();
    let problems: Vec<(String, String)> = p.map(|p| vec![(p.field.clone(), p.message.clone())]).unwrap_or_default();
    html! {
        h2 #areas-form tabindex="-1" { "Change the areas" }
        p.hint { "The whole lists again, one area a line: at least five areas of choice that are not excluded. Sealed on the way; the scheme never circulates the excluded areas." }
        form method="post" action=(format!("{LIST}/{reference}/areas")) novalidate {
            (viewer.csrf_field())
            (text_area("areas_of_choice", "Areas of choice", "One a line", values.get("areas_of_choice"), &problems))
            (text_area("excluded_areas", "Excluded areas", "Where the applicant is at risk, one a line", values.get("excluded_areas"), &problems))
            button type="submit" { "Send the new areas" }
        }
    }
}

fn withdraw_form(viewer: &Viewer, reference: &str, p: Option<&Problem>) -> Markup {
    let values = p.map(|p| p.values.clone()).unwrap_or_default();
    let problems: Vec<(String, String)> = p.map(|p| vec![(p.field.clone(), p.message.clone())]).unwrap_or_default();
    let endings: Vec<(&str, &str)> = Ending::ALL.iter().map(|e| (e.code(), e.label())).collect();
    html! {
        h2 #withdraw-form tabindex="-1" { "End the application" }
        form method="post" action=(format!("{LIST}/{reference}/withdraw")) novalidate {
            (viewer.csrf_field())
            (choices("ending", "Why does it end?", "An offer it holds is released, and the landlords it went to are told.", &endings, &[values.get("ending")], false, &problems))
            button.warning-button type="submit" { "End the application" }
        }
    }
}

// ---------------------------------------------------------------- the forms

/// After a form: back to the application with a notice, or the page again with the problem.
async fn answer(ctx: &Ctx, viewer: &Viewer, reference: &str, result: Result<serde_json::Value, ApiError>, problem: Problem) -> Response {
    match result {
        Ok(v) => see_other(&format!("{LIST}/{reference}?done={}", v["action"].as_str().unwrap_or_default())),
        Err(e) if e.status == StatusCode::NOT_FOUND || e.body["error"] == "bad_clear_field" => PageError::from(e).page(viewer),
        Err(e) => {
            let status = e.status;
            let message = PageError::from(e).detail;
            let mut c = message.chars();
            let message = c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default();
            render(ctx, viewer, reference, "", Some(Problem { message, ..problem }), status).await
        }
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// `POST /console/reciprocals/{reference}/approval`.
pub async fn post_approval(State(ctx): State<Ctx>, viewer: Viewer, Path(reference): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let problem = |field: &str, f: Fields| Problem { form: Which::Approval, field: field.into(), message: String::new(), values: f };
    if Approval::parse(f.get("decision")).is_none() {
        let p = Problem { message: "Choose whether you approve the move".into(), ..problem("decision", f) };
        return render(&ctx, &viewer, &reference, "", Some(p), StatusCode::BAD_REQUEST).await;
    }
    let input = ApprovalInput { decision: f.get("decision").to_owned(), reason: if f.get("decision") == "approved" { String::new() } else { f.get("reason").to_owned() } };
    let field = if input.decision == "approved" { "decision" } else { "reason" };
    let result = reciprocal::approve(&ctx, &viewer.staff, &reference, &input).await;
    answer(&ctx, &viewer, &reference, result, problem(field, f)).await
}

/// `POST /console/reciprocals/{reference}/areas`.
pub async fn post_areas(State(ctx): State<Ctx>, viewer: Viewer, Path(reference): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let input = AreasInput { areas_of_choice: lines(f.get("areas_of_choice")), excluded_areas: lines(f.get("excluded_areas")) };
    let result = reciprocal::change_areas(&ctx, &viewer.staff, &reference, &input).await;
    let field = if result.as_ref().err().and_then(|e| e.body["detail"].as_str()).is_some_and(|d| d.starts_with("excluded")) { "excluded_areas" } else { "areas_of_choice" };
    answer(&ctx, &viewer, &reference, result, Problem { form: Which::Areas, field: field.into(), message: String::new(), values: f }).await
}

/// `POST /console/reciprocals/{reference}/withdraw`.
pub async fn post_withdraw(State(ctx): State<Ctx>, viewer: Viewer, Path(reference): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let problem = Problem { form: Which::Withdraw, field: "ending".into(), message: String::new(), values: f.clone() };
    if Ending::parse(f.get("ending")).is_none() {
        let p = Problem { message: "Choose why the application ends".into(), ..problem };
        return render(&ctx, &viewer, &reference, "", Some(p), StatusCode::BAD_REQUEST).await;
    }
    let result = reciprocal::withdraw(&ctx, &viewer.staff, &reference, &WithdrawInput { reason: f.get("ending").to_owned() }).await;
    answer(&ctx, &viewer, &reference, result, problem).await
}
