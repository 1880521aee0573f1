//! The partnership's identity provider for trials: oidc-provider (deploy/oidc/provider.mjs, on
//! Node.js) as a child process on a free port, killed when dropped, and the
//! client_credentials grant a case-management system uses to get an access token from it.
//! `hub bench --login oidc` logs its senders in through it; the tests' `tests::oidc` harness
//! starts it the same way. Never for production: its accounts log in by name alone.
//!
//! The provider is the one in the source tree this binary was built from (its packages
//! installed with `npm ci --prefix deploy/oidc`), on Node.js 20.19 or later.

use std::{
    fmt,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// How long the provider may take to print `ready <issuer>`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The oldest Node.js oidc-provider runs on (deploy/oidc/package.json's `engines`).
const NODE_MIN: (u32, u32) = (20, 19);

/// deploy/oidc in the source tree this binary was built from.
pub fn dir() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.pop(); // services
    dir.pop(); // the workspace
    dir.join("deploy").join("oidc")
}

/// Node.js runs here and is new enough for oidc-provider.
pub fn check_node() -> anyhow::Result<()> {
    let version = match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => bail!("Node.js is not installed (the OpenID provider, deploy/oidc, runs on it): apt-get install nodejs npm"),
    };
    let mut parts = version.trim_start_matches('v').split('.').map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().flatten(), parts.next().flatten());
    match major.zip(minor) {
        Some(found) if found >= NODE_MIN => Ok(()),
        _ => bail!("Node.js {version} is too old for oidc-provider (deploy/oidc/package.json): {}.{} or later is needed", NODE_MIN.0, NODE_MIN.1),
    }
}

/// Whether the provider's packages are installed (`npm ci --prefix deploy/oidc`).
pub fn packages_installed() -> bool {
    dir().join("node_modules").is_dir()
}

/// Node.js and the provider's packages are there; else an error that says how to install them.
pub fn check_installed() -> anyhow::Result<()> {
    check_node()?;
    if !packages_installed() {
        bail!("the OpenID provider's packages are not installed: npm ci --prefix {}", dir().display());
    }
    Ok(())
}

/// Fresh signing keys, one per algorithm (`RS256`, `ES256`, `EdDSA`), as entries of the
/// provider's `keys` config (`kid`, `alg`, `pem` of the private key).
pub fn keygen(algs: &[&str]) -> anyhow::Result<Vec<Value>> {
    let out = Command::new("node").arg(dir().join("provider.mjs")).arg("keygen").args(algs).output().context("running node provider.mjs keygen")?;
    anyhow::ensure!(out.status.success(), "provider.mjs keygen: {}", String::from_utf8_lossy(&out.stderr));
    let keys: Value = serde_json::from_slice(&out.stdout).context("provider.mjs keygen printed no JSON")?;
    keys["keys"].as_array().cloned().context("provider.mjs keygen printed no keys")
}

/// A running provider; killed when dropped.
pub struct Provider {
    /// `http://127.0.0.1:PORT`.
    pub issuer: String,
    child: Child,
    _config: tempfile::TempDir,
}

impl Provider {
    /// Starts the provider with `config` (its JSON config: keys, resources, clients,
    /// accounts; see provider.mjs) on `port` (0: a free one) and waits until it listens.
    /// Its output, other than the `ready` line, goes to this process's stderr.
    pub fn start(config: &Value, port: u16) -> anyhow::Result<Provider> {
        let dir = tempfile::Builder::new().prefix("hub-oidc-provider").tempdir()?;
        let config_path = dir.path().join("provider.json");
        // The config may hold private keys and client secrets: owner-only.
        crate::private::write(&config_path, config.to_string().as_bytes())?;
        let mut child = Command::new("node")
            .arg(self::dir().join("provider.mjs"))
            .arg(&config_path)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting node deploy/oidc/provider.mjs")?;
        match wait_for_ready(&mut child) {
            Ok(issuer) => Ok(Provider { issuer, child, _config: dir }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// An access token for `resource` (an agency service's resource indicator) by the
    /// client_credentials grant, as a case-management system gets one.
    pub async fn client_credentials(&self, client_id: &str, client_secret: &str, resource: &str) -> anyhow::Result<AccessToken> {
        let response = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client_id, Some(client_secret))
            .form(&[("grant_type", "client_credentials"), ("resource", resource)])
            .send()
            .await
            .context("asking the OpenID provider for an access token")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        // An error answer names the error, never a token.
        anyhow::ensure!(status.is_success(), "the OpenID provider's token endpoint answered {status}: {body}");
        let token = body["access_token"].as_str().context("the token endpoint's answer has no access_token")?.to_owned();
        Ok(AccessToken { token, expires_in: body["expires_in"].as_u64().map(Duration::from_secs) })
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bearer access token and how long it is valid.
pub struct AccessToken {
    pub token: String,
    pub expires_in: Option<Duration>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken").field("token", &format!("<{} chars>", self.token.len())).field("expires_in", &self.expires_in).finish()
    }
}

/// Waits for the provider's `ready <issuer>` line; its other output goes to stderr.
fn wait_for_ready(child: &mut Child) -> anyhow::Result<String> {
    let (ready, wait) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            match line.strip_prefix("ready ") {
                Some(issuer) => drop(ready.send(issuer.to_owned())),
                None => eprintln!("[oidc-provider] {line}"),
            }
        }
    });
    let stderr = BufReader::new(child.stderr.take().context("no stderr")?);
    std::thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|l| eprintln!("[oidc-provider] {l}")));
    wait.recv_timeout(START_TIMEOUT).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => anyhow::anyhow!("the OpenID provider did not print `ready` within {START_TIMEOUT:?} (its output is above)"),
        mpsc::RecvTimeoutError::Disconnected => anyhow::anyhow!("the OpenID provider exited before it was ready (its output is above)"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_provider_is_found_in_the_source_tree() {
        assert!(super::dir().join("provider.mjs").is_file(), "{}", super::dir().display());
    }
}
