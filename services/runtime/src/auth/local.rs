//! Local staff accounts, for agencies without an identity provider, and the sessions every
//! login gets.
//!
//! - Passwords are stored as argon2id hashes (the `argon2` crate's defaults: 19 MiB, 2
//!   passes), at least 12 characters; `hub staff add | reset-password` makes random ones.
//! - [`LOCKOUT_AFTER`] wrong passwords in a row lock the account for [`LOCKOUT`]; an unknown
//!   id costs the same hash as a known one and gets the same answer.
//! - A session is a random 256-bit token in a `Secure; HttpOnly; SameSite=Strict` cookie;
//!   the database keeps only its SHA-256. It ends after [`SESSION_IDLE`] without use, after
//!   [`SESSION_MAX`] at most, at logout, and when the account is disabled or its password
//!   reset. Each session has its own CSRF token, required on every request that changes
//!   something.
//! - Roles are read from the account on every request, so a change takes effect at once.

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use sqlx::{AnyPool, Row as _};

use super::{Gate, Role, Staff, session_json};
use crate::{db::Migration, error::json_body};

/// The session cookie of a service is `hub_session_<agency id>`: services of one partnership
/// on one host (the demo's, on one address and several ports) share a browser's cookies,
/// which are per host, not per port; one cookie name each keeps their sessions apart.
pub const SESSION_COOKIE_PREFIX: &str = "hub_session_";

pub fn cookie_name(agency: &str) -> String {
    format!("{SESSION_COOKIE_PREFIX}{agency}")
}
/// Wrong passwords in a row before the account locks.
pub const LOCKOUT_AFTER: i64 = 5;
pub const LOCKOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);
pub const SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(30 * 60);
pub const SESSION_MAX: std::time::Duration = std::time::Duration::from_secs(8 * 3600);
pub const PASSWORD_MIN: usize = 12;
pub const PASSWORD_MAX: usize = 256;

pub fn migrations() -> Vec<Migration> {
    vec![
        Migration { version: 60, description: "staff sessions access log", sql: include_str!("../../migrations/0060_staff.sql") },
        Migration { version: 61, description: "access log by time", sql: include_str!("../../migrations/0061_access_log_time.sql") },
    ]
}

/// A staff id: 2-64 of lowercase letters, digits, '.', '_' and '-', starting with a letter or
/// digit (`hsg.caseworker`). A login id, not a survivor's detail.
pub fn valid_staff_id(id: &str) -> bool {
    isp::clear::is_staff_id(id)
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("a staff id is 2-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit")]
    BadId,
    #[error("a staff member needs at least one role")]
    NoRole,
    #[error("a password is {PASSWORD_MIN} to {PASSWORD_MAX} characters")]
    BadPassword,
    #[error("there is already a staff member with that id")]
    Exists,
    #[error("there is no staff member with that id")]
    Unknown,
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
    #[error("hashing the password failed")]
    Hash,
}

/// A random password of 24 characters (144 bits), for `hub staff add` and the demo.
pub fn new_password() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>())
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

async fn hash_password(password: String) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng};
        argon2::Argon2::default().hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng)).map(|h| h.to_string())
    })
    .await
    .map_err(|_| AccountError::Hash)?
    .map_err(|_| AccountError::Hash)
}

