//! A real partnership's membership, across hosts: the IG office creates the partnership
//! (`hub partnership init`), each agency makes its own keys on its own host and asks to join
//! (`hub agency init`), the IG office admits it (`hub partnership admit`), the agency takes
//! the admission up (`hub agency join`), and the IG office suspends or removes it
//! (`hub partnership suspend | remove`).
//!
//! Who holds what:
//! - an agency's age identity, signing key and broker seed are made on its host and never
//!   leave it: its join request carries only their public halves;
//! - the IG office holds its own keys, the partnership's subject key (for subject access
//!   requests), the broker's administrator seed and the audit service's;
//! - the subject key reaches an agency whose role matches people only sealed to that
//!   agency's age key, inside the admission;
//! - the directory, the policy, the broker's CA certificate and its address are public
//!   within the partnership.
//!
//! Trust at joining is out of band: the IG office checks a join request's key id with the
//! agency (by phone, say) before admitting it (`--key-id`), and the agency checks the IG
//! office's key id it was given the same way before taking the admission up (`--ig-key`).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use ed25519_dalek::Signer as _;
use isp::{Agency, AgencyKeys, Directory, Role};
use serde::{Deserialize, Serialize};

use crate::{broker, partnership};

/// The join request's format tag.
pub const JOIN_FORMAT: &str = "hub.v1.join-request";
/// The admission's format tag.
pub const ADMISSION_FORMAT: &str = "hub.v1.admission";
const JOIN_CONTEXT: &[u8] = b"hub.v1.join-request\0";
const ADMISSION_CONTEXT: &[u8] = b"hub.v1.admission\0";

/// Where `hub agency init` writes the join request in the agency's data directory.
pub fn join_request_path(data: &Path) -> PathBuf {
    data.join("join-request.json")
}

/// What an agency asks to join with: its public keys and details, nothing secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinBody {
    pub format: String,
    /// The directory entry it asks for: id, name, role, age recipient, signing key.
    pub agency: Agency,
    /// Its broker identity's public nkey (`U...`); the seed stays on its host.
    pub broker_nkey: String,
    pub created_at_ms: i64,
}

/// A join request: the body, signed with the agency's own signing key (proof that whoever
/// made the request holds the key it names; who that is, the IG office checks out of band).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub body: JoinBody,
    pub signature: String,
}

impl JoinRequest {
    /// Reads and checks a join request: its format, the agency's id, name and role, its keys
    /// and its signature.
    pub fn load(path: &Path) -> anyhow::Result<JoinRequest> {
        let text = read_handed_over(path)?;
        let request: JoinRequest = serde_json::from_str(&text).with_context(|| format!("{} is not a join request", path.display()))?;
        request.check()?;
        Ok(request)
    }

    fn check(&self) -> anyhow::Result<()> {
        let b = &self.body;
        anyhow::ensure!(b.format == JOIN_FORMAT, "not a join request (format {:?})", b.format);
        check_details(&b.agency.id, &b.agency.name, b.agency.role)?;
        anyhow::ensure!(b.agency.retired_keys.is_empty() && b.agency.suspended_at_ms.is_none() && !b.agency.removed, "a join request names current keys only");
        // The entry must parse as one of a directory (keys well formed).
        Directory::new("check", vec![b.agency.clone()]).context("the join request's keys")?;
        broker::check_user_key(&b.broker_nkey).context("the join request's broker key")?;
        verify_body(&b.agency.verifying_key()?, JOIN_CONTEXT, b, &self.signature)
            .context("the join request's signature does not verify: it was altered, or not made with the key it names")
    }

    /// The id of the signing key the request names, to check with the agency out of band.
    pub fn key_id(&self) -> String {
        self.body.agency.signing_key_id()
    }
}

/// An agency's id, name and role as a join request may give them.
fn check_details(id: &str, name: &str, role: Role) -> anyhow::Result<()> {
    anyhow::ensure!(isp::directory::valid_agency_id(id), "the agency id must be 1 to 64 lowercase letters, digits and '-'");
    anyhow::ensure!(role != Role::Ig, "the IG office is made by `hub partnership init`, not admitted");
    anyhow::ensure!(valid_name(name), "the agency's name must be 1 to 120 characters, without control characters");
    Ok(())
}

