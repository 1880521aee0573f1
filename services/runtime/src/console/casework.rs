//! Casework pages every agency service has: the DASH risk checklist (scored and recorded,
//! then carried into the IDVA and MARAC referrals a high result calls for), a person's
//! record (chronology, flags, notes, assessments, deadlines), and the deadlines page
//! (escalations first). Each does its work through the same functions as the JSON API.

use axum::{
    Form, Router,
    extract::{Path, State},
    response::Response,
    routing::{get, post},
};
use isp::risk;
use serde_json::Value;

use super::{Nav, PageError, Viewer, error_summary, form::Fields, html, see_other, summary, tag, when};
use crate::{
    assessments::{self, DashInput},
    auth::{Allow, CASEWORK, Rule, content, rule},
    chronology,
    ctx::Ctx,
    deadlines,
    query::SubjectIdentity,
};

type Posted = Form<Vec<(String, String)>>;

use crate::auth::Role::{self, *};
const ASSESSORS: &[Role] = &[Caseworker, TeamManager];

pub const RULES: &[Rule] = &[
    rule("GET", "/console/dash", Allow::Roles(ASSESSORS)),
    rule("POST", "/console/dash", Allow::Roles(ASSESSORS)),
    rule("GET", "/console/people", Allow::Roles(CASEWORK)),
    rule("POST", "/console/people", Allow::Roles(CASEWORK)),
    content("GET", "/console/people/{subject_ref}", Allow::Roles(CASEWORK)),
    rule("POST", "/console/people/{subject_ref}/notes", Allow::Roles(CASEWORK)),
    rule("POST", "/console/people/{subject_ref}/flags", Allow::Roles(CASEWORK)),
    rule("POST", "/console/flags/{id}/clear", Allow::Roles(&[Caseworker, TeamManager])),
    rule("GET", "/console/deadlines", Allow::Roles(CASEWORK)),
];

pub const NAV: &[Nav] = &[
    Nav { href: "/console/people", label: "People" },
    Nav { href: "/console/deadlines", label: "Deadlines" },
    Nav { href: "/console/dash", label: "DASH checklist" },
];

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/console/dash", get(dash_page).post(dash_record))
        .route("/console/people", get(people).post(find_person))
        .route("/console/people/{subject_ref}", get(person))
        .route("/console/people/{subject_ref}/notes", post(add_note))
        .route("/console/people/{subject_ref}/flags", post(raise_flag))
        .route("/console/flags/{id}/clear", post(clear_flag))
        .route("/console/deadlines", get(deadlines_page))
}

/// A deadline's code for people.
pub fn deadline_label(code: &str) -> &str {
    match code {
        deadlines::ACKNOWLEDGE => "Acknowledge the referral",
        deadlines::IDVA_CONTACT => "First contact attempt with the survivor",
        deadlines::REFER_IDVA => "Refer to the IDVA service (high DASH result)",
        deadlines::REFER_MARAC => "Refer to MARAC (high DASH result)",
        crate::flags::FLAG_REVIEW => "Review the flag",
        "concern_triage" => "Triage the early detector's concern",
        "perpetrator_disengaged" => "Review the safety plan: the perpetrator disengaged",
        "marac_research_reply" => "Reply to MARAC's research request",
        "marac_action_due" => "Complete the MARAC action",
        "reciprocal_approve" => "Named lead's approval of the reciprocal request",
        "reciprocal_circulate" => "Circulate the reciprocal request",
        "reciprocal_reply" => "Landlords' replies to the property request",
        "reciprocal_decide" => "The applicant's decision on the offer",
        _ => code,
    }
}

// ---------------------------------------------------------------- DASH

async fn dash_page(viewer: Viewer) -> Response {
    checklist(&viewer, &Fields::default(), &[])
}

