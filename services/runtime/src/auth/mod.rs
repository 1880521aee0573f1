//! Staff identity: nothing but `/health` and the login answers without a login, and the
//! role table below decides what each login may do.
//!
//! - Who: a staff member logs in with a local account ([`local`]: argon2id password, a session
//!   cookie that is `Secure; HttpOnly; SameSite=Strict`, CSRF token on every state-changing
//!   request, lockout after repeated failures). The login id becomes the [`Staff`] every
//!   handler takes: who recorded consent, who shared without it, who opened or answered a
//!   referral comes from it, never from the request body.
//! - What: [`Rule`]s, one per route, in one table per service ([`GENERIC`] for what every
//!   agency service serves, the agency crates' own, the audit service's). A route without a
//!   rule answers nobody. `tests/tests/e2e/roles.rs` walks every rule with every role.
//! - Afterwards: every read of content and every refused or failed attempt is recorded
//!   ([`access`]): a row in the service's database and a signed `accessed` event in the
//!   ledger, in one transaction; a read whose record cannot be written is not answered.

pub mod access;
pub mod local;

use std::{fmt, str::FromStr, sync::Arc};

use axum::{
    Json, Router,
    extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State},
    http::{HeaderMap, Method, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::{Value, json};

pub use access::AccessSink;

/// What a staff member does in the partnership; a person may hold several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Works cases at an agency: records consent, sends and answers referrals, reads them.
    Caseworker,
    /// Oversees an agency's cases; may also revoke a disclosure sent in error.
    TeamManager,
    /// Runs the agency's service: its quarantine, its witness of the ledger, its access log.
    AgencyAdmin,
    /// Runs the MARAC: its cases, research and actions.
    MaracCoordinator,
    /// Runs the managed reciprocals scheme: applications, circulation, fairness.
    ReciprocalsCoordinator,
    /// Information governance: reviews what was shared and why, and who looked; never sends.
    IgLead,
    /// Reads the ledger, its proofs and reports (the IG office and external auditors).
    Auditor,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Caseworker,
        Role::TeamManager,
        Role::AgencyAdmin,
        Role::MaracCoordinator,
        Role::ReciprocalsCoordinator,
        Role::IgLead,
        Role::Auditor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Caseworker => "caseworker",
            Role::TeamManager => "team-manager",
            Role::AgencyAdmin => "agency-admin",
            Role::MaracCoordinator => "marac-coordinator",
            Role::ReciprocalsCoordinator => "reciprocals-coordinator",
            Role::IgLead => "ig-lead",
            Role::Auditor => "auditor",
        }
    }

    /// A comma list of role names, as stored; unknown names are an error.
    pub fn parse_list(list: &str) -> Result<Vec<Role>, UnknownRole> {
        let mut roles: Vec<Role> = list.split(',').filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_, _>>()?;
        roles.sort();
        roles.dedup();
        Ok(roles)
    }

    pub fn join(roles: &[Role]) -> String {
        roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(",")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown role (caseworker, team-manager, agency-admin, marac-coordinator, reciprocals-coordinator, ig-lead, auditor)")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL.into_iter().find(|r| r.name() == s).ok_or(UnknownRole)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
pub enum Allow {
    /// Anyone: `/health` and the login.
    Public,
    /// Any logged-in staff member (their own session).
    AnyStaff,
    /// A logged-in staff member holding one of these roles.
    Roles(&'static [Role]),
}

/// What of a route's calls the access log keeps. Every refused or failed call is always
/// recorded in the service's database and the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Only refused or failed calls.
    Refusals,
    /// Every call, in the service's database; refused or failed ones in the ledger too. For
    /// the audit service's reads of the ledger itself: a ledger that recorded its own reading
    /// would change with every read, so no reader (and no witness) could ever see it settled.
    Locally,
    /// Every call, in the database and the ledger: the answer carries content (a referral, a
    /// case, a report).
    Everywhere,
}

/// One route and who may call it.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    /// The route as the router names it, e.g. `/inbox/{id}`.
    pub path: &'static str,
    pub allow: Allow,
    pub record: Record,
}

impl Rule {
    pub fn allows(&self, roles: &[Role]) -> bool {
        match self.allow {
            Allow::Public | Allow::AnyStaff => true,
            Allow::Roles(allowed) => roles.iter().any(|r| allowed.contains(r)),
        }
    }

