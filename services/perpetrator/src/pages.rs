//! The pathway's console pages: the caseload (status, risk, who the updates go to, a repeat
//! marker), one case (the reasons for referral as the pathway may see them, his other
//! referrals here, a form for each step its status allows, the enforcement form, a progress
//! update to the survivor's advocate, and what was done, sent and answered), and a man's
//! cases found by his name and date of birth for his subject access request. Forms post to
//! routes beside the page, which call [`crate::casework`] like the API does; a refused form
//! comes back with the error summary and what was typed kept. No JavaScript.

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
    console::{Markup, Nav, PageError, Viewer, error_summary, form::Fields, html, see_other, summary, tag, when},
};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    case::{self, Action, Reason, Status, Step, Wishes},
    casework::{self, EnforcementInput, NoteInput, PersonInput, UpdateInput},
    store::{self, Case},
};

/// The pathway's pages in the navigation, after those every agency has.
pub const NAV: &[Nav] = &[Nav { href: "/console/cases", label: "Cases" }, Nav { href: "/console/perpetrators", label: "His records" }];

/// How many cases the caseload page shows; the JSON API pages through all.
const SHOWN: i64 = 300;

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/console/cases", get(caseload))
        .route("/console/cases/{id}", get(case_page))
        .route("/console/cases/{id}/assess", post(post_assess))
        .route("/console/cases/{id}/engaged", post(post_engaged))
        .route("/console/cases/{id}/disengaged", post(post_disengaged))
        .route("/console/cases/{id}/completed", post(post_completed))
        .route("/console/cases/{id}/enforcement", post(post_enforcement))
        .route("/console/cases/{id}/engagement-updates", post(post_progress))
        .route("/console/perpetrators", get(find_page).post(find))
        .route("/console/perpetrators/{ref}", get(perpetrator_page))
}

type Posted = Form<Vec<(String, String)>>;

fn coloured(colour: &str, label: &str) -> Markup {
    html! { strong class=(format!("tag tag-{colour}")) { (label) } }
}

fn status_tag(s: Status) -> Markup {
    let colour = match s {
        Status::Referred | Status::Assessed => "blue",
        Status::Engaged => "green",
        Status::Disengaged => "red",
        Status::Enforcement => "yellow",
        Status::Completed => "grey",
    };
    coloured(colour, s.label())
}

fn risk_tag(risk: &str) -> Markup {
    match risk {
        "high" => coloured("red", "High"),
        "medium" => coloured("yellow", "Medium"),
        "standard" => coloured("grey", "Standard"),
        _ => html! { "Not stated" },
    }
}

fn pathway_label(code: &str) -> &'static str {
    match code {
        "PATHWAY_BEHAVIOUR_CHANGE" => "Behaviour-change programme",
        "PATHWAY_HIGH_HARM" => "High-harm case management",
        "PATHWAY_HOUSING_ENFORCEMENT" => "Housing enforcement",
        _ => "Not stated",
    }
}

fn engagement_label(code: &str) -> &'static str {
    match code {
        "ENGAGEMENT_NOT_STARTED" => "Not started",
        "ENGAGEMENT_ENGAGED" => "Engaged",
        "ENGAGEMENT_DISENGAGED" => "Disengaged",
        "ENGAGEMENT_COMPLETED" => "Completed",
        "ENGAGEMENT_BREACH" => "Breach: enforcement under way",
        _ => "Not stated",
    }
}

fn agency_name(ctx: &Ctx, id: &str) -> String {
    ctx.isp().directory.get(id).map(|a| a.name.clone()).unwrap_or_else(|| id.to_owned())
}

fn case_name(c: &Case) -> String {
    if c.case_ref.is_empty() { "Case without a reference".to_owned() } else { c.case_ref.clone() }
}

// ---------------------------------------------------------------- the caseload

#[derive(Deserialize, Default)]
struct CaseloadQuery {
    #[serde(default)]
    status: String,
}

