//! Staff identity: every route of every service walked with every role (each allow and each
//! deny), no answer without a login, CSRF, lockout, disabling, and the access log an IG lead
//! relies on (a row at the service and a signed `accessed` entry in the ledger).

use std::time::Duration;

use hub::staff::{demo_id, rules_for};
use runtime::auth::{Allow, Role, local};
use serde_json::{Value, json};
use tests::{Backend, Partnership, eventually, send_referrals};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";

/// Who may call each route, written out here independently of the code's tables (the README's
/// role table), so a wrong rule in the code fails the walk instead of agreeing with it.
fn expected(service_role: Option<isp::Role>, method: &str, path: &str) -> Option<&'static [&'static str]> {
    const CASEWORK: &[&str] = &["caseworker", "team-manager", "marac-coordinator", "reciprocals-coordinator"];
    const CASEWORK_IG: &[&str] = &["caseworker", "team-manager", "marac-coordinator", "reciprocals-coordinator", "ig-lead"];
    const IG: &[&str] = &["ig-lead", "auditor"];
    use isp::Role as R;
    Some(match (service_role, method, path) {
        (_, "POST", "/logout") | (_, "GET", "/session" | "/openapi.json") => &["caseworker", "team-manager", "agency-admin", "marac-coordinator", "reciprocals-coordinator", "ig-lead", "auditor"],
        (None, "GET", "/ledger" | "/verify" | "/checkpoints" | "/checkpoints/latest" | "/report" | "/proof/inclusion" | "/proof/consistency" | "/access-log") => IG,
        (None, "POST", "/subject-access") => IG,
        (None, "GET", "/metrics") => IG,
        (Some(_), "POST", "/disclosures" | "/consents" | "/consents/{id}/withdraw" | "/inbox/{id}/ack") => CASEWORK,
        (Some(_), "GET", "/inbox" | "/inbox/{id}") => CASEWORK,
        (Some(_), "GET", "/disclosures" | "/disclosures/{id}" | "/consents/{id}") => CASEWORK_IG,
        (Some(_), "POST", "/disclosures/{id}/revoke") => &["team-manager", "ig-lead"],
        (Some(_), "GET", "/quarantine") => &["team-manager", "agency-admin", "ig-lead"],
        (Some(_), "GET", "/witness" | "/access-log" | "/metrics") => &["agency-admin", "ig-lead"],
        (_, "POST", "/console/logout") | (Some(_), "GET", "/console") => &["caseworker", "team-manager", "agency-admin", "marac-coordinator", "reciprocals-coordinator", "ig-lead", "auditor"],
        (None, "GET", "/console" | "/console/ledger" | "/console/ledger/{seq}" | "/console/report" | "/console/report.csv" | "/console/access-log" | "/console/policy") => IG,
        (None, "POST", "/console/policy") => IG,
        (None, "GET" | "POST", "/console/subject-access") | (None, "POST", "/console/subject-access.json") => &["ig-lead"],
        (Some(_), "GET", "/console/inbox" | "/console/inbox/{id}" | "/console/compose" | "/console/consents") => CASEWORK,
        (Some(_), "POST", "/console/inbox/{id}/answer" | "/console/compose/form" | "/console/compose/preview" | "/console/compose/send" | "/console/consents" | "/console/consents/withdraw") => CASEWORK,
        (Some(_), "GET", "/console/sent" | "/console/sent/{id}") => CASEWORK_IG,
        (Some(_), "POST", "/console/sent/{id}/revoke") => &["team-manager", "ig-lead"],
        (Some(_), "GET", "/console/access-log" | "/console/witness") => &["agency-admin", "ig-lead"],
        (Some(_), "GET" | "POST", "/console/dash") | (Some(_), "POST" | "GET", "/dash-assessments") | (Some(_), "GET", "/dash-assessments/{id}") => &["caseworker", "team-manager"],
        (Some(_), "POST", "/flags/{id}/clear" | "/console/flags/{id}/clear") => &["caseworker", "team-manager"],
        (Some(_), "GET", "/deadlines" | "/people/{subject_ref}" | "/flags" | "/console/people" | "/console/people/{subject_ref}" | "/console/deadlines") => CASEWORK,
        (Some(_), "POST", "/flags" | "/people/{subject_ref}/notes" | "/console/people" | "/console/people/{subject_ref}/notes" | "/console/people/{subject_ref}/flags") => CASEWORK,
        (Some(R::Idva), "GET", "/cases/{id}" | "/cases/{id}/safety-plan" | "/console/cases" | "/console/cases/{id}") => &["caseworker", "team-manager"],
        (Some(R::Idva), "POST", "/cases/{id}/triage" | "/cases/{id}/contact-attempts" | "/cases/{id}/engaged" | "/cases/{id}/not-reached" | "/cases/{id}/close" | "/cases/{id}/safety-plan"
            | "/console/cases/{id}/triage" | "/console/cases/{id}/contact-attempts" | "/console/cases/{id}/engaged" | "/console/cases/{id}/not-reached"
            | "/console/cases/{id}/close" | "/console/cases/{id}/safety-plan" | "/cases/{id}/safety-plan-reviewed" | "/console/cases/{id}/safety-plan-reviewed") => &["caseworker", "team-manager"],
        (Some(R::Perpetrator), "GET", "/cases/{id}" | "/perpetrators/{ref}" | "/console/cases" | "/console/cases/{id}" | "/console/perpetrators" | "/console/perpetrators/{ref}")
        | (Some(R::Perpetrator), "POST", "/cases/{id}/assess" | "/cases/{id}/engaged" | "/cases/{id}/disengaged" | "/cases/{id}/completed" | "/cases/{id}/enforcement"
            | "/cases/{id}/engagement-updates" | "/perpetrators" | "/console/cases/{id}/assess" | "/console/cases/{id}/engaged" | "/console/cases/{id}/disengaged"
            | "/console/cases/{id}/completed" | "/console/cases/{id}/enforcement" | "/console/cases/{id}/engagement-updates" | "/console/perpetrators") => &["caseworker", "team-manager"],
        (Some(R::Housing), "GET", "/property-requests") => &["caseworker", "team-manager", "reciprocals-coordinator"],
        (Some(R::Housing), "POST", "/funding-requests/{id}/decision" | "/console/funding/{id}/decision") => &["team-manager"],
        (Some(R::Housing), "POST", "/reciprocal-applications/{reference}/approval" | "/console/reciprocals/{reference}/approval") => &["team-manager"],
        (Some(R::Housing), "GET" | "POST",
            "/reciprocal-applications" | "/reciprocal-applications/{reference}" | "/reciprocal-applications/{reference}/areas" | "/reciprocal-applications/{reference}/withdraw"
            | "/console/reciprocals" | "/console/reciprocals/{reference}" | "/console/reciprocals/{reference}/areas" | "/console/reciprocals/{reference}/withdraw") => &["caseworker", "team-manager"],
        (Some(R::Housing), "GET" | "POST", "/console/concerns/new") | (Some(R::Housing), "POST", "/concerns") => &["caseworker", "team-manager", "agency-admin", "marac-coordinator", "reciprocals-coordinator", "ig-lead", "auditor"],
        (Some(R::Housing), "GET" | "POST",
            "/universal-assessments" | "/universal-assessments/{id}" | "/housing-routes" | "/sanctuary-schemes" | "/sanctuary-schemes/{id}/survey"
            | "/sanctuary-schemes/{id}/install" | "/sanctuary-schemes/{id}/refuse" | "/funding-requests" | "/funding-requests/{id}/spend" | "/panel-meetings"
            | "/panel-meetings/{id}" | "/panel-meetings/{id}/applications" | "/panel-applications/{id}/decision" | "/concerns" | "/concerns/{id}"
            | "/concerns/{id}/triage" | "/console/concerns" | "/console/concerns/{id}" | "/console/concerns/{id}/triage" | "/console/housing"
            | "/console/housing/{subject_ref}" | "/console/housing/{subject_ref}/uaf" | "/console/housing/{subject_ref}/route"
            | "/console/housing/{subject_ref}/sanctuary" | "/console/housing/{subject_ref}/funding" | "/console/universal-assessments/{id}"
            | "/console/sanctuary/{id}" | "/console/funding/{id}/spend" | "/console/panel" | "/console/panel/{id}" | "/console/panel/{id}/applications"
            | "/console/panel-applications/{id}/decision") => &["caseworker", "team-manager"],
        (Some(R::Idva | R::Perpetrator), "GET", "/cases") | (Some(R::Idva), "GET", "/engagement") => &["caseworker", "team-manager"],
        (Some(R::Marac), "GET", "/cases" | "/actions" | "/cases/{id}" | "/meetings" | "/meetings/{id}" | "/research" | "/board" | "/figures"
            | "/console/board" | "/console/cases/{id}" | "/console/meetings/{id}" | "/console/figures") => &["marac-coordinator", "team-manager"],
        (Some(R::Marac), "POST", "/actions" | "/cases/{id}/screen" | "/cases/{id}/list" | "/cases/{id}/defer" | "/cases/{id}/research" | "/cases/{id}/hearing"
            | "/cases/{id}/close" | "/meetings" | "/meetings/{id}/attendance" | "/meetings/{id}/minutes" | "/console/meetings" | "/console/cases/{id}/screen"
            | "/console/cases/{id}/list" | "/console/cases/{id}/defer" | "/console/cases/{id}/research" | "/console/cases/{id}/hearing" | "/console/cases/{id}/close"
            | "/console/meetings/{id}/attendance" | "/console/meetings/{id}/minutes") => &["marac-coordinator"],
        (Some(R::Reciprocals), "GET",
            "/applications" | "/applications/{reference}" | "/board" | "/landlords" | "/set-aside" | "/console/scheme" | "/console/scheme/applications/{reference}"
            | "/console/scheme/landlords") => &["reciprocals-coordinator", "team-manager"],
        (Some(R::Reciprocals), "POST",
            "/applications/{reference}/circulate" | "/applications/{reference}/offer-decision" | "/landlords/{landlord}"
            | "/console/scheme/applications/{reference}/circulate" | "/console/scheme/applications/{reference}/offer-decision" | "/console/scheme/landlords") => &["reciprocals-coordinator"],
        (Some(R::Reciprocals), "GET", "/fairness") => &["reciprocals-coordinator", "team-manager", "ig-lead"],
        _ => return None,
    })
}

