//! The coordinator's console pages: the board (cases awaiting screening, meetings to come
//! with a form to schedule one, the newest referrals, research outstanding per member,
//! actions overdue), a case
//! (its criteria and evidence, a form for each decision its status allows, its research,
//! hearing, actions, minutes and the person's chronology), a meeting (its agenda, attendance,
//! a hearing form for each case listed, the minutes) and the quarter's figures. Forms post to
//! routes beside the pages, which call the same functions as the API; a refused form comes
//! back with the error summary and what was typed kept. No JavaScript.

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
    api,
    case::{CloseReason, Decision, Outcome, Status, Step},
    casework::{self, CloseInput, DeferInput, ListInput, ScreenInput},
    criteria::{Criterion, Source},
    figures::{self, Quarter},
    follow::{ACTION_DUE, RESEARCH_REPLY},
    hearing::{self, ActionInput, HearingInput},
    meetings::{self, AttendanceInput, MeetingInput},
    members,
    research::{self, ResearchInput},
    store::{self, Case, Meeting},
};

/// The MARAC's pages in the navigation, after those every agency has.
pub const NAV: &[Nav] = &[Nav { href: "/console/board", label: "MARAC board" }, Nav { href: "/console/figures", label: "Quarterly figures" }];

/// How many action rows a hearing form offers.
const ACTION_ROWS: usize = 3;

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/console/board", get(board_page))
        .route("/console/meetings", post(post_meeting))
        .route("/console/cases/{id}", get(case_page))
        .route("/console/cases/{id}/screen", post(post_screen))
        .route("/console/cases/{id}/list", post(post_list))
        .route("/console/cases/{id}/defer", post(post_defer))
        .route("/console/cases/{id}/research", post(post_research))
        .route("/console/cases/{id}/hearing", post(post_hearing))
        .route("/console/cases/{id}/close", post(post_close))
        .route("/console/meetings/{id}", get(meeting_page))
        .route("/console/meetings/{id}/attendance", post(post_attendance))
        .route("/console/meetings/{id}/minutes", post(post_minutes))
        .route("/console/figures", get(figures_page))
}

type Posted = Form<Vec<(String, String)>>;

// ---------------------------------------------------------------- pieces

fn coloured(colour: &str, label: &str) -> Markup {
    html! { strong class=(format!("tag tag-{colour}")) { (label) } }
}

fn status_tag(s: Status) -> Markup {
    let colour = match s {
        Status::Received => "blue",
        Status::ScreenedIn | Status::Listed => "yellow",
        Status::Heard => "green",
        Status::CriteriaNotMet | Status::Closed => "grey",
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

fn agency_name(ctx: &Ctx, id: &str) -> String {
    ctx.isp().directory.get(id).map(|a| a.name.clone()).unwrap_or_else(|| id.to_owned())
}

fn case_link(c: &Case) -> Markup {
    let label = if c.marac_ref.is_empty() { "Case without a reference" } else { c.marac_ref.as_str() };
    html! { a.mono href=(format!("/console/cases/{}", c.id)) { (label) } }
}

fn criteria_cell(c: &Case) -> Markup {
    let a = c.assessment();
    html! {
        @if a.met.is_empty() { "None met" }
        @for (i, m) in a.met.iter().enumerate() { @if i > 0 { ", " } (short(m.criterion)) }
        @if c.class.duplicate_of.is_some() { " " (coloured("grey", "duplicate")) }
    }
}

fn short(c: Criterion) -> &'static str {
    match c {
        Criterion::VisibleHighRisk => "Visible high risk",
        Criterion::ProfessionalJudgement => "Professional judgement",
        Criterion::PotentialEscalation => "Potential escalation",
        Criterion::Repeat => "Repeat",
    }
}

/// One criterion's evidence, in words: ids, scores and dates only.
fn evidence(m: &crate::criteria::Met) -> String {
    let e = &m.evidence;
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
    match (m.criterion, m.source) {
        (Criterion::VisibleHighRisk, _) => format!("DASH score {} (assessment {} of {})", e["score"], s("assessment_id"), s("assessed_by")),
        (Criterion::ProfessionalJudgement, _) => format!("DASH score {}, raised to high by {} (assessment {} of {})", e["score"], s("judgement_officer"), s("assessment_id"), s("assessed_by")),
        (Criterion::PotentialEscalation, Source::Service) => format!("{} incidents referred in the last 12 months", e["incidents_12m"]),
        (Criterion::PotentialEscalation, _) => "Named by the referrer".to_owned(),
        (Criterion::Repeat, Source::Service) => format!("Previous MARAC on {}", s("previous_marac_on")),
        (Criterion::Repeat, _) => format!("The referral names a MARAC elsewhere on {}", s("previous_marac_on")),
    }
}

fn notice(done: &str) -> Markup {
    let text = match done {
        "screened_in" => "The case was screened in; the referrer has been told it is accepted.",
        "criteria_not_met" => "The case was screened out; the referrer has been told why.",
        "listed" => "The case was listed for the meeting.",
        "deferred" => "The case was taken off the agenda. List it for another meeting when ready.",
        "research" => "Research requests were sent to every member agency.",
        "heard" => "The hearing was recorded and its actions sent to their owners.",
        "closed" => "The case was closed; the referrer has been told.",
        "meeting" => "The meeting is on the schedule.",
        "attendance" => "Attendance and the confidentiality agreement were recorded.",
        "minutes" => "The minutes were sent to every member agency, each minimised to what it may see.",
        _ => return html! {},
    };
    html! { div.notice role="status" { h2 { "Done" } p { (text) } } }
}

#[derive(Deserialize, Default)]
struct Notice {
    #[serde(default)]
    done: String,
}

/// A form that was refused: which one, the field to go to, why, and what was typed.
struct Problem {
    form: String,
    field: String,
    message: String,
    values: Fields,
}

impl Problem {
    fn of<'a>(problem: Option<&'a Problem>, form: &str) -> Option<&'a Problem> {
        problem.filter(|p| p.form == form)
    }

    fn value<'a>(problem: Option<&'a Problem>, form: &str, name: &str) -> &'a str {
        Problem::of(problem, form).map(|p| p.values.get(name)).unwrap_or_default()
    }

    fn error<'a>(problem: Option<&'a Problem>, form: &str) -> Option<&'a str> {
        Problem::of(problem, form).map(|p| p.message.as_str())
    }
}