async fn caseload(State(ctx): State<Ctx>, viewer: Viewer, Query(q): Query<CaseloadQuery>) -> Response {
    let (status, open_only, problem) = match q.status.as_str() {
        "" | "open" => (None, true, None),
        "all" => (None, false, None),
        s => match Status::parse(s) {
            Some(s) => (Some(s), false, None),
            None => (None, true, Some(("status".to_owned(), "Choose which cases to show from the list".to_owned()))),
        },
    };
    let loaded = async {
        let cases = store::caseload(&ctx.pool, status, open_only, SHOWN).await?;
        let counts = store::counts(&ctx.pool, &cases.iter().map(|c| c.perpetrator_ref.as_str()).collect::<Vec<_>>()).await?;
        Ok::<_, sqlx::Error>((cases, counts))
    };
    let (cases, counts) = match loaded.await {
        Ok(l) => l,
        Err(e) => return PageError::from(e).page(&viewer),
    };
    let chosen = if problem.is_some() { "open" } else { q.status.as_str() };
    let body = html! {
        (error_summary(&problem.into_iter().collect::<Vec<_>>()))
        form method="get" action="/console/cases" {
            div.field {
                label for="status" { "Show" }
                select #status name="status" {
                    option value="open" selected[chosen.is_empty() || chosen == "open"] { "Open cases" }
                    @for s in Status::ALL {
                        option value=(s.code()) selected[chosen == s.code()] { (s.label()) }
                    }
                    option value="all" selected[chosen == "all"] { "All cases" }
                }
            }
            button.secondary type="submit" { "Show cases" }
        }
        @if cases.is_empty() {
            p { "No cases to show." }
        } @else {
            table {
                caption.visually-hidden { "Cases: disengaged first, then newest first" }
                thead {
                    tr {
                        th scope="col" { "Case" }
                        th scope="col" { "Received" }
                        th scope="col" { "Referred by" }
                        th scope="col" { "Pathway" }
                        th scope="col" { "Risk" }
                        th scope="col" { "Status" }
                        th scope="col" { "Updates go to" }
                        th scope="col" { "Known before" }
                    }
                }
                tbody {
                    @for c in &cases {
                        tr {
                            td { a.mono href=(format!("/console/cases/{}", c.id)) { (case_name(c)) } }
                            td { (when(c.received_at_ms)) }
                            td { (agency_name(&ctx, &c.referrer)) }
                            td { (pathway_label(&c.pathway)) }
                            td { (risk_tag(&c.risk)) }
                            td { (status_tag(c.status)) }
                            td { @if c.report_engagement_to.is_empty() { "Nobody named" } @else { (agency_name(&ctx, &c.report_engagement_to)) } }
                            td {
                                @match counts.get(&c.perpetrator_ref).copied().unwrap_or(0) {
                                    n if n > 1 => (coloured("red", &format!("repeat: {n} referrals"))),
                                    _ => "",
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    viewer.page("Pathway cases", "/console/cases", body)
}

// ---------------------------------------------------------------- one case

#[derive(Deserialize, Default)]
struct Notice {
    #[serde(default)]
    done: String,
}

fn notice(done: &str) -> Markup {
    let text = match done {
        "assess" => "The assessment was recorded.",
        "engaged" => "He is recorded as engaged; the survivor's advocate was sent the update.",
        "disengaged" => "He is recorded as disengaged; the survivor's advocate was sent the update at once.",
        "completed" => "The work is recorded as completed; the survivor's advocate was sent the update.",
        "enforcement" => "The enforcement step was recorded and sent to the housing provider.",
        "update" => "The progress update was sent to the survivor's advocate.",
        _ => return html! {},
    };
    html! { div.notice role="status" { h2 { "Done" } p { (text) } } }
}

/// Which form of the case page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Step(Step),
    Progress,
}

/// A form that was refused: which one, the field to go to, why, and what was typed.
struct Problem {
    form: Which,
    field: String,
    message: String,
    values: Fields,
}

impl Problem {
    fn value<'a>(problem: Option<&'a Problem>, form: Which, name: &str) -> &'a str {
        problem.filter(|p| p.form == form).map(|p| p.values.get(name)).unwrap_or_default()
    }

    fn error(problem: Option<&Problem>, form: Which) -> Option<&str> {
        problem.filter(|p| p.form == form).map(|p| p.message.as_str())
    }
}

async fn case_page(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Query(n): Query<Notice>) -> Response {
    render(&ctx, &viewer, &id, &n.done, None, StatusCode::OK).await
}

async fn render(ctx: &Ctx, viewer: &Viewer, id: &str, done: &str, problem: Option<Problem>, status: StatusCode) -> Response {
    match body(ctx, viewer, id, done, problem.as_ref()).await {
        Ok((title, body)) => {
            let mut response = viewer.page(&title, "/console/cases", body);
            *response.status_mut() = status;
            response
        }
        Err(e) => PageError::from(e).page(viewer),
    }
}

async fn body(ctx: &Ctx, viewer: &Viewer, id: &str, done: &str, problem: Option<&Problem>) -> Result<(String, Markup), ApiError> {
    let detail = casework::detail(ctx, id).await?;
    let case = casework::find(ctx, id).await?;
    let title = format!("Pathway case {}", case_name(&case));
    let others = detail["other_referrals"].as_array().cloned().unwrap_or_default();
    let problems: Vec<(String, String)> = problem.map(|p| vec![(p.field.clone(), p.message.clone())]).unwrap_or_default();
    let summary_text = detail["reason_summary"].as_str().unwrap_or_default();
    let body = html! {
        (notice(done))
        (error_summary(&problems))
        @if !others.is_empty() {
            div.warning role="alert" {
                span.icon aria-hidden="true" { "!" }
                span { "Known to this pathway before: he has " (others.len()) " other referral" @if others.len() > 1 { "s" } " here (see below), from "
                    (others.iter().filter_map(|o| o["referrer"].as_str()).map(|r| agency_name(ctx, r)).collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", ")) "." }
            }
        }
        (summary(&[
            ("Status", status_tag(case.status)),
            ("Pathway", html! { (pathway_label(&case.pathway)) }),
            ("Risk", html! { (risk_tag(&case.risk)) " (proved by the referrer's DASH assessment, when high or medium)" }),
            ("Referred by", html! { (agency_name(ctx, &case.referrer)) ", received " (when(case.received_at_ms)) ". " a href=(format!("/console/inbox/{}", case.id)) { "Read the referral" } }),
            ("Referrer's case reference", html! { span.mono { (case.case_ref) } }),
            ("Why he is referred", html! {
                @if case.reasons.is_empty() { "No reasons given" } @else { ul { @for r in &case.reasons { li { (r.label()) } } } }
            }),
            ("The referrer's summary for the pathway", html! { @if summary_text.is_empty() { "None given" } @else { (summary_text) } }),
            ("Engagement updates go to", html! {
                @if case.report_engagement_to.is_empty() { "Nobody: the referral named no advocate to report engagement to" }
                @else { (agency_name(ctx, &case.report_engagement_to)) " (named at referral; the only agency updates about this case go to)" }
            }),
            ("His reference at this pathway", html! {
                @if case.perpetrator_ref.is_empty() { "None: the referral gave no name and date of birth to recognise him by" }
                @else { a.mono href=(format!("/console/perpetrators/{}", case.perpetrator_ref)) { (case.perpetrator_ref) } }
            }),
            ("Survivor (link token)", html! { span.mono { (case.subject_ref) } }),
        ]))
        (step_forms(ctx, viewer, &case, problem))
        @if case.status.is_open() && !case.report_engagement_to.is_empty() {
            (progress_form(ctx, viewer, &case, problem))
        }
        h2 { "What was done" }
        (steps_table(&detail["steps"]))
        h2 { "Enforcement steps" }
        (enforcement_table(ctx, &detail["enforcement"]))
        h2 { "Engagement updates sent" }
        (updates_table(ctx, &detail["engagement_updates"]))
        @if !others.is_empty() {
            h2 { "His other referrals here" }
            (cases_table(ctx, &others))
        }
    };
    Ok((title, body))
}

fn textarea(id: &str, name: &str, label: &str, hint: &str, value: &str) -> Markup {
    let hint_id = format!("{id}-hint");
    html! {
        div.field {
            label for=(id) { (label) }
            span.hint id=(hint_id) { (hint) }
            textarea id=(id) name=(name) rows="3" aria-describedby=(hint_id) { (value) }
        }
    }
}

/// A fieldset of radios; the first one's id is `{prefix}-{first code}` (where an error links).
fn radios(name: &str, prefix: &str, legend: &str, options: &[(&str, &str)], chosen: &str, error: Option<&str>) -> Markup {
    html! {
        div.field.error[error.is_some()] {
            fieldset {
                legend { (legend) }
                @if let Some(e) = error { span.field-error { span.visually-hidden { "Error: " } (e) } }
                div.choices {
                    @for (code, label) in options {
                        @let id = format!("{prefix}-{code}");
                        div.choice {
                            input type="radio" id=(id) name=(name) value=(code) checked[chosen == *code];
                            label for=(id) { (label) }
                        }
                    }
                }
            }
        }
    }
}

/// The forms of the steps the case's status allows.
fn step_forms(ctx: &Ctx, viewer: &Viewer, case: &Case, problem: Option<&Problem>) -> Markup {
    let allowed = case::allowed(case.status);
    let action = |step: Step| format!("/console/cases/{}/{}", case.id, step.code());
    let sends = |step: Step| case::next(case.status, step).ok().and_then(Status::engagement).is_some() && !case.report_engagement_to.is_empty();
    let housing: Vec<(String, String)> = ctx.isp().directory.with_role(isp::Role::Housing).filter(|a| a.is_active()).map(|a| (a.id.clone(), a.name.clone())).collect();
    let enforce = Which::Step(Step::Enforcement);
    html! {
        @if allowed.is_empty() {
            p #next-steps tabindex="-1" { "This case is completed: nothing more can be done on it. Its record stays." }
        } @else {
            h2 #next-steps tabindex="-1" { "Next steps" }
        }
        @for step in allowed.iter().copied().filter(|s| *s != Step::Enforcement) {
            @let which = Which::Step(step);
            @let id = format!("{}-note", step.code());
            form method="post" action=(action(step)) novalidate {
                (viewer.csrf_field())
                h3 { (step.label()) }
                @if let Some(e) = Problem::error(problem, which) { p.field-error { (e) } }
                @if sends(step) {
                    (textarea(&id, "note", "Note for the survivor's advocate (optional)",
                        &format!("Goes to {} with the engagement update this step sends at once, and is kept here sealed. Never where she lives or how to reach her.", agency_name(ctx, &case.report_engagement_to)),
                        Problem::value(problem, which, "note")))
                } @else {
                    (textarea(&id, "note", "Note (optional)", "Kept at this service, sealed.", Problem::value(problem, which, "note")))
                }
                @if step == Step::Disengaged { button.warning-button type="submit" { (step.label()) } } @else { button type="submit" { (step.label()) } }
            }
        }
        @if allowed.contains(&Step::Enforcement) {
            form method="post" action=(action(Step::Enforcement)) novalidate {
                (viewer.csrf_field())
                h3 { "Record an enforcement step with the housing provider" }
                p.hint { "Led by what the survivor wants: ask her advocate first. The request goes to the housing provider with his details and the grounds; nothing about where she is." }
                @let at = |prefix: &str| Problem::error(problem, enforce).filter(|_| problem.is_some_and(|p| p.field.starts_with(prefix)));
                (radios("action", "enforcement-action", "Action", &Action::ALL.iter().map(|a| (a.code(), a.label())).collect::<Vec<_>>(), Problem::value(problem, enforce, "action"), at("enforcement-action")))
                div.field {
                    label for="enforcement-provider" { "Housing provider asked to act" }
                    select #enforcement-provider name="housing_provider" {
                        @for (id, name) in &housing {
                            option value=(id) selected[Problem::value(problem, enforce, "housing_provider") == id.as_str() || (problem.is_none() && *id == case.referrer)] { (name) }
                        }
                    }
                }
                (radios("survivor_wishes", "enforcement-wishes", "What the survivor wants, as her advocate confirmed", &Wishes::ALL.iter().map(|w| (w.code(), w.label())).collect::<Vec<_>>(),
                    Problem::value(problem, enforce, "survivor_wishes"), at("enforcement-wishes")))
                (textarea("enforcement-grounds", "grounds", "Grounds: what he did", "Sent to the housing provider and kept here sealed.", Problem::value(problem, enforce, "grounds")))
                @if let Some(e) = Problem::error(problem, enforce).filter(|_| problem.is_some_and(|p| !p.field.starts_with("enforcement-action") && !p.field.starts_with("enforcement-wishes"))) {
                    p.field-error { (e) }
                }
                button type="submit" { "Record and send to the housing provider" }
            }
        }
    }
}

fn progress_form(ctx: &Ctx, viewer: &Viewer, case: &Case, problem: Option<&Problem>) -> Markup {
    html! {
        form method="post" action=(format!("/console/cases/{}/engagement-updates", case.id)) novalidate {
            (viewer.csrf_field())
            h2 #progress tabindex="-1" { "Tell the survivor's advocate how he is engaging" }
            p.hint { "Goes to " (agency_name(ctx, &case.report_engagement_to)) ", the advocate the referral named: updates about this case go to no other agency. It says: " (engagement_label(case.status.progress().as_str_name())) "." }
            @if let Some(e) = Problem::error(problem, Which::Progress) { p.field-error { (e) } }
            (textarea("progress-note", "note", "Progress", "What he has attended, missed or said. Never where she lives or how to reach her.", Problem::value(problem, Which::Progress, "note")))
            button.secondary type="submit" { "Send the update" }
        }
    }
}

fn steps_table(steps: &Value) -> Markup {
    let steps = steps.as_array().cloned().unwrap_or_default();
    let label = |code: &str| Status::parse(code).map_or("–", Status::label);
    html! {
        @if steps.is_empty() { p { "Nothing yet: the case is as referred." } } @else {
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Step" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "By" } th scope="col" { "Note" } } }
                tbody { @for s in &steps { tr {
                    td { (when(s["at_ms"].as_i64().unwrap_or_default())) }
                    td { (Step::parse(s["step"].as_str().unwrap_or_default()).map_or("–", Step::label)) }
                    td { (label(s["from"].as_str().unwrap_or_default())) }
                    td { (label(s["to"].as_str().unwrap_or_default())) }
                    td { (s["staff_id"].as_str().unwrap_or_default()) }
                    td { (s["note"].as_str().unwrap_or_default()) }
                } } }
            }
        }
    }
}

fn enforcement_table(ctx: &Ctx, rows: &Value) -> Markup {
    let rows = rows.as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p { "None." } } @else {
            table {
                thead { tr { th scope="col" { "Asked" } th scope="col" { "Action" } th scope="col" { "Housing provider" } th scope="col" { "The survivor" }
                    th scope="col" { "Grounds" } th scope="col" { "By" } th scope="col" { "Answer" } } }
                tbody { @for e in &rows { tr {
                    td { (when(e["requested_at_ms"].as_i64().unwrap_or_default())) }
                    td { (Action::parse(e["action"].as_str().unwrap_or_default()).map_or("–", Action::label)) }
                    td { (agency_name(ctx, e["housing_provider"].as_str().unwrap_or_default())) }
                    td { (Wishes::parse(e["survivor_wishes"].as_str().unwrap_or_default()).map_or("–", Wishes::label)) }
                    td { (e["grounds"].as_str().unwrap_or_default()) }
                    td { (e["requested_by"].as_str().unwrap_or_default()) }
                    td {
                        @match e["answer"].as_str().unwrap_or_default() {
                            "" => "Awaiting the provider's answer",
                            a => { (tag(a)) " " (when(e["answered_at_ms"].as_i64().unwrap_or_default())) }
                        }
                    }
                } } }
            }
        }
    }
}

