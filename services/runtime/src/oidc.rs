//! OpenID Connect against the partnership's identity provider, for staff login: bearer access
//! tokens (JWT) from case-management systems ([`Oidc::verify_access_token`]) and the
//! authorization code flow with PKCE for browser sessions ([`Oidc::begin_login`],
//! [`Oidc::finish_login`]). Roles, sessions and cookies are the caller's; this module only
//! says who a token or a login is, or why not.
//!
//! | variable | default |
//! | --- | --- |
//! | `HUB_OIDC_ISSUER` | unset: no OIDC login. The provider's issuer URL (https; plain http only on a loopback address) |
//! | `HUB_OIDC_AUDIENCE` | (required with the issuer) the `aud` this service's access tokens carry |
//! | `HUB_OIDC_CLIENT_ID` | (required with the issuer) this service's client id for browser login; the ID token's `aud` |
//! | `HUB_OIDC_CLIENT_SECRET` | unset: a public client (PKCE alone) |
//! | `HUB_OIDC_REDIRECT_URI` | (required with the issuer) where the provider sends the browser back with the code |
//! | `HUB_OIDC_ROLES_CLAIM` | `hub_roles`: the claim with the staff member's roles (an array, or one string) |
//! | `HUB_OIDC_AGENCY_CLAIM` | `hub_agency`: the claim with the agency id |
//!
//! Invariants:
//! - A signature verifies only with an asymmetric key from the provider's JWKS, and only
//!   with the one algorithm that key's type allows (RSA: RS256, P-256: ES256, Ed25519:
//!   EdDSA). A token's header picks a key, never how to check it: `none`, HS* and every
//!   other algorithm are refused before any key is looked at.
//! - The signature is checked before any claim is believed; then issuer, audience, expiry
//!   and not-before (60 s leeway for clock skew), and for ID tokens the nonce.
//! - Every call to the provider has a timeout, a size cap and follows no redirect. The JWKS
//!   is fetched again on an unknown key id (at most once per 30 s) and after an hour.
//! - Errors name the check that failed, never a token, a code or a claim's value.

use std::{
    fmt,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};
use rand::RngCore as _;
use reqwest::{Url, header};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Whole-request limit for every call to the provider.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Larger answers are refused: a discovery document or JWKS is a few KiB.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Longer tokens are refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// An unknown key id fetches the JWKS again, but no more often than this: a stream of
/// tokens with made-up key ids must not turn into a stream of requests to the provider.
const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// A key the provider has withdrawn stops verifying within this long.
const MAX_KEYS_AGE: Duration = Duration::from_secs(60 * 60);
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

/// How this service finds and trusts the partnership's identity provider.
#[derive(Clone)]
pub struct OidcConfig {
    pub issuer: String,
    /// The `aud` of access tokens meant for this service.
    pub audience: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_uri: String,
    pub roles_claim: String,
    pub agency_claim: String,
}

impl OidcConfig {
    /// From the `HUB_OIDC_*` variables (module docs); `None` when `HUB_OIDC_ISSUER` is unset.
    pub fn from_env() -> anyhow::Result<Option<OidcConfig>> {
        OidcConfig::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<OidcConfig>> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let Some(issuer) = var("HUB_OIDC_ISSUER") else {
            return Ok(None);
        };
        let required = |name: &str| var(name).with_context(|| format!("{name} must be set when HUB_OIDC_ISSUER is"));
        let config = OidcConfig {
            issuer,
            audience: required("HUB_OIDC_AUDIENCE")?,
            client_id: required("HUB_OIDC_CLIENT_ID")?,
            client_secret: var("HUB_OIDC_CLIENT_SECRET"),
            redirect_uri: required("HUB_OIDC_REDIRECT_URI")?,
            roles_claim: var("HUB_OIDC_ROLES_CLAIM").unwrap_or_else(|| "hub_roles".into()),
            agency_claim: var("HUB_OIDC_AGENCY_CLAIM").unwrap_or_else(|| "hub_agency".into()),
        };
        config.check().context("HUB_OIDC_* settings")?;
        Ok(Some(config))
    }

