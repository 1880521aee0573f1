//! The web console in a real headless Chromium, against a real partnership on its own
//! nats-server: every page visited is screenshotted and checked with axe-core (WCAG 2.2 AA),
//! and each person is a browser session of their own (see `tests::browser`).
//!
//! One partnership, the four flows in order, since each builds on the one before:
//! 1. a housing caseworker records a DASH checklist, carries it into an IDVA referral,
//!    records consent on the way, previews and sends; the IDVA caseworker finds it in the
//!    inbox, opens it and accepts it (with the keyboard alone); housing's timeline then shows
//!    it opened by that caseworker and accepted;
//! 2. a perpetrator referral with the survivor's address, composed with the keyboard alone:
//!    the preview says it would be refused, sending anyway is refused with the reason, and it
//!    is a near miss in the ledger;
//! 3. the IG lead finds the near miss in the ledger search, opens its proof, takes the
//!    month's report and its CSV, and sees in the access log who opened the referral;
//! 4. a caseworker going to an IG page (at the audit service, and at their own service) gets
//!    "not allowed", and the attempt is in the access log.

use std::time::Duration;

use anyhow::Context as _;
use tests::{Backend, Partnership, Role, browser::{Browser, User}, eventually};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";

/// Signs in at a service's console with the keyboard alone: the login page comes first.
async fn sign_in(user: &User, url: &str, staff: &str, password: &str) -> anyhow::Result<()> {
    user.goto(&format!("{url}/console")).await?;
    anyhow::ensure!(user.url().await?.ends_with("/console/login"), "{staff}: the console did not ask for a login first");
    user.page("sign-in").await?;
    user.tab_to("#staff_id").await?;
    user.type_text(staff).await?;
    user.tab_to("#password").await?;
    user.type_text(password).await?;
    user.press_enter().await?;
    if !user.url().await?.ends_with("/console") {
        anyhow::bail!("{staff}: signing in did not lead to the dashboard but to {}: {}", user.url().await?, main_text(user).await.unwrap_or_default());
    }
    Ok(())
}

