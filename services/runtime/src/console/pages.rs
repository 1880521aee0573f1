//! The pages every agency service has: the dashboard, the inbox (read, accept, decline,
//! close), what was sent and where each is (the timeline, revoke), compose (a form from the
//! payload schema, the policy's preview, the send), consent records, and the access log.
//! Each handler does its work through the same functions as the JSON API, so a page can
//! do nothing the API would refuse.

use axum::{
    Form, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
    routing::{get, post},
};
use isp::{Kind, kind, policy};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use super::{Nav, PageError, Step, Viewer, categories, error_summary, form, html, see_other, summary, tag, timeline, when};
use crate::{
    api::{self, ApiError},
    auth::{Allow, CASEWORK, Role, Rule, content, logged, rule},
    ctx::Ctx,
    status::{Arrival, Disclosure},
};

/// How many rows a list page shows (the newest first); the JSON API pages through all.
const SHOWN: i64 = 200;

use Role::*;
const CASEWORK_AND_IG: &[Role] = &[Caseworker, TeamManager, MaracCoordinator, ReciprocalsCoordinator, IgLead];

/// The rule of every page of [`routes`].
pub const RULES: &[Rule] = &[
    rule("GET", "/console", Allow::AnyStaff),
    rule("GET", "/console/inbox", Allow::Roles(CASEWORK)),
    content("GET", "/console/inbox/{id}", Allow::Roles(CASEWORK)),
    rule("POST", "/console/inbox/{id}/answer", Allow::Roles(CASEWORK)),
    rule("GET", "/console/sent", Allow::Roles(CASEWORK_AND_IG)),
    rule("GET", "/console/sent/{id}", Allow::Roles(CASEWORK_AND_IG)),
    rule("POST", "/console/sent/{id}/revoke", Allow::Roles(&[TeamManager, IgLead])),
    rule("GET", "/console/compose", Allow::Roles(CASEWORK)),
    rule("POST", "/console/compose/form", Allow::Roles(CASEWORK)),
    rule("POST", "/console/compose/preview", Allow::Roles(CASEWORK)),
    rule("POST", "/console/compose/send", Allow::Roles(CASEWORK)),
    rule("GET", "/console/consents", Allow::Roles(CASEWORK)),
    rule("POST", "/console/consents", Allow::Roles(CASEWORK)),
    rule("POST", "/console/consents/withdraw", Allow::Roles(CASEWORK)),
    logged("GET", "/console/access-log", Allow::Roles(&[AgencyAdmin, IgLead])),
    rule("GET", "/console/witness", Allow::Roles(&[AgencyAdmin, IgLead])),
];

/// The navigation of every agency service; an agency adds its own pages after these.
pub const NAV: &[Nav] = &[
    Nav { href: "/console", label: "Dashboard" },
    Nav { href: "/console/inbox", label: "Inbox" },
    Nav { href: "/console/compose", label: "New referral" },
    Nav { href: "/console/sent", label: "Sent" },
    Nav { href: "/console/consents", label: "Consent" },
    Nav { href: "/console/access-log", label: "Access log" },
    Nav { href: "/console/witness", label: "Ledger witness" },
];

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/console", get(dashboard))
        .route("/console/inbox", get(inbox))
        .route("/console/inbox/{id}", get(inbox_item))
        .route("/console/inbox/{id}/answer", post(answer))
        .route("/console/sent", get(sent))
        .route("/console/sent/{id}", get(sent_item))
        .route("/console/sent/{id}/revoke", post(revoke))
        .route("/console/compose", get(compose))
        .route("/console/compose/form", post(compose_form))
        .route("/console/compose/preview", post(compose_preview))
        .route("/console/compose/send", post(compose_send))
        .route("/console/consents", get(consents).post(record_consent))
        .route("/console/consents/withdraw", post(withdraw_consent))
        .route("/console/access-log", get(access_log))
        .route("/console/witness", get(witness))
}

/// A form's fields in order, as posted.
type Posted = Form<Vec<(String, String)>>;

/// An agency's name as the directory gives it, else its id.
fn agency_name(ctx: &Ctx, id: &str) -> String {
    ctx.isp().directory.get(id).map(|a| format!("{} ({})", a.name, a.role.as_str())).unwrap_or_else(|| id.to_owned())
}

#[derive(Deserialize, Default)]
struct Notice {
    #[serde(default)]
    done: String,
}

fn notice(done: &str) -> super::Markup {
    let text = match done {
        "accepted" => "The referral was accepted; the sender has been told.",
        "declined" => "The referral was declined; the sender has been told, with your reason.",
        "closed" => "The referral was closed; the sender has been told the outcome.",
        "revoked" => "The disclosure was revoked; the recipient's service will hide its content and confirm.",
        "withdrawn" => "The consent was withdrawn: every later disclosure relying on it is refused, at every agency.",
        _ => return html! {},
    };
    html! { div.notice role="status" { h2 { "Done" } p { (text) } } }
}

// ---------------------------------------------------------------- dashboard

async fn dashboard(State(ctx): State<Ctx>, viewer: Viewer) -> Response {
    match dashboard_body(&ctx, &viewer).await {
        Ok(body) => viewer.page("Dashboard", "/console", body),
        Err(e) => e.page(&viewer),
    }
}