/// The largest file one organisation hands another (a join request, an admission's files, a
/// rotation request): the partnership's files are a few kilobytes; the policy the largest.
const MAX_HANDED_OVER_BYTES: u64 = 256 * 1024;

/// Reads a file handed over from another organisation, refusing one larger than
/// [`MAX_HANDED_OVER_BYTES`] before reading it.
fn read_handed_over(path: &Path) -> anyhow::Result<String> {
    let size = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    anyhow::ensure!(size <= MAX_HANDED_OVER_BYTES, "{} is {size} bytes, more than the {MAX_HANDED_OVER_BYTES} a file of a partnership's membership may be", path.display());
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// A name of an agency or of the partnership: 1 to 120 characters, none a control character.
fn valid_name(name: &str) -> bool {
    !name.trim().is_empty() && name.chars().count() <= 120 && name.chars().all(|c| !c.is_control())
}

/// An ed25519 signature (hex) over `context` and the JSON of `body`.
fn sign_body<T: Serialize>(key: &ed25519_dalek::SigningKey, context: &[u8], body: &T) -> anyhow::Result<String> {
    Ok(hex::encode(key.sign(&[context, &serde_json::to_vec(body)?].concat()).to_bytes()))
}

/// Checks a signature [`sign_body`] made with the signing half of `key`.
fn verify_body<T: Serialize>(key: &ed25519_dalek::VerifyingKey, context: &[u8], body: &T, signature_hex: &str) -> anyhow::Result<()> {
    let signature = ed25519_dalek::Signature::from_slice(&hex::decode(signature_hex).unwrap_or_default()).context("the signature is malformed")?;
    key.verify_strict(&[context, &serde_json::to_vec(body)?].concat(), &signature).context("the signature does not verify")?;
    Ok(())
}

/// `hub agency init`: makes this agency's keys and broker seed in `data` (mode 0600, never
/// replacing any) and writes its join request. Returns the request.
pub fn agency_init(data: &Path, id: &str, name: &str, role: Role) -> anyhow::Result<JoinRequest> {
    check_details(id, name, role)?;
    let key_file = data.join("keys").join(format!("{id}.toml"));
    anyhow::ensure!(!key_file.exists(), "{} exists already: this host made its keys before (its join request is {})", key_file.display(), join_request_path(data).display());
    crate::private::create_dir(data)?;
    crate::private::create_dir(&data.join("keys"))?;
    let keys = AgencyKeys::generate_alone(id);
    crate::private::write(&key_file, keys.to_toml().as_bytes())?;
    let broker_nkey = broker::make_seed(data, id)?;
    let body = JoinBody { format: JOIN_FORMAT.into(), agency: keys.public(name.trim(), role), broker_nkey, created_at_ms: isp::now_ms() };
    let signature = sign_body(&keys.signing, JOIN_CONTEXT, &body)?;
    let request = JoinRequest { body, signature };
    fs::write(join_request_path(data), serde_json::to_string_pretty(&request)? + "\n")?;
    Ok(request)
}

/// What the IG office hands an admitted agency beside the partnership's public files: where
/// the broker is, and the subject key sealed to it (when its role matches people).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdmissionBody {
    pub format: String,
    pub partnership: String,
    pub agency: String,
    /// The broker's client URLs (a cluster: several).
    pub broker_urls: Vec<String>,
    /// SHA-256 (hex) of the broker's CA certificate in the bundle (`ca.pem`), so a CA swapped
    /// on the way is refused; none when the broker uses a CA of its own the agency trusts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_sha256: Option<String>,
    /// The subject key, age-sealed to the agency's age key (hex); none for a role the policy
    /// keeps out of matching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_subject_key: Option<String>,
    pub issued_at_ms: i64,
}

/// The admission, signed by the IG office's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Admission {
    pub body: AdmissionBody,
    pub key_id: String,
    pub signature: String,
}

/// The IG office's agency and keys in its data directory.
fn ig_keys(data: &Path, directory: &Directory) -> anyhow::Result<AgencyKeys> {
    let ig = directory.with_role(Role::Ig).next().context("the directory has no IG office")?;
    AgencyKeys::load(&data.join("keys").join(format!("{}.toml", ig.id))).with_context(|| format!("this data directory holds no key of the IG office {}: run this at the IG office", ig.id))
}


