//! The IG lead's console at the audit service: ledger search (every filter of `hub audit
//! query`), one entry with its signed facts and inclusion proof, the period report with its
//! charts and CSV, the ledger's verification and alerts, subject access, who opened a
//! referral, and the policy simulator (`hub policy explain` as a form).

use axum::{
    Form, Router,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use isp::{kind, policy};
use runtime::{
    auth::{Allow, Role, Rule, content, logged},
    console::{Nav, PageError, Viewer, bar_chart, categories, error_summary, html, summary, tag, when},
};
use serde::Deserialize;

use crate::{Ctx, checkpoints, ledger, query, report, verify};

const IG: &[Role] = &[Role::IgLead, Role::Auditor];

/// How many entries a search shows; `hub audit query` and `GET /ledger` page through all.
const SHOWN: i64 = 200;

/// The pages' rules. Reading the ledger is recorded in the service's own log (as `GET
/// /ledger` is); a report, a subject access search and the access log show content, so they
/// go to the ledger too.
pub const RULES: &[Rule] = &[
    logged("GET", "/console", Allow::Roles(IG)),
    logged("GET", "/console/ledger", Allow::Roles(IG)),
    logged("GET", "/console/ledger/{seq}", Allow::Roles(IG)),
    content("GET", "/console/report", Allow::Roles(IG)),
    content("GET", "/console/report.csv", Allow::Roles(IG)),
    logged("GET", "/console/subject-access", Allow::Roles(&[Role::IgLead])),
    content("POST", "/console/subject-access", Allow::Roles(&[Role::IgLead])),
    content("POST", "/console/subject-access.json", Allow::Roles(&[Role::IgLead])),
    content("GET", "/console/access-log", Allow::Roles(IG)),
    logged("GET", "/console/policy", Allow::Roles(IG)),
    logged("POST", "/console/policy", Allow::Roles(IG)),
];

pub fn nav() -> Vec<Nav> {
    vec![
        Nav { href: "/console", label: "Overview" },
        Nav { href: "/console/ledger", label: "Ledger" },
        Nav { href: "/console/report", label: "Report" },
        Nav { href: "/console/access-log", label: "Access log" },
        Nav { href: "/console/subject-access", label: "Subject access" },
        Nav { href: "/console/policy", label: "Policy simulator" },
    ]
}

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/console", get(overview))
        .route("/console/ledger", get(search))
        .route("/console/ledger/{seq}", get(entry))
        .route("/console/report", get(period))
        .route("/console/report.csv", get(period_csv))
        .route("/console/subject-access", get(subject_access).post(subject_access_search))
        .route("/console/subject-access.json", axum::routing::post(subject_access_download))
        .route("/console/access-log", get(access_log))
        .route("/console/policy", get(simulator).post(simulator_draft))
}

fn failed(viewer: &Viewer, e: anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "a console page failed");
    PageError { status: StatusCode::INTERNAL_SERVER_ERROR, detail: "The page could not be made; see the service's log.".into() }.page(viewer)
}

fn bad(viewer: &Viewer, detail: String) -> Response {
    PageError { status: StatusCode::BAD_REQUEST, detail }.page(viewer)
}

// ---------------------------------------------------------------- overview

