//! The browser harness (tests::browser) on a tiny site of its own, served with the consoles'
//! strict Content-Security-Policy: axe-core runs there and passes an accessible page, fails
//! a page with known violations by naming their rules, screenshots land where the module
//! says, a person can fill and send a form with the keyboard alone, and two people's
//! browsers do not share cookies.

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tests::browser::Browser;

/// The policy the web consoles are served with: nothing but the site's own files, no inline
/// script or style, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the form's POST handler received, one entry per submission; the cookie a browser
/// gets back is the index of its submission.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Submission>>>);

#[derive(Clone, Debug, PartialEq)]
struct Submission {
    name: String,
    team: String,
    consent: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_checks_pages_with_axe_under_a_strict_csp_and_drives_forms_by_keyboard() -> anyhow::Result<()> {
    let received = Received::default();
    let base = serve(received.clone()).await?;
    let browser = Browser::start("browser_harness").await?;

    // A keyboard user: Tab to the field by its label, type, Enter submits the form.
    let kim = browser.user("kim").await?;
    kim.goto(&format!("{base}/")).await?;
    kim.page("form").await?;
    let screenshot = browser.screenshots().join("01-form.png");
    let png = std::fs::read(&screenshot)?;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", screenshot.display());
    kim.tab_to("Your name").await?;
    kim.type_text("Kim Keyboard").await?;
    kim.press_enter().await?;
    assert_eq!(kim.text("h1").await?, "Thank you, Kim Keyboard");
    assert!(kim.url().await?.ends_with("/thanks"), "the form's POST answers with a redirect to /thanks");
    kim.page("thanks").await?;
    assert_eq!(received.0.lock().expect("not poisoned").clone(), [Submission { name: "Kim Keyboard".into(), team: "housing".into(), consent: false }]);
    assert_eq!(kim.console_errors().await?, Vec::<String>::new());

    // Another person at another computer: none of kim's cookies; the other helpers.
    let max = browser.user("max").await?;
    max.goto(&format!("{base}/thanks")).await?;
    assert_eq!(max.text("h1").await?, "Nothing sent from this browser");
    max.goto(&format!("{base}/")).await?;
    // The harness's own errors say what went wrong: focus never came to the target (and
    // where it went instead); the form did not submit (and which field was invalid).
    let lost = format!("{:#}", max.tab_to("No such field").await.expect_err("nothing is called that"));
    assert!(lost.contains(r#"input#name "Your name" → select#team "Team""#), "{lost}");
    let refused = format!("{:#}", max.submit("button[type=submit]").await.expect_err("the name is required"));
    assert!(refused.contains("invalid fields") && refused.contains("name:"), "{refused}");
    max.fill("#name", "Max Mouse").await?;
    max.select("#team", "idva").await?;
    max.check("#consent").await?;
    max.submit("button[type=submit]").await?;
    assert_eq!(max.text("h1").await?, "Thank you, Max Mouse");
    assert_eq!(max.texts("dd").await?, ["idva", "yes"]);
    max.page("sent").await?;

    // A page with known violations fails the check, naming each rule; its inline script
    // was refused (so the policy is in force), and axe-core ran all the same.
    max.goto(&format!("{base}/bad")).await?;
    let failure = format!("{:#}", max.page("bad").await.expect_err("the bad page has violations"));
    for rule in ["image-alt", "label", "html-has-lang"] {
        assert!(failure.contains(rule), "the check should name the rule {rule}: {failure}");
    }
    assert!(browser.screenshots().join("04-bad.png").is_file(), "the failing page has its screenshot too");
    assert!(!max.exists("body[data-inline-script]").await?, "the policy should have refused the inline script");
    let errors = max.console_errors().await?;
    assert!(errors.iter().any(|e| e.contains("Content Security Policy")), "the refused script should be in the console: {errors:?}");

    kim.close().await?;
    max.close().await?;
    Ok(())
}

/// Serves the test site on a free port of 127.0.0.1; the server lives as long as the test's
/// runtime.
async fn serve(received: Received) -> anyhow::Result<String> {
    let router = Router::new()
        .route("/", get(form))
        .route("/style.css", get(style))
        // Chromium asks every site for one; a 404 would be an error in the console.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/send", axum::routing::post(send))
        .route("/thanks", get(thanks))
        .route("/bad", get(bad))
        .with_state(received);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(base)
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CONTENT_SECURITY_POLICY, CSP)], body).into_response()
}

