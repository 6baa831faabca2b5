//! Garbage is not forwarded for free: 2,000 forged tokens (a real pod's
//! claims, unexpired, signature replaced) sent from one address through one
//! `podid agent` with its default flags to a real `podid server` broker
//! (`podid_test_support::sts_broker`: a fake STS behind it), each asked
//! four times as an SDK's retries would, while real pods on their own
//! addresses ask for credentials.
//!
//! Asserted against docs/agent.md: the per-client limit (50 requests a second,
//! bursts of 100, per source address, on by default) bounds the broker calls
//! the flood costs to 100 + 50 per second of flood, counted in the broker's
//! own audit trail; a refused token's retries are answered from memory with
//! the broker's status, code and message (one broker call per token); pods
//! on other addresses get credentials during and after, and the flooding
//! address again once its bucket refills. Loopback has 127.0.0.0/8: each
//! client binds its own source address.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use podid_test_support::agent::{loopback_agent_args, AGENT_LISTENING, AGENT_METRICS};
use podid_test_support::keys::aws_key_env;
use podid_test_support::sts_broker::{StsBroker, CLUSTER};
use podid_test_support::{podid_binary, unsigned_token, ChildProcess, NODE};
use serde_json::Value;

/// Forged tokens in the flood.
const FORGED: usize = 2_000;
/// How often each is asked (an SDK's retries).
const ASKS: usize = 4;
/// Concurrent connections of the flood.
const FLOOD_CONNECTIONS: usize = 64;
/// Pods asking meanwhile, each on its own address.
const PODS: u8 = 4;
/// docs/agent.md: the per-client limit's defaults.
const CLIENT_RATE: f64 = 50.0;
const CLIENT_BURST: f64 = 100.0;
/// How long the flooding address may take to get credentials again after the
/// flood (its bucket refills in 2 s; the rest is a loaded machine's margin).
const RECOVERY: Duration = Duration::from_secs(30);

/// `podid agent` with its default flags on 127.0.0.1, signing with the node key.
struct RunningAgent {
    url: String,
    metrics_url: String,
    _process: ChildProcess,
}

fn start_agent(broker: &StsBroker) -> RunningAgent {
    let mut command = Command::new(podid_binary());
    command
        .arg("agent")
        .args(loopback_agent_args(CLUSTER, &broker.endpoint()))
        .env("PODID_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in aws_key_env(NODE.access_key_id, NODE.secret_access_key) {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let mut process = ChildProcess::spawn("podid agent", command, false).unwrap();
    let lines = process
        .wait_for_lines(&[AGENT_LISTENING, AGENT_METRICS], Duration::from_secs(60))
        .unwrap();
    RunningAgent {
        url: format!("http://{}/v1/credentials", lines[0]),
        metrics_url: format!("http://{}/metrics", lines[1]),
        _process: process,
    }
}

/// A client whose connections come from `source` (any of 127.0.0.0/8).
fn client_from(source: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(source))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn ask(client: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    podid_test_support::agent::ask_credentials(client, url, token).await
}

/// Forged tokens: a real token's header and claims, the pod renamed, the
/// signature replaced by other bytes of the same length.
struct Forger {
    header: Value,
    claims: Value,
    signature_len: usize,
}

impl Forger {
    fn from(valid: &str) -> Forger {
        let parts: Vec<Vec<u8>> = valid
            .split('.')
            .map(|p| URL_SAFE_NO_PAD.decode(p).unwrap())
            .collect();
        Forger {
            header: serde_json::from_slice(&parts[0]).unwrap(),
            claims: serde_json::from_slice(&parts[1]).unwrap(),
            signature_len: parts[2].len(),
        }
    }

    fn forge(&self, pod: &str, seed: usize) -> String {
        let mut claims = self.claims.clone();
        claims["kubernetes.io"]["pod"]["name"] = pod.into();
        claims["kubernetes.io"]["pod"]["uid"] = format!("uid-{pod}").into();
        let signature: Vec<u8> = (0..self.signature_len)
            .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(131)) as u8)
            .collect();
        unsigned_token(&self.header, &claims, &signature)
    }
}

