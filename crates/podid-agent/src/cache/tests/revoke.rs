//! What the change feed does to the cache (`revoke.rs`), with the fake
//! broker on tokio's paused clock: an association's entries dropped, refused
//! tokens forgotten, everything held revalidated.

use super::*;

impl FakeSource {
    /// The broker names `association` in its answers for `token`.
    fn grants(&self, token: &str, association: &str) {
        self.associations
            .lock()
            .unwrap()
            .insert(token.to_owned(), association.to_owned());
    }

    /// `association` is deleted: its tokens get 404 from now on.
    fn delete(&self, association: &str) {
        self.deleted.lock().unwrap().push(association.to_owned());
    }

    fn release(&self, calls: usize) {
        self.gate.as_ref().unwrap().add_permits(calls);
    }
}

/// How many entries left the cache for `reason`.
fn evicted(f: &CacheFixture, reason: &'static str) -> u64 {
    counted(&f.metrics.evictions, reason)
}

/// A fixture whose cache holds one entry per pod, each granted by the
/// association named beside it, and the pods' tokens.
async fn holding(
    tune: impl FnOnce(&mut CachePolicy),
    pods: &[(&str, &str)],
) -> (CacheFixture, Vec<String>) {
    let f = fixture(policy(tune), false);
    let mut tokens = Vec::new();
    for (pod, association) in pods {
        let token = f.token(pod);
        f.source.grants(&token, association);
        f.key_id(&token).await;
        tokens.push(token);
    }
    (f, tokens)
}

/// What a revalidation did, in short.
fn counts(refreshed: usize, dropped: usize, unchecked: usize) -> Revalidated {
    Revalidated {
        refreshed,
        dropped,
        unchecked,
    }
}

/// A gated fixture holding pod a's entry, whose refresh (past its refresh
/// time, 40 of 60 minutes) has asked the broker, which holds the answer.
async fn refreshing() -> (CacheFixture, String) {
    let f = fixture(CachePolicy::default(), true);
    let token = f.token("a");
    f.source.release(1);
    f.key_id(&token).await;
    tokio::time::advance(41 * MIN).await;
    assert_eq!(f.cache.maintenance_pass().len(), 1);
    yield_until("the refresh to ask", || f.source.calls() == 2).await;
    (f, token)
}

