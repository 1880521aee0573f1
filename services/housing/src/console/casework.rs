//! A survivor's housing casework on one page: their universal assessment, the route chosen,
//! the refuge referrals sent, sanctuary schemes and flexible funding, each with its forms.

use axum::{
    Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use runtime::{
    Ctx,
    api::SubjectIdentity,
    console::{Markup, PageError, Viewer, error_summary, form::Fields, html, see_other, summary, tag, when},
};
use serde::Deserialize;
use serde_json::Value;

use super::{choices, done, parse_pounds, problem, select, text_area, text_field};
use crate::{
    common,
    funding::{self, Purpose},
    options::{self, Route},
    sanctuary::{self, Measure},
    uaf,
};

type Posted = Form<Vec<(String, String)>>;

#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    #[serde(default)]
    pub done: String,
}

fn notice(code: &str) -> Markup {
    let text = match code {
        "uaf" => "The universal assessment was saved as a new version.",
        "route" => "The housing route was recorded.",
        "sanctuary" => "The sanctuary scheme was requested, with the survivor's agreement.",
        "surveyed" => "The survey was recorded.",
        "installed" => "The sanctuary measures were recorded as installed, and the property is flagged.",
        "refused" => "The sanctuary scheme was recorded as refused.",
        "funding" => "The flexible funding request was made: another team manager decides it.",
        "decided" => "The decision on the funding request was recorded.",
        "spent" => "The spend was recorded against the approved amount.",
        _ => return html! {},
    };
    done(text)
}

/// The survivor's page address.
fn page_of(subject_ref: &str) -> String {
    format!("/console/housing/{subject_ref}")
}

// ---------------------------------------------------------------- finding a survivor

/// `GET /console/housing`.
pub async fn find_page(State(ctx): State<Ctx>, viewer: Viewer) -> Response {
    find_form(&ctx, &viewer, &Fields::default(), &[]).await
}

