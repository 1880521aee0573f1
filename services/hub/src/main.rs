//! `hub`: run a local partnership, play the demo, audit the ledger, check a policy.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hub::{demo, local::{LocalHub, Options}};

#[derive(Parser)]
#[command(name = "hub", version, about = "Multi-agency domestic abuse referral hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure sealed end-to-end throughput and latency against raw JetStream and the crypto
    /// limit, in one run, on a fresh local JetStream (SQLite, or PostgreSQL with DATABASE_URL);
    /// `hub bench limits` measures what slow and large clients cost one service instead.
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        what: Option<BenchCommand>,
        #[command(flatten)]
        args: hub::bench::BenchArgs,
    },
    /// Run one service of a partnership as its own process (NATS_URL required).
    Serve {
        /// An agency id of the directory, or `audit`.
        #[arg(long)]
        agency: String,
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
    },
    /// The broker's credentials, rights and streams, for a broker run outside `hub up`.
    Broker {
        #[command(subcommand)]
        command: BrokerCommand,
    },
    /// A real partnership across hosts, at the IG office: create it, admit an agency from its
    /// join request, suspend or remove one, list them.
    Partnership {
        #[command(subcommand)]
        command: PartnershipCommand,
    },
    /// One agency of a real partnership, on its own host: make its keys and join request, take
    /// its admission up.
    Agency {
        #[command(subcommand)]
        command: AgencyCommand,
    },
    /// Manage agencies' keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Bring up a whole local partnership: nats-server (unless NATS_URL is set), the five agency
    /// services and the audit service, on a demo partnership generated on first use.
    Up {
        /// Where keys, policy, databases and the broker's store live.
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
        /// Play the demo case once the services are up, then keep serving.
        #[arg(long)]
        demo: bool,
        /// Run a local JetStream cluster of N nats-server nodes (3: any one can fail) instead
        /// of one, every stream replicated on each; the services fail over between them.
        #[arg(long, value_name = "N")]
        cluster: Option<usize>,
    },
    /// Play a scripted synthetic case across all five services and check every disclosure
    /// was delivered once and the ledger verifies. Exits non-zero if anything is wrong.
    Demo {
        /// Keep every database in DIR (default: a temporary directory, removed afterwards).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Which workflow to play: the referral case across the partnership, or one service's
        /// casework (casework: housing and IDVA; marac; reciprocals; perpetrator).
        #[arg(long, value_enum, default_value = "referral")]
        scenario: Scenario,
    },
    /// Copy one service's database (a consistent copy while it runs) and its own key file,
    /// broker seed and the partnership's public files into a new owner-only directory.
    Backup {
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
        /// An agency id of the directory, or `audit` for the ledger.
        #[arg(long)]
        service: String,
        /// The backup directory to create (it must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Put a service's backup back, with the service stopped: its database, key file and
    /// seed (0600); the partnership's public files only where missing.
    Restore {
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
        /// An agency id of the directory, or `audit` for the ledger.
        #[arg(long)]
        service: String,
        /// A directory made by `hub backup`.
        #[arg(long)]
        from: PathBuf,
        /// Replace a database that already holds rows.
        #[arg(long)]
        force: bool,
    },
    /// Inspect and verify the disclosure ledger.
    Audit {
        #[command(subcommand)]
        command: hub::audit_cli::AuditCommand,
    },
    /// Manage one service's staff accounts (local logins; staff of an identity provider need none).
    Staff {
        #[command(subcommand)]
        command: StaffCommand,
    },
    /// Check the information-sharing policy.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// One service as its own process under 5,000 slow connections, then 200 sends of the
    /// largest body at once: its peak memory and whether /health answered throughout.
    Limits(hub::limits_bench::LimitsArgs),
    /// 5,000 junk messages on housing's own subject into a running local partnership: ledger
    /// entries added, ledger database and JetStream store growth, time to absorb.
    Flood(hub::flood_bench::FloodArgs),
}