fn updates_table(ctx: &Ctx, rows: &Value) -> Markup {
    let rows = rows.as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p { "None yet." } } @else {
            table {
                thead { tr { th scope="col" { "Sent" } th scope="col" { "Says" } th scope="col" { "To" } th scope="col" { "How" } th scope="col" { "By" } } }
                tbody { @for u in &rows { tr {
                    td { (when(u["sent_at_ms"].as_i64().unwrap_or_default())) }
                    td { (engagement_label(u["engagement"].as_str().unwrap_or_default())) }
                    td { (agency_name(ctx, u["recipient"].as_str().unwrap_or_default())) }
                    td { @if u["how"] == "automatic" { "By the service, when the case moved" } @else { "A progress update" } }
                    td { (u["sent_by"].as_str().unwrap_or_default()) }
                } } }
            }
        }
    }
}

/// A list of one man's cases (from [`casework::detail`] or [`casework::of_perpetrator`]).
fn cases_table(ctx: &Ctx, cases: &[Value]) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "Case" } th scope="col" { "Received" } th scope="col" { "Referred by" } th scope="col" { "Pathway" } th scope="col" { "Why" } th scope="col" { "Status" } } }
            tbody { @for c in cases { tr {
                td { a.mono href=(format!("/console/cases/{}", c["id"].as_str().unwrap_or_default())) { (c["case_ref"].as_str().filter(|r| !r.is_empty()).unwrap_or("Case without a reference")) } }
                td { (when(c["received_at_ms"].as_i64().unwrap_or_default())) }
                td { (agency_name(ctx, c["referrer"].as_str().unwrap_or_default())) }
                td { (pathway_label(c["pathway"].as_str().unwrap_or_default())) }
                td { (c["reasons"].as_array().into_iter().flatten().filter_map(|r| r.as_str()).filter_map(Reason::parse).map(Reason::label).collect::<Vec<_>>().join("; ")) }
                td { (Status::parse(c["status"].as_str().unwrap_or_default()).map_or(html! { "–" }, status_tag)) }
            } } }
        }
    }
}

