//! A real browser for the tests of the web consoles: headless Chromium driven through
//! chromedriver (WebDriver, with the `fantoccini` crate), every page it shows checked with
//! axe-core and kept as a screenshot.
//!
//! A test starts one [`Browser`] (one chromedriver on a free port, stopped with the value)
//! and asks it for a [`User`] per person in the story. Each user is a WebDriver session of
//! its own, so its own Chromium with its own cookie jar: a caseworker at housing and an IDVA
//! are different people on different computers, and one's login must never be the other's.
//!
//! Every page visit ends with [`User::page`]: a screenshot of the window goes to
//! `<target>/console-screenshots/<test>/<NN>-<page>.png` (`<target>` is `CARGO_TARGET_DIR`,
//! else the workspace's `target/`; `NN` counts the visits of the whole test, so the files sort
//! in the order the story happened and a reviewer can page through it), then axe-core runs on
//! the page with the WCAG 2.0, 2.1 and 2.2 A and AA rules ([`AXE_TAGS`]), and any violation
//! fails the test with the rule, its impact and the elements it found. Scripts that WebDriver
//! runs are not the page's scripts, so axe-core works on pages whose Content-Security-Policy
//! allows no script but their own (the consoles' policy); the harness's self-test checks this.
//!
//! The keyboard helpers ([`User::tab_to`], [`User::press_enter`], [`User::press_space`],
//! [`User::type_text`]) let a test do what a person without a mouse does. An action that
//! loads a new page (a link followed, a form submitted by its button or by Enter in one of
//! its fields) returns only when that page has loaded, so the next look is at the new page.
//!
//! Chromium, chromedriver and axe-core are found through `HUB_CHROMIUM`, `HUB_CHROMEDRIVER`
//! and `HUB_AXE_JS`, else where Debian and `deploy/test.sh` put them. When one is missing the
//! test fails and says to run `deploy/test.sh`, which installs all three: a test that
//! skipped itself would let an inaccessible or broken console pass unnoticed.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use fantoccini::{
    Client, ClientBuilder, Locator,
    actions::{InputSource as _, KeyAction, KeyActions},
    elements::Element,
    key::Key,
    wd::{Capabilities, TimeoutConfiguration},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader},
    process::{Child, Command},
};

/// The axe-core tags every page is checked against: WCAG 2.0, 2.1 and 2.2 at levels A and AA,
/// the level public-sector services in the UK must meet.
pub const AXE_TAGS: [&str; 5] = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"];

/// Chromium's window: wide enough for the consoles' two-column forms, tall enough that most
/// pages fit in one screenshot. Fixed, so screenshots of two runs can be compared.
const WINDOW: (u32, u32) = (1100, 1400);

/// How long chromedriver may take to start, and a new page to load after an action: bounds
/// for a machine busy with the rest of the suite, not expectations.
const STARTUP: Duration = Duration::from_secs(10);
const PAGE_LOAD: Duration = Duration::from_secs(30);

/// Presses of Tab [`User::tab_to`] gives up after, should focus never come round again.
const MAX_TABS: usize = 100;

const INSTALL_HINT: &str = "run deploy/test.sh, which installs Chromium, chromedriver and axe-core";

/// One chromedriver for one test; every [`User`] it makes is a browser of its own.
/// Dropping it closes every browser still open and stops chromedriver.
pub struct Browser {
    shared: Arc<Shared>,
    _driver: Driver,
}

/// What a browser's users share: where the screenshots go and their count, and axe-core.
struct Shared {
    driver_url: String,
    chromium: PathBuf,
    screenshots: PathBuf,
    visits: AtomicUsize,
    axe_js: String,
    http: reqwest::Client,
}

