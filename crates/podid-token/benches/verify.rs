//! `cargo bench -p podid-token` (issue 7): verifying a projected
//! service-account token signed RS256 (2048-bit key, the Kubernetes default).
//!
//! - `cache_hit`: the same token again — the broker's path for a pod whose
//!   SDK asks again within the token's life (SHA-256 of the token, one map
//!   lookup, a clone of the identity).
//! - `cache_miss`: the same token with the token cache off — the full check
//!   every time (decode, signature, claims).
//! - `fresh_token`: a new token each time, the cache on (256 distinct tokens
//!   cycling through a 64-entry cache, so every one misses, is checked and is
//!   inserted, evicting the least recently used).
//! - `verify_token`: the pure check without the verifier, for reference.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use podid_token::dev::{DevAlgorithm, ProjectedToken, SigningKey};
use podid_token::{verify_token, ClusterTrust, KeySet, NoJwksFetcher, TokenVerifier};

const NOW: i64 = 1_767_225_600;

/// The verifier awaits only to fetch a JWKS, which these clusters never do
/// (their keys are inline): its futures are ready at the first poll.
fn now_or_never<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the verifier waited (for a JWKS fetch?)"),
    }
}

fn verifier(max_cached_tokens: usize) -> TokenVerifier {
    TokenVerifier::new(Arc::new(NoJwksFetcher), Arc::new(|| NOW), max_cached_tokens)
}

fn bench_verify(c: &mut Criterion) {
    let key = SigningKey::generate(DevAlgorithm::Rs256, "bench-key").expect("an RSA key");
    let trust = ClusterTrust {
        name: "bench".into(),
        issuer: "https://oidc.eks.eu-west-1.amazonaws.com/id/8C1B5B0E4D2A9F7E6C3B1A0D9E8F7A6B"
            .into(),
        audience: "pods.eks.amazonaws.com".into(),
        jwks: key.jwks(),
        jwks_uri: None,
        version: 1,
    };
    let token = ProjectedToken::new(&*trust.issuer, "team-a", "app", NOW - 60).sign(&key);
    let fresh: Vec<String> = (0..256)
        .map(|i| {
            ProjectedToken::new(&*trust.issuer, "team-a", format!("app-{i}"), NOW - 60).sign(&key)
        })
        .collect();

    let mut group = c.benchmark_group("token_verify_rs256");
    group.throughput(criterion::Throughput::Elements(1));

    let cached = verifier(10_000);
    now_or_never(cached.verify(&trust, &token)).expect("a valid token");
    group.bench_function("cache_hit", |b| {
        b.iter(|| now_or_never(cached.verify(black_box(&trust), black_box(&token))).expect("valid"))
    });
    assert!(cached.stats().token_cache_hits > 0);

    let uncached = verifier(0);
    group.bench_function("cache_miss", |b| {
        b.iter(|| {
            now_or_never(uncached.verify(black_box(&trust), black_box(&token))).expect("valid")
        })
    });
    assert_eq!(uncached.stats().token_cache_hits, 0);

    let small = verifier(64);
    let mut i = 0;
    group.bench_function("fresh_token", |b| {
        b.iter(|| {
            i = (i + 1) % fresh.len();
            now_or_never(small.verify(black_box(&trust), black_box(&fresh[i]))).expect("valid")
        })
    });
    assert_eq!(
        small.stats().token_cache_hits,
        0,
        "every fresh token misses"
    );

    let keys = KeySet::from_jwks(&trust.jwks).expect("keys");
    group.bench_function("verify_token", |b| {
        b.iter(|| verify_token(black_box(&token), &trust, &keys, NOW).expect("valid"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_verify
}
criterion_main!(benches);
