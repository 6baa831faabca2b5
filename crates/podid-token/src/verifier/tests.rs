//! Tests of the caching verifier: caches, refetches and their rate limit, key removal.

use super::*;
use crate::dev::{DevAlgorithm, ProjectedToken, SigningKey};
use std::sync::atomic::AtomicI64;

/// A fetcher serving one JWKS document, counting its calls.
struct Serving {
    doc: serde_json::Value,
    calls: AtomicU64,
}

impl Serving {
    fn new(doc: serde_json::Value) -> Arc<Self> {
        Arc::new(Serving {
            doc,
            calls: AtomicU64::new(0),
        })
    }
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl JwksFetcher for Serving {
    async fn fetch_jwks(&self, _uri: &str) -> Result<serde_json::Value, JwksFetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.doc.clone())
    }
}

fn trust(key: &SigningKey, uri: Option<&str>) -> ClusterTrust {
    ClusterTrust {
        name: "c".into(),
        issuer: "https://iss".into(),
        audience: "pods.eks.amazonaws.com".into(),
        jwks: key.jwks(),
        jwks_uri: uri.map(str::to_string),
        version: 7,
    }
}

fn fixed_clock(t: i64) -> SecondsClock {
    Arc::new(move || t)
}

#[test]
fn system_clock_is_now() {
    let now = system_clock()();
    assert!(now > 1_700_000_000 && now < 4_000_000_000, "{now}");
}

#[tokio::test]
async fn no_fetcher_turns_unknown_keys_into_key_set_errors() {
    let key = SigningKey::generate(DevAlgorithm::Es256, "k").unwrap();
    let other = SigningKey::generate(DevAlgorithm::Es256, "other").unwrap();
    let v = TokenVerifier::new(Arc::new(NoJwksFetcher), fixed_clock(1000), 10);
    let token = ProjectedToken::new("https://iss", "ns", "sa", 1000).sign(&other);
    let err = v
        .verify(&trust(&key, Some("https://iss/jwks")), &token)
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::KeySet(_)), "{err}");
    assert_eq!(v.stats().jwks_refreshes, 1);
    assert_eq!(v.stats().jwks_refresh_failures, 1);
}

#[tokio::test]
async fn forget_cluster_drops_its_keys() {
    let key = SigningKey::generate(DevAlgorithm::Rs256, "k").unwrap();
    let v = TokenVerifier::new(Arc::new(NoJwksFetcher), fixed_clock(1000), 0);
    let t = trust(&key, None);
    let token = ProjectedToken::new("https://iss", "ns", "sa", 1000).sign(&key);
    v.verify(&t, &token).await.unwrap();
    v.verify(&t, &token).await.unwrap();
    assert_eq!(v.stats().key_sets_parsed, 1);
    v.forget_cluster("c");
    v.verify(&t, &token).await.unwrap();
    assert_eq!(v.stats().key_sets_parsed, 2);
    assert!(format!("{v:?}").contains("key_sets_parsed: 2"));
}

#[tokio::test]
async fn with_fetcher_uses_the_system_clock() {
    let key = SigningKey::generate(DevAlgorithm::Es384, "k").unwrap();
    let v = TokenVerifier::with_fetcher(Arc::new(NoJwksFetcher));
    let now = system_clock()();
    let token = ProjectedToken::new("https://iss", "ns", "sa", now).sign(&key);
    assert_eq!(
        v.verify(&trust(&key, None), &token)
            .await
            .unwrap()
            .namespace,
        "ns"
    );
    let old = ProjectedToken::new("https://iss", "ns", "sa", 1000).sign(&key);
    assert_eq!(
        v.verify(&trust(&key, None), &old).await,
        Err(TokenError::Expired)
    );
}

#[tokio::test]
async fn a_fetch_is_allowed_again_60_s_after_the_last() {
    // docs/broker.md: the JWKS is fetched again at most once a minute per cluster.
    let known = SigningKey::generate(DevAlgorithm::Es256, "known").unwrap();
    let stranger = SigningKey::generate(DevAlgorithm::Es256, "stranger").unwrap();
    let fetcher = Serving::new(known.jwks());
    let now = Arc::new(AtomicI64::new(1000));
    let clock: SecondsClock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let v = TokenVerifier::new(fetcher.clone(), clock, 0);
    let t = trust(&known, Some("https://iss/jwks"));
    let token = ProjectedToken::new("https://iss", "ns", "sa", 1000).sign(&stranger);
    let unknown = Err(TokenError::UnknownKey {
        kid: Some("stranger".into()),
    });
    // (time, fetches made by then): a fetch at 1000, none at 1059, one at 1060 (60 s
    // later), none at 1119, one at 1120.
    for (at, fetches) in [(1000, 1), (1059, 1), (1060, 2), (1119, 2), (1120, 3)] {
        now.store(at, Ordering::SeqCst);
        assert_eq!(v.verify(&t, &token).await, unknown, "at {at}");
        assert_eq!(fetcher.calls(), fetches, "at {at}");
    }
    assert_eq!(v.stats().jwks_refreshes, 3);
    assert_eq!(v.stats().jwks_refreshes_rate_limited, 2);
}

