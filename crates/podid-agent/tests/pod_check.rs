//! "Pods that are gone get nothing", against real processes: `podid agent`
//! with its pod check on, the stand-in kubelet `podid dev kubelet` on HTTPS
//! (a certificate of a test CA the agent is given), and the fake EKS Auth of
//! podid-test-support as the broker, which records every token it is asked
//! for. Asserted against docs/agent.md ("Pod check") and issue 14: a listed
//! pod is served; a removed one is refused (403 AccessDeniedException) within
//! the cache time and its entry is not refreshed; a pod added after the list
//! was cached is served at once; an unreachable kubelet refuses (fail-closed,
//! not ready) or serves (fail-open), said in /readyz and the metrics; a wrong
//! kubelet token is said to be refused, never printed.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use podid_test_support::agent::{
    ask_credentials, loopback_agent_args, AGENT_LISTENING, AGENT_METRICS, AGENT_PROBES,
};
use podid_test_support::dev_kubelet::{DevKubelet, DevKubeletFiles, KUBELET_TOKEN};
use podid_test_support::keys::aws_key_env;
use podid_test_support::kube::TestPod;
use podid_test_support::scrape::scrape;
use podid_test_support::wait::eventually;
use podid_test_support::{
    pod_token, podid_binary, skip_or_fail, ChildProcess, FakeEksAuthServer, FakeEksAuthSettings,
    NODE,
};
use serde_json::Value;

/// docs/agent.md: the default `--pod-check-cache-ms`.
const CACHE: Duration = Duration::from_millis(1000);
/// docs/agent.md: the kubelet call's own timeout.
const KUBELET_TIMEOUT: Duration = Duration::from_secs(2);
/// What a loaded 2-core machine may add to a promised time.
const LOAD_MARGIN: Duration = Duration::from_millis(1500);

fn pod(name: &str) -> TestPod {
    TestPod::running(name, "ns", &format!("uid-{name}"), "node-a")
}

/// One node: its stand-in kubelet, the broker, and `podid agent`.
struct Node {
    binary: PathBuf,
    files: DevKubeletFiles,
    kubelet: Option<DevKubelet>,
    kubelet_addr: SocketAddr,
    agent_token: PathBuf,
    broker: FakeEksAuthServer,
    agent: ChildProcess,
    url: String,
    probes: String,
    metrics: String,
    client: reqwest::Client,
    /// One token per pod (a pod's token changes with the second it is made).
    tokens: Mutex<HashMap<String, String>>,
}

