//! `hub bench`: sealed end-to-end throughput and latency against raw JetStream and the
//! crypto limit, in one run, on a fresh local JetStream and fresh SQLite databases (or
//! PostgreSQL with DATABASE_URL).
//!
//! 1. raw: the same payloads published to and pull-consumed from a JetStream stream, acks
//!    in flight, no ISP, no crypto, no database;
//! 2. crypto limit: seal (policy, minimise, encrypt, sign) and open (verify, decrypt,
//!    decode) plus the audit's verify of the same payloads, in-process on every core;
//! 3. hub: the whole path across K sending agency services and the IDVA service, each its own
//!    process (`hub serve`), with the audit service: HTTP send, policy, consent check,
//!    minimise, seal, outbox, publish, consume, verify, open, inbox commit, ack, ledger. Each
//!    send carries a case-management system's bearer token from a real OpenID provider
//!    (`--login oidc`, the default) or a caseworker's password session (`--login password`).
//!
//! Latency is from the send call (or, under `--rate`, from the scheduled send time, so
//! queueing is not hidden) to the moment the recipient's inbox transaction has committed: the
//! stamp its inbox takes after the commit returns and logs with "envelope received and
//! stored" (`committed_at_ms`, ms precision), read back from the IDVA service's log.
//! From the first two phases the bench also prints the ceiling of this design on the
//! machine ([`Ceiling`]): what the hub could deliver if a disclosure cost only its crypto and
//! the broker's part of its messages.
//! Figures, never assertions: the targets are reported, not enforced.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{Value, json};
use crate::{local, nats::NatsChild, partnership, processes::Served};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Disclosures per phase (raw messages too, but at least 20,000 of those).
    #[arg(long, default_value_t = 5000)]
    pub messages: usize,
    /// Sending agency services (1 to 5), all sending to the IDVA service.
    #[arg(long, default_value_t = 4)]
    pub agencies: usize,
    /// Bytes of free text in each referral.
    #[arg(long, default_value_t = 2048)]
    pub payload: usize,
    /// Offered disclosures per second, open loop; without it, as fast as 64 concurrent sends go.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long)]
    pub json: bool,
    /// Tokio worker threads in each service process. Default: one when the machine has
    /// fewer cores than the bench runs services (they share the cores, and one worker each
    /// avoids wake-ups across threads), else tokio's default of one per core.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,
    /// How each sender's caseworker logs in. `oidc`: as a case-management system does, with
    /// a bearer access token (client_credentials) from a real OpenID provider the bench
    /// starts (deploy/oidc on Node.js), each sender's service configured for it. `password`:
    /// a staff account's password, then the session cookie and CSRF token.
    #[arg(long, value_enum, default_value_t = Login::Oidc)]
    pub login: Login,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Login {
    Oidc,
    Password,
}

impl Login {
    fn describe(self) -> &'static str {
        match self {
            Login::Oidc => "OIDC bearer tokens (client_credentials)",
            Login::Password => "password sessions (cookie and CSRF token)",
        }
    }
}

impl BenchArgs {
    /// Worker threads per service process, None for tokio's default.
    fn workers_per_service(&self) -> Option<u16> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // The senders, the IDVA and the audit service.
        self.workers.or_else(|| (cores < self.agencies + 2).then_some(1))
    }
}

const RECIPIENT: &str = "idva-northbridge";
const SENDERS: [&str; 5] = ["housing-northbridge", "riverside-homes", "marac-northbridge", "reciprocals-scheme", "perpetrator-pathways"];

#[derive(Debug, Default, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub messages: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Peak RSS (VmHWM) in MB per process. For the hub: during the measured phase (the peak
    /// is reset once the services are up and logged into).
    pub peak_rss_mb: BTreeMap<String, f64>,
    /// For the hub: each service's peak RSS before the phase (starting, and with `--login
    /// password` a staff member's password login: argon2id takes its 19 MiB for a moment).
    pub peak_rss_mb_before: BTreeMap<String, f64>,
    /// For the hub: how fast the senders' APIs accepted the sends (before delivery).
    pub accepted_per_second: Option<f64>,
    /// For the crypto limit: the same, when each disclosure also carries the delivered
    /// receipt the recipient seals back (what the hub does for every referral).
    pub with_receipt_per_second: Option<f64>,
    /// For the crypto limit: CPU ms (the bench process's, user + system) per disclosure with
    /// its receipt: all the crypto the protocol asks of a disclosure, at the sender, the
    /// recipient and the audit.
    pub with_receipt_cpu_ms: Option<f64>,
    /// For the hub: CPU seconds (user + system) each process used during the phase,
    /// nats-server and the bench's own HTTP client included: where the time goes. For the
    /// raw phase: nats-server's and the bench's (publisher and consumer).
    pub cpu_seconds: BTreeMap<String, f64>,
    /// For the hub: context switches per disclosure in each process (voluntary and not, of
    /// the threads alive at the phase's end): every hop between threads (to SQLite's worker
    /// thread and back, say) is two, and at light load they cost more than the work.
    pub context_switches_per_disclosure: BTreeMap<String, f64>,
    /// For the hub: where the latency goes, p50 and p99 ms of each stage.
    pub stages: Vec<Stage>,
    /// For the hub: messages through the broker per disclosure (nats-server's `/varz`):
    /// `in` what clients published to it (envelopes, acks, pull and API requests), `out` what
    /// it delivered to clients. For the raw phase: the same per raw message.
    pub broker_messages_per_disclosure: Option<BrokerMessages>,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct BrokerMessages {
    #[serde(rename = "in")]
    pub published: f64,
    #[serde(rename = "out")]
    pub delivered: f64,
}

