//! The `hub` command's library: everything `hub up`, `hub demo` and the end-to-end tests
//! share.
//!
//! - [`nats`]: finds (or installs) and runs a local nats-server with JetStream.
//! - [`cluster`]: a local JetStream cluster of N nats-server nodes (`hub up --cluster N`),
//!   its node configuration and the partnership's replicated streams.
//! - [`partnership`]: writes a partnership's directory, policy and key files.
//! - [`membership`]: a real partnership across hosts: `hub partnership init | admit | suspend |
//!   remove`, `hub agency init | join`.
//! - [`local`]: starts a whole partnership on one machine: audit service first, then one
//!   service per agency.
//! - [`bench`]: `hub bench` (raw JetStream, the crypto limit and the whole hub in one run).
//! - [`serve`]: `hub serve`, one service as its own process.
//! - [`oidc_provider`]: the trial identity provider (deploy/oidc) as a child process, and a
//!   case-management system's client_credentials token from it (`hub bench`, the tests).
//! - [`limits_bench`]: `hub bench limits`, what slow and large clients cost one service.
//! - [`flood_bench`]: `hub bench flood`, what a flood of junk costs the ledger.
//! - [`private`]: owner-only files and folders (keys, seeds, stores).
//! - [`processes`]: a `hub serve` child process: started, killed as a crash would, restarted.
//! - [`backup`]: `hub backup` and `hub restore`, one service's database and files.
//! - [`audit_cli`]: `hub audit verify|list|query|prove|verify-proof`.
//! - [`demo`]: the scripted synthetic case, with the checks that it worked.
//! - [`perpetrator_demo`]: a perpetrator pathway that moves, survivor-led, with its checks.
//! - [`staff`]: `hub staff`, the demo staff and logged-in clients ([`staff::Logins`]).
//! - [`ledger_pages`]: every entry of a ledger query, page by page, from the audit API.

pub mod audit_cli;
pub mod backup;
pub mod bench;
pub mod casework_demo;
pub mod cluster;
pub mod demo;
pub mod flood_bench;
pub mod ledger_bench;
pub mod limits_bench;
pub mod local;
pub mod marac_demo;
pub mod membership;
pub mod broker;
pub mod nats;
pub mod oidc_provider;
pub mod partnership;
pub mod perpetrator_demo;
pub mod private;
pub mod processes;
pub mod serve;
pub mod reciprocals_demo;
pub mod staff;

/// Every ledger entry matching `query` (URL query parameters, without `limit` or `after`)
/// from the audit service at `audit_url`, following its pages.
pub async fn ledger_pages(http: &reqwest::Client, audit_url: &str, query: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let sep = if query.is_empty() { "" } else { "&" };
    pages(http, &format!("{audit_url}/ledger?{query}{sep}"), "seq").await
}

/// Every item of a paged list route (`url` ends in `?` or `&`), 1,000 a page, each page
/// starting after the `key` of the last item of the page before.
pub async fn pages(http: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    use anyhow::Context as _;
    const PAGE: usize = 1000;
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let page_url = if after.is_empty() { format!("{url}limit={PAGE}") } else { format!("{url}limit={PAGE}&after={after}") };
        let response = http.get(&page_url).send().await?;
        let status = response.status();
        let page: serde_json::Value = response.json().await.with_context(|| format!("GET {page_url}: HTTP {status}"))?;
        anyhow::ensure!(status.is_success(), "GET {page_url}: HTTP {status}: {page}");
        let page = page.as_array().cloned().unwrap_or_default();
        let full = page.len() == PAGE;
        if let Some(last) = page.last() {
            after = match &last[key] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}