    /// What can be known wrong before asking the provider anything.
    fn check(&self) -> Result<(), OidcError> {
        trusted_url(&self.issuer).ok_or(OidcError::BadConfig { setting: "issuer", reason: URL_RULE })?;
        trusted_url(&self.redirect_uri).ok_or(OidcError::BadConfig { setting: "redirect_uri", reason: URL_RULE })?;
        let names = [
            ("audience", &self.audience),
            ("client_id", &self.client_id),
            ("roles_claim", &self.roles_claim),
            ("agency_claim", &self.agency_claim),
        ];
        match names.into_iter().find(|(_, value)| value.is_empty()) {
            Some((setting, _)) => Err(OidcError::BadConfig { setting, reason: "must not be empty" }),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|s| format!("<{} chars>", s.len())))
            .field("redirect_uri", &self.redirect_uri)
            .field("roles_claim", &self.roles_claim)
            .field("agency_claim", &self.agency_claim)
            .finish()
    }
}

const URL_RULE: &str = "must be an https URL (plain http only on a loopback address)";

/// Why a token or a login was refused, or the provider could not be used. [`OidcError::code`]
/// is stable (for logs and API answers); no message carries a token, code or claim value.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("OIDC setting {setting} {reason}")]
    BadConfig { setting: &'static str, reason: &'static str },
    #[error("the identity provider's {step} could not be reached: {reason}")]
    ProviderUnreachable { step: &'static str, reason: String },
    #[error("the identity provider's {step} gave an unusable answer: {reason}")]
    BadProviderResponse { step: &'static str, reason: &'static str },
    #[error("the discovery document names another issuer than the one configured")]
    DiscoveryIssuerMismatch,
    #[error("the token is not a well-formed signed JWT")]
    Malformed,
    #[error("the token's signature algorithm is not allowed (only RS256, ES256 and EdDSA)")]
    DisallowedAlgorithm,
    #[error("the token's signature algorithm does not fit its key")]
    AlgorithmMismatch,
    #[error("the token was signed with a key the identity provider does not publish")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token has no {claim} claim")]
    MissingClaim { claim: String },
    #[error("the token's {claim} claim has the wrong type")]
    BadClaim { claim: String },
    #[error("the ID token's nonce is not the one this login sent")]
    WrongNonce,
    #[error("the identity provider refused the authorization code ({error})")]
    CodeRejected { error: String },
}

impl OidcError {
    /// A stable code for logs and API answers.
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::BadConfig { .. } => "bad_config",
            OidcError::ProviderUnreachable { .. } => "provider_unreachable",
            OidcError::BadProviderResponse { .. } => "bad_provider_response",
            OidcError::DiscoveryIssuerMismatch => "discovery_issuer_mismatch",
            OidcError::Malformed => "malformed",
            OidcError::DisallowedAlgorithm => "disallowed_algorithm",
            OidcError::AlgorithmMismatch => "algorithm_mismatch",
            OidcError::UnknownKey => "unknown_key",
            OidcError::BadSignature => "bad_signature",
            OidcError::Expired => "expired",
            OidcError::NotYetValid => "not_yet_valid",
            OidcError::WrongIssuer => "wrong_issuer",
            OidcError::WrongAudience => "wrong_audience",
            OidcError::MissingClaim { .. } => "missing_claim",
            OidcError::BadClaim { .. } => "bad_claim",
            OidcError::WrongNonce => "wrong_nonce",
            OidcError::CodeRejected { .. } => "code_rejected",
        }
    }

    /// True when the provider could not be asked (try again later: a 503, not a 401).
    pub fn is_transient(&self) -> bool {
        matches!(self, OidcError::ProviderUnreachable { .. })
    }
}

/// Who a verified token or finished login is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcIdentity {
    /// The provider's `sub`: stable for the staff member (or, for client_credentials, the client).
    pub subject: String,
    pub agency: Option<String>,
    pub roles: Vec<String>,
    /// The `exp` of the access token or ID token, in milliseconds since the epoch.
    pub expires_at_ms: i64,
}

/// A browser login under way, kept server-side between [`Oidc::begin_login`] and
/// [`Oidc::finish_login`]: look it up by the `state` the callback brings back (that lookup is
/// the state check), and use it once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    /// The PKCE code verifier: only its SHA-256 went to the browser.
    pub verifier: String,
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars = |s: &String| format!("<{} chars>", s.len());
        f.debug_struct("PendingLogin")
            .field("state", &chars(&self.state))
            .field("nonce", &chars(&self.nonce))
            .field("verifier", &chars(&self.verifier))
            .finish()
    }
}

/// The identity provider as discovered, with its signing keys. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Oidc {
    inner: Arc<Inner>,
}

