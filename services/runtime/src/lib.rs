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

pub mod api;
pub mod assessments;
pub mod auth;
pub mod chronology;
pub mod codes;
pub mod config;
pub mod consent;
pub mod console;
pub mod db;
pub mod deadlines;
pub mod error;
pub mod idempotency;
pub mod inbox;
pub mod metrics;
pub mod oidc;
pub mod openapi;
pub mod outbox;
pub mod partnership_feed;
pub mod policy_watch;
pub mod receipts;
pub mod serve;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod witness;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use isp::{Isp, Opened};
use tokio::{sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use db::{Migration, Tx};
pub use outbox::{SendError, SendOutcome};

/// The shared state of a running service, passed to every handler.
#[derive(Clone)]
pub struct Ctx {
    pub pool: sqlx::AnyPool,
    /// The protocol in force: swapped whole when the IG lead's newly signed policy arrives
    /// (see [`policy_watch`]); read it with [`Ctx::isp`].
    pub isp_cell: Arc<arc_swap::ArcSwap<Isp>>,
    pub jetstream: async_nats::jetstream::Context,
    /// The stream of the partnership's consent bucket (direct reads of a key's history).
    pub consent_stream: async_nats::jetstream::stream::Stream<()>,
    pub config: Arc<Config>,
    /// Wakes the outbox publisher after a commit.
    pub outbox_ready: Arc<Notify>,
    /// Sends waiting to be sealed and queued together ([`Ctx::send`]).
    sends: tokio::sync::mpsc::Sender<outbox::Pending>,
    /// Why the partnership files last found on disk were refused, while the service keeps
    /// running on the last good ones (None once an acceptable set is in force); shown by
    /// `GET /health` so an operator sees a bad policy or directory at every service.
    pub files_refused: Arc<arc_swap::ArcSwapOption<policy_watch::Refusal>>,
    /// What `GET /metrics` reports ([`metrics`]).
    pub metrics: Arc<metrics::Metrics>,
}

impl Ctx {
    pub fn agency(&self) -> &str {
        &self.config.agency
    }

    /// Free text or answers sealed to this agency's own key, for a database column that keeps
    /// what never leaves the agency (see [`isp::AgencyKeys::seal_at_rest`]).
    pub fn seal_at_rest(&self, text: &str) -> Result<String, isp::IspError> {
        self.isp().keys.seal_at_rest(text)
    }

    /// The protocol in force now (keys, directory, policy, schema).
    pub fn isp(&self) -> Arc<Isp> {
        self.isp_cell.load_full()
    }
}

/// Runs `f` over `items` on the blocking pool, split into as many parts as the machine has
/// cores, results in order: the crypto of a batch (opening what arrived, sealing receipts
/// and sends) uses every core, and never holds up the async workers. A single item runs
/// where it is.
pub(crate) async fn on_cores<T, R, F>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
{
    if items.len() < 2 {
        return items.into_iter().map(f).collect();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let f = Arc::new(f);
    let per_part = items.len().div_ceil(cores);
    let mut items = items.into_iter();
    let mut parts = Vec::with_capacity(cores);
    loop {
        let part: Vec<T> = items.by_ref().take(per_part).collect();
        if part.is_empty() {
            break;
        }
        let f = f.clone();
        parts.push(tokio::task::spawn_blocking(move || part.into_iter().map(|t| f(t)).collect::<Vec<R>>()));
    }
    let mut results = Vec::new();
    for part in parts {
        match part.await {
            Ok(r) => results.extend(r),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    results
}

/// What makes a service one agency's service rather than another's.
pub trait Agency: Send + Sync + 'static {
    /// Migrations of the service's own tables (versions 100 and up; the runtime uses 1-99).
    fn migrations(&self) -> Vec<Migration> {
        Vec::new()
    }

    /// Domain work for an envelope that passed every check, inside the transaction that
    /// stores it in the inbox: it commits, or nothing does and the message is redelivered.
    fn on_receive(&self, ctx: &Ctx, tx: &mut Tx, opened: &Opened) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Domain work for envelopes stored together in one inbox transaction, in stream order:
    /// by default [`Agency::on_receive`] for each. A service whose work is rows of its own
    /// overrides it to write a batch's rows in one statement per table; the deadlines and
    /// chronology entries it adds to `rows` are written with the inbox's own, in one
    /// statement each, after it returns (in the same transaction). Before handling anything
    /// that may meet or cancel a deadline, it calls `rows.flush(tx)`.
    fn on_receive_batch(&self, ctx: &Ctx, tx: &mut Tx, opened: &[&Opened], rows: &mut ArrivalRows) -> impl Future<Output = anyhow::Result<()>> + Send {
        async move {
            // What this service does per envelope may meet or cancel what arrived before it.
            rows.flush(tx).await?;
            for o in opened {
                self.on_receive(ctx, tx, o).await?;
            }
            Ok(())
        }
    }

    /// The service's own HTTP routes, merged with the generic API.
    fn routes(&self) -> axum::Router<Ctx> {
        axum::Router::new()
    }

    /// Who may call each of [`Agency::routes`]: a route without a rule answers nobody.
    fn rules(&self) -> &'static [auth::Rule] {
        &[]
    }

    /// The service's own console pages (among [`Agency::routes`]) for the navigation, after
    /// the pages every agency has ([`console::pages::NAV`]).
    fn nav(&self) -> &'static [console::Nav] {
        &[]
    }

    /// Periodic work of the service's own, run after each look for missed deadlines
    /// ([`deadlines::watch_loop`]): e.g. an IDVA service checking the consent its open cases
    /// rely on still holds.
    fn on_tick(&self, ctx: &Ctx) -> impl Future<Output = anyhow::Result<()>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }
}

/// Rows that arrivals start, gathered over an inbox transaction and written together.
#[derive(Debug, Default)]
pub struct ArrivalRows {
    pub deadlines: Vec<deadlines::Deadline>,
    pub chronology: Vec<chronology::Entry>,
}

impl ArrivalRows {
    /// Writes what is gathered so far (one statement per table) and empties it. Called before
    /// anything in the transaction that may meet or cancel those deadlines (a revocation in
    /// the same batch as the referral it revokes), and at the end.
    pub async fn flush(&mut self, tx: &mut Tx) -> sqlx::Result<()> {
        deadlines::set_many(tx, &std::mem::take(&mut self.deadlines)).await?;
        chronology::add_many(tx, &std::mem::take(&mut self.chronology)).await
    }
}

/// An agency with no domain behaviour beyond the generic inbox (used where a partnership
/// runs an agency of a role that has no service crate, and in tests).
pub struct Plain;

impl Agency for Plain {
    async fn on_receive(&self, _: &Ctx, _: &mut Tx, _: &Opened) -> anyhow::Result<()> {
        Ok(())
    }
}

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
        .merge(assessments::routes())
        .merge(console::pages::routes())
        .merge(console::casework::routes());
    let router = auth::protect(api::router(routes).with_state(ctx.clone()), gate, &title, nav)
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
        tasks.spawn(deadlines::watch_loop(ctx.clone(), agency.clone(), shutdown.clone()));
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
