//! The agent's listeners in-process on 127.0.0.1:0, asking a fake EKS Auth
//! (`podid_test_support::FakeEksAuthServer`, on its own runtime so it can be
//! killed outright) through the real aws-sdk-eksauth client.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use podid_agent::{
    Agent, AgentConfig, CachePolicy, EksAuthUpstream, SystemClock, UpstreamSettings,
};
use podid_test_support::fake_eks_auth::{FIXED_SECRET_ACCESS_KEY, FIXED_SESSION_TOKEN};
use podid_test_support::{skip_or_fail, FakeEksAuthServer, FakeEksAuthSettings, FakeReply};
use tokio::sync::oneshot;

/// A fake EKS Auth on its own runtime (so that it can be killed), recording its calls.
fn fake_upstream(gated: bool) -> FakeEksAuthServer {
    FakeEksAuthServer::start(FakeEksAuthSettings {
        gated,
        ..FakeEksAuthSettings::default()
    })
    .unwrap()
}

struct RunningAgent {
    addr: SocketAddr,
    probes: SocketAddr,
    metrics_addr: SocketAddr,
    agent_metrics: Arc<podid_agent::metrics::AgentMetrics>,
    cache: Arc<podid_agent::PodCredentialCache>,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<Result<(), podid_agent::AgentError>>,
}

async fn sdk_config() -> aws_types::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDNODE",
            "node-secret",
            None,
            None,
            "test",
        ))
        .load()
        .await
}

async fn start_agent(
    upstream: &FakeEksAuthServer,
    tweak: impl FnOnce(&mut AgentConfig),
) -> RunningAgent {
    start_agent_with(upstream, UpstreamSettings::default(), tweak).await
}

async fn start_agent_with(
    upstream: &FakeEksAuthServer,
    settings: UpstreamSettings,
    tweak: impl FnOnce(&mut AgentConfig),
) -> RunningAgent {
    let mut config = AgentConfig {
        bind_hosts: vec!["127.0.0.1".parse().unwrap()],
        port: 0,
        probe_port: 0,
        metrics_address: "127.0.0.1".parse().unwrap(),
        metrics_port: 0,
        ..AgentConfig::default()
    };
    tweak(&mut config);
    let source = EksAuthUpstream::new(&sdk_config().await, Some(&upstream.url), "c1", &settings);
    let agent = Agent::bind(config, Arc::new(source), Arc::new(SystemClock))
        .await
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = RunningAgent {
        addr: agent.credential_addrs()[0],
        probes: agent.probe_addr(),
        metrics_addr: agent.metrics_addr(),
        agent_metrics: agent.metrics().clone(),
        cache: agent.cache().clone(),
        stop: Some(stop),
        served: tokio::spawn(agent.serve(async move {
            let _ = stopped.await;
        })),
    };
    running
}

impl RunningAgent {
    fn url(&self) -> String {
        format!("http://{}/v1/credentials", self.addr)
    }

    /// `GET` a probe path (`/healthz`, `/readyz`).
    async fn probe(&self, client: &reqwest::Client, path: &str) -> reqwest::Response {
        let url = format!("http://{}{path}", self.probes);
        client.get(url).send().await.unwrap()
    }

    /// The `/metrics` exposition.
    async fn metrics_text(&self, client: &reqwest::Client) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr);
        client.get(url).send().await.unwrap().text().await.unwrap()
    }
}

