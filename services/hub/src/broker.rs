//! The partnership's broker as a trust boundary: who may connect, and what each identity may
//! do once connected, enforced by nats-server itself.
//!
//! Each service has its own identity: an nkey pair whose seed only the service holds
//! (`DATA/broker/{identity}.nk`, mode 0600) and whose public key the server configuration
//! grants that identity's rights ([`grants`]). Nobody connects without one: the server has no
//! anonymous user. Clients reach the server over TLS, its certificate signed by a CA the
//! partnership made for itself (`DATA/broker/ca.pem`); a real deployment points
//! `HUB_NATS_CA` at its own CA instead.
//!
//! Per-user nkeys in the server's configuration, rather than decentralised JWT accounts: the
//! partnership is one account whose streams every service shares, its identities change when
//! an agency joins or leaves (a configuration reload), and one file read by a person shows
//! every right anybody has. Accounts and an operator would add a resolver, signing keys and
//! tooling for isolation the single shared stream cannot use.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use isp::{
    Directory, Role,
    checkpoint::{CHECKPOINT_STREAM, CHECKPOINT_SUBJECT, CONSISTENCY_SUBJECT},
};
use runtime::transport::{self, AUDIT_CONSUMER, BrokerAuth, CONSENT_BUCKET, PARTNERSHIP_BUCKET, STREAM};

/// The identity that provisions streams and consumers (`hub up`, `hub broker provision`).
/// It is the broker's operator: it can do anything, so its seed stays with whoever runs the
/// broker and no service ever holds it.
pub const ADMIN: &str = "admin";

/// What one identity may do: the subjects it may publish to and subscribe to. Nobody has a
/// general right to answer requests: the one answer given (the audit's consistency proofs)
/// goes to subjects named for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub identity: String,
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

/// The identities of the partnership's services: every agency that runs one (all but the IG
/// office, whose service is the audit service) and the audit service.
pub fn service_identities(directory: &Directory) -> Vec<String> {
    let mut ids = agency_identities(directory);
    ids.push(audit::AUDIT_IDENTITY.into());
    ids
}

