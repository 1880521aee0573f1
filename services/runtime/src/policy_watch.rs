//! Picks up a newly signed policy or directory without a restart. Every few seconds the
//! service looks at the policy, the directory, their signatures and its own key file; when
//! any changed, it accepts the new set only if the directory update is signed by the IG key
//! of the directory in force, the policy by the IG key of the (new) directory, and its own
//! keys match the directory; then it swaps the protocol in whole (new disclosures use an
//! agency's new keys at once). Otherwise it says why, once per change, and keeps running on
//! the last good set.

use std::{path::PathBuf, sync::Arc, time::Duration};

use isp::{AgencyKeys, Isp};
use tokio_util::sync::CancellationToken;

use crate::{Ctx, config::signature_path};

const EVERY: Duration = Duration::from_secs(2);

/// Partnership files on disk that were refused: why (the innermost reason, e.g. "the policy
/// file changed after it was signed"; no content of the files) and when.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Refusal {
    pub reason: String,
    pub at_ms: i64,
}

pub async fn watch_loop(ctx: Ctx, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut seen = fingerprint(&ctx);
    let mut policy_text = std::fs::read_to_string(&ctx.config.policy_path).unwrap_or_default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        let now = fingerprint(&ctx);
        if now == seen {
            continue;
        }
        seen = now;
        if let Some(text) = reload(&ctx, &policy_text) {
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
pub fn reload(ctx: &Ctx, policy_text_in_force: &str) -> Option<String> {
    let current = ctx.isp();
    let refuse = |reason: String| ctx.files_refused.store(Some(Arc::new(Refusal { reason, at_ms: isp::now_ms() })));
    let keeping = |e: anyhow::Error| {
        tracing::error!(error = format!("{e:#}"), keeping = %current.policy.version, "the partnership files on disk are not acceptable; keeping the last good ones");
        refuse(e.root_cause().to_string());
        None
    };
    let directory = match ctx.config.load_signed_directory(Some(&current.directory)) {
        Ok((d, _)) => Arc::new(d),
        Err(e) => return keeping(e),
    };
    let (policy, text) = match ctx.config.load_signed_policy(&directory, &current.schema) {
        Ok(p) => p,
        Err(e) => return keeping(e),
    };
    if policy.version == current.policy.version && text != policy_text_in_force {
        tracing::warn!(policy_version = %policy.version, "the policy text changed but kept its version; a new protocol needs a new version, keeping the one in force");
        refuse(format!("the policy text changed but kept its version {}; a new protocol needs a new version", policy.version));
        return None;
    }
    let keys = match AgencyKeys::load(&ctx.config.keys_path) {
        Ok(k) => k,
        Err(e) => return keeping(e.into()),
    };
    match Isp::new(keys, directory, Arc::new(policy), current.schema.clone()) {
        Ok(isp) => {
            tracing::info!(policy = %isp.policy.version, signing_key = %isp.keys.signing_key_id(), "partnership files in force");
            ctx.isp_cell.store(Arc::new(isp));
            ctx.files_refused.store(None);
            Some(text)
        }
        Err(e) => keeping(e.into()),
    }
}
