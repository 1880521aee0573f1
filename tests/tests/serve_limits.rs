//! The HTTP limits of `runtime::serve` on real sockets, with a router of test routes (a
//! handler that stalls, one that holds until released, one that stores what it is sent). The
//! same limits on a real agency service, logged in, are in tests/tests/e2e/limits.rs.
//!
//! Outcomes only (disconnected, status codes, what was stored); times appear only as
//! generous deadlines.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::{get, post}};
use runtime::serve::{Limits, serve};
use tests::raw_http::{parse, read_answer};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

/// Longest any step may take before the test fails: far above what each needs.
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Test {
    /// Requests inside `/hold` now, and the most there ever were.
    inside: Arc<AtomicUsize>,
    most_inside: Arc<AtomicUsize>,
    /// Of those, requests with a body, now and at most.
    bodies_inside: Arc<AtomicUsize>,
    most_bodies_inside: Arc<AtomicUsize>,
    /// `/hold` answers once it takes a permit from here.
    release: Arc<Semaphore>,
    /// What `/store` was sent.
    stored: Arc<Mutex<Vec<Bytes>>>,
}

fn router(test: Test) -> Router {
    Router::new()
        .route("/health", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/stall", get(|| async { std::future::pending::<&str>().await }))
        .route("/hold", get(|State(t): State<Test>| hold(t, false)).post(|State(t): State<Test>, _: Bytes| hold(t, true)))
        .route(
            "/store",
            post(|State(t): State<Test>, body: Bytes| async move {
                t.stored.lock().unwrap().push(body);
                "stored"
            }),
        )
        .with_state(test)
}

/// Counts the request in, waits for a release, counts it out.
async fn hold(t: Test, with_body: bool) -> &'static str {
    let now = t.inside.fetch_add(1, Ordering::SeqCst) + 1;
    t.most_inside.fetch_max(now, Ordering::SeqCst);
    if with_body {
        let now = t.bodies_inside.fetch_add(1, Ordering::SeqCst) + 1;
        t.most_bodies_inside.fetch_max(now, Ordering::SeqCst);
    }
    t.release.acquire().await.expect("open").forget();
    if with_body {
        t.bodies_inside.fetch_sub(1, Ordering::SeqCst);
    }
    t.inside.fetch_sub(1, Ordering::SeqCst);
    "held"
}

struct Server {
    addr: SocketAddr,
    test: Test,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let test = Test {
        inside: Default::default(),
        most_inside: Default::default(),
        bodies_inside: Default::default(),
        most_bodies_inside: Default::default(),
        release: Arc::new(Semaphore::new(0)),
        stored: Default::default(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, router(test.clone()), limits, None, shutdown.clone()));
    Server { addr, test, shutdown, task }
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Sends `request` on a new connection and reads the answer to the end.
async fn exchange(addr: SocketAddr, request: Vec<u8>) -> anyhow::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(&request).await?;
    read_answer(&mut stream, DEADLINE).await
}

async fn closed_by_server(stream: &mut TcpStream) -> bool {
    tests::raw_http::closed_by_server(stream, DEADLINE).await
}

/// A connection that sends half a request line and stalls.
async fn stalled(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /heal").await.unwrap();
    stream
}

fn short() -> Limits {
    Limits { header_timeout: Duration::from_secs(1), request_timeout: Duration::from_secs(1), ..Limits::default() }
}

#[tokio::test]
async fn a_client_that_stalls_mid_request_line_is_disconnected() {
    let server = start(short()).await;
    let mut stream = stalled(server.addr).await;
    assert!(closed_by_server(&mut stream).await, "a stalled head is cut off after the header timeout");
    // The server itself is unharmed.
    assert_eq!(exchange(server.addr, get_request("/health")).await.unwrap().0, 200);
}