impl Browser {
    /// Starts chromedriver for the test `test_name` (letters, digits, `-` and `_`: it names
    /// the test's screenshot folder, which is emptied now so it holds this run's pages only).
    pub async fn start(test_name: &str) -> anyhow::Result<Browser> {
        check_name("test name", test_name)?;
        let chromedriver = chromedriver_path()?;
        let chromium = chromium_path()?;
        let axe_path = axe_path();
        let axe_js = std::fs::read_to_string(&axe_path)
            .with_context(|| format!("cannot read axe-core at {}: {INSTALL_HINT} (or set HUB_AXE_JS)", axe_path.display()))?;
        let screenshots = target_dir().join("console-screenshots").join(test_name);
        match std::fs::remove_dir_all(&screenshots) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("emptying {}", screenshots.display())),
        }
        std::fs::create_dir_all(&screenshots).with_context(|| format!("creating {}", screenshots.display()))?;
        let http = reqwest::Client::builder().no_proxy().build().context("an HTTP client for chromedriver")?;
        let driver = Driver::start(&chromedriver, &screenshots.join("chromedriver.log"), &http).await?;
        let shared = Shared {
            driver_url: driver.url.clone(),
            chromium,
            screenshots,
            visits: AtomicUsize::new(0),
            axe_js,
            http,
        };
        Ok(Browser { shared: Arc::new(shared), _driver: driver })
    }

    /// A new person at a computer of their own: a new Chromium with an empty cookie jar.
    /// `who` names them in errors ("the IDVA", "alice.housing").
    pub async fn user(&self, who: &str) -> anyhow::Result<User> {
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities(&self.shared.chromium))
            .connect(&self.shared.driver_url)
            .await
            .with_context(|| format!("{who}: chromedriver could not start Chromium ({}); {INSTALL_HINT}", self.shared.chromium.display()))?;
        let session = client.session_id().await?.context("chromedriver made a session without an id")?;
        // axe-core on a long page takes seconds; no implicit wait, so a missing element is an
        // error at once and `exists` answers false without waiting.
        let timeouts = TimeoutConfiguration::new(Some(Duration::from_secs(30)), Some(PAGE_LOAD), Some(Duration::ZERO));
        client.update_timeouts(timeouts).await.context("setting the session's timeouts")?;
        Ok(User { who: who.to_owned(), client, session, shared: self.shared.clone() })
    }

    /// The folder this test's screenshots go to.
    pub fn screenshots(&self) -> &Path {
        &self.shared.screenshots
    }
}

/// The WebDriver capabilities of each user's Chromium: headless, no sandbox (tests run as
/// root in containers, where Chromium's sandbox cannot start), no GPU, `/tmp` instead of a
/// small `/dev/shm`, and the browser console kept for [`User::console_errors`].
fn capabilities(chromium: &Path) -> Capabilities {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium.to_string_lossy(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                format!("--window-size={},{}", WINDOW.0, WINDOW.1)],
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    match caps {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// A running chromedriver. Dropping it asks chromedriver to close its browsers and exit,
/// then kills it: killed outright, it would leave its Chromiums running.
struct Driver {
    child: Child,
    addr: SocketAddr,
    url: String,
}

impl Driver {
    async fn start(program: &Path, log: &Path, http: &reqwest::Client) -> anyhow::Result<Driver> {
        let mut child = Command::new(program)
            .arg("--port=0")
            // Warnings and errors only: at its default level chromedriver logs every script
            // it runs, axe-core's 650 kB each page.
            .arg("--log-level=WARNING")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}: {INSTALL_HINT}", program.display()))?;
        let stdout = child.stdout.take().context("chromedriver's stdout")?;
        let mut stderr = child.stderr.take().context("chromedriver's stderr")?;
        let port = match tokio::time::timeout(STARTUP, listening_port(stdout)).await {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => {
                let mut said = String::new();
                let _ = tokio::time::timeout(Duration::from_secs(2), stderr.read_to_string(&mut said)).await;
                bail!("{} did not start: {e:#}; it said: {said}", program.display());
            }
            Err(_) => bail!("{} did not say its port within {STARTUP:?}; see {}", program.display(), log.display()),
        };
        tokio::spawn(drain(stderr));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let driver = Driver { child, addr, url: format!("http://{addr}") };
        driver.wait_ready(http).await?;
        Ok(driver)
    }

    /// Polls `/status` until chromedriver says it takes new sessions.
    async fn wait_ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match http.get(format!("{}/status", self.url)).send().await {
                Ok(response) => match response.json::<Value>().await {
                    Ok(status) if status["value"]["ready"] == true => return Ok(()),
                    Ok(status) => last = status.to_string(),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("chromedriver at {} was not ready within {STARTUP:?}: {last}", self.url)
    }
}

/// Reads chromedriver's stdout until it says the port it listens on (it was given port 0,
/// so no other process can take the port between choosing and binding it); the rest of its
/// output is drained so it never blocks on a full pipe.
async fn listening_port(stdout: tokio::process::ChildStdout) -> anyhow::Result<u16> {
    const STARTED: &str = "started successfully on port ";
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(rest) = line.split_once(STARTED).map(|(_, rest)| rest) {
            let port = rest.trim_end_matches('.').trim().parse().with_context(|| format!("the port in {line:?}"))?;
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(port);
        }
    }
    bail!("chromedriver exited before it listened")
}

async fn drain(stream: impl tokio::io::AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(_)) = lines.next_line().await {}
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver's own way out: close every session's browser, then exit. Plain
        // blocking HTTP, as Drop cannot await; bounded, so a hung chromedriver is killed.
        let shutdown = || -> std::io::Result<()> {
            let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(15)))?;
            stream.write_all(b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
            stream.read_to_end(&mut Vec::new())?;
            Ok(())
        };
        if let Err(e) = shutdown() {
            eprintln!("warning: chromedriver at {} did not shut down ({e}); killing it, its browsers may outlive it", self.url);
        }
        let _ = self.child.start_kill();
    }
}

