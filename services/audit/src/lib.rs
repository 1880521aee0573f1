//! The audit service: materialises every message on the stream (disclosures, near misses,
//! refusals on receipt) into the hash-chained disclosure [`ledger`], which IG leads query and
//! verify. It holds no keys that open payloads: it proves what was shared without holding
//! what was shared.
//!
//! Consumes: everything on the `HUB` stream through the durable consumer `audit`, in batches;
//! a batch is appended in one transaction, then acked (see [`intake`]: each signed envelope or
//! event counts once, copies are replays or misroutes, unverifiable messages are aggregated,
//! gaps and resets of the stream are recorded). Serves: `GET /ledger`,
//! `GET /ledger?subject_ref=...`, `GET /verify` (with the stream's gaps and resets as
//! alerts), `GET /health`, `GET /metrics` (for Prometheus). Follows the IG office's signed
//! directory and policy in the `hub-partnership` bucket ([`runtime::partnership_feed`]).

pub mod checkpoints;
pub mod console;
pub mod intake;
pub mod ledger;
pub mod malloc;
mod metrics;
pub mod query;
pub mod report;
pub mod store;
pub mod subject_access;
pub mod tree;
pub mod verify;

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream::AckKind;
use axum::{Json, Router, extract::{Query, State}, routing::get};
use futures::StreamExt;
use isp::Directory;
use runtime::{
    Migration,
    api::ApiError,
    auth::{Allow, Role, Rule, content, logged, rule},
    db, transport,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::AnyPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The audit service's name towards the broker: its credentials file is `audit.nk`.
pub const AUDIT_IDENTITY: &str = "audit";

/// The audit service's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub nats_url: String,
    pub http_addr: String,
    pub directory_path: std::path::PathBuf,
    /// Where the agencies' key files are; the audit service reads the `ig` agency's to sign
    /// checkpoints.
    pub keys_dir: std::path::PathBuf,
    /// How often a checkpoint is signed while entries arrive.
    pub checkpoint_every: Duration,
    /// The partnership's identity provider, when the IG office's staff log in through it.
    pub oidc: Option<runtime::oidc::OidcConfig>,
    /// How the HTTP API meets slow and large clients.
    pub http_limits: runtime::serve::Limits,
    /// The certificate the API is served with; required to listen beyond loopback.
    pub tls: Option<runtime::tls::TlsFiles>,
    /// The audit service's broker credentials (identity `audit`) and the broker's CA.
    pub broker: transport::BrokerAuth,
}

impl Config {
    pub fn embedded(data: &Path, nats_url: &str) -> Config {
        Config {
            database_url: runtime::config::sqlite_url(data, "audit"),
            nats_url: nats_url.to_owned(),
            http_addr: "127.0.0.1:0".into(),
            directory_path: runtime::config::partnership_dir(data).join("directory.toml"),
            keys_dir: data.join("keys"),
            checkpoint_every: Duration::from_secs(5),
            oidc: None,
            http_limits: Default::default(),
            tls: None,
            broker: transport::BrokerAuth::embedded(data, AUDIT_IDENTITY),
        }
    }

