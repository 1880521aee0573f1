//! Staff logins from the command line's side: `hub staff add | disable | reset-password |
//! list` on a service's database, the demo staff `hub up --demo` makes, and [`Logins`], the
//! logged-in HTTP clients the demo, the benchmarks and the tests act through.
//!
//! [`Logins`] acts as the least powerful role a route allows (a caseworker where a
//! caseworker may, a team manager only where one must), picked from the same rule tables the
//! services enforce, so the demo and the tests exercise the real role checks.

use std::{collections::BTreeMap, sync::Mutex};

use anyhow::{Context as _, bail};
use isp::Role as AgencyRole;
use runtime::auth::{Role, Rule, local};
use sqlx::AnyPool;

use crate::local::LocalHub;

/// The staff id of the demo (and test) account of one role: `demo.caseworker`.
pub fn demo_id(role: Role) -> String {
    format!("demo.{}", role.name())
}

/// The rules one service enforces: an agency service by its role, or `None` for the audit service.
pub fn rules_for(role: Option<AgencyRole>) -> Vec<Rule> {
    use runtime::Agency as _;
    let own: &[Rule] = match role {
        None => &[],
        Some(AgencyRole::Housing) => housing::Housing.rules(),
        Some(AgencyRole::Idva) => idva::Idva.rules(),
        Some(AgencyRole::Marac) => marac::Marac.rules(),
        Some(AgencyRole::Reciprocals) => reciprocals::Reciprocals.rules(),
        Some(AgencyRole::Perpetrator) => perpetrator::Perpetrator.rules(),
        Some(AgencyRole::Partner | AgencyRole::Ig) => &[],
    };
    let generic: &[&[Rule]] = if role.is_some() { &[runtime::auth::GENERIC, runtime::console::pages::RULES] } else { &[audit::RULES, audit::console::RULES] };
    runtime::guard::LOGIN.iter().chain(generic.iter().copied().flatten()).chain(own).copied().collect()
}

/// The rule of a concrete request path (`/inbox/0192...`), matching `{param}` segments.
pub fn rule_of<'r>(rules: &'r [Rule], method: &str, path: &str) -> Option<&'r Rule> {
    let path = path.split('?').next().unwrap_or_default();
    rules.iter().find(|r| {
        r.method == method && {
            let (a, b): (Vec<&str>, Vec<&str>) = (r.path.split('/').collect(), path.split('/').collect());
            a.len() == b.len() && a.iter().zip(&b).all(|(p, s)| (p.starts_with('{') && !s.is_empty()) || p == s)
        }
    })
}

/// The least powerful role that may call a route, in this order.
const LEAST_FIRST: [Role; 7] =
    [Role::Caseworker, Role::MaracCoordinator, Role::ReciprocalsCoordinator, Role::TeamManager, Role::AgencyAdmin, Role::Auditor, Role::IgLead];

pub fn least_role(rule: &Rule) -> Option<Role> {
    LEAST_FIRST.into_iter().find(|r| rule.allows(&[*r]))
}

/// Logs in to a service and returns an HTTP client that sends the session cookie and CSRF
/// token with every request.
pub async fn login(base_url: &str, staff_id: &str, password: &str) -> anyhow::Result<reqwest::Client> {
    login_with(reqwest::Client::builder, base_url, staff_id, password).await
}

/// As [`login`], with clients made by `builder` (one that trusts a partnership's own CA, say).
pub async fn login_with(builder: impl Fn() -> reqwest::ClientBuilder, base_url: &str, staff_id: &str, password: &str) -> anyhow::Result<reqwest::Client> {
    let (cookie, csrf) = session_with(&builder().build()?, base_url, staff_id, password).await?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::COOKIE, cookie.parse()?);
    headers.insert("x-csrf-token", csrf.parse()?);
    Ok(builder().default_headers(headers).build()?)
}

/// Logs in to a service: the session cookie (`hub_session_<agency>=…`) and its CSRF token.
pub async fn session(base_url: &str, staff_id: &str, password: &str) -> anyhow::Result<(String, String)> {
    session_with(&reqwest::Client::new(), base_url, staff_id, password).await
}

