//! Housing's own console page: the DASH risk checklist, scored and recorded as
//! `POST /dash-assessments` does, then carried into an IDVA referral's form.

use axum::{Form, body::Bytes, extract::State, response::Response};

use runtime::{
    Ctx,
    console::{PageError, Viewer, error_summary, form::Fields, html, summary, tag},
};
use serde_json::json;

use crate::dash;

/// `GET /console/dash`.
pub async fn page(viewer: Viewer) -> Response {
    checklist(&viewer, &Fields::default(), &[])
}

fn checklist(viewer: &Viewer, values: &Fields, problems: &[(String, String)]) -> Response {
    let checklist = &dash::CHECKLISTS[0];
    let body = html! {
        (error_summary(problems))
        p { "Answer each question of your agency's DASH checklist (" (checklist.version) ", " (checklist.questions) " questions) as the survivor answered it. The score is the number of Yes answers: 14 or more is high risk and meets the MARAC threshold. The answers stay at this service, sealed; only the score and the band are shared." }
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
            h2 { "Answers" }
            ol.questions {
                @for q in 1..=checklist.questions {
                    @let name = format!("q{q}");
                    li {
                        fieldset {
                            legend { "Question " (q) }
                            div.choices {
                                @for (value, label) in [("yes", "Yes"), ("no", "No"), ("dont_know", "Don't know")] {
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
                label for="judgement" { "Professional judgement (may raise the band, never lower it)" }
                select #judgement name="judgement" {
                    option value="" { "None" }
                    @for r in ["standard", "medium", "high"] { option value=(r) selected[values.get("judgement") == r] { (r) } }
                }
            }
            button type="submit" { "Record assessment" }
        }
    };
    viewer.page("DASH risk checklist", "/console/dash", body)
}

/// `POST /console/dash`: records the checklist, then offers the IDVA referral with it.
pub async fn record(State(ctx): State<Ctx>, viewer: Viewer, Form(fields): Form<Vec<(String, String)>>) -> Response {
    let values = Fields(fields);
    let questions = dash::CHECKLISTS[0].questions;
    let unanswered: Vec<usize> = (1..=questions).filter(|q| values.get(&format!("q{q}")).is_empty()).collect();
    if let Some(first) = unanswered.first() {
        return checklist(&viewer, &values, &[(format!("q{first}-yes"), format!("Answer every question ({} not answered, the first is question {first})", unanswered.len()))]);
    }
    let mut input = json!({
        "case_ref": values.get("case_ref").trim(),
        "subject": {"full_name": values.get("subject_name").trim(), "date_of_birth": values.get("subject_dob").trim()},
        "answers": (1..=questions).map(|q| values.get(&format!("q{q}")).to_owned()).collect::<Vec<_>>(),
    });
    if !values.get("judgement").is_empty() {
        input["professional_judgement"] = json!(values.get("judgement"));
    }
    let recorded = match dash::record(State(ctx.clone()), Bytes::from(input.to_string())).await {
        Ok((_, axum::Json(recorded))) => recorded,
        Err(e) => return checklist(&viewer, &values, &[("case_ref".into(), PageError::from(e).detail)]),
    };
    let risk = recorded["risk"].as_str().unwrap_or_default().to_owned();
    let a = &recorded["assessment"];
    let isp = ctx.isp();
    let idvas: Vec<_> = isp.directory.with_role(isp::Role::Idva).filter(|a| a.is_active()).collect();
    let body = html! {
        div.notice role="status" {
            h2 { "Assessment recorded" }
            p { "Score " strong { (recorded["score"]) } " of " (questions) ": " (tag(&risk)) " risk."
                @if recorded["marac_criteria_met"] == true { " This meets the MARAC threshold (visible high risk): refer to the MARAC too." } }
        }
        (summary(&[("Case reference", html! { span.mono { (values.get("case_ref")) } }), ("Checklist", html! { (a["checklistVersion"].as_str().unwrap_or_default()) })]))
        h2 { "Refer to an IDVA with this assessment" }
        form method="post" action="/console/compose/form" {
            (viewer.csrf_field())
            input type="hidden" name="kind" value="housing.idva_referral";
            input type="hidden" name="case_ref" value=(values.get("case_ref"));
            input type="hidden" name="subject_name" value=(values.get("subject_name"));
            input type="hidden" name="subject_dob" value=(values.get("subject_dob"));
            input type="hidden" name="risk" value=(risk);
            input type="hidden" name="p.survivor.fullName" value=(values.get("subject_name"));
            input type="hidden" name="p.survivor.dateOfBirth" value=(values.get("subject_dob"));
            @for (key, value) in a.as_object().into_iter().flatten() {
                @if !value.is_array() {
                    input type="hidden" name=(format!("p.dash.{key}")) value=(value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string()));
                }
            }
            div.field {
                label for="to" { "IDVA service" }
                select #to name="to" { @for agency in &idvas { option value=(agency.id) { (agency.name) } } }
            }
            button type="submit" { "Continue to the referral" }
        }
    };
    viewer.page("DASH risk checklist", "/console/dash", body)
}
