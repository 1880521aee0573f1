//! runtime::oidc against a real OpenID provider: oidc-provider (deploy/oidc/provider.mjs) on a
//! free port with its own keys, clients and accounts, one per test, killed on drop (the
//! harness is `tests::oidc`). Needs Node.js 20.19+ and npm (deploy/test.sh installs them).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Url;
use runtime::oidc::{Oidc, OidcError, OidcIdentity, PendingLogin};
use serde_json::{Value, json};
use tests::oidc::{CMS_SECRET, CONSOLE_SECRET, Provider, REDIRECT_URI, TestKey, callback_code, query};

/// Three agency services (one per signing algorithm) with a case-management client each;
/// two console clients for browser login (public, and confidential); two staff accounts.
fn provider_config(keys: Vec<Value>) -> Value {
    let cms = |id: &str, agency: &str, resource: &str| {
        json!({
            "client_id": id, "client_secret": CMS_SECRET,
            "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [],
            "hub_agency": agency, "hub_roles": ["case_system"], "hub_resources": [resource],
        })
    };
    json!({
        "keys": keys,
        "resources": {
            "urn:hub:idva": { "alg": "RS256" },
            "urn:hub:housing": { "alg": "ES256" },
            "urn:hub:marac": { "alg": "EdDSA" },
        },
        "clients": [
            cms("idva-cms", "idva", "urn:hub:idva"),
            cms("housing-cms", "housing", "urn:hub:housing"),
            cms("marac-cms", "marac", "urn:hub:marac"),
            {
                "client_id": "idva-console", "token_endpoint_auth_method": "none",
                "redirect_uris": [REDIRECT_URI], "id_token_signed_response_alg": "ES256",
            },
            {
                "client_id": "housing-console", "client_secret": CONSOLE_SECRET,
                "redirect_uris": [REDIRECT_URI], "id_token_signed_response_alg": "EdDSA",
            },
        ],
        "accounts": {
            "alice": { "hub_agency": "idva", "hub_roles": ["caseworker", "manager"] },
            "bob": { "hub_agency": "housing", "hub_roles": "officer" },
        },
    })
}

// --- claims and helpers ----------------------------------------------------------------

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims(issuer: &str, audience: &str) -> Value {
    json!({
        "iss": issuer, "aud": audience, "sub": "idva-cms", "iat": now(), "exp": now() + 300,
        "hub_agency": "idva", "hub_roles": ["case_system"],
    })
}

