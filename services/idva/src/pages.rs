//! The IDVA's console pages: the caseload (status, priority, first contact due or overdue,
//! the consent-withdrawn and perpetrator-disengaged markers) and one case (its details, the
//! alert when the perpetrator disengaged from his pathway with the form recording the safety
//! plan's review, a form for each step its status allows, its contact attempts, what
//! perpetrator pathways reported, its safety plan with every earlier version, and the person's
//! chronology). Forms post to routes beside the page, which call [`crate::casework`] like the
//! API does; a refused form comes back with the error summary and what was typed kept.
//! No JavaScript.

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
    case::{self, Method, Outcome, Priority, Reach, Status, Step},
    casework::{self, AttemptInput, CloseInput, NoteInput, PlanInput, Sections, TriageInput},
    perpetrator::{self, ReviewInput},
    store::{self, Case},
};

/// The IDVA's pages in the navigation, after those every agency has.
pub const NAV: &[Nav] = &[Nav { href: "/console/cases", label: "Cases" }];

/// How many cases the caseload page shows; the JSON API pages through all.
const SHOWN: i64 = 300;

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/console/cases", get(caseload))
        .route("/console/cases/{id}", get(case_page))
        .route("/console/cases/{id}/triage", post(post_triage))
        .route("/console/cases/{id}/contact-attempts", post(post_attempt))
        .route("/console/cases/{id}/engaged", post(post_engaged))
        .route("/console/cases/{id}/not-reached", post(post_not_reached))
        .route("/console/cases/{id}/close", post(post_close))
        .route("/console/cases/{id}/safety-plan", post(post_plan))
        .route("/console/cases/{id}/safety-plan-reviewed", post(post_plan_reviewed))
}

type Posted = Form<Vec<(String, String)>>;

/// A tag in one of the console's colours.
fn coloured(colour: &str, label: &str) -> Markup {
    html! { strong class=(format!("tag tag-{colour}")) { (label) } }
}

fn status_tag(s: Status) -> Markup {
    let colour = match s {
        Status::AwaitingTriage | Status::Triaged => "blue",
        Status::ContactAttempted => "yellow",
        Status::Engaged => "green",
        Status::NotReached => "red",
        Status::Closed => "grey",
    };
    coloured(colour, s.label())
}

fn priority_tag(p: Option<Priority>) -> Markup {
    match p {
        Some(p @ Priority::Urgent) => coloured("red", p.label()),
        Some(p @ Priority::High) => coloured("yellow", p.label()),
        Some(p) => coloured("grey", p.label()),
        None => html! { "Not triaged" },
    }
}

fn risk_tag(risk: &str) -> Markup {
    match risk {
        "high" => coloured("red", "High"),
        "medium" => coloured("yellow", "Medium"),
        "standard" => coloured("grey", "Standard"),
        _ => html! { "Not stated" },
    }
}

/// Where first contact stands, for a table cell or a summary row.
fn contact_cell(c: &Case, now: i64) -> Markup {
    match c.contact(now) {
        "met" => html! { "Attempted " (when(c.first_attempt_at_ms.unwrap_or_default())) },
        "overdue" => html! { (coloured("red", "overdue")) " was due " (when(c.contact_due_ms)) },
        "cancelled" => html! { "None: closed first" },
        _ => html! { "Due by " (when(c.contact_due_ms)) },
    }
}

fn agency_name(ctx: &Ctx, id: &str) -> String {
    ctx.isp().directory.get(id).map(|a| a.name.clone()).unwrap_or_else(|| id.to_owned())
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
        let alerted = perpetrator::alerted(&ctx.pool, &cases.iter().map(|c| c.id.as_str()).collect::<Vec<_>>()).await?;
        Ok::<_, sqlx::Error>((cases, alerted))
    };
    let (cases, alerted) = match loaded.await {
        Ok(l) => l,
        Err(e) => return PageError::from(e).page(&viewer),
    };
    let now = ctx.config.clock.now_ms();
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
                caption.visually-hidden { "Cases: open ones first, first contact due soonest first" }
                thead {
                    tr {
                        th scope="col" { "Case" }
                        th scope="col" { "Received" }
                        th scope="col" { "Referred by" }
                        th scope="col" { "Risk" }
                        th scope="col" { "Priority" }
                        th scope="col" { "Status" }
                        th scope="col" { "First contact" }
                        th scope="col" { "Flags" }
                    }
                }
                tbody {
                    @for c in &cases {
                        tr {
                            td { a.mono href=(format!("/console/cases/{}", c.id)) { (if c.case_ref.is_empty() { "Case without a reference" } else { c.case_ref.as_str() }) } }
                            td { (when(c.received_at_ms)) }
                            td { (agency_name(&ctx, &c.referrer)) }
                            td { (risk_tag(&c.risk)) }
                            td { (priority_tag(c.priority)) }
                            td { (status_tag(c.status)) }
                            td { (contact_cell(c, now)) }
                            td {
                                @if c.consent_withdrawn_at_ms.is_some() { (coloured("red", "consent withdrawn")) " " }
                                @if alerted.contains(&c.id) { (coloured("red", "perpetrator disengaged")) }
                            }
                        }
                    }
                }
            }
        }
    };
    viewer.page("Cases", "/console/cases", body)
}