/// The rights of an agency's service: publish its own messages, its own events and its own
/// consent records; fetch from and acknowledge its own durable consumer only; read the
/// consent bucket, the partnership bucket and the checkpoints (direct gets); ask the audit service for consistency
/// proofs; receive replies on its own inbox prefix. Nothing else: no other agency's subjects,
/// no `>`, no stream or consumer management, no checkpoints.
pub fn agency_grant(agency: &str) -> Grant {
    let consumer = transport::agency_consumer_name(agency);
    Grant {
        identity: agency.to_owned(),
        publish: vec![
            format!("hub.v1.msg.{agency}.>"),
            format!("hub.v1.evt.{agency}.>"),
            format!("$KV.{CONSENT_BUCKET}.{agency}.>"),
            format!("$JS.API.CONSUMER.INFO.{STREAM}.{consumer}"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{consumer}"),
            format!("$JS.ACK.{STREAM}.{consumer}.>"),
            format!("$JS.API.DIRECT.GET.KV_{CONSENT_BUCKET}"),
            format!("$JS.API.DIRECT.GET.KV_{CONSENT_BUCKET}.>"),
            format!("$JS.API.DIRECT.GET.{CHECKPOINT_STREAM}"),
            format!("$JS.API.DIRECT.GET.{CHECKPOINT_STREAM}.>"),
            format!("$JS.API.DIRECT.GET.KV_{PARTNERSHIP_BUCKET}"),
            format!("$JS.API.DIRECT.GET.KV_{PARTNERSHIP_BUCKET}.>"),
            CONSISTENCY_SUBJECT.to_owned(),
        ],
        subscribe: vec![format!("{}.>", transport::inbox_prefix(agency))],
    }
}

/// The rights of the audit service: read everything on the stream through its own consumer
/// (and the stream's state, to notice gaps and resets; not its messages one by one), publish checkpoints and the IG
/// office's `accessed` events (reads of the ledger), answer consistency-proof requests (to the
/// asking agency's `{inbox}.consistency.>`: no general response right, which would make the
/// broker track every message delivered to the audit as a reply it may answer, without end).
pub fn audit_grant(directory: &Directory) -> Grant {
    let mut publish = vec![
        format!("$JS.API.CONSUMER.INFO.{STREAM}.{AUDIT_CONSUMER}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{AUDIT_CONSUMER}"),
        format!("$JS.ACK.{STREAM}.{AUDIT_CONSUMER}.>"),
        format!("$JS.API.STREAM.INFO.{STREAM}"),
        CHECKPOINT_SUBJECT.to_owned(),
        format!("$JS.API.DIRECT.GET.KV_{PARTNERSHIP_BUCKET}"),
        format!("$JS.API.DIRECT.GET.KV_{PARTNERSHIP_BUCKET}.>"),
    ];
    for ig in directory.with_role(Role::Ig) {
        publish.push(transport::event_subject(&ig.id, proto::v1::EventKind::Accessed));
    }
    for agency in agency_identities(directory) {
        publish.push(format!("{}.consistency.>", transport::inbox_prefix(&agency)));
    }
    Grant {
        identity: audit::AUDIT_IDENTITY.into(),
        publish,
        subscribe: vec![CONSISTENCY_SUBJECT.to_owned(), format!("{}.>", transport::inbox_prefix(audit::AUDIT_IDENTITY))],
    }
}

/// The agencies whose services the broker admits: every active one but the IG office (a
/// suspended or removed agency has no identity on the broker any more).
pub fn agency_identities(directory: &Directory) -> Vec<String> {
    directory.active().filter(|a| a.role != Role::Ig).map(|a| a.id.clone()).collect()
}

/// Every identity's rights: each service's, and the administrator's (everything).
pub fn grants(directory: &Directory) -> Vec<Grant> {
    let mut grants: Vec<Grant> = agency_identities(directory).iter().map(|id| agency_grant(id)).collect();
    grants.push(audit_grant(directory));
    grants.push(Grant { identity: ADMIN.into(), publish: vec![">".into()], subscribe: vec![">".into()] });
    grants
}

/// The seed file of an identity.
pub fn seed_path(data: &Path, identity: &str) -> PathBuf {
    transport::broker_dir(data).join(format!("{identity}.nk"))
}

/// The public key file of an identity whose seed is held elsewhere (an agency of a real
/// partnership made its own seed on its own host and sent only this, in its join request).
pub fn public_key_path(data: &Path, identity: &str) -> PathBuf {
    transport::broker_dir(data).join(format!("{identity}.pub"))
}

/// The credentials of an identity made by [`ensure_credentials`].
pub fn auth(data: &Path, identity: &str) -> BrokerAuth {
    BrokerAuth::embedded(data, identity)
}

/// Makes what is missing of the partnership's broker credentials in `DATA/broker/`: a seed
/// for every identity of [`grants`] that has neither a seed nor a public key file here, the
/// CA and the server's certificate for `hosts` (loopback by default). What exists is kept: a
/// service's seed does not change under it.
pub fn ensure_credentials(data: &Path, directory: &Directory, hosts: &[String]) -> anyhow::Result<PathBuf> {
    let dir = transport::broker_dir(data);
    crate::private::create_dir(&dir)?;
    for grant in grants(directory) {
        let path = seed_path(data, &grant.identity);
        if !path.exists() && !public_key_path(data, &grant.identity).exists() {
            let seed = nkeys::KeyPair::new_user().seed().context("making an nkey")?;
            crate::private::write(&path, format!("{seed}\n").as_bytes())?;
        }
    }
    let (ca, cert, key) = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    if !(ca.exists() && cert.exists() && key.exists()) {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("{} broker CA", directory.partnership));
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let server_key = rcgen::KeyPair::generate()?;
        let names = if hosts.is_empty() { vec!["localhost".to_owned(), "127.0.0.1".to_owned()] } else { hosts.to_vec() };
        let mut params = rcgen::CertificateParams::new(names)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "hub broker");
        let server_cert = params.signed_by(&server_key, &ca_cert, &ca_key)?;
        // The CA's key is not kept: nothing else is ever signed with it. A new server
        // certificate means a new CA (delete the three files and run again).
        fs::write(&ca, ca_cert.pem())?;
        fs::write(&cert, server_cert.pem())?;
        crate::private::write(&key, server_key.serialize_pem().as_bytes())?;
    }
    Ok(dir)
}

