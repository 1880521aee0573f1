//! `hub bench limits`: what slow and large clients cost one agency service with the HTTP
//! limits of `runtime::serve` in force, and whether its `/health` answers meanwhile. Figures,
//! not assertions; the target (under 100 MB, `/health` answering throughout) is reported.
//!
//! The housing service runs as its own process (`hub serve`) on a fresh local partnership and
//! broker, with the limits of its environment (`HUB_HTTP_*`; the defaults when unset). Its
//! memory is read from /proc/PID/status: VmRSS sampled every 10 ms, and VmHWM, the kernel's
//! exact peak, reset before each phase (writing 5 to /proc/PID/clear_refs).
//!
//! 1. slow connections (5,000): each sends half a request line and stalls; they are held
//!    beyond the header timeout;
//! 2. large bodies (200 at once): referrals of the largest body the service takes, sent by a
//!    logged-in caseworker, each on its own connection.
//!
//! Throughout each phase `/health` is asked every 100 ms on a new connection. The bench's own
//! sockets count against its open-file limit (read from /proc/self/limits; raise it with
//! `ulimit -n` if the bench says so); the service needs no more than its connection cap.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt as _, net::TcpStream};
use tokio_util::sync::CancellationToken;

use crate::{nats::NatsChild, partnership, processes::rss_mb};

#[derive(Debug, Clone, clap::Args)]
pub struct LimitsArgs {
    /// Slow connections opened in the first phase.
    #[arg(long, default_value_t = 5000)]
    pub connections: usize,
    /// How long the slow connections are held, in seconds (default: past the header timeout).
    #[arg(long)]
    pub hold_secs: Option<u64>,
    /// Largest-size referrals sent at once in the second phase.
    #[arg(long, default_value_t = 200)]
    pub bodies: usize,
}

const AGENCY: &str = "housing-northbridge";
const RECIPIENT: &str = "idva-northbridge";
/// The target the figures are read against.
const TARGET_MB: f64 = 100.0;

/// What one phase measured.
struct Phase {
    name: String,
    /// The kernel's peak (VmHWM) during the phase, and the highest VmRSS sampled.
    peak_mb: Option<f64>,
    sampled_mb: f64,
    /// VmRSS once the phase is over.
    after_mb: f64,
    health: HealthWatch,
    outcome: String,
}

pub async fn run(args: LimitsArgs) -> anyhow::Result<()> {
    let limits = runtime::serve::Limits::from_env()?;
    let open_files = open_file_limit().unwrap_or(u64::MAX);
    // Its own sockets, the /health checks', reqwest's and the runtime's, with room to spare.
    let needed = (args.connections + args.bodies + 256) as u64;
    anyhow::ensure!(
        open_files >= needed,
        "this process may open {open_files} files and the bench needs about {needed}: raise the limit first, e.g. `ulimit -n {}`",
        needed.next_power_of_two()
    );
    sqlx::any::install_default_drivers();
    let dir = tempfile::Builder::new().prefix("hub-bench-limits").tempdir()?;
    let data = dir.path().to_owned();
    partnership::ensure_demo(&data)?;
    let nats = NatsChild::start(&data, None).await?;
    let mut service = crate::bench::serve(AGENCY, &data, &nats.url, None, "hub", None).await?;
    let pid = service.pid().context("the service has no pid")?;
    println!(
        "hub bench limits: {AGENCY} as its own process (pid {pid}); limits: head {} s, request {} s, {} requests and {} bytes of bodies at once, \
         {} connections, bodies up to {} bytes; this process may open {open_files} files",
        limits.header_timeout.as_secs(),
        limits.request_timeout.as_secs(),
        limits.max_concurrent,
        limits.max_body_bytes_in_flight,
        limits.max_connections,
        limits.max_body_bytes
    );
    let http = reqwest::Client::new();
    anyhow::ensure!(http.get(format!("{}/health", service.url)).send().await?.status().is_success(), "the service does not answer /health");
    let at_rest = rss_mb(pid, "VmRSS").unwrap_or_default();

    let hold = Duration::from_secs(args.hold_secs.unwrap_or(limits.header_timeout.as_secs() + 2));
    let slow = measure(pid, &service.url, format!("{} slow connections, held {} s", args.connections, hold.as_secs()), slow_connections(&service.url, args.connections, hold)).await?;
    let caseworker = caseworker(&data, &service.url).await?;
    let large = measure(
        pid,
        &service.url,
        format!("{} sends of {} bytes at once", args.bodies, limits.max_body_bytes),
        large_bodies(&caseworker, &service.url, args.bodies, limits.max_body_bytes),
    )
    .await?;
    let _ = service.child.kill().await;
    report(at_rest, &[slow, large]);
    Ok(())
}