    /// From `HUB_DATA`, `DATABASE_URL`, `NATS_URL`, `HUB_HTTP_ADDR`, `HUB_DIRECTORY`,
    /// `HUB_KEYS_DIR`, `HUB_CHECKPOINT_SECS` and the HTTP limits (`HUB_HTTP_*`, see
    /// `runtime::config`).
    pub fn from_env() -> anyhow::Result<Config> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let data = std::path::PathBuf::from(var("HUB_DATA").unwrap_or_else(|| "hub-data".into()));
        Config::from_env_at(&data, &var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()))
    }

    /// The embedded layout of `data` on the broker at `nats_url`, with every other setting
    /// the environment gives (what `hub serve --agency audit` runs with).
    pub fn from_env_at(data: &std::path::Path, nats_url: &str) -> anyhow::Result<Config> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut c = Config::embedded(data, nats_url);
        if let Some(v) = var("DATABASE_URL") {
            c.database_url = v;
        }
        if let Some(v) = var("HUB_HTTP_ADDR") {
            c.http_addr = v;
        }
        if let Some(v) = var("HUB_DIRECTORY") {
            c.directory_path = v.into();
        }
        if let Some(v) = var("HUB_KEYS_DIR") {
            c.keys_dir = v.into();
        }
        if let Some(v) = var("HUB_CHECKPOINT_SECS") {
            c.checkpoint_every = Duration::from_secs(v.parse().context("HUB_CHECKPOINT_SECS must be a whole number of seconds")?);
        }
        c.oidc = runtime::oidc::OidcConfig::from_env()?;
        c.http_limits = runtime::serve::Limits::from_env()?;
        c.tls = runtime::tls::TlsFiles::from_env()?;
        c.broker = transport::BrokerAuth::from_env(data, AUDIT_IDENTITY);
        Ok(c)
    }
}

pub fn migrations() -> Vec<Migration> {
    vec![
        Migration { version: 100, description: "ledger", sql: include_str!("../migrations/0100_ledger.sql") },
        Migration { version: 101, description: "merkle", sql: include_str!("../migrations/0101_merkle.sql") },
        Migration { version: 102, description: "ledger staff", sql: include_str!("../migrations/0102_staff.sql") },
        Migration { version: 103, description: "ledger stream position", sql: include_str!("../migrations/0103_stream_position.sql") },
    ]
    .into_iter()
    .chain(runtime::auth::local::migrations())
    // The highest directory sequence it ran, so an old directory put back while it was down
    // is refused at start.
    .chain(runtime::policy_watch::migrations())
    .collect()
}

/// Opens (and migrates) the ledger database, as the `Any` pool the service's reads and its
/// other tables use; the ledger's own rows are written through [`store::Store`].
pub async fn open_ledger(database_url: &str) -> anyhow::Result<AnyPool> {
    let pool = db::connect(database_url).await?;
    db::migrate(&pool, migrations()).await?;
    let store = store::Store::connect(database_url).await?;
    let built = store.backfill_tree().await?;
    if built > 0 {
        tracing::info!(leaves = built, "Merkle tree built for entries recorded before it existed");
    }
    store.close().await;
    Ok(pool)
}

/// Takes up a signed directory update (an agency rotated its keys), so envelopes signed with
/// new keys verify; refuses anything the IG key in force did not sign, and any directory older
/// than the one in force (a lower sequence, or the same with another text: an old directory
/// put back would bring retired keys back). Why it last refused is in `refused` (`GET /health`).
async fn watch_directory(
    pool: AnyPool,
    cell: Arc<arc_swap::ArcSwap<Directory>>,
    path: std::path::PathBuf,
    refused: Arc<arc_swap::ArcSwapOption<runtime::config::FilesRefused>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let read = || (std::fs::read(&path).ok(), std::fs::read(runtime::config::signature_path(&path)).ok());
    let mut seen = read();
    // The sequence of the directory in force: that of the file it was loaded from.
    let mut in_force = match runtime::config::load_signed_directory(&path, Some(&cell.load())) {
        Ok((d, _, sig)) if d.digest() == cell.load().digest() => (sig.sequence, sig.sha256),
        _ => (0, String::new()),
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        let now = read();
        if now == seen {
            continue;
        }
        seen = now;
        let loaded = runtime::config::load_signed_directory(&path, Some(&cell.load())).and_then(|(d, text, sig)| {
            isp::signed::check_not_older("directory", in_force.0, &in_force.1, &sig).with_context(|| format!("refusing the directory {}", path.display()))?;
            Ok((d, text, sig))
        });
        match loaded {
            Ok((d, _, sig)) => {
                tracing::info!(sequence = sig.sequence, "signed directory update in force");
                if let Err(e) = runtime::policy_watch::record(&pool, "directory", &sig).await {
                    tracing::error!(error = %e, "could not remember the directory's sequence; it is in force until the service restarts");
                }
                in_force = (sig.sequence, sig.sha256);
                cell.store(Arc::new(d));
                refused.store(None);
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "the directory on disk is not acceptable; keeping the last good one");
                refused.store(Some(Arc::new(runtime::config::FilesRefused { reason: e.root_cause().to_string(), at_ms: isp::now_ms() })));
            }
        }
    }
}