/// The public key of an identity: from its public key file, else from its seed file.
fn public_key(data: &Path, identity: &str) -> anyhow::Result<String> {
    let public = public_key_path(data, identity);
    if public.exists() {
        let key = fs::read_to_string(&public).with_context(|| format!("reading {}", public.display()))?;
        return check_user_key(key.trim()).with_context(|| format!("{} does not hold an nkey user public key", public.display()));
    }
    let seed_file = seed_path(data, identity);
    let seed = fs::read_to_string(&seed_file).with_context(|| format!("reading {} (no {} either)", seed_file.display(), public.display()))?;
    Ok(nkeys::KeyPair::from_seed(seed.trim()).with_context(|| format!("{} does not hold an nkey seed", seed_file.display()))?.public_key())
}

/// An nkey user public key (`U` and 55 more base32 characters, with a valid checksum).
pub fn check_user_key(key: &str) -> anyhow::Result<String> {
    let pair = nkeys::KeyPair::from_public_key(key).map_err(|_| anyhow::anyhow!("not an nkey public key"))?;
    anyhow::ensure!(key.starts_with('U'), "not an nkey user key (it must start with U)");
    Ok(pair.public_key())
}

/// A new nkey seed for `identity` in `DATA/broker/` (mode 0600); returns its public key. The
/// seed never leaves the host that made it.
pub fn make_seed(data: &Path, identity: &str) -> anyhow::Result<String> {
    let dir = transport::broker_dir(data);
    crate::private::create_dir(&dir)?;
    let path = seed_path(data, identity);
    anyhow::ensure!(!path.exists(), "{} exists already: an identity's seed is never replaced", path.display());
    let pair = nkeys::KeyPair::new_user();
    crate::private::write(&path, format!("{}\n", pair.seed().context("making an nkey")?).as_bytes())?;
    Ok(pair.public_key())
}

fn quoted(items: &[String]) -> String {
    items.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
}

/// The server configuration's `authorization` block: one nkey user per identity with its
/// rights, and no anonymous user.
pub fn authorization_block(data: &Path, directory: &Directory) -> anyhow::Result<String> {
    let mut out = String::from("authorization {\n  users = [\n");
    for grant in grants(directory) {
        let key = public_key(data, &grant.identity)?;
        writeln!(
            out,
            "    # {}\n    {{ nkey: \"{key}\", permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }} }}",
            grant.identity,
            quoted(&grant.publish),
            quoted(&grant.subscribe)
        )?;
    }
    out.push_str("  ]\n}\n");
    Ok(out)
}

/// The server configuration's `tls` block: clients must use TLS; they prove who they are with
/// their nkey, not a client certificate.
pub fn tls_block(data: &Path) -> String {
    // Absolute where it can be: the broker may be started from anywhere.
    let dir = fs::canonicalize(transport::broker_dir(data)).unwrap_or_else(|_| transport::broker_dir(data));
    format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 5\n}}\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    )
}

/// Writes `DATA/broker/authorization.conf` (the [`authorization_block`] of the directory)
/// and `tls.conf`, which the server configuration of [`write_server_config`] includes;
/// written anew after every admission, suspension and removal.
pub fn write_includes(data: &Path, directory: &Directory) -> anyhow::Result<()> {
    let dir = transport::broker_dir(data);
    let block = authorization_block(data, directory)?;
    let temp = dir.join("authorization.conf.new");
    fs::write(&temp, format!("# Made by `hub`: who may connect to the partnership's broker, and what each may do.\n{block}"))?;
    fs::rename(&temp, dir.join("authorization.conf"))?;
    fs::write(dir.join("tls.conf"), tls_block(data))?;
    Ok(())
}

