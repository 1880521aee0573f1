//! A real OpenID provider for tests: oidc-provider (deploy/oidc/provider.mjs) on a free port
//! with keys the test holds, and clients and accounts the test chooses; killed on drop. And
//! a browser's part of the authorization-code login, by hand.
//!
//! Needs Node.js 20.19+ and npm (deploy/test.sh installs them); the provider's packages are
//! installed with `npm ci` when deploy/oidc/node_modules is absent.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, mpsc},
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Url, header};
use runtime::oidc::{Oidc, OidcConfig, PendingLogin};
use serde_json::Value;

pub const REDIRECT_URI: &str = "http://127.0.0.1:9/login/callback";
pub const CMS_SECRET: &str = "cms-client-secret-for-tests-only-0123456789";
pub const CONSOLE_SECRET: &str = "console-client-secret-for-tests-only-0123456789";

// --- the provider ---------------------------------------------------------------------

pub fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/oidc")
}

/// Node must be there (CI installs it); the provider's packages are installed once.
pub fn ensure_node_and_packages() {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|out| out.status.success()),
        "Node.js is not installed: the OIDC tests run a real OpenID provider (deploy/oidc, oidc-provider) \
         on Node.js 20.19 or later. Install it (deploy/test.sh does: apt-get install nodejs npm)."
    );
    let dir = provider_dir();
    if !dir.join("node_modules").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .stdout(Stdio::null())
            .status()
            .expect("npm is not installed: it installs the test OpenID provider (apt-get install npm)");
        assert!(status.success(), "npm ci --prefix deploy/oidc failed");
    }
}

/// A signing key the test holds the private half of, as provider.mjs keygen makes it.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub config: Value,
    encoding: EncodingKey,
}

impl TestKey {
    pub fn generate(algs: &[&str]) -> Vec<TestKey> {
        ensure_node_and_packages();
        let out =
            Command::new("node").arg(provider_dir().join("provider.mjs")).arg("keygen").args(algs).output().unwrap();
        assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
        let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
        keys["keys"].as_array().unwrap().iter().map(TestKey::from_config).collect()
    }

    pub fn from_config(config: &Value) -> TestKey {
        let pem = config["pem"].as_str().unwrap();
        let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(der).unwrap();
        let (alg, encoding) = match config["alg"].as_str().unwrap() {
            "RS256" => (Algorithm::RS256, EncodingKey::from_rsa_der(&der)),
            "ES256" => (Algorithm::ES256, EncodingKey::from_ec_der(&der)),
            "EdDSA" => (Algorithm::EdDSA, EncodingKey::from_ed_der(&der)),
            other => panic!("no test key type for {other}"),
        };
        TestKey { kid: config["kid"].as_str().unwrap().to_owned(), alg, config: config.clone(), encoding }
    }

    /// A token as the provider would sign it, with whatever claims the test wants.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A running oidc-provider; killed when dropped.
pub struct Provider {
    pub issuer: String,
    pub keys: Vec<TestKey>,
    child: Child,
    _config: tempfile::TempDir,
}

impl Provider {
    /// Fresh RS256, ES256 and EdDSA keys, a free port; `config` makes the provider's JSON
    /// config (clients, accounts, resources) around the keys' entries.
    pub fn start(config: &dyn Fn(Vec<Value>) -> Value) -> Provider {
        Provider::start_with(TestKey::generate(&["RS256", "ES256", "EdDSA"]), 0, config)
    }

    pub fn start_with(keys: Vec<TestKey>, port: u16, config: &dyn Fn(Vec<Value>) -> Value) -> Provider {
        ensure_node_and_packages();
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("provider.json");
        let key_configs: Vec<Value> = keys.iter().map(|k| k.config.clone()).collect();
        std::fs::write(&config_path, config(key_configs).to_string()).unwrap();
        let mut child = Command::new("node")
            .arg(provider_dir().join("provider.mjs"))
            .arg(&config_path)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting node deploy/oidc/provider.mjs");
        let issuer = wait_for_ready(&mut child);
        Provider { issuer, keys, child, _config: dir }
    }

    pub fn key(&self, alg: Algorithm) -> &TestKey {
        self.keys.iter().find(|k| k.alg == alg).unwrap()
    }

    /// This service's view of the provider, discovered.
    pub async fn oidc(&self, audience: &str, client_id: &str, secret: Option<&str>) -> Oidc {
        Oidc::discover(self.config(audience, client_id, secret)).await.unwrap()
    }

    pub fn config(&self, audience: &str, client_id: &str, secret: Option<&str>) -> OidcConfig {
        OidcConfig {
            issuer: self.issuer.clone(),
            audience: audience.into(),
            client_id: client_id.into(),
            client_secret: secret.map(str::to_owned),
            redirect_uri: REDIRECT_URI.into(),
            roles_claim: "hub_roles".into(),
            agency_claim: "hub_agency".into(),
        }
    }

    /// A client_credentials access token, as a case-management system gets one.
    pub async fn client_credentials(&self, client_id: &str, resource: &str) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client_id, Some(CMS_SECRET))
            .form(&[("grant_type", "client_credentials"), ("resource", resource)])
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "token endpoint: {status} {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the provider's `ready <issuer>` line; its other output goes to the test's log.
fn wait_for_ready(child: &mut Child) -> String {
    let (ready, wait) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            match line.strip_prefix("ready ") {
                Some(issuer) => drop(ready.send(issuer.to_owned())),
                None => eprintln!("[oidc-provider] {line}"),
            }
        }
    });
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|l| eprintln!("[oidc-provider] {l}")));
    wait.recv_timeout(Duration::from_secs(60))
        .expect("the test OpenID provider did not print `ready` (its output is above)")
}

// --- the browser, by hand ---------------------------------------------------------------

/// Follows the provider's login as a browser would, carrying its cookies by hand: every
/// redirect is followed, and at each /interaction/ page (login, then consent) the form is
/// posted naming `account`. Returns the callback URL the provider sent the browser to.
pub async fn log_in(authorize_url: &str, account: &str) -> Url {
    log_in_to(authorize_url, account, REDIRECT_URI).await
}

/// [`log_in`] for a client whose redirect URI is `redirect_uri`.
pub async fn log_in_to(authorize_url: &str, account: &str, redirect_uri: &str) -> Url {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut cookies = BTreeMap::<String, String>::new();
    let mut next = Url::parse(authorize_url).unwrap();
    for _ in 0..12 {
        if next.as_str().starts_with(redirect_uri) {
            return next;
        }
        let request = if next.path().starts_with("/interaction/") {
            http.post(next.clone()).form(&[("account", account)])
        } else {
            http.get(next.clone())
        };
        let cookie = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let response = request.header(header::COOKIE, cookie).send().await.unwrap();
        for set in response.headers().get_all(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            match value {
                "" => cookies.remove(name),
                value => cookies.insert(name.to_owned(), value.to_owned()),
            };
        }
        assert!(response.status().is_redirection(), "{} answered {}", next.path(), response.status());
        let location = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
        next = next.join(&location).unwrap();
    }
    panic!("the login did not come back to the redirect URI");
}

pub fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// begin_login, the browser, and the callback's checks a service makes: state, then code.
pub async fn callback_code(oidc: &Oidc, account: &str) -> (String, PendingLogin) {
    let (url, pending) = oidc.begin_login();
    let callback = log_in(&url, account).await;
    assert_eq!(query(&callback, "state").as_deref(), Some(pending.state.as_str()), "the state comes back");
    (query(&callback, "code").expect("a code in the callback"), pending)
}