fn problems(problem: Option<&Problem>) -> Vec<(String, String)> {
    problem.map(|p| vec![(p.field.clone(), p.message.clone())]).unwrap_or_default()
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// A fieldset of radios; each one's id is `{prefix}-{code}` (the first is where an error links).
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

fn textarea(id: &str, name: &str, label: &str, hint: &str, value: &str, error: Option<&str>) -> Markup {
    let hint_id = format!("{id}-hint");
    html! {
        div.field.error[error.is_some()] {
            label for=(id) { (label) }
            span.hint id=(hint_id) { (hint) }
            @if let Some(e) = error { span.field-error { span.visually-hidden { "Error: " } (e) } }
            textarea id=(id) name=(name) rows="4" aria-describedby=(hint_id) { (value) }
        }
    }
}

fn date_input(id: &str, name: &str, label: &str, hint: &str, value: &str) -> Markup {
    let hint_id = format!("{id}-hint");
    html! {
        div.field {
            label for=(id) { (label) }
            span.hint id=(hint_id) { (hint) }
            input.short id=(id) type="text" name=(name) value=(value) aria-describedby=(hint_id) autocomplete="off";
        }
    }
}

fn deadline_label(code: &str) -> &'static str {
    match code {
        RESEARCH_REPLY => "A member's answer to a research request",
        ACTION_DUE => "An action agreed at the meeting",
        runtime::deadlines::ACKNOWLEDGE => "Screening the referral (the referrer waits for an answer)",
        _ => "A deadline",
    }
}

/// After a form: on to `to` with a notice, or the page again with the problem (or an error
/// page for an id that is not one).
async fn answered<T, F, Fut>(viewer: &Viewer, result: Result<T, ApiError>, to: String, form: &str, field: &str, values: Fields, again: F) -> Response
where
    F: FnOnce(Problem, StatusCode) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    match result {
        Ok(_) => see_other(&to),
        Err(e) if e.status == StatusCode::NOT_FOUND || e.body["error"] == "bad_clear_field" && e.body["field"] == "id" => PageError::from(e).page(viewer),
        Err(e) => {
            let status = e.status;
            let message = capitalise(&PageError::from(e).detail);
            again(Problem { form: form.to_owned(), field: field.to_owned(), message, values }, status).await
        }
    }
}

// ---------------------------------------------------------------- the board

async fn board_page(State(ctx): State<Ctx>, viewer: Viewer, Query(n): Query<Notice>) -> Response {
    render_board(&ctx, &viewer, &n.done, None, StatusCode::OK).await
}

async fn render_board(ctx: &Ctx, viewer: &Viewer, done: &str, problem: Option<Problem>, status: StatusCode) -> Response {
    match board_body(ctx, viewer, done, problem.as_ref()).await {
        Ok(body) => {
            let mut response = viewer.page("MARAC board", "/console/board", body);
            *response.status_mut() = status;
            response
        }
        Err(e) => PageError::from(e).page(viewer),
    }
}

fn cases_table(ctx: &Ctx, caption: &str, cases: &[Case], with_status: bool) -> Markup {
    html! {
        table {
            caption.visually-hidden { (caption) }
            thead {
                tr {
                    th scope="col" { "Case" } th scope="col" { "Received" } th scope="col" { "Referred by" } th scope="col" { "Risk" } th scope="col" { "Criteria met" }
                    @if with_status { th scope="col" { "Status" } }
                }
            }
            tbody {
                @for c in cases {
                    tr {
                        td { (case_link(c)) }
                        td { (when(c.received_at_ms)) }
                        td { (agency_name(ctx, &c.referrer)) }
                        td { (risk_tag(&c.risk)) }
                        td { (criteria_cell(c)) }
                        @if with_status { td { (status_tag(c.status)) } }
                    }
                }
            }
        }
    }
}