/// A hash of no password, checked against when the id is unknown so both cost the same.
static DECOY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use argon2::password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng};
    argon2::Argon2::default().hash_password(b"decoy", &SaltString::generate(&mut OsRng)).expect("argon2 hashes").to_string()
});

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
        PasswordHash::new(&hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

fn check_password(password: &str) -> Result<(), AccountError> {
    if (PASSWORD_MIN..=PASSWORD_MAX).contains(&password.chars().count()) { Ok(()) } else { Err(AccountError::BadPassword) }
}

/// Adds a staff member with these roles and password.
pub async fn add(pool: &AnyPool, id: &str, roles: &[Role], password: &str) -> Result<(), AccountError> {
    if !valid_staff_id(id) {
        return Err(AccountError::BadId);
    }
    if roles.is_empty() {
        return Err(AccountError::NoRole);
    }
    check_password(password)?;
    let hash = hash_password(password.to_owned()).await?;
    let now = isp::now_ms();
    let inserted = sqlx::query(
        "INSERT INTO staff (staff_id, roles, password_hash, disabled, failures, locked_until_ms, created_at_ms, password_set_at_ms) \
         VALUES ($1, $2, $3, 0, 0, 0, $4, $4) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(Role::join(roles))
    .bind(hash)
    .bind(now)
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 0 { Err(AccountError::Exists) } else { Ok(()) }
}

/// Sets a new password, unlocks the account and ends its sessions.
pub async fn reset_password(pool: &AnyPool, id: &str, password: &str) -> Result<(), AccountError> {
    check_password(password)?;
    let hash = hash_password(password.to_owned()).await?;
    let mut tx = pool.begin().await?;
    let updated = sqlx::query("UPDATE staff SET password_hash = $1, failures = 0, locked_until_ms = 0, password_set_at_ms = $2 WHERE staff_id = $3")
        .bind(hash)
        .bind(isp::now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if updated.rows_affected() == 0 {
        return Err(AccountError::Unknown);
    }
    sqlx::query("DELETE FROM sessions WHERE staff_id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Disables an account and ends its sessions at once; its records keep naming it.
pub async fn disable(pool: &AnyPool, id: &str) -> Result<(), AccountError> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query("UPDATE staff SET disabled = 1 WHERE staff_id = $1").bind(id).execute(&mut *tx).await?;
    if updated.rows_affected() == 0 {
        return Err(AccountError::Unknown);
    }
    sqlx::query("DELETE FROM sessions WHERE staff_id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// One account as `hub staff list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub staff_id: String,
    pub roles: Vec<Role>,
    pub disabled: bool,
    pub locked_until_ms: i64,
    pub created_at_ms: i64,
}

pub async fn list(pool: &AnyPool) -> Result<Vec<Account>, AccountError> {
    let rows = sqlx::query("SELECT staff_id, roles, disabled, locked_until_ms, created_at_ms FROM staff ORDER BY staff_id").fetch_all(pool).await?;
    Ok(rows
        .iter()
        .map(|r| Account {
            staff_id: r.get("staff_id"),
            roles: Role::parse_list(&r.get::<String, _>("roles")).unwrap_or_default(),
            disabled: r.get::<i64, _>("disabled") != 0,
            locked_until_ms: r.get("locked_until_ms"),
            created_at_ms: r.get("created_at_ms"),
        })
        .collect())
}

/// What came of a login attempt.
#[derive(Debug)]
pub enum Login {
    Ok(Staff),
    /// Unknown id, wrong password or disabled account: one answer for all three. The id is
    /// given when the account exists, for the access log.
    Refused(Option<String>),
    /// Too many wrong passwords; the account exists.
    Locked(String),
}

/// Checks a password, counting failures and locking the account after [`LOCKOUT_AFTER`].
pub async fn login(pool: &AnyPool, id: &str, password: &str) -> Result<Login, AccountError> {
    let row = if valid_staff_id(id) {
        sqlx::query("SELECT roles, password_hash, disabled, failures, locked_until_ms FROM staff WHERE staff_id = $1").bind(id).fetch_optional(pool).await?
    } else {
        None
    };
    let Some(row) = row else {
        verify_password(password.to_owned(), DECOY.clone()).await;
        return Ok(Login::Refused(None));
    };
    let now = isp::now_ms();
    if row.get::<i64, _>("locked_until_ms") > now {
        return Ok(Login::Locked(id.to_owned()));
    }
    let good = password.len() <= PASSWORD_MAX * 4 && verify_password(password.to_owned(), row.get("password_hash")).await;
    if !good {
        let failures = row.get::<i64, _>("failures") + 1;
        let (failures, locked_until) = if failures >= LOCKOUT_AFTER { (0, now + LOCKOUT.as_millis() as i64) } else { (failures, 0) };
        sqlx::query("UPDATE staff SET failures = $1, locked_until_ms = $2 WHERE staff_id = $3").bind(failures).bind(locked_until).bind(id).execute(pool).await?;
        return Ok(if locked_until > 0 { Login::Locked(id.to_owned()) } else { Login::Refused(Some(id.to_owned())) });
    }
    if row.get::<i64, _>("disabled") != 0 {
        return Ok(Login::Refused(Some(id.to_owned())));
    }
    sqlx::query("UPDATE staff SET failures = 0 WHERE staff_id = $1").bind(id).execute(pool).await?;
    let roles = Role::parse_list(&row.get::<String, _>("roles")).unwrap_or_default();
    Ok(Login::Ok(Staff { id: id.to_owned(), roles }))
}

/// How a session's staff member logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A local account: its roles are read from the account on every request.
    Local,
    /// The identity provider: its roles are the ones it gave at login.
    Oidc,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Local => "local",
            Via::Oidc => "oidc",
        }
    }
}

/// A new session for a staff member: (token for the cookie, CSRF token, expiry).
pub async fn start_session(pool: &AnyPool, staff: &Staff, via: Via) -> Result<(String, String, i64), AccountError> {
    let (token, csrf) = (random_token(), random_token());
    let now = isp::now_ms();
    let expires = now + SESSION_MAX.as_millis() as i64;
    sqlx::query("DELETE FROM sessions WHERE expires_at_ms < $1").bind(now).execute(pool).await?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, staff_id, via, roles, csrf, created_at_ms, last_seen_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
    )
    .bind(token_hash(&token))
    .bind(&staff.id)
    .bind(via.name())
    .bind(match via {
        Via::Local => String::new(),
        Via::Oidc => Role::join(&staff.roles),
    })
        .bind(&csrf)
        .bind(now)
        .bind(expires)
        .execute(pool)
        .await?;
    Ok((token, csrf, expires))
}

/// The staff member and CSRF token of a live session; None when it is unknown, has ended,
/// or its account is disabled.
pub async fn session(pool: &AnyPool, token: &str) -> Result<Option<(Staff, String)>, sqlx::Error> {
    let hash = token_hash(token);
    let row = sqlx::query(
        "SELECT s.staff_id, s.via, s.roles AS session_roles, s.csrf, s.last_seen_ms, s.expires_at_ms, st.roles, st.disabled FROM sessions s \
         LEFT JOIN staff st ON st.staff_id = s.staff_id WHERE s.token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let now = isp::now_ms();
    let last_seen: i64 = row.get("last_seen_ms");
    let local = row.get::<String, _>("via") == Via::Local.name();
    let roles = if local { row.get::<Option<String>, _>("roles") } else { Some(row.get::<String, _>("session_roles")) };
    let disabled = local && row.get::<Option<i64>, _>("disabled").is_none_or(|d| d != 0);
    if roles.is_none() || disabled || now > row.get::<i64, _>("expires_at_ms") || now - last_seen > SESSION_IDLE.as_millis() as i64 {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(&hash).execute(pool).await?;
        return Ok(None);
    }
    if now - last_seen > 60_000 {
        sqlx::query("UPDATE sessions SET last_seen_ms = $1 WHERE token_hash = $2").bind(now).bind(&hash).execute(pool).await?;
    }
    let roles = Role::parse_list(&roles.unwrap_or_default()).unwrap_or_default();
    Ok(Some((Staff { id: row.get("staff_id"), roles }, row.get("csrf"))))
}

/// The session token of a request's cookie, if it has one.
pub fn session_cookie(headers: &HeaderMap, agency: &str) -> Option<String> {
    cookie_value(headers, &cookie_name(agency))
}

/// The value of the request's cookie `name`, if it sends one.
pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

pub(crate) fn set_cookie(agency: &str, token: &str, max_age: std::time::Duration) -> HeaderValue {
    let cookie = cookie::Cookie::build((cookie_name(agency), token))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("a cookie of base64url is a valid header")
}

/// `POST /login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub staff_id: String,
    pub password: String,
}

pub fn routes() -> Router<Gate> {
    Router::new()
        .route("/login", post(login_route))
        .route("/login/oidc", get(oidc_begin))
        .route("/login/oidc/callback", get(oidc_callback))
        .route("/logout", post(logout_route))
        .route("/session", get(session_route))
}

/// How long a browser login through the identity provider may take.
pub const OIDC_LOGIN_WITHIN: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// Browser logins in flight at once: anyone can start one, so their rows are bounded.
pub const OIDC_LOGINS_IN_FLIGHT: i64 = 1000;

fn unavailable(detail: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "unavailable", "detail": detail}))).into_response()
}

