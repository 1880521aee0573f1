//! Housing's console pages: a survivor's housing casework (the universal assessment, the
//! route chosen, refuge referrals, sanctuary, flexible funding), the points panel, early
//! detectors' concerns with the team's queue, and the reciprocal scheme's moves.
//!
//! Every page does its work through the same functions as the JSON API (a page can do nothing
//! the API would refuse). Survivors' names travel only in POST bodies, never in a URL; pages
//! are addressed by subject refs and record ids. No JavaScript: each form posts and the page
//! answers with what happened, or with the form again and an error summary.

mod casework;
mod concerns;
mod panel;
mod reciprocal;
mod uaf;

use axum::{
    Router,
    routing::{get, post},
};
use runtime::{
    Ctx,
    console::{Markup, Nav, PageError, html},
};

/// The early detector's form: open to any staff member of the service.
pub const CONCERN_FORM: &str = "/console/concerns/new";

/// The service's pages in its navigation (each shown to those its GET rule allows).
pub const NAV: &[Nav] = &[
    Nav { href: "/console/housing", label: "Housing casework" },
    Nav { href: "/console/panel", label: "Points panel" },
    Nav { href: "/console/concerns", label: "Concerns" },
    Nav { href: reciprocal::LIST, label: "Reciprocal moves" },
    Nav { href: CONCERN_FORM, label: "Raise a concern" },
];

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/console/housing", get(casework::find_page).post(casework::find))
        .route("/console/housing/{subject_ref}", get(casework::survivor))
        .route("/console/housing/{subject_ref}/uaf", get(uaf::form_page).post(uaf::save))
        .route("/console/housing/{subject_ref}/route", post(casework::choose_route))
        .route("/console/housing/{subject_ref}/sanctuary", post(casework::request_sanctuary))
        .route("/console/housing/{subject_ref}/funding", post(casework::request_funding))
        .route("/console/universal-assessments/{id}", get(uaf::view))
        .route("/console/sanctuary/{id}", post(casework::sanctuary_step))
        .route("/console/funding/{id}/spend", post(casework::spend))
        .route("/console/funding/{id}/decision", post(casework::decide_funding))
        .route("/console/panel", get(panel::meetings).post(panel::schedule))
        .route("/console/panel/{id}", get(panel::meeting))
        .route("/console/panel/{id}/applications", post(panel::list_application))
        .route("/console/panel-applications/{id}/decision", post(panel::decide))
        .route(CONCERN_FORM, get(concerns::form_page).post(concerns::raise))
        .route("/console/concerns", get(concerns::queue))
        .route("/console/concerns/{id}", get(concerns::concern))
        .route("/console/concerns/{id}/triage", post(concerns::triage))
        .route(reciprocal::LIST, get(reciprocal::list))
        .route("/console/reciprocals/{reference}", get(reciprocal::application))
        .route("/console/reciprocals/{reference}/approval", post(reciprocal::post_approval))
        .route("/console/reciprocals/{reference}/areas", post(reciprocal::post_areas))
        .route("/console/reciprocals/{reference}/withdraw", post(reciprocal::post_withdraw))
}

/// A page's error as a problem about `field` (its detail never repeats request content).
fn problem(field: &str, e: impl Into<PageError>) -> (String, String) {
    (field.to_owned(), e.into().detail)
}

/// The message of the problem about `field`, if any.
fn error_of<'a>(problems: &'a [(String, String)], field: &str) -> Option<&'a str> {
    problems.iter().find(|(f, _)| f == field).map(|(_, m)| m.as_str())
}

/// A text input with its label, hint and error.
fn text_field(id: &str, label: &str, hint: &str, value: &str, problems: &[(String, String)], short: bool) -> Markup {
    let error = error_of(problems, id);
    let described = [(!hint.is_empty()).then(|| format!("{id}-hint")), error.map(|_| format!("{id}-error"))].into_iter().flatten().collect::<Vec<_>>().join(" ");
    html! {
        div.field.error[error.is_some()] {
            label for=(id) { (label) }
            @if !hint.is_empty() { span.hint id=(format!("{id}-hint")) { (hint) } }
            @if let Some(e) = error { span.field-error id=(format!("{id}-error")) { span.visually-hidden { "Error: " } (e) } }
            input.short[short] type="text" id=(id) name=(id) value=(value) aria-describedby=[(!described.is_empty()).then_some(described.as_str())] autocomplete="off";
        }
    }
}