/// One person's browser: a WebDriver session with Chromium windows and cookies of its own.
/// Close it with [`User::close`]; a user merely dropped is closed in the background when the
/// runtime still runs, and by the [`Browser`]'s drop otherwise.
pub struct User {
    who: String,
    client: Client,
    session: String,
    shared: Arc<Shared>,
}

/// A violation axe-core found, as the page check reports it.
#[derive(Debug, Deserialize)]
struct Violation {
    id: String,
    impact: Option<String>,
    help: String,
    #[serde(rename = "helpUrl")]
    help_url: String,
    targets: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AxeOutcome {
    Ran { violations: Vec<Violation> },
    Failed { error: String },
}

impl User {
    /// Who this user is, as the test named them.
    pub fn who(&self) -> &str {
        &self.who
    }

    /// Loads `url` and waits until it has loaded.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client.goto(url).await.with_context(|| format!("{}: loading {url}", self.who))
    }

    /// The address of the page shown now.
    pub async fn url(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await.with_context(|| format!("{}: the current URL", self.who))?.to_string())
    }

    /// The page's HTML as the browser has it now.
    pub async fn page_source(&self) -> anyhow::Result<String> {
        self.client.source().await.with_context(|| format!("{}: the page source", self.who))
    }

    /// Whether any element matches `css`.
    pub async fn exists(&self, css: &str) -> anyhow::Result<bool> {
        Ok(!self.client.find_all(Locator::Css(css)).await.with_context(|| format!("{}: looking for `{css}`", self.who))?.is_empty())
    }

    /// The text of the first element matching `css`, as rendered (hidden parts left out).
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let element = self.find(css).await?;
        element.text().await.with_context(|| format!("{}: the text of `{css}`", self.who))
    }

    /// The text of every element matching `css`, in page order; empty when none does.
    pub async fn texts(&self, css: &str) -> anyhow::Result<Vec<String>> {
        let elements = self.client.find_all(Locator::Css(css)).await.with_context(|| format!("{}: looking for `{css}`", self.who))?;
        let mut texts = Vec::with_capacity(elements.len());
        for element in elements {
            texts.push(element.text().await.with_context(|| format!("{}: the text of `{css}`", self.who))?);
        }
        Ok(texts)
    }

    /// Replaces what the field matching `css` holds with `text`, as typed.
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self.find(css).await?;
        field.clear().await.with_context(|| format!("{}: clearing `{css}`", self.who))?;
        field.send_keys(text).await.with_context(|| format!("{}: typing into `{css}`", self.who))
    }

    /// Chooses the `<option>` whose value is `value` in the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let select = self.find(css).await?;
        let mut values = Vec::new();
        for option in select.find_all(Locator::Css("option")).await.with_context(|| format!("{}: the options of `{css}`", self.who))? {
            let this = option.prop("value").await?.unwrap_or_default();
            if this == value {
                return option.click().await.with_context(|| format!("{}: choosing {value:?} in `{css}`", self.who));
            }
            values.push(this);
        }
        bail!("{}: `{css}` has no option with the value {value:?}; its values are {values:?}", self.who)
    }

    /// Ticks the checkbox or chooses the radio button matching `css` (left as it is when
    /// ticked or chosen already).
    pub async fn check(&self, css: &str) -> anyhow::Result<()> {
        let input = self.find(css).await?;
        if !input.is_selected().await.with_context(|| format!("{}: whether `{css}` is ticked", self.who))? {
            input.click().await.with_context(|| format!("{}: ticking `{css}`", self.who))?;
        }
        Ok(())
    }

    /// Clicks the element matching `css`; when that follows a link or submits a form,
    /// returns once the new page has loaded.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        self.activate(Activation::Click, Some(&element), &format!("clicking `{css}`")).await
    }

    /// Clicks the submit button matching `css` and waits for the page the form leads to;
    /// an error when it is not a form's submit button, or the form does not submit (one of
    /// its fields is invalid, say: the error names them).
    pub async fn submit(&self, css: &str) -> anyhow::Result<()> {
        let button = self.find(css).await?;
        let what = format!("submitting with `{css}`");
        let is_submit: bool = serde_json::from_value(self.client.execute(IS_SUBMIT_JS, vec![json!(button)]).await?)?;
        anyhow::ensure!(is_submit, "{}: {what}: `{css}` is not an enabled submit button of a form", self.who);
        let marker = self.mark_page().await?;
        let loads = self.loads_page(Activation::Click, Some(&button)).await?;
        if !loads {
            let invalid = self.client.execute(INVALID_FIELDS_JS, vec![json!(button)]).await?;
            bail!("{}: {what}: the form would not load a page in this window (it targets another, is a dialog, or has invalid fields: {invalid})", self.who);
        }
        button.click().await.with_context(|| format!("{}: {what}", self.who))?;
        self.wait_for_new_page(&marker, &what).await
    }

    /// Presses Tab until the focused element matches `target` (no press when it does
    /// already): a CSS selector, or the text a person reads on it or its label (whitespace
    /// collapsed, exact). An error, naming
    /// each element focus went to, when focus comes round again (or after 100 presses)
    /// without reaching it.
    pub async fn tab_to(&self, target: &str) -> anyhow::Result<()> {
        let round = format!("{:016x}", rand::random::<u64>());
        let mut visited = Vec::new();
        let start = self.client.execute(FOCUS_JS, vec![json!(target), json!(round)]).await.with_context(|| format!("{}: tabbing to {target:?}", self.who))?;
        if serde_json::from_value::<Focus>(start)?.matches {
            return Ok(());
        }
        for _ in 0..MAX_TABS {
            self.keys(&[Key::Tab]).await?;
            let focus: Focus = serde_json::from_value(self.client.execute(FOCUS_JS, vec![json!(target), json!(round)]).await?)?;
            visited.push(focus.describe);
            if focus.matches {
                return Ok(());
            }
            if focus.seen {
                break;
            }
        }
        bail!("{}: pressing Tab never focused {target:?} on {}; focus went to: {}", self.who, self.url().await?, visited.join(" → "))
    }

    /// Presses Enter on the focused element; when that follows a link or submits a form
    /// (a submit button, or a text field of a form that Enter submits), returns once the new
    /// page has loaded.
    pub async fn press_enter(&self) -> anyhow::Result<()> {
        self.activate(Activation::Enter, None, "pressing Enter").await
    }

    /// Presses Space on the focused element: ticks a checkbox, presses a button (and, for a
    /// submit button, waits for the page the form leads to).
    pub async fn press_space(&self) -> anyhow::Result<()> {
        self.activate(Activation::Space, None, "pressing Space").await
    }

    /// Types `text` key by key into whatever has the focus.
    pub async fn type_text(&self, text: &str) -> anyhow::Result<()> {
        let mut keys = KeyActions::new("keyboard".into());
        for c in text.chars() {
            keys = keys.then(KeyAction::Down { value: c }).then(KeyAction::Up { value: c });
        }
        self.client.perform_actions(keys).await.with_context(|| format!("{}: typing {} characters", self.who, text.chars().count()))
    }

    /// The check each page visit ends with: a screenshot named `name` (letters, digits, `-`,
    /// `_`; see the module doc for where it goes), then axe-core; an error listing every
    /// violation, with the elements it found, when there is any.
    pub async fn page(&self, name: &str) -> anyhow::Result<()> {
        check_name("page name", name)?;
        let visit = self.shared.visits.fetch_add(1, Ordering::SeqCst) + 1;
        let screenshot = self.shared.screenshots.join(format!("{visit:02}-{name}.png"));
        let png = self.client.screenshot().await.with_context(|| format!("{}: a screenshot of {name}", self.who))?;
        std::fs::write(&screenshot, png).with_context(|| format!("writing {}", screenshot.display()))?;
        let violations = self.axe().await.with_context(|| format!("{}: running axe-core on {name} ({})", self.who, screenshot.display()))?;
        if violations.is_empty() {
            return Ok(());
        }
        let mut report = format!(
            "{}: axe-core found {} accessibility violation(s) on page {name} ({}; screenshot {}):",
            self.who,
            violations.len(),
            self.url().await?,
            screenshot.display()
        );
        for v in &violations {
            report.push_str(&format!(
                "\n  - {} ({}): {} [{}]\n      at {}",
                v.id,
                v.impact.as_deref().unwrap_or("impact unknown"),
                v.help,
                v.help_url,
                v.targets.join(", ")
            ));
        }
        bail!(report)
    }

    /// What the page wrote to the browser console as errors since this was last asked,
    /// Content-Security-Policy violations among them (chromedriver's log endpoint, which
    /// hands each entry out once).
    pub async fn console_errors(&self) -> anyhow::Result<Vec<String>> {
        let url = format!("{}/session/{}/se/log", self.shared.driver_url, self.session);
        let response = self.shared.http.post(&url).json(&json!({"type": "browser"})).send().await.with_context(|| format!("{}: the browser log", self.who))?;
        let status = response.status();
        let log: Value = response.json().await.with_context(|| format!("{}: the browser log", self.who))?;
        anyhow::ensure!(status.is_success(), "{}: the browser log: HTTP {status}: {log}", self.who);
        let entries = log["value"].as_array().cloned().unwrap_or_default();
        Ok(entries.iter().filter(|e| e["level"] == "SEVERE").filter_map(|e| e["message"].as_str().map(str::to_owned)).collect())
    }

    /// Ends the session: Chromium closes, its profile and cookies are deleted.
    pub async fn close(self) -> anyhow::Result<()> {
        self.client.close().await.with_context(|| format!("{}: closing the browser", self.who))
    }

    async fn find(&self, css: &str) -> anyhow::Result<Element> {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => Ok(element),
            Err(e) => {
                let url = self.url().await.unwrap_or_else(|e| format!("(no URL: {e:#})"));
                Err(anyhow!(e).context(format!("{}: nothing matches `{css}` on {url}", self.who)))
            }
        }
    }

    /// Presses each key in turn on whatever has the focus, as a keyboard would.
    async fn keys(&self, keys: &[Key]) -> anyhow::Result<()> {
        let mut actions = KeyActions::new("keyboard".into());
        for key in keys {
            let value = key.chars().next().expect("every WebDriver key is one code point");
            actions = actions.then(KeyAction::Down { value }).then(KeyAction::Up { value });
        }
        self.client.perform_actions(actions).await.with_context(|| format!("{}: pressing {keys:?}", self.who))
    }

    /// Clicks `element` or presses a key on the focused element, and when the browser will
    /// load another page for it, waits for that page.
    async fn activate(&self, how: Activation, element: Option<&Element>, what: &str) -> anyhow::Result<()> {
        let marker = self.mark_page().await?;
        let loads = self.loads_page(how, element).await?;
        match (how, element) {
            (Activation::Click, Some(element)) => element.click().await.with_context(|| format!("{}: {what}", self.who))?,
            (Activation::Enter, _) => self.keys(&[Key::Enter]).await?,
            (Activation::Space, _) => self.keys(&[Key::Space]).await?,
            (Activation::Click, None) => bail!("{}: {what}: a click needs an element", self.who),
        }
        if loads { self.wait_for_new_page(&marker, what).await } else { Ok(()) }
    }

    /// Marks the document shown now with a random token, which the next document lacks.
    async fn mark_page(&self) -> anyhow::Result<String> {
        let marker = format!("{:016x}", rand::random::<u64>());
        self.client.execute("window.__hubPage = arguments[0];", vec![json!(marker)]).await.with_context(|| format!("{}: marking the page", self.who))?;
        Ok(marker)
    }

    /// Whether the browser will load another page when `how` happens to `element` (or to
    /// the focused element), by the rules of HTML: see [`LOADS_PAGE_JS`].
    async fn loads_page(&self, how: Activation, element: Option<&Element>) -> anyhow::Result<bool> {
        let answer = self.client.execute(LOADS_PAGE_JS, vec![json!(element), json!(how.name())]).await.with_context(|| format!("{}: what {} does", self.who, how.name()))?;
        Ok(answer == true)
    }

    /// Polls until a document without `marker` has loaded: polling, not a sleep, and
    /// bounded, so a page that never comes fails the test with what was being done.
    async fn wait_for_new_page(&self, marker: &str, what: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + PAGE_LOAD;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.client.execute(NEW_PAGE_JS, vec![json!(marker)]).await {
                Ok(state) if state == "complete" => return Ok(()),
                Ok(state) => last = state.to_string(),
                // The old document went away under the script: the new one is on its way.
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{}: {what}: no new page loaded within {PAGE_LOAD:?} (last seen: {last})", self.who)
    }

    /// Runs axe-core on the page, injecting it first when the page does not have it yet.
    async fn axe(&self) -> anyhow::Result<Vec<Violation>> {
        let present = self.client.execute("return typeof window.axe === 'object';", vec![]).await?;
        if present != true {
            self.client.execute(&self.shared.axe_js, vec![]).await.context("injecting axe-core")?;
        }
        let outcome = self.client.execute_async(AXE_RUN_JS, vec![json!(AXE_TAGS)]).await.context("axe.run")?;
        match serde_json::from_value(outcome.clone()).with_context(|| format!("axe.run answered {outcome}"))? {
            AxeOutcome::Ran { violations } => Ok(violations),
            AxeOutcome::Failed { error } => bail!("axe.run failed: {error}"),
        }
    }
}

