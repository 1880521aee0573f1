//! The shared state of a running service ([`Ctx`]), passed to every handler and loop, and
//! `on_cores` for the crypto of a batch. It imports only what it holds (the config, the
//! metrics, the queue of waiting sends), so every module may take it without a circle.

use std::sync::Arc;

use isp::Isp;
use tokio::sync::Notify;

use crate::config::Config;

/// The shared state of a running service, passed to every handler.
#[derive(Clone)]
pub struct Ctx {
    pub pool: sqlx::AnyPool,
    /// The reads on the hot path that a SQLite file answers in place ([`crate::db::InPlace`]).
    pub reads: crate::db::InPlace,
    /// The protocol in force: swapped whole when the IG lead's newly signed policy arrives
    /// (see [`crate::policy_watch`]); read it with [`Ctx::isp`].
    pub isp_cell: Arc<arc_swap::ArcSwap<Isp>>,
    pub jetstream: async_nats::jetstream::Context,
    /// The stream of the partnership's consent bucket (direct reads of a key's history).
    pub consent_stream: async_nats::jetstream::stream::Stream<()>,
    pub config: Arc<Config>,
    /// Wakes the outbox publisher after a commit.
    pub outbox_ready: Arc<Notify>,
    /// Sends waiting to be sealed and queued together ([`Ctx::send`]).
    pub(crate) sends: tokio::sync::mpsc::Sender<crate::send::Pending>,
    /// Why the partnership files last found on disk were refused, while the service keeps
    /// running on the last good ones (None once an acceptable set is in force); shown by
    /// `GET /health` so an operator sees a bad policy or directory at every service.
    pub files_refused: Arc<arc_swap::ArcSwapOption<crate::config::FilesRefused>>,
    /// What `GET /metrics` reports ([`crate::metrics`]).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Ctx {
    pub fn agency(&self) -> &str {
        &self.config.agency
    }

    /// Free text or answers sealed to this agency's own key, for a database column that keeps
    /// what never leaves the agency (see [`isp::AgencyKeys::seal_at_rest`]).
    pub fn seal_at_rest(&self, text: &str) -> Result<String, isp::IspError> {
        self.isp().keys.seal_at_rest(text)
    }

    /// The protocol in force now (keys, directory, policy, schema).
    pub fn isp(&self) -> Arc<Isp> {
        self.isp_cell.load_full()
    }
}

/// Runs `f` over `items` on the blocking pool, split into as many parts as the machine has
/// cores, results in order: the crypto of a batch (opening what arrived, sealing receipts
/// and sends) uses every core, and never holds up the async workers. A single item runs
/// where it is.
pub(crate) async fn on_cores<T, R, F>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
{
    if items.len() < 2 {
        return items.into_iter().map(f).collect();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let f = Arc::new(f);
    let per_part = items.len().div_ceil(cores);
    let mut items = items.into_iter();
    let mut parts = Vec::with_capacity(cores);
    loop {
        let part: Vec<T> = items.by_ref().take(per_part).collect();
        if part.is_empty() {
            break;
        }
        let f = f.clone();
        parts.push(tokio::task::spawn_blocking(move || part.into_iter().map(|t| f(t)).collect::<Vec<R>>()));
    }
    let mut results = Vec::new();
    for part in parts {
        match part.await {
            Ok(r) => results.extend(r),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    results
}