fn report(at_rest: f64, phases: &[Phase]) {
    println!("\n{:<46} {:>9} {:>10} {:>9} {:>12} {:>13}   outcome", "phase", "peak MB", "sampled MB", "after MB", "/health ok", "slowest ms");
    println!("{:<46} {:>9.1}", "at rest", at_rest);
    for p in phases {
        let peak = p.peak_mb.map_or("n/a".to_owned(), |m| format!("{m:.1}"));
        let (ok, asked, slowest) = p.health.figures();
        println!("{:<46} {:>9} {:>10.1} {:>9.1} {:>12} {:>13.1}   {}", p.name, peak, p.sampled_mb, p.after_mb, format!("{ok}/{asked}"), slowest, p.outcome);
    }
    let worst = phases.iter().map(|p| p.peak_mb.unwrap_or(p.sampled_mb).max(p.sampled_mb)).fold(at_rest, f64::max);
    let health_held = phases.iter().all(|p| {
        let (ok, asked, _) = p.health.figures();
        ok == asked
    });
    println!(
        "\ntarget: under {TARGET_MB:.0} MB and /health answering throughout: peak {worst:.1} MB ({}), /health {}",
        if worst < TARGET_MB { "met" } else { "NOT met" },
        if health_held { "answered every time" } else { "MISSED some checks" }
    );
}