#[derive(Clone)]
struct Ctx {
    pool: AnyPool,
    /// The ledger's own tables, on the engine's own driver (appends and verification).
    store: store::Store,
    /// The directory in force; a signed update is swapped in whole (see `watch_directory`).
    directory: Arc<arc_swap::ArcSwap<Directory>>,
    /// Why the directory last found on disk was refused (None once one is taken up).
    files_refused: Arc<arc_swap::ArcSwapOption<runtime::config::FilesRefused>>,
    /// The IG office's keys (its subject-ref key makes a person's reference for subject access).
    ig_keys: Option<Arc<isp::AgencyKeys>>,
    /// The partnership's policy file (which roles hold the subject-ref key).
    policy_path: std::path::PathBuf,
    /// Its broker connection (whether it is up, for `GET /ready`).
    broker: async_nats::Client,
    /// Values of the partnership bucket it refused (`GET /metrics`).
    feed_refused: runtime::metrics::FeedRefusals,
}

pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<runtime::Running> {
    runtime::config::check_listen(&config.http_addr, config.tls.is_some()).await?;
    let tls = config.tls.as_ref().map(runtime::tls::TlsFiles::acceptor).transpose().context("loading the TLS certificate")?;
    let (directory, _, signature) = runtime::config::load_signed_directory(&config.directory_path, None)?;
    let directory = Arc::new(directory);
    let pool = open_ledger(&config.database_url).await?;
    let store = store::Store::connect(&config.database_url).await?;
    runtime::policy_watch::check_sequence(&pool, "directory", &config.directory_path, &signature).await?;
    runtime::policy_watch::record(&pool, "directory", &signature).await?;
    let client = transport::connect(&config.nats_url, AUDIT_IDENTITY, &config.broker).await?;
    let js = async_nats::jetstream::new(client);
    let consumer = transport::bind_audit_consumer(&js).await?;
    let ig = directory.with_role(isp::Role::Ig).next().map(|a| a.id.clone());
    let (signer, ig_keys) = match &ig {
        Some(id) => {
            let path = config.keys_dir.join(format!("{id}.toml"));
            let keys = isp::AgencyKeys::load(&path).with_context(|| format!("loading the checkpoint key of {id}"))?;
            (Some(path), Some(Arc::new(keys)))
        }
        None => {
            tracing::warn!("the directory has no ig agency: ledger checkpoints will not be signed");
            (None, None)
        }
    };
    let policy_path = config.directory_path.with_file_name("policy.toml");
    let ctx = Ctx {
        pool,
        store,
        directory: Arc::new(arc_swap::ArcSwap::new(directory)),
        files_refused: Default::default(),
        ig_keys,
        policy_path,
        broker: js.client(),
        feed_refused: Default::default(),
    };
    let follower = runtime::partnership_feed::Follower {
        js: js.clone(),
        pool: ctx.pool.clone(),
        directory_path: config.directory_path.clone(),
        policy_path: ctx.policy_path.clone(),
        in_force: runtime::partnership_feed::InForce::Audit(ctx.directory.clone()),
        schema: Arc::new(isp::Schema::load()?),
        refused: ctx.feed_refused.clone(),
    };
    let access = Arc::new(AccessLog { pool: ctx.pool.clone(), js: js.clone(), keys: ctx.ig_keys.clone() });
    // Its staff are the IG office's.
    let mut gate = runtime::auth::Gate::new(ig.as_deref().unwrap_or("audit"), ctx.pool.clone(), &[RULES, console::RULES], access);
    if let Some(oidc) = &config.oidc {
        gate.oidc = Some(runtime::oidc::Oidc::discover(oidc.clone()).await.context("reaching the identity provider (HUB_OIDC_ISSUER)")?);
    }
    let router = Router::new()
        .route("/health", get(|State(ctx): State<Ctx>| async move { Json(json!({"service": "audit", "directory": ctx.directory.load().digest(), "files_refused": ctx.files_refused.load().as_deref().cloned(), "status": "ok"})) }))
        .route("/ready", get(|State(ctx): State<Ctx>| async move { runtime::api::readiness(&ctx.pool, &ctx.broker).await }))
        .route("/metrics", get(|State(ctx): State<Ctx>| async move { metrics::render(&ctx.pool, &ctx.feed_refused).await }))
        .route("/ledger", get(ledger_entries))
        .route("/verify", get(verify))
        .route("/checkpoints", get(list_checkpoints))
        .route("/checkpoints/latest", get(latest_checkpoint))
        .route("/report", get(period_report))
        .route("/subject-access", axum::routing::post(subject_access_bundle))
        .route("/proof/inclusion", get(prove_inclusion))
        .route("/proof/consistency", get(prove_consistency))
        .merge(console::routes())
        .with_state(ctx.clone());
    let router = runtime::guard::protect(router, gate, "Information governance", console::nav());
    let listener = tokio::net::TcpListener::bind(&config.http_addr).await.with_context(|| format!("binding {}", config.http_addr))?;
    let addr = listener.local_addr()?;
    let limits = config.http_limits.fit_broker(js.client().server_info().max_payload);
    tracing::info!(%addr, "audit service started");
    let task = tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        if let Some(keys_path) = signer {
            tasks.spawn(checkpoints::checkpoint_loop(ctx.pool.clone(), js.clone(), keys_path, config.checkpoint_every, shutdown.clone()));
        }
        tasks.spawn(watch_directory(ctx.pool.clone(), ctx.directory.clone(), config.directory_path.clone(), ctx.files_refused.clone(), shutdown.clone()));
        // Brings the IG office's signed updates from the broker to disk, for watch_directory.
        tasks.spawn(runtime::partnership_feed::follow_loop(follower, shutdown.clone()));
        tasks.spawn(checkpoints::serve_consistency(js.client(), ctx.pool.clone(), shutdown.clone()));
        tasks.spawn(consume(ctx, js, consumer, shutdown.clone()));
        tasks.spawn(runtime::serve::serve(listener, router, limits, tls, shutdown.clone()));
        let mut result = Ok(());
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Err(e)) | Err(e) = joined.map_err(anyhow::Error::from) {
                tracing::error!(error = %e, "audit task ended with an error");
                shutdown.cancel();
                result = Err(e);
            }
        }
        result
    });
    Ok(runtime::Running { addr, task })
}

