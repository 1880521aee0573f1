//! `hub audit bench`: the ledger at scale. Builds a fresh ledger of N synthetic entries
//! (realistic field sizes, a year of disclosures over N/5 people) through the same append
//! path the audit service uses, signing checkpoints as it goes, then times what an IG lead
//! waits for: full verification, a subject query, a month's query. It prints the SHA-256
//! rate measured in the same run, so the distance to the hashing limit shows.
//!
//! Figures, not assertions: nothing here fails on a slow machine.

use std::time::{Duration, Instant};

use audit::{checkpoints, ledger, query};
use isp::{AgencyKeys, Role, directory::generate_partnership};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// How many entries the ledger gets.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    /// Entries per append transaction (the audit service appends a fetch batch at a time).
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Sign a checkpoint every this many entries while ingesting.
    #[arg(long, default_value_t = 20_000)]
    pub checkpoint_every: u64,
}

const AGENCIES: [&str; 6] = ["housing-northbridge", "idva-northbridge", "marac-northbridge", "reciprocals-scheme", "perpetrator-pathways", "riverside-homes"];
const KINDS: [&str; 5] = ["housing.idva_referral", "marac.referral", "marac.research_request", "referral.ack", "reciprocal.request"];
const YEAR_MS: i64 = 365 * 86_400_000;

/// A synthetic entry shaped like a real disclosure entry (the signed header is random bytes
/// of a real header's size; the bench does not re-verify signatures).
fn entry(i: u64, start_ms: i64, step_ms: i64, subjects: u64, rng: &mut impl rand::RngCore) -> ledger::Entry {
    let mut signed = vec![0u8; 380];
    rng.fill_bytes(&mut signed);
    let sender = AGENCIES[(i % 6) as usize];
    let recipient = AGENCIES[((i / 6 + 1) % 6) as usize];
    ledger::Entry {
        stream_seq: i as i64 + 1,
        entry_type: if i % 50 == 0 { "near_miss".into() } else { "disclosure".into() },
        entry_id: uuid::Uuid::now_v7().to_string(),
        recorded_by: sender.into(),
        sender: sender.into(),
        recipient: recipient.into(),
        kind: KINDS[(i % 5) as usize].into(),
        purpose: "safeguarding".into(),
        lawful_basis: if i % 7 == 0 { "uk-gdpr-9-2-g-dpa-s1-p18".into() } else { "uk-gdpr-6-1-a".into() },
        consent_id: format!("consent-{}", i % subjects),
        consent_state: if i % 7 == 0 { "not-sought".into() } else { "given".into() },
        risk: "high".into(),
        subject_ref: format!("s-{:032x}", (i * 2_654_435_761) % subjects),
        case_ref: format!("CASE-{}", i % subjects),
        categories: "referral.referrer,survivor.identity,survivor.contact,perpetrator.identity,risk.dash".into(),
        forbidden: String::new(),
        policy_version: "2026-11-demo.1".into(),
        rule: "idva-referral".into(),
        reason: String::new(),
        without_consent: i % 7 == 0,
        in_reply_to: String::new(),
        occurred_at_ms: start_ms + i as i64 * step_ms,
        recorded_at_ms: start_ms + i as i64 * step_ms + 5,
        verified: false,
        signed,
        ..Default::default()
    }
}

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// SHA-256 throughput on this machine, on inputs the size of a ledger entry's canonical form.
fn sha256_rate() -> (f64, f64) {
    let input = vec![0x5au8; 700];
    let n = 200_000u64;
    let t = Instant::now();
    let mut acc = [0u8; 32];
    for _ in 0..n {
        acc = Sha256::new().chain_update(acc).chain_update(&input).finalize().into();
    }
    std::hint::black_box(acc);
    let d = t.elapsed();
    (per_sec(n, d), per_sec(n * 732, d) / 1e6)
}

pub async fn run(args: BenchArgs, database_url: Option<String>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (url, cleanup) = match &database_url {
        None => (runtime::config::sqlite_url(dir.path(), "ledger-bench"), None),
        Some(server) => {
            let name = format!("hub_ledger_bench_{:08x}", rand::random::<u32>());
            (runtime::db::postgres_database(server, &name).await?, Some((server.clone(), name)))
        }
    };
    let result = bench(&args, &url).await;
    if let Some((server, name)) = cleanup {
        use sqlx::{Connection as _, Executor as _};
        let mut conn = sqlx::AnyConnection::connect(&server).await?;
        conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
    }
    result
}