/// One stage of a disclosure's way, from the timestamps the services record.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stage {
    pub name: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn percentiles(mut ms: Vec<f64>) -> (f64, f64, f64, f64) {
    if ms.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    (at(0.50), at(0.95), at(0.99), *ms.last().unwrap())
}

/// Starts a process's peak RSS afresh (`/proc/PID/clear_refs`, Linux 4.0 and later).
pub(crate) fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// The process's peak RSS (VmHWM) in MB, since it started or [`reset_peak_rss`].
pub(crate) fn peak_rss_mb(pid: u32) -> Option<f64> {
    crate::processes::rss_mb(pid, "VmHWM")
}

/// CPU seconds (user + system) a process has used so far.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    Some(ticks / 100.0)
}

/// Context switches so far of a process's threads (those alive now: one that has exited
/// takes its count with it).
pub(crate) fn context_switches(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let count = |status: String| -> u64 {
        status
            .lines()
            .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    Some(tasks.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok()).map(count).sum())
}

/// CPU seconds so far of every PostgreSQL server process on this machine, by pid (the
/// server the services use, when it is local, is part of what a disclosure costs).
pub(crate) fn postgres_cpu() -> BTreeMap<u32, f64> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return BTreeMap::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .filter_map(|pid| Some((pid, cpu_seconds(pid)?)))
        .collect()
}

fn filler(bytes: usize) -> String {
    "Synthetic bench narrative. ".repeat(bytes / 27 + 1)[..bytes].to_owned()
}

pub async fn run(args: BenchArgs, database_url: Option<String>) -> anyhow::Result<()> {
    anyhow::ensure!((1..=SENDERS.len()).contains(&args.agencies), "--agencies must be 1 to {}", SENDERS.len());
    anyhow::ensure!(args.messages > 0, "--messages must be positive");
    if args.login == Login::Oidc {
        crate::oidc_provider::check_installed().context("hub bench --login oidc (the default) runs a real OpenID provider; install what it needs, or use --login password")?;
    }
    sqlx::any::install_default_drivers();
    let dir = tempfile::Builder::new().prefix("hub-bench").tempdir()?;
    let data = dir.path().to_owned();
    partnership::ensure_demo(&data)?;
    let mut nats = NatsChild::start_monitored(&data).await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !args.json {
        println!(
            "hub bench: {} messages of {} bytes, {} sending agencies -> {RECIPIENT}, {}; {cores} cores; storage {}; tokio workers per service: {}; login: {}",
            args.messages,
            args.payload,
            args.agencies,
            args.rate.map_or("closed loop (64 in flight)".to_owned(), |r| format!("offered {r}/s open loop")),
            if database_url.is_some() { "PostgreSQL" } else { "SQLite" },
            args.workers_per_service().map_or("one per core".to_owned(), |n| n.to_string()),
            args.login.describe()
        );
    }
    let raw = raw_phase(&nats, &data, &args).await.context("raw JetStream phase")?;
    let crypto = crypto_phase(&data, &args).context("crypto phase")?;
    let prefix = format!("hub_bench_{:08x}", rand::random::<u32>());
    let hub = hub_phase(&data, &nats, database_url.as_deref(), &prefix, &args).await;
    if let Some(server) = &database_url {
        drop_databases(server, &prefix).await;
    }
    nats.stop().await?;
    let hub = hub.context("hub phase")?;
    report(&args, &raw, &crypto, &hub)
}

/// Broker messages a disclosure needs at least: the referral and its receipt, each published
/// (1 in), acknowledged by JetStream (1 out), delivered to its recipient and to the audit
/// (2 out) and acked by both (2 in).
const BROKER_MESSAGES_AT_LEAST: f64 = 12.0;

/// The most a disclosure could be delivered at on this machine if it cost nothing but what
/// the protocol cannot do without, each part measured in the same run: all its crypto (the
/// crypto phase with the receipt: seal and sign, verify and open, the audit's checks, for
/// the referral and its receipt) and the broker's part of its twelve messages (the raw
/// phase's CPU, nats-server's and both clients', per message through the broker). No
/// storage, no HTTP, no scheduling: a ceiling no build of this design can pass here.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ceiling {
    pub crypto_ms: f64,
    pub broker_ms: f64,
    pub floor_ms: f64,
    pub per_second: f64,
    pub over_crypto_limit: f64,
}

impl Ceiling {
    fn of(cores: usize, raw: &Phase, crypto: &Phase) -> Option<Ceiling> {
        let crypto_ms = crypto.with_receipt_cpu_ms?;
        let through_broker = raw.broker_messages_per_disclosure.map(|m| m.published + m.delivered)?;
        let raw_ms: f64 = raw.cpu_seconds.values().sum::<f64>() * 1000.0 / raw.messages.max(1) as f64;
        let broker_ms = raw_ms / through_broker.max(1e-9) * BROKER_MESSAGES_AT_LEAST;
        let floor_ms = crypto_ms + broker_ms;
        let per_second = cores as f64 * 1000.0 / floor_ms.max(1e-9);
        Some(Ceiling { crypto_ms, broker_ms, floor_ms, per_second, over_crypto_limit: per_second / crypto.per_second.max(1e-9) })
    }
}

