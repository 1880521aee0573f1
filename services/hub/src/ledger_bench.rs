//! `hub audit bench`: the audit service's own path at scale. N envelopes (and one near-miss
//! event in 50), each with its own header signed by its sending agency with the partnership
//! directory's keys, are published by the agencies to the `HUB` stream of a real nats-server
//! the bench starts; the audit service (in this process, `audit::start`, as `hub serve audit`
//! runs it) fetches them from its durable consumer, classifies each with its signature check,
//! appends them to its ledger and acknowledges them. Then, on the ledger it built, the IG
//! lead's waits: verification with every checkpoint's signature checked against the
//! directory, verification with every entry's signature too, a subject query, a month's
//! query and a month's report.
//!
//! Two ingest figures: from the first publish to the ledger holding every message (the
//! agencies publishing while the audit service reads), and the audit service's own rate once
//! the stream is full (its consumer made afresh, a fresh ledger, the whole stream to read).
//!
//! Figures, not assertions: nothing here fails on a slow machine.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ed25519_dalek::Signer as _;
use audit::{store::Store, verify};
use futures::StreamExt as _;
use isp::{AgencyKeys, Kind};
use prost::Message as _;
use proto::v1::{Envelope, Event, EventKind, Header};
use sha2::{Digest as _, Sha256};

use crate::{nats::NatsChild, partnership};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// How many messages the agencies publish (each becomes a ledger entry).
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    /// How often the audit service signs a checkpoint while entries arrive (its
    /// `HUB_CHECKPOINT_SECS`).
    #[arg(long, default_value_t = 5)]
    pub checkpoint_secs: u64,
}

/// The demo partnership's agencies that send, and the one they send to.
const SENDERS: [&str; 5] = ["housing-northbridge", "riverside-homes", "marac-northbridge", "reciprocals-scheme", "perpetrator-pathways"];
const RECIPIENT: &str = "idva-northbridge";
const YEAR_MS: i64 = 365 * 86_400_000;
/// One message in this many is a signed near-miss event rather than an envelope.
const EVENT_EVERY: u64 = 50;

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// One message as an agency's service puts it on the stream.
struct Outgoing {
    sender: usize,
    subject: String,
    id: String,
    body: bytes::Bytes,
}

/// A sender's sealed template: a real envelope to the recipient, whose header each bench
/// envelope varies and signs again.
struct Template {
    keys: AgencyKeys,
    header: Header,
    sealed_payload: Vec<u8>,
}

pub async fn run(args: BenchArgs, database_url: Option<String>) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let dir = tempfile::Builder::new().prefix("hub-ledger-bench").tempdir()?;
    let data = dir.path().to_owned();
    partnership::ensure_demo(&data)?;
    let mut nats = NatsChild::start(&data, None).await?;
    let mut made = Vec::new();
    let result = bench(&args, &data, &nats, database_url.as_deref(), &mut made).await;
    if let Some(server) = &database_url {
        use sqlx::{Connection as _, Executor as _};
        let mut conn = sqlx::AnyConnection::connect(server).await?;
        for name in made {
            conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
        }
    }
    nats.stop().await?;
    result
}

/// A fresh ledger database: a SQLite file in `data`, or a database on the PostgreSQL server.
async fn fresh_database(data: &Path, server: Option<&str>, name: &str, made: &mut Vec<String>) -> anyhow::Result<String> {
    match server {
        None => Ok(runtime::config::sqlite_url(data, name)),
        Some(server) => {
            let db = format!("hub_ledger_bench_{:08x}_{}", rand::random::<u32>(), name.replace('-', "_"));
            let url = runtime::db::postgres_database(server, &db).await?;
            made.push(db);
            Ok(url)
        }
    }
}

