//! Early detectors' pages: the short form any staff member can use to raise a concern, and
//! the domestic abuse team's queue and triage.

use axum::{
    Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use runtime::{
    Ctx,
    api::SubjectIdentity,
    console::{PageError, Viewer, error_summary, form::Fields, html, see_other, summary, tag, when},
};
use serde_json::Value;

use super::{CONCERN_FORM, casework::Notice, choices, done, problem, text_area, text_field};
use crate::concerns::{self, Indicator, TriageDecision};

type Posted = Form<Vec<(String, String)>>;

/// `GET /console/concerns/new`.
pub async fn form_page(viewer: Viewer) -> Response {
    concern_form(&viewer, &Fields::default(), &[])
}

fn concern_form(viewer: &Viewer, values: &Fields, problems: &[(String, String)]) -> Response {
    let indicators: Vec<(&str, &str)> = Indicator::ALL.iter().map(|i| (i.code(), i.label())).collect();
    let body = html! {
        (error_summary(problems))
        div.warning { span.icon aria-hidden="true" { "!" } span { "If someone is in immediate danger, call 999 now." } }
        p { "Tell the domestic abuse team what you noticed at a property. They will look at it within three days. Do not ask the people there about it, and do not tell anyone else at the address that you have raised it." }
        form method="post" action=(CONCERN_FORM) novalidate {
            (viewer.csrf_field())
            (text_field("property_ref", "Property reference", "Like PROP-1042, from the job or the tenancy record", values.get("property_ref"), problems, true))
            (text_area("address", "Or the address", "Only if you do not have the property reference. Kept sealed.", values.get("address"), problems))
            (choices("indicators", "What did you see or hear?", "Choose every one that applies.", &indicators, &values.all("indicators"), true, problems))
            (text_area("note", "Anything else the team should know (optional)", "What you saw or heard, when. Kept sealed; only the domestic abuse team reads it.", values.get("note"), problems))
            button type="submit" { "Send to the domestic abuse team" }
        }
    };
    let mut response = viewer.page("Raise a concern", CONCERN_FORM, body);
    if !problems.is_empty() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

/// `POST /console/concerns/new`.
pub async fn raise(State(ctx): State<Ctx>, viewer: Viewer, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let input = concerns::ConcernInput {
        property_ref: values.get("property_ref").trim().to_owned(),
        address: values.get("address").to_owned(),
        indicators: values.all("indicators").into_iter().map(str::to_owned).collect(),
        note: values.get("note").to_owned(),
    };
    match concerns::raise(&ctx, &viewer.staff, &input).await {
        Ok(raised) => {
            let body = html! {
                (done("Your concern has reached the domestic abuse team. Thank you for raising it."))
                p { "Its reference is " span.mono { (raised["id"].as_str().unwrap_or_default()) } ". You do not need to do anything else; if you notice more, raise another concern." }
                p { a href=(CONCERN_FORM) { "Raise another concern" } }
            };
            viewer.page("Concern sent", CONCERN_FORM, body)
        }
        Err(e) => {
            let detail = e.body["detail"].as_str().unwrap_or_default().to_owned();
            let field = if e.body["field"] == "property_ref" || detail.starts_with("name the property") {
                "property_ref"
            } else if detail.starts_with("note") {
                "note"
            } else {
                "indicators"
            };
            concern_form(&viewer, &values, &[problem(field, e)])
        }
    }
}

fn indicator_names(v: &Value) -> String {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).map(|c| Indicator::parse(c).map_or(c, |x| x.label())).collect::<Vec<_>>().join("; ")
}

/// `GET /console/concerns`: the queue, oldest first, and the newest triaged.
pub async fn queue(State(ctx): State<Ctx>, viewer: Viewer, Query(n): Query<Notice>) -> Response {
    let (open, triaged) = match (concerns::concerns(&ctx, "open").await, concerns::concerns(&ctx, "triaged").await) {
        (Ok(o), Ok(t)) => (o, t),
        (Err(e), _) | (_, Err(e)) => return PageError::from(e).page(&viewer),
    };
    let now = crate::common::now(&ctx);
    let body = html! {
        @if n.done == "triaged" { (done("The concern was triaged; its deadline is met.")) }
        h2 { "Waiting for triage" }
        @if open.is_empty() { p { "None." } } @else {
            table {
                caption.visually-hidden { "Concerns waiting for triage, oldest first" }
                thead { tr { th scope="col" { "Raised" } th scope="col" { "Property" } th scope="col" { "What was noticed" } th scope="col" { "Triage due" } } }
                tbody { @for c in &open {
                    @let due = c["triage_due_at_ms"].as_i64().unwrap_or_default();
                    tr {
                        td { a href=(format!("/console/concerns/{}", c["id"].as_str().unwrap_or_default())) { (when(c["raised_at_ms"].as_i64().unwrap_or_default())) } }
                        td.mono { @let p = c["property_ref"].as_str().unwrap_or_default(); (if p.is_empty() { "address given" } else { p }) }
                        td { (indicator_names(&c["indicators"])) }
                        td { (when(due)) @if due > 0 && due < now { " " (tag("overdue")) } }
                    }
                } }
            }
        }
        h2 { "Triaged" }
        @if triaged.is_empty() { p { "None yet." } } @else {
            table {
                caption.visually-hidden { "Triaged concerns, newest first" }
                thead { tr { th scope="col" { "Triaged" } th scope="col" { "Property" } th scope="col" { "Decision" } th scope="col" { "By" } } }
                tbody { @for c in triaged.iter().take(50) {
                    tr {
                        td { a href=(format!("/console/concerns/{}", c["id"].as_str().unwrap_or_default())) { (when(c["triaged_at_ms"].as_i64().unwrap_or_default())) } }
                        td.mono { (c["property_ref"].as_str().unwrap_or_default()) }
                        td { (TriageDecision::parse(c["decision"].as_str().unwrap_or_default()).map_or("", TriageDecision::label)) }
                        td { (c["triaged_by"].as_str().unwrap_or_default()) }
                    }
                } }
            }
        }
    };
    viewer.page("Concerns", "/console/concerns", body)
}

/// `GET /console/concerns/{id}`.
pub async fn concern(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>) -> Response {
    concern_page(&ctx, &viewer, &id, &Fields::default(), &[]).await
}

async fn concern_page(ctx: &Ctx, viewer: &Viewer, id: &str, values: &Fields, problems: &[(String, String)]) -> Response {
    let c = match concerns::concern(ctx, id).await {
        Ok(c) => c,
        Err(e) => return PageError::from(e).page(viewer),
    };
    let decisions: Vec<(&str, &str)> = TriageDecision::ALL.iter().map(|d| (d.code(), d.label())).collect();
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    let body = html! {
        (error_summary(problems))
        (summary(&[
            ("Raised", html! { (when(c["raised_at_ms"].as_i64().unwrap_or_default())) " by " (text("raised_by")) }),
            ("Property", html! { span.mono { (text("property_ref")) } }),
            ("Address", html! { (text("address")) }),
            ("What was noticed", html! { (indicator_names(&c["indicators"])) }),
            ("Note", html! { (text("note")) }),
            ("Status", tag(&text("status"))),
        ]))
        @if text("status") == "open" {
            h2 { "Triage" }
            form method="post" action=(format!("/console/concerns/{id}/triage")) novalidate {
                (viewer.csrf_field())
                (choices("decision", "What happens next?", "", &decisions, &[values.get("decision")], false, problems))
                (text_area("note", "Why (needed for no further action)", "Kept at this service, sealed.", values.get("note"), problems))
                fieldset {
                    legend { "The survivor, if you know who it is (optional)" }
                    span.hint { "The concern then goes in their chronology." }
                    (text_field("subject_name", "Full name", "", values.get("subject_name"), problems, false))
                    (text_field("subject_dob", "Date of birth", "For example, 1990-01-31", values.get("subject_dob"), problems, true))
                    (text_field("case_ref", "Case reference (optional)", "", values.get("case_ref"), problems, true))
                }
                button type="submit" { "Record triage" }
            }
        } @else {
            (summary(&[
                ("Decision", html! { (TriageDecision::parse(&text("decision")).map_or("", TriageDecision::label)) }),
                ("Triaged", html! { (when(c["triaged_at_ms"].as_i64().unwrap_or_default())) " by " (text("triaged_by")) }),
                ("Why", html! { (text("triage_note")) }),
                ("Survivor", html! { @let s = text("subject_ref"); @if !s.is_empty() { a.mono href=(format!("/console/housing/{s}")) { (s) } } }),
            ]))
        }
    };
    let mut response = viewer.page("Concern", "/console/concerns", body);
    if !problems.is_empty() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

/// `POST /console/concerns/{id}/triage`.
pub async fn triage(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    if values.get("decision").is_empty() {
        return concern_page(&ctx, &viewer, &id, &values, &[("decision".into(), "Choose what happens next".into())]).await;
    }
    let (name, dob) = (values.get("subject_name").trim(), values.get("subject_dob").trim());
    let input = concerns::TriageInput {
        decision: values.get("decision").to_owned(),
        note: values.get("note").to_owned(),
        subject: (!name.is_empty() || !dob.is_empty()).then(|| SubjectIdentity { full_name: name.to_owned(), date_of_birth: dob.to_owned() }),
        subject_ref: None,
        case_ref: values.get("case_ref").trim().to_owned(),
    };
    match concerns::triage(&ctx, &viewer.staff, &id, &input).await {
        Ok(_) => see_other("/console/concerns?done=triaged"),
        Err(e) if e.status == StatusCode::NOT_FOUND => PageError::from(e).page(&viewer),
        Err(e) => {
            let detail = e.body["detail"].as_str().unwrap_or_default().to_owned();
            let field = if detail.starts_with("note") {
                "note"
            } else if e.body["field"] == "case_ref" {
                "case_ref"
            } else if input.subject.is_some() && e.status == StatusCode::BAD_REQUEST && !detail.starts_with("decision") {
                "subject_name"
            } else {
                "decision"
            };
            concern_page(&ctx, &viewer, &id, &values, &[problem(field, e)]).await
        }
    }
}