struct Inner {
    config: OidcConfig,
    http: reqwest::Client,
    authorization_endpoint: Url,
    token_endpoint: Url,
    jwks_uri: Url,
    /// The token endpoint takes `client_secret_post` and not `client_secret_basic`.
    secret_in_body: bool,
    keys: ArcSwap<KeySet>,
    /// Held while the JWKS is fetched again, so concurrent misses make one request.
    refetching: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Oidc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Oidc")
            .field("config", &self.inner.config)
            .field("keys", &self.inner.keys.load().keys.len())
            .finish_non_exhaustive()
    }
}

/// The parts of the provider's discovery document this module uses.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

impl Oidc {
    /// Reads the provider's discovery document and keys. Fails when the document names
    /// another issuer (so a token's `iss` is the provider the partnership chose).
    pub async fn discover(config: OidcConfig) -> Result<Oidc, OidcError> {
        config.check()?;
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| OidcError::ProviderUnreachable { step: "HTTP client", reason: "cannot be built".into() })?;
        let well_known = format!("{}/.well-known/openid-configuration", config.issuer.trim_end_matches('/'));
        let well_known =
            trusted_url(&well_known).ok_or(OidcError::BadConfig { setting: "issuer", reason: URL_RULE })?;
        let doc: Discovery = get_json(&http, &well_known, "discovery document").await?;
        if doc.issuer != config.issuer {
            return Err(OidcError::DiscoveryIssuerMismatch);
        }
        let endpoint = |url: &str| {
            trusted_url(url).ok_or(OidcError::BadProviderResponse {
                step: "discovery document",
                reason: "an endpoint is not https",
            })
        };
        let (authorization_endpoint, token_endpoint, jwks_uri) =
            (endpoint(&doc.authorization_endpoint)?, endpoint(&doc.token_endpoint)?, endpoint(&doc.jwks_uri)?);
        // client_secret_basic is the default when the provider lists nothing.
        let secret_in_body = doc.token_endpoint_auth_methods_supported.is_some_and(|methods| {
            !methods.iter().any(|m| m == "client_secret_basic") && methods.iter().any(|m| m == "client_secret_post")
        });
        let keys = fetch_keys(&http, &jwks_uri).await?;
        tracing::info!(issuer = %config.issuer, keys = keys.keys.len(), "OIDC provider discovered");
        Ok(Oidc {
            inner: Arc::new(Inner {
                config,
                http,
                authorization_endpoint,
                token_endpoint,
                jwks_uri,
                secret_in_body,
                keys: ArcSwap::from_pointee(keys),
                refetching: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.inner.config
    }

    /// Checks a bearer access token meant for this service (`aud` = the configured audience).
    ///
    /// A case-management system sends the same token with every request until it expires, so
    /// a token accepted once is remembered (by its SHA-256) with the key set that accepted it
    /// and taken again without a second signature check (an RS256 check is the costly part of
    /// a request): only while that key set is the one in use and younger than
    /// [`MAX_KEYS_AGE`] (a refresh that drops the key forgets the token with it), and only
    /// until the token's `exp` (with the same leeway). The answer is the one a full check
    /// would give, for as long as it is remembered.
    pub async fn verify_access_token(&self, token: &str) -> Result<OidcIdentity, OidcError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let keys = self.inner.keys.load_full();
        if keys.fetched_at.elapsed() < MAX_KEYS_AGE {
            if let Some(known) = keys.accepted(&digest, isp::now_ms()) {
                return Ok(known);
            }
        }
        let claims = self.verify_jwt(token, &self.inner.config.audience).await?;
        let identity = identity(&claims, &self.inner.config)?;
        // The set that checked it (a refetch during the check made a new one).
        self.inner.keys.load().remember(digest, &identity);
        Ok(identity)
    }

    /// Starts a browser login: the URL to send the browser to, and what to keep until the
    /// callback. Scope `openid`; state, nonce and PKCE verifier are 256 random bits each.
    pub fn begin_login(&self) -> (String, PendingLogin) {
        let pending = PendingLogin { state: random_token(), nonce: random_token(), verifier: random_token() };
        let config = &self.inner.config;
        let mut url = self.inner.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &config.client_id)
            .append_pair("redirect_uri", &config.redirect_uri)
            .append_pair("scope", "openid")
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &pkce_challenge(&pending.verifier))
            .append_pair("code_challenge_method", "S256");
        (url.into(), pending)
    }

