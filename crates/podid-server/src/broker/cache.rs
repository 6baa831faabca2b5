//! The per-pod credential cache with single-flight issuance.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use podid_singleflight::{Joined, SingleFlight};
use podid_sts::{IssueError, IssuedCredentials};

/// Which pod session credentials belong to. The association's modification
/// time is part of it, so changing an association (another role, say) makes
/// its pods get new credentials at their next call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Association id.
    pub association_id: String,
    /// Association `modifiedAt` (ms).
    pub association_version: i64,
    /// Pod uid.
    pub pod_uid: String,
}

/// How a lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// From the cache.
    Hit,
    /// This caller issued.
    Miss,
    /// Another caller was already issuing; this one waited for its result.
    Joined,
}

type FlightResult = Result<Arc<IssuedCredentials>, IssueError>;

/// Serves a pod's credentials again while more than `min_remaining` of their
/// validity is left, so a pod whose token rotated costs no STS call; and makes
/// concurrent misses for one pod share one issuance.
///
/// The issuance runs in a task of its own: a caller that hangs up (an agent
/// whose attempt timed out while the call waited for an STS slot) does not
/// cancel it, so the credentials STS issued are kept, and the caller's next
/// attempt finds them instead of asking STS again.
pub struct IssuedCredentialCache {
    min_remaining: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<CacheKey, Arc<IssuedCredentials>>>,
    flights: SingleFlight<CacheKey, FlightResult>,
}

impl IssuedCredentialCache {
    /// A cache of at most `max_entries` pods, serving credentials while more
    /// than `min_remaining` remains.
    pub fn new(min_remaining: Duration, max_entries: usize) -> Self {
        IssuedCredentialCache {
            min_remaining,
            max_entries: max_entries.max(1),
            entries: Mutex::new(HashMap::new()),
            flights: SingleFlight::new(),
        }
    }

    /// Whether credentials are fresh enough to serve at `now`.
    pub fn fresh(&self, credentials: &IssuedCredentials, now: SystemTime) -> bool {
        credentials
            .expiration
            .duration_since(now)
            .is_ok_and(|left| left > self.min_remaining)
    }

    /// The pod's cached credentials, or the result of `issue` — run, in a
    /// task of its own, for the first caller while concurrent callers for the
    /// same pod wait for it.
    pub async fn get_or_issue<F, Fut>(
        self: &Arc<Self>,
        key: &CacheKey,
        now: SystemTime,
        issue: F,
    ) -> (FlightResult, CacheOutcome)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<IssuedCredentials, IssueError>> + Send + 'static,
    {
        if let Some(hit) = self.lookup(key, now) {
            return (Ok(hit), CacheOutcome::Hit);
        }
        let joined = self.flights.join_or_start(key, || {
            // A flight that just finished stored its entry before leaving the
            // table: look again under the table's lock.
            if let Some(hit) = self.lookup(key, now) {
                return Err(hit);
            }
            let (cache, key, work) = (self.clone(), key.clone(), issue());
            Ok(async move {
                let result = work.await.map(Arc::new);
                if let Ok(issued) = &result {
                    cache.insert(key, issued.clone(), now);
                }
                result
            })
        });
        let (flight, outcome) = match joined {
            Joined::Started(flight) => (flight, CacheOutcome::Miss),
            Joined::Joined(flight) => (flight, CacheOutcome::Joined),
            Joined::Declined(hit) => return (Ok(hit), CacheOutcome::Hit),
        };
        // `None`: the issuing task ended without answering (it panicked).
        let result = flight
            .wait()
            .await
            .unwrap_or_else(|| Err(IssueError::Internal("issuing credentials failed".into())));
        (result, outcome)
    }

    fn lookup(&self, key: &CacheKey, now: SystemTime) -> Option<Arc<IssuedCredentials>> {
        let entries = self.entries.lock().ok()?;
        entries.get(key).filter(|c| self.fresh(c, now)).cloned()
    }

    fn insert(&self, key: CacheKey, credentials: Arc<IssuedCredentials>, now: SystemTime) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.max_entries && !entries.contains_key(&key) {
            entries.retain(|_, c| self.fresh(c, now));
            if entries.len() >= self.max_entries {
                // Still full: drop the entry that would go stale first.
                if let Some(k) = entries
                    .iter()
                    .min_by_key(|(_, c)| c.expiration)
                    .map(|(k, _)| k.clone())
                {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(key, credentials);
    }
}

impl CacheOutcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Joined => "joined",
        }
    }
}

#[cfg(test)]
impl IssuedCredentialCache {
    /// Entries held.
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether nothing is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use podid_sts::Secret;

    use super::*;