async fn dashboard_body(ctx: &Ctx, viewer: &Viewer) -> Result<super::Markup, PageError> {
    let casework = viewer.shell.may_open(&viewer.staff, "/console/inbox");
    let sent_view = viewer.shell.may_open(&viewer.staff, "/console/sent");
    let (mut new, mut high) = (0, 0);
    let (mut escalated, mut tasks) = (Vec::new(), Vec::new());
    if casework {
        // Counted by the database: an inbox can hold years of referrals.
        let ack = kind::name(Kind::ReferralAck);
        new = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM inbox WHERE kind <> $1 AND status = $2")
            .bind(ack)
            .bind(Arrival::New.code())
            .fetch_one(&ctx.pool)
            .await?;
        let settled: Vec<&str> = Arrival::ALL.iter().filter(|a| a.is_settled()).map(|a| a.code()).collect();
        let sql = format!("SELECT COUNT(*) FROM inbox WHERE kind <> $1 AND risk = $2 AND status NOT IN ({})", crate::db::numbered(3, settled.len()));
        let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(ack).bind(policy::risk_name(proto::v1::RiskLevel::High));
        for code in settled {
            q = q.bind(code);
        }
        high = q.fetch_one(&ctx.pool).await?;
        escalated = crate::deadlines::query(ctx, "escalated", None).await?;
        tasks = crate::deadlines::query(ctx, "open", None)
            .await?
            .into_iter()
            .filter(|d| d["state"] != "escalated" && [crate::deadlines::REFER_IDVA, crate::deadlines::REFER_MARAC].contains(&d["code"].as_str().unwrap_or_default()))
            .collect();
    }
    let recent = if sent_view {
        sqlx::query("SELECT envelope_id, recipient, kind, status, created_at_ms FROM sent WHERE kind NOT IN ($1, $2) ORDER BY created_at_ms DESC LIMIT 5")
            .bind(kind::name(Kind::ReferralAck))
            .bind(kind::name(Kind::DisclosureRevoke))
            .fetch_all(&ctx.pool)
            .await?
    } else {
        Vec::new()
    };
    Ok(html! {
        @if casework {
            div.cards {
                div.card { span.caption { "New referrals" } span.figure { (new) } a href="/console/inbox" { "Open the inbox" } }
                div.card.alert[!escalated.is_empty()] { span.caption { "Escalations" } span.figure { (escalated.len()) } span.hint { "Deadlines missed and still not done" } a href="/console/deadlines" { "See the deadlines" } }
                div.card.alert[high > 0] { span.caption { "High-risk cases open" } span.figure { (high) } }
            }
            p { a.button href="/console/compose" { "Make a new referral" } " " a.button.secondary href="/console/dash" { "Record a DASH checklist" } }
            @if !escalated.is_empty() {
                h2 { "Escalations" }
                (super::casework::deadline_rows(&escalated))
            }
            @if !tasks.is_empty() {
                h2 { "Referrals to make" }
                p.hint { "A high DASH result calls for a referral to an IDVA service and to MARAC." }
                (super::casework::deadline_rows(&tasks))
            }
        }
        @if sent_view {
            h2 { "What you sent most recently" }
            @if recent.is_empty() {
                p { "Nothing sent yet." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Sent" } th scope="col" { "To" } th scope="col" { "Kind" } th scope="col" { "Status" } } }
                    tbody {
                        @for r in &recent {
                            @let id: String = r.try_get("envelope_id").unwrap_or_default();
                            tr {
                                td { a href=(format!("/console/sent/{id}")) { (when(r.try_get("created_at_ms").unwrap_or_default())) } }
                                td { (agency_name(ctx, &r.try_get::<String, _>("recipient").unwrap_or_default())) }
                                td { (form::kind_label(&r.try_get::<String, _>("kind").unwrap_or_default())) }
                                td { (tag(&r.try_get::<String, _>("status").unwrap_or_default())) }
                            }
                        }
                    }
                }
                p { a href="/console/sent" { "Everything sent" } }
            }
        }
        @if !casework && !sent_view {
            p { "Your roles open the pages in the navigation above." }
        }
    })
}

// ---------------------------------------------------------------- inbox

/// The risk level of a received referral and what proves it: the DASH summary it carries,
/// checked on receipt (signed by the agency that assessed, a level its score gives).
fn risk_proof(ctx: &Ctx, h: &proto::v1::Header, payload: &proto::v1::Payload) -> super::Markup {
    let level = policy::risk_name(h.risk());
    match isp::risk::summary_of(payload) {
        Some(d) => {
            let assessed_by = agency_name(ctx, &d.assessed_by);
            let questions = isp::risk::checklist(&d.checklist_version).map_or(0, |c| c.questions.len());
            html! {
                (tag(level)) " DASH " (d.checklist_version) ", score " strong { (d.score) } " of " (questions)
                @if d.professional_judgement { ", raised by the professional judgement of " span.mono { (d.judgement_officer) } }
                ". Assessed by " span.mono { (d.assessor) } " at " (assessed_by) " on " (d.assessed_on) "; signed summary checked on receipt"
                @if !d.items.is_empty() { ", score recomputed from the answers" } "."
            }
        }
        None if matches!(h.risk(), proto::v1::RiskLevel::Unspecified) => html! { "Not assessed" },
        None => html! { (tag(level)) " (no DASH summary reached your agency)" },
    }
}

async fn inbox(State(ctx): State<Ctx>, viewer: Viewer, Query(n): Query<Notice>) -> Response {
    let rows = sqlx::query(&format!("SELECT {} FROM inbox WHERE kind <> $1 ORDER BY received_at_ms DESC LIMIT {SHOWN}", api::INBOX_COLUMNS))
        .bind(kind::name(Kind::ReferralAck))
        .fetch_all(&ctx.pool)
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return PageError::from(e).page(&viewer),
    };
    // Referrals whose acknowledgement deadline passed with no staff answer.
    let late: std::collections::HashSet<String> = match crate::deadlines::query(&ctx, "escalated", None).await {
        Ok(d) => d.into_iter().filter(|d| d["code"] == crate::deadlines::ACKNOWLEDGE).filter_map(|d| d["target"].as_str().map(str::to_owned)).collect(),
        Err(e) => return PageError::from(e).page(&viewer),
    };
    let body = html! {
        (notice(&n.done))
        @if rows.is_empty() {
            p { "Nothing has been received yet." }
        } @else {
            table {
                caption.visually-hidden { "Received referrals, newest first" }
                thead { tr { th scope="col" { "Received" } th scope="col" { "From" } th scope="col" { "Kind" } th scope="col" { "Case" } th scope="col" { "Risk" } th scope="col" { "Status" } } }
                tbody {
                    @for r in &rows {
                        @let v = api::inbox_json(r);
                        @let id = v["envelope_id"].as_str().unwrap_or_default();
                        @let status = v["status"].as_str().unwrap_or_default();
                        @let k = v["kind"].as_str().unwrap_or_default();
                        tr {
                            td { a href=(format!("/console/inbox/{id}")) { (when(v["received_at_ms"].as_i64().unwrap_or_default())) } }
                            td { (agency_name(&ctx, v["sender"].as_str().unwrap_or_default())) }
                            td { (form::kind_label(k)) }
                            td.mono { (v["case_ref"].as_str().unwrap_or_default()) }
                            td { @let risk = v["risk"].as_str().unwrap_or_default(); @if !risk.is_empty() && risk != "unspecified" { (tag(risk)) } }
                            td {
                                (tag(status))
                                @if late.contains(id) { " " (tag("overdue")) }
                            }
                        }
                    }
                }
            }
        }
    };
    viewer.page("Inbox", "/console/inbox", body)
}

