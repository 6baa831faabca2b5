//! What the JWKS tests share: a key server on 127.0.0.1 (https with a certificate of a test CA,
//! or plain http) whose answers change while it runs and which counts what it is asked,
//! and a real `podid server` process (`--insecure-no-auth`, SQLite, a fake STS) with its log.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use podid_test_support::fake_sts::FakeSts;
pub use podid_test_support::tls::TestCa;
use podid_test_support::{PodidServerLaunch, PodidServerProcess, StderrTo};
use podid_token::dev::{ProjectedToken, SigningKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// The issuer of the test cluster's tokens.
pub const ISSUER: &str = "https://oidc.jwks.test";

/// A TLS acceptor serving a certificate for 127.0.0.1 and localhost signed by `ca`.
fn acceptor(ca: &TestCa) -> tokio_rustls::TlsAcceptor {
    let leaf = ca.leaf(1, "jwks key server").unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der.into()], key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// What the key server answers on a path.
#[derive(Clone, Debug)]
pub enum Answer {
    /// This status, content type and body.
    Body(u16, &'static str, Vec<u8>),
    /// 302 to this location.
    Redirect(String),
}

impl Answer {
    pub fn json(doc: &Value) -> Answer {
        Answer::Body(200, "application/json", doc.to_string().into_bytes())
    }
}

type Routes = Arc<Mutex<HashMap<String, Answer>>>;

/// A key server on 127.0.0.1:0 (https or http), answering each path as set, 404 otherwise.
pub struct KeyServer {
    /// `https://127.0.0.1:PORT` or `http://…`.
    pub base: String,
    routes: Routes,
    hits: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a request head (bounded), answers it, closes.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    routes: &Routes,
    hits: &Mutex<Vec<String>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
    hits.lock().unwrap().push(path.clone());
    let found = routes.lock().unwrap().get(&path).cloned();
    let (status, headers, body) = match found {
        Some(Answer::Body(status, ctype, body)) => {
            (status, format!("Content-Type: {ctype}\r\n"), body)
        }
        Some(Answer::Redirect(to)) => (302, format!("Location: {to}\r\n"), Vec::new()),
        None => (404, String::new(), b"not found".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

impl KeyServer {
    /// Serves https with `ca`'s serving certificate, or http without.
    pub async fn start(ca: Option<&TestCa>) -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes: Routes = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let acceptor = ca.map(acceptor);
        let (r, h) = (routes.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (r, h, acceptor) = (r.clone(), h.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(tcp).await {
                                answer(stream, &r, &h).await;
                            }
                        }
                        None => answer(tcp, &r, &h).await,
                    }
                });
            }
        });
        let scheme = if ca.is_some() { "https" } else { "http" };
        KeyServer {
            base: format!("{scheme}://127.0.0.1:{port}"),
            routes,
            hits,
            task,
        }
    }

    /// Answers `path` with `answer` from now on; its URL.
    pub fn set(&self, path: &str, answer: Answer) -> String {
        self.routes.lock().unwrap().insert(path.to_owned(), answer);
        format!("{}{path}", self.base)
    }

    /// The paths asked for so far.
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

/// `{"keys": [...]}` of these keys.
pub fn jwks_of(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// A token of pod `pod` in ns/sa, issued now by [`ISSUER`], signed with `key`.
pub fn token(key: &SigningKey, pod: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut t = ProjectedToken::new(ISSUER, "ns", "sa", now);
    t.pod_name = pod.to_owned();
    t.pod_uid = format!("uid-{pod}");
    t.sign(key)
}

/// A `podid server --insecure-no-auth` on SQLite asking a fake STS, its log in a file.
pub struct Server {
    process: Option<PodidServerProcess>,
    pub endpoint: String,
    pub sts: FakeSts,
    dir: tempfile::TempDir,
    args: Vec<String>,
    http: reqwest::Client,
}

impl Server {
    /// Starts it with `args` added; `ca_pem`, when given, is written to a file named by
    /// `--jwks-ca-file`.
    pub fn start(args: &[&str], ca_pem: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        if let Some(pem) = ca_pem {
            let path: PathBuf = dir.path().join("jwks-ca.pem");
            std::fs::write(&path, pem).unwrap();
            args.extend(["--jwks-ca-file".to_owned(), path.display().to_string()]);
        }
        let mut server = Server {
            endpoint: String::new(),
            process: None,
            sts: FakeSts::start().unwrap(),
            dir,
            args,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        server.restart();
        server
    }

    /// Starts the process (again, after [`Server::stop`]: same database, same flags).
    pub fn restart(&mut self) {
        let db = format!("sqlite://{}", self.dir.path().join("podid.db").display());
        let process = PodidServerLaunch::new(podid_test_support::podid_binary())
            .args(["--insecure-no-auth", "--sts-endpoint", &self.sts.url])
            .args(["--database-url", &db])
            .args(&self.args)
            .aws_key(
                "AKIAJWKSTESTBROKER00",
                "jwks-test-broker-secret-0123456789abcdef",
            )
            .log("info")
            .env("NO_COLOR", "1")
            .stderr(StderrTo::File(self.dir.path().join("server.log")))
            .start()
            .unwrap_or_else(|e| panic!("podid server did not start (cargo build -p podid?): {e}"));
        self.endpoint = process.endpoint.clone();
        self.process = Some(process);
    }

    /// `method path` with a JSON body: the status and the answer's text.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.endpoint));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Registers a cluster with `fields` added to its name and [`ISSUER`].
    pub async fn register(&self, name: &str, fields: Value) -> (u16, Value, String) {
        let mut body = json!({ "name": name, "issuer": ISSUER });
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let (status, text) = self
            .call(reqwest::Method::POST, "/podid/v1/clusters", Some(body))
            .await;
        (
            status,
            serde_json::from_str(&text).unwrap_or_default(),
            text,
        )
    }

    /// The registered cluster `name`.
    pub async fn describe(&self, name: &str) -> Value {
        let (status, text) = self
            .call(
                reqwest::Method::GET,
                &format!("/podid/v1/clusters/{name}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()["cluster"].clone()
    }

    /// Associates ns/sa of `cluster` with a role.
    pub async fn associate(&self, cluster: &str) {
        let body = json!({"namespace": "ns", "serviceAccount": "sa",
            "roleArn": "arn:aws:iam::111122223333:role/jwks-test"});
        let path = format!("/clusters/{cluster}/pod-identity-associations");
        let (status, text) = self.call(reqwest::Method::POST, &path, Some(body)).await;
        assert_eq!(status, 200, "{text}");
    }

    /// `AssumeRoleForPodIdentity` for `cluster` with `token`: the status and the answer.
    pub async fn assume(&self, cluster: &str, token: &str) -> (u16, Value) {
        let path = format!("/clusters/{cluster}/assume-role-for-pod-identity");
        let (status, text) = self
            .call(
                reqwest::Method::POST,
                &path,
                Some(json!({ "token": token })),
            )
            .await;
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    /// Stops it (SIGTERM, bounded) and returns its whole log, read after it exited.
    pub fn stop(&mut self) -> String {
        if let Some(process) = self.process.take() {
            process.terminate(Duration::from_secs(10));
        }
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}