/// A page built as the consoles are: language, title, a stylesheet of its own, landmarks,
/// a heading, and a form whose every field has a label.
fn page(title: &str, main: &str) -> Response {
    html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} – browser harness</title>
<link rel="stylesheet" href="/style.css"></head>
<body><main>{main}</main></body></html>"#
    ))
}

async fn form() -> Response {
    page(
        "Send the form",
        r#"<h1>Send the form</h1>
<form method="post" action="/send">
  <p><label for="name">Your name</label> <input id="name" name="name" type="text" autocomplete="name" required></p>
  <p><label for="team">Team</label> <select id="team" name="team"><option value="housing">Housing</option><option value="idva">IDVA service</option></select></p>
  <p><input id="consent" name="consent" type="checkbox" value="yes"> <label for="consent">The person agreed</label></p>
  <p><button type="submit">Send</button></p>
</form>"#,
    )
}

async fn style() -> Response {
    let css = "body { font: 18px/1.5 sans-serif; color: #111; background: #fff; margin: 2rem; }\n\
               :focus { outline: 3px solid #fd0; outline-offset: 2px; }\n";
    ([(header::CONTENT_TYPE, "text/css"), (header::CONTENT_SECURITY_POLICY, CSP)], css).into_response()
}

/// The form's POST handler: records the submission and redirects to /thanks (POST, then a
/// redirect, then GET, as the consoles answer a form), setting a cookie naming it.
async fn send(State(received): State<Received>, body: String) -> Response {
    // A form body is a query string; reqwest's URL parser decodes one without another crate.
    let Ok(url) = reqwest::Url::parse(&format!("http://form/?{body}")) else {
        return (StatusCode::BAD_REQUEST, "not a form").into_response();
    };
    let field = |key: &str| url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned());
    let submission = Submission { name: field("name").unwrap_or_default(), team: field("team").unwrap_or_default(), consent: field("consent").is_some() };
    let index = {
        let mut all = received.0.lock().expect("not poisoned");
        all.push(submission);
        all.len() - 1
    };
    let cookie = format!("sent={index}; Path=/; HttpOnly; SameSite=Strict");
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/thanks".to_owned()), (header::SET_COOKIE, cookie)]).into_response()
}

async fn thanks(State(received): State<Received>, headers: HeaderMap) -> Response {
    let sent = headers
        .get(header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split("; ").find_map(|kv| kv.strip_prefix("sent=")))
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| received.0.lock().expect("not poisoned").get(i).cloned());
    match sent {
        Some(s) => page(
            "Sent",
            &format!(
                "<h1>Thank you, {}</h1><dl><dt>Team</dt><dd>{}</dd><dt>Agreed</dt><dd>{}</dd></dl>",
                escape(&s.name),
                escape(&s.team),
                if s.consent { "yes" } else { "no" }
            ),
        ),
        None => page("Nothing sent", "<h1>Nothing sent from this browser</h1>"),
    }
}

/// Known violations: no language, an image without a text alternative, a field without a
/// label; and an inline script, which the policy refuses.
async fn bad() -> Response {
    html(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Bad page</title></head>
<body><main><h1>Bad page</h1><img src="/style.css"><form><input name="who" type="text"></form>
<script>document.body.dataset.inlineScript = 'ran';</script></main></body></html>"#
            .to_owned(),
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