async fn inbox_item(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>) -> Response {
    let (row, opened) = match api::open_inbox(&ctx, &id, &viewer.staff).await {
        Ok(found) => found,
        Err(e) => return PageError::from(e).page(&viewer),
    };
    let isp = ctx.isp();
    let h = &opened.header;
    let consent = h.consent.clone().unwrap_or_default();
    let k = kind::name(h.kind());
    // What the ISP keeps from this agency's role for this kind, whatever was filled in.
    let withheld: Vec<String> = isp.schema.kind_categories(h.kind()).into_iter().filter(|c| !isp.policy.receivable(isp.role, c)).collect();
    let status = row["status"].as_str().unwrap_or_default().to_owned();
    let answerable = crate::inbox::acknowledgeable(k) && !matches!(Arrival::parse(&status), Some(Arrival::Closed | Arrival::Revoked));
    let body = html! {
        span.caption { (form::kind_label(k)) " from " (agency_name(&ctx, &h.sender)) }
        (summary(&[
            ("Status", tag(&status)),
            ("Received", when(row["received_at_ms"].as_i64().unwrap_or_default())),
            ("Case reference", html! { span.mono { (h.case_ref) } }),
            ("Risk", risk_proof(&ctx, h, &opened.payload)),
            ("Purpose", html! { (h.purpose) }),
            ("Lawful basis", html! { (h.lawful_basis) " – " (isp.policy.lawful_bases.get(&h.lawful_basis).cloned().unwrap_or_default()) }),
            ("Consent relied on", if h.shared_without_consent {
                html! { (tag("without consent")) " decided by " strong { (h.without_consent_officer) } " at the sender, rationale " span.mono { (h.without_consent_rationale) } }
            } else {
                html! { (tag(policy::consent_name(consent.state()))) @if !consent.consent_id.is_empty() { " record " span.mono { (consent.consent_id) } " of " (consent.recorded_by) } }
            }),
            ("Rule", html! { span.mono { (h.policy_rule) } " (policy " (h.policy_version) ")" }),
            ("Categories received", categories(&h.data_categories)),
            ("Categories the protocol removes for your role", categories(&withheld)),
        ]))
        h2 { "Content" }
        @if let Some((body, _)) = isp.schema.body(h.kind()) {
            @let json = isp.schema.payload_to_json(&opened.payload);
            (form::show(&body, json.as_object().and_then(|o| o.values().next()).unwrap_or(&serde_json::Value::Null)))
        }
        @if answerable {
            h2 { "Answer this referral" }
            form method="post" action=(format!("/console/inbox/{id}/answer")) {
                (viewer.csrf_field())
                fieldset {
                    legend { "What do you want to do?" }
                    div.choices {
                        div.choice { input #answer-accepted type="radio" name="status" value="accepted"; label for="answer-accepted" { "Accept" } }
                        div.choice { input #answer-declined type="radio" name="status" value="declined"; label for="answer-declined" { "Decline" } }
                        div.choice { input #answer-closed type="radio" name="status" value="closed"; label for="answer-closed" { "Close" } }
                    }
                }
                div.field {
                    label for="reason" { "Reason (needed to decline)" }
                    span.hint #reason-hint { "Goes to the sender, sealed. Say why, not who." }
                    textarea #reason name="reason" rows="3" aria-describedby="reason-hint" {}
                }
                div.field {
                    label for="outcome" { "Outcome (when closing)" }
                    textarea #outcome name="outcome" rows="3" {}
                }
                button type="submit" { "Send answer" }
            }
        }
    };
    viewer.page("Referral", "/console/inbox", body)
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    outcome: String,
}

async fn answer(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(a): Form<Answer>) -> Response {
    let body = json!({"status": a.status, "reason": a.reason, "outcome": a.outcome});
    match api::acknowledge(State(ctx), Path(id.clone()), viewer.staff.clone(), Bytes::from(body.to_string())).await {
        Ok(_) => see_other(&format!("/console/inbox?done={}", if ["accepted", "declined", "closed"].contains(&a.status.as_str()) { a.status.as_str() } else { "" })),
        Err(e) => PageError::from(e).page(&viewer),
    }
}

// ---------------------------------------------------------------- sent

async fn sent(State(ctx): State<Ctx>, viewer: Viewer, Query(n): Query<Notice>) -> Response {
    let rows = sqlx::query(&format!("SELECT {} FROM sent WHERE kind NOT IN ($1, $2) ORDER BY created_at_ms DESC LIMIT {SHOWN}", api::SENT_COLUMNS))
        .bind(kind::name(Kind::ReferralAck))
        .bind(kind::name(Kind::DisclosureRevoke))
        .fetch_all(&ctx.pool)
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return PageError::from(e).page(&viewer),
    };
    let body = html! {
        (notice(&n.done))
        @if rows.is_empty() {
            p { "Nothing has been sent yet." }
        } @else {
            table {
                thead { tr { th scope="col" { "Sent" } th scope="col" { "To" } th scope="col" { "Kind" } th scope="col" { "Case" } th scope="col" { "By" } th scope="col" { "Status" } } }
                tbody {
                    @for r in &rows {
                        @let id: String = r.try_get("envelope_id").unwrap_or_default();
                        tr {
                            td { a href=(format!("/console/sent/{id}")) { (when(r.try_get("created_at_ms").unwrap_or_default())) } }
                            td { (agency_name(&ctx, &r.try_get::<String, _>("recipient").unwrap_or_default())) }
                            td { (form::kind_label(&r.try_get::<String, _>("kind").unwrap_or_default())) }
                            td.mono { (r.try_get::<String, _>("case_ref").unwrap_or_default()) }
                            td { (r.try_get::<Option<String>, _>("sent_by").ok().flatten().unwrap_or_default()) }
                            td { (tag(&r.try_get::<String, _>("status").unwrap_or_default())) }
                        }
                    }
                }
            }
        }
    };
    viewer.page("Sent", "/console/sent", body)
}

/// The steps of one disclosure: sent and published here, then what the recipient's receipts
/// said (each opened, as the sender's service may), and a revocation.
async fn steps(ctx: &Ctx, id: &str, sent: &Value) -> Result<Vec<Step>, PageError> {
    let mut steps = vec![Step {
        at_ms: sent["created_at_ms"].as_i64().unwrap_or_default(),
        what: if sent["status"] == "denied" { "Refused by the protocol (a near miss in the ledger)".into() } else { "Queued".into() },
        detail: format!("by {}", sent["sent_by"].as_str().unwrap_or("the service")),
    }];
    if let Some(row) = sqlx::query("SELECT published_at_ms, stopped_at_ms, stop_reason FROM outbox WHERE id = $1").bind(id).fetch_optional(&ctx.pool).await? {
        if let Ok(Some(at)) = row.try_get::<Option<i64>, _>("published_at_ms") {
            steps.push(Step { at_ms: at, what: "Published to the partnership".into(), detail: String::new() });
        }
        if let Ok(Some(at)) = row.try_get::<Option<i64>, _>("stopped_at_ms") {
            steps.push(Step { at_ms: at, what: "Stopped before publishing".into(), detail: row.try_get("stop_reason").unwrap_or_default() });
        }
    }
    let receipts = sqlx::query("SELECT envelope_id FROM inbox WHERE in_reply_to = $1 AND kind = $2 ORDER BY stream_seq")
        .bind(id)
        .bind(kind::name(Kind::ReferralAck))
        .fetch_all(&ctx.pool)
        .await?;
    for r in receipts {
        let receipt_id: String = r.try_get("envelope_id")?;
        let Some((opened, _)) = crate::inbox::read(ctx, &receipt_id).await.map_err(ApiError::from)? else { continue };
        let Some(proto::v1::payload::Body::ReferralAck(ack)) = &opened.payload.body else { continue };
        let what = match crate::receipts::status_of(ack.status()) {
            Some(Disclosure::RevocationConfirmed) => "Revocation confirmed by the recipient".to_owned(),
            Some(s) => s.label().to_owned(),
            None => continue,
        };
        let who = if ack.staff_id.is_empty() { String::new() } else { format!("by {} ", ack.staff_id) };
        let said = [ack.reason.as_str(), ack.outcome.as_str()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; ");
        steps.push(Step {
            at_ms: opened.header.created_at_ms,
            what,
            detail: format!("{who}at {}{}", agency_name(ctx, &opened.header.sender), if said.is_empty() { String::new() } else { format!(": {said}") }),
        });
    }
    let revocations = sqlx::query("SELECT created_at_ms, sent_by FROM sent WHERE in_reply_to = $1 AND kind = $2").bind(id).bind(kind::name(Kind::DisclosureRevoke)).fetch_all(&ctx.pool).await?;
    for r in revocations {
        steps.push(Step {
            at_ms: r.try_get("created_at_ms")?,
            what: "Revoked".into(),
            detail: r.try_get::<Option<String>, _>("sent_by").ok().flatten().map(|by| format!("by {by}")).unwrap_or_default(),
        });
    }
    steps.sort_by_key(|s| s.at_ms);
    Ok(steps)
}

async fn sent_item(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Query(n): Query<Notice>) -> Response {
    let found = async {
        let row = sqlx::query(&format!("SELECT {} FROM sent WHERE envelope_id = $1", api::SENT_COLUMNS))
            .bind(&id)
            .fetch_optional(&ctx.pool)
            .await?
            .ok_or_else(|| PageError::not_found("disclosure"))?;
        let sent = api::sent_json_opened(&ctx, &row)?;
        let steps = steps(&ctx, &id, &sent).await?;
        Ok::<_, PageError>((sent, steps))
    };
    let (sent, steps) = match found.await {
        Ok(found) => found,
        Err(e) => return e.page(&viewer),
    };
    let list = |key: &str| sent[key].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect::<Vec<_>>()).unwrap_or_default();
    let status = sent["status"].as_str().unwrap_or_default();
    let revocable = viewer.shell.may(&viewer.staff, "POST", "/console/sent/{id}/revoke") && Disclosure::parse(status).is_some_and(|s| !s.is_revoked() && !s.never_sent());
    let body = html! {
        (notice(&n.done))
        span.caption { (form::kind_label(sent["kind"].as_str().unwrap_or_default())) " to " (agency_name(&ctx, sent["recipient"].as_str().unwrap_or_default())) }
        (summary(&[
            ("Status", tag(status)),
            ("Case reference", html! { span.mono { (sent["case_ref"].as_str().unwrap_or_default()) } }),
            ("Rule", html! { span.mono { (sent["rule"].as_str().unwrap_or_default()) } " (policy " (sent["policy_version"].as_str().unwrap_or_default()) ")" }),
            ("Categories sent", categories(&list("categories"))),
            ("Removed by the protocol", categories(&list("removed"))),
            ("Opened by", html! { (sent["opened_by"].as_str().filter(|s| !s.is_empty()).unwrap_or("not yet")) }),
        ]))
        h2 { "Timeline" }
        (timeline(&steps))
        @if revocable {
            h2 { "Revoke this disclosure" }
            p { "The recipient's service stops showing its content and confirms. Use this for a referral sent in error." }
            form method="post" action=(format!("/console/sent/{id}/revoke")) {
                (viewer.csrf_field())
                div.field {
                    label for="revoke-reason" { "Reason" }
                    textarea #revoke-reason name="reason" rows="3" {}
                }
                button.warning-button type="submit" { "Revoke" }
            }
        }
    };
    viewer.page("Disclosure", "/console/sent", body)
}

#[derive(Deserialize)]
struct Revoke {
    #[serde(default)]
    reason: String,
}

async fn revoke(State(ctx): State<Ctx>, viewer: Viewer, Path(id): Path<String>, Form(r): Form<Revoke>) -> Response {
    let body = json!({"reason": r.reason});
    match crate::receipts::revoke(State(ctx), Path(id.clone()), viewer.staff.clone(), Bytes::from(body.to_string())).await {
        Ok(_) => see_other(&format!("/console/sent/{id}?done=revoked")),
        Err(e) => PageError::from(e).page(&viewer),
    }
}

// ---------------------------------------------------------------- compose

/// The kinds staff compose (receipts, revocations and consent changes the service makes).
fn composable(k: Kind) -> bool {
    !matches!(k, Kind::ReferralAck | Kind::DisclosureRevoke | Kind::ConsentChanged)
}

async fn compose(State(ctx): State<Ctx>, viewer: Viewer) -> Response {
    let isp = ctx.isp();
    let kinds: Vec<Kind> = kind::ALL
        .into_iter()
        .filter(|k| composable(*k) && isp.policy.rules.iter().any(|r| r.from.contains(&isp.role) && r.kinds.iter().any(|n| n == kind::name(*k))))
        .collect();
    let body = html! {
        p { "Choose who the referral goes to and what kind it is. The next page is the form for that kind; nothing is sent before you have seen what the protocol will let through." }
        form method="post" action="/console/compose/form" {
            (viewer.csrf_field())
            div.field {
                label for="to" { "Recipient" }
                select #to name="to" {
                    // Agencies some rule lets this one send to (never the IG office).
                    @for a in isp.directory.active().filter(|a| a.id != isp.agency() && isp.policy.rules.iter().any(|r| r.from.contains(&isp.role) && r.to.contains(&a.role))) {
                        option value=(a.id) { (a.name) " (" (a.role.as_str()) ")" }
                    }
                }
            }
            div.field {
                label for="kind" { "Kind of referral" }
                select #kind name="kind" {
                    @for k in &kinds { option value=(kind::name(*k)) { (form::kind_label(kind::name(*k))) } }
                }
            }
            button type="submit" { "Continue" }
        }
    };
    viewer.page("New referral", "/console/compose", body)
}

