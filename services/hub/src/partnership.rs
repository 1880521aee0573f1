//! A partnership's files in a data directory: the public directory and policy under
//! `partnership/`, each agency's secret key file under `keys/` (owner-only permissions).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use isp::{Directory, Role, directory};

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
    let (directory, keys) = directory::generate_partnership(name, agencies)?;
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
    // The partnership's IG office signs the protocol; without its signature no service runs it.
    if let Some(ig) = keys.iter().find(|k| agencies.iter().any(|(id, _, role)| *id == k.agency && *role == Role::Ig)) {
        let version = isp::Policy::from_toml(policy, &isp::Schema::load()?)?.version;
        let signature = isp::signed_policy::sign(ig, &version, policy);
        fs::write(public.join("policy.toml.sig"), serde_json::to_string_pretty(&signature)?)?;
    }
    fs::write(directory_path(data), directory.to_toml())?;
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