fn report(args: &BenchArgs, raw: &Phase, crypto: &Phase, hub: &Phase) -> anyhow::Result<()> {
    let hub_raw = hub.per_second / raw.per_second.max(1e-9);
    let hub_crypto = hub.per_second / crypto.per_second.max(1e-9);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ceiling = Ceiling::of(cores, raw, crypto);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"args": {"messages": args.messages, "agencies": args.agencies, "payload": args.payload, "rate": args.rate, "workers_per_service": args.workers_per_service(), "login": args.login},
            "raw": raw, "crypto_limit": crypto, "hub": hub, "hub_over_raw": hub_raw, "hub_over_crypto_limit": hub_crypto,
            "hub_over_crypto_limit_with_receipt": crypto.with_receipt_per_second.map(|r| hub.per_second / r.max(1e-9)),
            "ceiling": ceiling}))?);
        return Ok(());
    }
    println!("\n{:<14} {:>12} {:>9} {:>9} {:>9} {:>9}   peak RSS", "phase", "messages/s", "p50 ms", "p95 ms", "p99 ms", "max ms");
    for p in [raw, crypto, hub] {
        let rss = p.peak_rss_mb.iter().map(|(k, v)| format!("{k} {v:.1} MB")).collect::<Vec<_>>().join(", ");
        println!("{:<14} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2}   {rss}", p.name, p.per_second, p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms);
    }
    if !hub.cpu_seconds.is_empty() {
        let total: f64 = hub.cpu_seconds.values().sum();
        let each = hub.cpu_seconds.iter().map(|(k, v)| format!("{k} {v:.1}")).collect::<Vec<_>>().join(", ");
        println!("\nCPU seconds during the hub phase: {total:.1} in all ({:.2} ms per disclosure): {each}", total * 1000.0 / hub.messages as f64);
    }
    if !hub.context_switches_per_disclosure.is_empty() {
        let total: f64 = hub.context_switches_per_disclosure.values().sum();
        let each = hub.context_switches_per_disclosure.iter().map(|(k, v)| format!("{k} {v:.1}")).collect::<Vec<_>>().join(", ");
        println!("context switches per disclosure: {total:.0} in all: {each}");
    }
    if !hub.stages.is_empty() {
        println!("\nwhere the hub's latency goes (p50 / p99 ms):");
        for stage in &hub.stages {
            println!("  {:<60} {:>8.1} {:>8.1}", stage.name, stage.p50_ms, stage.p99_ms);
        }
    }
    if let Some(m) = hub.broker_messages_per_disclosure {
        println!("\nbroker messages per disclosure (nats-server /varz): {:.1} published by clients, {:.1} delivered to clients", m.published, m.delivered);
    }
    if let Some(a) = hub.accepted_per_second {
        println!("\nthe senders' APIs accepted {a:.0} sends/s; delivery to the inbox ran at {:.0}/s", hub.per_second);
    }
    println!("\nhub / raw JetStream:   {:.1} %", hub_raw * 100.0);
    println!("hub / crypto limit:    {:.1} %   (target >= 70 %)", hub_crypto * 100.0);
    if let Some(with_receipt) = crypto.with_receipt_per_second {
        println!(
            "hub / crypto limit with the delivered receipt ({with_receipt:.0}/s, the crypto the hub does per referral): {:.1} %",
            hub.per_second / with_receipt.max(1e-9) * 100.0
        );
    }
    if let Some(c) = ceiling {
        println!(
            "ceiling of this design here: {:.0}/s = {:.1} % of the crypto limit, if a disclosure cost only its crypto ({:.3} ms of CPU, receipt and audit included) and the broker's part of its {BROKER_MESSAGES_AT_LEAST} messages ({:.3} ms), on {cores} cores",
            c.per_second,
            c.over_crypto_limit * 100.0,
            c.crypto_ms,
            c.broker_ms
        );
    }
    if args.rate.is_some() {
        println!("hub p99 at the offered rate: {:.2} ms   (target < 20 ms at 500/s)", hub.p99_ms);
    }
    let agencies = |m: &BTreeMap<String, f64>| m.iter().filter(|(k, _)| *k != "audit" && !k.starts_with("nats-server")).map(|(_, v)| *v).fold(0.0, f64::max);
    println!("largest agency service peak RSS during the phase: {:.1} MB   (target < 40 MB)", agencies(&hub.peak_rss_mb));
    let before = if args.login == Login::Password { "start, and a password login: argon2id's 19 MiB" } else { "start" };
    println!("largest agency service peak RSS before it ({before}): {:.1} MB", agencies(&hub.peak_rss_mb_before));
    Ok(())
}

/// Raw messages at least: enough for half a second or more of the raw phase on a small machine,
/// so that its CPU (the ceiling's broker part) is read to a few percent, not to tens.
const RAW_AT_LEAST: usize = 20_000;

/// Publishes N payloads with acks in flight while a pull consumer acks them as they come.
async fn raw_phase(nats: &NatsChild, data: &std::path::Path, args: &BenchArgs) -> anyhow::Result<Phase> {
    use async_nats::jetstream::{self, consumer::pull, stream};
    // The same broker, TLS and all, as the administrator (the only identity that may make a stream).
    let js = jetstream::new(crate::nats::connect_admin(&nats.url, data).await?);
    let stream = js
        .get_or_create_stream(stream::Config { name: "BENCH_RAW".into(), subjects: vec!["bench.raw".into()], storage: stream::StorageType::File, ..Default::default() })
        .await?;
    let consumer = stream
        .get_or_create_consumer("bench", pull::Config { durable_name: Some("bench".into()), ack_policy: jetstream::consumer::AckPolicy::Explicit, ..Default::default() })
        .await?;
    // At least RAW_AT_LEAST messages: the phase runs at tens of thousands a second, and /proc
    // counts CPU in hundredths of a second.
    let n = args.messages.max(RAW_AT_LEAST);
    let body = filler(args.payload);
    // What the broker's part of a message costs: nats-server's CPU and the bench's own (the
    // publisher's and the consumer's client work), and the broker's messages per message.
    let pids = nats.pid().map(|p| ("nats-server".to_owned(), p)).into_iter().chain([("bench (publisher and consumer)".to_owned(), std::process::id())]).collect();
    let meter = Meter::start(pids, nats).await;
    let reader = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(n);
        let mut messages = consumer.messages().await?;
        while latencies.len() < n {
            let m = messages.next().await.context("the consumer ended")??;
            let sent: u128 = std::str::from_utf8(&m.payload[..20]).ok().and_then(|s| s.trim().parse().ok()).unwrap_or_default();
            latencies.push((now_us() - sent) as f64 / 1000.0);
            m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        anyhow::Ok(latencies)
    });
    let start = Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    for _ in 0..n {
        let payload = format!("{:>20}{body}", now_us());
        acks.push(std::future::IntoFuture::into_future(js.publish("bench.raw", payload.into()).await?));
        while acks.len() >= 256 {
            acks.next().await.transpose()?;
        }
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    let latencies = reader.await??;
    let elapsed = start.elapsed();
    let (cpu_seconds, broker_messages_per_disclosure) = meter.read(nats, n).await;
    let (p50, p95, p99, max) = percentiles(latencies);
    Ok(Phase {
        name: "raw JetStream".into(),
        messages: n,
        per_second: n as f64 / elapsed.as_secs_f64(),
        p50_ms: p50,
        p95_ms: p95,
        p99_ms: p99,
        max_ms: max,
        cpu_seconds,
        broker_messages_per_disclosure,
        ..Default::default()
    })
}