fn checklist(viewer: &Viewer, values: &Fields, problems: &[(String, String)]) -> Response {
    let list = &risk::CHECKLISTS[0];
    let body = html! {
        (error_summary(problems))
        p { "Ask each question of the DASH risk identification checklist (" (list.version) ", " (list.questions.len()) " questions) in its own words, and record the answer. The score is the number of Yes answers: 14 or more is high risk, meets the MARAC threshold, and calls for a referral to an IDVA service. Your professional judgement may raise the level, never lower it." }
        p { "The answers stay at this service, sealed. A referral that names this assessment carries its signed summary (score, level, who assessed and when) and, where the protocol allows, the answers." }
        form method="post" action="/console/dash" novalidate {
            (viewer.csrf_field())
            div.field {
                label for="case_ref" { "Case reference" }
                span.hint #case_ref-hint { "Like HSG-2026-0042. It travels in clear, so never a name." }
                input.short #case_ref type="text" name="case_ref" value=(values.get("case_ref")) aria-describedby="case_ref-hint";
            }
            fieldset {
                legend { "The survivor" }
                div.field { label for="subject_name" { "Full name" } input #subject_name type="text" name="subject_name" value=(values.get("subject_name")) autocomplete="off"; }
                div.field { label for="subject_dob" { "Date of birth" } span.hint #subject_dob-hint { "For example, 1990-01-31" } input.short #subject_dob type="text" name="subject_dob" value=(values.get("subject_dob")) aria-describedby="subject_dob-hint" autocomplete="off"; }
            }
            div.field {
                label for="source" { "Who gave the answers" }
                select #source name="source" {
                    @for s in assessments::SOURCES { option value=(s) selected[values.get("source") == s] { (s.replace('_', " ")) } }
                }
            }
            h2 { "Answers" }
            ol.questions {
                @for (i, question) in list.questions.iter().enumerate() {
                    @let name = format!("q{}", i + 1);
                    li {
                        fieldset {
                            legend { (question) }
                            div.choices {
                                @for (value, label) in [("yes", "Yes"), ("no", "No"), ("not_known", "Not known")] {
                                    div.choice {
                                        input type="radio" id=(format!("{name}-{value}")) name=(name) value=(value) checked[values.get(&name) == value];
                                        label for=(format!("{name}-{value}")) { (label) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div.field {
                label for="judgement" { "Professional judgement (may raise the level, never lower it)" }
                select #judgement name="judgement" {
                    option value="" { "None" }
                    @for r in ["medium", "high"] { option value=(r) selected[values.get("judgement") == r] { (r) } }
                }
            }
            div.field {
                label for="judgement_reason" { "Why, when your judgement raises the level" }
                span.hint #judgement_reason-hint { "Kept at your agency, sealed. You are recorded as the officer who made the judgement." }
                textarea #judgement_reason name="judgement_reason" rows="3" aria-describedby="judgement_reason-hint" { (values.get("judgement_reason")) }
            }
            button type="submit" { "Record assessment" }
        }
    };
    viewer.page("DASH risk checklist", "/console/dash", body)
}

/// `POST /console/dash`: records the checklist, then offers the referrals it calls for.
async fn dash_record(State(ctx): State<Ctx>, viewer: Viewer, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let questions = risk::CHECKLISTS[0].questions.len();
    let unanswered: Vec<usize> = (1..=questions).filter(|q| values.get(&format!("q{q}")).is_empty()).collect();
    if let Some(first) = unanswered.first() {
        return checklist(&viewer, &values, &[(format!("q{first}-yes"), format!("Answer every question ({} not answered, the first is question {first})", unanswered.len()))]);
    }
    let (name, dob) = (values.get("subject_name").trim(), values.get("subject_dob").trim());
    if name.is_empty() || dob.is_empty() {
        return checklist(&viewer, &values, &[("subject_name".into(), "Enter the survivor's full name and date of birth".into())]);
    }
    let input = DashInput {
        checklist_version: None,
        case_ref: values.get("case_ref").trim().to_owned(),
        subject: Some(SubjectIdentity { full_name: name.to_owned(), date_of_birth: dob.to_owned() }),
        subject_ref: None,
        answers: (1..=questions).map(|q| values.get(&format!("q{q}")).to_owned()).collect(),
        sources: vec![values.get("source").to_owned(); questions].into_iter().filter(|s| !s.is_empty()).collect(),
        professional_judgement: Some(values.get("judgement").to_owned()).filter(|j| !j.is_empty()),
        judgement_reason: values.get("judgement_reason").to_owned(),
    };
    let recorded = match assessments::record(&ctx, &viewer.staff, &input).await {
        Ok(v) => v,
        Err(e) => return checklist(&viewer, &values, &[("case_ref".into(), PageError::from(e).detail)]),
    };
    let level = recorded["risk"].as_str().unwrap_or_default().to_owned();
    let id = recorded["id"].as_str().unwrap_or_default().to_owned();
    let subject_ref = recorded["subject_ref"].as_str().unwrap_or_default().to_owned();
    let isp = ctx.isp();
    let body = html! {
        div.notice role="status" {
            h2 { "Assessment recorded" }
            p { "Score " strong { (recorded["score"]) } " of " (questions) ": " (tag(&level)) " risk"
                @if recorded["professional_judgement"] == true { ", raised by your professional judgement" } "." }
            @if level == "high" { p { "A high result calls for a referral to an IDVA service and to MARAC. Each is a task on your dashboard, due within " (isp.policy.deadlines.high_risk_referral_hours) " hours, until it is sent." } }
        }
        (summary(&[
            ("Assessment id", html! { span.mono { (id) } }),
            ("Case reference", html! { span.mono { (values.get("case_ref")) } }),
            ("Checklist", html! { (risk::CHECKLISTS[0].version) }),
            ("The person's record", html! { a href=(format!("/console/people/{subject_ref}")) { "Chronology, flags and deadlines" } }),
        ]))
        @for task in recorded["tasks"].as_array().into_iter().flatten() {
            (referral_form(&ctx, &viewer, task["kind"].as_str().unwrap_or_default(), &id, &values, recorded["professional_judgement"] == true))
        }
    };
    viewer.page("DASH risk checklist", "/console/dash", body)
}

/// A button that opens the compose form for a referral of `kind` naming assessment `id`.
fn referral_form(ctx: &Ctx, viewer: &Viewer, kind: &str, id: &str, values: &Fields, judgement: bool) -> super::Markup {
    let isp = ctx.isp();
    let role = if kind == "marac.referral" { isp::Role::Marac } else { isp::Role::Idva };
    let recipients: Vec<_> = isp.directory.with_role(role).filter(|a| a.is_active()).collect();
    let body = if kind == "marac.referral" { "maracReferral" } else { "idvaReferral" };
    html! {
        h2 { (super::form::kind_label(kind)) }
        form method="post" action="/console/compose/form" {
            (viewer.csrf_field())
            input type="hidden" name="kind" value=(kind);
            input type="hidden" name="assessment_id" value=(id);
            input type="hidden" name="case_ref" value=(values.get("case_ref"));
            input type="hidden" name="subject_name" value=(values.get("subject_name"));
            input type="hidden" name="subject_dob" value=(values.get("subject_dob"));
            input type="hidden" name="p.survivor.fullName" value=(values.get("subject_name"));
            input type="hidden" name="p.survivor.dateOfBirth" value=(values.get("subject_dob"));
            @if body == "maracReferral" {
                input type="hidden" name="p.criteria" value=(if judgement { "MARAC_CRITERION_PROFESSIONAL_JUDGEMENT" } else { "MARAC_CRITERION_VISIBLE_HIGH_RISK" });
            }
            div.field {
                label for=(format!("to-{body}")) { "Recipient" }
                select id=(format!("to-{body}")) name="to" { @for agency in &recipients { option value=(agency.id) { (agency.name) } } }
            }
            button type="submit" { "Continue to the " (super::form::kind_label(kind)) }
        }
    }
}

// ---------------------------------------------------------------- people

/// `GET /console/people`: find a person's record by name and date of birth (posted, never
/// in a URL), and the people with the most recent events.
async fn people(State(ctx): State<Ctx>, viewer: Viewer) -> Response {
    people_page(&ctx, &viewer, &Fields::default(), &[]).await
}

async fn people_page(ctx: &Ctx, viewer: &Viewer, values: &Fields, problems: &[(String, String)]) -> Response {
    let recent = sqlx::query("SELECT subject_ref, MAX(at_ms) AS latest FROM chronology GROUP BY subject_ref ORDER BY latest DESC LIMIT 50").fetch_all(&ctx.pool).await;
    let recent = match recent {
        Ok(r) => r,
        Err(e) => return PageError::from(e).page(viewer),
    };
    use sqlx::Row as _;
    let body = html! {
        (error_summary(problems))
        form method="post" action="/console/people" novalidate {
            (viewer.csrf_field())
            fieldset {
                legend { "Find a person's record" }
                span.hint { "Their name and date of birth make the partnership's pseudonymous reference; neither is kept or logged." }
                div.field { label for="subject_name" { "Full name" } input #subject_name type="text" name="subject_name" value=(values.get("subject_name")) autocomplete="off"; }
                div.field { label for="subject_dob" { "Date of birth" } span.hint #subject_dob-hint { "For example, 1990-01-31" } input.short #subject_dob type="text" name="subject_dob" value=(values.get("subject_dob")) aria-describedby="subject_dob-hint" autocomplete="off"; }
            }
            button type="submit" { "Open the record" }
        }
        h2 { "Recently active" }
        @if recent.is_empty() { p { "No case events yet." } } @else {
            table {
                thead { tr { th scope="col" { "Reference" } th scope="col" { "Latest event" } } }
                tbody { @for r in &recent {
                    @let s: String = r.try_get("subject_ref").unwrap_or_default();
                    tr { td { a.mono href=(format!("/console/people/{s}")) { (s) } } td { (when(r.try_get("latest").unwrap_or_default())) } }
                } }
            }
        }
    };
    viewer.page("People", "/console/people", body)
}

async fn find_person(State(ctx): State<Ctx>, viewer: Viewer, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let (name, dob) = (values.get("subject_name").trim(), values.get("subject_dob").trim());
    if name.is_empty() || dob.is_empty() {
        return people_page(&ctx, &viewer, &values, &[("subject_name".into(), "Enter the full name and date of birth".into())]).await;
    }
    match ctx.isp().keys.subject_ref(name, dob) {
        Ok(subject_ref) => see_other(&format!("/console/people/{subject_ref}")),
        Err(e) => people_page(&ctx, &viewer, &values, &[("subject_name".into(), e.to_string())]).await,
    }
}

/// An event of the chronology in words.
fn event_label(ctx: &Ctx, e: &Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
    let agency = |id: &str| ctx.isp().directory.get(id).map(|a| a.name.clone()).unwrap_or_else(|| id.to_owned());
    match s("event").as_str() {
        "assessment" => format!("DASH risk assessment: {} risk", s("code")),
        "disclosure_sent" => format!("{} sent to {}", super::form::kind_label(&s("code")), agency(&s("counterpart"))),
        "disclosure_received" => format!("{} received from {}", super::form::kind_label(&s("code")), agency(&s("counterpart"))),
        "acknowledged" => format!("Referral from {} {}", agency(&s("counterpart")), s("code")),
        "deadline_missed" => format!("Deadline missed: {}", deadline_label(&s("code"))),
        "flag" => format!("Flag raised: {}", s("code").replace('-', " ")),
        "flag_cleared" => format!("Flag cleared: {}", s("code").replace('-', " ")),
        "note" => "Note".into(),
        other => format!("{}{}", other.replace('_', " "), if s("code").is_empty() { String::new() } else { format!(": {}", s("code").replace(['_', '-'], " ")) }),
    }
}

async fn person(State(ctx): State<Ctx>, viewer: Viewer, Path(subject_ref): Path<String>) -> Response {
    person_page(&ctx, &viewer, &subject_ref, &Fields::default(), &[]).await
}

async fn person_page(ctx: &Ctx, viewer: &Viewer, subject_ref: &str, values: &Fields, problems: &[(String, String)]) -> Response {
    if !isp::clear::is_subject_ref(subject_ref) {
        return PageError::not_found("person").page(viewer);
    }
    let loaded = async {
        let chronology = chronology::of_subject(ctx, subject_ref).await?;
        let flags = crate::flags::flags(ctx, "subject_ref", subject_ref).await?;
        let deadlines: Vec<Value> = deadlines::of_subject(ctx, "open", subject_ref).await?;
        let assessed = assessments::newest(ctx, Some(subject_ref), 20).await?;
        Ok::<_, crate::error::ApiError>((chronology, flags, deadlines, assessed))
    };
    let (events, flags, open, assessed) = match loaded.await {
        Ok(l) => l,
        Err(e) => return PageError::from(e).page(viewer),
    };
    let tomorrow = chronology::date_of(ctx.config.clock.now_ms() + 14 * 86_400_000);
    let body = html! {
        (error_summary(problems))
        p.caption { "Reference " span.mono { (subject_ref) } }
        h2 { "Flags" }
        @if flags.is_empty() { p { "No flags in force." } } @else {
            ul.flags { @for f in &flags {
                li {
                    (tag(f["code"].as_str().unwrap_or_default())) " " (f["meaning"].as_str().unwrap_or_default())
                    ". Review by " (f["review_on"].as_str().unwrap_or_default()) "."
                    @if !f["note"].as_str().unwrap_or_default().is_empty() { " " (f["note"].as_str().unwrap_or_default()) }
                    form.inline method="post" action=(format!("/console/flags/{}/clear", f["id"].as_str().unwrap_or_default())) {
                        (viewer.csrf_field())
                        input type="hidden" name="subject_ref" value=(subject_ref);
                        button.secondary type="submit" { "Clear after review" }
                    }
                }
            } }
        }
        h2 { "Deadlines" }
        @if open.is_empty() { p { "Nothing due." } } @else {
            table {
                thead { tr { th scope="col" { "What" } th scope="col" { "Due" } th scope="col" { "State" } } }
                tbody { @for d in &open { tr {
                    td { (deadline_label(d["code"].as_str().unwrap_or_default())) }
                    td { (when(d["due_at_ms"].as_i64().unwrap_or_default())) }
                    td { (tag(if d["state"] == "escalated" { "overdue" } else { d["state"].as_str().unwrap_or_default() })) }
                } } }
            }
        }
        h2 { "DASH risk assessments" }
        @if assessed.is_empty() { p { a href="/console/dash" { "Record a DASH checklist" } } } @else {
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Level" } th.number scope="col" { "Score" } th scope="col" { "Assessment id (name it in a referral)" } } }
                tbody { @for a in &assessed { tr {
                    td { (when(a["assessed_at_ms"].as_i64().unwrap_or_default())) }
                    td { (tag(a["risk"].as_str().unwrap_or_default())) @if a["professional_judgement"] == true { " (judgement)" } }
                    td.number { (a["score"]) }
                    td.mono { (a["id"].as_str().unwrap_or_default()) }
                } } }
            }
        }
        h2 { "Chronology" }
        @if events.is_empty() { p { "No events yet." } } @else {
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Case" } th scope="col" { "By" } } }
                tbody { @for e in &events { tr {
                    td { (when(e["at_ms"].as_i64().unwrap_or_default())) }
                    td { (event_label(ctx, e)) @if !e["detail"].as_str().unwrap_or_default().is_empty() { br; span.note { (e["detail"].as_str().unwrap_or_default()) } } }
                    td.mono { (e["case_ref"].as_str().unwrap_or_default()) }
                    td { (e["staff_id"].as_str().unwrap_or_default()) }
                } } }
            }
        }
        h2 { "Add a note" }
        form method="post" action=(format!("/console/people/{subject_ref}/notes")) novalidate {
            (viewer.csrf_field())
            div.field {
                label for="note" { "Note" }
                span.hint #note-hint { "Kept at your agency, sealed; it never travels." }
                textarea #note name="note" rows="3" aria-describedby="note-hint" { (values.get("note")) }
            }
            button.secondary type="submit" { "Add note" }
        }
        h2 { "Raise a flag" }
        form method="post" action=(format!("/console/people/{subject_ref}/flags")) novalidate {
            (viewer.csrf_field())
            div.field {
                label for="code" { "Flag" }
                select #code name="code" { @for (code, meaning) in crate::flags::FLAG_CODES { option value=(code) selected[values.get("code") == *code] { (meaning) } } }
            }
            div.field {
                label for="review_on" { "Review by (YYYY-MM-DD)" }
                input.short #review_on type="text" name="review_on" value=(if values.get("review_on").is_empty() { tomorrow.as_str() } else { values.get("review_on") });
            }
            div.field { label for="flag_note" { "Note (optional, sealed)" } textarea #flag_note name="note" rows="2" { } }
            button.secondary type="submit" { "Raise flag" }
        }
    };
    viewer.page("A person's record", "/console/people", body)
}

async fn add_note(State(ctx): State<Ctx>, viewer: Viewer, Path(subject_ref): Path<String>, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    if !isp::clear::is_subject_ref(&subject_ref) {
        return PageError::not_found("person").page(&viewer);
    }
    if values.get("note").trim().is_empty() {
        return person_page(&ctx, &viewer, &subject_ref, &values, &[("note".into(), "Enter the note".into())]).await;
    }
    let entry = chronology::Entry { subject_ref: subject_ref.clone(), event: "note".into(), staff_id: viewer.staff.id.clone(), at_ms: ctx.config.clock.now_ms(), ..Default::default() };
    let saved = async {
        let mut tx = ctx.pool.begin().await?;
        chronology::add_note(&ctx, &mut tx, entry, values.get("note").trim()).await?;
        tx.commit().await?;
        Ok::<_, crate::error::ApiError>(())
    };
    match saved.await {
        Ok(()) => see_other(&format!("/console/people/{subject_ref}")),
        Err(e) => PageError::from(e).page(&viewer),
    }
}

async fn raise_flag(State(ctx): State<Ctx>, viewer: Viewer, Path(subject_ref): Path<String>, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let input = crate::flags::FlagInput {
        subject_ref: Some(subject_ref.clone()),
        property_ref: None,
        code: values.get("code").to_owned(),
        review_on: values.get("review_on").trim().to_owned(),
        note: values.get("note").trim().to_owned(),
    };
    match crate::flags::raise_flag(&ctx, &viewer.staff, &input).await {
        Ok(_) => see_other(&format!("/console/people/{subject_ref}")),
        Err(e) => person_page(&ctx, &viewer, &subject_ref, &values, &[("review_on".into(), PageError::from(e).detail)]).await,
    }
}

async fn clear_flag(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    match crate::flags::clear_flag(&ctx, &viewer.staff, &id).await {
        Ok(()) if isp::clear::is_subject_ref(values.get("subject_ref")) => see_other(&format!("/console/people/{}", values.get("subject_ref"))),
        Ok(()) => see_other("/console/people"),
        Err(e) => PageError::from(e).page(&viewer),
    }
}

// ---------------------------------------------------------------- deadlines

/// The rows of a deadlines table.
pub fn deadline_rows(rows: &[Value]) -> super::Markup {
    html! {
        table {
            thead { tr { th scope="col" { "What" } th scope="col" { "About" } th scope="col" { "Due" } th scope="col" { "State" } } }
            tbody { @for d in rows { tr {
                td { (deadline_label(d["code"].as_str().unwrap_or_default())) }
                td {
                    @let s = d["subject_ref"].as_str().unwrap_or_default();
                    @if isp::clear::is_subject_ref(s) && s.starts_with("s-") { a.mono href=(format!("/console/people/{s}")) { (d["case_ref"].as_str().filter(|c| !c.is_empty()).unwrap_or(s)) } }
                    @else { span.mono { (d["target"].as_str().unwrap_or_default()) } }
                }
                td { (when(d["due_at_ms"].as_i64().unwrap_or_default())) }
                td { (tag(if d["state"] == "escalated" { "overdue" } else { d["state"].as_str().unwrap_or_default() })) }
            } } }
        }
    }
}

async fn deadlines_page(State(ctx): State<Ctx>, viewer: Viewer) -> Response {
    let loaded = async { Ok::<_, crate::error::ApiError>((deadlines::query(&ctx, "escalated", None).await?, deadlines::query(&ctx, "open", None).await?)) };
    let (escalated, open) = match loaded.await {
        Ok(l) => l,
        Err(e) => return PageError::from(e).page(&viewer),
    };
    let upcoming: Vec<Value> = open.into_iter().filter(|d| d["state"] != "escalated").collect();
    let body = html! {
        p { "Every time target of the partnership's protocol, watched by this service: a missed one is an escalation here and on the dashboard, and a signed entry in the partnership's ledger." }
        h2 { "Escalations: missed and still not done" }
        @if escalated.is_empty() { p { "None." } } @else { (deadline_rows(&escalated)) }
        h2 { "Due" }
        @if upcoming.is_empty() { p { "Nothing due." } } @else { (deadline_rows(&upcoming)) }
    };
    viewer.page("Deadlines", "/console/deadlines", body)
}