#[tokio::test]
async fn rate_limited_refresh_offers_keys_fetched_since() {
    // While rate-limited, `refresh` offers the cluster's current keys only when they are
    // newer than the ones the caller used (another caller fetched them meanwhile) and belong
    // to the caller's version of the cluster; otherwise there is nothing to retry with.
    let key = SigningKey::generate(DevAlgorithm::Es256, "k").unwrap();
    let fetcher = Serving::new(key.jwks());
    let v = TokenVerifier::new(fetcher.clone(), fixed_clock(1000), 0);
    let t = trust(&key, Some("https://iss/jwks"));
    let stored = v.key_set(&t).unwrap();
    let fetched = v.refresh(&t, 1000, Some(&stored)).await.unwrap().unwrap();
    assert!(!Arc::ptr_eq(&stored, &fetched));
    assert_eq!(fetcher.calls(), 1);

    // The caller used the stored set, since replaced: retry with the fetched one.
    let offered = v.refresh(&t, 1010, Some(&stored)).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&offered, &fetched));
    // The caller had no usable set: the current one.
    let offered = v.refresh(&t, 1010, None).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&offered, &fetched));
    // The caller used the current set: nothing newer.
    assert!(v.refresh(&t, 1010, Some(&fetched)).await.unwrap().is_none());
    // Another version of the cluster: the cached keys are not its keys.
    let mut newer = t.clone();
    newer.version = 8;
    assert!(v
        .refresh(&newer, 1010, Some(&stored))
        .await
        .unwrap()
        .is_none());
    assert!(v.refresh(&newer, 1010, None).await.unwrap().is_none());

    assert_eq!(fetcher.calls(), 1);
    assert_eq!(v.stats().jwks_refreshes_rate_limited, 5);
}

/// A fetcher serving a document that can be replaced, or failing; counts its calls.
struct Switchable {
    doc: std::sync::Mutex<Option<serde_json::Value>>,
    calls: AtomicU64,
}

impl Switchable {
    fn new(doc: serde_json::Value) -> Arc<Self> {
        Arc::new(Switchable {
            doc: std::sync::Mutex::new(Some(doc)),
            calls: AtomicU64::new(0),
        })
    }
    /// Serves `doc` from now on; `None` fails every fetch.
    fn serve(&self, doc: Option<serde_json::Value>) {
        *self.doc.lock().unwrap() = doc;
    }
}

#[async_trait]
impl JwksFetcher for Switchable {
    async fn fetch_jwks(&self, _uri: &str) -> Result<serde_json::Value, JwksFetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let doc = self.doc.lock().unwrap().clone();
        doc.ok_or(JwksFetchError::NoFetcher)
    }
}

