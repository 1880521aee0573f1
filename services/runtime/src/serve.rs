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
//! - At most `max_concurrent` requests are handled at once, and of those, bodies of at most
//!   `max_body_bytes_in_flight` bytes in all (a body is read, parsed and sealed in memory,
//!   several copies of it at once; a body of unknown length counts as the largest). The rest
//!   wait their turn, their bodies unread (in the kernel's socket buffers, not the service's
//!   memory). `/health` never waits.
//! - A request must be answered within `request_timeout`, waiting for its turn included, or
//!   it gets 503 `timeout`.
//! - A body over `max_body_bytes` gets 413 `too_large` and is not read: a bigger one would
//!   make an envelope the broker refuses, which would block the outbox behind it.
//!
//! Every refusal is a JSON body `{"error", "detail"}` like the rest of the API. This module
//! imports nothing from the rest of the crate.
//!
//! Known limit: a client that declares a large body and sends it slowly holds its share of
//! the body budget (the whole of it, at the largest) until the body arrives or the request
//! timeout ends it, and requests with bodies wait behind it meanwhile; the request cap has
//! the same weakness against `max_concurrent` such clients. A TLS proxy in front that
//! buffers request bodies before passing them on (nginx does by default) removes it; a
//! minimum upload rate here would too (not built).

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::{Body, HttpBody as _},
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
use tokio::{net::TcpListener, sync::Semaphore};
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
    /// Bytes of request bodies handled at once; more wait. A body larger than this is
    /// handled alone.
    pub max_body_bytes_in_flight: usize,
    /// Connections open at once.
    pub max_connections: usize,
    /// The largest request body.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    /// Figures measured with `hub bench limits` (release build, 2 cores):
    /// - 10 s for a head: a real client sends it in one packet; a stalled one holds a
    ///   connection 10 s at most.
    /// - 30 s for a request: sends take milliseconds, and a 1 MiB body needs 17 s even at
    ///   0.5 Mbit/s.
    /// - 64 requests at once: as many sends as are sealed and written together (the send
    ///   batch). With 16, `hub bench` (16 sends in flight per service on average) lost about
    ///   7 % of its throughput to waiting.
    /// - 1 MiB of bodies at once: a body is held several times over while it is parsed,
    ///   sealed and written (about 5 MB live, and more kept by the allocator, per 1 MiB body).
    ///   200 of the largest sent at once, after the stalled connections below, peak at 66-69
    ///   MB with 1 MiB, 79-89 with 2, and (without stalled connections first) 84 with 4, 106
    ///   with 8, 173 with 16 requests at once and no byte cap. They take 2.3-3.3 s whichever:
    ///   sealing on the cores bounds them, not waiting. So one of the largest at a time, or a
    ///   hundred of ordinary size (a few KB); requests without a body take none.
    /// - 1,024 connections: 5,000 stalled ones take the service from 19 to about 47 MB (hyper
    ///   keeps an 8 KiB read and an 8 KiB write buffer for each), and it is far more than an
    ///   agency's staff.
    /// - Bodies up to the broker's largest message less the envelope's overhead.
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_concurrent: 64,
            max_body_bytes_in_flight: 1 << 20,
            max_connections: 1024,
            max_body_bytes: BROKER_MAX_PAYLOAD - ENVELOPE_ALLOWANCE,
        }
    }
}

impl Limits {
    /// The defaults with `HUB_HTTP_HEADER_TIMEOUT_SECS`, `HUB_HTTP_REQUEST_TIMEOUT_SECS`,
    /// `HUB_HTTP_MAX_CONCURRENT`, `HUB_HTTP_MAX_BODY_BYTES_IN_FLIGHT`,
    /// `HUB_HTTP_MAX_CONNECTIONS` and `HUB_HTTP_MAX_BODY_BYTES` applied; each must be a whole
    /// number of at least 1.
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
        if let Some(n) = number("HUB_HTTP_MAX_BODY_BYTES_IN_FLIGHT")? {
            limits.max_body_bytes_in_flight = n as usize;
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
    let open = Arc::new(Open::new(limits.max_connections));
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
/// the caps on bodies and requests at once that `/health` passes by.
fn limited(app: Router, limits: Limits) -> BoxCloneSyncService<Request<Incoming>, Response, Infallible> {
    let capped = ConcurrencyLimit::new(app.clone(), limits.max_concurrent);
    // In KiB, so that a semaphore counts them; a body larger than the whole budget takes it all.
    let budget_kib = (limits.max_body_bytes_in_flight / 1024).clamp(1, Semaphore::MAX_PERMITS) as u32;
    let bodies = Arc::new(Semaphore::new(budget_kib as usize));
    let max_body = limits.max_body_bytes;
    let health_first = tower::service_fn(move |request: Request<tower_http::body::Limited<Incoming>>| {
        let (app, capped, bodies) = (app.clone(), capped.clone(), bodies.clone());
        async move {
            if matches!(request.uri().path(), "/health" | "/ready") {
                return app.oneshot(request).await;
            }
            // Requests without a body (reads) take none of the budget, so never queue behind sends.
            let bytes = request.body().size_hint().upper().unwrap_or(max_body as u64);
            let kib = bytes.div_ceil(1024).min(budget_kib as u64) as u32;
            let _bytes = bodies.acquire_many(kib).await.expect("the semaphore is never closed");
            capped.oneshot(request).await
        }
    });
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
    register: Mutex<Register>,
}

#[derive(Default)]
struct Register {
    /// By id, which counts up: oldest first.
    connections: BTreeMap<u64, Connection>,
    next_id: u64,
    /// When the cap was last logged: once a minute at most, however many arrive.
    warned: Option<Instant>,
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
        self.open.lock().connections.remove(&self.id);
    }
}

impl Open {
    fn new(max: usize) -> Open {
        Open { max, register: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Register> {
        self.register.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers one more connection, closing the oldest one with no request in flight if
    /// the cap is reached; None (refuse it) if every open connection has a request in flight.
    fn admit(self: &Arc<Open>) -> Option<Admitted> {
        let mut register = self.lock();
        if register.connections.len() >= self.max {
            let idle = register.connections.iter().find(|(_, c)| !c.busy.load(Ordering::Relaxed)).map(|(id, _)| *id);
            let evicted = idle.and_then(|id| register.connections.remove(&id));
            if register.warned.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                register.warned = Some(Instant::now());
                match evicted {
                    Some(_) => tracing::warn!(max_connections = self.max, "HTTP connection cap reached: the oldest idle connections are closed to make room"),
                    None => tracing::warn!(max_connections = self.max, "HTTP connection cap reached with a request in flight on every connection: new ones are refused"),
                }
            }
            evicted?.closed.cancel();
        }
        let id = register.next_id;
        register.next_id += 1;
        let (busy, closed) = (Arc::new(AtomicBool::new(false)), CancellationToken::new());
        register.connections.insert(id, Connection { busy: busy.clone(), closed: closed.clone() });
        Some(Admitted { id, busy, closed, open: self.clone() })
    }

    fn close_all(&self) {
        for (_, c) in std::mem::take(&mut self.lock().connections) {
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
            ("HUB_HTTP_MAX_BODY_BYTES_IN_FLIGHT", "65536"),
            ("HUB_HTTP_MAX_CONNECTIONS", "64"),
            ("HUB_HTTP_MAX_BODY_BYTES", "1000"),
        ]))
        .unwrap();
        assert_eq!(set, Limits { header_timeout: Duration::from_secs(2), request_timeout: Duration::from_secs(5), max_concurrent: 4, max_body_bytes_in_flight: 65536, max_connections: 64, max_body_bytes: 1000 });
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
