//! Upgrading from the released v0.1.0: a partnership's data made by v0.1.0 itself, started by
//! the current code, on SQLite and on PostgreSQL.
//!
//! The fixture (`tests/fixtures/v0.1.0/`, see its README.md for the exact commands) is what
//! v0.1.0's `hub up --demo` left behind after the demo case, one message that is not an
//! envelope (so the old quarantine holds a row) and Ctrl-C: the partnership's directory, policy
//! and keys, each service's database (SQLite files; for PostgreSQL a `pg_dump` of each
//! database) and nats-server's JetStream store. It leaves out what an upgrade does not need:
//! `demo-staff.txt` (the demo's passwords; the test makes its own logins) and nats-server's log.
//! The JetStream store is kept because an upgrade in place keeps its broker: the current code
//! must go on from where v0.1.0's consumers stopped, not take the old messages in again. The
//! broker credentials are absent, as v0.1.0 had none: the current `hub up` makes them.
//!
//! What an operator would check after the upgrade: every service starts (its migrations applied
//! to the old database), every inbox, sent list, quarantine and consent record of the old
//! version is still there, once, and opens with the old keys; the ledger keeps its old entries
//! unchanged, verifies, and records nothing old again; a referral sent now is delivered once
//! and every agency witnesses a new checkpoint covering it. The applied migrations (sqlx's
//! `_sqlx_migrations` in each database) are checked too: v0.1.0's set before (so a fixture
//! made again by a later version fails here) and the current code's whole set after.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicUsize},
    time::Duration,
};

use anyhow::Context as _;
use hub::local::Options;
use serde_json::Value;
use sqlx::Connection as _;
use tests::{Backend, Partnership, PostgresDatabases, Role, eventually, send_referrals};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";

/// The migrations v0.1.0 applied: at each agency's service, and at the audit service.
const V010_AGENCY_MIGRATIONS: [i64; 8] = [1, 2, 3, 4, 5, 50, 60, 100];
const V010_AUDIT_MIGRATIONS: [i64; 4] = [60, 100, 101, 102];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("v0.1.0")
}

/// What one agency service's database holds, read from the database itself.
#[derive(Debug, Default)]
struct AgencyRecords {
    migrations: BTreeSet<i64>,
    /// Envelope id -> status, of the inbox and of the sent list.
    inbox: BTreeMap<String, String>,
    sent: BTreeMap<String, String>,
    /// (stream sequence, reason) of each quarantined message.
    quarantine: Vec<(i64, String)>,
    /// The agency's own consent records: id -> state of the latest revision.
    consents: BTreeMap<String, String>,
}

/// What the audit service's database holds.
#[derive(Debug, Default)]
struct LedgerRecords {
    migrations: BTreeSet<i64>,
    /// (seq, entry type, entry id, hash in hex), in order.
    entries: Vec<(i64, String, String, String)>,
    checkpoints: BTreeSet<i64>,
}

async fn connect(url: &str) -> anyhow::Result<sqlx::AnyConnection> {
    sqlx::any::install_default_drivers();
    Ok(sqlx::AnyConnection::connect(url).await?)
}

async fn applied_migrations(conn: &mut sqlx::AnyConnection) -> anyhow::Result<BTreeSet<i64>> {
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().map(|(v,)| v).collect())
}

async fn agency_records(url: &str) -> anyhow::Result<AgencyRecords> {
    let mut conn = connect(url).await?;
    let records = AgencyRecords {
        migrations: applied_migrations(&mut conn).await?,
        inbox: sqlx::query_as("SELECT envelope_id, status FROM inbox").fetch_all(&mut conn).await?.into_iter().collect(),
        sent: sqlx::query_as("SELECT envelope_id, status FROM sent").fetch_all(&mut conn).await?.into_iter().collect(),
        quarantine: sqlx::query_as("SELECT stream_seq, reason FROM quarantine ORDER BY stream_seq").fetch_all(&mut conn).await?,
        consents: consent_states(&mut conn).await?,
    };
    conn.close().await?;
    Ok(records)
}