/// `{"keys": [...]}` of these keys.
fn jwks_of(keys: &[&SigningKey]) -> serde_json::Value {
    serde_json::json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// A cluster `c` at `version` whose stored set holds `keys`, fetched from a URL.
fn url_trust(keys: &[&SigningKey], version: i64) -> ClusterTrust {
    ClusterTrust {
        name: "c".into(),
        issuer: "https://iss".into(),
        audience: "pods.eks.amazonaws.com".into(),
        jwks: jwks_of(keys),
        jwks_uri: Some("https://iss/jwks".into()),
        version,
    }
}

fn token_of(key: &SigningKey, pod: &str) -> String {
    let mut t = ProjectedToken::new("https://iss", "ns", "sa", 1000);
    t.pod_name = pod.into();
    t.sign(key)
}

#[tokio::test]
async fn a_key_removed_by_a_refresh_takes_its_cached_tokens_with_it() {
    let k = SigningKey::generate(DevAlgorithm::Rs256, "k").unwrap();
    let other = SigningKey::generate(DevAlgorithm::Es256, "other").unwrap();
    let fetcher = Switchable::new(jwks_of(&[&k, &other]));
    let v = TokenVerifier::new(fetcher.clone(), fixed_clock(1000), 100);
    let t = url_trust(&[&k, &other], 7);
    let signed_k = token_of(&k, "pk");
    let signed_other = token_of(&other, "po");
    for _ in 0..2 {
        assert_eq!(v.verify(&t, &signed_k).await.unwrap().pod_name, "pk");
        assert_eq!(v.verify(&t, &signed_other).await.unwrap().pod_name, "po");
    }
    assert_eq!(v.stats().token_cache_hits, 2);

    // k leaves the served set; the periodic refresh installs it.
    fetcher.serve(Some(jwks_of(&[&other])));
    let doc = v.refresh_keys(&t).await.unwrap().unwrap();
    assert_eq!(doc, jwks_of(&[&other]));
    // The cached verdict no longer counts: k's token is checked again and refused (the
    // unknown kid fetches once more and still does not find it).
    assert_eq!(
        v.verify(&t, &signed_k).await,
        Err(TokenError::UnknownKey {
            kid: Some("k".into())
        })
    );
    assert_eq!(v.stats().token_cache_key_gone, 1);
    // Refused again, from then on (rate-limited: no further fetch).
    assert!(v.verify(&t, &signed_k).await.is_err());
    assert_eq!(fetcher.calls.load(Ordering::SeqCst), 2);
    // The other key's cached token is still good, from the cache.
    let hits = v.stats().token_cache_hits;
    assert_eq!(v.verify(&t, &signed_other).await.unwrap().pod_name, "po");
    assert_eq!(v.stats().token_cache_hits, hits + 1);
}

#[tokio::test]
async fn a_key_replaced_under_the_same_kid_is_not_the_same_key() {
    let old = SigningKey::generate(DevAlgorithm::Es256, "k").unwrap();
    let new = SigningKey::generate(DevAlgorithm::Es256, "k").unwrap();
    let fetcher = Switchable::new(jwks_of(&[&old]));
    let v = TokenVerifier::new(fetcher.clone(), fixed_clock(1000), 100);
    let t = url_trust(&[&old], 7);
    let signed_old = token_of(&old, "p");
    v.verify(&t, &signed_old).await.unwrap();
    fetcher.serve(Some(jwks_of(&[&new])));
    v.refresh_keys(&t).await.unwrap();
    assert_eq!(
        v.verify(&t, &signed_old).await,
        Err(TokenError::BadSignature)
    );
    assert_eq!(v.stats().token_cache_key_gone, 1);
    assert!(v.verify(&t, &token_of(&new, "p")).await.is_ok());
}

#[tokio::test]
async fn a_refresh_that_fails_keeps_the_keys() {
    let k = SigningKey::generate(DevAlgorithm::Es256, "k").unwrap();
    let fetcher = Switchable::new(jwks_of(&[&k]));
    let v = TokenVerifier::new(fetcher.clone(), fixed_clock(1000), 100);
    let t = url_trust(&[&k], 7);
    let token = token_of(&k, "p");
    v.verify(&t, &token).await.unwrap();
    // The URL fails, then serves a set without any usable key: both keep the keys.
    fetcher.serve(None);
    let failed = v.refresh_keys(&t).await.unwrap_err();
    assert!(
        matches!(failed, TokenError::KeySet(KeySetError::Fetch(_))),
        "{failed}"
    );
    fetcher.serve(Some(serde_json::json!({"keys": []})));
    let unusable = v.refresh_keys(&t).await.unwrap_err();
    assert!(
        matches!(unusable, TokenError::KeySet(KeySetError::Empty)),
        "{unusable}"
    );
    assert_eq!(v.stats().jwks_refresh_failures, 2);
    assert!(v.verify(&t, &token).await.is_ok());
    assert!(v.verify(&t, &token_of(&k, "fresh")).await.is_ok());
    assert_eq!(v.stats().token_cache_key_gone, 0);
}

/// Keys `k` and `k2`, a URL serving only `k2`, and a verifier fetching from it.
fn k2_served() -> (SigningKey, SigningKey, Arc<Switchable>, TokenVerifier) {
    let k = SigningKey::generate(DevAlgorithm::Es256, "k").unwrap();
    let k2 = SigningKey::generate(DevAlgorithm::Es256, "k2").unwrap();
    let fetcher = Switchable::new(jwks_of(&[&k2]));
    let v = TokenVerifier::new(fetcher.clone(), fixed_clock(1000), 100);
    (k, k2, fetcher, v)
}

#[tokio::test]
async fn a_refresh_before_any_token_overrides_the_stored_set() {
    // After a restart the stored set may still hold a key the URL has dropped since; the
    // refresh at start-up is what counts.
    let (k, k2, _, v) = k2_served();
    let t = url_trust(&[&k, &k2], 7);
    v.refresh_keys(&t).await.unwrap();
    assert_eq!(v.stats().key_sets_parsed, 0);
    assert!(matches!(
        v.verify(&t, &token_of(&k, "p")).await,
        Err(TokenError::UnknownKey { .. })
    ));
    assert!(v.verify(&t, &token_of(&k2, "p")).await.is_ok());
}

#[tokio::test]
async fn a_refresh_of_an_older_version_leaves_the_newer_keys() {
    let (k, _, fetcher, v) = k2_served();
    let newer = url_trust(&[&k], 8);
    assert!(v.verify(&newer, &token_of(&k, "p")).await.is_ok());
    // A refresh made from a registry read older than version 8 does not replace its keys…
    v.refresh_keys(&url_trust(&[&k], 7)).await.unwrap();
    assert!(v.verify(&newer, &token_of(&k, "q")).await.is_ok());
    // …one of version 8 (or later) does.
    v.refresh_keys(&newer).await.unwrap();
    assert!(v.verify(&newer, &token_of(&k, "r")).await.is_err());
    // Without a URL there is nothing to fetch.
    assert_eq!(v.refresh_keys(&trust(&k, None)).await, Ok(None));
    assert_eq!(fetcher.calls.load(Ordering::SeqCst), 3);
}
