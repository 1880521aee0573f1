//! The guard every request of a service passes ([`protect`]): the login routes (local
//! accounts, OpenID Connect, the console's sign-in), then for each request its rule, its
//! credential and its role, the CSRF token of a state-changing request, and the record of
//! what must be recorded ([`crate::auth::access`]). Console pages answer as pages: a
//! sign-in page instead of 401, a "not allowed" page instead of 403. The roles, rules and
//! credentials it checks are [`crate::auth`]'s; it sits above them and the console, which
//! both import `auth` and nothing here.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{MatchedPath, RawPathParams, Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::{self, Next},
    response::Response,
};
use serde_json::Value;

use crate::{
    auth::{self, Allow, Credential, Gate, LOG_IN, Record, Rule, credential, finish, refusal, refused, rule},
    console,
};

/// The login routes every service has, and the console's own.
pub const LOGIN: &[Rule] = &[
    rule("GET", "/", Allow::Public),
    rule("GET", console::CSS_PATH, Allow::Public),
    rule("GET", console::login::PATH, Allow::Public),
    rule("POST", console::login::PATH, Allow::Public),
    rule("POST", "/console/logout", Allow::AnyStaff),
    rule("GET", "/health", Allow::Public),
    rule("GET", "/ready", Allow::Public),
    rule("GET", "/openapi.json", Allow::AnyStaff),
    rule("POST", "/login", Allow::Public),
    rule("GET", "/login/oidc", Allow::Public),
    rule("GET", "/login/oidc/callback", Allow::Public),
    rule("POST", "/logout", Allow::AnyStaff),
    rule("GET", "/session", Allow::AnyStaff),
];

/// The service's routes behind the guard, with the login routes and the console's shell
/// added: `title` is the service's name in its pages, `nav` its pages' navigation.
pub fn protect(app: Router, mut gate: Gate, title: &str, nav: Vec<console::Nav>) -> Router {
    gate.rules = Arc::new(LOGIN.iter().chain(gate.rules.iter()).copied().collect());
    let shell = Arc::new(console::Shell { title: title.to_owned(), agency: gate.agency.clone(), nav, rules: gate.rules.clone() });
    let own = auth::local::routes()
        .merge(auth::access::routes())
        .merge(console::login::routes())
        .route("/openapi.json", axum::routing::get(openapi));
    app.merge(own.with_state(gate.clone()))
        .route_layer(middleware::from_fn_with_state(gate, guard))
        .layer(axum::Extension(shell))
        .layer(middleware::from_fn(console::security_headers))
}

/// `GET /openapi.json`: this service's API, from its rule table.
async fn openapi(State(gate): State<Gate>) -> Json<Value> {
    Json(gate.openapi.get_or_init(|| crate::openapi::document(&format!("{} (referral hub)", gate.agency), &gate.agency, &gate.rules)).clone())
}

fn csrf_ok(headers: &HeaderMap, expected: &str) -> bool {
    headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).is_some_and(|v| same_token(v, expected))
}

/// The id a route names (`{id}`, `{reference}`), when it is an envelope id, a consent id or
/// a reference of the clear grammars; anything else is left out of the record (it could be
/// whatever an attacker typed).
fn target(params: &RawPathParams) -> String {
    params.iter().map(|(_, v)| v).find(|v| isp::clear::is_consent_id(v)).unwrap_or_default().to_owned()
}

/// Whether the `Origin` of a request, when it has one, is the service's own (`Host`): a form
/// of the console posts from the service's own pages, never from another site's.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let authority = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, rest)| rest).unwrap_or_default();
    !host.is_empty() && authority.eq_ignore_ascii_case(host)
}

/// The largest console form the guard reads for its CSRF field; the service's body limit
/// applies before this.
const FORM_MAX: usize = 2 * 1024 * 1024;

/// A console form's CSRF field, read from its body; the request is rebuilt with the same body.
async fn form_csrf(request: Request) -> Result<(Request, Option<String>), Response> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_MAX)
        .await
        .map_err(|_| refusal(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the form is larger than the service takes"))?;
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|fields| fields.into_iter().find(|(k, _)| k == console::CSRF_FIELD).map(|(_, v)| v));
    Ok((Request::from_parts(parts, axum::body::Body::from(bytes)), token))
}