    fn creds(expires_in: Duration) -> IssuedCredentials {
        IssuedCredentials {
            access_key_id: "ASIA".into(),
            secret_access_key: Secret::new("s"),
            session_token: Secret::new("t"),
            expiration: SystemTime::now() + expires_in,
            assumed_role_arn: "arn:aws:sts::111122223333:assumed-role/r/s".into(),
            assumed_role_id: "AROA:s".into(),
        }
    }

    /// `key` from `cache` at `now`, issuing an hour's credentials on a miss.
    async fn get_or_issue_hour(
        cache: &Arc<IssuedCredentialCache>,
        key: &CacheKey,
        now: SystemTime,
    ) -> (FlightResult, CacheOutcome) {
        cache
            .get_or_issue(key, now, || async { Ok(creds(Duration::from_secs(3600))) })
            .await
    }

    fn key(pod: &str) -> CacheKey {
        CacheKey {
            association_id: "a-0123456789abcdefg".into(),
            association_version: 1,
            pod_uid: pod.into(),
        }
    }

    #[tokio::test]
    async fn serves_fresh_credentials_and_reissues_stale_ones() {
        let cache = Arc::new(IssuedCredentialCache::new(Duration::from_secs(900), 10));
        let now = SystemTime::now();
        let (r, o) = get_or_issue_hour(&cache, &key("p"), now).await;
        assert!(r.is_ok());
        assert_eq!(o, CacheOutcome::Miss);
        let (_, o) = cache
            .get_or_issue(&key("p"), now, || async { panic!("must not issue") })
            .await;
        assert_eq!(o, CacheOutcome::Hit);
        // 46 minutes later less than 15 remain: issue again.
        let later = now + Duration::from_secs(46 * 60);
        let (_, o) = get_or_issue_hour(&cache, &key("p"), later).await;
        assert_eq!(o, CacheOutcome::Miss);
        // Another version of the association is another key.
        let other = CacheKey {
            association_version: 2,
            ..key("p")
        };
        let (_, o) = get_or_issue_hour(&cache, &other, now).await;
        assert_eq!(o, CacheOutcome::Miss);
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let cache = Arc::new(IssuedCredentialCache::new(Duration::from_secs(900), 10));
        let now = SystemTime::now();
        let (r, _) = cache
            .get_or_issue(&key("p"), now, || async {
                Err(IssueError::AccessDenied("no".into()))
            })
            .await;
        assert!(r.is_err());
        let (r, o) = get_or_issue_hour(&cache, &key("p"), now).await;
        assert!(r.is_ok());
        assert_eq!(o, CacheOutcome::Miss);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_misses_share_one_issuance() {
        let cache = Arc::new(IssuedCredentialCache::new(Duration::from_secs(900), 10));
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_issue(&key("p"), SystemTime::now(), || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok(creds(Duration::from_secs(3600)))
                    })
                    .await
                    .1
            }));
        }
        // Release the one issuance once it has started.
        podid_test_support::yield_until("the issuance to start", || {
            calls.load(Ordering::SeqCst) > 0
        })
        .await;
        gate.notify_one();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == CacheOutcome::Miss)
                .count(),
            1
        );
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o != CacheOutcome::Miss)
                .count(),
            199
        );
    }

    #[tokio::test]
    async fn a_caller_hanging_up_does_not_cancel_the_issuance() {
        let cache = Arc::new(IssuedCredentialCache::new(Duration::from_secs(900), 10));
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let (c, g) = (calls.clone(), gate.clone());
        let k = key("p");
        let first = cache.get_or_issue(&k, SystemTime::now(), move || async move {
            c.fetch_add(1, Ordering::SeqCst);
            g.notified().await;
            Ok(creds(Duration::from_secs(3600)))
        });
        // The caller gives up while STS is still answering.
        assert!(tokio::time::timeout(Duration::from_millis(20), first)
            .await
            .is_err());
        gate.notify_one();
        for _ in 0..100 {
            if !cache.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (r, o) = cache
            .get_or_issue(&key("p"), SystemTime::now(), || async {
                panic!("must not issue again")
            })
            .await;
        assert!(r.is_ok());
        assert_eq!(o, CacheOutcome::Hit);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn bounded_evicting_stale_then_soonest_expiring() {
        let cache = Arc::new(IssuedCredentialCache::new(Duration::from_secs(900), 3));
        let now = SystemTime::now();
        for (i, mins) in [(0, 60), (1, 50), (2, 40), (3, 30)] {
            let (r, _) = cache
                .get_or_issue(&key(&i.to_string()), now, || async move {
                    Ok(creds(Duration::from_secs(mins * 60)))
                })
                .await;
            assert!(r.is_ok());
        }
        assert_eq!(cache.len(), 3);
        // Pod 2 expired soonest when pod 3 arrived and was evicted.
        let (_, o) = get_or_issue_hour(&cache, &key("2"), now).await;
        assert_eq!(o, CacheOutcome::Miss);
        assert_eq!(cache.len(), 3);
    }
}