/// The compose form for the posted recipient and kind, filled from the posted fields (when
/// coming back from the preview to change something, or from a DASH assessment).
async fn compose_form(State(ctx): State<Ctx>, viewer: Viewer, Form(fields): Posted) -> Response {
    compose_page(&ctx, &viewer, &form::Fields(fields), &[])
}

fn compose_page(ctx: &Ctx, viewer: &Viewer, values: &form::Fields, problems: &[(String, String)]) -> Response {
    let isp = ctx.isp();
    let (to, k) = match compose_target(ctx, values) {
        Ok(t) => t,
        Err(e) => return e.page(viewer),
    };
    let Some((body, category)) = isp.schema.body(k) else { return PageError::not_found("kind of referral").page(viewer) };
    let recipient = isp.directory.get(&to).map(|a| a.role);
    let rules: Vec<&policy::Rule> = isp.policy.rules.iter().filter(|r| r.from.contains(&isp.role) && recipient.is_some_and(|to| r.to.contains(&to)) && r.kinds.iter().any(|n| n == kind::name(k))).collect();
    let purposes: Vec<&String> = rules.iter().flat_map(|r| &r.purposes).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let bases: Vec<&String> = rules.iter().flat_map(|r| r.lawful_bases.iter().chain(&r.bases_without_consent)).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let v = |name: &str| values.get(name).to_owned();
    let page = html! {
        (error_summary(problems))
        span.caption { (form::kind_label(kind::name(k))) " to " (agency_name(ctx, &to)) }
        @if rules.is_empty() {
            div.warning { span.icon aria-hidden="true" { "!" } span { "No rule of the protocol lets your agency send this kind to this recipient: the preview will say so, and a send would be refused." } }
        }
        form method="post" action="/console/compose/preview" novalidate {
            (viewer.csrf_field())
            input type="hidden" name="to" value=(to);
            input type="hidden" name="kind" value=(kind::name(k));
            h2 { "The case" }
            div.field {
                label for="case_ref" { "Case reference" }
                span.hint #case_ref-hint { "Your case reference, like HSG-2026-0042. It travels in clear, so never a name." }
                input.short #case_ref type="text" name="case_ref" value=(v("case_ref")) aria-describedby="case_ref-hint";
            }
            fieldset {
                legend { "The person this is about" }
                span.hint { "Used only to make the partnership's pseudonymous reference for them; the name itself goes only where the form below puts it." }
                div.field { label for="subject_name" { "Full name" } input #subject_name type="text" name="subject_name" value=(v("subject_name")) autocomplete="off"; }
                div.field { label for="subject_dob" { "Date of birth" } span.hint #subject_dob-hint { "For example, 1990-01-31" } input.short #subject_dob type="text" name="subject_dob" value=(v("subject_dob")) aria-describedby="subject_dob-hint" autocomplete="off"; }
            }
            div.field {
                label for="purpose" { "Purpose" }
                select #purpose name="purpose" {
                    @for p in &purposes { option value=(p) selected[v("purpose") == **p] { (isp.policy.purposes.get(*p).cloned().unwrap_or_else(|| (*p).clone())) } }
                }
            }
            div.field {
                label for="lawful_basis" { "Lawful basis" }
                select #lawful_basis name="lawful_basis" {
                    @for b in &bases { option value=(b) selected[v("lawful_basis") == **b] { (b) " – " (isp.policy.lawful_bases.get(*b).cloned().unwrap_or_default()) } }
                }
            }
            div.field {
                label for="assessment_id" { "DASH risk assessment" }
                span.hint #assessment_id-hint {
                    "The id of a DASH checklist recorded at your agency for this person (on their record, or "
                    a href="/console/dash" { "record one now" } "). The referral carries its signed summary and its risk level; without one the risk is not assessed, and nothing can be shared without consent on the ground of high risk."
                }
                input #assessment_id type="text" name="assessment_id" value=(v("assessment_id")) aria-describedby="assessment_id-hint" autocomplete="off";
            }
            h2 { "Consent" }
            fieldset {
                legend { "What does this referral rely on?" }
                div.choices {
                    div.choice { input #consent-existing type="radio" name="consent" value="existing" checked[v("consent") == "existing"]; label for="consent-existing" { "A consent record already made" } }
                    div.choice { input #consent-record type="radio" name="consent" value="record" checked[v("consent") == "record" || v("consent").is_empty()]; label for="consent-record" { "Record the survivor's consent now" } }
                    div.choice { input #consent-without type="radio" name="consent" value="without" checked[v("consent") == "without"]; label for="consent-without" { "Sharing without consent" } }
                }
            }
            div.field {
                label for="consent_id" { "Consent record id (when one was already made)" }
                input.short #consent_id type="text" name="consent_id" value=(v("consent_id"));
            }
            div.field {
                label for="rationale_code" { "Without consent: why (rationale)" }
                select #rationale_code name="rationale_code" {
                    option value="" { "Not without consent" }
                    @for (code, text) in &isp.policy.rationales { option value=(code) selected[v("rationale_code") == *code] { (text) } }
                }
            }
            div.field {
                label for="rationale" { "Without consent: why it is necessary and proportionate" }
                span.hint #rationale-hint { "Kept at your agency, sealed. You are recorded as the deciding officer." }
                textarea #rationale name="rationale" rows="3" aria-describedby="rationale-hint" { (v("rationale")) }
            }
            h2 { "The referral" }
            p.hint { "Each field says which data category it is: the protocol decides by category what reaches the recipient." }
            (form::fields(&isp.schema, &body, "p", &category, values, 0))
            button type="submit" { "Preview what will be shared" }
        }
    };
    viewer.page("New referral", "/console/compose", page)
}

fn compose_target(ctx: &Ctx, values: &form::Fields) -> Result<(String, Kind), PageError> {
    let to = values.get("to").to_owned();
    if ctx.isp().directory.get(&to).is_none() {
        return Err(PageError { status: StatusCode::BAD_REQUEST, detail: "Choose a recipient of the partnership.".into() });
    }
    let k = kind::parse(values.get("kind")).filter(|k| composable(*k)).ok_or_else(|| PageError { status: StatusCode::BAD_REQUEST, detail: "Choose a kind of referral.".into() })?;
    Ok((to, k))
}

/// The request `POST /disclosures` would take for the posted form, or what is wrong with it.
fn send_request(ctx: &Ctx, values: &form::Fields) -> Result<Value, Vec<(String, String)>> {
    let isp = ctx.isp();
    let (to, k) = compose_target(ctx, values).map_err(|e| vec![("to".to_owned(), e.detail)])?;
    let (body, _) = isp.schema.body(k).ok_or_else(|| vec![("kind".to_owned(), "Choose a kind of referral.".to_owned())])?;
    let mut problems = Vec::new();
    let payload = form::collect(&body, "p", values, 0, &mut problems);
    let (name, dob) = (values.get("subject_name").trim(), values.get("subject_dob").trim());
    if name.is_empty() || dob.is_empty() {
        problems.push(("subject_name".into(), "Enter the full name and date of birth of the person this is about".into()));
    }
    if !values.get("case_ref").is_empty() && !isp::clear::is_case_ref(values.get("case_ref")) {
        problems.push(("case_ref".into(), format!("Enter {}", isp::clear::CASE_REF)));
    }
    let consent = match values.get("consent") {
        "existing" if values.get("consent_id").trim().is_empty() => {
            problems.push(("consent_id".into(), "Enter the id of the consent record".into()));
            Value::Null
        }
        "existing" => json!({"id": values.get("consent_id").trim(), "state": "given"}),
        "without" => Value::Null,
        _ => json!({"id": values.get("consent_id").trim(), "state": "given"}),
    };
    if values.get("consent") == "without" && (values.get("rationale_code").is_empty() || values.get("rationale").trim().is_empty()) {
        problems.push(("rationale_code".into(), "Sharing without consent needs a rationale and why it is necessary".into()));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut request = json!({
        "to": to, "kind": kind::name(k), "purpose": values.get("purpose"), "lawful_basis": values.get("lawful_basis"),
        "subject": {"full_name": name, "date_of_birth": dob}, "case_ref": values.get("case_ref"),
        "payload": {form_key(&body): Value::Object(payload)},
    });
    if !values.get("assessment_id").trim().is_empty() {
        request["assessment_id"] = json!(values.get("assessment_id").trim());
    }
    if consent.is_object() {
        request["consent"] = consent;
    } else {
        request["consent"] = json!({"state": "not-sought"});
    }
    if values.get("consent") == "without" {
        request["without_consent"] = json!({"rationale_code": values.get("rationale_code"), "rationale": values.get("rationale")});
    }
    Ok(request)
}

/// What `POST /disclosures` would seal for `request`: its risk and DASH summary filled in
/// from the assessment it names, as the send does.
async fn outgoing_for(ctx: &Ctx, staff: &crate::auth::Staff, request: &Value) -> Result<isp::Outgoing, ApiError> {
    let parsed: api::SendRequest = serde_json::from_value(request.clone()).map_err(|e| ApiError::bad_request(api::redact_quoted(&e.to_string())))?;
    let assessment = parsed.assessment_id.clone();
    let mut out = ctx.outgoing_by(parsed, staff)?;
    if let Some(id) = &assessment {
        crate::assessments::fill(ctx, &mut out, id).await?;
    }
    Ok(out)
}

/// The body's key in the payload's JSON: `IdvaReferral` → `idvaReferral`.
fn form_key(body: &prost_reflect::MessageDescriptor) -> String {
    let name = body.name();
    let mut out = name[..1].to_lowercase();
    out.push_str(&name[1..]);
    out
}

/// A consent record `POST /consents` would make for the posted form: given, for the
/// recipient's role and the chosen purpose.
fn consent_request(ctx: &Ctx, values: &form::Fields) -> Value {
    let role = ctx.isp().directory.get(values.get("to")).map(|a| a.role.as_str()).unwrap_or_default();
    let mut request = json!({
        "state": "given",
        "subject": {"full_name": values.get("subject_name").trim(), "date_of_birth": values.get("subject_dob").trim()},
        "scope": {"roles": [role], "purposes": [values.get("purpose")]},
    });
    if !values.get("consent_id").trim().is_empty() {
        request["consent_id"] = json!(values.get("consent_id").trim());
    }
    request
}

async fn compose_preview(State(ctx): State<Ctx>, viewer: Viewer, Form(fields): Posted) -> Response {
    let values = form::Fields(fields);
    let request = match send_request(&ctx, &values) {
        Ok(r) => r,
        Err(problems) => return compose_page(&ctx, &viewer, &values, &problems),
    };
    let isp = ctx.isp();
    let preview = match outgoing_for(&ctx, &viewer.staff, &request).await {
        Ok(out) => isp.preview(&out).map_err(|e| ApiError::bad_request(e.to_string())),
        Err(e) => Err(e),
    };
    let preview = match preview {
        Ok(p) => p,
        Err(e) => return compose_page(&ctx, &viewer, &values, &[("to".into(), PageError::from(e).detail)]),
    };
    let recording = values.get("consent") == "record" || values.get("consent").is_empty();
    let body = html! {
        span.caption { (form::kind_label(values.get("kind"))) " to " (agency_name(&ctx, values.get("to"))) }
        @match &preview.decision {
            Ok(d) => {
                div.allowed {
                    h2 { "The protocol allows this referral" }
                    p { "Rule " span.mono { (d.rule) } " of policy " (d.policy_version) "." @if d.without_consent { " It is shared " strong { "without consent" } ": you are recorded as the deciding officer." } }
                }
                (summary(&[
                    ("Will reach the recipient", categories(&preview.flows)),
                    ("Will be removed first", categories(&preview.removed)),
                ]))
                @if recording { p { "Sending also records the survivor's consent (given, for a " (isp.directory.get(values.get("to")).map(|a| a.role.as_str()).unwrap_or_default()) " agency, for this purpose), before the referral relies on it." } }
            }
            Err(denial) => {
                div.refused role="alert" {
                    h2 { "The protocol would refuse this referral" }
                    p { (denial.detail) }
                    p { "Rule " span.mono { (denial.rule) } " (" (denial.reason) ")." }
                    @if !denial.forbidden.is_empty() { p { "Never to reach this recipient: " (categories(&denial.forbidden)) } }
                    p { "If you send it anyway nothing is shared, and the attempt is recorded in the ledger as a near miss." }
                }
            }
        }
        div.button-group {
            form method="post" action="/console/compose/send" {
                (values.hidden())
                (viewer.csrf_field())
                button type="submit" { "Send referral" }
            }
            form method="post" action="/console/compose/form" {
                (values.hidden())
                (viewer.csrf_field())
                button.secondary type="submit" { "Change the referral" }
            }
        }
    };
    viewer.page("Check before sending", "/console/compose", body)
}

async fn compose_send(State(ctx): State<Ctx>, viewer: Viewer, Form(fields): Posted) -> Response {
    let values = form::Fields(fields);
    let mut request = match send_request(&ctx, &values) {
        Ok(r) => r,
        Err(problems) => return compose_page(&ctx, &viewer, &values, &problems),
    };
    // Consent is recorded for a send the protocol allows; one it refuses is refused whole
    // (and recorded as a near miss) without a consent record made for nothing.
    let allowed = match outgoing_for(&ctx, &viewer.staff, &request).await {
        Ok(out) => ctx.isp().preview(&out).is_ok_and(|p| p.decision.is_ok()),
        Err(_) => false,
    };
    if allowed && (values.get("consent") == "record" || values.get("consent").is_empty()) {
        let recorded = crate::consent::record(State(ctx.clone()), viewer.staff.clone(), Bytes::from(consent_request(&ctx, &values).to_string())).await;
        match recorded {
            Ok((_, axum::Json(record))) => request["consent"] = json!({"id": record["consent_id"], "state": "given"}),
            Err(e) => return compose_page(&ctx, &viewer, &values, &[("consent_id".into(), format!("The consent could not be recorded: {}", PageError::from(e).detail))]),
        }
    }
    match api::send_once(&ctx, &viewer.staff, Bytes::from(request.to_string())).await {
        Ok((_, axum::Json(outcome))) => see_other(&format!("/console/sent/{}", outcome["envelope_id"].as_str().unwrap_or_default())),
        Err(e) if e.status == StatusCode::FORBIDDEN => {
            let b = &e.body;
            let body = html! {
                div.refused role="alert" {
                    h2 { "Nothing was sent" }
                    p { (b["detail"].as_str().unwrap_or_default()) }
                    p { "Rule " span.mono { (b["rule"].as_str().unwrap_or_default()) } " (" (b["reason"].as_str().unwrap_or_default()) ")." }
                    p { "The attempt is recorded in the partnership's ledger as a near miss: " span.mono { (b["near_miss_id"].as_str().unwrap_or_default()) } }
                }
                form method="post" action="/console/compose/form" {
                    (values.hidden())
                    (viewer.csrf_field())
                    button.secondary type="submit" { "Change the referral" }
                }
            };
            let mut response = viewer.page("Referral refused by the protocol", "/console/compose", body);
            *response.status_mut() = StatusCode::FORBIDDEN;
            response
        }
        Err(e) => compose_page(&ctx, &viewer, &values, &[("to".into(), PageError::from(e).detail)]),
    }
}

// ---------------------------------------------------------------- consent

async fn consents(State(ctx): State<Ctx>, viewer: Viewer, Query(n): Query<Notice>) -> Response {
    consents_page(&ctx, &viewer, &n.done, None, &[])
}

fn consents_page(ctx: &Ctx, viewer: &Viewer, done: &str, recorded: Option<&Value>, problems: &[(String, String)]) -> Response {
    let isp = ctx.isp();
    let body = html! {
        (error_summary(problems))
        (notice(done))
        @if let Some(r) = recorded {
            div.notice role="status" {
                h2 { "Consent recorded" }
                p { "Record " strong.mono { (r["consent_id"].as_str().unwrap_or_default()) } ", " (r["state"].as_str().unwrap_or_default()) ". Give this id when a referral relies on it." }
            }
        }
        h2 { "Record consent" }
        form method="post" action="/console/consents" novalidate {
            (viewer.csrf_field())
            div.field { label for="c-name" { "Full name of the survivor" } input #c-name type="text" name="full_name" autocomplete="off"; }
            div.field { label for="c-dob" { "Date of birth" } span.hint #c-dob-hint { "For example, 1990-01-31" } input.short #c-dob type="text" name="date_of_birth" aria-describedby="c-dob-hint" autocomplete="off"; }
            div.field {
                label for="c-state" { "What the survivor said" }
                select #c-state name="state" { option value="given" { "Consent given" } option value="refused" { "Consent refused" } option value="not-sought" { "Not sought" } }
            }
            fieldset {
                legend { "Which kinds of agency it covers" }
                div.choices {
                    @for role in isp.policy.roles.keys() {
                        div.choice { input type="checkbox" id=(format!("c-role-{}", role.as_str())) name="roles" value=(role.as_str()); label for=(format!("c-role-{}", role.as_str())) { (role.as_str()) } }
                    }
                }
            }
            fieldset {
                legend { "For which purposes" }
                div.choices {
                    @for (p, text) in &isp.policy.purposes {
                        div.choice { input type="checkbox" id=(format!("c-purpose-{p}")) name="purposes" value=(p); label for=(format!("c-purpose-{p}")) { (text) } }
                    }
                }
            }
            button type="submit" { "Record consent" }
        }
        h2 { "Withdraw consent" }
        p { "Every later disclosure relying on the record is refused, at every agency, including any still waiting to be sent. What was already shared stays." }
        form method="post" action="/console/consents/withdraw" novalidate {
            (viewer.csrf_field())
            div.field { label for="w-id" { "Consent record id" } input.short #w-id type="text" name="consent_id"; }
            div.field { label for="w-reason" { "Reason" } textarea #w-reason name="reason" rows="2" {} }
            button.warning-button type="submit" { "Withdraw consent" }
        }
    };
    viewer.page("Consent", "/console/consents", body)
}

async fn record_consent(State(ctx): State<Ctx>, viewer: Viewer, Form(fields): Posted) -> Response {
    let values = form::Fields(fields);
    let request = json!({
        "state": values.get("state"),
        "subject": {"full_name": values.get("full_name").trim(), "date_of_birth": values.get("date_of_birth").trim()},
        "scope": {"roles": values.all("roles"), "purposes": values.all("purposes")},
    });
    match crate::consent::record(State(ctx.clone()), viewer.staff.clone(), Bytes::from(request.to_string())).await {
        Ok((_, axum::Json(record))) => consents_page(&ctx, &viewer, "", Some(&record), &[]),
        Err(e) => consents_page(&ctx, &viewer, "", None, &[("c-name".into(), PageError::from(e).detail)]),
    }
}

#[derive(Deserialize)]
struct Withdraw {
    #[serde(default)]
    consent_id: String,
    #[serde(default)]
    reason: String,
}

async fn withdraw_consent(State(ctx): State<Ctx>, viewer: Viewer, Form(w): Form<Withdraw>) -> Response {
    if !isp::clear::is_consent_id(w.consent_id.trim()) {
        return consents_page(&ctx, &viewer, "", None, &[("w-id".into(), format!("Enter {}", isp::clear::CONSENT_ID))]);
    }
    let body = json!({"reason": w.reason});
    match crate::consent::withdraw(State(ctx.clone()), Path(w.consent_id.trim().to_owned()), viewer.staff.clone(), Bytes::from(body.to_string())).await {
        Ok(_) => see_other("/console/consents?done=withdrawn"),
        Err(e) => consents_page(&ctx, &viewer, "", None, &[("w-id".into(), PageError::from(e).detail)]),
    }
}

// ---------------------------------------------------------------- access log

#[derive(Deserialize, Default)]
struct AccessFilter {
    #[serde(default)]
    target: String,
}

async fn access_log(State(ctx): State<Ctx>, viewer: Viewer, Query(f): Query<AccessFilter>) -> Response {
    access_page(&ctx.pool, &viewer, &f.target).await
}

/// The access log page of a service (an agency's, or the audit service's own): who opened
/// what, and every refusal, newest first, optionally of one referral.
pub async fn access_page(pool: &sqlx::AnyPool, viewer: &Viewer, target: &str) -> Response {
    let target = target.trim();
    let filtered = isp::clear::is_consent_id(target);
    let rows = if filtered {
        sqlx::query(&format!("SELECT at_ms, staff_id, route, target, outcome FROM access_log WHERE target = $1 ORDER BY at_ms DESC LIMIT {SHOWN}")).bind(target).fetch_all(pool).await
    } else {
        sqlx::query(&format!("SELECT at_ms, staff_id, route, target, outcome FROM access_log ORDER BY at_ms DESC LIMIT {SHOWN}")).fetch_all(pool).await
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return PageError::from(e).page(viewer),
    };
    let body = html! {
        form method="get" action="/console/access-log" {
            div.field {
                label for="target" { "Referral (envelope id)" }
                span.hint #target-hint { "Who opened one referral, and every refused attempt on it" }
                input #target type="search" name="target" value=(if filtered { target } else { "" }) aria-describedby="target-hint";
            }
            button.secondary type="submit" { "Filter" }
        }
        (access_table(&rows))
    };
    viewer.page("Access log", "/console/access-log", body)
}

/// Rows of `at_ms, staff_id, route, target, outcome` as a table.
pub fn access_table(rows: &[sqlx::any::AnyRow]) -> super::Markup {
    html! {
        @if rows.is_empty() { p { "No access is recorded." } } @else {
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Staff" } th scope="col" { "What" } th scope="col" { "Item" } th scope="col" { "Outcome" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td { (when(r.try_get("at_ms").unwrap_or_default())) }
                            td { (r.try_get::<String, _>("staff_id").unwrap_or_default()) }
                            td.mono { (r.try_get::<String, _>("route").unwrap_or_default()) }
                            td.mono { (r.try_get::<String, _>("target").unwrap_or_default()) }
                            td { (tag(&r.try_get::<String, _>("outcome").unwrap_or_default())) }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- witness

/// What this agency's witness of the partnership's ledger has seen: the last checkpoint it
/// accepted and cosigned, and every alert (a checkpoint that did not extend the one before, a
/// signature that did not verify), which the agency raises with the IG office.
async fn witness(State(ctx): State<Ctx>, viewer: Viewer) -> Response {
    let status = match crate::witness::status(State(ctx)).await {
        Ok(axum::Json(v)) => v,
        Err(e) => return PageError::from(e).page(&viewer),
    };
    let last = &status["last_accepted"];
    let alerts = status["alerts"].as_array().cloned().unwrap_or_default();
    let body = html! {
        p { "This service checks every checkpoint the IG office signs: that it is signed by the office's key and that the ledger it commits to only ever grew. It cosigns the ones that pass. An alert here means the ledger may have been rewritten: raise it with the IG office and keep the evidence below." }
        @if alerts.is_empty() {
            div.notice role="status" { h2 { "No alerts" } p { "Every checkpoint seen so far extended the one before." } }
        } @else {
            div.refused role="alert" {
                h2 { (alerts.len()) " alert(s)" }
                table {
                    thead { tr { th scope="col" { "Raised" } th scope="col" { "Entries" } th scope="col" { "What" } } }
                    tbody { @for a in &alerts { tr { td { (when(a["raised_at_ms"].as_i64().unwrap_or_default())) } td { (a["tree_size"]) } td { (a["what"].as_str().unwrap_or_default()) } } } }
                }
            }
        }
        h2 { "Last checkpoint accepted" }
        @if last.is_null() { p { "None yet." } } @else {
            (summary(&[
                ("Entries covered", html! { (last["tree_size"]) }),
                ("Root", html! { span.mono { (last["root"].as_str().unwrap_or_default()) } }),
                ("Checked", when(last["checked_at_ms"].as_i64().unwrap_or_default())),
                ("Cosigned by this agency", html! { (if last["cosigned"].is_string() { "yes" } else { "no" }) }),
            ]))
        }
        p.hint { "Messages on the checkpoint subject that were not checkpoints: " (status["ignored"]) "." }
    };
    viewer.page("Ledger witness", "/console/witness", body)
}