#[tokio::test]
async fn a_kept_alive_connection_does_not_wait_forever_for_its_next_request() {
    let server = start(short()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"}") {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    assert_eq!(parse(&answer).unwrap().0, 200);
    assert!(closed_by_server(&mut stream).await, "an idle kept-alive connection is closed after the header timeout");
}

#[tokio::test]
async fn a_handler_slower_than_the_request_timeout_gets_a_json_503() {
    let server = start(short()).await;
    let (status, body) = exchange(server.addr, get_request("/stall")).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "timeout", "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("1 s")), "{body}");
}

#[tokio::test]
async fn a_body_over_the_limit_gets_a_json_413_and_is_not_stored() {
    let server = start(Limits { max_body_bytes: 1000, ..Limits::default() }).await;
    let post = |body: &[u8]| {
        let mut request = format!("POST /store HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        request.extend_from_slice(body);
        request
    };
    // Declared too long: refused before it is read.
    let (status, body) = exchange(server.addr, post(&[b'x'; 1001])).await.unwrap();
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "too_large", "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("1000 bytes")), "{body}");
    // No length declared: refused once it runs over.
    let chunked = format!("POST /store HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n{}\r\n0\r\n\r\n", "y".repeat(1001));
    let (status, body) = exchange(server.addr, chunked.into_bytes()).await.unwrap();
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "too_large", "{body}");
    assert!(server.test.stored.lock().unwrap().is_empty(), "nothing over the limit was stored");
    // At the limit: taken.
    assert_eq!(exchange(server.addr, post(&[b'z'; 1000])).await.unwrap().0, 200);
    assert_eq!(server.test.stored.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn requests_over_the_concurrency_cap_wait_their_turn_and_health_still_answers() {
    let server = start(Limits { max_concurrent: 2, ..Limits::default() }).await;
    let requests: Vec<_> = (0..6).map(|_| tokio::spawn(exchange(server.addr, get_request("/hold")))).collect();
    // Two are in; the other four wait.
    wait_until("two requests inside", || server.test.inside.load(Ordering::SeqCst) == 2).await;
    let (status, _) = exchange(server.addr, get_request("/health")).await.unwrap();
    assert_eq!(status, 200, "/health passes the cap");
    server.test.release.add_permits(6);
    for r in requests {
        assert_eq!(r.await.unwrap().unwrap().0, 200, "every waiting request is answered in turn");
    }
    assert_eq!(server.test.most_inside.load(Ordering::SeqCst), 2, "never more than the cap at once");
}

#[tokio::test]
async fn bodies_over_the_budget_wait_their_turn_and_reads_do_not() {
    let server = start(Limits { max_body_bytes_in_flight: 2048, ..Limits::default() }).await;
    let post = format!("POST /hold HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 1024\r\n\r\n{}", "b".repeat(1024)).into_bytes();
    let sends: Vec<_> = (0..4).map(|_| tokio::spawn(exchange(server.addr, post.clone()))).collect();
    // Two bodies of 1 KiB fill the budget of 2 KiB; the other two wait.
    wait_until("two bodies inside", || server.test.bodies_inside.load(Ordering::SeqCst) == 2).await;
    // A request without a body takes none of it.
    let read = tokio::spawn(exchange(server.addr, get_request("/hold")));
    wait_until("the read inside beside them", || server.test.inside.load(Ordering::SeqCst) == 3).await;
    server.test.release.add_permits(5);
    for r in sends.into_iter().chain([read]) {
        assert_eq!(r.await.unwrap().unwrap().0, 200, "every waiting request is answered in turn");
    }
    assert_eq!(server.test.most_bodies_inside.load(Ordering::SeqCst), 2, "never more body bytes than the budget at once");
}

#[tokio::test]
async fn at_the_connection_cap_the_oldest_idle_connection_makes_room() {
    // A header timeout beyond the deadline: only making room can close a stalled connection.
    let server = start(Limits { max_connections: 4, header_timeout: 2 * DEADLINE, ..Limits::default() }).await;
    let mut first = Vec::new();
    for _ in 0..4 {
        first.push(stalled(server.addr).await);
    }
    let mut second = Vec::new();
    for _ in 0..4 {
        second.push(stalled(server.addr).await);
    }
    for stream in &mut first {
        assert!(closed_by_server(stream).await, "the oldest stalled connections were closed to make room");
    }
    let (status, _) = exchange(server.addr, get_request("/health")).await.unwrap();
    assert_eq!(status, 200, "a newcomer gets in at the cap");
    assert!(closed_by_server(&mut second[0]).await, "the oldest stalled one made room for it");
}

#[tokio::test]
async fn when_every_connection_has_a_request_in_flight_a_newcomer_is_refused() {
    let server = start(Limits { max_connections: 2, ..Limits::default() }).await;
    let held: Vec<_> = (0..2).map(|_| tokio::spawn(exchange(server.addr, get_request("/hold")))).collect();
    wait_until("two requests inside", || server.test.inside.load(Ordering::SeqCst) == 2).await;
    let mut newcomer = TcpStream::connect(server.addr).await.unwrap();
    let _ = newcomer.write_all(&get_request("/health")).await;
    assert!(closed_by_server(&mut newcomer).await, "no room: closed without an answer");
    server.test.release.add_permits(2);
    for r in held {
        assert_eq!(r.await.unwrap().unwrap().0, 200, "the requests in flight are not disturbed");
    }
    assert_eq!(exchange(server.addr, get_request("/health")).await.unwrap().0, 200, "room again");
}

#[tokio::test]
async fn shutdown_answers_the_requests_in_flight_then_stops() {
    let server = start(Limits::default()).await;
    let held = tokio::spawn(exchange(server.addr, get_request("/hold")));
    wait_until("a request inside", || server.test.inside.load(Ordering::SeqCst) == 1).await;
    server.shutdown.cancel();
    server.test.release.add_permits(1);
    assert_eq!(held.await.unwrap().unwrap().0, 200, "the request in flight is answered");
    tokio::time::timeout(DEADLINE, server.task).await.expect("serve returns").unwrap().unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err(), "no longer listening");
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
