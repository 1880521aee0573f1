//! End-to-end test harness: a whole partnership on real components.
//!
//! Each test gets its own nats-server (JetStream, temp store, free port; started by
//! [`hub::local::LocalHub`]) and its own databases: SQLite files in a temp directory, or fresh
//! PostgreSQL databases named `hubtest_<random>_<service>` on the server of
//! `HUB_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped when
//! the test ends, pass or fail. Tests therefore run in parallel and leave nothing behind.
//! [`netns`] puts a test's hosts in network namespaces of this machine, for a partnership
//! spread over hosts.

pub mod browser;
pub mod netns;
pub mod oidc;
pub mod raw_http;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use hub::{
    local::{LocalHub, Options},
    staff::Logins,
};
pub use runtime::auth::Role;
use serde_json::Value;

/// Where the storage of a test partnership lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server the tests create their databases on.
pub fn postgres_server() -> String {
    std::env::var("HUB_TEST_POSTGRES").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A running test partnership. Dropping it stops nats-server and drops its PostgreSQL
/// databases.
pub struct Partnership {
    pub hub: LocalHub,
    pub options: Options,
    /// Logged-in clients: each request goes as the demo staff member of the least powerful
    /// role its route allows (see [`hub::staff::Logins`]).
    pub logins: Logins,
    _databases: Option<PostgresDatabases>,
    // Last, so the store outlives everything that writes to it.
    _dir: tempfile::TempDir,
}

impl Partnership {
    pub async fn start(backend: Backend) -> anyhow::Result<Partnership> {
        Partnership::start_with(backend, None).await
    }

    /// `ack_wait`: how soon the broker redelivers an unacked message (short in crash tests).
    pub async fn start_with(backend: Backend, ack_wait: Option<Duration>) -> anyhow::Result<Partnership> {
        Partnership::launch(backend, ack_wait, None, None).await
    }

    /// The partnership on a local JetStream cluster of `nodes` nats-server processes (see
    /// [`hub::cluster`]), every stream with one replica per node.
    pub async fn start_cluster(backend: Backend, nodes: usize, ack_wait: Option<Duration>) -> anyhow::Result<Partnership> {
        Partnership::launch(backend, ack_wait, None, Some(nodes)).await
    }

    /// Every service with these HTTP limits (short timeouts, small caps) instead of the defaults.
    pub async fn start_limited(backend: Backend, limits: runtime::serve::Limits) -> anyhow::Result<Partnership> {
        Partnership::launch(backend, None, Some(limits), None).await
    }

    /// The partnership whose files are in `dir` already (keys, directory, policy, broker
    /// store; an earlier version's, say), on the SQLite files in `dir/db` or, with
    /// `databases`, on those PostgreSQL databases. Both are removed with the partnership.
    pub async fn start_in(dir: tempfile::TempDir, databases: Option<PostgresDatabases>) -> anyhow::Result<Partnership> {
        Partnership::start_with_options(dir, databases, Options::default()).await
    }

    async fn launch(backend: Backend, ack_wait: Option<Duration>, http_limits: Option<runtime::serve::Limits>, cluster: Option<usize>) -> anyhow::Result<Partnership> {
        let dir = tempfile::Builder::new().prefix("hubtest").tempdir()?;
        let databases = (backend == Backend::Postgres).then(PostgresDatabases::fresh);
        Partnership::start_with_options(dir, databases, Options { ack_wait, http_limits, cluster, ..Options::default() }).await
    }

    /// `options` with the test's own data directory, databases and a checkpoint every second.
    async fn start_with_options(dir: tempfile::TempDir, databases: Option<PostgresDatabases>, options: Options) -> anyhow::Result<Partnership> {
        let options = Options {
            data: dir.path().to_owned(),
            nats_url: None,
            database_url: databases.as_ref().map(|d| d.server.clone()),
            database_prefix: databases.as_ref().map(|d| d.prefix.clone()),
            checkpoint_every: Some(Duration::from_secs(1)),
            deadline_check_every: Some(Duration::from_millis(200)),
            ..options
        };
        let hub = LocalHub::start(options.clone()).await?;
        let logins = Logins::for_hub(&hub);
        Ok(Partnership { hub, options, logins, _databases: databases, _dir: dir })
    }

    /// The clock every service of the partnership judges deadlines by: move it forward with
    /// [`runtime::deadlines::Clock::advance`] to make a deadline pass.
    pub fn clock(&self) -> &runtime::deadlines::Clock {
        &self.options.clock
    }

    /// A broker client with the admin's rights: what a compromised broker or its operator
    /// could do, for tests that inject or remove messages behind the services' backs.
    pub async fn broker(&self) -> anyhow::Result<async_nats::Client> {
        self.hub.admin_client().await
    }

    pub fn data(&self) -> &Path {
        &self.options.data
    }

    pub fn url(&self, agency: &str) -> String {
        if agency == "audit" { self.hub.audit_url.clone() } else { self.hub.url(agency).to_owned() }
    }

    /// The database URL of one service (`audit` or an agency id).
    pub async fn database_url(&self, service: &str) -> anyhow::Result<String> {
        hub::local::database_url(&self.options, service).await
    }

    /// A client logged in at a service (an agency id or `audit`) as the demo staff member of `role`.
    pub async fn as_role(&self, service: &str, role: Role) -> anyhow::Result<reqwest::Client> {
        self.logins.as_role(service, &self.url(service), role).await
    }

    /// A caseworker's client at an agency.
    pub async fn caseworker(&self, agency: &str) -> anyhow::Result<reqwest::Client> {
        self.as_role(agency, Role::Caseworker).await
    }

    /// The IG lead's client at the audit service.
    pub async fn ig_lead(&self) -> anyhow::Result<reqwest::Client> {
        self.as_role("audit", Role::IgLead).await
    }

    /// The client for one request: logged in as the least powerful role the route allows.
    pub async fn client(&self, service: &str, method: &str, path: &str) -> anyhow::Result<reqwest::Client> {
        self.logins.for_request(service, &self.url(service), method, path).await
    }

    pub async fn get(&self, agency: &str, path: &str) -> anyhow::Result<Value> {
        let response = self.client(agency, "GET", path).await?.get(format!("{}{path}", self.url(agency))).send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "GET {agency}{path}: HTTP {status}: {body}");
        Ok(body)
    }

    /// Every item of a paged list route, following its pages by `key` (see [`hub::pages`]).
    pub async fn list(&self, agency: &str, path: &str, key: &str) -> anyhow::Result<Vec<Value>> {
        let http = self.client(agency, "GET", path).await?;
        let sep = if path.contains('?') { "&" } else { "?" };
        hub::pages(&http, &format!("{}{path}{sep}", self.url(agency)), key).await
    }

    /// POSTs JSON; returns the status code and the JSON answer.
    pub async fn post(&self, agency: &str, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let response = self.client(agency, "POST", path).await?.post(format!("{}{path}", self.url(agency))).json(body).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// The audit service's ledger entries.
    pub async fn ledger(&self) -> anyhow::Result<Vec<Value>> {
        hub::ledger_pages(&self.ig_lead().await?, &self.hub.audit_url, "").await
    }
}

/// Polls `check` until it yields a value or `timeout` passes; the error says what never
/// happened and the last thing seen.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            bail!("{what} did not happen within {timeout:?}{}", if last.is_empty() { String::new() } else { format!(" (last error: {last})") });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A receipt (`referral.ack`) from `isp`'s agency to `recipient`, sealed and signed by `isp`
/// now: the smallest real envelope, for tests that inject envelopes behind the services' backs.
pub fn sealed_ack(isp: &isp::Isp, recipient: &str, case_ref: &str) -> anyhow::Result<Vec<u8>> {
    use proto::v1::{Payload, ReferralAck, payload::Body};
    let out = isp::Outgoing {
        recipient: recipient.into(),
        kind: isp::Kind::ReferralAck,
        purpose: "case-coordination".into(),
        lawful_basis: "uk-gdpr-6-1-e".into(),
        case_ref: case_ref.into(),
        payload: Payload { body: Some(Body::ReferralAck(ReferralAck { envelope_id: "earlier".into(), status: 1, ..Default::default() })) },
        ..Default::default()
    };
    Ok(isp.seal(&out, None)?.envelope)
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if contains(&std::fs::read(&path)?, needle) {
                found.push(path);
            }
        }
    }
    Ok(found)
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Drops every database of one test partnership, from a thread of its own so it works
/// from `Drop` inside (or after) the test's runtime, and when the test panicked.
struct DropDatabases {
    server: String,
    prefix: String,
}

