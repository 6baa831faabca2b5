//! `cargo bench -p podid-agent` (issue 7): the agent's cache lookup on a hit
//! — [`PodCredentialCache::try_get`], the synchronous step the credential
//! listener runs for every request (SHA-256 of the ~1.2 KiB token, a read
//! lock, a map lookup, the expiry checks, a clone of the pre-serialised body)
//! — with 1 and with 10,000 pods cached; and its parts: the token's digest
//! alone, and `token::inspect` (the sanity check a miss runs before asking
//! the broker); and the listener's rate limiter taking a token.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use podid_agent::cache::{LookupOutcome, Step};
use podid_agent::metrics::AgentMetrics;
use podid_agent::ratelimit::GcraLimiter;
use podid_agent::upstream::Secret;
use podid_agent::{
    token, CachePolicy, CredentialSource, FetchedCredentials, PodCredentialCache, SystemClock,
    UpstreamError,
};

/// Answers like STS: an 800-byte session token, one hour of validity.
struct Fixed;

#[async_trait]
impl CredentialSource for Fixed {
    async fn fetch(&self, _token: &str) -> Result<FetchedCredentials, UpstreamError> {
        Ok(FetchedCredentials {
            access_key_id: "ASIAXXXXXXXXXXXXXXXX".into(),
            secret_access_key: Secret::new("x".repeat(40)),
            // Like STS's: base64 of binary.
            session_token: Secret::new(
                base64::engine::general_purpose::STANDARD.encode(
                    (0..600u32)
                        .map(|i| (i * 37 % 251) as u8)
                        .collect::<Vec<u8>>(),
                ),
            ),
            expiration: SystemTime::now() + Duration::from_secs(3600),
            assumed_role_arn: "arn:aws:sts::111122223333:assumed-role/r/s".into(),
            association_id: Some("a-0123456789abcdef0".into()),
        })
    }
}

/// A projected-token-shaped JWT for pod `i` (~1.2 KiB, unsigned).
fn token(i: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "RS256", "kid": "k".repeat(43)});
    let claims = serde_json::json!({
        "aud": ["pods.eks.amazonaws.com"], "exp": now + 86_400, "iat": now, "nbf": now,
        "iss": "https://oidc.eks.eu-west-1.amazonaws.com/id/8C1B5B0E4D2A9F7E6C3B1A0D9E8F7A6B",
        "jti": format!("{i:036}"), "sub": "system:serviceaccount:team-a:app",
        "kubernetes.io": {
            "namespace": "team-a",
            "node": {"name": "ip-10-0-1-23.eu-west-1.compute.internal", "uid": format!("{:036}", i + 1)},
            "pod": {"name": format!("app-7d9f8b6c5d-{i:05}"), "uid": format!("{:036}", i + 2)},
            "serviceaccount": {"name": "app", "uid": format!("{:036}", i + 3)},
        },
    });
    let seg = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        seg(&header),
        seg(&claims),
        URL_SAFE_NO_PAD.encode([i as u8; 256])
    )
}

fn filled(
    pods: usize,
    runtime: &tokio::runtime::Runtime,
) -> (Arc<PodCredentialCache>, Vec<String>) {
    let cache = PodCredentialCache::new(
        CachePolicy::default(),
        Arc::new(Fixed),
        Arc::new(SystemClock),
        Arc::new(AgentMetrics::new()),
    );
    let tokens: Vec<String> = (0..pods).map(token).collect();
    runtime.block_on(async {
        for t in &tokens {
            cache.get(t).await.expect("credentials");
        }
    });
    assert_eq!(cache.len(), pods);
    (cache, tokens)
}

fn hit(cache: &Arc<PodCredentialCache>, token: &str) -> bytes::Bytes {
    match cache.try_get(token) {
        Step::Done(Ok(served)) if served.outcome == LookupOutcome::Hit => served.body,
        other => panic!("not a hit: {other:?}"),
    }
}

fn bench_cache(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("agent_cache");
    group.throughput(criterion::Throughput::Elements(1));
    // A pod whose entry keeps its token (the first `max_refresh_ahead`):
    // matched by fast hash and comparison, answer ready.
    let (cache, tokens) = filled(1, &runtime);
    group.bench_function("hit_kept_1_pods", |b| {
        b.iter(|| hit(&cache, black_box(&tokens[0])))
    });
    let (cache, tokens) = filled(10_000, &runtime);
    let kept = CachePolicy::default().max_refresh_ahead;
    group.bench_function("hit_kept_10000_pods", |b| {
        b.iter(|| hit(&cache, black_box(&tokens[kept / 2])))
    });
    // Beyond them: SHA-256 key, compact answer encoded again.
    group.bench_function("hit_compact_10000_pods", |b| {
        b.iter(|| hit(&cache, black_box(&tokens[5_000])))
    });
    let probe = token(7);
    group.bench_function("token_digest", |b| {
        b.iter(|| token::digest(black_box(&probe)))
    });
    group.bench_function("token_inspect", |b| {
        b.iter(|| {
            token::inspect(black_box(&probe), SystemTime::now()).expect("a well-formed token")
        })
    });
    let limiter = GcraLimiter::per_second(u32::MAX).unwrap();
    group.bench_function("rate_limit_acquire", |b| {
        b.iter(|| black_box(&limiter).try_acquire())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_cache
}
criterion_main!(benches);