async fn bench(args: &BenchArgs, data: &Path, nats: &NatsChild, server: Option<&str>, made: &mut Vec<String>) -> anyhow::Result<()> {
    let backend = if server.is_some() { "PostgreSQL" } else { "SQLite" };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("ledger bench: {} messages through the audit service on {backend}; {cores} cores; a checkpoint every {} s", args.entries, args.checkpoint_secs);
    let directory = isp::Directory::load(&partnership::directory_path(data))?;

    let t = Instant::now();
    let templates = templates(data)?;
    let messages = Arc::new(envelopes(&templates, args.entries)?);
    let bytes: usize = messages.iter().map(|m| m.body.len()).sum();
    println!(
        "  made {} messages ({:.0} bytes each on average) in {:.1} s: each envelope has its own header (id, subject ref, case, time) signed by its sender;",
        messages.len(),
        bytes as f64 / messages.len().max(1) as f64,
        t.elapsed().as_secs_f64()
    );
    println!("    one small payload per sender is sealed once and its ciphertext reused (the audit service never decrypts; each signature covers its own header)");

    // 1. The agencies publish while the audit service reads.
    let first = fresh_database(data, server, "audit-live", made).await?;
    let audit = Audit::start(data, nats, &first, args.checkpoint_secs).await?;
    let usage = Usage::now(nats);
    let t = Instant::now();
    let published = publish(nats, data, messages.clone()).await?;
    let publish_time = t.elapsed();
    let last = published.last().copied().unwrap_or_default();
    wait_for_ledger(&first, last).await?;
    let live = t.elapsed();
    let live_cpu = usage.since(nats);
    audit.stop().await?;
    println!(
        "  live ingest:   {:>12.0} entries/s from the first publish to the ledger holding all {} (publishing alone took {:.1} s: {:.0}/s)",
        per_sec(messages.len() as u64, live),
        messages.len(),
        publish_time.as_secs_f64(),
        per_sec(messages.len() as u64, publish_time)
    );
    println!("                 CPU seconds: {live_cpu}");
    drop_database(&first, server).await;

    // 2. The audit service's own rate: the stream full, its consumer and ledger made afresh.
    renew_audit_consumer(nats, data).await?;
    let url = fresh_database(data, server, "audit-full", made).await?;
    let usage = Usage::now(nats);
    let t = Instant::now();
    let audit = Audit::start(data, nats, &url, args.checkpoint_secs).await?;
    wait_for_ledger(&url, last).await?;
    let full = t.elapsed();
    let full_cpu = usage.since(nats);
    // Until a checkpoint covers every entry, so verification checks one over the whole ledger.
    wait_for_checkpoint(&url, messages.len() as i64).await?;
    audit.stop().await?;
    println!("  audit ingest:  {:>12.0} entries/s reading a full stream (start to the ledger holding all {})", per_sec(messages.len() as u64, full), messages.len());
    println!("                 CPU seconds: {full_cpu}");

    let pool = audit::open_ledger(&url).await?;
    let store = Store::connect(&url).await?;
    // Verified twice: the first read of rows just written costs more (PostgreSQL sets each
    // row's hint bits, writing the page again; 200,000 entries took 3.3-5.4 s first, 1.8-3.0
    // s again), and an IG lead's ledger has been read before.
    for (depth, label) in [(verify::Depth { signatures: false }, "verify:       "), (verify::Depth { signatures: false }, "verify again: "), (verify::Depth { signatures: true }, "verify --signatures:")] {
        // Memory: this process holds every message made, so what verification adds is its
        // peak over what was resident before it.
        let me = std::process::id();
        let resident = crate::processes::rss_mb(me, "VmRSS").unwrap_or_default();
        crate::bench::reset_peak_rss(me);
        let t = Instant::now();
        let report = verify::verify_with(&store, Some(&directory), depth).await?;
        let d = t.elapsed();
        let added = crate::bench::peak_rss_mb(me).map_or_else(|| "?".into(), |peak| format!("{:.0}", peak - resident));
        println!(
            "  {label} {:>8.2} s for {} entries and {} checkpoints ({:.0} entries/s), {} MB of memory at its peak; {}{}",
            d.as_secs_f64(),
            report.entries,
            report.checkpoints,
            per_sec(report.entries, d),
            added,
            if depth.signatures { "every checkpoint's and every entry's signature checked against the directory" } else { "every checkpoint's signature checked against the directory" },
            match &report.first_bad {
                None => String::new(),
                Some(p) => format!(": DOES NOT VERIFY at entry {} ({})", p.seq, p.what),
            }
        );
    }
    queries(&pool, &messages).await?;
    store.close().await;
    pool.close().await;
    Ok(())
}

