//! A partnership across hosts, as operators set it up: the IG office, housing and the IDVA
//! each on a host of its own (a network namespace made by the test, reached over a bridge),
//! each with its own data directory, keys and database; the broker only on the IG office's
//! address.
//!
//! - The IG office runs `hub partnership init` and its broker (`nats-server -c
//!   DATA/broker/server.conf`); housing and the IDVA run `hub agency init` on their hosts;
//!   the IG office admits each (`hub partnership admit`, checking the key id the agency gave);
//!   each takes its admission up (`hub agency join`, checking the IG key id it was given) and
//!   runs `hub serve`; the audit service runs at the IG office. Every service speaks HTTPS on
//!   its host's address.
//! - Housing refers a survivor to the IDVA, the IDVA accepts it, housing sees the acceptance,
//!   and the audit service's checkpoint covers it and verifies. Housing learns of the IDVA
//!   (admitted after it) from the directory the IG office published on the broker.
//! - No host's data directory, and nothing any command or service printed, holds another
//!   agency's secret key; every file holding a secret is owner-only.
//! - The IG office suspends housing: its broker identity is refused from then on, an
//!   envelope it signed afterwards (put on the broker by its administrator) is quarantined
//!   `suspended_sender` by the IDVA and recorded in the ledger, and the ledger with housing's
//!   earlier referral still verifies.
//!
//! Network namespaces need root: where they cannot be made the test fails and says why.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::Context as _;
use serde_json::{Value, json};
use tests::netns::Net;
use tokio::io::AsyncBufReadExt as _;

const HUB: &str = env!("CARGO_BIN_EXE_hub");
const IG: &str = "ig-test";
const HOUSING: &str = "housing-test";
const IDVA: &str = "idva-test";
const PATIENCE: Duration = Duration::from_secs(90);

/// One host: its namespace, address and data directory, and what it printed.
struct Host {
    name: &'static str,
    data: PathBuf,
    addr: std::net::Ipv4Addr,
}

/// Runs `hub ARGS` on a host (inside its namespace) and returns what it printed; fails with
/// its error output when it fails. Everything printed is kept in `printed` to be searched
/// for secrets at the end.
fn hub(net: &Net, host: &Host, args: &[&str], env: &[(&str, &str)], printed: &mut String) -> anyhow::Result<String> {
    let ns = &net.host(host.name).ns;
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", ns, HUB])
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .context("running hub in a namespace")?;
    let (out, err) = (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned());
    printed.push_str(&out);
    printed.push_str(&err);
    anyhow::ensure!(output.status.success(), "hub {} on {} failed: {err}{out}", args.join(" "), host.name);
    Ok(out)
}

/// A service (`hub serve`) on its host, its log kept in a file; killed when dropped.
struct Served {
    _child: tokio::process::Child,
    url: String,
    log: PathBuf,
}

async fn serve(net: &Net, host: &Host, agency: &str, env: &[(&str, &str)], tls: &(PathBuf, PathBuf)) -> anyhow::Result<Served> {
    let log = host.data.join(format!("{agency}.log"));
    let mut command = net.command(host.name, HUB);
    command
        .args(["serve", "--agency", agency, "--data"])
        .arg(&host.data)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("HUB_HTTP_ADDR", format!("{}:8443", host.addr))
        .env("HUB_TLS_CERT", &tls.0)
        .env("HUB_TLS_KEY", &tls.1)
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true);
    let mut child = command.spawn().context("starting hub serve")?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .with_context(|| format!("{agency} did not start within 60 s"))??
        .with_context(|| format!("{agency} exited at start: {}", std::fs::read_to_string(&log).unwrap_or_default()))?;
    let url = line.strip_prefix("listening ").with_context(|| format!("{agency}: {line}"))?.to_owned();
    anyhow::ensure!(url.starts_with("https://"), "{agency} does not speak https: {url}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Served { _child: child, url, log })
}

/// A certificate for `addr` signed by the test's CA (each host's HTTPS), written into `dir`.
fn certificate(ca: &(rcgen::Certificate, rcgen::KeyPair), addr: std::net::Ipv4Addr, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec![addr.to_string()])?.signed_by(&key, &ca.0, &ca.1)?;
    let (cert_path, key_path) = (dir.join("https.pem"), dir.join("https.key"));
    std::fs::write(&cert_path, cert.pem())?;
    hub::private::write(&key_path, key.serialize_pem().as_bytes())?;
    Ok((cert_path, key_path))
}