    /// Ends a browser login: exchanges the callback's code (with the PKCE verifier) and checks
    /// the ID token, its nonce included. The caller has matched the callback's `state` to
    /// `pending` already.
    pub async fn finish_login(&self, code: &str, pending: &PendingLogin) -> Result<OidcIdentity, OidcError> {
        let id_token = self.exchange_code(code, pending).await?;
        let config = &self.inner.config;
        let claims = self.verify_jwt(&id_token, &config.client_id).await?;
        check_authorized_party(&claims, &config.client_id)?;
        match claims.get("nonce") {
            Some(Value::String(nonce)) if same_secret(nonce, &pending.nonce) => identity(&claims, config),
            _ => Err(OidcError::WrongNonce),
        }
    }

    /// Signature (with the key the header names, by the algorithm that key allows), then
    /// issuer, audience, expiry and not-before.
    async fn verify_jwt(&self, token: &str, audience: &str) -> Result<Claims, OidcError> {
        let (alg, kid) = read_header(token)?;
        let key = self.signing_key(alg, kid.as_deref()).await?;
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[&self.inner.config.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map(|data| data.claims).map_err(refusal)
    }

    async fn signing_key(&self, alg: Algorithm, kid: Option<&str>) -> Result<Arc<SigningKey>, OidcError> {
        let mut keys = self.inner.keys.load_full();
        if keys.fetched_at.elapsed() >= MAX_KEYS_AGE {
            match self.refetch_keys(&keys, MAX_KEYS_AGE).await {
                Ok(fresh) => keys = fresh,
                Err(e) => tracing::warn!(error = %e, "OIDC keys could not be refreshed; the last ones stay in use"),
            }
        }
        if let Some(key) = keys.find(alg, kid)? {
            return Ok(key);
        }
        let keys = self.refetch_keys(&keys, REFETCH_INTERVAL).await?;
        keys.find(alg, kid)?.ok_or(OidcError::UnknownKey)
    }

    /// Fetches the JWKS again unless someone else just did, or `seen` is younger than
    /// `min_age`. A failed fetch counts as a fetch (the old keys stay), so a provider outage
    /// is not hammered.
    async fn refetch_keys(&self, seen: &Arc<KeySet>, min_age: Duration) -> Result<Arc<KeySet>, OidcError> {
        let _one_at_a_time = self.inner.refetching.lock().await;
        let current = self.inner.keys.load_full();
        if !Arc::ptr_eq(&current, seen) || current.fetched_at.elapsed() < min_age {
            return Ok(current);
        }
        tracing::debug!(issuer = %self.inner.config.issuer, "fetching the OIDC keys again");
        match fetch_keys(&self.inner.http, &self.inner.jwks_uri).await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                self.inner.keys.store(fresh.clone());
                Ok(fresh)
            }
            Err(e) => {
                self.inner.keys.store(Arc::new(KeySet::of(current.keys.clone())));
                Err(e)
            }
        }
    }

    /// The token request of the code flow; returns the ID token.
    async fn exchange_code(&self, code: &str, pending: &PendingLogin) -> Result<String, OidcError> {
        const STEP: &str = "token endpoint";
        let config = &self.inner.config;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &config.redirect_uri),
            ("code_verifier", &pending.verifier),
        ];
        let mut request =
            self.inner.http.post(self.inner.token_endpoint.clone()).header(header::ACCEPT, "application/json");
        match &config.client_secret {
            None => form.push(("client_id", &config.client_id)),
            Some(secret) if self.inner.secret_in_body => {
                form.extend([("client_id", &*config.client_id), ("client_secret", secret)])
            }
            Some(secret) => request = request.header(header::AUTHORIZATION, basic_auth(&config.client_id, secret)),
        }
        let response = request.form(&form).send().await.map_err(|e| unreachable(STEP, &e))?;
        let status = response.status();
        let body = read_capped(response, STEP).await?;
        if status == reqwest::StatusCode::BAD_REQUEST || status == reqwest::StatusCode::UNAUTHORIZED {
            #[derive(Deserialize)]
            struct ErrorAnswer {
                error: String,
            }
            let error = serde_json::from_slice::<ErrorAnswer>(&body).map(|a| a.error).unwrap_or_default();
            return Err(OidcError::CodeRejected { error: oauth_error_code(&error) });
        }
        if !status.is_success() {
            return Err(OidcError::ProviderUnreachable { step: STEP, reason: format!("HTTP {}", status.as_u16()) });
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|_| OidcError::BadProviderResponse { step: STEP, reason: "not a token response" })?;
        answer.id_token.ok_or(OidcError::BadProviderResponse { step: STEP, reason: "no id_token" })
    }
}

