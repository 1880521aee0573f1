//! The universal assessment's pages: the form (filled in from the newest version, so nothing
//! is asked twice), a version read back, and the buttons that carry it into an IDVA, MARAC or
//! refuge referral's compose form as hidden `p.uaf.…` fields, so the recipient does not ask
//! again either.

use axum::{
    Form,
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use isp::Kind;
use prost_reflect::{Kind as FieldKind, MessageDescriptor};
use proto::v1::UniversalAssessment;
use runtime::{
    Ctx,
    console::{Markup, PageError, Viewer, error_summary, form, form::Fields, html, summary, when},
};
use serde_json::Value;

use super::{casework, done, text_field};
use crate::uaf;

type Posted = Form<Vec<(String, String)>>;

/// Where the form's fields are named: the path of `uaf` in a referral's compose form.
const PREFIX: &str = "p.uaf";

/// `hub.v1.UniversalAssessment`, as the `uaf` field of an IDVA referral holds it.
fn descriptor(schema: &isp::Schema) -> Option<MessageDescriptor> {
    let (body, _) = schema.body(Kind::IdvaReferral)?;
    match body.get_field_by_name("uaf")?.kind() {
        FieldKind::Message(m) => Some(m),
        _ => None,
    }
}

/// An assessment's JSON (protobuf mapping) as the form fields `form::collect` reads back:
/// `p.uaf.housing.currentSituation`, a repeated string one per line, each value of a
/// repeated enum as a field of its own.
pub fn flatten(message: &MessageDescriptor, name: &str, value: &Value, out: &mut Vec<(String, String)>) {
    let Value::Object(map) = value else { return };
    for field in message.fields() {
        let Some(v) = map.get(field.json_name()) else { continue };
        let fname = format!("{name}.{}", field.json_name());
        let items = || v.as_array().into_iter().flatten();
        match (field.kind(), field.is_list()) {
            (FieldKind::Message(inner), false) => flatten(&inner, &fname, v, out),
            (FieldKind::Message(inner), true) => {
                if let Some(first) = items().next() {
                    flatten(&inner, &format!("{fname}.0"), first, out);
                }
            }
            (FieldKind::Enum(_), true) => out.extend(items().filter_map(Value::as_str).map(|s| (fname.clone(), s.to_owned()))),
            (_, true) => out.push((fname, items().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned)).collect::<Vec<_>>().join("\n"))),
            (_, false) => out.push((fname, v.as_str().map_or_else(|| v.to_string(), str::to_owned))),
        }
    }
}

/// `GET /console/housing/{subject_ref}/uaf`: the form, filled in from the newest version.
pub async fn form_page(State(ctx): State<Ctx>, viewer: Viewer, Path(subject_ref): Path<String>) -> Response {
    if let Err(e) = crate::common::subject_of(&ctx, None, Some(&subject_ref)) {
        return PageError::from(e).page(&viewer);
    }
    let latest = match uaf::latest(&ctx, &subject_ref).await {
        Ok(l) => l,
        Err(e) => return PageError::from(e).page(&viewer),
    };
    let schema = &ctx.isp().schema;
    let mut values = Vec::new();
    let mut next = 1;
    if let (Some((meta, assessment)), Some(d)) = (&latest, descriptor(schema)) {
        flatten(&d, PREFIX, &uaf::to_json(schema, assessment), &mut values);
        values.push(("case_ref".into(), meta["case_ref"].as_str().unwrap_or_default().to_owned()));
        next = meta["version"].as_i64().unwrap_or_default() + 1;
    }
    form_of(&ctx, &viewer, &subject_ref, next, &Fields(values), &[])
}

