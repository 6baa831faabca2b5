//! The index alone: plain `#[test]`s, no runtime.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::token;

fn at(offset: Duration) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000) + offset
}

/// An index with the policy bounds it is stored under.
struct IndexFixture {
    front: FrontHasher,
    index: CredentialIndex,
    policy: CachePolicy,
}

fn fixture(max_entries: usize, max_refresh_ahead: usize) -> IndexFixture {
    IndexFixture {
        front: FrontHasher::default(),
        index: CredentialIndex::default(),
        policy: CachePolicy {
            max_entries,
            max_refresh_ahead,
            ..CachePolicy::default()
        },
    }
}

impl IndexFixture {
    /// An entry for `token` of pod `pod`, its answer `body`, ready.
    fn entry(&self, token: &str, pod: Option<&str>, body: &'static str) -> CachedEntry {
        let info = TokenInfo {
            expires: Some(at(Duration::from_secs(3600))),
            pod_uid: pod.map(str::to_owned),
        };
        CachedEntry::new(
            KeptToken {
                token: SecretToken::new(token),
                tag: self.front.tag(token),
            },
            EntryClaims::from(&info),
            StoredAnswer::Ready(Bytes::from_static(body.as_bytes())),
            at(Duration::from_secs(2400)),
            at(Duration::from_secs(3540)),
            true,
        )
    }

    /// Stores `token`'s entry (see [`IndexFixture::entry`]) under its digest.
    fn put(
        &mut self,
        token: &str,
        pod: Option<&str>,
        body: &'static str,
        origin: Origin,
    ) -> Stored {
        let entry = self.entry(token, pod, body);
        let compact = || StoredAnswer::Ready(Bytes::from_static(b"compact"));
        self.index
            .store(token::digest(token), entry, origin, &self.policy, compact)
    }

    /// Stores a new entry for pod `name`'s token `name`.
    fn fetched(&mut self, name: &str) -> Stored {
        self.put(name, Some(name), "x", Origin::Fetch)
    }

    fn has(&self, token: &str) -> bool {
        self.index.get(&token::digest(token)).is_some()
    }

    fn body(&self, token: &str) -> Option<Bytes> {
        self.index.get(&token::digest(token)).map(|e| e.body())
    }

    /// Entries, kept tokens, front index tags.
    fn counts(&self) -> (usize, usize, usize) {
        let i = &self.index;
        (i.len(), i.kept_tokens(), i.front_len())
    }
}

#[test]
fn the_prehashed_hasher_reads_the_first_eight_bytes_only() {
    let build = Prehashed::default();
    let mut digest = [7u8; 32];
    let first = build.hash_one(digest);
    digest[31] = 0;
    assert_eq!(
        build.hash_one(digest),
        first,
        "bytes past the eighth are ignored"
    );
    digest[0] = 0;
    assert_ne!(build.hash_one(digest), first);
    assert_eq!(build.hash_one(5u64), build.hash_one(5u64));
}

#[test]
fn a_kept_token_is_found_by_tag_only_when_it_is_the_same_token() {
    let mut f = fixture(10, 10);
    let stored = f.put("token-a", Some("pod-a"), "A", Origin::Fetch);
    let expected = Stored {
        stored: true,
        evicted_lru: 0,
        replaced: false,
    };
    assert_eq!(stored, expected);
    let digest = token::digest("token-a");
    let (tag_a, tag_b) = (f.front.tag("token-a"), f.front.tag("token-b"));
    assert_eq!(f.index.find_kept(tag_a, "token-a"), Some(digest));
    assert_eq!(f.index.find_kept(tag_b, "token-b"), None);
    // A tag pointing at the entry is never enough: the token must match.
    f.index.force_front(tag_b, digest);
    assert_eq!(f.index.find_kept(tag_b, "token-b"), None);
    assert_eq!(f.body("token-a"), Some(Bytes::from_static(b"A")));
}