/// How a person sets off an element.
#[derive(Debug, Clone, Copy)]
enum Activation {
    Click,
    Enter,
    Space,
}

impl Activation {
    fn name(self) -> &'static str {
        match self {
            Activation::Click => "click",
            Activation::Enter => "enter",
            Activation::Space => "space",
        }
    }
}

/// Where focus is after a press of Tab, as [`FOCUS_JS`] describes it.
#[derive(Debug, Deserialize)]
struct Focus {
    matches: bool,
    seen: bool,
    describe: String,
}

/// The focused element: whether it matches the target (arguments[0]) as a selector or by
/// its text, value (a button's), aria-label or labels; whether this round of tabbing
/// (arguments[1]) saw it already; and a short description of it for errors. Field values
/// are left out of the description: they may be what a test typed about a person.
const FOCUS_JS: &str = r#"
const [want, round] = arguments;
const el = document.activeElement || document.body;
const norm = (s) => (s || '').replace(/\s+/g, ' ').trim();
let byCss = false;
try { byCss = el !== document.body && el.matches(want); } catch (e) { /* not a selector */ }
const buttonValue = el.tagName === 'INPUT' && ['submit', 'button', 'reset'].includes(el.type) ? el.value : '';
const labels = el.labels ? Array.from(el.labels, (l) => l.innerText) : [];
const isField = ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName);
const names = [el === document.body || isField ? '' : el.innerText, buttonValue, el.getAttribute('aria-label'), ...labels].map(norm).filter((n) => n);
const seen = el.__hubTabRound === round;
el.__hubTabRound = round;
const id = el.id ? '#' + el.id : '';
return { matches: byCss || names.includes(norm(want)), seen, describe: el.tagName.toLowerCase() + id + (names.length ? ' "' + names[0].slice(0, 40) + '"' : '') };
"#;