type Claims = serde_json::Map<String, Value>;

/// One verification key from the provider's JWKS, with the one algorithm it may verify.
struct SigningKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

struct KeySet {
    keys: Vec<Arc<SigningKey>>,
    /// When the set was last fetched, or a fetch last failed.
    fetched_at: Instant,
    /// Access tokens these keys accepted, by SHA-256 ([`Oidc::verify_access_token`]); a
    /// new set starts empty.
    accepted: std::sync::Mutex<std::collections::HashMap<[u8; 32], OidcIdentity>>,
}

/// At most this many accepted tokens are remembered; then the memory starts again (a few
/// hundred bytes each).
const ACCEPTED_TOKENS_MAX: usize = 4096;

impl KeySet {
    /// Reads a JWKS, keeping the signing keys of the allowed types and skipping the rest
    /// (encryption keys, other curves, key types the library does not know).
    fn parse(body: &[u8]) -> Result<KeySet, OidcError> {
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<Value>,
        }
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|_| OidcError::BadProviderResponse { step: "JWKS", reason: "not a JWK set" })?;
        let keys: Vec<_> = raw.keys.into_iter().filter_map(signing_key).map(Arc::new).collect();
        if keys.is_empty() {
            return Err(OidcError::BadProviderResponse {
                step: "JWKS",
                reason: "no RS256, ES256 or EdDSA signing key",
            });
        }
        Ok(KeySet::of(keys))
    }

    fn of(keys: Vec<Arc<SigningKey>>) -> KeySet {
        KeySet { keys, fetched_at: Instant::now(), accepted: Default::default() }
    }

    /// A token these keys accepted, while its `exp` (with the leeway) has not passed.
    fn accepted(&self, digest: &[u8; 32], now_ms: i64) -> Option<OidcIdentity> {
        let accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        accepted.get(digest).filter(|known| now_ms < known.expires_at_ms.saturating_add(LEEWAY_SECS as i64 * 1000)).cloned()
    }

    fn remember(&self, digest: [u8; 32], identity: &OidcIdentity) {
        let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        if accepted.len() >= ACCEPTED_TOKENS_MAX {
            accepted.clear();
        }
        accepted.insert(digest, identity.clone());
    }

    /// The key a token's header names: by `kid`, or the only key of its algorithm when the
    /// token has no `kid`. `None` when no such key is published (yet).
    fn find(&self, alg: Algorithm, kid: Option<&str>) -> Result<Option<Arc<SigningKey>>, OidcError> {
        let found = match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let mut same_alg = self.keys.iter().filter(|k| k.alg == alg);
                match (same_alg.next(), same_alg.next()) {
                    (Some(only), None) => Some(only),
                    (Some(_), Some(_)) => return Err(OidcError::UnknownKey),
                    (None, _) => None,
                }
            }
        };
        match found {
            Some(key) if key.alg != alg => Err(OidcError::AlgorithmMismatch),
            found => Ok(found.cloned()),
        }
    }
}

/// A JWK as a signing key with its algorithm, or `None` for a key this module never trusts.
fn signing_key(value: Value) -> Option<SigningKey> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return None;
    }
    let (alg, named) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (Algorithm::EdDSA, KeyAlgorithm::EdDSA)
        }
        _ => return None,
    };
    // A key published for another algorithm (PS256, RSA-OAEP, ...) is not used for this one.
    if jwk.common.key_algorithm.is_some_and(|a| a != named) {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(SigningKey { kid: jwk.common.key_id, alg, key })
}

async fn fetch_keys(http: &reqwest::Client, jwks_uri: &Url) -> Result<KeySet, OidcError> {
    let response = http.get(jwks_uri.clone()).header(header::ACCEPT, "application/json").send().await;
    let body = checked_body(response, "JWKS").await?;
    KeySet::parse(&body)
}

/// The algorithm and key id of a compact JWS, refusing every algorithm but the three allowed.
fn read_header(token: &str) -> Result<(Algorithm, Option<String>), OidcError> {
    #[derive(Deserialize)]
    struct Header {
        alg: String,
        #[serde(default)]
        kid: Option<String>,
        #[serde(default)]
        crit: Option<Value>,
    }
    if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
        return Err(OidcError::Malformed);
    }
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| OidcError::Malformed)?;
    let header: Header = serde_json::from_slice(&bytes).map_err(|_| OidcError::Malformed)?;
    // No header extension is understood, so none may be critical (RFC 7515 4.1.11).
    if header.crit.is_some() {
        return Err(OidcError::Malformed);
    }
    let alg = match header.alg.as_str() {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        _ => return Err(OidcError::DisallowedAlgorithm),
    };
    Ok((alg, header.kid))
}

