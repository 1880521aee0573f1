//! The HTTP server of every service (the agencies' and audit's): hyper's HTTP/1 with limits,
//! so that slow or large clients can take neither a service's memory nor its `/health`.
//! Measured before these limits: 5,000 stalled connections took a service from 35 to 275 MB,
//! 200 concurrent 2 MB bodies to 708 MB (`hub bench limits` measures it again).
//!
//! - A request head must arrive within `header_timeout`; the same clock runs while a kept-alive
//!   connection waits for its next request. A client that sends half a request line and
//!   stalls holds its connection that long and no longer. A head over [`MAX_HEAD_BYTES`] is
//!   refused (hyper answers 431) before more is buffered.
//! - At most `max_connections` are open. When one more arrives, the oldest connection with no
//!   request in flight (stalled mid-head, or idle between requests) is closed to make room:
//!   memory stays bounded, and a newcomer (an operator's `/health`) still gets in, where
//!   refusing newcomers would shut it out and leaving them in the accept queue would make it
//!   wait behind the stalled ones. Only when every connection has a request in flight is the
//!   newcomer closed at once.
//! - At most `max_concurrent` requests are handled at once; the rest wait their turn, their
//!   bodies unread (in the kernel's socket buffers, not the service's memory). `/health`
//!   never waits.
//! - A request must be answered within `request_timeout`, waiting for its turn included, or
//!   it gets 503 `timeout`.
//! - A body over `max_body_bytes` gets 413 `too_large` and is not read: a bigger one would
//!   make an envelope the broker refuses, which would block the outbox behind it.
//!
//! Every refusal is a JSON body `{"error", "detail"}` like the rest of the API. This module
//! imports nothing from the rest of the crate.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::Body,
    extract::Request,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, ServiceExt as _, limit::ConcurrencyLimit, util::BoxCloneSyncService};
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

/// The largest message nats-server carries with its default `max_payload` (1 MiB), which the
/// hub leaves as it is (services/hub/src/nats.rs, deploy/nats/single.conf). A service lowers
/// its body limit at start if its broker says it carries less.
pub const BROKER_MAX_PAYLOAD: usize = 1024 * 1024;

/// What a request body may grow by on its way to the broker: the signed header (ids, agencies,
/// purpose, categories, digest, policy version), the age header and its tag of 16 bytes every
/// 64 KiB, the signature, the envelope's framing and the NATS message-id header. Measured: a
/// referral body at the limit seals into an envelope about 700 bytes larger
/// (tests/tests/e2e/limits.rs). A payload that still grows past what the broker carries (JSON
/// to protobuf can grow, for some values) is refused by the outbox with 413, never queued.
pub const ENVELOPE_ALLOWANCE: usize = 16 * 1024;

/// The largest request head (request line and headers) a service buffers: a session cookie
/// and a CSRF token need well under 1 KiB. hyper's minimum is 8 KiB.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How a service meets slow and large clients; see the module doc. From the environment with
/// [`Limits::from_env`] (documented in [`crate::config`]), else [`Limits::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// To receive a request head, and to wait idle for the next one on a kept-alive connection.
    pub header_timeout: Duration,
    /// To answer a request, from its head to its response, waiting for a turn included.
    pub request_timeout: Duration,
    /// Requests handled at once; more wait (`/health` never does).
    pub max_concurrent: usize,
    /// Connections open at once.
    pub max_connections: usize,
    /// The largest request body.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    /// 10 s for a head: a real client sends it in one packet; a stalled one holds a connection
    /// 10 s at most. 30 s for a request: sends take milliseconds, and a 1 MiB body needs 17 s
    /// even at 0.5 Mbit/s. 16 requests at once: about 3 MB each at the largest body (parsed,
    /// sealed, written), so under 50 MB at worst, and still 16 sends to batch together
    /// (more only queue for the same two cores). 1,024 connections: about 20 KB each while
    /// stalled (hyper's read and write buffers), 20 MB at worst, and far more staff than an
    /// agency has. The broker's message less the envelope's overhead for bodies.
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_concurrent: 16,
            max_connections: 1024,
            max_body_bytes: BROKER_MAX_PAYLOAD - ENVELOPE_ALLOWANCE,
        }
    }
}