impl Drop for DropDatabases {
    fn drop(&mut self) {
        let (server, prefix) = (self.server.clone(), self.prefix.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                use sqlx::{Connection as _, Executor as _, Row as _};
                sqlx::any::install_default_drivers();
                let mut conn = sqlx::AnyConnection::connect(&server).await?;
                let names = sqlx::query("SELECT datname::text AS datname FROM pg_database WHERE datname LIKE $1")
                    .bind(format!("{prefix}\\_%"))
                    .fetch_all(&mut conn)
                    .await?;
                for row in names {
                    let name: String = row.try_get("datname")?;
                    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
                }
                anyhow::Ok(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop the test databases {}_*: {e:#}", self.prefix),
            Err(_) => eprintln!("warning: dropping the test databases {}_* panicked", self.prefix),
        }
    }
}

/// Fresh PostgreSQL databases for services a test starts itself (each as its own process,
/// say): the services name theirs `{prefix}_{service}` on `server`, and every one of them is
/// dropped with this value, pass or fail.
pub struct PostgresDatabases {
    pub server: String,
    pub prefix: String,
    _drop: DropDatabases,
}

impl PostgresDatabases {
    /// A new random prefix `hubtest_<random>` on [`postgres_server`].
    pub fn fresh() -> PostgresDatabases {
        let prefix = format!("hubtest_{:016x}", rand::random::<u64>());
        PostgresDatabases { server: postgres_server(), prefix: prefix.clone(), _drop: DropDatabases { server: postgres_server(), prefix } }
    }
}

/// A minimal consented IDVA referral from housing about synthetic person `n`, as the
/// housing case system would POST it to `/disclosures`.
pub fn idva_referral(n: usize) -> Value {
    let name = format!("Synthetic Person {n:05}");
    serde_json::json!({
        "to": "idva-northbridge", "purpose": "safeguarding", "lawful_basis": "uk-gdpr-6-1-a",
        "consent": {"id": format!("CON-T-{n}"), "state": "given"},
        "subject": {"full_name": name, "date_of_birth": "1990-01-01"}, "case_ref": format!("HSG-T-{n:05}"),
        "payload": {"idvaReferral": {"survivor": {"fullName": name, "dateOfBirth": "1990-01-01"},
            "reason": "Test referral", "survivorAware": true}}
    })
}

/// Records a DASH checklist of `yes` Yes answers (of 24) at `agency` about `subject` (a
/// `{"full_name", "date_of_birth"}` object) and returns its id: what a send names as
/// `assessment_id` for its risk (15 Yes answers: high).
pub async fn dash_assessment(p: &Partnership, agency: &str, subject: &Value, yes: usize) -> anyhow::Result<String> {
    let answers: Vec<&str> = (0..24).map(|i| if i < yes { "yes" } else { "no" }).collect();
    let case_ref = format!("DASH-T-{:04}", rand::random::<u16>() % 10_000);
    let (status, v) = p.post(agency, "/dash-assessments", &serde_json::json!({"case_ref": case_ref, "subject": subject, "answers": answers})).await?;
    anyhow::ensure!(status == 201, "recording a DASH checklist at {agency} failed: {v}");
    Ok(v["id"].as_str().context("the recorded assessment's id")?.to_owned())
}

/// A DASH summary of a high result (15 Yes answers of 24, without the answers), signed by
/// `isp`'s agency: for tests that seal without a service's database.
pub fn signed_high_summary(isp: &isp::Isp) -> proto::v1::DashAssessment {
    let mut summary = proto::v1::DashAssessment {
        checklist_version: isp::risk::CHECKLISTS[0].version.into(),
        assessed_on: "2026-11-27".into(),
        score: 15,
        risk: proto::v1::RiskLevel::High as i32,
        assessment_id: uuid::Uuid::now_v7().to_string(),
        assessor: "demo.caseworker".into(),
        ..Default::default()
    };
    isp::risk::sign_summary(&isp.keys, &mut summary);
    summary
}

/// [`idva_referral`] serialised to exactly `bytes` bytes, its reason padded with synthetic
/// text: the largest body a service takes, or one byte more.
pub fn idva_referral_of_size(n: usize, bytes: usize) -> Vec<u8> {
    let mut body = idva_referral(n);
    let plain = serde_json::to_vec(&body).expect("serialisable").len();
    let reason = body["payload"]["idvaReferral"]["reason"].as_str().unwrap_or_default().len();
    assert!(bytes >= plain, "a referral takes {plain} bytes at least");
    body["payload"]["idvaReferral"]["reason"] = Value::String("r".repeat(reason + bytes - plain));
    let sized = serde_json::to_vec(&body).expect("serialisable");
    assert_eq!(sized.len(), bytes);
    sized
}

/// Housing's record of synthetic person `n`'s consent to the IDVA referral of
/// [`idva_referral`] (id `CON-T-{n}`), as staff would POST it to `/consents`.
pub fn referral_consent(n: usize) -> Value {
    serde_json::json!({
        "consent_id": format!("CON-T-{n}"), "state": "given", "subject": {"full_name": format!("Synthetic Person {n:05}"), "date_of_birth": "1990-01-01"},
        "scope": {"roles": ["idva"], "purposes": ["safeguarding"]}
    })
}

/// Posts `count` referrals (numbered from `first`) from housing, `parallel` at a time, each
/// after recording the survivor's consent it relies on, and
/// returns their envelope ids in completion order; `sent` counts them as they succeed.
pub async fn send_referrals(
    http: reqwest::Client,
    housing_url: String,
    first: usize,
    count: usize,
    parallel: usize,
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> anyhow::Result<Vec<String>> {
    use futures::StreamExt as _;
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(first..first + count)
        .map(|n| {
            let (http, url, sent) = (http.clone(), housing_url.clone(), sent.clone());
            async move {
                let response = http.post(format!("{url}/consents")).json(&referral_consent(n)).send().await?;
                anyhow::ensure!(response.status().as_u16() == 201, "consent {n}: HTTP {}", response.status());
                let response = http.post(format!("{url}/disclosures")).json(&idva_referral(n)).send().await?;
                let status = response.status();
                let body: Value = response.json().await?;
                anyhow::ensure!(status.as_u16() == 201, "referral {n}: HTTP {status}: {body}");
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(body["envelope_id"].as_str().context("no envelope id")?.to_owned())
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    results.into_iter().collect()
}

/// How many rows the inbox table of `database_url` holds, and how many distinct envelopes.
pub async fn inbox_counts(database_url: &str) -> anyhow::Result<(i64, i64)> {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await?;
    let row: (i64, i64) = sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT envelope_id) FROM inbox").fetch_one(&mut conn).await?;
    conn.close().await?;
    Ok(row)
}
