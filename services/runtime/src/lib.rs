//! What every agency service shares: start-up, storage, transport, the outbox and inbox
//! loops and the generic HTTP API.
//!
//! - [`config`]: one typed config from environment variables, with defaults that make the
//!   embedded mode (SQLite file, local nats-server) work with no settings.
//! - [`db`]: sqlx `Any` pools, so one code path serves SQLite and PostgreSQL; migrations.
//! - [`transport`]: the JetStream stream (deny delete, deny purge), subjects, consumers.
//! - [`outbox`]: sends are written to the outbox in the same transaction as the case change;
//!   the publisher drains it with the envelope id as the JetStream message id.
//! - [`inbox`]: the durable consumer loop: open with the isp, store or quarantine, then ack.
//! - [`api`]: the HTTP JSON API every service has (send, sent, inbox, acknowledge).
//! - [`policy_watch`]: takes up a newly signed policy or directory found on disk, refusing
//!   what the IG office did not sign or what is older than the version in force.
//! - [`partnership_feed`]: brings the IG office's signed directory and policy from the
//!   broker's `hub-partnership` bucket to disk, checked before anything is written.
//! - [`consent`]: consent records in the partnership's `hub-consent` bucket: record, read,
//!   withdraw; looked up before every send, again before publishing, and on receipt.
//! - [`telemetry`]: tracing set-up. Spans carry ids and kinds, never payload content.
//! - [`metrics`]: `GET /metrics` for Prometheus: counters where things happen, gauges read
//!   at scrape time; labels from small fixed sets only.
//! - [`serve`]: the HTTP server, with limits on slow and large clients (header and request
//!   timeouts, connection and concurrency caps, a body limit the broker can carry).
//!
//! A service is an [`Agency`]: its own migrations, what it does with each opened envelope
//! (one `match` on the kind) and its own routes. [`start`] runs it.