impl Limits {
    /// The defaults with `HUB_HTTP_HEADER_TIMEOUT_SECS`, `HUB_HTTP_REQUEST_TIMEOUT_SECS`,
    /// `HUB_HTTP_MAX_CONCURRENT`, `HUB_HTTP_MAX_CONNECTIONS` and `HUB_HTTP_MAX_BODY_BYTES`
    /// applied; each must be a whole number of at least 1.
    pub fn from_env() -> anyhow::Result<Limits> {
        Limits::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Limits> {
        let number = |name: &str| -> anyhow::Result<Option<u64>> {
            let Some(v) = var(name) else { return Ok(None) };
            match v.trim().parse::<u64>() {
                Ok(n) if n >= 1 => Ok(Some(n)),
                _ => anyhow::bail!("{name} must be a whole number of at least 1, not {v:?}"),
            }
        };
        let mut limits = Limits::default();
        if let Some(s) = number("HUB_HTTP_HEADER_TIMEOUT_SECS")? {
            limits.header_timeout = Duration::from_secs(s);
        }
        if let Some(s) = number("HUB_HTTP_REQUEST_TIMEOUT_SECS")? {
            limits.request_timeout = Duration::from_secs(s);
        }
        if let Some(n) = number("HUB_HTTP_MAX_CONCURRENT")? {
            limits.max_concurrent = n as usize;
        }
        if let Some(n) = number("HUB_HTTP_MAX_CONNECTIONS")? {
            limits.max_connections = n as usize;
        }
        if let Some(n) = number("HUB_HTTP_MAX_BODY_BYTES")? {
            limits.max_body_bytes = n as usize;
        }
        Ok(limits)
    }

    /// These limits with the body limit lowered, if need be, to what a broker carrying at most
    /// `max_payload` bytes a message can take once sealed.
    pub fn fit_broker(mut self, max_payload: usize) -> Limits {
        let fits = max_payload.saturating_sub(ENVELOPE_ALLOWANCE).max(1);
        if self.max_body_bytes > fits {
            tracing::warn!(max_body_bytes = self.max_body_bytes, broker_max_payload = max_payload, lowered_to = fits,
                "the request body limit is more than the broker carries once sealed; lowered");
            self.max_body_bytes = fits;
        }
        self
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown`; then stops accepting, lets the
/// requests in flight finish (for up to `request_timeout`) and closes the rest. With `tls`,
/// every connection is TLS (its handshake must end within `header_timeout`, like a head).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = limited(app, limits);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(MAX_HEAD_BYTES).keep_alive(true);
    let open = Arc::new(Open { max: limits.max_connections, connections: Mutex::default(), next_id: Default::default(), full: AtomicBool::new(false) });
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Some(admitted) = open.admit() else {
            drop(stream);
            continue;
        };
        let (watcher, http, handler, tls) = (graceful.watcher(), http.clone(), on_connection(service.clone(), admitted.busy.clone()), tls.clone());
        let connection = async move {
            match tls {
                None => watcher.watch(http.serve_connection(TokioIo::new(stream), handler)).await.map_err(anyhow::Error::from),
                Some(acceptor) => {
                    let stream = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await??;
                    watcher.watch(http.serve_connection(TokioIo::new(stream), handler)).await.map_err(anyhow::Error::from)
                }
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    // A stalled head or handshake, a reset, a malformed request: the client's business.
                    tracing::debug!(error = %e, "HTTP connection ended");
                },
                _ = admitted.closed.cancelled() => {}
            }
            drop(admitted);
        });
    }
    drop(listener);
    // Idle connections close at once; requests in flight are answered, within their own
    // timeout; a connection still mid-head when that is up is closed.
    if tokio::time::timeout(limits.request_timeout, graceful.shutdown()).await.is_err() {
        open.close_all();
    }
    Ok(())
}

/// The app with the limits on requests: JSON refusals (outermost), body limit, timeout, and
/// the concurrency cap that `/health` passes by.
fn limited(app: Router, limits: Limits) -> BoxCloneSyncService<Request<Incoming>, Response, Infallible> {
    let capped = ConcurrencyLimit::new(app.clone(), limits.max_concurrent);
    let health_first = tower::service_fn(move |request: Request<_>| {
        let (app, capped) = (app.clone(), capped.clone());
        async move {
            if request.uri().path() == "/health" { app.oneshot(request).await } else { capped.oneshot(request).await }
        }
    });
    let max_body = limits.max_body_bytes;
    let timeout = limits.request_timeout;
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(move |response: Response<_>| json_refusal(response.map(Body::new), max_body, timeout))
            .layer(RequestBodyLimitLayer::new(max_body))
            .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout))
            .service(health_first),
    )
}

/// The limit layers answer with an empty or plain-text body (tower-http's 413 and 503, axum's
/// 413 when a body without a length runs over); the API answers JSON, so those become JSON.
fn json_refusal(response: Response, max_body: usize, timeout: Duration) -> Response {
    let json = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let (error, detail) = match response.status() {
        _ if json => return response,
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too_large",
            format!("the body is over {max_body} bytes, the most one sealed message to the partnership's broker can carry; nothing was stored"),
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            "timeout",
            format!(
                "the service could not answer within {} s (it is busy, or the request was slow to arrive); a send may still have gone through: \
                 check GET /disclosures before sending again",
                timeout.as_secs()
            ),
        ),
        _ => return response,
    };
    (response.status(), Json(json!({"error": error, "detail": detail}))).into_response()
}

/// The service of one connection: marks the connection busy while a request is in flight.
fn on_connection(
    service: BoxCloneSyncService<Request<Incoming>, Response, Infallible>,
    busy: Arc<AtomicBool>,
) -> impl hyper::service::Service<Request<Incoming>, Response = Response, Error = Infallible, Future: Send> + Clone {
    let service = hyper_util::service::TowerToHyperService::new(service);
    hyper::service::service_fn(move |request| {
        let in_flight = InFlight::new(busy.clone());
        let response = hyper::service::Service::call(&service, request);
        async move {
            let response = response.await;
            drop(in_flight);
            response
        }
    })
}

/// A request in flight on a connection (HTTP/1 handles one at a time).
struct InFlight(Arc<AtomicBool>);

impl InFlight {
    fn new(busy: Arc<AtomicBool>) -> InFlight {
        busy.store(true, Ordering::Relaxed);
        InFlight(busy)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// The open connections.
struct Open {
    max: usize,
    /// By id, which counts up: oldest first.
    connections: Mutex<BTreeMap<u64, Connection>>,
    next_id: AtomicU64,
    /// Whether the last admission found the cap reached (logged once per episode).
    full: AtomicBool,
}

struct Connection {
    busy: Arc<AtomicBool>,
    closed: CancellationToken,
}

/// A connection let in; it leaves the register when dropped (its task ended or was closed).
struct Admitted {
    id: u64,
    busy: Arc<AtomicBool>,
    closed: CancellationToken,
    open: Arc<Open>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.connections.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

impl Open {
    /// Registers one more connection, closing the oldest one with no request in flight if
    /// the cap is reached; None (refuse it) if every open connection has a request in flight.
    fn admit(self: &Arc<Open>) -> Option<Admitted> {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let full = connections.len() >= self.max;
        if full != self.full.swap(full, Ordering::Relaxed) && full {
            tracing::warn!(max_connections = self.max, "HTTP connection cap reached: the oldest idle connections are closed to make room");
        }
        if full {
            let idle = connections.iter().find(|(_, c)| !c.busy.load(Ordering::Relaxed)).map(|(id, _)| *id);
            let Some(evicted) = idle.and_then(|id| connections.remove(&id)) else {
                tracing::warn!(max_connections = self.max, "every HTTP connection has a request in flight; a new connection is refused");
                return None;
            };
            evicted.closed.cancel();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (busy, closed) = (Arc::new(AtomicBool::new(false)), CancellationToken::new());
        connections.insert(id, Connection { busy: busy.clone(), closed: closed.clone() });
        Some(Admitted { id, busy, closed, open: self.clone() })
    }

    fn close_all(&self) {
        for (_, c) in std::mem::take(&mut *self.connections.lock().unwrap_or_else(|e| e.into_inner())) {
            c.closed.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_from_the_environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned());
        assert_eq!(Limits::from_vars(vars(&[])).unwrap(), Limits::default());
        let set = Limits::from_vars(vars(&[
            ("HUB_HTTP_HEADER_TIMEOUT_SECS", "2"),
            ("HUB_HTTP_REQUEST_TIMEOUT_SECS", "5"),
            ("HUB_HTTP_MAX_CONCURRENT", "4"),
            ("HUB_HTTP_MAX_CONNECTIONS", "64"),
            ("HUB_HTTP_MAX_BODY_BYTES", "1000"),
        ]))
        .unwrap();
        assert_eq!(set, Limits { header_timeout: Duration::from_secs(2), request_timeout: Duration::from_secs(5), max_concurrent: 4, max_connections: 64, max_body_bytes: 1000 });
        for bad in ["0", "-1", "ten", "1.5"] {
            let e = Limits::from_vars(|name| (name == "HUB_HTTP_MAX_CONCURRENT").then(|| bad.to_owned())).unwrap_err().to_string();
            assert!(e.contains("HUB_HTTP_MAX_CONCURRENT"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_body_limit_fits_the_broker() {
        let limits = Limits::default();
        assert_eq!(limits.max_body_bytes + ENVELOPE_ALLOWANCE, BROKER_MAX_PAYLOAD);
        assert_eq!(limits.fit_broker(BROKER_MAX_PAYLOAD), limits);
        assert_eq!(limits.fit_broker(8 * BROKER_MAX_PAYLOAD), limits, "a roomier broker does not raise the limit");
        assert_eq!(limits.fit_broker(512 * 1024).max_body_bytes, 512 * 1024 - ENVELOPE_ALLOWANCE);
    }
}