// ---------------------------------------------------------------- the forms

/// After a form: back to the case with a notice, or the case again with the problem.
async fn answer<T>(ctx: &Ctx, viewer: &Viewer, id: &str, done: &str, result: Result<T, ApiError>, mut sent: Problem) -> Response {
    match result {
        // The id was checked against its grammar before anything was done.
        Ok(_) => see_other(&format!("/console/cases/{id}?done={done}")),
        Err(e) if e.status == StatusCode::NOT_FOUND || e.body["error"] == "bad_clear_field" => PageError::from(e).page(viewer),
        Err(e) => {
            let status = e.status;
            // A step the case cannot take: its form may not be on the page any more.
            if e.body["error"] == "invalid_transition" {
                sent.field = "next-steps".into();
            }
            let detail = PageError::from(e).detail;
            let mut c = detail.chars();
            sent.message = c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default();
            render(ctx, viewer, id, "", Some(sent), status).await
        }
    }
}

fn problem(form: Which, field: &str, values: Fields) -> Problem {
    Problem { form, field: field.into(), message: String::new(), values }
}

async fn post_step(ctx: Ctx, viewer: Viewer, id: String, step: Step, fields: Vec<(String, String)>) -> Response {
    let f = Fields(fields);
    let result = casework::step(&ctx, &viewer.staff, &id, step, &NoteInput { note: f.get("note").to_owned() }).await;
    let field = format!("{}-note", step.code());
    answer(&ctx, &viewer, &id, step.code(), result, problem(Which::Step(step), &field, f)).await
}