/// Logs in at a service over HTTPS, trusting the test's CA.
async fn login(base: &str, ca_pem: &str, staff_id: &str, password: &str) -> anyhow::Result<reqwest::Client> {
    let root = reqwest::Certificate::from_pem(ca_pem.as_bytes())?;
    hub::staff::login_with(|| reqwest::Client::builder().add_root_certificate(root.clone()), base, staff_id, password).await
}

/// Adds a staff member at a service and returns the password `hub` made for them.
fn staff(net: &Net, host: &Host, service: &str, id: &str, role: &str, printed: &mut String) -> anyhow::Result<String> {
    let data = host.data.to_str().context("path")?;
    let out = hub(net, host, &["staff", "add", "--service", service, "--data", data, "--id", id, "--role", role], &[], printed)?;
    Ok(out.lines().find_map(|l| l.strip_prefix("password (shown once): ")).context("no password printed")?.to_owned())
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<(u16, Value)> {
    let response = client.get(url).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Every secret a host's data directory holds: its key files' age identities and signing
/// keys, its broker seeds and private TLS keys (the partnership's subject key, shared by
/// design, is not one agency's secret).
fn secrets_of(data: &Path) -> anyhow::Result<Vec<String>> {
    let mut secrets = Vec::new();
    for entry in std::fs::read_dir(data.join("keys"))? {
        let text = std::fs::read_to_string(entry?.path())?;
        let file: toml::Value = toml::from_str(&text)?;
        for field in ["age_identity", "signing_key"] {
            secrets.push(file[field].as_str().context("key file field")?.to_owned());
        }
    }
    for entry in std::fs::read_dir(data.join("broker"))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.ends_with(".nk") {
            secrets.push(std::fs::read_to_string(&path)?.trim().to_owned());
        }
        if name.ends_with(".key") {
            let pem = std::fs::read_to_string(&path)?;
            // The key's base64 body, line by line (a PEM's lines are its material).
            secrets.extend(pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 40).map(str::to_owned));
        }
    }
    anyhow::ensure!(secrets.len() >= 3, "{} holds too few secrets to check", data.display());
    Ok(secrets)
}

