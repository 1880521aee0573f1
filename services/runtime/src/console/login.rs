//! The console's sign-in and sign-out: the same accounts, sessions, lockout and access log as
//! `POST /login` ([`crate::auth::local`]), as a form.

use axum::{
    Form, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::{Markup, bare_page, error_summary, html, see_other};
use crate::auth::{
    Gate,
    local::{self, Attempt},
};

pub const PATH: &str = "/console/login";

pub fn routes() -> Router<Gate> {
    Router::new()
        .route("/", get(|| async { see_other("/console") }))
        .route(super::CSS_PATH, get(super::stylesheet))
        .route(PATH, get(page).post(sign_in))
        .route("/console/logout", post(sign_out))
}

/// The sign-in form's own token against login CSRF (someone else's site signing a browser in
/// to an account of theirs): a random value in a cookie for this page only and in the form;
/// a sign-in whose two do not match is refused. The `Origin` check refuses most such posts
/// already; this holds where a browser sends none.
const LOGIN_TOKEN: &str = "login_token";

fn login_cookie(agency: &str) -> String {
    format!("hub_login_{agency}")
}

/// A fresh sign-in token and the cookie that carries it (an hour, this path only).
fn login_token(agency: &str) -> (String, HeaderValue) {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let cookie = cookie::Cookie::build((login_cookie(agency), token.clone()))
        .path(PATH)
        .secure(true)
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .max_age(cookie::time::Duration::hours(1))
        .build();
    (token, HeaderValue::from_str(&cookie.to_string()).expect("a cookie of base64url is a valid header"))
}

/// Whether a posted sign-in carries the token its page set.
fn token_matches(headers: &HeaderMap, agency: &str, posted: &str) -> bool {
    local::cookie_value(headers, &login_cookie(agency)).is_some_and(|set| !posted.is_empty() && bool::from(subtle::ConstantTimeEq::ct_eq(set.as_bytes(), posted.as_bytes())))
}

/// The sign-in page (with a problem to show, and its status), with a fresh token.
fn sign_in_page(gate: &Gate, status: StatusCode, problem: Option<&str>) -> Response {
    let (token, cookie) = login_token(&gate.agency);
    let mut response = bare_page(status, "Sign in", &gate.agency, form(gate, &token, problem));
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

fn form(gate: &Gate, token: &str, problem: Option<&str>) -> Markup {
    html! {
        @if let Some(problem) = problem {
            (error_summary(&[("staff_id".into(), problem.into())]))
        }
        form method="post" action=(PATH) novalidate {
            input type="hidden" name=(LOGIN_TOKEN) value=(token);
            div.field.error[problem.is_some()] {
                label for="staff_id" { "Staff id" }
                span.hint #staff_id-hint { "The login id your agency's administrator gave you, like hsg.caseworker" }
                input #staff_id type="text" name="staff_id" autocomplete="username" spellcheck="false" aria-describedby="staff_id-hint" autofocus;
            }
            div.field {
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password";
            }
            button type="submit" { "Sign in" }
        }
        @if gate.oidc.is_some() {
            p { a href="/login/oidc" { "Sign in with your organisation's account" } }
        }
        p.hint { "After " (local::LOCKOUT_AFTER) " wrong passwords in a row the account is locked for " (local::LOCKOUT.as_secs() / 60) " minutes. Sessions end after " (local::SESSION_IDLE.as_secs() / 60) " minutes without use." }
    }
}

/// `GET /console/login`.
async fn page(State(gate): State<Gate>) -> Response {
    sign_in_page(&gate, StatusCode::OK, None)
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    staff_id: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    login_token: String,
}

/// `POST /console/login`: on success a session cookie and on to the dashboard; otherwise the
/// form again, saying what went wrong without saying whether the id exists.
async fn sign_in(State(gate): State<Gate>, headers: HeaderMap, Form(input): Form<SignIn>) -> Response {
    if !token_matches(&headers, &gate.agency, &input.login_token) {
        return sign_in_page(&gate, StatusCode::BAD_REQUEST, Some("This sign-in form has expired or did not come from this service; sign in again"));
    }
    let (attempt, record) = local::attempt(&gate, "POST /console/login", input.staff_id.trim(), &input.password).await;
    let again = |status: StatusCode, problem: &str| sign_in_page(&gate, status, Some(problem));
    let answer = match attempt {
        Attempt::Ok(_, token, _, _) => {
            let mut response = see_other("/console");
            response.headers_mut().insert(header::SET_COOKIE, local::set_cookie(&gate.agency, &token, local::SESSION_MAX));
            response
        }
        Attempt::Refused => again(StatusCode::UNAUTHORIZED, "The staff id or password is not right"),
        Attempt::Locked => again(StatusCode::TOO_MANY_REQUESTS, &format!("This account is {}", local::locked_detail())),
        Attempt::Unavailable => again(StatusCode::SERVICE_UNAVAILABLE, "Sign-in is not working at the moment; try again in a few minutes"),
    };
    local::keep(&gate, record, answer).await
}

/// `POST /console/logout`.
async fn sign_out(State(gate): State<Gate>, headers: HeaderMap) -> Response {
    if let Err(e) = local::end_session(&gate, &headers).await {
        tracing::error!(error = %e, "a session could not be ended");
        return bare_page(StatusCode::SERVICE_UNAVAILABLE, "Sign out", &gate.agency, html! { p { "The session could not be ended; try again." } });
    }
    let mut response = bare_page(
        StatusCode::OK,
        "You have signed out",
        &gate.agency,
        html! { p { "Close the browser window if you are on a shared computer." } p { a href=(PATH) { "Sign in again" } } },
    )
    .into_response();
    response.headers_mut().insert(header::SET_COOKIE, local::clear_cookie(&gate.agency));
    response
}
