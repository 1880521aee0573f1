//! A real OpenID provider for tests: oidc-provider (deploy/oidc/provider.mjs) on a free port
//! with keys the test holds, and clients and accounts the test chooses; killed on drop. And
//! a browser's part of the authorization-code login, by hand. Starting the provider and the
//! client_credentials grant are `hub::oidc_provider`'s, which `hub bench` uses too.
//!
//! Needs Node.js 20.19+ and npm (deploy/test.sh installs them); the provider's packages are
//! installed with `npm ci` when deploy/oidc/node_modules is absent.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hub::oidc_provider;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Url, header};
use runtime::oidc::{Oidc, OidcConfig, PendingLogin};
use serde_json::Value;

pub const REDIRECT_URI: &str = "http://127.0.0.1:9/login/callback";
pub const CMS_SECRET: &str = "cms-client-secret-for-tests-only-0123456789";
pub const CONSOLE_SECRET: &str = "console-client-secret-for-tests-only-0123456789";

// --- the provider ---------------------------------------------------------------------

pub fn provider_dir() -> PathBuf {
    oidc_provider::dir()
}

/// Node must be there (CI installs it); the provider's packages are installed once.
pub fn ensure_node_and_packages() {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = oidc_provider::check_node() {
        panic!("the OIDC tests run a real OpenID provider (deploy/oidc, oidc-provider); deploy/test.sh installs Node.js: {e:#}");
    }
    if !oidc_provider::packages_installed() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(provider_dir())
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
        oidc_provider::keygen(algs).unwrap().iter().map(TestKey::from_config).collect()
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

/// A running oidc-provider with keys the test holds; killed when dropped.
pub struct Provider {
    pub issuer: String,
    pub keys: Vec<TestKey>,
    running: oidc_provider::Provider,
}

impl Provider {
    /// Fresh RS256, ES256 and EdDSA keys, a free port; `config` makes the provider's JSON
    /// config (clients, accounts, resources) around the keys' entries.
    pub fn start(config: &dyn Fn(Vec<Value>) -> Value) -> Provider {
        Provider::start_with(TestKey::generate(&["RS256", "ES256", "EdDSA"]), 0, config)
    }

    pub fn start_with(keys: Vec<TestKey>, port: u16, config: &dyn Fn(Vec<Value>) -> Value) -> Provider {
        ensure_node_and_packages();
        let key_configs: Vec<Value> = keys.iter().map(|k| k.config.clone()).collect();
        let running = oidc_provider::Provider::start(&config(key_configs), port).expect("starting the test OpenID provider");
        Provider { issuer: running.issuer.clone(), keys, running }
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
        self.running.client_credentials(client_id, CMS_SECRET, resource).await.unwrap().token
    }
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