/// What a failed `jsonwebtoken::decode` means to the caller.
fn refusal(e: jsonwebtoken::errors::Error) -> OidcError {
    match e.into_kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => OidcError::BadSignature,
        ErrorKind::ExpiredSignature => OidcError::Expired,
        ErrorKind::ImmatureSignature => OidcError::NotYetValid,
        ErrorKind::InvalidIssuer => OidcError::WrongIssuer,
        ErrorKind::InvalidAudience => OidcError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => OidcError::MissingClaim { claim },
        ErrorKind::InvalidClaimFormat(claim) => OidcError::BadClaim { claim },
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm | ErrorKind::InvalidAlgorithmName => {
            OidcError::AlgorithmMismatch
        }
        _ => OidcError::Malformed,
    }
}

/// The identity in verified claims: `sub`, `exp`, and the configured agency and roles claims
/// (roles: an array of strings, or one string for a single role, as some providers send it).
fn identity(claims: &Claims, config: &OidcConfig) -> Result<OidcIdentity, OidcError> {
    let bad = |claim: &str| OidcError::BadClaim { claim: claim.to_owned() };
    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        _ => return Err(bad("sub")),
    };
    // A NumericDate may have a fraction of a second.
    let expires_at_ms =
        claims.get("exp").and_then(Value::as_f64).map(|s| (s * 1000.0) as i64).ok_or_else(|| bad("exp"))?;
    let agency = match claims.get(&config.agency_claim) {
        None | Some(Value::Null) => None,
        Some(Value::String(agency)) => Some(agency.clone()).filter(|a| !a.is_empty()),
        Some(_) => return Err(bad(&config.agency_claim)),
    };
    let roles = match claims.get(&config.roles_claim) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(role)) => vec![role.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad(&config.roles_claim))?,
        Some(_) => return Err(bad(&config.roles_claim)),
    };
    Ok(OidcIdentity { subject, agency, roles, expires_at_ms })
}

/// OIDC Core 3.1.3.7: with several audiences the ID token must name us as its authorized
/// party, and an `azp` present must be us.
fn check_authorized_party(claims: &Claims, client_id: &str) -> Result<(), OidcError> {
    let several = matches!(claims.get("aud"), Some(Value::Array(auds)) if auds.len() > 1);
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == client_id => Ok(()),
        None if !several => Ok(()),
        _ => Err(OidcError::WrongAudience),
    }
}