/// JavaScript defining `isSubmit(e)`: whether `e` is an enabled submit button of a form.
/// A macro, so that `concat!` can put it in front of the scripts that use it.
macro_rules! is_submit_js {
    () => {
        "const isSubmit = (e) => !!e && !!e.form && !e.disabled && ((e.tagName === 'BUTTON' && e.type === 'submit') || (e.tagName === 'INPUT' && (e.type === 'submit' || e.type === 'image')));\n"
    };
}

/// Whether a click, Enter or Space (arguments[1]) on an element (arguments[0], else the
/// focused one) makes the browser load another page in this window, by HTML's rules: a link
/// is followed on click or Enter (not when it opens elsewhere, downloads, or only moves to
/// a fragment of this page); an enabled submit button submits its form on any of the three;
/// Enter in a text field submits its form through the form's first submit button, or, when
/// the form has none, if it is the form's only text field. A form submits only when it is
/// valid (or not validated) and its method is not `dialog`.
const LOADS_PAGE_JS: &str = concat!(
    is_submit_js!(),
    r#"
const [given, how] = arguments;
const el = given || document.activeElement;
if (!el) return false;
const submits = (form, button) => {
  const target = (button && button.getAttribute('formtarget')) || form.getAttribute('target') || '';
  if (target !== '' && target.toLowerCase() !== '_self') return false;
  const method = ((button && button.getAttribute('formmethod')) || form.getAttribute('method') || 'get').toLowerCase();
  if (method === 'dialog') return false;
  return form.noValidate || (!!button && button.formNoValidate) || form.checkValidity();
};
const link = how !== 'space' && el.closest ? el.closest('a[href]') : null;
if (link) {
  if ((link.target && link.target.toLowerCase() !== '_self') || link.hasAttribute('download')) return false;
  const to = new URL(link.href, location.href);
  const here = new URL(location.href);
  to.hash = ''; here.hash = '';
  return !(link.hash && to.href === here.href);
}
if (isSubmit(el)) return submits(el.form, el);
const textTypes = ['text', 'search', 'url', 'tel', 'email', 'password', 'date', 'month', 'week', 'time', 'datetime-local', 'number'];
if (how === 'enter' && el.tagName === 'INPUT' && textTypes.includes(el.type) && el.form) {
  const button = Array.from(el.form.elements).find((e) => (e.tagName === 'BUTTON' && e.type === 'submit') || (e.tagName === 'INPUT' && (e.type === 'submit' || e.type === 'image')));
  if (button) return isSubmit(button) && submits(el.form, button);
  const fields = Array.from(el.form.elements).filter((e) => e.tagName === 'INPUT' && textTypes.includes(e.type));
  return fields.length === 1 && submits(el.form, null);
}
return false;
"#
);