// ---------------------------------------------------------------- one case

#[derive(Deserialize, Default)]
struct Notice {
    #[serde(default)]
    done: String,
}

fn notice(done: &str) -> Markup {
    let text = match done {
        "triaged" => "The case was triaged.",
        "attempt" => "The contact attempt was logged.",
        "engaged" => "The survivor is recorded as engaged.",
        "not_reached" => "The case is marked not reached. Log the next attempt when you make it.",
        "closed" => "The case was closed with its outcome.",
        "plan" => "A new version of the safety plan was saved.",
        "reviewed" => "The safety plan's review is recorded: the disengagement alert is resolved.",
        _ => return html! {},
    };
    html! { div.notice role="status" { h2 { "Done" } p { (text) } } }
}

/// Which form of the case page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Step(Step),
    Plan,
    Review,
}

/// A form that was refused: which one, the field to go to, why, and what was typed.
struct Problem {
    form: Which,
    field: String,
    message: String,
    values: Fields,
}

impl Problem {
    /// What was typed into `name` of `form`, when this is that form's problem.
    fn value<'a>(problem: Option<&'a Problem>, form: Step, name: &str) -> Option<&'a str> {
        problem.filter(|p| p.form == Which::Step(form)).map(|p| p.values.get(name))
    }

    fn error(problem: Option<&Problem>, form: Step) -> Option<&str> {
        problem.filter(|p| p.form == Which::Step(form)).map(|p| p.message.as_str())
    }
}

async fn case_page(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Query(n): Query<Notice>) -> Response {
    render(&ctx, &viewer, &id, &n.done, None, StatusCode::OK).await
}

