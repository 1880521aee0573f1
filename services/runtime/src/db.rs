//! Storage through sqlx's `Any` driver: the same queries run on SQLite (the embedded
//! default) and PostgreSQL (`DATABASE_URL=postgres://...`). SQL here is the common subset:
//! TEXT, BIGINT, BYTEA, `$n` parameters in order, `ON CONFLICT DO NOTHING`; times are
//! milliseconds since the epoch in BIGINT columns.

use std::{
    borrow::Cow,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

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
    if let Some(path) = sqlite_file(url) {
        owner_only(&path).with_context(|| format!("making {} readable by its owner only", path.display()))?;
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

/// The file a SQLite URL names; None for PostgreSQL and for an in-memory database.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    if !is_sqlite(url) {
        return None;
    }
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = Path::new(path.split('?').next().unwrap_or_default());
    (!path.as_os_str().is_empty() && path != Path::new(":memory:")).then(|| path.to_owned())
}

/// Reads made on every delivery and every pass of the publisher, answered on SQLite in
/// place: a read-only rusqlite connection of this process, on the calling thread, its
/// prepared statements cached. Through sqlx each such read is a round trip to the driver's
/// worker thread, then another for the ping sqlx sends whenever a connection goes back to its
/// pool: four thread wake-ups for a read of microseconds. At light load those hops were most
/// of a service's CPU (`perf` on the IDVA at 200/s: sqlx's SQLite worker thread 41 % of its
/// samples, two thirds of them in the kernel switching threads). In WAL mode a reader sees
/// every transaction committed before it starts and never blocks the writer. A read that must
/// see its own transaction's writes goes through that transaction, never here. For
/// PostgreSQL, and a SQLite database in memory (one connection only), there is none: reads go
/// through the pool, as [`read_rows`] does.
#[derive(Clone, Default)]
pub struct InPlace(Option<Arc<InPlaceFile>>);

struct InPlaceFile {
    path: PathBuf,
    /// Connections not in use: one, unless reads overlap on a multi-threaded runtime.
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl std::fmt::Debug for InPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "InPlace(SQLite file)" } else { "InPlace(none)" })
    }
}

impl InPlace {
    /// For the database `url` names (opened on first read, after the migrations have run).
    pub fn for_url(url: &str) -> InPlace {
        InPlace(sqlite_file(url).map(|path| Arc::new(InPlaceFile { path, idle: Mutex::new(Vec::new()) })))
    }

    /// Runs `read` on a read-only connection of its own; None when the database is not a
    /// SQLite file. A connection whose read failed is closed, and the next read opens another.
    pub fn read<T>(&self, read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>) -> Option<sqlx::Result<T>> {
        let file = self.0.as_ref()?;
        let idle = file.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle.map_or_else(|| open_in_place(&file.path), Ok) {
            Ok(conn) => conn,
            Err(e) => return Some(Err(sqlx::Error::AnyDriverError(Box::new(e)))),
        };
        let result = read(&conn).map_err(|e| sqlx::Error::AnyDriverError(Box::new(e)));
        if result.is_ok() {
            file.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        }
        Some(result)
    }
}

