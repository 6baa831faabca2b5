//! The cache with a fake broker, on tokio's paused clock.

use podid_test_support::yield_until;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::*;
use crate::clock::TokioClock;
use crate::token::tests::make_token;
use crate::upstream::{FetchedCredentials, Secret};

const MIN: Duration = Duration::from_secs(60);

/// A broker stand-in: counts calls, answers what it is told, can hold
/// answers until released.
struct FakeSource {
    clock: TokioClock,
    calls: AtomicUsize,
    answer: Mutex<Result<Duration, UpstreamError>>,
    gate: Option<Semaphore>,
    /// The association each token's answer names (else `a-default`).
    associations: Mutex<HashMap<String, String>>,
    /// Associations deleted: their tokens get 404 ResourceNotFoundException.
    deleted: Mutex<Vec<String>>,
}

impl FakeSource {
    fn new(clock: TokioClock, gated: bool) -> Arc<Self> {
        Arc::new(FakeSource {
            clock,
            calls: AtomicUsize::new(0),
            answer: Mutex::new(Ok(60 * MIN)),
            gate: gated.then(|| Semaphore::new(0)),
            associations: Mutex::default(),
            deleted: Mutex::default(),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn answer(&self, answer: Result<Duration, UpstreamError>) {
        *self.answer.lock().unwrap() = answer;
    }
}

#[async_trait]
impl CredentialSource for FakeSource {
    async fn fetch(&self, token: &str) -> Result<FetchedCredentials, UpstreamError> {
        assert!(token.contains('.'), "the pod's token is passed on");
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let lifetime = self.answer.lock().unwrap().clone()?;
        let association = self.associations.lock().unwrap().get(token).cloned();
        let association = association.unwrap_or_else(|| "a-default".into());
        if self.deleted.lock().unwrap().contains(&association) {
            return Err(UpstreamError::new(
                404,
                "ResourceNotFoundException",
                "no association",
            ));
        }
        Ok(FetchedCredentials {
            access_key_id: format!("ASIA{n}"),
            secret_access_key: Secret::new("secret"),
            session_token: Secret::new("session"),
            expiration: self.clock.now() + lifetime,
            assumed_role_arn: "arn:aws:sts::111122223333:assumed-role/r/s".into(),
            association_id: Some(association),
        })
    }
}

struct CacheFixture {
    clock: TokioClock,
    source: Arc<FakeSource>,
    cache: Arc<PodCredentialCache>,
    metrics: Arc<AgentMetrics>,
}

fn fixture(policy: CachePolicy, gated: bool) -> CacheFixture {
    let clock = TokioClock::new();
    let source = FakeSource::new(clock, gated);
    let metrics = Arc::new(AgentMetrics::new());
    let cache = PodCredentialCache::new(policy, source.clone(), Arc::new(clock), metrics.clone());
    CacheFixture {
        clock,
        source,
        cache,
        metrics,
    }
}

/// The default policy with `tune` applied.
fn policy(tune: impl FnOnce(&mut CachePolicy)) -> CachePolicy {
    let mut policy = CachePolicy::default();
    tune(&mut policy);
    policy
}

/// How often a `{result}` counter of the agent's metrics was counted.
fn counted(
    family: &prometheus_client::metrics::family::Family<
        crate::metrics::FetchLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    result: &'static str,
) -> u64 {
    family
        .get_or_create(&crate::metrics::FetchLabels { result })
        .get()
}

/// A fixture on the default policy whose cache holds pod-a's credentials
/// (fetched once), and pod-a's token.
async fn pod_a_cached() -> (CacheFixture, String) {
    let f = fixture(CachePolicy::default(), false);
    let token = f.token("pod-a");
    f.key_id(&token).await;
    (f, token)
}

impl CacheFixture {
    fn token(&self, pod: &str) -> String {
        self.token_expiring(pod, 24 * 60 * MIN)
    }

    fn token_expiring(&self, pod: &str, after: Duration) -> String {
        let exp = (self.clock.now() + after)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        make_token(Some(exp), Some(pod))
    }

    async fn key_id(&self, token: &str) -> (String, LookupOutcome) {
        let served = self.cache.get(token).await.expect("credentials");
        let v: serde_json::Value = serde_json::from_slice(&served.body).unwrap();
        (
            v["AccessKeyId"].as_str().unwrap().to_owned(),
            served.outcome,
        )
    }

    /// Lets `wait` pass, then runs one maintenance pass.
    async fn maintain_after(&self, wait: Duration) {
        tokio::time::advance(wait).await;
        self.cache.maintain().await;
    }

    async fn settle(&self) {
        yield_until("every flight to land", || self.cache.flights.is_empty()).await;
    }
}

/// What [`CacheFixture::key_id`] returns for credentials `key_id` served with `outcome`.
fn served(key_id: &str, outcome: LookupOutcome) -> (String, LookupOutcome) {
    (key_id.to_owned(), outcome)
}

#[tokio::test(start_paused = true)]
async fn repeated_requests_are_served_from_memory() {
    let f = fixture(CachePolicy::default(), false);
    let token = f.token("pod-a");
    assert_eq!(f.key_id(&token).await, served("ASIA1", LookupOutcome::Miss));
    for _ in 0..100 {
        assert_eq!(f.key_id(&token).await, served("ASIA1", LookupOutcome::Hit));
    }
    assert_eq!(f.source.calls(), 1);
    assert_eq!(f.metrics.cache_hit.get(), 100);
    let shown = format!("{:?}", f.cache.get(&token).await.unwrap());
    assert!(
        !shown.contains("secret") && !shown.contains("session"),
        "Debug hides the credentials: {shown}"
    );
    assert_eq!(f.metrics.cached_entries.get(), 1);
    // Another pod is another entry.
    assert_eq!(
        f.key_id(&f.token("pod-b")).await,
        served("ASIA2", LookupOutcome::Miss)
    );
    assert_eq!(f.cache.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_requests_share_one_call() {
    let f = fixture(CachePolicy::default(), true);
    let token = f.token("pod-a");
    let mut requests = Vec::new();
    for _ in 0..500 {
        let (cache, token) = (f.cache.clone(), token.clone());
        requests.push(tokio::spawn(async move { cache.get(&token).await }));
    }
    yield_until("500 requests to miss or join", || {
        f.metrics.cache_joined.get() + f.metrics.cache_miss.get() == 500
    })
    .await;
    assert_eq!(f.source.calls(), 1);
    f.source.gate.as_ref().unwrap().add_permits(1);
    let mut outcomes = HashMap::new();
    for r in requests {
        let served = r.await.unwrap().unwrap();
        assert!(std::str::from_utf8(&served.body).unwrap().contains("ASIA1"));
        *outcomes.entry(format!("{:?}", served.outcome)).or_insert(0) += 1;
    }
    assert_eq!(f.source.calls(), 1);
    assert_eq!(outcomes.get("Miss"), Some(&1));
    assert_eq!(outcomes.get("Joined"), Some(&499));
}

#[tokio::test(start_paused = true)]
async fn a_hung_up_leader_does_not_cancel_the_call() {
    let f = fixture(CachePolicy::default(), true);
    let token = f.token("pod-a");
    let leader = {
        let (cache, token) = (f.cache.clone(), token.clone());
        tokio::spawn(async move { cache.get(&token).await })
    };
    yield_until("the leader's broker call", || f.source.calls() > 0).await;
    leader.abort();
    let follower = {
        let (cache, token) = (f.cache.clone(), token.clone());
        tokio::spawn(async move { cache.get(&token).await })
    };
    yield_until("the follower to join", || f.metrics.cache_joined.get() > 0).await;
    f.source.gate.as_ref().unwrap().add_permits(1);
    assert_eq!(
        follower.await.unwrap().unwrap().outcome,
        LookupOutcome::Joined
    );
    assert_eq!(f.source.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn used_entries_are_refreshed_ahead_of_expiry() {
    let (f, token) = pod_a_cached().await;
    f.maintain_after(39 * MIN).await;
    assert_eq!(
        f.source.calls(),
        1,
        "not due before 20 minutes before expiry"
    );
    f.maintain_after(MIN).await;
    assert_eq!(f.source.calls(), 2, "due 20 minutes before expiry");
    assert_eq!(counted(&f.metrics.refreshes, "ok"), 1);
    // The pod gets the new credentials, fresh, from memory.
    assert_eq!(f.key_id(&token).await, served("ASIA2", LookupOutcome::Hit));
    // Used since: refreshed again 40 minutes later.
    f.maintain_after(40 * MIN).await;
    assert_eq!(f.source.calls(), 3);
    // Not used since the last refresh (the pod is gone): not refreshed, and
    // dropped near expiry.
    f.maintain_after(40 * MIN).await;
    assert_eq!(f.source.calls(), 3);
    assert_eq!(f.cache.len(), 1);
    f.maintain_after(19 * MIN).await;
    assert_eq!(f.cache.len(), 0);
    assert_eq!(f.metrics.cached_entries.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn short_sessions_are_refreshed_at_half_life() {
    let f = fixture(CachePolicy::default(), false);
    f.source.answer(Ok(20 * MIN));
    let token = f.token("pod-a");
    f.key_id(&token).await;
    f.maintain_after(10 * MIN - Duration::from_secs(1)).await;
    assert_eq!(f.source.calls(), 1);
    f.maintain_after(Duration::from_secs(1)).await;
    assert_eq!(f.source.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_maintenance_task_runs_on_its_interval() {
    let (f, _) = pod_a_cached().await;
    let task = tokio::spawn(f.cache.clone().run_maintenance());
    tokio::time::sleep(40 * MIN + 10 * Duration::from_secs(1)).await;
    f.settle().await;
    assert_eq!(f.source.calls(), 2);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn stale_credentials_are_served_while_the_broker_is_down_until_near_expiry() {
    let (f, token) = pod_a_cached().await;
    f.source.answer(Err(UpstreamError::unavailable("down")));
    tokio::time::advance(41 * MIN).await;
    // Past the refresh time: served at once, and the refresh starts (and fails).
    assert_eq!(
        f.key_id(&token).await,
        served("ASIA1", LookupOutcome::Stale)
    );
    f.settle().await;
    assert_eq!(f.source.calls(), 2);
    // Within the retry delay: served without another call.
    assert_eq!(
        f.key_id(&token).await,
        served("ASIA1", LookupOutcome::Stale)
    );
    f.settle().await;
    assert_eq!(f.source.calls(), 2);
    // Retries back off: 5 s, then 10 s, …
    f.maintain_after(Duration::from_secs(5)).await;
    assert_eq!(f.source.calls(), 3);
    f.maintain_after(Duration::from_secs(5)).await;
    assert_eq!(f.source.calls(), 3);
    f.maintain_after(Duration::from_secs(5)).await;
    assert_eq!(f.source.calls(), 4);
    assert!(!f.cache.upstream_healthy(), "three outages in a row");
    assert_eq!(f.metrics.upstream_up.get(), 0);
    // Still served a second before the margin.
    let until = 59 * MIN - (41 * MIN + Duration::from_secs(15)) - Duration::from_secs(1);
    tokio::time::advance(until).await;
    assert_eq!(f.key_id(&token).await.0, "ASIA1");
    // Then no more: the next request asks, and gets the outage.
    tokio::time::advance(Duration::from_secs(1)).await;
    match f.cache.get(&token).await {
        Err(Refusal::Upstream(e)) => assert_eq!(
            (e.status, e.code.as_str()),
            (503, "ServiceUnavailableException")
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.cache.len(), 0);
    // The broker is back: served again, healthy again.
    f.source.answer(Ok(60 * MIN));
    assert_eq!(f.key_id(&token).await.1, LookupOutcome::Miss);
    assert!(f.cache.upstream_healthy());
}

#[tokio::test(start_paused = true)]
async fn refusals_on_refresh_drop_the_entry() {
    for code in crate::upstream::DROPPING_CODES {
        let f = fixture(CachePolicy::default(), false);
        let token = f.token("pod-a");
        f.key_id(&token).await;
        let status = if code == "ResourceNotFoundException" {
            404
        } else {
            400
        };
        f.source
            .answer(Err(UpstreamError::new(status, code, "refused")));
        f.maintain_after(40 * MIN).await;
        assert_eq!(f.cache.len(), 0, "{code} drops the entry");
        assert_eq!(counted(&f.metrics.evictions, "dropped"), 1);
        assert!(f.cache.upstream_healthy(), "a refusal is an answer");
        match f.cache.get(&token).await {
            Err(Refusal::Upstream(e)) => {
                assert_eq!((e.status, e.code.as_str()), (status, code))
            }
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(f.source.calls(), 2, "the refusal is answered from memory");
    }
}

#[tokio::test(start_paused = true)]
async fn other_refusals_on_refresh_keep_serving() {
    let (f, token) = pod_a_cached().await;
    f.source.answer(Err(UpstreamError::new(
        429,
        "ThrottlingException",
        "slow down",
    )));
    f.maintain_after(40 * MIN).await;
    assert_eq!(f.cache.len(), 1);
    assert_eq!(
        f.key_id(&token).await,
        served("ASIA1", LookupOutcome::Stale)
    );
}

#[tokio::test(start_paused = true)]
async fn the_least_recently_used_entry_goes_first() {
    let f = fixture(policy(|p| p.max_entries = 3), false);
    let tokens: Vec<String> = ["a", "b", "c", "d"].iter().map(|p| f.token(p)).collect();
    for t in &tokens[..3] {
        f.key_id(t).await;
    }
    f.key_id(&tokens[0]).await; // a is now more recent than b
    f.key_id(&tokens[3]).await;
    assert_eq!(f.cache.len(), 3);
    assert_eq!(counted(&f.metrics.evictions, "lru"), 1);
    assert_eq!(f.source.calls(), 4);
    assert_eq!(f.key_id(&tokens[0]).await.1, LookupOutcome::Hit);
    assert_eq!(f.key_id(&tokens[2]).await.1, LookupOutcome::Hit);
    assert_eq!(
        f.key_id(&tokens[1]).await.1,
        LookupOutcome::Miss,
        "b was evicted"
    );
    assert_eq!(f.cache.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_cached_token_past_its_exp_is_refused() {
    let f = fixture(CachePolicy::default(), false);
    let token = f.token_expiring("pod-a", 10 * MIN);
    f.key_id(&token).await;
    tokio::time::advance(10 * MIN).await;
    assert_eq!(
        f.cache.get(&token).await.unwrap_err(),
        Refusal::Token(TokenRejection::Expired)
    );
    assert_eq!(f.cache.len(), 0);
    assert_eq!(f.source.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn bad_tokens_never_reach_the_broker() {
    let f = fixture(CachePolicy::default(), false);
    for token in [
        "",
        "garbage",
        "a.b.c",
        &f.token_expiring("p", Duration::ZERO),
    ] {
        assert!(
            matches!(f.cache.get(token).await, Err(Refusal::Token(_))),
            "{token}"
        );
    }
    assert_eq!(f.source.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_rotated_token_replaces_the_pods_entry() {
    let f = fixture(CachePolicy::default(), false);
    let old = f.token("pod-a");
    f.key_id(&old).await;
    tokio::time::advance(MIN).await;
    let new = f.token("pod-a");
    assert_ne!(old, new);
    assert_eq!(
        f.key_id(&new).await.1,
        LookupOutcome::Miss,
        "a new token is checked by the broker"
    );
    assert_eq!(f.cache.len(), 1);
    assert_eq!(f.key_id(&new).await.1, LookupOutcome::Hit);
    assert_eq!(f.key_id(&old).await.1, LookupOutcome::Miss);
}

#[tokio::test(start_paused = true)]
async fn failures_of_new_pods_are_not_cached() {
    let f = fixture(CachePolicy::default(), false);
    f.source.answer(Err(UpstreamError::unavailable("down")));
    let token = f.token("pod-a");
    assert!(f.cache.get(&token).await.is_err());
    assert!(f.cache.get(&token).await.is_err());
    assert_eq!(f.source.calls(), 2);
    assert!(f.cache.upstream_healthy(), "two outages are not yet three");
    assert!(f.cache.get(&token).await.is_err());
    assert!(!f.cache.upstream_healthy());
}

#[tokio::test(start_paused = true)]
async fn size_zero_disables_caching() {
    let f = fixture(policy(|p| p.max_entries = 0), false);
    let token = f.token("pod-a");
    f.key_id(&token).await;
    f.key_id(&token).await;
    assert_eq!(f.source.calls(), 2);
    assert_eq!(f.cache.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn while_the_broker_is_down_few_refreshes_are_tried_per_pass() {
    let f = fixture(CachePolicy::default(), false);
    let tokens: Vec<String> = (0..20).map(|i| f.token(&format!("pod-{i}"))).collect();
    for t in &tokens {
        f.key_id(t).await;
    }
    f.source.answer(Err(UpstreamError::unavailable("down")));
    for i in 0..3 {
        assert!(f.cache.get(&f.token(&format!("new-{i}"))).await.is_err());
    }
    assert!(!f.cache.upstream_healthy());
    f.maintain_after(40 * MIN).await;
    assert_eq!(
        f.source.calls(),
        23 + 8,
        "refresh_concurrency refreshes per pass while down"
    );
    // Those that failed wait for their retry; the others get their turn.
    f.cache.maintain().await;
    assert_eq!(f.source.calls(), 23 + 16);
    assert_eq!(f.cache.len(), 20, "all still served");
}

#[tokio::test(start_paused = true)]
async fn only_max_refresh_ahead_entries_keep_their_token() {
    let f = fixture(policy(|p| p.max_refresh_ahead = 2), false);
    let tokens: Vec<String> = ["a", "b", "c"].iter().map(|p| f.token(p)).collect();
    for t in &tokens {
        f.key_id(t).await;
    }
    assert_eq!(f.cache.read().kept_tokens(), 2);
    assert_eq!(f.cache.read().front_len(), 2);
    // All three are served from memory, kept token or not.
    for t in &tokens {
        assert_eq!(f.key_id(t).await.1, LookupOutcome::Hit);
    }
    // Due: only the two that keep their token are refreshed ahead.
    f.maintain_after(40 * MIN).await;
    assert_eq!(f.source.calls(), 5);
    // The third is refreshed when its pod asks (served at once, stale).
    assert_eq!(
        f.key_id(&tokens[2]).await,
        served("ASIA3", LookupOutcome::Stale)
    );
    f.settle().await;
    assert_eq!(f.source.calls(), 6);
    assert_eq!(
        f.key_id(&tokens[2]).await,
        served("ASIA6", LookupOutcome::Hit)
    );
    assert_eq!(f.cache.read().kept_tokens(), 2, "no room was freed");
    // Dropping a keeping entry frees its place for the next one stored.
    f.cache.write().remove(&token::digest(&tokens[0]), None);
    assert_eq!(
        (f.cache.read().kept_tokens(), f.cache.read().front_len()),
        (1, 1)
    );
    f.key_id(&f.token("d")).await;
    assert_eq!(
        (f.cache.read().kept_tokens(), f.cache.read().front_len()),
        (2, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn the_front_index_serves_only_the_exact_kept_token() {
    let f = fixture(CachePolicy::default(), false);
    let victim = f.token("victim");
    f.key_id(&victim).await;
    // Another token whose fast hash collided with the victim's (forced
    // here: with a random seed it cannot be aimed at) is not served the
    // victim's entry: the comparison fails and the SHA-256 key misses.
    let other = f.token("other");
    let tag = f.cache.front_hash.tag(&other);
    let victim_digest = token::digest(&victim);
    f.cache.write().force_front(tag, victim_digest);
    assert_eq!(f.key_id(&other).await, served("ASIA2", LookupOutcome::Miss));
    assert_eq!(f.key_id(&victim).await, served("ASIA1", LookupOutcome::Hit));
    // A token differing from the victim's in its last byte is the
    // broker's to judge (here it accepts it as the pod's rotated token).
    let mut near = victim.clone();
    let last = near.pop().unwrap();
    near.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(f.key_id(&near).await, served("ASIA3", LookupOutcome::Miss));
}

#[tokio::test(start_paused = true)]
async fn with_no_kept_tokens_the_cache_still_serves_and_refreshes_on_request() {
    let f = fixture(policy(|p| p.max_refresh_ahead = 0), false);
    let token = f.token("pod-a");
    f.key_id(&token).await;
    assert_eq!(f.key_id(&token).await.1, LookupOutcome::Hit);
    assert_eq!(f.cache.read().kept_tokens(), 0);
    f.maintain_after(40 * MIN).await;
    assert_eq!(f.source.calls(), 1, "nothing to refresh ahead with");
    assert_eq!(f.key_id(&token).await.1, LookupOutcome::Stale);
    f.settle().await;
    assert_eq!(f.key_id(&token).await, served("ASIA2", LookupOutcome::Hit));
}

mod refused;
mod revoke;