async fn post_assess(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    post_step(ctx, viewer, id, Step::Assess, fields).await
}

async fn post_engaged(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    post_step(ctx, viewer, id, Step::Engaged, fields).await
}

async fn post_disengaged(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    post_step(ctx, viewer, id, Step::Disengaged, fields).await
}

async fn post_completed(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    post_step(ctx, viewer, id, Step::Completed, fields).await
}

async fn post_enforcement(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let which = Which::Step(Step::Enforcement);
    let missing = if Action::parse(f.get("action")).is_none() {
        Some(("enforcement-action-injunction", "Choose the action the housing provider is asked to take"))
    } else if Wishes::parse(f.get("survivor_wishes")).is_none() {
        Some(("enforcement-wishes-supports", "Choose what the survivor wants, as her advocate confirmed"))
    } else {
        None
    };
    if let Some((field, message)) = missing {
        if let Err(e) = casework::check_id(&id) {
            return PageError::from(e).page(&viewer);
        }
        let mut p = problem(which, field, f);
        p.message = message.into();
        return render(&ctx, &viewer, &id, "", Some(p), StatusCode::BAD_REQUEST).await;
    }
    let input = EnforcementInput {
        action: f.get("action").to_owned(),
        housing_provider: Some(f.get("housing_provider").to_owned()),
        survivor_wishes: f.get("survivor_wishes").to_owned(),
        grounds: f.get("grounds").to_owned(),
    };
    let result = casework::enforce(&ctx, &viewer.staff, &id, &input).await;
    let field = match &result {
        Err(e) if e.body["error"] == "survivor_led" => "enforcement-wishes-supports",
        _ => "enforcement-grounds",
    };
    answer(&ctx, &viewer, &id, "enforcement", result, problem(which, field, f)).await
}