/// An http(s) URL this module will talk to or send a browser to: https, or plain http on a
/// loopback address (a provider on the same machine, as in the tests).
fn trusted_url(s: &str) -> Option<Url> {
    let url = Url::parse(s).ok()?;
    let loopback = || match url.host_str() {
        Some("localhost") => true,
        Some(host) => {
            host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    };
    match url.scheme() {
        "https" => Some(url),
        "http" if loopback() => Some(url),
        _ => None,
    }
}

/// A GET of a JSON document from the provider.
async fn get_json<T: DeserializeOwned>(http: &reqwest::Client, url: &Url, step: &'static str) -> Result<T, OidcError> {
    let response = http.get(url.clone()).header(header::ACCEPT, "application/json").send().await;
    let body = checked_body(response, step).await?;
    serde_json::from_slice(&body).map_err(|_| OidcError::BadProviderResponse { step, reason: "not the expected JSON" })
}

/// The body of a successful answer (2xx; a redirect is not followed and counts as a failure).
async fn checked_body(response: reqwest::Result<reqwest::Response>, step: &'static str) -> Result<Vec<u8>, OidcError> {
    let response = response.map_err(|e| unreachable(step, &e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(OidcError::ProviderUnreachable { step, reason: format!("HTTP {}", status.as_u16()) });
    }
    read_capped(response, step).await
}

async fn read_capped(mut response: reqwest::Response, step: &'static str) -> Result<Vec<u8>, OidcError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(step, &e))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(OidcError::BadProviderResponse { step, reason: "answer over 1 MiB" });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn unreachable(step: &'static str, e: &reqwest::Error) -> OidcError {
    let reason = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    OidcError::ProviderUnreachable { step, reason: reason.into() }
}

/// An OAuth error code from the provider (`invalid_grant`, ...), kept only if it looks like one.
fn oauth_error_code(error: &str) -> String {
    let plausible =
        !error.is_empty() && error.len() <= 64 && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if plausible { error.to_owned() } else { "unspecified".to_owned() }
}

/// 32 random bytes, base64url: a state, nonce or PKCE verifier (43 characters).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7636 S256: base64url(SHA-256(verifier)).
fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `client_secret_basic` (RFC 6749 2.3.1): id and secret form-encoded before base64.
fn basic_auth(client_id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{}:{}", form_encode(client_id), form_encode(secret))))
}

fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Equality that takes as long however early the strings differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> OidcConfig {
        OidcConfig {
            issuer: "https://idp.example".into(),
            audience: "urn:hub:idva".into(),
            client_id: "idva-console".into(),
            client_secret: Some("very-secret".into()),
            redirect_uri: "https://idva.example/login/callback".into(),
            roles_claim: "hub_roles".into(),
            agency_claim: "hub_agency".into(),
        }
    }

    fn jws_header(header: Value) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header.to_string()))
    }

    #[test]
    fn an_accepted_token_is_remembered_until_its_expiry_and_leeway_and_by_its_key_set_alone() {
        let keys = KeySet::of(Vec::new());
        let now = 1_900_000_000_000;
        let identity = OidcIdentity { subject: "idva-cms".into(), agency: Some("idva".into()), roles: vec!["caseworker".into()], expires_at_ms: now };
        let digest = [7u8; 32];
        assert_eq!(keys.accepted(&digest, now), None);
        keys.remember(digest, &identity);
        assert_eq!(keys.accepted(&digest, now - 1), Some(identity.clone()));
        assert_eq!(keys.accepted(&digest, now + LEEWAY_SECS as i64 * 1000 - 1), Some(identity.clone()), "within the leeway");
        assert_eq!(keys.accepted(&digest, now + LEEWAY_SECS as i64 * 1000), None, "past exp and the leeway");
        assert_eq!(keys.accepted(&[8u8; 32], now), None, "another token");
        assert_eq!(KeySet::of(Vec::new()).accepted(&digest, now), None, "a key set fetched again starts empty");
        for n in 0..ACCEPTED_TOKENS_MAX {
            keys.remember(Sha256::digest(n.to_be_bytes()).into(), &identity);
        }
        assert!(keys.accepted.lock().unwrap().len() <= ACCEPTED_TOKENS_MAX, "bounded");
    }

    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_tokens_are_43_base64url_characters_and_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }

    #[test]
    fn only_https_or_loopback_http_is_trusted() {
        for (url, trusted) in [
            ("https://idp.example", true),
            ("https://idp.example/realms/hub", true),
            ("http://127.0.0.1:8080", true),
            ("http://127.5.5.5", true),
            ("http://[::1]:9000/x", true),
            ("http://localhost:3000", true),
            ("http://idp.example", false),
            ("http://10.0.0.1", false),
            ("ftp://idp.example", false),
            ("idp.example", false),
            ("", false),
        ] {
            assert_eq!(trusted_url(url).is_some(), trusted, "{url}");
        }
    }

    #[test]
    fn headers_with_other_algorithms_are_refused_before_any_key() {
        for (alg, expected) in [
            ("RS256", Ok(Algorithm::RS256)),
            ("ES256", Ok(Algorithm::ES256)),
            ("EdDSA", Ok(Algorithm::EdDSA)),
            ("none", Err("disallowed_algorithm")),
            ("HS256", Err("disallowed_algorithm")),
            ("HS512", Err("disallowed_algorithm")),
            ("PS256", Err("disallowed_algorithm")),
            ("RS512", Err("disallowed_algorithm")),
            ("rs256", Err("disallowed_algorithm")),
        ] {
            let got = read_header(&jws_header(json!({ "alg": alg, "kid": "k" }))).map(|(a, _)| a).map_err(|e| e.code());
            assert_eq!(got, expected, "{alg}");
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let crit = jws_header(json!({ "alg": "RS256", "crit": ["exp"], "exp": 1 }));
        for token in
            ["", "a.b", "a.b.c.d", "!!!.e30.c2ln", "e30.e30.c2ln", crit.as_str(), &"a".repeat(MAX_TOKEN_BYTES + 1)]
        {
            assert_eq!(read_header(token).map_err(|e| e.code()), Err("malformed"), "{token:.40}");
        }
    }

    #[test]
    fn identity_reads_subject_agency_roles_and_expiry() {
        let base = json!({ "sub": "alice", "exp": 1_900_000_000 });
        let with = |extra: Value| {
            let mut claims = base.as_object().unwrap().clone();
            claims.extend(extra.as_object().unwrap().clone());
            identity(&claims, &config()).map(|i| (i.agency, i.roles)).map_err(|e| e.to_string())
        };
        let roles = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(with(json!({})), Ok((None, vec![])));
        assert_eq!(
            with(json!({ "hub_agency": "idva", "hub_roles": ["caseworker", "manager"] })),
            Ok((Some("idva".into()), roles(&["caseworker", "manager"])))
        );
        assert_eq!(with(json!({ "hub_roles": "caseworker" })), Ok((None, roles(&["caseworker"]))));
        assert_eq!(with(json!({ "hub_agency": "" })), Ok((None, vec![])));
        assert_eq!(
            with(json!({ "hub_roles": ["ok", 3] })),
            Err("the token's hub_roles claim has the wrong type".into())
        );
        assert_eq!(
            with(json!({ "hub_roles": { "a": 1 } })),
            Err("the token's hub_roles claim has the wrong type".into())
        );
        assert_eq!(
            with(json!({ "hub_agency": ["idva"] })),
            Err("the token's hub_agency claim has the wrong type".into())
        );
        assert_eq!(with(json!({ "sub": "" })).map_err(|_| ()), Err(()));
        let identity = identity(base.as_object().unwrap(), &config()).unwrap();
        assert_eq!((identity.subject.as_str(), identity.expires_at_ms), ("alice", 1_900_000_000_000));
        let fractional = json!({ "sub": "alice", "exp": 1_900_000_000.5 });
        assert_eq!(
            super::identity(fractional.as_object().unwrap(), &config()).unwrap().expires_at_ms,
            1_900_000_000_500
        );
    }

    #[test]
    fn an_id_token_for_several_audiences_must_name_us_as_authorized_party() {
        for (claims, ok) in [
            (json!({ "aud": "idva-console" }), true),
            (json!({ "aud": ["idva-console"] }), true),
            (json!({ "aud": ["idva-console", "other"], "azp": "idva-console" }), true),
            (json!({ "aud": ["idva-console", "other"] }), false),
            (json!({ "aud": "idva-console", "azp": "other" }), false),
        ] {
            assert_eq!(check_authorized_party(claims.as_object().unwrap(), "idva-console").is_ok(), ok, "{claims}");
        }
    }

    #[test]
    fn from_env_needs_only_the_issuer_to_be_absent() {
        let from = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            OidcConfig::from_vars(move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        };
        assert!(from(&[]).unwrap().is_none());
        assert!(from(&[("HUB_OIDC_ISSUER", "")]).unwrap().is_none());
        assert!(from(&[("HUB_OIDC_ISSUER", "https://idp.example")]).is_err());
        let mut vars = vec![
            ("HUB_OIDC_ISSUER", "https://idp.example"),
            ("HUB_OIDC_AUDIENCE", "urn:hub:idva"),
            ("HUB_OIDC_CLIENT_ID", "idva-console"),
            ("HUB_OIDC_REDIRECT_URI", "https://idva.example/cb"),
        ];
        let config = from(&vars).unwrap().unwrap();
        assert_eq!((config.roles_claim.as_str(), config.agency_claim.as_str()), ("hub_roles", "hub_agency"));
        assert_eq!(config.client_secret, None);
        vars.push(("HUB_OIDC_ROLES_CLAIM", "groups"));
        assert_eq!(from(&vars).unwrap().unwrap().roles_claim, "groups");
        vars[0].1 = "http://idp.example";
        assert!(from(&vars).is_err(), "plain http to a remote provider");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let pending = PendingLogin { state: "s-secret".into(), nonce: "n-secret".into(), verifier: "v-secret".into() };
        let printed = format!("{:?} {:?}", config(), pending);
        assert!(!printed.contains("very-secret") && !printed.contains("v-secret"), "{printed}");
    }

    #[test]
    fn basic_auth_form_encodes_id_and_secret() {
        assert_eq!(basic_auth("a b", "p:w/+"), format!("Basic {}", STANDARD.encode("a%20b:p%3Aw%2F%2B")));
    }

    #[test]
    fn only_plausible_oauth_error_codes_are_repeated() {
        assert_eq!(oauth_error_code("invalid_grant"), "invalid_grant");
        assert_eq!(oauth_error_code("code abc123 was used"), "unspecified");
        assert_eq!(oauth_error_code(""), "unspecified");
    }
}
