//! The client against a real listener (podid-listen, as the stand-ins serve):
//! plain and TLS with a test CA, headers, the size limit, the timeout and the
//! errors' kinds.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Response};
use podid_listen::{CertStore, ListenLimits, RequestBody, TlsAcceptor};
use podid_test_support::tls::{CertFiles, TestCa};
use tokio::sync::oneshot;

use super::*;

/// A server answering `/echo` with the request's `authorization`, `/big`
/// with 4 KiB, `/hang` never; stopped when dropped.
struct TestServer {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    _certs: Option<CertFiles>,
}

async fn answer(request: Request<RequestBody>) -> Response<Full<Bytes>> {
    match request.uri().path() {
        "/echo" => {
            let auth = request
                .headers()
                .get(AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default();
            Response::new(Full::new(Bytes::from(auth)))
        }
        "/big" => Response::new(Full::new(Bytes::from(vec![b'x'; 4096]))),
        "/hang" => std::future::pending().await,
        _ => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"no")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    }
}

async fn start(ca: Option<&TestCa>) -> TestServer {
    let (listener, addr) = podid_listen::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (tls, certs) = match ca {
        Some(ca) => {
            let files = CertFiles::new(&ca.leaf(1, "localhost").unwrap()).unwrap();
            let store = Arc::new(CertStore::new(&files.cert, &files.key));
            assert!(store.initial_load(&|_: bool| {}));
            let acceptor = TlsAcceptor::from(store.server_config().unwrap());
            (Some(acceptor), Some(files))
        }
        None => (None, None),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let make = |_peer: SocketAddr| {
        hyper::service::service_fn(|request: Request<RequestBody>| async move {
            Ok::<_, Infallible>(answer(request).await)
        })
    };
    tokio::spawn(podid_listen::serve(
        listener,
        ListenLimits::local(),
        tls,
        make,
        async move {
            let _ = stopped.await;
        },
    ));
    TestServer {
        addr,
        _stop: stop,
        _certs: certs,
    }
}

fn client(trust: Trust) -> HttpClient {
    HttpClient::new(HttpSettings {
        timeout: Duration::from_secs(2),
        max_answer_bytes: 1024,
        ..HttpSettings::new(trust)
    })
    .unwrap()
}

fn bundle(ca: &TestCa) -> CaBundle {
    CaBundle::from_pem(ca.pem.as_bytes().to_vec(), "test CA").unwrap()
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

#[tokio::test]
async fn https_trusting_the_ca_file_sends_the_headers_and_reads_the_answer() {
    let ca = TestCa::new("kubelet CA").unwrap();
    let server = start(Some(&ca)).await;
    let http = client(Trust::Only(bundle(&ca)));
    for host in ["localhost", "127.0.0.1"] {
        let url = parse_url(&format!("https://{host}:{}/echo", server.addr.port())).unwrap();
        let answer = http.get(&url, &bearer("t0k3n")).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{host}");
        assert_eq!(&answer.body[..], b"Bearer t0k3n", "{host}");
    }
    // The pooled connection is reused for the next call.
    let url = parse_url(&format!("https://localhost:{}/nope", server.addr.port())).unwrap();
    let answer = http.get(&url, &HeaderMap::new()).await.unwrap();
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_ca_is_not_trusted_unless_told_to_skip_verification() {
    let ca = TestCa::new("kubelet CA").unwrap();
    let other = TestCa::new("someone else").unwrap();
    let server = start(Some(&ca)).await;
    let url = parse_url(&format!("https://127.0.0.1:{}/echo", server.addr.port())).unwrap();
    let err = client(Trust::Only(bundle(&other)))
        .get(&url, &bearer("secret-token"))
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Untrusted { .. }), "{err:?}");
    assert!(err.is_unreachable());
    let text = format!("{err} {err:?}");
    assert!(text.contains("not trusted"), "{text}");
    assert!(!text.contains("secret-token"), "{text}");
    let answer = client(Trust::InsecureSkipVerify)
        .get(&url, &bearer("x"))
        .await
        .unwrap();
    assert_eq!(&answer.body[..], b"Bearer x");
}

#[tokio::test]
async fn plain_http_works_and_limits_hold() {
    let server = start(None).await;
    let http = client(Trust::InsecureSkipVerify);
    let base = format!("http://{}", server.addr);
    let answer = http
        .get(&parse_url(&format!("{base}/echo")).unwrap(), &bearer("a"))
        .await
        .unwrap();
    assert_eq!(&answer.body[..], b"Bearer a");

    let err = http
        .get(
            &parse_url(&format!("{base}/big")).unwrap(),
            &HeaderMap::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AgentError::TooLarge { limit: 1024, .. }),
        "{err:?}"
    );

    let started = Instant::now();
    let err = http
        .get(
            &parse_url(&format!("{base}/hang")).unwrap(),
            &HeaderMap::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Timeout { .. }), "{err:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_closed_port_is_unreachable_and_bad_urls_are_refused() {
    let (listener, addr) = podid_listen::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    drop(listener);
    let err = client(Trust::InsecureSkipVerify)
        .get(
            &parse_url(&format!("https://{addr}/pods")).unwrap(),
            &HeaderMap::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Connect { .. }), "{err:?}");
    assert!(err.is_unreachable());
    for url in [
        "ftp://host/x",
        "/pods",
        "https://",
        "not a url",
        "http:///x",
    ] {
        let err = parse_url(url).unwrap_err();
        assert!(matches!(err, AgentError::BadUrl { .. }), "{url}: {err:?}");
        assert!(!err.is_unreachable());
    }
}