/// The state of each consent record's latest revision, from its signed value (`record`, the
/// record's JSON, beside the owner's signature).
async fn consent_states(conn: &mut sqlx::AnyConnection) -> anyhow::Result<BTreeMap<String, String>> {
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as("SELECT consent_id, value FROM consents ORDER BY revision").fetch_all(&mut *conn).await?;
    let mut states = BTreeMap::new();
    for (id, value) in rows {
        let signed: Value = serde_json::from_slice(&value)?;
        let record: Value = serde_json::from_str(signed["record"].as_str().context("a consent value without its record")?)?;
        states.insert(id, record["state"].as_str().context("a consent record without a state")?.to_owned());
    }
    Ok(states)
}

async fn ledger_records(url: &str) -> anyhow::Result<LedgerRecords> {
    let mut conn = connect(url).await?;
    let entries: Vec<(i64, String, String, Vec<u8>)> = sqlx::query_as("SELECT seq, entry_type, entry_id, hash FROM ledger ORDER BY seq").fetch_all(&mut conn).await?;
    let checkpoints: Vec<(i64,)> = sqlx::query_as("SELECT tree_size FROM checkpoint").fetch_all(&mut conn).await?;
    let records = LedgerRecords {
        migrations: applied_migrations(&mut conn).await?,
        entries: entries.into_iter().map(|(seq, t, id, hash)| (seq, t, id, hex::encode(hash))).collect(),
        checkpoints: checkpoints.into_iter().map(|(s,)| s).collect(),
    };
    conn.close().await?;
    Ok(records)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Loads a plain `pg_dump` into an empty database. pg_dump's `\restrict` and `\unrestrict`
/// lines are psql's guard against a hostile dump and mean nothing to the server; any other
/// psql command in the file is refused, so a dump made differently fails loudly here.
async fn load_dump(database_url: &str, dump: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(dump).with_context(|| format!("reading {}", dump.display()))?;
    let mut sql = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("\\restrict ") || line.starts_with("\\unrestrict ") {
            continue;
        }
        anyhow::ensure!(!line.starts_with('\\'), "{}: a psql command this loader does not run: {line}", dump.display());
        sql.push_str(line);
        sql.push('\n');
    }
    let mut conn = connect(database_url).await?;
    sqlx::raw_sql(&sql).execute(&mut conn).await.with_context(|| format!("loading {}", dump.display()))?;
    conn.close().await?;
    Ok(())
}

/// v0.1.0's data directory in a fresh temp directory, on fresh PostgreSQL databases loaded
/// from the dumps for that backend; what each service's database holds before the upgrade.
struct OldPartnership {
    dir: tempfile::TempDir,
    databases: Option<PostgresDatabases>,
    agencies: BTreeMap<String, AgencyRecords>,
    ledger: LedgerRecords,
}

async fn old_partnership(backend: Backend) -> anyhow::Result<OldPartnership> {
    let dir = tempfile::Builder::new().prefix("hubtest").tempdir()?;
    let data = dir.path();
    copy_dir(&fixture().join("partnership"), &data.join("partnership"))?;
    copy_dir(&fixture().join("keys"), &data.join("keys"))?;
    let own = match backend {
        Backend::Sqlite => fixture().join("sqlite"),
        Backend::Postgres => fixture().join("postgres"),
    };
    copy_dir(&own.join("nats"), &data.join("nats"))?;
    let databases = match backend {
        Backend::Sqlite => {
            copy_dir(&own.join("db"), &data.join("db"))?;
            None
        }
        Backend::Postgres => Some(PostgresDatabases::fresh()),
    };
    let options = Options {
        data: data.to_owned(),
        database_url: databases.as_ref().map(|d| d.server.clone()),
        database_prefix: databases.as_ref().map(|d| d.prefix.clone()),
        ..Options::default()
    };
    let directory = isp::Directory::load(&hub::partnership::directory_path(data))?;
    let mut agencies = BTreeMap::new();
    for agency in directory.agencies.iter().filter(|a| a.role != isp::Role::Ig) {
        let url = hub::local::database_url(&options, &agency.id).await?;
        if backend == Backend::Postgres {
            load_dump(&url, &own.join(format!("{}.sql", agency.id.replace('-', "_")))).await?;
        }
        agencies.insert(agency.id.clone(), agency_records(&url).await?);
    }
    let url = hub::local::database_url(&options, "audit").await?;
    if backend == Backend::Postgres {
        load_dump(&url, &own.join("audit.sql")).await?;
    }
    let ledger = ledger_records(&url).await?;
    Ok(OldPartnership { dir, databases, agencies, ledger })
}

