//! The points panel's pages: the weekly meetings, one meeting's applications and the form for
//! each decision (the points, the reasons, who decided).

use axum::{
    Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use runtime::{
    Ctx,
    api::SubjectIdentity,
    chronology,
    console::{PageError, Viewer, error_summary, form::Fields, html, see_other, summary, tag, when},
};
use serde_json::Value;

use super::{casework::Notice, choices, done, problem, text_area, text_field};
use crate::{
    common,
    panel::{self, Decision},
};

type Posted = Form<Vec<(String, String)>>;

const WEEK_MS: i64 = 7 * 86_400_000;

/// `GET /console/panel`.
pub async fn meetings(State(ctx): State<Ctx>, viewer: Viewer) -> Response {
    meetings_page(&ctx, &viewer, &Fields::default(), &[]).await
}

async fn meetings_page(ctx: &Ctx, viewer: &Viewer, values: &Fields, problems: &[(String, String)]) -> Response {
    let list = match panel::meetings(ctx).await {
        Ok(l) => l,
        Err(e) => return PageError::from(e).page(viewer),
    };
    // The panel meets weekly: the next meeting is proposed a week after the newest.
    let proposed = list
        .first()
        .and_then(|m| chronology::day_ms(m["meets_on"].as_str().unwrap_or_default()))
        .map_or_else(|| chronology::date_of(common::now(ctx)), |last| chronology::date_of(last + WEEK_MS));
    let meets_on = if values.get("meets_on").is_empty() { proposed.as_str() } else { values.get("meets_on") };
    let body = html! {
        (error_summary(problems))
        p { "Allocations and domestic abuse staff meet weekly to decide applications for the allocation scheme's Group D (violence and harassment) priority points. Each decision records its reasons." }
        @if list.is_empty() { p { "No meetings yet." } } @else {
            table {
                caption.visually-hidden { "Panel meetings, newest first" }
                thead { tr { th scope="col" { "Meets on" } th.number scope="col" { "Applications" } th.number scope="col" { "Decided" } } }
                tbody { @for m in &list {
                    tr {
                        td { a href=(format!("/console/panel/{}", m["id"].as_str().unwrap_or_default())) { (m["meets_on"].as_str().unwrap_or_default()) } }
                        td.number { (m["listed"]) }
                        td.number { (m["decided"]) }
                    }
                } }
            }
        }
        h2 { "Schedule a meeting" }
        form method="post" action="/console/panel" novalidate {
            (viewer.csrf_field())
            (text_field("meets_on", "The day it meets", "YYYY-MM-DD; a week after the last meeting is proposed", meets_on, problems, true))
            (text_area("attendees", "Who sits on it (optional)", "Staff ids, one per line, like j.bloggs", values.get("attendees"), problems))
            button type="submit" { "Schedule meeting" }
        }
    };
    let mut response = viewer.page("Points panel", "/console/panel", body);
    if !problems.is_empty() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

/// `POST /console/panel`.
pub async fn schedule(State(ctx): State<Ctx>, viewer: Viewer, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let input = panel::MeetingInput {
        meets_on: values.get("meets_on").trim().to_owned(),
        attendees: values.get("attendees").lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect(),
    };
    match panel::schedule(&ctx, &viewer.staff, &input).await {
        Ok(m) => see_other(&format!("/console/panel/{}", m["id"].as_str().unwrap_or_default())),
        Err(e) => {
            let field = if e.body["field"] == "attendees" { "attendees" } else { "meets_on" };
            meetings_page(&ctx, &viewer, &values, &[problem(field, e)]).await
        }
    }
}

/// `GET /console/panel/{id}`.
pub async fn meeting(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Query(n): Query<Notice>) -> Response {
    meeting_page(&ctx, &viewer, &id, &n, &Fields::default(), &[]).await
}

fn notice_text(code: &str) -> Option<&'static str> {
    match code {
        "listed" => Some("The application was listed at this meeting."),
        "decided" => Some("The panel's decision was recorded, with its reasons."),
        _ => None,
    }
}

async fn meeting_page(ctx: &Ctx, viewer: &Viewer, id: &str, n: &Notice, values: &Fields, problems: &[(String, String)]) -> Response {
    let m = match panel::meeting(ctx, id).await {
        Ok(m) => m,
        Err(e) => return PageError::from(e).page(viewer),
    };
    let applications = m["applications"].as_array().cloned().unwrap_or_default();
    let decisions: Vec<(&str, &str)> = Decision::ALL.iter().filter(|d| **d != Decision::Pending).map(|d| (d.code(), d.label())).collect();
    let body = html! {
        (error_summary(problems))
        @if let Some(text) = notice_text(&n.done) { (done(text)) }
        (summary(&[
            ("Meets on", html! { (m["meets_on"].as_str().unwrap_or_default()) }),
            ("Sitting", html! { (m["attendees"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).filter(|s| !s.is_empty()).unwrap_or_else(|| "not recorded".into())) }),
        ]))
        h2 { "Applications" }
        @if applications.is_empty() { p { "None listed yet." } }
        @for a in &applications {
            @let aid = a["id"].as_str().unwrap_or_default();
            @let decision = a["decision"].as_str().unwrap_or_default();
            h3 { "Survivor " a.mono href=(format!("/console/housing/{}", a["subject_ref"].as_str().unwrap_or_default())) { (a["subject_ref"].as_str().unwrap_or_default()) } " " (tag(decision)) }
            (summary(&[
                ("Application", html! { span.mono { (a["application_ref"].as_str().unwrap_or_default()) } " " span.mono { (a["case_ref"].as_str().unwrap_or_default()) } }),
                ("Listed", html! { (when(a["listed_at_ms"].as_i64().unwrap_or_default())) " by " (a["listed_by"].as_str().unwrap_or_default()) }),
            ]))
            @if decision == "pending" {
                form method="post" action=(format!("/console/panel-applications/{aid}/decision")) novalidate {
                    (viewer.csrf_field())
                    input type="hidden" name="meeting_id" value=(id);
                    (choices(&format!("a-{aid}-decision"), "The panel's decision", "", &decisions, &[values.get(&format!("a-{aid}-decision"))], false, problems))
                    (text_field(&format!("a-{aid}-points"), "Group D points awarded", "A whole number, with an award only", values.get(&format!("a-{aid}-points")), problems, true))
                    (text_area(&format!("a-{aid}-reasons"), "Reasons", "Why the panel decided as it did. Kept at this service, sealed.", values.get(&format!("a-{aid}-reasons")), problems))
                    button type="submit" { "Record decision" }
                }
            } @else {
                (summary(&[
                    ("Points awarded", html! { (a["points"]) }),
                    ("Decided", html! { (when(a["decided_at_ms"].as_i64().unwrap_or_default())) " by " (a["decided_by"].as_str().unwrap_or_default()) }),
                    ("Reasons", html! { (a["reasons"].as_str().unwrap_or_default()) }),
                ]))
            }
        }
        h2 { "List an application" }
        form method="post" action=(format!("/console/panel/{id}/applications")) novalidate {
            (viewer.csrf_field())
            fieldset {
                legend { "The survivor" }
                (text_field("subject_name", "Full name", "", values.get("subject_name"), problems, false))
                (text_field("subject_dob", "Date of birth", "For example, 1990-01-31", values.get("subject_dob"), problems, true))
                (text_field("subject_ref", "Or their subject reference", "", values.get("subject_ref"), problems, false))
            }
            (text_field("application_ref", "Allocation scheme application reference (optional)", "Like ALLOC-2026-0042", values.get("application_ref"), problems, true))
            (text_field("case_ref", "Case reference (optional)", "", values.get("case_ref"), problems, true))
            button type="submit" { "List application" }
        }
    };
    let mut response = viewer.page("Points panel meeting", "/console/panel", body);
    if !problems.is_empty() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

/// `POST /console/panel/{id}/applications`.
pub async fn list_application(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let (name, dob) = (values.get("subject_name").trim(), values.get("subject_dob").trim());
    let subject = (!name.is_empty() || !dob.is_empty()).then(|| SubjectIdentity { full_name: name.to_owned(), date_of_birth: dob.to_owned() });
    let reference = Some(values.get("subject_ref").trim().to_owned()).filter(|r| !r.is_empty());
    if subject.is_none() && reference.is_none() {
        return meeting_page(&ctx, &viewer, &id, &Notice::default(), &values, &[("subject_name".into(), "Enter the survivor's full name and date of birth, or their subject reference".into())]).await;
    }
    let input = panel::ListingInput { case_ref: values.get("case_ref").trim().to_owned(), subject, subject_ref: reference, application_ref: values.get("application_ref").trim().to_owned() };
    match panel::list_application(&ctx, &viewer.staff, &id, &input).await {
        Ok(_) => see_other(&format!("/console/panel/{id}?done=listed")),
        Err(e) if e.status == StatusCode::NOT_FOUND => PageError::from(e).page(&viewer),
        Err(e) => {
            let field = match e.body["field"].as_str() {
                Some(f @ ("case_ref" | "application_ref" | "subject_ref")) => f.to_owned(),
                _ => "subject_name".to_owned(),
            };
            meeting_page(&ctx, &viewer, &id, &Notice::default(), &values, &[problem(&field, e)]).await
        }
    }
}

/// `POST /console/panel-applications/{id}/decision`.
pub async fn decide(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let meeting_id = values.get("meeting_id").to_owned();
    let field = |name: &str| format!("a-{id}-{name}");
    let points_text = values.get(&field("points")).trim();
    let result = match (values.get(&field("decision")), points_text.parse::<i64>()) {
        ("", _) => Err((field("decision"), "Choose the panel's decision".to_owned())),
        (_, Err(_)) if !points_text.is_empty() => Err((field("points"), "Enter the points as a whole number".to_owned())),
        (decision, points) => {
            let input = panel::DecisionInput { decision: decision.to_owned(), points: points.unwrap_or(0), reasons: values.get(&field("reasons")).to_owned() };
            panel::decide(&ctx, &viewer.staff, &id, &input).await.map_err(|e| {
                let f = if e.body["detail"].as_str().is_some_and(|d| d.starts_with("points")) {
                    field("points")
                } else if e.body["detail"].as_str().is_some_and(|d| d.starts_with("reasons")) {
                    field("reasons")
                } else {
                    field("decision")
                };
                problem(&f, e)
            })
        }
    };
    match result {
        Ok(_) => see_other(&format!("/console/panel/{meeting_id}?done=decided")),
        Err(p) => meeting_page(&ctx, &viewer, &meeting_id, &Notice::default(), &values, &[p]).await,
    }
}