/// Whether arguments[0] is an enabled submit button of a form.
const IS_SUBMIT_JS: &str = concat!(is_submit_js!(), "return isSubmit(arguments[0]);");

/// The invalid fields of the form of button arguments[0]: name (else id) and the browser's
/// message, never the value.
const INVALID_FIELDS_JS: &str = r#"
return Array.from(arguments[0].form.elements).filter((e) => e.willValidate && !e.checkValidity()).map((e) => (e.name || e.id || e.tagName.toLowerCase()) + ': ' + e.validationMessage);
"#;

/// "complete" once a document without the marker arguments[0] has loaded; else what it is.
const NEW_PAGE_JS: &str = r#"
return window.__hubPage === arguments[0] ? 'the old page' : document.readyState;
"#;

/// axe.run with the tags arguments[0], answering through WebDriver's callback with each
/// violation's rule, impact, help, and the selectors of its elements (frames and shadow
/// roots joined with ` >>> `).
const AXE_RUN_JS: &str = r#"
const [tags, done] = [arguments[0], arguments[arguments.length - 1]];
axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] })
  .then((r) => done({ violations: r.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    targets: v.nodes.map((n) => n.target.flat(Infinity).join(' >>> ')),
  })) }))
  .catch((e) => done({ error: String((e && e.stack) || e) }));