fn versions(migrations: &[runtime::Migration]) -> BTreeSet<i64> {
    migrations.iter().map(|m| m.version).collect()
}

fn ids_once(listed: &[Value], what: &str) -> BTreeMap<String, String> {
    let mut seen = BTreeMap::new();
    for item in listed {
        let id = item["envelope_id"].as_str().unwrap_or_default().to_owned();
        let status = item["status"].as_str().unwrap_or_default().to_owned();
        assert!(seen.insert(id.clone(), status).is_none(), "{what} lists {id} twice");
    }
    seen
}

async fn upgrade_on(backend: Backend) -> anyhow::Result<()> {
    let old = old_partnership(backend).await?;
    fixture_is_v010(&old);
    let p = Partnership::start_in(old.dir, old.databases).await.context("starting the current code on v0.1.0's data")?;
    migrated(&p, &old.agencies, &old.ledger).await?;
    old_records_kept(&p, &old.agencies).await?;
    old_ledger_kept(&p, &old.ledger).await?;
    new_referral_once(&p, &old.agencies, &old.ledger).await
}

/// The fixture is v0.1.0's (its databases stopped at v0.1.0's migrations, which fails here if
/// it were ever made again by a later version) and holds the demo case: something to lose.
fn fixture_is_v010(old: &OldPartnership) {
    for (agency, records) in &old.agencies {
        assert_eq!(records.migrations, BTreeSet::from(V010_AGENCY_MIGRATIONS), "{agency}'s database before the upgrade");
    }
    assert_eq!(old.ledger.migrations, BTreeSet::from(V010_AUDIT_MIGRATIONS), "the audit database before the upgrade");
    let (idva, housing) = (&old.agencies[IDVA], &old.agencies[HOUSING]);
    assert!(idva.inbox.len() >= 3 && idva.quarantine.len() == 1, "the IDVA's old inbox and quarantine: {idva:?}");
    assert!(housing.consents.len() >= 2 && housing.sent.len() >= 8, "housing's old records: {housing:?}");
    let ledger = &old.ledger;
    assert!(ledger.entries.len() >= 80 && ledger.checkpoints.len() >= 2, "the old ledger: {} entries, checkpoints {:?}", ledger.entries.len(), ledger.checkpoints);
}

/// Every service applied the current code's whole set of migrations, some of them new to it.
async fn migrated(p: &Partnership, agencies: &BTreeMap<String, AgencyRecords>, ledger: &LedgerRecords) -> anyhow::Result<()> {
    for (agency, service) in &p.hub.services {
        let after = agency_records(service.database_url()).await?.migrations;
        assert_eq!(after, versions(&hub::local::migrations(service.role)), "{agency}: applied migrations after the upgrade");
        let before = &agencies[agency].migrations;
        assert!(after.is_superset(before) && after.len() > before.len(), "{agency}: the upgrade applied nothing");
    }
    let after = ledger_records(&p.hub.audit_database_url).await?.migrations;
    assert_eq!(after, versions(&audit::migrations()), "audit: applied migrations after the upgrade");
    assert!(after.is_superset(&ledger.migrations) && after.len() > ledger.migrations.len(), "audit: the upgrade applied nothing");
    Ok(())
}