async fn find_form(ctx: &Ctx, viewer: &Viewer, values: &Fields, problems: &[(String, String)]) -> Response {
    let manager = viewer.staff.roles.contains(&runtime::auth::Role::TeamManager);
    let awaiting = if manager {
        match funding::requests(ctx, "status", funding::Status::Requested.code()).await {
            Ok(a) => a,
            Err(e) => return PageError::from(e).page(viewer),
        }
    } else {
        Vec::new()
    };
    let body = html! {
        (error_summary(problems))
        p { "Find a survivor's housing casework: their universal assessment, the housing route chosen with them, refuge referrals, sanctuary and flexible funding." }
        form method="post" action="/console/housing" novalidate {
            (viewer.csrf_field())
            fieldset {
                legend { "The survivor" }
                span.hint { "Their name and date of birth make the partnership's pseudonymous reference for them; they are not kept or put in an address." }
                (text_field("subject_name", "Full name", "", values.get("subject_name"), problems, false))
                (text_field("subject_dob", "Date of birth", "For example, 1990-01-31", values.get("subject_dob"), problems, true))
            }
            (text_field("subject_ref", "Or their subject reference", "s- and 32 letters and digits, from another page", values.get("subject_ref"), problems, false))
            button type="submit" { "Open their casework" }
        }
        @if manager {
            h2 { "Flexible funding awaiting a decision" }
            @if awaiting.is_empty() { p { "None." } } @else {
                table {
                    thead { tr { th scope="col" { "Requested" } th scope="col" { "Survivor" } th scope="col" { "Purpose" } th.number scope="col" { "Amount" } th scope="col" { "By" } } }
                    tbody {
                        @for f in &awaiting {
                            @let sr = f["subject_ref"].as_str().unwrap_or_default();
                            tr {
                                td { (when(f["requested_at_ms"].as_i64().unwrap_or_default())) }
                                td { a.mono href=(page_of(sr)) { (sr) } }
                                td { (Purpose::parse(f["purpose"].as_str().unwrap_or_default()).map_or("", Purpose::label)) }
                                td.number { (common::pounds(f["amount_pence"].as_i64().unwrap_or_default())) }
                                td { (f["requested_by"].as_str().unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    };
    viewer.page("Housing casework", "/console/housing", body)
}

/// The survivor named by a form: by name and date of birth, or by subject ref.
pub(super) fn subject_of_fields(ctx: &Ctx, values: &Fields) -> Result<String, (String, String)> {
    let (name, dob, reference) = (values.get("subject_name").trim(), values.get("subject_dob").trim(), values.get("subject_ref").trim());
    if !name.is_empty() || !dob.is_empty() {
        if name.is_empty() || dob.is_empty() {
            return Err(("subject_name".into(), "Enter both the survivor's full name and their date of birth".into()));
        }
        let identity = SubjectIdentity { full_name: name.to_owned(), date_of_birth: dob.to_owned() };
        return common::subject_of(ctx, Some(&identity), None).map_err(|e| problem("subject_dob", e));
    }
    if reference.is_empty() {
        return Err(("subject_name".into(), "Enter the survivor's full name and date of birth, or their subject reference".into()));
    }
    common::subject_of(ctx, None, Some(reference)).map_err(|e| problem("subject_ref", e))
}

/// `POST /console/housing`.
pub async fn find(State(ctx): State<Ctx>, viewer: Viewer, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    match subject_of_fields(&ctx, &values) {
        Ok(subject_ref) => see_other(&page_of(&subject_ref)),
        Err(p) => find_form(&ctx, &viewer, &values, &[p]).await,
    }
}


// ---------------------------------------------------------------- the survivor's page

/// `GET /console/housing/{subject_ref}`.
pub async fn survivor(State(ctx): State<Ctx>, viewer: Viewer, Path(subject_ref): Path<String>, Query(n): Query<Notice>) -> Response {
    survivor_page(&ctx, &viewer, &subject_ref, &n.done, &[], &Fields::default()).await
}

/// Everything the page shows of a survivor.
struct Casework {
    versions: Vec<Value>,
    routes: Vec<Value>,
    refuge: Vec<Value>,
    schemes: Vec<(Value, Vec<Value>)>,
    funding: Vec<Value>,
    flags: Vec<Value>,
}

async fn casework(ctx: &Ctx, subject_ref: &str) -> Result<Casework, PageError> {
    common::subject_of(ctx, None, Some(subject_ref))?;
    let mut schemes = Vec::new();
    for s in sanctuary::schemes(ctx, "subject_ref", subject_ref).await? {
        let flags = runtime::flags::flags(ctx, "property_ref", s["property_ref"].as_str().unwrap_or_default()).await?;
        schemes.push((s, flags));
    }
    Ok(Casework {
        versions: uaf::versions(ctx, subject_ref).await?,
        routes: options::routes_of(ctx, subject_ref).await?,
        refuge: options::refuge_referrals(ctx, subject_ref).await?,
        schemes,
        funding: funding::requests(ctx, "subject_ref", subject_ref).await?,
        flags: runtime::flags::flags(ctx, "subject_ref", subject_ref).await?,
    })
}

async fn survivor_page(ctx: &Ctx, viewer: &Viewer, subject_ref: &str, notice_code: &str, problems: &[(String, String)], values: &Fields) -> Response {
    let c = match casework(ctx, subject_ref).await {
        Ok(c) => c,
        Err(e) => return e.page(viewer),
    };
    let body = html! {
        (error_summary(problems))
        (notice(notice_code))
        span.caption { "Survivor " span.mono { (subject_ref) } }
        @if !c.flags.is_empty() {
            div.warning { span.icon aria-hidden="true" { "!" } span { "Flags on this person: " @for (i, f) in c.flags.iter().enumerate() { @if i > 0 { "; " } (f["meaning"].as_str().unwrap_or_default()) } } }
        }
        (assessment_section(subject_ref, &c.versions))
        (route_section(viewer, subject_ref, &c.routes, &c.refuge, problems, values))
        (sanctuary_section(viewer, subject_ref, &c.schemes, problems, values))
        (funding_section(viewer, subject_ref, &c.funding, problems, values))
    };
    let mut response = viewer.page("Housing casework", "/console/housing", body);
    if !problems.is_empty() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

fn assessment_section(subject_ref: &str, versions: &[Value]) -> Markup {
    html! {
        h2 { "Universal assessment" }
        @if let Some(latest) = versions.first() {
            (summary(&[
                ("Newest version", html! { (latest["version"]) " of " (when(latest["recorded_at_ms"].as_i64().unwrap_or_default())) " by " (latest["recorded_by"].as_str().unwrap_or_default()) }),
                ("Sections filled in", html! { (section_names(&latest["sections"])) }),
            ]))
            p {
                a href=(format!("/console/universal-assessments/{}", latest["id"].as_str().unwrap_or_default())) { "Read it, or carry it into a referral" }
                " · "
                a href=(format!("{}/uaf", page_of(subject_ref))) { "Update it (a new version)" }
            }
            @if versions.len() > 1 {
                details {
                    summary { "Earlier versions" }
                    ul { @for v in &versions[1..] {
                        li { a href=(format!("/console/universal-assessments/{}", v["id"].as_str().unwrap_or_default())) { "Version " (v["version"]) } ", " (when(v["recorded_at_ms"].as_i64().unwrap_or_default())) }
                    } }
                }
            }
        } @else {
            p { "No universal assessment yet. " a href=(format!("{}/uaf", page_of(subject_ref))) { "Fill in the universal assessment" } }
        }
    }
}

fn section_names(sections: &Value) -> String {
    let names: Vec<&str> = sections.as_array().into_iter().flatten().filter_map(Value::as_str).map(|s| uaf::SECTIONS.iter().find(|(n, _)| *n == s).map_or(s, |(_, label)| *label)).collect();
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

fn route_section(viewer: &Viewer, subject_ref: &str, routes: &[Value], refuge: &[Value], problems: &[(String, String)], values: &Fields) -> Markup {
    let route_options: Vec<(&str, &str)> = Route::ALL.iter().map(|r| (r.code(), r.label())).collect();
    let mut envelopes: Vec<(&str, String)> = vec![("", "None".to_owned())];
    envelopes.extend(refuge.iter().map(|r| (r["envelope_id"].as_str().unwrap_or_default(), format!("Sent to {} ({})", r["recipient"].as_str().unwrap_or_default(), r["status"].as_str().unwrap_or_default()))));
    let envelope_options: Vec<(&str, &str)> = envelopes.iter().map(|(v, l)| (*v, l.as_str())).collect();
    html! {
        h2 { "Housing route" }
        @if let Some(current) = routes.first() {
            p { "Chosen with the survivor: " strong { (current["label"].as_str().unwrap_or_default()) } ", " (when(current["chosen_at_ms"].as_i64().unwrap_or_default())) " by " (current["chosen_by"].as_str().unwrap_or_default()) "." }
            @if !current["note"].as_str().unwrap_or_default().is_empty() { p.inset { (current["note"].as_str().unwrap_or_default()) } }
        } @else {
            p { "No route recorded yet." }
        }
        h3 { "Refuge referrals sent" }
        @if refuge.is_empty() {
            p { "None. To ask the specialist service for a refuge place, open the universal assessment and choose “Refer to refuge”, so the assessment goes with the referral." }
        } @else {
            table {
                thead { tr { th scope="col" { "Sent" } th scope="col" { "To" } th scope="col" { "Status" } } }
                tbody { @for r in refuge {
                    tr {
                        td { a href=(format!("/console/sent/{}", r["envelope_id"].as_str().unwrap_or_default())) { (when(r["created_at_ms"].as_i64().unwrap_or_default())) } }
                        td { (r["recipient"].as_str().unwrap_or_default()) }
                        td { (tag(r["status"].as_str().unwrap_or_default())) }
                    }
                } }
            }
        }
        h3 { "Record the route chosen" }
        form method="post" action=(format!("{}/route", page_of(subject_ref))) novalidate {
            (viewer.csrf_field())
            (choices("route", "Which route did the survivor choose?", "Led by what the survivor wants.", &route_options, &[values.get("route")], false, problems))
            (select("route-envelope", "For refuge: the refuge referral it relies on", &envelope_options, values.get("route-envelope"), problems))
            (text_field("route-case_ref", "Case reference (optional)", "Like HSG-2026-0042: never a name", values.get("route-case_ref"), problems, true))
            (text_area("route-note", "Note (optional)", "Kept at this service, sealed.", values.get("route-note"), problems))
            button type="submit" { "Record route" }
        }
    }
}

fn sanctuary_section(viewer: &Viewer, subject_ref: &str, schemes: &[(Value, Vec<Value>)], problems: &[(String, String)], values: &Fields) -> Markup {
    let yes_no = [("no", "No"), ("yes", "Yes")];
    html! {
        h2 { "Sanctuary scheme" }
        p.hint { "Extra security so the survivor can stay at home: only with their agreement, only when the person causing harm no longer lives there, and where installing breaches no tenancy or property right." }
        @for (s, flags) in schemes {
            @let id = s["id"].as_str().unwrap_or_default();
            @let status = s["status"].as_str().unwrap_or_default();
            @let perpetrator_flag = flags.iter().any(|f| f["code"] == sanctuary::PERPETRATOR_FLAG);
            h3 { "Property " span.mono { (s["property_ref"].as_str().unwrap_or_default()) } " " (tag(status)) }
            (summary(&[
                ("Survivor agreed", html! { (when(s["survivor_agreed_at_ms"].as_i64().unwrap_or_default())) ", recorded by " (s["survivor_agreed_by"].as_str().unwrap_or_default()) }),
                ("Person causing harm lives there", html! { (if s["perpetrator_at_address"] == true { "Yes" } else { "No" }) }),
                ("Rights checked", html! { (if s["rights_checked"] == true { "Yes" } else { "Not yet" }) }),
                ("Measures", html! { (measure_names(&s["measures"])) }),
                ("Flags on the property", html! { @if flags.is_empty() { "none" } @else { @for (i, f) in flags.iter().enumerate() { @if i > 0 { "; " } (f["meaning"].as_str().unwrap_or_default()) } } }),
                ("Note", html! { (s["note"].as_str().unwrap_or_default()) }),
            ]))
            @if status == "refused" { p { "Refused: " (s["refused_reason"].as_str().unwrap_or_default()) } }
            @if status == "requested" || status == "surveyed" {
                details open[status == "requested"] {
                    summary { "Record the survey" }
                    form method="post" action=(format!("/console/sanctuary/{id}")) novalidate {
                        (viewer.csrf_field())
                        input type="hidden" name="action" value="survey";
                        input type="hidden" name="subject_ref" value=(subject_ref);
                        @let measures: Vec<(&str, &str)> = Measure::ALL.iter().map(|m| (m.code(), m.label())).collect();
                        (choices(&format!("s-{id}-measures"), "Measures recommended", "Choose every one that applies.", &measures, &values.all(&format!("s-{id}-measures")), true, problems))
                        (choices(&format!("s-{id}-perpetrator"), "Does the person causing harm live at the address now?", "", &yes_no, &[values.get(&format!("s-{id}-perpetrator"))], false, problems))
                        (choices(&format!("s-{id}-rights"), "Tenancy and property rights", "", &[("yes", "Installing breaches no tenancy or property right (permission obtained where it is needed)")], &[values.get(&format!("s-{id}-rights"))], true, problems))
                        (text_area(&format!("s-{id}-note"), "Survey note (optional)", "Kept at this service, sealed.", values.get(&format!("s-{id}-note")), problems))
                        button type="submit" { "Record survey" }
                    }
                }
            }
            @if status == "surveyed" {
                @if perpetrator_flag || s["perpetrator_at_address"] == true {
                    div.warning { span.icon aria-hidden="true" { "!" } span { "The person causing harm lives at this address, or a perpetrator-at-address flag is in force: the measures cannot be installed until that is reviewed and cleared." } }
                }
                form method="post" action=(format!("/console/sanctuary/{id}")) novalidate {
                    (viewer.csrf_field())
                    input type="hidden" name="action" value="install";
                    input type="hidden" name="subject_ref" value=(subject_ref);
                    (text_field(&format!("s-{id}-review_on"), "Review the property's sanctuary flag by (optional)", "YYYY-MM-DD; in six months if left empty", values.get(&format!("s-{id}-review_on")), problems, true))
                    button type="submit" { "Record measures installed" }
                }
            }
            @if status == "requested" || status == "surveyed" {
                details {
                    summary { "Refuse the scheme" }
                    form method="post" action=(format!("/console/sanctuary/{id}")) novalidate {
                        (viewer.csrf_field())
                        input type="hidden" name="action" value="refuse";
                        input type="hidden" name="subject_ref" value=(subject_ref);
                        (text_area(&format!("s-{id}-reason"), "Why is it refused?", "Kept at this service, sealed.", values.get(&format!("s-{id}-reason")), problems))
                        button.secondary type="submit" { "Refuse scheme" }
                    }
                }
            }
        }
        h3 { "Request a sanctuary scheme" }
        form method="post" action=(format!("{}/sanctuary", page_of(subject_ref))) novalidate {
            (viewer.csrf_field())
            (text_field("sanctuary-property_ref", "Property reference", "The landlord's reference, like PROP-1042: never the address", values.get("sanctuary-property_ref"), problems, true))
            (choices("sanctuary-agreed", "The survivor's agreement", "", &[("yes", "The survivor agrees to a sanctuary scheme")], &[values.get("sanctuary-agreed")], true, problems))
            (choices("sanctuary-perpetrator", "Does the person causing harm live at the address now?", "The scheme can be requested now, but is installed only when he no longer lives there.", &yes_no, &[values.get("sanctuary-perpetrator")], false, problems))
            (text_field("sanctuary-case_ref", "Case reference (optional)", "", values.get("sanctuary-case_ref"), problems, true))
            (text_area("sanctuary-note", "Note (optional)", "Kept at this service, sealed.", values.get("sanctuary-note"), problems))
            button type="submit" { "Request scheme" }
        }
    }
}

fn measure_names(measures: &Value) -> String {
    let names: Vec<&str> = measures.as_array().into_iter().flatten().filter_map(Value::as_str).map(|m| Measure::parse(m).map_or(m, |x| x.label())).collect();
    if names.is_empty() { "none yet".into() } else { names.join(", ") }
}

fn funding_section(viewer: &Viewer, subject_ref: &str, requests: &[Value], problems: &[(String, String)], values: &Fields) -> Markup {
    let manager = viewer.staff.roles.contains(&runtime::auth::Role::TeamManager);
    let purposes: Vec<(&str, &str)> = std::iter::once(("", "Choose a purpose")).chain(Purpose::ALL.iter().map(|p| (p.code(), p.label()))).collect();
    html! {
        h2 { "Flexible funding" }
        @for f in requests {
            @let id = f["id"].as_str().unwrap_or_default();
            @let status = f["status"].as_str().unwrap_or_default();
            @let amount = f["amount_pence"].as_i64().unwrap_or_default();
            @let left = f["left_pence"].as_i64().unwrap_or_default();
            h3 { (Purpose::parse(f["purpose"].as_str().unwrap_or_default()).map_or("", Purpose::label)) ", " (common::pounds(amount)) " " (tag(status)) }
            (summary(&[
                ("Requested", html! { (when(f["requested_at_ms"].as_i64().unwrap_or_default())) " by " (f["requested_by"].as_str().unwrap_or_default()) }),
                ("Decided", html! { @if f["decided_by"].as_str().unwrap_or_default().is_empty() { "Not yet" } @else { (when(f["decided_at_ms"].as_i64().unwrap_or_default())) " by " (f["decided_by"].as_str().unwrap_or_default()) } }),
                ("Spent", html! { (common::pounds(f["spent_pence"].as_i64().unwrap_or_default())) " (" (common::pounds(left)) " left)" }),
                ("Note", html! { (f["note"].as_str().unwrap_or_default()) }),
                ("Reason for the decision", html! { (f["decision_reason"].as_str().unwrap_or_default()) }),
            ]))
            @if status == "requested" {
                @if !manager {
                    p { "Awaiting a team manager's decision." }
                } @else if f["requested_by"].as_str() == Some(viewer.staff.id.as_str()) {
                    p { "You made this request: another team manager decides it." }
                } @else {
                    form method="post" action=(format!("/console/funding/{id}/decision")) novalidate {
                        (viewer.csrf_field())
                        input type="hidden" name="subject_ref" value=(subject_ref);
                        (choices(&format!("f-{id}-decision"), "Your decision", "", &[("approved", "Approve"), ("declined", "Decline")], &[values.get(&format!("f-{id}-decision"))], false, problems))
                        (text_area(&format!("f-{id}-reason"), "Reason (needed to decline)", "Kept at this service, sealed.", values.get(&format!("f-{id}-reason")), problems))
                        button type="submit" { "Record decision" }
                    }
                }
            }
            @if status == "approved" && left > 0 {
                form method="post" action=(format!("/console/funding/{id}/spend")) novalidate {
                    (viewer.csrf_field())
                    input type="hidden" name="subject_ref" value=(subject_ref);
                    (text_field(&format!("f-{id}-amount"), "Amount spent", &format!("In pounds, at most {}", common::pounds(left)), values.get(&format!("f-{id}-amount")), problems, true))
                    (text_field(&format!("f-{id}-note"), "What it paid for (optional)", "Kept at this service, sealed.", values.get(&format!("f-{id}-note")), problems, false))
                    button.secondary type="submit" { "Record spend" }
                }
            }
        }
        h3 { "Request flexible funding" }
        form method="post" action=(format!("{}/funding", page_of(subject_ref))) novalidate {
            (viewer.csrf_field())
            (select("funding-purpose", "What is it for?", &purposes, values.get("funding-purpose"), problems))
            (text_field("funding-amount", "Amount", "In pounds, for example 450 or 450.00", values.get("funding-amount"), problems, true))
            (text_field("funding-case_ref", "Case reference (optional)", "", values.get("funding-case_ref"), problems, true))
            (text_area("funding-note", "Note", "Needed when the purpose is other. Kept at this service, sealed.", values.get("funding-note"), problems))
            button type="submit" { "Request funding" }
        }
    }
}

// ---------------------------------------------------------------- the forms

/// The answer to a form of the survivor's page: back to it with a notice, or the page again
/// with the problem beside the field.
async fn answer(ctx: &Ctx, viewer: &Viewer, subject_ref: &str, result: Result<&str, (String, String)>, values: &Fields) -> Response {
    match result {
        Ok(code) => see_other(&format!("{}?done={code}", page_of(subject_ref))),
        Err(p) => survivor_page(ctx, viewer, subject_ref, "", &[p], values).await,
    }
}

/// `POST /console/housing/{subject_ref}/route`.
pub async fn choose_route(State(ctx): State<Ctx>, viewer: Viewer, Path(subject_ref): Path<String>, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let input = options::RouteInput {
        case_ref: values.get("route-case_ref").trim().to_owned(),
        subject: None,
        subject_ref: Some(subject_ref.clone()),
        route: values.get("route").to_owned(),
        envelope_id: values.get("route-envelope").to_owned(),
        note: values.get("route-note").to_owned(),
    };
    let result = if input.route.is_empty() {
        Err(("route".to_owned(), "Choose the route the survivor chose".to_owned()))
    } else {
        options::choose(&ctx, &viewer.staff, &input).await.map(|_| "route").map_err(|e| problem(if input.envelope_id.is_empty() { "route" } else { "route-envelope" }, e))
    };
    answer(&ctx, &viewer, &subject_ref, result, &values).await
}

/// `POST /console/housing/{subject_ref}/sanctuary`.
pub async fn request_sanctuary(State(ctx): State<Ctx>, viewer: Viewer, Path(subject_ref): Path<String>, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let result = async {
        if values.get("sanctuary-agreed") != "yes" {
            return Err(("sanctuary-agreed".to_owned(), "A sanctuary scheme is requested only with the survivor's agreement: confirm it".to_owned()));
        }
        let perpetrator = match values.get("sanctuary-perpetrator") {
            "yes" => true,
            "no" => false,
            _ => return Err(("sanctuary-perpetrator".to_owned(), "Say whether the person causing harm lives at the address now".to_owned())),
        };
        let input = sanctuary::RequestInput {
            case_ref: values.get("sanctuary-case_ref").trim().to_owned(),
            subject: None,
            subject_ref: Some(subject_ref.clone()),
            property_ref: values.get("sanctuary-property_ref").trim().to_owned(),
            survivor_agreed: true,
            perpetrator_at_address: perpetrator,
            note: values.get("sanctuary-note").to_owned(),
        };
        sanctuary::request(&ctx, &viewer.staff, &input).await.map(|_| "sanctuary").map_err(|e| problem("sanctuary-property_ref", e))
    }
    .await;
    answer(&ctx, &viewer, &subject_ref, result, &values).await
}

/// `POST /console/sanctuary/{id}`: `action` survey, install or refuse.
pub async fn sanctuary_step(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let subject_ref = values.get("subject_ref").to_owned();
    if common::subject_of(&ctx, None, Some(&subject_ref)).is_err() {
        return PageError { status: StatusCode::BAD_REQUEST, detail: "The form did not say whose scheme this is: go back and reload the page.".into() }.page(&viewer);
    }
    let field = |name: &str| format!("s-{id}-{name}");
    let staff = &viewer.staff;
    let result = match values.get("action") {
        "survey" => {
            let perpetrator = match values.get(&field("perpetrator")) {
                "yes" => Ok(true),
                "no" => Ok(false),
                _ => Err((field("perpetrator"), "Say whether the person causing harm lives at the address now".to_owned())),
            };
            match perpetrator {
                Ok(perpetrator_at_address) => {
                    let input = sanctuary::SurveyInput {
                        measures: values.all(&field("measures")).into_iter().map(str::to_owned).collect(),
                        perpetrator_at_address,
                        rights_checked: values.get(&field("rights")) == "yes",
                        note: values.get(&field("note")).to_owned(),
                    };
                    sanctuary::survey(&ctx, staff, &id, &input).await.map(|_| "surveyed").map_err(|e| problem(&field("measures"), e))
                }
                Err(p) => Err(p),
            }
        }
        "install" => {
            let review_on = Some(values.get(&field("review_on")).trim().to_owned()).filter(|d| !d.is_empty());
            sanctuary::install(&ctx, staff, &id, &sanctuary::InstallInput { review_on }).await.map(|_| "installed").map_err(|e| problem(&field("review_on"), e))
        }
        "refuse" => {
            let input = sanctuary::RefuseInput { reason: values.get(&field("reason")).to_owned() };
            sanctuary::refuse(&ctx, staff, &id, &input).await.map(|_| "refused").map_err(|e| problem(&field("reason"), e))
        }
        _ => Err((String::new(), "Choose what to do with the scheme".to_owned())),
    };
    answer(&ctx, &viewer, &subject_ref, result, &values).await
}

/// `POST /console/housing/{subject_ref}/funding`.
pub async fn request_funding(State(ctx): State<Ctx>, viewer: Viewer, Path(subject_ref): Path<String>, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let result = async {
        if values.get("funding-purpose").is_empty() {
            return Err(("funding-purpose".to_owned(), "Choose what the funding is for".to_owned()));
        }
        let Some(pence) = parse_pounds(values.get("funding-amount")) else {
            return Err(("funding-amount".to_owned(), "Enter the amount in pounds, like 450 or 450.00".to_owned()));
        };
        let input = funding::RequestInput {
            case_ref: values.get("funding-case_ref").trim().to_owned(),
            subject: None,
            subject_ref: Some(subject_ref.clone()),
            purpose: values.get("funding-purpose").to_owned(),
            amount_pence: pence,
            note: values.get("funding-note").to_owned(),
        };
        funding::request(&ctx, &viewer.staff, &input).await.map(|_| "funding").map_err(|e| problem("funding-amount", e))
    }
    .await;
    answer(&ctx, &viewer, &subject_ref, result, &values).await
}

/// `POST /console/funding/{id}/decision`.
pub async fn decide_funding(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let subject_ref = values.get("subject_ref").to_owned();
    let decision = values.get(&format!("f-{id}-decision")).to_owned();
    let result = if decision.is_empty() {
        Err((format!("f-{id}-decision"), "Choose approve or decline".to_owned()))
    } else {
        let input = funding::DecisionInput { decision, reason: values.get(&format!("f-{id}-reason")).to_owned() };
        funding::decide(&ctx, &viewer.staff, &id, &input).await.map(|_| "decided").map_err(|e| problem(&format!("f-{id}-decision"), e))
    };
    answer(&ctx, &viewer, &subject_ref, result, &values).await
}

/// `POST /console/funding/{id}/spend`.
pub async fn spend(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(fields): Posted) -> Response {
    let values = Fields(fields);
    let subject_ref = values.get("subject_ref").to_owned();
    let amount = format!("f-{id}-amount");
    let result = match parse_pounds(values.get(&amount)) {
        None => Err((amount.clone(), "Enter the amount spent in pounds, like 120 or 120.50".to_owned())),
        Some(pence) => {
            let input = funding::SpendInput { amount_pence: pence, note: values.get(&format!("f-{id}-note")).to_owned() };
            funding::spend(&ctx, &viewer.staff, &id, &input).await.map(|_| "spent").map_err(|e| problem(&amount, e))
        }
    };
    answer(&ctx, &viewer, &subject_ref, result, &values).await
}