/// Runs `work` while sampling the service's memory and asking its `/health`.
async fn measure(pid: u32, url: &str, name: String, work: impl Future<Output = anyhow::Result<String>>) -> anyhow::Result<Phase> {
    // Reset the kernel's peak, so VmHWM is this phase's.
    let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let stop = CancellationToken::new();
    let sampled = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn({
        let (stop, sampled) = (stop.clone(), sampled.clone());
        async move {
            while !stop.is_cancelled() {
                if let Some(mb) = rss_mb(pid, "VmRSS") {
                    sampled.fetch_max((mb * 1000.0) as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    let health = HealthWatch::default();
    let watcher = tokio::spawn(health.clone().watch(format!("{url}/health"), stop.clone()));
    let outcome = work.await;
    stop.cancel();
    let _ = tokio::join!(sampler, watcher);
    Ok(Phase {
        name,
        peak_mb: if hwm_reset { rss_mb(pid, "VmHWM") } else { None },
        sampled_mb: sampled.load(Ordering::Relaxed) as f64 / 1000.0,
        after_mb: rss_mb(pid, "VmRSS").unwrap_or_default(),
        health,
        outcome: outcome?,
    })
}

/// Opens `n` connections that each send half a request line and stall, holds them for
/// `hold`, then says how many the service closed.
async fn slow_connections(url: &str, n: usize, hold: Duration) -> anyhow::Result<String> {
    let addr = url.trim_start_matches("http://").to_owned();
    let start = Instant::now();
    let mut open = Vec::with_capacity(n);
    let mut refused = 0;
    for _ in 0..n {
        match TcpStream::connect(&addr).await {
            Ok(mut stream) => {
                // A write to a connection already closed to make room may fail; it still counts.
                let _ = stream.write_all(b"GET /health HT").await;
                open.push(stream);
            }
            Err(_) => refused += 1,
        }
    }
    let connecting = start.elapsed();
    // A moment for the closing to arrive: those were closed to make room, not timed out.
    let moment = Duration::from_secs(1).min(hold);
    tokio::time::sleep(moment).await;
    let made_room = open.iter().filter(|s| closed_by_peer(s)).count();
    tokio::time::sleep(hold - moment).await;
    let closed = open.iter().filter(|s| closed_by_peer(s)).count();
    Ok(format!(
        "{} opened in {:.1} s ({refused} refused); closed by the service: {made_room} within 1 s (to make room), {closed} within {} s",
        open.len(),
        connecting.as_secs_f64(),
        hold.as_secs()
    ))
}

/// Whether the peer has closed the connection (end of file or reset), without waiting.
fn closed_by_peer(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Sends `n` referrals of exactly `bytes` bytes at once, each on its own connection.
async fn large_bodies(http: &reqwest::Client, url: &str, n: usize, bytes: usize) -> anyhow::Result<String> {
    let body = bytes::Bytes::from(referral_of_size(bytes));
    let start = Instant::now();
    let answers = futures::future::join_all((0..n).map(|_| {
        let request = http.post(format!("{url}/disclosures")).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
        async move { request.send().await.map(|r| r.status().as_u16()) }
    }))
    .await;
    let elapsed = start.elapsed();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for a in answers {
        *counts.entry(a.map_or_else(|e| format!("error ({})", if e.is_connect() { "connect" } else { "transport" }), |s| s.to_string())).or_default() += 1;
    }
    let counts: Vec<String> = counts.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
    Ok(format!("{} in {:.1} s", counts.join(", "), elapsed.as_secs_f64()))
}

/// A consented IDVA referral of exactly `bytes` bytes of JSON (its reason padded with
/// synthetic text).
fn referral_of_size(bytes: usize) -> Vec<u8> {
    let mut body = json!({"to": RECIPIENT, "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a", "consent": {"id": "bench-consent", "state": "given"},
        "subject": {"full_name": "Synthetic Bench Person", "date_of_birth": "1990-01-01"}, "case_ref": "BENCH-LIMITS",
        "payload": {"idvaReferral": {"survivor": {"fullName": "Synthetic Bench Person", "dateOfBirth": "1990-01-01"}, "reason": "", "survivorAware": true}}});
    let plain = serde_json::to_vec(&body).expect("serialisable").len();
    body["payload"]["idvaReferral"]["reason"] = Value::String("Synthetic bench narrative. ".repeat(bytes / 27 + 1)[..bytes.saturating_sub(plain)].to_owned());
    serde_json::to_vec(&body).expect("serialisable")
}

/// The housing caseworker, logged in, with the survivor's consent to the referral recorded.
async fn caseworker(data: &Path, url: &str) -> anyhow::Result<reqwest::Client> {
    let options = crate::local::Options { data: data.to_owned(), ..Default::default() };
    let mut logins = crate::staff::Logins::default();
    let role = isp::Directory::load(&partnership::directory_path(data))?.require(AGENCY)?.role;
    logins.add_service(AGENCY, &crate::local::database_url(&options, AGENCY).await?, Some(role));
    let http = logins.as_role(AGENCY, url, runtime::auth::Role::Caseworker).await?;
    let consent = json!({"consent_id": "bench-consent", "state": "given", "subject": {"full_name": "Synthetic Bench Person", "date_of_birth": "1990-01-01"},
        "scope": {"roles": ["idva"], "purposes": ["safeguarding"]}});
    let response = http.post(format!("{url}/consents")).json(&consent).send().await?;
    anyhow::ensure!(response.status().as_u16() == 201, "recording consent: HTTP {}", response.status());
    Ok(http)
}

/// `/health` asked every 100 ms on a new connection: how often it answered, and how slowly.
#[derive(Clone, Default)]
struct HealthWatch {
    asked: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    slowest_us: Arc<AtomicU64>,
}

impl HealthWatch {
    async fn watch(self, url: String, stop: CancellationToken) {
        // No pooled connections: each check is what a new client (a load balancer) sees.
        let Ok(http) = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build() else { return };
        while !stop.is_cancelled() {
            let start = Instant::now();
            self.asked.fetch_add(1, Ordering::Relaxed);
            if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                self.answered.fetch_add(1, Ordering::Relaxed);
                self.slowest_us.fetch_max(start.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Answered, asked, slowest answer in ms.
    fn figures(&self) -> (u64, u64, f64) {
        (self.answered.load(Ordering::Relaxed), self.asked.load(Ordering::Relaxed), self.slowest_us.load(Ordering::Relaxed) as f64 / 1000.0)
    }
}

/// This process's soft limit on open files, from /proc/self/limits.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits.lines().find(|l| l.starts_with("Max open files"))?.split_whitespace().nth(3)?.parse().ok()
}
