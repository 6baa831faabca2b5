//! TokenReview at the broker against real processes (build them first:
//! `cargo build -p podid`): a `podid server` whose broker asks a fake STS, and
//! `podid dev apiserver` (the stand-in TokenReview endpoint, HTTPS with a CA
//! made for the test) answering from a pods file. The cluster is registered
//! with the `podid` CLI's `--token-review-*` flags; pod tokens are minted by
//! `podid dev token`. Expected messages are the literals of docs/broker.md.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use podid_test_support::kube::{write_pods_file, DevApiServer, DevApiServerLaunch, TestPod};
use podid_test_support::sigv4::Signer;
use podid_test_support::sts_broker::{StsBroker, NAMESPACE, SERVICE_ACCOUNT};
use podid_test_support::tls::{CertFiles, TestCa};
use podid_test_support::wait::eventually;
use podid_test_support::{podid_binary, run_to_success, ADMIN, NODE};
use serde_json::{json, Value};

/// The cluster whose API server is asked.
const REVIEWED: &str = "reviewed";
/// What the broker answers when the API server does not authenticate a token.
const NOT_AUTHENTICATED: &str = "the cluster's API server does not authenticate this token";

struct World {
    broker: StsBroker,
    api: Option<DevApiServer>,
    dir: tempfile::TempDir,
    _certs: CertFiles,
    /// The credential the stand-in requires (and the broker sends).
    credential: String,
    http: reqwest::Client,
}

fn cluster_dir(dir: &Path) -> PathBuf {
    dir.join("cluster")
}

