//! A service listens beyond loopback only with TLS: without a certificate it refuses to start
//! and says why; with one (rustls) it answers https and nothing else.

use tests::{Backend, Partnership};

const IDVA: &str = "idva-northbridge";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beyond_loopback_a_service_speaks_tls_or_does_not_start() -> anyhow::Result<()> {
    let mut p = Partnership::start(Backend::Sqlite).await?;
    p.hub.kill(IDVA).await;
    let mut config = runtime::Config::embedded(p.data(), IDVA, &p.hub.nats_url);
    config.database_url = p.database_url(IDVA).await?;
    config.http_addr = "0.0.0.0:0".into();

    // No certificate: refused, saying what to do.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let refused = runtime::start(config.clone(), idva::Idva, shutdown.clone()).await.map(|_| ()).unwrap_err();
    let why = format!("{refused:#}");
    assert!(why.contains("loopback only") && why.contains("HUB_TLS_CERT"), "{why}");

    // A certificate: https answers, plain http does not.
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let dir = tempfile::tempdir()?;
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem())?;
    std::fs::write(&key, certified.key_pair.serialize_pem())?;
    config.tls = Some(runtime::tls::TlsFiles { cert, key });
    let running = runtime::start(config, idva::Idva, shutdown.clone()).await?;
    let port = running.addr.port();
    let https = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(certified.cert.pem().as_bytes())?).build()?;
    let health: serde_json::Value = https.get(format!("https://127.0.0.1:{port}/health")).send().await?.json().await?;
    assert_eq!(health["agency"], IDVA);
    let answer = https.get(format!("https://127.0.0.1:{port}/inbox")).send().await?;
    assert_eq!(answer.status().as_u16(), 401, "the login is still required over TLS");
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/health")).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plain HTTP was answered on the TLS port");
    shutdown.cancel();
    Ok(())
}