async fn board_body(ctx: &Ctx, viewer: &Viewer, done: &str, problem: Option<&Problem>) -> Result<Markup, ApiError> {
    let now = ctx.config.clock.now_ms();
    let awaiting = store::with_status(&ctx.pool, Status::Received, 200).await?;
    let screened = store::with_status(&ctx.pool, Status::ScreenedIn, 200).await?;
    let newest = store::newest(&ctx.pool, 20).await?;
    let upcoming = store::meetings(&ctx.pool, &runtime::chronology::date_of(now - 7 * 86_400_000), 20).await?;
    let outstanding = store::research_outstanding(&ctx.pool).await?;
    let per_member = research::per_member(&outstanding, now);
    let overdue: Vec<store::Action> = store::actions_open(&ctx.pool).await?.into_iter().filter(|a| a.overdue(now)).collect();
    let may_schedule = viewer.shell.may(&viewer.staff, "POST", "/console/meetings");
    let mut agendas = Vec::with_capacity(upcoming.len());
    for m in &upcoming {
        agendas.push(store::on_meeting(&ctx.pool, &m.id).await?);
    }
    let keys = ctx.isp().keys.clone();
    Ok(html! {
        (notice(done))
        (error_summary(&problems(problem)))
        @if per_member.iter().any(|m| m["overdue"].as_u64().unwrap_or(0) > 0) || !overdue.is_empty() {
            div.refused role="alert" {
                h2 { "Escalated" }
                p { "Research not answered by its reply-by date, or actions past their due date. Each is escalated on the dashboard and recorded in the ledger." }
            }
        }
        h2 { "Awaiting screening" }
        @if awaiting.is_empty() { p { "No referral is waiting to be screened." } } @else { (cases_table(ctx, "Referrals awaiting screening, oldest first", &awaiting, false)) }
        h2 { "Screened in, not yet listed" }
        @if screened.is_empty() { p { "None." } } @else { (cases_table(ctx, "Cases screened in and not yet listed for a meeting", &screened, false)) }
        h2 { "Meetings" }
        @if upcoming.is_empty() {
            p { "No meeting is on the schedule." }
        } @else {
            table {
                caption.visually-hidden { "Meetings from last week on, soonest first" }
                thead { tr { th scope="col" { "Meets on" } th scope="col" { "List closes" } th scope="col" { "Research reply by" } th scope="col" { "Agenda" } th scope="col" { "Minutes" } } }
                tbody {
                    @for (m, agenda) in upcoming.iter().zip(&agendas) {
                        tr {
                            td { a href=(format!("/console/meetings/{}", m.id)) { (m.meets_on) } }
                            td { (m.list_closes_on) @if m.list_open(now) { " " (coloured("green", "open")) } }
                            td { (m.reply_by) }
                            td { (agenda.len()) " case(s)" }
                            td { @if m.minuted_at_ms.is_some() { "Sent" } @else { "Not sent" } }
                        }
                    }
                }
            }
        }
        @if may_schedule {
            form method="post" action="/console/meetings" novalidate {
                (viewer.csrf_field())
                h3 { "Schedule a meeting" }
                @if let Some(e) = Problem::error(problem, "meeting") { p.field-error { (e) } }
                (date_input("meets_on", "meets_on", "Meets on", "YYYY-MM-DD, for example 2026-12-10", Problem::value(problem, "meeting", "meets_on")))
                (date_input("list_closes_on", "list_closes_on", "The list closes on", "The last day a case can be listed (YYYY-MM-DD), on or before the meeting", Problem::value(problem, "meeting", "list_closes_on")))
                (date_input("reply_by", "reply_by", "Research to be answered by (optional)", "YYYY-MM-DD; two days before the meeting when left empty", Problem::value(problem, "meeting", "reply_by")))
                button type="submit" { "Schedule the meeting" }
            }
        }
        h2 { "Recent referrals" }
        @if newest.is_empty() { p { "None yet." } } @else { (cases_table(ctx, "The newest referrals, whatever their status, newest first", &newest, true)) }
        h2 { "Research outstanding, by member" }
        @if per_member.is_empty() {
            p { "Every research request has been answered." }
        } @else {
            table {
                caption.visually-hidden { "Research requests not yet answered, by member agency" }
                thead { tr { th scope="col" { "Member" } th.number scope="col" { "Outstanding" } th.number scope="col" { "Due within 2 days" } th.number scope="col" { "Overdue" } th scope="col" { "Next due" } } }
                tbody {
                    @for m in &per_member {
                        @let member = m["member"].as_str().unwrap_or_default();
                        tr {
                            th scope="row" { (agency_name(ctx, member)) }
                            td.number { (m["outstanding"]) }
                            td.number { @if m["reminder"].as_u64().unwrap_or(0) > 0 { (coloured("yellow", &format!("{} reminder", m["reminder"]))) } @else { "0" } }
                            td.number { @if m["overdue"].as_u64().unwrap_or(0) > 0 { (coloured("red", &format!("{} overdue", m["overdue"]))) } @else { "0" } }
                            td { (when(m["next_due_at_ms"].as_i64().unwrap_or_default())) }
                        }
                    }
                }
            }
        }
        h2 { "Actions overdue" }
        @if overdue.is_empty() {
            p { "No action is overdue." }
        } @else {
            table {
                caption.visually-hidden { "Actions past their due date, due longest ago first" }
                thead { tr { th scope="col" { "Action" } th scope="col" { "Owner" } th scope="col" { "Due" } th scope="col" { "Status" } th scope="col" { "Case" } } }
                tbody {
                    @for a in &overdue {
                        tr {
                            td { (if a.description.is_empty() { String::new() } else { keys.open_at_rest(&a.description).unwrap_or_default() }) }
                            td { (agency_name(ctx, &a.owner_agency)) }
                            td { (a.due_on) " " (coloured("red", "overdue")) }
                            td { (a.status.label()) }
                            td { @if a.case_id.is_empty() { "–" } @else { a href=(format!("/console/cases/{}", a.case_id)) { "Open the case" } } }
                        }
                    }
                }
            }
        }
    })
}

async fn post_meeting(State(ctx): State<Ctx>, viewer: Viewer, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let input = MeetingInput { meets_on: f.get("meets_on").to_owned(), list_closes_on: f.get("list_closes_on").to_owned(), reply_by: Some(f.get("reply_by").to_owned()) };
    match meetings::create(&ctx, &viewer.staff, &input).await {
        Ok(m) => see_other(&format!("/console/meetings/{}?done=meeting", m.id)),
        Err(e) => {
            let status = e.status;
            let problem = Problem { form: "meeting".into(), field: "meets_on".into(), message: capitalise(&PageError::from(e).detail), values: f };
            render_board(&ctx, &viewer, "", Some(problem), status).await
        }
    }
}

// ---------------------------------------------------------------- one case

async fn case_page(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Query(n): Query<Notice>) -> Response {
    render_case(&ctx, &viewer, &id, &n.done, None, StatusCode::OK).await
}

async fn render_case(ctx: &Ctx, viewer: &Viewer, id: &str, done: &str, problem: Option<Problem>, status: StatusCode) -> Response {
    match case_body(ctx, viewer, id, done, problem.as_ref()).await {
        Ok((title, body)) => {
            let mut response = viewer.page(&title, "/console/board", body);
            *response.status_mut() = status;
            response
        }
        Err(e) => PageError::from(e).page(viewer),
    }
}

