//! `hub backup` and `hub restore` as an operator runs them: after `hub demo --data D`, the
//! IDVA's and the ledger's backups survive the loss of their databases, key files and broker
//! seeds. Restored, the ledger verifies, the IDVA's inbox holds exactly the envelopes it held,
//! each once, and the secrets are back byte for byte, owner-only. A restore onto a database
//! that has rows is refused unless forced. On SQLite, and on PostgreSQL when pg_dump and
//! pg_restore are installed.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Output},
};

const IDVA: &str = "idva-northbridge";

/// Where the services keep their databases: SQLite files in the data directory, or
/// PostgreSQL databases `{prefix}_{service}` on a server.
enum Backend {
    Sqlite,
    Postgres(tests::PostgresDatabases),
}

impl Backend {
    fn hub(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hub"));
        command.args(args).env("RUST_LOG", "warn").env("NO_COLOR", "1").env_remove("NATS_URL").env_remove("DATABASE_URL").env_remove("DATABASE_PREFIX");
        if let Backend::Postgres(pg) = self {
            command.env("DATABASE_URL", &pg.server).env("DATABASE_PREFIX", &pg.prefix);
        }
        command.output().expect("runs hub")
    }

    async fn url(&self, data: &Path, service: &str) -> String {
        match self {
            Backend::Sqlite => runtime::config::sqlite_url(data, service),
            Backend::Postgres(pg) => runtime::db::postgres_database(&pg.server, &self.pg_name(service)).await.unwrap(),
        }
    }

    fn pg_name(&self, service: &str) -> String {
        match self {
            Backend::Postgres(pg) => format!("{}_{}", pg.prefix, service.replace('-', "_")),
            Backend::Sqlite => unreachable!(),
        }
    }

    /// The service's database is gone, as after the loss of a disk.
    async fn lose_database(&self, data: &Path, service: &str) {
        match self {
            Backend::Sqlite => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(data.join("db").join(format!("{service}.db{suffix}")));
                }
                assert!(!data.join("db").join(format!("{service}.db")).exists());
            }
            Backend::Postgres(pg) => {
                use sqlx::{Connection as _, Executor as _};
                sqlx::any::install_default_drivers();
                let mut conn = sqlx::AnyConnection::connect(&pg.server).await.unwrap();
                conn.execute(format!("DROP DATABASE {}", self.pg_name(service)).as_str()).await.unwrap();
            }
        }
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

async fn inbox_ids(url: &str) -> Vec<String> {
    let pool = runtime::db::connect(url).await.unwrap();
    let ids = sqlx::query_scalar("SELECT envelope_id FROM inbox ORDER BY envelope_id").fetch_all(&pool).await.unwrap();
    pool.close().await;
    ids
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

async fn backup_and_restore(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let demo = backend.hub(&["demo", "--data", d]);
    assert!(demo.status.success(), "hub demo failed:\n{}", text(&demo));

    let ig = isp::Directory::load(&data.join("partnership/directory.toml")).unwrap().with_role(isp::Role::Ig).next().unwrap().id.clone();
    let secrets = [format!("keys/{IDVA}.toml"), format!("broker/{IDVA}.nk"), format!("keys/{ig}.toml"), "broker/audit.nk".to_owned()];
    let before: Vec<Vec<u8>> = secrets.iter().map(|s| std::fs::read(data.join(s)).unwrap()).collect();
    let inbox_before = inbox_ids(&backend.url(&data, IDVA).await).await;
    assert!(inbox_before.len() >= 3, "the demo delivered to the IDVA: {inbox_before:?}");

    for service in [IDVA, "audit"] {
        let out = dir.path().join(format!("backup-{service}"));
        let backup = backend.hub(&["backup", "--data", d, "--service", service, "--out", out.to_str().unwrap()]);
        assert!(backup.status.success(), "hub backup {service}: {}", text(&backup));
        assert_eq!(mode(&out), 0o700);
        for secret in &before {
            assert!(!backup.stdout.windows(secret.len()).any(|w| w == secret.as_slice()), "a secret was printed");
        }
    }

    // The disk is lost: both databases, the key files and the seeds.
    for service in [IDVA, "audit"] {
        backend.lose_database(&data, service).await;
    }
    for s in &secrets {
        std::fs::remove_file(data.join(s)).unwrap();
    }

    for service in [IDVA, "audit"] {
        let from = dir.path().join(format!("backup-{service}"));
        let restore = backend.hub(&["restore", "--data", d, "--service", service, "--from", from.to_str().unwrap()]);
        assert!(restore.status.success(), "hub restore {service}: {}", text(&restore));
    }

    let verify = backend.hub(&["audit", "verify", "--data", d]);
    assert!(verify.status.success() && text(&verify).starts_with("ledger OK: "), "{}", text(&verify));
    let inbox_after = inbox_ids(&backend.url(&data, IDVA).await).await;
    assert_eq!(inbox_after, inbox_before, "the IDVA's inbox after restore");
    let mut unique = inbox_after.clone();
    unique.dedup();
    assert_eq!(unique.len(), inbox_after.len(), "an envelope twice in the inbox");
    for (s, bytes) in secrets.iter().zip(&before) {
        assert_eq!(&std::fs::read(data.join(s)).unwrap_or_else(|e| panic!("{s} not restored: {e}")), bytes, "{s} restored differently");
        assert_eq!(mode(&data.join(s)), 0o600, "{s} restored readable by others");
    }
    if let Backend::Sqlite = backend {
        assert_eq!(mode(&data.join(format!("db/{IDVA}.db"))), 0o600);
    }

    // The IDVA's database has rows now: a second restore is refused, and nothing changes...
    let from = dir.path().join(format!("backup-{IDVA}"));
    let again = backend.hub(&["restore", "--data", d, "--service", IDVA, "--from", from.to_str().unwrap()]);
    assert!(!again.status.success(), "a restore over a database with rows was not refused");
    assert!(text(&again).contains("already has") && text(&again).contains("--force"), "{}", text(&again));
    // ...unless forced.
    let forced = backend.hub(&["restore", "--data", d, "--service", IDVA, "--from", from.to_str().unwrap(), "--force"]);
    assert!(forced.status.success(), "{}", text(&forced));
    assert_eq!(inbox_ids(&backend.url(&data, IDVA).await).await, inbox_before);
}

#[tokio::test]
async fn sqlite_backup_restores_the_idva_and_the_ledger() {
    backup_and_restore(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_backup_restores_the_idva_and_the_ledger() {
    let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !(have("pg_dump") && have("pg_restore")) {
        println!("skipped: pg_dump or pg_restore is not installed (install postgresql-client)");
        return;
    }
    backup_and_restore(Backend::Postgres(tests::PostgresDatabases::fresh())).await;
}