    /// `GET /inbox/{id}`: how the access log names the route.
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A route whose refused or failed calls are recorded.
pub const fn rule(method: &'static str, path: &'static str, allow: Allow) -> Rule {
    Rule { method, path, allow, record: Record::Refusals }
}

/// A route that answers with content: every call is recorded, in the ledger too.
pub const fn content(method: &'static str, path: &'static str, allow: Allow) -> Rule {
    Rule { method, path, allow, record: Record::Everywhere }
}

/// A route every call of which is recorded in the service's own access log.
pub const fn logged(method: &'static str, path: &'static str, allow: Allow) -> Rule {
    Rule { method, path, allow, record: Record::Locally }
}

use Role::*;

/// Staff who work cases, whatever the agency's role.
pub const CASEWORK: &[Role] = &[Caseworker, TeamManager, MaracCoordinator, ReciprocalsCoordinator];
const CASEWORK_AND_IG: &[Role] = &[Caseworker, TeamManager, MaracCoordinator, ReciprocalsCoordinator, IgLead];
const OVERSIGHT: &[Role] = &[TeamManager, AgencyAdmin, IgLead];
const ADMIN_AND_IG: &[Role] = &[AgencyAdmin, IgLead];

/// The login routes every service has, and the console's own.
pub const LOGIN: &[Rule] = &[
    rule("GET", "/", Allow::Public),
    rule("GET", crate::console::CSS_PATH, Allow::Public),
    rule("GET", crate::console::login::PATH, Allow::Public),
    rule("POST", crate::console::login::PATH, Allow::Public),
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

/// The routes every agency service has ([`crate::api::router`]).
pub const GENERIC: &[Rule] = &[
    rule("POST", "/disclosures", Allow::Roles(CASEWORK)),
    rule("GET", "/disclosures", Allow::Roles(CASEWORK_AND_IG)),
    rule("GET", "/disclosures/{id}", Allow::Roles(CASEWORK_AND_IG)),
    rule("POST", "/disclosures/{id}/revoke", Allow::Roles(&[TeamManager, IgLead])),
    rule("GET", "/inbox", Allow::Roles(CASEWORK)),
    content("GET", "/inbox/{id}", Allow::Roles(CASEWORK)),
    rule("POST", "/inbox/{id}/ack", Allow::Roles(CASEWORK)),
    rule("GET", "/quarantine", Allow::Roles(OVERSIGHT)),
    rule("POST", "/consents", Allow::Roles(CASEWORK)),
    rule("GET", "/consents/{id}", Allow::Roles(CASEWORK_AND_IG)),
    rule("POST", "/consents/{id}/withdraw", Allow::Roles(CASEWORK)),
    rule("GET", "/witness", Allow::Roles(ADMIN_AND_IG)),
    logged("GET", "/access-log", Allow::Roles(ADMIN_AND_IG)),
    rule("GET", "/metrics", Allow::Roles(&[AgencyAdmin, IgLead])),
    rule("GET", "/deadlines", Allow::Roles(CASEWORK)),
    content("GET", "/people/{subject_ref}", Allow::Roles(CASEWORK)),
    rule("POST", "/people/{subject_ref}/notes", Allow::Roles(CASEWORK)),
    content("GET", "/flags", Allow::Roles(CASEWORK)),
    rule("POST", "/flags", Allow::Roles(CASEWORK)),
    rule("POST", "/flags/{id}/clear", Allow::Roles(&[Caseworker, TeamManager])),
    rule("POST", "/dash-assessments", Allow::Roles(&[Caseworker, TeamManager])),
    content("GET", "/dash-assessments", Allow::Roles(&[Caseworker, TeamManager])),
    content("GET", "/dash-assessments/{id}", Allow::Roles(&[Caseworker, TeamManager])),
];

/// The logged-in staff member a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    /// The login id: what the ledger and the records name.
    pub id: String,
    pub roles: Vec<Role>,
}

impl<S: Send + Sync> FromRequestParts<S> for Staff {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Staff, Response> {
        parts.extensions.get::<Staff>().cloned().ok_or_else(|| refusal(StatusCode::UNAUTHORIZED, "unauthenticated", LOG_IN))
    }
}

/// Everything the guard needs: the service's login database, its table of rules and where
/// accesses are recorded.
#[derive(Clone)]
pub struct Gate {
    /// The agency whose staff this service serves: a token or login for another is refused.
    pub agency: String,
    pub pool: sqlx::AnyPool,
    pub rules: Arc<Vec<Rule>>,
    pub access: Arc<dyn AccessSink>,
    /// The partnership's identity provider, when one is configured.
    pub oidc: Option<crate::oidc::Oidc>,
    /// Refusals of callers with no login recorded this minute (see [`ANONYMOUS_PER_MINUTE`]).
    anonymous: Arc<std::sync::Mutex<(i64, u32)>>,
    /// `/openapi.json`, made once from the rules.
    openapi: Arc<std::sync::OnceLock<Value>>,
}

/// How many refusals of callers with no login a service records a minute. They go to its own
/// access log only, never the ledger: anyone who reaches the port can make them, so each
/// must not cost a signed event, a broker message and a permanent ledger entry, and past this
/// many a minute they are counted in a log line instead of stored one by one.
pub const ANONYMOUS_PER_MINUTE: u32 = 600;

impl Gate {
    pub fn new(agency: &str, pool: sqlx::AnyPool, tables: &[&[Rule]], access: Arc<dyn AccessSink>) -> Gate {
        let mut rules: Vec<Rule> = LOGIN.to_vec();
        for table in tables {
            rules.extend_from_slice(table);
        }
        Gate { agency: agency.to_owned(), pool, rules: Arc::new(rules), access, oidc: None, anonymous: Default::default(), openapi: Default::default() }
    }

