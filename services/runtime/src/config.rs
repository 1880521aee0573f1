//! One typed config per service, from environment variables with defaults that make the
//! embedded mode work with no settings at all.
//!
//! | variable | default |
//! | --- | --- |
//! | `HUB_AGENCY` | (required) this service's agency id in the directory |
//! | `HUB_DATA` | `./hub-data` |
//! | `DATABASE_URL` | `sqlite://$HUB_DATA/db/$HUB_AGENCY.db?mode=rwc` |
//! | `NATS_URL` | `nats://127.0.0.1:4222`; a comma-separated list for a cluster |
//! | `HUB_NATS_NKEY_FILE` | `$HUB_DATA/broker/{agency}.nk` when it exists: the service's nkey seed (mode 0600) |
//! | `HUB_NATS_CA` | `$HUB_DATA/broker/ca.pem` when it exists: the CA of the broker's TLS certificate (TLS required when set) |
//! | `HUB_HTTP_ADDR` | `127.0.0.1:0` (a free port, printed at start) |
//! | `HUB_DIRECTORY` | `$HUB_DATA/partnership/directory.toml` |
//! | `HUB_POLICY` | `$HUB_DATA/partnership/policy.toml` |
//! | `HUB_KEYS` | `$HUB_DATA/keys/$HUB_AGENCY.toml` |
//! | `HUB_CLOCK_SKEW_SECS` | `600`: how far an envelope's claimed creation time may be from when the broker took it in; further, it is quarantined `clock_skew` |
//! | `HUB_TLS_CERT`, `HUB_TLS_KEY` | unset: plain HTTP, loopback only; set (PEM files): TLS, any address |
//! | `HUB_OIDC_ISSUER`, `HUB_OIDC_AUDIENCE`, `HUB_OIDC_CLIENT_ID`, `HUB_OIDC_CLIENT_SECRET`, `HUB_OIDC_REDIRECT_URI`, `HUB_OIDC_ROLES_CLAIM`, `HUB_OIDC_AGENCY_CLAIM` | unset: local accounts only (see [`crate::oidc`]) |
//!
//! The HTTP limits ([`crate::serve::Limits`]; the audit service and `hub serve` read them too):
//!
//! | variable | default |
//! | --- | --- |
//! | `HUB_HTTP_HEADER_TIMEOUT_SECS` | `10`: to receive a request head, or to wait idle for the next on a kept-alive connection |
//! | `HUB_HTTP_REQUEST_TIMEOUT_SECS` | `30`: to answer a request (waiting for a turn included), else 503 `timeout` |
//! | `HUB_HTTP_MAX_CONCURRENT` | `64`: requests handled at once; more wait (`/health` never does) |
//! | `HUB_HTTP_MAX_BODY_BYTES_IN_FLIGHT` | `1048576` (1 MiB): bytes of request bodies handled at once; more wait (requests without a body take none) |
//! | `HUB_HTTP_MAX_CONNECTIONS` | `1024`: connections open at once; the oldest idle one is closed to make room |
//! | `HUB_HTTP_MAX_BODY_BYTES` | `1032192` (1 MiB, nats-server's `max_payload`, less 16 KiB for the envelope): larger bodies get 413 `too_large`; lowered at start to what the broker carries |

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use isp::{AgencyKeys, Directory, Isp, IspError, Policy, Schema, signed::PolicySignature};

#[derive(Clone)]
pub struct Config {
    pub agency: String,
    pub database_url: String,
    pub nats_url: String,
    pub http_addr: String,
    pub directory_path: PathBuf,
    pub policy_path: PathBuf,
    pub keys_path: PathBuf,
    /// How far the creation time an envelope's header claims may be from the broker's
    /// timestamp of it (`HUB_CLOCK_SKEW_SECS`, see [`isp::Isp::open_at`]).
    pub clock_skew: Duration,
    /// The partnership's identity provider, when staff log in through it (`HUB_OIDC_*`, see
    /// [`crate::oidc`]); local accounts work either way.
    pub oidc: Option<crate::oidc::OidcConfig>,
    /// How the HTTP API meets slow and large clients.
    pub http_limits: crate::serve::Limits,
    /// The certificate the API is served with (`HUB_TLS_CERT`, `HUB_TLS_KEY`); required to
    /// listen beyond loopback.
    pub tls: Option<crate::tls::TlsFiles>,
    /// The service's broker credentials and the broker's CA (`HUB_NATS_NKEY_FILE`,
    /// `HUB_NATS_CA`; by default the files `hub` made in `DATA/broker/`).
    pub broker: BrokerAuth,
    /// The clock deadlines are judged by ([`crate::deadlines`]): the system's, which a test
    /// may move forward.
    pub clock: Clock,
    /// How often the service looks for deadlines that have passed.
    pub deadline_check_every: Duration,
}

