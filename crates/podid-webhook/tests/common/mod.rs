//! Helpers of the webhook's socket tests: a test CA and certificates (rcgen),
//! the webhook served in-process over HTTPS, a client trusting only the test
//! CA, AdmissionReview bodies, and a real `podid server` process.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podid_webhook::review::AdmissionReviewResponse;
use podid_webhook::{AssociationLookup, CertStore, Webhook, WebhookMetrics, WebhookSettings};
use serde_json::{json, Value};

pub use podid_test_support::tls::{CertFiles, TestCa};

/// A webhook served in-process.
pub struct Running {
    pub addr: SocketAddr,
    pub url: String,
    pub metrics: Arc<WebhookMetrics>,
    pub webhook: Arc<Webhook>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves a webhook on 127.0.0.1:0 with `lookup`, the certificate `files` and `settings`.
pub async fn start(
    lookup: Arc<dyn AssociationLookup>,
    files: &CertFiles,
    settings: WebhookSettings,
) -> Running {
    start_with_metrics(lookup, files, settings, Arc::new(WebhookMetrics::new())).await
}

/// [`start`] counting in `metrics` (shared with a followed lookup).
pub async fn start_with_metrics(
    lookup: Arc<dyn AssociationLookup>,
    files: &CertFiles,
    settings: WebhookSettings,
    metrics: Arc<WebhookMetrics>,
) -> Running {
    let certs = Arc::new(CertStore::new(&files.cert, &files.key));
    let webhook = Arc::new(Webhook::new(lookup, certs, settings, metrics.clone()));
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let served = webhook.clone();
    let task = tokio::spawn(async move {
        podid_webhook::serve(
            served,
            "127.0.0.1:0".parse().unwrap(),
            |addr| {
                let _ = bound_tx.send(addr);
            },
            async move {
                let _ = shutdown_rx.await;
            },
        )
        .await
        .unwrap();
    });
    let addr = tokio::time::timeout(Duration::from_secs(10), bound_rx)
        .await
        .unwrap()
        .unwrap();
    Running {
        addr,
        url: format!("https://127.0.0.1:{}", addr.port()),
        metrics,
        webhook,
        shutdown: Some(shutdown_tx),
        task: Some(task),
    }
}

/// An HTTPS client that trusts only `ca_pem` and records the peer certificate.
/// `fresh` clients keep no idle connections: every request does a new handshake.
pub fn client(ca_pem: &str, fresh: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .tls_info(true)
        .timeout(Duration::from_secs(10));
    if fresh {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().unwrap()
}

/// The DER of the certificate the server presented.
pub fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("TLS info with a peer certificate")
        .to_vec()
}

/// An AdmissionReview v1 creating a minimal pod in `namespace` with `service_account`.
pub fn pod_review(uid: &str, namespace: &str, service_account: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "app",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "app", "namespace": namespace, "creationTimestamp": null},
                "spec": {
                    "serviceAccountName": service_account,
                    "containers": [{"name": "app", "image": "public.ecr.aws/aws-cli/aws-cli:2.15.0", "resources": {}}]
                },
                "status": {}
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// Posts the JSON `body` to `/mutate`, whatever the answer's status.
pub async fn post_mutate(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client
        .post(format!("{url}/mutate"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// GETs `path` and returns the answer's body as text.
pub async fn get_text(client: &reqwest::Client, url: &str, path: &str) -> String {
    let response = client.get(format!("{url}{path}")).send().await.unwrap();
    response.text().await.unwrap()
}

/// Posts `review` to `/mutate`; returns the answer, the HTTP status and the peer certificate.
pub async fn post_review(
    client: &reqwest::Client,
    url: &str,
    review: &Value,
) -> (AdmissionReviewResponse, Vec<u8>) {
    let response = post_mutate(client, url, review.to_string()).await;
    assert_eq!(response.status(), 200);
    let peer = peer_certificate(&response);
    let answer: AdmissionReviewResponse = response.json().await.unwrap();
    assert_eq!(
        answer.response.uid,
        review["request"]["uid"].as_str().unwrap()
    );
    (answer, peer)
}

/// Applies the answer's patch to the review's pod.
pub fn patched(
    review: &Value,
    answer: &AdmissionReviewResponse,
) -> k8s_openapi::api::core::v1::Pod {
    let mut doc = review["request"]["object"].clone();
    json_patch::patch(&mut doc, &answer.patch().unwrap()).unwrap();
    serde_json::from_value(doc).unwrap()
}

/// Whether the pod got the credentials env var in its first container.
pub fn injected(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.spec.as_ref().unwrap().containers[0]
        .env
        .iter()
        .flatten()
        .any(|e| e.name == "AWS_CONTAINER_CREDENTIALS_FULL_URI")
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts the value of each series in the metrics exposition `text`.
pub fn assert_metrics(text: &str, expected: &[(&str, f64)]) {
    for (series, value) in expected {
        assert_eq!(metric(text, series), *value, "{series} in\n{text}");
    }
}

/// The value of one sample line of a metrics exposition (0 when absent).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

pub use podid_test_support::TEST_JWKS as JWKS;

/// The `podid` binary (see `podid_test_support::podid_binary`); it must be
/// built (cargo build -p podid) or named by `PODID_BIN`.
pub fn podid_bin() -> PathBuf {
    let bin = podid_test_support::podid_binary();
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p podid) or set PODID_BIN",
        bin.display()
    );
    bin
}

/// A running `podid server --insecure-no-auth` on SQLite, killed on drop.
pub struct PodidServer {
    process: podid_test_support::PodidServerProcess,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl PodidServer {
    pub fn start() -> PodidServer {
        PodidServer::on(tempfile::tempdir().unwrap())
    }

    /// A server on the database in `dir` (a new one, or a stopped server's).
    fn on(dir: tempfile::TempDir) -> PodidServer {
        let db = format!("sqlite://{}", dir.path().join("x.db").display());
        let process = podid_test_support::PodidServerLaunch::new(podid_bin())
            .args(["--insecure-no-auth", "--database-url", &db])
            .log("warn")
            .start()
            .unwrap_or_else(|e| panic!("podid server did not start: {e}"));
        PodidServer {
            endpoint: process.endpoint.clone(),
            process,
            _dir: dir,
        }
    }

    /// Stops this server and starts another on the same database (another port).
    pub fn restart(self) -> PodidServer {
        let PodidServer { process, _dir, .. } = self;
        process.terminate(Duration::from_secs(15));
        PodidServer::on(_dir)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.process.addr
    }

    /// Requests the server answered for `operation` (any status), from its metrics.
    pub async fn requests(&self, operation: &str) -> f64 {
        let url = self.process.metrics_url().expect("a metrics listener");
        let text = reqwest::get(url).await.unwrap().text().await.unwrap();
        let series = format!(r#"podid_http_requests_total{{operation="{operation}","#);
        text.lines()
            .filter(|l| l.starts_with(&series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Creates an association for `namespace`/`service_account`; returns its id.
    pub async fn associate(&self, cluster: &str, namespace: &str, service_account: &str) -> String {
        let r = reqwest::Client::new()
            .post(format!(
                "{}/clusters/{cluster}/pod-identity-associations",
                self.endpoint
            ))
            .json(&json!({
                "namespace": namespace,
                "serviceAccount": service_account,
                "roleArn": "arn:aws:iam::111122223333:role/s3-reader",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        body["association"]["associationId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Deletes association `id` of `cluster`.
    pub async fn dissociate(&self, cluster: &str, id: &str) {
        let r = reqwest::Client::new()
            .delete(format!(
                "{}/clusters/{cluster}/pod-identity-associations/{id}",
                self.endpoint
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// Registers `cluster` with an inline JWKS.
    pub async fn register_cluster(&self, cluster: &str) {
        let jwks: Value = serde_json::from_str(JWKS).unwrap();
        let r = reqwest::Client::new()
            .post(format!("{}/podid/v1/clusters", self.endpoint))
            .json(&json!({"name": cluster, "issuer": "https://issuer.test", "jwks": jwks}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
}