fn now_us() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or_default()
}

/// The benches' referral from the agency of `isp` to the IDVA: high risk without consent
/// (no consent record to look up), with a DASH summary its sender signs, and `reason` as its
/// free text.
pub(crate) fn referral(isp: &isp::Isp, reason: &str) -> isp::Outgoing {
    use proto::v1::{IdvaReferral, Payload, Person, RiskLevel, payload::Body};
    let mut summary = proto::v1::DashAssessment {
        checklist_version: isp::risk::CHECKLISTS[0].version.into(),
        assessed_on: "2026-11-27".into(),
        score: 15,
        risk: RiskLevel::High as i32,
        assessment_id: uuid::Uuid::now_v7().to_string(),
        assessor: "bench".into(),
        ..Default::default()
    };
    isp::risk::sign_summary(&isp.keys, &mut summary);
    isp::Outgoing {
        recipient: RECIPIENT.into(),
        kind: isp::Kind::IdvaReferral,
        purpose: "safeguarding".into(),
        lawful_basis: "uk-gdpr-9-2-g-dpa-s1-p18".into(),
        consent: None,
        risk: RiskLevel::High,
        subject_ref: String::new(),
        case_ref: "BENCH-1".into(),
        in_reply_to: String::new(),
        justification: Some(isp::seal::Justification { officer: "bench".into(), rationale_code: "asking-would-increase-risk".into(), rationale: "bench".into() }),
        payload: Payload {
            body: Some(Body::IdvaReferral(IdvaReferral {
                survivor: Some(Person { full_name: "Synthetic Bench Person".into(), date_of_birth: "1990-01-01".into(), ..Default::default() }),
                reason: reason.to_owned(),
                survivor_aware: true,
                dash: Some(summary),
                ..Default::default()
            })),
        },
    }
}

/// Seal at the sender, open at the recipient and verify at audit, for every payload, on
/// every core at once. The consent check is left out (it is a lookup, not crypto).
fn crypto_phase(data: &Path, args: &BenchArgs) -> anyhow::Result<Phase> {
    let sender = Arc::new(runtime::Config::embedded(data, SENDERS[0], "").load_isp()?);
    let recipient = Arc::new(runtime::Config::embedded(data, RECIPIENT, "").load_isp()?);
    // The crypto limit is measured without a consent record: a "high risk, without consent"
    // referral to the IDVA needs none and seals and opens the same way, plus the check of its
    // signed DASH summary (one more signature verified at the recipient).
    let out = referral(&sender, &filler(args.payload));
    sender.seal(&out, None).context("the bench referral does not seal")?;
    // The delivered receipt the IDVA seals back for each referral, as its service does.
    let original = uuid::Uuid::now_v7().to_string();
    let receipt = runtime::receipts::receipt(&recipient, &original, SENDERS[0], "", "BENCH-1", proto::v1::AckStatus::Received, "", "", "")?;
    recipient.seal(&receipt, None).context("the bench receipt does not seal")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_core = args.messages.div_ceil(cores);
    // Seal at the sender, open at the recipient, verify at audit; with `receipt`, then the
    // same for the receipt the other way. Latencies in ms, one per disclosure.
    let run = |with_receipt: bool| -> anyhow::Result<(Vec<f64>, Duration)> {
        let start = Instant::now();
        let all = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..cores)
                .map(|_| {
                    let (sender, recipient, out, receipt) = (sender.clone(), recipient.clone(), out.clone(), receipt.clone());
                    scope.spawn(move || -> anyhow::Result<Vec<f64>> {
                        let mut latencies = Vec::with_capacity(per_core);
                        for _ in 0..per_core {
                            let t = Instant::now();
                            let sealed = sender.seal(&out, None)?;
                            recipient.open(&sealed.envelope).map_err(|(_, e)| anyhow::anyhow!("{e}"))?;
                            isp::seal::verify_envelope(&recipient.directory, &sealed.envelope)?;
                            if with_receipt {
                                let sealed = recipient.seal(&receipt, None)?;
                                sender.open(&sealed.envelope).map_err(|(_, e)| anyhow::anyhow!("{e}"))?;
                                isp::seal::verify_envelope(&sender.directory, &sealed.envelope)?;
                            }
                            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                        Ok(latencies)
                    })
                })
                .collect();
            let mut all = Vec::new();
            for h in handles {
                all.extend(h.join().map_err(|_| anyhow::anyhow!("a crypto thread panicked"))??);
            }
            anyhow::Ok(all)
        })?;
        Ok((all, start.elapsed()))
    };
    let (all, elapsed) = run(false)?;
    let cpu_before = cpu_seconds(std::process::id());
    let (with_receipt, with_receipt_elapsed) = run(true)?;
    let with_receipt_cpu_ms = cpu_before.zip(cpu_seconds(std::process::id())).map(|(before, after)| (after - before) * 1000.0 / with_receipt.len() as f64);
    let (p50, p95, p99, max) = percentiles(all.clone());
    Ok(Phase {
        name: "crypto limit".into(),
        messages: all.len(),
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: p50,
        p95_ms: p95,
        p99_ms: p99,
        max_ms: max,
        with_receipt_per_second: Some(with_receipt.len() as f64 / with_receipt_elapsed.as_secs_f64()),
        with_receipt_cpu_ms,
        ..Default::default()
    })
}