/// A concrete path for a route: every `{param}` becomes a well-formed id nobody has.
fn concrete(path: &str) -> String {
    path.split('/').map(|s| if s.starts_with('{') { "01900000-0000-7000-8000-000000000000" } else { s }).collect::<Vec<_>>().join("/")
}

async fn call(http: &reqwest::Client, method: &str, url: &str) -> anyhow::Result<(u16, Value)> {
    let request = match method {
        "GET" => http.get(url),
        "POST" => http.post(url).json(&json!({})),
        other => anyhow::bail!("no test for method {other}"),
    };
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.json().await.unwrap_or(Value::Null)))
}

async fn every_route_and_role_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let mut services: Vec<(String, Option<isp::Role>)> = p.hub.services.values().map(|s| (s.agency.clone(), Some(s.role))).collect();
    services.push(("audit".into(), None));
    let anonymous = reqwest::Client::new();
    // A console page answers someone not logged in with the way to the login page.
    let anonymous_browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let mut checked = 0;
    for (service, role) in &services {
        let base = p.url(service);
        for rule in rules_for(*role) {
            // Logging out is walked last, on its own session.
            if rule.path == "/logout" || rule.path == "/console/logout" {
                continue;
            }
            let url = format!("{base}{}", concrete(rule.path));
            let route = format!("{service} {} {}", rule.method, rule.path);
            let page = runtime::console::is_page(rule.path);
            if page {
                let response = match rule.method {
                    "GET" => anonymous_browser.get(&url).send().await?,
                    _ => anonymous_browser.post(&url).form(&[("x", "y")]).send().await?,
                };
                let to_login = response.headers().get("location").is_some_and(|l| l == "/console/login");
                if matches!(rule.allow, Allow::Public) {
                    assert!(response.status().as_u16() != 403, "{route} is public but answered 403 without a login");
                    continue;
                }
                assert!(response.status().as_u16() == 303 && to_login, "{route} answered {} without a login, not the way to the login page", response.status());
            } else {
                let (status, v) = call(&anonymous, rule.method, &url).await?;
                if matches!(rule.allow, Allow::Public) {
                    assert!(status != 401 && status != 403, "{route} is public but answered {status} without a login: {v}");
                    continue;
                }
                assert_eq!((status, v["error"].as_str()), (401, Some("unauthenticated")), "{route} answered without a login: {v}");
            }
            let allowed = expected(*role, rule.method, rule.path).unwrap_or_else(|| panic!("{route} is in the code's table but not in the test's: add who may call it"));
            for staff_role in Role::ALL {
                assert_eq!(rule.allows(&[staff_role]), allowed.contains(&staff_role.name()), "{route}: the code's rule and the role table disagree on {staff_role}");
                if page {
                    let http = p.as_role(service, staff_role).await?;
                    let response = match rule.method {
                        "GET" => http.get(&url).send().await?,
                        _ => http.post(&url).form(&[("x", "y")]).send().await?,
                    };
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    let refused = status == 403 && text.contains("You are not allowed to see this page");
                    if allowed.contains(&staff_role.name()) {
                        assert!(status != 401 && !refused, "{route} refused a {staff_role}, whom its rule allows: {status}");
                    } else {
                        assert!(refused, "{route} let a {staff_role} through: {status}");
                    }
                    checked += 1;
                    continue;
                }
                let (status, v) = call(&p.as_role(service, staff_role).await?, rule.method, &url).await?;
                if allowed.contains(&staff_role.name()) {
                    assert!(status != 401 && v["error"] != "forbidden" && v["error"] != "csrf", "{route} refused a {staff_role}, whom its rule allows: {status} {v}");
                } else {
                    assert_eq!((status, v["error"].as_str()), (403, Some("forbidden")), "{route} let a {staff_role} through: {v}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 150, "only {checked} route x role pairs were walked");

    // The IG lead cannot send a referral; agency staff cannot reach the audit service's ledger.
    let (status, v) = call(&p.as_role(HOUSING, Role::IgLead).await?, "POST", &format!("{}/disclosures", p.url(HOUSING))).await?;
    assert_eq!((status, v["error"].as_str()), (403, Some("forbidden")), "{v}");
    let housing_session = p.caseworker(HOUSING).await?;
    let (status, _) = call(&housing_session, "GET", &format!("{}/ledger", p.url("audit"))).await?;
    assert_eq!(status, 401, "a session of an agency service opened the audit service's ledger");

    // A POST with the session cookie but without its CSRF token is refused.
    let bare = anonymous.post(format!("{}/consents", p.url(HOUSING)));
    let password = p.logins.account(HOUSING, &demo_id(Role::Caseworker), &[Role::Caseworker]).await?;
    let login = anonymous.post(format!("{}/login", p.url(HOUSING))).json(&json!({"staff_id": "demo.caseworker", "password": password})).send().await?;
    assert_eq!(login.status().as_u16(), 200);
    let cookie = login.headers()[reqwest::header::SET_COOKIE].to_str()?.to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "the session cookie lacks {attribute}: {cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_owned();
    let response = bare.header(reqwest::header::COOKIE, &session).json(&json!({})).send().await?;
    let (status, v): (u16, Value) = (response.status().as_u16(), response.json().await?);
    assert_eq!((status, v["error"].as_str()), (403, Some("csrf")), "{v}");

    // Logging out ends the session.
    let who = anonymous.get(format!("{}/session", p.url(HOUSING))).header(reqwest::header::COOKIE, &session).send().await?.json::<Value>().await?;
    assert_eq!(who["staff_id"], "demo.caseworker", "{who}");
    let token = who["csrf_token"].as_str().unwrap().to_owned();
    let out = anonymous.post(format!("{}/logout", p.url(HOUSING))).header(reqwest::header::COOKIE, &session).header("x-csrf-token", token).send().await?;
    assert_eq!(out.status().as_u16(), 204);
    let after = anonymous.get(format!("{}/inbox", p.url(HOUSING))).header(reqwest::header::COOKIE, &session).send().await?;
    assert_eq!(after.status().as_u16(), 401, "the session still works after logout");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_answers_only_the_roles_its_rule_allows_on_sqlite() -> anyhow::Result<()> {
    every_route_and_role_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_answers_only_the_roles_its_rule_allows_on_postgres() -> anyhow::Result<()> {
    every_route_and_role_on(Backend::Postgres).await
}

async fn login(url: &str, staff_id: &str, password: &str) -> anyhow::Result<(u16, Value)> {
    let response = reqwest::Client::new().post(format!("{url}/login")).json(&json!({"staff_id": staff_id, "password": password})).send().await?;
    Ok((response.status().as_u16(), response.json().await?))
}

/// Wrong passwords lock an account; an unknown id gets the same answer as a wrong password;
/// a reset unlocks it; disabling ends every session at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lockout_reset_and_disable() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let url = p.url(HOUSING);
    let password = p.logins.account(HOUSING, "j.bloggs", &[Role::Caseworker]).await?;
    let (status, unknown) = login(&url, "nobody.here", "whatever-it-is-123").await?;
    let (status2, wrong) = login(&url, "j.bloggs", "not-the-password-1").await?;
    assert_eq!((status, status2), (401, 401));
    assert_eq!(unknown, wrong, "an unknown id and a wrong password must look the same");
    for _ in 1..local::LOCKOUT_AFTER - 1 {
        assert_eq!(login(&url, "j.bloggs", "not-the-password-1").await?.0, 401);
    }
    let (status, v) = login(&url, "j.bloggs", "not-the-password-1").await?;
    assert_eq!((status, v["error"].as_str()), (429, Some("locked")), "{v}");
    // Locked: even the right password is refused.
    assert_eq!(login(&url, "j.bloggs", &password).await?.0, 429);
    let pool = runtime::db::connect(&p.database_url(HOUSING).await?).await?;
    local::reset_password(&pool, "j.bloggs", "a-brand-new-password").await?;
    let (status, v) = login(&url, "j.bloggs", "a-brand-new-password").await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["roles"], json!(["caseworker"]));

    // Disabling ends a live session at once.
    let session = hub::staff::login(&url, "j.bloggs", "a-brand-new-password").await?;
    assert_eq!(session.get(format!("{url}/inbox")).send().await?.status().as_u16(), 200);
    local::disable(&pool, "j.bloggs").await?;
    assert_eq!(session.get(format!("{url}/inbox")).send().await?.status().as_u16(), 401);
    assert_eq!(login(&url, "j.bloggs", "a-brand-new-password").await?.0, 401);

    // The failed logins and the lockout are in the access log.
    let log = p.get(HOUSING, "/access-log?staff=j.bloggs").await?;
    let outcomes: Vec<&str> = log.as_array().unwrap().iter().filter_map(|e| e["outcome"].as_str()).collect();
    assert!(outcomes.iter().filter(|o| **o == "login_failed").count() >= 4 && outcomes.contains(&"locked") && outcomes.contains(&"login"), "{outcomes:?}");
    Ok(())
}

/// Who read a referral, and who tried what they may not: at the service and in the ledger.
/// The sender sees who at the recipient opened it.
async fn who_looked_at_a_referral_is_in_the_access_log_and_the_ledger_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let id = send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 0, 1, 1, sent).await?.remove(0);
    let idva = p.caseworker(IDVA).await?;
    eventually("the referral at the IDVA", Duration::from_secs(30), || async {
        let r = idva.get(format!("{}/inbox/{id}", p.url(IDVA))).send().await?;
        Ok((r.status().as_u16() == 200).then_some(()))
    })
    .await?;
    // A denied attempt: the IDVA's IG lead may not read referrals.
    let (status, _) = call(&p.as_role(IDVA, Role::IgLead).await?, "GET", &format!("{}/inbox/{id}", p.url(IDVA))).await?;
    assert_eq!(status, 403);

    // At the service: its IG lead sees who read it, and who was refused.
    let log = p.as_role(IDVA, Role::IgLead).await?.get(format!("{}/access-log?target={id}", p.url(IDVA))).send().await?.json::<Value>().await?;
    let rows: Vec<(&str, &str, &str)> =
        log.as_array().unwrap().iter().map(|e| (e["staff_id"].as_str().unwrap(), e["route"].as_str().unwrap(), e["outcome"].as_str().unwrap())).collect();
    assert!(rows.contains(&("demo.caseworker", "GET /inbox/{id}", "allowed")), "{rows:?}");
    assert!(rows.contains(&("demo.ig-lead", "GET /inbox/{id}", "forbidden")), "{rows:?}");

    // In the ledger, signed by the IDVA: the partnership's IG lead asks "who looked at this referral".
    let ig = p.ig_lead().await?;
    let entries = eventually("the accesses in the ledger", Duration::from_secs(30), || async {
        let v: Value = ig.get(format!("{}/ledger?entry_type=accessed&envelope_id={id}", p.url("audit"))).send().await?.json().await?;
        let entries = v.as_array().cloned().unwrap_or_default();
        Ok((entries.len() >= 2).then_some(entries))
    })
    .await?;
    for e in &entries {
        assert_eq!((e["sender"].as_str(), e["in_reply_to"].as_str(), e["verified"].as_bool()), (Some(IDVA), Some(id.as_str()), Some(true)), "{e}");
    }
    assert!(entries.iter().any(|e| e["staff_id"] == "demo.caseworker" && e["reason"] == "allowed"), "{entries:?}");
    assert!(entries.iter().any(|e| e["staff_id"] == "demo.ig-lead" && e["reason"] == "forbidden"), "{entries:?}");
    let by_staff: Value = ig.get(format!("{}/ledger?entry_type=accessed&staff_id=demo.ig-lead", p.url("audit"))).send().await?.json().await?;
    assert!(by_staff.as_array().unwrap().iter().all(|e| e["staff_id"] == "demo.ig-lead"), "{by_staff}");
    // Reading a report is recorded in the ledger, by the IG office; reading the ledger itself
    // in the audit service's own access log (a ledger recording its own reads never settles).
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let report = ig.get(format!("{}/report?since={today}&until={today}", p.url("audit"))).send().await?;
    assert_eq!(report.status().as_u16(), 200);
    let own = eventually("the audit service's record of the report read", Duration::from_secs(30), || async {
        let v: Value = ig.get(format!("{}/ledger?entry_type=accessed&staff_id=demo.ig-lead&sender=ig-northbridge", p.url("audit"))).send().await?.json().await?;
        Ok(v.as_array().and_then(|a| a.iter().find(|e| e["rule"] == "GET /report").cloned()))
    })
    .await?;
    assert_eq!((own["reason"].as_str(), own["verified"].as_bool()), (Some("allowed"), Some(true)), "{own}");
    let audit_log: Value = ig.get(format!("{}/access-log?staff=demo.ig-lead", p.url("audit"))).send().await?.json().await?;
    assert!(audit_log.as_array().unwrap().iter().any(|e| e["route"] == "GET /ledger" && e["outcome"] == "allowed"), "{audit_log}");

    // A subject access request: the bundle answers, and the request is in the ledger under
    // the IG lead's id, without the name it was made for.
    let bundle = eventually("the subject access bundle", Duration::from_secs(30), || async {
        let r = ig.post(format!("{}/subject-access", p.url("audit"))).json(&json!({"full_name": "Synthetic Person 00000", "date_of_birth": "1990-01-01"})).send().await?;
        let v: Value = r.json().await?;
        Ok(v["entries"].as_array().filter(|e| !e.is_empty()).map(|_| v.clone()))
    })
    .await?;
    assert!(bundle["entries"].as_array().unwrap().iter().any(|e| e["entry"]["entry_id"] == id.as_str()), "the referral is missing from the bundle");
    let request = eventually("the subject access request in the ledger", Duration::from_secs(30), || async {
        let v: Value = ig.get(format!("{}/ledger?entry_type=accessed&sender=ig-northbridge", p.url("audit"))).send().await?.json().await?;
        Ok(v.as_array().and_then(|a| a.iter().find(|e| e["rule"] == "POST /subject-access" && e["reason"] == "allowed").cloned()))
    })
    .await?;
    assert_eq!((request["staff_id"].as_str(), request["verified"].as_bool()), (Some("demo.ig-lead"), Some(true)));
    assert!(!Value::from(p.ledger().await?).to_string().contains("Synthetic Person"), "a name reached the ledger");

    // The sender sees who opened it.
    let mine = eventually("the opened receipt at housing", Duration::from_secs(30), || async {
        let v = p.get(HOUSING, &format!("/disclosures/{id}")).await?;
        Ok((v["opened_by"] == "demo.caseworker").then_some(v))
    })
    .await?;
    assert_eq!(mine["sent_by"], "demo.caseworker");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn who_looked_at_a_referral_is_in_the_access_log_and_the_ledger_on_sqlite() -> anyhow::Result<()> {
    who_looked_at_a_referral_is_in_the_access_log_and_the_ledger_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn who_looked_at_a_referral_is_in_the_access_log_and_the_ledger_on_postgres() -> anyhow::Result<()> {
    who_looked_at_a_referral_is_in_the_access_log_and_the_ledger_on(Backend::Postgres).await
}