async fn overview(State(ctx): State<Ctx>, viewer: Viewer) -> Response {
    let verified = match verify::verify(&ctx.store, Some(&ctx.directory.load_full())).await {
        Ok(v) => v,
        Err(e) => return failed(&viewer, e),
    };
    let latest = checkpoints::latest(&ctx.pool).await.ok().flatten();
    let body = html! {
        div.cards {
            div.card.alert[!verified.ok()] {
                span.caption { "Ledger" }
                span.figure { (verified.entries) }
                @if verified.ok() { (tag("verified")) " every entry, link and checkpoint" } @else { (tag("failed")) " verification" }
            }
            div.card { span.caption { "Signed checkpoints" } span.figure { (verified.checkpoints) } }
            div.card.alert[!verified.alerts.is_empty()] { span.caption { "Alerts" } span.figure { (verified.alerts.len()) } }
        }
        @if let Some(problem) = &verified.first_bad {
            div.refused role="alert" {
                h2 { "The ledger does not verify" }
                p { "At entry " (problem.seq) @if let Some(size) = problem.checkpoint { " (checkpoint of " (size) " entries)" } ": " (problem.what) }
            }
        }
        @if !verified.alerts.is_empty() {
            h2 { "Alerts" }
            table {
                thead { tr { th scope="col" { "Entry" } th scope="col" { "What" } th scope="col" { "Recorded" } } }
                tbody { @for a in &verified.alerts { tr { td { a href=(format!("/console/ledger/{}", a.seq)) { (a.seq) } } td { (a.what) } td { (when(a.recorded_at_ms)) } } } }
            }
        }
        h2 { "Latest checkpoint" }
        @match &latest {
            Some(c) => {
                (summary(&[
                    ("Entries covered", html! { (c.tree_size) }),
                    ("Root", html! { span.mono { (c.root) } }),
                    ("Signed", html! { (when(c.at_ms)) " by " (c.signer) " (" span.mono { (c.key_id) } ")" }),
                    ("Witnessed by", html! { (c.note.lines().filter(|l| l.starts_with('\u{2014}')).count().saturating_sub(1)) " agencies' cosignatures" }),
                ]))
            }
            None => p { "No checkpoint has been signed yet." },
        }
    };
    viewer.page("Information governance", "/console", body)
}

// ---------------------------------------------------------------- ledger search