/// One service of the partnership as its own `hub serve` process, `workers` tokio threads.
pub(crate) async fn serve(name: &str, data: &Path, nats_url: &str, database_url: Option<&str>, prefix: &str, workers: Option<u16>) -> anyhow::Result<Served> {
    serve_with(name, data, nats_url, database_url, prefix, workers, &[]).await
}

/// As [`serve`], with more environment on top (a sender's `HUB_OIDC_*`).
async fn serve_with(name: &str, data: &Path, nats_url: &str, database_url: Option<&str>, prefix: &str, workers: Option<u16>, more: &[(String, String)]) -> anyhow::Result<Served> {
    // Read by the tokio runtime `hub serve` builds.
    let workers = workers.map(|n| n.to_string());
    let env: Vec<(&str, &str)> =
        workers.iter().map(|n| ("TOKIO_WORKER_THREADS", n.as_str())).chain(more.iter().map(|(k, v)| (k.as_str(), v.as_str()))).collect();
    Served::spawn(&std::env::current_exe()?, name, data, nats_url, database_url, prefix, &env).await
}

/// The resource indicator of an agency's service at the identity provider: the `aud` of
/// the access tokens meant for it.
fn resource_of(agency: &str) -> String {
    format!("urn:hub:{agency}")
}

/// Long enough to outlive any run: the bench gets each sender's token once.
const TOKEN_TTL_SECS: u64 = 24 * 60 * 60;

/// The senders' case-management systems at the identity provider: each a confidential client
/// whose client_credentials tokens say `hub_agency` = its agency and `hub_roles` =
/// caseworker, for its agency's service alone.
struct CaseSystems {
    provider: crate::oidc_provider::Provider,
    secret: String,
}

impl CaseSystems {
    /// Starts the provider with a client per sender, and per sender's service a resource
    /// (RS256-signed JWT access tokens) and the console client its browser login would use.
    async fn start(senders: &[&str]) -> anyhow::Result<CaseSystems> {
        let secret = format!("{:032x}", rand::random::<u128>());
        let mut clients = Vec::new();
        let mut resources = serde_json::Map::new();
        for agency in senders {
            resources.insert(resource_of(agency), json!({"alg": "RS256", "ttl": TOKEN_TTL_SECS}));
            clients.push(json!({"client_id": format!("{agency}-cms"), "client_secret": secret, "grant_types": ["client_credentials"],
                "response_types": [], "redirect_uris": [], "hub_agency": agency, "hub_roles": ["caseworker"], "hub_resources": [resource_of(agency)]}));
            clients.push(json!({"client_id": format!("{agency}-console"), "token_endpoint_auth_method": "none", "redirect_uris": [CONSOLE_REDIRECT]}));
        }
        let config = json!({"resources": resources, "clients": clients});
        let provider = tokio::task::spawn_blocking(move || crate::oidc_provider::Provider::start(&config, 0)).await??;
        Ok(CaseSystems { provider, secret })
    }

    /// A sender's service's `HUB_OIDC_*`, as its deployment would set them.
    fn service_env(&self, agency: &str) -> Vec<(String, String)> {
        [
            ("HUB_OIDC_ISSUER", self.provider.issuer.clone()),
            ("HUB_OIDC_AUDIENCE", resource_of(agency)),
            ("HUB_OIDC_CLIENT_ID", format!("{agency}-console")),
            ("HUB_OIDC_REDIRECT_URI", CONSOLE_REDIRECT.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// A client that sends the agency's case-management system's access token with every request.
    async fn client(&self, agency: &str) -> anyhow::Result<reqwest::Client> {
        let token = self.provider.client_credentials(&format!("{agency}-cms"), &self.secret, &resource_of(agency)).await?;
        let left = token.expires_in.unwrap_or_default();
        anyhow::ensure!(left.as_secs() + 60 >= TOKEN_TTL_SECS, "the provider gave {agency}'s token {left:?}, not the {TOKEN_TTL_SECS} s asked for");
        let mut bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.token))?;
        bearer.set_sensitive(true);
        let headers = reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, bearer)]);
        Ok(reqwest::Client::builder().default_headers(headers).build()?)
    }
}

/// The redirect URI of the senders' console clients. The bench logs nobody in through a
/// browser; `HUB_OIDC_REDIRECT_URI` is set because a service configured for OIDC needs one.
const CONSOLE_REDIRECT: &str = "http://127.0.0.1:9/login/oidc/callback";

