//! `hub bench flood`: what a flood of junk costs the ledger. A running local partnership
//! (SQLite, or PostgreSQL with DATABASE_URL); housing's own broker credentials publish
//! `--messages` messages of random bytes (200 to 2,000 each) on housing's own message subject
//! to the IDVA service, as a compromised housing service could, in bursts of 256 publishes in
//! flight. Then the bench waits until the IDVA service has refused them all and the audit
//! service has read the stream to its end, and prints: ledger entries added (by type, with the
//! messages the unverifiable ones stand for), the ledger database's growth, the JetStream
//! store's growth, and the time to publish and to absorb. Figures, not assertions.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use sqlx::Connection as _;

use crate::local::{LocalHub, Options};

#[derive(Debug, Clone, clap::Args)]
pub struct FloodArgs {
    /// Junk messages to publish.
    #[arg(long, default_value_t = 5000)]
    pub messages: usize,
}

const SENDER: &str = "housing-northbridge";
const RECIPIENT: &str = "idva-northbridge";

pub async fn run(args: FloodArgs, database_url: Option<String>) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let dir = tempfile::Builder::new().prefix("hub-bench-flood").tempdir()?;
    let options = Options {
        data: dir.path().to_owned(),
        database_prefix: database_url.as_ref().map(|_| format!("hubflood_{:08x}", rand::random::<u32>())),
        database_url,
        ..Default::default()
    };
    let hub = LocalHub::start(options.clone()).await?;
    let result = flood(&hub, &options, &args).await;
    hub.stop().await?;
    if let Some(prefix) = &options.database_prefix {
        drop_databases(options.database_url.as_deref().unwrap_or_default(), prefix).await?;
    }
    result
}

async fn flood(hub: &LocalHub, options: &Options, args: &FloodArgs) -> anyhow::Result<()> {
    let audit_url = hub.audit_database_url.clone();
    let idva_url = hub.services[RECIPIENT].database_url().to_owned();
    let admin = async_nats::jetstream::new(hub.admin_client().await?);
    let housing = runtime::transport::connect(&hub.nats_url, SENDER, &runtime::transport::BrokerAuth::embedded(&options.data, SENDER)).await?;
    let housing = async_nats::jetstream::new(housing);
    let subject = runtime::transport::message_subject(SENDER, RECIPIENT, isp::Kind::IdvaReferral);

    // At rest: the audit service has read what the partnership's start put on the stream.
    let start_seq = stream_last(&admin).await?;
    wait_for("the audit service to read the stream at rest", Duration::from_secs(60), || async { Ok(cursor(&audit_url).await? >= start_seq) }).await?;
    let entries_before = entries_by_type(&audit_url).await?;
    let ledger_before = database_mb(&audit_url, &options.data, "audit").await?;
    let store_before = dir_mb(&options.data.join("nats"));
    let stream_before = stream_bytes(&admin).await? as f64 / 1e6;
    let quarantined_before = count(&idva_url, "SELECT COUNT(*) FROM quarantine").await?;

    println!("hub bench flood: {} junk messages (random bytes, 200-2000 each) from {SENDER}'s own credentials on {subject}", args.messages);
    let started = Instant::now();
    let mut in_flight = Vec::with_capacity(256);
    for n in 0..args.messages {
        let size = 200 + rand::random::<usize>() % 1801;
        let body: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
        in_flight.push(housing.publish(subject.clone(), body.into()).await?);
        if in_flight.len() == 256 || n + 1 == args.messages {
            for ack in in_flight.drain(..) {
                ack.await.context("the broker refused a junk message")?;
            }
        }
    }
    let published = started.elapsed();

    // Absorbed: the IDVA service refused every junk message (and published its refusals),
    // and the audit service has read the stream to its end.
    wait_for("the IDVA service to refuse every junk message", Duration::from_secs(600), || async {
        Ok(count(&idva_url, "SELECT COUNT(*) FROM quarantine").await? - quarantined_before >= args.messages as i64
            && count(&idva_url, "SELECT COUNT(*) FROM outbox WHERE published_at_ms IS NULL").await? == 0)
    })
    .await?;
    let end = stream_last(&admin).await?;
    wait_for("the audit service to read the stream to its end", Duration::from_secs(600), || async { Ok(cursor(&audit_url).await? >= end) }).await?;
    let absorbed = started.elapsed();

    let entries_after = entries_by_type(&audit_url).await?;
    let pending = count(&audit_url, "SELECT CAST(COALESCE(SUM(messages), 0) AS BIGINT) FROM ledger_pending").await?;
    let ledger_after = database_mb(&audit_url, &options.data, "audit").await?;
    let store_after = dir_mb(&options.data.join("nats"));
    let stream_after = stream_bytes(&admin).await? as f64 / 1e6;

    println!("\n{:<66} {:>12}", "figure", "value");
    println!("{:<66} {:>12.2}", "publish time (s)", published.as_secs_f64());
    println!("{:<66} {:>12.2}", "time until absorbed (s)", absorbed.as_secs_f64());
    println!("{:<66} {:>12}", "stream messages added", end - start_seq);
    let mut added_total = 0;
    for (entry_type, (n, messages)) in &entries_after {
        let (before_n, before_m) = entries_before.get(entry_type).copied().unwrap_or_default();
        let added = n - before_n;
        added_total += added;
        println!("{:<66} {:>12}", format!("ledger entries added: {entry_type} (standing for {} messages)", messages - before_m), added);
    }
    println!("{:<66} {:>12}", "ledger entries added: total", added_total);
    println!("{:<66} {:>12}", "junk messages waiting in a pending aggregate", pending);
    println!("{:<66} {:>12.2}", "ledger database growth (MB)", ledger_after - ledger_before);
    println!("{:<66} {:>12.2}", "JetStream store growth on disk (MB)", store_after - store_before);
    println!("{:<66} {:>12.2}", "JetStream stream bytes growth (MB)", stream_after - stream_before);
    Ok(())
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    while !done().await? {
        anyhow::ensure!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn stream_last(js: &async_nats::jetstream::Context) -> anyhow::Result<u64> {
    Ok(js.get_stream(runtime::transport::STREAM).await?.info().await?.state.last_sequence)
}

async fn stream_bytes(js: &async_nats::jetstream::Context) -> anyhow::Result<u64> {
    Ok(js.get_stream(runtime::transport::STREAM).await?.info().await?.state.bytes)
}

async fn count(url: &str, sql: &str) -> anyhow::Result<i64> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&mut conn).await?;
    conn.close().await?;
    Ok(n)
}