/// The broker's own configuration for a real partnership (`DATA/broker/server.conf`): one
/// node listening on `listen` (host:port), its JetStream store, its pid file (so `hub
/// partnership` can make it reload its rights) and the two included files.
pub fn write_server_config(data: &Path, listen: &str, store: &Path) -> anyhow::Result<PathBuf> {
    // Absolute paths: the broker may be started from anywhere.
    let dir = fs::canonicalize(transport::broker_dir(data))?;
    let store = if store.is_absolute() { store.to_owned() } else { std::env::current_dir()?.join(store) };
    let path = dir.join("server.conf");
    let text = format!(
        "# Made by `hub broker config`: the partnership's broker. Run: nats-server -c {}\nlisten: \"{listen}\"\nserver_name: \"hub-broker\"\npid_file: \"{}\"\njetstream {{\n  store_dir: \"{}\"\n}}\ninclude \"tls.conf\"\ninclude \"authorization.conf\"\n",
        path.display(),
        dir.join("nats-server.pid").display(),
        store.display()
    );
    fs::write(&path, text)?;
    Ok(path)
}

/// A whole single-node configuration for the local broker `hub up` runs.
pub fn local_server_config(data: &Path, directory: &Directory, port: u16, store: &Path) -> anyhow::Result<String> {
    Ok(format!(
        "# Made by `hub up`: the partnership's local broker.\nhost: \"127.0.0.1\"\nport: {port}\nserver_name: \"hub-local\"\njetstream {{\n  store_dir: \"{}\"\n}}\n{}{}",
        store.display(),
        tls_block(data),
        authorization_block(data, directory)?
    ))
}

/// Provisions the broker (see [`transport::provision`]) as the administrator: the streams,
/// the bucket, and a consumer for every service of the directory.
pub async fn provision(url: &str, auth: &BrokerAuth, directory: &Directory, ack_wait: std::time::Duration) -> anyhow::Result<()> {
    let client = transport::connect(url, ADMIN, auth).await?;
    let js = async_nats::jetstream::new(client);
    transport::provision(&js, &agency_identities(directory), ack_wait).await
}



#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agency_may_not_touch_what_is_not_its_own() {
        let g = agency_grant("idva-a");
        for own in ["hub.v1.msg.idva-a.>", "hub.v1.evt.idva-a.>", "$KV.hub-consent.idva-a.>", "$JS.API.CONSUMER.MSG.NEXT.HUB.agency-idva-a"] {
            assert!(g.publish.iter().any(|p| p == own), "{own}");
        }
        for wide in [">", "hub.>", "hub.v1.msg.>", "$JS.API.>", "$JS.>", "$KV.>", "_INBOX.>"] {
            assert!(!g.publish.iter().chain(&g.subscribe).any(|p| p == wide), "{wide}");
        }
        assert!(g.publish.iter().all(|p| !p.contains("CREATE") && !p.contains("DELETE") && !p.contains("UPDATE") && !p.contains("PURGE")));
        assert_eq!(g.subscribe, ["_INBOX_idva-a.>"]);
    }

    #[test]
    fn every_service_reads_the_partnership_files_and_none_writes_them() {
        let (directory, _) = isp::directory::generate_partnership("P", &[("ig-p", "IG", Role::Ig), ("idva-p", "IDVA", Role::Idva)]).unwrap();
        for g in [agency_grant("idva-p"), audit_grant(&directory)] {
            for read in ["$JS.API.DIRECT.GET.KV_hub-partnership", "$JS.API.DIRECT.GET.KV_hub-partnership.>"] {
                assert!(g.publish.iter().any(|p| p == read), "{}: {read}", g.identity);
            }
            assert!(g.publish.iter().all(|p| !p.starts_with("$KV.hub-partnership")), "{} may write the partnership bucket", g.identity);
        }
    }
}