/// The text of the page's main part.
async fn main_text(user: &User) -> anyhow::Result<String> {
    user.text("main").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_flows_in_a_browser_on_sqlite() -> anyhow::Result<()> {
    console_flows(Backend::Sqlite, "console-sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_flows_in_a_browser_on_postgres() -> anyhow::Result<()> {
    console_flows(Backend::Postgres, "console-postgres").await
}

async fn console_flows(backend: Backend, name: &str) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let browser = Browser::start(name).await?;
    let (housing, idva, audit) = (p.url(HOUSING), p.url(IDVA), p.url("audit"));
    let password = |service: &'static str, role: Role| {
        let logins = &p.logins;
        async move { logins.account(service, &format!("demo.{}", role.name()), &[role]).await }
    };

    // ---------------------------------------------------------------- 1. a referral
    let hsg = browser.user("housing caseworker").await?;
    sign_in(&hsg, &housing, "demo.caseworker", &password(HOUSING, Role::Caseworker).await?).await?;
    hsg.page("housing-dashboard").await?;
    hsg.click("nav a[href='/console/dash']").await?;
    hsg.page("dash-checklist").await?;
    hsg.fill("#case_ref", "HSG-2026-0101").await?;
    hsg.fill("#subject_name", "Synthetic Survivor One").await?;
    hsg.fill("#subject_dob", "1990-02-03").await?;
    for q in 1..=24 {
        hsg.check(&format!("#q{q}-{}", if q <= 15 { "yes" } else { "no" })).await?;
    }
    hsg.submit("main form button[type=submit]").await?;
    hsg.page("dash-recorded").await?;
    let recorded = main_text(&hsg).await?;
    anyhow::ensure!(recorded.contains("Score 15") && recorded.contains("high"), "the DASH result: {recorded}");
    anyhow::ensure!(recorded.contains("MARAC referral"), "a high result offers the MARAC referral too: {recorded}");
    hsg.select("#to-idvaReferral", IDVA).await?;
    hsg.submit("main form button[type=submit]").await?;
    hsg.page("compose-idva").await?;
    anyhow::ensure!(hsg.page_source().await?.contains("category: survivor.address"), "the compose form labels each field with its data category");
    hsg.select("#purpose", "safeguarding").await?;
    hsg.select("#lawful_basis", "uk-gdpr-6-1-a").await?;
    hsg.check("#consent-record").await?;
    hsg.fill("#p-reason", "Synthetic test referral: wants support with safety planning").await?;
    hsg.check("#p-survivorAware").await?;
    hsg.submit("main form button[type=submit]").await?;
    hsg.page("preview-idva").await?;
    let preview = main_text(&hsg).await?;
    anyhow::ensure!(preview.contains("The protocol allows this referral") && preview.contains("survivor.identity"), "the preview: {preview}");
    hsg.tab_to("Send referral").await?;
    hsg.press_enter().await?;
    let sent_url = hsg.url().await?;
    let envelope_id = sent_url.rsplit('/').next().unwrap_or_default().to_owned();
    anyhow::ensure!(isp::clear::is_envelope_id(&envelope_id), "sending did not lead to the disclosure's page: {sent_url}");
    hsg.page("sent-timeline").await?;

    let idv = browser.user("IDVA caseworker").await?;
    sign_in(&idv, &idva, "demo.caseworker", &password(IDVA, Role::Caseworker).await?).await?;
    let link = format!("a[href='/console/inbox/{envelope_id}']");
    eventually("the referral in the IDVA inbox", Duration::from_secs(20), || async {
        idv.goto(&format!("{idva}/console/inbox")).await?;
        Ok(idv.exists(&link).await?.then_some(()))
    })
    .await?;
    idv.page("idva-inbox").await?;
    idv.click(&link).await?;
    idv.page("idva-referral").await?;
    let shown = main_text(&idv).await?;
    anyhow::ensure!(shown.contains("Synthetic Survivor One") && shown.contains("HSG-2026-0101"), "the referral as the IDVA reads it: {shown}");
    anyhow::ensure!(shown.contains("score 15 of 24") && shown.contains("signed summary checked on receipt"), "what proves the risk: {shown}");
    // Accepting with the keyboard alone.
    idv.tab_to("#answer-accepted").await?;
    idv.press_space().await?;
    idv.tab_to("Send answer").await?;
    idv.press_enter().await?;
    idv.page("idva-answered").await?;
    anyhow::ensure!(main_text(&idv).await?.contains("The referral was accepted"), "no confirmation of the answer");

    let timeline = eventually("housing's timeline showing the referral opened by the IDVA caseworker and accepted", Duration::from_secs(20), || async {
        hsg.goto(&sent_url).await?;
        let text = main_text(&hsg).await?;
        Ok((text.contains("Opened") && text.contains("by demo.caseworker at") && text.contains("Accepted")).then_some(text))
    })
    .await?;
    anyhow::ensure!(timeline.contains("Published to the partnership") && timeline.contains("Delivered"), "the timeline: {timeline}");
    hsg.page("sent-timeline-accepted").await?;

    // The person's record: found by name and date of birth (posted, never in the address).
    hsg.click("nav a[href='/console/people']").await?;
    hsg.page("people").await?;
    hsg.fill("#subject_name", "Synthetic Survivor One").await?;
    hsg.fill("#subject_dob", "1990-02-03").await?;
    hsg.submit("main form button[type=submit]").await?;
    anyhow::ensure!(!hsg.url().await?.contains("Synthetic"), "the name went into the address");
    let record = main_text(&hsg).await?;
    anyhow::ensure!(record.contains("DASH risk assessment: high risk") && record.contains("Housing IDVA referral sent to"), "the chronology: {record}");
    anyhow::ensure!(record.contains("Refer to MARAC (high DASH result)"), "the MARAC referral still to make: {record}");
    hsg.page("person-record").await?;
    let subject_ref = hsg.url().await?.rsplit('/').next().unwrap_or_default().to_owned();
    anyhow::ensure!(isp::clear::is_subject_ref(&subject_ref), "the record's address ends in the subject ref");
    hsg.click("nav a[href='/console/deadlines']").await?;
    hsg.page("deadlines").await?;
    // Housing's casework pages, each checked with axe.
    for (path, name) in [
        (format!("/console/housing/{subject_ref}"), "housing-casework"),
        (format!("/console/housing/{subject_ref}/uaf"), "housing-assessment-form"),
        ("/console/panel".to_owned(), "housing-panel"),
        ("/console/concerns/new".to_owned(), "housing-raise-concern"),
        ("/console/concerns".to_owned(), "housing-concerns"),
    ] {
        hsg.goto(&format!("{housing}{path}")).await?;
        hsg.page(name).await?;
    }
    idv.goto(&format!("{idva}/console/cases")).await?;
    anyhow::ensure!(main_text(&idv).await?.contains("HSG-2026-0101"), "the IDVA caseload holds the referral's case");
    idv.page("idva-caseload").await?;
    idv.goto(&format!("{idva}/console/cases/{envelope_id}")).await?;
    anyhow::ensure!(main_text(&idv).await?.contains("Triage"), "the case page offers triage");
    idv.page("idva-case").await?;
    // MARAC's board and figures, and the perpetrator pathway's pages, each checked with axe.
    let coordinator = browser.user("MARAC coordinator").await?;
    sign_in(&coordinator, &p.url("marac-northbridge"), "demo.marac-coordinator", &password("marac-northbridge", Role::MaracCoordinator).await?).await?;
    for (path, name) in [("/console/board", "marac-board"), ("/console/figures", "marac-figures")] {
        coordinator.goto(&format!("{}{path}", p.url("marac-northbridge"))).await?;
        coordinator.page(name).await?;
    }
    let worker = browser.user("pathway worker").await?;
    sign_in(&worker, &p.url("perpetrator-pathways"), "demo.caseworker", &password("perpetrator-pathways", Role::Caseworker).await?).await?;
    for (path, name) in [("/console/cases", "pathway-caseload"), ("/console/perpetrators", "pathway-perpetrators")] {
        worker.goto(&format!("{}{path}", p.url("perpetrator-pathways"))).await?;
        worker.page(name).await?;
    }

    // ---------------------------------------------------------------- 2. a near miss
    // With the keyboard alone: Tab to each field, type (a closed list takes what is typed).
    hsg.click("nav a[href='/console/compose']").await?;
    hsg.page("compose-start").await?;
    hsg.tab_to("#to").await?;
    hsg.type_text("Northbridge Perpetrator").await?;
    hsg.tab_to("#kind").await?;
    hsg.type_text("Perpetrator referral").await?;
    hsg.tab_to("Continue").await?;
    hsg.press_enter().await?;
    hsg.page("compose-perpetrator").await?;
    for (field, text) in [
        ("#case_ref", "HSG-2026-0102"),
        ("#subject_name", "Synthetic Harmer Two"),
        ("#subject_dob", "1985-06-07"),
        ("#p-perpetrator-fullName", "Synthetic Harmer Two"),
        ("#p-survivor-fullName", "Synthetic Survivor One"),
        ("#p-survivor-address", "1 Synthetic Lane"),
    ] {
        hsg.tab_to(field).await?;
        hsg.type_text(text).await?;
    }
    hsg.tab_to("Preview what will be shared").await?;
    hsg.press_enter().await?;
    hsg.page("preview-perpetrator").await?;
    let preview = main_text(&hsg).await?;
    anyhow::ensure!(preview.contains("The protocol would refuse this referral") && preview.contains("survivor.address"), "the preview: {preview}");
    hsg.tab_to("Send referral").await?;
    hsg.press_enter().await?;
    hsg.page("perpetrator-refused").await?;
    let refused = main_text(&hsg).await?;
    anyhow::ensure!(refused.contains("Nothing was sent") && refused.contains("survivor.address") && refused.contains("near miss"), "the refusal: {refused}");
    let near_miss_id = hsg.texts(".refused span.mono").await?.last().cloned().context("no near miss id on the page")?;
    eventually("the near miss in the ledger", Duration::from_secs(20), || async {
        Ok(p.ledger().await?.iter().any(|e| e["entry_type"] == "near_miss" && e["entry_id"] == near_miss_id.as_str()).then_some(()))
    })
    .await?;

    // ---------------------------------------------------------------- 3. the IG lead
    let ig = browser.user("IG lead").await?;
    sign_in(&ig, &audit, "demo.ig-lead", &password("audit", Role::IgLead).await?).await?;
    ig.page("ig-overview").await?;
    anyhow::ensure!(main_text(&ig).await?.contains("every entry, link and checkpoint"), "the ledger does not show as verified");
    ig.click("nav a[href='/console/ledger']").await?;
    ig.select("#entry_type", "near_miss").await?;
    ig.submit("main form button[type=submit]").await?;
    ig.page("ig-ledger-search").await?;
    let row = eventually("the near miss's row with a link", Duration::from_secs(5), || async {
        let found = ig.texts("tbody tr").await?.into_iter().find(|r| r.contains("perpetrator.referral"));
        Ok(found)
    })
    .await?;
    let seq = row.split_whitespace().next().context("no entry number")?.to_owned();
    ig.click(&format!("a[href='/console/ledger/{seq}']")).await?;
    let entry = eventually("the entry's inclusion proof", Duration::from_secs(20), || async {
        ig.goto(&format!("{audit}/console/ledger/{seq}")).await?;
        let text = main_text(&ig).await?;
        Ok(text.contains("The path leads from this entry to the checkpoint's signed root").then_some(text))
    })
    .await?;
    anyhow::ensure!(entry.contains("survivor.address") && entry.contains("near miss"), "the entry page: {entry}");
    ig.page("ig-entry-proof").await?;
    ig.click("nav a[href='/console/report']").await?;
    ig.page("ig-report").await?;
    let report = main_text(&ig).await?;
    anyhow::ensure!(report.contains("Near misses: sends the protocol refused, by rule") && report.contains("roles.perpetrator.never"), "the report: {report}");
    anyhow::ensure!(ig.exists("a[download][href^='/console/report.csv']").await?, "no CSV download on the report");
    // The CSV as the link gives it (a download leaves the page as it is), with the IG lead's login.
    let href = ig.page_source().await?.split("href=\"/console/report.csv").nth(1).and_then(|t| t.split('"').next()).map(|q| q.replace("&amp;", "&")).context("no CSV link")?;
    let csv = p.ig_lead().await?.get(format!("{audit}/console/report.csv{href}")).send().await?;
    anyhow::ensure!(csv.headers()["content-type"].to_str()?.starts_with("text/csv"), "the CSV answer is not CSV");
    anyhow::ensure!(csv.text().await?.contains("roles.perpetrator.never"), "the CSV lacks the near miss");
    let opened = eventually("the IDVA caseworker's opening in the IG access log", Duration::from_secs(20), || async {
        ig.goto(&format!("{audit}/console/access-log?envelope_id={envelope_id}")).await?;
        let text = main_text(&ig).await?;
        Ok((text.contains(IDVA) && text.contains("demo.caseworker") && text.contains("GET /console/inbox/{id}")).then_some(text))
    })
    .await?;
    anyhow::ensure!(opened.contains("allowed"), "the access log: {opened}");
    ig.page("ig-access-log").await?;
    // Subject access by name and date of birth, in a form: the referral and the near miss.
    ig.click("nav a[href='/console/subject-access']").await?;
    ig.fill("#full_name", "Synthetic Survivor One").await?;
    ig.fill("#date_of_birth", "1990-02-03").await?;
    ig.submit("main form button[type=submit]").await?;
    ig.page("ig-subject-access").await?;
    anyhow::ensure!(!ig.url().await?.contains("Synthetic"), "the person's name reached a web address");
    let bundle = main_text(&ig).await?;
    anyhow::ensure!(bundle.contains("housing.idva_referral"), "the subject access search: {bundle}");
    anyhow::ensure!(ig.exists("form[action='/console/subject-access.json'] button").await?, "no download of the bundle");
    // The policy simulator says what the preview said.
    ig.goto(&format!("{audit}/console/policy?from=housing&to=perpetrator&kind=perpetrator.referral&consent=given&risk=high")).await?;
    ig.page("ig-policy-simulator").await?;
    let simulated = main_text(&ig).await?;
    anyhow::ensure!(simulated.contains("survivor.address") && simulated.contains("Refuse the whole send"), "the simulator: {simulated}");

    // Housing's own access log, as its agency admin reads it.
    let admin = browser.user("housing agency admin").await?;
    sign_in(&admin, &housing, "demo.agency-admin", &password(HOUSING, Role::AgencyAdmin).await?).await?;
    admin.click("nav a[href='/console/access-log']").await?;
    admin.page("housing-access-log").await?;
    anyhow::ensure!(main_text(&admin).await?.contains("POST /console/login"), "the sign-ins are not in housing's access log");
    let witnessed = eventually("housing's witness having cosigned a checkpoint", Duration::from_secs(20), || async {
        admin.goto(&format!("{housing}/console/witness")).await?;
        let text = main_text(&admin).await?.replace('\n', " ");
        Ok(text.contains("Cosigned by this agency yes").then_some(text))
    })
    .await?;
    anyhow::ensure!(witnessed.contains("No alerts"), "housing's witness: {witnessed}");
    admin.page("housing-witness").await?;
    hsg.click("nav a[href='/console/consents']").await?;
    hsg.page("housing-consents").await?;

    // ---------------------------------------------------------------- 4. not allowed
    hsg.goto(&format!("{housing}/console/access-log")).await?;
    hsg.page("housing-not-allowed").await?;
    anyhow::ensure!(main_text(&hsg).await?.contains("None of your roles may open this page"), "a caseworker opened the access log");
    let cw = browser.user("caseworker at the audit service").await?;
    sign_in(&cw, &audit, "demo.caseworker", &password("audit", Role::Caseworker).await?).await?;
    cw.goto(&format!("{audit}/console/ledger")).await?;
    cw.page("audit-not-allowed").await?;
    anyhow::ensure!(cw.text("h1").await? == "You are not allowed to see this page", "a caseworker opened the ledger");
    eventually("the refused attempt in the IG access log", Duration::from_secs(20), || async {
        ig.goto(&format!("{audit}/console/access-log?staff_id=demo.caseworker")).await?;
        let text = main_text(&ig).await?;
        Ok((text.contains("GET /console/access-log") && text.contains("forbidden")).then_some(()))
    })
    .await?;

    // Signing out (with the keyboard): the session ends, and the console asks for a login again.
    hsg.goto(&format!("{housing}/console")).await?;
    hsg.tab_to("Sign out").await?;
    hsg.press_enter().await?;
    hsg.page("signed-out").await?;
    anyhow::ensure!(hsg.text("h1").await? == "You have signed out", "signing out did not say so");
    hsg.goto(&format!("{housing}/console/inbox")).await?;
    anyhow::ensure!(hsg.url().await?.ends_with("/console/login"), "the inbox opened after signing out");

    for user in [hsg, idv, ig, cw, admin] {
        user.close().await?;
    }
    Ok(())
}