pub mod agency;
pub mod api;
pub mod assessments;
pub mod auth;
pub mod chronology;
pub mod codes;
pub mod config;
pub mod consent;
pub mod consent_read;
pub mod console;
pub mod ctx;
pub mod db;
pub mod deadlines;
pub mod error;
pub mod flags;
pub mod guard;
pub mod idempotency;
pub mod inbox;
pub mod metrics;
pub mod oidc;
pub mod openapi;
pub mod outbox;
pub mod partnership_feed;
pub mod policy_watch;
pub mod query;
pub mod receipts;
pub mod send;
pub mod sent;
pub mod serve;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod witness;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use tokio::{sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use agency::{Agency, ArrivalRows, Plain};
pub use ctx::Ctx;
pub use db::{Migration, Tx};
pub use outbox::{SendError, SendOutcome};

/// Every migration a service of `agency` applies at start: the runtime's tables, then the
/// agency's own. An upgrade test compares a database's applied versions with these.
pub fn migrations<A: Agency>(agency: &A) -> Vec<Migration> {
    let mut migrations = db::runtime_migrations();
    migrations.extend(policy_watch::migrations());
    migrations.extend(outbox::migrations());
    migrations.extend(witness::migrations());
    migrations.extend(auth::local::migrations());
    migrations.extend(deadlines::migrations());
    migrations.extend(chronology::migrations());
    migrations.extend(flags::migrations());
    migrations.extend(assessments::migrations());
    migrations.extend(agency.migrations());
    migrations
}

/// A started service.
pub struct Running {
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
    /// Ends when the service stops; aborting it stops every loop of the service at once
    /// (what a crash looks like to the rest of the partnership).
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Connects, migrates, binds the HTTP port and starts the publisher, the consumer and the
/// API. Returns once the service is ready to take requests.
pub async fn start<A: Agency>(config: Config, agency: A, shutdown: CancellationToken) -> anyhow::Result<Running> {
    config::check_listen(&config.http_addr, config.tls.is_some()).await?;
    let tls = config.tls.as_ref().map(tls::TlsFiles::acceptor).transpose().context("loading the TLS certificate")?;
    let (isp, signatures) = config.load_isp_signed().context("loading the partnership material")?;
    let isp = Arc::new(isp);
    let pool = db::connect(&config.database_url).await?;
    db::migrate(&pool, migrations(&agency)).await?;
    policy_watch::take_up_at_start(&pool, &config, &signatures).await.context("loading the partnership material")?;
    let client = transport::connect(&config.nats_url, isp.agency(), &config.broker).await?;
    let jetstream = async_nats::jetstream::new(client);
    let consent_stream = transport::bind_consent_stream(&jetstream).await?;
    let (sends, pending) = tokio::sync::mpsc::channel(1024);
    let ctx = Ctx {
        pool,
        reads: db::InPlace::for_url(&config.database_url),
        isp_cell: Arc::new(arc_swap::ArcSwap::new(isp)),
        jetstream,
        consent_stream,
        config: Arc::new(config),
        outbox_ready: Arc::new(Notify::new()),
        sends,
        files_refused: Default::default(),
        metrics: Arc::new(metrics::Metrics::new()),
    };
    let agency = Arc::new(agency);
    let mut gate = auth::Gate::new(ctx.agency(), ctx.pool.clone(), &[auth::GENERIC, console::pages::RULES, console::casework::RULES, agency.rules()], Arc::new(auth::access::Outboxed(ctx.clone())));
    if let Some(oidc) = &ctx.config.oidc {
        gate.oidc = Some(oidc::Oidc::discover(oidc.clone()).await.context("reaching the identity provider (HUB_OIDC_ISSUER)")?);
    }
    let title = ctx.isp().directory.get(ctx.agency()).map(|a| a.name.clone()).unwrap_or_else(|| ctx.agency().to_owned());
    let nav = console::pages::NAV.iter().chain(console::casework::NAV).chain(agency.nav()).copied().collect();
    let routes = agency
        .routes()
        .merge(witness::routes())
        .merge(deadlines::routes())
        .merge(chronology::routes())
        .merge(flags::routes())
        .merge(assessments::routes())
        .merge(console::pages::routes())
        .merge(console::casework::routes());
    let router = guard::protect(api::router(routes).with_state(ctx.clone()), gate, &title, nav)
        .route_layer(axum::middleware::from_fn_with_state(ctx.metrics.clone(), metrics::track));
    let listener = tokio::net::TcpListener::bind(&ctx.config.http_addr)
        .await
        .with_context(|| format!("binding the HTTP API to {}", ctx.config.http_addr))?;
    let addr = listener.local_addr()?;
    let consumer = transport::bind_agency_consumer(&ctx.jetstream, ctx.agency()).await?;
    let limits = ctx.config.http_limits.fit_broker(ctx.jetstream.client().server_info().max_payload);
    tracing::info!(agency = ctx.agency(), %addr, "service started");

    let task = tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(outbox::send_loop(ctx.clone(), pending, shutdown.clone()));
        tasks.spawn(outbox::publish_loop(ctx.clone(), shutdown.clone()));
        tasks.spawn(witness::watch_loop(ctx.clone(), shutdown.clone()));
        tasks.spawn(policy_watch::watch_loop(ctx.clone(), shutdown.clone()));
        tasks.spawn(partnership_feed::follow_loop(partnership_feed::Follower::of_agency(&ctx), shutdown.clone()));
        tasks.spawn(consent::republish_loop(ctx.clone(), shutdown.clone()));
        tasks.spawn(agency::tick_loop(ctx.clone(), agency.clone(), shutdown.clone()));
        tasks.spawn(inbox::consume_loop(ctx.clone(), consumer, agency, shutdown.clone()));
        tasks.spawn(serve::serve(listener, router, limits, tls, shutdown.clone()));
        let mut result = Ok(());
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Err(e)) | Err(e) = joined.map_err(anyhow::Error::from) {
                tracing::error!(error = %e, "service task ended with an error");
                shutdown.cancel();
                result = Err(e);
            }
        }
        result
    });
    Ok(Running { addr, task })
}