/// What `hub partnership init` made.
pub struct Created {
    pub directory: Directory,
    pub ig_key_id: String,
    pub server_config: PathBuf,
}

/// `hub partnership init`: the IG office's keys (with a new subject key), the directory
/// listing the IG office alone, the policy, both signed, and the broker's credentials (the
/// administrator's and the audit service's seeds, a CA and the server's certificate for
/// `hosts`) and configuration (listening on `listen`).
pub fn partnership_init(data: &Path, name: &str, ig_id: &str, ig_name: &str, policy: &str, hosts: &[String], listen: &str) -> anyhow::Result<Created> {
    anyhow::ensure!(!partnership::directory_path(data).exists(), "{} holds a partnership already", data.display());
    anyhow::ensure!(valid_name(name), "the partnership's name must be 1 to 120 characters, without control characters");
    anyhow::ensure!(isp::directory::valid_agency_id(ig_id), "the IG office's id must be 1 to 64 lowercase letters, digits and '-'");
    crate::private::create_dir(data)?;
    let directory = partnership::create(data, name.trim(), &[(ig_id, ig_name, Role::Ig)], policy)?;
    let ig = ig_keys(data, &directory)?;
    broker::ensure_credentials(data, &directory, hosts)?;
    broker::write_includes(data, &directory)?;
    let server_config = broker::write_server_config(data, listen, &runtime::transport::broker_dir(data).join("jetstream"))?;
    Ok(Created { directory, ig_key_id: ig.signing_key_id(), server_config })
}

/// What `hub partnership admit` did.
#[derive(Debug)]
pub struct Admitted {
    pub agency: Agency,
    pub bundle: PathBuf,
    pub subject_key: bool,
    pub broker_reloaded: bool,
}

/// `hub partnership admit`: checks the request (and that it names `key_id`, checked with the
/// agency out of band), adds the agency to the directory (signed), grants its broker key its
/// rights (and reloads a broker run from this data directory), and writes the admission
/// bundle for the agency into `out`: the signed directory and policy, the broker's CA
/// certificate and `admission.json`.
pub fn admit(data: &Path, request: &Path, key_id: &str, broker_urls: &[String], out: &Path) -> anyhow::Result<Admitted> {
    let request = JoinRequest::load(request)?;
    anyhow::ensure!(
        request.key_id() == key_id,
        "the join request names signing key {}, not {key_id}: it is not the request the agency told you of; do not admit it",
        request.key_id()
    );
    anyhow::ensure!(!broker_urls.is_empty(), "give the broker's address the agency connects to (--broker-url)");
    anyhow::ensure!(!out.exists(), "{} exists already", out.display());
    let directory = Directory::load(&partnership::directory_path(data))?;
    let ig = ig_keys(data, &directory)?;
    let agency = request.body.agency.clone();
    let admitted = directory.admitted(agency.clone())?;
    let policy_path = runtime::config::partnership_dir(data).join("policy.toml");
    let policy = isp::Policy::from_toml(&fs::read_to_string(&policy_path)?, &isp::Schema::load()?)?;
    let sealed_subject_key = if policy.holds_subject_key(agency.role) { ig.seal_subject_key(&agency.recipient()?)? } else { None };
    // The broker key first, then the directory that admits the agency.
    fs::write(broker::public_key_path(data, &agency.id), format!("{}\n", request.body.broker_nkey))?;
    partnership::write_signed_directory(data, &ig, &admitted)?;
    broker::write_includes(data, &admitted)?;
    let broker_reloaded = crate::nats::reload(data)?;
    let ca = fs::read(runtime::transport::broker_dir(data).join("ca.pem")).ok();
    let body = AdmissionBody {
        format: ADMISSION_FORMAT.into(),
        partnership: admitted.partnership.clone(),
        agency: agency.id.clone(),
        broker_urls: broker_urls.to_vec(),
        ca_sha256: ca.as_deref().map(sha256_hex),
        sealed_subject_key,
        issued_at_ms: isp::now_ms(),
    };
    let signature = sign_body(&ig.signing, ADMISSION_CONTEXT, &body)?;
    let subject_key = body.sealed_subject_key.is_some();
    let admission = Admission { body, key_id: ig.signing_key_id(), signature };
    write_bundle(data, out, &admission)?;
    Ok(Admitted { agency, bundle: out.to_owned(), subject_key, broker_reloaded })
}

