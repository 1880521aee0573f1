//! Files and folders only their owner may read: key files, broker seeds, a broker's store.

use std::{fs, path::Path};

use anyhow::Context as _;

/// Creates `dir` (and its parents) readable by this user only: a broker's store holds every
/// clear header and ciphertext, its credentials directory every identity's seed.
pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Writes a file only its owner may read (mode 0600 from its creation).
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}
