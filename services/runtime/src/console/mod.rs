//! The web console: the pages staff use in a browser, served by each service itself.
//!
//! - Server-rendered HTML from [`maud`] templates (checked at compile time; every value
//!   escaped), no JavaScript at all, nothing fetched from elsewhere: one stylesheet of the
//!   project's own ([`CSS`]), in the GOV.UK Design System's patterns.
//! - Every page is a route of the service's rule table like any API route ([`crate::auth`]):
//!   no page without a login and a role; a page whose rule does not allow the viewer answers
//!   "not allowed" and the attempt is in the access log. The navigation shows only pages the
//!   viewer's roles may open, read from the same table.
//! - Forms post back to the service with the session's CSRF token as a hidden field (the
//!   guard checks it, and the `Origin`); survivor details travel only in POST bodies, never
//!   in a URL. Every answer carries a strict Content-Security-Policy and `no-store`.
//! - Adding a page is one handler returning [`Viewer::page`] and one [`crate::auth::Rule`]
//!   (plus a [`Nav`] entry when it belongs in the navigation).

pub mod casework;
pub mod form;
pub mod login;
pub mod pages;

use std::sync::Arc;

use axum::{
    extract::FromRequestParts,
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
pub use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::{
    error::ApiError,
    auth::{Rule, Staff},
};

/// The console's stylesheet, served at [`CSS_PATH`].
pub const CSS: &str = include_str!("style.css");
pub const CSS_PATH: &str = "/console/style.css";

/// Every answer of a service carries this: no script, no frame, nothing from elsewhere, forms
/// only back to the service.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Whether a route is one of the console's (pages and their forms), which answer in HTML.
pub fn is_page(path: &str) -> bool {
    path == "/" || path == "/console" || path.starts_with("/console/")
}

/// The name of the hidden form field carrying the session's CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

/// The session's CSRF token, which the guard puts beside the [`Staff`] of a logged-in request.
#[derive(Debug, Clone)]
pub struct Csrf(pub String);

/// One entry of a service's navigation: shown to those whose roles the `GET` rule of `href`
/// allows.
#[derive(Debug, Clone, Copy)]
pub struct Nav {
    pub href: &'static str,
    pub label: &'static str,
}

/// What a service's pages share: its name, its navigation and its rule table.
pub struct Shell {
    /// The agency (or the IG office) as the directory names it.
    pub title: String,
    /// Its id, shown beside the name.
    pub agency: String,
    pub nav: Vec<Nav>,
    pub rules: Arc<Vec<Rule>>,
}

impl Shell {
    /// Whether `staff` may open the page at `href` (a route of the rule table).
    pub fn may_open(&self, staff: &Staff, href: &str) -> bool {
        self.rules.iter().any(|r| r.method == "GET" && r.path == href && r.allows(&staff.roles))
    }

    /// Whether `staff` may use the route `method path`.
    pub fn may(&self, staff: &Staff, method: &str, path: &str) -> bool {
        self.rules.iter().any(|r| r.method == method && r.path == path && r.allows(&staff.roles))
    }
}

/// The logged-in staff member a page is for, with the session's CSRF token and the shell.
pub struct Viewer {
    pub staff: Staff,
    pub csrf: String,
    pub shell: Arc<Shell>,
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Viewer, Response> {
        let staff = Staff::from_request_parts(parts, state).await?;
        let csrf = parts.extensions.get::<Csrf>().map(|c| c.0.clone()).unwrap_or_default();
        let shell = parts.extensions.get::<Arc<Shell>>().cloned().ok_or_else(|| {
            tracing::error!("a console page was routed without the service's shell");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        })?;
        Ok(Viewer { staff, csrf, shell })
    }
}

impl Viewer {
    /// A page of the console: the layout around `body`, `current` marking the navigation.
    pub fn page(&self, title: &str, current: &str, body: Markup) -> Response {
        html_response(StatusCode::OK, self.layout(title, current, body))
    }

    /// The layout with the viewer's account and navigation.
    pub fn layout(&self, title: &str, current: &str, body: Markup) -> Markup {
        let shell = &self.shell;
        let nav: Vec<&Nav> = shell.nav.iter().filter(|n| shell.may_open(&self.staff, n.href)).collect();
        document(
            title,
            &shell.title,
            html! {
                header.header {
                    div.width {
                        div {
                            a.service-name href="/console" { "Referral hub" }
                            span.service-agency { (shell.title) " (" (shell.agency) ")" }
                        }
                        div.account {
                            span { "Signed in as " strong { (self.staff.id) } " (" (crate::auth::Role::join(&self.staff.roles).replace(',', ", ")) ")" }
                            form method="post" action="/console/logout" {
                                (self.csrf_field())
                                button.link-button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                @if !nav.is_empty() {
                    nav.service-nav aria-label="Service" {
                        ul {
                            @for n in nav {
                                @let here = n.href == current;
                                li class=[here.then_some("current")] {
                                    a href=(n.href) aria-current=[here.then_some("page")] { (n.label) }
                                }
                            }
                        }
                    }
                }
            },
            body,
        )
    }

    /// The hidden CSRF field every form of a logged-in page carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name=(CSRF_FIELD) value=(self.csrf); }
    }

    /// An error page within the layout.
    pub fn error(&self, status: StatusCode, title: &str, detail: &str) -> Response {
        html_response(status, self.layout(title, "", html! { p.lead { (detail) } p { a href="/console" { "Back to the dashboard" } } }))
    }
}

/// A whole HTML document: `banner` (header and navigation) then `body` under an `h1` of `title`.
pub fn document(title: &str, service: &str, banner: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – " (service) " – Referral hub" }
                link rel="stylesheet" href=(CSS_PATH);
            }
            body {
                a.skip-link href="#main" { "Skip to main content" }
                (banner)
                main #main .width tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
                footer {
                    div.width {
                        p { "Multi-agency referral hub. Every disclosure is decided by the partnership's information-sharing protocol and recorded in its ledger; every opening of a referral is in the access log." }
                    }
                }
            }
        }
    }
}

/// A page for someone not logged in (the login page, a refusal before login).
pub fn bare_page(status: StatusCode, title: &str, service: &str, body: Markup) -> Response {
    let banner = html! {
        header.header {
            div.width {
                div {
                    span.service-name { "Referral hub" }
                    span.service-agency { (service) }
                }
            }
        }
    };
    html_response(status, document(title, service, banner, body))
}

pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// A redirect after a form (303: the browser follows with GET).
pub fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// `GET /console/style.css`.
pub async fn stylesheet() -> Response {
    let mut response = CSS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

/// The headers every answer of a service carries (pages, JSON and errors alike): the strict
/// CSP, no sniffing, no referrer to other sites (same-origin: with none at all a browser
/// sends `Origin: null` on forms, which the guard refuses), no framing, and nothing kept in caches (answers carry
/// referrals), but for the stylesheet.
pub async fn security_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let cacheable = request.uri().path() == CSS_PATH;
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !cacheable {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// An error of a console page: shown as a page, its detail free of request content (it comes
/// from an [`ApiError`], whose details never echo what was sent).
pub struct PageError {
    pub status: StatusCode,
    pub detail: String,
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        let detail = e.body["detail"].as_str().unwrap_or("the request could not be completed").to_owned();
        PageError { status: e.status, detail }
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> PageError {
        ApiError::from(e).into()
    }
}

impl PageError {
    pub fn not_found(what: &str) -> PageError {
        PageError { status: StatusCode::NOT_FOUND, detail: format!("There is no {what} with that id.") }
    }

    /// The page showing this error to `viewer`.
    pub fn page(self, viewer: &Viewer) -> Response {
        let title = match self.status {
            StatusCode::NOT_FOUND => "Page not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::GONE => "No longer available",
            s if s.is_server_error() => "Sorry, there is a problem with the service",
            _ => "There is a problem",
        };
        viewer.error(self.status, title, &self.detail)
    }
}

/// The page a person sees when their role does not allow the page (or the form) they asked
/// for. Rendered by the guard, which has recorded the attempt in the access log.
pub fn not_allowed(service: &str) -> Response {
    bare_page(
        StatusCode::FORBIDDEN,
        "You are not allowed to see this page",
        service,
        html! {
            p.lead { "None of your roles may open this page or use this form." }
            p { "Your attempt has been recorded in the access log. If you need this page for your work, ask your agency's administrator for the role." }
            p { a href="/console" { "Back to the dashboard" } }
        },
    )
}

/// The page for a form whose CSRF token or origin did not match the session.
pub fn form_expired(service: &str) -> Response {
    bare_page(
        StatusCode::FORBIDDEN,
        "This form has expired",
        service,
        html! {
            p.lead { "The form was not sent from this service's own page in your current session, so nothing was done." }
            p { "Go back, reload the page and try again." }
            p { a href="/console" { "Back to the dashboard" } }
        },
    )
}

/// A date and time of the console: UTC, as `27 Nov 2026 14:05`, in a `<time>` element.
pub fn when(ms: i64) -> Markup {
    if ms <= 0 {
        return html! { "–" };
    }
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000) else { return html! { "–" } };
    let iso = t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let shown = t.format(time::macros::format_description!("[day padding:none] [month repr:short] [year] [hour]:[minute] UTC")).unwrap_or_default();
    html! { time datetime=(iso) { (shown) } }
}

/// A status as a coloured tag; the colour follows what the status means for the reader.
pub fn tag(status: &str) -> Markup {
    let colour = match status {
        "new" | "published" | "received" | "delivered" | "given" => "blue",
        "accepted" | "allowed" | "verified" | "ok" => "green",
        "declined" | "denied" | "revoked" | "revocation_confirmed" | "stopped" | "refused" | "withdrawn" | "high" | "overdue" | "failed" | "forbidden" => "red",
        "queued" | "medium" | "pending" | "expired" => "yellow",
        "without consent" => "purple",
        _ => "grey",
    };
    let label = status.replace('_', " ");
    html! { strong class=(format!("tag tag-{colour}")) { (label) } }
}

/// A summary list (`dl`): label and value pairs.
pub fn summary(rows: &[(&str, Markup)]) -> Markup {
    html! {
        dl.summary {
            @for (label, value) in rows {
                div { dt { (label) } dd { (value) } }
            }
        }
    }
}

/// A comma-less list of categories, or "none".
pub fn categories(list: &[String]) -> Markup {
    html! {
        @if list.is_empty() { "none" } @else {
            @for (i, c) in list.iter().enumerate() { @if i > 0 { ", " } span.mono { (c) } }
        }
    }
}

/// An error summary at the top of a form: each problem linking to its field.
pub fn error_summary(errors: &[(String, String)]) -> Markup {
    html! {
        @if !errors.is_empty() {
            div.error-summary role="alert" aria-labelledby="error-summary-title" tabindex="-1" {
                h2 #error-summary-title { "There is a problem" }
                ul {
                    @for (field, message) in errors {
                        li { a href=(format!("#{field}")) { (message) } }
                    }
                }
            }
        }
    }
}

/// One step of a [`timeline`].
pub struct Step {
    pub at_ms: i64,
    pub what: String,
    pub detail: String,
}

/// A vertical timeline, oldest first.
pub fn timeline(steps: &[Step]) -> Markup {
    html! {
        ol.timeline {
            @for s in steps {
                li {
                    span.what { (s.what) }
                    span.when { (when(s.at_ms)) }
                    @if !s.detail.is_empty() { span { (s.detail) } }
                }
            }
        }
    }
}

/// A bar chart as a table: each row its label, its figure and a bar drawn in SVG beside
/// them (attributes only: the CSP allows no inline style). The bars are hidden from screen
/// readers, which read the figures.
pub fn bar_chart(caption: &str, bars: &[(String, i64)], alert: &dyn Fn(&str) -> bool) -> Markup {
    const WIDTH: i64 = 300;
    let max = bars.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    html! {
        table.chart {
            caption { (caption) }
            thead { tr { th scope="col" { "What" } th.number scope="col" { "Number" } th scope="col" { span.visually-hidden { "Bar" } } } }
            tbody {
                @for (label, n) in bars {
                    @let w = (n * WIDTH / max).max(if *n > 0 { 2 } else { 0 });
                    tr {
                        th scope="row" { (label) }
                        td.number { (n) }
                        td.bar-cell {
                            svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height="18" viewBox=(format!("0 0 {WIDTH} 18")) aria-hidden="true" focusable="false" {
                                rect class=(if alert(label) { "bar alert" } else { "bar" }) x="0" y="2" height="14" width=(w);
                            }
                        }
                    }
                }
            }
        }
    }
}