/// The files of an admission bundle, beside `admission.json`.
const BUNDLE_FILES: [&str; 4] = ["directory.toml", "directory.toml.sig", "policy.toml", "policy.toml.sig"];

fn write_bundle(data: &Path, out: &Path, admission: &Admission) -> anyhow::Result<()> {
    fs::create_dir_all(out)?;
    let public = runtime::config::partnership_dir(data);
    for file in BUNDLE_FILES {
        fs::copy(public.join(file), out.join(file)).with_context(|| format!("copying {file}"))?;
    }
    let ca = runtime::transport::broker_dir(data).join("ca.pem");
    if ca.exists() {
        fs::copy(&ca, out.join("ca.pem"))?;
    }
    fs::write(out.join("admission.json"), serde_json::to_string_pretty(admission)? + "\n")?;
    Ok(())
}

/// What `hub agency join` took up.
#[derive(Debug)]
pub struct Joined {
    pub agency: Agency,
    pub partnership: String,
    pub subject_key: bool,
    pub broker_urls: Vec<String>,
}

/// `hub agency join`: checks an admission bundle against the IG office's key id (`ig_key`,
/// given out of band) and this agency's own keys, then takes it up into `data`: the
/// partnership's files, the broker's CA and address, and the subject key into the key file.
pub fn join(data: &Path, bundle: &Path, ig_key: &str) -> anyhow::Result<Joined> {
    let read = |name: &str| read_handed_over(&bundle.join(name));
    let admission: Admission = serde_json::from_str(&read("admission.json")?).context("admission.json is not an admission")?;
    anyhow::ensure!(admission.body.format == ADMISSION_FORMAT, "not an admission (format {:?})", admission.body.format);
    let directory_text = read("directory.toml")?;
    let directory = Directory::from_toml(&directory_text)?;
    let directory_sig = isp::signed::verify_directory(&directory_text, Some(&read("directory.toml.sig")?), &directory)?;
    anyhow::ensure!(
        directory_sig.key_id == ig_key,
        "the directory is signed by key {}, not by the IG office's key {ig_key} you were given: do not use this admission",
        directory_sig.key_id
    );
    let policy_text = read("policy.toml")?;
    isp::signed::verify(&policy_text, Some(&read("policy.toml.sig")?), &directory)?;
    isp::Policy::from_toml(&policy_text, &isp::Schema::load()?)?;
    let ig = directory.with_role(Role::Ig).next().context("the directory has no IG office")?;
    anyhow::ensure!(admission.key_id == ig_key && ig.signing_key_id() == ig_key, "admission.json is not signed by the IG office's key {ig_key}");
    verify_body(&ig.verifying_key()?, ADMISSION_CONTEXT, &admission.body, &admission.signature)
        .context("admission.json's signature does not verify: it was altered")?;
    let id = &admission.body.agency;
    let key_file = data.join("keys").join(format!("{id}.toml"));
    let keys = AgencyKeys::load(&key_file).with_context(|| format!("this data directory holds no keys of {id}: take the admission up on the host that made the join request"))?;
    let entry = directory.require(id)?;
    anyhow::ensure!(
        entry.is_active() && entry.signing_key == keys.public(&entry.name, entry.role).signing_key && entry.age_recipient == keys.age_identity.to_public().to_string(),
        "the directory does not admit {id} with the keys of this host"
    );
    let keys = match &admission.body.sealed_subject_key {
        Some(sealed) => keys.with_sealed_subject_key(sealed)?,
        None => keys,
    };
    let ca = fs::read(bundle.join("ca.pem")).ok();
    anyhow::ensure!(
        ca.as_deref().map(sha256_hex) == admission.body.ca_sha256,
        "the broker's CA certificate in the admission is not the one the IG office signed for: do not use this admission"
    );
    for url in &admission.body.broker_urls {
        anyhow::ensure!(url.starts_with("nats://") || url.starts_with("tls://"), "the broker URL {url:?} is not a nats:// or tls:// URL");
    }
    // The key file first (with the subject key), then the public files.
    crate::private::write(&key_file, keys.to_toml().as_bytes())?;
    let public = runtime::config::partnership_dir(data);
    fs::create_dir_all(&public)?;
    for file in BUNDLE_FILES {
        fs::copy(bundle.join(file), public.join(file))?;
    }
    let broker_dir = runtime::transport::broker_dir(data);
    if bundle.join("ca.pem").exists() {
        fs::copy(bundle.join("ca.pem"), broker_dir.join("ca.pem"))?;
    }
    fs::write(broker_url_path(data), admission.body.broker_urls.join(",") + "\n")?;
    Ok(Joined { agency: entry.clone(), partnership: directory.partnership.clone(), subject_key: keys.holds_subject_key(), broker_urls: admission.body.broker_urls })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Where `hub agency join` keeps the broker's address; `hub serve` uses it when NATS_URL is
/// not set.
pub fn broker_url_path(data: &Path) -> PathBuf {
    runtime::transport::broker_dir(data).join("url")
}

/// What `hub partnership suspend | remove` did.
pub struct Suspended {
    pub agency: Agency,
    pub broker_reloaded: bool,
}

/// `hub partnership suspend` (or `remove`): the directory update (signed) that ends the
/// agency's keys now, and its broker identity revoked (its key files deleted, the rights
/// written anew and a broker run from this data directory reloaded).
pub fn suspend(data: &Path, id: &str, remove: bool) -> anyhow::Result<Suspended> {
    let directory = Directory::load(&partnership::directory_path(data))?;
    let ig = ig_keys(data, &directory)?;
    let updated = directory.suspended(id, isp::now_ms(), remove)?;
    partnership::write_signed_directory(data, &ig, &updated)?;
    for file in [broker::public_key_path(data, id), broker::seed_path(data, id)] {
        if file.exists() {
            fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        }
    }
    broker::write_includes(data, &updated)?;
    let broker_reloaded = crate::nats::reload(data)?;
    Ok(Suspended { agency: updated.require(id)?.clone(), broker_reloaded })
}

/// The rotation request's format tag.
pub const ROTATION_FORMAT: &str = "hub.v1.rotation-request";
const ROTATION_CONTEXT: &[u8] = b"hub.v1.rotation-request\0";

/// Where an agency's next keys wait until the directory names them: beside its key file.
pub fn next_keys_path(data: &Path, agency: &str) -> PathBuf {
    data.join("keys").join(format!("{agency}.next.toml"))
}

/// An agency's new public keys, made on its own host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationBody {
    pub format: String,
    pub agency: String,
    pub age_recipient: String,
    pub signing_key: String,
    pub created_at_ms: i64,
}

