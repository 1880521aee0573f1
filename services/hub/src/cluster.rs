//! A JetStream cluster on one machine: `hub up --cluster N` and the tests that kill a broker
//! node run N nats-server processes on 127.0.0.1, each with its own store, client port,
//! route (cluster) port and monitoring port, joined into one cluster by explicit routes. The
//! partnership's streams are created with one replica per node (R3 on three nodes): any one
//! node can go, the others elect a new leader for each stream and carry on, and the node
//! catches up when it comes back with its store.
//!
//! Each node runs from a configuration file written by [`cluster_node_config`], the same
//! shape as `deploy/nats/` holds for a real deployment; its `extra` block is where the
//! broker's `authorization {...}` and client `tls {...}` go.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, stream};
use tokio::process::Child;

use crate::nats::ensure_installed;

/// The cluster's name (every node of one cluster carries it).
pub const CLUSTER_NAME: &str = "hub";
/// How long a node may take to start, and the cluster to elect its leaders.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One node of a cluster: its name and where it listens.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The server's name (`server_name`), unique in the cluster: stream info names leaders
    /// and replicas by it.
    pub name: String,
    /// The address every listener binds (`127.0.0.1` locally; the host's own address, or
    /// `0.0.0.0` behind a firewall, in a deployment).
    pub host: String,
    /// Where clients (the services) connect.
    pub client_port: u16,
    /// Where the other nodes' routes connect.
    pub cluster_port: u16,
    /// The monitoring port (`/healthz`, `/jsz`); None: no monitoring listener.
    pub http_port: Option<u16>,
    /// The JetStream store: every clear header and ciphertext (owner-only permissions).
    pub store_dir: PathBuf,
    /// The server's log file; None: standard error.
    pub log_file: Option<PathBuf>,
}

impl NodeSpec {
    /// `nats://HOST:CLIENT_PORT`.
    pub fn client_url(&self) -> String {
        format!("nats://{}:{}", self.host, self.client_port)
    }

    /// `nats-route://HOST:CLUSTER_PORT`, what the other nodes list as a route to this one.
    pub fn route_url(&self) -> String {
        format!("nats-route://{}:{}", self.host, self.cluster_port)
    }
}

/// The configuration file of one node of the cluster `cluster`: its name, client listener,
/// JetStream store, cluster listener and its `routes` to the other nodes, then `extra`
/// verbatim (the broker's `authorization {...}` and `tls {...}` blocks; empty: none).
pub fn cluster_node_config(cluster: &str, node: &NodeSpec, routes: &[String], extra: &str) -> String {
    let mut conf = format!(
        "# Node {name} of the JetStream cluster {cluster}: written by `hub`, see deploy/nats/.\n\
         server_name: {name}\n\
         listen: {listen}\n",
        name = quoted(&node.name),
        cluster = node_text(cluster),
        listen = quoted(&format!("{}:{}", node.host, node.client_port)),
    );
    if let Some(port) = node.http_port {
        conf += &format!("http: {}\n", quoted(&format!("{}:{port}", node.host)));
    }
    if let Some(log) = &node.log_file {
        conf += &format!("log_file: {}\n", quoted(&log.to_string_lossy()));
    }
    conf += &format!("\njetstream {{\n  store_dir: {}\n}}\n", quoted(&node.store_dir.to_string_lossy()));
    conf += &format!(
        "\ncluster {{\n  name: {}\n  listen: {}\n  routes: [\n{}  ]\n}}\n",
        quoted(cluster),
        quoted(&format!("{}:{}", node.host, node.cluster_port)),
        routes.iter().map(|r| format!("    {}\n", quoted(r))).collect::<String>(),
    );
    if !extra.trim().is_empty() {
        conf += "\n# authorization and TLS\n";
        conf += extra.trim_end();
        conf += "\n";
    }
    conf
}

/// A double-quoted string of nats-server's configuration language.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn node_text(s: &str) -> String {
    s.replace('\n', " ")
}