/// Every file under `dir` holding one of `secrets`.
fn files_with_secrets(dir: &Path, secrets: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for secret in secrets {
        found.extend(tests::files_containing(dir, secret.as_bytes())?);
    }
    found.sort();
    found.dedup();
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partnership_runs_across_hosts_and_a_suspended_agency_is_shut_out() -> anyhow::Result<()> {
    let net = Net::create(&["ig", "housing", "idva"]).context("this test runs each organisation on a host of its own (a network namespace) and cannot without them")?;
    let root = tempfile::tempdir()?;
    let host = |name: &'static str| Host { name, data: root.path().join(name).join("hub-data"), addr: net.host(name).addr };
    let (ig, housing, idva) = (host("ig"), host("housing"), host("idva"));
    let mut printed = String::new();
    let broker_url = format!("tls://{}:4222", ig.addr);
    let as_admin = [("NATS_URL", broker_url.as_str())];
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();

    // The IG office creates the partnership and runs its broker on its own address.
    hub(&net, &ig, &["partnership", "init", "--data", &path(&ig.data), "--name", "Across Hosts Test Partnership", "--ig-id", IG,
        "--host", &ig.addr.to_string(), "--listen", &format!("{}:4222", ig.addr)], &[], &mut printed)?;
    let ig_key = isp::Directory::load(&ig.data.join("partnership/directory.toml"))?.require(IG)?.signing_key_id();
    assert!(printed.contains(&ig_key), "init prints the IG key id to hand out");
    let broker_log = ig.data.join("broker.log");
    let _broker = net
        .command("ig", "nats-server")
        .args(["-c", &path(&ig.data.join("broker/server.conf"))])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&broker_log)?)
        .kill_on_drop(true)
        .spawn()
        .context("starting nats-server at the IG office")?;
    tests::eventually("the broker listens on the IG office's address", PATIENCE, || async {
        Ok(tokio::net::TcpStream::connect((ig.addr, 4222)).await.ok().map(|_| ()))
    })
    .await?;
    hub(&net, &ig, &["broker", "provision", "--data", &path(&ig.data)], &as_admin, &mut printed)?;

    // Each agency makes its keys on its own host and asks to join; the IG office admits it
    // with the key id the agency told it; the agency takes the admission up.
    let transfer = root.path().join("transfer");
    std::fs::create_dir_all(&transfer)?;
    for (agency, id, name, role) in [(&housing, HOUSING, "Test Housing Options", "housing"), (&idva, IDVA, "Test IDVA Service", "idva")] {
        let out = hub(&net, agency, &["agency", "init", "--data", &path(&agency.data), "--id", id, "--name", name, "--role", role], &[], &mut printed)?;
        let key_id = out.lines().find_map(|l| l.split("its key id: ").nth(1)).context("no key id printed")?.trim().to_owned();
        let request = transfer.join(format!("{id}-join-request.json"));
        std::fs::copy(agency.data.join("join-request.json"), &request)?;
        let bundle = transfer.join(format!("{id}-admission"));
        // A request with another key id is refused.
        assert!(hub(&net, &ig, &["partnership", "admit", &path(&request), "--key-id", &ig_key, "--broker-url", &broker_url, "--out", &path(&bundle), "--data", &path(&ig.data)], &as_admin, &mut printed).is_err());
        hub(&net, &ig, &["partnership", "admit", &path(&request), "--key-id", &key_id, "--broker-url", &broker_url, "--out", &path(&bundle), "--data", &path(&ig.data)], &as_admin, &mut printed)?;
        hub(&net, agency, &["agency", "join", &path(&bundle), "--ig-key", &ig_key, "--data", &path(&agency.data)], &[], &mut printed)?;
    }

    // Each service on its own host, HTTPS on the host's address.
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = (ca_params.self_signed(&ca_key)?, ca_key);
    let ca_pem = ca.0.pem();
    let audit = serve(&net, &ig, "audit", &[("NATS_URL", &broker_url), ("HUB_CHECKPOINT_SECS", "2")], &certificate(&ca, ig.addr, &ig.data)?).await?;
    let housing_api = serve(&net, &housing, HOUSING, &[], &certificate(&ca, housing.addr, &housing.data)?).await?;
    let idva_api = serve(&net, &idva, IDVA, &[], &certificate(&ca, idva.addr, &idva.data)?).await?;

    let password = staff(&net, &housing, HOUSING, "t.caseworker", "caseworker", &mut printed)?;
    let housing_staff = login(&housing_api.url, &ca_pem, "t.caseworker", &password).await?;
    let password = staff(&net, &idva, IDVA, "t.caseworker", "caseworker", &mut printed)?;
    let idva_staff = login(&idva_api.url, &ca_pem, "t.caseworker", &password).await?;
    let password = staff(&net, &idva, IDVA, "t.manager", "team-manager", &mut printed)?;
    let idva_manager = login(&idva_api.url, &ca_pem, "t.manager", &password).await?;
    let password = staff(&net, &ig, "audit", "t.ig-lead", "ig-lead", &mut printed)?;
    let ig_lead = login(&audit.url, &ca_pem, "t.ig-lead", &password).await?;

    // Housing knows the IDVA (admitted after it) only from the directory published on the broker.
    tests::eventually("housing takes up the directory that admits the IDVA", PATIENCE, || async {
        let d = isp::Directory::load(&housing.data.join("partnership/directory.toml"))?;
        Ok(d.get(IDVA).map(|_| ()))
    })
    .await?;

    // The referral: consent recorded, sent, delivered, accepted; housing sees the acceptance.
    let response = housing_staff.post(format!("{}/consents", housing_api.url)).json(&tests::referral_consent(1)).send().await?;
    assert_eq!(response.status().as_u16(), 201, "{}", response.text().await?);
    let mut referral = tests::idva_referral(1);
    referral["to"] = json!(IDVA);
    let envelope_id = tests::eventually("housing sends the referral to the IDVA", PATIENCE, || async {
        let response = housing_staff.post(format!("{}/disclosures", housing_api.url)).json(&referral).send().await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await?;
        Ok((status == 201).then(|| body["envelope_id"].as_str().unwrap_or_default().to_owned()))
    })
    .await?;
    tests::eventually("the referral reaches the IDVA's inbox", PATIENCE, || async {
        Ok((get(&idva_staff, &format!("{}/inbox/{envelope_id}", idva_api.url)).await?.0 == 200).then_some(()))
    })
    .await?;
    let ack = idva_staff.post(format!("{}/inbox/{envelope_id}/ack", idva_api.url)).json(&json!({"status": "accepted", "reason": ""})).send().await?;
    assert_eq!(ack.status().as_u16(), 201, "{}", ack.text().await?);
    tests::eventually("housing sees the IDVA accepted the referral", PATIENCE, || async {
        let (_, sent) = get(&housing_staff, &format!("{}/disclosures/{envelope_id}", housing_api.url)).await?;
        Ok((sent["status"] == "accepted").then_some(()))
    })
    .await?;

    // The ledger holds it, a checkpoint covers it, and it verifies.
    let entries = tests::eventually("the ledger records the referral and its acceptance, under a checkpoint", PATIENCE, || async {
        let (_, verify) = get(&ig_lead, &format!("{}/verify", audit.url)).await?;
        let (status, latest) = get(&ig_lead, &format!("{}/checkpoints/latest", audit.url)).await?;
        let entries = verify["entries"].as_u64().unwrap_or_default();
        let covered = status == 200 && latest["tree_size"].as_u64().unwrap_or_default() >= entries;
        Ok((verify["ok"] == true && entries >= 3 && covered).then_some(entries))
    })
    .await?;

    // No host holds another's secret key; every secret is owner-only; nothing printed or
    // logged holds any.
    let hosts = [&ig, &housing, &idva];
    let mut every_secret = Vec::new();
    for h in hosts {
        let own = secrets_of(&h.data)?;
        for other in hosts.iter().filter(|o| o.name != h.name) {
            let found = files_with_secrets(&other.data, &own)?;
            assert!(found.is_empty(), "{}'s data directory holds a secret key of {}: {found:?}", other.name, h.name);
        }
        for file in files_with_secrets(&h.data, &own)? {
            let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} holds a secret with mode {mode:o}", file.display());
        }
        every_secret.extend(own);
    }
    let logs: String = [&audit.log, &housing_api.log, &idva_api.log].iter().map(|l| std::fs::read_to_string(l).unwrap_or_default()).collect();
    for secret in &every_secret {
        assert!(!printed.contains(secret.as_str()) && !logs.contains(secret.as_str()), "a secret key was printed or logged");
    }
    assert!(!transfer_holds_secrets(&transfer, &every_secret)?, "a join request or admission carries a secret key");

    // Housing's broker identity works, until the IG office suspends it.
    let housing_auth = runtime::transport::BrokerAuth::embedded(&housing.data, HOUSING);
    runtime::transport::connect(&broker_url, HOUSING, &housing_auth).await.context("housing's identity before the suspension")?;
    let before = isp::Directory::load(&housing.data.join("partnership/directory.toml"))?;
    hub(&net, &ig, &["partnership", "suspend", HOUSING, "--data", &path(&ig.data)], &as_admin, &mut printed)?;
    tests::eventually("the broker refuses housing's identity", PATIENCE, || async {
        Ok(runtime::transport::connect(&broker_url, HOUSING, &housing_auth).await.err().map(|_| ()))
    })
    .await?;
    let suspended_digest = isp::Directory::load(&ig.data.join("partnership/directory.toml"))?.digest();
    tests::eventually("the IDVA takes the suspension up", PATIENCE, || async {
        let d = isp::Directory::load(&idva.data.join("partnership/directory.toml"))?;
        let (_, health) = get(&idva_staff, &format!("{}/health", idva_api.url)).await?;
        Ok((d.digest() == suspended_digest && !d.require(HOUSING)?.is_active() && health["directory"] == suspended_digest.as_str()).then_some(()))
    })
    .await?;

    // What housing signs now is refused by its recipient even when it reaches the broker
    // (here, put there by the broker's administrator), and the refusal is in the ledger.
    let policy = isp::Policy::from_toml(&std::fs::read_to_string(housing.data.join("partnership/policy.toml"))?, &isp::Schema::load()?)?;
    let housing_isp = isp::Isp::new(
        isp::AgencyKeys::load(&housing.data.join(format!("keys/{HOUSING}.toml")))?,
        std::sync::Arc::new(before),
        std::sync::Arc::new(policy),
        std::sync::Arc::new(isp::Schema::load()?),
    )?;
    let late = tests::sealed_ack(&housing_isp, IDVA, "HSG-9001")?;
    let admin = runtime::transport::connect(&broker_url, hub::broker::ADMIN, &runtime::transport::BrokerAuth::embedded(&ig.data, hub::broker::ADMIN)).await?;
    let js = async_nats::jetstream::new(admin);
    js.publish(runtime::transport::message_subject(HOUSING, IDVA, isp::Kind::ReferralAck), late.into()).await?.await?;
    tests::eventually("the IDVA quarantines housing's late envelope as suspended_sender", PATIENCE, || async {
        let (status, quarantine) = get(&idva_manager, &format!("{}/quarantine", idva_api.url)).await?;
        match quarantine.as_array().and_then(|q| q.iter().find(|e| e["reason"] == "suspended_sender")) {
            Some(_) => Ok(Some(())),
            None => anyhow::bail!("HTTP {status}: {quarantine}"),
        }
    })
    .await?;
    let ledger = tests::eventually("the ledger records the refusal, and still verifies with housing's earlier referral", PATIENCE, || async {
        let (_, verify) = get(&ig_lead, &format!("{}/verify", audit.url)).await?;
        let (_, ledger) = get(&ig_lead, &format!("{}/ledger?limit=1000", audit.url)).await?;
        let refused = ledger.as_array().is_some_and(|l| l.iter().any(|e| e["reason"] == "suspended_sender"));
        anyhow::ensure!(verify["ok"] == true && verify["entries"].as_u64().unwrap_or_default() > entries && refused, "refused {refused}: {verify}");
        Ok(Some(ledger))
    })
    .await?;
    // Housing's referral, signed before the suspension, still verifies against the directory
    // that suspends it; the same header judged as made after the suspension does not.
    let entry = ledger.as_array().and_then(|l| l.iter().find(|e| e["entry_id"] == envelope_id.as_str() && e["entry_type"] == "disclosure")).context("the referral's ledger entry")?;
    let signed = hex::decode(entry["signed"].as_str().context("signed")?)?;
    let envelope = <proto::v1::Envelope as prost::Message>::decode(signed.as_slice())?;
    let now = isp::Directory::load(&ig.data.join("partnership/directory.toml"))?;
    let header = isp::seal::verify_header(&now, &envelope.header, &envelope.signature).context("housing's earlier referral no longer verifies")?;
    assert_eq!(header.sender, HOUSING);
    let since = now.require(HOUSING)?.suspended_at_ms.context("housing is suspended")?;
    assert!(now.require(HOUSING)?.check_in_force(since).is_err() && header.created_at_ms < since);

    // Removed for good: its consumer is gone from the broker, its id is never admitted again.
    let stream = js.get_stream(runtime::transport::STREAM).await?;
    stream.consumer_info(runtime::transport::agency_consumer_name(HOUSING)).await.context("housing's consumer while suspended")?;
    hub(&net, &ig, &["partnership", "remove", HOUSING, "--data", &path(&ig.data)], &as_admin, &mut printed)?;
    assert!(stream.consumer_info(runtime::transport::agency_consumer_name(HOUSING)).await.is_err(), "housing's consumer outlived its removal");
    let listed = hub(&net, &ig, &["partnership", "list", "--data", &path(&ig.data)], &[], &mut printed)?;
    assert!(listed.lines().any(|l| l.contains(HOUSING) && l.contains("removed")), "{listed}");
    let again = root.path().join("housing-again");
    let out = hub(&net, &housing, &["agency", "init", "--data", &path(&again), "--id", HOUSING, "--name", "Test Housing Options", "--role", "housing"], &[], &mut printed)?;
    let key_id = out.lines().find_map(|l| l.split("its key id: ").nth(1)).context("no key id printed")?.trim().to_owned();
    let refused = hub(&net, &ig, &["partnership", "admit", &path(&again.join("join-request.json")), "--key-id", &key_id, "--broker-url", &broker_url, "--out", &path(&transfer.join("again")), "--data", &path(&ig.data)], &as_admin, &mut printed);
    assert!(refused.is_err_and(|e| e.to_string().contains("removed")), "a removed agency was admitted again");
    Ok(())
}

/// Whether anything handed between hosts (join requests, admissions) holds a secret.
fn transfer_holds_secrets(transfer: &Path, secrets: &[String]) -> anyhow::Result<bool> {
    Ok(!files_with_secrets(transfer, secrets)?.is_empty())
}