impl RotationBody {
    /// The id of the new signing key.
    pub fn signing_key_id(&self) -> String {
        isp::directory::key_id("ed25519", self.signing_key.as_bytes())
    }
}

/// A rotation request: signed with the agency's key in force (it is the agency asking) and
/// with the new key (it holds it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationRequest {
    pub body: RotationBody,
    pub old_key_id: String,
    pub old_signature: String,
    pub new_signature: String,
}

/// `hub agency rotate`: new age and signing keys for this agency, made here and kept in
/// `keys/{id}.next.toml` (0600; the old age identity kept in it, retired, so what was sealed
/// to it stays readable) until the IG office's directory names them, when the service takes
/// them up; and the request to send the IG office (`DATA/rotation-request.json`).
pub fn agency_rotate(data: &Path, agency: &str) -> anyhow::Result<RotationRequest> {
    let keys = AgencyKeys::load(&data.join("keys").join(format!("{agency}.toml"))).with_context(|| format!("this data directory holds no keys of {agency}"))?;
    let next_path = next_keys_path(data, agency);
    anyhow::ensure!(!next_path.exists(), "{} exists: a rotation is already waiting for the IG office's directory update", next_path.display());
    let next = keys.rotated();
    let public = next.public("", Role::Partner);
    let body = RotationBody { format: ROTATION_FORMAT.into(), agency: agency.into(), age_recipient: public.age_recipient, signing_key: public.signing_key, created_at_ms: isp::now_ms() };
    let request = RotationRequest {
        old_key_id: keys.signing_key_id(),
        old_signature: sign_body(&keys.signing, ROTATION_CONTEXT, &body)?,
        new_signature: sign_body(&next.signing, ROTATION_CONTEXT, &body)?,
        body,
    };
    crate::private::write(&next_path, next.to_toml().as_bytes())?;
    fs::write(data.join("rotation-request.json"), serde_json::to_string_pretty(&request)? + "\n")?;
    Ok(request)
}

