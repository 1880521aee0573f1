//! A whole partnership on one machine: a local nats-server (unless `NATS_URL` is given), one
//! database per service (SQLite files, or PostgreSQL databases when `DATABASE_URL` is given),
//! the five agency services and the audit service, each with its HTTP API on a free port.
//! What `hub up` and `hub demo` run, and what the end-to-end tests start.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::Context as _;
use isp::{Directory, Role};
use runtime::{Config, Running};
use tokio_util::sync::CancellationToken;

use crate::{cluster::NatsCluster, nats::NatsChild, partnership};

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub data: PathBuf,
    /// An existing NATS server; None starts a local one with its store in `data/nats`.
    pub nats_url: Option<String>,
    /// A PostgreSQL server URL; each service gets its own database on it. None: SQLite files.
    pub database_url: Option<String>,
    /// How long the broker waits for an ack before redelivering.
    pub ack_wait: Option<Duration>,
    /// Prefix of the PostgreSQL database names (`{prefix}_{service}`); "hub" when None. Lets
    /// several partnerships (parallel tests) share one server.
    pub database_prefix: Option<String>,
    /// How often the audit service signs a ledger checkpoint (default: its own, 5 s).
    pub checkpoint_every: Option<Duration>,
    /// The HTTP limits of every service (default: [`runtime::serve::Limits::default`]).
    pub http_limits: Option<runtime::serve::Limits>,
    /// Start a local JetStream cluster of this many nodes (stores in `data/nats/hub-I`)
    /// instead of one nats-server, every stream with one replica per node; None: one node.
    pub cluster: Option<usize>,
    /// The clock every service judges deadlines by (tests move it forward), and how often
    /// they look for missed ones (default: the runtime's, 30 s).
    pub clock: runtime::deadlines::Clock,
    pub deadline_check_every: Option<Duration>,
}

/// One running service of the partnership.
pub struct Service {
    pub agency: String,
    pub role: Role,
    pub url: String,
    config: Config,
    running: Option<Running>,
    shutdown: CancellationToken,
}

pub struct LocalHub {
    pub data: PathBuf,
    pub nats: Option<NatsChild>,
    /// The local JetStream cluster, when [`Options::cluster`] asked for one.
    pub cluster: Option<NatsCluster>,
    /// The broker's URL; with a cluster, every node's, comma-separated.
    pub nats_url: String,
    pub directory: Directory,
    pub services: BTreeMap<String, Service>,
    pub audit_url: String,
    pub audit_database_url: String,
    /// The clock every service judges deadlines by ([`Options::clock`]).
    pub clock: runtime::deadlines::Clock,
    audit: Option<Running>,
    audit_config: audit::Config,
    shutdown: CancellationToken,
}

impl Service {
    /// Where the service keeps its records (and its staff accounts).
    pub fn database_url(&self) -> &str {
        &self.config.database_url
    }
}

/// Starts the service of one agency by its role.
pub async fn start_agency(role: Role, config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    match role {
        Role::Housing => runtime::start(config, housing::Housing, shutdown).await,
        Role::Idva => runtime::start(config, idva::Idva, shutdown).await,
        Role::Marac => runtime::start(config, marac::Marac, shutdown).await,
        Role::Reciprocals => runtime::start(config, reciprocals::Reciprocals, shutdown).await,
        Role::Perpetrator => runtime::start(config, perpetrator::Perpetrator, shutdown).await,
        Role::Partner | Role::Ig => runtime::start(config, runtime::Plain, shutdown).await,
    }
}

/// Every migration the service of an agency of `role` applies at start (see
/// [`runtime::migrations`]); the audit service's are [`audit::migrations`].
pub fn migrations(role: Role) -> Vec<runtime::Migration> {
    match role {
        Role::Housing => runtime::migrations(&housing::Housing),
        Role::Idva => runtime::migrations(&idva::Idva),
        Role::Marac => runtime::migrations(&marac::Marac),
        Role::Reciprocals => runtime::migrations(&reciprocals::Reciprocals),
        Role::Perpetrator => runtime::migrations(&perpetrator::Perpetrator),
        Role::Partner | Role::Ig => runtime::migrations(&runtime::Plain),
    }
}

/// The database URL of one service: its SQLite file, or its own database on the PostgreSQL
/// server (created when missing).
pub async fn database_url(options: &Options, service: &str) -> anyhow::Result<String> {
    match &options.database_url {
        None => Ok(runtime::config::sqlite_url(&options.data, service)),
        Some(base) => {
            let prefix = options.database_prefix.as_deref().unwrap_or("hub");
            runtime::db::postgres_database(base, &format!("{prefix}_{}", service.replace('-', "_"))).await
        }
    }
}