/// N local nats-server processes forming one JetStream cluster; each is killed when the
/// cluster is dropped.
pub struct NatsCluster {
    /// The client URL of each node, in node order.
    pub urls: Vec<String>,
    nodes: Vec<Node>,
    binary: PathBuf,
}

struct Node {
    spec: NodeSpec,
    conf: PathBuf,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts `nodes` nodes (`hub-1`..`hub-N`) in `dir` (each in `dir/hub-I`: its
    /// configuration, log and store) on free ports of 127.0.0.1, with `extra_conf` in every
    /// node's configuration, and waits until every node reports itself healthy (JetStream up,
    /// in contact with the cluster's meta leader).
    pub async fn start(dir: &Path, nodes: usize, extra_conf: &str) -> anyhow::Result<NatsCluster> {
        anyhow::ensure!((2..=5).contains(&nodes), "a JetStream cluster here has 2 to 5 nodes (3 to survive the loss of any one), not {nodes}");
        let binary = ensure_installed()?;
        let (mut specs, mut taken) = (Vec::new(), Vec::new());
        for i in 1..=nodes {
            let home = dir.join(format!("hub-{i}"));
            crate::private::create_dir(&home)?;
            specs.push(NodeSpec {
                name: format!("hub-{i}"),
                host: "127.0.0.1".into(),
                client_port: fixed_port(&mut taken)?,
                cluster_port: fixed_port(&mut taken)?,
                http_port: Some(fixed_port(&mut taken)?),
                store_dir: home.clone(),
                log_file: Some(home.join("nats-server.log")),
            });
        }
        let mut cluster = NatsCluster { urls: specs.iter().map(NodeSpec::client_url).collect(), nodes: Vec::new(), binary };
        for spec in &specs {
            let routes: Vec<String> = specs.iter().filter(|s| s.name != spec.name).map(NodeSpec::route_url).collect();
            let conf = spec.store_dir.join("node.conf");
            std::fs::write(&conf, cluster_node_config(CLUSTER_NAME, spec, &routes, extra_conf)).with_context(|| format!("writing {}", conf.display()))?;
            let child = crate::nats::spawn_server(&cluster.binary, &conf, None).with_context(|| format!("starting node {}", spec.name))?;
            cluster.nodes.push(Node { spec: spec.clone(), conf, child: Some(child) });
        }
        for node in 0..nodes {
            cluster.wait_healthy(node).await?;
        }
        Ok(cluster)
    }

    /// Every node's URL, comma-separated: a `NATS_URL` the services fail over with.
    pub fn url(&self) -> String {
        self.urls.join(",")
    }

    /// The nodes' specifications, in node order.
    pub fn specs(&self) -> impl Iterator<Item = &NodeSpec> {
        self.nodes.iter().map(|n| &n.spec)
    }

    /// The index of the node named `server_name`.
    pub fn node_named(&self, server_name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.spec.name == server_name)
    }

    /// The process id of a node while it runs.
    pub fn pid(&self, node: usize) -> Option<u32> {
        self.nodes[node].child.as_ref().and_then(Child::id)
    }

    /// Kills one node with SIGKILL, as a crash or a pulled plug would (no shutdown, no
    /// leadership handed over), and waits until it is reaped. Its store and ports stay.
    pub async fn kill(&mut self, node: usize) -> anyhow::Result<()> {
        let n = &mut self.nodes[node];
        let mut child = n.child.take().with_context(|| format!("{} is not running", n.spec.name))?;
        if let Some(status) = child.try_wait()? {
            bail!("{} had already exited ({status})", n.spec.name);
        }
        child.kill().await.with_context(|| format!("killing {}", n.spec.name))
    }