/// A read-only connection to a SQLite file, waiting for locks as the pools do.
pub fn open_read_only(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    // As long as the pool's connections wait for a lock (a checkpoint resetting the WAL).
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// A read-only connection for [`InPlace`]: its reads touch a few index pages and the pending
/// outbox rows, so its page cache is kept to 256 KiB (SQLite's default is 2 MB, which a
/// service's peak memory showed), the rest being in the kernel's page cache anyway.
fn open_in_place(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = open_read_only(path)?;
    conn.pragma_update(None, "cache_size", -256)?;
    Ok(conn)
}

/// The rows `sql` selects with `values`: in place on a SQLite file ([`InPlace`]), through the
/// pool otherwise. `sql` is written as for `sqlx::query`, with `$n` placeholders.
pub async fn read_rows<T>(pool: &AnyPool, in_place: &InPlace, sql: &str, values: &[Value<'_>]) -> sqlx::Result<Vec<T>>
where
    T: FromCells + for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    let here = in_place.read(|conn| {
        // Numbered placeholders become anonymous ones bound in order, whatever their numbers.
        let (mut rewritten, mut order) = (String::with_capacity(sql.len()), Vec::with_capacity(values.len()));
        anonymous(sql, values, &mut rewritten, &mut order).map_err(rusqlite::Error::InvalidParameterName)?;
        let mut statement = conn.prepare_cached(&rewritten)?;
        let rows = statement.query_map(rusqlite::params_from_iter(order), |row| T::from_cells(&Cells(row)))?;
        rows.collect::<rusqlite::Result<Vec<T>>>()
    });
    if let Some(rows) = here {
        return rows;
    }
    let mut args = sqlx::any::AnyArguments::default();
    for v in values {
        add(&mut args, v)?;
    }
    sqlx::query_as_with::<_, T, _>(sql, args).fetch_all(pool).await
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::NullText => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

/// A rusqlite row read as sqlx reads SQLite: bytes from a BLOB or a TEXT cell alike, so that a
/// hash, link or signed record rewritten as text is read (and found altered) rather than
/// failing the read.
pub struct Cells<'r, 's>(pub &'r rusqlite::Row<'s>);

/// A column type [`Cells`] reads.
pub trait Cell: Sized {
    fn of(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self>;
}

impl Cell for i64 {
    fn of(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<i64> {
        v.as_i64()
    }
}

impl Cell for String {
    fn of(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<String> {
        v.as_str().map(str::to_owned)
    }
}

impl Cell for Vec<u8> {
    fn of(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Vec<u8>> {
        use rusqlite::types::{FromSqlError, ValueRef};
        match v {
            ValueRef::Blob(b) | ValueRef::Text(b) => Ok(b.to_vec()),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

impl Cells<'_, '_> {
    pub fn get<T: Cell>(&self, i: usize) -> rusqlite::Result<T> {
        T::of(self.0.get_ref(i)?).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, self.0.get_ref(i).map_or(rusqlite::types::Type::Null, |v| v.data_type()), Box::new(e)))
    }
}

/// A row [`read_rows`] reads in place: a tuple of [`Cell`]s, in the order of the columns.
pub trait FromCells: Sized {
    fn from_cells(row: &Cells<'_, '_>) -> rusqlite::Result<Self>;
}

macro_rules! tuple_from_cells {
    ($($t:ident $i:tt),+) => {
        impl<$($t: Cell),+> FromCells for ($($t,)+) {
            fn from_cells(row: &Cells<'_, '_>) -> rusqlite::Result<Self> {
                Ok(($(row.get::<$t>($i)?,)+))
            }
        }
    };
}
tuple_from_cells!(A 0);
tuple_from_cells!(A 0, B 1);
tuple_from_cells!(A 0, B 1, C 2);
tuple_from_cells!(A 0, B 1, C 2, D 3);
tuple_from_cells!(A 0, B 1, C 2, D 3, E 4);
tuple_from_cells!(A 0, B 1, C 2, D 3, E 4, F 5);

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

/// A value bound to a statement of a [`Batch`]: the few types the shared tables' writes bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Text(String),
    /// Bytes as given: an envelope already in memory is bound where it is, not copied.
    Blob(Cow<'a, [u8]>),
    /// A TEXT column left NULL.
    NullText,
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<&str> for Value<'_> {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<&String> for Value<'_> {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Blob(Cow::Borrowed(v))
    }
}
impl From<Vec<u8>> for Value<'_> {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(Cow::Owned(v))
    }
}
impl From<Option<&str>> for Value<'_> {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Value::NullText, Value::from)
    }
}

/// One statement of a [`Batch`], its values bound in the order of its placeholders' numbers.
#[derive(Debug)]
pub struct Statement<'a> {
    sql: String,
    values: Vec<Value<'a>>,
}

impl<'a> Statement<'a> {
    pub fn bind(&mut self, v: impl Into<Value<'a>>) -> &mut Self {
        self.values.push(v.into());
        self
    }
}

/// Writes of one transaction that read nothing and that nothing between them reads, sent
/// together: on SQLite one round trip to sqlx's worker thread for all of them (a hop there
/// and back costs two thread wake-ups, more than the write itself), on PostgreSQL one
/// statement after another, as before. Statements are written as for `sqlx::query`: `$n`
/// (or, from [`placeholders`], `?`) placeholders numbered within the statement.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    sqlite: bool,
    statements: Vec<Statement<'a>>,
}

impl<'a> Batch<'a> {
    /// An empty batch for a transaction (its engine decides how [`placeholders`] are written).
    pub fn on(tx: &mut Tx) -> Batch<'a> {
        Batch { sqlite: on_sqlite(tx), statements: Vec::new() }
    }

    /// Whether the batch runs on SQLite: the `sqlite` argument of [`placeholders`].
    pub fn sqlite(&self) -> bool {
        self.sqlite
    }

    /// Adds a statement; bind its values on what this returns.
    pub fn statement(&mut self, sql: String) -> &mut Statement<'a> {
        self.statements.push(Statement { sql, values: Vec::new() });
        self.statements.last_mut().expect("just pushed")
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Runs and empties the batch, in the transaction; the first failing statement fails it
    /// (and the caller's transaction is rolled back).
    pub async fn run(&mut self, tx: &mut Tx) -> sqlx::Result<()> {
        let statements = std::mem::take(&mut self.statements);
        if statements.is_empty() {
            return Ok(());
        }
        if on_sqlite(tx) && statements.len() > 1 {
            let (sql, order) = joined(&statements).map_err(sqlx::Error::Protocol)?;
            let mut args = sqlx::any::AnyArguments::default();
            for v in order {
                add(&mut args, v)?;
            }
            sqlx::query_with(&sql, args).execute(&mut **tx).await?;
            return Ok(());
        }
        for s in &statements {
            let mut args = sqlx::any::AnyArguments::default();
            for v in &s.values {
                add(&mut args, v)?;
            }
            sqlx::query_with(&s.sql, args).execute(&mut **tx).await?;
        }
        Ok(())
    }
}

fn add<'q>(args: &mut sqlx::any::AnyArguments<'q>, v: &'q Value<'_>) -> sqlx::Result<()> {
    use sqlx::Arguments as _;
    match v {
        Value::Int(i) => args.add(*i),
        Value::Text(t) => args.add(t.as_str()),
        Value::Blob(b) => args.add(b.as_ref()),
        Value::NullText => args.add(Option::<String>::None),
    }
    .map_err(sqlx::Error::Encode)
}

