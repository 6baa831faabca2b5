//! The cache's pure index: entries by token digest, pods by uid, kept tokens by
//! fast-hash tag, and LRU eviction. No IO, no clock of its own, no metrics.
//! Hand-written front index: criterion `cache` (`hit_kept_*`), `podid-bench agent-hot-path`.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use foldhash::fast::RandomState as FrontHashState;

use crate::policy::CachePolicy;
use crate::response::StoredAnswer;
use crate::token::{pod_key, PodKey, SecretToken, TokenDigest, TokenInfo};

/// Keys are SHA-256 digests or fast-hash tags, already uniform: hash their
/// first 8 bytes.
#[derive(Default)]
pub(crate) struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _: usize) {
        // The slice length prefix: constant for digests.
    }
}

/// Builds [`PrehashedHasher`]s.
pub(crate) type Prehashed = BuildHasherDefault<PrehashedHasher>;

type DigestMap<V> = HashMap<TokenDigest, V, Prehashed>;

/// The per-process randomly seeded fast hash of the front index.
#[derive(Default)]
pub(crate) struct FrontHasher(FrontHashState);

impl FrontHasher {
    /// The fast-hash tag of `token` (never trusted on its own: a candidate).
    pub(crate) fn tag(&self, token: &str) -> u64 {
        self.0.hash_one(token.as_bytes())
    }

    /// The tag of an association id (never zero).
    pub(crate) fn association(&self, id: &str) -> AssociationTag {
        AssociationTag::new(self.tag(id) | 1).unwrap_or(AssociationTag::MIN)
    }
}

/// What an entry remembers of its token's claims.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryClaims {
    expires: Option<SystemTime>,
    pod: Option<PodKey>,
}

impl EntryClaims {
    /// The token's `exp`, when it has one.
    pub(crate) fn expires(&self) -> Option<SystemTime> {
        self.expires
    }

    /// The pod its (unverified) uid claim names, if any.
    pub(crate) fn pod(&self) -> Option<PodKey> {
        self.pod
    }
}

impl From<&TokenInfo> for EntryClaims {
    fn from(info: &TokenInfo) -> Self {
        EntryClaims {
            expires: info.expires,
            pod: info.pod_uid.as_deref().map(pod_key),
        }
    }
}

/// The fast-hash tag of the association an entry's credentials came from
/// (none when the broker did not name one). A collision could only make the
/// feed drop another entry too, which is fetched again.
pub(crate) type AssociationTag = std::num::NonZeroU64;

/// A token an entry keeps, with its fast-hash tag (its key in the front index).
pub(crate) struct KeptToken {
    pub(crate) token: SecretToken,
    pub(crate) tag: u64,
}

/// Milliseconds since the epoch (0 before it).
pub(crate) fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One pod's cached answer.
pub(crate) struct CachedEntry {
    kept: Option<KeptToken>,
    claims: EntryClaims,
    answer: StoredAnswer,
    refresh_at: SystemTime,
    serve_until: SystemTime,
    /// Served since it was fetched: only used entries are refreshed ahead.
    used: AtomicBool,
    /// LRU order: the index's access counter at the last use.
    last_access: AtomicU64,
    /// Consecutive failed refreshes.
    failures: AtomicU32,
    /// No refresh before this (ms since the epoch).
    retry_at_ms: AtomicU64,
    /// The association that granted the credentials.
    association: Option<AssociationTag>,
}

impl CachedEntry {
    /// An entry keeping `kept`, answering `answer` (ready) until
    /// `serve_until`, due for refresh at `refresh_at`; `used` if its pod
    /// asked for it.
    pub(crate) fn new(
        kept: KeptToken,
        claims: EntryClaims,
        answer: StoredAnswer,
        refresh_at: SystemTime,
        serve_until: SystemTime,
        used: bool,
    ) -> Self {
        CachedEntry {
            kept: Some(kept),
            claims,
            answer,
            refresh_at,
            serve_until,
            used: AtomicBool::new(used),
            last_access: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            retry_at_ms: AtomicU64::new(0),
            association: None,
        }
    }

    /// The entry, its credentials granted by the association `tag`.
    pub(crate) fn with_association(mut self, tag: Option<AssociationTag>) -> Self {
        self.association = tag;
        self
    }

    /// Whether the token this entry was stored for has expired.
    pub(crate) fn token_expired(&self, now: SystemTime) -> bool {
        self.claims.expires.is_some_and(|t| now >= t)
    }

