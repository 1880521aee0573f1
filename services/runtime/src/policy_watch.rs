//! Picks up a newly signed policy without a restart. Every few seconds the service looks at
//! the policy file and its signature; when they change, it accepts the new policy only if
//! the partnership IG key signed exactly that text and it is valid, and swaps it in whole.
//! Otherwise it says why, once per change, and keeps running on the last good one.

use std::{sync::Arc, time::Duration};

use isp::Isp;
use tokio_util::sync::CancellationToken;

use crate::Ctx;

const EVERY: Duration = Duration::from_secs(2);

pub async fn watch_loop(ctx: Ctx, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut seen = fingerprint(&ctx);
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
        reload(&ctx);
    }
}

/// The policy file and signature as they are on disk (None where unreadable).
fn fingerprint(ctx: &Ctx) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (std::fs::read(&ctx.config.policy_path).ok(), std::fs::read(ctx.config.policy_signature_path()).ok())
}

/// Tries the policy on disk; swaps it in if acceptable. Returns whether it did.
pub fn reload(ctx: &Ctx) -> bool {
    let current = ctx.isp();
    match ctx.config.load_signed_policy(&current.directory, &current.schema) {
        Ok((policy, _)) if policy.version == current.policy.version => {
            tracing::warn!(policy_version = %policy.version, "the policy file changed but kept its version; a new protocol needs a new version, keeping the one in force");
            false
        }
        Ok((policy, _)) => match Isp::new(current.keys.clone(), current.directory.clone(), Arc::new(policy), current.schema.clone()) {
            Ok(isp) => {
                tracing::info!(from = %current.policy.version, to = %isp.policy.version, "newly signed policy in force");
                ctx.isp_cell.store(Arc::new(isp));
                true
            }
            Err(e) => {
                tracing::error!(error = %e, keeping = %current.policy.version, "the new policy cannot be used; keeping the last good one");
                false
            }
        },
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), keeping = %current.policy.version, "the policy on disk is not acceptable; keeping the last good one");
            false
        }
    }
}