/// The statements as one SQLite script, each rewritten by [`anonymous`], the values in the
/// order their placeholders appear. A script's numbers would otherwise have to be unique
/// across its statements.
fn joined<'s, 'a>(statements: &'s [Statement<'a>]) -> Result<(String, Vec<&'s Value<'a>>), String> {
    let mut sql = String::with_capacity(statements.iter().map(|s| s.sql.len() + 2).sum());
    let mut order = Vec::new();
    for s in statements {
        anonymous(&s.sql, &s.values, &mut sql, &mut order)?;
        sql.push_str(";\n");
    }
    Ok((sql, order))
}

/// Appends `sql` to `out` with every placeholder (`$n`, `?n`, `?`) rewritten as an anonymous
/// `?`, and to `order` the value each takes (a value whose number appears twice, twice).
/// SQLite binds anonymous placeholders in order, where it numbers named ones (`$1` is a name
/// to it) by first appearance and sqlx looks each up by name. Quoted text (`'...'`, `"..."`)
/// is left as it is; these statements hold no comments.
fn anonymous<'v, 'a>(sql: &str, values: &'v [Value<'a>], out: &mut String, order: &mut Vec<&'v Value<'a>>) -> Result<(), String> {
    let mut chars = sql.char_indices().peekable();
    let mut quote: Option<char> = None;
    let mut unnumbered = 0;
    while let Some((i, c)) = chars.next() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            out.push(c);
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                out.push(c);
            }
            '$' | '?' => {
                let start = i + 1;
                let mut end = start;
                while let Some((j, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                    end = j + d.len_utf8();
                    chars.next();
                }
                let n: usize = if end > start {
                    sql[start..end].parse().map_err(|_| "a placeholder's number is out of range in a statement".to_owned())?
                } else if c == '?' {
                    unnumbered += 1;
                    unnumbered
                } else {
                    return Err("a `$` that is no placeholder, outside quotes, in a statement".into());
                };
                let v = n.checked_sub(1).and_then(|k| values.get(k)).ok_or_else(|| format!("placeholder {n} has no value bound in a statement"))?;
                order.push(v);
                out.push('?');
            }
            _ => out.push(c),
        }
    }
    Ok(())
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

#[cfg(test)]
mod batch_tests {
    use super::{Batch, Value, joined};

    #[test]
    fn a_script_binds_each_placeholder_in_the_order_it_appears() {
        let mut b = Batch::default();
        b.statement("UPDATE t SET a = $2, b = $1 WHERE c = $2 AND d = '$9?'".into()).bind(1i64).bind("x");
        b.statement("INSERT INTO u VALUES (?, ?), (?, ?)".into()).bind(10i64).bind(11i64).bind(12i64).bind(13i64);
        let (sql, order) = joined(&b.statements).unwrap();
        assert_eq!(sql, "UPDATE t SET a = ?, b = ? WHERE c = ? AND d = '$9?';\nINSERT INTO u VALUES (?, ?), (?, ?);\n");
        let x = Value::from("x");
        assert_eq!(order, vec![&x, &Value::Int(1), &x, &Value::Int(10), &Value::Int(11), &Value::Int(12), &Value::Int(13)]);
    }

    #[test]
    fn a_placeholder_without_its_value_is_refused_not_bound_as_null() {
        let mut b = Batch::default();
        b.statement("UPDATE t SET a = $1 WHERE b = $2".into()).bind(1i64);
        assert!(joined(&b.statements).unwrap_err().contains("placeholder 2 has no value"));
        let mut b = Batch::default();
        b.statement("SELECT $x".into());
        assert!(joined(&b.statements).is_err());
    }