    /// Whether `token` is exactly the token this entry keeps (constant time).
    fn holds(&self, token: &str) -> bool {
        self.kept.as_ref().is_some_and(|k| {
            constant_time_eq::constant_time_eq(k.token.expose().as_bytes(), token.as_bytes())
        })
    }

    /// The kept token, if this entry keeps one.
    pub(crate) fn kept(&self) -> Option<&KeptToken> {
        self.kept.as_ref()
    }

    /// The token's claims.
    pub(crate) fn claims(&self) -> EntryClaims {
        self.claims
    }

    /// The body to send.
    pub(crate) fn body(&self) -> bytes::Bytes {
        self.answer.body()
    }

    /// When it is due for refresh.
    pub(crate) fn refresh_at(&self) -> SystemTime {
        self.refresh_at
    }

    /// Until when it may be served.
    pub(crate) fn serve_until(&self) -> SystemTime {
        self.serve_until
    }

    /// Whether it was served since it was fetched.
    pub(crate) fn used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether its retry time (after failed refreshes) has come at `now`.
    pub(crate) fn retry_due(&self, now: SystemTime) -> bool {
        epoch_ms(now) >= self.retry_at_ms.load(Ordering::Relaxed)
    }

    /// Counts one more failed refresh, returning how many in a row.
    pub(crate) fn add_failure(&self) -> u32 {
        self.failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// No refresh before `at`.
    pub(crate) fn retry_after(&self, at: SystemTime) {
        self.retry_at_ms.store(epoch_ms(at), Ordering::Relaxed);
    }
}

/// Whether a stored entry came from a pod's request or from a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A pod's request (a new entry, or the same token again).
    Fetch,
    /// A refresh of an entry that may have gone meanwhile.
    Refresh,
}

/// What [`CredentialIndex::store`] did besides storing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Whether the entry was stored (a refresh of a gone entry is not).
    pub(crate) stored: bool,
    /// Entries evicted as least recently used to make room.
    pub(crate) evicted_lru: u64,
    /// Whether the pod's entry for an older token was replaced.
    pub(crate) replaced: bool,
}

/// The maps. Lookups take `&self` (a read lock), changes `&mut self`.
#[derive(Default)]
pub(crate) struct CredentialIndex {
    entries: DigestMap<Arc<CachedEntry>>,
    pods: HashMap<PodKey, TokenDigest, Prehashed>,
    /// Fast-hash tag of a kept token → its entry's digest.
    front: HashMap<u64, TokenDigest, Prehashed>,
    /// Entries keeping their token.
    kept_tokens: usize,
    /// LRU clock: advanced at each use.
    access_counter: AtomicU64,
}

impl CredentialIndex {
    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries keeping their token.
    #[cfg(test)]
    pub(crate) fn kept_tokens(&self) -> usize {
        self.kept_tokens
    }

    /// Tags in the front index.
    #[cfg(test)]
    pub(crate) fn front_len(&self) -> usize {
        self.front.len()
    }

    /// Points the front index's `tag` at `digest` (a forced collision).
    #[cfg(test)]
    pub(crate) fn force_front(&mut self, tag: u64, digest: TokenDigest) {
        self.front.insert(tag, digest);
    }

    /// The entry under `digest`.
    pub(crate) fn get(&self, digest: &TokenDigest) -> Option<&Arc<CachedEntry>> {
        self.entries.get(digest)
    }