    /// Whether one more refusal of a caller with no login may be stored this minute.
    fn anonymous_record(&self) -> bool {
        let minute = isp::now_ms() / 60_000;
        let mut seen = self.anonymous.lock().expect("never poisoned");
        if seen.0 != minute {
            if seen.1 > ANONYMOUS_PER_MINUTE {
                tracing::warn!(refusals = seen.1, "requests with no login were refused last minute beyond those recorded");
            }
            *seen = (minute, 0);
        }
        seen.1 += 1;
        seen.1 <= ANONYMOUS_PER_MINUTE
    }

    /// A staff member as the identity provider vouches for them: its subject is the staff
    /// id, its roles the ones this code knows; the agency it names must be this service's.
    pub fn staff_of(&self, identity: crate::oidc::OidcIdentity) -> Result<Staff, &'static str> {
        if identity.agency.as_deref() != Some(self.agency.as_str()) {
            return Err("the identity provider says this login is not of this agency's staff");
        }
        if !local::valid_staff_id(&identity.subject) {
            return Err("the identity provider's subject is not a usable staff id (2-64 of a-z 0-9 . _ -)");
        }
        let mut roles: Vec<Role> = identity.roles.iter().filter_map(|r| r.parse().ok()).collect();
        roles.sort();
        roles.dedup();
        Ok(Staff { id: identity.subject, roles })
    }

    fn rule(&self, method: &Method, path: &str) -> Option<&Rule> {
        let method = if method == Method::HEAD { "GET" } else { method.as_str() };
        self.rules.iter().find(|r| r.method == method && r.path == path)
    }
}

/// The service's routes behind the guard, with the login routes and the console's shell
/// added: `title` is the service's name in its pages, `nav` its pages' navigation.
pub fn protect(app: Router, gate: Gate, title: &str, nav: Vec<crate::console::Nav>) -> Router {
    let shell = Arc::new(crate::console::Shell { title: title.to_owned(), agency: gate.agency.clone(), nav, rules: gate.rules.clone() });
    let own = local::routes()
        .merge(access::routes())
        .merge(crate::console::login::routes())
        .route("/openapi.json", axum::routing::get(openapi));
    app.merge(own.with_state(gate.clone()))
        .route_layer(middleware::from_fn_with_state(gate, guard))
        .layer(axum::Extension(shell))
        .layer(middleware::from_fn(crate::console::security_headers))
}

/// `GET /openapi.json`: this service's API, from its rule table.
async fn openapi(State(gate): State<Gate>) -> Json<Value> {
    Json(gate.openapi.get_or_init(|| crate::openapi::document(&format!("{} (referral hub)", gate.agency), &gate.agency, &gate.rules)).clone())
}

const LOG_IN: &str = "log in first: POST /login with your staff id and password, then send the session cookie (and X-CSRF-Token on every POST)";

fn refusal(status: StatusCode, error: &str, detail: &str) -> Response {
    (status, Json(json!({"error": error, "detail": detail}))).into_response()
}

