//! The caching verifier the broker uses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::cache::{token_digest, TokenCache};
use crate::error::{JwksFetchError, KeySetError};
use crate::jwks::{KeyFingerprint, KeySet};
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
    /// Cached verdicts dropped because the key that verified them has left the cluster's key
    /// set (the token was checked again, with the current keys).
    pub token_cache_key_gone: u64,
    /// Tokens in the cache now.
    pub cached_tokens: u64,
    /// Key sets parsed from a cluster's stored JWKS.
    pub key_sets_parsed: u64,
    /// JWKS fetches started (each counts once, success or not; on an unknown key or by
    /// [`TokenVerifier::refresh_keys`]).
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
    key_gone: AtomicU64,
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
/// - [`TokenVerifier::refresh_keys`] fetches a cluster's JWKS whenever its
///   caller (the server's periodic refresh) says, and makes it the cluster's
///   key set; a failed fetch keeps the keys there are;
/// - verified tokens, by SHA-256 digest of (cluster name, version, issuer,
///   audience, token), until the token's `exp`; bounded, evicting expired
///   entries first, then the least recently used. Each names the key that
///   verified it: a hit counts only while that key (same `kid`, `alg` and
///   material) is in the cluster's current key set, so a key removed from the
///   set takes every token it signed with it, cached or not.
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
        let hit = lock(&self.inner.tokens).get(&digest, now);
        if let Some((identity, key)) = hit {
            if self.still_trusted(trust, &key) {
                self.inner.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(identity);
            }
            lock(&self.inner.tokens).remove(&digest);
            self.inner.counters.key_gone.fetch_add(1, Ordering::Relaxed);
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
        let (identity, key) = result?;
        let identity = Arc::new(identity);
        lock(&self.inner.tokens).insert(digest, identity.clone(), key, now);
        Ok(identity)
    }

    /// Whether the key with this fingerprint is in the cluster's current key set.
    fn still_trusted(&self, trust: &ClusterTrust, key: &KeyFingerprint) -> bool {
        self.key_set(trust)
            .is_ok_and(|keys| keys.contains_fingerprint(key))
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

        let (_, keys) = self.fetch(uri).await?;
        let mut clusters = lock(&self.inner.clusters);
        if let Some(entry) = clusters.get_mut(&trust.name) {
            if entry.version == trust.version {
                entry.keys = Ok(keys.clone());
            }
        }
        Ok(Some(keys))
    }

    /// Fetches `uri` and parses it, counting the fetch (and its failure).
    async fn fetch(&self, uri: &str) -> Result<(serde_json::Value, Arc<KeySet>), TokenError> {
        let c = &self.inner.counters;
        c.refreshes.fetch_add(1, Ordering::Relaxed);
        let fetched = self
            .inner
            .fetcher
            .fetch_jwks(uri)
            .await
            .map_err(|why| TokenError::KeySet(KeySetError::Fetch(why)))
            .and_then(|doc| Ok((KeySet::from_jwks(&doc)?, doc)));
        match fetched {
            Ok((keys, doc)) => Ok((doc, Arc::new(keys))),
            Err(e) => {
                c.refresh_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Fetches the cluster's JWKS now, whatever the rate limit, and makes it the key set of
    /// `trust.version` of the cluster (unless a newer version is known): from then on a token
    /// signed with a key the set no longer holds is refused, cached or not. Returns the document
    /// fetched; `Ok(None)` for a cluster without a `jwks_uri`.
    ///
    /// # Errors
    /// [`TokenError::KeySet`] when the fetch fails or the document has no usable key; the
    /// cluster's keys stay as they were.
    pub async fn refresh_keys(
        &self,
        trust: &ClusterTrust,
    ) -> Result<Option<serde_json::Value>, TokenError> {
        let Some(uri) = trust.jwks_uri.as_deref() else {
            return Ok(None);
        };
        let (doc, keys) = self.fetch(uri).await?;
        let mut clusters = lock(&self.inner.clusters);
        match clusters.get_mut(&trust.name) {
            Some(entry) if entry.version > trust.version => {}
            Some(entry) => {
                entry.version = trust.version;
                entry.keys = Ok(keys);
            }
            None => {
                clusters.insert(
                    trust.name.clone(),
                    ClusterKeys {
                        version: trust.version,
                        keys: Ok(keys),
                        last_fetch: None,
                    },
                );
            }
        }
        Ok(Some(doc))
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
            token_cache_key_gone: c.key_gone.load(Ordering::Relaxed),
            cached_tokens: lock(&self.inner.tokens).len() as u64,
            key_sets_parsed: c.parsed.load(Ordering::Relaxed),
            jwks_refreshes: c.refreshes.load(Ordering::Relaxed),
            jwks_refresh_failures: c.refresh_failures.load(Ordering::Relaxed),
            jwks_refreshes_rate_limited: c.rate_limited.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests;