/// Where an error of the safety plan's form links.
const PLAN_FIELD: &str = "plan-immediate_safety";

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
    let case = casework::find(ctx, id).await?;
    let attempts = casework::attempts(ctx, id).await?;
    let versions = casework::plan_versions(ctx, id).await?;
    let deadlines = casework::deadlines_of(ctx, id).await?;
    let updates = perpetrator::updates_of(ctx, id).await?;
    let chronology = runtime::chronology::of_subject(ctx, &case.subject_ref).await?;
    let now = ctx.config.clock.now_ms();
    let title = if case.case_ref.is_empty() { "IDVA case".to_owned() } else { format!("IDVA case {}", case.case_ref) };
    let escalated: Vec<&Value> = deadlines.iter().filter(|d| d["state"] == "escalated").collect();
    let problems: Vec<(String, String)> = problem.map(|p| vec![(p.field.clone(), p.message.clone())]).unwrap_or_default();
    let body = html! {
        (notice(done))
        (error_summary(&problems))
        @if let Some(at) = case.consent_withdrawn_at_ms {
            div.warning role="alert" {
                span.icon aria-hidden="true" { "!" }
                span {
                    "Consent withdrawn. The consent this referral relied on (record " span.mono { (case.consent_id) } " of " (agency_name(ctx, &case.consent_recorded_by))
                    ") was withdrawn; this service saw it " (when(at)) ". Sharing that relied on it has stopped: check before any disclosure about this person."
                }
            }
        }
        (disengagement_alert(ctx, viewer, &case, &updates, problem))
        @if !escalated.is_empty() {
            div.refused role="alert" {
                h2 { "Escalated" }
                ul {
                    @for d in &escalated {
                        li { (deadline_label(d["code"].as_str().unwrap_or_default())) " was due " (when(d["due_at_ms"].as_i64().unwrap_or_default())) " and is not done." }
                    }
                }
            }
        }
        (summary(&[
            ("Status", status_tag(case.status)),
            ("Priority", html! { (priority_tag(case.priority)) @if !case.triaged_by.is_empty() { " by " (case.triaged_by) ", " (when(case.triaged_at_ms.unwrap_or_default())) } }),
            ("Risk", risk_tag(&case.risk)),
            ("Referred by", html! {
                (agency_name(ctx, &case.referrer)) ", received " (when(case.received_at_ms)) ". "
                @if case.outcome == Some(Outcome::ReferralRevoked) { "The referrer revoked it: its content is no longer available." }
                @else { a href=(format!("/console/inbox/{}", case.id)) { "Read the referral" } " (the survivor's details and how to contact them safely)" }
            }),
            ("Referrer's case reference", html! { span.mono { (case.case_ref) } }),
            ("Person (pseudonym)", html! { span.mono { (case.subject_ref) } }),
            ("First contact", contact_cell(&case, now)),
            ("Consent relied on", consent_cell(ctx, &case)),
            ("Outcome", match case.outcome {
                Some(o) => html! { (o.label()) @if !case.closed_by.is_empty() { " (closed by " (case.closed_by) ", " (when(case.closed_at_ms.unwrap_or_default())) ")" } @else { " (" (when(case.closed_at_ms.unwrap_or_default())) ")" } },
                None => html! { "Open" },
            }),
        ]))
        (step_forms(viewer, &case, &attempts, problem))
        h2 { "Contact attempts" }
        (attempts_table(&attempts))
        h2 { "Perpetrator pathway" }
        (updates_table(ctx, &updates))
        h2 #safety-plan tabindex="-1" { "Safety plan" }
        (plan_section(viewer, &case, &versions, problem))
        h2 { "Chronology" }
        p.hint { "Everything this service has recorded about this person, on every case, oldest first." }
        (timeline(&chronology.iter().map(chronology_step).collect::<Vec<_>>()))
    };
    Ok((title, body))
}

fn consent_cell(ctx: &Ctx, case: &Case) -> Markup {
    if case.consent_id.is_empty() {
        return html! { "No consent record (shared under another lawful basis)" };
    }
    html! {
        "Record " span.mono { (case.consent_id) } " of " (agency_name(ctx, &case.consent_recorded_by)) " "
        @if case.consent_withdrawn_at_ms.is_some() { (coloured("red", "withdrawn")) } @else { (coloured("green", "in force when last checked")) }
    }
}

fn deadline_label(code: &str) -> &'static str {
    match code {
        runtime::deadlines::IDVA_CONTACT => "First contact with the survivor",
        runtime::deadlines::ACKNOWLEDGE => "Answering the referral (accept, decline or close in the inbox)",
        perpetrator::DISENGAGED => "Reviewing the safety plan: the perpetrator disengaged from his pathway",
        _ => "A deadline",
    }
}

fn engagement_label(code: &str) -> &'static str {
    match code {
        "ENGAGEMENT_NOT_STARTED" => "not started",
        "ENGAGEMENT_ENGAGED" => "engaged",
        "ENGAGEMENT_DISENGAGED" => "disengaged",
        "ENGAGEMENT_COMPLETED" => "completed",
        "ENGAGEMENT_BREACH" => "breach, enforcement under way",
        _ => "not stated",
    }
}

/// The alert when a perpetrator disengaged from his pathway and the safety plan has not been
/// reviewed since, with the form that records the review.
fn disengagement_alert(ctx: &Ctx, viewer: &Viewer, case: &Case, updates: &[Value], problem: Option<&Problem>) -> Markup {
    let open: Vec<&Value> = updates.iter().filter(|u| u["alert"] == true).collect();
    if open.is_empty() {
        return html! {};
    }
    let review = problem.filter(|p| p.form == Which::Review);
    html! {
        div.refused role="alert" {
            h2 #perpetrator-alert tabindex="-1" { "The perpetrator disengaged" }
            ul {
                @for u in &open {
                    li { (agency_name(ctx, u["pathway_agency"].as_str().unwrap_or_default())) " reported him disengaged "
                        (when(u["received_at_ms"].as_i64().unwrap_or_default())) ". Disengagement is a safety signal: review the survivor's safety plan with her now." }
                }
            }
            form method="post" action=(format!("/console/cases/{}/safety-plan-reviewed", case.id)) novalidate {
                (viewer.csrf_field())
                @if let Some(p) = review { p.field-error { (p.message) } }
                (textarea("review-note", "note", "What the review found (optional)", "Kept at this service, sealed. Saving a new version of the plan also records a review.",
                    review.map(|p| p.values.get("note")).unwrap_or_default()))
                button type="submit" { "Record that the safety plan was reviewed" }
            }
        }
    }
}

