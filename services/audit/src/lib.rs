//! The audit service: materialises every message on the stream (disclosures, near misses,
//! refusals on receipt) into the hash-chained disclosure [`ledger`], which IG leads query and
//! verify. It holds no keys that open payloads: it proves what was shared without holding
//! what was shared.
//!
//! Consumes: everything on the `HUB` stream through the durable consumer `audit`, in batches;
//! a batch is appended in one transaction, then acked. Serves: `GET /ledger`,
//! `GET /ledger?subject_ref=...`, `GET /verify`, `GET /health`.

pub mod ledger;

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{Json, Router, extract::{Query, State}, routing::get};
use futures::StreamExt;
use isp::Directory;
use runtime::{Migration, api::ApiError, db, transport};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::AnyPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The audit service's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub nats_url: String,
    pub http_addr: String,
    pub directory_path: std::path::PathBuf,
    pub ack_wait: Duration,
}

impl Config {
    pub fn embedded(data: &Path, nats_url: &str) -> Config {
        Config {
            database_url: runtime::config::sqlite_url(data, "audit"),
            nats_url: nats_url.to_owned(),
            http_addr: "127.0.0.1:0".into(),
            directory_path: runtime::config::partnership_dir(data).join("directory.toml"),
            ack_wait: Duration::from_secs(10),
        }
    }

    /// From `HUB_DATA`, `DATABASE_URL`, `NATS_URL`, `HUB_HTTP_ADDR`, `HUB_DIRECTORY`.
    pub fn from_env() -> Config {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let data = std::path::PathBuf::from(var("HUB_DATA").unwrap_or_else(|| "hub-data".into()));
        let mut c = Config::embedded(&data, &var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()));
        if let Some(v) = var("DATABASE_URL") {
            c.database_url = v;
        }
        if let Some(v) = var("HUB_HTTP_ADDR") {
            c.http_addr = v;
        }
        if let Some(v) = var("HUB_DIRECTORY") {
            c.directory_path = v.into();
        }
        c
    }
}

pub fn migrations() -> Vec<Migration> {
    vec![Migration { version: 100, description: "ledger", sql: include_str!("../migrations/0100_ledger.sql") }]
}

/// Opens (and migrates) the ledger database.
pub async fn open_ledger(database_url: &str) -> anyhow::Result<AnyPool> {
    let pool = db::connect(database_url).await?;
    db::migrate(&pool, migrations()).await?;
    Ok(pool)
}

#[derive(Clone)]
struct Ctx {
    pool: AnyPool,
    directory: Arc<Directory>,
}

pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<runtime::Running> {
    let directory = Arc::new(Directory::load(&config.directory_path)?);
    let pool = open_ledger(&config.database_url).await?;
    let client = transport::connect(&config.nats_url, "audit").await?;
    let js = async_nats::jetstream::new(client);
    let consumer = transport::audit_consumer(&js, config.ack_wait).await?;
    let ctx = Ctx { pool, directory };
    let router = Router::new()
        .route("/health", get(|| async { Json(json!({"service": "audit", "status": "ok"})) }))
        .route("/ledger", get(ledger_entries))
        .route("/verify", get(verify))
        .with_state(ctx.clone());
    let listener = tokio::net::TcpListener::bind(&config.http_addr).await.with_context(|| format!("binding {}", config.http_addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "audit service started");
    let task = tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(consume(ctx, consumer, shutdown.clone()));
        let stop = shutdown.clone();
        tasks.spawn(async move { axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await.context("HTTP API") });
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

/// Pulls batches, appends each in one transaction, then acks it.
async fn consume(ctx: Ctx, consumer: async_nats::jetstream::consumer::PullConsumer, shutdown: CancellationToken) -> anyhow::Result<()> {
    loop {
        let batch = consumer.fetch().max_messages(512).expires(Duration::from_millis(500)).messages().await;
        let mut messages = match batch {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch from the audit consumer; retrying");
                tokio::select! { _ = tokio::time::sleep(Duration::from_millis(500)) => continue, _ = shutdown.cancelled() => return Ok(()) }
            }
        };
        let mut received = Vec::new();
        loop {
            tokio::select! {
                next = messages.next() => match next {
                    Some(Ok(m)) => received.push(m),
                    Some(Err(e)) => { tracing::warn!(error = %e, "audit fetch interrupted"); break }
                    None => break,
                },
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
        if received.is_empty() {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            continue;
        }
        let entries = received
            .iter()
            .filter_map(|m| m.info().ok().map(|info| ledger::classify(&ctx.directory, m.subject.as_str(), &m.payload, info.stream_sequence)))
            .collect::<Vec<_>>();
        let appended = async {
            let mut tx = ctx.pool.begin().await?;
            let n = ledger::append(&mut tx, entries).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        }
        .await;
        match appended {
            Ok(n) => {
                for m in &received {
                    if let Err(e) = m.ack().await {
                        tracing::warn!(error = %e, "ledger ack failed; the message will be redelivered and skipped");
                    }
                }
                tracing::debug!(appended = n, "ledger entries appended");
            }
            Err(e) => tracing::error!(error = %e, "could not append to the ledger; the batch will be redelivered"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct LedgerQuery {
    subject_ref: Option<String>,
}

async fn ledger_entries(State(ctx): State<Ctx>, Query(q): Query<LedgerQuery>) -> Result<Json<Value>, ApiError> {
    let entries = ledger::list(&ctx.pool, q.subject_ref.as_deref()).await?;
    Ok(Json(serde_json::to_value(entries).expect("serialisable")))
}

async fn verify(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let report = ledger::verify(&ctx.pool, Some(&ctx.directory)).await?;
    Ok(Json(json!({"ok": report.ok(), "entries": report.entries, "first_bad": report.first_bad})))
}