/// The IG lead's questions of the ledger: one person's entries, a month's, a month's report.
async fn queries(pool: &sqlx::AnyPool, messages: &[Outgoing]) -> anyhow::Result<()> {
    let mut subjects: Vec<String> = Vec::new();
    for m in messages.iter().step_by(messages.len() / 25 + 1).take(25) {
        if let Ok(envelope) = Envelope::decode(&m.body[..]) {
            if let Ok(h) = Header::decode(envelope.header.as_slice()) {
                subjects.push(h.subject_ref);
            }
        }
    }
    let mut times = Vec::new();
    let mut found = 0;
    for subject in &subjects {
        let t = Instant::now();
        found += audit::query::run(pool, &audit::query::Filter { subject_ref: Some(subject.clone()), ..Default::default() }).await?.len();
        times.push(t.elapsed());
    }
    times.sort();
    if let (Some(median), Some(max)) = (times.get(times.len() / 2), times.last()) {
        println!("  subject query: {:>12.2} ms median ({:.2} ms max, {:.1} entries per person)", ms(*median), ms(*max), found as f64 / subjects.len() as f64);
    }
    let start_ms = isp::now_ms() - YEAR_MS;
    let since = time::OffsetDateTime::from_unix_timestamp((start_ms + 5 * 30 * 86_400_000) / 1000)?.date();
    let until = since.checked_add(time::Duration::days(29)).unwrap_or(since);
    let t = Instant::now();
    let month = audit::query::run(pool, &audit::query::Filter { since: Some(since.to_string()), until: Some(until.to_string()), ..Default::default() }).await?;
    println!("  month query:   {:>12.2} s for {} entries ({since} to {until})", t.elapsed().as_secs_f64(), month.len());
    let t = Instant::now();
    let report = audit::report::build(pool, &since.to_string(), &until.to_string(), 48.0, isp::now_ms()).await?;
    println!("  month report:  {:>12.2} s ({} flows, {} referrals unacknowledged after 48 h)", t.elapsed().as_secs_f64(), report.flows.len(), report.outstanding.len());
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A real sealed referral from each sender the policy lets send to the recipient.
fn templates(data: &Path) -> anyhow::Result<Vec<Template>> {
    let mut out = Vec::new();
    for sender in SENDERS {
        let isp = runtime::Config::embedded(data, sender, "").load_isp()?;
        let referral = crate::bench::referral(&isp, "Synthetic bench referral.");
        // A sender the policy does not let make this referral is left out.
        let Ok(sealed) = isp.seal(&referral, None) else { continue };
        let envelope = Envelope::decode(sealed.envelope.as_slice())?;
        out.push(Template { keys: isp.keys.clone(), header: sealed.header, sealed_payload: envelope.sealed_payload });
    }
    anyhow::ensure!(!out.is_empty(), "no demo agency may send the bench referral");
    Ok(out)
}

/// `n` messages, made on every core: envelopes whose headers differ (id, subject ref, case,
/// creation time spread over the past year), each signed by its sender; one in
/// [`EVENT_EVERY`] a signed near-miss event of its sender.
fn envelopes(templates: &[Template], n: u64) -> anyhow::Result<Vec<Outgoing>> {
    let people = (n / 5).max(1);
    let start_ms = isp::now_ms() - YEAR_MS;
    let step_ms = (YEAR_MS / n.max(1) as i64).max(1);
    let make = |i: u64| -> Outgoing {
        let sender = (i % templates.len() as u64) as usize;
        let t = &templates[sender];
        let id = uuid::Uuid::now_v7().to_string();
        let at = start_ms + i as i64 * step_ms;
        let subject_ref = format!("s-{:032x}", (i * 2_654_435_761) % people);
        let case_ref = format!("BENCH-{}", i % people);
        if i % EVENT_EVERY == EVENT_EVERY - 1 {
            let event = Event {
                event_id: id.clone(),
                kind: EventKind::SendDenied as i32,
                agency: t.keys.agency.clone(),
                counterpart: RECIPIENT.into(),
                message_kind: Kind::IdvaReferral as i32,
                purpose: "safeguarding".into(),
                lawful_basis: "uk-gdpr-6-1-a".into(),
                policy_version: t.header.policy_version.clone(),
                rule: "bench-refused".into(),
                reason: "category_not_allowed".into(),
                subject_ref,
                case_ref,
                occurred_at_ms: at,
                ..Default::default()
            };
            let body = isp::seal::sign_event_as(&t.keys, &event);
            return Outgoing { sender, subject: runtime::transport::event_subject(&t.keys.agency, EventKind::SendDenied), id, body: body.into() };
        }
        let header = Header { envelope_id: id.clone(), subject_ref, case_ref, created_at_ms: at, ..t.header.clone() };
        let header_bytes = header.encode_to_vec();
        let signature = t.keys.signing.sign(&[isp::seal::ENVELOPE_CONTEXT, &header_bytes].concat());
        let body = Envelope { header: header_bytes, sealed_payload: t.sealed_payload.clone(), signature: signature.to_bytes().to_vec() }.encode_to_vec();
        Outgoing { sender, subject: runtime::transport::message_subject(&header.sender, &header.recipient, Kind::IdvaReferral), id, body: body.into() }
    };
    let threads = std::thread::available_parallelism().map_or(1, |c| c.get()) as u64;
    let per = n.div_ceil(threads).max(1);
    let parts: Vec<Vec<Outgoing>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|k| s.spawn(move || (k * per..((k + 1) * per).min(n)).map(make).collect::<Vec<_>>())).collect();
        handles.into_iter().map(|h| h.join().map_err(|_| anyhow::anyhow!("a thread making envelopes panicked"))).collect::<anyhow::Result<_>>()
    })?;
    // The digest every template's payload still matches (each header names it).
    debug_assert!(templates.iter().all(|t| Sha256::digest(&t.sealed_payload).as_slice() == t.header.payload_digest.as_slice()));
    Ok(parts.into_iter().flatten().collect())
}

