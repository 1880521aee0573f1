//! `hub serve`: one service of a partnership as its own process, as an agency runs it in
//! production and as `hub bench` and the crash tests run every service.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::{local, partnership};

/// `hub serve`: one service of a partnership as its own process (what `hub bench` runs, and
/// what an agency runs in production). Prints `listening http://ADDR` once ready; stops on
/// SIGTERM or Ctrl-C. Reads `NATS_URL` (required), `DATABASE_URL` and `DATABASE_PREFIX`,
/// `HUB_NATS_NKEY_FILE` and `HUB_NATS_CA` (default: the files in `DATA/broker/`),
/// `HUB_OIDC_*` (the identity provider, see `runtime::oidc`), the HTTP limits (`HUB_HTTP_*`,
/// see `runtime::config`) and, for `audit`, `HUB_CHECKPOINT_SECS` (how often a checkpoint is
/// signed; default 5).
pub async fn serve_one(agency: &str, data: PathBuf) -> anyhow::Result<()> {
    let options = local::Options {
        data: data.clone(),
        database_url: std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty()),
        database_prefix: std::env::var("DATABASE_PREFIX").ok().filter(|v| !v.is_empty()),
        ..Default::default()
    };
    // NATS_URL, else the broker's address `hub agency join` kept.
    let nats_url = match std::env::var("NATS_URL").ok().filter(|v| !v.is_empty()) {
        Some(url) => url,
        None => std::fs::read_to_string(crate::membership::broker_url_path(&data))
            .map(|s| s.trim().to_owned())
            .context("hub serve needs NATS_URL (or DATA/broker/url, which `hub agency join` writes)")?,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    // Every setting of the environment (TLS, HTTP address and limits, identity provider,
    // broker credentials, clock skew...) as the services read it; the database as `hub up`
    // names it (DATABASE_URL a server, DATABASE_PREFIX the names' prefix).
    let (running, tls) = if agency == "audit" {
        audit::malloc::tune();
        let mut config = audit::Config::from_env_at(&data, &nats_url)?;
        config.database_url = local::database_url(&options, "audit").await?;
        let tls = config.tls.is_some();
        (audit::start(config, shutdown.clone()).await?, tls)
    } else {
        let directory = isp::Directory::load(&partnership::directory_path(&data))?;
        let role = directory.require(agency)?.role;
        let mut config = runtime::Config::from_env_at(&data, agency, &nats_url)?;
        config.database_url = local::database_url(&options, agency).await?;
        let tls = config.tls.is_some();
        (local::start_agency(role, config, shutdown.clone()).await?, tls)
    };
    let scheme = if tls { "https" } else { "http" };
    println!("listening {scheme}://{}", running.addr);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = running.task => { r??; }
    }
    shutdown.cancel();
    Ok(())
}