/// Who may read what of the audit service: the IG office's staff and auditors.
pub const RULES: &[Rule] = {
    const IG: &[Role] = &[Role::IgLead, Role::Auditor];
    &[
        logged("GET", "/ledger", Allow::Roles(IG)),
        rule("GET", "/verify", Allow::Roles(IG)),
        rule("GET", "/checkpoints", Allow::Roles(IG)),
        rule("GET", "/checkpoints/latest", Allow::Roles(IG)),
        content("GET", "/report", Allow::Roles(IG)),
        content("POST", "/subject-access", Allow::Roles(IG)),
        logged("GET", "/proof/inclusion", Allow::Roles(IG)),
        rule("GET", "/proof/consistency", Allow::Roles(IG)),
        logged("GET", "/access-log", Allow::Roles(IG)),
        rule("GET", "/metrics", Allow::Roles(IG)),
    ]
};

/// The audit service's own access log: a row in its database, and a signed `accessed`
/// event of the IG office published to the stream, so its own ledger records who read it.
/// With no broker the access is not recorded, so it is not served.
struct AccessLog {
    pool: AnyPool,
    js: async_nats::jetstream::Context,
    keys: Option<Arc<isp::AgencyKeys>>,
}

impl runtime::auth::AccessSink for AccessLog {
    fn record(&self, access: isp::access::Access, ledger: bool) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            let Some(keys) = self.keys.as_ref().filter(|_| ledger) else {
                let mut tx = self.pool.begin().await?;
                runtime::auth::access::insert(&mut tx, &uuid::Uuid::now_v7().to_string(), &access).await?;
                tx.commit().await?;
                return Ok(());
            };
            let (event, bytes) = isp::access::access_event(keys, "", &access);
            let subject = transport::event_subject(&keys.agency, proto::v1::EventKind::Accessed);
            let publish = async_nats::jetstream::message::PublishMessage::build().payload(bytes.into()).message_id(&event.event_id);
            tokio::time::timeout(Duration::from_secs(3), async { self.js.send_publish(subject, publish).await?.await.map(|_| ()).map_err(anyhow::Error::from) })
                .await
                .context("the broker did not confirm the access record in time")??;
            let mut tx = self.pool.begin().await?;
            runtime::auth::access::insert(&mut tx, &event.event_id, &access).await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

/// Pulls batches, places each (see [`intake`]) and commits it in one transaction, then acks
/// it. Survives the stream and its consumer vanishing and coming back (a broker that lost its
/// store, a stream recreated): the consumer is looked up again by name after any failure
/// (the administrator makes it; the audit service may not).
///
/// A batch commits while the next is fetched and classified: the ledger's writes (one
/// thread) and the signature checks (every core) overlap instead of taking turns. Batches
/// are still placed one after the other: each is planned from the intake its predecessor
/// committed. The consumer lets two batches be unacknowledged at once (see
/// `transport::audit_consumer`); with one made by an earlier version (512), the next fetch
/// waits for the acknowledgements as before.
async fn consume(ctx: Ctx, js: async_nats::jetstream::Context, consumer: async_nats::jetstream::consumer::PullConsumer, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut committing: Option<tokio::task::JoinHandle<()>> = None;
    let result = consume_batches(&ctx, &js, consumer, &shutdown, &mut committing).await;
    if let Some(last) = committing {
        let _ = last.await;
    }
    result
}

async fn consume_batches(
    ctx: &Ctx,
    js: &async_nats::jetstream::Context,
    consumer: async_nats::jetstream::consumer::PullConsumer,
    shutdown: &CancellationToken,
    committing: &mut Option<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    let mut consumer = Some(consumer);
    let pause = || async {
        tokio::select! { _ = tokio::time::sleep(Duration::from_millis(500)) => false, _ = shutdown.cancelled() => true }
    };
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let stream = match stream_state(js, false).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "cannot read the stream's state; retrying");
                if pause().await {
                    return Ok(());
                }
                continue;
            }
        };
        let bound = match &consumer {
            Some(c) => c.clone(),
            None => match transport::bind_audit_consumer(js).await {
                Ok(c) => consumer.insert(c).clone(),
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "the audit consumer is not there; retrying");
                    if pause().await {
                        return Ok(());
                    }
                    continue;
                }
            },
        };
        let received = match fetch(&bound, shutdown).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch from the audit consumer; looking it up again");
                consumer = None;
                if pause().await {
                    return Ok(());
                }
                continue;
            }
        };
        if shutdown.is_cancelled() {
            return Ok(());
        }
        if !received.is_empty() && stream_state(js, false).await.map(|after| after.epoch).ok() != Some(stream.epoch) {
            // The stream was recreated while the batch came: which incarnation it is from is not
            // known, so it is not recorded (unacknowledged, it comes again if it still exists).
            continue;
        }
        let directory = ctx.directory.load_full();
        let classified = classify_all(&directory, &received).await;
        if let Some(previous) = committing.take() {
            let _ = previous.await;
        }
        let (ctx, js) = (ctx.clone(), js.clone());
        *committing = Some(tokio::spawn(async move {
            if let Err(e) = take(&ctx, &js, stream, &directory, &received, classified).await {
                tracing::error!(error = format!("{e:#}"), "could not append to the ledger; the batch will be redelivered");
            }
        }));
    }
}