/// The console's forms as an attacker's page would post them: a sign-in without the sign-in
/// page's own token, a form from another origin, a form without the session's CSRF field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_forms_refuse_what_another_site_posts() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let url = p.url(HOUSING);
    let password = p.logins.account(HOUSING, "demo.caseworker", &[Role::Caseworker]).await?;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let cookie_of = |r: &reqwest::Response, name: &str| {
        r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find(|c| c.starts_with(&format!("{name}="))).map(|c| c.split(';').next().unwrap_or_default().to_owned())
    };
    let credentials = [("staff_id", "demo.caseworker"), ("password", password.as_str())];

    // A sign-in that did not come from the sign-in page: refused, no session.
    let r = http.post(format!("{url}/console/login")).form(&credentials).send().await?;
    assert_eq!(r.status().as_u16(), 400);
    assert!(cookie_of(&r, "hub_session_housing-northbridge").is_none(), "a sign-in without the page's token started a session");

    // The page's token and cookie, but posted from another site: refused.
    let page = http.get(format!("{url}/console/login")).send().await?;
    let login_cookie = cookie_of(&page, "hub_login_housing-northbridge").context("the sign-in page set no token cookie")?;
    let html = page.text().await?;
    let token = html.split("name=\"login_token\" value=\"").nth(1).and_then(|t| t.split('"').next()).context("no token in the form")?.to_owned();
    let form = [credentials[0], credentials[1], ("login_token", token.as_str())];
    let r = http.post(format!("{url}/console/login")).header("cookie", &login_cookie).header("origin", "https://elsewhere.example").form(&form).send().await?;
    assert_eq!(r.status().as_u16(), 403, "a sign-in posted from another site was taken");

    // From the service's own page: signed in.
    let r = http.post(format!("{url}/console/login")).header("cookie", &login_cookie).header("origin", url.as_str()).form(&form).send().await?;
    assert_eq!((r.status().as_u16(), r.headers().get("location").and_then(|l| l.to_str().ok())), (303, Some("/console")));
    let session = cookie_of(&r, "hub_session_housing-northbridge").context("no session cookie")?;

    // A form of the signed-in console without the session's CSRF field: refused, nothing done.
    let withdraw = [("consent_id", "CON-2026-1"), ("reason", "asked to")];
    let r = http.post(format!("{url}/console/consents/withdraw")).header("cookie", &session).form(&withdraw).send().await?;
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await?.contains("This form has expired"));
    // With it (from the page that carries it), the form reaches its handler.
    let consents = http.get(format!("{url}/console/consents")).header("cookie", &session).send().await?.text().await?;
    let csrf = consents.split("name=\"csrf_token\" value=\"").nth(1).and_then(|t| t.split('"').next()).context("no CSRF field on the page")?.to_owned();
    let with = [withdraw[0], withdraw[1], ("csrf_token", csrf.as_str())];
    let r = http.post(format!("{url}/console/consents/withdraw")).header("cookie", &session).form(&with).send().await?;
    let text = r.text().await?;
    assert!(text.contains("no consent record") || text.contains("There is a problem"), "the withdrawal form did not reach its handler: {text}");
    Ok(())
}