    /// Every entry.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&TokenDigest, &Arc<CachedEntry>)> {
        self.entries.iter()
    }

    /// The digests of the entries whose credentials `association` granted.
    pub(crate) fn of_association(&self, association: AssociationTag) -> Vec<TokenDigest> {
        self.entries
            .iter()
            .filter(|(_, e)| e.association == Some(association))
            .map(|(d, _)| *d)
            .collect()
    }

    /// The digest of the entry keeping exactly `token`, found by its
    /// fast-hash `tag` and confirmed by comparison.
    pub(crate) fn find_kept(&self, tag: u64, token: &str) -> Option<TokenDigest> {
        self.front
            .get(&tag)
            .filter(|d| self.entries.get(*d).is_some_and(|e| e.holds(token)))
            .copied()
    }

    /// Marks `entry` used now (LRU order, refresh ahead).
    pub(crate) fn touch(&self, entry: &CachedEntry) {
        entry.last_access.store(
            self.access_counter.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        if !entry.used.load(Ordering::Relaxed) {
            entry.used.store(true, Ordering::Relaxed);
        }
    }

    /// Removes `digest` (if `only` is given: only while it is that entry).
    pub(crate) fn remove(&mut self, digest: &TokenDigest, only: Option<&Arc<CachedEntry>>) -> bool {
        let Some(current) = self.entries.get(digest) else {
            return false;
        };
        if only.is_some_and(|e| !Arc::ptr_eq(e, current)) {
            return false;
        }
        if let Some(entry) = self.entries.remove(digest) {
            self.forget_kept(digest, &entry);
            if let Some(pod) = &entry.claims.pod {
                if self.pods.get(pod).is_some_and(|d| d == digest) {
                    self.pods.remove(pod);
                }
            }
        }
        true
    }

    /// Accounts for `entry` (under `digest`) leaving the map.
    fn forget_kept(&mut self, digest: &TokenDigest, entry: &CachedEntry) {
        if let Some(kept) = &entry.kept {
            self.kept_tokens -= 1;
            if self.front.get(&kept.tag).is_some_and(|d| d == digest) {
                self.front.remove(&kept.tag);
            }
        }
    }

    /// Inserts `entry`, replacing the one under `digest` if any.
    fn insert(&mut self, digest: TokenDigest, entry: CachedEntry) {
        if let Some(kept) = &entry.kept {
            self.kept_tokens += 1;
            self.front.insert(kept.tag, digest);
        }
        if let Some(old) = self.entries.insert(digest, Arc::new(entry)) {
            // Same digest, same token, same tag: only the count changes.
            if old.kept.is_some() {
                self.kept_tokens -= 1;
            }
        }
    }

    /// Stores `entry` under `digest` within `policy`'s bounds: a refresh
    /// only while its entry is still there (keeping its LRU place); a new
    /// entry evicts the least recently used when full, and replaces its pod's
    /// entry for an older token. The entry keeps its token only while fewer
    /// than `max_refresh_ahead` do; otherwise `compact` gives its answer.
    pub(crate) fn store(
        &mut self,
        digest: TokenDigest,
        mut entry: CachedEntry,
        origin: Origin,
        policy: &CachePolicy,
        compact: impl FnOnce() -> StoredAnswer,
    ) -> Stored {
        let mut stored = Stored::default();
        match (origin, self.entries.get(&digest)) {
            // The entry was dropped or replaced while refreshing: do not bring it back.
            (Origin::Refresh, None) => return stored,
            (Origin::Refresh, Some(old)) => {
                entry.last_access = AtomicU64::new(old.last_access.load(Ordering::Relaxed));
            }
            (Origin::Fetch, _) => {
                entry.last_access =
                    AtomicU64::new(self.access_counter.fetch_add(1, Ordering::Relaxed));
                if !self.entries.contains_key(&digest) && self.entries.len() >= policy.max_entries {
                    stored.evicted_lru = self.evict_lru(policy.max_entries);
                }
            }
        }
        if let Some(pod) = entry.claims.pod {
            if let Some(previous) = self.pods.insert(pod, digest) {
                // The pod's token rotated and the broker took the new one.
                stored.replaced = previous != digest && self.remove(&previous, None);
            }
        }
        // Keep the token while there is room (an entry being replaced frees its place).
        let replaces_kept = self
            .entries
            .get(&digest)
            .is_some_and(|old| old.kept.is_some());
        if !replaces_kept && self.kept_tokens >= policy.max_refresh_ahead {
            // Beyond the node's usual pods: no token, and the answer compact.
            entry.kept = None;
            entry.answer = compact();
        }
        self.insert(digest, entry);
        stored.stored = true;
        stored
    }

    /// Removes the least recently used entries (1% of `max`, at least one),
    /// returning how many.
    fn evict_lru(&mut self, max: usize) -> u64 {
        let batch = (max / 100).max(1).min(self.entries.len());
        if batch == 0 {
            return 0;
        }
        let mut by_age: Vec<(u64, TokenDigest)> = self
            .entries
            .iter()
            .map(|(d, e)| (e.last_access.load(Ordering::Relaxed), *d))
            .collect();
        by_age.select_nth_unstable_by_key(batch - 1, |(age, _)| *age);
        let mut n = 0;
        for (_, digest) in &by_age[..batch] {
            if self.remove(digest, None) {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests;
