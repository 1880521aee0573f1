//! `hub backup` and `hub restore`: one service's data (an agency, or `audit` for the ledger)
//! copied out of a data directory into a backup directory, and put back.
//!
//! A backup is a directory (no archive format: the workspace has no tar crate and a backup
//! tool does not need one), made owner-only (0700, every file 0600):
//!
//! - `manifest.json`: the service, the database engine, and every file with its mode and
//!   SHA-256, checked before anything is restored.
//! - `database.sqlite` (a `VACUUM INTO` copy: consistent while the service runs) or
//!   `database.pgdump` (`pg_dump --format=custom`).
//! - `files/...`: the service's own secrets (its key file, for `audit` the IG office's; its
//!   broker seed) and the partnership's public files, at their paths in the data directory.
//!
//! Restore refuses a database that already holds rows unless forced, puts secrets back 0600,
//! and never overwrites the partnership's public files (a newer signed directory or policy
//! stays; services refuse an older one anyway). Nothing here prints a key or a seed: only paths.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::local::{Options, database_url};

const MANIFEST: &str = "manifest.json";
const SQLITE_COPY: &str = "database.sqlite";
const PG_DUMP: &str = "database.pgdump";

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    service: String,
    /// `sqlite` or `postgres`.
    engine: String,
    created_at: String,
    /// The database copy, relative to the backup directory.
    database: String,
    database_sha256: String,
    files: Vec<FileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileEntry {
    /// Relative to the data directory (and to `files/` in the backup).
    path: String,
    mode: u32,
    secret: bool,
    sha256: String,
}

/// What a backup or restore did, for the command to print (paths and counts only).
#[derive(Debug)]
pub struct Summary {
    pub engine: &'static str,
    pub files: Vec<String>,
    pub skipped: Vec<String>,
}

/// The files of `service` in a data directory: `(path relative to data, secret)`.
fn service_files(data: &Path, service: &str) -> anyhow::Result<Vec<(String, bool)>> {
    let directory = isp::Directory::load(&crate::partnership::directory_path(data)).context("loading the partnership directory (is --data right?)")?;
    let key_owner = if service == audit::AUDIT_IDENTITY {
        directory.with_role(isp::Role::Ig).next().context("the directory has no IG office, whose key the audit service uses")?.id.clone()
    } else {
        anyhow::ensure!(
            directory.agencies.iter().any(|a| a.id == service),
            "unknown service {service:?}: an agency id of the directory ({}) or `audit`",
            directory.agencies.iter().map(|a| a.id.as_str()).collect::<Vec<_>>().join(", ")
        );
        service.to_owned()
    };
    let mut files = vec![(format!("keys/{key_owner}.toml"), true), (format!("broker/{service}.nk"), true), ("broker/ca.pem".to_owned(), false)];
    for name in ["directory.toml", "directory.toml.sig", "policy.toml", "policy.toml.sig"] {
        files.push((format!("partnership/{name}"), false));
    }
    Ok(files)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to a new file created with `mode` (never readable by others in between).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Replaces `path` with `bytes` at `mode`: written beside it, then renamed over it.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let parent = path.parent().context("a file with no directory")?;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    let temp = parent.join(format!(".{}.restoring", path.file_name().unwrap_or_default().to_string_lossy()));
    let _ = fs::remove_file(&temp);
    write_new(&temp, bytes, mode)?;
    fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

fn sqlite_path(data: &Path, service: &str) -> PathBuf {
    data.join("db").join(format!("{service}.db"))
}

fn pg_tool(tool: &str) -> anyhow::Result<()> {
    match Command::new(tool).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => anyhow::bail!("{tool} is not on PATH: install postgresql-client (the same major version as the server, or newer) to back up or restore a PostgreSQL database"),
    }
}

