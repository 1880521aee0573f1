//! Storage through sqlx's `Any` driver: the same queries run on SQLite (the embedded
//! default) and PostgreSQL (`DATABASE_URL=postgres://...`). SQL here is the common subset:
//! TEXT, BIGINT, BYTEA, `$n` parameters in order, `ON CONFLICT DO NOTHING`; times are
//! milliseconds since the epoch in BIGINT columns.

use std::{borrow::Cow, time::Duration};

use anyhow::Context as _;
use sqlx::{
    AnyPool, Executor,
    any::AnyPoolOptions,
    migrate::{MigrationType, Migrator},
};

/// A transaction on either engine.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// One migration, written in SQL both engines accept.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Whether a URL names a SQLite database.
pub fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// Opens a pool. SQLite gets one connection (one writer, no lock upgrades to fail) in WAL
/// mode; PostgreSQL a small pool. A SQLite database is the agency's case records: its folder
/// is created owner-only (0700) and the file is made owner-only (0600) before SQLite opens
/// it, so its journal files are too.
pub async fn connect(url: &str) -> anyhow::Result<AnyPool> {
    sqlx::any::install_default_drivers();
    let sqlite = is_sqlite(url);
    if sqlite {
        let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
        let path = std::path::Path::new(path.split('?').next().unwrap_or_default());
        if !path.as_os_str().is_empty() && path != std::path::Path::new(":memory:") {
            owner_only(path).with_context(|| format!("making {} readable by its owner only", path.display()))?;
        }
    }
    let options = AnyPoolOptions::new()
        .max_connections(if sqlite { 1 } else { 4 })
        .acquire_timeout(Duration::from_secs(30))
        // A SQLite connection is a file in this process, never dropped by a server: pinging it
        // before every use would cost a hop to its worker thread (~50 us of CPU on a small VM)
        // per statement outside a transaction and per transaction.
        .test_before_acquire(!sqlite)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;").await?;
                }
                Ok(())
            })
        });
    options
        .connect(url)
        .await
        .with_context(|| format!("connecting to the database {}", crate::config::redact_url(url)))
}

/// Creates a SQLite file's folder (0700) and the file (0600) when missing, and narrows both,
/// with the journal files beside it, when they exist with wider permissions.
#[cfg(unix)]
fn owner_only(db: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    let narrow = |path: &std::path::Path, mode: u32| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
        narrow(parent, 0o700)?;
    }
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(db)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = db.as_os_str().to_owned();
        file.push(suffix);
        match narrow(std::path::Path::new(&file), 0o600) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(db: &std::path::Path) -> std::io::Result<()> {
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    Ok(())
}

/// `(?, ?, ...), (...)` for `rows` rows of `cols` values: anonymous `?` on SQLite, `$n` on
/// PostgreSQL. (sqlx binds SQLite parameters by looking each one's name up, a linear scan
/// over the statement's named parameters: numbered ones make wide inserts quadratic.)
pub fn placeholders(sqlite: bool, rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let row = (1..=cols).map(|c| if sqlite { "?".to_owned() } else { format!("${}", r * cols + c) }).collect::<Vec<_>>();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A list column as stored (the `Any` driver has no arrays): its values joined by commas,
/// none of them empty and none holding a comma (codes and ids of a strict grammar).
pub fn comma_list(stored: &str) -> Vec<String> {
    stored.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// `$first, $first+1, ...`: `n` numbered parameters, for an `IN (...)` list.
pub fn numbered(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Rows per multi-row INSERT: with up to 28 columns a row, far below either engine's limit on
/// parameters.
pub const ROWS_PER_INSERT: usize = 64;

/// Whether a transaction runs on SQLite (whose placeholders [`placeholders`] writes as `?`).
pub fn on_sqlite(tx: &mut Tx) -> bool {
    (**tx).backend_name() == "SQLite"
}

/// The tables every service has: outbox, sent, inbox, quarantine.
pub fn runtime_migrations() -> Vec<Migration> {
    vec![
        Migration { version: 1, description: "runtime outbox inbox", sql: include_str!("../migrations/0001_runtime.sql") },
        Migration { version: 2, description: "runtime consent", sql: include_str!("../migrations/0002_consent.sql") },
        Migration { version: 3, description: "runtime receipts", sql: include_str!("../migrations/0003_receipts.sql") },
        Migration { version: 4, description: "runtime staff actions", sql: include_str!("../migrations/0004_staff_actions.sql") },
        Migration { version: 5, description: "runtime idempotency", sql: include_str!("../migrations/0005_idempotency.sql") },
        Migration { version: 11, description: "runtime receive guard", sql: include_str!("../migrations/0011_receive_guard.sql") },
        Migration { version: 12, description: "quarantine index", sql: include_str!("../migrations/0012_quarantine_index.sql") },
        Migration { version: 13, description: "console indexes", sql: include_str!("../migrations/0013_console_indexes.sql") },
        Migration { version: 14, description: "consent read position", sql: include_str!("../migrations/0014_consent_read_position.sql") },
    ]
}

/// Applies migrations (runtime's and the service's) in version order.
pub async fn migrate(pool: &AnyPool, mut migrations: Vec<Migration>) -> anyhow::Result<()> {
    migrations.sort_by_key(|m| m.version);
    let migrator = Migrator {
        migrations: Cow::Owned(
            migrations
                .into_iter()
                .map(|m| sqlx::migrate::Migration::new(m.version, Cow::Borrowed(m.description), MigrationType::Simple, Cow::Borrowed(m.sql), false))
                .collect(),
        ),
        ..Migrator::DEFAULT
    };
    migrator.run(pool).await.context("migrating the database")
}

/// The URL of database `name` on the PostgreSQL server of `server_url`, created if missing.
/// Lets one server hold every service's database, each service in its own.
pub async fn postgres_database(server_url: &str, name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "bad database name {name:?}");
    sqlx::any::install_default_drivers();
    let mut conn: sqlx::AnyConnection = sqlx::Connection::connect(server_url)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", crate::config::redact_url(server_url)))?;
    let exists = sqlx::query("SELECT 1 AS one FROM pg_database WHERE datname = $1").bind(name).fetch_optional(&mut conn).await?;
    if exists.is_none() {
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await.with_context(|| format!("creating database {name}"))?;
    }
    let (base, query) = match server_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server_url, String::new()),
    };
    let prefix = base.rsplit_once('/').map(|(p, _)| p).filter(|p| !p.ends_with('/')).unwrap_or(base);
    Ok(format!("{prefix}/{name}{query}"))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[tokio::test]
    async fn sqlite_files_are_readable_by_their_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db").join("agency.db");
        let pool = super::connect(&format!("sqlite://{}?mode=rwc", db.display())).await.unwrap();
        sqlx::query("CREATE TABLE t (x BIGINT)").execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)").execute(&pool).await.unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(db.parent().unwrap()), 0o700);
        let wal = db.with_extension("db-wal");
        assert!(wal.exists(), "WAL mode writes a -wal file");
        for file in [&db, &wal] {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        pool.close().await;
        // A file left wider by an earlier version is narrowed on the next start.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        super::connect(&format!("sqlite://{}?mode=rwc", db.display())).await.unwrap().close().await;
        assert_eq!(mode(&db), 0o600);
    }
}
