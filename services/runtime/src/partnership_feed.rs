//! The partnership's signed public files travel over the broker, so that an update the IG
//! office signs (an agency admitted, suspended or removed, keys rotated, a new policy) reaches
//! every agency's host without anyone copying files.
//!
//! The IG office ([`publish`], as the broker's administrator, the only identity that may write
//! the bucket) puts each file with its signature into the `hub-partnership` bucket
//! ([`crate::transport::PARTNERSHIP_BUCKET`]), keys `directory` and `policy`. Every service
//! ([`follow_loop`]) reads both keys with direct gets at start and every 5 s; a value that
//! differs from its files on disk is checked exactly as the files themselves are checked when
//! taken up ([`crate::config::verify_signed_directory`], [`crate::config::verify_signed_policy`],
//! [`isp::signed::check_not_older`]) BEFORE anything is written: the directory signed by an
//! `ig` agency of the directory in force, the policy by one of the directory it will be used
//! with (the bucket's, when that is newer), and each newer than the version the service runs.
//! Then the signature and the text are written, each atomically, directory first. Taking the
//! files up stays the job of [`crate::policy_watch`] (and of the audit service's directory
//! watch): the feed only brings files to disk, so a file copied by hand and one from the broker
//! meet the same checks.
//!
//! The broker is not trusted with this: its administrator, or whoever holds the broker, could
//! put anything in the bucket. A value that fails the checks is not written; the service logs
//! the key and the kind of refusal ([`Refused`], never any content), once per value, and counts
//! it (`partnership_values_refused` in `GET /metrics`). A broker that does not answer, or a
//! bucket or key that does not exist, leaves the files on disk in force (a debug line).

use std::{
    collections::HashMap,
    io::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use isp::{Directory, Isp, Schema, signed::PolicySignature};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::AnyPool;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{SignedFileError, signature_path, verify_signed_directory, verify_signed_policy},
    metrics::{FeedLabel, FeedRefusals},
    policy_watch,
    transport::{PARTNERSHIP_BUCKET, PARTNERSHIP_MAX_VALUE_BYTES},
};

/// The bucket's key of the directory.
pub const DIRECTORY_KEY: &str = "directory";
/// The bucket's key of the policy.
pub const POLICY_KEY: &str = "policy";
/// The largest value published or read (256 KiB).
pub const MAX_VALUE_BYTES: usize = PARTNERSHIP_MAX_VALUE_BYTES;
/// How often a service reads the bucket.
const EVERY: Duration = Duration::from_secs(5);

/// The subject of a key of the bucket.
pub fn subject(key: &str) -> String {
    format!("$KV.{PARTNERSHIP_BUCKET}.{key}")
}

/// One value of the bucket: a signed file, as its two files hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedFile {
    /// The file's text.
    pub text: String,
    /// The text of its `.sig` file.
    pub signature: String,
}

impl SignedFile {
    /// The file at `path` and its signature beside it; an error says which is missing, or
    /// that the signature file holds no signature.
    pub fn read(path: &Path) -> anyhow::Result<SignedFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let sig_path = signature_path(path);
        let signature = std::fs::read_to_string(&sig_path).with_context(|| format!("reading {} (is {} signed?)", sig_path.display(), path.display()))?;
        serde_json::from_str::<PolicySignature>(&signature).with_context(|| format!("{} is not a signature file", sig_path.display()))?;
        Ok(SignedFile { text, signature })
    }

    /// As on disk now; None when either file is unreadable.
    fn on_disk(path: &Path) -> Option<SignedFile> {
        Some(SignedFile { text: std::fs::read_to_string(path).ok()?, signature: std::fs::read_to_string(signature_path(path)).ok()? })
    }

    /// The sequence its signature says, when it is a signature file.
    pub fn sequence(&self) -> Option<u64> {
        serde_json::from_str::<PolicySignature>(&self.signature).ok().map(|s| s.sequence)
    }

    /// The value to put under `key`; refused over [`MAX_VALUE_BYTES`].
    pub fn encode(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        let bytes = serde_json::to_vec(self)?;
        anyhow::ensure!(
            bytes.len() <= MAX_VALUE_BYTES,
            "the {key} with its signature is {} bytes, over the {MAX_VALUE_BYTES} bytes a value of the bucket {PARTNERSHIP_BUCKET} may hold: \
             this is not a partnership file as `hub` writes them",
            bytes.len()
        );
        Ok(bytes)
    }

    /// A value read from the bucket.
    pub fn decode(bytes: &[u8]) -> Result<SignedFile, Refused> {
        if bytes.len() > MAX_VALUE_BYTES {
            return Err(Refused::TooLarge);
        }
        serde_json::from_slice(bytes).map_err(|_| Refused::Malformed)
    }

    /// Writes the signature, then the text, each atomically, to `path` and its `.sig`.
    fn write(&self, path: &Path) -> std::io::Result<()> {
        write_atomically(&signature_path(path), self.signature.as_bytes())?;
        write_atomically(path, self.text.as_bytes())
    }
}