#[tokio::test(start_paused = true)]
async fn dropping_an_association_drops_its_entries_only() {
    let (f, tokens) = holding(|_| {}, &[("a", "a-1"), ("b", "a-1"), ("c", "a-2")]).await;
    assert_eq!(f.cache.len(), 3);
    assert_eq!(f.cache.drop_association("a-1"), 2);
    assert_eq!(f.cache.len(), 1);
    assert_eq!(f.metrics.cached_entries.get(), 1);
    assert_eq!(evicted(&f, "revoked"), 2);
    assert_eq!(f.cache.drop_association("a-unknown"), 0);
    // c is still served from memory; a asks the broker again, which refuses now.
    assert_eq!(f.key_id(&tokens[2]).await.1, LookupOutcome::Hit);
    f.source.delete("a-1");
    match f.cache.get(&tokens[0]).await {
        Err(Refusal::Upstream(e)) => assert_eq!(e.code, "ResourceNotFoundException"),
        other => panic!("expected the broker's 404, got {other:?}"),
    }
    assert_eq!(f.source.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_answer_under_way_during_a_drop_is_served_but_not_stored() {
    let f = fixture(CachePolicy::default(), true);
    let token = f.token("a");
    let asked = {
        let (cache, token) = (f.cache.clone(), token.clone());
        tokio::spawn(async move { cache.get(&token).await })
    };
    yield_until("the broker to be asked", || f.source.calls() == 1).await;
    assert_eq!(f.cache.drop_association("a-default"), 0, "nothing held yet");
    f.source.release(1);
    let served = asked
        .await
        .unwrap()
        .expect("the request made before the drop");
    assert_eq!(served.outcome, LookupOutcome::Miss);
    assert_eq!(
        f.cache.len(),
        0,
        "not stored: the drop came after it was asked"
    );
    // The next request asks again.
    f.source.release(1);
    assert_eq!(f.key_id(&token).await.1, LookupOutcome::Miss);
    assert_eq!(f.source.calls(), 2);
    assert_eq!(f.cache.len(), 1, "stored: asked after the drop");
}

#[tokio::test(start_paused = true)]
async fn a_refresh_under_way_does_not_bring_a_dropped_entry_back() {
    let (f, _) = refreshing().await;
    assert_eq!(f.cache.drop_association("a-default"), 1);
    f.source.release(1);
    f.settle().await;
    assert_eq!(f.cache.len(), 0, "the refresh's answer is not stored");
}

#[tokio::test(start_paused = true)]
async fn forgetting_refusals_lets_a_refused_token_ask_again() {
    let f = fixture(CachePolicy::default(), false);
    let token = f.token("a");
    f.source.delete("a-default");
    assert!(f.cache.get(&token).await.is_err());
    assert!(f.cache.get(&token).await.is_err());
    assert_eq!(f.source.calls(), 1, "the second refusal came from memory");
    assert_eq!(f.metrics.refused_tokens.get(), 1);
    // The association is created again; the feed says so.
    f.source.deleted.lock().unwrap().clear();
    f.cache.forget_refused();
    assert_eq!(f.metrics.refused_tokens.get(), 0);
    assert_eq!(f.key_id(&token).await, served("ASIA2", LookupOutcome::Miss));
}

#[tokio::test(start_paused = true)]
async fn revalidation_refreshes_what_the_broker_accepts_and_drops_what_it_refuses() {
    let (f, tokens) = holding(|_| {}, &[("a", "a-1"), ("b", "a-2")]).await;
    f.source.delete("a-1");
    assert_eq!(f.cache.revalidate().await, counts(1, 1, 0));
    assert_eq!(f.source.calls(), 4, "one call per entry, at once");
    assert_eq!(f.cache.len(), 1);
    // b's entry holds the new answer (call 3 or 4), served from memory.
    let (key, outcome) = f.key_id(&tokens[1]).await;
    assert_eq!(outcome, LookupOutcome::Hit);
    assert!(key == "ASIA3" || key == "ASIA4", "{key}");
    assert!(f.cache.get(&tokens[0]).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn revalidation_drops_entries_that_keep_no_token_and_forgets_refusals() {
    // Only the first pod's token is kept (max_refresh_ahead 1).
    let (f, tokens) = holding(|p| p.max_refresh_ahead = 1, &[("a", "a-1"), ("b", "a-1")]).await;
    let refused = f.token("c");
    f.source.delete("a-3");
    f.source.grants(&refused, "a-3");
    assert!(f.cache.get(&refused).await.is_err());
    assert_eq!(f.metrics.refused_tokens.get(), 1);
    assert_eq!(f.cache.revalidate().await, counts(1, 1, 0));
    assert_eq!(evicted(&f, "revalidated"), 1);
    assert_eq!(f.metrics.refused_tokens.get(), 0);
    assert_eq!(f.key_id(&tokens[0]).await.1, LookupOutcome::Hit);
    assert_eq!(f.key_id(&tokens[1]).await.1, LookupOutcome::Miss);
}

#[tokio::test(start_paused = true)]
async fn revalidation_keeps_what_it_cannot_check_while_the_broker_is_down() {
    let (f, tokens) = holding(|_| {}, &[("a", "a-1"), ("b", "a-2")]).await;
    f.source.answer(Err(UpstreamError::unavailable("down")));
    assert_eq!(f.cache.revalidate().await, counts(0, 0, 2));
    assert_eq!(
        f.key_id(&tokens[0]).await,
        served("ASIA1", LookupOutcome::Hit)
    );
}

#[tokio::test(start_paused = true)]
async fn revalidation_asks_at_most_refresh_concurrency_at_once() {
    let f = fixture(policy(|p| p.refresh_concurrency = 2), true);
    for pod in ["a", "b", "c", "d", "e"] {
        f.source.release(1);
        f.key_id(&f.token(pod)).await;
    }
    let revalidation = {
        let cache = f.cache.clone();
        tokio::spawn(async move { cache.revalidate().await })
    };
    yield_until("two calls under way", || f.source.calls() == 7).await;
    for _ in 0..1_000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(f.source.calls(), 7, "no third call while two are under way");
    f.source.release(5);
    let done = revalidation.await.unwrap();
    assert_eq!(done.refreshed, 5);
    assert_eq!(f.source.calls(), 10);
}

#[tokio::test(start_paused = true)]
async fn revalidation_asks_again_after_a_call_begun_before_it() {
    let (f, token) = refreshing().await;
    let revalidation = {
        let cache = f.cache.clone();
        tokio::spawn(async move { cache.revalidate().await })
    };
    // The refresh begun before is answered (not stored), then the revalidation asks.
    f.source.release(1);
    yield_until("the revalidation to ask", || f.source.calls() == 3).await;
    f.source.release(1);
    assert_eq!(revalidation.await.unwrap().refreshed, 1);
    assert_eq!(f.key_id(&token).await, served("ASIA3", LookupOutcome::Hit));
}
