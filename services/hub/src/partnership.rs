//! A partnership's files in a data directory: the public directory and policy under
//! `partnership/`, each agency's secret key file under `keys/` (owner-only permissions).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use isp::{AgencyKeys, Directory, Role, directory};

pub fn directory_path(data: &Path) -> PathBuf {
    runtime::config::partnership_dir(data).join("directory.toml")
}

/// Creates the demo partnership in `data` unless one is there; returns its directory.
pub fn ensure_demo(data: &Path) -> anyhow::Result<Directory> {
    let path = directory_path(data);
    if path.exists() {
        return Ok(Directory::load(&path)?);
    }
    create(data, "Northbridge Domestic Abuse Partnership (demo)", &directory::DEMO_AGENCIES, isp::policy::DEMO_POLICY)
}

/// Generates keys for every agency and writes the directory, the policy and the key files.
pub fn create(data: &Path, name: &str, agencies: &[(&str, &str, Role)], policy: &str) -> anyhow::Result<Directory> {
    // Only the roles the policy lets match people across agencies get the subject-ref key.
    let protocol = isp::Policy::from_toml(policy, &isp::Schema::load()?)?;
    let (directory, keys) = directory::generate_partnership_for(name, agencies, &|role| protocol.holds_subject_key(role))?;
    let public = runtime::config::partnership_dir(data);
    let secret = data.join("keys");
    fs::create_dir_all(&public).with_context(|| format!("creating {}", public.display()))?;
    fs::create_dir_all(&secret)?;
    restrict(&secret, 0o700)?;
    for k in &keys {
        let file = secret.join(format!("{}.toml", k.agency));
        fs::write(&file, k.to_toml())?;
        restrict(&file, 0o600)?;
    }
    fs::write(public.join("policy.toml"), policy)?;
    let directory_text = directory.to_toml();
    fs::write(directory_path(data), &directory_text)?;
    // The partnership's IG office signs the protocol and the directory; without its
    // signature no service uses them.
    if let Some(ig) = keys.iter().find(|k| agencies.iter().any(|(id, _, role)| *id == k.agency && *role == Role::Ig)) {
        let version = isp::Policy::from_toml(policy, &isp::Schema::load()?)?.version;
        fs::write(public.join("policy.toml.sig"), serde_json::to_string_pretty(&isp::signed::sign(ig, &version, 1, policy))?)?;
        fs::write(public.join("directory.toml.sig"), serde_json::to_string_pretty(&isp::signed::sign_directory(ig, 1, &directory_text))?)?;
    }
    Ok(directory)
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_: &Path, _: u32) -> anyhow::Result<()> {
    Ok(())
}

/// Rotates one agency's keys: new age and signing keys (the old age identity kept in its key
/// file, so what was sealed to it stays readable), the directory updated (old keys retired
/// now) and signed by the IG office's key in force. When the IG office itself rotates, the
/// old key signs the update and the policy is signed again with the new one. Running
/// services take the update up within seconds. Each file signed anew gets the next sequence
/// (services refuse an older one put back).
pub fn rotate(data: &Path, agency: &str) -> anyhow::Result<(AgencyKeys, AgencyKeys)> {
    let path = directory_path(data);
    let directory = Directory::load(&path)?;
    let key_file = |id: &str| data.join("keys").join(format!("{id}.toml"));
    let ig = directory.with_role(Role::Ig).next().context("the directory has no ig agency to sign the update")?.id.clone();
    let ig_keys = AgencyKeys::load(&key_file(&ig))?;
    let old = AgencyKeys::load(&key_file(agency)).with_context(|| format!("no key file for {agency}"))?;
    let new = old.rotated();
    let updated = directory.rotated(&new, isp::now_ms())?;
    // Keys first, then the directory that names them, then its signature.
    fs::write(key_file(agency), new.to_toml())?;
    restrict(&key_file(agency), 0o600)?;
    write_signed_directory(data, &ig_keys, &updated)?;
    if agency == ig {
        let policy_path = runtime::config::partnership_dir(data).join("policy.toml");
        let policy = fs::read_to_string(&policy_path)?;
        let version = isp::Policy::from_toml(&policy, &isp::Schema::load()?)?.version;
        let sequence = next_sequence(&policy_path);
        fs::write(runtime::config::signature_path(&policy_path), serde_json::to_string_pretty(&isp::signed::sign(&new, &version, sequence, &policy))?)?;
    }
    Ok((old, new))
}

/// Signs and writes a new directory at the IG office, with the next sequence.
pub fn write_signed_directory(data: &Path, ig: &AgencyKeys, directory: &Directory) -> anyhow::Result<()> {
    let path = directory_path(data);
    let text = directory.to_toml();
    let sequence = next_sequence(&path);
    let temp = path.with_extension("toml.new");
    fs::write(&temp, &text)?;
    fs::rename(&temp, &path)?;
    fs::write(runtime::config::signature_path(&path), serde_json::to_string_pretty(&isp::signed::sign_directory(ig, sequence, &text))?)?;
    Ok(())
}

/// The sequence to sign the next version of a partnership file with: one more than that of
/// the signature beside it now (`file.sig`).
pub fn next_sequence(file: &Path) -> u64 {
    isp::signed::next_sequence(fs::read_to_string(runtime::config::signature_path(file)).ok().as_deref())
}

/// The sequence to sign a new policy with (`hub policy sign`): above that of the policy in
/// force in `data` and of any signature beside the draft.
pub fn next_policy_sequence(data: &Path, draft: &Path) -> u64 {
    next_sequence(&runtime::config::partnership_dir(data).join("policy.toml")).max(next_sequence(draft))
}