fn no_provider() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "not_found", "detail": "this service has no identity provider; log in with POST /login"}))).into_response()
}

/// `GET /login/oidc`: sends the browser to the identity provider (authorization code with
/// PKCE), remembering the login's state, nonce and verifier here.
async fn oidc_begin(State(gate): State<Gate>) -> Response {
    let Some(oidc) = &gate.oidc else { return no_provider() };
    let (url, pending) = oidc.begin_login();
    let now = isp::now_ms();
    let stored = async {
        sqlx::query("DELETE FROM oidc_pending WHERE created_at_ms < $1").bind(now - OIDC_LOGIN_WITHIN.as_millis() as i64).execute(&gate.pool).await?;
        let (in_flight,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM oidc_pending").fetch_one(&gate.pool).await?;
        if in_flight >= OIDC_LOGINS_IN_FLIGHT {
            return Ok(false);
        }
        sqlx::query("INSERT INTO oidc_pending (state, nonce, verifier, created_at_ms) VALUES ($1, $2, $3, $4)")
            .bind(&pending.state)
            .bind(&pending.nonce)
            .bind(&pending.verifier)
            .bind(now)
            .execute(&gate.pool)
            .await?;
        Ok::<_, sqlx::Error>(true)
    };
    match stored.await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(limit = OIDC_LOGINS_IN_FLIGHT, "too many browser logins in flight; a new one was refused");
            return unavailable("too many logins are in progress; try again in a few minutes");
        }
        Err(e) => {
            tracing::error!(error = %e, "a login could not be started");
            return unavailable("logins cannot be started now; try again");
        }
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(&url) {
        Ok(location) => response.headers_mut().insert(header::LOCATION, location),
        Err(_) => return unavailable("the identity provider's login address is not usable"),
    };
    response
}

