//! `podid server`'s listeners as a process: HTTPS with `--tls-cert/--tls-key`
//! (a client trusting the test CA is served, one trusting another CA fails
//! the handshake with rustls' `UnknownIssuer`; the files replaced on disk are
//! presented to the next connection; a pair that does not load at start
//! leaves the server unready until one does), plain HTTP with its warning,
//! and `/metrics` unsigned only on `--metrics-listen`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use podid_test_support::tls::{CertFiles, TestCa};
use podid_test_support::{write_keys_file, PodidServerLaunch, PodidServerProcess};

/// The bound of every wait here.
const WAIT: Duration = Duration::from_secs(30);

fn launch(dir: &Path) -> PodidServerLaunch {
    let keys = write_keys_file(dir).unwrap();
    PodidServerLaunch::new(env!("CARGO_BIN_EXE_podid"))
        .args([
            "--database-url",
            &format!("sqlite://{}", dir.join("podid.db").display()),
        ])
        .args([std::ffi::OsStr::new("--keys-file"), keys.as_os_str()])
        .args(["--tls-reload-seconds", "1"])
}

/// The certificate `addr` presents to a client trusting `config`'s CAs, or
/// the handshake's error.
async fn presented(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<Vec<u8>, std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let (_, session) = tls.get_ref();
    Ok(session.peer_certificates().unwrap()[0].to_vec())
}

fn https_client(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap()
}

/// The status of `GET /readyz`.
async fn readyz(client: &reqwest::Client, server: &PodidServerProcess) -> u16 {
    let url = format!("{}/readyz", server.endpoint);
    client.get(url).send().await.unwrap().status().as_u16()
}

/// Polls `check` until it holds, for at most [`WAIT`].
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl FnMut() -> F) {
    podid_test_support::wait::eventually(WAIT, what, check).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_clients_trusting_the_ca_and_presents_a_replaced_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("podid server test CA").unwrap();
    let first = ca.leaf(1, "podid-server-1").unwrap();
    let files = CertFiles::new(&first).unwrap();
    let server = launch(dir.path())
        .tls(&files.cert, &files.key)
        .start()
        .unwrap();
    assert_eq!(server.endpoint, format!("https://{}", server.addr));

    let client = https_client(&ca);
    assert_eq!(readyz(&client, &server).await, 200);
    let trusting = ca.client_config().unwrap();
    assert_eq!(
        presented(server.addr, trusting.clone()).await.unwrap(),
        first.der
    );

    let stranger = TestCa::new("another CA").unwrap();
    let refused = presented(server.addr, stranger.client_config().unwrap())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("UnknownIssuer"),
        "a client without the CA: {refused}"
    );
    let plain = reqwest::get(format!("http://{}/healthz", server.addr)).await;
    assert!(plain.is_err(), "plain HTTP on the TLS port: {plain:?}");

    let second = ca.leaf(2, "podid-server-2").unwrap();
    files.write(&second).unwrap();
    eventually("the replaced certificate presented", || {
        let config = trusting.clone();
        let want = second.der.clone();
        async move { presented(server.addr, config).await.ok() == Some(want) }
    })
    .await;
    assert_eq!(readyz(&client, &server).await, 200);
    let log = server.stderr();
    assert!(!log.contains("plain HTTP"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_load_leaves_the_server_unready_until_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("podid server test CA").unwrap();
    let leaf = ca.leaf(7, "late").unwrap();
    let files = CertFiles::new(&leaf).unwrap();
    std::fs::write(&files.cert, "not PEM").unwrap();
    let server = launch(dir.path())
        .tls(&files.cert, &files.key)
        .start()
        .unwrap();
    let trusting = ca.client_config().unwrap();
    let refused = presented(server.addr, trusting.clone()).await.unwrap_err();
    println!("no certificate yet: {refused}");
    files.write(&leaf).unwrap();
    eventually("the certificate loaded", || {
        let config = trusting.clone();
        let want = leaf.der.clone();
        async move { presented(server.addr, config).await.ok() == Some(want) }
    })
    .await;
    assert_eq!(readyz(&https_client(&ca), &server).await, 200);
    eventually("the failed load logged", || {
        let log = server.stderr();
        async move { log.contains("no TLS certificate loaded; not ready") }
    })
    .await;
}

/// `GET /metrics` on the API port, signed with the reader key by aws-sigv4
/// (or not): the status and `x-amzn-errortype`.
async fn metrics_on_the_api(server: &PodidServerProcess, signed: bool) -> (u16, String) {
    let url = format!("{}/metrics", server.endpoint);
    let mut request = reqwest::Client::new().get(&url);
    if signed {
        let signer = podid_test_support::sigv4::Signer::now(&podid_test_support::READER, "eks");
        for (name, value) in signer.headers("GET", &url, &[], b"").unwrap() {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.unwrap();
    let kind = answer
        .headers()
        .get("x-amzn-errortype")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (answer.status().as_u16(), kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_warns_and_metrics_are_unsigned_only_on_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let server = launch(dir.path()).start().unwrap();
    assert!(
        server.endpoint.starts_with("http://"),
        "{}",
        server.endpoint
    );
    let warning = "the API is plain HTTP, so pod tokens, signed requests and the \
                   credentials issued cross the network in clear";
    // The log goes through a writer thread: it may come after the address.
    eventually("the clear-text warning logged", || {
        let log = server.stderr();
        async move {
            log.lines()
                .any(|l| l.contains("WARN") && l.contains(warning))
        }
    })
    .await;

    assert_eq!(
        metrics_on_the_api(&server, false).await,
        (403, "MissingAuthenticationTokenException".to_owned())
    );
    assert_eq!(
        metrics_on_the_api(&server, true).await,
        (200, String::new())
    );
    let metrics_url = server.metrics_url().unwrap();
    assert_eq!(server.metrics_addr.unwrap().ip().to_string(), "127.0.0.1");
    let open = reqwest::get(&metrics_url).await.unwrap();
    assert_eq!(open.status(), 200);
    let text = open.text().await.unwrap();
    assert!(
        text.contains(r#"podid_http_requests_total{operation="unknown",status="403"} 1"#),
        "{text}"
    );
    // The metrics listener serves nothing else.
    let other = reqwest::get(metrics_url.replace("/metrics", "/podid/v1/clusters"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}