/// The default of `HUB_CLOCK_SKEW_SECS`: ten minutes.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(600);

/// Where the partnership's public files live inside a data directory.
pub fn partnership_dir(data: &Path) -> PathBuf {
    data.join("partnership")
}

/// The SQLite database of an agency inside a data directory.
pub fn sqlite_url(data: &Path, agency: &str) -> String {
    format!("sqlite://{}?mode=rwc", data.join("db").join(format!("{agency}.db")).display())
}

impl Config {
    /// The embedded layout of a data directory made by `hub up` / `hub keys`.
    pub fn embedded(data: &Path, agency: &str, nats_url: &str) -> Config {
        Config {
            agency: agency.to_owned(),
            database_url: sqlite_url(data, agency),
            nats_url: nats_url.to_owned(),
            http_addr: "127.0.0.1:0".into(),
            directory_path: partnership_dir(data).join("directory.toml"),
            policy_path: partnership_dir(data).join("policy.toml"),
            keys_path: data.join("keys").join(format!("{agency}.toml")),
            clock_skew: DEFAULT_CLOCK_SKEW,
            oidc: None,
            http_limits: Default::default(),
            tls: None,
            broker: BrokerAuth::embedded(data, agency),
            clock: Default::default(),
            deadline_check_every: CHECK_EVERY,
        }
    }

    pub fn from_env() -> anyhow::Result<Config> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let agency = var("HUB_AGENCY").context("HUB_AGENCY must name this service's agency id")?;
        let data = PathBuf::from(var("HUB_DATA").unwrap_or_else(|| "hub-data".into()));
        Config::from_env_at(&data, &agency, &var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()))
    }

    /// The embedded layout of `data` for `agency` on the broker at `nats_url`, with every other
    /// setting of the table above the environment gives (what `hub serve` runs with).
    pub fn from_env_at(data: &Path, agency: &str, nats_url: &str) -> anyhow::Result<Config> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut config = Config::embedded(data, agency, nats_url);
        if let Some(url) = var("DATABASE_URL") {
            config.database_url = url;
        }
        if let Some(addr) = var("HUB_HTTP_ADDR") {
            config.http_addr = addr;
        }
        if let Some(p) = var("HUB_DIRECTORY") {
            config.directory_path = p.into();
        }
        if let Some(p) = var("HUB_POLICY") {
            config.policy_path = p.into();
        }
        if let Some(p) = var("HUB_KEYS") {
            config.keys_path = p.into();
        }
        config.oidc = crate::oidc::OidcConfig::from_env()?;
        config.tls = crate::tls::TlsFiles::from_env()?;
        config.broker = BrokerAuth::from_env(data, agency);
        if let Some(s) = var("HUB_CLOCK_SKEW_SECS") {
            config.clock_skew = Duration::from_secs(s.parse().context("HUB_CLOCK_SKEW_SECS must be a whole number of seconds")?);
        }
        config.http_limits = crate::serve::Limits::from_env()?;
        Ok(config)
    }

    /// Loads the directory, the policy and this agency's keys, and checks they agree.
    pub fn load_isp(&self) -> anyhow::Result<Isp> {
        Ok(self.load_isp_signed()?.0)
    }

    /// As [`Config::load_isp`], with the signatures of the directory and the policy (their
    /// sequences: a service refuses files older than those it ran).
    pub fn load_isp_signed(&self) -> anyhow::Result<(Isp, Signatures)> {
        let schema = Arc::new(Schema::load()?);
        let (directory, _, directory_sig) = self.load_signed_directory(None)?;
        let directory = Arc::new(directory);
        let (policy, _, policy_sig) = self.load_signed_policy(&directory, &schema)?;
        let keys = load_own_keys(&self.keys_path, &directory)?;
        anyhow::ensure!(keys.agency == self.agency, "the key file {} belongs to {}, not {}", self.keys_path.display(), keys.agency, self.agency);
        Ok((Isp::new(keys, directory, Arc::new(policy), schema)?, Signatures { directory: directory_sig, policy: policy_sig }))
    }
}

/// The signatures of the partnership files a service loaded.
#[derive(Debug, Clone)]
pub struct Signatures {
    pub directory: PolicySignature,
    pub policy: PolicySignature,
}

