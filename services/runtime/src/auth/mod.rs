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
    Json,
    extract::FromRequestParts,
    http::{HeaderMap, Method, StatusCode, header, request::Parts},
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

/// The routes every agency service has (the generic API, `crate::api`).
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
    pub(crate) openapi: Arc<std::sync::OnceLock<Value>>,
}

/// How many refusals of callers with no login a service records a minute. They go to its own
/// access log only, never the ledger: anyone who reaches the port can make them, so each
/// must not cost a signed event, a broker message and a permanent ledger entry, and past this
/// many a minute they are counted in a log line instead of stored one by one.
pub const ANONYMOUS_PER_MINUTE: u32 = 600;

impl Gate {
    pub fn new(agency: &str, pool: sqlx::AnyPool, tables: &[&[Rule]], access: Arc<dyn AccessSink>) -> Gate {
        let mut rules: Vec<Rule> = Vec::new();
        for table in tables {
            rules.extend_from_slice(table);
        }
        Gate { agency: agency.to_owned(), pool, rules: Arc::new(rules), access, oidc: None, anonymous: Default::default(), openapi: Default::default() }
    }

    /// Whether one more refusal of a caller with no login may be stored this minute.
    pub(crate) fn anonymous_record(&self) -> bool {
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

    pub(crate) fn rule(&self, method: &Method, path: &str) -> Option<&Rule> {
        let method = if method == Method::HEAD { "GET" } else { method.as_str() };
        self.rules.iter().find(|r| r.method == method && r.path == path)
    }
}

pub(crate) const LOG_IN: &str = "log in first: POST /login with your staff id and password, then send the session cookie (and X-CSRF-Token on every POST)";

pub(crate) fn refusal(status: StatusCode, error: &str, detail: &str) -> Response {
    (status, Json(json!({"error": error, "detail": detail}))).into_response()
}

/// How a request proved who it is.
pub(crate) enum Credential {
    Session { staff: Staff, csrf: String },
    /// An access token of the identity provider (a case-management system): no cookie, so
    /// no CSRF token either.
    Bearer(Staff),
    None,
    Refused(&'static str),
}

pub(crate) async fn credential(gate: &Gate, headers: &HeaderMap) -> anyhow::Result<Credential> {
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

/// Records a refusal: one of a known staff member in the ledger too; one of a caller with no
/// login in the service's own log only, and only [`ANONYMOUS_PER_MINUTE`] of them a minute.
pub(crate) async fn refused(gate: &Gate, record: isp::access::Access, response: Response) -> Response {
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
pub(crate) async fn finish(gate: &Gate, record: isp::access::Access, ledger: bool, response: Response) -> Response {
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