#[test]
fn tokens_are_kept_up_to_the_limit_then_answers_are_compact() {
    let mut f = fixture(10, 2);
    for name in ["a", "b", "c"] {
        f.fetched(name);
    }
    assert_eq!(f.counts(), (3, 2, 2));
    let third = f.index.get(&token::digest("c")).unwrap();
    assert!(third.kept().is_none());
    assert_eq!(f.body("c"), Some(Bytes::from_static(b"compact")));
    assert_eq!(f.index.find_kept(f.front.tag("c"), "c"), None);
    // Removing a keeping entry frees its place.
    assert!(f.index.remove(&token::digest("a"), None));
    assert_eq!(f.counts(), (2, 1, 1));
    f.fetched("d");
    assert_eq!(f.counts(), (3, 2, 2));
    // Storing the same token again does not count it twice.
    f.put("d", Some("d"), "again", Origin::Fetch);
    assert_eq!(f.counts(), (3, 2, 2));
    assert_eq!(f.body("d"), Some(Bytes::from_static(b"again")));
}

#[test]
fn a_pods_new_token_replaces_its_old_entry() {
    let mut f = fixture(10, 10);
    f.put("old", Some("pod"), "1", Origin::Fetch);
    assert!(f.put("new", Some("pod"), "2", Origin::Fetch).replaced);
    assert!(!f.has("old"));
    assert_eq!(f.counts(), (1, 1, 1));
    // Entries without a pod claim are independent.
    f.put("x", None, "3", Origin::Fetch);
    assert!(!f.put("y", None, "4", Origin::Fetch).replaced);
    assert_eq!(f.counts(), (3, 3, 3));
}

#[test]
fn a_refresh_does_not_bring_back_a_removed_entry() {
    let mut f = fixture(10, 10);
    assert!(!f.put("a", Some("a"), "1", Origin::Refresh).stored);
    assert_eq!(f.counts(), (0, 0, 0));
    f.put("a", Some("a"), "1", Origin::Fetch);
    assert!(f.put("a", Some("a"), "2", Origin::Refresh).stored);
    assert_eq!(f.body("a"), Some(Bytes::from_static(b"2")));
}

#[test]
fn remove_with_an_entry_removes_only_that_entry() {
    let mut f = fixture(10, 10);
    let digest = token::digest("a");
    f.put("a", Some("a"), "1", Origin::Fetch);
    let first = f.index.get(&digest).unwrap().clone();
    f.put("a", Some("a"), "2", Origin::Fetch);
    assert!(!f.index.remove(&digest, Some(&first)), "replaced since");
    let second = f.index.get(&digest).unwrap().clone();
    assert!(f.index.remove(&digest, Some(&second)));
    assert!(!f.index.remove(&digest, None));
    assert_eq!(f.counts(), (0, 0, 0));
}

#[test]
fn the_least_recently_used_entry_is_evicted_first() {
    let mut f = fixture(3, 10);
    for name in ["a", "b", "c"] {
        f.fetched(name);
    }
    // a is used again: b is now the oldest.
    f.index.touch(f.index.get(&token::digest("a")).unwrap());
    assert_eq!(f.fetched("d").evicted_lru, 1);
    assert!(!f.has("b"));
    assert!(["a", "c", "d"].iter().all(|n| f.has(n)));
    // A refresh keeps its entry's place in the LRU order.
    f.put("c", Some("c"), "y", Origin::Refresh);
    f.fetched("e");
    assert!(!f.has("c"), "c was the oldest use");
    assert_eq!(f.counts(), (3, 3, 3));
}

#[test]
fn entries_note_failures_and_retry_times() {
    let entry = fixture(1, 1).entry("a", None, "x");
    assert!(entry.used());
    assert!(entry.retry_due(at(Duration::ZERO)));
    assert_eq!((entry.add_failure(), entry.add_failure()), (1, 2));
    entry.retry_after(at(Duration::from_secs(10)));
    assert!(!entry.retry_due(at(Duration::from_secs(9))));
    assert!(entry.retry_due(at(Duration::from_secs(10))));
    assert!(!entry.token_expired(at(Duration::from_secs(3599))));
    assert!(entry.token_expired(at(Duration::from_secs(3600))));
    assert_eq!(epoch_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
}