/// The stream's identity and first position; with `deleted`, the positions removed from it.
async fn stream_state(js: &async_nats::jetstream::Context, deleted: bool) -> anyhow::Result<intake::StreamState> {
    let stream = js.get_stream_no_info(transport::STREAM).await?;
    let info = stream.info_builder().with_deleted(deleted).fetch().await?.info;
    Ok(intake::StreamState::of(&info))
}

/// How long one pull waits for its batch to fill: the longest a ledger entry waits when
/// traffic is light, and so at most four pulls a second.
const BATCH_WAIT: Duration = Duration::from_millis(250);

/// One batch from the consumer: 512 messages, or what came within [`BATCH_WAIT`] (empty when
/// nothing did). The pull waits at the broker for the batch to fill. A pull the broker
/// answered at once with whatever was pending (a `fetch`) made light traffic a batch of a
/// message or two, each with a stream-info request, a read of the intake and a commit: 1.6
/// ms of the audit's CPU per disclosure at 200/s, now 0.3-0.4 (`hub bench`, and e2e `idle`
/// counts the pulls). An error before any message came means the consumer may be gone.
async fn fetch(consumer: &async_nats::jetstream::consumer::PullConsumer, shutdown: &CancellationToken) -> anyhow::Result<Vec<async_nats::jetstream::Message>> {
    let mut messages = consumer.batch().max_messages(512).expires(BATCH_WAIT).messages().await?;
    let mut received = Vec::new();
    loop {
        tokio::select! {
            next = messages.next() => match next {
                Some(Ok(m)) => received.push(m),
                Some(Err(e)) if received.is_empty() => return Err(anyhow::anyhow!(e)),
                Some(Err(e)) => { tracing::warn!(error = %e, "audit fetch interrupted"); break }
                None => break,
            },
            _ = shutdown.cancelled() => break,
        }
    }
    Ok(received)
}

