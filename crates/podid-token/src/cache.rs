//! A bounded cache of verified tokens, keyed by digest: entries live until the token's `exp`;
//! when the cache is full, expired entries go first, then the least recently used (`lru`).
//! Each entry names the key that verified it, so the verifier can check that key is still trusted.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_lc_rs::digest::{Context, SHA256};
use lru::LruCache;

use crate::jwks::KeyFingerprint;
use crate::{ClusterTrust, PodIdentity};

/// A SHA-256 digest naming one (cluster, token) pair.
pub(crate) type Digest = [u8; 32];

/// The digest of a token as presented for a cluster: its name, version,
/// issuer and audience, and the token, each length-prefixed.
pub(crate) fn token_digest(trust: &ClusterTrust, token: &str) -> Digest {
    let mut ctx = Context::new(&SHA256);
    ctx.update(b"podid-token-cache-v1\0");
    for part in [
        trust.name.as_bytes(),
        trust.issuer.as_bytes(),
        trust.audience.as_bytes(),
        token.as_bytes(),
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.update(&trust.version.to_be_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

struct Entry {
    identity: Arc<PodIdentity>,
    /// The key that verified the token.
    key: KeyFingerprint,
    expires_at: i64,
}

/// The cache itself; the verifier keeps it behind a mutex.
pub(crate) struct TokenCache {
    capacity: usize,
    /// Digest → entry, in order of use (`lru`).
    entries: LruCache<Digest, Entry>,
    /// (expires_at, digest), to find expired entries first.
    by_expiry: BTreeSet<(i64, Digest)>,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            // Bounded here rather than by `lru`, which would evict before the
            // expired entries go and allocate the whole capacity up front.
            entries: LruCache::unbounded(),
            by_expiry: BTreeSet::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn remove(&mut self, digest: &Digest) {
        if let Some(entry) = self.entries.pop(digest) {
            self.by_expiry.remove(&(entry.expires_at, *digest));
        }
    }

    /// The identity cached for `digest` and the key that verified it, if its token has not
    /// expired at `now` (`now <= exp`); an expired entry is dropped.
    pub(crate) fn get(
        &mut self,
        digest: &Digest,
        now: i64,
    ) -> Option<(Arc<PodIdentity>, KeyFingerprint)> {
        if now > self.entries.peek(digest)?.expires_at {
            self.remove(digest);
            return None;
        }
        self.entries
            .get(digest)
            .map(|e| (e.identity.clone(), e.key))
    }

    /// Caches `identity`, verified with `key`, until its `expires_at`; does nothing for a token
    /// already expired at `now` or for a zero capacity.
    pub(crate) fn insert(
        &mut self,
        digest: Digest,
        identity: Arc<PodIdentity>,
        key: KeyFingerprint,
        now: i64,
    ) {
        if self.capacity == 0 || now > identity.expires_at {
            return;
        }
        self.remove(&digest);
        while self.entries.len() >= self.capacity {
            match self.by_expiry.first() {
                Some(&(exp, victim)) if exp < now => self.remove(&victim),
                _ => match self.entries.pop_lru() {
                    Some((victim, entry)) => {
                        self.by_expiry.remove(&(entry.expires_at, victim));
                    }
                    None => break,
                },
            }
        }
        let expires_at = identity.expires_at;
        self.by_expiry.insert((expires_at, digest));
        self.entries.put(
            digest,
            Entry {
                identity,
                key,
                expires_at,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::mpsc::{self, RecvTimeoutError};
    use std::time::Duration;

    /// Runs `body` on a thread of its own and fails, naming `what`, if it has not returned within
    /// 10 s (it takes milliseconds): an eviction loop that never ends fails the test instead of
    /// hanging the suite.
    fn bounded(what: &str, body: impl FnOnce() + Send + 'static) {
        let (done, finished) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            body();
            let _ = done.send(());
        });
        match finished.recv_timeout(Duration::from_secs(10)) {
            Ok(()) => worker.join().unwrap(),
            Err(RecvTimeoutError::Disconnected) => {
                std::panic::resume_unwind(worker.join().unwrap_err())
            }
            Err(RecvTimeoutError::Timeout) => panic!("{what} did not finish within 10 s"),
        }
    }

    fn identity(exp: i64) -> Arc<PodIdentity> {
        Arc::new(PodIdentity {
            namespace: "ns".into(),
            service_account: "sa".into(),
            service_account_uid: None,
            pod_name: "p".into(),
            pod_uid: "u".into(),
            node_name: None,
            issuer: "i".into(),
            expires_at: exp,
            issued_at: None,
            jti: None,
        })
    }

    const KEY: KeyFingerprint = [7; 32];

    fn d(i: u32) -> Digest {
        let mut out = [0u8; 32];
        out[..4].copy_from_slice(&i.to_be_bytes());
        out
    }

    fn consistent(c: &TokenCache) {
        assert_eq!(c.entries.len(), c.by_expiry.len());
        assert!(c.entries.len() <= c.capacity);
    }

    #[test]
    fn hit_until_expiry() {
        let mut c = TokenCache::new(10);
        c.insert(d(1), identity(100), KEY, 0);
        assert!(c.get(&d(1), 100).is_some());
        assert!(c.get(&d(1), 101).is_none());
        assert_eq!(c.len(), 0);
        consistent(&c);
    }

    #[test]
    fn expired_identity_is_not_inserted() {
        let mut c = TokenCache::new(10);
        c.insert(d(1), identity(100), KEY, 101);
        assert_eq!(c.len(), 0);
        let mut zero = TokenCache::new(0);
        zero.insert(d(1), identity(100), KEY, 0);
        assert_eq!(zero.len(), 0);
    }

    #[test]
    fn evicts_expired_first_then_lru() {
        bounded(
            "inserting into a full cache",
            evicts_expired_first_then_lru_body,
        );
    }

    fn evicts_expired_first_then_lru_body() {
        let mut c = TokenCache::new(3);
        c.insert(d(1), identity(1000), KEY, 0);
        c.insert(d(2), identity(50), KEY, 0);
        c.insert(d(3), identity(1000), KEY, 0);
        // At 60, entry 2 has expired: it goes, not the LRU entry 1.
        c.insert(d(4), identity(1000), KEY, 60);
        assert!(c.get(&d(1), 60).is_some());
        assert!(c.get(&d(2), 60).is_none());
        consistent(&c);
        // Now 3 is least recently used (1 was just read).
        c.insert(d(5), identity(1000), KEY, 60);
        assert!(c.get(&d(3), 60).is_none());
        assert!(c.get(&d(1), 60).is_some());
        assert!(c.get(&d(4), 60).is_some());
        assert!(c.get(&d(5), 60).is_some());
        consistent(&c);
    }

    #[test]
    fn the_verifying_key_is_kept_with_the_identity() {
        let mut c = TokenCache::new(10);
        c.insert(d(1), identity(100), [1; 32], 0);
        c.insert(d(2), identity(100), [2; 32], 0);
        assert_eq!(c.get(&d(1), 0).unwrap().1, [1; 32]);
        assert_eq!(c.get(&d(2), 0).unwrap().1, [2; 32]);
        c.remove(&d(1));
        assert!(c.get(&d(1), 0).is_none());
        assert_eq!(c.len(), 1);
        consistent(&c);
    }

    #[test]
    fn reinsert_replaces() {
        let mut c = TokenCache::new(2);
        c.insert(d(1), identity(10), KEY, 0);
        c.insert(d(1), identity(20), KEY, 0);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&d(1), 15).unwrap().0.expires_at, 20);
        consistent(&c);
    }

    #[test]
    fn bounded_under_many_inserts() {
        bounded("20,000 inserts into a cache of 100", || {
            let mut c = TokenCache::new(100);
            for i in 0..20_000u32 {
                c.insert(d(i), identity(i64::from(i % 500)), KEY, i64::from(i % 300));
                assert!(c.len() <= 100);
            }
            consistent(&c);
        });
    }

    #[test]
    fn token_expiring_now_is_cached_until_then() {
        // A token is valid through its `exp` second (`get`: now <= exp), so one verified in
        // that very second is cached for it.
        let mut c = TokenCache::new(10);
        c.insert(d(1), identity(100), KEY, 100);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&d(1), 100).unwrap().0.expires_at, 100);
        assert!(c.get(&d(1), 101).is_none());
        consistent(&c);
    }

    #[test]
    fn entry_expiring_now_is_not_evicted_as_expired() {
        bounded("inserting into a full cache", || {
            let mut c = TokenCache::new(2);
            c.insert(d(1), identity(1000), KEY, 0);
            c.insert(d(2), identity(60), KEY, 0);
            // At 60, entry 2 is still valid (60 <= exp): the least recently used entry, 1,
            // makes room, not 2.
            c.insert(d(3), identity(1000), KEY, 60);
            assert!(c.get(&d(1), 60).is_none());
            assert_eq!(c.get(&d(2), 60).unwrap().0.expires_at, 60);
            assert!(c.get(&d(3), 60).is_some());
            consistent(&c);
            // Reading 2 makes 3 the least recently used; at 61, 2 has expired and goes first.
            assert!(c.get(&d(2), 60).is_some());
            c.insert(d(4), identity(1000), KEY, 61);
            assert!(c.get(&d(2), 61).is_none());
            assert!(c.get(&d(3), 61).is_some());
            assert!(c.get(&d(4), 61).is_some());
            consistent(&c);
        });
    }

    #[test]
    fn digest_depends_on_every_part() {
        let base = ClusterTrust {
            name: "a".into(),
            issuer: "i".into(),
            audience: "aud".into(),
            jwks: json!(null),
            jwks_uri: None,
            version: 1,
        };
        let t = "x.y.z";
        let d0 = token_digest(&base, t);
        assert_eq!(d0, token_digest(&base.clone(), t));
        let mut other = base.clone();
        other.name = "b".into();
        assert_ne!(d0, token_digest(&other, t));
        let mut other = base.clone();
        other.version = 2;
        assert_ne!(d0, token_digest(&other, t));
        let mut other = base.clone();
        other.issuer = "j".into();
        assert_ne!(d0, token_digest(&other, t));
        let mut other = base.clone();
        other.audience = "x".into();
        assert_ne!(d0, token_digest(&other, t));
        assert_ne!(d0, token_digest(&base, "x.y.zz"));
        // Length prefixes: moving a byte between parts changes the digest.
        let mut shifted = base.clone();
        shifted.name = "ai".into();
        shifted.issuer = String::new();
        assert_ne!(d0, token_digest(&shifted, t));
    }
}
