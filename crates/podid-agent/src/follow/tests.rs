//! The follower against a scripted feed on 127.0.0.1 (axum): where it starts,
//! how it asks, what each change does to the cache, how it reconnects.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::time::SystemTime;

use async_trait::async_trait;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use podid_api::Secret;

use super::*;
use crate::cache::LookupOutcome;
use crate::http::{HttpSettings, Trust};
use crate::identity::IdentityToken;
use crate::policy::CachePolicy;
use crate::upstream::{CredentialSource, FetchedCredentials, UpstreamError};
use crate::SystemClock;

#[test]
fn the_url_names_the_cluster_and_the_position() {
    assert_eq!(
        feed_url("https://podid.example:8443/", "c1", None, 20),
        "https://podid.example:8443/podid/v1/clusters/c1/changes"
    );
    assert_eq!(
        feed_url("http://h", "my_cluster-2", Some(41), 20),
        "http://h/podid/v1/clusters/my_cluster-2/changes?after=41&waitSeconds=20"
    );
    assert_eq!(
        request::path_segment("a/b c?"),
        "a%2Fb%20c%3F",
        "never a second path segment or a query"
    );
}

#[test]
fn backoff_doubles_within_its_bounds_and_spreads() {
    let s = FeedSettings::new("http://h", "c");
    for errors in 1..40 {
        let full = (s.min_backoff * (1u32 << (errors - 1).min(16))).min(s.max_backoff);
        for jitter in [0, 1, 77, 4_999, u64::MAX] {
            let pause = s.backoff(errors, jitter);
            assert!(pause >= full / 2 && pause <= full, "{errors}: {pause:?}");
        }
    }
    assert_eq!(s.backoff(1, 0), Duration::from_millis(125));
    assert!(s.backoff(40, u64::MAX) <= Duration::from_secs(5));
    assert_ne!(s.backoff(10, 1), s.backoff(10, 2_000), "jitter spreads");
}

/// A broker whose answers name the association at the end of the token
/// (after `ASSOC`, in its signature part); counts its calls.
struct Broker {
    calls: std::sync::atomic::AtomicUsize,
    deleted: Mutex<Vec<String>>,
}

#[async_trait]
impl CredentialSource for Broker {
    async fn fetch(&self, token: &str) -> Result<FetchedCredentials, UpstreamError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let association = token.rsplit("ASSOC").next().unwrap_or("").to_owned();
        if self.deleted.lock().unwrap().contains(&association) {
            return Err(UpstreamError::new(404, "ResourceNotFoundException", "gone"));
        }
        Ok(FetchedCredentials {
            access_key_id: "ASIA".into(),
            secret_access_key: Secret::new("s"),
            session_token: Secret::new("t"),
            expiration: SystemTime::now() + Duration::from_secs(3600),
            assumed_role_arn: String::new(),
            association_id: Some(association),
        })
    }
}

/// A token the agent's sanity checks accept, for association `id`.
fn token(pod: &str, id: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    format!(
        "{}ASSOC{id}",
        crate::token::tests::make_token(Some(exp), Some(pod))
    )
}

/// One feed request: its `after`, its `waitSeconds`, its `authorization`.
type Asked = (Option<String>, Option<String>, String);

/// What the scripted feed answers, in turn, and what it was asked.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<(StatusCode, serde_json::Value)>>,
    asked: Mutex<Vec<Asked>>,
}