    /// Starts a killed node again from its configuration: same name, ports and store. Waits
    /// until it reports itself healthy (JetStream up and in contact with the meta leader);
    /// its stream replicas then catch up (see [`wait_replicas_current`]).
    pub async fn restart(&mut self, node: usize) -> anyhow::Result<()> {
        let n = &mut self.nodes[node];
        anyhow::ensure!(n.child.is_none(), "{} is still running", n.spec.name);
        n.child = Some(crate::nats::spawn_server(&self.binary, &n.conf, None).with_context(|| format!("restarting node {}", n.spec.name))?);
        self.wait_healthy(node).await
    }

    /// Stops every node (SIGKILL: the stores are consistent on disk after each write).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                child.kill().await?;
            }
        }
        Ok(())
    }

    /// Waits until the node's `/healthz` answers 200: the server is up, JetStream is enabled
    /// and it knows the meta leader (a lone node of a cluster never does).
    async fn wait_healthy(&mut self, node: usize) -> anyhow::Result<()> {
        let n = &mut self.nodes[node];
        let port = n.spec.http_port.context("the node has no monitoring port")?;
        let url = format!("http://{}:{port}/healthz", n.spec.host);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = n.child.as_mut().context("not running")?.try_wait()? {
                bail!("{} exited at start ({status}){}", n.spec.name, log_tail(&n.spec));
            }
            let last = match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("HTTP {}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!("{} did not become healthy within {START_TIMEOUT:?} ({last}){}", n.spec.name, log_tail(&n.spec));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A free port of 127.0.0.1 below the kernel's ephemeral range: a node killed and started
/// again gets its ports back (an ephemeral one could meanwhile be the local end of some other
/// connection). Not one of `taken`, which it joins.
fn fixed_port(taken: &mut Vec<u16>) -> anyhow::Result<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768)
        .max(10_001);
    for _ in 0..1000 {
        let port = rand::Rng::gen_range(&mut rand::thread_rng(), 10_000..ephemeral_low);
        if !taken.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.push(port);
            return Ok(port);
        }
    }
    bail!("no free port below {ephemeral_low} on 127.0.0.1")
}

/// The last lines of a node's log, for an error message.
fn log_tail(spec: &NodeSpec) -> String {
    let Some(log) = &spec.log_file else { return String::new() };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!("; its log {} ends:\n{}", log.display(), lines[lines.len().saturating_sub(5)..].join("\n"))
}


/// Every stream of the partnership, with `replicas` copies: the hub's stream, the consent
/// bucket's, the partnership bucket's and the audit service's checkpoints. What an operator
/// provisions before any service starts (the services find them and leave their configuration
/// alone).
pub fn partnership_streams(replicas: usize) -> Vec<stream::Config> {
    vec![
        runtime::transport::stream_config_replicated(replicas),
        runtime::transport::consent_stream_config_replicated(replicas),
        runtime::transport::partnership_stream_config_replicated(replicas),
        stream::Config { num_replicas: replicas, ..runtime::transport::checkpoint_stream_config() },
    ]
}

/// Creates the partnership's streams with `replicas` copies through `client` (the broker
/// administrator's), unless they exist, and waits until each has a leader and every replica
/// is current. Until the cluster has all its nodes the creation is refused; it is tried
/// again until [`START_TIMEOUT`].
pub async fn provision(client: &async_nats::Client, replicas: usize) -> anyhow::Result<()> {
    let js = jetstream::new(client.clone());
    for config in partnership_streams(replicas) {
        let name = config.name.clone();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match js.get_or_create_stream(config.clone()).await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => return Err(anyhow::Error::new(e).context(format!("creating the stream {name} with {replicas} replicas"))),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        wait_replicas_current(client, &name, replicas, START_TIMEOUT).await?;
    }
    Ok(())
}

/// Where a stream stands in the cluster: its leader and its replicas, as
/// `$JS.API.STREAM.INFO.<stream>` reports them.
#[derive(Debug, Clone)]
pub struct StreamPlacement {
    /// The server name of the leader; None while there is none (during an election).
    pub leader: Option<String>,
    /// The other replicas: server name and whether it is current (caught up, online).
    pub replicas: Vec<(String, bool)>,
}