fn updates_table(ctx: &Ctx, updates: &[Value]) -> Markup {
    html! {
        @if updates.is_empty() {
            p { "No perpetrator pathway has reported on this case." }
        } @else {
            table {
                thead { tr { th scope="col" { "Received" } th scope="col" { "From" } th scope="col" { "He is" } th scope="col" { "As of" } th scope="col" { "Note" } th scope="col" { "Reviewed" } } }
                tbody {
                    @for u in updates {
                        tr {
                            td { (when(u["received_at_ms"].as_i64().unwrap_or_default())) }
                            td { (agency_name(ctx, u["pathway_agency"].as_str().unwrap_or_default())) }
                            td { (engagement_label(u["engagement"].as_str().unwrap_or_default())) }
                            td { (u["as_of"].as_str().unwrap_or_default()) }
                            td { (u["note"].as_str().unwrap_or_default()) }
                            td {
                                @if u["alert"] == true { (coloured("red", "not yet")) }
                                @else if let Some(at) = u["reviewed_at_ms"].as_i64() { (when(at)) " by " (u["reviewed_by"].as_str().unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The forms of the steps the case's status allows.
fn step_forms(viewer: &Viewer, case: &Case, attempts: &[Value], problem: Option<&Problem>) -> Markup {
    let allowed = case::allowed(case.status);
    let action = |step: &str| format!("/console/cases/{}/{step}", case.id);
    let reached = attempts.iter().any(|a| a["outcome"] == Reach::Reached.code());
    html! {
        @if allowed.is_empty() {
            p #next-steps tabindex="-1" { "This case is closed: nothing more can be done on it. Its record stays." }
        } @else {
            h2 #next-steps tabindex="-1" { "Next steps" }
        }
        @if allowed.contains(&Step::Triage) {
            form method="post" action=(action("triage")) novalidate {
                (viewer.csrf_field())
                h3 { "Triage" }
                (radios("priority", "triage-priority", "Priority", &Priority::ALL.iter().map(|p| (p.code(), p.label())).collect::<Vec<_>>(),
                    Problem::value(problem, Step::Triage, "priority").unwrap_or_default(), Problem::error(problem, Step::Triage)))
                (textarea("triage-note", "note", "Triage note (optional)", "Kept at this service, sealed.", Problem::value(problem, Step::Triage, "note").unwrap_or_default()))
                button type="submit" { "Record triage" }
            }
        }
        @if allowed.contains(&Step::ContactAttempt) {
            form method="post" action=(action("contact-attempts")) novalidate {
                (viewer.csrf_field())
                h3 { "Log a contact attempt" }
                @let error = Problem::error(problem, Step::ContactAttempt);
                @let method = Problem::value(problem, Step::ContactAttempt, "method").unwrap_or_default();
                @let outcome = Problem::value(problem, Step::ContactAttempt, "outcome").unwrap_or_default();
                @let at = |prefix: &str| error.filter(|_| problem.is_some_and(|p| p.field.starts_with(prefix)));
                (radios("method", "attempt-method", "How", &Method::ALL.iter().map(|m| (m.code(), m.label())).collect::<Vec<_>>(), method, at("attempt-method")))
                (radios("outcome", "attempt-outcome", "What happened", &Reach::ALL.iter().map(|r| (r.code(), r.label())).collect::<Vec<_>>(), outcome, at("attempt-outcome")))
                (textarea("attempt-note", "note", "Note (optional)", "Kept at this service, sealed. Never a phone number or an address.", Problem::value(problem, Step::ContactAttempt, "note").unwrap_or_default()))
                button type="submit" { "Log the attempt" }
            }
        }
        @if allowed.contains(&Step::Engaged) {
            @if reached {
                form method="post" action=(action("engaged")) novalidate {
                    (viewer.csrf_field())
                    h3 { "The survivor is engaged" }
                    @if let Some(e) = Problem::error(problem, Step::Engaged) { p.field-error { (e) } }
                    (textarea("engaged-note", "note", "Note (optional)", "Kept at this service, sealed.", Problem::value(problem, Step::Engaged, "note").unwrap_or_default()))
                    button type="submit" { "Mark as engaged" }
                }
            } @else {
                p.hint { "Once an attempt reaches the survivor, you can mark them as engaged." }
            }
        }
        @if allowed.contains(&Step::NotReached) {
            form method="post" action=(action("not-reached")) novalidate {
                (viewer.csrf_field())
                h3 { "The survivor was not reached" }
                @if let Some(e) = Problem::error(problem, Step::NotReached) { p.field-error { (e) } }
                (textarea("not-reached-note", "note", "Note (optional)", "Kept at this service, sealed.", Problem::value(problem, Step::NotReached, "note").unwrap_or_default()))
                button.secondary type="submit" { "Mark as not reached" }
            }
        }
        @if allowed.contains(&Step::Close) {
            form method="post" action=(action("close")) novalidate {
                (viewer.csrf_field())
                h3 { "Close the case" }
                (radios("outcome", "close-outcome", "Outcome", &Outcome::for_staff().map(|o| (o.code(), o.label())).collect::<Vec<_>>(),
                    Problem::value(problem, Step::Close, "outcome").unwrap_or_default(), Problem::error(problem, Step::Close)))
                (textarea("close-note", "note", "Closing note (optional)", "Kept at this service, sealed.", Problem::value(problem, Step::Close, "note").unwrap_or_default()))
                button.warning-button type="submit" { "Close the case" }
            }
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

fn attempts_table(attempts: &[Value]) -> Markup {
    let label = |code: &str, of: fn(&str) -> Option<&'static str>| of(code).unwrap_or("–");
    html! {
        @if attempts.is_empty() {
            p { "No contact attempted yet." }
        } @else {
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "How" } th scope="col" { "What happened" } th scope="col" { "By" } th scope="col" { "Note" } } }
                tbody {
                    @for a in attempts {
                        tr {
                            td { (when(a["attempted_at_ms"].as_i64().unwrap_or_default())) }
                            td { (label(a["method"].as_str().unwrap_or_default(), |c| Method::parse(c).map(Method::label))) }
                            td { (label(a["outcome"].as_str().unwrap_or_default(), |c| Reach::parse(c).map(Reach::label))) }
                            td { (a["attempted_by"].as_str().unwrap_or_default()) }
                            td { (a["note"].as_str().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}

fn plan_section(viewer: &Viewer, case: &Case, versions: &[Value], problem: Option<&Problem>) -> Markup {
    let latest = versions.last();
    let latest_number = latest.and_then(|v| v["version"].as_i64()).unwrap_or(0);
    let plan_problem = problem.filter(|p| p.form == Which::Plan);
    let shown = |field: &str| -> String {
        match plan_problem {
            Some(p) => p.values.get(field).to_owned(),
            None => latest.and_then(|v| v["sections"][field].as_str()).unwrap_or_default().to_owned(),
        }
    };
    html! {
        @match latest {
            Some(v) => p { "Version " (latest_number) ", saved by " (v["saved_by"].as_str().unwrap_or_default()) ", " (when(v["saved_at_ms"].as_i64().unwrap_or_default())) "." },
            None => p { "No safety plan yet." },
        }
        @if case.status.is_open() {
            form method="post" action=(format!("/console/cases/{}/safety-plan", case.id)) novalidate {
                (viewer.csrf_field())
                input type="hidden" name="based_on_version" value=(plan_problem.map(|p| p.values.get("based_on_version").to_owned()).unwrap_or_else(|| latest_number.to_string()));
                fieldset {
                    legend { @if latest.is_some() { "Change the plan" } @else { "Write the plan" } }
                    @if let Some(p) = plan_problem { span.field-error { span.visually-hidden { "Error: " } (p.message) } }
                    p.hint { "Saving keeps every earlier version. Kept at this service, sealed; never shared." }
                    @for (field, label, hint) in Sections::FIELDS {
                        @let id = format!("plan-{field}");
                        @let hint_id = format!("{id}-hint");
                        div.field {
                            label for=(id) { (label) }
                            span.hint id=(hint_id) { (hint) }
                            textarea id=(id) name=(field) rows="4" aria-describedby=(hint_id) { (shown(field)) }
                        }
                    }
                }
                button type="submit" { "Save as version " (latest_number + 1) }
            }
        }
        @if versions.len() > 1 || (!case.status.is_open() && latest.is_some()) {
            h3 { "Versions" }
            @for v in versions.iter().rev() {
                details {
                    summary { "Version " (v["version"]) ", saved by " (v["saved_by"].as_str().unwrap_or_default()) ", " (when(v["saved_at_ms"].as_i64().unwrap_or_default())) }
                    dl.summary {
                        @for (field, label, _) in Sections::FIELDS {
                            div { dt { (label) } dd { (v["sections"][field].as_str().unwrap_or_default()) } }
                        }
                    }
                }
            }
        }
    }
}

/// A chronology entry as a step of the timeline: what happened, by whom, and its note.
fn chronology_step(e: &Value) -> TimelineStep {
    let code = e["code"].as_str().unwrap_or_default();
    let what = match e["event"].as_str().unwrap_or_default() {
        "disclosure_received" => format!("Received: {}", runtime::console::form::kind_label(code)),
        "disclosure_sent" => format!("Sent: {}", runtime::console::form::kind_label(code)),
        "case_opened" => "IDVA case opened, awaiting triage".to_owned(),
        "case_triaged" => format!("Triaged: {} priority", Priority::parse(code).map_or(code, |p| p.label())),
        "contact_attempt" => format!("Contact attempt: {}", Reach::parse(code).map_or(code, |r| r.label())),
        "case_engaged" => "Survivor engaged".to_owned(),
        "case_not_reached" => "Survivor not reached".to_owned(),
        "case_closed" => format!("Case closed: {}", Outcome::parse(code).map_or(code, |o| o.label())),
        "safety_plan_saved" => format!("Safety plan saved (version {})", code.trim_start_matches('v')),
        "consent_withdrawn" => "Consent withdrawn: the referral relied on it".to_owned(),
        "perpetrator_engagement" => format!("Perpetrator pathway update: {}", engagement_label(code)),
        "safety_plan_reviewed" => "Safety plan reviewed after the perpetrator disengaged".to_owned(),
        "flag" => format!("Flag raised: {code}"),
        "flag_cleared" => format!("Flag cleared: {code}"),
        "deadline_missed" => format!("Missed: {}", deadline_label(code)),
        "acknowledged" => format!("Referral answered: {code}"),
        other => runtime::console::form::humanise(other),
    };
    let by = e["staff_id"].as_str().filter(|s| !s.is_empty()).map(|s| format!("by {s}"));
    let detail = [by.unwrap_or_default(), e["detail"].as_str().unwrap_or_default().to_owned()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(": ");
    TimelineStep { at_ms: e["at_ms"].as_i64().unwrap_or_default(), what, detail }
}

// ---------------------------------------------------------------- the forms

/// A form as posted: which one, the field its errors link to, and what was typed.
struct Sent {
    form: Which,
    field: &'static str,
    values: Fields,
}

impl Sent {
    fn problem(self, message: String) -> Problem {
        Problem { form: self.form, field: self.field.to_owned(), message, values: self.values }
    }
}

/// After a form: back to the case with a notice, or the case again with the problem.
async fn answer<T>(ctx: &Ctx, viewer: &Viewer, id: &str, done: &str, result: Result<T, ApiError>, sent: Sent) -> Response {
    match result {
        // The id was checked against its grammar before anything was done.
        Ok(_) => see_other(&format!("/console/cases/{id}?done={done}")),
        Err(e) if e.status == StatusCode::NOT_FOUND || e.body["error"] == "bad_clear_field" => PageError::from(e).page(viewer),
        Err(e) => {
            let status = e.status;
            let message = capitalise(&PageError::from(e).detail);
            // A step the case cannot take: its form may not be on the page any more.
            let mut sent = sent;
            if status == StatusCode::CONFLICT {
                sent.field = match sent.form {
                    Which::Plan => "safety-plan",
                    Which::Review => "perpetrator-alert",
                    Which::Step(_) => "next-steps",
                };
            }
            render(ctx, viewer, id, "", Some(sent.problem(message)), status).await
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// A choice the form needs and did not get: the page again, pointing at it.
async fn missing(ctx: &Ctx, viewer: &Viewer, id: &str, sent: Sent, message: &str) -> Response {
    if let Err(e) = crate::case::check_id(id) {
        return PageError::from(e).page(viewer);
    }
    render(ctx, viewer, id, "", Some(sent.problem(message.to_owned())), StatusCode::BAD_REQUEST).await
}

async fn post_triage(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    if Priority::parse(f.get("priority")).is_none() {
        return missing(&ctx, &viewer, &id, Sent { form: Which::Step(Step::Triage), field: "triage-priority-urgent", values: f }, "Choose the priority of the case").await;
    }
    let input = TriageInput { priority: f.get("priority").to_owned(), note: f.get("note").to_owned() };
    let result = casework::triage(&ctx, &viewer.staff, &id, &input).await;
    answer(&ctx, &viewer, &id, "triaged", result, Sent { form: Which::Step(Step::Triage), field: "triage-priority-urgent", values: f }).await
}

async fn post_attempt(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    if Method::parse(f.get("method")).is_none() {
        return missing(&ctx, &viewer, &id, Sent { form: Which::Step(Step::ContactAttempt), field: "attempt-method-phone", values: f }, "Choose how contact was attempted").await;
    }
    if Reach::parse(f.get("outcome")).is_none() {
        return missing(&ctx, &viewer, &id, Sent { form: Which::Step(Step::ContactAttempt), field: "attempt-outcome-reached", values: f }, "Choose what happened").await;
    }
    let input = AttemptInput { method: f.get("method").to_owned(), outcome: f.get("outcome").to_owned(), note: f.get("note").to_owned() };
    let result = casework::attempt(&ctx, &viewer.staff, &id, &input).await;
    answer(&ctx, &viewer, &id, "attempt", result, Sent { form: Which::Step(Step::ContactAttempt), field: "attempt-method-phone", values: f }).await
}

async fn post_engaged(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let result = casework::engaged(&ctx, &viewer.staff, &id, &NoteInput { note: f.get("note").to_owned() }).await;
    answer(&ctx, &viewer, &id, "engaged", result, Sent { form: Which::Step(Step::Engaged), field: "engaged-note", values: f }).await
}

async fn post_not_reached(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let result = casework::not_reached(&ctx, &viewer.staff, &id, &NoteInput { note: f.get("note").to_owned() }).await;
    answer(&ctx, &viewer, &id, "not_reached", result, Sent { form: Which::Step(Step::NotReached), field: "not-reached-note", values: f }).await
}

async fn post_close(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    if Outcome::parse(f.get("outcome")).filter(|o| o.chosen_by_staff()).is_none() {
        return missing(&ctx, &viewer, &id, Sent { form: Which::Step(Step::Close), field: "close-outcome-risk_reduced", values: f }, "Choose the outcome the case closes with").await;
    }
    let input = CloseInput { outcome: f.get("outcome").to_owned(), note: f.get("note").to_owned() };
    let result = casework::close(&ctx, &viewer.staff, &id, &input).await;
    answer(&ctx, &viewer, &id, "closed", result, Sent { form: Which::Step(Step::Close), field: "close-outcome-risk_reduced", values: f }).await
}

async fn post_plan_reviewed(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let result = perpetrator::review(&ctx, &viewer.staff, &id, &ReviewInput { note: f.get("note").to_owned() }).await;
    answer(&ctx, &viewer, &id, "reviewed", result, Sent { form: Which::Review, field: "review-note", values: f }).await
}

async fn post_plan(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let based_on = f.get("based_on_version");
    let based_on_version = match based_on.parse::<i64>() {
        Ok(n) if n >= 0 => Some(n),
        _ if based_on.is_empty() => None,
        _ => return missing(&ctx, &viewer, &id, Sent { form: Which::Plan, field: PLAN_FIELD, values: f }, "The form was changed: reload the page and write the plan again").await,
    };
    let input = PlanInput { sections: Sections::from_fields(|name| f.get(name).to_owned()), based_on_version };
    let result = casework::save_plan(&ctx, &viewer.staff, &id, &input).await;
    answer(&ctx, &viewer, &id, "plan", result, Sent { form: Which::Plan, field: PLAN_FIELD, values: f }).await
}