fn same_token(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// Checks the login and the role for every request, then records what must be recorded.
/// Console pages ([`console::is_page`]) answer as pages: a login page instead of 401,
/// a "not allowed" page instead of 403; their forms carry the CSRF token as a field.
async fn guard(State(gate): State<Gate>, matched: Option<MatchedPath>, params: RawPathParams, mut request: Request, next: Next) -> Response {
    let path = matched.as_ref().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let method = request.method().clone();
    let page = console::is_page(&path);
    let Some(rule) = gate.rule(&method, &path).copied() else {
        tracing::error!(%method, route = %path, "a route has no rule in the role table; nobody may call it");
        return refusal(StatusCode::FORBIDDEN, "forbidden", "this route is not open to any role");
    };
    let changes = !matches!(method, Method::GET | Method::HEAD);
    if page && changes && !same_origin(request.headers()) {
        return console::form_expired(&gate.agency);
    }
    if matches!(rule.allow, Allow::Public) {
        return next.run(request).await;
    }
    let mut record = isp::access::Access { staff_id: String::new(), route: rule.name(), target: target(&params), outcome: String::new(), at_ms: isp::now_ms() };
    let credential = match credential(&gate, request.headers()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the login cannot be checked");
            return refusal(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "logins cannot be checked now; try again");
        }
    };
    let (staff, csrf) = match credential {
        Credential::Session { staff, csrf } => (staff, Some(csrf)),
        Credential::Bearer(staff) => (staff, None),
        Credential::None | Credential::Refused(_) => {
            let detail = match credential {
                Credential::Refused(why) => why,
                _ => LOG_IN,
            };
            record.outcome = "unauthenticated".into();
            let answer = if page { console::see_other(console::login::PATH) } else { refusal(StatusCode::UNAUTHORIZED, "unauthenticated", detail) };
            return refused(&gate, record, answer).await;
        }
    };
    record.staff_id = staff.id.clone();
    if let (true, Some(expected)) = (changes, csrf.as_deref()) {
        let good = if csrf_ok(request.headers(), expected) {
            true
        } else if page {
            let (rebuilt, token) = match form_csrf(request).await {
                Ok(read) => read,
                Err(response) => return response,
            };
            request = rebuilt;
            token.is_some_and(|t| same_token(&t, expected))
        } else {
            false
        };
        if !good {
            record.outcome = "csrf".into();
            let answer = if page {
                console::form_expired(&gate.agency)
            } else {
                refusal(StatusCode::FORBIDDEN, "csrf", "a request that changes something needs the X-CSRF-Token header of the session")
            };
            return finish(&gate, record, true, answer).await;
        }
    }
    if !rule.allows(&staff.roles) {
        record.outcome = "forbidden".into();
        let answer = if page { console::not_allowed(&gate.agency) } else { refusal(StatusCode::FORBIDDEN, "forbidden", "none of your roles may do this") };
        return finish(&gate, record, true, answer).await;
    }
    request.extensions_mut().insert(console::Csrf(csrf.unwrap_or_default()));
    request.extensions_mut().insert(staff);
    let response = next.run(request).await;
    let status = response.status();
    record.outcome = match status {
        s if s.is_success() => "allowed",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::GONE => "gone",
        s if s.is_server_error() => "failed",
        s if s == StatusCode::FORBIDDEN => "refused",
        _ => "invalid",
    }
    .into();
    // Reads of content are recorded whatever came of them; anything else when it was refused
    // (by the ISP, say) or failed.
    let refused = matches!(status, StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS) || status.is_server_error();
    match rule.record {
        _ if refused => finish(&gate, record, true, response).await,
        // Asking for an item that is not there shows nothing: the service's log keeps it.
        Record::Everywhere if status == StatusCode::NOT_FOUND => finish(&gate, record, false, response).await,
        Record::Everywhere => finish(&gate, record, true, response).await,
        Record::Locally => finish(&gate, record, false, response).await,
        Record::Refusals => response,
    }
}

#[cfg(test)]
mod tests {
    use super::LOGIN;
    use crate::auth::GENERIC;

    #[test]
    fn every_rule_is_a_documented_operation_with_its_security() {
        let rules: Vec<_> = LOGIN.iter().chain(GENERIC).copied().collect();
        let doc = crate::openapi::document("test", "housing-riverside", &rules);
        for rule in &rules {
            if crate::console::is_page(rule.path) {
                assert!(doc["paths"][rule.path].is_null(), "the console's page {} is in the API document", rule.path);
                continue;
            }
            let op = &doc["paths"][rule.path][rule.method.to_lowercase()];
            assert!(op.is_object(), "{} {} is not documented", rule.method, rule.path);
            let public = matches!(rule.allow, crate::auth::Allow::Public);
            assert_eq!(op["security"].as_array().unwrap().is_empty(), public, "{} {}", rule.method, rule.path);
        }
        assert_eq!(doc["paths"]["/inbox/{id}"]["get"]["parameters"][0]["name"], "id");
        assert_eq!(doc["paths"]["/inbox"]["get"]["parameters"][0]["name"], "limit");
    }
}