/// Writes `bytes` to a new file beside `path` (mode 0644: the partnership's files are public)
/// and renames it over `path`, so a reader sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = folder.join(format!(".{name}.{}.tmp", uuid::Uuid::now_v7().simple()));
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
        let mut file = options.open(&temp)?;
        // Whatever the umask took away.
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Puts the partnership's files (`directory_path` and `policy_path`, each with its `.sig`) into
/// the bucket, the directory first (a policy may need the directory it comes with). `js` must
/// be the broker administrator's: no service may write the bucket. Both files are read and
/// checked for size before either is put.
pub async fn publish(js: &jetstream::Context, directory_path: &Path, policy_path: &Path) -> anyhow::Result<()> {
    let directory = SignedFile::read(directory_path)?.encode(DIRECTORY_KEY)?;
    let policy = SignedFile::read(policy_path)?.encode(POLICY_KEY)?;
    for (key, value) in [(DIRECTORY_KEY, directory), (POLICY_KEY, policy)] {
        js.publish(subject(key), value.into())
            .await
            .with_context(|| format!("publishing the {key} to the bucket {PARTNERSHIP_BUCKET}"))?
            .await
            .with_context(|| format!("publishing the {key} to the bucket {PARTNERSHIP_BUCKET} (is the broker provisioned, and is this its administrator?)"))?;
    }
    Ok(())
}

/// Why a value of the bucket was not written: a small fixed set, for the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over [`MAX_VALUE_BYTES`].
    TooLarge,
    /// Not a signed file (JSON `{text, signature}`), or its text is no directory or policy.
    Malformed,
    /// Not signed by an `ig` agency of the directory it is checked against, or not over
    /// exactly this text.
    Signature,
    /// Older than the version in force: a lower sequence, or the same with another text.
    NotNewer,
}

impl Refused {
    pub fn code(self) -> &'static str {
        match self {
            Refused::TooLarge => "too_large",
            Refused::Malformed => "malformed",
            Refused::Signature => "signature",
            Refused::NotNewer => "not_newer",
        }
    }
}

impl From<SignedFileError> for Refused {
    fn from(e: SignedFileError) -> Refused {
        match e {
            SignedFileError::Malformed(_) => Refused::Malformed,
            SignedFileError::Signature(_) => Refused::Signature,
        }
    }
}

/// What a value that passed the checks is to a service.
#[derive(Debug, PartialEq, Eq)]
pub enum Judged<T> {
    /// Newer than the version in force: to be written (with what it holds).
    Newer(T),
    /// The version in force itself: nothing to write.
    InForce,
}

/// The sequence and text digest of the version of a file in force, if known.
pub type Sequence<'a> = Option<(u64, &'a str)>;

/// Where a signature stands against the version in force (the check `policy_watch` makes).
fn standing(what: &str, in_force: Sequence, signature: &PolicySignature) -> Result<Judged<()>, Refused> {
    let Some((sequence, sha256)) = in_force else { return Ok(Judged::Newer(())) };
    isp::signed::check_not_older(what, sequence, sha256, signature).map_err(|_| Refused::NotNewer)?;
    Ok(if signature.sequence == sequence { Judged::InForce } else { Judged::Newer(()) })
}

/// Checks a directory from the bucket: a directory, signed by an `ig` agency of `trusted` (the
/// directory in force), newer than the one in force.
pub fn judge_directory(value: &SignedFile, trusted: &Directory, in_force: Sequence) -> Result<Judged<Directory>, Refused> {
    let (directory, signature) = verify_signed_directory(&value.text, Some(&value.signature), Some(trusted))?;
    Ok(match standing(DIRECTORY_KEY, in_force, &signature)? {
        Judged::Newer(()) => Judged::Newer(directory),
        Judged::InForce => Judged::InForce,
    })
}