async fn hub_phase(data: &Path, nats: &NatsChild, database_url: Option<&str>, prefix: &str, args: &BenchArgs) -> anyhow::Result<Phase> {
    let nats_url = nats.url.as_str();
    let workers = args.workers_per_service();
    // The recipient logs each envelope once its inbox transaction has committed, with the
    // time stamped after the commit: the end of the latency measured.
    let recipient_log = data.join("idva-bench.log");
    let recipient_env: Vec<(&str, String)> =
        [("RUST_LOG", "warn,runtime::inbox=info".to_owned())].into_iter().chain(workers.map(|n| ("TOKIO_WORKER_THREADS", n.to_string()))).collect();
    let recipient_env: Vec<(&str, &str)> = recipient_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut services = vec![
        serve("audit", data, nats_url, database_url, prefix, workers).await?,
        Served::spawn_logging(&std::env::current_exe()?, RECIPIENT, data, nats_url, database_url, prefix, &recipient_env, Some(&recipient_log)).await?,
    ];
    let senders: Vec<&str> = SENDERS[..args.agencies].to_vec();
    // With --login oidc, the identity provider the senders' services trust, started first
    // (a service reaches it at start); it runs until the phase ends.
    let case_systems = match args.login {
        Login::Oidc => Some(CaseSystems::start(&senders).await.context("starting the OpenID provider")?),
        Login::Password => None,
    };
    for s in &senders {
        let oidc = case_systems.as_ref().map(|c| c.service_env(s)).unwrap_or_default();
        services.push(serve_with(s, data, nats_url, database_url, prefix, workers, &oidc).await?);
    }
    let url_of = |name: &str| services.iter().find(|s| s.name == name).map(|s| s.url.clone()).unwrap();
    // Each sender's caseworker logs in and records the (synthetic) survivor's consent to the IDVA referral.
    let clients = match &case_systems {
        Some(case_systems) => {
            let mut clients = Vec::new();
            for s in &senders {
                clients.push(case_systems.client(s).await.with_context(|| format!("{s}'s access token"))?);
            }
            clients
        }
        None => password_logins(data, database_url, prefix, &senders, &url_of).await?,
    };
    let subject = json!({"full_name": "Synthetic Bench Person", "date_of_birth": "1990-01-01"});
    for (s, http) in senders.iter().zip(&clients) {
        let (status, v) = post(http, &format!("{}/consents", url_of(s)), &json!({"consent_id": "BNC-1", "state": "given",
            "subject": subject, "scope": {"roles": ["idva"], "purposes": ["safeguarding"]}})).await?;
        anyhow::ensure!(status == 201, "recording consent at {s}: {v}");
    }
    let body = |n: usize| {
        json!({"to": RECIPIENT, "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a", "consent": {"id": "BNC-1", "state": "given"},
            "subject": subject, "case_ref": format!("BENCH-{n}"),
            "payload": {"idvaReferral": {"survivor": {"fullName": "Synthetic Bench Person", "dateOfBirth": "1990-01-01"}, "reason": filler(args.payload), "survivorAware": true}}})
    };
    let n = args.messages;
    // Every request body serialised before the clock starts: the load generator shares the
    // cores with what it measures, so it does as little as it can while measuring.
    let bodies: Vec<bytes::Bytes> = (0..n).map(|i| serde_json::to_vec(&body(i)).map(bytes::Bytes::from)).collect::<Result<_, _>>()?;
    let pids: Vec<(String, u32)> = services
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.pid()?)))
        .chain(nats.pid().map(|p| ("nats-server".to_owned(), p)))
        .chain([("bench client".to_owned(), std::process::id())])
        .collect();
    let switches_before: Vec<u64> = pids.iter().map(|(_, pid)| context_switches(*pid).unwrap_or_default()).collect();
    let mut peak_rss_mb_before = BTreeMap::new();
    for s in &services {
        if let Some(pid) = s.pid() {
            peak_rss_mb_before.insert(s.name.clone(), peak_rss_mb(pid).unwrap_or_default());
            reset_peak_rss(pid);
        }
    }
    let postgres_before = database_url.map(|_| postgres_cpu());
    let meter = Meter::start(pids.clone(), nats).await;
    let start = Instant::now();
    let start_ms = isp::now_ms() as f64;
    // (envelope id, send time in ms since the epoch: the scheduled time under --rate)
    let sends: Vec<anyhow::Result<(String, f64)>> = futures::stream::iter(0..n)
        .map(|i| {
            let (http, url, body) = (clients[i % senders.len()].clone(), format!("{}/disclosures", url_of(senders[i % senders.len()])), bodies[i].clone());
            let scheduled = args.rate.map(|r| start + Duration::from_secs_f64(i as f64 / r));
            async move {
                if let Some(at) = scheduled {
                    tokio::time::sleep_until(at.into()).await;
                }
                let sent_ms = match scheduled {
                    Some(at) => start_ms + at.duration_since(start).as_secs_f64() * 1000.0,
                    None => isp::now_ms() as f64,
                };
                let response = http.post(&url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body).send().await?;
                let status = response.status().as_u16();
                let v: Value = response.json().await.unwrap_or(Value::Null);
                anyhow::ensure!(status == 201, "send refused: {v}");
                Ok((v["envelope_id"].as_str().unwrap_or_default().to_owned(), sent_ms))
            }
        })
        .buffer_unordered(if args.rate.is_some() { 1024 } else { 64 })
        .collect()
        .await;
    let sends: BTreeMap<String, f64> = sends.into_iter().collect::<anyhow::Result<_>>()?;
    let accepted = n as f64 / start.elapsed().as_secs_f64();
    // Wait for every one in the IDVA's inbox and in the ledger.
    let idva_db = local::database_url(&bench_options(data, database_url, prefix), RECIPIENT).await?;
    let audit_db = local::database_url(&bench_options(data, database_url, prefix), "audit").await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let received: Vec<(String, i64)> = loop {
        let rows = read_received(&idva_db).await?;
        if rows.len() >= n {
            break rows;
        }
        if Instant::now() > deadline {
            bail!("only {} of {n} disclosures reached the IDVA's inbox", rows.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let delivered = start.elapsed();
    // Every one's commit stamp, from the recipient's log (written just after each commit).
    let committed: BTreeMap<String, i64> = loop {
        let stamps = read_commit_stamps(&recipient_log)?;
        if received.iter().all(|(id, _)| stamps.contains_key(id)) {
            break stamps;
        }
        if Instant::now() > deadline {
            bail!("the IDVA's log names {} of {n} commits", stamps.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    loop {
        if count_ledger(&audit_db).await? >= 2 * n as i64 {
            break; // each referral and its delivered receipt
        }
        if Instant::now() > deadline {
            bail!("the ledger never caught up");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut cpu_seconds, broker_messages_per_disclosure) = meter.read(nats, n).await;
    let context_switches_per_disclosure: BTreeMap<String, f64> = pids
        .iter()
        .zip(switches_before)
        .map(|((name, pid), before)| (name.clone(), context_switches(*pid).unwrap_or_default().saturating_sub(before) as f64 / n as f64))
        .collect();
    if let Some(before) = postgres_before {
        let used = postgres_cpu().into_iter().map(|(pid, now)| now - before.get(&pid).copied().unwrap_or_default()).sum();
        cpu_seconds.insert("postgresql server".into(), used);
    }
    let latencies: Vec<f64> = received.iter().filter_map(|(id, _)| Some((*committed.get(id)? as f64 - sends.get(id)?).max(0.0))).collect();
    let mut published = BTreeMap::new();
    for sender in &senders {
        published.extend(read_published(&local::database_url(&bench_options(data, database_url, prefix), sender).await?).await?);
    }
    let stage = |name: &str, ms: Vec<f64>| {
        let (p50, _, p99, _) = percentiles(ms);
        Stage { name: name.into(), p50_ms: p50, p99_ms: p99 }
    };
    let stages = vec![
        stage("send -> sealed (HTTP, batching, consent read, seal)", received.iter().filter_map(|(id, created)| Some((*created as f64 - sends.get(id)?).max(0.0))).collect()),
        stage("sealed -> published (commit, outbox, JetStream ack)", received.iter().filter_map(|(id, created)| Some((*published.get(id)? - created).max(0) as f64)).collect()),
        stage("published -> committed in the inbox (consume, checks, open, store, commit)", received.iter().filter_map(|(id, _)| Some((committed.get(id)? - *published.get(id)?).max(0) as f64)).collect()),
    ];
    let (p50, p95, p99, max) = percentiles(latencies);
    let mut rss = BTreeMap::new();
    for s in &mut services {
        if let Some(pid) = s.pid() {
            rss.insert(s.name.clone(), peak_rss_mb(pid).unwrap_or_default());
        }
        let _ = s.child.kill().await;
    }
    if let Some(pid) = nats.pid() {
        // The same server ran the raw phase: its peak covers the whole bench.
        rss.insert("nats-server (whole run)".into(), peak_rss_mb(pid).unwrap_or_default());
    }
    Ok(Phase {
        name: "hub".into(),
        messages: n,
        per_second: n as f64 / delivered.as_secs_f64(),
        p50_ms: p50,
        p95_ms: p95,
        p99_ms: p99,
        max_ms: max,
        peak_rss_mb: rss,
        peak_rss_mb_before,
        accepted_per_second: Some(accepted),
        cpu_seconds,
        context_switches_per_disclosure,
        stages,
        broker_messages_per_disclosure,
        ..Default::default()
    })
}

/// A caseworker of each sender logged in with a password: a client with its session cookie
/// and CSRF token.
async fn password_logins(data: &Path, database_url: Option<&str>, prefix: &str, senders: &[&str], url_of: &dyn Fn(&str) -> String) -> anyhow::Result<Vec<reqwest::Client>> {
    let directory = isp::Directory::load(&crate::partnership::directory_path(data))?;
    let options = bench_options(data, database_url, prefix);
    let mut logins = crate::staff::Logins::default();
    for s in senders {
        logins.add_service(s, &crate::local::database_url(&options, s).await?, Some(directory.require(s)?.role));
    }
    let mut clients = Vec::new();
    for s in senders {
        clients.push(logins.as_role(s, &url_of(s), runtime::auth::Role::Caseworker).await?);
    }
    Ok(clients)
}

fn bench_options(data: &Path, database_url: Option<&str>, prefix: &str) -> local::Options {
    local::Options { data: data.to_owned(), database_url: database_url.map(str::to_owned), database_prefix: Some(prefix.to_owned()), ..Default::default() }
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let response = http.post(url).json(body).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// The bench referrals in the IDVA's inbox: envelope id, sealed at (ms).
async fn read_received(url: &str) -> anyhow::Result<Vec<(String, i64)>> {
    use sqlx::Connection as _;
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let rows = sqlx::query_as("SELECT envelope_id, created_at_ms FROM inbox WHERE kind = $1").bind(isp::kind::name(isp::Kind::IdvaReferral)).fetch_all(&mut conn).await?;
    conn.close().await?;
    Ok(rows)
}

/// The commit stamps in a service's log: envelope id -> `committed_at_ms` of each
/// "envelope received and stored" line.
fn read_commit_stamps(log: &Path) -> anyhow::Result<BTreeMap<String, i64>> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let field = |line: &str, name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_owned);
    Ok(text
        .lines()
        .filter(|l| l.contains("envelope received and stored"))
        .filter_map(|l| Some((field(l, "envelope_id=")?, field(l, "committed_at_ms=")?.parse().ok()?)))
        .collect())
}

/// CPU seconds of some processes and the broker's message counts from a start: what a phase
/// cost, read from `/proc` and nats-server's `/varz` before and after it, nothing in between.
struct Meter {
    pids: Vec<(String, u32)>,
    cpu: Vec<f64>,
    varz: Option<(u64, u64)>,
}

impl Meter {
    async fn start(pids: Vec<(String, u32)>, nats: &NatsChild) -> Meter {
        let cpu = pids.iter().map(|(_, pid)| cpu_seconds(*pid).unwrap_or_default()).collect();
        Meter { pids, cpu, varz: varz(nats).await }
    }

    /// CPU seconds each process used since the start, and the broker's messages per one of
    /// the `n` the phase handled.
    async fn read(&self, nats: &NatsChild, n: usize) -> (BTreeMap<String, f64>, Option<BrokerMessages>) {
        let cpu = self.pids.iter().zip(&self.cpu).map(|((name, pid), before)| (name.clone(), cpu_seconds(*pid).unwrap_or_default() - before)).collect();
        let broker = self.varz.zip(varz(nats).await).map(|((in0, out0), (in1, out1))| BrokerMessages {
            published: (in1 - in0) as f64 / n as f64,
            delivered: (out1 - out0) as f64 / n as f64,
        });
        (cpu, broker)
    }
}

/// Messages published to and delivered by the broker so far (`in_msgs`, `out_msgs` of its
/// `/varz`), when it has a monitoring port.
async fn varz(nats: &NatsChild) -> Option<(u64, u64)> {
    let v: Value = reqwest::get(format!("http://127.0.0.1:{}/varz", nats.monitor_port?)).await.ok()?.json().await.ok()?;
    Some((v["in_msgs"].as_u64()?, v["out_msgs"].as_u64()?))
}

/// When a sender's outbox saw each message acknowledged by JetStream (ms).
async fn read_published(url: &str) -> anyhow::Result<Vec<(String, i64)>> {
    use sqlx::Connection as _;
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let rows = sqlx::query_as("SELECT id, published_at_ms FROM outbox WHERE published_at_ms IS NOT NULL").fetch_all(&mut conn).await?;
    conn.close().await?;
    Ok(rows)
}

async fn count_ledger(url: &str) -> anyhow::Result<i64> {
    use sqlx::Connection as _;
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger WHERE entry_type = $1").bind(audit::ledger::EntryType::Disclosure.as_str()).fetch_one(&mut conn).await?;
    conn.close().await?;
    Ok(n)
}

async fn drop_databases(server: &str, prefix: &str) {
    use sqlx::{Connection as _, Executor as _, Row as _};
    let Ok(mut conn) = sqlx::AnyConnection::connect(server).await else { return };
    let Ok(rows) = sqlx::query("SELECT datname::text AS datname FROM pg_database WHERE datname LIKE $1").bind(format!("{prefix}\\_%")).fetch_all(&mut conn).await else { return };
    for r in rows {
        if let Ok(name) = r.try_get::<String, _>("datname") {
            let _ = conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BrokerMessages, Ceiling, Phase, read_commit_stamps};

    #[test]
    fn the_ceiling_adds_the_crypto_to_twelve_broker_messages_at_the_raw_phases_cost() {
        // 10,000 raw messages, 4 through the broker each, for 2 CPU seconds: 0.05 ms a message
        // through the broker, 0.6 ms for twelve. Crypto 0.4 ms with the receipt: 1 ms in all,
        // 2,000/s on 2 cores, half of a crypto limit of 4,000/s.
        let raw = Phase {
            messages: 10_000,
            cpu_seconds: [("nats-server".to_owned(), 1.5), ("bench".to_owned(), 0.5)].into(),
            broker_messages_per_disclosure: Some(BrokerMessages { published: 2.0, delivered: 2.0 }),
            ..Default::default()
        };
        let crypto = Phase { per_second: 4_000.0, with_receipt_cpu_ms: Some(0.4), ..Default::default() };
        let c = Ceiling::of(2, &raw, &crypto).unwrap();
        assert!((c.broker_ms - 0.6).abs() < 1e-9, "{c:?}");
        assert!((c.floor_ms - 1.0).abs() < 1e-9, "{c:?}");
        assert!((c.per_second - 2_000.0).abs() < 1e-6, "{c:?}");
        assert!((c.over_crypto_limit - 0.5).abs() < 1e-9, "{c:?}");
        // Without the crypto's CPU or the broker's counts there is no ceiling to claim.
        assert_eq!(Ceiling::of(2, &Phase { broker_messages_per_disclosure: None, ..raw.clone() }, &crypto), None);
        assert_eq!(Ceiling::of(2, &raw, &Phase { with_receipt_cpu_ms: None, ..crypto }), None);
    }

    #[test]
    fn commit_stamps_are_read_from_the_recipients_log_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("idva.log");
        // As the service's formatter writes them (no colours), with other lines between.
        std::fs::write(
            &log,
            "2026-11-27T17:40:12.123456Z  WARN something else happened\n\
             2026-11-27T17:40:12.223456Z  INFO envelope received and stored envelope_id=0193a1b2-0000-7000-8000-000000000001 kind=housing.idva_referral \
             sender=housing-northbridge subject_ref=s-00 rule=idva-referral committed_at_ms=1764265212223\n\
             2026-11-27T17:40:12.323456Z  INFO envelope received and stored envelope_id=0193a1b2-0000-7000-8000-000000000002 kind=referral.ack \
             sender=housing-northbridge subject_ref= rule=ack committed_at_ms=1764265212323\n",
        )
        .unwrap();
        let stamps = read_commit_stamps(&log).unwrap();
        assert_eq!(stamps.len(), 2);
        assert_eq!(stamps["0193a1b2-0000-7000-8000-000000000001"], 1_764_265_212_223);
        assert_eq!(stamps["0193a1b2-0000-7000-8000-000000000002"], 1_764_265_212_323);
    }
}