/// The code of a refusal.
fn refused(result: Result<OidcIdentity, OidcError>) -> &'static str {
    match result {
        Ok(identity) => panic!("accepted as {identity:?}"),
        Err(e) => e.code(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// --- bearer access tokens ---------------------------------------------------------------

#[tokio::test]
async fn client_credentials_tokens_verify_with_subject_agency_and_roles() {
    let provider = Provider::start(&provider_config);
    for (client, agency, resource, alg) in [
        ("idva-cms", "idva", "urn:hub:idva", Algorithm::RS256),
        ("housing-cms", "housing", "urn:hub:housing", Algorithm::ES256),
        ("marac-cms", "marac", "urn:hub:marac", Algorithm::EdDSA),
    ] {
        let oidc = provider.oidc(resource, "unused-console", None).await;
        let token = provider.client_credentials(client, resource).await;
        assert_eq!(jsonwebtoken::decode_header(&token).unwrap().alg, alg, "the provider signs {resource} with {alg:?}");
        let identity = oidc.verify_access_token(&token).await.unwrap();
        assert_eq!(identity.subject, client);
        assert_eq!(identity.agency.as_deref(), Some(agency));
        assert_eq!(identity.roles, strings(&["case_system"]));
        let left = identity.expires_at_ms - now() * 1000;
        assert!((0..=600_000).contains(&left), "the token's expiry, {left} ms from now");
    }
}

#[tokio::test]
async fn a_token_for_another_service_is_refused() {
    let provider = Provider::start(&provider_config);
    let housing = provider.oidc("urn:hub:housing", "housing-console", None).await;
    let token = provider.client_credentials("idva-cms", "urn:hub:idva").await;
    assert_eq!(refused(housing.verify_access_token(&token).await), "wrong_audience");
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let provider = Provider::start(&provider_config);
    let oidc = provider.oidc("urn:hub:idva", "idva-console", None).await;
    let key = provider.key(Algorithm::RS256);
    let mut expired = claims(&provider.issuer, "urn:hub:idva");
    expired["iat"] = json!(now() - 3600);
    expired["exp"] = json!(now() - 600);
    assert_eq!(refused(oidc.verify_access_token(&key.sign(&key.kid, &expired)).await), "expired");
    let mut early = claims(&provider.issuer, "urn:hub:idva");
    early["nbf"] = json!(now() + 600);
    assert_eq!(refused(oidc.verify_access_token(&key.sign(&key.kid, &early)).await), "not_yet_valid");
    // A time claim of the wrong type is refused, not skipped.
    let mut stringly = claims(&provider.issuer, "urn:hub:idva");
    stringly["nbf"] = json!((now() + 600).to_string());
    assert_eq!(refused(oidc.verify_access_token(&key.sign(&key.kid, &stringly)).await), "bad_claim");
    // The same claims, in time, pass: the refusals above are about time alone.
    let fine = claims(&provider.issuer, "urn:hub:idva");
    assert_eq!(oidc.verify_access_token(&key.sign(&key.kid, &fine)).await.unwrap().subject, "idva-cms");
}

#[tokio::test]
async fn tampered_tokens_are_refused() {
    let provider = Provider::start(&provider_config);
    let oidc = provider.oidc("urn:hub:idva", "idva-console", None).await;
    let token = provider.client_credentials("idva-cms", "urn:hub:idva").await;
    let parts: Vec<&str> = token.split('.').collect();

    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[10] ^= 0x01;
    let bad_signature = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(signature));
    assert_eq!(refused(oidc.verify_access_token(&bad_signature).await), "bad_signature");

    let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["hub_roles"] = json!(["case_system", "manager"]);
    let promoted = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(payload.to_string()), parts[2]);
    assert_eq!(refused(oidc.verify_access_token(&promoted).await), "bad_signature");

    assert!(oidc.verify_access_token(&token).await.is_ok(), "the untouched token still verifies");
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused() {
    let provider = Provider::start(&provider_config);
    let oidc = provider.oidc("urn:hub:idva", "idva-console", None).await;
    let outsider = &TestKey::generate(&["RS256"])[0];
    let claims = claims(&provider.issuer, "urn:hub:idva");
    // Claiming to be the provider's key: the signature does not verify with it.
    let impostor = outsider.sign(&provider.key(Algorithm::RS256).kid, &claims);
    assert_eq!(refused(oidc.verify_access_token(&impostor).await), "bad_signature");
    // Its own key id: not one the provider publishes.
    assert_eq!(refused(oidc.verify_access_token(&outsider.sign(&outsider.kid, &claims)).await), "unknown_key");
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let provider = Provider::start(&provider_config);
    let oidc = provider.oidc("urn:hub:idva", "idva-console", None).await;
    let key = provider.key(Algorithm::ES256);
    let mut claims = claims("http://127.0.0.1:1", "urn:hub:idva");
    assert_eq!(refused(oidc.verify_access_token(&key.sign(&key.kid, &claims)).await), "wrong_issuer");
    claims.as_object_mut().unwrap().remove("iss");
    assert_eq!(refused(oidc.verify_access_token(&key.sign(&key.kid, &claims)).await), "missing_claim");

    // A provider whose discovery document names another issuer is not used at all.
    let other = Provider::start(&provider_config);
    let mut config = other.config("urn:hub:idva", "idva-console", None);
    config.issuer.push('/');
    assert_eq!(Oidc::discover(config).await.map(|_| ()).unwrap_err().code(), "discovery_issuer_mismatch");
}

#[tokio::test]
async fn only_the_allowed_algorithms_verify_and_each_only_with_its_own_key_type() {
    let provider = Provider::start(&provider_config);
    let oidc = provider.oidc("urn:hub:idva", "idva-console", None).await;
    let claims = claims(&provider.issuer, "urn:hub:idva");
    let rsa = provider.key(Algorithm::RS256);

    // HMAC with the provider's public key set as the secret: the classic confusion.
    let jwks = reqwest::get(format!("{}/jwks", provider.issuer)).await.unwrap().bytes().await.unwrap();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(rsa.kid.clone());
    let hs256 = jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(&jwks)).unwrap();
    assert_eq!(refused(oidc.verify_access_token(&hs256).await), "disallowed_algorithm");

    let none_header = URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "kid": rsa.kid }).to_string());
    let unsigned = format!("{none_header}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()));
    assert_eq!(refused(oidc.verify_access_token(&unsigned).await), "disallowed_algorithm");

    // An ES256 signature presented under the RSA key's id.
    let ec = provider.key(Algorithm::ES256);
    assert_eq!(refused(oidc.verify_access_token(&ec.sign(&rsa.kid, &claims)).await), "algorithm_mismatch");

    assert_eq!(refused(oidc.verify_access_token("not a token").await), "malformed");
}

/// A provider signing with one RS256 key, the service's view of it (keys fetched once), the
/// provider's port (to bring it back on) and its key.
async fn first_provider() -> (Provider, u16, Oidc, TestKey) {
    let first = Provider::start_with(TestKey::generate(&["RS256"]), 0, &provider_config);
    let port = Url::parse(&first.issuer).unwrap().port().unwrap();
    let oidc = first.oidc("urn:hub:idva", "idva-console", None).await;
    let old_key = TestKey::from_config(&first.keys[0].config);
    (first, port, oidc, old_key)
}

