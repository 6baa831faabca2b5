//! Hostile clients against the three real processes (`podid server`,
//! `podid agent`, `podid webhook`), each run with 1 s head, body and idle
//! deadlines: 500 half-open connections, a head trickled a byte every
//! 100 ms, a large body trickled, a kept-alive connection whose next head
//! trickles, all at once. Each slow client must be cut by its deadline
//! (closed no sooner than the deadline and within [`MARGIN`] after it), a
//! normal request must succeed during the attack within [`NORMAL`], and the
//! process's peak resident memory (VmHWM) must stay under a bound far below
//! the deployed limits (server 512 MiB, agent and webhook 256 MiB): 128 MiB
//! for the server, 80 MiB for the agent, 96 MiB for the webhook (measured,
//! debug builds, 2-core VM: server 38 → 60 MiB, agent 26 → 48 MiB, webhook
//! 31 → 57 MiB over the attack; a TLS connection holds rustls' buffers). A
//! head over the size limit is answered 431.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;
use std::time::{Duration, Instant};

use podid_test_support::agent::{loopback_agent_args, AGENT_LISTENING};
use podid_test_support::attack::{memory, Attack, AttackPlan, AttackReport, Outcome, Target};
use podid_test_support::fake_eks_auth::{FakeEksAuthServer, FakeEksAuthSettings};
use podid_test_support::keys::aws_key_env;
use podid_test_support::sigv4::Signer;
use podid_test_support::tls::{CertFiles, TestCa};
use podid_test_support::{
    pod_token, ChildProcess, PodidServerLaunch, TestKey, ADMIN, NODE, READER,
};
use tokio::io::AsyncWriteExt;

/// Every deadline of the processes under attack.
const DEADLINE: Duration = Duration::from_secs(1);
/// What the flags set.
const LIMITS: [&str; 8] = [
    "--header-read-timeout-ms",
    "1000",
    "--body-read-timeout-ms",
    "1000",
    "--idle-timeout-ms",
    "1000",
    "--max-connections",
    "1024",
];
/// The scheduling slack allowed past a deadline: 500 connections accepted
/// at once on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(2500);
/// The bound of the normal request made during the attack.
const NORMAL: Duration = Duration::from_secs(3);
/// The longest any wait here may take.
const WAIT: Duration = Duration::from_secs(60);

/// Closed by the server no sooner than `deadline` (less 50 ms) and no later
/// than `deadline` + [`MARGIN`].
#[track_caller]
fn assert_cut(what: &str, outcome: &Outcome, deadline: Duration) {
    assert!(outcome.closed, "{what}: never closed: {outcome:?}");
    assert!(
        outcome.after + Duration::from_millis(50) >= deadline && outcome.after <= deadline + MARGIN,
        "{what}: closed after {:?}, deadline {deadline:?}",
        outcome.after
    );
}

/// The checks every process shares: half-open heads, the slow head and the
/// trickled next head of a kept-alive connection are cut at their deadline
/// without an answer; the slow body within its deadline.
fn assert_all_cut(report: &AttackReport, plan: &AttackPlan) {
    assert_eq!(report.half_open.len(), plan.half_open);
    for (i, outcome) in report.half_open.iter().enumerate() {
        assert_cut(&format!("half-open {i}"), outcome, DEADLINE);
        assert!(outcome.received.is_empty(), "half-open {i}: {outcome:?}");
    }
    assert_cut("slow head", &report.slow_head, DEADLINE);
    assert!(report.slow_head.sent >= 5, "{:?}", report.slow_head);
    // The next head's deadline starts at its first byte, sent right after the answer.
    assert_cut("kept-alive", &report.keep_alive, DEADLINE);
    assert!(
        report.keep_alive.received.is_empty(),
        "{:?}",
        report.keep_alive
    );
    assert!(report.slow_body.closed, "slow body: {:?}", report.slow_body);
    assert!(
        report.slow_body.after <= DEADLINE + plan.every + MARGIN,
        "slow body closed after {:?}",
        report.slow_body.after
    );
}