/// `hub partnership rotate`: checks a rotation request (signed by the agency's key in force
/// in the directory, and by the new key), and signs the directory update that retires the
/// old keys now. Returns the agency as the directory now lists it.
pub fn partnership_rotate(data: &Path, request: &Path) -> anyhow::Result<Agency> {
    let text = read_handed_over(request)?;
    let request: RotationRequest = serde_json::from_str(&text).with_context(|| format!("{} is not a rotation request", request.display()))?;
    let b = &request.body;
    anyhow::ensure!(b.format == ROTATION_FORMAT, "not a rotation request (format {:?})", b.format);
    let directory = Directory::load(&partnership::directory_path(data))?;
    let ig = ig_keys(data, &directory)?;
    let agency = directory.require(&b.agency)?;
    anyhow::ensure!(
        agency.signing_key_id() == request.old_key_id,
        "the request is signed with {}, not with the key of {} in force ({}): it is not from the agency as the directory knows it",
        request.old_key_id,
        agency.id,
        agency.signing_key_id()
    );
    verify_body(&agency.verifying_key()?, ROTATION_CONTEXT, b, &request.old_signature).context("the request's signature by the key in force")?;
    let rotated = directory.rotated_to(&b.agency, &b.age_recipient, &b.signing_key, isp::now_ms())?;
    verify_body(&rotated.require(&b.agency)?.verifying_key()?, ROTATION_CONTEXT, b, &request.new_signature).context("the request's signature by the new key")?;
    partnership::write_signed_directory(data, &ig, &rotated)?;
    Ok(rotated.require(&b.agency)?.clone())
}

