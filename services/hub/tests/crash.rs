//! Crashes: every service its own `hub serve` process, as an agency runs it. In the middle of a
//! burst of referrals from housing to the IDVA, the sender, the recipient and the audit service
//! are each killed with SIGKILL (no shutdown code runs; whatever was in flight is cut off) and
//! started again. Nothing is lost, nothing arrives twice, the ledger is whole; on SQLite and
//! on PostgreSQL.
//!
//! Each kill is triggered by what the test sees (answers, inbox rows, ledger entries, and work
//! in flight: an outbox not yet published, deliveries not yet acknowledged); the IDVA is killed
//! twice, the second time while it catches up. Every check waits for the state that proves it;
//! nothing is timed.

use std::{
    collections::BTreeSet,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use futures::StreamExt as _;
use hub::{local::Options, nats::NatsChild, processes::Served};
use serde_json::Value;
use tests::{Backend, PostgresDatabases, eventually, idva_referral, inbox_counts, referral_consent};
use tokio::sync::watch;

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const REFERRAL: &str = "housing.idva_referral";
/// Referrals in the burst, and how many are in flight at once.
const BURST: usize = 1000;
const PARALLEL: usize = 4;
/// The longest any awaited state may take to come about: a bound for a failing run, not a
/// timing that a passing run depends on.
const PATIENCE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sender_recipient_and_audit_killed_mid_burst_lose_and_duplicate_nothing_on_sqlite() -> anyhow::Result<()> {
    crash_mid_burst(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sender_recipient_and_audit_killed_mid_burst_lose_and_duplicate_nothing_on_postgres() -> anyhow::Result<()> {
    crash_mid_burst(Backend::Postgres).await
}

async fn crash_mid_burst(backend: Backend) -> anyhow::Result<()> {
    let mut p = Processes::start(backend).await?;
    let idva_db = p.database_url(IDVA).await?;
    let audit_db = p.database_url("audit").await?;
    let housing_db = p.database_url(HOUSING).await?;
    let idva_consumer = format!("agency-{IDVA}");
    let (housing_url, housing_rx) = watch::channel(p.housing.url.clone());
    let progress = Arc::new(Progress::default());
    let caseworker = p.logins.as_role(HOUSING, &p.housing.url, runtime::auth::Role::Caseworker).await?;
    let burst = tokio::spawn(send_burst(caseworker, housing_rx, progress.clone()));

    // Three crashes, each when its own sign of progress shows, independently of the others:
    // at a moment when the service has work in flight (disclosures committed but not yet
    // published, deliveries not yet acknowledged) if the polls catch one, at the latest at a
    // later point of the burst.
    let Processes { housing, idva, audit, js, .. } = &mut p;
    let js = &*js;
    let (answered_at_kill, received_at_kill, logged_at_kill) = tokio::try_join!(
        async {
            eventually("housing answering part of the burst, with its outbox not yet published", PATIENCE, || async {
                let answered = progress.answered.load(Ordering::SeqCst);
                Ok((answered >= BURST / 4 && (answered >= BURST / 2 || unpublished(&housing_db).await? > 0)).then_some(()))
            })
            .await?;
            housing.kill_hard().await?;
            let at_kill = progress.answered.load(Ordering::SeqCst);
            housing.restart().await?;
            housing_url.send(housing.url.clone())?;
            anyhow::Ok(at_kill)
        },
        async {
            // Twice: while it keeps pace with the burst, and again while it catches up with
            // what arrived while it was down (then it stores large batches).
            eventually("part of the burst in the IDVA's inbox, more delivered to it", PATIENCE, || async {
                let received = inbox_counts(&idva_db).await?.0 as usize;
                Ok((received >= BURST / 4 && (received >= BURST / 2 || unacked(js, &idva_consumer).await? > 0)).then_some(()))
            })
            .await?;
            idva.kill_hard().await?;
            let at_kill = inbox_counts(&idva_db).await?.0 as usize;
            idva.restart().await?;
            eventually("the IDVA catching up after its restart", PATIENCE, || async {
                let received = inbox_counts(&idva_db).await?.0 as usize;
                Ok((received > at_kill && (received >= 3 * BURST / 4 || unacked(js, &idva_consumer).await? > 0)).then_some(()))
            })
            .await?;
            idva.kill_hard().await?;
            let at_second_kill = inbox_counts(&idva_db).await?.0 as usize;
            idva.restart().await?;
            anyhow::Ok(at_second_kill)
        },
        async {
            eventually("part of the burst in the ledger, more delivered to the audit service", PATIENCE, || async {
                let logged = ledger_referrals(&audit_db).await?;
                Ok((logged >= BURST / 2 && (logged >= 3 * BURST / 4 || unacked(js, runtime::transport::AUDIT_CONSUMER).await? > 0)).then_some(()))
            })
            .await?;
            audit.kill_hard().await?;
            let at_kill = ledger_referrals(&audit_db).await?;
            audit.restart().await?;
            anyhow::Ok(at_kill)
        },
    )?;
    let answered = burst.await??;
    let lost = progress.lost.load(Ordering::SeqCst);

    let recorded = assert_delivered_once(&p, &answered, lost).await?;
    assert!(answered_at_kill < answered.len(), "housing was killed after the burst ({answered_at_kill} answered): nothing was sent to it after its restart");
    assert!(received_at_kill < recorded.len(), "the IDVA was killed after the burst had arrived ({received_at_kill} received)");
    assert!(logged_at_kill < recorded.len(), "the audit service was killed after the burst was in the ledger ({logged_at_kill} entries)");
    Ok(())
}

/// Every referral housing recorded (those answered 201, and any whose answer was lost in the
/// crash) is in the IDVA's inbox once, its status at housing reaches `received`, and the
/// ledger holds every message on the stream once, in stream order, and verifies. Returns
/// what housing recorded.
async fn assert_delivered_once(p: &Processes, answered: &[String], lost: usize) -> anyhow::Result<BTreeSet<String>> {
    let answered_ids: BTreeSet<&str> = answered.iter().map(String::as_str).collect();
    assert_eq!(answered_ids.len(), answered.len(), "housing answered with one envelope id twice");
    let sent = serde_json::Value::Array(p.list(&p.housing, "/disclosures", "envelope_id").await?);
    let recorded: BTreeSet<String> = referrals(&sent).map(|d| text(d, "envelope_id")).collect();
    for id in &answered_ids {
        assert!(recorded.contains(*id), "referral {id} was answered 201 but housing has no record of it");
    }
    let unanswered = recorded.len() - answered_ids.len();
    assert!(unanswered <= lost, "housing recorded {unanswered} referrals it did not answer, but only {lost} answers were lost");

    let idva_db = p.database_url(IDVA).await?;
    eventually("every recorded referral in the IDVA's inbox", PATIENCE, || async { Ok((inbox_counts(&idva_db).await?.0 >= recorded.len() as i64).then_some(())) }).await?;
    let inbox = serde_json::Value::Array(p.list(&p.idva, "/inbox", "stream_seq").await?);
    let inbox: Vec<String> = inbox.as_array().context("the inbox is a list")?.iter().map(|e| text(e, "envelope_id")).collect();
    assert_eq!(inbox.len(), recorded.len(), "the IDVA's inbox holds a referral twice, or one housing never recorded");
    assert_eq!(inbox.into_iter().collect::<BTreeSet<_>>(), recorded, "the IDVA's inbox differs from what housing recorded");
    let (rows, distinct) = inbox_counts(&idva_db).await?;
    assert_eq!((rows, distinct), (recorded.len() as i64, recorded.len() as i64), "an inbox row appeared twice");
    for agency in [&p.idva, &p.housing] {
        assert_eq!(p.get(agency, "/quarantine").await?, serde_json::json!([]), "{}: a redelivery was mistaken for a bad envelope", agency.name);
    }

    eventually("every referral's status at housing `received`", PATIENCE, || async {
        let sent = serde_json::Value::Array(p.list(&p.housing, "/disclosures", "envelope_id").await?);
        Ok(referrals(&sent).all(|d| d["status"] == "received").then_some(()))
    })
    .await?;

    // The ledger is whole: one entry per message on the stream, in stream order, numbered 1..n.
    let (ledger, on_stream) = eventually("every message on the stream in the ledger", PATIENCE, || async {
        let on_stream = p.stream_last_sequence().await?;
        let ig = p.logins.as_role("audit", &p.audit.url, runtime::auth::Role::IgLead).await?;
        let ledger = hub::ledger_pages(&ig, &p.audit.url, "").await?;
        Ok((ledger.len() as u64 >= on_stream).then_some((ledger, on_stream)))
    })
    .await?;
    let seqs: Vec<i64> = ledger.iter().map(|e| e["seq"].as_i64().unwrap_or_default()).collect();
    assert!(seqs.iter().copied().eq(1..=ledger.len() as i64), "the ledger's entries are not numbered 1..{} without gaps", ledger.len());
    let stream_seqs: Vec<u64> = ledger.iter().map(|e| e["stream_seq"].as_u64().unwrap_or_default()).collect();
    let mut sorted = stream_seqs.clone();
    sorted.sort_unstable();
    assert!(sorted.into_iter().eq(1..=on_stream), "the ledger does not hold every message on the stream (1..{on_stream}) exactly once");
    let out_of_order = stream_seqs.windows(2).position(|w| w[0] > w[1]).map(|i| (i + 2, stream_seqs[i], stream_seqs[i + 1]));
    assert_eq!(out_of_order, None, "the ledger is not in stream order: (entry, the stream message before it, its stream message)");
    let entry_ids: BTreeSet<String> = ledger.iter().map(|e| text(e, "entry_id")).collect();
    assert_eq!(entry_ids.len(), ledger.len(), "the ledger records one envelope or event twice");
    let logged: BTreeSet<String> = ledger.iter().filter(|e| e["entry_type"] == "disclosure" && e["kind"] == REFERRAL).map(|e| text(e, "entry_id")).collect();
    assert_eq!(logged, recorded, "the ledger's referrals differ from what housing recorded");
    let verified = p.get(&p.audit, "/verify").await?;
    assert_eq!(verified["ok"], true, "the ledger does not verify: {verified}");
    Ok(recorded)
}

fn referrals(sent: &Value) -> impl Iterator<Item = &Value> {
    sent.as_array().into_iter().flatten().filter(|d| d["kind"] == REFERRAL)
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_owned()
}

/// The referrals the ledger holds so far, read from the audit service's database (which
/// stays readable while the service is down).
async fn ledger_referrals(database_url: &str) -> anyhow::Result<usize> {
    use sqlx::Connection as _;
    let mut conn = sqlx::AnyConnection::connect(database_url).await?;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger WHERE entry_type = $1 AND kind = $2").bind(audit::ledger::EntryType::Disclosure.as_str()).bind(REFERRAL).fetch_one(&mut conn).await?;
    conn.close().await?;
    Ok(n as usize)
}

/// Disclosures committed at a sender and not yet published, read from its database.
async fn unpublished(database_url: &str) -> anyhow::Result<usize> {
    use sqlx::Connection as _;
    let mut conn = sqlx::AnyConnection::connect(database_url).await?;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE published_at_ms IS NULL AND stopped_at_ms IS NULL").fetch_one(&mut conn).await?;
    conn.close().await?;
    Ok(n as usize)
}

/// Deliveries a consumer has been given and not yet acknowledged.
async fn unacked(js: &async_nats::jetstream::Context, consumer: &str) -> anyhow::Result<usize> {
    let stream = js.get_stream(runtime::transport::STREAM).await?;
    Ok(stream.consumer_info(consumer).await?.num_ack_pending)
}

/// What the burst's client has seen so far.
#[derive(Default)]
struct Progress {
    /// Referrals answered 201.
    answered: AtomicUsize,
    /// Referral requests whose answer never came because housing died under them.
    lost: AtomicUsize,
}

/// Sends referrals 0..BURST from housing, PARALLEL at a time, each after recording the
/// consent it relies on (as `tests::send_referrals` does). A request cut off by housing's
/// death is made again once housing is back at the URL `housing` holds. Returns the envelope
/// ids answered 201.
async fn send_burst(http: reqwest::Client, housing: watch::Receiver<String>, progress: Arc<Progress>) -> anyhow::Result<Vec<String>> {
    let answers: Vec<anyhow::Result<String>> = futures::stream::iter(0..BURST)
        .map(|n| send_referral(http.clone(), housing.clone(), progress.clone(), n))
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    answers.into_iter().collect()
}

async fn send_referral(http: reqwest::Client, mut housing: watch::Receiver<String>, progress: Arc<Progress>, n: usize) -> anyhow::Result<String> {
    // A consent recorded before its answer was lost is there when the request is made again.
    let mut again = false;
    loop {
        let url = housing.borrow_and_update().clone();
        match post(&http, &format!("{url}/consents"), &referral_consent(n)).await {
            Ok((201, _)) => break,
            Ok((409, _)) if again => break,
            Ok((status, body)) => anyhow::bail!("consent {n}: HTTP {status}: {body}"),
            Err(e) => {
                again = true;
                back_again(&mut housing, &format!("consent {n}"), e).await?;
            }
        }
    }
    loop {
        let url = housing.borrow_and_update().clone();
        match post(&http, &format!("{url}/disclosures"), &idva_referral(n)).await {
            Ok((201, body)) => {
                progress.answered.fetch_add(1, Ordering::SeqCst);
                return Ok(body["envelope_id"].as_str().context("no envelope id")?.to_owned());
            }
            Ok((status, body)) => anyhow::bail!("referral {n}: HTTP {status}: {body}"),
            Err(e) => {
                // Housing may have recorded it before it died, or not: the checks allow for both.
                progress.lost.fetch_add(1, Ordering::SeqCst);
                back_again(&mut housing, &format!("referral {n}"), e).await?;
            }
        }
    }
}

/// One POST, the status and the JSON answer; an error if the answer did not arrive whole.
async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Result<(u16, Value), reqwest::Error> {
    let response = http.post(url).json(body).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// After a request was cut off: waits until housing is back at a new URL. Fails with the
/// request's error if it does not come back, as when the error had another cause.
async fn back_again(housing: &mut watch::Receiver<String>, what: &str, error: reqwest::Error) -> anyhow::Result<()> {
    match tokio::time::timeout(PATIENCE, housing.changed()).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(anyhow::Error::new(error).context(format!("{what}: the request failed and housing did not come back"))),
    }
}

/// A partnership of separate processes: nats-server, the audit service, housing (the
/// sender) and the IDVA (the recipient); the other agencies are not needed.
struct Processes {
    // The services first, so they are killed before their broker, databases and files go.
    housing: Served,
    idva: Served,
    audit: Served,
    /// Runs while the test does; stopped when dropped.
    _nats: NatsChild,
    /// A client of the broker, to see the stream and its consumers.
    js: async_nats::jetstream::Context,
    options: Options,
    /// The demo staff's logins at the three services.
    logins: hub::staff::Logins,
    _databases: Option<PostgresDatabases>,
    _dir: tempfile::TempDir,
}

impl Processes {
    async fn start(backend: Backend) -> anyhow::Result<Processes> {
        sqlx::any::install_default_drivers();
        let dir = tempfile::Builder::new().prefix("hubcrash").tempdir()?;
        let data = dir.path().to_owned();
        hub::partnership::ensure_demo(&data)?;
        let nats = NatsChild::start(&data, Some(Duration::from_secs(2))).await?;
        let databases = (backend == Backend::Postgres).then(PostgresDatabases::fresh);
        let options = Options {
            data: data.clone(),
            database_url: databases.as_ref().map(|d| d.server.clone()),
            database_prefix: databases.as_ref().map(|d| d.prefix.clone()),
            ..Default::default()
        };
        let exe = Path::new(env!("CARGO_BIN_EXE_hub"));
        let (database_url, prefix) = (options.database_url.as_deref(), options.database_prefix.as_deref().unwrap_or("hub"));
        // Audit first: the stream and its consumer exist before anything is published.
        let audit = Served::spawn(exe, "audit", &data, &nats.url, database_url, prefix, &[("HUB_CHECKPOINT_SECS", "1")]).await?;
        let idva = Served::spawn(exe, IDVA, &data, &nats.url, database_url, prefix, &[]).await?;
        let housing = Served::spawn(exe, HOUSING, &data, &nats.url, database_url, prefix, &[]).await?;
        let js = async_nats::jetstream::new(hub::nats::connect_admin(&nats.url, &data).await?);
        let mut logins = hub::staff::Logins::default();
        let roles = hub::partnership::ensure_demo(&data)?;
        for (service, role) in [("audit", None), (IDVA, Some(roles.require(IDVA)?.role)), (HOUSING, Some(roles.require(HOUSING)?.role))] {
            logins.add_service(service, &hub::local::database_url(&options, service).await?, role);
        }
        Ok(Processes { housing, idva, audit, _nats: nats, js, options, logins, _databases: databases, _dir: dir })
    }

    async fn database_url(&self, service: &str) -> anyhow::Result<String> {
        hub::local::database_url(&self.options, service).await
    }

    async fn get(&self, service: &Served, path: &str) -> anyhow::Result<Value> {
        let http = self.logins.for_request(&service.name, &service.url, "GET", path).await?;
        let response = http.get(format!("{}{path}", service.url)).send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "GET {}{path}: HTTP {status}: {body}", service.name);
        Ok(body)
    }

    /// Every item of a paged list route.
    async fn list(&self, service: &Served, path: &str, key: &str) -> anyhow::Result<Vec<Value>> {
        let http = self.logins.for_request(&service.name, &service.url, "GET", path).await?;
        hub::pages(&http, &format!("{}{path}?", service.url), key).await
    }

    /// The stream sequence of the last message on the hub's stream.
    async fn stream_last_sequence(&self) -> anyhow::Result<u64> {
        Ok(self.js.get_stream(runtime::transport::STREAM).await?.get_info().await?.state.last_sequence)
    }
}