    /// On a real SQLite database, and through the same `Any` pool the services use: the
    /// script's writes land together, and a failing statement fails the batch (the caller's
    /// transaction, rolled back, keeps none of them).
    #[tokio::test]
    async fn a_batch_on_sqlite_writes_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let pool = super::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display())).await.unwrap();
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT, b BLOB, o TEXT)").execute(&pool).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        let mut b = Batch::default();
        b.statement("INSERT INTO t VALUES ($1, $2, $3, $4)".into()).bind("a").bind(1i64).bind(vec![1u8, 2]).bind(None::<&str>);
        b.statement("UPDATE t SET n = n + $2 WHERE k = $1".into()).bind("a").bind(41i64);
        b.run(&mut tx).await.unwrap();
        assert!(b.is_empty());
        tx.commit().await.unwrap();
        let row: (String, i64, Vec<u8>, Option<String>) = sqlx::query_as("SELECT k, n, b, o FROM t").fetch_one(&pool).await.unwrap();
        assert_eq!(row, ("a".into(), 42, vec![1, 2], None));

        let mut tx = pool.begin().await.unwrap();
        let mut b = Batch::default();
        b.statement("INSERT INTO t (k, n) VALUES ($1, $2)".into()).bind("b").bind(2i64);
        b.statement("INSERT INTO t (k, n) VALUES ($1, $2)".into()).bind("a").bind(3i64);
        assert!(b.run(&mut tx).await.is_err(), "the second insert repeats a key");
        drop(tx);
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t").fetch_one(&pool).await.unwrap();
        assert_eq!(n, 1, "the first statement of the failed batch is rolled back with it");
    }
}

#[cfg(test)]
mod in_place_tests {
    use super::{InPlace, Value, read_rows};

    const SQL: &str = "SELECT k, n, b FROM t WHERE n >= $1 AND k <> $2 ORDER BY k";

    /// Reads in place see what the pool committed, and only that (never a transaction still
    /// open), with the same rows and types as the pool's; without a SQLite file there are none.
    #[tokio::test]
    async fn reads_in_place_see_what_the_pool_committed() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
        let pool = super::connect(&url).await.unwrap();
        let reads = InPlace::for_url(&url);
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT, b BYTEA)").execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO t VALUES ('a', 1, x'0102'), ('b', 2, x'6273'), ('c', 3, x'')").execute(&pool).await.unwrap();
        let values = [Value::Int(2), Value::from("c")];
        let here: Vec<(String, i64, Vec<u8>)> = read_rows(&pool, &reads, SQL, &values).await.unwrap();
        assert_eq!(here, vec![("b".to_owned(), 2, b"bs".to_vec())]);
        let through_pool: Vec<(String, i64, Vec<u8>)> = read_rows(&pool, &InPlace::default(), SQL, &values).await.unwrap();
        assert_eq!(here, through_pool);
        assert!(reads.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))).is_some(), "a SQLite file is read in place");
        // Numbers out of order, and one used twice, bind as sqlx binds them.
        let swapped = "SELECT k, n, b FROM t WHERE k <> $2 AND n >= $1 AND n >= $1 ORDER BY k";
        let here: Vec<(String, i64, Vec<u8>)> = read_rows(&pool, &reads, swapped, &values).await.unwrap();
        assert_eq!(here, read_rows::<(String, i64, Vec<u8>)>(&pool, &InPlace::default(), swapped, &values).await.unwrap());
        assert_eq!(here.len(), 1);

        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES ('d', 9, x'09')").execute(&mut *tx).await.unwrap();
        let seen: Vec<(String, i64, Vec<u8>)> = read_rows(&pool, &reads, SQL, &values).await.unwrap();
        assert_eq!(seen.len(), 1, "a transaction not yet committed is not seen");
        tx.commit().await.unwrap();
        let seen: Vec<(String, i64, Vec<u8>)> = read_rows(&pool, &reads, SQL, &values).await.unwrap();
        assert_eq!(seen.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["b", "d"], "a committed one is, at once");

        // The connection is read-only: nothing written through it.
        let write = reads.read(|c| c.execute("DELETE FROM t", []));
        assert!(write.is_some_and(|r| r.is_err()));
        let after: Vec<(String, i64, Vec<u8>)> = read_rows(&pool, &reads, SQL, &values).await.unwrap();
        assert_eq!(after.len(), 2, "the refused write changed nothing, and the next read opens a connection again");

        assert!(InPlace::for_url("sqlite::memory:").read(|_| Ok(())).is_none(), "one connection only: read through the pool");
        assert!(InPlace::for_url("postgres://localhost/x").read(|_| Ok(())).is_none());
    }
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