/// The search form's fields: [`query::Filter`]'s, as text (an empty field is no filter).
#[derive(Debug, Default, Deserialize)]
struct Search {
    #[serde(default)]
    subject_ref: String,
    #[serde(default)]
    agency: String,
    #[serde(default)]
    sender: String,
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    entry_type: String,
    #[serde(default)]
    lawful_basis: String,
    #[serde(default)]
    consent_state: String,
    #[serde(default)]
    without_consent: String,
    #[serde(default)]
    staff_id: String,
    #[serde(default)]
    envelope_id: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

impl Search {
    fn filter(&self) -> Result<query::Filter, ledger::UnknownEntryType> {
        let some = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        Ok(query::Filter {
            subject_ref: some(&self.subject_ref),
            agency: some(&self.agency),
            sender: some(&self.sender),
            recipient: some(&self.recipient),
            kind: some(&self.kind),
            entry_type: some(&self.entry_type).map(|t| t.parse()).transpose()?,
            lawful_basis: some(&self.lawful_basis),
            consent_state: some(&self.consent_state),
            without_consent: match self.without_consent.as_str() {
                "yes" => Some(true),
                "no" => Some(false),
                _ => None,
            },
            staff_id: some(&self.staff_id),
            envelope_id: some(&self.envelope_id),
            since: some(&self.since),
            until: some(&self.until),
            after: None,
            limit: Some(SHOWN),
        })
    }
}


async fn search(State(ctx): State<Ctx>, viewer: Viewer, Query(s): Query<Search>) -> Response {
    let searched = match s.filter() {
        Ok(f) => f,
        Err(e) => return bad(&viewer, format!("The search could not run: {e}")),
    };
    let entries = match query::run(&ctx.pool, &searched).await {
        Ok(e) => e,
        Err(e) => return bad(&viewer, format!("The search could not run: {}", runtime::api::redact_quoted(&format!("{e:#}")))),
    };
    let directory = ctx.directory.load_full();
    let text = |id: &str, label: &str, value: &str, hint: &str| {
        html! {
            div.field {
                label for=(id) { (label) }
                @if !hint.is_empty() { span.hint id=(format!("{id}-hint")) { (hint) } }
                input type="text" id=(id) name=(id) value=(value) aria-describedby=[(!hint.is_empty()).then(|| format!("{id}-hint"))];
            }
        }
    };
    let agencies = |id: &str, label: &str, value: &str| {
        html! {
            div.field {
                label for=(id) { (label) }
                select id=(id) name=(id) {
                    option value="" { "Any" }
                    @for a in &directory.agencies { option value=(a.id) selected[value == a.id] { (a.name) } }
                }
            }
        }
    };
    let body = html! {
        form method="get" action="/console/ledger" {
            div.cards {
                div {
                    (text("envelope_id", "Envelope id", &s.envelope_id, "One disclosure, its receipts and every opening of it"))
                    (text("subject_ref", "Subject reference", &s.subject_ref, "Pseudonymous; for a person by name use subject access"))
                    (text("staff_id", "Staff id", &s.staff_id, ""))
                    (text("since", "From (YYYY-MM-DD)", &s.since, ""))
                    (text("until", "To (YYYY-MM-DD)", &s.until, ""))
                }
                div {
                    (agencies("agency", "Agency (sender or recipient)", &s.agency))
                    (agencies("sender", "Sender", &s.sender))
                    (agencies("recipient", "Recipient", &s.recipient))
                    div.field {
                        label for="kind" { "Kind" }
                        select #kind name="kind" { option value="" { "Any" } @for k in kind::ALL { option value=(kind::name(k)) selected[s.kind == kind::name(k)] { (kind::name(k)) } } }
                    }
                }
                div {
                    div.field {
                        label for="entry_type" { "Entry type" }
                        select #entry_type name="entry_type" { option value="" { "Any" } @for t in ledger::EntryType::ALL.map(ledger::EntryType::as_str) { option value=(t) selected[s.entry_type == t] { (t.replace('_', " ")) } } }
                    }
                    (text("lawful_basis", "Lawful basis", &s.lawful_basis, ""))
                    div.field {
                        label for="consent_state" { "Consent" }
                        select #consent_state name="consent_state" { option value="" { "Any" } @for c in ["given", "refused", "not-sought", "withdrawn", "expired"] { option value=(c) selected[s.consent_state == c] { (c) } } }
                    }
                    div.field {
                        label for="without_consent" { "Shared without consent" }
                        select #without_consent name="without_consent" { option value="" { "Either" } option value="yes" selected[s.without_consent == "yes"] { "Yes" } option value="no" selected[s.without_consent == "no"] { "No" } }
                    }
                }
            }
            button type="submit" { "Search" }
        }
        h2 { (entries.len()) @if entries.len() as i64 == SHOWN { "+" } " entries" }
        @if entries.len() as i64 == SHOWN { p.hint { "The first " (SHOWN) " are shown: narrow the search, or use hub audit query for all of them." } }
        table {
            thead { tr { th scope="col" { "Entry" } th scope="col" { "Type" } th scope="col" { "When" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Kind" } th scope="col" { "Rule or reason" } } }
            tbody {
                @for e in &entries {
                    tr {
                        td { a href=(format!("/console/ledger/{}", e.seq)) { (e.seq) } }
                        td { (tag(e.entry_type.as_str())) }
                        td { (when(e.occurred_at_ms)) }
                        td { (e.sender) @if !e.staff_id.is_empty() { " (" (e.staff_id) ")" } }
                        td { (e.recipient) }
                        td { (e.kind) }
                        td.mono { @if e.reason.is_empty() { (e.rule) } @else { (e.reason) } }
                    }
                }
            }
        }
    };
    viewer.page("Ledger", "/console/ledger", body)
}

async fn entry(State(ctx): State<Ctx>, viewer: Viewer, Path(seq): Path<i64>) -> Response {
    let found = query::run(&ctx.pool, &query::Filter { after: Some(seq - 1), limit: Some(1), ..Default::default() }).await;
    let entry = match found {
        Ok(mut e) if e.first().is_some_and(|e| e.seq == seq) => e.remove(0),
        Ok(_) => return PageError::not_found("ledger entry").page(&viewer),
        Err(e) => return failed(&viewer, e),
    };
    let proof = checkpoints::prove_entry(&ctx.pool, seq).await;
    let list = |s: &str| s.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect::<Vec<_>>();
    let e = &entry;
    let body = html! {
        span.caption { "Entry " (e.seq) " of the ledger" }
        (summary(&[
            ("Type", tag(e.entry_type.as_str())),
            ("Occurred", when(e.occurred_at_ms)),
            ("Recorded", when(e.recorded_at_ms)),
            ("Signature", if e.verified { tag("verified") } else { tag("unverifiable") }),
            ("Envelope or event", html! { span.mono { (e.entry_id) } }),
            ("Sender", html! { (e.sender) @if !e.staff_id.is_empty() { " – staff " (e.staff_id) } }),
            ("Recipient", html! { (e.recipient) }),
            ("Kind", html! { (e.kind) }),
            ("Purpose", html! { (e.purpose) }),
            ("Lawful basis", html! { (e.lawful_basis) }),
            ("Consent", html! { (e.consent_state) @if !e.consent_id.is_empty() { " – record " span.mono { (e.consent_id) } } @if e.without_consent { " " (tag("without consent")) } }),
            ("Risk", html! { (e.risk) }),
            ("Subject reference", html! { span.mono { (e.subject_ref) } }),
            ("Case reference", html! { span.mono { (e.case_ref) } }),
            ("Categories", categories(&list(&e.categories))),
            ("Refused categories", categories(&list(&e.forbidden))),
            ("Rule", html! { span.mono { (e.rule) } " (policy " (e.policy_version) ")" }),
            ("Reason", html! { (e.reason) }),
            ("In reply to", html! { span.mono { (e.in_reply_to) } }),
        ]))
        p { a href=(format!("/console/access-log?envelope_id={}", e.entry_id)) { "Who opened it" } " · " a href=(format!("/console/ledger?envelope_id={}", e.entry_id)) { "Every entry about it" } }
        h2 { "Inclusion proof" }
        @match &proof {
            Ok(p) => {
                p { "Leaf " (p.leaf_index) " of the tree of " (p.tree_size) " entries that checkpoint " (p.checkpoint.tree_size) " (signed " (when(p.checkpoint.at_ms)) ") commits to. Check it offline with " span.mono { "hub audit verify-proof" } "." }
                @match crate::checkpoints::verify_proof(p, &ctx.directory.load()) {
                    Ok(()) => p { (tag("verified")) " The path leads from this entry to the checkpoint's signed root." },
                    Err(why) => p { (tag("failed")) " " (why) },
                }
                h3 { "Audit path, leaf to root" }
                pre.proof { @for h in &p.path { (h) "\n" } }
            }
            Err(_) => p { "No signed checkpoint covers this entry yet; the next one will (they are made every few seconds)." },
        }
    };
    viewer.page("Ledger entry", "/console/ledger", body)
}

// ---------------------------------------------------------------- report

#[derive(Debug, Default, Deserialize)]
struct Period {
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

impl Period {
    /// The month so far when no period is named.
    fn or_this_month(self) -> (String, String) {
        let today = time::OffsetDateTime::now_utc().date();
        let first = today.replace_day(1).unwrap_or(today);
        let day = |d: time::Date| d.format(time::macros::format_description!("[year]-[month]-[day]")).unwrap_or_default();
        (if self.since.is_empty() { day(first) } else { self.since }, if self.until.is_empty() { day(today) } else { self.until })
    }
}

async fn period(State(ctx): State<Ctx>, viewer: Viewer, Query(p): Query<Period>) -> Response {
    let (since, until) = p.or_this_month();
    let r = match report::build(&ctx.pool, &since, &until, 48.0, isp::now_ms()).await {
        Ok(r) => r,
        Err(e) => return bad(&viewer, format!("The report could not be made: {}", runtime::api::redact_quoted(&format!("{e:#}")))),
    };
    let flows: Vec<(String, i64)> = r.flows.iter().map(|(s, t, k, n)| (format!("{s} → {t} ({})", k.split_once('.').map(|(_, k)| k).unwrap_or(k)), *n as i64)).collect();
    let consent = vec![("With consent".to_owned(), r.with_consent as i64), ("Without consent".to_owned(), r.without_consent as i64)];
    let near: Vec<(String, i64)> = r.near_misses_by_rule.iter().map(|(k, v)| (k.clone(), *v as i64)).collect();
    let refused: Vec<(String, i64)> = r.refused_on_receipt.iter().map(|(k, v)| (k.clone(), *v as i64)).collect();
    let csv = format!("/console/report.csv?since={since}&until={until}");
    let body = html! {
        form method="get" action="/console/report" {
            div.button-group {
                div.field { label for="since" { "From (YYYY-MM-DD)" } input.short #since type="text" name="since" value=(since); }
                div.field { label for="until" { "To (YYYY-MM-DD)" } input.short #until type="text" name="until" value=(until); }
                button.secondary type="submit" { "Show" }
            }
        }
        p { a.button href=(csv) download { "Download this report (CSV)" } }
        (summary(&[
            ("Entries in the period", html! { (r.entries) }),
            ("Disclosures", html! { (r.with_consent + r.without_consent) }),
            ("Near misses", html! { (near.iter().map(|(_, n)| n).sum::<i64>()) }),
            ("Referrals not acknowledged in time", html! { (r.outstanding.len()) " (within " (r.sla_hours) " hours)" }),
            ("Records possibly missing", html! { (r.missing_from_stream) " stream positions, " (r.stream_resets) " stream resets" }),
        ]))
        (bar_chart("Disclosures by sender, recipient and kind", &flows, &|_| false))
        (bar_chart("Disclosures with and without consent", &consent, &|l| l.starts_with("Without")))
        @if near.is_empty() { h2 { "Near misses by rule" } p { "None in the period." } } @else { (bar_chart("Near misses: sends the protocol refused, by rule", &near, &|_| true)) }
        @if refused.is_empty() { h2 { "Refused on receipt" } p { "None in the period." } } @else { (bar_chart("Envelopes refused by their recipient, by reason", &refused, &|_| true)) }
        h2 { "Acknowledgement times" }
        p.hint { "From each referral to the first acknowledgement by a member of the recipient's staff (accepted, declined or closed). The receipts a service sends by itself (delivered, opened) do not count." }
        table {
            thead { tr { th scope="col" { "Recipient" } th.number scope="col" { "Acknowledged" } th.number scope="col" { "Median hours" } th.number scope="col" { "Slowest hours" } } }
            tbody { @for (who, (n, median, slowest)) in &r.acknowledgement { tr { td { (who) } td.number { (n) } td.number { (format!("{median:.1}")) } td.number { (format!("{slowest:.1}")) } } } }
        }
        h2 { "Deadlines missed" }
        @if r.deadlines_missed.is_empty() { p { "None in the period." } } @else {
            table {
                thead { tr { th scope="col" { "Agency" } th scope="col" { "Deadline" } th.number scope="col" { "Missed" } } }
                tbody { @for (agency, code, n) in &r.deadlines_missed { tr { td { (agency) } td { (code.replace('_', " ")) } td.number { (n) } } } }
            }
        }
    };
    viewer.page("Period report", "/console/report", body)
}

async fn period_csv(State(ctx): State<Ctx>, viewer: Viewer, Query(p): Query<Period>) -> Response {
    let (since, until) = p.or_this_month();
    let csv = match report::build(&ctx.pool, &since, &until, 48.0, isp::now_ms()).await.and_then(|r| report::to_csv(&r)) {
        Ok(csv) => csv,
        Err(e) => return bad(&viewer, format!("The report could not be made: {}", runtime::api::redact_quoted(&format!("{e:#}")))),
    };
    let mut response = csv.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    // The period is two dates of the grammar checked by the report; anything else failed above.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"hub-report-{since}-{until}.csv\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

// ---------------------------------------------------------------- access log

#[derive(Debug, Default, Deserialize)]
struct Opened {
    #[serde(default)]
    envelope_id: String,
    #[serde(default)]
    staff_id: String,
}

/// Who opened what, across the partnership: the `accessed` entries every service signs into
/// the ledger (a referral read, a refused page, a failed login of a known account).
async fn access_log(State(ctx): State<Ctx>, viewer: Viewer, Query(o): Query<Opened>) -> Response {
    let filter = query::Filter {
        entry_type: Some(ledger::EntryType::Accessed),
        envelope_id: Some(o.envelope_id.trim().to_owned()).filter(|s| !s.is_empty()),
        staff_id: Some(o.staff_id.trim().to_owned()).filter(|s| !s.is_empty()),
        limit: Some(SHOWN),
        ..Default::default()
    };
    let entries = match query::newest(&ctx.pool, &filter).await {
        Ok(e) => e,
        Err(e) => return bad(&viewer, format!("The search could not run: {}", runtime::api::redact_quoted(&format!("{e:#}")))),
    };
    let body = html! {
        p { "Every opening of a referral, and every refused or failed attempt, as each service signed it into the ledger. Newest first." }
        form method="get" action="/console/access-log" {
            div.button-group {
                div.field { label for="envelope_id" { "Referral (envelope id)" } input #envelope_id type="search" name="envelope_id" value=(o.envelope_id); }
                div.field { label for="staff_id" { "Staff id" } input.short #staff_id type="search" name="staff_id" value=(o.staff_id); }
                button.secondary type="submit" { "Filter" }
            }
        }
        @if entries.is_empty() { p { "No access is recorded for this search." } } @else {
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Agency" } th scope="col" { "Staff" } th scope="col" { "What" } th scope="col" { "Item" } th scope="col" { "Outcome" } } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { a href=(format!("/console/ledger/{}", e.seq)) { (when(e.occurred_at_ms)) } }
                            td { (e.sender) }
                            td { (e.staff_id) }
                            td.mono { (e.rule) }
                            td.mono { (e.in_reply_to) }
                            td { (tag(&e.reason)) }
                        }
                    }
                }
            }
        }
    };
    viewer.page("Access log", "/console/access-log", body)
}

// ---------------------------------------------------------------- subject access

async fn subject_access(viewer: Viewer) -> Response {
    subject_access_page(&viewer, None, &[])
}

fn subject_access_page(viewer: &Viewer, found: Option<(&crate::subject_access::Bundle, &Person)>, problems: &[(String, String)]) -> Response {
    let body = html! {
        (error_summary(problems))
        p { "Everything the ledger holds about one person, under the partnership's pseudonymous reference for them and the link tokens that stood for them, with a proof for each entry. The name and date of birth go in this form only, never into a web address or a log." }
        form method="post" action="/console/subject-access" novalidate {
            (viewer.csrf_field())
            div.field { label for="full_name" { "Full name" } input #full_name type="text" name="full_name" autocomplete="off"; }
            div.field { label for="date_of_birth" { "Date of birth" } span.hint #dob-hint { "For example, 1990-01-31" } input.short #date_of_birth type="text" name="date_of_birth" aria-describedby="dob-hint" autocomplete="off"; }
            button type="submit" { "Search the ledger" }
        }
        @if let Some((bundle, person)) = found {
            h2 { (bundle.entries.len()) " entries" }
            p { (bundle.summary) }
            table {
                thead { tr { th scope="col" { "Entry" } th scope="col" { "Type" } th scope="col" { "When" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Kind" } } }
                tbody {
                    @for p in &bundle.entries {
                        tr { td { a href=(format!("/console/ledger/{}", p.entry.seq)) { (p.entry.seq) } } td { (tag(p.entry.entry_type.as_str())) } td { (when(p.entry.occurred_at_ms)) } td { (p.entry.sender) } td { (p.entry.recipient) } td { (p.entry.kind) } }
                    }
                }
            }
            h3 { "The bundle, for the response to the request" }
            p { "One JSON file: every entry with its inclusion proof and the signed checkpoint they lead to, checkable offline with " span.mono { "hub audit verify-proof" } "." }
            form method="post" action="/console/subject-access.json" {
                (viewer.csrf_field())
                input type="hidden" name="full_name" value=(person.full_name.trim());
                input type="hidden" name="date_of_birth" value=(person.date_of_birth.trim());
                button.secondary type="submit" { "Download the bundle (JSON)" }
            }
        }
    };
    viewer.page("Subject access", "/console/subject-access", body)
}

#[derive(Deserialize)]
struct Person {
    #[serde(default)]
    full_name: String,
    #[serde(default)]
    date_of_birth: String,
}

/// The bundle of the person named in the form, as `POST /subject-access` makes it.
async fn bundle(ctx: Ctx, p: &Person) -> Result<serde_json::Value, runtime::api::ApiError> {
    let body = serde_json::json!({"full_name": p.full_name.trim(), "date_of_birth": p.date_of_birth.trim()});
    crate::subject_access_bundle(State(ctx), axum::body::Bytes::from(body.to_string())).await.map(|axum::Json(v)| v)
}

async fn subject_access_search(State(ctx): State<Ctx>, viewer: Viewer, Form(p): Form<Person>) -> Response {
    match bundle(ctx, &p).await {
        Ok(value) => match serde_json::from_value::<crate::subject_access::Bundle>(value) {
            Ok(found) => subject_access_page(&viewer, Some((&found, &p)), &[]),
            Err(e) => failed(&viewer, e.into()),
        },
        Err(e) => subject_access_page(&viewer, None, &[("full_name".into(), PageError::from(e).detail)]),
    }
}

/// `POST /console/subject-access.json`: the bundle as a file (named by its subject ref, never
/// the person's name).
async fn subject_access_download(State(ctx): State<Ctx>, viewer: Viewer, Form(p): Form<Person>) -> Response {
    match bundle(ctx, &p).await {
        Ok(value) => {
            let name = format!("attachment; filename=\"subject-access-{}.json\"", value["subject_ref"].as_str().unwrap_or("bundle").chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect::<String>());
            let mut response = serde_json::to_string_pretty(&value).unwrap_or_default().into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Ok(v) = HeaderValue::from_str(&name) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Err(e) => subject_access_page(&viewer, None, &[("full_name".into(), PageError::from(e).detail)]),
    }
}

// ---------------------------------------------------------------- policy simulator

#[derive(Debug, Default, Deserialize)]
struct Simulate {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    consent: String,
    #[serde(default)]
    risk: String,
    #[serde(default)]
    draft: String,
}

async fn simulator(State(ctx): State<Ctx>, viewer: Viewer, Query(s): Query<Simulate>) -> Response {
    simulate(&ctx, &viewer, s)
}

async fn simulator_draft(State(ctx): State<Ctx>, viewer: Viewer, Form(s): Form<Simulate>) -> Response {
    simulate(&ctx, &viewer, s)
}

const ROLES: [&str; 6] = ["housing", "idva", "marac", "reciprocals", "perpetrator", "partner"];

fn simulate(ctx: &Ctx, viewer: &Viewer, s: Simulate) -> Response {
    let schema = match isp::Schema::load() {
        Ok(s) => s,
        Err(e) => return failed(viewer, e.into()),
    };
    let draft = !s.draft.trim().is_empty();
    let loaded = if draft {
        isp::Policy::check_draft(&s.draft, &schema).map_err(|problems| problems.into_iter().map(|(line, p)| format!("line {line}: {p}")).collect::<Vec<_>>().join("; "))
    } else {
        std::fs::read_to_string(&ctx.policy_path).map_err(|_| "the policy in force cannot be read".to_owned()).and_then(|t| isp::Policy::from_toml(&t, &schema).map_err(|e| e.to_string()))
    };
    let asked = !s.from.is_empty() && !s.to.is_empty() && !s.kind.is_empty();
    let answer = match (&loaded, asked) {
        (Ok(policy), true) => {
            let role = |r: &str| r.parse::<isp::Role>().ok();
            let consent = if s.consent == "none" || s.consent.is_empty() { Some(proto::v1::ConsentState::Unspecified) } else { policy::parse_consent(&s.consent) };
            let risk = if s.risk == "none" || s.risk.is_empty() { Some(proto::v1::RiskLevel::Unspecified) } else { policy::parse_risk(&s.risk) };
            match (role(&s.from), role(&s.to), kind::parse(&s.kind), consent, risk) {
                (Some(from), Some(to), Some(k), Some(consent), Some(risk)) => {
                    let defaults = policy.defaults_for(from, to, k);
                    let (purpose, basis) = defaults.map(|(p, b)| (p.to_owned(), b.to_owned())).unwrap_or_default();
                    let none = Default::default();
                    let request = policy::Request { from, to, kind: k, purpose: &purpose, lawful_basis: &basis, consent, risk, categories: &none };
                    Some(Ok((policy.explain(&schema, &request), purpose, basis)))
                }
                _ => Some(Err("Choose a sender role, a recipient role, a kind, a consent state and a risk of the lists.".to_owned())),
            }
        }
        _ => None,
    };
    let kinds: Vec<&str> = kind::ALL.iter().map(|k| kind::name(*k)).collect();
    // The same questions in both forms; each form's fields have ids of their own.
    let fields = |form: &str| {
        let select = |name: &str, label: &str, options: &[&str], value: &str| {
            let id = format!("{form}-{name}");
            html! {
                div.field {
                    label for=(id) { (label) }
                    select id=(id) name=(name) { @for o in options { option value=(o) selected[value == *o] { (o) } } }
                }
            }
        };
        html! {
            div.cards {
                div { (select("from", "From (role)", &ROLES, &s.from)) (select("to", "To (role)", &ROLES, &s.to)) }
                div { (select("kind", "Kind", &kinds, &s.kind)) }
                div { (select("consent", "Consent", &["given", "refused", "not-sought", "withdrawn", "expired", "none"], &s.consent)) (select("risk", "Risk", &["standard", "medium", "high", "none"], &s.risk)) }
            }
        }
    };
    let body = html! {
        p { "What the protocol decides for one kind of disclosure between two roles: which categories would flow, which would be removed, and which would refuse the send. Over the signed policy in force, or over a draft you paste below (nothing is changed by trying one)." }
        @if let Err(why) = &loaded { div.refused role="alert" { h2 { @if draft { "The draft does not load" } @else { "The policy does not load" } } p { (why) } } }
        @match &answer {
            Some(Ok((e, purpose, basis))) => {
                div class=(if e.allowed { "allowed" } else { "refused" }) {
                    h2 { @if e.allowed { "Allowed by rule " span.mono { (e.rule) } } @else { "Refused by " span.mono { (e.rule) } } }
                    @if !e.allowed { p { (e.detail) " (" (e.reason) ")" } }
                    @if e.without_consent { p { "Only " strong { "without consent" } ": the deciding officer, a rationale code and the rationale are needed." } }
                    p { "Policy " (e.policy_version) @if draft { " (draft)" } "; purpose " span.mono { (purpose) } ", lawful basis " span.mono { (basis) } "." }
                }
                (summary(&[("Flows", categories(&e.flows)), ("Removed before sealing", categories(&e.removed)), ("Refuse the whole send", categories(&e.refused))]))
            }
            Some(Err(why)) => div.refused role="alert" { p { (why) } },
            None => {}
        }
        h2 { "Over the policy in force" }
        form method="get" action="/console/policy" {
            (fields("policy"))
            button type="submit" { "Explain" }
        }
        h2 { "Over a draft" }
        form method="post" action="/console/policy" {
            (viewer.csrf_field())
            (fields("draft"))
            div.field { label for="draft" { "Draft policy (TOML)" } textarea #draft name="draft" rows="10" { (s.draft) } }
            button.secondary type="submit" { "Explain over the draft" }
        }
    };
    viewer.page("Policy simulator", "/console/policy", body)
}