/// What every agency stored under v0.1.0 is listed through the current API, each once, with the
/// status it had; the IDVA opens its old disclosures with its old key; housing's consent
/// records read the same at housing (its own table) and at the IDVA (the old broker's bucket).
async fn old_records_kept(p: &Partnership, agencies: &BTreeMap<String, AgencyRecords>) -> anyhow::Result<()> {
    for (agency, records) in agencies {
        let inbox = ids_once(&p.list(agency, "/inbox", "stream_seq").await?, &format!("{agency}'s inbox"));
        assert_eq!(inbox, records.inbox, "{agency}'s inbox after the upgrade");
        let sent = ids_once(&p.list(agency, "/disclosures", "envelope_id").await?, &format!("{agency}'s sent list"));
        assert_eq!(sent, records.sent, "{agency}'s sent list after the upgrade");
        let quarantine: Vec<(i64, String)> = p
            .list(agency, "/quarantine", "stream_seq")
            .await?
            .iter()
            .map(|q| (q["stream_seq"].as_i64().unwrap_or_default(), q["reason"].as_str().unwrap_or_default().to_owned()))
            .collect();
        assert_eq!(quarantine, records.quarantine, "{agency}'s quarantine after the upgrade");
    }
    for id in agencies[IDVA].inbox.keys() {
        let read = p.get(IDVA, &format!("/inbox/{id}")).await?;
        assert!(read["payload"].as_object().is_some_and(|o| !o.is_empty()), "the IDVA's old disclosure {id} does not open: {read}");
    }
    for (consent, state) in &agencies[HOUSING].consents {
        let own = p.get(HOUSING, &format!("/consents/{consent}")).await?;
        assert_eq!(own["state"], state.as_str(), "housing's consent record {consent}: {own}");
        let shared = p.get(IDVA, &format!("/consents/{consent}?recorded_by={HOUSING}")).await?;
        assert_eq!(shared["state"], state.as_str(), "housing's consent record {consent} read by the IDVA: {shared}");
    }
    Ok(())
}

/// The ledger's old entries are unchanged and first, its old checkpoints kept, and it verifies.
async fn old_ledger_kept(p: &Partnership, old: &LedgerRecords) -> anyhow::Result<()> {
    let ledger = p.ledger().await?;
    let n = old.entries.len();
    assert!(ledger.len() >= n, "the ledger lost entries: {} < {n}", ledger.len());
    let text = |e: &Value, field: &str| e[field].as_str().unwrap_or_default().to_owned();
    let kept: Vec<(i64, String, String, String)> =
        ledger[..n].iter().map(|e| (e["seq"].as_i64().unwrap_or_default(), text(e, "entry_type"), text(e, "entry_id"), text(e, "hash"))).collect();
    assert_eq!(kept, old.entries, "the old ledger entries after the upgrade");
    let checkpoints: BTreeSet<i64> = p.list("audit", "/checkpoints", "tree_size").await?.iter().filter_map(|c| c["tree_size"].as_i64()).collect();
    assert!(checkpoints.is_superset(&old.checkpoints), "old checkpoints {:?} not all in {checkpoints:?}", old.checkpoints);
    let verify = p.get("audit", "/verify").await?;
    assert_eq!(verify["ok"], true, "the upgraded ledger does not verify: {verify}");
    assert!(verify["entries"].as_u64().unwrap_or_default() >= n as u64, "{verify}");
    Ok(())
}

