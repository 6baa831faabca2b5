//! The broker's two store reads per call — the cluster, and the association of
//! (cluster, namespace, service account) — kept in memory for a short time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use podid_api::cluster::Cluster;
use podid_store::{AssociationStore, StoreError, StoredAssociation};
use podid_token::ClusterTrust;

/// How long a lookup is kept unless told otherwise.
pub const DEFAULT_LOOKUP_TTL: Duration = Duration::from_secs(5);

/// Most entries of each map; past it, expired entries go, then all.
const MAX_ENTRIES: usize = 100_000;

/// A registered cluster and what its tokens are verified against.
#[derive(Debug)]
pub struct ClusterEntry {
    /// The cluster.
    pub cluster: Cluster,
    /// Its issuer, audience and keys, for the token verifier.
    pub trust: ClusterTrust,
}

struct Cached<T> {
    at: Instant,
    value: Option<Arc<T>>,
}

/// Short-lived caches of the broker's store reads.
///
/// Answers, including "not found", are kept for `ttl` (default
/// [`DEFAULT_LOOKUP_TTL`]). Every write made through this server (association
/// create, update, delete; cluster register, update, deregister) drops them at
/// once, so a single server never serves a stale answer; with several replicas
/// a change made through another replica is seen here within `ttl`.
pub struct Lookups {
    ttl: Duration,
    /// Bumped by every invalidation: a read that started before one is not kept.
    generation: AtomicU64,
    clusters: Mutex<HashMap<String, Cached<ClusterEntry>>>,
    associations: Mutex<HashMap<String, Cached<StoredAssociation>>>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Default for Lookups {
    fn default() -> Self {
        Lookups::new(DEFAULT_LOOKUP_TTL)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the token verifier needs of a cluster; its version is `modified_at`.
pub(crate) fn trust_of(cluster: &Cluster) -> ClusterTrust {
    ClusterTrust {
        name: cluster.name.clone(),
        issuer: cluster.issuer.clone(),
        audience: cluster.audience.clone(),
        jwks: cluster.jwks.clone(),
        jwks_uri: cluster.jwks_uri.clone(),
        version: cluster.modified_at.0,
    }
}

impl Lookups {
    /// Caches answers for `ttl`; `Duration::ZERO` reads the store every time.
    pub fn new(ttl: Duration) -> Self {
        Lookups {
            ttl,
            generation: AtomicU64::new(0),
            clusters: Mutex::new(HashMap::new()),
            associations: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets every cached answer (after a write through this server).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        lock(&self.clusters).clear();
        lock(&self.associations).clear();
    }

    fn get<T>(
        &self,
        map: &Mutex<HashMap<String, Cached<T>>>,
        key: &str,
        now: Instant,
    ) -> Option<Option<Arc<T>>> {
        let map = lock(map);
        let entry = map.get(key)?;
        (now.duration_since(entry.at) < self.ttl).then(|| entry.value.clone())
    }

    fn put<T>(
        &self,
        map: &Mutex<HashMap<String, Cached<T>>>,
        key: String,
        value: Option<Arc<T>>,
        at: Instant,
        generation: u64,
    ) {
        let mut map = lock(map);
        // An invalidation since the read began: the answer may be stale.
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            let ttl = self.ttl;
            map.retain(|_, e| at.duration_since(e.at) < ttl);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, Cached { at, value });
    }

    /// The cluster `name` (and its trust), from memory or the store.
    pub async fn cluster(
        &self,
        store: &dyn AssociationStore,
        name: &str,
    ) -> Result<Option<Arc<ClusterEntry>>, StoreError> {
        let now = Instant::now();
        if let Some(hit) = self.get(&self.clusters, name, now) {
            return Ok(hit);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = store.get_cluster(name).await?.map(|cluster| {
            Arc::new(ClusterEntry {
                trust: trust_of(&cluster),
                cluster,
            })
        });
        if !self.ttl.is_zero() {
            self.put(
                &self.clusters,
                name.to_owned(),
                found.clone(),
                now,
                generation,
            );
        }
        Ok(found)
    }

    /// The association of (cluster, namespace, service account), from memory or the store.
    pub async fn association(
        &self,
        store: &dyn AssociationStore,
        cluster: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Option<Arc<StoredAssociation>>, StoreError> {
        // Kubernetes names never contain '/' or '\n'.
        let key = format!("{cluster}\n{namespace}\n{service_account}");
        let now = Instant::now();
        if let Some(hit) = self.get(&self.associations, &key, now) {
            return Ok(hit);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = store
            .find_association(cluster, namespace, service_account)
            .await?
            .map(Arc::new);
        if !self.ttl.is_zero() {
            self.put(&self.associations, key, found.clone(), now, generation);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty store, and lookups over it keeping answers for `ttl`.
    async fn store_and_lookups(ttl: Duration) -> (Arc<dyn AssociationStore>, Lookups) {
        let store = podid_store::open("sqlite::memory:").await.unwrap();
        (store, Lookups::new(ttl))
    }

    /// The cluster `name` as `lookups` answers it.
    async fn cluster_in(
        lookups: &Lookups,
        store: &Arc<dyn AssociationStore>,
        name: &str,
    ) -> Option<Arc<ClusterEntry>> {
        lookups.cluster(store.as_ref(), name).await.unwrap()
    }

    /// The association of ("blue", "ns", `service_account`) as `lookups` answers it.
    async fn association_in(
        lookups: &Lookups,
        store: &Arc<dyn AssociationStore>,
        service_account: &str,
    ) -> Option<Arc<StoredAssociation>> {
        lookups
            .association(store.as_ref(), "blue", "ns", service_account)
            .await
            .unwrap()
    }

    fn cluster(name: &str, modified: i64) -> Cluster {
        Cluster {
            name: name.into(),
            issuer: "https://iss".into(),
            audience: "pods.eks.amazonaws.com".into(),
            cluster_arn: format!("arn:aws:eks:us-east-1:111122223333:cluster/{name}"),
            key_source: podid_api::cluster::KeySource::Inline,
            jwks_uri: None,
            jwks: serde_json::json!({"keys": []}),
            agent_identity: podid_api::cluster::AgentIdentity::Key,
            agent_service_account: podid_api::cluster::DEFAULT_AGENT_SERVICE_ACCOUNT.to_owned(),
            node_binding: false,
            token_review: None,
            created_at: podid_api::EpochMillis(1),
            modified_at: podid_api::EpochMillis(modified),
        }
    }

    fn association(id: &str) -> StoredAssociation {
        StoredAssociation {
            id: id.into(),
            cluster: "blue".into(),
            namespace: "ns".into(),
            service_account: "sa".into(),
            role_arn: "arn:aws:iam::111122223333:role/r".into(),
            target_role_arn: None,
            external_id: "x".into(),
            disable_session_tags: false,
            policy: None,
            tags: Default::default(),
            created_at: podid_api::EpochMillis(1),
            modified_at: podid_api::EpochMillis(1),
        }
    }

    #[tokio::test]
    async fn answers_are_kept_until_invalidated_or_expired() {
        let (store, lookups) = store_and_lookups(Duration::from_secs(3600)).await;
        assert!(cluster_in(&lookups, &store, "blue").await.is_none());
        store.insert_cluster(&cluster("blue", 1)).await.unwrap();
        // "Not found" is cached too…
        assert!(cluster_in(&lookups, &store, "blue").await.is_none());
        // …until a write through this server says otherwise.
        lookups.invalidate();
        let entry = cluster_in(&lookups, &store, "blue").await.unwrap();
        assert_eq!(entry.trust.version, 1);
        assert_eq!(entry.trust.issuer, "https://iss");

        assert!(association_in(&lookups, &store, "sa").await.is_none());
        store
            .create_association(&association("a-0123456789abcdefg"), None)
            .await
            .unwrap();
        assert!(association_in(&lookups, &store, "sa").await.is_none());
        lookups.invalidate();
        let found = association_in(&lookups, &store, "sa").await.unwrap();
        assert_eq!(found.id, "a-0123456789abcdefg");
        assert!(association_in(&lookups, &store, "other").await.is_none());

        // Without a TTL every call reads the store.
        let uncached = Lookups::new(Duration::ZERO);
        assert!(association_in(&uncached, &store, "sa").await.is_some());
        store
            .delete_association("blue", "a-0123456789abcdefg")
            .await
            .unwrap();
        assert!(association_in(&uncached, &store, "sa").await.is_none());
        // The long-lived cache still has it until told.
        assert!(association_in(&lookups, &store, "sa").await.is_some());
        lookups.invalidate();
        assert!(association_in(&lookups, &store, "sa").await.is_none());
    }

    #[tokio::test]
    async fn short_ttls_expire() {
        let ttl = Duration::from_millis(20);
        let (store, lookups) = store_and_lookups(ttl).await;
        assert!(cluster_in(&lookups, &store, "blue").await.is_none());
        store.insert_cluster(&cluster("blue", 5)).await.unwrap();
        // The "not found" was kept: it is the answer until the TTL has passed.
        let kept_at = lock(&lookups.clusters).get("blue").expect("kept").at;
        let within = lookups.get(
            &lookups.clusters,
            "blue",
            kept_at + ttl - Duration::from_millis(1),
        );
        assert!(
            matches!(within, Some(None)),
            "served from memory within the TTL"
        );
        assert!(lookups
            .get(&lookups.clusters, "blue", kept_at + ttl)
            .is_none());
        // Once it has passed, the store is read again.
        tokio::time::sleep_until((kept_at + ttl).into()).await;
        assert_eq!(
            cluster_in(&lookups, &store, "blue")
                .await
                .unwrap()
                .trust
                .version,
            5
        );
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_kept() {
        let lookups = Lookups::new(Duration::from_secs(3600));
        let generation = lookups.generation.load(Ordering::SeqCst);
        lookups.invalidate();
        lookups.put(
            &lookups.associations,
            "k".into(),
            Some(Arc::new(association("a-0123456789abcdefg"))),
            Instant::now(),
            generation,
        );
        assert!(lock(&lookups.associations).is_empty());
    }
}
