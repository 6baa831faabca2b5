//! `podid dev apiserver`, the stand-in TokenReview endpoint, as a process over
//! HTTPS (a CA made for the test), asked with the TokenReview request of the
//! Kubernetes documentation ("Authenticating", webhook token authentication:
//! `apiVersion`, `kind`, `spec.token`, `spec.audiences`) and checked against
//! the answer shape documented there (`status.authenticated`, `status.user`,
//! `status.audiences`, `status.error`) and the service-account user names of
//! the Kubernetes docs (`system:serviceaccount:NS:NAME`, `extra`
//! `authentication.kubernetes.io/pod-name` / `pod-uid` / `node-name`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use podid_test_support::kube::{write_pods_file, DevApiServer, DevApiServerLaunch, TestPod};
use podid_test_support::run_to_success;
use podid_test_support::tls::{CertFiles, TestCa};
use serde_json::{json, Value};

const PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const CREDENTIAL: &str = "stand-in-credential-5e2f";

struct StandIn {
    dir: tempfile::TempDir,
    api: DevApiServer,
    _certs: CertFiles,
    http: reqwest::Client,
}

fn podid() -> Command {
    Command::new(env!("CARGO_BIN_EXE_podid"))
}

fn run(command: Command) -> String {
    let out = run_to_success("podid", command, Duration::from_secs(60)).unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl StandIn {
    fn start() -> StandIn {
        let dir = tempfile::tempdir().unwrap();
        let mut create = podid();
        create
            .args(["dev", "cluster", "create", "--name", "standin", "--dir"])
            .arg(dir.path().join("cluster"));
        run(create);
        std::fs::write(dir.path().join("credential"), format!("{CREDENTIAL}\n")).unwrap();
        write_pods_file(
            &dir.path().join("pods.json"),
            &[TestPod::running("web-1", "shop", "uid-web-1", "node-a")],
        )
        .unwrap();
        let ca = TestCa::new("standin-ca").unwrap();
        let certs = CertFiles::new(&ca.leaf(1, "apiserver").unwrap()).unwrap();
        let api = DevApiServerLaunch {
            binary: env!("CARGO_BIN_EXE_podid").into(),
            cluster_dir: dir.path().join("cluster"),
            pods_file: dir.path().join("pods.json"),
            token_file: dir.path().join("credential"),
            tls: Some((certs.cert.clone(), certs.key.clone())),
        }
        .start()
        .unwrap();
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        StandIn {
            dir,
            api,
            _certs: certs,
            http,
        }
    }

    fn cluster(&self) -> &Path {
        self.dir.path()
    }

    /// `podid dev token` for pod web-1 of shop/cart with `extra` flags.
    fn token(&self, extra: &[&str]) -> String {
        let mut command = podid();
        command
            .args(["dev", "token", "--cluster-dir"])
            .arg(self.cluster().join("cluster"))
            .args(["--namespace", "shop", "--service-account", "cart"])
            .args([
                "--pod-name",
                "web-1",
                "--pod-uid",
                "uid-web-1",
                "--node-name",
                "node-a",
            ])
            .args(extra);
        run(command)
    }

    async fn post(&self, bearer: Option<&str>, body: String) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{PATH}", self.api.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// The status of `GET path` with the right credential.
    async fn get(&self, path: &str) -> u16 {
        let answer = self
            .http
            .get(format!("{}{path}", self.api.url))
            .bearer_auth(CREDENTIAL)
            .send()
            .await
            .unwrap();
        answer.status().as_u16()
    }

    /// The documentation's TokenReview request with `token` and `audiences`.
    async fn review(&self, token: &str, audiences: &[&str]) -> (u16, Value) {
        let body = format!(
            r#"{{
  "apiVersion": "authentication.k8s.io/v1",
  "kind": "TokenReview",
  "spec": {{
    "token": "{token}",
    "audiences": {}
  }}
}}"#,
            json!(audiences)
        );
        self.post(Some(CREDENTIAL), body).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_pods_token_is_authenticated_as_its_service_account() {
    let s = StandIn::start();
    let token = s.token(&[]);
    let (status, review) = s
        .review(
            &token,
            &["https://myserver.example.com", "pods.eks.amazonaws.com"],
        )
        .await;
    assert_eq!(status, 201, "{review}");
    assert_eq!(review["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(review["kind"], "TokenReview");
    let st = &review["status"];
    assert_eq!(st["authenticated"], true, "{review}");
    assert_eq!(st["user"]["username"], "system:serviceaccount:shop:cart");
    assert!(st["user"]["uid"].is_string());
    assert_eq!(st["audiences"], json!(["pods.eks.amazonaws.com"]));
    let extra = &st["user"]["extra"];
    assert_eq!(
        extra["authentication.kubernetes.io/pod-name"],
        json!(["web-1"])
    );
    assert_eq!(
        extra["authentication.kubernetes.io/pod-uid"],
        json!(["uid-web-1"])
    );
    assert_eq!(
        extra["authentication.kubernetes.io/node-name"],
        json!(["node-a"])
    );
    assert!(st["user"]["groups"]
        .as_array()
        .unwrap()
        .contains(&json!("system:serviceaccounts:shop")));

    // No audiences asked: any of the token's.
    let (status, review) = s.review(&token, &[]).await;
    assert_eq!(
        (status, &review["status"]["authenticated"]),
        (201, &json!(true))
    );
    // An agent token (podid-system/podid-agent, audience podid) without a node
    // claim, its pod in the list: authenticated, no node-name.
    write_pods_file(
        &s.cluster().join("pods.json"),
        &[TestPod::running(
            "agent-1",
            "podid-system",
            "uid-agent-1",
            "node-a",
        )],
    )
    .unwrap();
    let mut agent = podid();
    agent
        .args(["dev", "token", "--agent", "--no-node", "--cluster-dir"])
        .arg(s.cluster().join("cluster"))
        .args(["--pod-name", "agent-1", "--pod-uid", "uid-agent-1"]);
    let (_, review) = s.review(&run(agent), &["podid"]).await;
    let st = &review["status"];
    assert_eq!(st["authenticated"], true, "{review}");
    assert_eq!(
        st["user"]["username"],
        "system:serviceaccount:podid-system:podid-agent"
    );
    assert_eq!(st["audiences"], json!(["podid"]));
    assert!(st["user"]["extra"]
        .get("authentication.kubernetes.io/node-name")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_the_api_server_would_refuse_are_not_authenticated() {
    let s = StandIn::start();
    let token = s.token(&[]);
    let refused = |review: &Value, why: &str| {
        assert_eq!(review["status"]["authenticated"], false, "{review}");
        let error = review["status"]["error"].as_str().unwrap_or("");
        assert!(error.contains(why), "{error:?} lacks {why:?}");
        assert!(review["status"].get("user").is_none(), "{review}");
    };
    // Another audience.
    let (status, review) = s.review(&token, &["https://myserver.example.com"]).await;
    assert_eq!(status, 201);
    refused(&review, "is invalid for the target audiences");
    // Expired.
    let old = s.token(&["--issued-at", "1000000000", "--expires-in", "3600"]);
    refused(&s.review(&old, &[]).await.1, "expired");
    // Signed by another cluster's key.
    let mut other = podid();
    other
        .args(["dev", "cluster", "create", "--name", "standin", "--dir"])
        .arg(s.cluster().join("other"));
    run(other);
    let mut forged = podid();
    forged
        .args(["dev", "token", "--cluster-dir"])
        .arg(s.cluster().join("other"))
        .args(["--namespace", "shop", "--service-account", "cart"])
        .args(["--pod-name", "web-1", "--pod-uid", "uid-web-1"]);
    refused(&s.review(&run(forged), &[]).await.1, "invalid bearer token");
    // The pod is deleted (the file is read again on every review).
    write_pods_file(&s.cluster().join("pods.json"), &[]).unwrap();
    refused(&s.review(&token, &[]).await.1, "pods \"web-1\" not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_and_requests_are_checked() {
    let s = StandIn::start();
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "spec": {"token": "x"}})
    .to_string();
    for bearer in [None, Some("wrong"), Some("")] {
        let (status, answer) = s.post(bearer, body.clone()).await;
        assert_eq!(status, 401, "{bearer:?}");
        assert_eq!(answer["kind"], "Status");
        assert_eq!(answer["code"], 401);
        assert_eq!(answer["reason"], "Unauthorized");
    }
    let (status, answer) = s.post(Some(CREDENTIAL), "{not json".into()).await;
    assert_eq!((status, &answer["reason"]), (400, &json!("BadRequest")));
    let empty =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {}});
    let (status, answer) = s.post(Some(CREDENTIAL), empty.to_string()).await;
    assert_eq!((status, &answer["reason"]), (422, &json!("Invalid")));
    let huge = format!(r#"{{"spec": {{"token": "{}"}}}}"#, "a".repeat(200_000));
    let (status, _) = s.post(Some(CREDENTIAL), huge).await;
    assert_eq!(status, 413);
    assert_eq!(s.get("/api/v1/pods").await, 404);
    assert_eq!(s.get(PATH).await, 405);
}
