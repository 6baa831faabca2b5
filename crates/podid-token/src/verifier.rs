//! The caching verifier the broker uses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::cache::{token_digest, TokenCache};
use crate::error::{JwksFetchError, KeySetError};
use crate::jwks::KeySet;
use crate::verify::{decode, verify_decoded};
use crate::{
    ClusterTrust, PodIdentity, TokenError, DEFAULT_MAX_CACHED_TOKENS, JWKS_REFRESH_INTERVAL_SECS,
    MAX_TOKEN_BYTES,
};

/// Fetches a JWKS document; implemented by the caller (the server, with its
/// HTTP client), so this crate does no network IO.
#[async_trait]
pub trait JwksFetcher: Send + Sync {
    /// Returns the JWKS document served at `uri`, or why it could not be had.
    async fn fetch_jwks(&self, uri: &str) -> Result<serde_json::Value, JwksFetchError>;
}

/// A fetcher for verifiers whose clusters all have inline keys: every fetch
/// fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJwksFetcher;

#[async_trait]
impl JwksFetcher for NoJwksFetcher {
    async fn fetch_jwks(&self, _uri: &str) -> Result<serde_json::Value, JwksFetchError> {
        Err(JwksFetchError::NoFetcher)
    }
}

/// The verifier's clock: the current time in seconds since the Unix epoch.
pub type SecondsClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> SecondsClock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })
}

/// Counters of a [`TokenVerifier`], since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifierStats {
    /// Verifications answered from the token cache.
    pub token_cache_hits: u64,
    /// Verifications that had to check the token.
    pub token_cache_misses: u64,
    /// Tokens in the cache now.
    pub cached_tokens: u64,
    /// Key sets parsed from a cluster's stored JWKS.
    pub key_sets_parsed: u64,
    /// JWKS fetches started (each counts once, success or not).
    pub jwks_refreshes: u64,
    /// JWKS fetches that failed or returned an unusable document.
    pub jwks_refresh_failures: u64,
    /// Fetches skipped because the cluster's last one was under
    /// [`JWKS_REFRESH_INTERVAL_SECS`] ago.
    pub jwks_refreshes_rate_limited: u64,
}

/// The keys known for one cluster.
struct ClusterKeys {
    /// The cluster version the keys belong to.
    version: i64,
    /// The usable keys, or why the stored JWKS is unusable.
    keys: Result<Arc<KeySet>, TokenError>,
    /// When a fetch was last started for this cluster (any version).
    last_fetch: Option<i64>,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    parsed: AtomicU64,
    refreshes: AtomicU64,
    refresh_failures: AtomicU64,
    rate_limited: AtomicU64,
}

struct VerifierState {
    fetcher: Arc<dyn JwksFetcher>,
    clock: SecondsClock,
    tokens: Mutex<TokenCache>,
    clusters: Mutex<HashMap<String, ClusterKeys>>,
    counters: Counters,
}

