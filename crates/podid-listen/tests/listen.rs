//! `podid_listen::serve` over real sockets, with a small service: each
//! deadline cuts a client that trickles (measured against the configured
//! deadline), a head over the size limit is answered 431, a slow body fails
//! the handler's read, the connection cap holds further clients in the
//! accept queue, TLS handshakes have a deadline, HTTP/2 is negotiated by
//! ALPN, and each connection's service knows its peer.
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use podid_listen::{is_body_timeout, CertStore, ListenLimits, RequestBody};
use podid_test_support::attack::{read_answer, trickle, Target};
use podid_test_support::tls::{CertFiles, TestCa};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// The scheduling slack allowed past a deadline on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(1500);

async fn answer(peer: SocketAddr, request: Request<RequestBody>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, text: String| {
        let mut r = Response::new(Full::new(Bytes::from(text)));
        *r.status_mut() = status;
        r
    };
    match request.uri().path() {
        "/peer" => reply(StatusCode::OK, peer.to_string()),
        "/version" => reply(StatusCode::OK, format!("{:?}", request.version())),
        _ => match request.into_body().collect().await {
            Ok(body) => reply(StatusCode::OK, body.to_bytes().len().to_string()),
            Err(e) if is_body_timeout(&e) => reply(StatusCode::REQUEST_TIMEOUT, e.to_string()),
            Err(e) => reply(StatusCode::BAD_REQUEST, e.to_string()),
        },
    }
}

