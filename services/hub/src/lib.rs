//! The `hub` command's library: everything `hub up`, `hub demo` and the end-to-end tests
//! share.
//!
//! - [`nats`]: finds (or installs) and runs a local nats-server with JetStream.
//! - [`partnership`]: writes a partnership's directory, policy and key files.
//! - [`local`]: starts a whole partnership on one machine: audit service first, then one
//!   service per agency.
//! - [`bench`]: `hub bench` (raw JetStream, the crypto limit and the whole hub in one run) and
//!   `hub serve` (one service as its own process).
//! - [`limits_bench`]: `hub bench limits`, what slow and large clients cost one service.
//! - [`processes`]: a `hub serve` child process: started, killed as a crash would, restarted.
//! - [`audit_cli`]: `hub audit verify|list|query|prove|verify-proof`.
//! - [`demo`]: the scripted synthetic case, with the checks that it worked.
//! - [`staff`]: `hub staff`, the demo staff and logged-in clients ([`staff::Logins`]).
//! - [`ledger_pages`]: every entry of a ledger query, page by page, from the audit API.

pub mod audit_cli;
pub mod bench;
pub mod demo;
pub mod ledger_bench;
pub mod limits_bench;
pub mod local;
pub mod nats;
pub mod partnership;
pub mod processes;
pub mod staff;

/// Every ledger entry matching `query` (URL query parameters, without `limit` or `after`)
/// from the audit service at `audit_url`, following its pages.
pub async fn ledger_pages(http: &reqwest::Client, audit_url: &str, query: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    use anyhow::Context as _;
    const PAGE: i64 = 1000;
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let sep = if query.is_empty() { "" } else { "&" };
        let url = format!("{audit_url}/ledger?{query}{sep}limit={PAGE}&after={after}");
        let response = http.get(&url).send().await?;
        let status = response.status();
        let page: serde_json::Value = response.json().await.with_context(|| format!("GET {url}: HTTP {status}"))?;
        anyhow::ensure!(status.is_success(), "GET {url}: HTTP {status}: {page}");
        let page = page.as_array().cloned().unwrap_or_default();
        let full = page.len() as i64 == PAGE;
        after = page.last().and_then(|e| e["seq"].as_i64()).unwrap_or(after);
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}