/// A referral sent now is delivered once, beside the old ones; the ledger records it once, in a
/// checkpoint every agency witnesses, and nothing old again: no entry after the old ones names
/// an old envelope or event, and none is a replay, a misroute, a gap or a reset of the stream.
async fn new_referral_once(p: &Partnership, agencies: &BTreeMap<String, AgencyRecords>, old: &LedgerRecords) -> anyhow::Result<()> {
    let sent = send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 9001, 1, 1, Arc::new(AtomicUsize::new(0))).await?;
    let new_id = sent[0].clone();
    let inbox = eventually("the new referral in the IDVA's inbox", Duration::from_secs(30), || async {
        let listed = p.list(IDVA, "/inbox", "stream_seq").await?;
        Ok(listed.iter().any(|e| e["envelope_id"] == new_id.as_str()).then_some(listed))
    })
    .await?;
    let with_new = |old: &BTreeMap<String, String>| old.keys().cloned().chain([new_id.clone()]).collect::<BTreeSet<String>>();
    let inbox: BTreeSet<String> = ids_once(&inbox, "the IDVA's inbox").into_keys().collect();
    assert_eq!(inbox, with_new(&agencies[IDVA].inbox), "the IDVA's inbox: the old disclosures and the new one");
    let sent: BTreeSet<String> = ids_once(&p.list(HOUSING, "/disclosures", "envelope_id").await?, "housing's sent list").into_keys().collect();
    assert_eq!(sent, with_new(&agencies[HOUSING].sent), "housing's sent list: the old disclosures and the new one");
    let read = p.get(IDVA, &format!("/inbox/{new_id}")).await?;
    assert!(read["payload"]["idvaReferral"]["survivor"]["fullName"].is_string(), "{read}");

    let ledger = eventually("a checkpoint covering the new referral, witnessed by every agency", Duration::from_secs(30), || async {
        let ledger = p.ledger().await?;
        let at = ledger.iter().find(|e| e["entry_type"] == "disclosure" && e["entry_id"] == new_id.as_str());
        let seq = at.with_context(|| format!("not in the ledger yet; its last entry: {}", ledger.last().unwrap_or(&Value::Null)))?["seq"].as_u64().unwrap_or(u64::MAX);
        for agency in p.hub.services.keys() {
            let witness = p.as_role(agency, Role::AgencyAdmin).await?.get(format!("{}/witness", p.url(agency))).send().await?.json::<Value>().await?;
            anyhow::ensure!(witness["alerts"].as_array().is_some_and(Vec::is_empty), "{agency}'s witness raised alerts: {witness}");
            let witnessed = witness["last_accepted"]["tree_size"].as_u64().unwrap_or_default();
            anyhow::ensure!(witnessed >= seq, "{agency} has not witnessed entry {seq}: {witness}; checkpoints {}", p.get("audit", "/checkpoints").await?);
        }
        Ok(Some(ledger))
    })
    .await?;
    assert_eq!(ledger.iter().filter(|e| e["entry_type"] == "disclosure" && e["entry_id"] == new_id.as_str()).count(), 1, "the new referral in the ledger");
    let old_ids: BTreeSet<&str> = old.entries.iter().map(|(_, _, id, _)| id.as_str()).collect();
    for entry in &ledger[old.entries.len()..] {
        let id = entry["entry_id"].as_str().unwrap_or_default();
        assert!(!old_ids.contains(id), "an old entry recorded again after the upgrade: {entry}");
        let kind = entry["entry_type"].as_str().unwrap_or_default();
        assert!(!["replay", "misroute", "stream_gap", "stream_reset", "unverifiable"].contains(&kind), "after the upgrade the ledger recorded a {kind}: {entry}");
    }
    let verify = p.get("audit", "/verify").await?;
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["alerts"].as_array().is_some_and(Vec::is_empty), "the upgraded ledger raises alerts: {verify}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v0_1_0_data_on_sqlite_upgrades_and_keeps_working() -> anyhow::Result<()> {
    upgrade_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v0_1_0_data_on_postgres_upgrades_and_keeps_working() -> anyhow::Result<()> {
    upgrade_on(Backend::Postgres).await
}