/// Every message published by its sender, on its own broker connection and credentials, as
/// the outbox publishes (message id for deduplication, broker acks awaited, 256 in flight per
/// sender). Returns the stream positions, in order.
async fn publish(nats: &NatsChild, data: &Path, messages: Arc<Vec<Outgoing>>) -> anyhow::Result<Vec<u64>> {
    let mut senders = Vec::new();
    for (index, sender) in SENDERS.iter().enumerate() {
        let client = runtime::transport::connect(&nats.url, sender, &runtime::transport::BrokerAuth::embedded(data, sender)).await?;
        let js = async_nats::jetstream::new(client);
        let messages = messages.clone();
        senders.push(async move {
            let mut acks = futures::stream::FuturesUnordered::new();
            let mut positions = Vec::new();
            for m in messages.iter().filter(|m| m.sender == index) {
                let publish = async_nats::jetstream::message::PublishMessage::build().payload(m.body.clone()).message_id(&m.id);
                acks.push(std::future::IntoFuture::into_future(js.send_publish(m.subject.clone(), publish).await?));
                while acks.len() >= 256 {
                    positions.push(acks.next().await.transpose()?.map(|a| a.sequence).unwrap_or_default());
                }
            }
            while let Some(ack) = acks.next().await {
                positions.push(ack?.sequence);
            }
            anyhow::Ok(positions)
        });
    }
    let mut all: Vec<u64> = futures::future::try_join_all(senders).await?.into_iter().flatten().collect();
    all.sort_unstable();
    Ok(all)
}