/// Runs `plan` against `target` (process `pid`), making `normal` meanwhile;
/// the report and how long `normal` took.
async fn attack<F: std::future::Future<Output = ()>>(
    pid: u32,
    target: &Target,
    plan: &AttackPlan,
    normal: F,
) -> (AttackReport, Duration) {
    let before = memory(pid).unwrap();
    println!("before the attack: VmRSS {} KiB", before.rss_kib);
    let attack = Attack::launch(target, plan).await.unwrap();
    let started = Instant::now();
    tokio::time::timeout(WAIT, normal)
        .await
        .expect("the normal request was answered");
    let took = started.elapsed();
    (attack.finish().await.unwrap(), took)
}

/// Sends `head` (complete) and returns the status of the answer.
async fn status_of(target: &Target, head: String) -> Option<u16> {
    let mut conn = target.connect().await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.flush().await.unwrap();
    let since = tokio::time::Instant::now();
    let outcome =
        podid_test_support::attack::trickle(&mut conn, &[], plan_every(), since, WAIT).await;
    outcome.status()
}

fn plan_every() -> Duration {
    Duration::from_millis(100)
}

/// A head of about `bytes` bytes.
fn big_head(host: &str, path: &str, bytes: usize) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(bytes)
    )
}

/// Makes `key` the process's only AWS credentials.
fn only_key(cmd: &mut Command, key: &TestKey) {
    for (name, value) in aws_key_env(key.access_key_id, key.secret_access_key) {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
}

#[track_caller]
fn assert_memory_under(pid: u32, what: &str, bound_mib: u64) {
    let m = memory(pid).unwrap();
    println!(
        "{what}: VmHWM {} KiB, VmRSS {} KiB (bound {bound_mib} MiB)",
        m.hwm_kib, m.rss_kib
    );
    assert!(
        m.hwm_kib <= bound_mib * 1024,
        "{what}: peak resident memory {} KiB over {bound_mib} MiB",
        m.hwm_kib
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_cuts_slow_clients_and_answers_during_the_attack() {
    let dir = tempfile::tempdir().unwrap();
    let keys = podid_test_support::write_keys_file(dir.path()).unwrap();
    let server = PodidServerLaunch::new(env!("CARGO_BIN_EXE_podid"))
        .args([
            "--database-url",
            &format!("sqlite://{}", dir.path().join("podid.db").display()),
        ])
        .args([std::ffi::OsStr::new("--keys-file"), keys.as_os_str()])
        .args(LIMITS)
        .start()
        .unwrap();
    let target = Target::plain(server.addr);
    let mut plan = AttackPlan::new(
        "127.0.0.1",
        "POST",
        "/clusters/blue/pod-identity-associations",
    );
    plan.every = plan_every();
    let url = format!("{}/podid/v1/clusters", server.endpoint);
    let normal = async {
        let signer = Signer::now(&ADMIN, "eks");
        let headers = signer.headers("GET", &url, &[], b"").unwrap();
        let mut request = reqwest::Client::new().get(&url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    };
    let (report, took) = attack(server.pid(), &target, &plan, normal).await;
    assert!(took <= NORMAL, "the signed request took {took:?}");
    assert_all_cut(&report, &plan);
    assert_eq!(
        report.slow_body.status(),
        Some(408),
        "{:?}",
        report.slow_body
    );
    let text = String::from_utf8_lossy(&report.slow_body.received);
    assert!(
        text.to_ascii_lowercase()
            .contains("x-amzn-errortype: requesttimeoutexception"),
        "{text}"
    );
    assert!(
        text.contains(r#""__type":"RequestTimeoutException""#),
        "{text}"
    );
    assert_cut("slow body", &report.slow_body, DEADLINE);
    assert_eq!(
        status_of(&target, big_head("127.0.0.1", "/healthz", 70 * 1024)).await,
        Some(431)
    );
    assert_memory_under(server.pid(), "podid server", 128);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_cuts_slow_clients_and_serves_credentials_during_the_attack() {
    let upstream = FakeEksAuthServer::start(FakeEksAuthSettings::default()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podid"));
    cmd.arg("agent")
        .args(loopback_agent_args("attack", &upstream.url))
        .args(LIMITS)
        .env("PODID_LOG", "warn");
    only_key(&mut cmd, &NODE);
    let mut agent = ChildProcess::spawn("podid agent", cmd, true).unwrap();
    let addr: std::net::SocketAddr = agent
        .wait_for_line(AGENT_LISTENING, WAIT)
        .unwrap()
        .parse()
        .unwrap();
    let target = Target::plain(addr);
    let host = addr.to_string();
    let mut plan = AttackPlan::new(&host, "GET", "/v1/credentials");
    plan.every = plan_every();
    plan.keep_alive_request = format!("GET /nowhere HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
    let url = format!("http://{addr}/v1/credentials");
    let normal = async {
        let answer = reqwest::Client::new()
            .get(&url)
            .header("authorization", pod_token("attack", 3600))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert!(body["AccessKeyId"].is_string(), "{body}");
    };
    let (report, took) = attack(agent.pid(), &target, &plan, normal).await;
    assert!(took <= NORMAL, "the credential request took {took:?}");
    assert_all_cut(&report, &plan);
    assert_eq!(
        status_of(&target, big_head(&host, "/v1/credentials", 30 * 1024)).await,
        Some(431)
    );
    assert_memory_under(agent.pid(), "podid agent", 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_cuts_slow_clients_and_admits_during_the_attack() {
    let ca = TestCa::new("attack CA").unwrap();
    let files = CertFiles::new(&ca.leaf(1, "webhook").unwrap()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podid"));
    cmd.arg("webhook")
        .args(["--listen", "127.0.0.1:0", "--cluster-name", "attack"])
        .args(["--endpoint", "http://127.0.0.1:9"])
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .args(LIMITS)
        .env("PODID_LOG", "warn");
    only_key(&mut cmd, &READER);
    let mut webhook = ChildProcess::spawn("podid webhook", cmd, true).unwrap();
    let url = webhook
        .wait_for_line("podid webhook listening on ", WAIT)
        .unwrap();
    let addr: std::net::SocketAddr = url.trim_start_matches("https://").parse().unwrap();
    let target = Target::tls(addr, ca.client_config().unwrap());
    let mut plan = AttackPlan::new("localhost", "POST", "/mutate");
    plan.every = plan_every();
    // TCP connections that never start their TLS handshake (cut at its 10 s deadline).
    plan.silent = 50;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let normal = async {
        // An UPDATE is answered without asking podid's server.
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "attack-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "default",
                "operation": "UPDATE",
                "userInfo": {"username": "admin"},
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
            }
        });
        let answer = client
            .post(format!("{url}/mutate"))
            .json(&review)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["response"]["allowed"], true, "{body}");
    };
    let (report, took) = attack(webhook.pid(), &target, &plan, normal).await;
    assert!(took <= NORMAL, "the admission took {took:?}");
    assert_all_cut(&report, &plan);
    assert_eq!(
        report.slow_body.status(),
        Some(408),
        "{:?}",
        report.slow_body
    );
    assert!(
        String::from_utf8_lossy(&report.slow_body.received).contains(r#""code":"RequestTimeout""#),
        "{:?}",
        report.slow_body
    );
    assert_cut("slow body", &report.slow_body, DEADLINE);
    assert_eq!(report.silent.len(), 50);
    for (i, outcome) in report.silent.iter().enumerate() {
        assert_cut(
            &format!("silent {i}"),
            outcome,
            podid_listen::ListenLimits::webhook().handshake_timeout,
        );
    }
    assert_eq!(
        status_of(&target, big_head("localhost", "/healthz", 70 * 1024)).await,
        Some(431)
    );
    assert_memory_under(webhook.pid(), "podid webhook", 96);
}