/// A textarea with its label, hint and error.
fn text_area(id: &str, label: &str, hint: &str, value: &str, problems: &[(String, String)]) -> Markup {
    let error = error_of(problems, id);
    let described = [(!hint.is_empty()).then(|| format!("{id}-hint")), error.map(|_| format!("{id}-error"))].into_iter().flatten().collect::<Vec<_>>().join(" ");
    html! {
        div.field.error[error.is_some()] {
            label for=(id) { (label) }
            @if !hint.is_empty() { span.hint id=(format!("{id}-hint")) { (hint) } }
            @if let Some(e) = error { span.field-error id=(format!("{id}-error")) { span.visually-hidden { "Error: " } (e) } }
            textarea id=(id) name=(id) rows="3" aria-describedby=[(!described.is_empty()).then_some(described.as_str())] { (value) }
        }
    }
}

/// Radios (one choice) or checkboxes (several) in a fieldset whose legend is the question.
fn choices(id: &str, legend: &str, hint: &str, options: &[(&str, &str)], chosen: &[&str], several: bool, problems: &[(String, String)]) -> Markup {
    let error = error_of(problems, id);
    html! {
        div.field.error[error.is_some()] {
            fieldset aria-describedby=[(!hint.is_empty()).then(|| format!("{id}-hint"))] {
                legend { (legend) }
                @if !hint.is_empty() { span.hint id=(format!("{id}-hint")) { (hint) } }
                @if let Some(e) = error { span.field-error id=(format!("{id}-error")) { span.visually-hidden { "Error: " } (e) } }
                div.choices {
                    @for (i, (value, label)) in options.iter().enumerate() {
                        @let option_id = if i == 0 { id.to_owned() } else { format!("{id}-{i}") };
                        div.choice {
                            input type=(if several { "checkbox" } else { "radio" }) id=(option_id) name=(id) value=(value) checked[chosen.contains(value)];
                            label for=(option_id) { (label) }
                        }
                    }
                }
            }
        }
    }
}

/// A select with its label and error.
fn select(id: &str, label: &str, options: &[(&str, &str)], chosen: &str, problems: &[(String, String)]) -> Markup {
    let error = error_of(problems, id);
    html! {
        div.field.error[error.is_some()] {
            label for=(id) { (label) }
            @if let Some(e) = error { span.field-error id=(format!("{id}-error")) { span.visually-hidden { "Error: " } (e) } }
            select id=(id) name=(id) aria-describedby=[error.map(|_| format!("{id}-error"))] {
                @for (value, text) in options { option value=(value) selected[*value == chosen] { (text) } }
            }
        }
    }
}

/// A notice after a form that worked.
fn done(text: &str) -> Markup {
    html! { div.notice role="status" { h2 { "Done" } p { (text) } } }
}

/// Amounts as typed in pounds ("£1,250.50", "1250.5", "40") as pence.
pub fn parse_pounds(text: &str) -> Option<i64> {
    let t: String = text.trim().trim_start_matches('£').chars().filter(|c| *c != ',').collect();
    let (whole, fraction) = t.split_once('.').unwrap_or((&t, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || whole.len() > 9 || fraction.len() > 2 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pence = match fraction.len() {
        0 => 0,
        1 => fraction.parse::<i64>().ok()? * 10,
        _ => fraction.parse::<i64>().ok()?,
    };
    Some(whole.parse::<i64>().ok()? * 100 + pence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pounds_as_typed_become_pence() {
        for (typed, pence) in [("40", Some(4000)), ("£1,250.50", Some(125_050)), ("12.5", Some(1250)), (" 0.07 ", Some(7)), ("", None), ("12.345", None), ("-5", None), ("ten", None), ("1.2.3", None)] {
            assert_eq!(parse_pounds(typed), pence, "{typed:?}");
        }
    }

    #[test]
    fn a_field_with_a_problem_says_so_beside_it() {
        let problems = vec![("amount".to_owned(), "Enter an amount".to_owned())];
        let page = text_field("amount", "Amount", "In pounds", "", &problems, true).into_string();
        assert!(page.contains("field error") && page.contains("amount-error") && page.contains("aria-describedby=\"amount-hint amount-error\""), "{page}");
        let page = text_field("amount", "Amount", "", "", &[], true).into_string();
        assert!(!page.contains("aria-describedby"), "{page}");
    }
}