/// As the broker's administrator at `url`: a consumer for every active agency (a new one's
/// included), a removed agency's consumer deleted, and the partnership's files published.
pub async fn update_broker(data: &Path, url: &str, removed: Option<&str>) -> anyhow::Result<()> {
    let directory = Directory::load(&partnership::directory_path(data))?;
    let admin = runtime::transport::BrokerAuth::from_env(data, broker::ADMIN);
    // The broker was just told to reload its rights (a signal it acts on in its own time); a
    // connection in the moment it swaps them can be refused. Seen once on a loaded machine:
    // try again for a few seconds before calling it a wrong credential.
    let mut attempt = 0;
    let client = loop {
        match runtime::transport::connect(url, broker::ADMIN, &admin).await {
            Ok(client) => break client,
            Err(e) if attempt < 10 && format!("{e:#}").contains("authorization violation") => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let js = async_nats::jetstream::new(client);
    runtime::transport::provision(&js, &broker::agency_identities(&directory), std::time::Duration::from_secs(10)).await?;
    if let Some(id) = removed {
        let stream = js.get_stream(runtime::transport::STREAM).await?;
        match stream.delete_consumer(&runtime::transport::agency_consumer_name(id)).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("not found") => {}
            Err(e) => return Err(anyhow::anyhow!("deleting the removed agency's consumer: {e}")),
        }
    }
    let public = runtime::config::partnership_dir(data);
    runtime::partnership_feed::publish(&js, &public.join("directory.toml"), &public.join("policy.toml")).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_with_mode(dir: &Path, out: &mut Vec<(PathBuf, u32)>) {
        use std::os::unix::fs::PermissionsExt as _;
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_with_mode(&path, out);
            } else {
                out.push((path.clone(), fs::metadata(&path).unwrap().permissions().mode() & 0o777));
            }
        }
    }

    #[test]
    fn an_agency_joins_with_its_own_keys_and_no_secret_travels() {
        let (ig_dir, agency_dir, bundle_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ig_data, data) = (ig_dir.path().join("ig"), agency_dir.path().join("idva"));
        let created = partnership_init(&ig_data, "Test Partnership", "ig-test", "Test IG", isp::policy::DEMO_POLICY, &[], "127.0.0.1:4222").unwrap();
        let request = agency_init(&data, "idva-test", "Test IDVA", Role::Idva).unwrap();
        // The request holds public keys only.
        let request_text = fs::read_to_string(join_request_path(&data)).unwrap();
        let secrets = fs::read_to_string(data.join("keys/idva-test.toml")).unwrap();
        let seed = fs::read_to_string(broker::seed_path(&data, "idva-test")).unwrap();
        assert!(!request_text.contains("AGE-SECRET-KEY") && !request_text.contains(seed.trim()), "{request_text}");
        let secret_lines = secrets.lines().filter_map(|l| l.split_once(" = ")).filter(|(k, _)| *k != "agency");
        for line in secret_lines.map(|(_, v)| v.trim_matches('"')) {
            assert!(!request_text.contains(line), "the request holds a secret");
        }
        // A wrong key id is refused; the right one admits.
        let bundle = bundle_dir.path().join("admission");
        let path = join_request_path(&data);
        assert!(admit(&ig_data, &path, &created.ig_key_id, &["tls://127.0.0.1:4222".into()], &bundle).unwrap_err().to_string().contains("do not admit"));
        let admitted = admit(&ig_data, &path, &request.key_id(), &["tls://127.0.0.1:4222".into()], &bundle).unwrap();
        assert!(admitted.subject_key);
        // The IG office holds the agency's broker public key, never its seed.
        assert!(broker::public_key_path(&ig_data, "idva-test").exists() && !broker::seed_path(&ig_data, "idva-test").exists());
        assert!(fs::read_to_string(runtime::transport::broker_dir(&ig_data).join("authorization.conf")).unwrap().contains(&request.body.broker_nkey));
        // A tampered request is refused.
        let mut tampered = request.clone();
        tampered.body.agency.name = "Someone Else".into();
        let tampered_path = agency_dir.path().join("tampered.json");
        fs::write(&tampered_path, serde_json::to_string(&tampered).unwrap()).unwrap();
        assert!(JoinRequest::load(&tampered_path).unwrap_err().to_string().contains("does not verify"));
        let huge = agency_dir.path().join("huge.json");
        fs::write(&huge, vec![b' '; 300 * 1024]).unwrap();
        assert!(JoinRequest::load(&huge).unwrap_err().to_string().contains("more than"));
        // The agency refuses a bundle under another IG key, then takes the right one up.
        assert!(join(&data, &bundle, &request.key_id()).is_err());
        let joined = join(&data, &bundle, &created.ig_key_id).unwrap();
        assert!(joined.subject_key);
        let keys = AgencyKeys::load(&data.join("keys/idva-test.toml")).unwrap();
        let ig = AgencyKeys::load(&ig_data.join("keys/ig-test.toml")).unwrap();
        assert_eq!(keys.subject_ref("A B", "1990-01-01").unwrap(), ig.subject_ref("A B", "1990-01-01").unwrap());
        // A swapped CA certificate is refused.
        let ca = fs::read(bundle.join("ca.pem")).unwrap();
        fs::write(bundle.join("ca.pem"), b"-----BEGIN CERTIFICATE-----\nnot the partnership's\n-----END CERTIFICATE-----\n").unwrap();
        assert!(join(&data, &bundle, &created.ig_key_id).unwrap_err().to_string().contains("CA certificate"));
        fs::write(bundle.join("ca.pem"), ca).unwrap();
        // A tampered admission is refused.
        let mut admission: Admission = serde_json::from_str(&fs::read_to_string(bundle.join("admission.json")).unwrap()).unwrap();
        admission.body.broker_urls = vec!["tls://attacker:4222".into()];
        fs::write(bundle.join("admission.json"), serde_json::to_string(&admission).unwrap()).unwrap();
        assert!(join(&data, &bundle, &created.ig_key_id).unwrap_err().to_string().contains("altered"));
        // Nothing secret is wider than 0600 on either host; neither holds the other's secrets.
        for dir in [&ig_data, &data] {
            let mut files = Vec::new();
            files_with_mode(dir, &mut files);
            for (path, mode) in files {
                let text = fs::read_to_string(&path).unwrap_or_default();
                let in_keys = path.parent().is_some_and(|p| p.ends_with("keys"));
                let secret = in_keys || text.contains("AGE-SECRET-KEY") || text.starts_with("SU") || text.contains("PRIVATE KEY");
                assert!(!secret || mode & 0o077 == 0, "{} is secret with mode {mode:o}", path.display());
            }
        }
        assert!(!fs::read_dir(ig_data.join("keys")).unwrap().any(|e| e.unwrap().file_name() == "idva-test.toml"));
        assert!(!fs::read_dir(data.join("keys")).unwrap().any(|e| e.unwrap().file_name() == "ig-test.toml"));
        // Suspension: the directory says so, the broker identity is gone from the rights.
        let suspended = suspend(&ig_data, "idva-test", false).unwrap();
        assert_eq!(suspended.agency.status(), "suspended");
        assert!(!broker::public_key_path(&ig_data, "idva-test").exists());
        assert!(!fs::read_to_string(runtime::transport::broker_dir(&ig_data).join("authorization.conf")).unwrap().contains(&request.body.broker_nkey));
        let directory = Directory::load(&partnership::directory_path(&ig_data)).unwrap();
        assert_eq!(isp::signed::next_sequence(fs::read_to_string(runtime::config::signature_path(&partnership::directory_path(&ig_data))).ok().as_deref()), 4);
        assert!(!directory.get("idva-test").unwrap().is_active());
    }

    #[test]
    fn an_agency_rotates_its_own_keys_and_takes_them_up_when_the_directory_names_them() {
        let (ig_dir, agency_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ig_data, data) = (ig_dir.path().join("ig"), agency_dir.path().join("housing"));
        let created = partnership_init(&ig_data, "P", "ig-test", "IG", isp::policy::DEMO_POLICY, &[], "127.0.0.1:4222").unwrap();
        let request = agency_init(&data, "housing-test", "Housing", Role::Housing).unwrap();
        let bundle = agency_dir.path().join("admission");
        admit(&ig_data, &join_request_path(&data), &request.key_id(), &["tls://127.0.0.1:4222".into()], &bundle).unwrap();
        join(&data, &bundle, &created.ig_key_id).unwrap();
        let key_file = data.join("keys/housing-test.toml");
        let old = AgencyKeys::load(&key_file).unwrap();
        let rotation = agency_rotate(&data, "housing-test").unwrap();
        assert!(agency_rotate(&data, "housing-test").is_err(), "one rotation waits at a time");
        // Before the directory names them, the service keeps its keys.
        let before = Directory::load(&partnership::directory_path(&ig_data)).unwrap();
        assert_eq!(runtime::config::load_own_keys(&key_file, &before).unwrap().signing_key_id(), old.signing_key_id());
        // A request not signed by the key in force is refused.
        let mut forged = rotation.clone();
        forged.body.signing_key = AgencyKeys::generate_alone("x").public("", Role::Housing).signing_key;
        let forged_path = agency_dir.path().join("forged.json");
        fs::write(&forged_path, serde_json::to_string(&forged).unwrap()).unwrap();
        assert!(partnership_rotate(&ig_data, &forged_path).is_err());
        let agency = partnership_rotate(&ig_data, &data.join("rotation-request.json")).unwrap();
        assert_eq!(agency.signing_key_id(), rotation.body.signing_key_id());
        let after = Directory::load(&partnership::directory_path(&ig_data)).unwrap();
        let now = runtime::config::load_own_keys(&key_file, &after).unwrap();
        assert_eq!(now.signing_key_id(), rotation.body.signing_key_id());
        assert!(!next_keys_path(&data, "housing-test").exists(), "the waiting keys replaced the key file");
        assert_eq!(AgencyKeys::load(&key_file).unwrap().signing_key_id(), now.signing_key_id());
        assert!(now.holds_subject_key(), "the subject key is kept");
        assert!(now.age_identities().any(|i| i.to_public().to_string() == old.age_identity.to_public().to_string()), "the old age identity is kept");
        // The same request twice is refused (its keys are in force now).
        assert!(partnership_rotate(&ig_data, &data.join("rotation-request.json")).is_err());
    }
}