impl World {
    /// A server started with `server_args`, the stand-in API server listing
    /// pod `web` (uid `uid-web`), and cluster [`REVIEWED`] registered with it.
    fn start(server_args: &[&str]) -> World {
        let broker = StsBroker::start(server_args).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut create = Command::new(podid_binary());
        create.args(["dev", "cluster", "create", "--name", REVIEWED, "--dir"]);
        create.arg(cluster_dir(dir.path()));
        run_to_success("podid dev cluster create", create, Duration::from_secs(60)).unwrap();
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(cluster_dir(dir.path()).join("cluster.json")).unwrap(),
        )
        .unwrap();
        let credential = format!(
            "review-credential-{}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        std::fs::write(dir.path().join("credential"), &credential).unwrap();
        let pods = dir.path().join("pods.json");
        write_pods_file(&pods, &[pod("web")]).unwrap();
        let ca = TestCa::new("apiserver-ca").unwrap();
        let certs = CertFiles::new(&ca.leaf(1, "kube-apiserver").unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
        let api = DevApiServerLaunch {
            binary: podid_binary(),
            cluster_dir: cluster_dir(dir.path()),
            pods_file: pods,
            token_file: dir.path().join("credential"),
            tls: Some((certs.cert.clone(), certs.key.clone())),
        }
        .start()
        .unwrap();
        assert!(api.url.starts_with("https://"), "{}", api.url);
        let path = |name: &str| dir.path().join(name).display().to_string();
        let jwks = cluster_dir(dir.path())
            .join("jwks.json")
            .display()
            .to_string();
        broker
            .cli(&[
                "cluster",
                "register",
                "--name",
                REVIEWED,
                "--issuer",
                meta["issuer"].as_str().unwrap(),
                "--jwks-file",
                &jwks,
                "--token-review-url",
                &api.url,
                "--token-review-ca-file",
                &path("ca.pem"),
                "--token-review-token-file",
                &path("credential"),
            ])
            .unwrap();
        broker.associate(REVIEWED).unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        World {
            broker,
            api: Some(api),
            dir,
            _certs: certs,
            credential,
            http,
        }
    }

    /// The pods the stand-in lists from now on.
    fn set_pods(&self, pods: &[TestPod]) {
        write_pods_file(&self.dir.path().join("pods.json"), pods).unwrap();
    }

    /// A token of pod `name` (uid `uid-{name}`) of ns/sa, minted by `podid dev token`.
    fn token(&self, name: &str) -> String {
        let mut command = Command::new(podid_binary());
        command
            .args(["dev", "token", "--cluster-dir"])
            .arg(cluster_dir(self.dir.path()))
            .args([
                "--namespace",
                NAMESPACE,
                "--service-account",
                SERVICE_ACCOUNT,
            ])
            .args(["--pod-name", name, "--pod-uid", &format!("uid-{name}")]);
        let out = run_to_success("podid dev token", command, Duration::from_secs(60)).unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// `AssumeRoleForPodIdentity` for [`REVIEWED`], signed with the node key.
    async fn assume(&self, token: &str) -> (u16, String, Value) {
        let url = format!(
            "{}/clusters/{REVIEWED}/assume-role-for-pod-identity",
            self.broker.endpoint()
        );
        let body = json!({ "token": token }).to_string();
        let headers = [("content-type", "application/json")];
        let signed = Signer::now(&NODE, "eks-auth")
            .headers("POST", &url, &headers, body.as_bytes())
            .unwrap();
        let mut request = self.http.post(&url).body(body);
        for (name, value) in headers.iter().copied() {
            request = request.header(name, value);
        }
        for (name, value) in signed {
            request = request.header(name, value);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        let kind = body["__type"].as_str().unwrap_or("").to_owned();
        (status, kind, body)
    }

    /// A request signed by the admin key: status and raw body.
    async fn admin(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let url = format!("{}{path}", self.broker.endpoint());
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("content-type", "application/json")]
        };
        let signed = Signer::now(&ADMIN, "eks")
            .headers(method, &url, headers, body.as_bytes())
            .unwrap();
        let mut request = self
            .http
            .request(method.parse().unwrap(), &url)
            .body(body.to_owned());
        for (name, value) in headers.iter().copied().chain(
            signed
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        ) {
            request = request.header(name, value);
        }
        let answer = request.send().await.unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }

    /// `podid_token_reviews_total{result}`.
    async fn reviews(&self, result: &str) -> u64 {
        let (status, text) = self.admin("GET", "/metrics", "").await;
        assert_eq!(status, 200);
        let line = format!("podid_token_reviews_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .map_or(0, |n| n.trim().parse().unwrap())
    }
}

fn pod(name: &str) -> TestPod {
    TestPod::running(name, NAMESPACE, &format!("uid-{name}"), "node-1")
}

fn assert_status(answer: &(u16, String, Value), status: u16, kind: &str) {
    assert_eq!(
        (answer.0, answer.1.as_str()),
        (status, kind),
        "{}",
        answer.2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_removed_from_the_api_server_is_refused_within_the_cache_time() {
    let world = World::start(&["--token-review-cache-secs", "1"]);
    let token = world.token("web");
    let first = world.assume(&token).await;
    assert_status(&first, 200, "");
    assert!(first.2["credentials"]["accessKeyId"].is_string());

    // The pod is deleted: its token still verifies with the cluster's key.
    world.set_pods(&[pod("other")]);
    let removed = Instant::now();
    let last = std::sync::Mutex::new(None);
    let took = eventually(Duration::from_secs(15), "the refusal", || async {
        let answer = world.assume(&token).await;
        let refused = answer.0 == 403;
        *last.lock().unwrap() = Some(answer);
        refused
    })
    .await;
    let answer = last.into_inner().unwrap().unwrap();
    assert_status(&answer, 403, "AccessDeniedException");
    assert_eq!(answer.2["message"], NOT_AUTHENTICATED);
    // One cache period (1 s) plus polling and a loaded machine's slack.
    assert!(
        removed.elapsed() < Duration::from_secs(6),
        "refused after {took:?}"
    );
    eprintln!("refused {took:?} after the pod left the list (cache 1 s)");

    // A pod that never was in the list: refused at once.
    let never = world.assume(&world.token("ghost")).await;
    assert_status(&never, 403, "AccessDeniedException");

    // The refusal is audited as denied (events are written in batches).
    let path = format!("/podid/v1/audit?cluster={REVIEWED}&kind=credential&outcome=denied");
    eventually(
        Duration::from_secs(15),
        "the denied audit event",
        || async {
            let (status, page) = world.admin("GET", &path, "").await;
            assert_eq!(status, 200, "{page}");
            let page: Value = serde_json::from_str(&page).unwrap();
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["podName"] == "web" && e["errorCode"] == "AccessDeniedException")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_cached_per_token_and_cost_one_round_trip() {
    let world = World::start(&[]);
    // Issue the pod's credentials once, so later calls hit the broker's credential cache.
    assert_status(&world.assume(&world.token("web")).await, 200, "");
    assert_eq!(world.reviews("authenticated").await, 1);

    // Each new token of the pod: one review, then answered from the review cache.
    let (mut sent, mut cached) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let token = world.token("web");
        let started = Instant::now();
        assert_status(&world.assume(&token).await, 200, "");
        sent.push(started.elapsed());
        let started = Instant::now();
        assert_status(&world.assume(&token).await, 200, "");
        cached.push(started.elapsed());
    }
    assert_eq!(world.reviews("authenticated").await, 6);
    assert_eq!(world.reviews("cached").await, 5);
    sent.sort();
    cached.sort();
    eprintln!(
        "AssumeRoleForPodIdentity, credentials cached: median {:?} with a TokenReview sent \
         (one HTTPS round trip on a kept-alive connection), {:?} with the review cached",
        sent[2], cached[2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_fails_closed() {
    let mut world = World::start(&["--token-review-cache-secs", "0"]);
    let token = world.token("web");
    assert_status(&world.assume(&token).await, 200, "");
    world.api.take().unwrap().process.kill();
    let answer = world.assume(&token).await;
    assert_status(&answer, 503, "ServiceUnavailableException");
    let message = answer.2["message"].as_str().unwrap();
    assert!(
        message.contains("cannot ask cluster reviewed's API server"),
        "{message}"
    );
    assert!(world.reviews("failed").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_review_credential_is_reported_without_leaking_it() {
    let mut world = World::start(&["--token-review-cache-secs", "0"]);
    // The stand-in now expects another credential than the one registered.
    std::fs::write(world.dir.path().join("credential"), "rotated-elsewhere").unwrap();
    let answer = world.assume(&world.token("web")).await;
    assert_status(&answer, 503, "ServiceUnavailableException");
    let message = answer.2["message"].as_str().unwrap();
    assert!(
        message.contains("refused podid's review credential (HTTP 401)"),
        "{message}"
    );
    assert!(!answer.2.to_string().contains(&world.credential));
    let log = world.broker.stop().unwrap();
    assert!(log.contains("TokenReview failed"), "{log}");
    assert!(
        !log.contains(&world.credential),
        "the log holds the credential"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_credential_is_never_shown() {
    let mut world = World::start(&[]);
    let secret = "another-review-credential-0123456789";
    // A registration's raw answer.
    let jwks = std::fs::read_to_string(cluster_dir(world.dir.path()).join("jwks.json")).unwrap();
    let register = json!({
        "name": "second",
        "issuer": "https://oidc.second.test",
        "jwks": serde_json::from_str::<Value>(&jwks).unwrap(),
        "tokenReview": {"apiServerUrl": "https://10.0.0.1:6443", "token": secret},
    });
    let (status, raw) = world
        .admin("POST", "/podid/v1/clusters", &register.to_string())
        .await;
    assert_eq!(status, 200, "{raw}");
    assert!(
        raw.contains("\"apiServerUrl\":\"https://10.0.0.1:6443\""),
        "{raw}"
    );
    assert!(!raw.contains(secret) && !raw.contains("\"token\""), "{raw}");
    // An update's, the cluster's and the list's.
    let update = json!({"tokenReview": {"apiServerUrl": "https://10.0.0.2:6443", "token": secret}});
    let (status, raw) = world
        .admin("PATCH", "/podid/v1/clusters/second", &update.to_string())
        .await;
    assert_eq!(status, 200, "{raw}");
    assert!(!raw.contains(secret), "{raw}");
    for path in [
        "/podid/v1/clusters/second",
        "/podid/v1/clusters",
        "/podid/v1/clusters/reviewed",
    ] {
        let (status, raw) = world.admin("GET", path, "").await;
        assert_eq!(status, 200, "{raw}");
        assert!(raw.contains("apiServerUrl"), "{path}: {raw}");
        assert!(
            !raw.contains(secret) && !raw.contains(&world.credential),
            "{path}: {raw}"
        );
    }
    // The change audit (written in batches) names the URL only.
    let raw = std::sync::Mutex::new(String::new());
    eventually(
        Duration::from_secs(15),
        "the update's change event",
        || async {
            let (status, page) = world
                .admin("GET", "/podid/v1/audit?cluster=second&kind=change", "")
                .await;
            let found = status == 200 && page.contains("https://10.0.0.2:6443");
            *raw.lock().unwrap() = page;
            found
        },
    )
    .await;
    let raw = raw.into_inner().unwrap();
    assert!(raw.contains("https://10.0.0.1:6443"), "{raw}");
    assert!(!raw.contains(secret), "{raw}");
    // Bad settings: 400 InvalidParameterException, the token not echoed.
    let plain = json!({"tokenReview": {"apiServerUrl": "http://10.0.0.1", "token": secret}});
    let (status, raw) = world
        .admin("PATCH", "/podid/v1/clusters/second", &plain.to_string())
        .await;
    assert_eq!(status, 400, "{raw}");
    assert!(
        raw.contains("InvalidParameterException") && !raw.contains(secret),
        "{raw}"
    );
    let no_token = json!({"tokenReview": {"apiServerUrl": "https://10.0.0.1"}});
    let (status, raw) = world
        .admin("PATCH", "/podid/v1/clusters/second", &no_token.to_string())
        .await;
    assert_eq!(status, 400, "{raw}");
    // Turned off: gone from the cluster.
    let off = json!({"disableTokenReview": true});
    let (status, raw) = world
        .admin("PATCH", "/podid/v1/clusters/second", &off.to_string())
        .await;
    assert_eq!(status, 200, "{raw}");
    assert!(!raw.contains("tokenReview"), "{raw}");
    let log = world.broker.stop().unwrap();
    assert!(!log.contains(secret) && !log.contains(&world.credential));
}