/// Checks a policy from the bucket: signed by an `ig` agency of `directory` (the one it will
/// be used with), a valid policy, newer than the one in force.
pub fn judge_policy(value: &SignedFile, directory: &Directory, schema: &Schema, in_force: Sequence) -> Result<Judged<()>, Refused> {
    let (_, signature) = verify_signed_policy(&value.text, Some(&value.signature), directory, schema)?;
    standing(POLICY_KEY, in_force, &signature)
}

/// Where a service keeps the directory it runs.
#[derive(Clone)]
pub enum InForce {
    /// An agency service's protocol (its keys, the directory, the policy).
    Agency(Arc<arc_swap::ArcSwap<Isp>>),
    /// The audit service's directory.
    Audit(Arc<arc_swap::ArcSwap<Directory>>),
}

impl InForce {
    fn directory(&self) -> Arc<Directory> {
        match self {
            InForce::Agency(isp) => isp.load().directory.clone(),
            InForce::Audit(directory) => directory.load_full(),
        }
    }
}

/// What a service needs to follow the bucket.
#[derive(Clone)]
pub struct Follower {
    /// The service's own broker connection (it may only make direct gets of the bucket).
    pub js: jetstream::Context,
    /// The service's database: the sequences in force (`signed_file`, see [`policy_watch`]).
    pub pool: AnyPool,
    /// Where the service reads its directory and policy (their signatures beside them).
    pub directory_path: PathBuf,
    pub policy_path: PathBuf,
    pub in_force: InForce,
    /// To check that a policy is one.
    pub schema: Arc<Schema>,
    /// Counts what is refused.
    pub refused: FeedRefusals,
}

impl Follower {
    /// An agency service's follower.
    pub fn of_agency(ctx: &crate::ctx::Ctx) -> Follower {
        Follower {
            js: ctx.jetstream.clone(),
            pool: ctx.pool.clone(),
            directory_path: ctx.config.directory_path.clone(),
            policy_path: ctx.config.policy_path.clone(),
            in_force: InForce::Agency(ctx.isp_cell.clone()),
            schema: ctx.isp().schema.clone(),
            refused: ctx.metrics.partnership_refused.clone(),
        }
    }
}