impl Node {
    /// `pods` on the kubelet; the agent sends `kubelet_token` and gets `flags` too.
    /// `None` (said) when the `podid` binary is not built.
    fn start(pods: &[TestPod], flags: &[&str], kubelet_token: &str) -> Option<Node> {
        let binary = podid_binary();
        if !binary.is_file() {
            skip_or_fail(&format!(
                "{} is not built (cargo build -p podid)",
                binary.display()
            ));
            return None;
        }
        let files = DevKubeletFiles::new(pods).unwrap();
        let kubelet = files
            .start(&binary, "127.0.0.1:0".parse().unwrap())
            .unwrap();
        let broker = FakeEksAuthServer::start(FakeEksAuthSettings::default()).unwrap();
        let agent_token = files.dir.path().join("agent-token");
        std::fs::write(&agent_token, kubelet_token).unwrap();
        let mut command = Command::new(&binary);
        command
            .arg("agent")
            .args(loopback_agent_args("c1", &broker.url))
            .args(["--follow-changes", "false", "--kubelet-url", &kubelet.url])
            .arg("--kubelet-ca-file")
            .arg(&files.ca_file)
            .arg("--kubelet-token-file")
            .arg(&agent_token)
            .args(flags)
            .env("PODID_LOG", "info")
            .stdin(Stdio::null());
        for (name, value) in aws_key_env(NODE.access_key_id, NODE.secret_access_key) {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let mut agent = ChildProcess::spawn("podid agent", command, true).unwrap();
        let lines = agent
            .wait_for_lines(
                &[AGENT_LISTENING, AGENT_PROBES, AGENT_METRICS],
                Duration::from_secs(60),
            )
            .unwrap();
        Some(Node {
            binary,
            kubelet_addr: kubelet.addr,
            kubelet: Some(kubelet),
            files,
            agent_token,
            broker,
            agent,
            url: format!("http://{}/v1/credentials", lines[0]),
            probes: format!("http://{}", lines[1]),
            metrics: format!("http://{}/metrics", lines[2]),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn token(&self, pod: &str) -> String {
        let mut tokens = self.tokens.lock().unwrap();
        tokens
            .entry(pod.to_owned())
            .or_insert_with(|| pod_token(pod, 3600))
            .clone()
    }

    /// The pod's ask: status and JSON body.
    async fn ask(&self, pod: &str) -> (u16, Value) {
        ask_credentials(&self.client, &self.url, &self.token(pod)).await
    }

    /// How often the broker was asked for this pod's token.
    fn broker_saw(&self, pod: &str) -> usize {
        let token = self.token(pod);
        self.broker
            .seen()
            .iter()
            .filter(|c| c.token == token)
            .count()
    }

    async fn readyz(&self) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}/readyz", self.probes))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// The value of one series (`name{labels}`); 0 when absent.
    async fn metric(&self, series: &str) -> f64 {
        scrape(&self.client, &self.metrics, series).await
    }

    fn stop_kubelet(&mut self) {
        if let Some(kubelet) = self.kubelet.take() {
            kubelet.process.kill();
        }
    }

    fn restart_kubelet(&mut self) {
        self.kubelet = Some(self.files.start(&self.binary, self.kubelet_addr).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_pod_is_refused_within_the_cache_time_and_not_refreshed() {
    // Credentials of an hour refreshed 3595 s before expiry: every ~5 s.
    let flags = ["--refresh-lead-secs", "3595"];
    let pods = [pod("asking"), pod("quiet"), pod("stays")];
    let Some(node) = Node::start(&pods, &flags, KUBELET_TOKEN) else {
        return;
    };
    for p in ["asking", "quiet", "stays"] {
        assert_eq!(node.ask(p).await.0, 200, "{p}");
        assert_eq!(node.broker_saw(p), 1, "{p}");
    }

    node.files.set_pods(&[pod("stays")]).unwrap();
    let took = eventually(CACHE + LOAD_MARGIN, "the removed pod refused", || async {
        node.ask("asking").await.0 != 200
    })
    .await;
    println!("a removed pod refused after {took:?} (cache {CACHE:?})");
    let (status, body) = node.ask("asking").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "AccessDeniedException", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("not running on this node")),
        "{body}"
    );
    assert_eq!(
        node.broker_saw("asking"),
        1,
        "a gone pod costs no broker call"
    );

    // The quiet pod never asks again: the refresh pass finds it gone and drops it.
    let evicted = "podid_agent_cache_evictions_total{result=\"pod_gone\"}";
    let took = eventually(
        Duration::from_secs(30),
        "the quiet pod's entry dropped",
        || async {
            assert_eq!(node.ask("stays").await.0, 200);
            node.metric(evicted).await >= 2.0
        },
    )
    .await;
    println!("the quiet pod's entry dropped by the refresh pass after {took:?}");
    assert_eq!(node.broker_saw("quiet"), 1, "no ghost renewal");
    assert_eq!(node.metric("podid_agent_cached_entries").await, 1.0);
    // The pod that stays is refreshed meanwhile.
    eventually(
        Duration::from_secs(30),
        "the staying pod refreshed",
        || async {
            assert_eq!(node.ask("stays").await.0, 200);
            node.broker_saw("stays") >= 2
        },
    )
    .await;
    assert_eq!(node.broker_saw("quiet"), 1);
    assert!(
        node.metric("podid_agent_pod_check_total{result=\"gone\"}")
            .await
            >= 2.0
    );
    assert!(
        node.metric("podid_agent_pod_check_total{result=\"running\"}")
            .await
            >= 4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_added_after_the_list_was_cached_is_served_at_once() {
    // Lists kept 10 s: the new pod is asked well within that.
    let Some(node) = Node::start(
        &[pod("first")],
        &["--pod-check-cache-ms", "10000"],
        KUBELET_TOKEN,
    ) else {
        return;
    };
    assert_eq!(node.ask("first").await.0, 200);
    node.files.set_pods(&[pod("first"), pod("new")]).unwrap();
    // A list younger than 250 ms that lacks a pod proves it gone (a pod's
    // container does not start that soon after the kubelet admits it): this
    // waits out that window, a precondition of the case, not a synchronisation.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ok = "podid_agent_kubelet_lists_total{result=\"ok\"}";
    let lists = node.metric(ok).await;
    let started = Instant::now();
    let (status, body) = node.ask("new").await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(took < LOAD_MARGIN, "{took:?}");
    assert_eq!(node.metric(ok).await, lists + 1.0, "one fresh list");
    assert_eq!(node.broker_saw("new"), 1);

    // A pod that never ran, asked again and again: refused, at most one list per 250 ms.
    let started = Instant::now();
    for _ in 0..20 {
        let (status, body) = node.ask("never-ran").await;
        assert_eq!(status, 403, "{body}");
    }
    let bound = (started.elapsed().as_millis() / 250) as f64 + 1.0;
    let extra = node.metric(ok).await - (lists + 1.0);
    assert!(extra <= bound, "{extra} lists for 20 asks (bound {bound})");
    assert_eq!(node.broker_saw("never-ran"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_kubelet_fails_closed_and_says_so() {
    let Some(mut node) = Node::start(&[pod("p1")], &[], KUBELET_TOKEN) else {
        return;
    };
    assert_eq!(node.ask("p1").await.0, 200);
    let (status, ready) = node.readyz().await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["podCheck"]["mode"], "fail-closed", "{ready}");
    assert_eq!(ready["podCheck"]["kubelet"], "up", "{ready}");

    node.stop_kubelet();
    let took = eventually(
        CACHE + KUBELET_TIMEOUT + LOAD_MARGIN,
        "refused with the kubelet gone",
        || async { node.ask("p1").await.0 != 200 },
    )
    .await;
    println!("fail-closed refused after {took:?}");
    let (status, body) = node.ask("p1").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "ServiceUnavailableException", "{body}");
    let (status, ready) = node.readyz().await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["podCheck"]["kubelet"], "down", "{ready}");
    assert!(
        ready["podCheck"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach the kubelet")),
        "{ready}"
    );
    assert_eq!(node.metric("podid_agent_kubelet_up").await, 0.0);
    assert!(
        node.metric("podid_agent_pod_check_total{result=\"unverified_closed\"}")
            .await
            >= 1.0
    );
    assert!(
        node.metric("podid_agent_kubelet_lists_total{result=\"unreachable\"}")
            .await
            >= 1.0
    );
    assert_eq!(node.broker_saw("p1"), 1);

    // The kubelet back: served and ready again.
    node.restart_kubelet();
    eventually(Duration::from_secs(10), "served again", || async {
        node.ask("p1").await.0 == 200
    })
    .await;
    let (status, ready) = node.readyz().await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(node.metric("podid_agent_kubelet_up").await, 1.0);
    assert_eq!(node.broker_saw("p1"), 1, "the entry was kept meanwhile");
}

#[test]
fn a_pod_check_that_cannot_work_stops_the_agent_at_start() {
    let binary = podid_binary();
    if !binary.is_file() {
        skip_or_fail(&format!(
            "{} is not built (cargo build -p podid)",
            binary.display()
        ));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let missing = dir.path().join("missing-token");
    let cases: [(&str, &std::path::Path, &str); 2] = [
        (
            "https://127.0.0.1:10250",
            &missing,
            "the kubelet token file is unusable: cannot read the token file",
        ),
        (
            "ftp://node",
            &token,
            "--kubelet-url: 'ftp://node/pods' is not an http:// or https:// URL",
        ),
    ];
    for (url, token_file, message) in cases {
        let mut command = Command::new(&binary);
        command
            .arg("agent")
            .args(loopback_agent_args("c1", "http://127.0.0.1:9"))
            .args(["--follow-changes", "false", "--kubelet-url", url])
            .arg("--kubelet-token-file")
            .arg(token_file);
        for (name, value) in aws_key_env(NODE.access_key_id, NODE.secret_access_key) {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let err =
            podid_test_support::run_to_success("podid agent", command, Duration::from_secs(60))
                .unwrap_err()
                .to_string();
        assert!(err.contains(message), "{url}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_kubelet_fails_open_when_told_and_says_so() {
    let Some(mut node) = Node::start(&[pod("p1")], &["--pod-check", "fail-open"], KUBELET_TOKEN)
    else {
        return;
    };
    assert_eq!(node.ask("p1").await.0, 200);
    node.stop_kubelet();
    let open = "podid_agent_pod_check_total{result=\"unverified_open\"}";
    eventually(
        CACHE + KUBELET_TIMEOUT + LOAD_MARGIN,
        "served unverified",
        || async {
            let (status, body) = node.ask("p1").await;
            assert_eq!(status, 200, "{body}");
            node.metric(open).await >= 1.0
        },
    )
    .await;
    // A pod no list ever showed is served too: nothing can be checked.
    assert_eq!(node.ask("p2").await.0, 200);
    let (status, ready) = node.readyz().await;
    assert_eq!(status, 200, "fail-open stays ready: {ready}");
    assert_eq!(ready["podCheck"]["mode"], "fail-open", "{ready}");
    assert_eq!(ready["podCheck"]["kubelet"], "down", "{ready}");
    assert_eq!(node.metric("podid_agent_kubelet_up").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_kubelet_token_is_said_and_never_printed() {
    let wrong = "wrong-kubelet-token-5ecret";
    let Some(node) = Node::start(&[pod("p1")], &[], wrong) else {
        return;
    };
    // The stand-in itself: 401 without the token file's contents, the PodList with them.
    let ca = std::fs::read(&node.files.ca_file).unwrap();
    let https = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let pods = format!("https://localhost:{}/pods", node.kubelet_addr.port());
    let refused = https.get(&pods).bearer_auth(wrong).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let listed = https
        .get(&pods)
        .bearer_auth(KUBELET_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    let list: Value = listed.json().await.unwrap();
    assert_eq!(list["kind"], "PodList", "{list}");
    assert_eq!(list["items"][0]["metadata"]["uid"], "uid-p1", "{list}");

    let (status, body) = node.ask("p1").await;
    assert_eq!(status, 503, "{body}");
    let (status, ready) = node.readyz().await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["podCheck"]["kubelet"], "unauthorized", "{ready}");
    let error = ready["podCheck"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("401") && error.contains("nodes/proxy"),
        "{error}"
    );
    assert!(
        node.metric("podid_agent_kubelet_lists_total{result=\"unauthorized\"}")
            .await
            >= 1.0
    );
    assert_eq!(node.broker_saw("p1"), 0);

    // The right token in the file: read again, served.
    podid_test_support::tls::write_atomically(&node.agent_token, KUBELET_TOKEN.as_bytes()).unwrap();
    eventually(
        Duration::from_secs(10),
        "served with the right token",
        || async { node.ask("p1").await.0 == 200 },
    )
    .await;
    let log = node.agent.stderr();
    assert!(
        log.contains("the kubelet refused the agent's credentials"),
        "{log}"
    );
    assert!(!log.contains(wrong), "the token is in the agent's log");
    assert!(
        !log.contains(KUBELET_TOKEN),
        "the token is in the agent's log"
    );
}