/// Places a batch after what the ledger has taken, commits it, and acknowledges what the
/// ledger now holds; hands back what follows a gap that may yet be filled.
async fn take(
    ctx: &Ctx,
    js: &async_nats::jetstream::Context,
    stream: intake::StreamState,
    directory: &Directory,
    received: &[async_nats::jetstream::Message],
    classified: Vec<Option<ledger::Entry>>,
) -> anyhow::Result<()> {
    fn read(m: &async_nats::jetstream::Message) -> (&str, &[u8], Option<u64>) {
        (m.subject.as_str(), &m.payload[..], m.info().ok().map(|i| i.stream_sequence))
    }
    fn broker_ms(m: &async_nats::jetstream::Message) -> Option<i64> {
        m.info().ok().and_then(|i| i64::try_from(i.published.unix_timestamp_nanos() / 1_000_000).ok())
    }
    let before = ctx.store.load_intake().await?;
    let now = isp::now_ms();
    let mut plan = intake::plan_classified(&before, &stream, received, read, classified, now);
    if plan.needs_detail {
        // Messages after a gap: a gap the stream itself has (positions deleted from it) is no
        // message to wait for.
        match stream_state(js, true).await {
            Ok(detailed) if detailed.epoch == stream.epoch => plan = intake::plan(directory, &before, &detailed, received, read, broker_ms, now),
            Ok(_) => return Ok(()),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot list the positions deleted from the stream"),
        }
    }
    if plan.unplaced > 0 {
        // Without its stream position a message can be neither placed in the ledger nor
        // recognised when it comes again: it stays unacknowledged, so the broker redelivers
        // it, and is never acknowledged unrecorded.
        tracing::warn!(unplaced = plan.unplaced, "messages without a stream position left for redelivery");
    }
    for m in &plan.later {
        let _ = m.ack_with(AckKind::Nak(Some(Duration::from_millis(500)))).await;
    }
    if !plan.later.is_empty() {
        tracing::info!(waiting = plan.later.len(), after = plan.intake.seq, "messages after a gap in the stream handed back until the gap is filled");
    }
    if plan.changes(&before) {
        let n = ctx.store.commit(std::mem::take(&mut plan.entries), Some(&plan.intake)).await?;
        tracing::debug!(appended = n, "ledger entries appended");
    }
    for m in plan.recorded {
        if let Err(e) = m.ack().await {
            tracing::warn!(error = %e, "ledger ack failed; the message will be redelivered and skipped");
        }
    }
    Ok(())
}

