//! The negative cache, through the cache, on tokio's paused clock: which
//! refusals are remembered, for how long, and how many.

use super::*;

/// EKS Auth's status for each refusal the agent remembers (its API model:
/// ResourceNotFound 404, AccessDenied 403; the others 400).
const REMEMBERED: [(u16, &str); 4] = [
    (404, "ResourceNotFoundException"),
    (403, "AccessDeniedException"),
    (400, "InvalidTokenException"),
    (400, "ExpiredTokenException"),
];

fn refusal(status: u16, code: &str) -> UpstreamError {
    UpstreamError::new(status, code, format!("the broker says {code}"))
}

async fn refused(f: &CacheFixture, token: &str) -> UpstreamError {
    match f.cache.get(token).await {
        Err(Refusal::Upstream(e)) => e,
        other => panic!("expected the broker's refusal, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn each_token_refusal_is_answered_again_from_memory_as_the_broker_gave_it() {
    for (status, code) in REMEMBERED {
        let f = fixture(CachePolicy::default(), false);
        f.source.answer(Err(refusal(status, code)));
        let token = f.token("forged");
        let first = refused(&f, &token).await;
        assert_eq!(first, refusal(status, code), "{code}");
        for retry in 0..4 {
            assert_eq!(refused(&f, &token).await, first, "{code}, retry {retry}");
        }
        assert_eq!(
            f.source.calls(),
            1,
            "{code}: one broker call for five requests"
        );
        assert_eq!(f.metrics.cache_refused.get(), 4, "{code}");
        assert_eq!(f.metrics.refused_tokens.get(), 1, "{code}");
        assert_eq!(f.cache.len(), 0, "{code}: no credentials cached");
    }
}

#[tokio::test(start_paused = true)]
async fn throttles_outages_and_other_errors_are_never_remembered() {
    for error in [
        UpstreamError::new(429, "ThrottlingException", "slow down"),
        UpstreamError::unavailable("down"),
        UpstreamError::internal("oops"),
        UpstreamError::new(500, "InternalServerException", "oops"),
        UpstreamError::new(400, "InvalidParameterException", "bad"),
        UpstreamError::new(400, "InvalidRequestException", "bad"),
        // A refusal code on a 5xx or a 429 says nothing of the token either.
        UpstreamError::new(503, "AccessDeniedException", "odd"),
        UpstreamError::new(429, "InvalidTokenException", "odd"),
    ] {
        let f = fixture(CachePolicy::default(), false);
        f.source.answer(Err(error.clone()));
        let token = f.token("pod");
        assert_eq!(refused(&f, &token).await, error);
        assert_eq!(refused(&f, &token).await, error);
        assert_eq!(f.source.calls(), 2, "{error}: each request asks the broker");
        assert_eq!(f.metrics.cache_refused.get(), 0, "{error}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_remembered_for_the_ttl_then_the_broker_is_asked_again() {
    let f = fixture(policy(|p| p.refused_ttl = Duration::from_secs(30)), false);
    f.source
        .answer(Err(refusal(404, "ResourceNotFoundException")));
    let token = f.token("early");
    refused(&f, &token).await;
    tokio::time::advance(Duration::from_millis(29_999)).await;
    refused(&f, &token).await;
    assert_eq!(f.source.calls(), 1, "still remembered just before 30 s");
    // The association is created meanwhile: the pod gets credentials once
    // the refusal is forgotten, 30 s after it.
    f.source.answer(Ok(60 * MIN));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(f.key_id(&token).await, served("ASIA2", LookupOutcome::Miss));
    assert_eq!(f.key_id(&token).await, served("ASIA2", LookupOutcome::Hit));
}

#[tokio::test(start_paused = true)]
async fn a_refusal_never_outlives_the_token() {
    let f = fixture(policy(|p| p.refused_ttl = 10 * MIN), false);
    f.source.answer(Err(refusal(400, "InvalidTokenException")));
    let token = f.token_expiring("short", Duration::from_secs(20));
    refused(&f, &token).await;
    tokio::time::advance(Duration::from_secs(19)).await;
    assert_eq!(refused(&f, &token).await.code, "InvalidTokenException");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        f.cache.get(&token).await.unwrap_err(),
        Refusal::Token(TokenRejection::Expired),
        "at its exp the token is refused as expired, not from memory"
    );
    assert_eq!(f.source.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn at_most_max_refused_tokens_are_remembered_the_oldest_forgotten_first() {
    let f = fixture(policy(|p| p.max_refused = 2), false);
    f.source.answer(Err(refusal(400, "InvalidTokenException")));
    let tokens: Vec<String> = ["a", "b", "c"].iter().map(|p| f.token(p)).collect();
    for t in &tokens {
        refused(&f, t).await;
    }
    assert_eq!(counted(&f.metrics.evictions, "refused"), 1);
    assert_eq!(f.metrics.refused_tokens.get(), 2);
    refused(&f, &tokens[1]).await;
    refused(&f, &tokens[2]).await;
    assert_eq!(f.source.calls(), 3, "b and c remembered");
    refused(&f, &tokens[0]).await;
    assert_eq!(f.source.calls(), 4, "a was forgotten: asked again");
}

#[tokio::test(start_paused = true)]
async fn a_zero_ttl_or_size_turns_it_off() {
    for tune in [
        (|p: &mut CachePolicy| p.refused_ttl = Duration::ZERO) as fn(&mut CachePolicy),
        |p: &mut CachePolicy| p.max_refused = 0,
    ] {
        let f = fixture(policy(tune), false);
        f.source.answer(Err(refusal(400, "InvalidTokenException")));
        let token = f.token("pod");
        for _ in 0..3 {
            refused(&f, &token).await;
        }
        assert_eq!(f.source.calls(), 3);
        assert_eq!(f.metrics.cache_refused.get(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_requests_of_a_refused_token_share_one_call() {
    let f = fixture(CachePolicy::default(), true);
    f.source.answer(Err(refusal(400, "InvalidTokenException")));
    let token = f.token("forged");
    let waiting: Vec<_> = (0..10)
        .map(|_| {
            let cache = f.cache.clone();
            let token = token.clone();
            tokio::spawn(async move { cache.get(&token).await })
        })
        .collect();
    let source = f.source.clone();
    yield_until("the broker call", move || source.calls() == 1).await;
    f.source.gate.as_ref().unwrap().add_permits(1);
    for w in waiting {
        assert!(matches!(w.await.unwrap(), Err(Refusal::Upstream(_))));
    }
    refused(&f, &token).await;
    assert_eq!(f.source.calls(), 1);
    assert_eq!(f.metrics.cache_refused.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refused_refresh_is_remembered_too() {
    let (f, token) = pod_a_cached().await;
    f.source
        .answer(Err(refusal(404, "ResourceNotFoundException")));
    f.maintain_after(40 * MIN).await;
    assert_eq!(f.cache.len(), 0, "the association is gone: entry dropped");
    assert_eq!(refused(&f, &token).await.code, "ResourceNotFoundException");
    assert_eq!(f.source.calls(), 2, "answered from memory");
}