impl StreamPlacement {
    /// A leader and `replicas - 1` followers, each current.
    pub fn all_current(&self, replicas: usize) -> bool {
        self.leader.is_some() && self.replicas.len() + 1 == replicas && self.replicas.iter().all(|(_, current)| *current)
    }
}

/// The stream's leader and replicas (an error when nobody answers, as during an election).
pub async fn placement(client: &async_nats::Client, stream: &str) -> anyhow::Result<StreamPlacement> {
    let js = jetstream::new(client.clone());
    let info = js.get_stream(stream).await.with_context(|| format!("stream info of {stream}"))?.cached_info().clone();
    let cluster = info.cluster.unwrap_or_default();
    Ok(StreamPlacement {
        leader: cluster.leader.filter(|l| !l.is_empty()),
        replicas: cluster.replicas.into_iter().map(|p| (p.name, p.current && !p.offline)).collect(),
    })
}

/// Waits until `stream` has a leader and `replicas - 1` current followers.
pub async fn wait_replicas_current(client: &async_nats::Client, stream: &str, replicas: usize, timeout: Duration) -> anyhow::Result<StreamPlacement> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = placement(client, stream).await;
        if let Ok(p) = &seen {
            if p.all_current(replicas) {
                return Ok(p.clone());
            }
        }
        if Instant::now() > deadline {
            bail!("the stream {stream} did not have a leader and {} current replicas within {timeout:?} (last seen: {seen:?})", replicas - 1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_config_names_its_store_routes_and_the_extra_block() {
        let node = NodeSpec {
            name: "hub-2".into(),
            host: "10.0.0.2".into(),
            client_port: 4222,
            cluster_port: 6222,
            http_port: Some(8222),
            store_dir: "/var/lib/nats/hub-2".into(),
            log_file: None,
        };
        let routes = vec!["nats-route://10.0.0.1:6222".to_owned(), "nats-route://10.0.0.3:6222".to_owned()];
        let conf = cluster_node_config("hub", &node, &routes, "authorization {\n  users: []\n}\n");
        for line in [
            "server_name: \"hub-2\"",
            "listen: \"10.0.0.2:4222\"",
            "http: \"10.0.0.2:8222\"",
            "  store_dir: \"/var/lib/nats/hub-2\"",
            "  name: \"hub\"",
            "  listen: \"10.0.0.2:6222\"",
            "    \"nats-route://10.0.0.1:6222\"",
            "    \"nats-route://10.0.0.3:6222\"",
            "authorization {",
        ] {
            assert!(conf.lines().any(|l| l == line), "no line {line:?} in\n{conf}");
        }
        assert!(!conf.contains("log_file"), "{conf}");
    }

    /// nats-server itself accepts the shipped deployment files and a generated node file
    /// with an extra block (`nats-server -t`: parse and check, then exit).
    #[test]
    fn nats_server_accepts_the_deploy_files_and_a_generated_one() {
        let binary = ensure_installed().expect("nats-server");
        let dir = tempfile::tempdir().expect("temp dir");
        let node = NodeSpec {
            name: "hub-1".into(),
            host: "127.0.0.1".into(),
            client_port: 14222,
            cluster_port: 16222,
            http_port: Some(18222),
            store_dir: dir.path().join("store"),
            log_file: Some(dir.path().join("nats-server.log")),
        };
        let generated = dir.path().join("node.conf");
        let extra = "authorization {\n  user: \"admin\"\n  password: \"not-a-real-one\"\n}\n";
        std::fs::write(&generated, cluster_node_config(CLUSTER_NAME, &node, &["nats-route://127.0.0.1:16223".into()], extra)).expect("written");
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nats");
        let mut files: Vec<PathBuf> = (1..=3).map(|i| deploy.join(format!("node-{i}.conf"))).collect();
        files.push(generated);
        for file in files {
            let out = std::process::Command::new(&binary).arg("-c").arg(&file).arg("-t").output().expect("nats-server runs");
            assert!(out.status.success(), "{}: {}{}", file.display(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
    }
}