/// Classifies every message of a batch (a signature check each: the costly part of taking
/// it) on every core, off the async threads.
async fn classify_all(directory: &Arc<Directory>, received: &[async_nats::jetstream::Message]) -> Vec<Option<ledger::Entry>> {
    type Owned = (String, bytes::Bytes, Option<u64>, Option<i64>);
    let owned: Vec<Owned> = received
        .iter()
        .map(|m| {
            let info = m.info().ok();
            let at = info.as_ref().and_then(|i| i64::try_from(i.published.unix_timestamp_nanos() / 1_000_000).ok());
            (m.subject.to_string(), m.payload.clone(), info.map(|i| i.stream_sequence), at)
        })
        .collect();
    let directory = directory.clone();
    let classify = move || {
        let one = |(subject, body, seq, at): &Owned| intake::classify(&directory, (subject.as_str(), &body[..], *seq), *at);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = owned.len().div_ceil(threads).max(64);
        if owned.len() <= per {
            return owned.iter().map(one).collect();
        }
        std::thread::scope(|s| {
            let parts: Vec<_> = owned.chunks(per).map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>())).collect();
            // A part whose thread panicked past catch_unwind is left unclassified: its
            // messages stay unacknowledged and come again.
            parts.into_iter().zip(owned.chunks(per)).flat_map(|(p, part)| p.join().unwrap_or_else(|_| vec![None; part.len()])).collect()
        })
    };
    let n = received.len();
    tokio::task::spawn_blocking(classify).await.unwrap_or_else(|_| vec![None; n])
}

/// `GET /ledger`: one page of the entries the query matches, in ledger order; at most
/// `limit` (default [`query::PAGE_DEFAULT`], at most [`query::PAGE_MAX`]); the next page is
/// asked for with `after` = the last `seq` of this one.
async fn ledger_entries(State(ctx): State<Ctx>, Query(mut filter): Query<query::Filter>) -> Result<Json<Value>, ApiError> {
    match filter.limit {
        None => filter.limit = Some(query::PAGE_DEFAULT),
        Some(n) if n > query::PAGE_MAX => {
            return Err(ApiError::bad_request(format!("limit is at most {}; page on with after=<the last seq>", query::PAGE_MAX)));
        }
        Some(_) => {}
    }
    let entries = query::run(&ctx.pool, &filter).await.map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    Ok(Json(serde_json::to_value(entries).expect("serialisable")))
}

async fn verify(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let report = verify::verify(&ctx.store, Some(&ctx.directory.load_full())).await.map_err(ApiError::internal)?;
    Ok(Json(json!({"ok": report.ok(), "entries": report.entries, "checkpoints": report.checkpoints, "first_bad": report.first_bad, "alerts": report.alerts})))
}

/// `GET /checkpoints`, paged by `tree_size`.
async fn list_checkpoints(State(ctx): State<Ctx>, Query(page): Query<runtime::api::Page>) -> Result<Json<Value>, ApiError> {
    Ok(Json(serde_json::to_value(checkpoints::page(&ctx.pool, page.after_number()?, page.limit()?).await?).expect("serialisable")))
}