impl LocalHub {
    pub async fn start(options: Options) -> anyhow::Result<LocalHub> {
        let directory = partnership::ensure_demo(&options.data)?;
        let (nats, cluster, nats_url) = match (&options.nats_url, options.cluster) {
            (Some(_), Some(_)) => anyhow::bail!("a cluster is started locally: leave NATS_URL unset"),
            (Some(url), None) => (None, None, url.clone()),
            (None, Some(nodes)) => {
                // The same credentials, TLS and rights on every node.
                crate::broker::ensure_credentials(&options.data, &directory, &[])?;
                let extra = format!("{}{}", crate::broker::tls_block(&options.data), crate::broker::authorization_block(&options.data, &directory)?);
                let cluster = NatsCluster::start(&options.data.join("nats"), nodes, &extra).await?;
                let admin = crate::broker::auth(&options.data, crate::broker::ADMIN);
                // Every stream replicated on every node, then the consumers, before any
                // service starts.
                crate::cluster::provision(&crate::nats::connect_admin(&cluster.url(), &options.data).await?, nodes).await?;
                crate::broker::provision(&cluster.url(), &admin, &directory, options.ack_wait.unwrap_or(Duration::from_secs(10))).await?;
                let url = cluster.url();
                (None, Some(cluster), url)
            }
            (None, None) => {
                let child = NatsChild::start(&options.data, options.ack_wait).await?;
                let url = child.url.clone();
                (Some(child), None, url)
            }
        };
        let shutdown = CancellationToken::new();
        // The stream and the audit consumer exist before any agency publishes, so the ledger
        // misses nothing even on the first start.
        if nats.is_none() && cluster.is_none() {
            // A broker run elsewhere: provisioned as its administrator (with `DIR/broker/admin.nk`
            // when there; a broker without authorization, as on a developer's machine, needs none).
            crate::broker::provision(&nats_url, &crate::broker::auth(&options.data, crate::broker::ADMIN), &directory, options.ack_wait.unwrap_or(Duration::from_secs(10)))
                .await
                .context("provisioning the broker at NATS_URL as its administrator")?;
        }
        let mut audit_config = audit::Config::embedded(&options.data, &nats_url);
        audit_config.database_url = database_url(&options, "audit").await?;
        if let Some(c) = options.checkpoint_every {
            audit_config.checkpoint_every = c;
        }
        if let Some(l) = options.http_limits {
            audit_config.http_limits = l;
        }
        let audit_database_url = audit_config.database_url.clone();
        let audit = audit::start(audit_config.clone(), shutdown.child_token()).await.context("starting the audit service")?;
        let audit_url = format!("http://{}", audit.addr);
        let mut hub =
            LocalHub {
            data: options.data.clone(),
            nats,
            cluster,
            nats_url,
            directory,
            services: BTreeMap::new(),
            audit_url,
            audit_database_url,
            clock: options.clock.clone(),
            audit_config: audit::Config { http_addr: audit.addr.to_string(), ..audit_config },
            audit: Some(audit),
            shutdown,
        };
        let agencies: Vec<(String, Role)> = hub.directory.agencies.iter().map(|a| (a.id.clone(), a.role)).filter(|(_, r)| *r != Role::Ig).collect();
        for (agency, role) in agencies {
            let mut config = Config::embedded(&options.data, &agency, &hub.nats_url);
            config.clock = options.clock.clone();
            if let Some(every) = options.deadline_check_every {
                config.deadline_check_every = every;
            }
            config.database_url = database_url(&options, &agency).await?;
            if let Some(l) = options.http_limits {
                config.http_limits = l;
            }
            let token = hub.shutdown.child_token();
            let running = start_agency(role, config.clone(), token.clone()).await.with_context(|| format!("starting {agency}"))?;
            hub.services.insert(
                agency.clone(),
                Service { agency, role, url: format!("http://{}", running.addr), config, running: Some(running), shutdown: token },
            );
        }
        Ok(hub)
    }

    /// A broker client with the partnership's admin rights (what provisions streams and
    /// consumers): what tests use to act as a compromised broker or its operator.
    pub async fn admin_client(&self) -> anyhow::Result<async_nats::Client> {
        crate::nats::connect_admin(&self.nats_url, &self.data).await
    }

    /// The API base URL of an agency's service.
    pub fn url(&self, agency: &str) -> &str {
        &self.services.get(agency).unwrap_or_else(|| panic!("no service for {agency}")).url
    }

    /// Kills one service at once, as a crash would: every loop stops mid-flight.
    pub async fn kill(&mut self, agency: &str) {
        let service = self.services.get_mut(agency).expect("known agency");
        if let Some(running) = service.running.take() {
            running.task.abort();
            let _ = running.task.await;
        }
    }

    /// Starts a killed service again (on a new port).
    pub async fn restart(&mut self, agency: &str) -> anyhow::Result<()> {
        let service = self.services.get_mut(agency).expect("known agency");
        service.shutdown = self.shutdown.child_token();
        let running = start_agency(service.role, service.config.clone(), service.shutdown.clone()).await?;
        service.url = format!("http://{}", running.addr);
        service.running = Some(running);
        Ok(())
    }

    /// Kills the audit service at once, as a crash would.
    pub async fn kill_audit(&mut self) {
        if let Some(running) = self.audit.take() {
            running.task.abort();
            let _ = running.task.await;
        }
    }

    /// Starts the killed audit service again, on the address it had.
    pub async fn restart_audit(&mut self) -> anyhow::Result<()> {
        let running = audit::start(self.audit_config.clone(), self.shutdown.child_token()).await.context("restarting the audit service")?;
        self.audit_url = format!("http://{}", running.addr);
        self.audit = Some(running);
        Ok(())
    }

    /// Stops every service gracefully, then the local nats-server.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for service in self.services.values_mut() {
            if let Some(running) = service.running.take() {
                let _ = tokio::time::timeout(Duration::from_secs(10), running.task).await;
            }
        }
        if let Some(audit) = self.audit.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), audit.task).await;
        }
        if let Some(mut nats) = self.nats.take() {
            nats.stop().await?;
        }
        if let Some(mut cluster) = self.cluster.take() {
            cluster.stop().await?;
        }
        Ok(())
    }
}