/// What the identity provider sends the browser back with. Providers add parameters of
/// their own (`iss`, `session_state`), so unknown ones are not refused here.
#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
}

/// `GET /login/oidc/callback`: the login's state is used once; the code is exchanged, the ID
/// token verified (issuer, audience, expiry, signature, nonce), and a session starts.
async fn oidc_callback(State(gate): State<Gate>, headers: HeaderMap, axum::extract::Query(callback): axum::extract::Query<Callback>) -> Response {
    let browser = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"));
    let Some(oidc) = &gate.oidc else { return no_provider() };
    let mut record = isp::access::Access {
        staff_id: String::new(),
        route: "GET /login/oidc/callback".into(),
        target: String::new(),
        outcome: "login_failed".into(),
        at_ms: isp::now_ms(),
    };
    let refused = |detail: &str| (StatusCode::UNAUTHORIZED, Json(json!({"error": "login_failed", "detail": detail}))).into_response();
    let (Some(code), Some(state)) = (callback.code, callback.state) else {
        return super::refused(&gate, record, refused("the identity provider did not complete the login")).await;
    };
    let pending = async {
        let row = sqlx::query("SELECT nonce, verifier, created_at_ms FROM oidc_pending WHERE state = $1").bind(&state).fetch_optional(&gate.pool).await?;
        let used = sqlx::query("DELETE FROM oidc_pending WHERE state = $1").bind(&state).execute(&gate.pool).await?.rows_affected() == 1;
        Ok::<_, sqlx::Error>(row.filter(|_| used))
    };
    let row = match pending.await {
        Ok(Some(row)) => row,
        Ok(None) => return super::refused(&gate, record, refused("this login is not known here, or was already used; start again")).await,
        Err(e) => {
            tracing::error!(error = %e, "a login could not be finished");
            return unavailable("logins cannot be checked now; try again");
        }
    };
    if isp::now_ms() - row.get::<i64, _>("created_at_ms") > OIDC_LOGIN_WITHIN.as_millis() as i64 {
        return super::refused(&gate, record, refused("the login took too long; start again")).await;
    }
    let pending = crate::oidc::PendingLogin { state, nonce: row.get("nonce"), verifier: row.get("verifier") };
    let identity = match oidc.finish_login(&code, &pending).await {
        Ok(identity) => identity,
        Err(e) if e.is_transient() => return unavailable("the identity provider cannot be reached; try again"),
        Err(e) => {
            tracing::info!(reason = e.code(), "a login through the identity provider was refused");
            return super::refused(&gate, record, refused("the identity provider's answer was refused")).await;
        }
    };
    let staff = match gate.staff_of(identity) {
        Ok(staff) => staff,
        Err(why) => return super::refused(&gate, record, refused(why)).await,
    };
    record.staff_id = staff.id.clone();
    match start_session(&gate.pool, &staff, Via::Oidc).await {
        Ok((token, csrf, expires)) => {
            record.outcome = "login".into();
            // A browser (the console's "sign in with your organisation") goes on to the
            // console; a case-management system gets the session as JSON.
            let mut response = if browser { axum::response::Redirect::to("/console").into_response() } else { (StatusCode::OK, Json(session_json(&staff, &csrf, expires))).into_response() };
            response.headers_mut().insert(header::SET_COOKIE, set_cookie(&gate.agency, &token, SESSION_MAX));
            super::finish(&gate, record, false, response).await
        }
        Err(e) => {
            tracing::error!(error = %e, "a session could not be stored");
            unavailable("logins cannot be checked now; try again")
        }
    }
}