/// Follows the bucket until `shutdown`: at start, then every 5 s (see the module's doc).
pub async fn follow_loop(follower: Follower, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut refused_last = HashMap::new();
    loop {
        if let Err(e) = follower.pass(&mut refused_last).await {
            tracing::debug!(error = format!("{e:#}"), "the partnership bucket was not read; the files on disk stay in force");
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

impl Follower {
    /// One look at the bucket: writes what is newer and passes the checks. `refused_last`
    /// holds, per key, the digest of the value last refused (each is reported once).
    async fn pass(&self, refused_last: &mut HashMap<&'static str, [u8; 32]>) -> anyhow::Result<()> {
        let stream = self.js.get_stream_no_info(format!("KV_{PARTNERSHIP_BUCKET}")).await.context("naming the partnership bucket's stream")?;
        let directory = latest(&stream, DIRECTORY_KEY).await?;
        let policy = latest(&stream, POLICY_KEY).await?;
        let trusted = self.in_force.directory();
        // The directory the policy will be used with: the bucket's when it is newer than the
        // one in force and acceptable (written now, or already on disk and not yet taken up).
        let mut for_policy = trusted.clone();
        if let Some(bytes) = directory {
            let on_disk = SignedFile::on_disk(&self.directory_path);
            let in_force = self.sequence_in_force(DIRECTORY_KEY, on_disk.as_ref()).await?;
            let value = SignedFile::decode(&bytes);
            let differs = differs(&value, on_disk.as_ref());
            let in_force = in_force.as_ref().map(|(n, s)| (*n, s.as_str()));
            match value.and_then(|v| Ok((judge_directory(&v, &trusted, in_force)?, v))) {
                Ok((Judged::Newer(newer), value)) => {
                    if differs {
                        value.write(&self.directory_path).with_context(|| format!("writing the directory {}", self.directory_path.display()))?;
                        tracing::info!(key = DIRECTORY_KEY, sequence = value.sequence(), "a newer signed directory from the broker written to disk");
                    }
                    for_policy = Arc::new(newer);
                }
                Ok((Judged::InForce, _)) => {}
                Err(reason) if differs => self.refuse(DIRECTORY_KEY, reason, &bytes, refused_last),
                // The files on disk themselves: policy_watch says what is wrong with them.
                Err(_) => {}
            }
        }
        if let Some(bytes) = policy {
            let on_disk = SignedFile::on_disk(&self.policy_path);
            let value = SignedFile::decode(&bytes);
            if !differs(&value, on_disk.as_ref()) {
                return Ok(());
            }
            let in_force = self.sequence_in_force(POLICY_KEY, on_disk.as_ref()).await?;
            let in_force = in_force.as_ref().map(|(n, s)| (*n, s.as_str()));
            match value.and_then(|v| Ok((judge_policy(&v, &for_policy, &self.schema, in_force)?, v))) {
                Ok((Judged::Newer(()), value)) => {
                    value.write(&self.policy_path).with_context(|| format!("writing the policy {}", self.policy_path.display()))?;
                    tracing::info!(key = POLICY_KEY, sequence = value.sequence(), "a newer signed policy from the broker written to disk");
                }
                Ok((Judged::InForce, _)) => {}
                Err(reason) => self.refuse(POLICY_KEY, reason, &bytes, refused_last),
            }
        }
        Ok(())
    }

    /// The sequence of the version of a file in force: the one the service recorded when it
    /// took it up; for a file it records none of (the audit service's policy), that of the
    /// file on disk.
    async fn sequence_in_force(&self, key: &str, on_disk: Option<&SignedFile>) -> anyhow::Result<Option<(u64, String)>> {
        if let Some(recorded) = policy_watch::in_force(&self.pool, key).await.with_context(|| format!("reading the {key} sequence in force"))? {
            return Ok(Some(recorded));
        }
        Ok(on_disk.and_then(|f| serde_json::from_str::<PolicySignature>(&f.signature).ok()).map(|s| (s.sequence, s.sha256)))
    }

    /// Reports a refused value, once per value: the key and the reason only.
    fn refuse(&self, key: &'static str, reason: Refused, bytes: &[u8], refused_last: &mut HashMap<&'static str, [u8; 32]>) {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if refused_last.insert(key, digest) == Some(digest) {
            return;
        }
        tracing::warn!(key, reason = reason.code(), "a partnership file in the broker's bucket was refused and not written; the files on disk stay in force");
        self.refused.get_or_create(&FeedLabel { key, reason: reason.code() }).inc();
    }
}

/// Whether a value read from the bucket is not what is on disk (one that is not a signed file
/// never is).
fn differs(value: &Result<SignedFile, Refused>, on_disk: Option<&SignedFile>) -> bool {
    value.as_ref().map_or(true, |v| Some(v) != on_disk)
}

/// The latest value of a key, or None when there is none (no such key, or a delete marker).
async fn latest(stream: &jetstream::stream::Stream<()>, key: &str) -> anyhow::Result<Option<bytes::Bytes>> {
    match stream.direct_get_last_for_subject(subject(key)).await {
        Ok(message) if message.headers.get("KV-Operation").is_some() => Ok(None),
        Ok(message) => Ok(Some(message.payload)),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading the {key} from the bucket {PARTNERSHIP_BUCKET}"))),
    }
}

#[cfg(test)]
mod tests {
    use isp::{Role, directory::generate_partnership, signed};

    use super::*;

    const POLICY: &str = include_str!("../../../deploy/isp/policy.toml");

    fn signed_directory(keys: &isp::AgencyKeys, sequence: u64, text: &str) -> SignedFile {
        SignedFile { text: text.to_owned(), signature: serde_json::to_string(&signed::sign_directory(keys, sequence, text)).unwrap() }
    }

    fn signed_policy(keys: &isp::AgencyKeys, sequence: u64, text: &str) -> SignedFile {
        SignedFile { text: text.to_owned(), signature: serde_json::to_string(&signed::sign(keys, "v", sequence, text)).unwrap() }
    }

    fn sha(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    #[test]
    fn a_directory_is_written_only_when_the_ig_office_signed_a_newer_one() {
        let (directory, keys) = generate_partnership("P", &[("ig-p", "IG", Role::Ig), ("housing-p", "Housing", Role::Housing)]).unwrap();
        let (ig, housing) = (&keys[0], &keys[1]);
        let old = directory.to_toml();
        let rotated = directory.rotated(&housing.rotated(), isp::now_ms()).unwrap();
        let new = rotated.to_toml();
        let mut tampered = signed_directory(ig, 2, &new);
        // Housing's new signing key swapped for a key of someone else's.
        let stranger = hex::encode(housing.rotated().signing.verifying_key().as_bytes());
        tampered.text = new.replace(&rotated.get("housing-p").unwrap().signing_key, &stranger);
        assert_ne!(tampered.text, new);
        // Whoever would take the IG office's place: a directory that names a new IG key, signed
        // with that key (it verifies against itself, not against the directory in force).
        let usurper = ig.rotated();
        let usurped = directory.rotated(&usurper, isp::now_ms()).unwrap().to_toml();
        let in_force = Some((1, sha(&old)));
        let in_force = in_force.as_ref().map(|(n, s)| (*n, s.as_str()));
        let cases: Vec<(&str, SignedFile, Result<bool, Refused>)> = vec![
            ("naming a new IG key, signed with it", signed_directory(&usurper, 2, &usurped), Err(Refused::Signature)),
            ("newer, by the IG office", signed_directory(ig, 2, &new), Ok(true)),
            ("the one in force", signed_directory(ig, 1, &old), Ok(false)),
            ("older", signed_directory(ig, 0, &old), Err(Refused::NotNewer)),
            ("as old, another text", signed_directory(ig, 1, &new), Err(Refused::NotNewer)),
            ("signed by an agency that is not the IG office", signed_directory(housing, 2, &new), Err(Refused::Signature)),
            ("changed after signing", tampered, Err(Refused::Signature)),
            ("no signature", SignedFile { text: new.clone(), signature: "{}".into() }, Err(Refused::Signature)),
            ("not a directory", signed_directory(ig, 2, "not = [a directory"), Err(Refused::Malformed)),
        ];
        for (what, value, expected) in cases {
            let judged = judge_directory(&value, &directory, in_force).map(|j| matches!(j, Judged::Newer(_)));
            assert_eq!(judged, expected, "{what}");
        }
        // With no version in force recorded, any acceptable one is newer.
        assert!(matches!(judge_directory(&signed_directory(ig, 1, &old), &directory, None), Ok(Judged::Newer(_))));
    }

    #[test]
    fn a_policy_is_checked_against_the_directory_it_will_be_used_with() {
        let schema = Schema::load().unwrap();
        let (directory, keys) = generate_partnership("P", &[("ig-p", "IG", Role::Ig)]).unwrap();
        let ig = &keys[0];
        // The IG office rotates its own keys: the directory is signed with the old key, the
        // policy with the new one.
        let ig_new = ig.rotated();
        let rotated = directory.rotated(&ig_new, isp::now_ms()).unwrap();
        let in_force = Some((1, sha(POLICY)));
        let in_force = in_force.as_ref().map(|(n, s)| (*n, s.as_str()));
        let by_new_key = signed_policy(&ig_new, 2, POLICY);
        assert_eq!(judge_policy(&by_new_key, &directory, &schema, in_force), Err(Refused::Signature), "the old directory does not know the new key");
        assert_eq!(judge_policy(&by_new_key, &rotated, &schema, in_force), Ok(Judged::Newer(())));
        assert_eq!(judge_policy(&signed_policy(ig, 1, POLICY), &directory, &schema, in_force), Ok(Judged::InForce));
        assert_eq!(judge_policy(&signed_policy(ig, 0, POLICY), &directory, &schema, in_force), Err(Refused::NotNewer));
        assert_eq!(judge_policy(&signed_policy(ig, 2, "version = 3"), &directory, &schema, in_force), Err(Refused::Malformed));
    }

    #[test]
    fn values_are_bounded_and_must_be_signed_files() {
        let big = SignedFile { text: "x".repeat(MAX_VALUE_BYTES), signature: "{}".into() };
        assert!(format!("{:#}", big.encode(DIRECTORY_KEY).unwrap_err()).contains("over the 262144 bytes"));
        assert_eq!(SignedFile::decode(&vec![b' '; MAX_VALUE_BYTES + 1]), Err(Refused::TooLarge));
        assert_eq!(SignedFile::decode(b"not json"), Err(Refused::Malformed));
        assert_eq!(SignedFile::decode(br#"{"text": "t"}"#), Err(Refused::Malformed));
        let value = SignedFile { text: "t".into(), signature: "s".into() };
        assert_eq!(SignedFile::decode(&value.encode(POLICY_KEY).unwrap()), Ok(value));
    }

    #[test]
    fn files_are_replaced_whole_and_stay_readable_by_all() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("directory.toml");
        std::fs::write(&path, "old").unwrap();
        SignedFile { text: "new".into(), signature: "sig".into() }.write(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(signature_path(&path)).unwrap(), "sig");
        for file in [path.clone(), signature_path(&path)] {
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o644, "{}", file.display());
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file left behind: {names:?}");
    }
}