"#;

/// Names become file and folder names: keep them to characters every file system takes.
fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    anyhow::ensure!(ok, "the {what} {name:?} must be letters, digits, '-' and '_' only: it names screenshot files");
    Ok(())
}

/// The workspace root: the tests crate's parent folder.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().expect("the tests crate is a folder of the workspace").to_owned()
}

/// Cargo's target folder: `CARGO_TARGET_DIR` (a relative one taken from the workspace
/// root), else the workspace's `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

fn axe_path() -> PathBuf {
    match std::env::var_os("HUB_AXE_JS").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => workspace_root().join("deploy/browser/node_modules/axe-core/axe.min.js"),
    }
}

/// `HUB_CHROMEDRIVER`, else `chromedriver` on the PATH, else Debian's.
fn chromedriver_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("HUB_CHROMEDRIVER").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        anyhow::ensure!(path.is_file(), "HUB_CHROMEDRIVER is {}, which is not a file: {INSTALL_HINT}", path.display());
        return Ok(path);
    }
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).map(|dir| dir.join("chromedriver"));
    let debian = PathBuf::from("/usr/bin/chromedriver");
    on_path.chain([debian]).find(|p| p.is_file()).with_context(|| format!("chromedriver is not installed (not on the PATH nor at /usr/bin/chromedriver): {INSTALL_HINT}"))
}

/// `HUB_CHROMIUM`, else Debian's.
fn chromium_path() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("HUB_CHROMIUM").filter(|p| !p.is_empty()).map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    anyhow::ensure!(path.is_file(), "Chromium is not installed at {} (or set HUB_CHROMIUM): {INSTALL_HINT}", path.display());
    Ok(path)
}
