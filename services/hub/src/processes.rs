//! Services as their own processes, as `hub serve` runs them: what `hub bench` measures and
//! what the crash tests kill. A [`Served`] is one child process, ready once it has printed
//! where it listens; it can be killed as a crash would (SIGKILL, no shutdown code runs) and
//! started again on the same data, databases and broker.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    io::AsyncBufReadExt as _,
    process::{Child, Command},
};

/// How long a service may take to start before the spawn fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One running `hub serve` process; killed when dropped.
pub struct Served {
    /// The agency id, or `audit`.
    pub name: String,
    pub child: Child,
    /// Its HTTP API, `http://ADDR`; a restart gives it a new port.
    pub url: String,
    how: Spawn,
}

/// Everything needed to start the process again.
struct Spawn {
    exe: PathBuf,
    data: PathBuf,
    nats_url: String,
    database_url: Option<String>,
    prefix: String,
    env: Vec<(String, String)>,
    /// Where its log (stderr) goes, appended; else this process's stderr.
    log: Option<PathBuf>,
}

impl Served {
    /// Starts `exe serve --agency NAME --data DATA` (`exe` is the `hub` binary) with
    /// `NATS_URL`, `DATABASE_URL` (SQLite files in `data` when None), `DATABASE_PREFIX` and
    /// `RUST_LOG=warn`, then `env` on top, and waits until it listens.
    pub async fn spawn(exe: &Path, name: &str, data: &Path, nats_url: &str, database_url: Option<&str>, prefix: &str, env: &[(&str, &str)]) -> anyhow::Result<Served> {
        Served::spawn_logging(exe, name, data, nats_url, database_url, prefix, env, None).await
    }

    /// As [`Served::spawn`], its log appended to `log` when given (without colours, so it
    /// can be read back).
    #[allow(clippy::too_many_arguments)]
    pub async fn spawn_logging(
        exe: &Path,
        name: &str,
        data: &Path,
        nats_url: &str,
        database_url: Option<&str>,
        prefix: &str,
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> anyhow::Result<Served> {
        let how = Spawn {
            exe: exe.to_owned(),
            data: data.to_owned(),
            nats_url: nats_url.to_owned(),
            database_url: database_url.map(str::to_owned),
            prefix: prefix.to_owned(),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            log: log.map(Path::to_owned),
        };
        let (child, url) = start(name, &how).await?;
        Ok(Served { name: name.to_owned(), child, url, how })
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the process with SIGKILL, as a crash would, and waits until it is reaped. Fails
    /// if it had already exited: a service that died by itself is a fault to report.
    pub async fn kill_hard(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("{} had already exited ({status})", self.name);
        }
        // tokio's kill is SIGKILL on unix, then a wait for the exit.
        self.child.kill().await.with_context(|| format!("killing {}", self.name))
    }

    /// Starts the service again with the same settings (killing it first if it still runs)
    /// and waits until it listens.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.kill_hard().await?;
        }
        let (child, url) = start(&self.name, &self.how).await?;
        self.child = child;
        self.url = url;
        Ok(())
    }
}

async fn start(name: &str, how: &Spawn) -> anyhow::Result<(Child, String)> {
    let mut command = Command::new(&how.exe);
    command
        .args(["serve", "--agency", name, "--data"])
        .arg(&how.data)
        .env("NATS_URL", &how.nats_url)
        .env("RUST_LOG", "warn")
        .env("DATABASE_PREFIX", &how.prefix);
    match &how.database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    command.envs(how.env.iter().map(|(k, v)| (k, v)));
    let stderr = match &how.log {
        Some(path) => {
            command.env("NO_COLOR", "1");
            Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening {}", path.display()))?)
        }
        None => Stdio::inherit(),
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} for {name}", how.exe.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
        .await
        .with_context(|| format!("{name} did not start within {START_TIMEOUT:?}"))??
        .with_context(|| format!("{name} exited at start"))?;
    let url = line.strip_prefix("listening ").with_context(|| format!("unexpected first line from {name}: {line}"))?.to_owned();
    // Anything it prints later is read and dropped, so a write to a closed pipe never
    // fails the service.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

/// A `/proc/PID/status` figure (VmRSS, VmHWM) in MB.
pub(crate) fn rss_mb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