/// The value of one series (`name{labels}`) in the agent's metrics; 0 when absent.
async fn metric(agent: &RunningAgent, series: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(&agent.metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// The broker's audit trail for the cluster, oldest first, once it holds
/// `marker`'s issuance (one writer, in order: every earlier decision is in).
async fn audit_up_to(broker: &StsBroker, marker: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = broker
            .cli(&[
                "audit",
                "list",
                "--cluster-name",
                CLUSTER,
                "--limit",
                "100000",
                "-o",
                "json",
            ])
            .unwrap();
        let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
        let mut events = listed["events"].as_array().cloned().unwrap_or_default();
        events.reverse();
        if let Some(at) = events.iter().position(|e| e["podName"] == marker) {
            events.truncate(at + 1);
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "no audit event of {marker} in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Broker calls refusing a token as invalid, among `events`.
fn invalid_token_rows(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| e["errorCode"] == "InvalidTokenException")
        .count()
}

/// New pods' tokens each pod address has for the flood (one every 50 ms).
const NEW_PODS: usize = 200;

/// What one pod address got: (answered during the flood, a new pod's token, status).
type Asked = Vec<(bool, bool, u16)>;

/// One real pod address: asks every 25 ms (40 a second, under the limit),
/// every other time with a new pod's token (while they last), until `done`.
async fn pod(url: String, n: u8, own: String, new: Vec<String>, done: Arc<AtomicBool>) -> Asked {
    let client = client_from(Ipv4Addr::new(127, 0, 0, 10 + n));
    let mut new = new.into_iter();
    let mut asked = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0usize.. {
        tick.tick().await;
        let fresh = if round % 2 == 1 { new.next() } else { None };
        let is_new = fresh.is_some();
        let token = fresh.unwrap_or_else(|| own.clone());
        let status = ask(&client, &url, &token).await.0;
        let during = !done.load(Ordering::SeqCst);
        asked.push((during, is_new, status));
        if !during {
            break;
        }
    }
    asked
}

/// What the flood's answers were: (status, code) → count.
type Tally = Mutex<std::collections::BTreeMap<(u16, String), usize>>;

async fn flood(url: &str, tokens: Arc<Vec<String>>, tally: Arc<Tally>) {
    let client = client_from(Ipv4Addr::LOCALHOST);
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..FLOOD_CONNECTIONS)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            let (tokens, tally, next) = (tokens.clone(), tally.clone(), next.clone());
            tokio::spawn(async move {
                while let Some(token) = tokens.get(next.fetch_add(1, Ordering::Relaxed)) {
                    for _ in 0..ASKS {
                        let (status, body) = ask(&client, &url, token).await;
                        let code = body["code"].as_str().unwrap_or("").to_owned();
                        // The stock agent's error shape, whoever refused.
                        let keys = body.as_object().map(|o| o.keys().cloned().collect());
                        assert_eq!(keys, Some(vec!["code".to_owned(), "message".to_owned()]));
                        *tally.lock().unwrap().entry((status, code)).or_default() += 1;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_cost_few_broker_calls_and_real_pods_keep_getting_credentials() {
    let broker = StsBroker::start(&[]).unwrap();
    let agent = start_agent(&broker);
    let forger = Forger::from(&broker.token("template"));
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..FORGED)
            .map(|i| forger.forge(&format!("flood-{i}"), i))
            .collect(),
    );

    let done = Arc::new(AtomicBool::new(false));
    let pods: Vec<_> = (0..PODS)
        .map(|n| {
            let own = broker.token(&format!("pod-{n}"));
            let new = (0..NEW_PODS)
                .map(|i| broker.token(&format!("pod-{n}-new-{i}")))
                .collect();
            tokio::spawn(pod(agent.url.clone(), n, own, new, done.clone()))
        })
        .collect();
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    flood(&agent.url, tokens, tally.clone()).await;
    let took = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let mut new_pods_during = 0;
    for (n, p) in pods.into_iter().enumerate() {
        let asked = p.await.unwrap();
        assert!(
            asked.iter().all(|(_, _, status)| *status == 200),
            "pod address {n}: {asked:?}"
        );
        let during = asked.iter().filter(|(during, _, _)| *during).count();
        assert!(
            during >= 2,
            "pod address {n} asked {during} times during the flood"
        );
        new_pods_during += asked.iter().filter(|(d, new, _)| *d && *new).count();
    }
    assert!(new_pods_during >= 1, "no new pod asked during the flood");

    // Every forged request was refused: by the limit, or as the broker refused it.
    let tally = tally.lock().unwrap().clone();
    let limited = tally
        .get(&(429, "TooManyRequests".to_owned()))
        .copied()
        .unwrap_or(0);
    let refused = tally
        .get(&(400, "InvalidTokenException".to_owned()))
        .copied()
        .unwrap_or(0);
    assert_eq!(limited + refused, FORGED * ASKS, "{tally:?}");

    // The flooding address gets credentials again once its bucket refills.
    let flooder = client_from(Ipv4Addr::LOCALHOST);
    let after = broker.token("after-flood");
    let deadline = Instant::now() + RECOVERY;
    while ask(&flooder, &agent.url, &after).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "127.0.0.1 still refused after {RECOVERY:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let pod_client = client_from(Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(
        ask(&pod_client, &agent.url, &broker.token("marker-1"))
            .await
            .0,
        200
    );
    let events = audit_up_to(&broker, "marker-1").await;
    let calls = invalid_token_rows(&events);
    let from_memory = metric(
        &agent,
        "podid_agent_cache_lookups_total{result=\"refused\"}",
    )
    .await;
    eprintln!(
        "{FORGED} forged tokens x {ASKS} = {} requests from one address in {:.2} s: \
         {calls} broker calls (audit rows), {limited} answered 429, {refused} answered 400 \
         ({from_memory} of them from memory); {new_pods_during} new pods got credentials meanwhile",
        FORGED * ASKS,
        took.as_secs_f64(),
    );
    assert_eq!(
        calls as f64,
        metric(
            &agent,
            "podid_agent_upstream_errors_total{code=\"InvalidTokenException\"}"
        )
        .await,
        "the agent's count of refused broker calls"
    );
    let bound = CLIENT_BURST + CLIENT_RATE * took.as_secs_f64();
    assert!(
        (calls as f64) <= bound.ceil(),
        "{calls} broker calls in {took:?}: more than the limit's {bound:.0}"
    );
    assert_eq!(
        refused as f64 - from_memory,
        calls as f64,
        "every other 400 cost a call"
    );
    assert_eq!(
        limited as f64,
        metric(&agent, "podid_agent_client_rate_limited_total").await
    );

    // An SDK's retries of refused tokens, below the limit, from another address:
    // one broker call per token, the same answer each time.
    let sdk = client_from(Ipv4Addr::new(127, 0, 0, 3));
    let memory_before = from_memory;
    for i in 0..20 {
        let token = forger.forge(&format!("retry-{i}"), FORGED + i);
        let first = ask(&sdk, &agent.url, &token).await;
        assert_eq!(first.0, 400, "{}", first.1);
        assert_eq!(first.1["code"], "InvalidTokenException");
        for _ in 1..ASKS {
            assert_eq!(ask(&sdk, &agent.url, &token).await, first);
        }
    }
    assert_eq!(
        ask(&pod_client, &agent.url, &broker.token("marker-2"))
            .await
            .0,
        200
    );
    let events = audit_up_to(&broker, "marker-2").await;
    assert_eq!(
        invalid_token_rows(&events) - calls,
        20,
        "one broker call per token"
    );
    let from_memory = metric(
        &agent,
        "podid_agent_cache_lookups_total{result=\"refused\"}",
    )
    .await;
    assert_eq!(from_memory - memory_before, (20 * (ASKS - 1)) as f64);
}