struct Served {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn start(limits: ListenLimits, tls: Option<podid_listen::TlsAcceptor>) -> Served {
    let (listener, addr) = podid_listen::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let make = |peer: SocketAddr| {
        hyper::service::service_fn(move |request| async move {
            Ok::<_, Infallible>(answer(peer, request).await)
        })
    };
    let task = tokio::spawn(async move {
        podid_listen::serve(listener, limits, tls, make, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Served {
        addr,
        stop: Some(tx),
        task,
    }
}

fn limits(head_ms: u64, body_ms: u64, idle_ms: u64) -> ListenLimits {
    let mut l = ListenLimits::agent();
    l.header_read_timeout = Duration::from_millis(head_ms);
    l.body_read_timeout = Duration::from_millis(body_ms);
    l.idle_timeout = Duration::from_millis(idle_ms);
    l.handshake_timeout = Duration::from_millis(head_ms);
    l.max_header_bytes = 2048;
    l
}

/// Closed by the server no sooner than `deadline` (less 50 ms of clock
/// granularity) and no later than `deadline` + [`MARGIN`].
#[track_caller]
fn assert_cut_at(what: &str, after: Duration, deadline: Duration) {
    assert!(
        after + Duration::from_millis(50) >= deadline && after <= deadline + MARGIN,
        "{what}: closed after {after:?}, deadline {deadline:?}"
    );
}

const EVERY: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_trickled_head_is_cut_at_its_deadline_not_extended_by_each_byte() {
    let served = start(limits(800, 5000, 5000), None).await;
    let target = Target::plain(served.addr);
    let since = Instant::now();
    let mut conn = target.connect().await.unwrap();
    let head = format!(
        "GET /peer HTTP/1.1\r\nHost: x\r\nX-Slow: {}",
        "a".repeat(1500)
    );
    let outcome = trickle(&mut conn, head.as_bytes(), EVERY, since, LIMIT).await;
    assert!(outcome.closed, "{outcome:?}");
    assert!(outcome.received.is_empty(), "{outcome:?}");
    assert_cut_at("slow head", outcome.after, Duration::from_millis(800));
    assert!(outcome.sent >= 10, "it kept sending: {outcome:?}");
    served.stop().await;
}

#[tokio::test]
async fn a_head_over_the_size_limit_is_answered_431() {
    let served = start(limits(5000, 5000, 5000), None).await;
    let mut conn = Target::plain(served.addr).connect().await.unwrap();
    let head = format!(
        "GET /peer HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(4096)
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let outcome = trickle(&mut conn, &[], EVERY, Instant::now(), LIMIT).await;
    assert!(outcome.closed);
    assert_eq!(outcome.status(), Some(431), "{outcome:?}");
    served.stop().await;
}

#[tokio::test]
async fn a_trickled_body_fails_the_handlers_read_at_its_deadline() {
    let served = start(limits(5000, 700, 5000), None).await;
    let mut conn = Target::plain(served.addr).connect().await.unwrap();
    conn.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    let since = Instant::now();
    let outcome = trickle(&mut conn, &[b'x'; 4096], EVERY, since, LIMIT).await;
    assert_eq!(outcome.status(), Some(408), "{outcome:?}");
    assert!(outcome.closed, "{outcome:?}");
    assert_cut_at("slow body", outcome.after, Duration::from_millis(700));
    let text = String::from_utf8_lossy(&outcome.received);
    assert!(
        text.ends_with("the request body was not complete within 700 ms"),
        "{text}"
    );
    served.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_when_idle_and_its_trickled_next_head_is_cut() {
    let served = start(limits(600, 5000, 900), None).await;
    let target = Target::plain(served.addr);
    let request = b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n";

    let mut idle = target.connect().await.unwrap();
    idle.write_all(request).await.unwrap();
    read_answer(&mut idle, LIMIT).await.unwrap();
    let outcome = trickle(&mut idle, &[], EVERY, Instant::now(), LIMIT).await;
    assert!(outcome.closed && outcome.received.is_empty(), "{outcome:?}");
    assert_cut_at("idle", outcome.after, Duration::from_millis(900));

    let mut slow = target.connect().await.unwrap();
    slow.write_all(request).await.unwrap();
    read_answer(&mut slow, LIMIT).await.unwrap();
    let since = Instant::now();
    let next = format!(
        "GET /peer HTTP/1.1\r\nHost: x\r\nX-Slow: {}",
        "a".repeat(1500)
    );
    let outcome = trickle(&mut slow, next.as_bytes(), EVERY, since, LIMIT).await;
    assert!(outcome.closed && outcome.received.is_empty(), "{outcome:?}");
    // The head's deadline starts at its first byte, one tick after the answer.
    assert_cut_at(
        "trickled next head",
        outcome.after,
        Duration::from_millis(600),
    );
    served.stop().await;
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_waits_until_a_slot_frees() {
    let served = start(limits(1000, 5000, 5000).with_max_connections(2), None).await;
    let target = Target::plain(served.addr);
    let started = Instant::now();
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut c = target.connect().await.unwrap();
        c.write_all(b"GET /peer HTTP/1.1\r\n").await.unwrap();
        holders.push(c);
    }
    // Connected (the kernel completes the handshake) but not accepted.
    let mut waiting = target.connect().await.unwrap();
    waiting
        .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut waiting, LIMIT).await.unwrap();
    let waited = started.elapsed();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert_cut_at("the held slots", waited, Duration::from_millis(1000));
    for mut h in holders {
        let outcome = trickle(&mut h, &[], EVERY, started, LIMIT).await;
        assert!(outcome.closed, "{outcome:?}");
    }
    served.stop().await;
}

async fn tls_served(head_ms: u64) -> (Served, TestCa, CertFiles) {
    let ca = TestCa::new("listen test CA").unwrap();
    let files = CertFiles::new(&ca.leaf(1, "listen").unwrap()).unwrap();
    let certs = Arc::new(CertStore::new(&files.cert, &files.key));
    assert!(certs.initial_load(&|_: bool| {}));
    let acceptor = podid_listen::TlsAcceptor::from(certs.server_config().unwrap());
    let served = start(limits(head_ms, 5000, 5000), Some(acceptor)).await;
    (served, ca, files)
}

#[tokio::test]
async fn a_tls_handshake_never_started_is_cut_at_its_deadline() {
    let (served, _ca, _files) = tls_served(700).await;
    let since = Instant::now();
    let mut tcp = Target::plain(served.addr).tcp().await.unwrap();
    let outcome = trickle(&mut tcp, &[], EVERY, since, LIMIT).await;
    assert!(outcome.closed && outcome.received.is_empty(), "{outcome:?}");
    assert_cut_at(
        "silent TLS client",
        outcome.after,
        Duration::from_millis(700),
    );
    served.stop().await;
}

#[tokio::test]
async fn tls_serves_http2_by_alpn_and_http1_without_and_the_service_knows_its_peer() {
    let (served, ca, _files) = tls_served(5000).await;
    let url = format!("https://localhost:{}", served.addr.port());
    let ca_cert = reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap();
    for (http2, version) in [(true, "HTTP/2.0"), (false, "HTTP/1.1")] {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(ca_cert.clone())
            .tls_built_in_root_certs(false)
            .resolve("localhost", served.addr);
        builder = if http2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        let client = builder.build().unwrap();
        let got = client
            .get(format!("{url}/version"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(got, version);
    }
    // Plain HTTP/1.1: the peer is the client's own address.
    served.stop().await;
    let served = start(limits(5000, 5000, 5000), None).await;
    let mut conn = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    let local = conn.local_addr().unwrap();
    conn.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut conn, LIMIT).await.unwrap();
    assert!(
        String::from_utf8_lossy(&answer).ends_with(&local.to_string()),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    served.stop().await;
}