fn form_of(ctx: &Ctx, viewer: &Viewer, subject_ref: &str, next: i64, values: &Fields, problems: &[(String, String)]) -> Response {
    let isp = ctx.isp();
    let Some(d) = descriptor(&isp.schema) else { return PageError { status: StatusCode::INTERNAL_SERVER_ERROR, detail: "The assessment form is missing from the schema.".into() }.page(viewer) };
    let body = html! {
        (error_summary(problems))
        span.caption { "Survivor " span.mono { (subject_ref) } }
        p { "Ask once what every team needs. "
            @if next > 1 { "This is filled in from version " (next - 1) ": change what has changed, and saving makes version " (next) "." }
            @else { "Fill in what the survivor tells you; leave out what they do not want to say. Saving makes version 1." } }
        p.hint { "Each section is a data category of its own: the information-sharing protocol decides, section by section, what a referral carrying this assessment takes to each recipient. Everything is kept at this service, sealed." }
        form method="post" action=(format!("/console/housing/{subject_ref}/uaf")) novalidate {
            (viewer.csrf_field())
            (text_field("case_ref", "Case reference (optional)", "Like HSG-2026-0042: never a name", values.get("case_ref"), problems, true))
            @for field in d.fields() {
                @if let FieldKind::Message(section) = field.kind() {
                    @let label = uaf::SECTIONS.iter().find(|(n, _)| *n == field.name()).map_or(field.name(), |(_, l)| *l);
                    @let category = isp.schema.field_category("uaf", &field);
                    fieldset id=(format!("section-{}", field.name())) {
                        legend { (label) " " span.category { "category: " (category) } }
                        (form::fields(&isp.schema, &section, &format!("{PREFIX}.{}", field.json_name()), &category, values, 2))
                    }
                }
            }
            fieldset {
                legend { "To carry it into a referral now (optional)" }
                span.hint { "The survivor's name and date of birth go to the referral's form after saving; they are checked against this survivor and not kept." }
                (text_field("subject_name", "Full name", "", values.get("subject_name"), problems, false))
                (text_field("subject_dob", "Date of birth", "For example, 1990-01-31", values.get("subject_dob"), problems, true))
            }
            button type="submit" { "Save as version " (next) }
        }
    };
    let mut response = viewer.page("Universal assessment", "/console/housing", body);
    if !problems.is_empty() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

/// `POST /console/housing/{subject_ref}/uaf`: saves a new version, then shows it with the
/// buttons that carry it into a referral.
pub async fn save(State(ctx): State<Ctx>, viewer: Viewer, Path(subject_ref): Path<String>, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let Some(d) = descriptor(&ctx.isp().schema) else { return PageError { status: StatusCode::INTERNAL_SERVER_ERROR, detail: "The assessment form is missing from the schema.".into() }.page(&viewer) };
    let next = match uaf::versions(&ctx, &subject_ref).await {
        Ok(v) => v.first().and_then(|v| v["version"].as_i64()).unwrap_or_default() + 1,
        Err(e) => return PageError::from(e).page(&viewer),
    };
    let mut problems = Vec::new();
    let json = form::collect(&d, PREFIX, &values, 1, &mut problems);
    // The name and date of birth, when given, must be this survivor's: they go on to the
    // referral, whose subject ref they make.
    let identity = if values.get("subject_name").trim().is_empty() && values.get("subject_dob").trim().is_empty() {
        None
    } else {
        match casework::subject_of_fields(&ctx, &values) {
            Ok(s) if s == subject_ref => Some((values.get("subject_name").trim().to_owned(), values.get("subject_dob").trim().to_owned())),
            Ok(_) => {
                problems.push(("subject_name".into(), "That name and date of birth are of someone else than this survivor: check them, or leave them empty".into()));
                None
            }
            Err(p) => {
                problems.push(p);
                None
            }
        }
    };
    if !problems.is_empty() {
        return form_of(&ctx, &viewer, &subject_ref, next, &values, &problems);
    }
    let input = uaf::UafInput { case_ref: values.get("case_ref").trim().to_owned(), subject: None, subject_ref: Some(subject_ref.clone()), uaf: Value::Object(json) };
    let saved = match uaf::save(&ctx, &viewer.staff, &input).await {
        Ok(s) => s,
        Err(e) => {
            let field = if e.body["field"] == "case_ref" { "case_ref".to_owned() } else { format!("section-{}", uaf::SECTIONS[0].0) };
            return form_of(&ctx, &viewer, &subject_ref, next, &values, &[(field, PageError::from(e).detail)]);
        }
    };
    match uaf::load(&ctx, saved["id"].as_str().unwrap_or_default()).await {
        Ok((meta, assessment)) => view_page(&ctx, &viewer, &meta, &assessment, identity, true),
        Err(e) => PageError::from(e).page(&viewer),
    }
}

/// `GET /console/universal-assessments/{id}`.
pub async fn view(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>) -> Response {
    match uaf::load(&ctx, &id).await {
        Ok((meta, assessment)) => view_page(&ctx, &viewer, &meta, &assessment, None, false),
        Err(e) => PageError::from(e).page(&viewer),
    }
}

fn view_page(ctx: &Ctx, viewer: &Viewer, meta: &Value, assessment: &UniversalAssessment, identity: Option<(String, String)>, saved: bool) -> Response {
    let isp = ctx.isp();
    let Some(d) = descriptor(&isp.schema) else { return PageError { status: StatusCode::INTERNAL_SERVER_ERROR, detail: "The assessment form is missing from the schema.".into() }.page(viewer) };
    let json = uaf::to_json(&isp.schema, assessment);
    let subject_ref = meta["subject_ref"].as_str().unwrap_or_default();
    let body = html! {
        @if saved { (done(&format!("Version {} of the universal assessment was saved.", meta["version"]))) }
        span.caption { "Survivor " a.mono href=(format!("/console/housing/{subject_ref}")) { (subject_ref) } }
        (summary(&[
            ("Version", html! { (meta["version"]) }),
            ("Recorded", html! { (when(meta["recorded_at_ms"].as_i64().unwrap_or_default())) " by " (meta["recorded_by"].as_str().unwrap_or_default()) }),
            ("Case reference", html! { span.mono { (meta["case_ref"].as_str().unwrap_or_default()) } }),
        ]))
        @for field in d.fields() {
            @if let (FieldKind::Message(section), Some(content)) = (field.kind(), json.get(field.json_name())) {
                h2 { (uaf::SECTIONS.iter().find(|(n, _)| *n == field.name()).map_or(field.name(), |(_, l)| *l)) }
                (form::show(&section, content))
            }
        }
        p { a href=(format!("/console/housing/{subject_ref}/uaf")) { "Update the assessment (a new version)" } }
        (carry(ctx, viewer, &d, &json, meta, identity.as_ref()))
    };
    viewer.page("Universal assessment", "/console/housing", body)
}

/// The referrals this assessment can go into, each a form to the compose page with the
/// assessment as hidden `p.uaf.…` fields.
fn carry(ctx: &Ctx, viewer: &Viewer, d: &MessageDescriptor, json: &Value, meta: &Value, identity: Option<&(String, String)>) -> Markup {
    let isp = ctx.isp();
    let mut hidden = vec![("case_ref".to_owned(), meta["case_ref"].as_str().unwrap_or_default().to_owned())];
    if let Some((name, dob)) = identity {
        for (k, v) in [("subject_name", name), ("subject_dob", dob), ("p.survivor.fullName", name), ("p.survivor.dateOfBirth", dob)] {
            hidden.push((k.to_owned(), v.clone()));
        }
    }
    flatten(d, PREFIX, json, &mut hidden);
    let referrals = [
        (Kind::IdvaReferral, isp::Role::Idva, "Refer to an IDVA service"),
        (Kind::MaracReferral, isp::Role::Marac, "Refer to MARAC"),
        (Kind::RefugeReferral, isp::Role::Idva, "Refer to refuge"),
    ];
    let offered: Vec<_> = referrals
        .iter()
        .filter(|(k, role, _)| isp.policy.rules.iter().any(|r| r.from.contains(&isp.role) && r.to.contains(role) && r.kinds.iter().any(|n| n == isp::kind::name(*k))))
        .map(|(k, role, label)| (*k, *label, isp.directory.with_role(*role).filter(|a| a.is_active()).collect::<Vec<_>>()))
        .filter(|(_, _, agencies)| !agencies.is_empty())
        .collect();
    html! {
        h2 { "Carry it into a referral" }
        p { "The referral's form opens with this assessment in it, so the recipient does not ask the survivor again. The protocol decides which sections reach each recipient: the preview shows what it removes." }
        @if identity.is_none() { p.hint { "The referral's form asks for the survivor's name and date of birth." } }
        @for (k, label, agencies) in &offered {
            @let id = isp::kind::subject_token(*k);
            form method="post" action="/console/compose/form" {
                (viewer.csrf_field())
                input type="hidden" name="kind" value=(isp::kind::name(*k));
                (Fields(hidden.clone()).hidden())
                div.field {
                    label for=(format!("to-{id}")) { (label) ": who to" }
                    select id=(format!("to-{id}")) name="to" { @for a in agencies { option value=(a.id) { (a.name) } } }
                }
                button.secondary type="submit" { (label) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assessment_flattened_to_fields_is_collected_back_whole() {
        let schema = isp::Schema::load().expect("schema");
        let d = descriptor(&schema).expect("the uaf field");
        let json = serde_json::json!({
            "assessmentId": "0192f3c4-0000-7000-8000-000000000000", "version": 2,
            "housing": {"currentSituation": "Synthetic words", "tenure": "TENURE_COUNCIL", "areasUnsafe": ["Ward A", "Ward B"], "bedroomsNeeded": 2, "jointTenancy": true},
            "supportNeeds": {"needs": ["SUPPORT_NEED_REFUGE", "SUPPORT_NEED_MONEY_ADVICE"]},
            "diversity": {"firstLanguage": "Synthetic", "interpreterNeeded": true},
        });
        let mut pairs = Vec::new();
        flatten(&d, PREFIX, &json, &mut pairs);
        assert!(pairs.contains(&("p.uaf.housing.currentSituation".into(), "Synthetic words".into())), "{pairs:?}");
        assert!(pairs.contains(&("p.uaf.housing.areasUnsafe".into(), "Ward A\nWard B".into())), "{pairs:?}");
        let mut problems = Vec::new();
        let back = form::collect(&d, PREFIX, &Fields(pairs), 1, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(Value::Object(back), json);
    }
}