/// The audit service, in this process, as `hub serve audit` runs it.
struct Audit {
    shutdown: tokio_util::sync::CancellationToken,
    running: runtime::Running,
}

impl Audit {
    async fn start(data: &Path, nats: &NatsChild, database_url: &str, checkpoint_secs: u64) -> anyhow::Result<Audit> {
        let mut config = audit::Config::embedded(data, &nats.url);
        config.database_url = database_url.to_owned();
        config.checkpoint_every = Duration::from_secs(checkpoint_secs.max(1));
        let shutdown = tokio_util::sync::CancellationToken::new();
        let running = audit::start(config, shutdown.clone()).await.context("starting the audit service")?;
        Ok(Audit { shutdown, running })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.running.task.await??;
        Ok(())
    }
}

/// The administrator removes the audit service's consumer and makes it again: it then reads
/// the whole stream from its start.
async fn renew_audit_consumer(nats: &NatsChild, data: &Path) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(crate::nats::connect_admin(&nats.url, data).await?);
    js.get_stream(runtime::transport::STREAM).await?.delete_consumer(runtime::transport::AUDIT_CONSUMER).await?;
    runtime::transport::audit_consumer(&js, Duration::from_secs(10)).await?;
    Ok(())
}

/// Waits until the ledger has taken every stream position up to `last`.
async fn wait_for_ledger(url: &str, last: u64) -> anyhow::Result<()> {
    wait(url, "SELECT stream_seq FROM ledger_cursor WHERE id = 1", last as i64, "the ledger never took every message").await
}

async fn wait_for_checkpoint(url: &str, size: i64) -> anyhow::Result<()> {
    wait(url, "SELECT MAX(tree_size) FROM checkpoint", size, "no checkpoint came to cover the ledger").await
}

async fn wait(url: &str, sql: &str, at_least: i64, failure: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut conn: Option<sqlx::AnyConnection> = None;
    loop {
        if conn.is_none() {
            conn = sqlx::AnyConnection::connect(url).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            match sqlx::query_scalar::<_, Option<i64>>(sql).fetch_optional(&mut *c).await {
                Ok(Some(Some(n))) if n >= at_least => return Ok(()),
                Ok(_) => {}
                Err(_) => conn = None, // the table is made at the service's start
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "{failure}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn drop_database(url: &str, server: Option<&str>) {
    use sqlx::{Connection as _, Executor as _};
    match server {
        None => {
            let path = url.trim_start_matches("sqlite://").split('?').next().unwrap_or_default().to_owned();
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
        Some(server) => {
            let Some(name) = url.rsplit('/').next().map(|n| n.split('?').next().unwrap_or_default().to_owned()) else { return };
            if let Ok(mut conn) = sqlx::AnyConnection::connect(server).await {
                let _ = conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
            }
        }
    }
}

/// CPU seconds used so far: this process (the audit service, and the agencies publishing),
/// nats-server, and every local PostgreSQL process.
struct Usage {
    this: f64,
    nats: f64,
    postgres: f64,
}

impl Usage {
    fn now(nats: &NatsChild) -> Usage {
        Usage {
            this: crate::bench::cpu_seconds(std::process::id()).unwrap_or_default(),
            nats: nats.pid().and_then(crate::bench::cpu_seconds).unwrap_or_default(),
            postgres: crate::bench::postgres_cpu().values().sum(),
        }
    }

    fn since(&self, nats: &NatsChild) -> String {
        let now = Usage::now(nats);
        let mut out = format!("bench process {:.1} (the audit service and, while publishing, the agencies), nats-server {:.1}", now.this - self.this, now.nats - self.nats);
        if now.postgres > 0.0 {
            out.push_str(&format!(", PostgreSQL {:.1}", now.postgres - self.postgres));
        }
        out
    }
}