/// Runs a PostgreSQL client tool; on failure, its own message (which never holds a password:
/// the URL is passed as an argument, and the tools do not echo it).
fn run_pg(mut command: Command, what: &str) -> anyhow::Result<()> {
    let out = command.output().with_context(|| format!("running {what}"))?;
    anyhow::ensure!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

/// `hub backup`: copies `service`'s database and files from `options.data` into the new
/// directory `out`.
pub async fn backup(options: &Options, service: &str, out: &Path) -> anyhow::Result<Summary> {
    let data = &options.data;
    let files = service_files(data, service)?;
    anyhow::ensure!(!out.exists(), "{} already exists: a backup goes into a new directory", out.display());
    fs::DirBuilder::new().mode(0o700).create(out).with_context(|| format!("creating {}", out.display()))?;
    fs::set_permissions(out, fs::Permissions::from_mode(0o700))?;

    let (engine, database) = match &options.database_url {
        None => {
            let db = sqlite_path(data, service);
            anyhow::ensure!(db.is_file(), "{service} has no database at {}", db.display());
            let pool = runtime::db::connect(&runtime::config::sqlite_url(data, service)).await?;
            let target = out.join(SQLITE_COPY);
            let quoted = target.to_str().context("a backup path that is not UTF-8")?.replace('\'', "''");
            // One consistent snapshot while the service keeps writing (WAL readers do not block).
            sqlx::query(&format!("VACUUM INTO '{quoted}'")).execute(&pool).await.context("copying the SQLite database (VACUUM INTO)")?;
            pool.close().await;
            fs::set_permissions(&target, fs::Permissions::from_mode(0o600))?;
            ("sqlite", SQLITE_COPY)
        }
        Some(_) => {
            pg_tool("pg_dump")?;
            let url = database_url(options, service).await?;
            let target = out.join(PG_DUMP);
            // Created owner-only first; pg_dump writes into it.
            write_new(&target, b"", 0o600)?;
            let mut command = Command::new("pg_dump");
            command.args(["--format=custom", "--no-owner", "--file"]).arg(&target).arg(&url);
            run_pg(command, "pg_dump")?;
            ("postgres", PG_DUMP)
        }
    };
    let database_sha256 = sha256(&fs::read(out.join(database))?);

    let mut entries = Vec::new();
    let mut summary = Summary { engine, files: Vec::new(), skipped: Vec::new() };
    for (rel, secret) in files {
        let source = data.join(&rel);
        let bytes = match fs::read(&source) {
            Ok(b) => b,
            // A partnership without broker credentials (NATS_URL to an open broker) has no seed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && rel.starts_with("broker/") => {
                summary.skipped.push(rel);
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", source.display())),
        };
        let mode = fs::metadata(&source)?.permissions().mode() & 0o777;
        let target = out.join("files").join(&rel);
        fs::DirBuilder::new().recursive(true).mode(0o700).create(target.parent().expect("under files/"))?;
        write_new(&target, &bytes, 0o600)?;
        entries.push(FileEntry { path: rel.clone(), mode: if secret { 0o600 } else { mode }, secret, sha256: sha256(&bytes) });
        summary.files.push(rel);
    }
    let manifest = Manifest {
        service: service.to_owned(),
        engine: engine.to_owned(),
        created_at: time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?,
        database: database.to_owned(),
        database_sha256,
        files: entries,
    };
    write_new(&out.join(MANIFEST), serde_json::to_string_pretty(&manifest)?.as_bytes(), 0o600)?;
    Ok(summary)
}

/// How many rows the service's tables hold (migration bookkeeping aside); 0 when its SQLite
/// file does not exist.
async fn rows(options: &Options, service: &str) -> anyhow::Result<i64> {
    let url = match &options.database_url {
        None if !sqlite_path(&options.data, service).exists() => return Ok(0),
        None => runtime::config::sqlite_url(&options.data, service),
        Some(_) => database_url(options, service).await?,
    };
    let pool = runtime::db::connect(&url).await?;
    let tables_sql = if options.database_url.is_none() {
        "SELECT name AS t FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'"
    } else {
        "SELECT CAST(table_name AS TEXT) AS t FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations'"
    };
    let tables: Vec<String> = sqlx::query_scalar(tables_sql).fetch_all(&pool).await?;
    let mut total = 0;
    for table in tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{}\"", table.replace('"', "\"\""))).fetch_one(&pool).await?;
        total += n;
    }
    pool.close().await;
    Ok(total)
}

/// `hub restore`: puts `service`'s database and files from the backup directory `from` back
/// into `options.data`. The service must be stopped.
pub async fn restore(options: &Options, service: &str, from: &Path, force: bool) -> anyhow::Result<Summary> {
    let data = &options.data;
    let manifest: Manifest = serde_json::from_slice(&fs::read(from.join(MANIFEST)).with_context(|| format!("reading {} (is it a hub backup?)", from.join(MANIFEST).display()))?)
        .context("reading the backup's manifest")?;
    anyhow::ensure!(manifest.service == service, "{} is a backup of {}, not {service}", from.display(), manifest.service);
    let engine = if options.database_url.is_some() { "postgres" } else { "sqlite" };
    anyhow::ensure!(manifest.engine == engine, "{} holds a {} database; this data directory uses {engine} (DATABASE_URL {})", from.display(), manifest.engine, if engine == "sqlite" { "unset" } else { "set" });
    // Check every byte before changing anything.
    let database = fs::read(from.join(&manifest.database))?;
    anyhow::ensure!(sha256(&database) == manifest.database_sha256, "{}: the database copy does not match its manifest (damaged backup)", from.display());
    let mut contents = Vec::new();
    for entry in &manifest.files {
        anyhow::ensure!(!entry.path.split('/').any(|p| p == ".." || p.is_empty()), "bad path {:?} in the manifest", entry.path);
        let bytes = fs::read(from.join("files").join(&entry.path))?;
        anyhow::ensure!(sha256(&bytes) == entry.sha256, "{}: {} does not match its manifest (damaged backup)", from.display(), entry.path);
        contents.push(bytes);
    }
    let existing = rows(options, service).await?;
    if existing > 0 && !force {
        anyhow::bail!("{service}'s database already has {existing} row(s): refusing to overwrite it (stop the service and pass --force to replace it with the backup)");
    }

    match options.database_url {
        None => {
            let db = sqlite_path(data, service);
            // The old database's journal must not be replayed onto the restored file.
            for suffix in ["-wal", "-shm", "-journal"] {
                let mut f = db.clone().into_os_string();
                f.push(suffix);
                match fs::remove_file(&f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
            replace(&db, &database, 0o600)?;
        }
        Some(_) => {
            pg_tool("pg_restore")?;
            let url = database_url(options, service).await?;
            let mut command = Command::new("pg_restore");
            command.args(["--clean", "--if-exists", "--no-owner", "--single-transaction", "--exit-on-error", "--dbname"]).arg(&url).arg(from.join(&manifest.database));
            run_pg(command, "pg_restore")?;
        }
    }

    let mut summary = Summary { engine: if options.database_url.is_none() { "sqlite" } else { "postgres" }, files: Vec::new(), skipped: Vec::new() };
    for (entry, bytes) in manifest.files.iter().zip(contents) {
        let target = data.join(&entry.path);
        if !entry.secret && target.exists() {
            // The partnership's public files as they are now stay: a newer signed version wins.
            summary.skipped.push(entry.path.clone());
            continue;
        }
        replace(&target, &bytes, if entry.secret { 0o600 } else { entry.mode })?;
        summary.files.push(entry.path.clone());
    }
    Ok(summary)
}