/// `GET /checkpoints/latest`: the newest signed checkpoint (404 before the first).
async fn latest_checkpoint(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let latest = checkpoints::latest(&ctx.pool).await?.ok_or_else(|| ApiError::not_found("checkpoint"))?;
    Ok(Json(serde_json::to_value(latest).expect("serialisable")))
}

#[derive(Debug, Deserialize)]
struct EntryParam {
    entry: i64,
}

async fn prove_inclusion(State(ctx): State<Ctx>, Query(p): Query<EntryParam>) -> Result<Json<Value>, ApiError> {
    let proof = checkpoints::prove_entry(&ctx.pool, p.entry).await.map_err(|e| ApiError::conflict(format!("{e:#}")))?;
    Ok(Json(serde_json::to_value(proof).expect("serialisable")))
}

#[derive(Debug, Deserialize)]
struct SizesParam {
    first: u64,
    second: u64,
}

async fn prove_consistency(State(ctx): State<Ctx>, Query(p): Query<SizesParam>) -> Result<Json<Value>, ApiError> {
    let (size, _) = checkpoints::tree_head(&ctx.pool).await?;
    if p.first > p.second || p.second > size {
        return Err(ApiError::bad_request(format!("sizes {} -> {} are outside the tree of {size}", p.first, p.second)));
    }
    let proof = checkpoints::consistency_proof(&ctx.pool, p.first, p.second).await?;
    Ok(Json(json!({"first": p.first, "second": p.second, "proof": proof.iter().map(hex::encode).collect::<Vec<_>>()})))
}

#[derive(Debug, Deserialize)]
struct ReportParams {
    since: String,
    until: String,
    sla_hours: Option<f64>,
    /// json (default), csv or html.
    format: Option<String>,
}

/// `POST /subject-access` `{full_name, date_of_birth}`: the subject access bundle of one
/// person (every entry about them, under their reference and the link tokens that stood for
/// them, with inclusion proofs and a summary), as `hub audit subject-access` makes it. The
/// name travels in the body only; the read is recorded in the ledger with the IG lead's id.
pub(crate) async fn subject_access_bundle(State(ctx): State<Ctx>, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    let person: runtime::api::SubjectIdentity = runtime::api::json_body(&body)?;
    let keys = ctx.ig_keys.as_ref().ok_or_else(|| ApiError::conflict("the directory has no IG office whose key makes subject references"))?;
    let subject_ref = keys.subject_ref(&person.full_name, &person.date_of_birth).map_err(ApiError::internal)?;
    let directory = ctx.directory.load_full();
    let policy = std::fs::read_to_string(&ctx.policy_path).ok().and_then(|t| isp::Policy::from_toml(&t, &isp::Schema::load().ok()?).ok());
    let links = directory
        .agencies
        .iter()
        .filter(|a| policy.as_ref().is_some_and(|p| !p.holds_subject_key(a.role)))
        .map(|a| keys.link_ref(&a.id, &subject_ref))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    let bundle = subject_access::export(&ctx.pool, &directory, policy.as_ref(), &subject_ref, &links)
        .await
        .map_err(|e| ApiError::conflict(format!("{e:#}")))?;
    Ok(Json(serde_json::to_value(bundle).expect("serialisable")))
}

async fn period_report(State(ctx): State<Ctx>, Query(p): Query<ReportParams>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let r = report::build(&ctx.pool, &p.since, &p.until, p.sla_hours.unwrap_or(48.0), isp::now_ms())
        .await
        .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    Ok(match p.format.as_deref().unwrap_or("json") {
        "json" => Json(serde_json::to_value(&r).expect("serialisable")).into_response(),
        "csv" => ([("content-type", "text/csv; charset=utf-8")], report::to_csv(&r)?).into_response(),
        "html" => ([("content-type", "text/html; charset=utf-8")], report::to_html(&r, &ctx.directory.load().partnership)).into_response(),
        other => return Err(ApiError::bad_request(format!("unknown format {other:?} (json, csv, html)"))),
    })
}