/// How a request proved who it is.
enum Credential {
    Session { staff: Staff, csrf: String },
    /// An access token of the identity provider (a case-management system): no cookie, so
    /// no CSRF token either.
    Bearer(Staff),
    None,
    Refused(&'static str),
}

async fn credential(gate: &Gate, headers: &HeaderMap) -> anyhow::Result<Credential> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let Some(oidc) = &gate.oidc else {
            return Ok(Credential::Refused("bearer tokens are accepted only where the service is configured for OpenID Connect"));
        };
        let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
            return Ok(Credential::Refused("the Authorization header must be `Bearer <access token>`"));
        };
        return Ok(match oidc.verify_access_token(token.trim()).await {
            Ok(identity) => match gate.staff_of(identity) {
                Ok(staff) => Credential::Bearer(staff),
                Err(why) => Credential::Refused(why),
            },
            Err(e) if e.is_transient() => return Err(anyhow::anyhow!("the identity provider cannot be reached: {}", e.code())),
            Err(e) => {
                tracing::info!(reason = e.code(), "an access token was refused");
                Credential::Refused("the access token was refused (expired, for another service, or not signed by the identity provider)")
            }
        });
    }
    let Some(token) = local::session_cookie(headers, &gate.agency) else { return Ok(Credential::None) };
    Ok(match local::session(&gate.pool, &token).await? {
        Some((staff, csrf)) => Credential::Session { staff, csrf },
        None => Credential::Refused("the session has ended or is not known; log in again"),
    })
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
        .and_then(|fields| fields.into_iter().find(|(k, _)| k == crate::console::CSRF_FIELD).map(|(_, v)| v));
    Ok((Request::from_parts(parts, axum::body::Body::from(bytes)), token))
}

fn same_token(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// Checks the login and the role for every request, then records what must be recorded.
/// Console pages ([`crate::console::is_page`]) answer as pages: a login page instead of 401,
/// a "not allowed" page instead of 403; their forms carry the CSRF token as a field.
async fn guard(State(gate): State<Gate>, matched: Option<MatchedPath>, params: RawPathParams, mut request: Request, next: Next) -> Response {
    let path = matched.as_ref().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let method = request.method().clone();
    let page = crate::console::is_page(&path);
    let Some(rule) = gate.rule(&method, &path).copied() else {
        tracing::error!(%method, route = %path, "a route has no rule in the role table; nobody may call it");
        return refusal(StatusCode::FORBIDDEN, "forbidden", "this route is not open to any role");
    };
    let changes = !matches!(method, Method::GET | Method::HEAD);
    if page && changes && !same_origin(request.headers()) {
        return crate::console::form_expired(&gate.agency);
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
            let answer = if page { crate::console::see_other(crate::console::login::PATH) } else { refusal(StatusCode::UNAUTHORIZED, "unauthenticated", detail) };
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
                crate::console::form_expired(&gate.agency)
            } else {
                refusal(StatusCode::FORBIDDEN, "csrf", "a request that changes something needs the X-CSRF-Token header of the session")
            };
            return finish(&gate, record, true, answer).await;
        }
    }
    if !rule.allows(&staff.roles) {
        record.outcome = "forbidden".into();
        let answer = if page { crate::console::not_allowed(&gate.agency) } else { refusal(StatusCode::FORBIDDEN, "forbidden", "none of your roles may do this") };
        return finish(&gate, record, true, answer).await;
    }
    request.extensions_mut().insert(crate::console::Csrf(csrf.unwrap_or_default()));
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

/// Records a refusal: one of a known staff member in the ledger too; one of a caller with no
/// login in the service's own log only, and only [`ANONYMOUS_PER_MINUTE`] of them a minute.
async fn refused(gate: &Gate, record: isp::access::Access, response: Response) -> Response {
    if !record.staff_id.is_empty() {
        finish(gate, record, true, response).await
    } else if gate.anonymous_record() {
        finish(gate, record, false, response).await
    } else {
        response
    }
}

/// Records an access (in the ledger too when `ledger`), then answers; content whose
/// reading cannot be recorded is withheld.
async fn finish(gate: &Gate, record: isp::access::Access, ledger: bool, response: Response) -> Response {
    match gate.access.record(record, ledger).await {
        Ok(()) => response,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "an access could not be recorded; the answer is withheld");
            refusal(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the access log cannot be written now, so nothing is shown; try again")
        }
    }
}

/// A JSON answer for `GET /session` and `POST /login`.
pub fn session_json(staff: &Staff, csrf: &str, expires_at_ms: i64) -> Value {
    json!({"staff_id": staff.id, "roles": staff.roles, "csrf_token": csrf, "expires_at_ms": expires_at_ms})
}