/// What came of a login at `POST /login` or the console's login form.
pub(crate) enum Attempt {
    /// A new session: (staff, cookie token, CSRF token, expiry).
    Ok(Staff, String, String, i64),
    Refused,
    Locked,
    Unavailable,
}

impl Attempt {
    fn outcome(&self) -> &'static str {
        match self {
            Attempt::Ok(..) => "login",
            Attempt::Refused => "login_failed",
            Attempt::Locked => "locked",
            Attempt::Unavailable => "failed",
        }
    }
}

/// Checks a login and starts its session; the access record to keep of it, whatever came of it.
pub(crate) async fn attempt(gate: &Gate, route: &str, staff_id: &str, password: &str) -> (Attempt, isp::access::Access) {
    let mut record = isp::access::Access { staff_id: String::new(), route: route.into(), target: String::new(), outcome: String::new(), at_ms: isp::now_ms() };
    let attempt = match login(&gate.pool, staff_id, password).await {
        Err(e) => {
            tracing::error!(error = %e, "login failed");
            Attempt::Unavailable
        }
        Ok(Login::Refused(known)) => {
            record.staff_id = known.unwrap_or_default();
            Attempt::Refused
        }
        Ok(Login::Locked(id)) => {
            record.staff_id = id;
            Attempt::Locked
        }
        Ok(Login::Ok(staff)) => match start_session(&gate.pool, &staff, Via::Local).await {
            Ok((token, csrf, expires)) => {
                record.staff_id = staff.id.clone();
                Attempt::Ok(staff, token, csrf, expires)
            }
            Err(e) => {
                tracing::error!(error = %e, "a session could not be stored");
                Attempt::Unavailable
            }
        },
    };
    record.outcome = attempt.outcome().into();
    (attempt, record)
}