/// Verifies tokens for registered clusters, with caches:
///
/// - key sets, parsed once per (cluster name, version); on an unknown `kid`
///   (or an unusable stored JWKS) a cluster with a `jwks_uri` has its JWKS
///   fetched through the [`JwksFetcher`], at most once per
///   [`JWKS_REFRESH_INTERVAL_SECS`] per cluster, and the token is checked
///   again with the fetched set, which then replaces the cached one;
/// - verified tokens, by SHA-256 digest of (cluster name, version, issuer,
///   audience, token), until the token's `exp`; bounded, evicting expired
///   entries first, then the least recently used.
///
/// Cloning is cheap and clones share the caches.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<VerifierState>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the data
    // is still consistent enough for a cache.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TokenVerifier {
    /// A verifier fetching JWKS documents with `fetcher`, reading time from
    /// `clock`, caching at most `max_cached_tokens` verified tokens (0
    /// disables the token cache).
    pub fn new(
        fetcher: Arc<dyn JwksFetcher>,
        clock: SecondsClock,
        max_cached_tokens: usize,
    ) -> Self {
        TokenVerifier {
            inner: Arc::new(VerifierState {
                fetcher,
                clock,
                tokens: Mutex::new(TokenCache::new(max_cached_tokens)),
                clusters: Mutex::new(HashMap::new()),
                counters: Counters::default(),
            }),
        }
    }

    /// A verifier with the system clock and [`DEFAULT_MAX_CACHED_TOKENS`].
    pub fn with_fetcher(fetcher: Arc<dyn JwksFetcher>) -> Self {
        Self::new(fetcher, system_clock(), DEFAULT_MAX_CACHED_TOKENS)
    }

    /// Verifies `token` for the cluster `trust` describes. The identity is
    /// shared with the token cache.
    ///
    /// # Errors
    /// The [`TokenError`] of the first rule the token breaks;
    /// [`TokenError::KeySet`] when the cluster's keys are unusable or
    /// fetching them failed.
    pub async fn verify(
        &self,
        trust: &ClusterTrust,
        token: &str,
    ) -> Result<Arc<PodIdentity>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let now = (self.inner.clock)();
        let digest = token_digest(trust, token);
        if let Some(identity) = lock(&self.inner.tokens).get(&digest, now) {
            self.inner.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(identity);
        }
        self.inner.counters.misses.fetch_add(1, Ordering::Relaxed);

        let decoded = decode(token)?;
        let parsed = decoded.parse()?;
        let first = match self.key_set(trust) {
            Ok(keys) => {
                let result = verify_decoded(&decoded, &parsed, trust, &keys, now);
                (result, Some(keys))
            }
            Err(e) => (Err(e), None),
        };
        let result = match first {
            (Err(TokenError::UnknownKey { kid }), used) if trust.jwks_uri.is_some() => {
                match self.refresh(trust, now, used.as_ref()).await? {
                    Some(keys) => verify_decoded(&decoded, &parsed, trust, &keys, now),
                    None => Err(TokenError::UnknownKey { kid }),
                }
            }
            (Err(TokenError::KeySet(why)), None) if trust.jwks_uri.is_some() => {
                match self.refresh(trust, now, None).await? {
                    Some(keys) => verify_decoded(&decoded, &parsed, trust, &keys, now),
                    None => Err(TokenError::KeySet(why)),
                }
            }
            (result, _) => result,
        };
        let identity = Arc::new(result?);
        lock(&self.inner.tokens).insert(digest, identity.clone(), now);
        Ok(identity)
    }

    /// The cached key set of the cluster, parsed from `trust.jwks` when the
    /// cluster is new or its version changed.
    fn key_set(&self, trust: &ClusterTrust) -> Result<Arc<KeySet>, TokenError> {
        let mut clusters = lock(&self.inner.clusters);
        if let Some(entry) = clusters.get(&trust.name) {
            if entry.version == trust.version {
                return entry.keys.clone();
            }
        }
        self.inner.counters.parsed.fetch_add(1, Ordering::Relaxed);
        let keys = KeySet::from_jwks(&trust.jwks).map(Arc::new);
        let last_fetch = clusters.get(&trust.name).and_then(|e| e.last_fetch);
        clusters.insert(
            trust.name.clone(),
            ClusterKeys {
                version: trust.version,
                keys: keys.clone(),
                last_fetch,
            },
        );
        keys
    }

    /// Fetches the cluster's JWKS if its last fetch is old enough.
    ///
    /// `Ok(Some(keys))`: keys to try again with (fetched now, or fetched by
    /// someone else since `used` was taken). `Ok(None)`: rate-limited, no
    /// newer keys.
    async fn refresh(
        &self,
        trust: &ClusterTrust,
        now: i64,
        used: Option<&Arc<KeySet>>,
    ) -> Result<Option<Arc<KeySet>>, TokenError> {
        let Some(uri) = trust.jwks_uri.as_deref() else {
            return Ok(None);
        };
        {
            let mut clusters = lock(&self.inner.clusters);
            let entry = clusters
                .entry(trust.name.clone())
                .or_insert_with(|| ClusterKeys {
                    version: trust.version,
                    keys: Err(TokenError::KeySet(KeySetError::NotLoaded)),
                    last_fetch: None,
                });
            let recent = entry
                .last_fetch
                .is_some_and(|last| now.saturating_sub(last) < JWKS_REFRESH_INTERVAL_SECS);
            if recent {
                self.inner
                    .counters
                    .rate_limited
                    .fetch_add(1, Ordering::Relaxed);
                // Someone else may have fetched newer keys meanwhile.
                if entry.version == trust.version {
                    if let Ok(current) = &entry.keys {
                        if used.is_none_or(|used| !Arc::ptr_eq(used, current)) {
                            return Ok(Some(current.clone()));
                        }
                    }
                }
                return Ok(None);
            }
            entry.last_fetch = Some(now);
        }

        self.inner
            .counters
            .refreshes
            .fetch_add(1, Ordering::Relaxed);
        let fetched = self
            .inner
            .fetcher
            .fetch_jwks(uri)
            .await
            .map_err(|why| TokenError::KeySet(KeySetError::Fetch(why)))
            .and_then(|doc| KeySet::from_jwks(&doc));
        let keys = match fetched {
            Ok(keys) => Arc::new(keys),
            Err(e) => {
                self.inner
                    .counters
                    .refresh_failures
                    .fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let mut clusters = lock(&self.inner.clusters);
        if let Some(entry) = clusters.get_mut(&trust.name) {
            if entry.version == trust.version {
                entry.keys = Ok(keys.clone());
            }
        }
        Ok(Some(keys))
    }

    /// Drops the cached keys of a cluster (e.g. when it is deregistered).
    /// Cached tokens of a changed cluster stop matching by themselves, as
    /// their digest covers the cluster version.
    pub fn forget_cluster(&self, name: &str) {
        lock(&self.inner.clusters).remove(name);
    }

    /// The counters so far.
    pub fn stats(&self) -> VerifierStats {
        let c = &self.inner.counters;
        VerifierStats {
            token_cache_hits: c.hits.load(Ordering::Relaxed),
            token_cache_misses: c.misses.load(Ordering::Relaxed),
            cached_tokens: lock(&self.inner.tokens).len() as u64,
            key_sets_parsed: c.parsed.load(Ordering::Relaxed),
            jwks_refreshes: c.refreshes.load(Ordering::Relaxed),
            jwks_refresh_failures: c.refresh_failures.load(Ordering::Relaxed),
            jwks_refreshes_rate_limited: c.rate_limited.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
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
}