async fn case_body(ctx: &Ctx, viewer: &Viewer, id: &str, done: &str, problem: Option<&Problem>) -> Result<(String, Markup), ApiError> {
    let case = casework::find(ctx, id).await?;
    let detail = api::case_detail(ctx, id).await?;
    let now = ctx.config.clock.now_ms();
    let assessment = case.assessment();
    let chronology = if case.subject_ref.is_empty() { Vec::new() } else { runtime::chronology::of_subject(ctx, &case.subject_ref).await? };
    let title = if case.marac_ref.is_empty() { "MARAC case".to_owned() } else { format!("MARAC case {}", case.marac_ref) };
    let meeting = store::meeting(&ctx.pool, &case.meeting_id).await?;
    let open_meetings: Vec<Meeting> = store::meetings(&ctx.pool, &runtime::chronology::date_of(now), 20).await?.into_iter().filter(|m| m.list_open(now) && m.id != case.meeting_id).collect();
    let escalated: Vec<&Value> = detail["escalations"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    let allowed = crate::case::allowed(case.status);
    // Whether the viewer's roles take the decisions (the rule table names the route's pattern).
    let decides = viewer.shell.may(&viewer.staff, "POST", "/console/cases/{id}/screen");
    let action = |step: &str| format!("/console/cases/{}/{step}", case.id);
    let research_asked = detail["research"].as_array().is_some_and(|r| r.iter().any(|x| x["meeting_id"] == case.meeting_id.as_str()));
    let body = html! {
        (notice(done))
        (error_summary(&problems(problem)))
        @if !escalated.is_empty() {
            div.refused role="alert" {
                h2 { "Escalated" }
                ul {
                    @for d in &escalated {
                        li { (deadline_label(d["code"].as_str().unwrap_or_default())) " (" (agency_name(ctx, d["counterpart"].as_str().unwrap_or_default())) ") was due " (when(d["due_at_ms"].as_i64().unwrap_or_default())) " and is not done." }
                    }
                }
            }
        }
        (summary(&[
            ("Status", html! { (status_tag(case.status)) @if let Some(r) = case.close_reason { " " (r.label()) } }),
            ("Referred by", html! {
                (agency_name(ctx, &case.referrer)) ", received " (when(case.received_at_ms)) ". "
                @if case.revoked_at_ms.is_some() { "The referrer revoked it: it counts for nothing, and its content is no longer available." }
                @else { a href=(format!("/console/inbox/{}", case.id)) { "Read the referral" } " (the survivor's details)" }
            }),
            ("Referrer's case reference", html! { span.mono { (case.case_ref) } }),
            ("Person (pseudonym)", html! { span.mono { (case.subject_ref) } }),
            ("Risk", risk_tag(&case.risk)),
            ("Criteria met", html! {
                @if assessment.met.is_empty() { "None proved. The coordinator decides at screening." }
                ul {
                    @for m in &assessment.met { li { strong { (m.criterion.label()) } ": " (evidence(m)) } }
                }
                @if !assessment.unproved.is_empty() {
                    p.hint { "Named by the referrer but not proved: " @for (i, c) in assessment.unproved.iter().enumerate() { @if i > 0 { ", " } (short(*c)) } "." }
                }
            }),
            ("Incidents in 12 months", html! { (case.class.incidents_12m) @if let Some(d) = &case.class.duplicate_of { ". A duplicate of " a href=(format!("/console/cases/{d}")) { "an earlier referral of the same incident" } ": it counts once." } }),
            ("Meeting", match &meeting {
                Some(m) => html! { a href=(format!("/console/meetings/{}", m.id)) { (m.meets_on) } },
                None => html! { "Not listed" },
            }),
        ]))
        @if allowed.is_empty() { p #next-steps tabindex="-1" { "This case is closed: nothing more can be done on it. Its record stays." } }
        @else if decides { h2 #next-steps tabindex="-1" { "Next steps" } }
        @if (allowed.contains(&Step::ScreenIn) || allowed.contains(&Step::ScreenOut)) && decides {
            form method="post" action=(action("screen")) novalidate {
                (viewer.csrf_field())
                h3 { "Screen the referral" }
                @let choices: Vec<(&str, &str)> = Decision::ALL.iter().filter(|d| allowed.contains(&d.step())).map(|d| (d.code(), d.label())).collect();
                (radios("decision", "screen-decision", "Decision", &choices, Problem::value(problem, "screen", "decision"), Problem::error(problem, "screen")))
                (textarea("screen-reason", "reason", "Reason", "Required when the criteria are not met: the referrer is told it. Kept here sealed.", Problem::value(problem, "screen", "reason"), None))
                button type="submit" { "Record the decision" }
            }
        }
        @if allowed.contains(&Step::List) && decides {
            form method="post" action=(action("list")) novalidate {
                (viewer.csrf_field())
                h3 { @if case.status == Status::Listed { "Move to another meeting" } @else { "List for a meeting" } }
                @if open_meetings.is_empty() {
                    p { "No meeting's list is open. " a href="/console/board" { "Schedule a meeting on the board" } "." }
                } @else {
                    @let chosen = Problem::value(problem, "list", "meeting_id");
                    (radios("meeting_id", "list-meeting", "Meeting", &open_meetings.iter().map(|m| (m.id.as_str(), m.meets_on.as_str())).collect::<Vec<_>>(), chosen, Problem::error(problem, "list")))
                    button type="submit" { "List the case" }
                }
            }
        }
        @if case.status == Status::Listed && !research_asked && decides {
            form method="post" action=(action("research")) novalidate {
                (viewer.csrf_field())
                h3 { "Ask member agencies for research" }
                p.hint { "Each member agency the protocol lets receive research requests gets one, with only what its role may see of the survivor, the person causing harm and the children." }
                (textarea("research-questions", "questions", "Questions", "What each agency is asked to check its records for", Problem::value(problem, "research", "questions"), Problem::error(problem, "research")))
                (date_input("research-reply_by", "reply_by", "Reply by (optional)", &format!("YYYY-MM-DD; the meeting's reply-by day ({}) when left empty", meeting.as_ref().map(|m| m.reply_by.as_str()).unwrap_or_default()), Problem::value(problem, "research", "reply_by")))
                button type="submit" { "Send the research requests" }
            }
        }
        @if case.status == Status::Listed {
            p { "Record the hearing on the " a href=(format!("/console/meetings/{}", case.meeting_id)) { "meeting's page" } " at the meeting." }
        }
        @if allowed.contains(&Step::Defer) && decides {
            form method="post" action=(action("defer")) novalidate {
                (viewer.csrf_field())
                h3 { "Take off the agenda" }
                (textarea("defer-reason", "reason", "Reason (optional)", "Kept here sealed.", Problem::value(problem, "defer", "reason"), Problem::error(problem, "defer")))
                button.secondary type="submit" { "Take the case off the agenda" }
            }
        }
        @if allowed.contains(&Step::Close) && decides {
            form method="post" action=(action("close")) novalidate {
                (viewer.csrf_field())
                h3 { "Close the case" }
                (radios("reason", "close-reason", "Reason", &CloseReason::for_staff().map(|r| (r.code(), r.label())).collect::<Vec<_>>(), Problem::value(problem, "close", "reason"), Problem::error(problem, "close")))
                (textarea("close-note", "note", "Note (optional)", "Kept here sealed.", Problem::value(problem, "close", "note"), None))
                button.warning-button type="submit" { "Close the case" }
            }
        }
        h2 { "Research" }
        (research_table(ctx, &detail["research"]))
        h2 { "Hearing" }
        @match detail["hearing"].as_object() {
            Some(h) => (summary(&[
                ("Outcome", html! { (Outcome::parse(h["outcome"].as_str().unwrap_or_default()).map_or("", |o| o.label())) }),
                ("Discussion", html! { (h["discussion"].as_str().unwrap_or_default()) }),
                ("Risks identified", html! { (h["risks"].as_str().unwrap_or_default()) }),
                ("Recorded by", html! { (h["heard_by"].as_str().unwrap_or_default()) ", " (when(h["heard_at_ms"].as_i64().unwrap_or_default())) }),
            ])),
            None => p { "Not heard yet." },
        }
        h2 { "Actions" }
        (actions_table(ctx, &detail["actions"]))
        h2 { "Minutes sent" }
        @match detail["minutes"].as_array().filter(|m| !m.is_empty()) {
            Some(sent) => table {
                thead { tr { th scope="col" { "To" } th scope="col" { "When" } th scope="col" { "Removed for that member" } } }
                tbody {
                    @for m in sent {
                        tr {
                            td { (agency_name(ctx, m["recipient"].as_str().unwrap_or_default())) }
                            td { (when(m["created_at_ms"].as_i64().unwrap_or_default())) }
                            td { (runtime::console::categories(&m["removed"].as_array().into_iter().flatten().filter_map(|c| c.as_str().map(str::to_owned)).collect::<Vec<_>>())) }
                        }
                    }
                }
            },
            None => p { "None yet." },
        }
        h2 { "Chronology" }
        p.hint { "Everything this service has recorded about this person, on every case, oldest first." }
        (timeline(&chronology.iter().map(chronology_step).collect::<Vec<_>>()))
    };
    Ok((title, body))
}

fn research_table(ctx: &Ctx, research: &Value) -> Markup {
    let rows = research.as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p { "No research asked yet." } } @else {
            table {
                thead { tr { th scope="col" { "Member" } th scope="col" { "Reply by" } th scope="col" { "Where it stands" } th scope="col" { "Holds information" } th scope="col" { "Answer" } } }
                tbody {
                    @for r in &rows {
                        tr {
                            td { (agency_name(ctx, r["member"].as_str().unwrap_or_default())) }
                            td { (r["reply_by"].as_str().unwrap_or_default()) }
                            td { @match r["state"].as_str().unwrap_or_default() {
                                "answered" => (coloured("green", "answered")),
                                "answered_late" => (coloured("yellow", "answered late")),
                                "overdue" => (coloured("red", "overdue")),
                                "reminder" => (coloured("yellow", "due within 2 days")),
                                _ => (coloured("blue", "outstanding")),
                            } }
                            td { @match r["holds_information"].as_bool() { Some(true) => "Yes", Some(false) => "No", None => "–" } }
                            td { @if let Some(id) = r["response_id"].as_str().filter(|s| !s.is_empty()) { a href=(format!("/console/inbox/{id}")) { "Read the answer" } } @else { "–" } }
                        }
                    }
                }
            }
        }
    }
}

fn actions_table(ctx: &Ctx, actions: &Value) -> Markup {
    let rows = actions.as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p { "No action agreed." } } @else {
            table {
                thead { tr { th scope="col" { "Action" } th scope="col" { "Owner" } th scope="col" { "Due" } th scope="col" { "Status" } th scope="col" { "Owner's note" } } }
                tbody {
                    @for a in &rows {
                        tr {
                            td { (a["description"].as_str().unwrap_or_default()) }
                            td { (agency_name(ctx, a["owner_agency"].as_str().unwrap_or_default())) }
                            td { (a["due_on"].as_str().unwrap_or_default()) @if a["overdue"] == true { " " (coloured("red", "overdue")) } }
                            td { (crate::case::ActionStatus::parse(a["status"].as_str().unwrap_or_default()).map_or("", |s| s.label())) }
                            td { (a["note"].as_str().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}

/// A chronology entry as a step of the timeline.
fn chronology_step(e: &Value) -> TimelineStep {
    let code = e["code"].as_str().unwrap_or_default();
    let what = match e["event"].as_str().unwrap_or_default() {
        "disclosure_received" => format!("Received: {}", runtime::console::form::kind_label(code)),
        "disclosure_sent" => format!("Sent: {}", runtime::console::form::kind_label(code)),
        "marac_case_opened" => "MARAC case opened, awaiting screening".to_owned(),
        "marac_screened_in" => "Screened in".to_owned(),
        "marac_screened_out" => "Screened out: criteria not met".to_owned(),
        "marac_case_listed" => format!("Listed for the meeting of {code}"),
        "marac_case_deferred" => "Taken off the agenda".to_owned(),
        "marac_case_heard" => format!("Heard: {}", Outcome::parse(code).map_or(code, |o| o.label())),
        "marac_case_closed" => format!("Closed: {}", CloseReason::parse(code).map_or(code, |r| r.label())),
        "research_requested" => format!("Research asked of {code} member agencies"),
        "research_answered" => format!("Research answered ({})", if code == "holds_information" { "holds information" } else { "holds nothing" }),
        "marac_action_update" => format!("Action update: {}", crate::case::ActionStatus::parse(code).map_or(code, |s| s.label())),
        "marac_minutes_sent" => format!("Minutes sent to {code} member agencies"),
        "deadline_missed" => format!("Missed: {}", deadline_label(code)),
        "acknowledged" => format!("Referral answered: {code}"),
        other => runtime::console::form::humanise(other),
    };
    let by = e["staff_id"].as_str().filter(|s| !s.is_empty()).map(|s| format!("by {s}"));
    let detail = [by.unwrap_or_default(), e["detail"].as_str().unwrap_or_default().to_owned()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(": ");
    TimelineStep { at_ms: e["at_ms"].as_i64().unwrap_or_default(), what, detail }
}

async fn case_again(ctx: &Ctx, viewer: &Viewer, id: &str, problem: Problem, status: StatusCode) -> Response {
    render_case(ctx, viewer, id, "", Some(problem), status).await
}

async fn post_screen(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let input = ScreenInput { decision: f.get("decision").to_owned(), reason: f.get("reason").to_owned() };
    let done = format!("/console/cases/{id}?done={}", input.decision);
    let result = if Decision::parse(&input.decision).is_none() { Err(ApiError::bad_request("choose the decision")) } else { casework::screen(&ctx, &viewer.staff, &id, &input).await };
    // The error links to the first decision the case's status offers.
    let first = match casework::find(&ctx, &id).await {
        Ok(c) => Decision::ALL.iter().find(|d| crate::case::next(c.status, d.step()).is_ok()).copied().unwrap_or(Decision::ScreenedIn),
        Err(_) => Decision::ScreenedIn,
    };
    let field = format!("screen-decision-{}", first.code());
    answered(&viewer, result, done, "screen", &field, f, |p, s| case_again(&ctx, &viewer, &id, p, s)).await
}

async fn post_list(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let meeting_id = f.get("meeting_id").to_owned();
    let result = if meeting_id.is_empty() { Err(ApiError::bad_request("choose the meeting")) } else { casework::list(&ctx, &viewer.staff, &id, &ListInput { meeting_id: meeting_id.clone() }).await };
    let field = if meeting_id.is_empty() { "next-steps".to_owned() } else { format!("list-meeting-{meeting_id}") };
    answered(&viewer, result, format!("/console/cases/{id}?done=listed"), "list", &field, f, |p, s| case_again(&ctx, &viewer, &id, p, s)).await
}

async fn post_defer(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let result = casework::defer(&ctx, &viewer.staff, &id, &DeferInput { reason: f.get("reason").to_owned() }).await;
    answered(&viewer, result, format!("/console/cases/{id}?done=deferred"), "defer", "defer-reason", f, |p, s| case_again(&ctx, &viewer, &id, p, s)).await
}

async fn post_research(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let input = ResearchInput { questions: f.get("questions").to_owned(), reply_by: Some(f.get("reply_by").to_owned()) };
    let result = research::request(&ctx, &viewer.staff, &id, &input).await;
    answered(&viewer, result, format!("/console/cases/{id}?done=research"), "research", "research-questions", f, |p, s| case_again(&ctx, &viewer, &id, p, s)).await
}

async fn post_close(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let input = CloseInput { reason: f.get("reason").to_owned(), note: f.get("note").to_owned() };
    let result = if input.reason.is_empty() { Err(ApiError::bad_request("choose the reason the case closes")) } else { casework::close(&ctx, &viewer.staff, &id, &input).await };
    let field = format!("close-reason-{}", CloseReason::ALL[0].code());
    answered(&viewer, result, format!("/console/cases/{id}?done=closed"), "close", &field, f, |p, s| case_again(&ctx, &viewer, &id, p, s)).await
}

// ---------------------------------------------------------------- a meeting

async fn meeting_page(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Query(n): Query<Notice>) -> Response {
    render_meeting(&ctx, &viewer, &id, &n.done, None, StatusCode::OK).await
}

async fn render_meeting(ctx: &Ctx, viewer: &Viewer, id: &str, done: &str, problem: Option<Problem>, status: StatusCode) -> Response {
    match meeting_body(ctx, viewer, id, done, problem.as_ref()).await {
        Ok((title, body)) => {
            let mut response = viewer.page(&title, "/console/board", body);
            *response.status_mut() = status;
            response
        }
        Err(e) => PageError::from(e).page(viewer),
    }
}

async fn meeting_body(ctx: &Ctx, viewer: &Viewer, id: &str, done: &str, problem: Option<&Problem>) -> Result<(String, Markup), ApiError> {
    let meeting = meetings::find(ctx, id).await?;
    let now = ctx.config.clock.now_ms();
    let agenda = store::on_meeting(&ctx.pool, id).await?;
    let mut research = Vec::with_capacity(agenda.len());
    for c in &agenda {
        let r = store::research_of(&ctx.pool, &c.id).await?;
        research.push((r.iter().filter(|x| x.meeting_id == meeting.id).count(), r.iter().filter(|x| x.meeting_id == meeting.id && !x.response_id.is_empty()).count()));
    }
    let isp = ctx.isp();
    let owners = members::members(&isp, isp::Kind::MaracAction);
    let agencies: Vec<(String, String)> = isp.directory.active().filter(|a| a.role != isp::Role::Ig).map(|a| (a.id.clone(), a.name.clone())).collect();
    let open = meeting.minuted_at_ms.is_none();
    let met = meeting.has_met(now);
    // Whether the viewer's roles record the meeting (the rule table names the routes' patterns).
    let records = viewer.shell.may(&viewer.staff, "POST", "/console/meetings/{id}/minutes");
    let listed: Vec<&Case> = agenda.iter().filter(|c| c.status == Status::Listed).collect();
    let title = format!("MARAC meeting of {}", meeting.meets_on);
    let body = html! {
        (notice(done))
        (error_summary(&problems(problem)))
        (summary(&[
            ("Meets on", html! { (meeting.meets_on) }),
            ("The list closes", html! { (meeting.list_closes_on) @if meeting.list_open(now) { " " (coloured("green", "open")) } @else { " " (coloured("grey", "closed")) } }),
            ("Research to be answered by", html! { (meeting.reply_by) }),
            ("Attendance", html! {
                @if meeting.attendance.is_empty() { "Not recorded yet" }
                @for (i, a) in meeting.attendance.iter().enumerate() { @if i > 0 { ", " } (agency_name(ctx, a)) }
            }),
            ("Confidentiality statement", html! { @if meeting.confidentiality_agreed { "Agreed by all present" } @else { "Not recorded as agreed" } }),
            ("Minutes", html! { @match meeting.minuted_at_ms { Some(at) => { "Sent by " (meeting.minuted_by) ", " (when(at)) } None => "Not sent" } }),
        ]))
        h2 { "Agenda" }
        @if agenda.is_empty() {
            p { "No case is listed for this meeting." }
        } @else {
            table {
                caption.visually-hidden { "Cases listed for this meeting, in the order listed" }
                thead { tr { th scope="col" { "Case" } th scope="col" { "Referred by" } th scope="col" { "Criteria met" } th scope="col" { "Research answered" } th scope="col" { "Status" } } }
                tbody {
                    @for (c, (asked, answered)) in agenda.iter().zip(&research) {
                        tr {
                            td { (case_link(c)) }
                            td { (agency_name(ctx, &c.referrer)) }
                            td { (criteria_cell(c)) }
                            td { @if *asked == 0 { "Not asked" } @else { (answered) " of " (asked) } }
                            td { (status_tag(c.status)) }
                        }
                    }
                }
            }
        }
        @if open && met && records {
            form method="post" action=(format!("/console/meetings/{}/attendance", meeting.id)) novalidate {
                (viewer.csrf_field())
                h2 { "Attendance" }
                div.field.error[Problem::error(problem, "attendance").is_some()] {
                    fieldset {
                        legend { "Agencies present" }
                        @if let Some(e) = Problem::error(problem, "attendance") { span.field-error { span.visually-hidden { "Error: " } (e) } }
                        div.choices {
                            @for (i, (aid, name)) in agencies.iter().enumerate() {
                                @let checked = meeting.attendance.contains(aid) || Problem::of(problem, "attendance").is_some_and(|p| p.values.all("agencies").contains(&aid.as_str()));
                                div.choice {
                                    input type="checkbox" id=(format!("attendance-{i}")) name="agencies" value=(aid) checked[checked];
                                    label for=(format!("attendance-{i}")) { (name) }
                                }
                            }
                        }
                    }
                }
                div.field {
                    div.choice {
                        input type="checkbox" id="confidentiality" name="confidentiality_agreed" value="yes" checked[meeting.confidentiality_agreed];
                        label for="confidentiality" { "Everyone present agreed to the confidentiality statement" }
                    }
                }
                button.secondary type="submit" { "Record attendance" }
            }
        }
        @if open && !listed.is_empty() {
            h2 { "Hearings" }
            @if !met { p { "The meeting has not taken place yet: record each hearing on or after " (meeting.meets_on) "." } }
            @for (n, c) in listed.iter().enumerate() {
                @let form = format!("hearing-{}", c.id);
                @let path = format!("/console/cases/{}/hearing", c.id);
                @if met && records {
                    form method="post" action=(path) novalidate {
                        (viewer.csrf_field())
                        h3 { "Hearing of " (c.marac_ref) }
                        @if let Some(e) = Problem::error(problem, &form) { p.field-error id=(format!("h{n}-error")) tabindex="-1" { (e) } }
                        (textarea(&format!("h{n}-discussion"), "discussion", "Discussion", "A summary of what the meeting discussed. Kept here sealed; sent in the minutes to members who may see it.", Problem::value(problem, &form, "discussion"), None))
                        (textarea(&format!("h{n}-risks"), "risks", "Risks identified", "Sent only to members whose role may receive risk narrative.", Problem::value(problem, &form, "risks"), None))
                        (radios("outcome", &format!("h{n}-outcome"), "Outcome", &Outcome::ALL.iter().map(|o| (o.code(), o.label())).collect::<Vec<_>>(), Problem::value(problem, &form, "outcome"), None))
                        @for i in 0..ACTION_ROWS {
                            fieldset {
                                legend { "Action " (i + 1) @if i > 0 { " (optional)" } }
                                div.field {
                                    label for=(format!("h{n}-a{i}-owner")) { "Owner" }
                                    select id=(format!("h{n}-a{i}-owner")) name=(format!("a{i}_owner")) {
                                        option value="" { "No action" }
                                        @for o in &owners {
                                            option value=(o.id) selected[Problem::value(problem, &form, &format!("a{i}_owner")) == o.id] { (o.name) }
                                        }
                                    }
                                }
                                (textarea(&format!("h{n}-a{i}-description"), &format!("a{i}_description"), "What the agency will do", "Sent to the owner.", Problem::value(problem, &form, &format!("a{i}_description")), None))
                                (date_input(&format!("h{n}-a{i}-due"), &format!("a{i}_due"), "Due by", "YYYY-MM-DD, on or after the meeting", Problem::value(problem, &form, &format!("a{i}_due"))))
                            }
                        }
                        button type="submit" { "Record the hearing and send its actions" }
                    }
                }
            }
        }
        @if open && met && records {
            form method="post" action=(format!("/console/meetings/{}/minutes", meeting.id)) novalidate {
                (viewer.csrf_field())
                h2 #minutes tabindex="-1" { "Minutes" }
                @if let Some(e) = Problem::error(problem, "minutes") { p.field-error { (e) } }
                p { "The minutes of every case heard go to every member agency the protocol lets receive them; each copy carries only what that member's role may see." }
                button type="submit" { "Send the minutes" }
            }
        }
    };
    Ok((title, body))
}

async fn meeting_again(ctx: &Ctx, viewer: &Viewer, id: &str, problem: Problem, status: StatusCode) -> Response {
    render_meeting(ctx, viewer, id, "", Some(problem), status).await
}

async fn post_attendance(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let input = AttendanceInput { agencies: f.all("agencies").into_iter().map(str::to_owned).collect(), confidentiality_agreed: f.get("confidentiality_agreed") == "yes" };
    let result = meetings::attendance(&ctx, &id, &input).await;
    answered(&viewer, result, format!("/console/meetings/{id}?done=attendance"), "attendance", "attendance-0", f, |p, s| meeting_again(&ctx, &viewer, &id, p, s)).await
}

async fn post_minutes(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>) -> Response {
    let result = meetings::send_minutes(&ctx, &viewer.staff, &id).await;
    answered(&viewer, result, format!("/console/meetings/{id}?done=minutes"), "minutes", "minutes", Fields::default(), |p, s| meeting_again(&ctx, &viewer, &id, p, s)).await
}

/// The hearing form's fields as the API's input: the action rows with an owner chosen.
fn hearing_input(f: &Fields) -> HearingInput {
    HearingInput {
        discussion: f.get("discussion").to_owned(),
        risks: f.get("risks").to_owned(),
        outcome: f.get("outcome").to_owned(),
        actions: (0..ACTION_ROWS)
            .filter(|i| !f.get(&format!("a{i}_owner")).is_empty())
            .map(|i| ActionInput { owner_agency: f.get(&format!("a{i}_owner")).to_owned(), description: f.get(&format!("a{i}_description")).to_owned(), due_date: f.get(&format!("a{i}_due")).to_owned() })
            .collect(),
    }
}

async fn post_hearing(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let f = Fields(fields);
    let case = match casework::find(&ctx, &id).await {
        Ok(c) => c,
        Err(e) => return PageError::from(e).page(&viewer),
    };
    let meeting_id = case.meeting_id.clone();
    let input = hearing_input(&f);
    let result = if crate::case::Outcome::parse(&input.outcome).is_none() { Err(ApiError::bad_request("choose the outcome")) } else { hearing::hear(&ctx, &viewer.staff, &id, &input).await };
    if meeting_id.is_empty() {
        return match result {
            Ok(_) => see_other(&format!("/console/cases/{id}?done=heard")),
            Err(e) => case_again(&ctx, &viewer, &id, Problem { form: "hearing".into(), field: "next-steps".into(), message: capitalise(&PageError::from(e).detail), values: f }, StatusCode::CONFLICT).await,
        };
    }
    let index = store::on_meeting(&ctx.pool, &meeting_id).await.unwrap_or_default().iter().filter(|c| c.status == Status::Listed).position(|c| c.id == id).unwrap_or(0);
    let form = format!("hearing-{id}");
    let field = format!("h{index}-error");
    answered(&viewer, result, format!("/console/meetings/{meeting_id}?done=heard"), &form, &field, f, |p, s| meeting_again(&ctx, &viewer, &meeting_id, p, s)).await
}

// ---------------------------------------------------------------- figures

#[derive(Deserialize, Default)]
struct FiguresQuery {
    #[serde(default)]
    quarter: String,
}

async fn figures_page(State(ctx): State<Ctx>, viewer: Viewer, Query(q): Query<FiguresQuery>) -> Response {
    let (quarter, problem) = match figures::quarter(&ctx, Some(&q.quarter)) {
        Ok(quarter) => (quarter, None),
        Err(e) => (Quarter::of(ctx.config.clock.now_ms()), Some(("quarter".to_owned(), capitalise(&PageError::from(e).detail)))),
    };
    let f = match figures::figures(&ctx, quarter).await {
        Ok(f) => f,
        Err(e) => return PageError::from(e).page(&viewer),
    };
    let n = |k: &str| f[k].as_u64().unwrap_or_default();
    let rate = |k: &str| f[k].as_f64().map_or("–".to_owned(), |r| format!("{r}%"));
    let by_agency: Vec<(String, i64)> = f["referrals_by_agency"].as_array().into_iter().flatten().map(|a| (a["name"].as_str().filter(|s| !s.is_empty()).or(a["agency"].as_str()).unwrap_or_default().to_owned(), a["referrals"].as_i64().unwrap_or_default())).collect();
    let body = html! {
        (error_summary(&problem.into_iter().collect::<Vec<_>>()))
        form method="get" action="/console/figures" {
            div.field {
                label for="quarter" { "Quarter" }
                span.hint #quarter-hint { "A year and a quarter, like 2026-Q4 (Q1 is January to March)" }
                input.short #quarter type="text" name="quarter" value=(quarter.to_string()) aria-describedby="quarter-hint";
            }
            button.secondary type="submit" { "Show the figures" }
        }
        p { a href=(format!("/console/figures?quarter={}", quarter.previous())) { "Previous quarter" } " · " a href=(format!("/console/figures?quarter={}", quarter.next())) { "Next quarter" } }
        h2 { (quarter.to_string()) ": " (f["from"].as_str().unwrap_or_default()) " to " (f["until"].as_str().unwrap_or_default()) }
        (summary(&[
            ("Meetings held (minutes sent)", html! { (n("meetings_held")) }),
            ("Cases heard", html! { (n("cases_heard")) }),
            ("Repeat cases", html! { (n("repeats")) " (" (rate("repeat_rate_percent")) " of cases heard; 28-40% is the range practitioners quote as healthy)" }),
            ("Cases with an IDVA", html! { (n("cases_with_idva")) " (" (rate("idva_rate_percent")) " of cases heard)" }),
            ("Referrals received", html! { (n("referrals")) " (besides " (n("duplicates")) " duplicate(s) of an incident and " (n("revoked")) " revoked)" }),
        ]))
        @if by_agency.is_empty() { p { "No referrals in this quarter." } } @else {
            (runtime::console::bar_chart("Referrals by referring agency", &by_agency, &|_| false))
        }
    };
    viewer.page("Quarterly figures", "/console/figures", body)
}