#[tokio::test]
async fn keys_the_provider_adds_are_fetched_again_at_most_every_30_seconds() {
    let (first, port, oidc, old_key) = first_provider().await;
    drop(first);

    // The provider comes back on the same address, signing with a new key, the old one still published.
    let new_key = TestKey::generate(&["RS256"]).remove(0);
    let keys = vec![TestKey::from_config(&new_key.config), TestKey::from_config(&old_key.config)];
    let second = Provider::start_with(keys, port, &provider_config);
    let claims = claims(&second.issuer, "urn:hub:idva");
    assert!(oidc.verify_access_token(&old_key.sign(&old_key.kid, &claims)).await.is_ok());
    let token = second.client_credentials("idva-cms", "urn:hub:idva").await;
    assert_eq!(jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(), Some(new_key.kid.as_str()));
    assert_eq!(refused(oidc.verify_access_token(&token).await), "unknown_key", "within 30 s of the last fetch");
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(oidc.verify_access_token(&token).await.unwrap().agency.as_deref(), Some("idva"));
}

#[tokio::test]
async fn a_key_the_provider_drops_takes_the_tokens_it_accepted_with_it() {
    let (first, port, oidc, old_key) = first_provider().await;
    let old_token = old_key.sign(&old_key.kid, &claims(&first.issuer, "urn:hub:idva"));
    // Accepted, and again: the second time from memory.
    for _ in 0..2 {
        assert_eq!(oidc.verify_access_token(&old_token).await.unwrap().subject, "idva-cms");
    }
    drop(first);

    // The provider comes back publishing a new key only (the old one compromised, say).
    let second = Provider::start_with(TestKey::generate(&["RS256"]), port, &provider_config);
    let new_token = second.client_credentials("idva-cms", "urn:hub:idva").await;
    tokio::time::sleep(Duration::from_secs(31)).await;
    // A token with the new key makes the service fetch the keys again...
    assert!(oidc.verify_access_token(&new_token).await.is_ok());
    // ...and the old key's token, accepted twice before, is refused: nothing it was accepted
    // with is remembered past the keys that accepted it.
    assert_eq!(refused(oidc.verify_access_token(&old_token).await), "unknown_key");
}

// --- browser login ----------------------------------------------------------------------

#[tokio::test]
async fn browser_login_with_pkce_yields_the_accounts_agency_and_roles() {
    let provider = Provider::start(&provider_config);
    let oidc = provider.oidc("urn:hub:idva", "idva-console", None).await;
    let (url, _) = oidc.begin_login();
    let url = Url::parse(&url).unwrap();
    assert_eq!(query(&url, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(query(&url, "scope").as_deref(), Some("openid"));

    let (code, pending) = callback_code(&oidc, "alice").await;
    let identity = oidc.finish_login(&code, &pending).await.unwrap();
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.agency.as_deref(), Some("idva"));
    assert_eq!(identity.roles, strings(&["caseworker", "manager"]));
    assert!(identity.expires_at_ms > now() * 1000);
}

#[tokio::test]
async fn browser_login_of_a_confidential_client() {
    let provider = Provider::start(&provider_config);
    let oidc = provider.oidc("urn:hub:housing", "housing-console", Some(CONSOLE_SECRET)).await;
    let (code, pending) = callback_code(&oidc, "bob").await;
    let identity = oidc.finish_login(&code, &pending).await.unwrap();
    assert_eq!((identity.subject.as_str(), identity.agency.as_deref()), ("bob", Some("housing")));
    assert_eq!(identity.roles, strings(&["officer"]), "a single role sent as a string");

    let wrong_secret = provider.oidc("urn:hub:housing", "housing-console", Some("not-the-secret")).await;
    let (code, pending) = callback_code(&wrong_secret, "bob").await;
    assert_eq!(refused(wrong_secret.finish_login(&code, &pending).await), "code_rejected");
}

#[tokio::test]
async fn a_reused_code_is_refused() {
    let provider = Provider::start(&provider_config);
    let oidc = provider.oidc("urn:hub:idva", "idva-console", None).await;
    let (code, pending) = callback_code(&oidc, "alice").await;
    oidc.finish_login(&code, &pending).await.unwrap();
    assert_eq!(refused(oidc.finish_login(&code, &pending).await), "code_rejected");
}

#[tokio::test]
async fn a_wrong_nonce_or_verifier_is_refused() {
    let provider = Provider::start(&provider_config);
    let oidc = provider.oidc("urn:hub:idva", "idva-console", None).await;

    let (code, pending) = callback_code(&oidc, "alice").await;
    let other_nonce = PendingLogin { nonce: oidc.begin_login().1.nonce, ..pending };
    assert_eq!(refused(oidc.finish_login(&code, &other_nonce).await), "wrong_nonce");

    // PKCE: a stolen code is useless without the verifier of the login that asked for it.
    let (code, pending) = callback_code(&oidc, "alice").await;
    let other_verifier = PendingLogin { verifier: oidc.begin_login().1.verifier, ..pending };
    assert_eq!(refused(oidc.finish_login(&code, &other_verifier).await), "code_rejected");
}