/// The stream position the audit service has read to (0 before it has stored one).
async fn cursor(url: &str) -> anyhow::Result<u64> {
    Ok(count(url, "SELECT COALESCE(MAX(stream_seq), 0) FROM ledger_cursor").await?.max(0) as u64)
}

/// Entry type -> (entries, messages they stand for).
async fn entries_by_type(url: &str) -> anyhow::Result<BTreeMap<String, (i64, i64)>> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT entry_type, COUNT(*), CAST(COALESCE(SUM(message_count), 0) AS BIGINT) FROM ledger GROUP BY entry_type").fetch_all(&mut conn).await?;
    conn.close().await?;
    Ok(rows.into_iter().map(|(t, n, m)| (t, (n, m))).collect())
}

/// The size of a service's database: its SQLite files (with the write-ahead log), or its
/// PostgreSQL database.
async fn database_mb(url: &str, data: &Path, service: &str) -> anyhow::Result<f64> {
    if url.starts_with("sqlite:") {
        let db = data.join("db");
        let size = |suffix: &str| std::fs::metadata(db.join(format!("{service}.db{suffix}"))).map_or(0, |m| m.len());
        return Ok((size("") + size("-wal")) as f64 / 1e6);
    }
    Ok(count(url, "SELECT pg_database_size(current_database())").await? as f64 / 1e6)
}

fn dir_mb(dir: &Path) -> f64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total as f64 / 1e6
}

async fn drop_databases(server: &str, prefix: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::AnyConnection::connect(server).await?;
    let names: Vec<(String,)> = sqlx::query_as("SELECT datname::text FROM pg_database WHERE datname LIKE $1").bind(format!("{prefix}\\_%")).fetch_all(&mut conn).await?;
    for (name,) in names {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await?;
    }
    Ok(())
}
