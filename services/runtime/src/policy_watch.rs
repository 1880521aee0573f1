//! Picks up a newly signed policy or directory without a restart. Every few seconds the
//! service looks at the policy, the directory, their signatures and its own key file; when
//! any changed, it accepts the new set only if the directory update is signed by the IG key
//! of the directory in force, the policy by the IG key of the (new) directory, and its own
//! keys match the directory; then it swaps the protocol in whole (new disclosures use an
//! agency's new keys at once). Otherwise it says why, once per change, and keeps running on
//! the last good set.
//!
//! Neither file may go back: each signature carries a sequence, and the service refuses a file
//! older than the one it runs (a lower sequence, or the same with another text). The highest
//! it ran is kept in its database ([`take_up_at_start`]), so an old file put back while it was
//! down is refused at start too.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use isp::{Isp, signed::PolicySignature};
use sqlx::{AnyPool, Row as _};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Signatures, signature_path},
    ctx::Ctx,
    db::Migration,
};

pub fn migrations() -> Vec<Migration> {
    vec![Migration { version: 40, description: "signed files in force", sql: include_str!("../migrations/0040_signed_files.sql") }]
}

/// The sequence and text digest of the highest version of a signed file (`policy`,
/// `directory`) this service ran, if any.
pub async fn in_force(pool: &AnyPool, name: &str) -> anyhow::Result<Option<(u64, String)>> {
    let row = sqlx::query("SELECT sequence, sha256 FROM signed_file WHERE name = $1").bind(name).fetch_optional(pool).await?;
    row.map(|r| Ok((r.try_get::<i64, _>("sequence")? as u64, r.try_get::<String, _>("sha256")?))).transpose()
}

/// Refuses a signed file older than the version of it this service ran.
pub async fn check_sequence(pool: &AnyPool, name: &str, path: &std::path::Path, signature: &PolicySignature) -> anyhow::Result<()> {
    let Some((sequence, sha256)) = in_force(pool, name).await.with_context(|| format!("reading the {name} sequence in force"))? else { return Ok(()) };
    isp::signed::check_not_older(name, sequence, &sha256, signature).with_context(|| format!("refusing the {name} {}", path.display()))?;
    Ok(())
}

/// Remembers a signed file now in force (once checked with [`check_sequence`]).
pub async fn record(pool: &AnyPool, name: &str, signature: &PolicySignature) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO signed_file (name, sequence, sha256, in_force_since_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET sequence = excluded.sequence, sha256 = excluded.sha256, in_force_since_ms = excluded.in_force_since_ms",
    )
    .bind(name)
    .bind(signature.sequence as i64)
    .bind(&signature.sha256)
    .bind(isp::now_ms())
    .execute(pool)
    .await?;
    Ok(())
}

/// At start: refuses partnership files older than those the service ran before (the error
/// says which and why), else remembers them as in force.
pub async fn take_up_at_start(pool: &AnyPool, config: &crate::config::Config, signatures: &Signatures) -> anyhow::Result<()> {
    check_sequence(pool, "directory", &config.directory_path, &signatures.directory).await?;
    check_sequence(pool, "policy", &config.policy_path, &signatures.policy).await?;
    record(pool, "directory", &signatures.directory).await?;
    record(pool, "policy", &signatures.policy).await
}

const EVERY: Duration = Duration::from_secs(2);
/// How soon refused files are tried again although they did not change.
const RETRY_REFUSED: Duration = Duration::from_secs(10);


pub async fn watch_loop(ctx: Ctx, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut seen = fingerprint(&ctx);
    let mut policy_text = std::fs::read_to_string(&ctx.config.policy_path).unwrap_or_default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        let now = fingerprint(&ctx);
        // Files refused are tried again every RETRY_REFUSED even when unchanged: a refusal may
        // have been transient (the database busy while the sequence was checked, files read
        // half-written), and the service must not keep its old files for good because of it.
        let retry = ctx.files_refused.load().as_ref().is_some_and(|r| isp::now_ms() - r.at_ms >= RETRY_REFUSED.as_millis() as i64);
        if now == seen && !retry {
            continue;
        }
        seen = now;
        if let Some(text) = reload(&ctx, &policy_text).await {
            policy_text = text;
        }
    }
}

fn files(ctx: &Ctx) -> [PathBuf; 5] {
    let c = &ctx.config;
    [c.policy_path.clone(), signature_path(&c.policy_path), c.directory_path.clone(), signature_path(&c.directory_path), c.keys_path.clone()]
}

/// The watched files as they are on disk (None where unreadable).
fn fingerprint(ctx: &Ctx) -> Vec<Option<Vec<u8>>> {
    files(ctx).iter().map(|f| std::fs::read(f).ok()).collect()
}

/// Tries the files on disk; swaps them in if acceptable. Returns the policy text now in force
/// when it did.
pub async fn reload(ctx: &Ctx, policy_text_in_force: &str) -> Option<String> {
    let current = ctx.isp();
    let refuse = |reason: String| ctx.files_refused.store(Some(Arc::new(crate::config::FilesRefused { reason, at_ms: isp::now_ms() })));
    let keeping = |e: anyhow::Error| {
        tracing::error!(error = format!("{e:#}"), keeping = %current.policy.version, "the partnership files on disk are not acceptable; keeping the last good ones");
        refuse(e.root_cause().to_string());
        None
    };
    let (directory, directory_sig) = match ctx.config.load_signed_directory(Some(&current.directory)) {
        Ok((d, _, sig)) => (Arc::new(d), sig),
        Err(e) => return keeping(e),
    };
    let (policy, text, policy_sig) = match ctx.config.load_signed_policy(&directory, &current.schema) {
        Ok(p) => p,
        Err(e) => return keeping(e),
    };
    // Neither file may go back to an older version (a retired key, an old protocol).
    for (name, path, sig) in [("directory", &ctx.config.directory_path, &directory_sig), ("policy", &ctx.config.policy_path, &policy_sig)] {
        if let Err(e) = check_sequence(&ctx.pool, name, path, sig).await {
            return keeping(e);
        }
    }
    if policy.version == current.policy.version && text != policy_text_in_force {
        tracing::warn!(policy_version = %policy.version, "the policy text changed but kept its version; a new protocol needs a new version, keeping the one in force");
        refuse(format!("the policy text changed but kept its version {}; a new protocol needs a new version", policy.version));
        return None;
    }
    let keys = match crate::config::load_own_keys(&ctx.config.keys_path, &directory) {
        Ok(k) => k,
        Err(e) => return keeping(e),
    };
    match Isp::new(keys, directory, Arc::new(policy), current.schema.clone()) {
        Ok(isp) => {
            tracing::info!(policy = %isp.policy.version, signing_key = %isp.keys.signing_key_id(), "partnership files in force");
            ctx.isp_cell.store(Arc::new(isp));
            ctx.files_refused.store(None);
            for (name, sig) in [("directory", &directory_sig), ("policy", &policy_sig)] {
                if let Err(e) = record(&ctx.pool, name, sig).await {
                    tracing::error!(error = format!("{e:#}"), file = name, "could not remember the signed file's sequence; an older one would be refused only until a restart");
                }
            }
            Some(text)
        }
        Err(e) => keeping(e.into()),
    }
}
