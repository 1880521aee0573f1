//! Staff of an agency log in through the partnership's identity provider (a real
//! oidc-provider): a case-management system with a bearer access token, a person in a
//! browser with the authorization code flow and PKCE. Tokens and logins for another agency,
//! or that do not verify, are refused and recorded.

use std::time::Duration;

use serde_json::{Value, json};
use tests::{Backend, Partnership, oidc::{CMS_SECRET, Provider, log_in_to}};

const IDVA: &str = "idva-northbridge";

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn staff_log_in_through_the_identity_provider_with_a_token_or_in_a_browser() -> anyhow::Result<()> {
    let mut p = Partnership::start(Backend::Sqlite).await?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let callback = format!("{base}/login/oidc/callback");
    let redirect = callback.clone();
    let provider = Provider::start(&move |keys| {
        let cms = |id: &str, agency: &str, resource: &str| {
            json!({"client_id": id, "client_secret": CMS_SECRET, "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [],
                "hub_agency": agency, "hub_roles": ["caseworker"], "hub_resources": [resource]})
        };
        json!({
            "keys": keys,
            "resources": {"urn:hub:idva-northbridge": {"alg": "RS256"}, "urn:hub:housing-northbridge": {"alg": "RS256"}},
            "clients": [
                cms("idva-cms", IDVA, "urn:hub:idva-northbridge"),
                cms("housing-cms", "housing-northbridge", "urn:hub:housing-northbridge"),
                {"client_id": "idva-console", "token_endpoint_auth_method": "none", "redirect_uris": [redirect], "id_token_signed_response_alg": "ES256"},
            ],
            "accounts": {
                "alice.idva": {"hub_agency": IDVA, "hub_roles": ["caseworker", "not-a-hub-role"]},
                "mallory": {"hub_agency": "housing-northbridge", "hub_roles": ["caseworker"]},
            },
        })
    });

    // The IDVA's service, configured for the provider, on the port its redirect URI names.
    p.hub.kill(IDVA).await;
    let mut config = runtime::Config::embedded(p.data(), IDVA, &p.hub.nats_url);
    config.database_url = p.database_url(IDVA).await?;
    config.http_addr = format!("127.0.0.1:{port}");
    config.oidc = Some(runtime::oidc::OidcConfig {
        issuer: provider.issuer.clone(),
        audience: "urn:hub:idva-northbridge".into(),
        client_id: "idva-console".into(),
        client_secret: None,
        redirect_uri: callback.clone(),
        roles_claim: "hub_roles".into(),
        agency_claim: "hub_agency".into(),
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _running = runtime::start(config, idva::Idva, shutdown.clone()).await?;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let status = |r: reqwest::Response| r.status().as_u16();

    // A case-management system with a bearer access token of the IDVA.
    let token = provider.client_credentials("idva-cms", "urn:hub:idva-northbridge").await;
    assert_eq!(status(http.get(format!("{base}/inbox")).bearer_auth(&token).send().await?), 200);
    // No cookie, so no CSRF token: a POST goes to the handler (which finds the body wanting).
    let r = http.post(format!("{base}/consents")).bearer_auth(&token).json(&json!({})).send().await?;
    assert_eq!(status(r), 400);
    // A token for housing, a tampered one, and a malformed header: refused.
    let housing = provider.client_credentials("housing-cms", "urn:hub:housing-northbridge").await;
    let tampered = format!("{}x", &token[..token.len() - 1]);
    for bad in [format!("Bearer {housing}"), format!("Bearer {tampered}"), format!("Basic {token}")] {
        let r = http.get(format!("{base}/inbox")).header("authorization", bad).send().await?;
        let (code, v): (u16, Value) = (r.status().as_u16(), r.json().await?);
        assert_eq!((code, v["error"].as_str()), (401, Some("unauthenticated")), "{v}");
        assert!(!v.to_string().contains(&token[..20]), "the answer echoes the token");
    }

    // A person in a browser: to the provider and back, with PKCE; a session starts.
    let r = http.get(format!("{base}/login/oidc")).send().await?;
    assert_eq!(r.status().as_u16(), 303);
    let to_provider = r.headers()["location"].to_str()?.to_owned();
    assert!(to_provider.starts_with(&provider.issuer) && to_provider.contains("code_challenge_method=S256"), "{to_provider}");
    let back = log_in_to(&to_provider, "alice.idva", &callback).await;
    let r = http.get(back.as_str()).send().await?;
    let cookie = r.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
    let session: Value = r.json().await?;
    assert_eq!((session["staff_id"].as_str(), &session["roles"]), (Some("alice.idva"), &json!(["caseworker"])), "{session}");
    let cookie = cookie.expect("a session cookie").split(';').next().unwrap().to_owned();
    assert_eq!(status(http.get(format!("{base}/inbox")).header("cookie", &cookie).send().await?), 200);
    // The callback works once.
    let again = http.get(back.as_str()).send().await?;
    assert_eq!(again.status().as_u16(), 401);

    // Someone the provider knows as housing staff is not the IDVA's.
    let r = http.get(format!("{base}/login/oidc")).send().await?;
    let back = log_in_to(r.headers()["location"].to_str()?, "mallory", &callback).await;
    let r = http.get(back.as_str()).send().await?;
    let (code, v): (u16, Value) = (r.status().as_u16(), r.json().await?);
    assert_eq!((code, v["error"].as_str()), (401, Some("login_failed")), "{v}");

    // Both logins and the refusals are in the IDVA's access log.
    // A caseworker's token may not read it; the IDVA's IG lead may.
    assert_eq!(status(http.get(format!("{base}/access-log")).bearer_auth(&token).send().await?), 403);
    let admin_log = tests::eventually("the access log", Duration::from_secs(10), || async {
        let v: Value = p.logins.as_role(IDVA, &base, tests::Role::IgLead).await?.get(format!("{base}/access-log?limit=1000")).send().await?.json().await?;
        Ok(v.as_array().cloned())
    })
    .await?;
    let seen: Vec<(String, String)> = admin_log.iter().map(|e| (e["staff_id"].as_str().unwrap_or_default().to_owned(), e["outcome"].as_str().unwrap_or_default().to_owned())).collect();
    assert!(seen.contains(&("alice.idva".into(), "login".into())), "{seen:?}");
    assert!(seen.iter().filter(|(s, o)| s.is_empty() && o == "unauthenticated").count() >= 3, "{seen:?}");
    assert!(seen.contains(&(String::new(), "login_failed".into())), "{seen:?}");
    shutdown.cancel();
    Ok(())
}