async fn bench(args: &BenchArgs, url: &str) -> anyhow::Result<()> {
    let backend = if url.starts_with("sqlite") { "SQLite" } else { "PostgreSQL" };
    println!("ledger bench: {} entries on {backend}, batches of {}, a checkpoint every {} entries", args.entries, args.batch, args.checkpoint_every);
    let (hashes, mb) = sha256_rate();
    println!("  SHA-256 on this machine: {hashes:>12.0} hashes/s of 732 bytes ({mb:.0} MB/s), one core");

    let pool = audit::open_ledger(url).await?;
    let (_, keys) = generate_partnership("bench", &[("ig-bench", "IG", Role::Ig)])?;
    let ig: &AgencyKeys = &keys[0];
    let subjects = (args.entries / 5).max(1);
    let start_ms = isp::now_ms() - YEAR_MS;
    let step_ms = (YEAR_MS / args.entries.max(1) as i64).max(1);
    let mut rng = rand::thread_rng();

    // Ingestion: generation is timed separately so the figure is the ledger's own.
    let mut ingest = Duration::ZERO;
    let mut checkpoint_time = Duration::ZERO;
    let mut since_checkpoint = 0u64;
    let mut done = 0u64;
    let mut checkpoints_made = 0u64;
    while done < args.entries {
        let n = (args.batch as u64).min(args.entries - done);
        let batch: Vec<ledger::Entry> = (done..done + n).map(|i| entry(i, start_ms, step_ms, subjects, &mut rng)).collect();
        let t = Instant::now();
        let mut tx = pool.begin().await?;
        ledger::append(&mut tx, batch).await?;
        tx.commit().await?;
        ingest += t.elapsed();
        done += n;
        since_checkpoint += n;
        if since_checkpoint >= args.checkpoint_every || done == args.entries {
            let t = Instant::now();
            checkpoints::make(&pool, ig).await?;
            checkpoint_time += t.elapsed();
            checkpoints_made += 1;
            since_checkpoint = 0;
        }
        if done % 100_000 < n as u64 {
            eprint!("\r  ingested {done}/{}", args.entries);
        }
    }
    eprintln!();
    let total = ingest + checkpoint_time;
    println!(
        "  ingest:        {:>12.0} entries/s with checkpoints ({} checkpoints, {:.1} s in all; appends {:.1} s, checkpoints {:.2} s)",
        per_sec(args.entries, total),
        checkpoints_made,
        total.as_secs_f64(),
        ingest.as_secs_f64(),
        checkpoint_time.as_secs_f64()
    );

    // Full verification (chain, tree, every checkpoint; signatures are not re-checked).
    let t = Instant::now();
    let report = ledger::verify_with(&pool, None, ledger::Depth { signatures: false }).await?;
    let d = t.elapsed();
    anyhow::ensure!(report.ok(), "the bench ledger does not verify: {:?}", report.first_bad);
    println!(
        "  verify:        {:>12.2} s for {} entries and {} checkpoints ({:.0} entries/s; SHA-256 alone would take {:.2} s)",
        d.as_secs_f64(),
        report.entries,
        report.checkpoints,
        per_sec(report.entries, d),
        report.entries as f64 * 2.0 / hashes
    );

    // A subject query: every entry about one person (median of 25 people).
    let mut times = Vec::new();
    let mut found = 0;
    for k in 0..25u64 {
        let subject = format!("s-{:032x}", (k * 7919 * 2_654_435_761) % subjects);
        let t = Instant::now();
        found += query::run(&pool, &query::Filter { subject_ref: Some(subject), ..Default::default() }).await?.len();
        times.push(t.elapsed());
    }
    times.sort();
    println!("  subject query: {:>12.2} ms median ({:.2} ms max, {:.1} entries per person)", ms(times[12]), ms(times[24]), found as f64 / 25.0);

    // A month's entries (what a monthly report reads), fetched in full.
    let month_start = start_ms + 5 * 30 * 86_400_000;
    let since = time::OffsetDateTime::from_unix_timestamp(month_start / 1000)?.date();
    let until = since.checked_add(time::Duration::days(29)).unwrap_or(since);
    let t = Instant::now();
    let month = query::run(&pool, &query::Filter { since: Some(since.to_string()), until: Some(until.to_string()), ..Default::default() }).await?;
    let d = t.elapsed();
    println!("  month query:   {:>12.2} s for {} entries ({since} to {until})", d.as_secs_f64(), month.len());
    let t = Instant::now();
    let report = audit::report::build(&pool, &since.to_string(), &until.to_string(), 48.0, isp::now_ms()).await?;
    let d = t.elapsed();
    println!("  month report:  {:>12.2} s ({} flows, {} referrals unacknowledged after 48 h)", d.as_secs_f64(), report.flows.len(), report.outstanding.len());
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