async fn feed(
    State(script): State<Arc<Script>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    script.asked.lock().unwrap().push((
        query.get("after").cloned(),
        query.get("waitSeconds").cloned(),
        auth,
    ));
    // Nothing scripted yet: a long poll, answered when the test adds a page.
    loop {
        let next = script.answers.lock().unwrap().pop_front();
        if let Some((status, body)) = next {
            return (status, axum::Json(body)).into_response();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn page(position: i64, changes: serde_json::Value, reset: bool) -> (StatusCode, serde_json::Value) {
    (
        StatusCode::OK,
        serde_json::json!({"changes": changes, "position": position, "reset": reset}),
    )
}

/// The scripted feed on 127.0.0.1:0 answering `answers`, and its address.
async fn scripted(
    answers: Vec<(StatusCode, serde_json::Value)>,
) -> (Arc<Script>, std::net::SocketAddr) {
    let script = Arc::new(Script::default());
    script.answers.lock().unwrap().extend(answers);
    let app = axum::Router::new()
        .route(
            "/podid/v1/clusters/{cluster}/changes",
            axum::routing::get(feed),
        )
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (script, addr)
}

struct Fixture {
    cache: Arc<PodCredentialCache>,
    broker: Arc<Broker>,
    metrics: Arc<AgentMetrics>,
    script: Arc<Script>,
    status: Arc<FeedStatus>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A cache holding `held` (pod, association) entries, then a follower of
/// the scripted feed `answers` (as agent token `agent-token`).
async fn following(
    held: &[(&str, &str)],
    answers: Vec<(StatusCode, serde_json::Value)>,
) -> Fixture {
    let broker = Arc::new(Broker {
        calls: Default::default(),
        deleted: Mutex::default(),
    });
    let metrics = Arc::new(AgentMetrics::new());
    let cache = PodCredentialCache::new(
        CachePolicy::default(),
        broker.clone(),
        Arc::new(SystemClock),
        metrics.clone(),
    );
    for (pod, id) in held {
        cache.get(&token(pod, id)).await.unwrap();
    }
    let (script, addr) = scripted(answers).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "agent-token").unwrap();
    let identity = Arc::new(IdentityToken::open(dir.path().join("token")).unwrap());
    let client = HttpClient::new(HttpSettings::new(Trust::System(None))).unwrap();
    let mut settings = FeedSettings::new(format!("http://{addr}"), "c1");
    settings.min_backoff = Duration::from_millis(10);
    settings.max_backoff = Duration::from_millis(40);
    let follower = ChangeFollower::new(client, FeedAuth::Bearer(identity), settings);
    let status = follower.status();
    let task = tokio::spawn(follower.run(cache.clone(), metrics.clone()));
    Fixture {
        cache,
        broker,
        metrics,
        script,
        status,
        _dir: dir,
        task,
    }
}

impl Fixture {
    /// Waits (bounded) until the feed was asked `n` times.
    async fn asked(&self, n: usize) -> Vec<Asked> {
        podid_test_support::wait::eventually(
            Duration::from_secs(10),
            "the feed to be asked",
            || async { self.script.asked.lock().unwrap().len() >= n },
        )
        .await;
        self.script.asked.lock().unwrap().clone()
    }
}

fn change(position: i64, kind: &str, id: &str) -> serde_json::Value {
    serde_json::json!({"position": position, "kind": kind, "time": 1,
                       "associationId": id, "namespace": "ns", "serviceAccount": "sa"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_starts_at_the_current_position_and_drops_what_a_delete_names() {
    let f = following(
        &[("a", "a-1"), ("b", "a-2")],
        vec![
            page(7, serde_json::json!([]), false),
            page(
                9,
                serde_json::json!([change(8, "delete", "a-1"), change(9, "create", "a-3")]),
                false,
            ),
        ],
    )
    .await;
    let asked = f.asked(3).await;
    assert_eq!(asked[0].0, None, "first: the current position");
    assert_eq!(asked[0].2, "Bearer agent-token");
    assert_eq!(
        (asked[1].0.as_deref(), asked[1].1.as_deref()),
        (Some("7"), Some("20"))
    );
    assert_eq!(
        asked[2].0.as_deref(),
        Some("9"),
        "then from the page's position"
    );
    assert_eq!(f.cache.len(), 1, "a-1's entry dropped, a-2's kept");
    assert_eq!(
        f.cache.get(&token("b", "a-2")).await.unwrap().outcome,
        LookupOutcome::Hit
    );
    assert_eq!(f.status.position(), Some(9));
    assert!(f.status.connected());
    assert_eq!(f.metrics.feed_connected.get(), 1);
    let text = f.metrics.encode();
    assert!(
        text.contains("podid_agent_feed_changes_total{kind=\"delete\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("podid_agent_feed_changes_total{kind=\"create\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_reconnect_from_the_position_and_say_why() {
    let refused = (
        StatusCode::FORBIDDEN,
        serde_json::json!({"__type": "AccessDeniedException", "message": "not yours"}),
    );
    let f = following(
        &[],
        vec![
            page(3, serde_json::json!([]), false),
            refused.clone(),
            refused,
            page(4, serde_json::json!([change(4, "delete", "a-1")]), false),
        ],
    )
    .await;
    let asked = f.asked(3).await;
    assert_eq!(asked[1].0.as_deref(), Some("3"));
    assert_eq!(
        asked[2].0.as_deref(),
        Some("3"),
        "asked again from the same position"
    );
    let asked = f.asked(5).await;
    assert_eq!(asked[4].0.as_deref(), Some("4"));
    assert_eq!(f.metrics.feed_reconnects.get(), 2);
    assert!(f.status.connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_is_down_is_said_in_the_status() {
    let f = following(
        &[],
        vec![(
            StatusCode::NOT_FOUND,
            serde_json::json!({"__type": "ResourceNotFoundException", "message": "no cluster c1"}),
        )],
    )
    .await;
    f.asked(1).await;
    podid_test_support::wait::eventually(
        Duration::from_secs(10),
        "the status to say so",
        || async { f.status.last_error().is_some() },
    )
    .await;
    let detail = f.status.detail();
    assert_eq!(detail["connected"], false);
    assert_eq!(detail["position"], serde_json::Value::Null);
    let error = detail["error"].as_str().unwrap();
    assert!(
        error.contains("404 ResourceNotFoundException: no cluster c1"),
        "{error}"
    );
    assert!(!error.contains("agent-token"));
}

impl Fixture {
    /// Waits (bounded) for the `n`th revalidation.
    async fn revalidated(&self, n: u64) {
        podid_test_support::wait::eventually(Duration::from_secs(10), "a revalidation", || async {
            self.metrics.feed_revalidations.get() == n
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_or_a_cluster_change_revalidates_everything_held() {
    let cluster_update = serde_json::json!([{"position": 41, "kind": "cluster-update", "time": 1}]);
    for (then, position) in [
        (page(40, serde_json::json!([]), true), 40),
        (page(41, cluster_update, false), 41),
    ] {
        let f = following(
            &[("a", "a-1"), ("b", "a-2")],
            vec![page(5, serde_json::json!([]), false)],
        )
        .await;
        // Held before the first position: revalidated once (each asked again).
        f.revalidated(1).await;
        assert_eq!(f.broker.calls.load(Ordering::SeqCst), 4);
        f.broker.deleted.lock().unwrap().push("a-1".into());
        f.script.answers.lock().unwrap().push_back(then);
        f.revalidated(2).await;
        assert_eq!(
            f.broker.calls.load(Ordering::SeqCst),
            6,
            "each entry asked again"
        );
        assert_eq!(f.cache.len(), 1, "the refused one dropped");
        f.asked(3).await;
        assert_eq!(f.status.position(), Some(position));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_held_before_the_first_position_are_revalidated() {
    let f = following(&[("a", "a-1")], vec![page(5, serde_json::json!([]), false)]).await;
    f.revalidated(1).await;
    assert_eq!(f.broker.calls.load(Ordering::SeqCst), 2);
    let g = following(&[], vec![page(5, serde_json::json!([]), false)]).await;
    g.asked(2).await;
    assert_eq!(
        g.metrics.feed_revalidations.get(),
        0,
        "nothing held: nothing to recheck"
    );
}

/// A follower started on a gate asks the feed nothing until the gate opens
/// (the agent's first broker call opens it), then follows as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_follower_waits_for_the_first_broker_call() {
    let (script, addr) = scripted(vec![page(5, serde_json::json!([]), false)]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "agent-token").unwrap();
    let identity = Arc::new(IdentityToken::open(dir.path().join("token")).unwrap());
    let client = HttpClient::new(HttpSettings::new(Trust::System(None))).unwrap();
    let gate = Arc::new(super::StartGate::default());
    let follower = ChangeFollower::new(
        client,
        FeedAuth::Bearer(identity),
        FeedSettings::new(format!("http://{addr}"), "c1"),
    )
    .start_on(gate.clone());
    let status = follower.status();
    let metrics = Arc::new(AgentMetrics::new());
    let broker = Arc::new(Broker {
        calls: Default::default(),
        deleted: Mutex::default(),
    });
    let source = Arc::new(super::OpensOnFirstCall::new(broker.clone(), gate.clone()));
    let cache = PodCredentialCache::new(
        CachePolicy::default(),
        source,
        Arc::new(SystemClock),
        metrics.clone(),
    );
    let task = tokio::spawn(follower.run(cache.clone(), metrics.clone()));
    // Bounded: the follower task is parked on the gate after a few polls.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(
        script.asked.lock().unwrap().is_empty(),
        "asked before any broker call"
    );
    assert_eq!(status.detail()["started"], serde_json::json!(false));
    // The first broker call opens the gate and waits for the first position.
    cache.get(&token("a", "a-1")).await.unwrap();
    assert!(
        !script.asked.lock().unwrap().is_empty(),
        "asked before the broker answered"
    );
    assert_eq!(status.position(), Some(5));
    assert_eq!(
        metrics.feed_revalidations.get(),
        0,
        "nothing held at the first position"
    );
    assert_eq!(status.detail()["started"], serde_json::json!(true));
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_node_key_each_call_is_signed_for_eks() {
    let (script, addr) = scripted(vec![page(3, serde_json::json!([]), false)]).await;
    let credentials =
        aws_credential_types::Credentials::new("AKIDNODE", "node-secret", None, None, "test");
    let auth = FeedAuth::SigV4 {
        credentials: aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
        region: "eu-west-1".into(),
    };
    let client = HttpClient::new(HttpSettings::new(Trust::System(None))).unwrap();
    let url = feed_url(&format!("http://{addr}"), "c1", Some(2), 0);
    let page = call(&client, &auth, &url, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(page.position, 3);
    let asked = script.asked.lock().unwrap().clone();
    let authorization = &asked[0].2;
    let date = time::OffsetDateTime::now_utc();
    let scope = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDNODE/{:04}{:02}{:02}/eu-west-1/eks/aws4_request",
        date.year(),
        u8::from(date.month()),
        date.day()
    );
    assert!(authorization.starts_with(&scope), "{authorization}");
    assert!(
        authorization.contains("SignedHeaders=host;x-amz-date"),
        "{authorization}"
    );
}