#[derive(Subcommand)]
enum BrokerCommand {
    /// Make what is missing of the broker credentials in DATA/broker/ (an nkey seed per
    /// service, the administrator's, a CA and the server's certificate for --host), and print
    /// the `authorization` and `tls` blocks of the server configuration that grant each
    /// service its rights. Hand each service only its own seed file.
    Config {
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
        /// The broker's host names or addresses for its certificate (repeatable; default
        /// localhost and 127.0.0.1). A real CA's certificate may be used instead.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Where the broker listens (host:port), for DATA/broker/server.conf.
        #[arg(long, default_value = "127.0.0.1:4222")]
        listen: String,
    },
    /// As the administrator (DATA/broker/admin.nk), create the streams, the consent bucket
    /// and every service's durable consumer on the broker at NATS_URL, where missing.
    Provision {
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
        /// How long the broker waits for an acknowledgement before redelivering.
        #[arg(long, default_value_t = 10)]
        ack_wait_secs: u64,
        /// Copies of each stream: one per node of a JetStream cluster (3 for deploy/nats/).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
    },
    /// As the administrator (DATA/broker/admin.nk), publish the signed directory and policy of
    /// DATA/partnership/ to the broker at NATS_URL (bucket hub-partnership), from where every
    /// service takes them, each checking the IG office's signature before writing anything.
    Publish {
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum PartnershipCommand {
    /// Create a partnership at the IG office: its signing keys and the subject key (here
    /// only), the directory listing the IG office, the signed policy, the broker's credentials
    /// and configuration (DATA/broker/server.conf). Prints the IG key id agencies must be given.
    Init {
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
        /// The partnership's name.
        #[arg(long)]
        name: String,
        /// The IG office's agency id.
        #[arg(long)]
        ig_id: String,
        #[arg(long, default_value = "Information Governance Office")]
        ig_name: String,
        /// The information-sharing policy (default: the demo partnership's).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// The broker's host names or addresses for its certificate (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Where the broker listens (host:port).
        #[arg(long, default_value = "127.0.0.1:4222")]
        listen: String,
    },
    /// Admit an agency from its join request, after checking its key id with the agency out
    /// of band: the directory update (signed), its broker rights (a broker run from DATA
    /// reloads them), and the admission bundle to give the agency (OUT). With NATS_URL, also
    /// provisions its consumer and publishes the partnership's files on the broker.
    Admit {
        /// The agency's join-request.json.
        request: PathBuf,
        /// The signing key id the agency told you (it must match the request's).
        #[arg(long)]
        key_id: String,
        /// The broker's address as the agency reaches it (repeatable: a cluster's nodes).
        #[arg(long = "broker-url", required = true)]
        broker_urls: Vec<String>,
        /// The admission bundle to write (a new directory).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
    },
    /// Suspend an agency now: none of its keys signs anything from now, nothing is sent to it,
    /// the broker no longer admits it. It comes back only with new keys (a new join request).
    Suspend {
        agency: String,
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
    },
    /// Remove an agency for good: as suspend, its consumer deleted, its id never used again.
    Remove {
        agency: String,
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
    },
    /// Sign the directory update an agency's rotation request asks for (made on its host by
    /// `hub agency rotate`, signed with its key in force and its new one): its old keys are
    /// retired now. With NATS_URL, publishes the directory on the broker.
    Rotate {
        /// The agency's rotation-request.json.
        request: PathBuf,
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
    },
    /// The partnership's agencies, roles, key ids and status.
    List {
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum AgencyCommand {
    /// Make this agency's keys and broker seed here (never shown, never sent) and its join
    /// request (DATA/join-request.json: public keys only) for the IG office.
    Init {
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
        /// The agency's id: lowercase letters, digits and '-'.
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// housing, idva, marac, reciprocals, perpetrator or partner.
        #[arg(long)]
        role: isp::Role,
    },
    /// Make new keys for this agency here (kept beside its key file until the IG office's
    /// directory names them, then taken up by its service) and the rotation request for the
    /// IG office (DATA/rotation-request.json).
    Rotate {
        /// This agency's id.
        #[arg(long)]
        agency: String,
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
    },
    /// Take the IG office's admission bundle up, after checking it is signed by the IG key id
    /// you were given out of band.
    Join {
        /// The admission bundle (a directory made by `hub partnership admit`).
        bundle: PathBuf,
        /// The IG office's signing key id, as `hub partnership init` printed it.
        #[arg(long)]
        ig_key: String,
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Give an agency new age and signing keys: its key file keeps the old age identity (what
    /// was sealed to it stays readable), the directory retires the old keys now and is signed
    /// by the IG office. Running services take it up within seconds.
    Rotate {
        #[arg(long)]
        agency: String,
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum StaffCommand {
    /// Add a staff member; prints a random password unless --password-stdin gives one.
    Add {
        #[command(flatten)]
        at: StaffAt,
        /// The staff id they log in with: 2-64 of a-z 0-9 . _ - (e.g. j.bloggs).
        #[arg(long)]
        id: String,
        /// caseworker, team-manager, agency-admin, marac-coordinator, reciprocals-coordinator, ig-lead, auditor (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Read the password from standard input instead of making one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account: its sessions end at once; what it did stays attributed to it.
    Disable {
        #[command(flatten)]
        at: StaffAt,
        #[arg(long)]
        id: String,
    },
    /// Set a new password (random unless --password-stdin), unlock the account, end its sessions.
    ResetPassword {
        #[command(flatten)]
        at: StaffAt,
        #[arg(long)]
        id: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List a service's accounts, their roles and state.
    List {
        #[command(flatten)]
        at: StaffAt,
    },
}

#[derive(clap::Args)]
struct StaffAt {
    /// The service: an agency id of the directory, or `audit`.
    #[arg(long)]
    service: String,
    #[arg(long, default_value = "hub-data")]
    data: PathBuf,
}

impl StaffAt {
    async fn pool(&self) -> anyhow::Result<sqlx::AnyPool> {
        hub::staff::open(&hub::local::database_url(&env_options(self.data.clone()), &self.service).await?).await
    }
}

fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((runtime::auth::local::new_password(), true));
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok((line.trim_end_matches(['\r', '\n']).to_owned(), false))
}

async fn staff(command: StaffCommand) -> anyhow::Result<ExitCode> {
    use runtime::auth::{Role, local};
    match command {
        StaffCommand::Add { at, id, roles, password_stdin } => {
            let roles = roles.iter().map(|r| r.parse::<Role>()).collect::<Result<Vec<_>, _>>()?;
            let (password, made) = password(password_stdin)?;
            local::add(&at.pool().await?, &id, &roles, &password).await?;
            println!("{id} added at {} with roles {}", at.service, Role::join(&roles));
            if made {
                println!("password (shown once): {password}");
            }
        }
        StaffCommand::Disable { at, id } => {
            local::disable(&at.pool().await?, &id).await?;
            println!("{id} disabled at {}; its sessions have ended", at.service);
        }
        StaffCommand::ResetPassword { at, id, password_stdin } => {
            let (password, made) = password(password_stdin)?;
            local::reset_password(&at.pool().await?, &id, &password).await?;
            println!("{id}: new password set at {}, account unlocked, sessions ended", at.service);
            if made {
                println!("password (shown once): {password}");
            }
        }
        StaffCommand::List { at } => {
            let now = isp::now_ms();
            for a in local::list(&at.pool().await?).await? {
                let state = if a.disabled { "disabled" } else if a.locked_until_ms > now { "locked" } else { "active" };
                println!("{:<32} {:<9} {}", a.staff_id, state, Role::join(&a.roles));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file against the schema's categories and the known kinds.
    Check { file: PathBuf },
    /// Sign a checked policy with the partnership IG key (writes FILE.sig). Running services
    /// take up a newly signed policy within seconds; an unsigned or badly signed one never.
    Sign {
        file: PathBuf,
        /// The data directory holding the IG office's key file.
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
    },
    /// Say what the policy decides for one kind of disclosure between two roles: the
    /// decision, the rule, the policy version, and which data categories would flow, be
    /// removed before sealing, or refuse the send.
    Explain {
        /// The sender's role (housing, idva, marac, reciprocals, perpetrator, partner).
        #[arg(long)]
        from: String,
        /// The recipient's role.
        #[arg(long)]
        to: String,
        /// The message kind, as the policy names it (housing.idva_referral, marac.referral, ...).
        #[arg(long)]
        kind: String,
        /// given, refused, not-sought, withdrawn, expired, or none.
        #[arg(long, default_value = "given")]
        consent: String,
        /// standard, medium, high, or none.
        #[arg(long, default_value = "standard")]
        risk: String,
        /// Purpose id (default: the first purpose of the first rule for this flow).
        #[arg(long)]
        purpose: Option<String>,
        /// Lawful basis id (default: the first basis of the first rule for this flow).
        #[arg(long)]
        basis: Option<String>,
        /// The policy file (default: the one shipped, deploy/isp/policy.toml).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The workflows `hub demo` plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// The referral case across the partnership (the default).
    Referral,
    /// A housing and IDVA case: a proved risk, IDVA casework, deadlines that fire.
    Casework,
    /// MARAC's cycle: screening, a meeting, research, the hearing, actions, minutes, figures.
    Marac,
    /// The managed reciprocal scheme: approval, circulation, offers, a move, the balances.
    Reciprocals,
    /// A perpetrator pathway: assessment, engagement reported to the IDVA, a repeat, disengagement, enforcement.
    Perpetrator,
}

fn env_options(data: PathBuf) -> Options {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Options { data, nats_url: var("NATS_URL"), database_url: var("DATABASE_URL"), ack_wait: None, database_prefix: var("DATABASE_PREFIX"), checkpoint_every: None, http_limits: None, cluster: None, ..Options::default() }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up { data, demo: play, cluster } => {
            // While the demo prints its own lines, the services log warnings only (RUST_LOG overrides).
            if play { runtime::telemetry::init_with_default("warn") } else { runtime::telemetry::init() }
            let options = Options { http_limits: Some(runtime::serve::Limits::from_env()?), cluster, ..env_options(data.clone()) };
            let hub = LocalHub::start(options).await?;
            print_services(&hub);
            if play {
                let logins = hub::staff::Logins::for_hub(&hub);
                println!("\nplaying the demo case (synthetic data), logged in as the demo staff:");
                let report = demo::play(&hub, &logins, true).await?;
                print_outcome(&report);
                print_demo_staff(&hub, &logins, &data).await?;
            }
            println!("\nthe partnership is up; data in {}. Ctrl-C (or SIGTERM) stops it.", data.display());
            stopped().await?;
            hub.stop().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { data, scenario } if scenario != Scenario::Referral => {
            runtime::telemetry::init_with_default("warn");
            let temp = tempfile::tempdir()?;
            let dir = data.unwrap_or_else(|| temp.path().to_owned());
            // Deadlines are looked for every fifth of a second: the scenarios move the clock.
            let hub = LocalHub::start(Options { deadline_check_every: Some(std::time::Duration::from_millis(200)), ..env_options(dir.clone()) }).await?;
            print_services(&hub);
            let name = clap::ValueEnum::to_possible_value(&scenario).map(|v| v.get_name().to_owned()).unwrap_or_default();
            println!("\nplaying the {name} scenario (synthetic data), logged in as the demo staff:");
            let logins = hub::staff::Logins::for_hub(&hub);
            let result = match scenario {
                Scenario::Casework => hub::casework_demo::play(&hub, &logins, true).await.map(|c| c.checks),
                Scenario::Marac => hub::marac_demo::play(&hub, &logins, true).await,
                Scenario::Perpetrator => hub::perpetrator_demo::play(&hub, &logins, true).await,
                Scenario::Reciprocals => hub::reciprocals_demo::play(&hub, &logins, true).await,
                Scenario::Referral => unreachable!("played below"),
            };
            hub.stop().await?;
            match result {
                Ok(checks) => {
                    println!("\n{} SCENARIO PASSED: {} checks held.", name.to_uppercase(), checks.len());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("\n{} SCENARIO FAILED: {e:#}", name.to_uppercase());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Demo { data, .. } => {
            // The demo prints its own lines; the services' logs stay at warnings unless asked.
            runtime::telemetry::init_with_default("warn");
            let temp = tempfile::tempdir()?;
            let dir = data.unwrap_or_else(|| temp.path().to_owned());
            let hub = LocalHub::start(env_options(dir.clone())).await?;
            print_services(&hub);
            println!("\nplaying the demo case (synthetic data), logged in as the demo staff:");
            let logins = hub::staff::Logins::for_hub(&hub);
            let result = demo::play(&hub, &logins, true).await;
            hub.stop().await?;
            match result {
                Ok(report) => {
                    print_outcome(&report);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("\nDEMO FAILED: {e:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Audit { command } => hub::audit_cli::run(command, env_options).await,
        Command::Backup { data, service, out } => {
            let s = hub::backup::backup(&env_options(data), &service, &out).await?;
            println!("backed up {service} ({} database and {}) into {}", s.engine, s.files.join(", "), out.display());
            if !s.skipped.is_empty() {
                println!("not there, so not backed up: {}", s.skipped.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { data, service, from, force } => {
            let s = hub::backup::restore(&env_options(data.clone()), &service, &from, force).await?;
            println!("restored {service} ({} database and {}) into {}", s.engine, s.files.join(", "), data.display());
            if !s.skipped.is_empty() {
                println!("kept as they are (already there): {}", s.skipped.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Staff { command } => staff(command).await,
        Command::Bench { what: None, args } => {
            runtime::telemetry::init_with_default("warn");
            hub::bench::run(args, env_options(PathBuf::new()).database_url).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { what: Some(BenchCommand::Limits(args)), .. } => {
            runtime::telemetry::init_with_default("warn");
            hub::limits_bench::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { what: Some(BenchCommand::Flood(args)), .. } => {
            // Each refusal of a junk message is a warning: errors only.
            runtime::telemetry::init_with_default("error");
            hub::flood_bench::run(args, env_options(PathBuf::new()).database_url).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { agency, data } => {
            runtime::telemetry::init();
            hub::serve::serve_one(&agency, data).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Broker { command: BrokerCommand::Config { data, hosts, listen } } => {
            let directory = isp::Directory::load(&hub::partnership::directory_path(&data))?;
            let dir = hub::broker::ensure_credentials(&data, &directory, &hosts)?;
            hub::broker::write_includes(&data, &directory)?;
            let config = hub::broker::write_server_config(&data, &listen, &dir.join("jetstream"))?;
            println!("# The partnership's broker: nats-server -c {} (it includes the blocks below; credentials in {}).", config.display(), dir.display());
            print!("{}{}", hub::broker::tls_block(&data), hub::broker::authorization_block(&data, &directory)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Partnership { command } => partnership(command).await,
        Command::Agency { command } => agency(command),
        Command::Broker { command: BrokerCommand::Provision { data, ack_wait_secs, replicas } } => {
            let url = std::env::var("NATS_URL").context("hub broker provision needs NATS_URL")?;
            let directory = isp::Directory::load(&hub::partnership::directory_path(&data))?;
            let admin = runtime::transport::BrokerAuth::from_env(&data, hub::broker::ADMIN);
            if replicas > 1 {
                // Every stream with a replica on each node, before the consumers on them.
                hub::cluster::provision(&runtime::transport::connect(&url, hub::broker::ADMIN, &admin).await?, replicas).await?;
            }
            hub::broker::provision(&url, &admin, &directory, std::time::Duration::from_secs(ack_wait_secs)).await?;
            println!("provisioned: streams HUB, KV_hub-consent, KV_hub-partnership and HUB_CHECKPOINTS, consumers audit and {}", hub::broker::agency_identities(&directory).iter().map(|id| runtime::transport::agency_consumer_name(id)).collect::<Vec<_>>().join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Broker { command: BrokerCommand::Publish { data } } => {
            let url = std::env::var("NATS_URL").context("hub broker publish needs NATS_URL")?;
            let admin = runtime::transport::BrokerAuth::from_env(&data, hub::broker::ADMIN);
            let js = async_nats::jetstream::new(runtime::transport::connect(&url, hub::broker::ADMIN, &admin).await?);
            let folder = runtime::config::partnership_dir(&data);
            let (directory, policy) = (folder.join("directory.toml"), folder.join("policy.toml"));
            runtime::partnership_feed::publish(&js, &directory, &policy).await?;
            let sequence = |path: &std::path::Path| runtime::partnership_feed::SignedFile::read(path).ok().and_then(|f| f.sequence()).unwrap_or_default();
            println!(
                "published to {}: directory (sequence {}) and policy (sequence {}); every service checks and takes them up within seconds",
                runtime::transport::PARTNERSHIP_BUCKET,
                sequence(&directory),
                sequence(&policy)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { command: KeysCommand::Rotate { agency, data } } => {
            let (old, new) = hub::partnership::rotate(&data, &agency)?;
            println!("{agency}: signing key {} retired, {} in force; the directory update is signed; services take it up within seconds", old.signing_key_id(), new.signing_key_id());
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy { command: PolicyCommand::Explain { from, to, kind, consent, risk, purpose, basis, policy, json } } => {
            let a = ExplainArgs { from, to, kind, consent, risk, purpose, basis, policy, json };
            match explain(&a) {
                Ok(text) => {
                    println!("{text}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("hub policy explain: {e:#}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Policy { command: PolicyCommand::Sign { file, data } } => {
            let schema = isp::Schema::load()?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let policy = match isp::Policy::check_draft(&text, &schema) {
                Ok(p) => p,
                Err(problems) => {
                    for (line, problem) in &problems {
                        eprintln!("{}:{line}: {problem}", file.display());
                    }
                    eprintln!("{}: not signed: fix the {} problem(s) first", file.display(), problems.len());
                    return Ok(ExitCode::FAILURE);
                }
            };
            let directory = isp::Directory::load(&hub::partnership::directory_path(&data))?;
            let ig = directory.with_role(isp::Role::Ig).next().context("the directory has no ig agency to sign the policy")?;
            let keys = isp::AgencyKeys::load(&runtime::Config::embedded(&data, &ig.id, "").keys_path)?;
            let signature = isp::signed::sign(&keys, &policy.version, hub::partnership::next_policy_sequence(&data, &file), &text);
            let mut sig_path = file.clone().into_os_string();
            sig_path.push(".sig");
            std::fs::write(&sig_path, serde_json::to_string_pretty(&signature)?)?;
            println!("signed policy {} (sha256 {}) as {}: {}", policy.version, signature.sha256, keys.agency, PathBuf::from(sig_path).display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy { command: PolicyCommand::Check { file } } => {
            let schema = isp::Schema::load()?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            match isp::Policy::check_draft(&text, &schema) {
                Ok(p) => {
                    println!("{}: policy {} is valid ({} rules)", file.display(), p.version, p.rules.len());
                    Ok(ExitCode::SUCCESS)
                }
                Err(problems) => {
                    for (line, problem) in &problems {
                        eprintln!("{}:{line}: {problem}", file.display());
                    }
                    eprintln!("{}: {} problem(s); the policy was not accepted", file.display(), problems.len());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// `hub partnership ...` at the IG office.
async fn partnership(command: PartnershipCommand) -> anyhow::Result<ExitCode> {
    use hub::membership;
    match command {
        PartnershipCommand::Init { data, name, ig_id, ig_name, policy, hosts, listen } => {
            let policy = match policy {
                Some(p) => std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
                None => isp::policy::DEMO_POLICY.to_owned(),
            };
            let created = membership::partnership_init(&data, &name, &ig_id, &ig_name, &policy, &hosts, &listen)?;
            println!("partnership {:?} created in {}", created.directory.partnership, data.display());
            println!("  IG office {ig_id}: signing key {}", created.ig_key_id);
            println!("  give every agency this key id by a channel you trust (not with files): `hub agency join --ig-key {}`", created.ig_key_id);
            println!("  broker: nats-server -c {}; then, with NATS_URL set, `hub broker provision --data {}`", created.server_config.display(), data.display());
            println!("  the audit service: `hub serve --agency audit --data {}`", data.display());
            Ok(ExitCode::SUCCESS)
        }
        PartnershipCommand::Admit { request, key_id, broker_urls, out, data } => {
            let admitted = membership::admit(&data, &request, &key_id, &broker_urls, &out)?;
            let a = &admitted.agency;
            println!("admitted {} ({}, {}) with signing key {}; the directory update is signed", a.id, a.name, a.role, a.signing_key_id());
            println!("  subject key: {}", if admitted.subject_key { "sealed to the agency in the admission" } else { "none (the policy keeps this role out of matching)" });
            println!("  broker rights: {}", if admitted.broker_reloaded { "granted; the broker reloaded them" } else { "written to DATA/broker/authorization.conf; reload the broker" });
            update_broker(&data, None).await?;
            println!("  give the agency {} (no secret in it); it runs `hub agency join {} --ig-key <the IG key id>`", admitted.bundle.display(), admitted.bundle.display());
            Ok(ExitCode::SUCCESS)
        }
        PartnershipCommand::Suspend { agency, data } => suspend(&data, &agency, false).await,
        PartnershipCommand::Remove { agency, data } => suspend(&data, &agency, true).await,
        PartnershipCommand::Rotate { request, data } => {
            let agency = membership::partnership_rotate(&data, &request)?;
            println!("{}: signing key {} in force, the old keys retired now; the directory update is signed", agency.id, agency.signing_key_id());
            update_broker(&data, None).await?;
            Ok(ExitCode::SUCCESS)
        }
        PartnershipCommand::List { data } => {
            let directory = isp::Directory::load(&hub::partnership::directory_path(&data))?;
            println!("{}", directory.partnership);
            for a in &directory.agencies {
                println!("  {:<28} {:<12} {:<10} {}  {}", a.id, a.role.as_str(), a.status(), a.signing_key_id(), a.name);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn suspend(data: &std::path::Path, agency: &str, remove: bool) -> anyhow::Result<ExitCode> {
    let done = hub::membership::suspend(data, agency, remove)?;
    println!(
        "{} {} from now: its keys sign nothing more, nothing is sent to it; the directory update is signed",
        if remove { "removed" } else { "suspended" },
        done.agency.id
    );
    println!("  broker: {}", if done.broker_reloaded { "its identity is revoked; the broker reloaded its rights" } else { "its identity is out of DATA/broker/authorization.conf; reload the broker" });
    update_broker(data, remove.then_some(agency)).await?;
    Ok(ExitCode::SUCCESS)
}

/// With NATS_URL: as the broker's administrator, provisions what the directory now needs (a
/// new agency's consumer), deletes a removed agency's consumer, and publishes the
/// partnership's files for every service to take up.
async fn update_broker(data: &std::path::Path, removed: Option<&str>) -> anyhow::Result<()> {
    let Some(url) = std::env::var("NATS_URL").ok().filter(|v| !v.is_empty()) else {
        println!("  NATS_URL is not set: run `hub broker provision` and `hub broker publish` against the broker, or copy the partnership files to every host");
        return Ok(());
    };
    hub::membership::update_broker(data, &url, removed).await?;
    println!("  on the broker: consumers provisioned{}, the partnership's files published", if removed.is_some() { ", the removed agency's deleted" } else { "" });
    Ok(())
}

/// `hub agency ...` on an agency's own host.
fn agency(command: AgencyCommand) -> anyhow::Result<ExitCode> {
    use hub::membership;
    match command {
        AgencyCommand::Init { data, id, name, role } => {
            let request = membership::agency_init(&data, &id, &name, role)?;
            println!("keys for {id} made in {} (owner-only; they never leave this host)", data.join("keys").display());
            println!("join request: {} (public keys only)", membership::join_request_path(&data).display());
            println!("  send it to the IG office, and tell them by a channel you trust its key id: {}", request.key_id());
            Ok(ExitCode::SUCCESS)
        }
        AgencyCommand::Rotate { agency, data } => {
            let request = membership::agency_rotate(&data, &agency)?;
            println!("new keys for {agency} made (signing key {}); they wait in {} until the IG office's directory names them", request.body.signing_key_id(), membership::next_keys_path(&data, &agency).display());
            println!("  send {} to the IG office (`hub partnership rotate`)", data.join("rotation-request.json").display());
            Ok(ExitCode::SUCCESS)
        }
        AgencyCommand::Join { bundle, ig_key, data } => {
            let joined = membership::join(&data, &bundle, &ig_key)?;
            println!("{} joined {:?} as {}", joined.agency.id, joined.partnership, joined.agency.role);
            println!("  subject key: {}", if joined.subject_key { "taken into the key file" } else { "none for this role" });
            println!("  broker: {} (kept in {})", joined.broker_urls.join(","), membership::broker_url_path(&data).display());
            println!("  run: hub serve --agency {} --data {}", joined.agency.id, data.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

struct ExplainArgs {
    from: String,
    to: String,
    kind: String,
    consent: String,
    risk: String,
    purpose: Option<String>,
    basis: Option<String>,
    policy: Option<PathBuf>,
    json: bool,
}

/// `hub policy explain`: the policy's answer for one flow, as text or JSON.
fn explain(a: &ExplainArgs) -> anyhow::Result<String> {
    use isp::policy::{self, Request};
    let schema = isp::Schema::load()?;
    let policy = match &a.policy {
        Some(file) => isp::Policy::load(file, &schema)?,
        None => isp::Policy::from_toml(policy::DEMO_POLICY, &schema)?,
    };
    let role = |r: &str| r.parse::<isp::Role>().map_err(|_| anyhow::anyhow!("unknown role {r:?} (housing, idva, marac, reciprocals, perpetrator, partner, ig)"));
    let (from, to) = (role(&a.from)?, role(&a.to)?);
    let kind = isp::kind::parse(&a.kind).with_context(|| {
        format!("unknown kind {:?} (one of {})", a.kind, isp::kind::ALL.iter().map(|k| isp::kind::name(*k)).collect::<Vec<_>>().join(", "))
    })?;
    let consent = match a.consent.as_str() {
        "none" => proto::v1::ConsentState::Unspecified,
        c => policy::parse_consent(c).with_context(|| format!("unknown consent state {c:?} (given, refused, not-sought, withdrawn, expired, none)"))?,
    };
    let risk = match a.risk.as_str() {
        "none" => proto::v1::RiskLevel::Unspecified,
        r => policy::parse_risk(r).with_context(|| format!("unknown risk {r:?} (standard, medium, high, none)"))?,
    };
    let defaults = policy.defaults_for(from, to, kind);
    let purpose = a.purpose.clone().or_else(|| defaults.map(|d| d.0.to_owned())).unwrap_or_default();
    let basis = a.basis.clone().or_else(|| defaults.map(|d| d.1.to_owned())).unwrap_or_default();
    let none = Default::default();
    let request = Request { from, to, kind, purpose: &purpose, lawful_basis: &basis, consent, risk, categories: &none };
    let e = policy.explain(&schema, &request);
    if a.json {
        let mut v = serde_json::to_value(&e)?;
        v["purpose"] = purpose.clone().into();
        v["lawful_basis"] = basis.clone().into();
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let list = |c: &[String]| if c.is_empty() { "(none)".to_owned() } else { c.join(", ") };
    let mut out = format!(
        "{from} -> {to} {} (purpose {purpose}, basis {basis}, consent {}, risk {})\npolicy {}\n",
        isp::kind::name(kind),
        a.consent,
        a.risk,
        e.policy_version
    );
    if e.allowed {
        out.push_str(&format!("decision: ALLOWED by rule {}{}\n", e.rule, if e.without_consent {
            " WITHOUT CONSENT (needs the deciding officer, a rationale code and the rationale)"
        } else {
            ""
        }));
    } else {
        out.push_str(&format!("decision: DENIED by {}: {} ({})\n", e.rule, e.reason, e.detail));
    }
    out.push_str(&format!("flows:   {}\nremoved: {}\nrefused: {}", list(&e.flows), list(&e.removed), list(&e.refused)));
    if !e.refused.is_empty() {
        out.push_str(" (a send carrying any of these is refused whole and logged as a near miss)");
    }
    Ok(out)
}

fn print_outcome(report: &demo::Report) {
    println!(
        "\nOK: {} disclosures delivered and stored exactly once (and {} automatic delivered/opened receipts), {} near miss refused and logged,\n    ledger of {} entries verifies; checkpoint of {} entries signed and witnessed by every agency.",
        report.delivered.len(),
        report.automatic_receipts,
        report.near_misses.len(),
        report.ledger_entries,
        report.checkpoint_size
    );
}

/// Waits for Ctrl-C or SIGTERM (what systemd and container runtimes send).
async fn stopped() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Makes a demo account for every role at every service and says how to log in; the
/// passwords also go to DATA/demo-staff.txt, readable by its owner only.
async fn print_demo_staff(hub: &LocalHub, logins: &hub::staff::Logins, data: &std::path::Path) -> anyhow::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut services: Vec<&str> = hub.services.keys().map(String::as_str).collect();
    services.push("audit");
    for service in services {
        for role in runtime::auth::Role::ALL {
            logins.account(service, &hub::staff::demo_id(role), &[role]).await?;
        }
    }
    let path = data.join("demo-staff.txt");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
    writeln!(file, "# demo staff of this partnership: service, staff id, password (synthetic accounts, one role each)")?;
    for (service, id, password) in logins.accounts() {
        writeln!(file, "{service} {id} {password}")?;
    }
    let housing = hub.services.values().find(|s| s.role == isp::Role::Housing).map(|s| (s.agency.as_str(), s.url.as_str()));
    println!("\ndemo staff: every service has demo.<role> for each role (caseworker, team-manager, agency-admin, marac-coordinator,");
    println!("reciprocals-coordinator, ig-lead, auditor); their passwords are in {} (readable by you only).", path.display());
    if let Some((agency, url)) = housing {
        let password = logins.account(agency, "demo.caseworker", &[runtime::auth::Role::Caseworker]).await?;
        println!("log in, e.g. as {agency}'s caseworker:");
        println!("  curl -i -X POST {url}/login -H 'content-type: application/json' -d '{{\"staff_id\":\"demo.caseworker\",\"password\":\"{password}\"}}'");
        println!("then send the hub_session_{agency} cookie it sets, and its csrf_token as X-CSRF-Token on every POST.");
    }
    println!("\nthe web console, in a browser (sign in with a demo staff id and its password from {}):", path.display());
    for s in hub.services.values() {
        println!("  {:<24}  {}/console", s.agency, s.url);
    }
    println!("  {:<24}  {}/console   (ig-lead, auditor)", "audit", hub.audit_url);
    if let Some((agency, _)) = housing {
        let password = logins.account(agency, "demo.caseworker", &[runtime::auth::Role::Caseworker]).await?;
        println!("  e.g. {agency}: staff id demo.caseworker, password {password}");
    }
    if let Some(ig) = hub.directory.agencies.iter().find(|a| a.role == isp::Role::Ig) {
        let password = logins.account("audit", "demo.ig-lead", &[runtime::auth::Role::IgLead]).await?;
        println!("  e.g. audit ({}): staff id demo.ig-lead, password {password}", ig.id);
    }
    Ok(())
}

fn print_services(hub: &LocalHub) {
    println!("partnership: {}", hub.directory.partnership);
    match (&hub.nats, &hub.cluster) {
        (Some(n), _) => println!("  nats-server (JetStream)   {}  TLS, one nkey per service: {}", n.url, runtime::transport::broker_dir(&n.data).display()),
        (None, Some(c)) => {
            c.specs().for_each(|n| println!("  nats-server {:<13} {}  store {}", n.name, n.client_url(), n.store_dir.display()));
            println!("  (TLS, one nkey per service: {})", runtime::transport::broker_dir(&hub.data).display());
        }
        (None, None) => println!("  NATS                      {}", hub.nats_url),
    }
    for s in hub.services.values() {
        println!("  {:<24}  {:<12} {}", s.agency, s.role.as_str(), s.url);
    }
    println!("  {:<24}  {:<12} {}", "audit", "ig", hub.audit_url);
}