/// A fake EKS Auth and an agent with the default settings asking it.
async fn default_agent() -> (FakeEksAuthServer, RunningAgent) {
    let upstream = fake_upstream(false);
    let agent = start_agent(&upstream, |_| {}).await;
    (upstream, agent)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn token(pod: &str, expires_in: i64) -> String {
    podid_test_support::pod_token(pod, expires_in)
}

async fn get(client: &reqwest::Client, url: &str, token: &str) -> (u16, serde_json::Value) {
    podid_test_support::agent::ask_credentials(client, url, token).await
}

/// docs/agent.md: "New pods get 503 within 1.5 s, not a hang" (broker down or hung).
const PROMISED_503: Duration = Duration::from_millis(1500);
/// What a loaded 2-core machine may add to a promised time (scheduling, the client).
const LOAD_MARGIN: Duration = Duration::from_millis(1500);

/// Polls a condition (no fixed sleeps): state changes in other tasks.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_credentials_in_the_container_format() {
    let (upstream, agent) = default_agent().await;
    let t = token("p1", 3600);
    let response = client()
        .get(agent.url())
        .header("authorization", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "AccessKeyId",
            "AccountId",
            "Expiration",
            "SecretAccessKey",
            "Token"
        ]
    );
    assert_eq!(body["AccountId"], "111122223333");
    assert_eq!(body["SecretAccessKey"], FIXED_SECRET_ACCESS_KEY);
    assert_eq!(body["Token"], FIXED_SESSION_TOKEN);
    let expiration = body["Expiration"].as_str().unwrap();
    assert_eq!(expiration.len(), 20, "{expiration}");
    assert!(
        expiration.ends_with('Z') && expiration.as_bytes()[10] == b'T',
        "{expiration}"
    );
    assert!(time::OffsetDateTime::parse(
        expiration,
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());
    // The broker got the cluster, the pod's token, and a SigV4 signature for eks-auth by the node's key.
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].cluster, "c1");
    assert!(
        seen[0]
            .authorization
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDNODE/"),
        "{}",
        seen[0].authorization
    );
    assert!(
        seen[0]
            .authorization
            .contains("/us-east-1/eks-auth/aws4_request"),
        "{}",
        seen[0].authorization
    );
    assert_eq!(seen[0].token, t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_beyond_the_kept_tokens_get_the_same_answers_from_their_compact_entries() {
    let upstream = fake_upstream(false);
    let agent = start_agent(&upstream, |c| c.cache.max_refresh_ahead = 1).await;
    let client = client();
    let (kept, compact) = (token("p1", 3600), token("p2", 3600));
    let (_, kept_first) = get(&client, &agent.url(), &kept).await;
    let (status, compact_first) = get(&client, &agent.url(), &compact).await;
    assert_eq!(status, 200);
    assert_eq!(compact_first["Token"], FIXED_SESSION_TOKEN);
    for _ in 0..3 {
        assert_eq!(
            get(&client, &agent.url(), &kept).await,
            (200, kept_first.clone())
        );
        assert_eq!(
            get(&client, &agent.url(), &compact).await,
            (200, compact_first.clone())
        );
    }
    assert_eq!(upstream.calls(), 2);
    assert_eq!(agent.agent_metrics.cache_hit.get(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_of_a_pod_make_one_upstream_call() {
    let upstream = fake_upstream(true);
    // The broker is held until all 500 are in, which may take longer than the
    // production timeouts on a loaded machine: this test is about sharing.
    let patient = UpstreamSettings {
        attempt_timeout: Duration::from_secs(20),
        operation_timeout: Duration::from_secs(20),
        ..UpstreamSettings::default()
    };
    let agent = start_agent_with(&upstream, patient, |_| {}).await;
    let client = client();
    let t = token("p1", 3600);
    let mut requests = Vec::new();
    for _ in 0..500 {
        let (client, url, t) = (client.clone(), agent.url(), t.clone());
        requests.push(tokio::spawn(async move { get(&client, &url, &t).await }));
    }
    let m = agent.agent_metrics.clone();
    wait_until("500 requests in the agent", || {
        m.cache_miss.get() + m.cache_joined.get() == 500
    })
    .await;
    upstream.release();
    let mut keys = std::collections::HashSet::new();
    for r in requests {
        let (status, body) = r.await.unwrap();
        assert_eq!(status, 200);
        keys.insert(body["AccessKeyId"].as_str().unwrap().to_owned());
    }
    assert_eq!(upstream.calls(), 1);
    assert_eq!(keys.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_pod_costs_no_upstream_call() {
    let (upstream, agent) = default_agent().await;
    let client = client();
    let t = token("p1", 3600);
    let (status, first) = get(&client, &agent.url(), &t).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.calls(), 1);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (client, url, t, first) = (client.clone(), agent.url(), t.clone(), first.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                let (status, body) = get(&client, &url, &t).await;
                assert_eq!(status, 200);
                assert_eq!(body, first);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        upstream.calls(),
        1,
        "1,000 requests of a cached pod: no upstream call"
    );
    assert_eq!(agent.agent_metrics.cache_hit.get(), 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_killed_cached_pods_are_served_and_new_pods_get_503_quickly() {
    let mut upstream = fake_upstream(false);
    let agent = start_agent(&upstream, |_| {}).await;
    let client = client();
    let cached = token("cached", 3600);
    assert_eq!(get(&client, &agent.url(), &cached).await.0, 200);
    upstream.kill();
    assert_eq!(
        get(&client, &agent.url(), &cached).await.0,
        200,
        "cached credentials outlive the broker"
    );
    for i in 0..3 {
        let started = Instant::now();
        let (status, body) = get(&client, &agent.url(), &token(&format!("new-{i}"), 3600)).await;
        let took = started.elapsed();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["code"], "ServiceUnavailableException");
        assert!(took < PROMISED_503 + LOAD_MARGIN, "503 after {took:?}");
    }
    // Three outages in a row: not ready, and the metrics say so.
    let readyz = agent.probe(&client, "/readyz").await;
    assert_eq!(readyz.status(), 503);
    let ready: serde_json::Value = readyz.json().await.unwrap();
    assert_eq!(ready["upstream"], "down");
    assert!(agent
        .metrics_text(&client)
        .await
        .contains("podid_agent_upstream_up 0"));
    assert_eq!(get(&client, &agent.url(), &cached).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_broker_gets_a_new_pod_503_before_sdks_give_up() {
    let upstream = fake_upstream(false);
    upstream.set_reply(FakeReply::Hang);
    let agent = start_agent(&upstream, |_| {}).await;
    let started = Instant::now();
    let (status, body) = get(&client(), &agent.url(), &token("p1", 3600)).await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(took < PROMISED_503 + LOAD_MARGIN, "503 after {took:?}");
    // A lower bound holds under any load: it waited out one attempt (1 s).
    assert!(
        took >= Duration::from_millis(900),
        "gave the broker its time: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused_with_403() {
    let (upstream, agent) = default_agent().await;
    let client = client();
    let t = token("p1", 3600);
    for host in [
        "attacker.example",
        "attacker.example:80",
        "localhost",
        "169.254.170.23",
    ] {
        let response = client
            .get(agent.url())
            .header("host", host)
            .header("authorization", &t)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{host}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "AccessDenied");
    }
    assert_eq!(upstream.calls(), 0);
    let response = client
        .get(agent.url())
        .header("host", "127.0.0.1")
        .header("authorization", &t)
        .send()
        .await;
    assert_eq!(
        response.unwrap().status(),
        200,
        "the own address without a port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_400_without_an_upstream_call() {
    let (upstream, agent) = default_agent().await;
    let client = client();
    let response = client.get(agent.url()).send().await.unwrap();
    assert_eq!(response.status(), 400, "missing");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "InvalidTokenException");
    assert!(body["message"].as_str().unwrap().contains("Authorization"));
    for (what, t) in [
        ("garbage", "garbage".to_owned()),
        ("bad base64", "!!!.???.sig".to_owned()),
        (
            "not json",
            format!(
                "{}.{}.c2ln",
                URL_SAFE_NO_PAD.encode("x"),
                URL_SAFE_NO_PAD.encode("y")
            ),
        ),
        ("bearer", format!("Bearer {}", token("p1", 3600))),
        ("expired", token("p1", -10)),
    ] {
        let (status, body) = get(&client, &agent.url(), &t).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(
            body["code"].as_str().unwrap().ends_with("TokenException"),
            "{what}: {body}"
        );
        assert!(
            !body["message"].as_str().unwrap().contains(&t),
            "{what}: the token is not echoed"
        );
    }
    assert_eq!(upstream.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_refusals_pass_through_and_a_refused_refresh_drops_the_entry() {
    let upstream = fake_upstream(false);
    // Refresh due right after each fetch, so the next request triggers one.
    let agent = start_agent(&upstream, |c| {
        c.cache = CachePolicy {
            refresh_lead: Duration::from_secs(3600),
            ..CachePolicy::default()
        };
    })
    .await;
    let client = client();
    upstream.set_reply(FakeReply::Error {
        status: 404,
        kind: "ResourceNotFoundException",
    });
    let (status, body) = get(&client, &agent.url(), &token("unmapped", 3600)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("ResourceNotFoundException")),
        "{body}"
    );
    assert_eq!(body["message"], "fake ResourceNotFoundException");
    for (status, kind) in [
        (400, "AccessDeniedException"),
        (400, "InvalidTokenException"),
        (429, "ThrottlingException"),
        (500, "InternalServerException"),
    ] {
        upstream.set_reply(FakeReply::Error { status, kind });
        let (got, body) = get(&client, &agent.url(), &token(kind, 3600)).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(kind)), "{body}");
    }

    // A cached pod whose association is deleted: served once more while the
    // refresh runs, then dropped; the next request gets the 404.
    upstream.set_reply(FakeReply::Ok {
        lifetime: Duration::from_secs(3600),
    });
    let t = token("mapped", 3600);
    assert_eq!(get(&client, &agent.url(), &t).await.0, 200);
    let before = upstream.calls();
    upstream.set_reply(FakeReply::Error {
        status: 404,
        kind: "ResourceNotFoundException",
    });
    assert_eq!(get(&client, &agent.url(), &t).await.0, 200);
    let cache = agent.cache.clone();
    wait_until("the refresh dropped the entry", || cache.is_empty()).await;
    assert_eq!(upstream.calls(), before + 1);
    let (status, body) = get(&client, &agent.url(), &t).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("ResourceNotFoundException"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paths_and_methods_and_probes() {
    let (upstream, agent) = default_agent().await;
    let client = client();
    let response = client
        .get(format!("http://{}/", agent.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["code"],
        "NotFound"
    );
    let response = client
        .post(agent.url())
        .header("authorization", token("p", 3600))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["code"],
        "MethodNotAllowed"
    );
    assert_eq!(upstream.calls(), 0);
    assert!(agent.probes.ip().is_loopback());
    let healthz = agent.probe(&client, "/healthz").await;
    assert_eq!(healthz.status(), 200);
    let readyz = agent.probe(&client, "/readyz").await;
    assert_eq!(readyz.status(), 200);
    assert_eq!(get(&client, &agent.url(), &token("p", 3600)).await.0, 200);
    let text = agent.metrics_text(&client).await;
    for needle in [
        "podid_agent_requests_total{status=\"200\"} 1",
        "podid_agent_requests_total{status=\"404\"} 1",
        "podid_agent_requests_total{status=\"405\"} 1",
        "podid_agent_cache_lookups_total{result=\"miss\"} 1",
        "podid_agent_upstream_duration_seconds_count 1",
        "podid_agent_cached_entries 1",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    assert!(!text.contains(FIXED_SESSION_TOKEN) && !text.contains(FIXED_SECRET_ACCESS_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_429() {
    // `--rate-limit 5`: 5 requests a second with bursts of 5 (docs/agent.md).
    // No timing is assumed: the burst passes whenever it comes, waves of 50
    // at once must meet a 429 (load only slows the waves, so it retries
    // them within a bound), and however slow the run, no more passed than the
    // burst plus 5 a second of the time it took.
    const RATE: u32 = 5;
    let started = Instant::now();
    let upstream = fake_upstream(false);
    let agent = start_agent(&upstream, |c| c.rate_limit = RATE).await;
    let client = client();
    let t = token("p", 3600);
    for i in 0..RATE {
        let (status, body) = get(&client, &agent.url(), &t).await;
        assert_eq!(status, 200, "request {i} of the burst: {body}");
    }
    let (mut passed, mut limited) = (u64::from(RATE), 0u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while limited == 0 {
        assert!(
            Instant::now() < deadline,
            "no 429 within 60 s of waves of 50 requests ({passed} passed)"
        );
        let wave: Vec<_> = (0..50)
            .map(|_| {
                let (client, url, t) = (client.clone(), agent.url(), t.clone());
                tokio::spawn(async move { get(&client, &url, &t).await })
            })
            .collect();
        for request in wave {
            match request.await.unwrap() {
                (200, _) => passed += 1,
                (429, body) => {
                    assert_eq!(body["code"], "TooManyRequests", "{body}");
                    limited += 1;
                }
                other => panic!("neither 200 nor 429: {other:?}"),
            }
        }
    }
    let allowed =
        u64::from(RATE) + 1 + u64::from(RATE) * started.elapsed().as_secs().saturating_add(1);
    assert!(
        passed <= allowed,
        "{passed} passed in {:?}: more than the burst plus {RATE}/s ({allowed})",
        started.elapsed()
    );
    assert_eq!(agent.agent_metrics.rate_limited.get(), limited);
    assert_eq!(upstream.calls(), 1, "one pod, one broker call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() {
    let upstream = fake_upstream(true);
    let mut agent = start_agent(&upstream, |_| {}).await;
    let request = {
        let (client, url) = (client(), agent.url());
        tokio::spawn(async move { get(&client, &url, &token("p", 3600)).await })
    };
    wait_until("the request reached the broker", || upstream.calls() == 1).await;
    agent.stop.take().unwrap().send(()).unwrap();
    // The listener closes for new connections while the request is in flight.
    let addr = agent.addr;
    let mut refused = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(refused, "no new connections after shutdown");
    upstream.release();
    let (status, _) = request.await.unwrap();
    assert_eq!(status, 200, "the in-flight request finished");
    tokio::time::timeout(Duration::from_secs(5), agent.served)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbindable_hosts_are_skipped_but_one_must_bind() {
    let upstream = fake_upstream(false);
    let sdk = sdk_config().await;
    let source = || {
        Arc::new(EksAuthUpstream::new(
            &sdk,
            Some(&upstream.url),
            "c1",
            &UpstreamSettings::default(),
        ))
    };
    let config = AgentConfig {
        // 192.0.2.1 (TEST-NET-1) is on no interface.
        bind_hosts: vec!["192.0.2.1".parse().unwrap(), "127.0.0.1".parse().unwrap()],
        port: 0,
        probe_port: 0,
        metrics_port: 0,
        metrics_address: "127.0.0.1".parse().unwrap(),
        ..AgentConfig::default()
    };
    let agent = Agent::bind(config.clone(), source(), Arc::new(SystemClock))
        .await
        .unwrap();
    assert_eq!(agent.credential_addrs().len(), 1);
    assert_eq!(agent.credential_addrs()[0].ip().to_string(), "127.0.0.1");
    drop(agent);
    let config = AgentConfig {
        bind_hosts: vec!["192.0.2.1".parse().unwrap()],
        ..config
    };
    let err = Agent::bind(config, source(), Arc::new(SystemClock))
        .await
        .unwrap_err();
    assert!(
        matches!(err, podid_agent::AgentError::NoListener { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("192.0.2.1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listeners_check_bracketed_hosts() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        skip_or_fail("no IPv6 loopback ([::1]) here");
        return;
    }
    let upstream = fake_upstream(false);
    let agent = start_agent(&upstream, |c| c.bind_hosts = vec!["::1".parse().unwrap()]).await;
    assert!(agent.addr.is_ipv6());
    let client = client();
    let t = token("p", 3600);
    let url = agent.url();
    assert_eq!(
        client
            .get(&url)
            .header("authorization", &t)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let bare = client
        .get(&url)
        .header("host", "[::1]")
        .header("authorization", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 200);
    let other = client
        .get(&url)
        .header("host", "[::2]:80")
        .header("authorization", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
}

/// On a paused clock (the deadlines use tokio's timers): virtual time moves
/// only when every task waits, so no load can stretch a deadline.
#[tokio::test(start_paused = true)]
async fn silent_and_trickling_connections_are_cut_at_their_deadlines() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PERIOD: Duration = Duration::from_millis(100);
    let upstream = fake_upstream(false);
    let agent = start_agent(&upstream, |c| {
        c.limits.header_read_timeout = PERIOD;
        c.limits.idle_timeout = PERIOD;
    })
    .await;
    let closed_at = |what: &str, closed_after: Duration| {
        assert!(
            (PERIOD..=PERIOD + Duration::from_millis(10)).contains(&closed_after),
            "{what}: closed after {closed_after:?}, not at the {PERIOD:?} deadline"
        );
    };
    // A connection that says nothing is closed at the head deadline.
    let mut silent = tokio::net::TcpStream::connect(agent.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let opened = tokio::time::Instant::now();
    let read = tokio::time::timeout(10 * PERIOD, silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    closed_at("silent", opened.elapsed());
    // A byte every tenth of a period does not move the deadline.
    let mut trickling = tokio::net::TcpStream::connect(agent.addr).await.unwrap();
    let opened = tokio::time::Instant::now();
    let head = format!(
        "GET /v1/credentials HTTP/1.1\r\nHost: {}\r\nX: ",
        agent.addr
    );
    for byte in head.bytes().chain(std::iter::repeat(b'a')) {
        if trickling.write_all(&[byte]).await.is_err() {
            break;
        }
        let read = tokio::time::timeout(PERIOD / 10, trickling.read(&mut buf)).await;
        if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
            break;
        }
        assert!(
            opened.elapsed() < 10 * PERIOD,
            "the trickling client was never cut"
        );
    }
    closed_at("trickling", opened.elapsed());
    // A connection in use is kept: requests half a period apart over four periods.
    let mut busy = tokio::net::TcpStream::connect(agent.addr).await.unwrap();
    let request = format!("GET /nowhere HTTP/1.1\r\nHost: {}\r\n\r\n", agent.addr);
    for i in 0..8 {
        busy.write_all(request.as_bytes()).await.unwrap();
        let mut response = vec![0u8; 1024];
        let n = tokio::time::timeout(PERIOD / 2, busy.read(&mut response))
            .await
            .unwrap_or_else(|_| panic!("no answer to request {i} on the busy connection"))
            .unwrap();
        assert!(
            String::from_utf8_lossy(&response[..n]).starts_with("HTTP/1.1 404"),
            "request {i}: the busy connection is still open"
        );
        tokio::time::sleep(PERIOD / 2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_bind_hosts_are_refused() {
    let upstream = fake_upstream(false);
    let source = EksAuthUpstream::new(
        &sdk_config().await,
        Some(&upstream.url),
        "c1",
        &UpstreamSettings::default(),
    );
    let config = AgentConfig {
        bind_hosts: vec!["0.0.0.0".parse().unwrap()],
        port: 0,
        ..AgentConfig::default()
    };
    let err = Agent::bind(config, Arc::new(source), Arc::new(SystemClock))
        .await
        .unwrap_err();
    assert!(
        matches!(err, podid_agent::AgentError::BindHostNotSingle { .. }),
        "{err}"
    );
}