/// Keeps the record of a login attempt, then answers: a login in the service's access log; a
/// refused one of a known account in the ledger too.
pub(crate) async fn keep(gate: &Gate, record: isp::access::Access, answer: Response) -> Response {
    if record.outcome == "login" { super::finish(gate, record, false, answer).await } else { super::refused(gate, record, answer).await }
}

/// The sentence for a locked account.
pub(crate) fn locked_detail() -> String {
    format!("too many wrong passwords: the account is locked for {} minutes, or until an agency admin resets its password", LOCKOUT.as_secs() / 60)
}

async fn login_route(State(gate): State<Gate>, body: Bytes) -> Response {
    let request: LoginRequest = match json_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (attempt, record) = attempt(&gate, "POST /login", &request.staff_id, &request.password).await;
    let answer = match attempt {
        Attempt::Unavailable => unavailable("logins cannot be checked now; try again"),
        Attempt::Refused => (StatusCode::UNAUTHORIZED, Json(json!({"error": "login_failed", "detail": "unknown staff id or wrong password"}))).into_response(),
        Attempt::Locked => (StatusCode::TOO_MANY_REQUESTS, Json(json!({"error": "locked", "detail": locked_detail()}))).into_response(),
        Attempt::Ok(staff, token, csrf, expires) => {
            let mut response = (StatusCode::OK, Json(session_json(&staff, &csrf, expires))).into_response();
            response.headers_mut().insert(header::SET_COOKIE, set_cookie(&gate.agency, &token, SESSION_MAX));
            response
        }
    };
    keep(&gate, record, answer).await
}

/// Ends the session of a request's cookie, if it has one.
pub(crate) async fn end_session(gate: &Gate, headers: &HeaderMap) -> Result<(), sqlx::Error> {
    if let Some(token) = session_cookie(headers, &gate.agency) {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash(&token)).execute(&gate.pool).await?;
    }
    Ok(())
}

/// The header that removes the session cookie from the browser.
pub(crate) fn clear_cookie(agency: &str) -> HeaderValue {
    set_cookie(agency, "", std::time::Duration::ZERO)
}

async fn logout_route(State(gate): State<Gate>, headers: HeaderMap) -> Response {
    if let Err(e) = end_session(&gate, &headers).await {
        tracing::error!(error = %e, "a session could not be ended");
        return unavailable("the session could not be ended; try again");
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, clear_cookie(&gate.agency));
    response
}

async fn session_route(State(gate): State<Gate>, headers: HeaderMap, staff: Staff) -> Response {
    let Some(token) = session_cookie(&headers, &gate.agency) else { return StatusCode::UNAUTHORIZED.into_response() };
    match sqlx::query("SELECT csrf, expires_at_ms FROM sessions WHERE token_hash = $1").bind(token_hash(&token)).fetch_optional(&gate.pool).await {
        Ok(Some(row)) => Json(session_json(&staff, &row.get::<String, _>("csrf"), row.get("expires_at_ms"))).into_response(),
        Ok(None) => StatusCode::UNAUTHORIZED.into_response(),
        Err(e) => crate::error::ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::valid_staff_id;

    #[test]
    fn staff_ids_are_login_tokens() {
        for ok in ["hsg.caseworker", "j.bloggs", "demo.ig-lead", "a1", "x_y-z.0"] {
            assert!(valid_staff_id(ok), "{ok}");
        }
        for bad in ["", "a", "Jane Smith", "jane smith", ".hidden", "-x", "JANE", "jane@x.org", &"a".repeat(65)] {
            assert!(!valid_staff_id(bad), "{bad}");
        }
    }
}