/// This agency's keys for `directory`: those of its key file, or, once the directory names
/// the keys waiting beside it (`{agency}.next.toml`, made by `hub agency rotate` on this host),
/// those, which then replace the key file (they keep the old age identities).
pub fn load_own_keys(keys_path: &Path, directory: &Directory) -> anyhow::Result<AgencyKeys> {
    let keys = AgencyKeys::load(keys_path)?;
    let named = |k: &AgencyKeys| directory.get(&k.agency).is_some_and(|a| a.signing_key_id() == k.signing_key_id());
    let next_path = keys_path.with_extension("next.toml");
    if named(&keys) || !next_path.exists() {
        return Ok(keys);
    }
    let next = AgencyKeys::load(&next_path)?;
    if next.agency != keys.agency || !named(&next) {
        return Ok(keys);
    }
    std::fs::rename(&next_path, keys_path).with_context(|| format!("taking up the rotated keys {}", next_path.display()))?;
    tracing::info!(signing_key = %next.signing_key_id(), "the directory names this agency's rotated keys; they are in force");
    Ok(next)
}

/// Where a signed file's signature is: beside it, `.sig` appended.
pub fn signature_path(file: &Path) -> PathBuf {
    let mut path = file.to_owned().into_os_string();
    path.push(".sig");
    PathBuf::from(path)
}

/// Why a signed partnership file is not accepted, by the check that refused it (the message
/// says what exactly; it names no content of the file).
#[derive(Debug, thiserror::Error)]
pub enum SignedFileError {
    /// The text is not a directory, or not a policy.
    #[error(transparent)]
    Malformed(IspError),
    /// Not signed by an `ig` agency of the directory it was checked against, not over exactly
    /// this text, or no signature at all.
    #[error(transparent)]
    Signature(IspError),
}

/// A directory's text and its signature (the `.sig` file's text, None when there is none), as
/// every service accepts one, from a file or from the broker: a directory, signed by an `ig`
/// agency of `trusted` (the directory in force; None at start-up: its own) over exactly this
/// text. The caller compares the signature's sequence with the one in force.
pub fn verify_signed_directory(text: &str, signature: Option<&str>, trusted: Option<&Directory>) -> Result<(Directory, PolicySignature), SignedFileError> {
    let directory = Directory::from_toml(text).map_err(SignedFileError::Malformed)?;
    let signature = isp::signed::verify_directory(text, signature, trusted.unwrap_or(&directory)).map_err(SignedFileError::Signature)?;
    Ok((directory, signature))
}

/// A policy's text and its signature as every service accepts one: signed by an `ig` agency
/// of `directory` (the directory it will be used with) over exactly this text, and a valid
/// policy.
pub fn verify_signed_policy(text: &str, signature: Option<&str>, directory: &Directory, schema: &Schema) -> Result<(Policy, PolicySignature), SignedFileError> {
    let signature = isp::signed::verify(text, signature, directory).map_err(SignedFileError::Signature)?;
    let policy = Policy::from_toml(text, schema).map_err(SignedFileError::Malformed)?;
    Ok((policy, signature))
}

/// Reads a directory file and accepts it only if an IG agency of `trusted` (the directory in
/// force; None at start-up: the file's own) signed exactly this text. Returns the directory,
/// its text and its signature (whose sequence the caller compares with the one in force).
pub fn load_signed_directory(path: &Path, trusted: Option<&Directory>) -> anyhow::Result<(Directory, String, PolicySignature)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the directory {}", path.display()))?;
    let signature = std::fs::read_to_string(signature_path(path)).ok();
    let (directory, signature) = verify_signed_directory(&text, signature.as_deref(), trusted).with_context(|| format!("refusing the directory {}", path.display()))?;
    Ok((directory, text, signature))
}

impl Config {
    pub fn policy_signature_path(&self) -> PathBuf {
        signature_path(&self.policy_path)
    }

    /// Reads the directory (see [`load_signed_directory`]).
    pub fn load_signed_directory(&self, trusted: Option<&Directory>) -> anyhow::Result<(Directory, String, PolicySignature)> {
        load_signed_directory(&self.directory_path, trusted)
    }

    /// Reads the policy and its signature and accepts them only if the partnership IG key
    /// signed exactly this text and it is a valid policy. Returns the policy, the text and its
    /// signature.
    pub fn load_signed_policy(&self, directory: &Directory, schema: &Schema) -> anyhow::Result<(Policy, String, PolicySignature)> {
        let text = std::fs::read_to_string(&self.policy_path).with_context(|| format!("reading the policy {}", self.policy_path.display()))?;
        let signature = std::fs::read_to_string(self.policy_signature_path()).ok();
        let (policy, signature) =
            verify_signed_policy(&text, signature.as_deref(), directory, schema).with_context(|| format!("refusing the policy {}", self.policy_path.display()))?;
        Ok((policy, text, signature))
    }
}

/// Refuses to listen beyond this machine's loopback without TLS: the APIs serve case
/// content, so plain HTTP stays where only this machine reaches it (a TLS-terminating proxy
/// on the same host can front it); with a certificate (`HUB_TLS_CERT`, `HUB_TLS_KEY`) a
/// service may listen anywhere.
pub async fn check_listen(addr: &str, tls: bool) -> anyhow::Result<()> {
    if tls {
        return Ok(());
    }
    loopback_only(addr).await
}