async fn post_progress(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    // The page has no choice of recipient: the referral named it.
    let result = casework::progress(&ctx, &viewer.staff, &id, &UpdateInput { note: f.get("note").to_owned(), to: None }).await;
    answer(&ctx, &viewer, &id, "update", result, problem(Which::Progress, "progress-note", f)).await
}

// ---------------------------------------------------------------- his records

fn find_form(viewer: &Viewer, values: &Fields, problems: &[(String, String)]) -> Markup {
    html! {
        (error_summary(problems))
        p { "A man referred to this pathway is known here by a reference of the pathway's own, made from his name and date of birth: the same man gives the same reference whoever referred him, and it means nothing at any other agency." }
        p { "Use this to answer his subject access request, or to see whether he is known here. His records say things about other people (the survivor, children): read them, and remove what is about others, before you give him anything." }
        form method="post" action="/console/perpetrators" novalidate {
            (viewer.csrf_field())
            fieldset {
                legend { "The person causing harm" }
                div.field { label for="full_name" { "Full name" } input #full_name type="text" name="full_name" value=(values.get("full_name")) autocomplete="off"; }
                div.field {
                    label for="date_of_birth" { "Date of birth" }
                    span.hint #date_of_birth-hint { "For example, 1987-09-30" }
                    input.short #date_of_birth type="text" name="date_of_birth" value=(values.get("date_of_birth")) aria-describedby="date_of_birth-hint" autocomplete="off";
                }
            }
            button type="submit" { "Find his records" }
        }
    }
}

async fn find_page(viewer: Viewer) -> Response {
    viewer.page("His records", "/console/perpetrators", find_form(&viewer, &Fields::default(), &[]))
}

async fn find(State(ctx): State<Ctx>, viewer: Viewer, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let input = PersonInput { full_name: f.get("full_name").to_owned(), date_of_birth: f.get("date_of_birth").to_owned() };
    match casework::lookup(&ctx, &input).await {
        // The reference goes in the URL; the name and date of birth never do.
        Ok(reference) => see_other(&format!("/console/perpetrators/{reference}")),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let field = if e.body["detail"].as_str().is_some_and(|d| d.contains("date_of_birth")) { "date_of_birth" } else { "full_name" };
            let detail = PageError::from(e).detail;
            let mut page = viewer.page("His records", "/console/perpetrators", find_form(&viewer, &f, &[(field.into(), detail)]));
            *page.status_mut() = StatusCode::BAD_REQUEST;
            page
        }
        Err(e) => PageError::from(e).page(&viewer),
    }
}

async fn perpetrator_page(State(ctx): State<Ctx>, viewer: Viewer, Path(reference): Path<String>) -> Response {
    let found = match casework::of_perpetrator(&ctx, &reference).await {
        Ok(v) => v,
        Err(e) => return PageError::from(e).page(&viewer),
    };
    let cases = found["cases"].as_array().cloned().unwrap_or_default();
    let body = html! {
        (summary(&[("His reference at this pathway", html! { span.mono { (reference) } }), ("Referrals here", html! { (cases.len()) })]))
        @if cases.is_empty() {
            p { "This pathway holds no case of his." }
        } @else {
            p { "Read each case, and remove what is about other people, before you give him anything." }
            (cases_table(&ctx, &cases))
        }
        p { a href="/console/perpetrators" { "Find another person" } }
    };
    viewer.page("His records", "/console/perpetrators", body)
}