async fn session_with(http: &reqwest::Client, base_url: &str, staff_id: &str, password: &str) -> anyhow::Result<(String, String)> {
    let response = http
        .post(format!("{base_url}/login"))
        .json(&serde_json::json!({"staff_id": staff_id, "password": password}))
        .send()
        .await
        .with_context(|| format!("logging in to {base_url}"))?;
    let status = response.status();
    let cookie = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let (Some(cookie), Some(csrf)) = (cookie, body["csrf_token"].as_str()) else {
        bail!("logging in to {base_url} as {staff_id}: HTTP {status}: {body}");
    };
    Ok((cookie, csrf.to_owned()))
}

/// One service [`Logins`] can act at.
struct Service {
    database_url: String,
    rules: Vec<Rule>,
    pool: tokio::sync::OnceCell<AnyPool>,
}

/// Logged-in clients for the demo staff of a partnership's services, made on first use:
/// the account `demo.{role}` is created (or its password replaced) with a random password,
/// then logged in once.
#[derive(Default)]
pub struct Logins {
    services: BTreeMap<String, Service>,
    /// (service, staff id) -> password, of accounts made here.
    passwords: Mutex<BTreeMap<(String, String), String>>,
    clients: tokio::sync::Mutex<BTreeMap<(String, Role), reqwest::Client>>,
}

impl Logins {
    /// Logins for every service of a local partnership (`audit` and each agency id).
    pub fn for_hub(hub: &LocalHub) -> Logins {
        let mut logins = Logins::default();
        logins.add_service("audit", &hub.audit_database_url, None);
        for (agency, service) in &hub.services {
            logins.add_service(agency, service.database_url(), Some(service.role));
        }
        logins
    }

    pub fn add_service(&mut self, name: &str, database_url: &str, role: Option<AgencyRole>) {
        self.services.insert(name.to_owned(), Service { database_url: database_url.to_owned(), rules: rules_for(role), pool: Default::default() });
    }

    fn service(&self, name: &str) -> anyhow::Result<&Service> {
        self.services.get(name).with_context(|| format!("no service {name}"))
    }

    /// The password of `staff_id` at `service`, creating the account (or resetting it) first.
    pub async fn account(&self, service: &str, staff_id: &str, roles: &[Role]) -> anyhow::Result<String> {
        let key = (service.to_owned(), staff_id.to_owned());
        if let Some(p) = self.passwords.lock().expect("not poisoned").get(&key) {
            return Ok(p.clone());
        }
        let s = self.service(service)?;
        let pool = s.pool.get_or_try_init(|| runtime::db::connect(&s.database_url)).await?;
        let password = local::new_password();
        match local::add(pool, staff_id, roles, &password).await {
            Err(local::AccountError::Exists) => local::reset_password(pool, staff_id, &password).await?,
            other => other?,
        }
        self.passwords.lock().expect("not poisoned").insert(key, password.clone());
        Ok(password)
    }

    /// A client logged in at `service` (served at `base_url`) as the demo staff member of `role`.
    pub async fn as_role(&self, service: &str, base_url: &str, role: Role) -> anyhow::Result<reqwest::Client> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&(service.to_owned(), role)) {
            return Ok(c.clone());
        }
        let id = demo_id(role);
        let password = self.account(service, &id, &[role]).await?;
        let client = login(base_url, &id, &password).await?;
        clients.insert((service.to_owned(), role), client.clone());
        Ok(client)
    }

    /// A client for one request: logged in as the least powerful role the route allows.
    /// Public routes and routes no role may call get a client with no login.
    pub async fn for_request(&self, service: &str, base_url: &str, method: &str, path: &str) -> anyhow::Result<reqwest::Client> {
        let s = self.service(service)?;
        match rule_of(&s.rules, method, path).and_then(|r| if matches!(r.allow, runtime::auth::Allow::Public) { None } else { least_role(r) }) {
            Some(role) => self.as_role(service, base_url, role).await,
            None => Ok(reqwest::Client::new()),
        }
    }

    /// Every account made here, with its password: what `hub up --demo` prints.
    pub fn accounts(&self) -> Vec<(String, String, String)> {
        self.passwords.lock().expect("not poisoned").iter().map(|((s, id), p)| (s.clone(), id.clone(), p.clone())).collect()
    }
}

/// Opens a service's database for `hub staff`, refusing one its service never created.
pub async fn open(database_url: &str) -> anyhow::Result<AnyPool> {
    let pool = runtime::db::connect(database_url).await?;
    if sqlx::query("SELECT COUNT(*) FROM staff").fetch_one(&pool).await.is_err() {
        bail!("this service's database has no staff table yet: start the service once (hub up, or hub serve) so it creates its tables");
    }
    Ok(pool)
}