/// Refuses an HTTP address that is not on this machine's loopback.
pub async fn loopback_only(addr: &str) -> anyhow::Result<()> {
    let resolved: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host(addr).await.with_context(|| format!("HUB_HTTP_ADDR {addr:?} is not a host:port this machine resolves"))?.collect();
    anyhow::ensure!(!resolved.is_empty(), "HUB_HTTP_ADDR {addr:?} resolves to no address");
    if let Some(open) = resolved.iter().find(|a| !a.ip().is_loopback()) {
        anyhow::bail!(
            "refusing to serve plain HTTP on {open}: the API carries case records, so without TLS it listens on loopback only \
             (127.0.0.1 or [::1]); give it a certificate (HUB_TLS_CERT and HUB_TLS_KEY, PEM files) or put a TLS-terminating \
             proxy on this host in front of it to reach it from elsewhere"
        );
    }
    Ok(())
}

/// A database URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("agency", &self.agency)
            .field("database_url", &redact_url(&self.database_url))
            .field("nats_url", &redact_url(&self.nats_url))
            .field("http_addr", &self.http_addr)
            .field("directory_path", &self.directory_path)
            .field("policy_path", &self.policy_path)
            .field("keys_path", &self.keys_path)
            .field("clock_skew", &self.clock_skew)
            .field("oidc", &self.oidc)
            .field("http_limits", &self.http_limits)
            .field("tls", &self.tls)
            .field("broker", &self.broker)
            .finish()
    }
}

/// Partnership files on disk that were refused: why (the innermost reason, e.g. "the policy
/// file changed after it was signed"; no content of the files) and when.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FilesRefused {
    pub reason: String,
    pub at_ms: i64,
}

/// How a service proves who it is to the broker, and how it knows the broker is the
/// partnership's: its own nkey seed (the server holds only the public key, and grants that
/// key the rights of its identity; see `hub::broker`) and the CA that signed the broker's
/// certificate. Both None: an anonymous, plain connection, which a partnership's broker
/// refuses (only a test of the refusal, or a broker run by hand, has a use for it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerAuth {
    /// A file holding the identity's nkey seed (`SU...`); owner-only permissions.
    pub nkey_file: Option<PathBuf>,
    /// The PEM CA certificate the broker's TLS certificate must chain to.
    pub ca_file: Option<PathBuf>,
}

/// Where `hub` keeps the partnership's broker credentials inside a data directory.
pub fn broker_dir(data: &Path) -> PathBuf {
    data.join("broker")
}

impl BrokerAuth {
    /// The files `hub` made for `identity` in `data` (an agency id, `audit` or `admin`), those
    /// that exist; `HUB_NATS_NKEY_FILE` and `HUB_NATS_CA` override them.
    pub fn embedded(data: &Path, identity: &str) -> BrokerAuth {
        let dir = broker_dir(data);
        let existing = |p: PathBuf| p.is_file().then_some(p);
        BrokerAuth { nkey_file: existing(dir.join(format!("{identity}.nk"))), ca_file: existing(dir.join("ca.pem")) }
    }

    /// [`BrokerAuth::embedded`], then the environment's `HUB_NATS_NKEY_FILE` and `HUB_NATS_CA`.
    pub fn from_env(data: &Path, identity: &str) -> BrokerAuth {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let mut auth = BrokerAuth::embedded(data, identity);
        if let Some(p) = var("HUB_NATS_NKEY_FILE") {
            auth.nkey_file = Some(p);
        }
        if let Some(p) = var("HUB_NATS_CA") {
            auth.ca_file = Some(p);
        }
        auth
    }
}

/// The clock deadlines are set and judged by: the system's, plus an offset a test moves.
#[derive(Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock(+{} ms)", self.offset_ms.load(Ordering::Relaxed))
    }
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        isp::now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        self.offset_ms.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}

/// How often a service looks for missed deadlines by default.
pub const CHECK_EVERY: Duration = Duration::from_secs(30);


#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_api_listens_on_loopback_only() {
        for ok in ["127.0.0.1:0", "[::1]:8080", "localhost:0", "127.0.0.2:9000"] {
            super::loopback_only(ok).await.unwrap_or_else(|e| panic!("{ok}: {e:#}"));
        }
        for open in ["0.0.0.0:8080", "[::]:0", "10.1.2.3:80", "192.168.0.10:443"] {
            let e = format!("{:#}", super::loopback_only(open).await.unwrap_err());
            assert!(e.contains("loopback only") && e.contains("TLS"), "{open}: {e}");
        }
        assert!(format!("{:#}", super::loopback_only("no port").await.unwrap_err()).contains("not a host:port"));
    }
}
